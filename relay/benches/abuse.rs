//! Abuse soak: honest requesters and contributors beside attackers, against the real relay
//! binary on loopback, for minutes.
//!
//! `cargo xtask bench abuse` (or `cargo bench -p glowworm-relay --bench abuse`) runs the
//! `glowworm-relay` binary twice, each time fresh (its own SQLite file in a temporary directory),
//! with its default settings except `lease_seconds` 10 (so that leases left to expire come back
//! within the run), `unit_size` 32 and no demo jobs; the rate limits, lease caps and connection
//! limits are the defaults, since the point is that the defaults hold. Run A has the honest
//! workload alone; run B the same workload (same seed, same jobs, same schedule, same keys) with
//! attackers alongside. Each run has a 10 s start (the attackers ramp up), then
//! `GLOWWORM_ABUSE_SECONDS` of honest job submissions, then up to 120 s for the honest jobs
//! submitted to finish.
//!
//! The honest side runs in this process: 2 requesters (API keys made with
//! `glowworm-relay keys create`), each uploading a 128x128x64 matmul job (16 units of 32x32)
//! every 2.5 s and following it with `GET /v1/jobs/{id}` until it is done; and 8 contributors,
//! each with its own key and its own loopback address (127.0.1.N), each looping lease, fetch,
//! compute (the kernel's CPU reference), sign and submit, and idling 1 s on 204 or 429. A job's
//! completion time runs from the start of its upload to the status poll that sees it done.
//!
//! The attackers (run B) run in a second process, this executable run again with
//! `GLOWWORM_ABUSE_ATTACKER` set to their orders; each kind from its own loopback addresses:
//! - hoarders (127.0.0.2-5): fresh keys, each leasing as many units as it can and never
//!   returning them (thousands of keys over a run);
//! - expirers (127.0.0.6-9): 4 keys each, leasing what they can, letting it expire, leasing
//!   again with the same keys;
//! - garbage senders (127.0.0.10-13): lease and at once submit zeros or random floats, properly
//!   signed, with a fresh key every 3 leases;
//! - key-spenders (127.0.0.14-15), at the per-address rate limit (200 requests/s each): lease
//!   requests naming honest contributors' public keys signed by the attacker's own key, releases
//!   of leases they do not hold (named for honest keys, or for their own), lease requests from
//!   made-up keys (a lease they get is released at once) and from random bytes that are no key;
//! - silent connections (127.0.2.1-100): 72 TCP connections per address (the per-address cap
//!   is 64) that send nothing, reopened a second or two after the relay closes them.
//!
//! Throughout both runs `GET /v1/health` is polled every 200 ms over a fresh connection from
//! 127.0.3.1, and the relay process's resident memory (VmRSS in /proc/<pid>/status) is read at
//! the start, every 10 s and at the end. After each run the relay is stopped and its database
//! read (read-only): the ledger's credits by account, the contributors rows, failed units, and
//! the leases by holder. The table goes to stdout and to `GLOWWORM_ABUSE_OUT`.
//!
//! The bench fails (exits non-zero) when an honest job failed or did not finish, when an
//! account other than the honest contributors' was credited, or when a key that never earned
//! got a contributors row. Missing the time goal (honest completion time with attackers at most
//! 1.5x that without) is reported in the table, not failed.
//!
//! Settings, by environment variable: `GLOWWORM_ABUSE_SECONDS` (honest submissions per run, 300),
//! `GLOWWORM_ABUSE_SEED` (the honest workload's jobs, schedule and keys, 1), `GLOWWORM_ABUSE_OUT`
//! (the Markdown table, default `target/bench/abuse.md`), `GLOWWORM_ABUSE_KEEP=1` (keep each
//! run's directory, with the relay's database and log, and print where it is).

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use glowworm_protocol::encoding::bytes_to_f32s;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::protocol::{self, Fetcher, ProtocolError, RelayError, Transport, Work};
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{
    JobStatus, Lease, LeaseRequest, MatmulShape, ReleaseReason, ReleaseRequest, ResultReceipt,
    Stats, Waiting,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// The relay binary, built by `cargo bench` with the same profile.
const RELAY_BIN: &str = env!("CARGO_BIN_EXE_glowworm-relay");
/// Set in the attackers' process's environment: their orders, as JSON. Its presence selects
/// the role.
const ATTACKER_VAR: &str = "GLOWWORM_ABUSE_ATTACKER";

/// Honest jobs: C = A (m x k) * B (k x n), cut into UNIT_SIZE x UNIT_SIZE tiles: 16 units.
const SHAPE: MatmulShape = MatmulShape {
    m: 128,
    n: 128,
    k: 64,
};
const UNIT_SIZE: u32 = 32;
const LEASE_SECONDS: u64 = 10;
const CONTRIBUTORS: u8 = 8;
const REQUESTERS: u8 = 2;
/// Each requester uploads a job this often (the two are offset by half of it), give or take
/// [`SUBMIT_JITTER_MS`].
const SUBMIT_EVERY: Duration = Duration::from_millis(2500);
const SUBMIT_JITTER_MS: u64 = 250;
/// A requester polls one of its unfinished jobs this often, round robin.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Before the honest side starts: the attackers ramp up (run B), the relay idles (run A).
const WARMUP: Duration = Duration::from_secs(10);
/// How long the honest jobs have to finish once submissions stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
const HEALTH_EVERY: Duration = Duration::from_millis(200);
const MEMORY_EVERY: Duration = Duration::from_secs(10);

/// Loopback addresses: the relay counts each as a network of its own (lease caps) and an
/// address of its own (rate limits, connection caps).
fn honest_contributor_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, i + 1)
}
fn requester_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 4, i + 1)
}
const HEALTH_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 3, 1);

/// The attackers: addresses (last octet of 127.0.0.x) and pace.
const HOARDER_IPS: std::ops::RangeInclusive<u8> = 2..=5;
const HOARD_EVERY: Duration = Duration::from_millis(100);
const EXPIRER_IPS: std::ops::RangeInclusive<u8> = 6..=9;
const EXPIRER_KEYS: usize = 4;
const EXPIRE_ROUND: Duration = Duration::from_secs(1);
const GARBAGE_IPS: std::ops::RangeInclusive<u8> = 10..=13;
const GARBAGE_EVERY: Duration = Duration::from_millis(100);
const GARBAGE_KEY_USES: u32 = 3;
const SPENDER_IPS: std::ops::RangeInclusive<u8> = 14..=15;
/// The default per-address rate limit is 200 requests/s.
const SPEND_EVERY: Duration = Duration::from_millis(5);
/// Silent connections: 127.0.2.1 to 127.0.2.SILENT_ADDRESSES, SILENT_PER_ADDRESS each (the
/// relay's default per-address cap is 64), opened over SILENT_RAMP.
const SILENT_ADDRESSES: u8 = 100;
const SILENT_PER_ADDRESS: usize = 72;
const SILENT_RAMP: Duration = Duration::from_secs(10);

const HOARDERS: &str = "hoarders";
const EXPIRERS: &str = "expirers";
const GARBAGE: &str = "garbage senders";
const SPENDERS: &str = "key-spenders";
const SILENT: &str = "silent connections";
const KINDS: [&str; 5] = [HOARDERS, EXPIRERS, GARBAGE, SPENDERS, SILENT];

struct Settings {
    seconds: u64,
    seed: u64,
    out: PathBuf,
    /// `GLOWWORM_ABUSE_KEEP=1`: keep each run's directory (database, relay log) for a look.
    keep: bool,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str, default: u64| -> Result<u64> {
            var(name).map_or(Ok(default), |v| {
                v.parse()
                    .with_context(|| format!("{name}={v:?} is not a whole number"))
            })
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the relay is a workspace member");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        Ok(Settings {
            seconds: number("GLOWWORM_ABUSE_SECONDS", 300)?.max(1),
            seed: number("GLOWWORM_ABUSE_SEED", 1)?,
            out: var("GLOWWORM_ABUSE_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| target.join("bench/abuse.md")),
            keep: var("GLOWWORM_ABUSE_KEEP").is_some_and(|v| v != "0"),
        })
    }
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; no other argument is taken.
    if let Some(orders) = std::env::var_os(ATTACKER_VAR) {
        let orders: AttackOrders = serde_json::from_str(
            orders
                .to_str()
                .ok_or_else(|| anyhow!("{ATTACKER_VAR} is not UTF-8"))?,
        )?;
        return attack(orders);
    }
    let settings = Settings::from_env()?;
    raise_open_files_limit();
    eprintln!(
        "abuse soak: {} s of honest submissions per run (GLOWWORM_ABUSE_SECONDS), seed {}",
        settings.seconds, settings.seed
    );
    let quiet = run(&settings, false).context("run A (honest only)")?;
    let attacked = run(&settings, true).context("run B (honest and attackers)")?;
    let (report, failures) = render(&settings, &quiet, &attacked);
    println!("\n{report}");
    if let Some(dir) = settings.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&settings.out, &report)?;
    println!("Written to {}", settings.out.display());
    if !failures.is_empty() {
        bail!("correctness failures: {}", failures.join("; "));
    }
    Ok(())
}

