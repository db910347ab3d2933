//! Jobs: a matrix product split into units, and put back together when every unit is verified.
//!
//! A job C (m x n) = A (m x k) * B (k x n) becomes one unit per `unit_size` x `unit_size` tile of
//! C (smaller at the right and bottom edges), each with the full k. A unit's inputs are the A row
//! panel (its rows of A, all k columns) and the B column panel (all k rows of B, its columns),
//! both row-major f32 little-endian blobs. Tiles in the same row share their A panel and tiles
//! in the same column share their B panel, so the blob store and the contributors' caches hold
//! each panel once.

use crate::blobs::{self, hash_column};
use crate::error::ApiError;
use crate::units::Verify;
use glowworm::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm::kernels::matmul;
use glowworm::wire::{JobStatus, MatmulShape};
use rusqlite::{Connection, OptionalExtension, params};

/// How a job is cut into units, how each unit is verified and how often it may be tried.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    pub unit_size: u32,
    pub max_attempts: u32,
    /// `None`: Freivalds' check of each result. `Some(k)`: replication, until k results of
    /// distinct contributors agree ([`crate::replication`]); such a unit may be leased
    /// `max_attempts` times more than its replicas.
    pub replicas: Option<u32>,
}

/// Stores a new matmul job and its units; returns the job id. Run it inside a transaction.
pub fn create_matmul(
    conn: &Connection,
    a: &[f32],
    b: &[f32],
    shape: MatmulShape,
    split: Split,
    is_demo: bool,
    now_ms: i64,
) -> Result<i64, ApiError> {
    let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
    if a.len() != m * k || b.len() != k * n || m == 0 || n == 0 || k == 0 {
        return Err(ApiError::Internal(format!(
            "job inputs do not match shape {m}x{n}x{k}"
        )));
    }
    conn.execute(
        "INSERT INTO jobs (kind, m, n, k, state, created_at, is_demo)
         VALUES ('matmul', ?1, ?2, ?3, 'queued', ?4, ?5)",
        params![shape.m, shape.n, shape.k, now_ms, is_demo],
    )?;
    let job_id = conn.last_insert_rowid();
    let kernel_hash = matmul::TILED.hash().to_string();
    let verify = match split.replicas {
        Some(_) => Verify::Replicate,
        None => Verify::Freivalds,
    };
    let tile = split.unit_size as usize;

    for row0 in (0..m).step_by(tile) {
        let rows = tile.min(m - row0);
        let a_panel = &a[row0 * k..(row0 + rows) * k];
        let a_hash = blobs::store(conn, &f32s_to_bytes(a_panel))?;
        for col0 in (0..n).step_by(tile) {
            let cols = tile.min(n - col0);
            let b_panel: Vec<f32> = (0..k)
                .flat_map(|l| &b[l * n + col0..l * n + col0 + cols])
                .copied()
                .collect();
            let b_hash = blobs::store(conn, &f32s_to_bytes(&b_panel))?;
            conn.prepare_cached(
                "INSERT INTO units (job_id, row0, col0, m, n, k, kernel_hash, a_hash, b_hash,
                                    state, attempts, max_attempts, verify, quorum, replicas_needed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?10, ?11, ?12, ?12)",
            )?
            .execute(params![
                job_id,
                row0 as u32,
                col0 as u32,
                rows as u32,
                cols as u32,
                shape.k,
                kernel_hash,
                a_hash.to_string(),
                b_hash.to_string(),
                split.max_attempts + split.replicas.unwrap_or(0),
                verify.as_str(),
                split.replicas.unwrap_or(1),
            ])?;
        }
    }
    Ok(job_id)
}

/// Marks a queued job failed (one of its units failed for good).
pub fn fail(conn: &Connection, job_id: i64) -> Result<(), ApiError> {
    conn.execute(
        "UPDATE jobs SET state = 'failed' WHERE id = ?1 AND state = 'queued'",
        [job_id],
    )?;
    Ok(())
}

