//! The work loop: several units in flight on one thread, each going lease -> fetch (cached) ->
//! GPU -> sign -> submit, until stopped or a unit budget is reached. Matmul units and custom
//! kernels' units take the same path: the kernel and inputs are fetched and cached as bytes by
//! content hash ([`Fetcher`], which also says what to run), and the output's bytes are signed.

use crate::client::RelayClient;
use crate::gpu_thread::GpuThread;
use glowworm_protocol::protocol::{self, Fetcher, ProtocolError, RelayError};
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{ReleaseReason, ResultReceipt};
use std::cell::{Cell, RefCell};
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
    Protocol(#[from] ProtocolError<RelayError>),
    #[error(transparent)]
    Gpu(#[from] glowworm_contributor::gpu::GpuError),
}

impl UnitError {
    /// The relay's side of the failure (no reply, or a refusal with its code), if it was one.
    pub fn relay_error(&self) -> Option<&RelayError> {
        match self {
            UnitError::Protocol(ProtocolError::Transport(e)) => Some(e),
            _ => None,
        }
    }
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
        /// The relay's error when the relay failed or refused (its code says why).
        relay: Option<&'a RelayError>,
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
    fetcher: Fetcher,
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
        fetcher: Fetcher::new(glowworm_contributor::gpu::MAX_PIPELINES, BLOB_CACHE_BYTES),
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
                    relay: e.relay_error(),
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
    // A lease whose kernel or inputs cannot be fetched is released by the fetcher.
    let fetched = ctx.fetcher.fetch(ctx.client, ctx.key, &lease).await?;
    {
        let mut totals = ctx.totals.borrow_mut();
        totals.bytes_downloaded += fetched.input_bytes_downloaded;
        totals.bytes_used += fetched.input_bytes_used;
    }
    let computed = ctx
        .gpu
        .run_work(fetched.kernel, fetched.work, fetched.inputs)
        .await;
    let output = match computed {
        Ok(output) => output,
        Err(e) => {
            // Give the unit back at once rather than let it wait for its deadline: the GPU
            // failed on it (the relay charges that to the unit's budget).
            let _ = protocol::release(ctx.client, ctx.key, &lease, ReleaseReason::GpuFailed).await;
            return Err(e.into());
        }
    };
    let submission = protocol::submission_of_bytes(ctx.key, &lease, &output);
    Ok(Some(
        submit_until_deadline(ctx, &submission, lease.deadline_unix_ms).await?,
    ))
}

/// Submits a computed result, trying again while the failure may pass (the relay unreachable,
/// overloaded, rate limiting or answering 5xx) and the lease has time left, so that work done
/// is not thrown away on a busy relay. Other refusals (a wrong result, an expired lease) are
/// final. Stopping does not cut it short: units in flight are submitted.
async fn submit_until_deadline(
    ctx: &Context<'_>,
    submission: &glowworm_protocol::wire::ResultSubmission,
    deadline_ms: i64,
) -> Result<ResultReceipt, UnitError> {
    let mut wait = SUBMIT_RETRY_FIRST;
    loop {
        match protocol::submit(ctx.client, submission).await {
            Ok(receipt) => return Ok(receipt),
            Err(ProtocolError::Transport(e))
                if passing(&e) && unix_ms() + (wait.as_millis() as i64) < deadline_ms =>
            {
                tracing::debug!(
                    "submitting unit {} again in {wait:?}: {e}",
                    submission.unit_id
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The first wait before a result is submitted again.
const SUBMIT_RETRY_FIRST: Duration = Duration::from_millis(250);

/// Whether a failed exchange may succeed if tried again: no reply at all, 429, or a 5xx.
fn passing(error: &RelayError) -> bool {
    error.is_transport() || matches!(error.status(), Some(429) | Some(500..=599))
}

/// The system clock in Unix milliseconds, which lease requests are signed by (the key keeps
/// its lanes' requests in order: [`glowworm_protocol::signing::ContributorKey::lease_time`]).
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
