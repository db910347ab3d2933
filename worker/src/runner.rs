//! The work loop: several units in flight on one thread, each going lease -> fetch (cached) ->
//! GPU -> sign -> submit, until stopped or a unit budget is reached. Matmul units and custom
//! kernels' units take the same path: inputs are fetched and cached as bytes by content hash,
//! [`glowworm::protocol::work`] says what to run, and the output's bytes are signed.

use crate::client::{ClientError, RelayClient};
use crate::gpu_thread::GpuThread;
use glowworm::cache::BlobCache;
use glowworm::hash::ContentHash;
use glowworm::protocol::{self, ProtocolError};
use glowworm::signing::ContributorKey;
use glowworm::wire::{BlobRef, KernelSource, Lease, ReleaseReason, ResultReceipt};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Inputs kept in memory across units, in bytes.
const BLOB_CACHE_BYTES: usize = 256 << 20;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError<ClientError>),
    #[error(transparent)]
    Gpu(#[from] glowworm::gpu::GpuError),
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Units worked on at once (leased, fetching, computing or submitting).
    pub in_flight: usize,
    /// Stop after this many verified units.
    pub max_units: Option<u64>,
    /// How long to wait when the relay has no work.
    pub idle_wait: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            in_flight: 2,
            max_units: None,
            idle_wait: Duration::from_secs(1),
        }
    }
}

/// Running totals of this run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub units: u64,
    pub flop: u64,
    pub credited: i64,
    /// The balance the relay reported with the latest receipt.
    pub balance: i64,
    pub errors: u64,
    /// Input bytes fetched from the relay, and the input bytes the units read: without the
    /// input cache the two would be equal.
    pub bytes_downloaded: u64,
    pub bytes_used: u64,
}

/// What the loop reports as it goes (for the terminal's progress line, or a test).
#[derive(Debug)]
pub enum Event<'a> {
    Verified {
        receipt: &'a ResultReceipt,
        totals: &'a Totals,
    },
    Idle,
    Error {
        message: String,
        retry_in: Duration,
    },
}

