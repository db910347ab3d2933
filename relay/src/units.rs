//! Units: one tile of a matmul job's output C, or one dispatch of a kernel job; the thing a
//! contributor leases, computes and returns.
//!
//! A unit moves `pending -> leased -> verified`, or back to `pending` when its lease expires, is
//! released or its result is rejected. A job fails only for its own fault, never because
//! strangers cheated or vanished: a unit's attempts are used only by results of proven
//! (trusted) keys that failed verification ([`requeue`]); expiries and releases, and anything an
//! unproven key does, count against the key ([`crate::reputation`], [`crate::lease_caps`]). A
//! unit whose attempts are used up is `failed` for good, and fails its job.

use crate::blobs::hash_column;
use crate::config::Config;
use crate::error::ApiError;
use crate::jobs;
use glowworm_protocol::compare::Tolerance;
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::wire::{BlobRef, Dispatch, MatmulShape};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

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
    pub state: String,
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

    fn parse(text: &str) -> rusqlite::Result<Verify> {
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
    /// The key has a verified record (is trusted): it may take units strangers failed lately.
    pub proven: bool,
}

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
           AND (?6 OR units.held_until_ms <= ?7)
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
                now_ms
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
/// good, which fails its job. A verified unit (a canary's) is left alone.
pub fn requeue(
    conn: &Connection,
    config: &Config,
    unit_id: i64,
    miss: Miss,
    missed_at_ms: i64,
) -> Result<(), ApiError> {
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
                    .execute(rusqlite::params![unit_id, until])?;
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
                jobs::fail(conn, job_id, &why)?;
            }
        }
    }
    Ok(())
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
