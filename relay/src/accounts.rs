//! Ethereum-address accounts: what `GET /v1/accounts/{address}` shows.
//!
//! An address's credits are the sum of its ledger rows: `link_in` rows for the anonymous
//! balances of the session keys that linked it, and `unit_verified` rows for what those keys
//! earned after. Addresses are stored and shown EIP-55 checksummed ([`canonical_address`]).

use crate::config::Config;
use crate::contributors;
use crate::error::ApiError;
use crate::ledger;
use crate::reputation;
use glowworm_protocol::wire::{AccountInfo, LedgerEntry, LinkedSession};
use rusqlite::Connection;

/// Ledger entries per page unless `?limit=` says otherwise.
pub const DEFAULT_PAGE: u32 = 50;
/// The most entries one page may hold.
pub const MAX_PAGE: u32 = 500;

/// Checks an address and returns it EIP-55 checksummed. All-lowercase and all-uppercase hex are
/// accepted as they are; mixed case must carry a correct checksum.
pub fn canonical_address(text: &str) -> Result<String, ApiError> {
    let hex_digits = text
        .strip_prefix("0x")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_address",
                "an address is 0x followed by 40 hex characters",
            )
        })?;
    let mut bytes = [0u8; 20];
    hex::decode_to_slice(hex_digits, &mut bytes)
        .map_err(|e| ApiError::Internal(format!("checked hex did not decode: {e}")))?;
    let mixed_case = hex_digits.bytes().any(|b| b.is_ascii_lowercase())
        && hex_digits.bytes().any(|b| b.is_ascii_uppercase());
    if mixed_case && !siwe::is_checksum(hex_digits) {
        return Err(ApiError::bad_request(
            "bad_checksum",
            format!(
                "{text} mixes upper and lower case but is not EIP-55 checksummed; did you mean {}?",
                siwe::eip55(&bytes)
            ),
        ));
    }
    Ok(siwe::eip55(&bytes))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKSUMMED: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    #[test]
    fn addresses_come_out_checksummed_whatever_case_goes_in() {
        assert_eq!(canonical_address(CHECKSUMMED).unwrap(), CHECKSUMMED);
        let lower = CHECKSUMMED.to_ascii_lowercase();
        assert_eq!(canonical_address(&lower).unwrap(), CHECKSUMMED);
        let upper = format!("0x{}", CHECKSUMMED[2..].to_ascii_uppercase());
        assert_eq!(canonical_address(&upper).unwrap(), CHECKSUMMED);
    }

    #[test]
    fn malformed_addresses_and_wrong_checksums_are_told_apart() {
        let code = |text: &str| canonical_address(text).unwrap_err().status_and_code().1;
        for bad in [
            "",
            "0x",
            "f39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
            "0Xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb9226",
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb922666",
            "0xg39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        ] {
            assert_eq!(code(bad), "bad_address", "{bad:?}");
        }
        assert_eq!(
            code("0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            "bad_checksum"
        );
    }

    #[test]
    fn a_page_holds_1_to_500_entries() {
        assert_eq!(Page::new(None, None).unwrap().limit, DEFAULT_PAGE);
        assert_eq!(Page::new(Some(500), Some(3)).unwrap().limit, 500);
        assert!(Page::new(Some(0), None).is_err());
        assert!(Page::new(Some(501), None).is_err());
    }
}
