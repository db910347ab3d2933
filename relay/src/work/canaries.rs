//! Known-answer leases (canaries): a lease of a unit that independent contributors already
//! computed and agreed on, judged against that answer.
//!
//! On the wire a canary is exactly a lease of a real unit, because it is one: the unit's own id,
//! job, kernel, inputs and credit, leased like any replica of it, so nothing tells a contributor
//! that the answer is known. The lease is marked (`leases.canary`) only so that it leaves the
//! unit's state and attempts alone. Its result goes the way of every replica of a decided unit
//! ([`crate::work::replication::decide`]): agreeing with the verified output, it is credited and
//! counts as a passed check (settling what its contributor left waiting on trust); disagreeing,
//! it is a failed check.
//!
//! Only units whose answer is independent evidence serve: replicated units of a running job
//! verified by at least two agreeing results from distinct keys. A unit settled on one trusted
//! contributor's word has a single valid result and never serves, nor does a unit checked with
//! Freivalds' check (it gains nothing from a known answer). A canary never goes to a key,
//! linked address or network that leased the unit before.

use crate::error::ApiError;
use crate::random;
use crate::work::units::{self, Holder, Unit};
use rusqlite::{Connection, params};

/// Verified units the canary is drawn from: the most recent this many.
const RECENT: u32 = 32;

/// A verified unit to lease to `holder` as a canary, or `None` when no unit of a running job
/// qualifies (see the module's doc).
pub fn pick(conn: &Connection, holder: &Holder) -> Result<Option<Unit>, ApiError> {
    let sources: Vec<i64> = conn
        .prepare_cached(
            "SELECT units.id FROM units INDEXED BY units_canary_sources
                  JOIN jobs ON jobs.id = units.job_id
             WHERE units.state = 'verified' AND units.verify = 'replicate'
               AND units.canary_of IS NULL AND jobs.state = 'queued'
               AND (SELECT COUNT(DISTINCT public_key) FROM results
                    WHERE results.unit_id = units.id AND results.state = 'valid') >= 2
               AND NOT EXISTS (SELECT 1 FROM leases
                               WHERE leases.unit_id = units.id
                                 AND (leases.public_key = ?1 OR leases.account = ?2
                                      OR leases.network = ?3))
             ORDER BY units.id DESC LIMIT ?4",
        )?
        .query_map(
            params![holder.public_key, holder.address, holder.network, RECENT],
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    if sources.is_empty() {
        return Ok(None);
    }
    let source = sources[random::below(sources.len() as u32)? as usize];
    units::get(conn, source)
}
