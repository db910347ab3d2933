//! Reputation: what the verifier has learnt of each session key and each linked address.
//!
//! Every checked result moves it: a valid one adds to the run of consecutive valid results, an
//! invalid one ends the run and adds a strike. After `trust_after` valid results in a row a
//! contributor is trusted (and its strikes are forgiven): its replicated units are then
//! replicated only `trusted_replication_permille` of the time ([`crate::work::replication`]), its
//! failures count against the units it held ([`crate::work::units`]) and it may hold more leases at
//! once ([`crate::work::lease_caps`]). A lease that expires ends the run too, without a strike. At
//! `quarantine_strikes` strikes it is quarantined for good: no more leases, and its results
//! still waiting for verification are withheld, never credited. A key linked to an address
//! answers for the address too, so an address cannot shed a bad record by starting new keys.

use crate::config::Config;
use crate::error::ApiError;
use axum::http::StatusCode;
use glowworm_protocol::wire::Reputation;
use rusqlite::{Connection, OptionalExtension, params};

/// The subjects a result of `public_key` counts for: the key, and the address its credits go to
/// when it has linked one (`account`).
pub fn subjects<'a>(public_key: &'a str, account: &'a str) -> Vec<&'a str> {
    if account == public_key {
        vec![public_key]
    } else {
        vec![public_key, account]
    }
}

/// The reputation of a key or an address (all zero for one never checked).
pub fn get(conn: &Connection, config: &Config, subject: &str) -> Result<Reputation, ApiError> {
    let row = conn
        .prepare_cached(
            "SELECT results_valid, results_invalid, consecutive_valid, strikes, quarantined_at_ms
             FROM reputation WHERE subject = ?1",
        )?
        .query_row([subject], |row| {
            Ok(Reputation {
                results_valid: row.get(0)?,
                results_invalid: row.get(1)?,
                consecutive_valid: row.get(2)?,
                trusted: false,
                strikes: row.get(3)?,
                quarantined: row.get::<_, Option<i64>>(4)?.is_some(),
                quarantined_at_unix_ms: row.get(4)?,
            })
        })
        .optional()?;
    let mut reputation = row.unwrap_or_default();
    reputation.trusted =
        !reputation.quarantined && reputation.consecutive_valid >= i64::from(config.trust_after);
    Ok(reputation)
}

/// A key's record and its linked address's, read once for a lease request.
#[derive(Debug, Clone)]
pub struct Standing {
    pub key: Reputation,
    /// The linked address's record; `None` for a key that linked none.
    pub address: Option<Reputation>,
}

impl Standing {
    /// Reads the records of `public_key` and of `account` (the key itself when it linked no
    /// address).
    pub fn of(
        conn: &Connection,
        config: &Config,
        public_key: &str,
        account: &str,
    ) -> Result<Standing, ApiError> {
        Ok(Standing {
            key: get(conn, config, public_key)?,
            address: (account != public_key)
                .then(|| get(conn, config, account))
                .transpose()?,
        })
    }

    /// Refuses (403 `quarantined`) a quarantined key, or a key whose address is quarantined.
    pub fn refuse_quarantined(&self, public_key: &str, account: &str) -> Result<(), ApiError> {
        if self.key.quarantined {
            return Err(quarantined(public_key));
        }
        if self.address.as_ref().is_some_and(|a| a.quarantined) {
            return Err(quarantined(account));
        }
        Ok(())
    }

    /// Trusted: enough valid results in a row, and neither the key nor its address quarantined.
    pub fn trusted(&self) -> bool {
        self.key.trusted && !self.address.as_ref().is_some_and(|a| a.quarantined)
    }
}

fn quarantined(subject: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "quarantined",
        format!(
            "{subject} is quarantined after repeated invalid results: it gets no more work and \
             its pending credits are withheld"
        ),
    )
}

/// Refuses a quarantined key, or a key whose address is quarantined.
pub fn refuse_quarantined(
    conn: &Connection,
    public_key: &str,
    account: &str,
) -> Result<(), ApiError> {
    for subject in subjects(public_key, account) {
        let quarantined: Option<i64> = conn
            .prepare_cached("SELECT quarantined_at_ms FROM reputation WHERE subject = ?1")?
            .query_row([subject], |row| row.get(0))
            .optional()?
            .flatten();
        if quarantined.is_some() {
            return Err(self::quarantined(subject));
        }
    }
    Ok(())
}

/// Counts a valid result for each subject.
pub fn record_valid(conn: &Connection, config: &Config, subjects: &[&str]) -> Result<(), ApiError> {
    for subject in subjects {
        conn.prepare_cached(
            "INSERT INTO reputation (subject, results_valid, consecutive_valid)
             VALUES (?1, 1, 1)
             ON CONFLICT (subject) DO UPDATE SET
                 results_valid = results_valid + 1,
                 consecutive_valid = consecutive_valid + 1,
                 strikes = CASE WHEN consecutive_valid + 1 >= ?2 THEN 0 ELSE strikes END",
        )?
        .execute(params![subject, config.trust_after])?;
    }
    Ok(())
}

/// Counts an invalid result for each subject; returns the subjects this quarantined.
pub fn record_invalid<'a>(
    conn: &Connection,
    config: &Config,
    subjects: &[&'a str],
    now_ms: i64,
) -> Result<Vec<&'a str>, ApiError> {
    let mut quarantined = Vec::new();
    for &subject in subjects {
        let newly: bool = conn
            .prepare_cached(
                "INSERT INTO reputation (subject, results_invalid, strikes) VALUES (?1, 1, 1)
                 ON CONFLICT (subject) DO UPDATE SET
                     results_invalid = results_invalid + 1,
                     consecutive_valid = 0,
                     strikes = strikes + 1
                 RETURNING strikes >= ?2 AND quarantined_at_ms IS NULL",
            )?
            .query_row(params![subject, config.quarantine_strikes], |row| {
                row.get(0)
            })?;
        if newly {
            conn.prepare_cached("UPDATE reputation SET quarantined_at_ms = ?2 WHERE subject = ?1")?
                .execute(params![subject, now_ms])?;
            tracing::warn!("{subject} quarantined after repeated invalid results");
            quarantined.push(subject);
        }
    }
    Ok(quarantined)
}

/// A lease of each subject's expired without a result: their run of valid results ends (so
/// they are no longer trusted, and their lease caps fall back to the start). No strike: a
/// closed tab is no cheat. Subjects never checked get no row.
pub fn record_missed(conn: &Connection, subjects: &[&str]) -> Result<(), ApiError> {
    for subject in subjects {
        conn.prepare_cached("UPDATE reputation SET consecutive_valid = 0 WHERE subject = ?1")?
            .execute([subject])?;
    }
    Ok(())
}