/// Silent connections need file descriptors, in the attackers' process and in the relay (both
/// children of this one): the soft limit is raised to the hard one.
fn raise_open_files_limit() {
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn open_files_limit() -> u64 {
    // SAFETY: getrlimit only writes the struct it is given.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur
        } else {
            0
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// SplitMix64: the honest workload's jobs and schedule from the seed, and the attackers' noise.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn random() -> Rng {
        let mut seed = [0u8; 8];
        getrandom::getrandom(&mut seed).expect("a random source");
        Rng(u64::from_le_bytes(seed))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit_f32(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn hex(&mut self, bytes: usize) -> String {
        let mut out = String::with_capacity(bytes * 2);
        for _ in 0..bytes {
            let _ = write!(out, "{:02x}", self.next() as u8);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// What the tallies count: "429 lease_cap", "network error", ...
trait Outcome {
    fn outcome(&self) -> String;
}

impl Outcome for RelayError {
    fn outcome(&self) -> String {
        match self {
            RelayError::Refused { status, code, .. } => format!("{status} {code}"),
            RelayError::BadReply { .. } => "bad reply".into(),
            _ => "network error".into(),
        }
    }
}

/// A reqwest client bound to one loopback address.
struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    /// `fresh`: a new connection for every request (the health poller).
    fn new(relay: SocketAddr, local: Ipv4Addr, fresh: bool) -> Result<Http> {
        let mut builder = reqwest::Client::builder()
            .local_address(IpAddr::V4(local))
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            // The relay closes a keep-alive connection that waits header_timeout_seconds (10)
            // for its next request; reusing one it is closing fails a request.
            .pool_idle_timeout(Duration::from_secs(5));
        if fresh {
            builder = builder.pool_max_idle_per_host(0);
        }
        Ok(Http {
            client: builder.build()?,
            base: format!("http://{relay}"),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The status and body of a 2xx reply; anything else is an error.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Bytes), RelayError> {
        let network = |e: reqwest::Error| RelayError::Unreachable {
            url: self.base.clone(),
            cause: error_chain(&e),
        };
        let request = request.build().map_err(network)?;
        let context = format!("{} {}", request.method(), request.url().path());
        let response = self.client.execute(request).await.map_err(network)?;
        let status = response.status();
        let body = response.bytes().await.map_err(network)?;
        if status.is_success() {
            return Ok((status.as_u16(), body));
        }
        let body = String::from_utf8_lossy(&body);
        Err(RelayError::refused(&context, status.as_u16(), &body, None))
    }

    async fn post<B: Serialize>(&self, path: &str, body: &B) -> Result<(u16, Bytes), RelayError> {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    async fn get(&self, path: &str) -> Result<(u16, Bytes), RelayError> {
        self.send(self.client.get(self.url(path))).await
    }

    fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, RelayError> {
        serde_json::from_slice(body).map_err(|e| RelayError::BadReply {
            context: "a reply".into(),
            message: e.to_string(),
        })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let _ = write!(text, ": {e}");
        source = e.source();
    }
    text
}

impl Transport for Http {
    type Error = RelayError;

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RelayError> {
        let (_, body) = self.get(path).await?;
        Self::json(&body)
    }

    async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, RelayError> {
        let (_, body) = self.get(path).await?;
        Ok(body.to_vec())
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, RelayError> {
        let (_, reply) = self.post(path, body).await?;
        Self::json(&reply)
    }

    async fn post_json_optional<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, RelayError> {
        let (status, reply) = self.post(path, body).await?;
        if status == 204 {
            return Ok(None);
        }
        Self::json(&reply).map(Some)
    }
}

/// A lease for `key`, or `None` on 204 (no work). A 429 `lease_cap` is an error here, so that
/// it is counted.
async fn lease(http: &Http, key: &ContributorKey) -> Result<Option<Lease>, RelayError> {
    let request = LeaseRequest::signed(key, now_ms(), None, None, None);
    http.post_json_optional("/v1/leases", &request).await
}

// ---------------------------------------------------------------------------------------------
// The relay process

struct RelayProcess {
    child: Child,
    address: SocketAddr,
    pid: u32,
}

fn relay_command() -> Command {
    let mut command = Command::new(RELAY_BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GLOWWORM_") {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "warn");
    command
}

impl RelayProcess {
    fn spawn(database: &Path, www: &Path, log: &Path) -> Result<RelayProcess> {
        let mut child = relay_command()
            .args(["serve", "--listen", "127.0.0.1:0", "--no-demo"])
            .args(["--lease-seconds", &LEASE_SECONDS.to_string()])
            .args(["--unit-size", &UNIT_SIZE.to_string()])
            .arg("--database")
            .arg(database)
            .arg("--www-dir")
            .arg(www)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("starting {RELAY_BIN}"))?;
        let pid = child.id();
        // The one line on stdout names the bound address.
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = line_tx.send(line);
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let mut relay = RelayProcess {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
        };
        let line = line_rx
            .recv_timeout(Duration::from_secs(60))
            .context("the relay did not announce its address")?;
        relay.address = line
            .trim_end()
            .strip_prefix("Glowworm relay listening on http://")
            .and_then(|address| address.parse().ok())
            .ok_or_else(|| anyhow!("unexpected first line from the relay: {line:?}"))?;
        Ok(relay)
    }

    /// SIGTERM, then up to 40 s for the relay to drain and stop (SIGKILL after that).
    fn stop(&mut self) -> Result<String> {
        // SAFETY: kill only sends a signal to the relay, our child.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok("killed: it did not stop within 40 s of SIGTERM".into())
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A requester and its API key, made by `glowworm-relay keys create` in `database`.
fn create_api_key(database: &Path, name: &str) -> Result<String> {
    let output = relay_command()
        .args(["keys", "create", "--name", name, "--database"])
        .arg(database)
        .stdin(Stdio::null())
        .output()
        .context("running glowworm-relay keys create")?;
    anyhow::ensure!(
        output.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = String::from_utf8(output.stdout)?.trim().to_string();
    anyhow::ensure!(key.starts_with("gw_"), "unexpected API key {key:?}");
    let granted = relay_command()
        .args(["budget", "grant", name, "1000000000000000", "--database"])
        .arg(database)
        .stdin(Stdio::null())
        .output()
        .context("running glowworm-relay budget grant")?;
    anyhow::ensure!(
        granted.status.success(),
        "budget grant failed: {}",
        String::from_utf8_lossy(&granted.stderr)
    );
    Ok(key)
}

/// A process's resident memory now (VmRSS) and its peak (VmHWM), in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |n| n * 1024)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

/// User and system CPU time of a process so far, in seconds (its threads, living and exited).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    // After the name: state is field 3 of stat(5); utime and stime are 14 and 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    (field(11).unwrap_or(0.0) + field(12).unwrap_or(0.0)) / ticks
}

fn open_connections(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| {
        dir.flatten()
            .filter(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            })
            .count()
    })
}

// ---------------------------------------------------------------------------------------------
// One run

/// What one run measured.
struct RunReport {
    jobs: Vec<JobRecord>,
    /// Completion times of the jobs, seconds, sorted; infinite for a job that did not complete.
    completion_s: Vec<f64>,
    /// Health-check latencies during the honest submissions, ms, sorted; and failures.
    health_ms: Vec<f64>,
    health_failures: u64,
    /// The first failure's error, if any.
    health_worst_failure: Option<String>,
    /// Relay VmRSS: at the start, every 10 s, at the end of the honest work, after the
    /// attackers left; and its VmHWM at the end.
    memory_start: u64,
    memory_end: u64,
    memory_after: u64,
    memory_peak_sampled: u64,
    memory_hwm: u64,
    memory_series: Vec<(f64, u64)>,
    /// The relay's CPU time so far (s), every 10 s: (seconds since the start, CPU seconds).
    cpu_series: Vec<(f64, f64)>,
    /// Most sockets the relay held open at once (sampled with the memory).
    relay_sockets_peak: usize,
    relay_cpu_s: f64,
    wall_s: f64,
    contributors: ContributorTally,
    requesters: RequesterTally,
    attack: Option<AttackTally>,
    attack_cpu_s: f64,
    stats: Option<Stats>,
    database: DbFacts,
    relay_stop: String,
    log: LogSummary,
}

fn run(settings: &Settings, attacked: bool) -> Result<RunReport> {
    let name = if attacked {
        "B (honest + attackers)"
    } else {
        "A (honest only)"
    };
    eprintln!("abuse soak: run {name} ...");
    let mut dir = tempfile::TempDir::new()?;
    if settings.keep {
        dir.disable_cleanup(true);
        eprintln!("abuse soak: run {name} keeps {}", dir.path().display());
    }
    let database = dir.path().join("relay.sqlite");
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www)?;
    let api_keys = (0..REQUESTERS)
        .map(|r| create_api_key(&database, &format!("honest-{r}")))
        .collect::<Result<Vec<_>>>()?;
    let log_path = dir.path().join("relay.log");
    let mut relay = RelayProcess::spawn(&database, &www, &log_path)?;
    let (pid, address) = (relay.pid, relay.address);
    let t0 = Instant::now();
    let cpu_start = cpu_seconds(pid);
    let memory_start = memory_of(pid).0;

    // The relay's memory every 10 s, on a thread of its own.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut series = vec![(0.0, memory_start)];
            let mut cpu = vec![(0.0, 0.0)];
            let mut sockets = 0;
            let mut next = t0 + MEMORY_EVERY;
            while sampling.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    let at = (Instant::now() - t0).as_secs_f64();
                    series.push((at, memory_of(pid).0));
                    cpu.push((at, cpu_seconds(pid) - cpu_start));
                    sockets = sockets.max(open_connections(pid));
                    next += MEMORY_EVERY;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (series, cpu, sockets)
        })
    };

    let keys: Vec<ContributorKey> = (0..CONTRIBUTORS)
        .map(|i| honest_key(settings.seed, i))
        .collect();
    let mut attacker = if attacked {
        let orders = AttackOrders {
            relay: address,
            honest_keys: keys.iter().map(ContributorKey::public_hex).collect(),
        };
        Some(AttackerProcess::spawn(&orders)?)
    } else {
        None
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("honest")
        .enable_all()
        .build()?;
    let honest = runtime.block_on(honest_side(address, keys, api_keys, settings, t0));
    let memory_end = memory_of(pid).0;
    let (attack, attack_cpu_s) = match attacker.take() {
        Some(attacker) => {
            let (tally, cpu) = attacker.stop()?;
            (Some(tally), cpu)
        }
        None => (None, 0.0),
    };
    let honest = honest?;
    // What the relay holds once the attackers have gone.
    std::thread::sleep(Duration::from_secs(2));
    let memory_after = memory_of(pid).0;
    let (_, memory_hwm) = memory_of(pid);
    let relay_cpu_s = cpu_seconds(pid) - cpu_start;
    let wall_s = (Instant::now() - t0).as_secs_f64();
    let stats = runtime.block_on(async {
        let http = Http::new(address, HEALTH_IP, true).ok()?;
        let (_, body) = http.get("/v1/stats").await.ok()?;
        serde_json::from_slice::<Stats>(&body).ok()
    });
    sampling.store(false, Ordering::Relaxed);
    let (mut memory_series, cpu_series, relay_sockets_peak) =
        sampler.join().map_err(|_| anyhow!("sampler panicked"))?;
    memory_series.push((wall_s, memory_after));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let relay_stop = relay.stop()?;

    let honest_keys: HashSet<String> = (0..CONTRIBUTORS)
        .map(|i| honest_key(settings.seed, i).public_hex())
        .collect();
    let database = DbFacts::read(&database, &honest_keys)?;
    let log = LogSummary::read(&log_path);

    let HonestOutcome {
        jobs,
        contributors,
        requesters,
        health,
    } = honest;
    // A job that did not complete counts as taking forever.
    let mut completion_s: Vec<f64> = jobs
        .iter()
        .map(|j| j.took.map_or(f64::INFINITY, |t| t.as_secs_f64()))
        .collect();
    completion_s.sort_by(f64::total_cmp);
    let window = WARMUP..WARMUP + Duration::from_secs(settings.seconds);
    let in_window: Vec<&HealthSample> = health.iter().filter(|s| window.contains(&s.at)).collect();
    let mut health_ms: Vec<f64> = in_window
        .iter()
        .filter_map(|s| s.latency.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0))
        .collect();
    health_ms.sort_by(f64::total_cmp);
    let failures: Vec<&String> = in_window
        .iter()
        .filter_map(|s| s.latency.as_ref().err())
        .collect();
    let memory_peak_sampled = memory_series
        .iter()
        .map(|(_, m)| *m)
        .chain([memory_end])
        .max()
        .unwrap_or(0);
    let report = RunReport {
        completion_s,
        health_failures: failures.len() as u64,
        health_worst_failure: failures.first().map(|s| s.to_string()),
        health_ms,
        jobs,
        memory_start,
        memory_end,
        memory_after,
        memory_peak_sampled,
        memory_hwm,
        memory_series,
        cpu_series,
        relay_sockets_peak,
        relay_cpu_s,
        wall_s,
        contributors,
        requesters,
        attack,
        attack_cpu_s,
        stats,
        database,
        relay_stop,
        log,
    };
    let done = report.jobs.iter().filter(|j| j.took.is_some()).count();
    eprintln!(
        "abuse soak: run {name}: {done}/{} jobs done, p50 {:.2} s, p90 {:.2} s, health p99 \
         {:.1} ms, relay memory {:.0} -> {:.0} MB, relay CPU {:.0} s",
        report.jobs.len(),
        percentile(&report.completion_s, 0.5),
        percentile(&report.completion_s, 0.9),
        percentile(&report.health_ms, 0.99),
        mb(report.memory_start),
        mb(report.memory_end),
        report.relay_cpu_s
    );
    report.log.print(name);
    Ok(report)
}

/// Honest contributor `i`'s key: from the seed, so both runs use the same keys.
fn honest_key(seed: u64, i: u8) -> ContributorKey {
    let mut rng = Rng::new(seed ^ 0x6b65_7973 ^ (u64::from(i) << 32));
    let mut secret = [0u8; 32];
    for chunk in secret.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    ContributorKey::from_secret_bytes(&secret).expect("32 bytes")
}

struct HonestOutcome {
    jobs: Vec<JobRecord>,
    contributors: ContributorTally,
    requesters: RequesterTally,
    health: Vec<HealthSample>,
}

async fn honest_side(
    relay: SocketAddr,
    keys: Vec<ContributorKey>,
    api_keys: Vec<String>,
    settings: &Settings,
    t0: Instant,
) -> Result<HonestOutcome> {
    let health_stop = Arc::new(AtomicBool::new(false));
    let health = tokio::spawn(health_poller(
        Http::new(relay, HEALTH_IP, true)?,
        t0,
        health_stop.clone(),
    ));
    tokio::time::sleep_until((t0 + WARMUP).into()).await;
    let start = Instant::now();
    let submit_for = Duration::from_secs(settings.seconds);
    let drain_deadline = start + submit_for + DRAIN_LIMIT;

    let stop = Arc::new(AtomicBool::new(false));
    let mut contributors = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let http = Http::new(relay, honest_contributor_ip(i as u8), false)?;
        contributors.push(tokio::spawn(honest_contributor(http, key, stop.clone())));
    }
    let mut requesters = Vec::new();
    for (r, api_key) in api_keys.into_iter().enumerate() {
        let http = Http::new(relay, requester_ip(r as u8), false)?;
        let plan = RequesterPlan {
            index: r as u8,
            seed: settings.seed,
            start,
            submit_for,
            drain_deadline,
        };
        requesters.push(tokio::spawn(requester(http, api_key, plan)));
    }
    let mut jobs = Vec::new();
    let mut requester_tally = RequesterTally::default();
    for task in requesters {
        let (records, tally) = task.await?;
        jobs.extend(records);
        requester_tally.merge(tally);
    }
    stop.store(true, Ordering::Relaxed);
    let mut contributor_tally = ContributorTally::default();
    for task in contributors {
        contributor_tally.merge(task.await?);
    }
    health_stop.store(true, Ordering::Relaxed);
    let health = health.await?;
    Ok(HonestOutcome {
        jobs,
        contributors: contributor_tally,
        requesters: requester_tally,
        health,
    })
}

struct HealthSample {
    /// Since the run's start.
    at: Duration,
    latency: Result<Duration, String>,
}

/// `GET /v1/health` every 200 ms, each over a fresh connection.
async fn health_poller(http: Http, t0: Instant, stop: Arc<AtomicBool>) -> Vec<HealthSample> {
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(HEALTH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let began = Instant::now();
        let reply = tokio::time::timeout(Duration::from_secs(5), http.get("/v1/health")).await;
        let latency = match reply {
            Ok(Ok(_)) => Ok(began.elapsed()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no reply within 5 s".to_string()),
        };
        samples.push(HealthSample {
            at: began - t0,
            latency,
        });
    }
    samples
}

/// What the honest contributors saw.
#[derive(Default)]
struct ContributorTally {
    credited: u64,
    /// Replies other than a credited result, by status and code ("204 no work",
    /// "429 lease_cap", ...).
    outcomes: BTreeMap<String, u64>,
}

impl ContributorTally {
    fn merge(&mut self, other: ContributorTally) {
        self.credited += other.credited;
        for (outcome, n) in other.outcomes {
            *self.outcomes.entry(outcome).or_default() += n;
        }
    }

    fn note(&mut self, outcome: String) {
        *self.outcomes.entry(outcome).or_default() += 1;
    }
}

enum Cycle {
    Credited,
    /// A receipt that did not credit the unit (its status).
    NotCredited(String),
    NoWork,
}

/// An honest contributor: lease, fetch (inputs cached by hash), compute, sign, submit, repeat;
/// 1 s of rest after 204 or 429, as the worker does on Retry-After.
async fn honest_contributor(
    http: Http,
    key: ContributorKey,
    stop: Arc<AtomicBool>,
) -> ContributorTally {
    let mut tally = ContributorTally::default();
    // Kernels and inputs cached by content hash, as the page does: about 256 of the jobs'
    // 8 KiB panels.
    let fetcher = Fetcher::new(16, 2 << 20);
    while !stop.load(Ordering::Relaxed) {
        match honest_unit(&http, &key, &fetcher).await {
            Ok(Cycle::Credited) => tally.credited += 1,
            Ok(Cycle::NotCredited(status)) => tally.note(format!("receipt {status}")),
            Ok(Cycle::NoWork) => {
                tally.note("204 no work".into());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                let outcome = protocol_outcome(&e);
                let rest = if outcome.starts_with("429") {
                    Duration::from_secs(1)
                } else {
                    Duration::from_millis(200)
                };
                tally.note(outcome);
                tokio::time::sleep(rest).await;
            }
        }
    }
    tally
}

fn protocol_outcome(error: &ProtocolError<RelayError>) -> String {
    match error {
        ProtocolError::Transport(e) => e.outcome(),
        other => format!("protocol: {other}"),
    }
}

async fn honest_unit(
    http: &Http,
    key: &ContributorKey,
    fetcher: &Fetcher,
) -> Result<Cycle, ProtocolError<RelayError>> {
    let Some(lease) = lease(http, key).await.map_err(ProtocolError::Transport)? else {
        return Ok(Cycle::NoWork);
    };
    let fetched = fetcher.fetch(http, key, &lease).await?;
    let Work::Matmul(shape) = fetched.work else {
        return Err(ProtocolError::BadLease {
            lease_id: lease.lease_id.clone(),
            reason: "not a matmul unit".into(),
        });
    };
    let [a, b] = [&fetched.inputs[0], &fetched.inputs[1]]
        .map(|bytes| bytes_to_f32s(bytes).expect("the fetcher checked the inputs' hashes"));
    let output = matmul::reference(&a, &b, shape);
    let submission = protocol::submission(key, &lease, &output);
    let receipt: ResultReceipt = protocol::submit(http, &submission).await?;
    Ok(if receipt.status == "verified" && receipt.credited > 0 {
        Cycle::Credited
    } else {
        Cycle::NotCredited(receipt.status)
    })
}

/// One honest job, as its requester saw it.
struct JobRecord {
    /// From the start of its upload to the poll that saw it done.
    took: Option<Duration>,
    /// "done", "failed", "cancelled", "unfinished" or "upload failed: ...".
    state: String,
    /// What its units waited for at the last poll (the relay's `waiting`), and why it failed.
    waiting: Vec<Waiting>,
    failure: Option<String>,
}

#[derive(Default)]
struct RequesterTally {
    /// Refused or failed requests, by what went wrong ("upload: 429 rate_limited", ...).
    errors: BTreeMap<String, u64>,
    polls: u64,
}

impl RequesterTally {
    fn merge(&mut self, other: RequesterTally) {
        self.polls += other.polls;
        for (what, n) in other.errors {
            *self.errors.entry(what).or_default() += n;
        }
    }

    fn note(&mut self, what: String) {
        *self.errors.entry(what).or_default() += 1;
    }
}

struct RequesterPlan {
    index: u8,
    seed: u64,
    start: Instant,
    submit_for: Duration,
    drain_deadline: Instant,
}

impl RequesterPlan {
    /// When job `j` is uploaded: every SUBMIT_EVERY, the requesters offset by half of it, give
    /// or take the jitter, all from the seed.
    fn upload_time(&self, j: u32) -> Instant {
        let mut rng = Rng::new(self.seed ^ (u64::from(self.index) << 40) ^ u64::from(j));
        let jitter = rng.below(2 * SUBMIT_JITTER_MS + 1);
        self.start
            + SUBMIT_EVERY / 2 * u32::from(self.index)
            + SUBMIT_EVERY * j
            + Duration::from_millis(jitter)
    }

    /// Job `j`'s A and B, from the seed.
    fn matrices(&self, j: u32) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Rng::new(
            self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
                ^ (u64::from(self.index) << 48)
                ^ u64::from(j),
        );
        let a = (0..SHAPE.m * SHAPE.k).map(|_| rng.unit_f32()).collect();
        let b = (0..SHAPE.k * SHAPE.n).map(|_| rng.unit_f32()).collect();
        (a, b)
    }
}

/// A requester: uploads its jobs on its schedule and follows the unfinished ones, one poll
/// every POLL_EVERY, round robin, until all are done or the drain deadline passes.
async fn requester(
    http: Http,
    api_key: String,
    plan: RequesterPlan,
) -> (Vec<JobRecord>, RequesterTally) {
    let mut jobs: Vec<JobRecord> = Vec::new();
    let mut tally = RequesterTally::default();
    // (job id, index in `jobs`, upload start)
    let mut unfinished: VecDeque<(i64, usize, Instant)> = VecDeque::new();
    let end_of_uploads = plan.start + plan.submit_for;
    let mut j = 0;
    let mut next_upload = plan.upload_time(j);
    loop {
        let now = Instant::now();
        let uploading = next_upload < end_of_uploads;
        if uploading && now >= next_upload {
            let began = Instant::now();
            let (a, b) = plan.matrices(j);
            match upload(&http, &api_key, &a, &b, &mut tally).await {
                Ok(id) => {
                    jobs.push(JobRecord {
                        took: None,
                        state: "unfinished".into(),
                        waiting: Vec::new(),
                        failure: None,
                    });
                    unfinished.push_back((id, jobs.len() - 1, began));
                }
                Err(e) => jobs.push(JobRecord {
                    took: None,
                    state: format!("upload failed: {e}"),
                    waiting: Vec::new(),
                    failure: None,
                }),
            }
            j += 1;
            next_upload = plan.upload_time(j);
            continue;
        }
        if !uploading && (unfinished.is_empty() || now >= plan.drain_deadline) {
            break;
        }
        if let Some((id, index, began)) = unfinished.pop_front() {
            tally.polls += 1;
            let request = http
                .client
                .get(http.url(&format!("/v1/jobs/{id}")))
                .bearer_auth(&api_key);
            match http.send(request).await {
                Ok((_, body)) => match serde_json::from_slice::<JobStatus>(&body) {
                    Ok(status) if status.state == "done" => {
                        jobs[index].took = Some(began.elapsed());
                        jobs[index].state = "done".into();
                    }
                    Ok(status) if status.state == "queued" => {
                        jobs[index].waiting = status.waiting;
                        unfinished.push_back((id, index, began))
                    }
                    Ok(status) => {
                        jobs[index].state = status.state;
                        jobs[index].failure = status.failure;
                    }
                    Err(e) => {
                        tally.note(format!("poll: bad reply: {e}"));
                        unfinished.push_back((id, index, began));
                    }
                },
                Err(e) => {
                    tally.note(format!("poll: {}", e.outcome()));
                    unfinished.push_back((id, index, began));
                }
            }
        }
        let mut wake = Instant::now() + POLL_EVERY;
        if uploading {
            wake = wake.min(next_upload);
        }
        tokio::time::sleep_until(wake.into()).await;
    }
    (jobs, tally)
}

/// `POST /v1/jobs` (multipart: the spec, A and B as raw f32): the new job's id. A refusal or a
/// network error is retried after a second, three times.
async fn upload(
    http: &Http,
    api_key: &str,
    a: &[f32],
    b: &[f32],
    tally: &mut RequesterTally,
) -> Result<i64, RelayError> {
    let spec = serde_json::json!({"kind": "matmul", "shape": SHAPE}).to_string();
    let a = glowworm_protocol::encoding::f32s_to_bytes(a);
    let b = glowworm_protocol::encoding::f32s_to_bytes(b);
    let mut tries = 0;
    loop {
        let part = |bytes: &Vec<u8>, name: &str| {
            reqwest::multipart::Part::bytes(bytes.clone())
                .file_name(format!("{name}.f32"))
                .mime_str("application/octet-stream")
                .expect("a valid media type")
        };
        let form = reqwest::multipart::Form::new()
            .part(
                "job",
                reqwest::multipart::Part::text(spec.clone())
                    .mime_str("application/json")
                    .expect("a valid media type"),
            )
            .part("a", part(&a, "a"))
            .part("b", part(&b, "b"));
        let request = http
            .client
            .post(http.url("/v1/jobs"))
            .bearer_auth(api_key)
            .multipart(form);
        match http.send(request).await {
            Ok((_, body)) => return Ok(Http::json::<JobStatus>(&body)?.id),
            Err(e) => {
                tally.note(format!("upload: {}", e.outcome()));
                tries += 1;
                if tries >= 4 {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The relay's database, read after a run

#[derive(Default)]
struct DbFacts {
    honest_credits: i64,
    honest_accounts: u64,
    /// Ledger rows of any account other than the honest contributors' keys.
    other_accounts: u64,
    other_credits: i64,
    other_rows: u64,
    contributor_rows_honest: u64,
    contributor_rows_other: u64,
    units_failed: i64,
    jobs: BTreeMap<String, i64>,
    /// Leases by holder (honest or not) and state; an active lease past its deadline counts as
    /// "expired".
    leases_honest: BTreeMap<String, u64>,
    leases_other: BTreeMap<String, u64>,
    /// Distinct keys that held a lease, honest and other.
    lease_keys_other: u64,
    results_other: BTreeMap<String, u64>,
    reputation_quarantined: i64,
    /// The honest jobs' units: how many, how many were leased to other keys at least once, the
    /// most leases to other keys of one unit, and the longest from a unit's first lease to its
    /// verified result (ms).
    units_total: u64,
    units_leased_to_others: u64,
    most_leases_to_others: u64,
    longest_unit_ms: i64,
}

impl DbFacts {
    fn read(database: &Path, honest: &HashSet<String>) -> Result<DbFacts> {
        let conn = rusqlite::Connection::open_with_flags(
            database,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {} read-only", database.display()))?;
        let mut facts = DbFacts::default();
        let mut ledger =
            conn.prepare("SELECT account, SUM(amount), COUNT(*) FROM ledger GROUP BY account")?;
        let rows = ledger.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (account, amount, count) = row?;
            if honest.contains(&account) {
                facts.honest_credits += amount;
                facts.honest_accounts += 1;
            } else {
                facts.other_accounts += 1;
                facts.other_credits += amount;
                facts.other_rows += count as u64;
            }
        }
        let mut contributors = conn.prepare("SELECT public_key FROM contributors")?;
        for key in contributors.query_map([], |row| row.get::<_, String>(0))? {
            if honest.contains(&key?) {
                facts.contributor_rows_honest += 1;
            } else {
                facts.contributor_rows_other += 1;
            }
        }
        facts.units_failed = conn.query_row(
            "SELECT COUNT(*) FROM units WHERE state = 'failed'",
            [],
            |row| row.get(0),
        )?;
        let mut jobs = conn.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        for row in jobs.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })? {
            let (state, n) = row?;
            facts.jobs.insert(state, n);
        }
        let now = now_ms();
        let mut leases = conn.prepare(
            "SELECT public_key,
                    CASE WHEN state = 'active' AND deadline_ms < ?1 THEN 'expired' ELSE state END,
                    COUNT(*)
             FROM leases GROUP BY 1, 2",
        )?;
        let mut other_keys = HashSet::new();
        for row in leases.query_map([now], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })? {
            let (key, state, n) = row?;
            let map = if honest.contains(&key) {
                &mut facts.leases_honest
            } else {
                other_keys.insert(key);
                &mut facts.leases_other
            };
            *map.entry(state).or_default() += n as u64;
        }
        facts.lease_keys_other = other_keys.len() as u64;
        let mut results =
            conn.prepare("SELECT public_key, state, COUNT(*) FROM results GROUP BY 1, 2")?;
        for row in results.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })? {
            let (key, state, n) = row?;
            if !honest.contains(&key) {
                *facts.results_other.entry(state).or_default() += n as u64;
            }
        }
        let mut by_unit: HashMap<i64, u64> = HashMap::new();
        let mut unit_leases = conn.prepare("SELECT unit_id, public_key FROM leases")?;
        for row in unit_leases.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })? {
            let (unit, key) = row?;
            let others = by_unit.entry(unit).or_default();
            if !honest.contains(&key) {
                *others += 1;
            }
        }
        facts.units_total =
            conn.query_row("SELECT COUNT(*) FROM units", [], |row| row.get::<_, i64>(0))? as u64;
        facts.units_leased_to_others = by_unit.values().filter(|n| **n > 0).count() as u64;
        facts.most_leases_to_others = by_unit.values().copied().max().unwrap_or(0);
        facts.longest_unit_ms = conn.query_row(
            "SELECT COALESCE(MAX(verified_at - first_lease), 0) FROM (
                 SELECT (SELECT MIN(issued_at_ms) FROM leases WHERE unit_id = u.id) AS first_lease,
                        (SELECT MIN(created_at) FROM results
                         WHERE unit_id = u.id AND state = 'valid') AS verified_at
                 FROM units u)
             WHERE verified_at IS NOT NULL",
            [],
            |row| row.get(0),
        )?;
        facts.reputation_quarantined = conn.query_row(
            "SELECT COUNT(*) FROM reputation WHERE quarantined_at_ms IS NOT NULL",
            [],
            |row| row.get(0),
        )?;
        Ok(facts)
    }
}

