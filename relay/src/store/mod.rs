//! The store: the SQLite database (one writer thread that commits in groups, and a few read
//! connections) and the blob store ([`blobs`]). Layer: imports only the bottom (errors,
//! metrics).
//!
//! Handlers never touch a connection directly; they pass a closure to one of three methods:
//!
//! - [`Db::batch`]: the hot path (leasing, recording results). The closure runs on the writer
//!   thread inside a savepoint of a transaction shared with the other batched closures queued at
//!   the same time (group commit). A closure that fails or panics rolls back its own savepoint
//!   only. Every closure's reply is held back until the shared transaction has committed, so a
//!   caller never hears of a change that is not durable in the WAL, and a failed commit fails
//!   every closure of the group. One commit for many requests is what makes the relay fast: a
//!   commit writes every page the transaction touched to the WAL once.
//! - [`Db::batch_refusing_first`]: the same without the savepoint, for work that makes all its
//!   refusals before it writes anything; should it fail after writing after all, its whole group
//!   is rolled back and fails.
//! - [`Db::call`]: the closure gets the writer connection to itself, outside any transaction
//!   (the group before it is committed first), and may open its own ([`Connection::transaction`]).
//! - [`Db::read`]: read-only queries on a read connection (WAL readers never wait for the
//!   writer), a few at a time on tokio's blocking pool. They see every committed change.
//!
//! A transaction can leave work for a background thread (the job output assembler,
//! [`crate::work::assembly`], off the writer): it calls [`wake_after_commit`], and once the
//! transaction has committed the writer sends a wake to whoever took [`Db::take_commit_wakes`].
//!
//! Input blobs are also kept in a bounded in-memory cache ([`Db::blob`]): they are immutable and
//! named by their hash, so a cached copy can never be stale.
//!
//! The WAL is checkpointed by a background thread with its own connection, so requests seldom
//! wait for a checkpoint. Under steady writes that thread can never finish one (new frames keep
//! arriving), and the WAL would grow without end; so once it holds [`WAL_LIMIT_FRAMES`] the writer
//! thread itself checkpoints between two groups, copying only what the background thread has not,
//! and the WAL starts over.

pub mod blobs;
mod checkpoint;
mod migrations;
mod writer;

pub use checkpoint::WAL_LIMIT_FRAMES;
pub use writer::wake_after_commit;

use crate::error::{ApiError, OpenError};
use crate::metrics::{self, Stage};
use crate::store::blobs::BlobStore;
use axum::body::Bytes;
use glowworm_protocol::cache::BlobCache;
use glowworm_protocol::hash::ContentHash;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{Semaphore, oneshot};
pub use writer::run_catching;
use writer::{Job, gone, grouped_job, in_savepoint};

/// Read connections in use at once.
const READERS: usize = 4;
/// Memory the cache of input blobs may take, entries' bookkeeping included.
const BLOB_CACHE_BYTES: usize = 64 << 20;
/// What one cached blob costs beyond its bytes: its allocation's header, the map entry (hash,
/// handle, size, and the table's spare capacity) and its place in the eviction queue. Charged
/// to the budget, so that many small blobs (the 256-byte panels of small units) cannot take
/// twice the budget in memory. Estimated at 170 to 280 bytes (a 16-byte allocation header, the
/// 48-byte shared handle a clone of `Bytes` allocates, a 72-byte map entry and a 32-byte queue
/// slot, the last two up to twice that in a table that has just grown).
const BLOB_CACHE_ENTRY_BYTES: usize = 256;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// A shared handle to the relay's database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
    blobs: Mutex<BlobCache<Bytes>>,
    /// Job inputs and outputs on disk, beside the database file.
    store: BlobStore,
    /// Wakes after commits that left work for a background thread, until one takes them.
    commit_wakes: Mutex<Option<Receiver<()>>>,
    /// Dropped with the last handle, which stops the checkpoint thread.
    _checkpoints: SyncSender<()>,
}

