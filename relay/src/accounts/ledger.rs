//! The credit ledger: append-only rows of integer amounts; a balance is their sum, kept in the
//! `balances` table by a trigger on every append.
//!
//! An account is a contributor's public key (64 lowercase hex characters) or, once it has linked
//! a wallet, an Ethereum address (0x and 40 hex characters, EIP-55). SQLite triggers refuse every
//! UPDATE and DELETE of a ledger row; UNIQUE(result_id, kind) means a result is credited at most
//! once, and a unique index on (link_key, kind) that a link moves credits at most once, whatever
//! happens above.

use crate::error::ApiError;
use rusqlite::{Connection, OptionalExtension, params};

/// The ledger kind of a credit for a verified unit.
pub const UNIT_VERIFIED: &str = "unit_verified";
/// The ledger kind of a partner's share of a credit for a verified unit.
pub const PARTNER_SHARE: &str = "partner_share";
/// The ledger kind of the debit of a session key's own account when it links a wallet.
pub const LINK_OUT: &str = "link_out";
/// The ledger kind of the matching credit of the linked address.
pub const LINK_IN: &str = "link_in";

/// Credits `account` with `amount` for the verified result `result_id` of `unit_id`.
pub fn credit_verified_unit(
    conn: &Connection,
    account: &str,
    amount: i64,
    unit_id: i64,
    result_id: i64,
    now_ms: i64,
) -> Result<(), ApiError> {
    conn.prepare_cached(
        "INSERT INTO ledger (account, amount, kind, unit_id, result_id, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        account,
        amount,
        UNIT_VERIFIED,
        unit_id,
        result_id,
        now_ms
    ])?;
    Ok(())
}

/// A partner's share of a credit: what [`crate::work::settlement`] credits a partner on top of
/// the contributor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The partner's address.
    pub partner: String,
    /// The site the widget ran on.
    pub origin: String,
    pub unit_id: i64,
    pub amount: i64,
}

/// Credits a partner its `share` of the credit for the verified result `result_id`.
pub fn credit_partner_share(
    conn: &Connection,
    share: &Share,
    result_id: i64,
    now_ms: i64,
) -> Result<(), ApiError> {
    conn.prepare_cached(
        "INSERT INTO ledger (account, amount, kind, unit_id, result_id, created_at_ms, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        share.partner,
        share.amount,
        PARTNER_SHARE,
        share.unit_id,
        result_id,
        now_ms,
        share.origin
    ])?;
    Ok(())
}

/// Moves the whole balance of the session key `public_key` to `address`, for the link of that
/// key: `link_out` -X on the key, `link_in` +X on the address. Returns X (nothing is written
/// when it is 0).
pub fn move_for_link(
    conn: &Connection,
    public_key: &str,
    address: &str,
    now_ms: i64,
) -> Result<i64, ApiError> {
    let amount = balance(conn, public_key)?;
    if amount <= 0 {
        return Ok(0);
    }
    let mut insert = conn.prepare(
        "INSERT INTO ledger (account, amount, kind, link_key, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    insert.execute(params![public_key, -amount, LINK_OUT, public_key, now_ms])?;
    insert.execute(params![address, amount, LINK_IN, public_key, now_ms])?;
    Ok(amount)
}

/// The sum of an account's ledger rows (0 for an account with none), as the `balances` table
/// keeps it.
pub fn balance(conn: &Connection, account: &str) -> Result<i64, ApiError> {
    let balance = conn
        .prepare_cached("SELECT amount FROM balances WHERE account = ?1")?
        .query_row([account], |row| row.get(0))
        .optional()?;
    Ok(balance.unwrap_or(0))
}
