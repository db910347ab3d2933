//! Units: one tile of a job's output C, the thing a contributor leases, computes and returns.
//!
//! A unit moves `pending -> leased -> verified`, or back to `pending` when its lease expires, is
//! released or its result is rejected. Each lease counts one attempt (a release gives it back);
//! a unit whose attempts are used up is `failed` for good, and fails its job.

use crate::blobs::hash_column;
use crate::error::ApiError;
use crate::jobs;
use glowworm::hash::ContentHash;
use glowworm::wire::MatmulShape;
use rusqlite::{Connection, OptionalExtension};

/// A row of the `units` table.
#[derive(Debug, Clone)]
pub struct Unit {
    pub id: i64,
    pub job_id: i64,
    /// Where the tile sits in the job's C.
    pub row0: u32,
    pub col0: u32,
    pub shape: MatmulShape,
    pub kernel_hash: ContentHash,
    /// The A row panel (shape.m x shape.k) and the B column panel (shape.k x shape.n).
    pub a_hash: ContentHash,
    pub b_hash: ContentHash,
    pub state: String,
    pub attempts: u32,
    pub max_attempts: u32,
}

/// The columns [`from_row`] reads, in order.
macro_rules! unit_columns {
    () => {
        "units.id, units.job_id, units.row0, units.col0, units.m, units.n, units.k, \
         units.kernel_hash, units.a_hash, units.b_hash, units.state, units.attempts, \
         units.max_attempts"
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
        shape: MatmulShape {
            m: row.get(4)?,
            n: row.get(5)?,
            k: row.get(6)?,
        },
        kernel_hash: hash_column(row, 7)?,
        a_hash: hash_column(row, 8)?,
        b_hash: hash_column(row, 9)?,
        state: row.get(10)?,
        attempts: row.get(11)?,
        max_attempts: row.get(12)?,
    })
}

pub fn get(conn: &Connection, unit_id: i64) -> Result<Option<Unit>, ApiError> {
    let sql = concat!("SELECT ", unit_columns!(), " FROM units WHERE id = ?1");
    Ok(conn
        .prepare_cached(sql)?
        .query_row([unit_id], from_row)
        .optional()?)
}

/// The oldest pending unit of a queued job, if any.
pub fn oldest_pending(conn: &Connection) -> Result<Option<Unit>, ApiError> {
    let sql = concat!(
        "SELECT ",
        unit_columns!(),
        " FROM units JOIN jobs ON jobs.id = units.job_id
         WHERE units.state = 'pending' AND jobs.state = 'queued'
         ORDER BY units.id LIMIT 1"
    );
    Ok(conn
        .prepare_cached(sql)?
        .query_row([], from_row)
        .optional()?)
}

/// After a lease ended without a verified result (expired or rejected): the unit goes back to
/// `pending`, or to `failed` (failing its job) when it has used all its attempts.
pub fn requeue_or_fail(conn: &Connection, unit_id: i64) -> Result<(), ApiError> {
    let (attempts, max_attempts, job_id): (u32, u32, i64) = conn
        .prepare_cached("SELECT attempts, max_attempts, job_id FROM units WHERE id = ?1")?
        .query_row([unit_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    if attempts >= max_attempts {
        conn.prepare_cached(
            "UPDATE units SET state = 'failed' WHERE id = ?1 AND state = 'leased'",
        )?
        .execute([unit_id])?;
        tracing::warn!("unit {unit_id} failed after {attempts} attempts; job {job_id} fails");
        jobs::fail(conn, job_id)?;
    } else {
        conn.prepare_cached(
            "UPDATE units SET state = 'pending' WHERE id = ?1 AND state = 'leased'",
        )?
        .execute([unit_id])?;
    }
    Ok(())
}

/// After a lease was given back unworked: the unit is pending again and the attempt is returned.
pub fn requeue_released(conn: &Connection, unit_id: i64) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE units SET state = 'pending', attempts = attempts - 1
         WHERE id = ?1 AND state = 'leased'",
    )?
    .execute([unit_id])?;
    Ok(())
}
