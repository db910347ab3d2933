//! The SQLite database: one writer thread that commits in groups, and a few read connections.
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
//! Job outputs are assembled by a thread of their own ([`crate::assembly`]), off the writer:
//! the transaction that verifies a job's last unit marks it (`jobs.assembling`) and calls
//! [`assembly_due`]; once that transaction has committed, the writer wakes the assembler, which
//! reads the units' outputs on a read connection of its own, streams the output into a blob
//! file and marks the job done in a short grouped transaction. It also looks for such jobs
//! when the database is opened (a crash between that commit and the output), every
//! [`ASSEMBLY_SWEEP`], and again after [`ASSEMBLY_RETRY`] when an assembly failed.
//!
//! Input blobs are also kept in a bounded in-memory cache ([`Db::blob`]): they are immutable and
//! named by their hash, so a cached copy can never be stale.
//!
//! The WAL is checkpointed by a background thread with its own connection, so requests seldom
//! wait for a checkpoint. Under steady writes that thread can never finish one (new frames keep
//! arriving), and the WAL would grow without end; so once it holds [`WAL_LIMIT_FRAMES`] the writer
//! thread itself checkpoints between two groups, copying only what the background thread has not,
//! and the WAL starts over.

use crate::assembly;
use crate::blobs::BlobStore;
use crate::error::{ApiError, OpenError};
use crate::metrics::{self, Stage};
use axum::body::Bytes;
use glowworm_protocol::cache::BlobCache;
use glowworm_protocol::hash::ContentHash;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot};

const SCHEMA: &str = include_str!("schema.sql");

/// Most batched closures that share one commit.
const MAX_GROUP: usize = 256;
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
/// How often the background thread checkpoints the WAL, at most.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL frames (pages) after which the writer checkpoints so that the WAL can start over: 64 MiB
/// of 4 KiB pages.
pub const WAL_LIMIT_FRAMES: i64 = 16 << 10;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;
/// How often the assembler looks for jobs waiting for their output without being woken.
pub const ASSEMBLY_SWEEP: Duration = Duration::from_secs(30);
/// How long the assembler waits before it tries again after an assembly failed (a full disk).
pub const ASSEMBLY_RETRY: Duration = Duration::from_secs(5);

thread_local! {
    /// Set on the writer thread by a transaction that left a job waiting for its output
    /// ([`assembly_due`]); the writer wakes the assembler after its next commit.
    static ASSEMBLY_DUE: Cell<bool> = const { Cell::new(false) };
}

/// Says that the transaction running on this thread (the writer) leaves a job to assemble: the
/// assembler is woken once it has committed. On another thread it does nothing; the
/// assembler's periodic sweep finds the job.
pub fn assembly_due() {
    ASSEMBLY_DUE.with(|due| due.set(true));
}

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
    /// Taken by the assembler before it reads each unit's output; tests hold it
    /// ([`Db::hold_assembly`]).
    assembly_gate: Mutex<()>,
    /// Dropped with the last handle, which stops the checkpoint thread.
    _checkpoints: SyncSender<()>,
}

/// What the writer thread is asked to do.
enum Job {
    /// Runs with the connection to itself; replies on its own.
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Runs inside the group's transaction, or is told why there is none; returns how to reply
    /// once the group has committed (`None`) or failed to (`Some(why)`), and whether the
    /// transaction is still usable (false when the closure failed but its writes could not be
    /// undone on their own).
    Grouped(GroupedWork),
}

type GroupedWork = Box<dyn FnOnce(Result<&Connection, &Failure>) -> (Reply, bool) + Send>;

type Reply = Box<dyn FnOnce(Option<&Failure>) + Send>;

