//! Relay-wide figures for `GET /v1/stats`.

use crate::error::ApiError;
use glowworm_protocol::wire::Stats;
use rusqlite::Connection;

/// A contributor counts as online for this long after it was last seen.
pub const ONLINE_WINDOW_MS: i64 = 60_000;

/// Relay-wide figures at `now_ms`. Pending units of failed jobs are not counted: they will
/// never be leased. Credits issued are what the earners hold (contributors, partners, the
/// operator's fees), not budgets, escrows or sources.
pub fn stats(conn: &Connection, now_ms: i64) -> Result<Stats, ApiError> {
    let stats = conn.query_row(
        "SELECT
            (SELECT COUNT(*) FROM contributors WHERE last_seen_ms >= ?1),
            (SELECT COUNT(*) FROM units WHERE state = 'verified'),
            (SELECT COUNT(*) FROM units JOIN jobs ON jobs.id = units.job_id
             WHERE units.state = 'pending' AND jobs.state = 'queued'),
            (SELECT COUNT(*) FROM units WHERE state = 'leased'),
            (SELECT COUNT(*) FROM units WHERE state = 'failed'),
            (SELECT COALESCE(SUM(flop), 0) FROM units WHERE state = 'verified'),
            (SELECT COALESCE(SUM(amount), 0) FROM balances
             WHERE account NOT LIKE 'source:%' AND account NOT LIKE 'requester:%'
               AND account NOT LIKE 'job:%'),
            (SELECT COUNT(*) FROM jobs WHERE state = 'done')",
        [now_ms - ONLINE_WINDOW_MS],
        |row| {
            Ok(Stats {
                contributors_online: row.get(0)?,
                units_completed: row.get(1)?,
                units_pending: row.get(2)?,
                units_leased: row.get(3)?,
                units_failed: row.get(4)?,
                flop_verified: row.get(5)?,
                credits_issued: row.get(6)?,
                jobs_done: row.get(7)?,
                relay_key: String::new(),
            })
        },
    )?;
    Ok(stats)
}
