//! Units: one tile of a matmul job's output C, or one dispatch of a kernel job; the thing a
//! contributor leases, computes and returns.
//!
//! A unit moves `pending -> leased -> verified`, or back to `pending` when its lease expires, is
//! released or its result is rejected. A job fails only for its own fault, never because
//! strangers cheated or vanished: a unit's attempts are used only by results of proven
//! (trusted) keys that failed verification ([`requeue`]); expiries and releases, and anything an
//! unproven key does, count against the key ([`crate::accounts::reputation`], [`crate::work::lease_caps`]). A
//! unit whose attempts are used up is `failed` for good, and fails its job.

use crate::config::Config;
use crate::error::ApiError;
use crate::store::blobs::hash_column;
use glowworm_protocol::compare::Tolerance;
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::wire::{BlobRef, Dispatch, MatmulShape};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

crate::sql_enum! {
    /// Where a unit is (`units.state`).
    pub enum UnitState {
        /// Waiting to be leased (a replicated unit gathering replicas may be leased and pending).
        Pending = "pending",
        /// Leased as often as it needs to be; waiting for results.
        Leased = "leased",
        /// Its output is decided (`units.result_hash`).
        Verified = "verified",
        /// Failed for good; its job failed with it.
        Failed = "failed",
        /// Its job was cancelled.
        Cancelled = "cancelled",
    }
}

/// A unit failed for good: its job fails with this reason ([`crate::work::jobs::fail_for`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a unit that failed fails its job"]
pub struct UnitFailed {
    pub job_id: i64,
    pub why: String,
}

/// A row of the `units` table.
#[derive(Debug, Clone)]
pub struct Unit {
    pub id: i64,
    pub job_id: i64,
    /// Where the tile sits in the job's C; for a kernel unit, row0 is its index in the job.
    pub row0: u32,
    pub col0: u32,
    pub kernel_hash: ContentHash,
    /// What is computed, and from which inputs.
    pub work: Work,
    /// Credits a verified result earns.
    pub flop: u64,
    pub state: UnitState,
    pub attempts: u32,
    pub max_attempts: u32,
    /// How its output is verified.
    pub verify: Verify,
    /// Agreeing results a replicated unit needs, and results it gathers before comparing.
    pub quorum: u32,
    pub replicas_needed: u32,
    /// A trusted contributor's result stands alone until a later check settles it.
    pub on_trust: bool,
    /// For a known-answer (canary) unit: the verified unit it repeats.
    pub canary_of: Option<i64>,
}

/// What a unit computes.
#[derive(Debug, Clone)]
pub enum Work {
    /// A tile of a matrix product: from the A row panel (shape.m x shape.k) and the B column
    /// panel (shape.k x shape.n).
    Matmul {
        shape: MatmulShape,
        a_hash: ContentHash,
        b_hash: ContentHash,
    },
    /// One dispatch of a custom kernel.
    Kernel(KernelUnit),
}

impl Work {
    /// Bytes of the unit's output.
    pub fn output_bytes(&self) -> u64 {
        match self {
            Work::Matmul { shape, .. } => shape.output_bytes(),
            Work::Kernel(unit) => unit.output_bytes,
        }
    }
}

/// A kernel unit, stored as JSON in `units.kernel_unit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelUnit {
    /// The kernel's name, shown to contributors.
    pub kernel_name: String,
    /// The inputs, with the bindings they fill.
    pub inputs: Vec<BlobRef>,
    pub dispatch: Dispatch,
    pub output_bytes: u64,
    /// How far replicas' f32 outputs may differ; 0 compares bytes.
    pub tolerance_ulps: u32,
}

impl KernelUnit {
    /// How replicas of this unit are compared.
    pub fn tolerance(&self) -> Tolerance {
        match self.tolerance_ulps {
            0 => Tolerance::Exact,
            ulps => Tolerance::Ulps(ulps),
        }
    }
}

