//! The writer thread: the one connection that writes. It takes what is queued, runs grouped
//! closures inside one shared transaction (each in a savepoint of its own, or none for
//! [`super::Db::batch_refusing_first`]), commits them together, and only then answers each
//! closure's caller. A transaction that leaves work for a background thread says so
//! ([`wake_after_commit`]); the writer wakes that thread once the transaction has committed.
//! Between groups it checkpoints the WAL itself when the checkpoint thread cannot keep up.

use super::checkpoint::{WAL_LIMIT_FRAMES, checkpoint};
use crate::error::ApiError;
use crate::metrics::{self, Stage};
use rusqlite::Connection;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use tokio::sync::oneshot;

/// Most closures committed in one transaction.
const MAX_GROUP: usize = 256;

thread_local! {
    /// Set on the writer thread by a transaction that left work for a background thread
    /// ([`wake_after_commit`]); the writer wakes it after its next commit.
    static WAKE_DUE: Cell<bool> = const { Cell::new(false) };
}

/// Says that the transaction running on this thread (the writer) leaves work for the thread
/// waiting on [`super::Db::take_commit_wakes`] (the job output assembler): it is woken once the
/// transaction has committed. On another thread it does nothing; the waiting thread's periodic
/// sweep finds the work.
pub fn wake_after_commit() {
    WAKE_DUE.with(|due| due.set(true));
}

/// What the writer thread is asked to do.
pub(super) enum Job {
    /// Runs with the connection to itself; replies on its own.
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Runs inside the group's transaction, or is told why there is none; returns how to reply
    /// once the group has committed (`None`) or failed to (`Some(why)`), and whether the
    /// transaction is still usable (false when the closure failed but its writes could not be
    /// undone on their own).
    Grouped(GroupedWork),
}

pub(super) type GroupedWork =
    Box<dyn FnOnce(Result<&Connection, &Failure>) -> (Reply, bool) + Send>;

pub(super) type Reply = Box<dyn FnOnce(Option<&Failure>) + Send>;

/// Why a group's transaction could not begin or commit, for each of its closures' callers.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    Sqlite(rusqlite::ffi::Error, Option<String>),
    Other(String),
}

impl Failure {
    fn of(error: &rusqlite::Error) -> Failure {
        match error {
            rusqlite::Error::SqliteFailure(code, message) => {
                Failure::Sqlite(*code, message.clone())
            }
            other => Failure::Other(other.to_string()),
        }
    }

    /// The error the caller gets: a busy database stays a database error (503, try again).
    pub(super) fn to_api_error(&self) -> ApiError {
        match self {
            Failure::Sqlite(code, message) => {
                ApiError::Database(rusqlite::Error::SqliteFailure(*code, message.clone()))
            }
            Failure::Other(why) => ApiError::Internal(format!("database transaction: {why}")),
        }
    }
}

/// The writer's job that runs `run` inside the group's transaction, and where its result
/// arrives once the group has committed (or failed to).
pub(super) fn grouped_job<T, F>(run: F) -> (Job, oneshot::Receiver<Result<T, ApiError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> (Result<T, ApiError>, bool) + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let asked = metrics::wall_start();
    let job = Job::Grouped(Box::new(move |conn| {
        metrics::add_wall(Stage::DbQueue, asked);
        let (result, usable) = match conn {
            Ok(conn) => run(conn),
            Err(failure) => (Err(failure.to_api_error()), true),
        };
        (reply_with(reply, result), usable)
    }));
    (job, answer)
}

/// How a grouped closure's caller is answered once its group has committed (`None`) or failed.
fn reply_with<T: Send + 'static>(
    reply: oneshot::Sender<Result<T, ApiError>>,
    result: Result<T, ApiError>,
) -> Reply {
    Box::new(move |failed_commit: Option<&Failure>| {
        let result = match failed_commit {
            None => result,
            Some(failure) => Err(failure.to_api_error()),
        };
        let _ = reply.send(result);
    })
}

/// Runs `work`, turning a panic into an internal error so the writer thread (or a reader's
/// pooled connection) survives it.
pub fn run_catching<T>(work: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(ApiError::Internal("a database task panicked".into())))
}

