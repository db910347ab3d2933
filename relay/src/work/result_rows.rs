//! The `results` table: every signed submission that reached verification, and its state.
//!
//! [`crate::work::results`] inserts a row for each submission it checked; [`crate::work::replication`]
//! reads the replicas waiting to be compared; [`crate::work::settlement`] marks them valid, invalid
//! or withheld as it settles them.

use crate::error::ApiError;
use crate::store::blobs::{self, hash_column};
use glowworm_protocol::hash::ContentHash;
use rusqlite::{Connection, params};

crate::sql_enum! {
    /// What became of a result (`results.state`; `results.verified` is 1 exactly when valid).
    pub enum ResultState {
        /// A replica waiting for the others, or a trusted result waiting to be settled.
        Pending = "pending",
        /// Verified and credited.
        Valid = "valid",
        /// Failed its check, or outvoted.
        Invalid = "invalid",
        /// Its contributor was quarantined while it waited: never credited.
        Withheld = "withheld",
        /// It waited when its job was cancelled: never credited.
        Cancelled = "cancelled",
    }
}

/// Stores the result for unit `unit_id` under lease `lease_id` by `public_key` in `state`;
/// returns its id.
pub fn insert(
    conn: &Connection,
    unit_id: i64,
    lease_id: &str,
    public_key: &str,
    output_hash: &str,
    state: ResultState,
    now_ms: i64,
) -> Result<i64, ApiError> {
    conn.prepare_cached(
        "INSERT INTO results (unit_id, lease_id, public_key, output_hash, verified, created_at,
                              state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        unit_id,
        lease_id,
        public_key,
        output_hash,
        state == ResultState::Valid,
        now_ms,
        state
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Moves result `result_id` to `state`.
pub fn set_state(conn: &Connection, result_id: i64, state: ResultState) -> Result<(), ApiError> {
    conn.prepare_cached("UPDATE results SET state = ?2, verified = ?3 WHERE id = ?1")?
        .execute(params![result_id, state, state == ResultState::Valid])?;
    Ok(())
}

/// Withholds every pending result of `public_key`; returns how many.
pub fn withhold_pending_of(conn: &Connection, public_key: &str) -> Result<usize, ApiError> {
    Ok(conn
        .prepare_cached(
            "UPDATE results SET state = ?2 WHERE public_key = ?1 AND state = 'pending'",
        )?
        .execute(params![public_key, ResultState::Withheld])?)
}

/// Cancels the pending results of job `job_id`'s cancelled units.
pub fn cancel_pending_of_job(conn: &Connection, job_id: i64) -> Result<(), ApiError> {
    conn.execute(
        "UPDATE results SET state = 'cancelled'
         WHERE state = 'pending'
           AND unit_id IN (SELECT id FROM units WHERE job_id = ?1 AND state = 'cancelled')",
        [job_id],
    )?;
    Ok(())
}

/// A trusted result of `public_key` that waits for a later check of its key: `(result id,
/// unit id, output hash)`.
pub fn waiting_on_trust(
    conn: &Connection,
    public_key: &str,
) -> Result<Vec<(i64, i64, ContentHash)>, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT results.id, results.unit_id, results.output_hash
             FROM results JOIN units ON units.id = results.unit_id
                  JOIN leases ON leases.lease_id = results.lease_id
             WHERE results.public_key = ?1 AND results.state = 'pending'
               AND leases.on_trust = 1 AND units.on_trust = 1 AND units.state = 'leased'",
        )?
        .query_map([public_key], |row| {
            Ok((row.get(0)?, row.get(1)?, hash_column(row, 2)?))
        })?
        .collect::<Result<_, _>>()?)
}

/// A result of a replicated unit waiting to be compared.
pub struct Replica {
    pub id: i64,
    pub public_key: String,
    /// Its lease was proven: its key was trusted when it leased the unit.
    pub proven: bool,
    pub output_hash: ContentHash,
    pub output: Vec<u8>,
}

/// The pending results of unit `unit_id`, oldest first, with their outputs.
pub fn pending_replicas(conn: &Connection, unit_id: i64) -> Result<Vec<Replica>, ApiError> {
    let rows: Vec<(i64, String, ContentHash, bool)> = conn
        .prepare_cached(
            "SELECT results.id, results.public_key, results.output_hash, leases.proven
             FROM results JOIN leases ON leases.lease_id = results.lease_id
             WHERE results.unit_id = ?1 AND results.state = 'pending' ORDER BY results.id",
        )?
        .query_map([unit_id], |row| {
            Ok((row.get(0)?, row.get(1)?, hash_column(row, 2)?, row.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, public_key, output_hash, proven)| {
            Ok(Replica {
                id,
                public_key,
                proven,
                output: blobs::get_required(conn, &output_hash)?,
                output_hash,
            })
        })
        .collect()
}