/// How a unit's output is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Freivalds' check of each result on its own (matrix products).
    Freivalds,
    /// Replicas from distinct contributors compared until a strict majority agrees.
    Replicate,
}

impl Verify {
    pub fn as_str(self) -> &'static str {
        match self {
            Verify::Freivalds => "freivalds",
            Verify::Replicate => "replicate",
        }
    }

    pub fn parse(text: &str) -> rusqlite::Result<Verify> {
        match text {
            "freivalds" => Ok(Verify::Freivalds),
            "replicate" => Ok(Verify::Replicate),
            other => Err(rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("unknown verification {other:?}").into(),
            )),
        }
    }
}

/// The columns [`from_row`] reads, in order.
macro_rules! unit_columns {
    () => {
        "units.id, units.job_id, units.row0, units.col0, units.m, units.n, units.k, \
         units.kernel_hash, units.a_hash, units.b_hash, units.state, units.attempts, \
         units.max_attempts, units.verify, units.quorum, units.replicas_needed, units.on_trust, \
         units.canary_of, units.flop, units.kernel_unit"
    };
}

/// The columns [`from_row`] reads, in order.
pub const COLUMNS: &str = unit_columns!();

pub fn from_row(row: &rusqlite::Row) -> rusqlite::Result<Unit> {
    Ok(Unit {
        id: row.get(0)?,
        job_id: row.get(1)?,
        row0: row.get(2)?,
        col0: row.get(3)?,
        kernel_hash: hash_column(row, 7)?,
        work: match row.get::<_, Option<String>>(19)? {
            None => Work::Matmul {
                shape: MatmulShape {
                    m: row.get(4)?,
                    n: row.get(5)?,
                    k: row.get(6)?,
                },
                a_hash: hash_column(row, 8)?,
                b_hash: hash_column(row, 9)?,
            },
            Some(json) => Work::Kernel(serde_json::from_str(&json).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(19, rusqlite::types::Type::Text, e.into())
            })?),
        },
        flop: row.get(18)?,
        state: row.get(10)?,
        attempts: row.get(11)?,
        max_attempts: row.get(12)?,
        verify: Verify::parse(&row.get::<_, String>(13)?)?,
        quorum: row.get(14)?,
        replicas_needed: row.get(15)?,
        on_trust: row.get(16)?,
        canary_of: row.get(17)?,
    })
}

pub fn get(conn: &Connection, unit_id: i64) -> Result<Option<Unit>, ApiError> {
    let sql = concat!("SELECT ", unit_columns!(), " FROM units WHERE id = ?1");
    Ok(conn
        .prepare_cached(sql)?
        .query_row([unit_id], from_row)
        .optional()?)
}

/// Who asks for a unit: a replicated unit never goes to two leases of the same key, of the
/// same linked address or (when the relay keeps networks apart) of the same network, and with
/// homogeneous redundancy only to adapters of the kind its first replica ran on.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub public_key: &'a str,
    pub address: Option<&'a str>,
    pub network: Option<&'a str>,
    /// Set only when the relay compares replicas between adapters of one kind.
    pub adapter_class: Option<&'a str>,
    /// The key has a verified record (is trusted): it may take units strangers failed lately,
    /// and units of new jobs at once.
    pub proven: bool,
}

/// First pick: while keys with a record are at work (one was issued a lease in the last
/// [`FIRST_PICK_WINDOW_MS`]),
/// units of a job younger than this go to keys with a record only; keys without one get them
/// once they are older. Hoarders then get only what the proven contributors left, instead of
/// whatever they ask for first. A relay where nobody has a record gives everything to anyone.
pub const FIRST_PICK_MS: i64 = 2_000;

/// How recent a proven key's lease must be for the first pick to apply: a minute.
pub const FIRST_PICK_WINDOW_MS: i64 = 60_000;