pub(super) fn gone() -> ApiError {
    ApiError::Internal("the database writer has stopped".into())
}

/// Runs `work` in a savepoint: released when it succeeds, rolled back when it fails or panics.
/// The outer error means the savepoint itself failed, and with it the enclosing transaction.
pub(super) fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, ApiError>,
) -> rusqlite::Result<Result<T, ApiError>> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = run_catching(|| work(conn));
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    Ok(result)
}

/// The writer thread: takes what is queued, runs it, commits grouped closures together.
pub(super) fn write_loop(
    mut conn: Connection,
    jobs: Receiver<Job>,
    wal_frames: &AtomicI64,
    wake: &SyncSender<()>,
) {
    let mut queued = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = jobs.recv() {
        queued.push(first);
        while queued.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => queued.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let mut group = Group::default();
        for job in queued.drain(..) {
            match job {
                Job::Alone(work) => {
                    group.commit(&conn);
                    wake_if_due(wake);
                    work(&mut conn);
                    // A closure that began a transaction and neither committed nor rolled it
                    // back would make every later group fail to begin.
                    if !conn.is_autocommit() {
                        tracing::error!("a database call left its transaction open; rolled back");
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    wake_if_due(wake);
                }
                Job::Grouped(work) => match group.begin(&conn) {
                    Ok(()) => {
                        let (reply, usable) = work(Ok(&conn));
                        group.replies.push(reply);
                        if !usable {
                            let failure =
                                Failure::Other("a closure failed after it had written".into());
                            group.roll_back(&conn, &failure);
                        }
                    }
                    Err(why) => {
                        let (reply, _) = work(Err(&why));
                        reply(None);
                    }
                },
            }
        }
        group.commit(&conn);
        wake_if_due(wake);
        if wal_frames.load(Ordering::Relaxed) >= WAL_LIMIT_FRAMES {
            let _span = metrics::span(Stage::Checkpoint);
            match checkpoint(&conn) {
                Ok(_) => wal_frames.store(0, Ordering::Relaxed),
                Err(e) => tracing::warn!("WAL checkpoint by the writer: {e}"),
            }
        }
    }
}

/// The grouped closures run since the last commit, waiting for their replies.
#[derive(Default)]
struct Group {
    open: bool,
    replies: Vec<Reply>,
}

impl Group {
    fn begin(&mut self, conn: &Connection) -> Result<(), Failure> {
        if !self.open {
            conn.prepare_cached("BEGIN IMMEDIATE")
                .and_then(|mut begin| begin.execute([]))
                .map_err(|e| Failure::of(&e))?;
            self.open = true;
        }
        Ok(())
    }

    /// Commits the group (if one is open) and replies to each of its closures.
    fn commit(&mut self, conn: &Connection) {
        if !self.open {
            return;
        }
        self.open = false;
        let committed = {
            let _span = metrics::span(Stage::Commit);
            let began = std::time::Instant::now();
            let committed = conn
                .prepare_cached("COMMIT")
                .and_then(|mut commit| commit.execute([]));
            crate::telemetry::telemetry().commit_took(began.elapsed());
            committed
        };
        match committed {
            Ok(_) => self.reply(None),
            Err(e) => self.roll_back(conn, &Failure::of(&e)),
        }
    }

    /// Rolls the group back and tells each of its closures that it failed.
    fn roll_back(&mut self, conn: &Connection, failure: &Failure) {
        tracing::error!("group transaction rolled back: {failure:?}");
        let _ = conn.execute_batch("ROLLBACK");
        self.open = false;
        self.reply(Some(failure));
    }

    fn reply(&mut self, failure: Option<&Failure>) {
        for reply in self.replies.drain(..) {
            reply(failure);
        }
    }
}

/// Wakes the waiting thread if a transaction that just committed left it work.
fn wake_if_due(wake: &SyncSender<()>) {
    if WAKE_DUE.with(|due| due.replace(false)) {
        // Full: a wake is pending already, and it finds this work too.
        let _ = wake.try_send(());
    }
}
