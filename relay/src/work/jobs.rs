//! Jobs: split into units, and put back together when every unit is verified.
//!
//! Two kinds:
//! - **matmul**: C (m x n) = A (m x k) * B (k x n) becomes one unit per `unit_size` x `unit_size`
//!   tile of C (smaller at the right and bottom edges), each with the full k. A unit's inputs are
//!   the A row panel (its rows of A, all k columns) and the B column panel (all k rows of B, its
//!   columns), both row-major f32 little-endian blobs. Tiles in the same row share their A panel
//!   and tiles in the same column share their B panel, so the blob store and the contributors'
//!   caches hold each panel once. Verified with Freivalds' check (or replicated, for demo jobs
//!   with `demo_replicate`).
//! - **kernel**: a requester's WGSL shader run as `units` dispatches ([`KernelJob`]), each input
//!   split between the units or shared by all; verified by replication. The output is every
//!   unit's output in unit order.
//!
//! Creating a job has two steps, so that no file is written on the database writer thread: the
//! inputs are cut up and the big ones written to the [`BlobStore`] first ([`MatmulJob::store`],
//! [`KernelJob::store`]), then one transaction inserts the small ones ([`StagedBlobs`]), the job
//! and its units (`insert`).

use crate::accounts::ledger;
use crate::config::Config;
use crate::error::ApiError;
use crate::store::blobs::{BlobStore, StagedBlobs, hash_column};
use crate::work::pricing::{self, Shortfall};
use crate::work::result_rows;

crate::sql_enum! {
    /// Where a job is (`jobs.state`). A queued job whose units are all verified stays queued,
    /// `assembling`, until its output is written ([`crate::work::assembly`]).
    pub enum JobState {
        Queued = "queued",
        /// Its output is written.
        Done = "done",
        /// One of its units failed for good (`jobs.failure` says why).
        Failed = "failed",
        /// Its requester cancelled it.
        Cancelled = "cancelled",
    }
}
use crate::work::units::{self, KernelUnit, UnitFailed, Verify};
use axum::http::StatusCode;
use glowworm_protocol::encoding::f32s_to_bytes;
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::wire::{
    BlobRef, Dispatch, JobStatus, KernelSource, KernelSpec, MatmulShape, Waiting,
};
use rusqlite::{Connection, OptionalExtension, params};

/// How a job is cut into units, how each unit is verified and how often it may be tried.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    pub unit_size: u32,
    pub max_attempts: u32,
    /// `None`: Freivalds' check of each result. `Some(k)`: replication, until k results of
    /// distinct contributors agree ([`crate::work::replication`]); such a unit may be leased
    /// `max_attempts` times more than its replicas.
    pub replicas: Option<u32>,
}

/// Who a job belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Made by the relay's demo generator; anyone may read its status.
    Demo,
    /// Submitted with the API key of this requester (`requesters.id`).
    Requester(i64),
}

/// A matmul job whose panels are in the blob store, ready to insert.
#[derive(Debug, Clone)]
pub struct MatmulJob {
    shape: MatmulShape,
    split: Split,
    tiles: Vec<Tile>,
    /// Panels small enough to go into the database with the job.
    blobs: StagedBlobs,
}

#[derive(Debug, Clone)]
struct Tile {
    row0: u32,
    col0: u32,
    rows: u32,
    cols: u32,
    a_hash: ContentHash,
    b_hash: ContentHash,
}

