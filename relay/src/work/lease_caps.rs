//! How many leases a key, a wallet address and a network may hold at once.
//!
//! Keys cost nothing, so one person can make thousands; if leases were free for the asking,
//! one of them could hold every unit of the queue and everyone else would hear "no work". So
//! leases in flight are capped, and the caps start small and grow with a verified record:
//!
//! - a key: `leases_per_new_key` plus one for each valid result in a row
//!   ([`crate::accounts::reputation`]'s `consecutive_valid`), up to `max_leases_per_key`. An expired lease
//!   or an invalid result ends the run, so the cap falls back to the start;
//! - the keys linked to one wallet address, together: the same rule with the address's record,
//!   up to `max_leases_per_address`;
//! - a network (the client's /24 or /64, [`crate::http::network`]): the leases of keys without a
//!   record (not trusted) at most `new_leases_per_network`, less one for each of their leases
//!   from that network that expired or was rejected in the last [`BACKOFF_WINDOW_MS`] (down to
//!   one); all leases from it at most `max_leases_per_network`.
//!
//! A contributor over a cap is answered 429 `lease_cap` (with `Retry-After`) before anything is
//! written; honest clients wait and ask again, as for "no work". Leases whose deadline passed
//! no longer count, swept or not.

use crate::config::Config;
use crate::error::ApiError;
use axum::http::StatusCode;
use rusqlite::{Connection, params};

/// How far back an unproven network's failed leases shrink its cap: ten minutes.
pub const BACKOFF_WINDOW_MS: i64 = 10 * 60 * 1000;

/// Who asks for a lease, as the caps see them.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// Canonical public key.
    pub public_key: &'a str,
    /// The wallet address the key linked, if any.
    pub address: Option<&'a str>,
    /// What the per-network caps count against (`leases.source`), when known.
    pub source: Option<&'a str>,
    /// Whether the key (and its address) has a verified record: it is trusted.
    pub proven: bool,
    /// The key's valid results in a row (0 when a lease of its expired and is not swept yet:
    /// its run has ended already).
    pub key_run: u32,
    /// The linked address's valid results in a row (0 without an address).
    pub address_run: u32,
}

/// Refuses (429 `lease_cap`) a lease that would take `asker` over one of its caps at `now_ms`.
/// It only reads, so it can run before a lease transaction's first write.
pub fn check(
    conn: &Connection,
    config: &Config,
    asker: &Asker,
    now_ms: i64,
) -> Result<(), ApiError> {
    let key_cap = grown(config, asker.key_run).min(config.max_leases_per_key);
    let held = in_flight(conn, Holder::Key, asker.public_key, now_ms, key_cap)?;
    if held >= key_cap {
        return Err(capped(format!(
            "this key holds {held} leases, the most it may hold now ({} + 1 for each valid \
             result in a row, up to {}): return or release one first",
            config.leases_per_new_key, config.max_leases_per_key
        )));
    }
    if let Some(address) = asker.address {
        let cap = grown(config, asker.address_run).min(config.max_leases_per_address);
        let held = in_flight(conn, Holder::Account, address, now_ms, cap)?;
        if held >= cap {
            return Err(capped(format!(
                "the keys linked to {address} hold {held} leases, the most they may hold now \
                 ({} + 1 for each valid result in a row, up to {})",
                config.leases_per_new_key, config.max_leases_per_address
            )));
        }
    }
    let Some(source) = asker.source else {
        return Ok(());
    };
    if config.max_leases_per_network > 0 {
        let held = in_flight(
            conn,
            Holder::Source,
            source,
            now_ms,
            config.max_leases_per_network,
        )?;
        if held >= config.max_leases_per_network {
            return Err(capped(format!(
                "contributors on network {source} hold {held} leases, the most one network \
                 may hold ({})",
                config.max_leases_per_network
            )));
        }
    }
    if !asker.proven && config.new_leases_per_network > 0 {
        let (held, failed) = unproven_of(conn, source, now_ms, config.new_leases_per_network)?;
        let cap = config.new_leases_per_network.saturating_sub(failed).max(1);
        if held >= cap {
            return Err(capped(format!(
                "keys without a verified record on network {source} hold {held} leases, the \
                 most they may hold now ({} less {failed} of theirs that expired or failed \
                 verification in the last {} minutes); a key gets its own allowance once it \
                 has a record",
                config.new_leases_per_network,
                BACKOFF_WINDOW_MS / 60_000
            )));
        }
    }
    Ok(())
}