/// The relay's warnings and errors (RUST_LOG=warn, its stderr), grouped by their first words.
#[derive(Default)]
struct LogSummary {
    warnings: u64,
    errors: u64,
    kinds: BTreeMap<String, u64>,
}

impl LogSummary {
    fn read(path: &Path) -> LogSummary {
        let mut summary = LogSummary::default();
        let Ok(file) = std::fs::File::open(path) else {
            return summary;
        };
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            let level = if line.contains(" WARN ") {
                summary.warnings += 1;
                "WARN"
            } else if line.contains(" ERROR ") {
                summary.errors += 1;
                "ERROR"
            } else {
                continue;
            };
            let message = line
                .split_once(level)
                .map_or(line.as_str(), |(_, rest)| rest.trim());
            *summary
                .kinds
                .entry(format!("{level} {}", normalize(message)))
                .or_default() += 1;
        }
        summary
    }

    fn print(&self, run: &str) {
        if self.kinds.is_empty() {
            return;
        }
        eprintln!(
            "abuse soak: run {run}: the relay logged {} warnings and {} errors; the most frequent:",
            self.warnings, self.errors
        );
        let mut kinds: Vec<(&String, &u64)> = self.kinds.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1));
        for (kind, n) in kinds.into_iter().take(8) {
            eprintln!("  {n:>7} x {kind}");
        }
    }
}

