//! Relay throughput and latency: many simulated contributors against a real relay over loopback.
//!
//! `cargo bench -p glowworm-relay --bench throughput` (or `cargo xtask bench relay`) starts the
//! relay in this process on 127.0.0.1:0 with a durable SQLite file (WAL) in a temporary
//! directory and keeps it supplied with demo jobs of tiny units (8 x 8 tiles, k = 8). The
//! contributors run in a second process, the load generator: this executable run again with
//! `GLOWWORM_BENCH_GENERATOR` set to its orders (the relay's address, the run's plan and its
//! window, as JSON), as tokio tasks on a runtime of its own. So the relay's process holds only
//! the relay, the demo-job feeder and the stage counters, and its memory and CPU are its own.
//! Each contributor has its own ed25519 key and its own HTTP/1.1 connection, and does exactly
//! what the real ones do through `glowworm_protocol::protocol`: lease, fetch the kernel and the input
//! blobs (cached by content hash, in a cache of 16 KiB: two demo jobs' panels), compute (on the
//! CPU, with the kernel's reference), sign, submit. The relay checks the real signature, runs
//! Freivalds' check and credits the durable ledger. The units are tiny so that the relay's own
//! cost dominates. When the run ends the generator writes what it saw (latencies, refusals by
//! code, requests by kind, late starts, receipts) to its stdout as JSON and exits.
//!
//! Runs: closed loop with 64 and 1024 contributors (each starts its next unit as soon as the last
//! is credited), and open loop at a fixed rate of results per second. Each run has a warm-up and
//! then a fixed measuring window; it reports verified-and-credited results per second, the
//! latency from lease request to credit receipt (p50/p99/max), refusals by code, and CPU time
//! per result: the relay's process (getrusage RUSAGE_SELF, which leaves the child out), the
//! relay's runtime threads within it (/proc/self/task), and the load generator's process
//! (utime + stime of all its threads from /proc/<pid>/stat, read by this process at the same
//! instants), and the relay's own CPU per result by stage (counters in
//! `glowworm_relay::metrics`). Memory: the relay process's resident set (VmRSS in
//! /proc/self/status) is sampled at the window's start, every 10 s (30 times in a window
//! shorter than 5 minutes, but at most once a second) and at its end; the table gives it at
//! the start and end, the peak (VmHWM, reset at the window's start by writing 5 to
//! /proc/self/clear_refs; the largest sample where that is refused) and the growth in MB per
//! minute, the least-squares slope over the samples (over the whole window and over its second
//! half, which is near zero once the relay's bounded caches have filled), and 11 samples spread
//! through the window. The load generator's VmRSS at the end and its VmHWM (peak since it
//! started; one generator per run) come from /proc/<pid>/status. The two processes share the
//! machine's CPUs.
//!
//! Settings, by environment variable: `GLOWWORM_BENCH_SECONDS` (measuring window per run, 15),
//! `GLOWWORM_BENCH_WARMUP` (3), `GLOWWORM_BENCH_CONTRIBUTORS` (closed-loop runs, "64,1024"),
//! `GLOWWORM_BENCH_RATE` (fixed-rate targets, "5000"; 0 skips them), `GLOWWORM_BENCH_SUSTAINED`
//! (0: no extra fixed-rate run at 70% of the best closed-loop rate when the target is out of
//! reach), `GLOWWORM_BENCH_OUT` (the Markdown table, default `target/bench/relay.md`),
//! `GLOWWORM_BENCH_LABEL` (the table's title), `GLOWWORM_BENCH_LISTENER` (`axum` serves with
//! `axum::serve` instead of the relay's own listener), `GLOWWORM_BENCH_LIMITS` (`on` checks the
//! per-client rate limits, set too high to refuse anything; by default they are off, since every
//! simulated contributor is on 127.0.0.1).

use bytes::Bytes;
use glowworm_protocol::encoding::bytes_to_f32s;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::protocol::{self, Fetcher, ProtocolError, RelayError, Transport};
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{LeaseWork, MatmulShape};
use glowworm_relay::http::serve;
use glowworm_relay::metrics::{self, Stage};
use glowworm_relay::work::{demo, jobs};
use glowworm_relay::{AppState, Config, app};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

/// The relay binary's allocator (relay/src/main.rs), so the relay measured here is the one that
/// runs: mimalloc unless built without the `mimalloc` feature.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Units are UNIT x UNIT tiles of C with k = K: tiny, so the relay's cost dominates.
const UNIT: u32 = 8;
const K: u32 = 8;
/// Demo jobs are JOB x JOB, so (JOB / UNIT)^2 = 256 units each.
const JOB: u32 = 128;
/// Contributors in the fixed-rate runs.
const RATE_CONTRIBUTORS: usize = 256;
/// Each simulated contributor's blob cache. An input panel here is 8 x 8 f32 = 256 bytes and a
/// demo job has 16 + 16 of them, so 16 KiB holds two jobs' panels. The relay hands units out
/// oldest first, so a contributor's cache hits are panels of the job it is working in, fetched
/// a few units before; a larger cache only keeps panels it will never see again (at 256 KiB,
/// 1,000 contributors could hold 256 MB of them, counted as the relay's while they shared its
/// process).
const CONTRIBUTOR_CACHE_BYTES: usize = 16 << 10;
/// Set in the load generator's environment: its orders, as JSON. Its presence selects the role.
const GENERATOR_VAR: &str = "GLOWWORM_BENCH_GENERATOR";
/// How long the load generator has to start (exec, runtime, keys, connections) before its
/// contributors begin; the warm-up follows.
const GENERATOR_STARTUP: Duration = Duration::from_millis(500);