/// A cap that starts at `leases_per_new_key` and grows by one per valid result in a row.
fn grown(config: &Config, run: u32) -> u32 {
    config.leases_per_new_key.saturating_add(run)
}

fn capped(message: String) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "lease_cap", message)
}

/// Whether `public_key` holds a lease whose deadline passed before `now_ms` (not swept yet).
pub fn has_overdue(conn: &Connection, public_key: &str, now_ms: i64) -> Result<bool, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM leases INDEXED BY leases_active_by_key
                            WHERE public_key = ?1 AND state = 'active' AND deadline_ms < ?2)",
        )?
        .query_row(params![public_key, now_ms], |row| row.get(0))?)
}

/// What leases in flight are counted by: the column, and the index over active leases that
/// serves it (named, so that no other plan is chosen: without it SQLite may walk every active
/// lease).
#[derive(Debug, Clone, Copy)]
enum Holder {
    Key,
    Account,
    Source,
}

impl Holder {
    fn column_and_index(self) -> (&'static str, &'static str) {
        match self {
            Holder::Key => ("public_key", "leases_active_by_key"),
            Holder::Account => ("account", "leases_active_by_account"),
            Holder::Source => ("source", "leases_in_flight_by_source"),
        }
    }
}

/// Leases still in flight at `now_ms` held by `holder` `value`, counted up to `cap`.
fn in_flight(
    conn: &Connection,
    holder: Holder,
    value: &str,
    now_ms: i64,
    cap: u32,
) -> Result<u32, ApiError> {
    let (column, index) = holder.column_and_index();
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM leases INDEXED BY {index}
                               WHERE {column} = ?1 AND state = 'active' AND deadline_ms >= ?2
                                 AND {column} IS NOT NULL
                               LIMIT ?3)"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![value, now_ms, cap], |row| row.get(0))?)
}

/// Leases of unproven keys from `source`: how many are in flight at `now_ms`, and how many
/// expired (swept or not) or were rejected within [`BACKOFF_WINDOW_MS`], each counted up to
/// `cap`.
fn unproven_of(
    conn: &Connection,
    source: &str,
    now_ms: i64,
    cap: u32,
) -> Result<(u32, u32), ApiError> {
    let since = now_ms - BACKOFF_WINDOW_MS;
    let count = |sql: &str, from: i64, to: i64| -> Result<u32, ApiError> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row(params![source, from, to, cap], |row| row.get(0))?)
    };
    let active = "SELECT COUNT(*) FROM (SELECT 1 FROM leases INDEXED BY leases_in_flight_by_source
                      WHERE source = ?1 AND state = 'active' AND proven = 0
                        AND source IS NOT NULL AND deadline_ms >= ?2 AND deadline_ms < ?3
                      LIMIT ?4)";
    let failed = "SELECT COUNT(*) FROM (SELECT 1 FROM leases INDEXED BY leases_unproven_failed
                      WHERE source = ?1 AND state IN ('expired', 'rejected') AND proven = 0
                        AND source IS NOT NULL AND deadline_ms >= ?2 AND deadline_ms < ?3
                      LIMIT ?4)";
    let held = count(active, now_ms, i64::MAX)?;
    let overdue = count(active, since, now_ms)?;
    let failed = count(failed, since, i64::MAX)?;
    Ok((held, (overdue + failed).min(cap)))
}