/// Up to `limit` of the oldest pending units of queued jobs that `holder` may take at `now_ms`,
/// oldest first.
pub fn pending_for(
    conn: &Connection,
    holder: &Holder,
    limit: u32,
    now_ms: i64,
) -> Result<Vec<Unit>, ApiError> {
    let sql = concat!(
        "SELECT ",
        unit_columns!(),
        " FROM units JOIN jobs ON jobs.id = units.job_id
         WHERE units.state = 'pending' AND jobs.state = 'queued'
           AND (?6 OR (units.held_until_ms <= ?7
                       AND (jobs.created_at <= ?7 - ?8 OR NOT EXISTS
                            (SELECT 1 FROM leases INDEXED BY leases_proven_recent
                             WHERE proven = 1 AND issued_at_ms >= ?7 - ?9))))
           AND (units.verify = 'freivalds' OR (
                NOT EXISTS (SELECT 1 FROM leases
                            WHERE leases.unit_id = units.id
                              AND leases.state IN ('active', 'submitted')
                              AND (leases.public_key = ?1 OR leases.account = ?2
                                   OR leases.network = ?3))
                AND (?4 IS NULL OR units.adapter_class IS NULL OR units.adapter_class = ?4)))
         ORDER BY units.id LIMIT ?5"
    );
    let units = conn
        .prepare_cached(sql)?
        .query_map(
            rusqlite::params![
                holder.public_key,
                holder.address,
                holder.network,
                holder.adapter_class,
                limit,
                holder.proven,
                now_ms,
                FIRST_PICK_MS,
                FIRST_PICK_WINDOW_MS
            ],
            from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(units)
}

/// How a lease ended without a verified result, and whose it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// A proven key's result failed verification: one of the unit's attempts.
    ProvenRejected,
    /// A proven key's lease expired: the key's fault, not the unit's.
    ProvenExpired,
    /// A key without a record let its lease expire or sent a wrong result: the key's fault.
    /// The unit is held for keys with a record for a while ([`hold_ms`]), so that strangers
    /// who ask more often than honest contributors cannot take it again and again.
    Unproven,
}

/// How long a unit that strangers failed `misses` times in all is held for keys with a record:
/// a lease period, doubling with each miss, at most [`MAX_HOLD_MS`]. Keys without a record
/// take it again after that, so on a relay where nobody has a record yet it still gets done.
pub fn hold_ms(lease_ms: i64, misses: u32) -> i64 {
    let doublings = misses.saturating_sub(1).min(16);
    lease_ms.saturating_mul(1 << doublings).min(MAX_HOLD_MS)
}

/// The longest a unit is held for keys with a record: ten minutes.
pub const MAX_HOLD_MS: i64 = 10 * 60 * 1000;