impl MatmulJob {
    /// Cuts A and B into the panels of each tile and writes them to `store`.
    pub fn store(
        store: &BlobStore,
        a: &[f32],
        b: &[f32],
        shape: MatmulShape,
        split: Split,
    ) -> Result<MatmulJob, ApiError> {
        let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
        if a.len() != m * k || b.len() != k * n || m == 0 || n == 0 || k == 0 {
            return Err(ApiError::Internal(format!(
                "job inputs do not match shape {m}x{n}x{k}"
            )));
        }
        let tile = split.unit_size as usize;
        let mut tiles = Vec::new();
        let mut blobs = StagedBlobs::default();
        let mut b_panels = Vec::new();
        for col0 in (0..n).step_by(tile) {
            let cols = tile.min(n - col0);
            let b_panel: Vec<f32> = (0..k)
                .flat_map(|l| &b[l * n + col0..l * n + col0 + cols])
                .copied()
                .collect();
            b_panels.push((
                col0,
                cols,
                store.stage(&f32s_to_bytes(&b_panel), &mut blobs)?,
            ));
        }
        for row0 in (0..m).step_by(tile) {
            let rows = tile.min(m - row0);
            let a_panel = f32s_to_bytes(&a[row0 * k..(row0 + rows) * k]);
            let a_hash = store.stage(&a_panel, &mut blobs)?;
            for &(col0, cols, b_hash) in &b_panels {
                tiles.push(Tile {
                    row0: row0 as u32,
                    col0: col0 as u32,
                    rows: rows as u32,
                    cols: cols as u32,
                    a_hash,
                    b_hash,
                });
            }
        }
        Ok(MatmulJob {
            shape,
            split,
            tiles,
            blobs,
        })
    }

    /// Units the job has.
    pub fn units(&self) -> u64 {
        self.tiles.len() as u64
    }

    /// Inserts the job and its units, priced and funded ([`fund`]); returns the job id. Run it
    /// inside a transaction.
    pub fn insert(
        &self,
        conn: &Connection,
        config: &Config,
        owner: Owner,
        now_ms: i64,
    ) -> Result<i64, ApiError> {
        self.blobs.insert(conn)?;
        let job_id = insert_job(
            conn,
            "matmul",
            self.shape,
            self.shape.output_bytes(),
            owner,
            now_ms,
        )?;
        let kernel_hash = matmul::TILED.hash().to_string();
        let verify = match self.split.replicas {
            Some(_) => Verify::Replicate,
            None => Verify::Freivalds,
        };
        for tile in &self.tiles {
            let flop = MatmulShape {
                m: tile.rows,
                n: tile.cols,
                k: self.shape.k,
            }
            .flop();
            conn.prepare_cached(
                "INSERT INTO units (job_id, row0, col0, m, n, k, kernel_hash, a_hash, b_hash,
                                    state, attempts, max_attempts, verify, quorum,
                                    replicas_needed, flop)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?10, ?11, ?12, ?12,
                         ?13)",
            )?
            .execute(params![
                job_id,
                tile.row0,
                tile.col0,
                tile.rows,
                tile.cols,
                self.shape.k,
                kernel_hash,
                tile.a_hash.to_string(),
                tile.b_hash.to_string(),
                self.split.max_attempts + self.split.replicas.unwrap_or(0),
                verify.as_str(),
                self.split.replicas.unwrap_or(1),
                flop as i64,
            ])?;
        }
        fund(conn, config, job_id, owner, None, now_ms)?;
        Ok(job_id)
    }
}

/// A kernel job whose inputs are in the blob store, ready to insert.
#[derive(Debug, Clone)]
pub struct KernelJob {
    pub kernel_hash: ContentHash,
    name: String,
    entry_point: String,
    wgsl: String,
    replicas: u32,
    max_attempts: u32,
    /// A unit's work: its shader invocations.
    flop: u64,
    /// What the requester offers per verified result ([`crate::work::pricing`]).
    price_per_unit: Option<u64>,
    units: Vec<KernelUnit>,
    /// Input chunks small enough to go into the database with the job.
    blobs: StagedBlobs,
}