/// A log message with its numbers and hex strings (unit ids, keys, hashes) replaced by `#`,
/// cut to 120 characters, so that messages of one kind group together.
fn normalize(message: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let numeric =
            word.chars().any(|c| c.is_ascii_digit()) && word.chars().all(|c| c.is_ascii_hexdigit());
        out.push_str(if numeric { "#" } else { word.as_str() });
        word.clear();
    };
    for c in message.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.chars().take(120).collect()
}

// ---------------------------------------------------------------------------------------------
// The attackers' process

#[derive(Serialize, Deserialize)]
struct AttackOrders {
    relay: SocketAddr,
    /// The honest contributors' public keys, which the key-spenders name.
    honest_keys: Vec<String>,
}

/// What one kind of attacker did, and what the relay answered.
#[derive(Default, Serialize, Deserialize)]
struct KindTally {
    addresses: String,
    keys: u64,
    requests: u64,
    /// "what → reply" (such as "lease → 429 lease_cap") → count.
    outcomes: BTreeMap<String, u64>,
}

type AttackTally = BTreeMap<String, KindTally>;

struct AttackerProcess {
    child: Child,
}

impl AttackerProcess {
    fn spawn(orders: &AttackOrders) -> Result<AttackerProcess> {
        let child = Command::new(std::env::current_exe()?)
            .env(ATTACKER_VAR, serde_json::to_string(orders)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the attackers' process")?;
        Ok(AttackerProcess { child })
    }

    /// Closes the attackers' stdin, which stops them; their tally and CPU time.
    fn stop(mut self) -> Result<(AttackTally, f64)> {
        let cpu = cpu_seconds(self.child.id());
        drop(self.child.stdin.take());
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut stdout)?;
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "the attackers' process failed: {status}");
        Ok((serde_json::from_str(&stdout)?, cpu))
    }
}