/// After a lease ended without a verified result (`miss`, at `missed_at_ms`: the deadline of an
/// expired lease, the time of a rejected result): the unit goes back to `pending` (a
/// replicated unit may already be pending, waiting for other replicas). A proven key's rejected
/// result uses one of the unit's attempts, and a unit that has used them all is `failed` for
/// good, which fails its job (returned). A verified unit (a canary's) is left alone.
pub fn requeue(
    conn: &Connection,
    config: &Config,
    unit_id: i64,
    miss: Miss,
    missed_at_ms: i64,
) -> Result<Option<UnitFailed>, ApiError> {
    match miss {
        Miss::ProvenExpired => {
            conn.prepare_cached(
                "UPDATE units SET state = 'pending' WHERE id = ?1 AND state = 'leased'",
            )?
            .execute([unit_id])?;
        }
        Miss::Unproven => {
            let misses: Option<u32> = conn
                .prepare_cached(
                    "UPDATE units SET misses = misses + 1,
                                      state = CASE state WHEN 'leased' THEN 'pending' ELSE state END
                     WHERE id = ?1 AND state IN ('leased', 'pending')
                     RETURNING misses",
                )?
                .query_row([unit_id], |row| row.get(0))
                .optional()?;
            if let Some(misses) = misses {
                let until = missed_at_ms.saturating_add(hold_ms(config.lease_ms(), misses));
                conn.prepare_cached("UPDATE units SET held_until_ms = ?2 WHERE id = ?1")?
                    .execute(params![unit_id, until])?;
            }
        }
        Miss::ProvenRejected => {
            let used: Option<(u32, u32, i64)> = conn
                .prepare_cached(
                    "UPDATE units SET attempts = attempts + 1,
                                      state = CASE WHEN attempts + 1 >= max_attempts
                                                   THEN 'failed' ELSE 'pending' END
                     WHERE id = ?1 AND state IN ('leased', 'pending')
                     RETURNING attempts, max_attempts, job_id",
                )?
                .query_row([unit_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .optional()?;
            if let Some((attempts, max_attempts, job_id)) = used
                && attempts >= max_attempts
            {
                let why = format!(
                    "unit {unit_id} used up its {max_attempts} attempts (results of contributors \
                     with a verified record that failed verification)"
                );
                return Ok(Some(UnitFailed { job_id, why }));
            }
        }
    }
    Ok(None)
}

/// After a lease was given back unworked: the unit is pending again. A replicated unit still
/// gathering replicas stays `pending` while leased. A verified unit (a canary's) is left alone.
pub fn requeue_released(conn: &Connection, unit_id: i64) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE units SET state = 'pending' WHERE id = ?1 AND state IN ('leased', 'pending')",
    )?
    .execute([unit_id])?;
    Ok(())
}

/// The state of unit `unit_id`.
pub fn state_of(conn: &Connection, unit_id: i64) -> Result<UnitState, ApiError> {
    Ok(conn
        .prepare_cached("SELECT state FROM units WHERE id = ?1")?
        .query_row([unit_id], |row| row.get(0))?)
}

/// A lease was issued for the unit: it is `state` now (`Leased` once it has all the replicas it
/// needs out, else still `Pending`), and a replicated unit remembers the adapter kind of its
/// first replica.
pub fn mark_leased(
    conn: &Connection,
    unit_id: i64,
    state: UnitState,
    adapter_class: Option<&str>,
) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE units SET state = ?2, adapter_class = COALESCE(adapter_class, ?3) WHERE id = ?1",
    )?
    .execute(params![unit_id, state, adapter_class])?;
    Ok(())
}

/// The unit's output is decided: it is verified with that output, and no longer on trust.
/// Returns its job.
pub fn mark_verified(
    conn: &Connection,
    unit_id: i64,
    output_hash: &ContentHash,
) -> Result<i64, ApiError> {
    Ok(conn
        .prepare_cached(
            "UPDATE units SET state = ?2, on_trust = 0, result_hash = ?3 WHERE id = ?1
             RETURNING job_id",
        )?
        .query_row(
            params![unit_id, UnitState::Verified, output_hash.to_string()],
            |row| row.get(0),
        )?)
}

/// Fails the unit for good with `why`; its job fails with it, unless it is a canary (a copy of
/// a verified unit, whose failure is nobody's job's).
pub fn fail(conn: &Connection, unit_id: i64, why: String) -> Result<Option<UnitFailed>, ApiError> {
    let job_id: Option<i64> = conn
        .prepare_cached(
            "UPDATE units SET state = ?2 WHERE id = ?1
             RETURNING CASE WHEN canary_of IS NULL THEN job_id END",
        )?
        .query_row(params![unit_id, UnitState::Failed], |row| row.get(0))?;
    Ok(job_id.map(|job_id| UnitFailed { job_id, why }))
}

/// Fails the unit for good with `why` if it is still pending or leased (failing its job);
/// `None` when it was not.
pub fn fail_unfinished(
    conn: &Connection,
    unit_id: i64,
    why: String,
) -> Result<Option<UnitFailed>, ApiError> {
    let job_id: Option<i64> = conn
        .prepare_cached(
            "UPDATE units SET state = 'failed' WHERE id = ?1 AND state IN ('pending', 'leased')
             RETURNING job_id",
        )?
        .query_row([unit_id], |row| row.get(0))
        .optional()?;
    Ok(job_id.map(|job_id| UnitFailed { job_id, why }))
}