/// Why a group's transaction could not begin or commit, for each of its closures' callers.
#[derive(Debug, Clone)]
enum Failure {
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
    fn to_api_error(&self) -> ApiError {
        match self {
            Failure::Sqlite(code, message) => {
                ApiError::Database(rusqlite::Error::SqliteFailure(*code, message.clone()))
            }
            Failure::Other(why) => ApiError::Internal(format!("database transaction: {why}")),
        }
    }
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
        // One pending wake is enough: the assembler looks for every job waiting when it wakes.
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("relay-db-writer".into())
            .spawn(move || write_loop(conn, jobs, &frames, &wake))
            .map_err(|e| OpenError::Thread(e.to_string()))?;
        let (checkpoints, stop) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("relay-db-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stop, &wal_frames))
            .map_err(|e| OpenError::Thread(e.to_string()))?;

        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            writer,
            readers: Mutex::new(Vec::new()),
            reader_permits: Semaphore::new(READERS),
            blobs: Mutex::new(BlobCache::new(BLOB_CACHE_BYTES)),
            store: BlobStore::beside(path),
            assembly_gate: Mutex::new(()),
            _checkpoints: checkpoints,
        });
        // The assembler holds the database weakly: it stops when the writer does, once the
        // last handle is dropped.
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("relay-assembler".into())
            .spawn(move || assembly_loop(weak, woken))
            .map_err(|e| OpenError::Thread(e.to_string()))?;
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
        Self::upgrade(&tx)?;
        tx.commit()?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")
    }

    /// Creates the schema and adds what later versions gave existing tables, in one
    /// transaction: the schema (whose `CREATE ... IF NOT EXISTS` leaves an existing table as it
    /// is) then runs unchanged, and a table derived from others is filled in the same step.
    fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
        let has_table = |name: &str| -> rusqlite::Result<bool> {
            conn.query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |row| row.get(0),
            )
        };
        let has_ledger = has_table("ledger")?;
        let has_balances = has_table("balances")?;
        // Columns later versions added to existing tables, with their definitions.
        const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
            ("ledger", "link_key", "TEXT REFERENCES links(public_key)"),
            ("units", "verify", "TEXT NOT NULL DEFAULT 'freivalds'"),
            ("units", "quorum", "INTEGER NOT NULL DEFAULT 1"),
            ("units", "replicas_needed", "INTEGER NOT NULL DEFAULT 1"),
            ("units", "on_trust", "INTEGER NOT NULL DEFAULT 0"),
            ("units", "canary_of", "INTEGER REFERENCES units(id)"),
            ("units", "adapter_class", "TEXT"),
            ("leases", "account", "TEXT"),
            ("leases", "network", "TEXT"),
            ("leases", "adapter_class", "TEXT"),
            ("leases", "outlived_relay", "INTEGER NOT NULL DEFAULT 0"),
            ("leases", "on_trust", "INTEGER NOT NULL DEFAULT 0"),
            ("leases", "canary", "INTEGER NOT NULL DEFAULT 0"),
            ("leases", "release_reason", "TEXT"),
            ("leases", "proven", "INTEGER NOT NULL DEFAULT 0"),
            ("leases", "source", "TEXT"),
            ("units", "gpu_ms", "INTEGER NOT NULL DEFAULT 0"),
            ("units", "gpu_failures", "INTEGER NOT NULL DEFAULT 0"),
            ("units", "misses", "INTEGER NOT NULL DEFAULT 0"),
            ("units", "held_until_ms", "INTEGER NOT NULL DEFAULT 0"),
            ("jobs", "failure", "TEXT"),
            ("jobs", "assembling", "INTEGER NOT NULL DEFAULT 0"),
            ("results", "state", "TEXT NOT NULL DEFAULT 'valid'"),
        ];
        for (table, column, definition) in ADDED_COLUMNS {
            let has_column: bool = conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                [table, column],
                |row| row.get(0),
            )?;
            if has_table(table)? && !has_column {
                conn.execute(
                    &format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"),
                    [],
                )?;
                if (*table, *column) == ("results", "state") {
                    conn.execute(
                        "UPDATE results SET state = 'invalid' WHERE verified = 0",
                        [],
                    )?;
                }
            }
        }
        for (table, marker) in REBUILT_TABLES {
            rebuild_if_outdated(conn, table, marker)?;
        }
        conn.execute_batch(SCHEMA)?;
        // Known-answer units used to be copies of a verified unit under a new id (which told
        // contributors what they were); canaries are now leases of the verified unit itself
        // (crate::canaries). Copies still open are cancelled, so their results are refused.
        conn.execute(
            "UPDATE units SET state = 'cancelled'
             WHERE canary_of IS NOT NULL AND state IN ('pending', 'leased')",
            [],
        )?;
        // The embedding origin of partner_share entries (crate::partners), for every database.
        let has_origin: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('ledger') WHERE name = 'origin'",
            [],
            |row| row.get(0),
        )?;
        if !has_origin {
            conn.execute("ALTER TABLE ledger ADD COLUMN origin TEXT", [])?;
        }
        // Who asked for each sign-in nonce (crate::nonces caps them per address).
        let has_requester: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('nonces') WHERE name = 'requester'",
            [],
            |row| row.get(0),
        )?;
        if !has_requester {
            conn.execute("ALTER TABLE nonces ADD COLUMN requester TEXT", [])?;
        }
        conn.execute(
            "CREATE INDEX IF NOT EXISTS nonces_by_requester ON nonces(requester)
             WHERE used_at_ms IS NULL",
            [],
        )?;
        if has_ledger && !has_balances {
            conn.execute(
                "INSERT INTO balances (account, amount)
                 SELECT account, SUM(amount) FROM ledger GROUP BY account",
                [],
            )?;
        }
        Ok(())
    }
}

