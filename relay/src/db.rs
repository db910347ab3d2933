//! The SQLite database: one connection behind a mutex, used from blocking threads.
//!
//! Handlers never touch the connection directly: they pass a closure to [`Db::call`], which runs
//! it on tokio's blocking pool while holding the lock, so a slow query never stalls the async
//! runtime. Multi-step changes open a transaction inside the closure.

use crate::error::{ApiError, OpenError};
use crate::metrics::{self, Stage};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SCHEMA: &str = include_str!("schema.sql");

/// A shared handle to the relay's database.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (or creates) the database file in WAL mode, creating its parent directories and
    /// the schema.
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
        let conn = Connection::open(path).map_err(database_error)?;
        Self::prepare(&conn).map_err(database_error)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn prepare(conn: &Connection) -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!("SQLite journal mode is {mode}, not WAL");
        }
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;",
        )?;
        Self::upgrade(conn)?;
        conn.execute_batch(SCHEMA)
    }

    /// Adds the columns that later versions gave existing tables, so the schema (whose
    /// `CREATE ... IF NOT EXISTS` leaves an existing table as it is) can then run unchanged.
    fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
        let has_ledger: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'ledger'",
            [],
            |row| row.get(0),
        )?;
        let has_link_key: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('ledger') WHERE name = 'link_key'",
            [],
            |row| row.get(0),
        )?;
        if has_ledger && !has_link_key {
            conn.execute(
                "ALTER TABLE ledger ADD COLUMN link_key TEXT REFERENCES links(public_key)",
                [],
            )?;
        }
        Ok(())
    }

    /// Runs `work` with the connection on a blocking thread and returns what it returns.
    pub async fn call<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let asked = metrics::wall_start();
        tokio::task::spawn_blocking(move || {
            // A closure that panicked has already rolled its transaction back (Transaction
            // rolls back on drop), so the connection is safe to use again.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            metrics::add_wall(Stage::DbQueue, asked);
            work(&mut guard)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("database task failed: {e}")))?
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
            let db = Db::open(&path).unwrap();
            let conn = db.conn.lock().unwrap();
            let (amount, link_key): (i64, Option<String>) = conn
                .query_row("SELECT amount, link_key FROM ledger", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!((amount, link_key), (5, None));
            let links: i64 = conn
                .query_row("SELECT COUNT(*) FROM links", [], |r| r.get(0))
                .unwrap();
            assert_eq!(links, 0);
        }
    }
}