impl Drop for AttackerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The tallies of every attacker in the process.
#[derive(Clone, Default)]
struct Tallies(Arc<Mutex<AttackTally>>);

impl Tallies {
    fn with(&self, kind: &str, f: impl FnOnce(&mut KindTally)) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(kind.to_string()).or_default());
    }

    fn request(&self, kind: &str, what: &str, outcome: &str) {
        self.with(kind, |t| {
            t.requests += 1;
            *t.outcomes.entry(format!("{what} → {outcome}")).or_default() += 1;
        });
    }

    fn new_key(&self, kind: &str) {
        self.with(kind, |t| t.keys += 1);
    }
}

fn reply_outcome<T>(reply: &Result<T, RelayError>, ok: &str) -> String {
    match reply {
        Ok(_) => ok.to_string(),
        Err(e) => e.outcome(),
    }
}

/// Sleeps for `pause`; false when the attackers are told to stop.
async fn rest(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = stop.wait_for(|stopped| *stopped) => return false,
    }
    !*stop.borrow()
}

fn attacker_ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn range_text(prefix: &str, range: &std::ops::RangeInclusive<u8>) -> String {
    format!("{prefix}{}–{}", range.start(), range.end())
}

fn attack(orders: AttackOrders) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("attack")
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // The bench closes our stdin to stop us.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = stop_tx.send(true);
    });
    let tallies = Tallies::default();
    let relay = orders.relay;
    tallies.with(HOARDERS, |t| {
        t.addresses = range_text("127.0.0.", &HOARDER_IPS)
    });
    tallies.with(EXPIRERS, |t| {
        t.addresses = range_text("127.0.0.", &EXPIRER_IPS)
    });
    tallies.with(GARBAGE, |t| {
        t.addresses = range_text("127.0.0.", &GARBAGE_IPS)
    });
    tallies.with(SPENDERS, |t| {
        t.addresses = range_text("127.0.0.", &SPENDER_IPS)
    });
    tallies.with(SILENT, |t| {
        t.addresses = format!("127.0.2.1–{SILENT_ADDRESSES}, {SILENT_PER_ADDRESS} each")
    });
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for last in HOARDER_IPS {
            let http = Http::new(relay, attacker_ip(last), false)?;
            tasks.push(tokio::spawn(hoarder(
                http,
                tallies.clone(),
                stop_rx.clone(),
            )));
        }
        for last in EXPIRER_IPS {
            let http = Http::new(relay, attacker_ip(last), false)?;
            tasks.push(tokio::spawn(expirer(
                http,
                tallies.clone(),
                stop_rx.clone(),
            )));
        }
        for last in GARBAGE_IPS {
            let http = Http::new(relay, attacker_ip(last), false)?;
            tasks.push(tokio::spawn(garbage_sender(
                http,
                tallies.clone(),
                stop_rx.clone(),
            )));
        }
        for last in SPENDER_IPS {
            let http = Http::new(relay, attacker_ip(last), false)?;
            tasks.push(tokio::spawn(key_spender(
                http,
                orders.honest_keys.clone(),
                tallies.clone(),
                stop_rx.clone(),
            )));
        }
        let mut rng = Rng::random();
        for address in 1..=SILENT_ADDRESSES {
            for _ in 0..SILENT_PER_ADDRESS {
                let delay = Duration::from_millis(rng.below(SILENT_RAMP.as_millis() as u64));
                tasks.push(tokio::spawn(silent_connection(
                    relay,
                    Ipv4Addr::new(127, 0, 2, address),
                    delay,
                    tallies.clone(),
                    stop_rx.clone(),
                )));
            }
        }
        let mut stop = stop_rx.clone();
        let _ = stop.wait_for(|stopped| *stopped).await;
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(Duration::from_secs(15), all)
            .await
            .is_err()
        {
            eprintln!("abuse soak: some attackers did not stop within 15 s");
        }
        anyhow::Ok(())
    })?;
    let tally = tallies.0.lock().unwrap_or_else(|e| e.into_inner());
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &*tally)?;
    stdout.flush()?;
    drop(stdout);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn fresh_key() -> ContributorKey {
    ContributorKey::generate().expect("a random source")
}