/// Ask the loop to stop: units in flight are finished and submitted, nothing new is leased.
#[derive(Clone, Default)]
pub struct StopSignal {
    stopped: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl StopSignal {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration`, or less if stopped meanwhile.
    async fn sleep(&self, duration: Duration) {
        let notified = self.notify.notified();
        if self.is_stopped() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = notified => {}
        }
    }
}

struct Context<'a> {
    client: &'a RelayClient,
    key: &'a ContributorKey,
    gpu: &'a GpuThread,
    options: &'a RunOptions,
    stop: &'a StopSignal,
    on_event: &'a dyn Fn(Event),
    kernels: RefCell<HashMap<ContentHash, Arc<KernelSource>>>,
    blobs: RefCell<BlobCache<Arc<Vec<u8>>>>,
    totals: RefCell<Totals>,
    /// Units leased or done, so `max_units` is never overshot by lanes running in parallel.
    claimed: Cell<u64>,
}

/// Runs until `stop` is signalled or `options.max_units` units are verified.
pub async fn run(
    client: &RelayClient,
    key: &ContributorKey,
    gpu: &GpuThread,
    options: &RunOptions,
    stop: &StopSignal,
    on_event: &dyn Fn(Event),
) -> Totals {
    let ctx = Context {
        client,
        key,
        gpu,
        options,
        stop,
        on_event,
        kernels: RefCell::new(HashMap::new()),
        blobs: RefCell::new(BlobCache::new(BLOB_CACHE_BYTES)),
        totals: RefCell::new(Totals::default()),
        claimed: Cell::new(0),
    };
    let lanes = (0..options.in_flight.max(1)).map(|_| lane(&ctx));
    futures_util::future::join_all(lanes).await;
    ctx.totals.into_inner()
}

async fn lane(ctx: &Context<'_>) {
    let mut failures = 0u32;
    loop {
        if ctx.stop.is_stopped() {
            return;
        }
        if let Some(max) = ctx.options.max_units {
            if ctx.claimed.get() >= max {
                return;
            }
        }
        ctx.claimed.set(ctx.claimed.get() + 1);
        let outcome = one_unit(ctx).await;
        match outcome {
            Ok(Some(receipt)) => {
                failures = 0;
                let mut totals = ctx.totals.borrow_mut();
                totals.units += 1;
                totals.flop += receipt.flop;
                totals.credited += receipt.credited;
                totals.balance = receipt.balance;
                (ctx.on_event)(Event::Verified {
                    receipt: &receipt,
                    totals: &totals,
                });
            }
            Ok(None) => {
                ctx.claimed.set(ctx.claimed.get() - 1);
                (ctx.on_event)(Event::Idle);
                ctx.stop.sleep(ctx.options.idle_wait).await;
            }
            Err(e) => {
                ctx.claimed.set(ctx.claimed.get() - 1);
                failures += 1;
                ctx.totals.borrow_mut().errors += 1;
                let retry_in =
                    (Duration::from_secs(1) * 2u32.pow(failures.min(6) - 1)).min(MAX_BACKOFF);
                (ctx.on_event)(Event::Error {
                    message: e.to_string(),
                    retry_in,
                });
                ctx.stop.sleep(retry_in).await;
            }
        }
    }
}

/// One unit end to end; `None` when the relay has no work.
async fn one_unit(ctx: &Context<'_>) -> Result<Option<ResultReceipt>, UnitError> {
    let Some(lease) = protocol::lease(
        ctx.client,
        ctx.key,
        Some(&ctx.gpu.adapter().class()),
        unix_ms(),
    )
    .await?
    else {
        return Ok(None);
    };
    let computed = compute(ctx, &lease).await;
    let output = match computed {
        Ok(output) => output,
        Err(e) => {
            // Give the unit back at once rather than let it wait for its deadline, saying
            // whether the GPU failed on it (the relay charges that to the unit's budget).
            let reason = match e {
                UnitError::Gpu(_) => ReleaseReason::GpuFailed,
                UnitError::Protocol(_) => ReleaseReason::FetchFailed,
            };
            let _ = protocol::release(ctx.client, ctx.key, &lease, reason).await;
            return Err(e);
        }
    };
    let submission = protocol::submission_of_bytes(ctx.key, &lease, &output);
    Ok(Some(protocol::submit(ctx.client, &submission).await?))
}

/// The unit's output bytes: a matmul or a custom kernel's dispatch, run on the GPU thread.
async fn compute(ctx: &Context<'_>, lease: &Lease) -> Result<Vec<u8>, UnitError> {
    let (work, blobs) = protocol::work::<ClientError>(lease)?;
    let kernel = kernel(ctx, lease).await?;
    let mut inputs = Vec::with_capacity(blobs.len());
    for blob in blobs {
        inputs.push(input(ctx, blob).await?);
    }
    Ok(ctx.gpu.run_work(kernel, work, inputs).await?)
}

async fn kernel(ctx: &Context<'_>, lease: &Lease) -> Result<Arc<KernelSource>, UnitError> {
    let cached = ctx.kernels.borrow().get(&lease.kernel.hash).cloned();
    if let Some(k) = cached {
        return Ok(k);
    }
    let k = Arc::new(protocol::fetch_kernel(ctx.client, &lease.kernel).await?);
    let mut kernels = ctx.kernels.borrow_mut();
    // Bounded like the GPU's pipelines: every custom-kernel job brings a new kernel.
    if kernels.len() >= glowworm::gpu::MAX_PIPELINES {
        kernels.clear();
    }
    kernels.insert(k.hash, k.clone());
    Ok(k)
}

/// An input blob's bytes, from the cache or the relay.
async fn input(ctx: &Context<'_>, blob: &BlobRef) -> Result<Arc<Vec<u8>>, UnitError> {
    ctx.totals.borrow_mut().bytes_used += blob.bytes;
    let cached = ctx.blobs.borrow().get(&blob.hash);
    if let Some(v) = cached {
        return Ok(v);
    }
    let bytes = Arc::new(protocol::fetch_blob(ctx.client, blob).await?);
    ctx.totals.borrow_mut().bytes_downloaded += bytes.len() as u64;
    ctx.blobs
        .borrow_mut()
        .insert(blob.hash, bytes.clone(), bytes.len());
    Ok(bytes)
}

/// The system clock in Unix milliseconds, which lease requests are signed by (the key keeps
/// its lanes' requests in order: [`glowworm::signing::ContributorKey::lease_time`]).
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