impl Db {
    /// Opens (or creates) the database file in WAL mode, creating its parent directories and
    /// the schema, and starts the writer and checkpoint threads.
    pub fn open(path: &Path) -> Result<Db, OpenError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| OpenError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let database_error = |source| OpenError::Database {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(database_error)?;
        Self::prepare(&mut conn).map_err(database_error)?;
        let checkpointer = Connection::open(path).map_err(database_error)?;
        checkpointer
            .busy_timeout(Duration::from_secs(5))
            .map_err(database_error)?;

        let wal_frames = Arc::new(AtomicI64::new(0));
        let (writer, jobs) = std::sync::mpsc::channel();
        let frames = wal_frames.clone();
        // One pending wake is enough: the woken thread looks for all its work when it wakes.
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("relay-db-writer".into())
            .spawn(move || writer::write_loop(conn, jobs, &frames, &wake))
            .map_err(|e| OpenError::Thread(e.to_string()))?;
        let (checkpoints, stop) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("relay-db-checkpoint".into())
            .spawn(move || checkpoint::checkpoint_loop(checkpointer, stop, &wal_frames))
            .map_err(|e| OpenError::Thread(e.to_string()))?;

        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            writer,
            readers: Mutex::new(Vec::new()),
            reader_permits: Semaphore::new(READERS),
            blobs: Mutex::new(BlobCache::new(BLOB_CACHE_BYTES)),
            store: BlobStore::beside(path),
            commit_wakes: Mutex::new(Some(woken)),
            _checkpoints: checkpoints,
        });
        Ok(Db { inner })
    }

    fn prepare(conn: &mut Connection) -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_secs(5))?;
        keep_plans(conn)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!("SQLite journal mode is {mode}, not WAL");
        }
        // synchronous = FULL: every commit syncs the WAL before the writer answers, so an
        // acknowledged credit survives power loss and an OS crash, not only a killed relay
        // (NORMAL syncs the WAL only at checkpoints). Group commits share one sync between many
        // results. The checkpoint thread checkpoints, not the connection that commits.
        // Foreign keys are enforced only after the upgrade, which may rebuild a table that
        // others refer to (SQLite's procedure for changing a table's constraints).
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = OFF;
             PRAGMA cache_size = -65536;
             PRAGMA temp_store = MEMORY;
             PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = 67108864;",
        )?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        migrations::upgrade(&tx)?;
        tx.commit()?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")
    }
}

impl Db {
    /// Runs `work` on the writer thread with the connection to itself, outside any transaction
    /// (it may open one), and returns what it returns. A panic is an internal error.
    pub async fn call<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let asked = metrics::wall_start();
        self.send(Job::Alone(Box::new(move |conn| {
            metrics::add_wall(Stage::DbQueue, asked);
            // A closure that panicked has already rolled its transaction back (Transaction
            // rolls back on drop), so the connection is safe to use again.
            let result = run_catching(|| work(conn));
            let _ = reply.send(result);
        })))?;
        answer.await.map_err(|_| gone())?
    }

    /// Runs `work` on the writer thread inside a transaction it shares with the other batched
    /// closures waiting at the time, and returns what it returned once that transaction has
    /// committed. Its changes are rolled back when it returns an error or panics.
    pub async fn batch<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        self.grouped(move |conn| match in_savepoint(conn, work) {
            Ok(result) => (result, true),
            Err(e) => (Err(ApiError::Database(e)), false),
        })
        .await
    }

    /// Like [`Db::batch`], for work that makes every refusal before its first write. It runs
    /// without a savepoint of its own, which saves copying each page it changes. Should it fail
    /// after all once it has written (a database error, or a bug), the whole group's transaction
    /// is rolled back and every closure in the group fails, so nothing half done is committed.
    pub async fn batch_refusing_first<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        self.grouped(move |conn| {
            let before = conn.total_changes();
            let result = run_catching(|| work(conn));
            let wrote = conn.total_changes() != before;
            if let (Err(e), true) = (&result, wrote) {
                tracing::error!("a batched closure failed after writing: {e}");
            }
            let usable = result.is_ok() || !wrote;
            (result, usable)
        })
        .await
    }

    /// Queues `run` to go inside the group's transaction and answers once the group has
    /// committed (or failed to). `run` returns its result and whether the transaction is still
    /// usable; when there is no transaction, the caller gets the reason instead.
    async fn grouped<T, F>(&self, run: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> (Result<T, ApiError>, bool) + Send + 'static,
    {
        let (job, answer) = grouped_job(run);
        self.send(job)?;
        answer.await.map_err(|_| gone())?
    }

    /// Like [`Db::batch`], for a thread outside the async runtime: blocks until the group has
    /// committed.
    pub fn batch_blocking<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let (job, answer) = grouped_job(move |conn| match in_savepoint(conn, work) {
            Ok(result) => (result, true),
            Err(e) => (Err(ApiError::Database(e)), false),
        });
        self.send(job)?;
        answer.blocking_recv().map_err(|_| gone())?
    }

    /// The wakes the writer sends after each commit of a transaction that called
    /// [`wake_after_commit`]; `None` once a thread has taken them. The channel closes when the
    /// writer stops (the last handle was dropped).
    pub fn take_commit_wakes(&self) -> Option<Receiver<()>> {
        self.inner
            .commit_wakes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// A handle that does not keep the database open: for a background thread that should stop
    /// with it.
    pub fn downgrade(&self) -> WeakDb {
        WeakDb(Arc::downgrade(&self.inner))
    }

    /// A read connection of the caller's own (for a thread that reads in many short steps).
    pub fn open_reader(&self) -> Result<Connection, ApiError> {
        open_reader(&self.inner.path)
    }

    /// Runs read-only `work` on a read connection on the blocking pool.
    pub async fn read<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let _permit = self
            .inner
            .reader_permits
            .acquire()
            .await
            .map_err(|_| gone())?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&inner.path)?,
            };
            let result = run_catching(|| work(&conn));
            inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
            result
        })
        .await
        .map_err(|e| ApiError::Internal(format!("database task failed: {e}")))?
    }

    /// The blob stored under `hash`, from memory when it was read lately.
    pub async fn blob(&self, hash: ContentHash) -> Result<Option<Bytes>, ApiError> {
        if let Some(bytes) = self.cached_blob(&hash) {
            return Ok(Some(bytes));
        }
        let store = self.inner.store.clone();
        let bytes = self
            .read(move |conn| {
                let _span = metrics::span(Stage::BlobRead);
                store.get(conn, &hash)
            })
            .await?;
        Ok(bytes.map(|bytes| {
            let bytes = Bytes::from(bytes);
            self.inner
                .blobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(hash, bytes.clone(), bytes.len() + BLOB_CACHE_ENTRY_BYTES);
            bytes
        }))
    }

    /// The blob store on disk, for writing job inputs and outputs.
    pub fn blob_store(&self) -> &BlobStore {
        &self.inner.store
    }

    fn cached_blob(&self, hash: &ContentHash) -> Option<Bytes> {
        self.inner
            .blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
    }

    fn send(&self, job: Job) -> Result<(), ApiError> {
        self.inner.writer.send(job).map_err(|_| gone())
    }
}

