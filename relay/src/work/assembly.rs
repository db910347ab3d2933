//! Putting a finished job's output together, off the database writer thread, in bounded
//! memory.
//!
//! The transaction that verifies a job's last unit only marks the job `assembling`
//! ([`crate::work::jobs::complete_if_done`]); the job stays `queued`, with every unit verified
//! (progress 1.0), until its output exists. The database's assembler thread
//! ([`crate::store`]: woken after such a commit, and at every start, which recovers a crash
//! between that commit and the output) then streams the units' outputs, read on a read
//! connection, in order into a blob file ([`BlobStore::writer`]: hashed as written, synced,
//! renamed to its hash), and one short transaction on the writer marks the job done with its
//! output ([`finish`]). So a job is `done` only once its output is durable, the writer is never
//! held by an output's size, and memory stays within:
//!
//! - a kernel job: one unit's output at a time (its outputs are concatenated in unit order);
//! - a matmul job: one band of C, `unit_size` rows by n columns, and one unit's tile: C is
//!   row-major, so the tiles of one tile row are interleaved row by row in the band, and the
//!   band is written whole before the next tile row is read.
//!
//! Unit outputs are immutable once verified, so reading them in several short read
//! transactions sees a consistent job (and never keeps an old WAL snapshot for long, which
//! would keep checkpoints from catching up). Assembling is idempotent: a job assembled twice
//! (a crash after the file was written, before the commit) yields the same file, and only a job
//! still queued and assembling is marked done.

use crate::clock::{Clock, SystemClock};
use crate::error::{ApiError, OpenError};
use crate::store::blobs::{BlobStore, hash_column};
use crate::store::{Db, WeakDb, run_catching};
use crate::work::jobs;
use glowworm_protocol::hash::ContentHash;
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How often the assembler looks for jobs waiting for their output without being woken.
pub const ASSEMBLY_SWEEP: Duration = Duration::from_secs(30);
/// How long the assembler waits before it tries again after an assembly failed (a full disk).
pub const ASSEMBLY_RETRY: Duration = Duration::from_secs(5);

/// The assembler thread of one database ([`Assembler::start`]).
#[derive(Clone, Default)]
pub struct Assembler {
    /// Taken before each unit's output is read; tests hold it ([`Assembler::hold`]).
    gate: Arc<Mutex<()>>,
    /// Whether the thread is running: cleared when it ends, even by a panic.
    running: Arc<AtomicBool>,
}