impl KernelJob {
    /// Cuts each input (`inputs[i]` holds the bytes of `spec.inputs[i]`) into the units' chunks
    /// and writes them to `store`. The spec must have passed
    /// [`glowworm_protocol::kernels::custom::validate`], which gave `workgroup_size`.
    pub fn store(
        store: &BlobStore,
        spec: &KernelSpec,
        inputs: &[Vec<u8>],
        workgroup_size: [u32; 3],
        max_attempts: u32,
    ) -> Result<KernelJob, ApiError> {
        let units = spec.units as usize;
        let mut chunks: Vec<Vec<BlobRef>> = vec![Vec::new(); units];
        let mut blobs = StagedBlobs::default();
        for (declared, bytes) in spec.inputs.iter().zip(inputs) {
            // A shared input is one blob that every unit names: stored and hashed once.
            let shared = match declared.shared {
                true => Some(store.stage(bytes, &mut blobs)?),
                false => None,
            };
            let chunk_len = if declared.shared {
                bytes.len()
            } else {
                bytes.len() / units
            };
            for (i, unit_inputs) in chunks.iter_mut().enumerate() {
                let hash = match shared {
                    Some(hash) => hash,
                    None => store.stage(&bytes[i * chunk_len..(i + 1) * chunk_len], &mut blobs)?,
                };
                unit_inputs.push(BlobRef {
                    name: declared.name.clone(),
                    hash,
                    bytes: chunk_len as u64,
                    binding: Some(declared.binding),
                });
            }
        }
        let invocations = spec
            .workgroups
            .iter()
            .chain(&workgroup_size)
            .map(|&d| d as u64)
            .product();
        let dispatch = Dispatch {
            workgroups: spec.workgroups,
            output_binding: spec.output.binding,
        };
        Ok(KernelJob {
            kernel_hash: ContentHash::of(spec.wgsl.as_bytes()),
            name: spec.name.clone().unwrap_or_else(|| "custom".to_string()),
            entry_point: spec.entry_point.clone(),
            wgsl: spec.wgsl.clone(),
            replicas: spec.replicas,
            max_attempts,
            flop: invocations,
            price_per_unit: spec.price_per_unit,
            units: chunks
                .into_iter()
                .map(|inputs| KernelUnit {
                    kernel_name: spec.name.clone().unwrap_or_else(|| "custom".to_string()),
                    inputs,
                    dispatch,
                    output_bytes: spec.output.bytes,
                    tolerance_ulps: spec.tolerance_ulps,
                })
                .collect(),
            blobs,
        })
    }

    /// Units the job has.
    pub fn units(&self) -> u64 {
        self.units.len() as u64
    }

    /// What the requester offers per verified result, if it named a price.
    pub fn price_per_unit(&self) -> Option<u64> {
        self.price_per_unit
    }

    /// Inserts the kernel (unless known), the job and its units, priced and funded ([`fund`]);
    /// returns the job id. Run it inside a transaction. The same WGSL may only be used with one
    /// entry point.
    pub fn insert(
        &self,
        conn: &Connection,
        config: &Config,
        owner: Owner,
        now_ms: i64,
    ) -> Result<i64, ApiError> {
        let hash = self.kernel_hash.to_string();
        let known: Option<String> = conn
            .prepare_cached("SELECT entry_point FROM kernels WHERE hash = ?1")?
            .query_row([&hash], |row| row.get(0))
            .optional()?;
        match known {
            Some(entry_point) if entry_point != self.entry_point => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "kernel_conflict",
                    format!(
                        "this WGSL (kernel {hash}) was submitted before with entry point \
                         '{entry_point}'; use that one, or change the source"
                    ),
                ));
            }
            Some(_) => {}
            None => {
                conn.prepare_cached(
                    "INSERT INTO kernels (hash, name, entry_point, wgsl, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    hash,
                    self.name,
                    self.entry_point,
                    self.wgsl,
                    now_ms
                ])?;
            }
        }
        self.blobs.insert(conn)?;
        let output_bytes = self.units.iter().map(|u| u.output_bytes).sum();
        let no_shape = MatmulShape { m: 0, n: 0, k: 0 };
        let job_id = insert_job(conn, "kernel", no_shape, output_bytes, owner, now_ms)?;
        for (index, unit) in self.units.iter().enumerate() {
            let description = serde_json::to_string(unit)
                .map_err(|e| ApiError::Internal(format!("kernel unit: {e}")))?;
            conn.prepare_cached(
                "INSERT INTO units (job_id, row0, col0, m, n, k, kernel_hash, state, attempts,
                                    max_attempts, verify, quorum, replicas_needed, flop,
                                    kernel_unit)
                 VALUES (?1, ?2, 0, 0, 0, 0, ?3, 'pending', 0, ?4, 'replicate', ?5, ?5, ?6, ?7)",
            )?
            .execute(params![
                job_id,
                index as u32,
                hash,
                self.max_attempts + self.replicas,
                self.replicas,
                self.flop as i64,
                description,
            ])?;
        }
        fund(conn, config, job_id, owner, self.price_per_unit, now_ms)?;
        Ok(job_id)
    }
}

