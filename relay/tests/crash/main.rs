//! Crash safety: the real relay binary is killed with SIGKILL at random points while simulated
//! contributors and a requester work against it over real HTTP, started again on the same
//! SQLite database each time, and at the end, with every job done, the database is checked with
//! direct SQL ([`invariants`]):
//!
//! - every credit in the ledger is for exactly one valid result, of the right amount to the right
//!   account; every valid result is credited exactly once; partner shares match their credits;
//!   balances (the table and the API) are the sums of the ledger;
//! - no acknowledged credit or lease is lost: every 200 the relay sent is in the database (the
//!   writer replies only after its commit);
//! - every unit is verified by exactly one stored result, and counts one attempt per lease not
//!   released; every lease was submitted, released, or expired after its deadline with its unit
//!   leased again only then;
//! - every job is done and its output intact: it hashes to its name, holds each unit's output
//!   exactly, and equals A·B within the kernel tolerance, with A and B as the requester sent them;
//! - the relay starts again after every kill (WAL recovery, the idempotent schema upgrade, blob
//!   store temporary files) and logs no error, and the load sees no refusal an honest
//!   contributor should not get.
//!
//! Kill points come from a seeded generator (the seed is printed): the relay serves for a random
//! while, then is killed at once, or just after a contributor sent a lease request or a result,
//! or just after the log says a job was assembled (inside the transaction, before its commit),
//! or within 50 ms of being started.
//!
//! Settings: `GLOWWORM_CRASH_KILLS` (kill points, 10), `GLOWWORM_CRASH_SEED` (the schedule's
//! seed, random by default), `GLOWWORM_CRASH_OUT` (write the figures there as Markdown;
//! `cargo xtask bench faults` runs 50 kill points and writes `target/bench/faults.md`).

mod invariants;
mod load;
mod relay;

use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::ContributorInfo;
use load::{Contributor, Events, Http, HttpError, Record, Rng};
use relay::Relay;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Simulated contributors.
const CONTRIBUTORS: usize = 6;
/// Lease deadlines are short, so leases lost in a crash expire soon.
const LEASE_SECONDS: u64 = 2;
/// Attempts per unit, the relay's default: leases a crash interrupts expire, and expiries never
/// use a unit's attempts, so crashes alone must never fail a job.
const MAX_ATTEMPTS: u32 = 5;
/// How long every job may take to finish after the last kill.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KillPoint {
    /// At the end of the random while the relay served.
    Anytime,
    /// Within 3 ms of a contributor sending a lease request.
    Leasing,
    /// Within 3 ms of a contributor sending a result.
    Submitting,
    /// Within 1 ms of the log saying a job's output was assembled, before that commit.
    Assembling,
    /// Within 50 ms of the process being started.
    Starting,
}

impl KillPoint {
    const ALL: [KillPoint; 5] = [
        KillPoint::Anytime,
        KillPoint::Leasing,
        KillPoint::Submitting,
        KillPoint::Assembling,
        KillPoint::Starting,
    ];

    fn describe(self) -> &'static str {
        match self {
            KillPoint::Anytime => "at a random moment",
            KillPoint::Leasing => "just after a lease request was sent",
            KillPoint::Submitting => "just after a result was sent",
            KillPoint::Assembling => "just after a job's output was assembled, before its commit",
            KillPoint::Starting => "while the relay was starting",
        }
    }
}

struct Settings {
    kills: u32,
    seed: u64,
    out: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str| {
            var(name).map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
            })
        };
        Settings {
            kills: number("GLOWWORM_CRASH_KILLS").unwrap_or(10) as u32,
            seed: number("GLOWWORM_CRASH_SEED").unwrap_or_else(|| load::now_ms() as u64),
            out: var("GLOWWORM_CRASH_OUT").map(PathBuf::from),
        }
    }
}

/// Kill points tried, by kind: how many, and how many of the aimed ones saw their moment come
/// (the others were killed after waiting for it a while).
#[derive(Default)]
struct Tally {
    tried: BTreeMap<KillPoint, (u32, u32)>,
}

