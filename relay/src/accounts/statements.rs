//! What the relay shows of an account: an Ethereum address's credits and ledger
//! (`GET /v1/accounts/{address}`, [`info`]) and a contributor key's record
//! (`GET /v1/contributors/{key}`, [`contributor`]).
//!
//! An address's credits are the sum of its ledger rows: `link_in` rows for the anonymous
//! balances of the session keys that linked it, and `unit_verified` rows for what those keys
//! earned after. Addresses are stored and shown EIP-55 checksummed
//! ([`crate::ids::canonical_address`]).

use crate::accounts::contributors;
use crate::accounts::ledger;
use crate::accounts::links;
use crate::accounts::reputation;
use crate::config::Config;
use crate::error::ApiError;
use glowworm_protocol::wire::{AccountInfo, ContributorInfo, LedgerEntry, LinkedSession};
use rusqlite::{Connection, OptionalExtension};

/// Ledger entries per page unless `?limit=` says otherwise.
pub const DEFAULT_PAGE: u32 = 50;
/// The most entries one page may hold.
pub const MAX_PAGE: u32 = 500;

/// One page of an account's ledger entries: the newest `limit` with ids below `before`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u32,
    pub before: Option<i64>,
}

impl Page {
    /// The page asked for with `?limit=&before=`; 400 `bad_query` for a limit out of range.
    pub fn new(limit: Option<u32>, before: Option<i64>) -> Result<Page, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("limit must be from 1 to {MAX_PAGE}"),
            ));
        }
        Ok(Page { limit, before })
    }
}

/// The account of `address` (EIP-55); an address nothing was ever credited to has zeros.
pub fn info(
    conn: &Connection,
    config: &Config,
    address: &str,
    page: Page,
) -> Result<AccountInfo, ApiError> {
    let (units_verified, flop_verified): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(units.flop), 0)
         FROM results JOIN units ON units.id = results.unit_id
         WHERE results.verified = 1
           AND results.public_key IN (SELECT public_key FROM links WHERE address = ?1)",
        [address],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;

    let mut sessions = conn.prepare(
        "SELECT public_key, chain_id, linked_at_ms FROM links WHERE address = ?1
         ORDER BY linked_at_ms, public_key",
    )?;
    let linked_sessions = sessions
        .query_map([address], |row| {
            Ok(LinkedSession {
                public_key: row.get(0)?,
                chain_id: row.get::<_, i64>(1)? as u64,
                linked_at_unix_ms: row.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let mut rows = conn.prepare(
        "SELECT ledger.id, ledger.amount, ledger.kind, ledger.unit_id,
                COALESCE(ledger.link_key, results.public_key), ledger.created_at_ms
         FROM ledger LEFT JOIN results ON results.id = ledger.result_id
         WHERE ledger.account = ?1 AND substr(ledger.account, 1, 2) = '0x'
           AND ledger.id < ?2
         ORDER BY ledger.id DESC
         LIMIT ?3",
    )?;
    let mut entries = rows
        .query_map(
            rusqlite::params![
                address,
                page.before.unwrap_or(i64::MAX),
                i64::from(page.limit) + 1
            ],
            |row| {
                Ok(LedgerEntry {
                    id: row.get(0)?,
                    amount: row.get(1)?,
                    kind: row.get(2)?,
                    unit_id: row.get(3)?,
                    public_key: row.get(4)?,
                    created_at_unix_ms: row.get(5)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    // One row more than the page shows whether an older page exists.
    let next_before = if entries.len() > page.limit as usize {
        entries.truncate(page.limit as usize);
        entries.last().map(|entry| entry.id)
    } else {
        None
    };

    Ok(AccountInfo {
        address: address.to_string(),
        credits: ledger::balance(conn, address)?,
        units_verified,
        flop_verified,
        pending_credits: linked_sessions
            .iter()
            .map(|s| contributors::pending_credits(conn, &s.public_key))
            .sum::<Result<i64, ApiError>>()?,
        reputation: reputation::get(conn, config, address)?,
        linked_sessions,
        entries,
        next_before,
    })
}

/// What the relay knows of a contributor, or `None` if it knows nothing: the key has not earned,
/// sent a result or linked an address. Its credits are the balance of the account its credits
/// go to: its own, or its linked address's. A key that has not earned yet is seen from its
/// results (first and last) or, failing those, from its link.
pub fn contributor(
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
        pending_credits: contributors::pending_credits(conn, public_key)?,
        reputation: reputation::get(conn, config, public_key)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_holds_1_to_500_entries() {
        assert_eq!(Page::new(None, None).unwrap().limit, DEFAULT_PAGE);
        assert_eq!(Page::new(Some(500), Some(3)).unwrap().limit, 500);
        assert!(Page::new(Some(0), None).is_err());
        assert!(Page::new(Some(501), None).is_err());
    }
}