struct Settings {
    warmup: Duration,
    measure: Duration,
    contributors: Vec<usize>,
    rates: Vec<f64>,
    sustained: bool,
    out: PathBuf,
    /// `GLOWWORM_BENCH_LISTENER=axum`: serve with `axum::serve` instead of `serve::serve`, to
    /// compare the two listeners side by side.
    axum_listener: bool,
    /// `GLOWWORM_BENCH_LIMITS=on`: rate limits checked (at a rate nothing reaches); off: 0.
    limits_rate: u32,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let seconds = |name: &str, default: f64| {
            Duration::from_secs_f64(var(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
            }))
        };
        let contributors = var("GLOWWORM_BENCH_CONTRIBUTORS")
            .unwrap_or_else(|| "64,1024".into())
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("GLOWWORM_BENCH_CONTRIBUTORS: numbers")
            })
            .collect();
        let rates = var("GLOWWORM_BENCH_RATE")
            .unwrap_or_else(|| "5000".into())
            .split(',')
            .map(|r| r.trim().parse().expect("GLOWWORM_BENCH_RATE: numbers"))
            .filter(|&r: &f64| r > 0.0)
            .collect();
        let sustained = var("GLOWWORM_BENCH_SUSTAINED").is_none_or(|v| v != "0");
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the relay is a workspace member");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        let out = var("GLOWWORM_BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("bench/relay.md"));
        Settings {
            axum_listener: var("GLOWWORM_BENCH_LISTENER").is_some_and(|v| v == "axum"),
            limits_rate: if var("GLOWWORM_BENCH_LIMITS").is_some_and(|v| v == "on") {
                1_000_000_000
            } else {
                0
            },
            warmup: seconds("GLOWWORM_BENCH_WARMUP", 3.0),
            measure: seconds("GLOWWORM_BENCH_SECONDS", 15.0),
            contributors,
            rates,
            sustained,
            out,
        }
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    if let Some(orders) = std::env::var_os(GENERATOR_VAR) {
        let orders: Orders = serde_json::from_str(
            orders
                .to_str()
                .ok_or_else(|| anyhow::anyhow!("{GENERATOR_VAR} is not UTF-8"))?,
        )?;
        return generate_load(orders);
    }
    let settings = Settings::from_env();
    // The relay's runtime has named threads, so their CPU time can be told from the rest of the
    // process's. They live long so none exits mid-run.
    let relay_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("relay")
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()?;
    metrics::enable(true);

    let mut runs = Vec::new();
    for &contributors in &settings.contributors {
        let plan = Plan {
            contributors,
            rate: None,
        };
        runs.push(run(&relay_rt, &settings, plan)?);
    }
    let best = runs
        .iter()
        .map(|r| r.results as f64 / r.seconds)
        .fold(0.0, f64::max);
    for &rate in &settings.rates {
        let plan = Plan {
            contributors: RATE_CONTRIBUTORS,
            rate: Some(rate),
        };
        runs.push(run(&relay_rt, &settings, plan)?);
    }
    // When the machine cannot reach the target rate, also show the latency at a rate it
    // sustains: 70% of the best closed-loop throughput.
    let target = settings.rates.iter().copied().fold(0.0, f64::max);
    if settings.sustained && target > 0.0 && best > 0.0 {
        let sustained = (best * 0.7 / 100.0).floor() * 100.0;
        if best < target * 1.1 && sustained >= 100.0 {
            let plan = Plan {
                contributors: RATE_CONTRIBUTORS,
                rate: Some(sustained),
            };
            runs.push(run(&relay_rt, &settings, plan)?);
        }
    }

    let report = render(&settings, &runs);
    println!("\n{report}");
    if let Some(dir) = settings.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&settings.out, &report)?;
    println!("Written to {}", settings.out.display());
    relay_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

#[derive(Clone, Copy, Serialize, Deserialize)]
struct Plan {
    contributors: usize,
    /// Results per second across all contributors (open loop); `None`: as fast as they can.
    rate: Option<f64>,
}

/// What the relay's process tells the load generator it starts.
#[derive(Serialize, Deserialize)]
struct Orders {
    relay: SocketAddr,
    plan: Plan,
    /// When the contributors begin, by the wall clock (both processes read the same one); the
    /// warm-up and then the measuring window follow.
    start: SystemTime,
    warmup: Duration,
    measure: Duration,
}