impl Tally {
    fn add(&mut self, point: KillPoint, hit: bool) {
        let entry = self.tried.entry(point).or_default();
        entry.0 += 1;
        entry.1 += u32::from(hit);
    }

    fn total(&self) -> u32 {
        self.tried.values().map(|(tried, _)| tried).sum()
    }
}

/// Waits for the moment `point` aims at, after letting the relay serve for a random while;
/// returns whether that moment came (true for the points that aim at none).
async fn aim(point: KillPoint, relay: &mut Relay, events: &Events, rng: &mut Rng) -> bool {
    tokio::time::sleep(Duration::from_millis(rng.between(50, 500))).await;
    let (moment, within_us) = match point {
        KillPoint::Anytime | KillPoint::Starting => return true,
        KillPoint::Leasing => (
            tokio::time::timeout(Duration::from_secs(2), events.lease_sent.notified())
                .await
                .is_ok(),
            3000,
        ),
        KillPoint::Submitting => (
            tokio::time::timeout(Duration::from_secs(2), events.result_sent.notified())
                .await
                .is_ok(),
            3000,
        ),
        KillPoint::Assembling => {
            relay.skip_log();
            let seen = relay
                .wait_for_log("done: output", Duration::from_secs(3))
                .await;
            (seen, 1000)
        }
    };
    // Below tokio's timer resolution: sleep the thread.
    std::thread::sleep(Duration::from_micros(rng.between(0, within_us)));
    moment
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_keeps_its_invariants_when_killed_under_load() {
    let settings = Settings::from_env();
    println!(
        "crash test: {} kill points, seed {} (GLOWWORM_CRASH_SEED={} repeats the schedule)",
        settings.kills, settings.seed, settings.seed
    );
    let started = Instant::now();
    let dir = tempfile::TempDir::new().unwrap();
    let mut relay = Relay::new(relay::Settings {
        database: dir.path().join("data/relay.sqlite"),
        www_dir: dir.path().join("www"),
        lease_seconds: LEASE_SECONDS,
        max_attempts: MAX_ATTEMPTS,
        unit_size: 48,
    });
    let api_key = relay.create_key("crash-test");
    // Started, not yet serving: the first round may kill it while it starts.
    relay.spawn();

    // The load: a requester keeping jobs queued and contributors working them off.
    let record = Arc::new(Mutex::new(Record::default()));
    let events = Arc::new(Events::default());
    let http = Http::new(relay.base.clone());
    let (stop_jobs, stop_work) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let requester = tokio::spawn(load::request_jobs(
        http.clone(),
        api_key.clone(),
        settings.seed.wrapping_mul(1_000_003),
        record.clone(),
        stop_jobs.clone(),
    ));
    let mut public_keys = Vec::new();
    let mut workers = Vec::new();
    for number in 0..CONTRIBUTORS {
        let key = ContributorKey::generate().unwrap();
        public_keys.push(key.public_hex());
        let contributor = Contributor {
            number,
            key,
            through_partner: number % 2 == 1,
            http: http.clone(),
            rng: Rng::new(settings.seed ^ (number as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)),
            record: record.clone(),
            events: events.clone(),
        };
        workers.push(tokio::spawn(contributor.run(stop_work.clone())));
    }

    // The kill points. At the top of each round a relay process has just been started.
    let mut rng = Rng::new(settings.seed);
    let mut tally = Tally::default();
    let mut failures: Vec<String> = Vec::new();
    for round in 0..settings.kills {
        let point = KillPoint::ALL[rng.between(0, KillPoint::ALL.len() as u64 - 1) as usize];
        if point == KillPoint::Starting {
            tokio::time::sleep(Duration::from_millis(rng.between(0, 50))).await;
            relay.kill();
            tally.add(point, true);
            relay.spawn();
            continue;
        }
        if let Err(why) = relay.wait_serving().await {
            failures.push(format!("start {round}: {why}\n{}", relay.log_tail()));
            break;
        }
        let hit = aim(point, &mut relay, &events, &mut rng).await;
        if let Some(status) = relay.exited() {
            failures.push(format!(
                "the relay exited by itself ({status})\n{}",
                relay.log_tail()
            ));
            break;
        }
        relay.kill();
        tally.add(point, hit);
        relay.spawn();
    }
    if failures.is_empty() {
        if let Err(why) = relay.wait_serving().await {
            failures.push(format!("the last start: {why}\n{}", relay.log_tail()));
        }
    }
    let kill_time = started.elapsed();

    // No more kills: the requester stops, and every job must get done.
    stop_jobs.store(true, Ordering::Relaxed);
    requester.await.unwrap();
    if failures.is_empty() {
        if let Err(why) = wait_until_done(&mut relay).await {
            failures.push(why);
        }
    }
    stop_work.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    // What the API says, while the relay still runs.
    let mut api_credits = HashMap::new();
    if failures.is_empty() {
        let newcomer = Contributor {
            number: CONTRIBUTORS,
            key: ContributorKey::generate().unwrap(),
            through_partner: false,
            http: http.clone(),
            rng: Rng::new(0),
            record: record.clone(),
            events: events.clone(),
        };
        if let Some(lease) = newcomer.lease().await {
            failures.push(format!(
                "unit {} was still pending at the end",
                lease.unit_id
            ));
        }
        for public_key in &public_keys {
            api_credits.insert(public_key.clone(), api_credits_of(&http, public_key).await);
        }
        let jobs: Vec<i64> = record.lock().unwrap().jobs.keys().copied().collect();
        for job_id in jobs {
            if let Err(why) = download_matches(&http, &api_key, &relay, job_id).await {
                failures.push(format!("job {job_id}'s download: {why}"));
            }
        }
    }
    let end_ms = load::now_ms() + 1;
    relay.kill();

    let record = std::mem::take(&mut *record.lock().unwrap());
    let findings = invariants::check(relay.database(), &record, &api_credits, end_ms)
        .expect("the database can be read");
    let mut violations = failures;
    for line in relay.log_errors() {
        violations.push(format!("the relay logged an error: {line}"));
    }
    violations.extend(record.violations.iter().cloned());
    violations.extend(findings.violations.iter().cloned());

    let report = report(
        &settings,
        &tally,
        &relay,
        &record,
        &findings,
        &violations,
        kill_time,
        started.elapsed(),
    );
    println!("{report}");
    if let Some(out) = &settings.out {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(out, &report).unwrap();
        println!("Written to {}", out.display());
    }
    assert!(
        violations.is_empty(),
        "{} invariant violations (seed {}):\n{}",
        violations.len(),
        settings.seed,
        violations.join("\n")
    );
    assert!(
        tally.total() >= settings.kills,
        "only {} of {} kill points were tried",
        tally.total(),
        settings.kills
    );
}

/// Waits until every job in the database is done (or one fails, or the relay dies, or
/// [`FINISH_TIMEOUT`] passes).
async fn wait_until_done(relay: &mut Relay) -> Result<(), String> {
    let deadline = Instant::now() + FINISH_TIMEOUT;
    loop {
        let conn = read_only(relay)?;
        let states: Vec<(String, i64)> = conn
            .prepare("SELECT state, COUNT(*) FROM jobs WHERE state != 'done' GROUP BY state")
            .and_then(|mut stmt| {
                stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(|e| e.to_string())?;
        if states.is_empty() {
            return Ok(());
        }
        if states.iter().any(|(state, _)| state != "queued") {
            return Err(format!("jobs ended other than done: {states:?}"));
        }
        if let Some(status) = relay.exited() {
            return Err(format!(
                "the relay exited by itself ({status})\n{}",
                relay.log_tail()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "jobs not done {FINISH_TIMEOUT:?} after the last kill: {states:?}\n{}",
                relay.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A read-only connection to the running relay's database.
fn read_only(relay: &Relay) -> Result<rusqlite::Connection, String> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    rusqlite::Connection::open_with_flags(relay.database(), flags).map_err(|e| e.to_string())
}

/// A contributor's credits as `GET /v1/contributors/{key}` shows them (0 if unknown).
async fn api_credits_of(http: &Http, public_key: &str) -> i64 {
    use glowworm_protocol::protocol::Transport;
    match http
        .get_json::<ContributorInfo>(&format!("/v1/contributors/{public_key}"))
        .await
    {
        Ok(info) => info.credits,
        Err(HttpError::Refused { status: 404, .. }) => 0,
        Err(e) => panic!("GET /v1/contributors/{public_key}: {e}"),
    }
}

/// Whether `GET /v1/jobs/{id}/result` serves the output the database names.
async fn download_matches(
    http: &Http,
    key: &str,
    relay: &Relay,
    job_id: i64,
) -> Result<(), String> {
    let bytes = http
        .get_with_key(&format!("/v1/jobs/{job_id}/result"), key)
        .await
        .map_err(|e| e.to_string())?;
    let conn = read_only(relay)?;
    let output_hash: Option<String> = conn
        .query_row(
            "SELECT output_hash FROM jobs WHERE id = ?1",
            [job_id],
            |row| row.get(0),
        )
        .map_err(|e| e.to_string())?;
    let got = ContentHash::of(&bytes).to_string();
    if output_hash.as_deref() != Some(got.as_str()) {
        return Err(format!(
            "it hashes to {got}, the job's output is {output_hash:?}"
        ));
    }
    Ok(())
}

/// The figures, as Markdown.
#[allow(clippy::too_many_arguments)]
fn report(
    settings: &Settings,
    tally: &Tally,
    relay: &Relay,
    record: &Record,
    findings: &invariants::Findings,
    violations: &[String],
    kill_time: Duration,
    total_time: Duration,
) -> String {
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mut rows: Vec<(String, String)> = vec![(
        "Kill points tried (SIGKILL)".into(),
        tally.total().to_string(),
    )];
    for (point, (tried, hit)) in &tally.tried {
        let aimed = match point {
            KillPoint::Leasing | KillPoint::Submitting | KillPoint::Assembling => {
                format!(" ({hit} at the moment aimed at)")
            }
            _ => String::new(),
        };
        rows.push((format!("- {}", point.describe()), format!("{tried}{aimed}")));
    }
    rows.extend([
        (
            "Relay processes started / serving (the rest killed while starting)".to_string(),
            format!("{} / {}", relay.spawned, relay.served),
        ),
        ("Leases granted".into(), record.leases.len().to_string()),
        (
            "Results credited, reply received".into(),
            record.credited.len().to_string(),
        ),
        (
            "Results credited, reply lost in a crash".into(),
            format!(
                "{} ({} found by a retry)",
                findings.credited_unacknowledged, record.accepted_unacknowledged
            ),
        ),
        (
            "Leases expired / released / given up by contributors".into(),
            format!(
                "{} / {} / {}",
                findings.leases_expired, findings.leases_released, record.abandoned
            ),
        ),
        (
            "Requests without an answer (relay down or killed)".into(),
            record.connection_errors.to_string(),
        ),
        (
            "Jobs done (of them, upload reply lost)".into(),
            format!("{} ({})", findings.jobs, findings.jobs_unacknowledged),
        ),
        (
            "Units / ledger partner shares".into(),
            format!("{} / {}", findings.units, findings.partner_shares),
        ),
        (
            "Unfinished blob files left after the last start".into(),
            findings.temp_files.to_string(),
        ),
        (
            "**Invariant violations found**".into(),
            format!("**{}**", violations.len()),
        ),
        (
            "Time: kills / whole test".into(),
            format!(
                "{:.1} s / {:.1} s",
                kill_time.as_secs_f64(),
                total_time.as_secs_f64()
            ),
        ),
    ]);
    let mut text = format!(
        "## Faults survived: the relay killed with SIGKILL under load\n\n\
         `relay/tests/crash` ({build} build), seed {}: {CONTRIBUTORS} contributors and a requester \
         over real HTTP, {}x{}x{} matmul jobs in 48x48 tiles, {LEASE_SECONDS} s leases, one \
         SQLite database across every restart.\n\n| Figure | Value |\n| --- | --- |\n",
        settings.seed,
        load::SHAPE.m,
        load::SHAPE.n,
        load::SHAPE.k
    );
    for (name, value) in rows {
        text.push_str(&format!("| {name} | {value} |\n"));
    }
    for violation in violations.iter().take(20) {
        text.push_str(&format!("\n- {violation}"));
    }
    text
}
