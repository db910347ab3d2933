//! Contributors: known by their ed25519 public key, with when they were first and last seen and
//! the wallet address they linked, if any.
//!
//! Keys cost nothing, so a key gets a row only when it first earns something (a result of it is
//! credited, [`earned`]); asking for work, giving it back or sending results only moves an
//! existing row's last-seen time ([`seen`]). So made-up keys leave no rows, and
//! `contributors_online` counts contributors that have earned.

use crate::error::ApiError;
use rusqlite::{Connection, params};

/// Records that a contributor that has earned before was seen now; a key without a row gets
/// none.
pub fn seen(conn: &Connection, public_key: &str, now_ms: i64) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE contributors SET last_seen_ms = MAX(last_seen_ms, ?2) WHERE public_key = ?1",
    )?
    .execute(params![public_key, now_ms])?;
    Ok(())
}

/// Records that the key of result `result_id` earned now: its row is made if it has none.
pub fn earned(conn: &Connection, result_id: i64, now_ms: i64) -> Result<(), ApiError> {
    conn.prepare_cached(
        "INSERT INTO contributors (public_key, first_seen_ms, last_seen_ms)
         SELECT public_key, ?2, ?2 FROM results WHERE id = ?1
         ON CONFLICT (public_key) DO UPDATE SET
             last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms)",
    )?
    .execute(params![result_id, now_ms])?;
    Ok(())
}

/// What `public_key`'s results still waiting for verification (replicas or a later check) would
/// be paid: their units' prices, before any partner share or operator fee.
pub fn pending_credits(conn: &Connection, public_key: &str) -> Result<i64, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(SUM(units.price), 0)
             FROM results JOIN units ON units.id = results.unit_id
             WHERE results.public_key = ?1 AND results.state = 'pending'",
        )?
        .query_row([public_key], |row| row.get(0))?)
}