/// Tables whose constraints later versions changed, with a phrase only the current definition
/// has. SQLite cannot alter a constraint, so [`rebuild_if_outdated`] copies such a table into one
/// of the current definition.
const REBUILT_TABLES: &[(&str, &str)] = &[
    // Kernel jobs, cancelled jobs, inputs in the blob store (no reference to `blobs`).
    ("jobs", "'cancelled'"),
    // Cancelled units, kernel units without A and B panels, credits per unit.
    ("units", "'cancelled'"),
];

/// Rebuilds `table` with its definition in the schema when its stored definition lacks
/// `marker`: creates the new table, copies every column the two have in common, drops the old
/// one and renames the new one, in the caller's transaction (foreign keys off). Indexes are
/// created again by the schema afterwards. Units get their credits per result filled in.
fn rebuild_if_outdated(conn: &Connection, table: &str, marker: &str) -> rusqlite::Result<()> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |row| row.get(0),
        )
        .optional()?;
    let Some(stored) = stored else {
        return Ok(());
    };
    if stored.contains(marker) {
        return Ok(());
    }
    let definition = table_definition(table);
    let rebuilt = format!("{table}_rebuilt");
    let create = definition.replacen(
        &format!("CREATE TABLE IF NOT EXISTS {table} ("),
        &format!("CREATE TABLE {rebuilt} ("),
        1,
    );
    conn.execute_batch(&create)?;
    let columns = |name: &str| -> rusqlite::Result<Vec<String>> {
        conn.prepare("SELECT name FROM pragma_table_info(?1)")?
            .query_map([name], |row| row.get(0))?
            .collect()
    };
    let old = columns(table)?;
    let common: Vec<String> = columns(&rebuilt)?
        .into_iter()
        .filter(|c| old.contains(c))
        .collect();
    let list = common.join(", ");
    conn.execute_batch(&format!(
        "INSERT INTO {rebuilt} ({list}) SELECT {list} FROM {table};
         DROP TABLE {table};
         ALTER TABLE {rebuilt} RENAME TO {table};"
    ))?;
    match table {
        "units" => conn.execute(
            "UPDATE units SET flop = 2 * m * n * k WHERE flop = 0 AND kernel_unit IS NULL",
            [],
        )?,
        "jobs" => conn.execute(
            "UPDATE jobs SET output_bytes = 4 * m * n WHERE kind = 'matmul'",
            [],
        )?,
        _ => 0,
    };
    tracing::info!("database upgraded: table {table} rebuilt with its current constraints");
    Ok(())
}

/// The `CREATE TABLE` statement of `table` in the schema.
fn table_definition(table: &str) -> &'static str {
    let start = SCHEMA
        .find(&format!("CREATE TABLE IF NOT EXISTS {table} ("))
        .unwrap_or_else(|| panic!("the schema defines table {table}"));
    let end = start
        + SCHEMA[start..]
            .find("\n);")
            .expect("a table definition ends with );")
        + 3;
    &SCHEMA[start..end]
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

    /// Holds the job output assembler before it reads its next unit's output, until the guard
    /// is dropped. For tests: what happens while an output is being assembled.
    #[doc(hidden)]
    pub fn hold_assembly(&self) -> MutexGuard<'_, ()> {
        self.inner
            .assembly_gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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