fn insert_job(
    conn: &Connection,
    kind: &str,
    shape: MatmulShape,
    output_bytes: u64,
    owner: Owner,
    now_ms: i64,
) -> Result<i64, ApiError> {
    let (requester, is_demo) = match owner {
        Owner::Demo => (None, true),
        Owner::Requester(id) => (Some(id), false),
    };
    conn.prepare_cached(
        "INSERT INTO jobs (kind, m, n, k, state, created_at, is_demo, requester_id, output_bytes)
         VALUES (?1, ?2, ?3, ?4, ?9, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        kind,
        shape.m,
        shape.n,
        shape.k,
        now_ms,
        is_demo,
        requester,
        output_bytes as i64,
        JobState::Queued
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Stores a new matmul job: its panels in the blob store beside the database, then the job and
/// its units; returns the job id. Run it inside a transaction. For the demo generator and tests;
/// requesters' jobs write their blobs before the transaction ([`MatmulJob::store`]).
#[allow(clippy::too_many_arguments)]
pub fn create_matmul(
    conn: &Connection,
    config: &Config,
    store: &BlobStore,
    a: &[f32],
    b: &[f32],
    shape: MatmulShape,
    split: Split,
    owner: Owner,
    now_ms: i64,
) -> Result<i64, ApiError> {
    MatmulJob::store(store, a, b, shape, split)?.insert(conn, config, owner, now_ms)
}

/// Marks a queued job failed (one of its units failed for good), with `why` in words for its
/// requester (shown as the job status's `failure`).
/// What is left of its reserve goes back to its owner's budget ([`release`]).
pub fn fail(conn: &Connection, job_id: i64, why: &str, now_ms: i64) -> Result<(), ApiError> {
    let failed = conn
        .prepare_cached("UPDATE jobs SET state = ?3, failure = ?2 WHERE id = ?1 AND state = ?4")?
        .execute(params![job_id, why, JobState::Failed, JobState::Queued])?;
    if failed > 0 {
        tracing::warn!("job {job_id} failed: {why}");
        release(conn, job_id, now_ms)?;
    }
    Ok(())
}

/// Fails the job of a unit that failed for good, if one did.
pub fn fail_for(
    conn: &Connection,
    failed: Option<UnitFailed>,
    now_ms: i64,
) -> Result<(), ApiError> {
    match failed {
        Some(UnitFailed { job_id, why }) => fail(conn, job_id, &why, now_ms),
        None => Ok(()),
    }
}

/// Prices a new job's units and reserves what they may cost from its owner's budget
/// ([`pricing::fund`]): a requester that cannot pay is refused, a demo job the demo budget
/// cannot cover is posted unpaid.
fn fund(
    conn: &Connection,
    config: &Config,
    job_id: i64,
    owner: Owner,
    offered: Option<u64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    let shortfall = match owner {
        Owner::Demo => Shortfall::Unpaid,
        Owner::Requester(_) => Shortfall::Refuse,
    };
    let budget = budget_of(owner);
    pricing::fund(conn, config, job_id, &budget, shortfall, offered, now_ms)?;
    Ok(())
}

/// The budget account a job of `owner` is paid from.
pub fn budget_of(owner: Owner) -> String {
    match owner {
        Owner::Demo => ledger::DEMO_BUDGET.to_string(),
        Owner::Requester(id) => ledger::requester_account(id),
    }
}

/// What requester `requester`'s jobs that have not ended hold in escrow.
pub fn reserved_by_open_jobs(conn: &Connection, requester: i64) -> Result<i64, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(SUM(balances.amount), 0)
             FROM jobs JOIN balances ON balances.account = 'job:' || jobs.id
             WHERE jobs.requester_id = ?1 AND jobs.state = ?2",
        )?
        .query_row(params![requester, JobState::Queued], |row| row.get(0))?)
}

