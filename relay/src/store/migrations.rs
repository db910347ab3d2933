//! The schema and how an older database is brought up to it: columns later versions added,
//! tables whose constraints changed (rebuilt with their rows), and what is derived from other
//! tables (balances from the ledger). [`upgrade`] runs in one transaction when the database is
//! opened; the schema itself (`schema.sql`) only ever creates what is missing.

use rusqlite::{Connection, OptionalExtension};

/// The current schema: every table and index, `CREATE ... IF NOT EXISTS`.
pub(super) const SCHEMA: &str = include_str!("schema.sql");

/// Creates the schema and adds what later versions gave existing tables, in one
/// transaction: the schema (whose `CREATE ... IF NOT EXISTS` leaves an existing table as it
/// is) then runs unchanged, and a table derived from others is filled in the same step.
pub(super) fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
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
        ("ledger", "entry", "INTEGER REFERENCES ledger_entries(id)"),
        ("ledger", "job_id", "INTEGER REFERENCES jobs(id)"),
        (
            "units",
            "price",
            "INTEGER NOT NULL DEFAULT 0 CHECK (price >= 0)",
        ),
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
    // (crate::work::canaries). Copies still open are cancelled, so their results are refused.
    conn.execute(
        "UPDATE units SET state = 'cancelled'
         WHERE canary_of IS NOT NULL AND state IN ('pending', 'leased')",
        [],
    )?;
    // The embedding origin of partner_share entries (crate::accounts::partners), for every database.
    let has_origin: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('ledger') WHERE name = 'origin'",
        [],
        |row| row.get(0),
    )?;
    if !has_origin {
        conn.execute("ALTER TABLE ledger ADD COLUMN origin TEXT", [])?;
    }
    // Who asked for each sign-in nonce (crate::accounts::nonces caps them per address).
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
    // Credits of a database from before the double-entry ledger were single rows made from
    // nothing: one `legacy_unfunded` entry debits `source:legacy` by their sum, once, so that
    // the books balance (crate::accounts::ledger::audit).
    conn.execute_batch(
        "INSERT INTO ledger_entries (kind, created_at_ms, memo)
         SELECT 'legacy_unfunded', CAST(strftime('%s', 'now') AS INTEGER) * 1000,
                'credits made before the double-entry ledger, which nobody paid for'
         WHERE NOT EXISTS (SELECT 1 FROM ledger_entries WHERE kind = 'legacy_unfunded')
           AND (SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE entry IS NULL) != 0;
         INSERT INTO ledger (account, amount, kind, entry, created_at_ms)
         SELECT 'source:legacy', -(SELECT SUM(amount) FROM ledger WHERE entry IS NULL),
                'legacy_unfunded', id, created_at_ms
         FROM ledger_entries
         WHERE kind = 'legacy_unfunded'
           AND NOT EXISTS (SELECT 1 FROM ledger WHERE kind = 'legacy_unfunded');",
    )?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::super::Db;
    use rusqlite::Connection;

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
                .query_row(
                    "SELECT amount, link_key FROM ledger WHERE account = 'k'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!((amount, link_key), (5, None));
            let legacy: Vec<i64> = conn
                .prepare("SELECT amount FROM ledger WHERE account = 'source:legacy'")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(
                legacy,
                [-5],
                "the unfunded credits are balanced by one legacy entry, once"
            );
            let audit = crate::accounts::ledger::audit(&conn).unwrap();
            assert!(audit.holds(), "{audit:?}");
            let balance = crate::accounts::ledger::balance(&conn, "k").unwrap();
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