/// Fresh keys, each leasing what it can (a new key may hold 2), none ever returned.
async fn hoarder(http: Http, tallies: Tallies, mut stop: watch::Receiver<bool>) {
    let mut key = fresh_key();
    tallies.new_key(HOARDERS);
    let mut held = 0;
    loop {
        let reply = lease(&http, &key).await;
        let outcome = match &reply {
            Ok(Some(_)) => "200 lease".to_string(),
            Ok(None) => "204 no work".to_string(),
            Err(e) => e.outcome(),
        };
        tallies.request(HOARDERS, "lease", &outcome);
        if matches!(reply, Ok(Some(_))) {
            held += 1;
        }
        if held >= 2 || outcome == "429 lease_cap" {
            key = fresh_key();
            tallies.new_key(HOARDERS);
            held = 0;
        }
        if !rest(&mut stop, HOARD_EVERY).await {
            break;
        }
    }
}

/// A few keys that lease what they can and let it expire, then lease again.
async fn expirer(http: Http, tallies: Tallies, mut stop: watch::Receiver<bool>) {
    let keys: Vec<ContributorKey> = (0..EXPIRER_KEYS).map(|_| fresh_key()).collect();
    tallies.with(EXPIRERS, |t| t.keys += keys.len() as u64);
    loop {
        for key in &keys {
            let reply = lease(&http, key).await;
            let outcome = match &reply {
                Ok(Some(_)) => "200 lease".to_string(),
                Ok(None) => "204 no work".to_string(),
                Err(e) => e.outcome(),
            };
            tallies.request(EXPIRERS, "lease", &outcome);
        }
        if !rest(&mut stop, EXPIRE_ROUND).await {
            break;
        }
    }
}

/// Leases, and at once submits zeros or random floats, properly signed; a fresh key every few
/// leases, or when the relay quarantines it.
async fn garbage_sender(http: Http, tallies: Tallies, mut stop: watch::Receiver<bool>) {
    let mut rng = Rng::random();
    let mut key = fresh_key();
    tallies.new_key(GARBAGE);
    let mut uses = 0;
    let mut zeros = true;
    loop {
        let reply = lease(&http, &key).await;
        let outcome = match &reply {
            Ok(Some(_)) => "200 lease".to_string(),
            Ok(None) => "204 no work".to_string(),
            Err(e) => e.outcome(),
        };
        tallies.request(GARBAGE, "lease", &outcome);
        let mut retire = outcome == "403 quarantined" || outcome == "429 lease_cap";
        if let Ok(Some(lease)) = reply {
            let floats = (lease.output_bytes / 4) as usize;
            let output: Vec<f32> = if zeros {
                vec![0.0; floats]
            } else {
                (0..floats).map(|_| rng.unit_f32()).collect()
            };
            let what = if zeros {
                "result of zeros"
            } else {
                "result of random floats"
            };
            zeros = !zeros;
            let submission = protocol::submission(&key, &lease, &output);
            let reply: Result<ResultReceipt, RelayError> =
                http.post_json("/v1/results", &submission).await;
            let outcome = match &reply {
                Ok(receipt) => format!("200 {} (credited {})", receipt.status, receipt.credited),
                Err(e) => e.outcome(),
            };
            tallies.request(GARBAGE, what, &outcome);
            uses += 1;
            retire |= uses >= GARBAGE_KEY_USES;
        }
        if retire {
            key = fresh_key();
            tallies.new_key(GARBAGE);
            uses = 0;
        }
        if !rest(&mut stop, GARBAGE_EVERY).await {
            break;
        }
    }
}

/// A lease id of the relay's form (48-bit issue time and 80 random bits, hex) that names no
/// lease.
fn made_up_lease_id(rng: &mut Rng) -> String {
    format!("{:012x}{}", now_ms() & 0xffff_ffff_ffff, rng.hex(10))
}

/// As fast as the per-address rate limit allows: lease requests and releases naming honest
/// keys (signed by the attacker's own key), releases of leases it does not hold, lease requests
/// from made-up keys and from random bytes.
async fn key_spender(
    http: Http,
    honest_keys: Vec<String>,
    tallies: Tallies,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = Rng::random();
    let own = fresh_key();
    tallies.new_key(SPENDERS);
    let mut ticks = tokio::time::interval(SPEND_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round: u64 = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        round += 1;
        let victim = &honest_keys[rng.below(honest_keys.len() as u64) as usize];
        match round % 10 {
            // A lease request in an honest key's name, signed by the attacker's key.
            0..=3 => {
                let signed_at_ms = now_ms();
                let forged = LeaseRequest {
                    public_key: victim.clone(),
                    signed_at_ms,
                    signature: own.sign_lease(signed_at_ms, Default::default()),
                    adapter: None,
                    partner: None,
                    origin: None,
                };
                let reply = http.post("/v1/leases", &forged).await;
                tallies.request(
                    SPENDERS,
                    "lease in an honest key's name",
                    &reply_outcome(&reply, "200"),
                );
            }
            // A release in an honest key's name of a made-up lease, signed by the attacker.
            4 => {
                let lease_id = made_up_lease_id(&mut rng);
                let forged = ReleaseRequest {
                    public_key: victim.clone(),
                    signature: own.sign_release(&lease_id, ReleaseReason::Stopped.as_str()),
                    reason: Some(ReleaseReason::Stopped),
                };
                let reply = http
                    .post(&format!("/v1/leases/{lease_id}/release"), &forged)
                    .await;
                tallies.request(
                    SPENDERS,
                    "release in an honest key's name",
                    &reply_outcome(&reply, "200"),
                );
            }
            // Its own key's release of a lease it does not hold.
            5 => {
                let lease_id = made_up_lease_id(&mut rng);
                let release = ReleaseRequest::signed(&own, &lease_id, ReleaseReason::Stopped);
                let reply = http
                    .post(&format!("/v1/leases/{lease_id}/release"), &release)
                    .await;
                tallies.request(
                    SPENDERS,
                    "release of a lease it does not hold",
                    &reply_outcome(&reply, "200"),
                );
            }
            // A lease request from a made-up key, properly signed; a lease it gets goes back.
            6..=8 => {
                let key = fresh_key();
                tallies.new_key(SPENDERS);
                let reply = lease(&http, &key).await;
                let outcome = match &reply {
                    Ok(Some(_)) => "200 lease".to_string(),
                    Ok(None) => "204 no work".to_string(),
                    Err(e) => e.outcome(),
                };
                tallies.request(SPENDERS, "lease from a made-up key", &outcome);
                if let Ok(Some(lease)) = reply {
                    let release =
                        ReleaseRequest::signed(&key, &lease.lease_id, ReleaseReason::Stopped);
                    let reply = http
                        .post(&format!("/v1/leases/{}/release", lease.lease_id), &release)
                        .await;
                    tallies.request(
                        SPENDERS,
                        "release of that lease",
                        &reply_outcome(&reply, "200"),
                    );
                }
            }
            // Random bytes for a key and a signature.
            _ => {
                let junk = LeaseRequest {
                    public_key: rng.hex(32),
                    signed_at_ms: now_ms(),
                    signature: rng.hex(64),
                    adapter: None,
                    partner: None,
                    origin: None,
                };
                let reply = http.post("/v1/leases", &junk).await;
                tallies.request(
                    SPENDERS,
                    "lease from random bytes",
                    &reply_outcome(&reply, "200"),
                );
            }
        }
    }
}

