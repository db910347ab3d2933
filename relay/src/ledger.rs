//! The credit ledger: append-only rows of integer amounts; a balance is their sum.
//!
//! SQLite triggers refuse every UPDATE and DELETE of a ledger row, and UNIQUE(result_id, kind)
//! means a result is credited at most once, whatever happens above.

use crate::error::ApiError;
use rusqlite::{Connection, params};

/// The ledger kind of a credit for a verified unit.
pub const UNIT_VERIFIED: &str = "unit_verified";

/// Credits `account` with `amount` for the verified result `result_id` of `unit_id`.
pub fn credit_verified_unit(
    conn: &Connection,
    account: &str,
    amount: i64,
    unit_id: i64,
    result_id: i64,
    now_ms: i64,
) -> Result<(), ApiError> {
    conn.execute(
        "INSERT INTO ledger (account, amount, kind, unit_id, result_id, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![account, amount, UNIT_VERIFIED, unit_id, result_id, now_ms],
    )?;
    Ok(())
}

/// The sum of an account's ledger rows.
pub fn balance(conn: &Connection, account: &str) -> Result<i64, ApiError> {
    let balance = conn.query_row(
        "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account = ?1",
        [account],
        |row| row.get(0),
    )?;
    Ok(balance)
}