/// Clears the assembler's running flag when its thread ends, however it ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl Assembler {
    /// Starts the assembler thread of `db`. It assembles the outputs of the jobs waiting for
    /// them at start (which recovers a crash between the commit that completed a job and its
    /// output), whenever the writer wakes it after a commit that left one
    /// ([`crate::store::wake_after_commit`], from [`crate::work::jobs::complete_if_done`]),
    /// every [`ASSEMBLY_SWEEP`], and [`ASSEMBLY_RETRY`] after a failure; until the database
    /// closes (its last handle is dropped).
    pub fn start(db: &Db) -> Result<Assembler, OpenError> {
        let woken = db
            .take_commit_wakes()
            .ok_or_else(|| OpenError::Thread("the database's assembler is running".into()))?;
        let assembler = Assembler::default();
        let gate = assembler.gate.clone();
        let db = db.downgrade();
        assembler.running.store(true, Ordering::Relaxed);
        let running = Running(assembler.running.clone());
        std::thread::Builder::new()
            .name("relay-assembler".into())
            .spawn(move || {
                let _running = running;
                run(db, woken, &gate)
            })
            .map_err(|e| OpenError::Thread(e.to_string()))?;
        Ok(assembler)
    }

    /// Whether the assembler thread is running (for the readiness check).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Holds the assembler before it reads its next unit's output, until the guard is
    /// dropped. For tests: what happens while an output is being assembled.
    #[doc(hidden)]
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The assembler thread's loop ([`Assembler::start`]).
fn run(db: WeakDb, woken: Receiver<()>, gate: &Mutex<()>) {
    let mut reader = None;
    loop {
        let failed = match db.upgrade() {
            Some(db) => !assemble_due(&db, &mut reader, gate),
            None => return,
        };
        let wait = if failed {
            ASSEMBLY_RETRY
        } else {
            ASSEMBLY_SWEEP
        };
        match woken.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Assembles every job waiting for its output, one at a time (so memory stays within one
/// job's band, however many wait); returns whether all went well.
fn assemble_due(db: &Db, reader: &mut Option<Connection>, gate: &Mutex<()>) -> bool {
    let conn = match reader {
        Some(conn) => conn,
        None => match db.open_reader() {
            Ok(conn) => reader.insert(conn),
            Err(e) => {
                tracing::error!("assembling job outputs: opening a read connection: {e}");
                return false;
            }
        },
    };
    let jobs = match run_catching(|| due(conn)) {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::error!("looking for jobs to assemble: {e}");
            return false;
        }
    };
    let mut all_well = true;
    for job in jobs {
        let pause = || drop(gate.lock());
        let finished = run_catching(|| assemble(conn, db.blob_store(), &job, &pause)).and_then(
            |output_hash| db.batch_blocking(move |conn| finish(conn, job.job_id, &output_hash)),
        );
        if let Err(e) = finished {
            tracing::error!("assembling the output of job {}: {e}", job.job_id);
            all_well = false;
        }
    }
    all_well
}

/// A job whose units are all verified and whose output is not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub job_id: i64,
    kind: String,
    /// Columns of C (matmul).
    n: usize,
    output_bytes: u64,
}

/// One unit's place in the output.
struct Piece {
    row0: usize,
    col0: usize,
    rows: usize,
    cols: usize,
    result_hash: ContentHash,
}

/// Jobs waiting for their output, oldest first.
pub fn due(conn: &Connection) -> Result<Vec<Due>, ApiError> {
    let due = conn
        .prepare_cached(
            "SELECT id, kind, n, output_bytes FROM jobs
             WHERE assembling = 1 AND state = 'queued' ORDER BY id",
        )?
        .query_map([], |row| {
            Ok(Due {
                job_id: row.get(0)?,
                kind: row.get(1)?,
                n: row.get(2)?,
                output_bytes: row.get::<_, i64>(3)? as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(due)
}

/// Writes `job`'s output to `store`, reading its units' outputs on `conn` (a read connection);
/// returns the output's hash. The file is durable when it returns. `pause` runs before each
/// unit's output is read (tests hold the assembly there).
pub fn assemble(
    conn: &Connection,
    store: &BlobStore,
    job: &Due,
    pause: &dyn Fn(),
) -> Result<ContentHash, ApiError> {
    // Where each unit goes, in the output's order: small (a few dozen bytes a unit), read in
    // one short statement.
    let pieces: Vec<Piece> = conn
        .prepare_cached(
            "SELECT row0, col0, m, n, result_hash FROM units
             WHERE job_id = ?1 AND canary_of IS NULL ORDER BY row0, col0",
        )?
        .query_map([job.job_id], |row| {
            Ok(Piece {
                row0: row.get(0)?,
                col0: row.get(1)?,
                rows: row.get(2)?,
                cols: row.get(3)?,
                result_hash: hash_column(row, 4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let job_id = job.job_id;
    let wrong = |what: String| ApiError::Internal(format!("assembling job {job_id}: {what}"));
    let mut output = store.writer()?;
    if job.kind == "kernel" {
        for piece in &pieces {
            pause();
            output.write(&store.get_required(conn, &piece.result_hash)?)?;
        }
    } else {
        // One tile row at a time: its tiles' rows interleaved into a band of C.
        let row_bytes = 4 * job.n;
        let mut band = Vec::new();
        for tile_row in pieces.chunk_by(|a, b| a.row0 == b.row0) {
            let rows = tile_row[0].rows;
            band.clear();
            band.resize(rows * row_bytes, 0u8);
            let mut next_col = 0;
            for piece in tile_row {
                if piece.rows != rows || piece.col0 != next_col || piece.col0 + piece.cols > job.n {
                    return Err(wrong(format!(
                        "unit at ({}, {}) does not tile C",
                        piece.row0, piece.col0
                    )));
                }
                next_col += piece.cols;
                pause();
                let tile = store.get_required(conn, &piece.result_hash)?;
                let tile_row_bytes = 4 * piece.cols;
                if tile.len() != rows * tile_row_bytes {
                    return Err(wrong(format!(
                        "result blob {} has {} bytes, expected {}",
                        piece.result_hash,
                        tile.len(),
                        rows * tile_row_bytes
                    )));
                }
                for (i, source) in tile.chunks_exact(tile_row_bytes).enumerate() {
                    let start = i * row_bytes + 4 * piece.col0;
                    band[start..start + tile_row_bytes].copy_from_slice(source);
                }
            }
            if next_col != job.n {
                return Err(wrong(format!(
                    "tile row {} covers {next_col} of {} columns",
                    tile_row[0].row0, job.n
                )));
            }
            output.write(&band)?;
        }
    }
    if output.len() != job.output_bytes {
        return Err(wrong(format!(
            "the output has {} bytes, expected {}",
            output.len(),
            job.output_bytes
        )));
    }
    output.finish()
}

/// Marks `job_id` done with `output_hash`, once its output is written; returns whether it did
/// (not when the job is no longer waiting for it). Run it in a transaction on the writer.
pub fn finish(conn: &Connection, job_id: i64, output_hash: &ContentHash) -> Result<bool, ApiError> {
    let done = jobs::mark_done(conn, job_id, output_hash, SystemClock.now_ms())?;
    if done {
        tracing::info!("job {job_id} done: output {output_hash}");
    }
    Ok(done)
}
