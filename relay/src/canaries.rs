//! Known-answer units (canaries): a verified unit of a job still in progress, leased again under
//! a new unit id to a contributor that did not compute it, and checked against the answer the
//! relay already has.
//!
//! On the wire a canary is a lease like any other: the same kernel, shape, job id and input
//! blobs as a real unit of a running job (so the inputs may well be in the contributor's cache
//! already), with a unit id from the same sequence; its credit is the same. It is not part of its
//! job's output or progress (`canary_of` is set). Only units verified by replication serve as
//! canaries: a unit checked with Freivalds' check gains nothing from a known answer. A canary
//! passed or failed counts like any check ([`crate::replication`]): it settles, or undoes, the
//! results a trusted contributor left waiting.

use crate::error::ApiError;
use crate::random;
use crate::units::{self, Unit};
use rusqlite::{Connection, params};

/// Verified units the canary is drawn from: the most recent this many.
const RECENT: u32 = 32;

/// Makes a canary for `public_key`, leased state and one attempt, or `None` when no verified
/// replicated unit of a running job is left that the key did not compute.
pub fn make(conn: &Connection, public_key: &str) -> Result<Option<Unit>, ApiError> {
    let sources: Vec<i64> = conn
        .prepare_cached(
            "SELECT units.id FROM units INDEXED BY units_canary_sources
                  JOIN jobs ON jobs.id = units.job_id
             WHERE units.state = 'verified' AND units.verify = 'replicate'
               AND units.canary_of IS NULL AND jobs.state = 'queued'
               AND NOT EXISTS (SELECT 1 FROM results
                               WHERE results.unit_id = units.id AND results.public_key = ?1)
             ORDER BY units.id DESC LIMIT ?2",
        )?
        .query_map(params![public_key, RECENT], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if sources.is_empty() {
        return Ok(None);
    }
    let source = sources[random::below(sources.len() as u32)? as usize];
    conn.prepare_cached(
        "INSERT INTO units (job_id, row0, col0, m, n, k, kernel_hash, a_hash, b_hash, state,
                            attempts, max_attempts, result_hash, verify, quorum,
                            replicas_needed, canary_of, flop, kernel_unit)
         SELECT job_id, row0, col0, m, n, k, kernel_hash, a_hash, b_hash, 'pending',
                0, 1, result_hash, verify, 1, 1, id, flop, kernel_unit
         FROM units WHERE id = ?1",
    )?
    .execute([source])?;
    units::get(conn, conn.last_insert_rowid())
}