/// Cancels every unit of job `job_id` that is not finished. Returns how many.
pub fn cancel_unfinished_of_job(conn: &Connection, job_id: i64) -> Result<usize, ApiError> {
    Ok(conn.execute(
        "UPDATE units SET state = 'cancelled'
         WHERE job_id = ?1 AND state IN ('pending', 'leased')",
        [job_id],
    )?)
}

/// A replicated unit whose results found no majority: it wants `needed` results now, and is
/// pending again.
pub fn want_replicas(conn: &Connection, unit_id: i64, needed: u32) -> Result<(), ApiError> {
    conn.prepare_cached("UPDATE units SET replicas_needed = ?2, state = ?3 WHERE id = ?1")?
        .execute(params![unit_id, needed, UnitState::Pending])?;
    Ok(())
}

/// Leaves the unit to one trusted contributor's result, for now (adaptive replication).
pub fn put_on_trust(conn: &Connection, unit_id: i64) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE units SET on_trust = 1, quorum = 1, replicas_needed = 1 WHERE id = ?1",
    )?
    .execute([unit_id])?;
    Ok(())
}

/// A lease that held a unit on trust ended without a result: the trust was its contributor's,
/// so the unit is replicated as usual by whoever takes it next.
pub fn end_trust(conn: &Connection, config: &Config, unit_id: i64) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE units SET on_trust = 0, quorum = ?2, replicas_needed = ?2
         WHERE id = ?1 AND on_trust = 1",
    )?
    .execute(params![unit_id, config.replicas])?;
    Ok(())
}

/// Gives every unit that waits on a trusted result of `public_key` to more contributors.
pub fn replicate_on_trust_of(
    conn: &Connection,
    config: &Config,
    public_key: &str,
) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE units SET on_trust = 0, quorum = ?2, replicas_needed = ?2, state = 'pending'
         WHERE on_trust = 1 AND state = 'leased' AND id IN
               (SELECT unit_id FROM results WHERE public_key = ?1 AND state = 'pending')",
    )?
    .execute(params![public_key, config.replicas])?;
    Ok(())
}

/// The units waiting on results of `public_key` (about to be withheld) go to other
/// contributors, with at least the usual quorum.
pub fn replicate_pending_of(
    conn: &Connection,
    config: &Config,
    public_key: &str,
) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE units SET state = 'pending',
                          quorum = MAX(quorum, ?2), replicas_needed = MAX(replicas_needed, ?2)
         WHERE state IN ('leased', 'pending') AND id IN
               (SELECT unit_id FROM results WHERE public_key = ?1 AND state = 'pending')",
    )?
    .execute(params![public_key, config.replicas])?;
    Ok(())
}

/// Units left on trust whose result has waited longer than `settle_seconds` for a later check
/// of its contributor are replicated after all. Runs with every lease request.
pub fn replicate_unsettled(
    conn: &Connection,
    config: &Config,
    now_ms: i64,
) -> Result<(), ApiError> {
    // A read first: most leases find nothing overdue, and a read costs less than an UPDATE.
    let overdue: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM results WHERE state = 'pending' AND created_at < ?1)",
        )?
        .query_row([now_ms - config.settle_ms()], |row| row.get(0))?;
    if !overdue {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE units SET on_trust = 0, quorum = ?2, replicas_needed = ?2, state = 'pending'
         WHERE on_trust = 1 AND state = 'leased' AND id IN
               (SELECT unit_id FROM results WHERE state = 'pending' AND created_at < ?1)",
    )?
    .execute(params![now_ms - config.settle_ms(), config.replicas])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::UnitState;

    #[test]
    fn unit_states_are_the_schemas() {
        crate::sql_enum::assert_matches_schema("units", "state", UnitState::TEXTS);
    }
}