/// A [`Db`] handle that does not keep it open ([`Db::downgrade`]).
pub struct WeakDb(Weak<Inner>);

impl WeakDb {
    /// The database, if some handle still holds it open.
    pub fn upgrade(&self) -> Option<Db> {
        self.0.upgrade().map(|inner| Db { inner })
    }
}

/// Makes prepared statements last: a cache of them, and plans that never depend on the values
/// bound to a statement (SQLite's query planner stability guarantee, QPSG). Without QPSG, SQLite
/// compiles a statement again every time a parameter whose value its plan looked at is bound
/// anew: `LIMIT ?`, or a parameter compared with a partial index's condition. That made the
/// lease query (`units::pending_for`) recompile on every lease, over a quarter of the writer
/// thread's time under load. The relay never runs ANALYZE, so its plans do not depend on values
/// otherwise.
fn keep_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, ApiError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    keep_plans(&conn)?;
    // A reader's page cache is dropped whenever another connection has committed, which under
    // load is before nearly every read; a big one would only cost time to drop.
    conn.execute_batch("PRAGMA cache_size = -1024;")?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_call_is_an_internal_error_and_rolls_back() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Db::open(&dir.path().join("nested/dirs/relay.sqlite")).unwrap();
        let failed = db
            .call(|conn| -> Result<(), ApiError> {
                let tx = conn.transaction()?;
                tx.execute("INSERT INTO contributors VALUES ('k', 1, 1)", [])?;
                panic!("a bug in a handler");
            })
            .await;
        assert!(matches!(failed, Err(ApiError::Internal(_))));
        let contributors: i64 = db
            .call(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM contributors", [], |r| r.get(0))?))
            .await
            .expect("the database is usable after a panic");
        assert_eq!(contributors, 0);
        let mode: String = db
            .call(|conn| Ok(conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn grouped_closures_commit_together_and_fail_alone() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Db::open(&dir.path().join("relay.sqlite")).unwrap();
        let insert = |key: String, outcome: u8| {
            let db = db.clone();
            tokio::spawn(async move {
                db.batch(move |conn| {
                    conn.execute("INSERT INTO contributors VALUES (?1, 1, 1)", [&key])?;
                    match outcome {
                        0 => Ok(key),
                        1 => Err(ApiError::bad_request("refused", "this one is refused")),
                        _ => panic!("a bug in a handler"),
                    }
                })
                .await
            })
        };
        let calls: Vec<_> = (0..300)
            .map(|i| insert(format!("k{i}"), (i % 3) as u8))
            .collect();
        let mut kept = Vec::new();
        for (i, call) in calls.into_iter().enumerate() {
            match (i % 3, call.await.unwrap()) {
                (0, Ok(key)) => kept.push(key),
                (1, Err(ApiError::Refused { code, .. })) => assert_eq!(code, "refused"),
                (2, Err(ApiError::Internal(_))) => {}
                (_, other) => panic!("call {i}: {other:?}"),
            }
        }
        assert_eq!(kept.len(), 100);
        // What the callers were told is what is stored, seen from a fresh connection.
        let stored: i64 = db
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT COUNT(*) FROM contributors WHERE CAST(substr(public_key, 2) AS INTEGER) % 3 = 0",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        let all: i64 = db
            .call(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM contributors", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!((stored, all), (100, 100));
    }

    #[tokio::test]
    async fn a_closure_that_fails_after_writing_fails_its_whole_group() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Db::open(&dir.path().join("relay.sqlite")).unwrap();
        // Hold the writer so that what follows queues up and runs as one group.
        let writer = db.clone();
        let held = tokio::spawn(async move {
            writer
                .call(|_| {
                    std::thread::sleep(Duration::from_millis(200));
                    Ok(())
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let insert = |key: &'static str, fail: bool| {
            let db = db.clone();
            tokio::spawn(async move {
                db.batch_refusing_first(move |conn| {
                    conn.execute("INSERT INTO contributors VALUES (?1, 1, 1)", [key])?;
                    if fail {
                        return Err(ApiError::bad_request("late", "refused after writing"));
                    }
                    Ok(())
                })
                .await
            })
        };
        let refuse_first = {
            let db = db.clone();
            move || {
                let db = db.clone();
                tokio::spawn(async move {
                    db.batch_refusing_first(|_| -> Result<(), ApiError> {
                        Err(ApiError::bad_request("early", "refused before writing"))
                    })
                    .await
                })
            }
        };
        let mut calls = Vec::new();
        for (key, fail) in [("a", false), ("b", true)] {
            calls.push(insert(key, fail));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        calls.push(refuse_first());
        tokio::time::sleep(Duration::from_millis(5)).await;
        calls.push(insert("c", false));
        held.await.unwrap().unwrap();
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(match call.await.unwrap() {
                Ok(()) => "ok",
                Err(ApiError::Refused { code, .. }) => code,
                Err(_) => "failed",
            });
        }
        // "a" was in the group that "b" spoiled; the early refusal spoils nothing.
        assert_eq!(outcomes, ["failed", "failed", "early", "ok"]);
        let keys: Vec<String> = db
            .read(|conn| {
                let mut rows = conn.prepare("SELECT public_key FROM contributors ORDER BY 1")?;
                let keys = rows.query_map([], |r| r.get(0))?;
                Ok(keys.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(keys, ["c"]);
    }

    #[tokio::test]
    async fn a_call_that_leaves_a_transaction_open_does_not_block_the_writer() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Db::open(&dir.path().join("relay.sqlite")).unwrap();
        db.call(|conn| {
            conn.execute_batch("BEGIN; INSERT INTO contributors VALUES ('left', 1, 1);")?;
            Ok(())
        })
        .await
        .unwrap();
        db.batch(|conn| Ok(conn.execute("INSERT INTO contributors VALUES ('k', 1, 1)", [])?))
            .await
            .expect("the writer goes on");
        let keys: i64 = db
            .read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM contributors", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(
            keys, 1,
            "the open transaction was rolled back, the batch committed"
        );
    }

    #[tokio::test]
    async fn balances_follow_the_ledger() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = Db::open(&dir.path().join("relay.sqlite")).unwrap();
        let (balance, sum) = db
            .call(|conn| {
                for (account, amount) in [("a", 5), ("b", 7), ("a", -2), ("a", 10)] {
                    conn.execute(
                        "INSERT INTO ledger (account, amount, kind, created_at_ms)
                         VALUES (?1, ?2, 'test', 1)",
                        rusqlite::params![account, amount],
                    )?;
                }
                let sum: i64 = conn.query_row(
                    "SELECT SUM(amount) FROM ledger WHERE account = 'a'",
                    [],
                    |r| r.get(0),
                )?;
                Ok((crate::accounts::ledger::balance(conn, "a")?, sum))
            })
            .await
            .unwrap();
        assert_eq!((balance, sum), (13, 13));
    }
}