/// What one run measured.
struct RunReport {
    plan: Plan,
    seconds: f64,
    results: u64,
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    /// Requests per result by kind, over the window.
    requests: BTreeMap<String, u64>,
    /// Cycles that started more than 2 ms behind their schedule (fixed rate only; tokio's
    /// timers have a resolution of 1 ms).
    late_starts: u64,
    cpu: CpuSplit,
    stages: Vec<metrics::Total>,
    /// Every receipt the contributors got over the whole run, and the ledger's credit rows.
    receipts_total: u64,
    ledger_rows: i64,
    /// Size of the WAL file at the end of the run.
    wal_bytes: u64,
    /// The relay process's memory over the window.
    relay_memory: MemoryTrend,
    /// The load generator's memory at the end of the window.
    generator_memory: Memory,
}

fn run(relay_rt: &Runtime, settings: &Settings, plan: Plan) -> anyhow::Result<RunReport> {
    let label = match plan.rate {
        Some(rate) => format!("{} contributors at {rate} results/s", plan.contributors),
        None => format!("{} contributors, closed loop", plan.contributors),
    };
    eprintln!("relay bench: {label} ...");
    let dir = tempfile::TempDir::new()?;
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        database: dir.path().join("relay.sqlite"),
        demo_jobs: false,
        lease_seconds: 60,
        max_attempts: 5,
        unit_size: UNIT,
        demo_m: JOB,
        demo_n: JOB,
        demo_k: K,
        // Every simulated contributor is on 127.0.0.1, and the closed-loop ones go as fast as
        // the relay lets them: the per-client rate limits would measure themselves. With
        // GLOWWORM_BENCH_LIMITS=on they are checked but set too high to refuse anything, to
        // measure what checking them costs.
        rate_per_address: settings.limits_rate,
        burst_per_address: settings.limits_rate,
        rate_per_key: settings.limits_rate,
        burst_per_key: settings.limits_rate,
        // Every simulated contributor holds a connection from 127.0.0.1: one network, whose
        // new keys would otherwise share 16 leases.
        max_connections_per_address: 0,
        new_leases_per_network: 0,
        max_leases_per_network: 0,
        ..Config::default()
    };
    let state = AppState::open(config.clone())?;

    // The relay, and a feeder that keeps enough units pending for every contributor.
    let low_water = (4 * plan.contributors as u64).max(2048);
    let (addr, server, feeder) = relay_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let router = app(state.clone());
        let server = if settings.axum_listener {
            tokio::spawn(async move {
                let service = router.into_make_service_with_connect_info::<SocketAddr>();
                axum::serve(listener, service).await.expect("serving");
            })
        } else {
            tokio::spawn(async move {
                serve::serve(listener, router, &config, std::future::pending()).await;
            })
        };
        let created = feed(&state, low_water, 0).await?;
        let feeder = tokio::spawn(feed_forever(state.clone(), low_water, created));
        anyhow::Ok((addr, server, feeder))
    })?;

    // The load generator: this executable again, in its own process. Both processes place the
    // window by the wall clock; here it is turned into this process's Instants once.
    let start = Instant::now() + GENERATOR_STARTUP;
    let orders = Orders {
        relay: addr,
        plan,
        start: SystemTime::now() + GENERATOR_STARTUP,
        warmup: settings.warmup,
        measure: settings.measure,
    };
    let generator = Command::new(std::env::current_exe()?)
        .env(GENERATOR_VAR, serde_json::to_string(&orders)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let generator_proc = PathBuf::from(format!("/proc/{}", generator.id()));
    let window_start = start + settings.warmup;
    let window_end = window_start + settings.measure;

    std::thread::sleep(window_start.saturating_duration_since(Instant::now()));
    let cpu_before = CpuSample::now(&generator_proc);
    let stages_before = metrics::snapshot();
    let relay_proc = Path::new("/proc/self");
    let peak_reset = reset_peak_memory();
    let mut samples = vec![(Instant::now(), Memory::of(relay_proc))];
    // The relay's memory through the window: enough samples for a slope even in a short check.
    let every = memory_sample_every(settings.measure);
    let mut next = window_start + every;
    while next + every / 2 < window_end {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        samples.push((Instant::now(), Memory::of(relay_proc)));
        next += every;
    }
    std::thread::sleep(window_end.saturating_duration_since(Instant::now()));
    let cpu_after = CpuSample::now(&generator_proc);
    let stages_after = metrics::snapshot();
    let generator_memory = Memory::of(&generator_proc);
    samples.push((Instant::now(), Memory::of(relay_proc)));
    let seconds = (cpu_after.at - cpu_before.at).as_secs_f64();

    // The generator stops its contributors at the window's end, lets each finish its unit, and
    // writes its tally.
    let output = generator.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "the load generator failed: {}",
        output.status
    );
    let mut tally: Tally = serde_json::from_slice(&output.stdout)?;
    feeder.abort();
    server.abort();
    let ledger_rows: i64 = relay_rt.block_on(state.db.call(|conn| {
        Ok(conn.query_row(
            "SELECT COUNT(*) FROM ledger WHERE kind = 'unit_verified'",
            [],
            |row| row.get(0),
        )?)
    }))?;
    let wal_bytes = std::fs::metadata(dir.path().join("relay.sqlite-wal")).map_or(0, |m| m.len());
    drop(state);

    tally.latencies_us.sort_unstable();
    let stages = stages_after
        .iter()
        .zip(&stages_before)
        .map(|(after, before)| metrics::Total {
            stage: after.stage,
            count: after.count - before.count,
            nanos: after.nanos - before.nanos,
        })
        .collect();
    let report = RunReport {
        plan,
        seconds,
        results: tally.latencies_us.len() as u64,
        latencies_us: tally.latencies_us,
        errors: tally.errors,
        requests: tally.requests,
        late_starts: tally.late_starts,
        cpu: cpu_after.since(&cpu_before),
        stages,
        receipts_total: tally.receipts_total,
        ledger_rows,
        wal_bytes,
        relay_memory: MemoryTrend::of(&samples, peak_reset),
        generator_memory,
    };
    eprintln!(
        "relay bench: {label}: {:.0} results/s, p99 {:.2} ms, relay memory {:.0} -> {:.0} MB",
        report.results as f64 / report.seconds,
        percentile(&report.latencies_us, 0.99) as f64 / 1000.0,
        report.relay_memory.start as f64 / 1e6,
        report.relay_memory.end as f64 / 1e6,
    );
    Ok(report)
}