/// A job has ended (done, failed or cancelled): what is left in its escrow goes back to its
/// owner's budget. Results that come later are valid but unpaid ([`crate::work::settlement`]).
fn release(conn: &Connection, job_id: i64, now_ms: i64) -> Result<(), ApiError> {
    let Some(owner) = owner(conn, job_id)? else {
        return Err(ApiError::Internal(format!("job {job_id} vanished")));
    };
    let released = ledger::release(conn, job_id, &budget_of(owner), now_ms)?;
    if released > 0 {
        tracing::debug!("job {job_id} ended; {released} credits of its reserve released");
    }
    Ok(())
}

/// Cancels a queued job (not one whose output is being assembled: it is finished): its units that are not verified are cancelled, so they are leased no
/// more, results for them are refused and their replicas waiting to be compared are never
/// credited. Returns whether the job was queued. Run it inside a transaction.
pub fn cancel(conn: &Connection, job_id: i64, now_ms: i64) -> Result<bool, ApiError> {
    let cancelled = conn.execute(
        "UPDATE jobs SET state = ?2 WHERE id = ?1 AND state = ?3 AND assembling = 0",
        params![job_id, JobState::Cancelled, JobState::Queued],
    )?;
    if cancelled == 0 {
        return Ok(false);
    }
    units::cancel_unfinished_of_job(conn, job_id)?;
    result_rows::cancel_pending_of_job(conn, job_id)?;
    release(conn, job_id, now_ms)?;
    Ok(true)
}

