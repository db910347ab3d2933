//! The demo job generator: keeps contributors busy while nobody else has queued work.
//!
//! Every second ([`spawn`]) it calls [`tick`], which creates a fresh demo matmul job from
//! [`glowworm_protocol::kernels::matmul::sample_matrix`] whenever no unit of a queued job is pending or
//! leased.

use crate::clock::Clock;
use crate::config::Config;
use crate::error::ApiError;
use crate::random;
use crate::store::Db;
use crate::work::jobs::{MatmulJob, Owner, Split};
use glowworm_protocol::kernels::matmul::sample_matrix;
use glowworm_protocol::wire::MatmulShape;
use std::sync::Arc;
use std::time::Duration;

/// A demo job that [`tick`] created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoJob {
    pub job_id: i64,
    /// A and B are [`demo_matrices`] of this seed.
    pub seed: u64,
}

/// The inputs of a demo job: A (m x k) and B (k x n), reproducible from the seed.
pub fn demo_matrices(seed: u64, shape: MatmulShape) -> (Vec<f32>, Vec<f32>) {
    let a = sample_matrix(shape.m * shape.k, seed);
    let b = sample_matrix(shape.k * shape.n, seed ^ 0xB0B0_B0B0_B0B0_B0B0);
    (a, b)
}

/// Creates a demo job (queued at `now`) if no unit of a queued job is pending or leased;
/// returns it if it did.
pub async fn tick(db: &Db, config: &Config, now: i64) -> Result<Option<DemoJob>, ApiError> {
    if db.read(open_units).await? {
        return Ok(None);
    }
    let seed = u64::from_le_bytes(random::bytes::<8>()?);
    let shape = MatmulShape {
        m: config.demo_m,
        n: config.demo_n,
        k: config.demo_k,
    };
    let split = Split {
        unit_size: config.unit_size,
        max_attempts: config.max_attempts,
        replicas: config.demo_replicate.then_some(config.replicas),
    };
    let store = db.blob_store().clone();
    let job = tokio::task::spawn_blocking(move || {
        let (a, b) = demo_matrices(seed, shape);
        MatmulJob::store(&store, &a, &b, shape, split)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("demo job task failed: {e}")))??;
    let config = config.clone();
    db.call(move |conn| {
        let tx = conn.transaction()?;
        // Work may have been queued while the inputs were written.
        if open_units(&tx)? {
            return Ok(None);
        }
        let job_id = job.insert(&tx, &config, Owner::Demo, now)?;
        tx.commit()?;
        tracing::info!(
            "demo job {job_id} queued: ({m}, {k}) @ ({k}, {n}), seed {seed}",
            m = shape.m,
            k = shape.k,
            n = shape.n
        );
        Ok(Some(DemoJob { job_id, seed }))
    })
    .await
}

/// Whether any unit of a queued job is pending or leased.
fn open_units(conn: &rusqlite::Connection) -> Result<bool, ApiError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM units JOIN jobs ON jobs.id = units.job_id
                        WHERE jobs.state = 'queued' AND units.state IN ('pending', 'leased')
                          AND units.canary_of IS NULL)",
        [],
        |row| row.get(0),
    )?)
}

/// Runs [`tick`] every second until the runtime shuts down.
pub fn spawn(db: Db, config: Arc<Config>, clock: Arc<dyn Clock>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = tick(&db, &config, clock.now_ms()).await {
                tracing::error!("demo job generator: {e}");
            }
        }
    })
}