/// Creates demo jobs until at least `low_water` units are pending, taking the units created
/// (`created`, by this feeder alone) less the leases the relay has issued; returns how many
/// units exist. The leases are counted once per batch of jobs, and the batch's jobs are inserted
/// in one transaction, so that the feeder takes little of the writer thread's time.
async fn feed(state: &AppState, low_water: u64, mut created: u64) -> anyhow::Result<u64> {
    let shape = MatmulShape {
        m: JOB,
        n: JOB,
        k: K,
    };
    let units_per_job = ((JOB / UNIT) * (JOB / UNIT)) as u64;
    loop {
        let pending = created.saturating_sub(leases_issued(state).await?);
        if pending >= low_water {
            return Ok(created);
        }
        // As the relay's own demo generator does: the input blobs are written (and synced) on
        // a blocking thread, and only the rows go through the database's writer thread, all the
        // shortfall's jobs in one transaction.
        let jobs = (low_water - pending).div_ceil(units_per_job);
        let seeds: Vec<u64> = (0..jobs).map(|j| created + j * units_per_job).collect();
        let store = state.db.blob_store().clone();
        let stored = tokio::task::spawn_blocking(move || {
            let split = jobs::Split {
                unit_size: UNIT,
                max_attempts: 5,
                replicas: None,
            };
            seeds
                .into_iter()
                .map(|seed| {
                    let (a, b) = demo::demo_matrices(seed, shape);
                    jobs::MatmulJob::store(&store, &a, &b, shape, split)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await??;
        let now = state.now_ms();
        let config = state.config.clone();
        state
            .db
            .call(move |conn| {
                let tx = conn.transaction()?;
                // Paid work, as in production: each result moves money in the ledger.
                glowworm_relay::accounts::ledger::grant(
                    &tx,
                    glowworm_relay::accounts::ledger::DEMO_BUDGET,
                    1_000_000_000_000_000,
                    "benchmark",
                    now,
                )?;
                for job in &stored {
                    job.insert(&tx, &config, jobs::Owner::Demo, now)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        created += jobs * units_per_job;
    }
}

/// Leases the relay has issued so far. Leases are never deleted, so this is the table's largest
/// rowid: one probe of its b-tree, on a read connection, cheap enough to ask every few ms. (A
/// reissued unit or a canary counts a lease of no new unit; the feeder then makes a little more
/// work than needed, which does no harm.)
async fn leases_issued(state: &AppState) -> anyhow::Result<u64> {
    let issued: i64 = state
        .db
        .read(|conn| {
            Ok(conn
                .prepare_cached("SELECT COALESCE(MAX(rowid), 0) FROM leases")?
                .query_row([], |row| row.get(0))?)
        })
        .await?;
    Ok(issued as u64)
}

async fn feed_forever(state: AppState, low_water: u64, mut created: u64) {
    loop {
        match feed(&state, low_water, created).await {
            Ok(now) => created = now,
            Err(e) => eprintln!("relay bench: feeder: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The load generator's process: runs the contributors of `orders` until its window ends, then
/// writes their tally to stdout as JSON.
fn generate_load(orders: Orders) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    // The wall-clock start, as an Instant of this process.
    let start = match orders.start.duration_since(SystemTime::now()) {
        Ok(ahead) => Instant::now() + ahead,
        Err(_) => {
            eprintln!("relay bench: the load generator started after its start time");
            Instant::now()
        }
    };
    let window_start = start + orders.warmup;
    let window = Window {
        start,
        window_start,
        window_end: window_start + orders.measure,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..orders.plan.contributors)
        .map(|index| {
            runtime.spawn(contributor(
                orders.relay,
                index,
                orders.plan,
                window,
                stop.clone(),
            ))
        })
        .collect();
    std::thread::sleep(window.window_end.saturating_duration_since(Instant::now()));
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(runtime.block_on(task)?);
    }
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &tally)?;
    stdout.flush()?;
    Ok(())
}

#[derive(Clone, Copy)]
struct Window {
    /// When contributors start (warm-up begins).
    start: Instant,
    window_start: Instant,
    window_end: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.window_start && t < self.window_end
    }
}

/// What the contributors saw: one contributor's, or all of them merged.
#[derive(Default, Serialize, Deserialize)]
struct Tally {
    /// Lease request to credit receipt, of results credited within the window.
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    requests: BTreeMap<String, u64>,
    late_starts: u64,
    receipts_total: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        for (kind, n) in other.requests {
            *self.requests.entry(kind).or_default() += n;
        }
        self.late_starts += other.late_starts;
        self.receipts_total += other.receipts_total;
    }
}

/// One simulated contributor: lease, fetch (cached by hash), compute, sign, submit, repeat.
async fn contributor(
    addr: SocketAddr,
    index: usize,
    plan: Plan,
    window: Window,
    stop: Arc<AtomicBool>,
) -> Tally {
    let key = ContributorKey::generate().expect("a random source");
    let mut tally = Tally::default();
    let mut http = match Http::connect(addr).await {
        Ok(http) => http,
        Err(e) => {
            *tally.errors.entry(format!("connect: {e}")).or_default() += 1;
            return tally;
        }
    };
    // As the page's: kernels and inputs cached by content hash, each fetched once.
    let fetcher = Fetcher::new(16, CONTRIBUTOR_CACHE_BYTES);
    // Fixed rate: this contributor's share of the rate, offset so the contributors interleave.
    let period = plan
        .rate
        .map(|rate| Duration::from_secs_f64(plan.contributors as f64 / rate));
    let mut next = window.start
        + plan.rate.map_or(Duration::ZERO, |rate| {
            Duration::from_secs_f64(index as f64 / rate)
        });
    if plan.rate.is_none() {
        tokio::time::sleep_until(window.start.into()).await;
    }

    while !stop.load(Ordering::Relaxed) {
        if let Some(period) = period {
            tokio::time::sleep_until(next.into()).await;
            if Instant::now() > next + Duration::from_millis(2) && window.contains(next) {
                tally.late_starts += 1;
            }
            next = (next + period).max(Instant::now());
        }
        let began = Instant::now();
        let counting = window.contains(began);
        match one_unit(&http, &key, &fetcher).await {
            Ok(Cycle::Credited { requests }) => {
                tally.receipts_total += 1;
                let done = Instant::now();
                if window.contains(done) {
                    tally
                        .latencies_us
                        .push((done - began).as_micros().min(u32::MAX as u128) as u32);
                }
                if counting {
                    for kind in requests {
                        *tally.requests.entry(kind.to_string()).or_default() += 1;
                    }
                }
            }
            Ok(Cycle::NoWork) => {
                if counting {
                    *tally.errors.entry("204 no work".into()).or_default() += 1;
                }
                // As a real contributor does, on Retry-After: 1.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                if window.contains(Instant::now()) {
                    *tally.errors.entry(e.code()).or_default() += 1;
                }
                if e.is_network() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    match Http::connect(addr).await {
                        Ok(fresh) => http = fresh,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
        }
    }
    tally
}

enum Cycle {
    Credited { requests: Vec<&'static str> },
    NoWork,
}

async fn one_unit(
    http: &Http,
    key: &ContributorKey,
    fetcher: &Fetcher,
) -> Result<Cycle, ProtocolError<RelayError>> {
    let mut requests = vec!["POST /v1/leases"];
    let Some(lease) = protocol::lease(
        http,
        key,
        None,
        glowworm_relay::Clock::now_ms(&glowworm_relay::SystemClock),
    )
    .await?
    else {
        return Ok(Cycle::NoWork);
    };
    let fetched = fetcher.fetch(http, key, &lease).await?;
    if !fetched.kernel_cached {
        requests.push("GET /v1/kernels");
    }
    let inputs_fetched = fetched.inputs.len() - fetched.inputs_cached as usize;
    requests.extend(std::iter::repeat_n("GET /v1/blobs", inputs_fetched));
    let LeaseWork::Matmul { shape } = lease.work else {
        panic!("the bench's jobs are matmuls");
    };
    let [a, b] = [&fetched.inputs[0], &fetched.inputs[1]]
        .map(|bytes| bytes_to_f32s(bytes).expect("the fetcher checked the inputs' hashes"));
    let output = matmul::reference(&a, &b, shape);
    let submission = protocol::submission(key, &lease, &output);
    requests.push("POST /v1/results");
    let receipt = protocol::submit(http, &submission).await?;
    assert_eq!(
        (receipt.status.as_str(), receipt.credited as u64),
        ("verified", lease.flop),
        "the receipt credits the unit's FLOP"
    );
    Ok(Cycle::Credited { requests })
}

trait ErrorCode {
    fn code(&self) -> String;
    fn is_network(&self) -> bool;
}

impl ErrorCode for ProtocolError<RelayError> {
    fn code(&self) -> String {
        match self {
            ProtocolError::Transport(RelayError::Refused { status, code, .. }) => {
                format!("{status} {code}")
            }
            ProtocolError::Transport(RelayError::BadReply { .. }) => "bad reply".into(),
            ProtocolError::Transport(_) => "network".into(),
            other => format!("protocol: {other}"),
        }
    }

    fn is_network(&self) -> bool {
        matches!(self, ProtocolError::Transport(e) if e.is_transport())
    }
}

/// One HTTP/1.1 keep-alive connection to the relay, as a contributor's browser would hold.
struct Http {
    sender: Mutex<SendRequest<Full<Bytes>>>,
    /// The relay's URL, for errors.
    url: String,
}

impl Http {
    async fn connect(addr: SocketAddr) -> Result<Http, RelayError> {
        let url = format!("http://{addr}");
        let network = |e: &dyn std::fmt::Display| RelayError::Unreachable {
            url: url.clone(),
            cause: e.to_string(),
        };
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| network(&e))?;
        stream.set_nodelay(true).map_err(|e| network(&e))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| network(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Http {
            sender: Mutex::new(sender),
            url,
        })
    }

    /// Sends a request; returns the status and body of a 2xx reply.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), RelayError> {
        let network = |e: &dyn std::fmt::Display| RelayError::Broken {
            url: self.url.clone(),
            cause: e.to_string(),
        };
        let context = format!("the relay refused {method} {path}");
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "relay");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| bad_reply(path, e))?;
        let response = {
            let mut sender = self.sender.lock().await;
            sender.ready().await.map_err(|e| network(&e))?;
            sender
                .send_request(request)
                .await
                .map_err(|e| network(&e))?
        };
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| network(&e))?
            .to_bytes();
        if status.is_success() {
            return Ok((status, body));
        }
        let body = String::from_utf8_lossy(&body);
        Err(RelayError::refused(
            &context,
            status.as_u16(),
            &body,
            status.canonical_reason(),
        ))
    }

    fn json<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, RelayError> {
        serde_json::from_slice(body).map_err(|e| bad_reply(path, e))
    }

    fn body<B: Serialize>(path: &str, body: &B) -> Result<Vec<u8>, RelayError> {
        serde_json::to_vec(body).map_err(|e| bad_reply(path, e))
    }
}

fn bad_reply(path: &str, e: impl std::fmt::Display) -> RelayError {
    RelayError::BadReply {
        context: path.to_string(),
        message: e.to_string(),
    }
}

impl Transport for Http {
    type Error = RelayError;

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RelayError> {
        let (_, body) = self.send(Method::GET, path, None).await?;
        Self::json(path, &body)
    }

    async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, RelayError> {
        let (_, body) = self.send(Method::GET, path, None).await?;
        Ok(body.to_vec())
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, RelayError> {
        let (_, reply) = self
            .send(Method::POST, path, Some(Self::body(path, body)?))
            .await?;
        Self::json(path, &reply)
    }

    async fn post_json_optional<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, RelayError> {
        let (status, reply) = self
            .send(Method::POST, path, Some(Self::body(path, body)?))
            .await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Self::json(path, &reply).map(Some)
    }
}

/// CPU time used so far: the relay's process, the threads of the relay's runtime in it, and the
/// load generator's process.
struct CpuSample {
    at: Instant,
    process_ns: u64,
    relay_threads_ns: u64,
    generator_ns: u64,
}

/// CPU time over an interval, in nanoseconds.
struct CpuSplit {
    process_ns: u64,
    relay_threads_ns: u64,
    generator_ns: u64,
}

impl CpuSample {
    /// `generator` is the load generator's directory in /proc.
    fn now(generator: &Path) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            process_ns: process_cpu_ns(),
            relay_threads_ns: relay_threads_cpu_ns(),
            generator_ns: std::fs::read_to_string(generator.join("stat"))
                .map_or(0, |stat| stat_cpu_ns(&stat)),
        }
    }

    fn since(&self, before: &CpuSample) -> CpuSplit {
        CpuSplit {
            process_ns: self.process_ns.saturating_sub(before.process_ns),
            relay_threads_ns: self
                .relay_threads_ns
                .saturating_sub(before.relay_threads_ns),
            generator_ns: self.generator_ns.saturating_sub(before.generator_ns),
        }
    }
}

/// User and system CPU time of this process (getrusage RUSAGE_SELF: not its children, so not
/// the load generator).
fn process_cpu_ns() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// utime + stime from a /proc stat file, in ns (clock ticks, 10 ms apart). A process's
/// /proc/<pid>/stat sums all its threads, living and exited.
fn stat_cpu_ns(stat: &str) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    // After the name: state is field 3 of stat(5); utime and stime are 14 and 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let cpu = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (cpu(11) + cpu(12)) * 1_000_000_000 / ticks
}

/// CPU time of this process's living threads named "relay", in ns: from
/// /proc/self/task/*/schedstat (nanoseconds on the CPU), else from stat (clock ticks).
fn relay_threads_cpu_ns() -> u64 {
    let mut relay = 0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with("relay") {
            continue;
        }
        relay += std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| stat_cpu_ns(&stat));
    }
    relay
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn render(settings: &Settings, runs: &[RunReport]) -> String {
    let mut out = String::new();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    match std::env::var("GLOWWORM_BENCH_LABEL") {
        Ok(label) if !label.is_empty() => {
            let _ = writeln!(out, "## Relay throughput and latency: {label}\n");
        }
        _ => {
            let _ = writeln!(out, "## Relay throughput and latency\n");
        }
    }
    let _ = writeln!(
        out,
        "Real relay on loopback HTTP/1.1, durable SQLite (WAL) in a temp dir; units of \
         {UNIT}x{UNIT} with k = {K} (demo jobs {JOB}x{JOB}); each contributor has its own ed25519 \
         key and connection, caches blobs by hash ({} KiB), computes on the CPU, signs; the relay \
         checks the signature, runs Freivalds' check and credits the ledger. The contributors run \
         in a second process, the load generator; the relay's process holds the relay alone. \
         {cpus} CPUs, shared by the two processes. Closed loop: each contributor leases its \
         next unit as soon as the last is credited. Fixed rate: {RATE_CONTRIBUTORS} contributors \
         share the rate, each starting a unit on its own schedule. Latency runs from the lease \
         request to the credit receipt. Warm-up {:.0} s, then {:.0} s measured per run.\n",
        CONTRIBUTOR_CACHE_BYTES >> 10,
        settings.warmup.as_secs_f64(),
        settings.measure.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| Run | Results/s | p50 ms | p99 ms | max ms | Errors | CPU µs/result: relay process | relay threads | load generator |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---:|---:|---:|");
    for run in runs {
        let label = match run.plan.rate {
            Some(rate) => format!(
                "{} contributors, fixed rate {rate:.0}/s{}",
                run.plan.contributors,
                if run.late_starts > 0 {
                    format!(", {} starts over 2 ms late", run.late_starts)
                } else {
                    String::new()
                }
            ),
            None => format!("{} contributors, closed loop", run.plan.contributors),
        };
        let per_result = |ns: u64| ns as f64 / 1000.0 / run.results.max(1) as f64;
        let errors = if run.errors.is_empty() {
            "none".to_string()
        } else {
            run.errors
                .iter()
                .map(|(code, n)| format!("{code}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ms = |q: f64| percentile(&run.latencies_us, q) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "| {label} | {:.0} | {:.2} | {:.2} | {:.1} | {errors} | {:.0} | {:.0} | {:.0} |",
            run.results as f64 / run.seconds,
            ms(0.5),
            ms(0.99),
            ms(1.0),
            per_result(run.cpu.process_ns),
            per_result(run.cpu.relay_threads_ns),
            per_result(run.cpu.generator_ns),
        );
    }

    let _ = writeln!(
        out,
        "\nWhere the relay's CPU goes, µs per verified result (CPU time of the thread in each stage; \
         the rest of the relay threads' time is HTTP, JSON, routing, task scheduling and the \
         database calls not listed):\n"
    );
    let mut header = "| Stage |".to_string();
    let mut rule = "|---|".to_string();
    for run in runs {
        let _ = write!(
            header,
            " {}{} |",
            run.plan.contributors,
            run.plan
                .rate
                .map_or(" closed".to_string(), |r| format!(" @{r:.0}/s"))
        );
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for (i, stage) in Stage::ALL.iter().enumerate() {
        let _ = write!(out, "| {} |", stage.name());
        for run in runs {
            let total = run.stages[i];
            let _ = write!(
                out,
                " {:.1} |",
                total.nanos as f64 / 1000.0 / run.results.max(1) as f64
            );
        }
        out.push('\n');
    }
    let _ = write!(out, "| relay threads, all |");
    for run in runs {
        let _ = write!(
            out,
            " {:.1} |",
            run.cpu.relay_threads_ns as f64 / 1000.0 / run.results.max(1) as f64
        );
    }
    out.push('\n');
    let _ = write!(out, "| HTTP requests per result |");
    for run in runs {
        let requests: u64 = run.requests.values().sum();
        let _ = write!(out, " {:.2} |", requests as f64 / run.results.max(1) as f64);
    }
    out.push('\n');
    let _ = write!(out, "| commits per result |");
    for run in runs {
        let commits = run
            .stages
            .iter()
            .find(|total| total.stage == Stage::Commit)
            .map_or(0, |total| total.count);
        let _ = write!(out, " {:.3} |", commits as f64 / run.results.max(1) as f64);
    }
    out.push('\n');
    let _ = write!(out, "| WAL file at the end, MB |");
    for run in runs {
        let _ = write!(out, " {:.1} |", run.wal_bytes as f64 / 1e6);
    }
    out.push('\n');
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let _ = write!(
        out,
        "| relay process memory (VmRSS), MB: window start / end / peak |"
    );
    for run in runs {
        let memory = &run.relay_memory;
        let _ = write!(
            out,
            " {:.0} / {:.0} / {:.0} |",
            mb(memory.start),
            mb(memory.end),
            mb(memory.peak)
        );
    }
    out.push('\n');
    let _ = write!(
        out,
        "| relay process memory growth, MB/min: whole window / its second half (slopes over \
         samples every {:.0} s) |",
        memory_sample_every(settings.measure).as_secs_f64()
    );
    for run in runs {
        let _ = write!(
            out,
            " {:+.1} / {:+.1} |",
            run.relay_memory.slope_bytes_per_s * 60.0 / 1e6,
            run.relay_memory.late_slope_bytes_per_s * 60.0 / 1e6
        );
    }
    out.push('\n');
    let _ = write!(
        out,
        "| relay process memory through the window, MB ({MEMORY_SERIES} samples, evenly spaced) |"
    );
    for run in runs {
        let series: Vec<String> = run
            .relay_memory
            .series
            .iter()
            .map(|bytes| format!("{:.0}", mb(*bytes)))
            .collect();
        let _ = write!(out, " {} |", series.join(", "));
    }
    out.push('\n');
    let _ = write!(out, "| load generator memory at the end, MB (peak) |");
    for run in runs {
        let memory = &run.generator_memory;
        let _ = write!(
            out,
            " {:.0} ({:.0}) |",
            mb(memory.resident),
            mb(memory.peak)
        );
    }
    out.push('\n');
    let _ = write!(out, "| ledger rows = receipts |");
    for run in runs {
        let ok = run.ledger_rows as u64 == run.receipts_total;
        let _ = write!(
            out,
            " {} |",
            if ok {
                format!("yes ({})", run.receipts_total)
            } else {
                format!("NO: {} vs {}", run.ledger_rows, run.receipts_total)
            }
        );
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "\nThe relay process's memory is its resident set (VmRSS), read at the window's start, \
         every {:.0} s and at its end; the peak is VmHWM, reset at the window's start; the growth \
         is the least-squares slope over those samples (all of them, and those of the window's \
         second half). The load generator's peak is VmHWM since \
         it started (one generator per run).",
        memory_sample_every(settings.measure).as_secs_f64()
    );
    let _ = writeln!(
        out,
        "\nTargets (issue #7): at least 20,000 results/s; p99 at most 10 ms at 5,000 results/s. \
         Rerun: `cargo xtask bench relay`."
    );
    out
}

/// How often the relay's memory is read in a window of `measure`: every 10 s, or 30 times
/// when the window is shorter than 5 minutes, but at most once a second.
fn memory_sample_every(measure: Duration) -> Duration {
    (measure / 30).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// Resident memory of a process, from /proc/<pid>/status (Linux; zeros elsewhere).
#[derive(Clone, Copy, Default)]
struct Memory {
    /// VmRSS.
    resident: u64,
    /// VmHWM: the most resident memory the process has had since it started, or since
    /// [`reset_peak_memory`].
    peak: u64,
}

impl Memory {
    /// `proc` is the process's directory in /proc: `/proc/self`, `/proc/<pid>`.
    fn of(proc: &Path) -> Memory {
        let status = std::fs::read_to_string(proc.join("status")).unwrap_or_default();
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(0, |n| n * 1024)
        };
        Memory {
            resident: kib("VmRSS:"),
            peak: kib("VmHWM:"),
        }
    }
}

/// Sets this process's VmHWM back to its VmRSS (Linux 4.0 and later), so that it gives the peak
/// from now on; false where that is refused.
fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The relay process's resident memory over a window, from samples taken through it.
struct MemoryTrend {
    start: u64,
    end: u64,
    /// VmHWM at the end when it was reset at the start, else the largest sample.
    peak: u64,
    /// Least-squares slope of VmRSS over time, in bytes per second: over the whole window, and
    /// over its second half (near zero once the relay's caches have filled, if nothing leaks).
    slope_bytes_per_s: f64,
    late_slope_bytes_per_s: f64,
    /// Up to [`MEMORY_SERIES`] samples spread evenly through the window, VmRSS in bytes.
    series: Vec<u64>,
}

/// Samples of the relay's memory the table lists, to show the shape of its growth.
const MEMORY_SERIES: usize = 11;

impl MemoryTrend {
    fn of(samples: &[(Instant, Memory)], peak_reset: bool) -> MemoryTrend {
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return MemoryTrend {
                start: 0,
                end: 0,
                peak: 0,
                slope_bytes_per_s: 0.0,
                late_slope_bytes_per_s: 0.0,
                series: Vec::new(),
            };
        };
        let largest = samples.iter().map(|(_, m)| m.resident).max().unwrap_or(0);
        let points: Vec<(f64, f64)> = samples
            .iter()
            .map(|(at, m)| ((*at - first.0).as_secs_f64(), m.resident as f64))
            .collect();
        let half = points.last().map_or(0.0, |p| p.0) / 2.0;
        let late: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0 >= half).collect();
        MemoryTrend {
            start: first.1.resident,
            end: last.1.resident,
            peak: if peak_reset {
                last.1.peak.max(largest)
            } else {
                largest
            },
            slope_bytes_per_s: slope(&points),
            late_slope_bytes_per_s: slope(&late),
            series: (0..MEMORY_SERIES.min(samples.len()))
                .map(|i| {
                    let last = MEMORY_SERIES.min(samples.len()) - 1;
                    samples[i * (samples.len() - 1) / last.max(1)].1.resident
                })
                .collect(),
        }
    }
}

/// The least-squares slope of `points` (x, y); 0 when there are fewer than two distinct x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let variance: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if variance > 0.0 {
        covariance / variance
    } else {
        0.0
    }
}