/// When every unit of a queued job is verified: marks the job `assembling`, for the
/// database's assembler thread to write its output and mark it done ([`crate::work::assembly`]), and
/// wakes that thread once this transaction commits. Returns whether it did. Run it inside the
/// transaction that verified the last unit. The output is not read here: the writer thread,
/// which every result waits for, is never held by an output's size.
pub fn complete_if_done(conn: &Connection, job_id: i64) -> Result<bool, ApiError> {
    let (state, assembling): (JobState, bool) = conn
        .prepare_cached("SELECT state, assembling FROM jobs WHERE id = ?1")?
        .query_row([job_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    if state != JobState::Queued || assembling {
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
    conn.prepare_cached("UPDATE jobs SET assembling = 1 WHERE id = ?1")?
        .execute([job_id])?;
    crate::store::wake_after_commit();
    tracing::debug!("job {job_id}: every unit verified; its output is being assembled");
    Ok(true)
}

/// Marks `job_id` done with `output_hash`, once its output is written; returns whether it did
/// (not when the job is no longer waiting for it: cancelled, or done by an earlier assembly).
pub fn mark_done(
    conn: &Connection,
    job_id: i64,
    output_hash: &ContentHash,
    now_ms: i64,
) -> Result<bool, ApiError> {
    let done = conn
        .prepare_cached(
            "UPDATE jobs SET state = ?3, output_hash = ?2, assembling = 0
             WHERE id = ?1 AND state = ?4 AND assembling = 1",
        )?
        .execute(params![
            job_id,
            output_hash.to_string(),
            JobState::Done,
            JobState::Queued
        ])?;
    if done > 0 {
        release(conn, job_id, now_ms)?;
    }
    Ok(done > 0)
}

/// A custom kernel's source, as contributors fetch it, or `None` for an unknown hash.
pub fn custom_kernel(
    conn: &Connection,
    hash: &ContentHash,
) -> Result<Option<KernelSource>, ApiError> {
    Ok(conn
        .prepare_cached("SELECT name, entry_point, wgsl FROM kernels WHERE hash = ?1")?
        .query_row([hash.to_string()], |row| {
            Ok(KernelSource {
                id: row.get(0)?,
                hash: *hash,
                entry_point: row.get(1)?,
                wgsl: row.get(2)?,
                // Matmul kernels only; custom kernels say their dispatch in each lease.
                tile: [1, 1],
            })
        })
        .optional()?)
}

/// The requester a job belongs to (`None` for demo jobs), or `None` for an unknown id.
pub fn owner(conn: &Connection, job_id: i64) -> Result<Option<Owner>, ApiError> {
    let owner = conn
        .prepare_cached("SELECT requester_id FROM jobs WHERE id = ?1")?
        .query_row([job_id], |row| row.get::<_, Option<i64>>(0))
        .optional()?;
    Ok(owner.map(|requester| match requester {
        Some(id) => Owner::Requester(id),
        None => Owner::Demo,
    }))
}

/// The columns [`status_from_row`] reads, in order.
const STATUS_COLUMNS: &str = "id, state, output_hash,
    (SELECT COUNT(*) FROM units WHERE job_id = jobs.id AND canary_of IS NULL),
    (SELECT COUNT(*) FROM units WHERE job_id = jobs.id AND state = 'verified' AND canary_of IS NULL),
    (SELECT COUNT(*) FROM units WHERE job_id = jobs.id AND state = 'pending' AND canary_of IS NULL),
    (SELECT COUNT(*) FROM units WHERE job_id = jobs.id AND state = 'leased' AND canary_of IS NULL),
    (SELECT COUNT(*) FROM units WHERE job_id = jobs.id AND state = 'failed' AND canary_of IS NULL),
    kind, m, n, k, created_at, output_bytes, failure,
    (SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE job_id = jobs.id AND kind = 'reserve_in'),
    (SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE job_id = jobs.id AND kind = 'release_in'),
    (SELECT COALESCE(SUM(amount), 0) FROM balances WHERE account = 'job:' || jobs.id)";

fn status_from_row(row: &rusqlite::Row) -> rusqlite::Result<JobStatus> {
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
    let (reserved, returned, escrow): (i64, i64, i64) = (row.get(15)?, row.get(16)?, row.get(17)?);
    Ok(JobStatus {
        id: row.get(0)?,
        shape: (kind == "matmul").then_some(shape),
        kind,
        state: row.get(1)?,
        output_bytes: row.get::<_, i64>(13)? as u64,
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
        failure: row.get(14)?,
        waiting: Vec::new(),
        credits_reserved: reserved,
        credits_paid: reserved - returned - escrow,
        credits_returned: returned,
    })
}

/// Why a queued job's units that are not verified wait, grouped ([`JobStatus::waiting`]).
fn waiting(
    conn: &Connection,
    config: &Config,
    job_id: i64,
    now_ms: i64,
) -> Result<Vec<Waiting>, ApiError> {
    let groups: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT CASE
                      WHEN units.on_trust = 1 AND EXISTS (SELECT 1 FROM results
                           WHERE results.unit_id = units.id AND results.state = 'pending')
                        THEN 'settling'
                      WHEN EXISTS (SELECT 1 FROM leases WHERE leases.unit_id = units.id
                                   AND leases.state = 'active' AND leases.canary = 0)
                        THEN 'computing'
                      WHEN EXISTS (SELECT 1 FROM results
                                   WHERE results.unit_id = units.id AND results.state = 'pending')
                        THEN 'replicas'
                      ELSE 'queued'
                    END AS reason, COUNT(*)
             FROM units WHERE job_id = ?1 AND state IN ('pending', 'leased')
               AND canary_of IS NULL
             GROUP BY reason ORDER BY reason",
        )?
        .query_map([job_id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    // What the relay saw of contributors lately, to say what would unblock replicas.
    let since = now_ms - 10 * 60 * 1000;
    let (keys, networks): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(DISTINCT public_key), COUNT(DISTINCT network) FROM leases
             WHERE issued_at_ms >= ?1",
        )?
        .query_row([since], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let apart = if config.distinct_networks {
        format!(
            "keys, linked addresses and networks (/24 or /64) other than those of its earlier \
             replicas; in the last 10 minutes {keys} contributor key(s) from {networks} such \
             network(s) asked for work{}",
            if networks <= 1 && keys > 1 {
                ": every replica needs another network. Behind a reverse proxy, set \
                 trust_forwarded_for; on one machine, listen on loopback"
            } else {
                ""
            }
        )
    } else {
        format!(
            "keys and linked addresses other than those of its earlier replicas; in the last \
             10 minutes {keys} contributor key(s) asked for work"
        )
    };
    Ok(groups
        .into_iter()
        .map(|(reason, units)| {
            let detail = match reason.as_str() {
                "queued" => "not yet taken by a contributor".to_string(),
                "computing" => "leased to a contributor, being computed".to_string(),
                "settling" => "computed by a trusted contributor; credited and settled by that \
                     contributor's next check, or replicated after settle_seconds"
                    .to_string(),
                _ => format!("has results and waits for agreeing replicas from {apart}"),
            };
            Waiting {
                reason,
                units,
                detail,
            }
        })
        .collect())
}

/// A job's state and progress, with why its units wait while it is queued, or `None` for an
/// unknown id.
pub fn status(
    conn: &Connection,
    config: &Config,
    job_id: i64,
    now_ms: i64,
) -> Result<Option<JobStatus>, ApiError> {
    let sql = format!("SELECT {STATUS_COLUMNS} FROM jobs WHERE id = ?1");
    let status = conn
        .prepare_cached(&sql)?
        .query_row([job_id], status_from_row)
        .optional()?;
    let Some(mut status) = status else {
        return Ok(None);
    };
    if status.state == "queued" {
        status.waiting = waiting(conn, config, job_id, now_ms)?;
    }
    Ok(Some(status))
}

/// A requester's jobs, newest first, at most `limit`.
pub fn list(conn: &Connection, requester: i64, limit: u32) -> Result<Vec<JobStatus>, ApiError> {
    let sql = format!(
        "SELECT {STATUS_COLUMNS} FROM jobs WHERE requester_id = ?1 ORDER BY id DESC LIMIT ?2"
    );
    let jobs = conn
        .prepare_cached(&sql)?
        .query_map(params![requester, limit], status_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(jobs)
}

/// Units of a requester's queued jobs not yet verified, failed or cancelled: what its quota
/// bounds.
pub fn queued_units(conn: &Connection, requester: i64) -> Result<u64, ApiError> {
    let units: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM units JOIN jobs ON jobs.id = units.job_id
             WHERE jobs.requester_id = ?1 AND jobs.state = 'queued'
               AND units.state IN ('pending', 'leased') AND units.canary_of IS NULL",
        )?
        .query_row([requester], |row| row.get(0))?;
    Ok(units as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_are_the_schemas() {
        crate::sql_enum::assert_matches_schema("jobs", "state", super::JobState::TEXTS);
    }
    use glowworm_protocol::kernels::custom::samples;

    /// Every unit of a kernel job names one blob for a shared input, whole, and its own chunk
    /// of a split one.
    #[test]
    fn a_shared_input_is_one_blob_for_every_unit() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = BlobStore::beside(&dir.path().join("relay.sqlite"));
        let (signal_len, taps, units) = (100u32, 5u32, 3u32);
        let spec = samples::conv1d_spec(signal_len, taps, units);
        let signal = f32s_to_bytes(&matmul::sample_matrix(signal_len * units, 1));
        let weights = f32s_to_bytes(&matmul::sample_matrix(taps, 2));
        let job = KernelJob::store(
            &store,
            &spec,
            &[signal.clone(), weights.clone()],
            [64, 1, 1],
            3,
        )
        .unwrap();

        let chunk = signal.len() / units as usize;
        assert_eq!(job.units.len(), units as usize);
        for (i, unit) in job.units.iter().enumerate() {
            let names: Vec<(&str, ContentHash, u64)> = unit
                .inputs
                .iter()
                .map(|input| (input.name.as_str(), input.hash, input.bytes))
                .collect();
            assert_eq!(
                names,
                [
                    (
                        "signal",
                        ContentHash::of(&signal[i * chunk..(i + 1) * chunk]),
                        chunk as u64
                    ),
                    ("weights", ContentHash::of(&weights), weights.len() as u64),
                ]
            );
        }
        // All are small: staged for the job's transaction, the weights once.
        assert_eq!(job.blobs.len(), units as usize + 1);
    }
}
