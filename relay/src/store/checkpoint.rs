//! The checkpoint thread: copies the WAL into the database file now and then, with a
//! connection of its own, so that requests seldom wait for a checkpoint.

use rusqlite::Connection;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How often the background thread checkpoints the WAL, at most.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL frames (pages) after which the writer checkpoints so that the WAL can start over: 64 MiB
/// of 4 KiB pages.
pub const WAL_LIMIT_FRAMES: i64 = 16 << 10;

/// A PASSIVE checkpoint (it never waits for a reader or the writer); returns the frames in the
/// WAL and how many of them are now in the database file.
pub(super) fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

/// The checkpoint thread: copies the WAL into the database file now and then (PASSIVE: it never
/// makes a writer or reader wait) and notes how big the WAL is, until the last [`Db`] handle is
/// dropped.
pub(super) fn checkpoint_loop(conn: Connection, stop: Receiver<()>, wal_frames: &AtomicI64) {
    let mut last = Instant::now();
    while let Err(RecvTimeoutError::Timeout) =
        stop.recv_timeout(CHECKPOINT_EVERY.saturating_sub(last.elapsed()))
    {
        last = Instant::now();
        match checkpoint(&conn) {
            Ok((frames, _)) => wal_frames.store(frames, Ordering::Relaxed),
            Err(e) => tracing::warn!("WAL checkpoint: {e}"),
        }
    }
}