/// A TCP connection from `local` that sends nothing, reopened 1-2 s after the relay closes it.
async fn silent_connection(
    relay: SocketAddr,
    local: Ipv4Addr,
    delay: Duration,
    tallies: Tallies,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = Rng::random();
    if !rest(&mut stop, delay).await {
        return;
    }
    loop {
        let connected = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::V4(local), 0))?;
            socket.connect(relay).await
        };
        let outcome = match tokio::time::timeout(Duration::from_secs(10), connected).await {
            Err(_) => "connect timed out (10 s)".to_string(),
            Ok(Err(e)) => format!("connect error: {}", e.kind()),
            Ok(Ok(mut stream)) => {
                let opened = Instant::now();
                let mut got = 0usize;
                let mut buf = [0u8; 512];
                let ended = loop {
                    tokio::select! {
                        read = stream.read(&mut buf) => match read {
                            Ok(0) => break None,
                            Ok(n) => got += n,
                            Err(e) => break Some(e.kind()),
                        },
                        _ = stop.wait_for(|stopped| *stopped) => {
                            tallies.request(SILENT, "connection", "still open when the attack ended");
                            return;
                        }
                    }
                };
                let held = opened.elapsed().as_secs_f64();
                match (got, ended) {
                    (n, _) if n > 0 => "answered 429 and closed (over the per-address cap)".into(),
                    (_, Some(kind)) => format!("reset after {}: {kind}", seconds_bucket(held)),
                    (_, None) => format!("closed by the relay after {}", seconds_bucket(held)),
                }
            }
        };
        tallies.request(SILENT, "connection", &outcome);
        let pause = Duration::from_millis(1000 + rng.below(1000));
        if !rest(&mut stop, pause).await {
            break;
        }
    }
}

fn seconds_bucket(seconds: f64) -> &'static str {
    match seconds {
        s if s < 1.0 => "under 1 s",
        s if s < 9.0 => "1-9 s",
        s if s < 12.0 => "9-12 s (the header timeout)",
        s if s < 30.0 => "12-30 s",
        _ => "30 s or more",
    }
}

