//! Contributors: known by their ed25519 public key, with when they were first and last seen and
//! the wallet address they linked, if any.
//!
//! Keys cost nothing, so a key gets a row only when it first earns something (a result of it is
//! credited, [`earned`]); asking for work, giving it back or sending results only moves an
//! existing row's last-seen time ([`seen`]). So made-up keys leave no rows, and
//! `contributors_online` counts contributors that have earned.

use crate::config::Config;
use crate::error::ApiError;
use crate::ledger;
use crate::links;
use crate::reputation;
use ed25519_dalek::VerifyingKey;
use glowworm_protocol::signing::{SignatureError, parse_public_key};
use glowworm_protocol::wire::ContributorInfo;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Checks a public key and returns it in its one canonical form (lowercase hex), so the same key
/// written in upper case is the same contributor.
pub fn canonical_key(public_hex: &str) -> Result<String, ApiError> {
    let canonical = public_hex.to_ascii_lowercase();
    verifying_key(&canonical)?;
    Ok(canonical)
}

/// Most decoded keys [`verifying_key`] keeps.
const MAX_KEYS: usize = 1 << 16;

/// The ed25519 key of a canonical public key, decoded (a square root on the curve, some
/// microseconds) once and then remembered: contributors send the same key with every request.
pub fn verifying_key(canonical_hex: &str) -> Result<VerifyingKey, ApiError> {
    static KEYS: OnceLock<Mutex<HashMap<String, VerifyingKey>>> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    if let Some(key) = keys
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(canonical_hex)
    {
        return Ok(*key);
    }
    let key = parse_key(canonical_hex)?;
    let mut keys = keys.lock().unwrap_or_else(PoisonError::into_inner);
    if keys.len() >= MAX_KEYS {
        keys.clear();
    }
    keys.insert(canonical_hex.to_string(), key);
    Ok(key)
}

fn parse_key(public_hex: &str) -> Result<VerifyingKey, ApiError> {
    parse_public_key(public_hex).map_err(|e| match e {
        SignatureError::InvalidPublicKey => ApiError::bad_request(
            "bad_public_key",
            "public_key is not a valid ed25519 public key",
        ),
        _ => ApiError::bad_request(
            "bad_public_key",
            "public_key must be 64 hex characters (an ed25519 public key)",
        ),
    })
}

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

/// What the relay knows of a contributor, or `None` if it knows nothing: the key has not earned,
/// sent a result or linked an address. Its credits are the balance of the account its credits
/// go to: its own, or its linked address's. A key that has not earned yet is seen from its
/// results (first and last) or, failing those, from its link.
pub fn info(
    conn: &Connection,
    config: &Config,
    public_key: &str,
) -> Result<Option<ContributorInfo>, ApiError> {
    let seen: Option<(i64, i64)> = conn
        .query_row(
            "SELECT first_seen_ms, last_seen_ms FROM contributors WHERE public_key = ?1
             UNION ALL
             SELECT MIN(created_at), MAX(created_at) FROM results
             WHERE public_key = ?1 HAVING COUNT(*) > 0
             UNION ALL
             SELECT linked_at_ms, linked_at_ms FROM links WHERE public_key = ?1
             LIMIT 1",
            [public_key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((first_seen, last_seen)) = seen else {
        return Ok(None);
    };
    let (units_verified, flop_verified): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(units.flop), 0)
         FROM results JOIN units ON units.id = results.unit_id
         WHERE results.public_key = ?1 AND results.verified = 1",
        [public_key],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let linked_address = links::address_of(conn, public_key)?;
    let account = linked_address.as_deref().unwrap_or(public_key);
    Ok(Some(ContributorInfo {
        public_key: public_key.to_string(),
        credits: ledger::balance(conn, account)?,
        units_verified,
        flop_verified,
        first_seen_unix_ms: first_seen,
        last_seen_unix_ms: last_seen,
        linked_address,
        pending_credits: pending_credits(conn, public_key)?,
        reputation: reputation::get(conn, config, public_key)?,
    }))
}

/// Credits of `public_key`'s results still waiting for verification (replicas or a later check).
pub fn pending_credits(conn: &Connection, public_key: &str) -> Result<i64, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(SUM(units.flop), 0)
             FROM results JOIN units ON units.id = results.unit_id
             WHERE results.public_key = ?1 AND results.state = 'pending'",
        )?
        .query_row([public_key], |row| row.get(0))?)
}
