//! Sign-in nonces: random, short-lived and single-use.
//!
//! `POST /v1/auth/nonce` issues one ([`issue`]); the Sign-In with Ethereum message the wallet
//! signs carries it, and only the successful link that names it uses it up ([`consume`], inside
//! the link's transaction), so a refused link leaves its nonce usable. Expired nonces are deleted
//! whenever one is issued. At most `max_pending_nonces` unexpired ones exist at a time, and at
//! most `max_nonces_per_address` unexpired, unused ones per requester ([`Requester`]: an IPv4
//! address or IPv6 /64), so one client cannot take every nonce and leave others none.

use crate::config::Config;
use crate::error::ApiError;
use crate::ids::address_bucket;
use crate::random;
use axum::http::StatusCode;
use glowworm_protocol::wire::NonceReply;
use rusqlite::{Connection, OptionalExtension, params};

/// Characters in an issued nonce (about 119 random bits).
pub const NONCE_LEN: usize = 20;

/// Who asks for a nonce: the client's IPv4 address or IPv6 /64 (from `X-Forwarded-For` with
/// `trust_forwarded_for`), or `None` for a request made without a socket (tests that call the
/// router directly), which only the relay-wide cap bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester(pub Option<String>);

/// The requester an address counts as: "203.0.113.7", or "2001:db8:1:2::/64".
pub fn requester_of(ip: std::net::IpAddr) -> String {
    match address_bucket(ip) {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

/// Issues a fresh nonce to `requester`, usable for `nonce_seconds` from `now_ms`; 429
/// `too_many_nonces` when the relay, or the requester, holds as many as it may.
pub fn issue(
    conn: &Connection,
    config: &Config,
    requester: &Requester,
    now_ms: i64,
) -> Result<NonceReply, ApiError> {
    conn.execute("DELETE FROM nonces WHERE expires_at_ms <= ?1", [now_ms])?;
    if let Some(requester) = &requester.0 {
        let (held, first_expiry): (i64, Option<i64>) = conn
            .prepare_cached(
                "SELECT COUNT(*), MIN(expires_at_ms) FROM nonces
                 WHERE requester = ?1 AND used_at_ms IS NULL",
            )?
            .query_row([requester], |row| Ok((row.get(0)?, row.get(1)?)))?;
        if held >= i64::from(config.max_nonces_per_address) {
            let seconds = first_expiry.map_or(0, |at| ((at - now_ms).max(0) + 999) / 1000);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_nonces",
                format!(
                    "{requester} holds {held} unused sign-in nonces, the most one address may \
                     ({}); use one of them, or ask again once the oldest expires in {seconds} s",
                    config.max_nonces_per_address
                ),
            ));
        }
    }
    let pending: i64 = conn.query_row("SELECT COUNT(*) FROM nonces", [], |row| row.get(0))?;
    if pending >= i64::from(config.max_pending_nonces) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_nonces",
            "the relay has handed out as many sign-in nonces as it keeps; try again shortly",
        ));
    }
    let nonce = random::alphanumeric(NONCE_LEN)?;
    insert(
        conn,
        &nonce,
        requester.0.as_deref(),
        now_ms,
        now_ms + config.nonce_ms(),
    )
}

/// Registers `nonce` as issued at `now_ms` and usable until `expires_ms`. [`issue`] uses it with
/// a random nonce; tests use it to register the fixed nonces of messages signed in advance.
pub fn issue_nonce_with_value(
    conn: &Connection,
    nonce: &str,
    now_ms: i64,
    expires_ms: i64,
) -> Result<NonceReply, ApiError> {
    insert(conn, nonce, None, now_ms, expires_ms)
}

fn insert(
    conn: &Connection,
    nonce: &str,
    requester: Option<&str>,
    now_ms: i64,
    expires_ms: i64,
) -> Result<NonceReply, ApiError> {
    conn.execute(
        "INSERT INTO nonces (nonce, issued_at_ms, expires_at_ms, requester) VALUES (?1, ?2, ?3, ?4)",
        params![nonce, now_ms, expires_ms, requester],
    )?;
    Ok(NonceReply {
        nonce: nonce.to_string(),
        expires_unix_ms: expires_ms,
    })
}

/// Refuses a nonce that was never issued or has expired (400 `unknown_nonce`) or that a link
/// already used (409 `nonce_used`).
pub fn require_usable(conn: &Connection, nonce: &str, now_ms: i64) -> Result<(), ApiError> {
    let row: Option<(i64, Option<i64>)> = conn
        .query_row(
            "SELECT expires_at_ms, used_at_ms FROM nonces WHERE nonce = ?1",
            [nonce],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    match row {
        Some((_, Some(_))) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "nonce_used",
            format!("nonce {nonce:?} was already used by a link; ask for a new one"),
        )),
        Some((expires_ms, None)) if now_ms < expires_ms => Ok(()),
        _ => Err(ApiError::bad_request(
            "unknown_nonce",
            format!(
                "nonce {nonce:?} was not issued by this relay or has expired; ask for a new one \
                 at POST /v1/auth/nonce"
            ),
        )),
    }
}

/// Uses up `nonce` at `now_ms`, after the same checks as [`require_usable`]. Call it inside the
/// transaction that links, so that a refused link leaves the nonce as it was.
pub fn consume(conn: &Connection, nonce: &str, now_ms: i64) -> Result<(), ApiError> {
    require_usable(conn, nonce, now_ms)?;
    conn.execute(
        "UPDATE nonces SET used_at_ms = ?2 WHERE nonce = ?1 AND used_at_ms IS NULL",
        params![nonce, now_ms],
    )?;
    Ok(())
}