// ---------------------------------------------------------------------------------------------
// The report

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Seconds, or "never" for a job that did not complete.
fn seconds_or_never(seconds: f64) -> String {
    if seconds.is_finite() {
        format!("{seconds:.2}")
    } else {
        "never".into()
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(what, n)| format!("{what}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Markdown report, and the correctness failures found (empty when none).
fn render(settings: &Settings, a: &RunReport, b: &RunReport) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut failures = Vec::new();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(out, "## Relay under abuse: honest work beside attackers\n");
    let _ = writeln!(
        out,
        "The real relay binary on 127.0.0.1, a fresh SQLite database per run, default settings \
         (rate limits, lease caps, connection limits) except lease_seconds {LEASE_SECONDS}, \
         unit_size {UNIT_SIZE} and no demo jobs. Run A: the honest workload alone; run B: the \
         same workload (seed {}) with attackers. Each run: {} s of start, then {} s of honest \
         uploads, then up to {} s for the jobs to finish. Honest: {REQUESTERS} requesters, each \
         uploading a {}x{}x{} matmul ({} units) every {:.1} s; {CONTRIBUTORS} contributors, each \
         with its own key and loopback address, computing on the CPU and resting 1 s after 204 \
         or 429. Attackers (run B, a process of their own): hoarders, expirers, garbage senders \
         and key-spenders on 4, 4, 4 and 2 loopback addresses, and {} silent connections from \
         {SILENT_ADDRESSES} addresses ({SILENT_PER_ADDRESS} each; the cap is 64). Health: `GET \
         /v1/health` every {} ms over a fresh connection, figures over the upload window. \
         {cpus} CPUs shared by the relay, the honest side and the attackers; {} open files \
         allowed.\n",
        settings.seed,
        WARMUP.as_secs(),
        settings.seconds,
        DRAIN_LIMIT.as_secs(),
        SHAPE.m,
        SHAPE.n,
        SHAPE.k,
        (SHAPE.m / UNIT_SIZE) * (SHAPE.n / UNIT_SIZE),
        SUBMIT_EVERY.as_secs_f64(),
        usize::from(SILENT_ADDRESSES) * SILENT_PER_ADDRESS,
        HEALTH_EVERY.as_millis(),
        open_files_limit(),
    );
    let _ = writeln!(
        out,
        "| Figure | A: honest only | B: with attackers | Goal |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|");
    let row = |out: &mut String, figure: &str, fa: String, fb: String, goal: &str| {
        let _ = writeln!(out, "| {figure} | {fa} | {fb} | {goal} |");
    };

    // Honest jobs.
    let jobs = |r: &RunReport| {
        let done = r.jobs.iter().filter(|j| j.state == "done").count();
        let failed = r
            .jobs
            .iter()
            .filter(|j| j.state != "done" && j.state != "unfinished")
            .count();
        let unfinished = r.jobs.iter().filter(|j| j.state == "unfinished").count();
        (r.jobs.len(), done, failed, unfinished)
    };
    for (label, r) in [("A", a), ("B", b)] {
        let (total, done, failed, unfinished) = jobs(r);
        if done < total {
            let mut states: BTreeMap<&str, u64> = BTreeMap::new();
            for job in r.jobs.iter().filter(|j| j.state != "done") {
                *states.entry(job.state.as_str()).or_default() += 1;
            }
            failures.push(format!(
                "run {label}: {failed} honest jobs failed and {unfinished} did not finish within \
                 {} s of the last upload ({states:?})",
                DRAIN_LIMIT.as_secs()
            ));
        }
    }
    let job_cell = |r: &RunReport| {
        let (total, done, failed, unfinished) = jobs(r);
        format!(
            "{total} / {done} ({:.1}%) / {failed} / {unfinished}",
            100.0 * done as f64 / total.max(1) as f64
        )
    };
    row(
        &mut out,
        "honest jobs: uploaded / completed / failed / unfinished",
        job_cell(a),
        job_cell(b),
        "100% completed",
    );
    let unfinished_why = |r: &RunReport| {
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        for job in r.jobs.iter().filter(|j| j.state != "done") {
            if let Some(failure) = &job.failure {
                *reasons.entry(format!("failed: {failure}")).or_default() += 1;
            }
            for waiting in &job.waiting {
                *reasons
                    .entry(format!("{} ({})", waiting.reason, waiting.detail))
                    .or_default() += waiting.units as u64;
            }
        }
        counts(&reasons)
    };
    if a.jobs.iter().chain(&b.jobs).any(|j| j.state != "done") {
        row(
            &mut out,
            "jobs not completed: their units' last waiting reasons (units)",
            unfinished_why(a),
            unfinished_why(b),
            "",
        );
    }
    let times = |r: &RunReport| {
        [0.5, 0.9, 0.99, 1.0]
            .map(|q| seconds_or_never(percentile(&r.completion_s, q)))
            .join(" / ")
    };
    row(
        &mut out,
        "honest job completion time, s: p50 / p90 / p99 / max",
        times(a),
        times(b),
        "",
    );
    let ratio = |q: f64| percentile(&b.completion_s, q) / percentile(&a.completion_s, q);
    let verdict = |x: f64| {
        if x <= 1.5 {
            format!("{x:.2}x (met)")
        } else if x.is_finite() {
            format!("{x:.2}x (missed)")
        } else {
            "unbounded: jobs never completed (missed)".to_string()
        }
    };
    row(
        &mut out,
        "completion time with attackers / without: p50, p90",
        "1".into(),
        format!("{}, {}", verdict(ratio(0.5)), verdict(ratio(0.9))),
        "at most 1.5x",
    );
    let health = |r: &RunReport| {
        format!(
            "{:.1} / {:.1} / {:.1} ({} failed of {}{})",
            percentile(&r.health_ms, 0.5),
            percentile(&r.health_ms, 0.99),
            percentile(&r.health_ms, 1.0),
            r.health_failures,
            r.health_ms.len() as u64 + r.health_failures,
            r.health_worst_failure
                .as_ref()
                .map_or(String::new(), |e| format!("; first: {e}"))
        )
    };
    row(
        &mut out,
        "health check latency during uploads, ms: p50 / p99 / max (failed)",
        health(a),
        health(b),
        "",
    );
    let memory = |r: &RunReport| {
        format!(
            "{:.0} / {:.0} / {:.0} / {:.0} / {:.0}",
            mb(r.memory_start),
            mb(r.memory_end),
            mb(r.memory_peak_sampled),
            mb(r.memory_hwm),
            mb(r.memory_after)
        )
    };
    row(
        &mut out,
        "relay memory (VmRSS), MB: start / end of the honest work / peak sampled every 10 s / \
         VmHWM / 2 s after the attackers left",
        memory(a),
        memory(b),
        "",
    );
    let series = |r: &RunReport| {
        let n = r.memory_series.len();
        let picks = 7.min(n);
        (0..picks)
            .map(|i| {
                let (at, m) = r.memory_series[i * (n - 1) / (picks - 1).max(1)];
                format!("{:.0}@{at:.0}s", mb(m))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    row(
        &mut out,
        "relay memory through the run, MB@time",
        series(a),
        series(b),
        "",
    );
    row(
        &mut out,
        "relay CPU, s (share of the run's wall time)",
        format!(
            "{:.0} ({:.0}%)",
            a.relay_cpu_s,
            100.0 * a.relay_cpu_s / a.wall_s
        ),
        format!(
            "{:.0} ({:.0}%)",
            b.relay_cpu_s,
            100.0 * b.relay_cpu_s / b.wall_s
        ),
        "",
    );
    let cpu_by_minute = |r: &RunReport| {
        let minute = (60.0 / MEMORY_EVERY.as_secs_f64()).round() as usize;
        r.cpu_series
            .windows(minute + 1)
            .step_by(minute)
            .map(|w| {
                let (t0, c0) = w[0];
                let (t1, c1) = w[minute];
                format!("{:.0}", 100.0 * (c1 - c0) / (t1 - t0))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    row(
        &mut out,
        "relay CPU minute by minute, % of one core",
        cpu_by_minute(a),
        cpu_by_minute(b),
        "",
    );
    row(
        &mut out,
        "relay's open sockets, most sampled",
        a.relay_sockets_peak.to_string(),
        b.relay_sockets_peak.to_string(),
        "",
    );
    let contributors = |r: &RunReport| {
        format!(
            "{} credited; {}",
            r.contributors.credited,
            counts(&r.contributors.outcomes)
        )
    };
    row(
        &mut out,
        "honest contributors: results credited; other replies",
        contributors(a),
        contributors(b),
        "no 429 lease_cap",
    );
    let requesters = |r: &RunReport| {
        format!(
            "{} polls; errors: {}",
            r.requesters.polls,
            counts(&r.requesters.errors)
        )
    };
    row(
        &mut out,
        "honest requesters: status polls; refused requests",
        requesters(a),
        requesters(b),
        "",
    );
    let units_failed = |r: &RunReport| {
        format!(
            "{} (stats: {})",
            r.database.units_failed,
            r.stats
                .as_ref()
                .map_or("-".into(), |s| s.units_failed.to_string())
        )
    };
    row(
        &mut out,
        "units failed",
        units_failed(a),
        units_failed(b),
        "0",
    );
    let credits = |r: &RunReport| {
        format!(
            "{} to {} honest keys / {} to {} other accounts ({} rows)",
            r.database.honest_credits,
            r.database.honest_accounts,
            r.database.other_credits,
            r.database.other_accounts,
            r.database.other_rows
        )
    };
    row(
        &mut out,
        "ledger credits: honest contributors / any other account",
        credits(a),
        credits(b),
        "none to attackers",
    );
    let rows = |r: &RunReport| {
        format!(
            "{} / {}",
            r.database.contributor_rows_honest, r.database.contributor_rows_other
        )
    };
    row(
        &mut out,
        "contributors rows: honest keys / other keys",
        rows(a),
        rows(b),
        "none for keys that never earned",
    );
    for (label, r) in [("A", a), ("B", b)] {
        if r.database.other_accounts > 0 || r.database.other_credits != 0 {
            failures.push(format!(
                "run {label}: {} credits went to {} accounts that are not honest contributors",
                r.database.other_credits, r.database.other_accounts
            ));
        }
        if r.database.contributor_rows_other > 0 {
            failures.push(format!(
                "run {label}: {} contributors rows for keys that never earned",
                r.database.contributor_rows_other
            ));
        }
    }
    let leases = |r: &RunReport| {
        let to_map = |m: &BTreeMap<String, u64>| {
            let total: u64 = m.values().sum();
            format!("{total} ({})", counts(m))
        };
        format!(
            "honest: {}; others ({} keys): {}",
            to_map(&r.database.leases_honest),
            r.database.lease_keys_other,
            to_map(&r.database.leases_other)
        )
    };
    row(
        &mut out,
        "leases issued, by holder and final state",
        leases(a),
        leases(b),
        "",
    );
    let units = |r: &RunReport| {
        format!(
            "{} of {} / {} / {:.1} s",
            r.database.units_leased_to_others,
            r.database.units_total,
            r.database.most_leases_to_others,
            r.database.longest_unit_ms as f64 / 1000.0
        )
    };
    row(
        &mut out,
        "honest jobs' units leased to other keys at least once / most such leases of one unit / \
         longest from a unit's first lease to its verified result",
        units(a),
        units(b),
        "",
    );
    row(
        &mut out,
        "attackers' results (by state) / keys quarantined",
        format!(
            "{} / {}",
            counts(&a.database.results_other),
            a.database.reputation_quarantined
        ),
        format!(
            "{} / {}",
            counts(&b.database.results_other),
            b.database.reputation_quarantined
        ),
        "none valid",
    );
    row(
        &mut out,
        "relay log: warnings / errors",
        format!("{} / {}", a.log.warnings, a.log.errors),
        format!("{} / {}", b.log.warnings, b.log.errors),
        "",
    );
    row(
        &mut out,
        "relay stopped (SIGTERM) with",
        a.relay_stop.clone(),
        b.relay_stop.clone(),
        "",
    );
    row(
        &mut out,
        "attackers' process CPU, s",
        "-".into(),
        format!("{:.0}", b.attack_cpu_s),
        "",
    );

    if let Some(attack) = &b.attack {
        let _ = writeln!(
            out,
            "\nAttackers in run B, their requests and the relay's replies:\n"
        );
        let _ = writeln!(out, "| Attacker | Addresses | Keys | Requests | Replies |");
        let _ = writeln!(out, "|---|---|---:|---:|---|");
        for kind in KINDS {
            let Some(t) = attack.get(kind) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {kind} | {} | {} | {} | {} |",
                t.addresses,
                if kind == SILENT {
                    "-".to_string()
                } else {
                    t.keys.to_string()
                },
                t.requests,
                counts(&t.outcomes)
            );
        }
    }

    let ratio_p50 = ratio(0.5);
    let ratio_p90 = ratio(0.9);
    let times = |x: f64| {
        if x.is_finite() {
            format!("{x:.2}x")
        } else {
            "unbounded".into()
        }
    };
    let (_, done_a, _, _) = jobs(a);
    let (_, done_b, _, _) = jobs(b);
    let _ = write!(
        out,
        "\nWhat it means: with the relay's default limits, {done_b} of {} honest jobs completed \
         beside the attackers ({done_a} of {} without them), and their completion time was {} \
         (p50) and {} (p90) of the quiet run's: the goal of at most 1.5x was {}.",
        b.jobs.len(),
        a.jobs.len(),
        times(ratio_p50),
        times(ratio_p90),
        if ratio_p50 <= 1.5 && ratio_p90 <= 1.5 {
            "met"
        } else {
            "missed"
        },
    );
    if b.database.units_leased_to_others > 0 {
        let _ = write!(
            out,
            " {} of the {} honest units were leased to attackers' keys at least once, one of \
             them {} times. A unit a hoarder or expirer takes comes back only when its lease \
             expires ({LEASE_SECONDS} s here); after that it is held for keys with a record \
             (the honest ones, once they have 10 valid results in a row) for a lease period, \
             doubling with each stranger's miss, so a job with such a unit waits about one \
             lease period (the longest unit took {:.0} s from its first lease to its verified \
             result). The lease caps bound how many units the attackers hold at once; a fresh \
             unit still goes to whoever asks first, record or not.",
            b.database.units_leased_to_others,
            b.database.units_total,
            b.database.most_leases_to_others,
            b.database.longest_unit_ms as f64 / 1000.0
        );
    }
    let _ = writeln!(
        out,
        " Attackers were credited {} and got {} contributors rows. The relay's memory went from \
         {:.0} to {:.0} MB under attack ({:.0} to {:.0} MB without), holding up to {} sockets; \
         the health check's p99 was {:.1} ms under attack ({:.1} ms without).\n\nCorrectness: \
         {}.\n\nRerun: `cargo xtask bench abuse` (GLOWWORM_ABUSE_SECONDS, GLOWWORM_ABUSE_SEED).",
        b.database.other_credits,
        b.database.contributor_rows_other,
        mb(b.memory_start),
        mb(b.memory_end),
        mb(a.memory_start),
        mb(a.memory_end),
        b.relay_sockets_peak,
        percentile(&b.health_ms, 0.99),
        percentile(&a.health_ms, 0.99),
        if failures.is_empty() {
            "pass (every honest job completed, no attacker was credited, no rows for keys that \
             never earned)"
                .to_string()
        } else {
            format!("FAIL: {}", failures.join("; "))
        }
    );
    (out, failures)
}
