//! Putting a finished job's output together, off the database writer thread, in bounded
//! memory.
//!
//! The transaction that verifies a job's last unit only marks the job `assembling`
//! ([`crate::jobs::complete_if_done`]); the job stays `queued`, with every unit verified
//! (progress 1.0), until its output exists. The database's assembler thread
//! ([`crate::db`]: woken after such a commit, and at every start, which recovers a crash
//! between that commit and the output) then streams the units' outputs, read on a read
//! connection, in order into a blob file ([`BlobStore::writer`]: hashed as written, synced,
//! renamed to its hash), and one short transaction on the writer marks the job done with its
//! output ([`finish`]). So a job is `done` only once its output is durable, the writer is never
//! held by an output's size, and memory stays within:
//!
//! - a kernel job: one unit's output at a time (its outputs are concatenated in unit order);
//! - a matmul job: one band of C, `unit_size` rows by n columns, and one unit's tile: C is
//!   row-major, so the tiles of one tile row are interleaved row by row in the band, and the
//!   band is written whole before the next tile row is read.
//!
//! Unit outputs are immutable once verified, so reading them in several short read
//! transactions sees a consistent job (and never keeps an old WAL snapshot for long, which
//! would keep checkpoints from catching up). Assembling is idempotent: a job assembled twice
//! (a crash after the file was written, before the commit) yields the same file, and only a job
//! still queued and assembling is marked done.

use crate::blobs::{BlobStore, hash_column};
use crate::error::ApiError;
use glowworm_protocol::hash::ContentHash;
use rusqlite::{Connection, params};

/// A job whose units are all verified and whose output is not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub job_id: i64,
    kind: String,
    /// Columns of C (matmul).
    n: usize,
    output_bytes: u64,
}

/// One unit's place in the output.
struct Piece {
    row0: usize,
    col0: usize,
    rows: usize,
    cols: usize,
    result_hash: ContentHash,
}

/// Jobs waiting for their output, oldest first.
pub fn due(conn: &Connection) -> Result<Vec<Due>, ApiError> {
    let due = conn
        .prepare_cached(
            "SELECT id, kind, n, output_bytes FROM jobs
             WHERE assembling = 1 AND state = 'queued' ORDER BY id",
        )?
        .query_map([], |row| {
            Ok(Due {
                job_id: row.get(0)?,
                kind: row.get(1)?,
                n: row.get(2)?,
                output_bytes: row.get::<_, i64>(3)? as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(due)
}

/// Writes `job`'s output to `store`, reading its units' outputs on `conn` (a read connection);
/// returns the output's hash. The file is durable when it returns. `pause` runs before each
/// unit's output is read (tests hold the assembly there).
pub fn assemble(
    conn: &Connection,
    store: &BlobStore,
    job: &Due,
    pause: &dyn Fn(),
) -> Result<ContentHash, ApiError> {
    // Where each unit goes, in the output's order: small (a few dozen bytes a unit), read in
    // one short statement.
    let pieces: Vec<Piece> = conn
        .prepare_cached(
            "SELECT row0, col0, m, n, result_hash FROM units
             WHERE job_id = ?1 AND canary_of IS NULL ORDER BY row0, col0",
        )?
        .query_map([job.job_id], |row| {
            Ok(Piece {
                row0: row.get(0)?,
                col0: row.get(1)?,
                rows: row.get(2)?,
                cols: row.get(3)?,
                result_hash: hash_column(row, 4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let job_id = job.job_id;
    let wrong = |what: String| ApiError::Internal(format!("assembling job {job_id}: {what}"));
    let mut output = store.writer()?;
    if job.kind == "kernel" {
        for piece in &pieces {
            pause();
            output.write(&store.get_required(conn, &piece.result_hash)?)?;
        }
    } else {
        // One tile row at a time: its tiles' rows interleaved into a band of C.
        let row_bytes = 4 * job.n;
        let mut band = Vec::new();
        for tile_row in pieces.chunk_by(|a, b| a.row0 == b.row0) {
            let rows = tile_row[0].rows;
            band.clear();
            band.resize(rows * row_bytes, 0u8);
            let mut next_col = 0;
            for piece in tile_row {
                if piece.rows != rows || piece.col0 != next_col || piece.col0 + piece.cols > job.n {
                    return Err(wrong(format!(
                        "unit at ({}, {}) does not tile C",
                        piece.row0, piece.col0
                    )));
                }
                next_col += piece.cols;
                pause();
                let tile = store.get_required(conn, &piece.result_hash)?;
                let tile_row_bytes = 4 * piece.cols;
                if tile.len() != rows * tile_row_bytes {
                    return Err(wrong(format!(
                        "result blob {} has {} bytes, expected {}",
                        piece.result_hash,
                        tile.len(),
                        rows * tile_row_bytes
                    )));
                }
                for (i, source) in tile.chunks_exact(tile_row_bytes).enumerate() {
                    let start = i * row_bytes + 4 * piece.col0;
                    band[start..start + tile_row_bytes].copy_from_slice(source);
                }
            }
            if next_col != job.n {
                return Err(wrong(format!(
                    "tile row {} covers {next_col} of {} columns",
                    tile_row[0].row0, job.n
                )));
            }
            output.write(&band)?;
        }
    }
    if output.len() != job.output_bytes {
        return Err(wrong(format!(
            "the output has {} bytes, expected {}",
            output.len(),
            job.output_bytes
        )));
    }
    output.finish()
}

/// Marks `job_id` done with `output_hash`, once its output is written; returns whether it did
/// (not when the job is no longer waiting for it). Run it in a transaction on the writer.
pub fn finish(conn: &Connection, job_id: i64, output_hash: &ContentHash) -> Result<bool, ApiError> {
    let done = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'done', output_hash = ?2, assembling = 0
             WHERE id = ?1 AND state = 'queued' AND assembling = 1",
        )?
        .execute(params![job_id, output_hash.to_string()])?;
    if done > 0 {
        tracing::info!("job {job_id} done: output {output_hash}");
    }
    Ok(done > 0)
}