/// When every unit of a queued job is verified: assembles C from the unit results into a blob
/// and marks the job done. Returns whether it did. Run it inside the transaction that verified
/// the last unit.
pub fn complete_if_done(conn: &Connection, job_id: i64) -> Result<bool, ApiError> {
    let (state, m, n): (String, usize, usize) = conn
        .prepare_cached("SELECT state, m, n FROM jobs WHERE id = ?1")?
        .query_row([job_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    if state != "queued" {
        return Ok(false);
    }
    // Units are pending, leased, verified or failed: three probes of units_by_job_state.
    let unfinished: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM units
                            WHERE job_id = ?1 AND state IN ('pending', 'leased', 'failed')
                              AND canary_of IS NULL)",
        )?
        .query_row([job_id], |row| row.get(0))?;
    if unfinished {
        return Ok(false);
    }

    let mut c = vec![0f32; m * n];
    let mut stmt = conn.prepare(
        "SELECT row0, col0, m, n, result_hash FROM units
         WHERE job_id = ?1 AND canary_of IS NULL ORDER BY id",
    )?;
    let tiles = stmt
        .query_map([job_id], |row| {
            Ok((
                row.get::<_, usize>(0)?,
                row.get::<_, usize>(1)?,
                row.get::<_, usize>(2)?,
                row.get::<_, usize>(3)?,
                hash_column(row, 4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (row0, col0, rows, cols, result_hash) in tiles {
        let tile = bytes_to_f32s(&blobs::get_required(conn, &result_hash)?)
            .map_err(|e| ApiError::Internal(format!("result blob {result_hash}: {e}")))?;
        if tile.len() != rows * cols {
            return Err(ApiError::Internal(format!(
                "result blob {result_hash} has {} values, expected {}",
                tile.len(),
                rows * cols
            )));
        }
        for (i, tile_row) in tile.chunks_exact(cols).enumerate() {
            let start = (row0 + i) * n + col0;
            c[start..start + cols].copy_from_slice(tile_row);
        }
    }
    let output_hash = blobs::store(conn, &f32s_to_bytes(&c))?;
    conn.execute(
        "UPDATE jobs SET state = 'done', output_hash = ?2 WHERE id = ?1",
        params![job_id, output_hash.to_string()],
    )?;
    tracing::info!("job {job_id} done: output {output_hash}");
    Ok(true)
}

/// A job's state and progress, or `None` for an unknown id.
pub fn status(conn: &Connection, job_id: i64) -> Result<Option<JobStatus>, ApiError> {
    let status = conn
        .query_row(
            "SELECT id, state, output_hash,
                    (SELECT COUNT(*) FROM units WHERE job_id = jobs.id AND canary_of IS NULL),
                    (SELECT COUNT(*) FROM units WHERE job_id = jobs.id AND state = 'verified' AND canary_of IS NULL),
                    (SELECT COUNT(*) FROM units WHERE job_id = jobs.id AND state = 'pending' AND canary_of IS NULL),
                    (SELECT COUNT(*) FROM units WHERE job_id = jobs.id AND state = 'leased' AND canary_of IS NULL),
                    (SELECT COUNT(*) FROM units WHERE job_id = jobs.id AND state = 'failed' AND canary_of IS NULL),
                    kind, m, n, k, created_at
             FROM jobs WHERE id = ?1",
            [job_id],
            |row| {
                let output_hash = match row.get::<_, Option<String>>(2)? {
                    Some(_) => Some(hash_column(row, 2)?),
                    None => None,
                };
                let kind: String = row.get(8)?;
                let shape = MatmulShape {
                    m: row.get(9)?,
                    n: row.get(10)?,
                    k: row.get(11)?,
                };
                let units_total: i64 = row.get(3)?;
                let units_verified: i64 = row.get(4)?;
                Ok(JobStatus {
                    id: row.get(0)?,
                    shape: (kind == "matmul").then_some(shape),
                    output_bytes: shape.output_bytes(),
                    kind,
                    state: row.get(1)?,
                    created_at_unix_ms: row.get(12)?,
                    progress: if units_total == 0 {
                        0.0
                    } else {
                        units_verified as f64 / units_total as f64
                    },
                    output_hash,
                    units_total,
                    units_verified,
                    units_pending: row.get(5)?,
                    units_leased: row.get(6)?,
                    units_failed: row.get(7)?,
                })
            },
        )
        .optional()?;
    Ok(status)
}