/// The writer's job that runs `run` inside the group's transaction, and where its result
/// arrives once the group has committed (or failed to).
fn grouped_job<T, F>(run: F) -> (Job, oneshot::Receiver<Result<T, ApiError>>)
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

/// The assembler thread: assembles the outputs of the jobs waiting for them
/// ([`crate::assembly`]) at start, whenever the writer wakes it after a commit that left one,
/// every [`ASSEMBLY_SWEEP`], and [`ASSEMBLY_RETRY`] after a failure; until the writer stops.
fn assembly_loop(inner: Weak<Inner>, woken: Receiver<()>) {
    let mut reader = None;
    loop {
        let failed = match inner.upgrade() {
            Some(inner) => !assemble_due(&inner, &mut reader),
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
fn assemble_due(inner: &Inner, reader: &mut Option<Connection>) -> bool {
    let conn = match reader {
        Some(conn) => conn,
        None => match open_reader(&inner.path) {
            Ok(conn) => reader.insert(conn),
            Err(e) => {
                tracing::error!("assembling job outputs: opening a read connection: {e}");
                return false;
            }
        },
    };
    let due = match run_catching(|| assembly::due(conn)) {
        Ok(due) => due,
        Err(e) => {
            tracing::error!("looking for jobs to assemble: {e}");
            return false;
        }
    };
    let mut all_well = true;
    for job in due {
        let pause = || drop(inner.assembly_gate.lock());
        let finished = run_catching(|| assembly::assemble(conn, &inner.store, &job, &pause))
            .and_then(|output_hash| {
                let (work, answer) = grouped_job(move |conn| {
                    match in_savepoint(conn, |conn| {
                        assembly::finish(conn, job.job_id, &output_hash)
                    }) {
                        Ok(result) => (result, true),
                        Err(e) => (Err(ApiError::Database(e)), false),
                    }
                });
                inner.writer.send(work).map_err(|_| gone())?;
                answer.blocking_recv().map_err(|_| gone())?
            });
        if let Err(e) = finished {
            tracing::error!("assembling the output of job {}: {e}", job.job_id);
            all_well = false;
        }
    }
    all_well
}

/// Wakes the assembler if a transaction that just committed left a job to assemble.
fn wake_if_due(wake: &SyncSender<()>) {
    if ASSEMBLY_DUE.with(|due| due.replace(false)) {
        // Full: a wake is pending already, and it finds this job too.
        let _ = wake.try_send(());
    }
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
fn run_catching<T>(work: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(ApiError::Internal("a database task panicked".into())))
}

fn gone() -> ApiError {
    ApiError::Internal("the database writer has stopped".into())
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

/// Runs `work` in a savepoint: released when it succeeds, rolled back when it fails or panics.
/// The outer error means the savepoint itself failed, and with it the enclosing transaction.
fn in_savepoint<T>(
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
fn write_loop(
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

/// A PASSIVE checkpoint (it never waits for a reader or the writer); returns the frames in the
/// WAL and how many of them are now in the database file.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
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
            conn.prepare_cached("COMMIT")
                .and_then(|mut commit| commit.execute([]))
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

/// The checkpoint thread: copies the WAL into the database file now and then (PASSIVE: it never
/// makes a writer or reader wait) and notes how big the WAL is, until the last [`Db`] handle is
/// dropped.
fn checkpoint_loop(conn: Connection, stop: Receiver<()>, wal_frames: &AtomicI64) {
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
                Ok((crate::ledger::balance(conn, "a")?, sum))
            })
            .await
            .unwrap();
        assert_eq!((balance, sum), (13, 13));
    }

    #[test]
    fn a_database_from_before_wallet_links_is_upgraded_and_keeps_its_ledger() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("old.sqlite");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE ledger (
                id            INTEGER PRIMARY KEY AUTOINCREMENT,
                account       TEXT NOT NULL,
                amount        INTEGER NOT NULL,
                kind          TEXT NOT NULL,
                unit_id       INTEGER,
                result_id     INTEGER,
                created_at_ms INTEGER NOT NULL,
                UNIQUE (result_id, kind)
            );
            INSERT INTO ledger (account, amount, kind, created_at_ms) VALUES ('k', 5, 'unit_verified', 1);",
        )
        .unwrap();
        drop(old);
        for _ in 0..2 {
            drop(Db::open(&path).unwrap());
            let conn = Connection::open(&path).unwrap();
            let (amount, link_key): (i64, Option<String>) = conn
                .query_row("SELECT amount, link_key FROM ledger", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!((amount, link_key), (5, None));
            let balance = crate::ledger::balance(&conn, "k").unwrap();
            assert_eq!(
                balance, 5,
                "the balances table is filled from the ledger, once"
            );
            let links: i64 = conn
                .query_row("SELECT COUNT(*) FROM links", [], |r| r.get(0))
                .unwrap();
            assert_eq!(links, 0);
        }
    }

    #[test]
    fn tables_from_before_kernel_jobs_are_rebuilt_and_keep_their_rows() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("old.sqlite");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE blobs (hash TEXT PRIMARY KEY, bytes BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS jobs (
                id          INTEGER PRIMARY KEY AUTOINCREMENT,
                kind        TEXT NOT NULL CHECK (kind IN ('matmul')),
                m           INTEGER NOT NULL,
                n           INTEGER NOT NULL,
                k           INTEGER NOT NULL,
                state       TEXT NOT NULL CHECK (state IN ('queued', 'done', 'failed')),
                output_hash TEXT REFERENCES blobs(hash),
                created_at  INTEGER NOT NULL,
                is_demo     INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS units (
                id           INTEGER PRIMARY KEY AUTOINCREMENT,
                job_id       INTEGER NOT NULL REFERENCES jobs(id),
                row0         INTEGER NOT NULL,
                col0         INTEGER NOT NULL,
                m            INTEGER NOT NULL,
                n            INTEGER NOT NULL,
                k            INTEGER NOT NULL,
                kernel_hash  TEXT NOT NULL,
                a_hash       TEXT NOT NULL REFERENCES blobs(hash),  -- A row panel, m x k
                b_hash       TEXT NOT NULL REFERENCES blobs(hash),  -- B column panel, k x n
                state        TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'verified', 'failed')),
                attempts     INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL,
                result_hash  TEXT REFERENCES blobs(hash),
                verify          TEXT NOT NULL DEFAULT 'freivalds',
                quorum          INTEGER NOT NULL DEFAULT 1,
                replicas_needed INTEGER NOT NULL DEFAULT 1,
                on_trust        INTEGER NOT NULL DEFAULT 0,
                canary_of       INTEGER REFERENCES units(id),
                adapter_class   TEXT
            );
            INSERT INTO blobs VALUES ('aa', x'00'), ('bb', x'01');
            INSERT INTO jobs (kind, m, n, k, state, created_at, is_demo)
                VALUES ('matmul', 64, 32, 16, 'queued', 1, 1);
            INSERT INTO units (job_id, row0, col0, m, n, k, kernel_hash, a_hash, b_hash, state,
                               max_attempts)
                VALUES (1, 0, 0, 64, 32, 16, 'cc', 'aa', 'bb', 'pending', 3);",
        )
        .unwrap();
        drop(old);
        for _ in 0..2 {
            drop(Db::open(&path).unwrap());
            let conn = Connection::open(&path).unwrap();
            let (flop, a_hash, verify): (i64, String, String) = conn
                .query_row("SELECT flop, a_hash, verify FROM units", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
            assert_eq!(
                (flop, a_hash.as_str(), verify.as_str()),
                (2 * 64 * 32 * 16, "aa", "freivalds")
            );
            let output_bytes: i64 = conn
                .query_row("SELECT output_bytes FROM jobs", [], |r| r.get(0))
                .unwrap();
            assert_eq!(output_bytes, 4 * 64 * 32);
            // The new constraints hold, and the indexes are back.
            conn.execute("UPDATE jobs SET state = 'cancelled'", [])
                .unwrap();
            conn.execute("UPDATE jobs SET state = 'queued'", [])
                .unwrap();
            let indexes: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'
                     AND name IN ('units_by_state', 'units_by_job_state', 'jobs_by_requester')",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(indexes, 3);
            let broken: i64 = conn
                .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(broken, 0);
        }
    }
}
