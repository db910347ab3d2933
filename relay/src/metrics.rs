//! Where the relay's CPU goes: optional per-stage counters for the throughput benchmark
//! (`relay/benches/throughput.rs`).
//!
//! Off by default. When off, a [`span`] costs one relaxed atomic load. When [`enable`]d, a span
//! reads the calling thread's CPU clock when it starts and when it is dropped, and adds the
//! difference to its [`Stage`]'s total, so a stage's figure is CPU time of the thread that ran it,
//! not wall time (a thread preempted inside a span is not charged for it). Spans must not be
//! held across an `.await`, since the task may resume on another thread.
//!
//! The exception is [`Stage::DbQueue`], wall time between asking for the database and getting
//! it, which [`crate::store::Db`] records with [`add_wall`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The stages of serving a result that the relay accounts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `POST /v1/leases`: the whole leasing transaction, commit included.
    LeaseTx,
    /// `POST /v1/results`: looking up the lease and its unit.
    SubmitLookup,
    /// The ed25519 check of the result signature (with the SHA-256 of the output it signs).
    Signature,
    /// Freivalds' check, decoding included.
    Freivalds,
    /// Recording a result (verified or rejected) and crediting it.
    RecordTx,
    /// The commits of the writer's groups of leases and results.
    Commit,
    /// Checkpoints by the writer thread, when the WAL has grown too big.
    Checkpoint,
    /// Reading a blob from SQLite, for `GET /v1/blobs/{hash}` or for verification, when it is
    /// not in the memory cache.
    BlobRead,
    /// Wall time from asking for the database connection to holding it (queueing, not CPU).
    DbQueue,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::LeaseTx,
        Stage::SubmitLookup,
        Stage::Signature,
        Stage::Freivalds,
        Stage::RecordTx,
        Stage::Commit,
        Stage::Checkpoint,
        Stage::BlobRead,
        Stage::DbQueue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::LeaseTx => "lease: SQL",
            Stage::SubmitLookup => "result: lease and unit lookup",
            Stage::Signature => "result: ed25519 signature check",
            Stage::Freivalds => "result: Freivalds' check",
            Stage::RecordTx => "result: record-and-credit SQL",
            Stage::Commit => "COMMIT (group commits)",
            Stage::Checkpoint => "WAL checkpoints by the writer",
            Stage::BlobRead => "blob reads from SQLite (cache misses)",
            Stage::DbQueue => "waiting for the database (wall time)",
        }
    }

    /// Whether the stage's time is wall time rather than CPU time.
    pub fn is_wall_time(self) -> bool {
        self == Stage::DbQueue
    }
}

const STAGES: usize = Stage::ALL.len();

static ENABLED: AtomicBool = AtomicBool::new(false);
static COUNTS: [AtomicU64; STAGES] = [const { AtomicU64::new(0) }; STAGES];
static NANOS: [AtomicU64; STAGES] = [const { AtomicU64::new(0) }; STAGES];

/// Turns the counters on or off (they keep their totals).
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// One stage's totals: how many spans, and their nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    pub stage: Stage,
    pub count: u64,
    pub nanos: u64,
}

/// Every stage's totals so far; subtract two snapshots to measure an interval.
pub fn snapshot() -> Vec<Total> {
    Stage::ALL
        .iter()
        .map(|&stage| Total {
            stage,
            count: COUNTS[stage as usize].load(Ordering::Relaxed),
            nanos: NANOS[stage as usize].load(Ordering::Relaxed),
        })
        .collect()
}

/// Adds `nanos` of wall time to `stage` (when enabled).
pub fn add_wall(stage: Stage, since: Option<Instant>) {
    if let Some(since) = since {
        add(stage, since.elapsed().as_nanos() as u64);
    }
}

/// `Some(now)` when enabled: the start of a wall-time measurement for [`add_wall`].
pub fn wall_start() -> Option<Instant> {
    is_enabled().then(Instant::now)
}

fn add(stage: Stage, nanos: u64) {
    COUNTS[stage as usize].fetch_add(1, Ordering::Relaxed);
    NANOS[stage as usize].fetch_add(nanos, Ordering::Relaxed);
}

/// Charges the calling thread's CPU time until the span is dropped to `stage`.
#[must_use = "a span measures until it is dropped"]
pub struct Span {
    stage: Stage,
    start: Option<u64>,
}

/// Starts a [`Span`] for `stage` (free when the counters are off).
pub fn span(stage: Stage) -> Span {
    Span {
        stage,
        start: is_enabled().then(thread_cpu_nanos),
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(start) = self.start {
            add(self.stage, thread_cpu_nanos().saturating_sub(start));
        }
    }
}

/// CPU time the calling thread has used, in nanoseconds.
#[cfg(unix)]
pub fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Without a per-thread CPU clock, wall time since the first call stands in for it.
#[cfg(not(unix))]
pub fn thread_cpu_nanos() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_count_only_while_enabled() {
        let before = snapshot()[Stage::Freivalds as usize];
        drop(span(Stage::Freivalds));
        assert_eq!(snapshot()[Stage::Freivalds as usize].count, before.count);
        enable(true);
        {
            let _span = span(Stage::Freivalds);
            let mut x = 0u64;
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
            }
            std::hint::black_box(x);
        }
        enable(false);
        let after = snapshot()[Stage::Freivalds as usize];
        assert_eq!(after.count, before.count + 1);
        assert!(after.nanos > before.nanos);
    }
}
