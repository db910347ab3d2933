//! Result submissions: checked, verified, then settled, in that order and never back.
//!
//! [`check`] refuses a submission at the first check it fails, each with its own code: the key,
//! the lease, the unit, the holder, the output, the signature, whether the lease is still open.
//! Then it chooses the verifier: Freivalds' check of the product for a matmul unit (run outside
//! the database writer), or, for a replicated unit, a comparison with the other replicas
//! ([`replication::decide`]). Only then does one transaction (which re-checks that the lease is
//! still open, so two racing copies of a result cannot both be credited) store the result, close
//! the lease, and hand the verdict to [`settlement`], which credits the contributor's own account
//! or the address it linked ([`links::account_of`]).

use crate::accounts::contributors;
use crate::accounts::ledger;
use crate::accounts::links;
use crate::accounts::reputation;
use crate::config::Config;
use crate::error::ApiError;
use crate::ids::{self, canonical_key};
use crate::metrics::{self, Stage};
use crate::random;
use crate::store::Db;
use crate::store::blobs;
use crate::work::leasing::{self, LeaseRow, LeaseState, RecentLeases};
use crate::work::replication;
use crate::work::result_rows::{self, ResultState};
use crate::work::settlement::{self, Verdict};
use crate::work::units::{self, Unit, UnitState, Verify, Work};
use axum::body::Bytes;
use axum::http::StatusCode;
use glowworm_protocol::compare::Tolerance;
use glowworm_protocol::encoding::{bytes_to_f32s, from_base64};
use glowworm_protocol::freivalds;
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::signing::{RelayKey, SignatureError, verify_result_with_key};
use glowworm_protocol::wire::{MatmulShape, ResultReceipt, ResultSubmission};
use rusqlite::Connection;
use std::sync::Arc;

/// A submission whose lease, unit, holder, output and signature checked out: what [`verify`]
/// takes. Its `public_key` is known to have signed it.
pub struct Checked {
    pub public_key: String,
    issued: Arc<(LeaseRow, Unit)>,
    output: Vec<u8>,
}

/// The checks of a submission that need no verifier, each refusal with its own code: the key,
/// the lease (from the leases issued lately, or the database), the unit, the holder, the
/// output's size and the signature.
pub async fn check(
    db: &Db,
    leases: &RecentLeases,
    submission: ResultSubmission,
) -> Result<Checked, ApiError> {
    let public_key = canonical_key(&submission.public_key)?;
    let issued = match leases.get(&submission.lease_id) {
        Some(issued) => issued,
        None => {
            let lease_id = submission.lease_id.clone();
            db.read(move |conn| {
                let _span = metrics::span(Stage::SubmitLookup);
                let lease = leasing::get(conn, &lease_id)?
                    .ok_or_else(|| leasing::unknown_lease(&lease_id))?;
                let unit = units::get(conn, lease.unit_id)?
                    .ok_or_else(|| ApiError::Internal(format!("lease {lease_id} has no unit")))?;
                Ok(Arc::new((lease, unit)))
            })
            .await?
        }
    };
    let (lease, unit) = (&issued.0, &issued.1);

    if submission.unit_id != unit.id {
        return Err(ApiError::bad_request(
            "unit_mismatch",
            format!(
                "lease {} is for unit {}, not unit {}",
                lease.lease_id, unit.id, submission.unit_id
            ),
        ));
    }
    lease.require_holder(&public_key)?;
    let output = decode_output(&submission.output, unit)?;
    check_signature(&submission, &public_key, unit, &output)?;
    Ok(Checked {
        public_key,
        issued,
        output,
    })
}

/// Verifies a checked result at `now` (Freivalds' check, or a comparison with the other
/// replicas) and settles it in one transaction; returns the receipt. A lease that closed
/// meanwhile is refused first.
pub async fn verify(
    db: &Db,
    config: &Arc<Config>,
    relay_key: &RelayKey,
    leases: &RecentLeases,
    checked: Checked,
    now: i64,
) -> Result<ResultReceipt, ApiError> {
    let Checked {
        public_key,
        issued,
        output,
    } = checked;
    let (lease, unit) = (&issued.0, &issued.1);
    lease.require_open(now)?;

    // Replicas, and canaries (leases of a unit already verified by replication, judged against
    // its answer by the same path).
    if unit.verify == Verify::Replicate {
        let tolerance = replica_tolerance(db, unit).await?;
        leases.forget(&lease.lease_id);
        let config = config.clone();
        let (verdict, recorded) = db
            .batch(move |conn| {
                let (lease, unit) = (&issued.0, &issued.1);
                record_replica(
                    conn,
                    &config,
                    lease,
                    unit,
                    &public_key,
                    &output,
                    &tolerance,
                    now,
                )
            })
            .await?;
        return match verdict {
            Verdict::Invalid(why) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "verification_failed",
                why,
            )),
            Verdict::Valid(_) | Verdict::Pending => Ok(recorded.signed(relay_key, now)),
        };
    }

    let verified = match &unit.work {
        Work::Matmul {
            shape,
            a_hash,
            b_hash,
        } => {
            let (a, b) = (input(db, *a_hash).await?, input(db, *b_hash).await?);
            freivalds_check(*shape, a, b, &output).await?
        }
        Work::Kernel(_) => {
            return Err(ApiError::Internal(format!(
                "kernel unit {} is not replicated",
                unit.id
            )));
        }
    };
    // Whatever happens next, the lease is closed or (on a failure of the relay's own) will be
    // read from the database again.
    leases.forget(&lease.lease_id);
    let config = config.clone();
    match verified {
        Ok(()) => {
            let recorded = db
                .batch_refusing_first(move |conn| {
                    let (lease, unit) = (&issued.0, &issued.1);
                    record_verified(conn, &config, lease, unit, &public_key, &output, now)
                })
                .await?;
            Ok(recorded.signed(relay_key, now))
        }
        Err(failure) => {
            tracing::warn!(
                "result for unit {} from {public_key} rejected: {failure}",
                unit.id
            );
            let output_hash = ContentHash::of(&output).to_string();
            db.batch(move |conn| {
                record_rejected(conn, &config, &issued.0, &public_key, &output_hash, now)
            })
            .await?;
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "verification_failed",
                format!("the output is not the product of the unit's inputs: {failure}"),
            ))
        }
    }
}

/// A unit input blob, from the blob cache or the database.
async fn input(db: &Db, hash: ContentHash) -> Result<Bytes, ApiError> {
    db.blob(hash)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("blob {hash} is missing")))
}

fn decode(bytes: &[u8]) -> Result<Vec<f32>, ApiError> {
    bytes_to_f32s(bytes).map_err(|e| ApiError::Internal(format!("stored input: {e}")))
}

/// How far two honest outputs of `unit` may differ, for comparing replicas and known answers:
/// for a matmul tile the rounding bound of its inputs, for a kernel what its requester set.
async fn replica_tolerance(db: &Db, unit: &Unit) -> Result<Tolerance, ApiError> {
    match &unit.work {
        Work::Matmul {
            shape,
            a_hash,
            b_hash,
        } => {
            let (a, b) = (input(db, *a_hash).await?, input(db, *b_hash).await?);
            Ok(matmul::replica_tolerance(
                &decode(&a)?,
                &decode(&b)?,
                *shape,
            ))
        }
        Work::Kernel(kernel_unit) => Ok(kernel_unit.tolerance()),
    }
}

/// The output bytes, if they are base64 of exactly the unit's output size.
fn decode_output(text: &str, unit: &Unit) -> Result<Vec<u8>, ApiError> {
    let output = from_base64(text)
        .map_err(|e| ApiError::bad_request("bad_output", format!("output: {e}")))?;
    let expected = unit.work.output_bytes();
    if output.len() as u64 != expected {
        let what = match &unit.work {
            Work::Matmul { shape, .. } => format!(" ({} x {} f32)", shape.m, shape.n),
            Work::Kernel(_) => String::new(),
        };
        return Err(ApiError::bad_request(
            "bad_output",
            format!(
                "output has {} bytes; unit {} needs {expected}{what}",
                output.len(),
                unit.id,
            ),
        ));
    }
    Ok(output)
}

/// The check of [`glowworm_protocol::signing::verify_result`] (strict ed25519 over
/// [`result_message`]), with the public key decoded once per contributor
/// ([`ids::verifying_key`]) rather than once per result.
fn check_signature(
    submission: &ResultSubmission,
    public_key: &str,
    unit: &Unit,
    output: &[u8],
) -> Result<(), ApiError> {
    let _span = metrics::span(Stage::Signature);
    let key = ids::verifying_key(public_key)?;
    verify_result_with_key(
        &key,
        &submission.signature,
        submission.unit_id,
        &submission.lease_id,
        &unit.kernel_hash,
        output,
    )
    .map_err(|e| match e {
        SignatureError::MalformedSignature => {
            ApiError::bad_request("bad_signature_format", e.to_string())
        }
        _ => ApiError::new(StatusCode::FORBIDDEN, "bad_signature", e.to_string()),
    })
}

/// Units up to this much Freivalds work (k(m + n) + mn multiply-adds, some tens of
/// microseconds) are checked on the request's own thread; larger ones on a blocking thread.
const INLINE_CHECK_WORK: u64 = 1 << 16;

/// Freivalds' check of the output against the unit's inputs, with a fresh secret seed,
/// outside the database writer. The outer error is the relay's own failure; the inner one is
/// the output's.
async fn freivalds_check(
    shape: MatmulShape,
    a: Bytes,
    b: Bytes,
    output: &[u8],
) -> Result<Result<(), String>, ApiError> {
    let seed = random::bytes::<32>()?;
    let (m, n, k) = (shape.m as u64, shape.n as u64, shape.k as u64);
    if k * (m + n) + m * n <= INLINE_CHECK_WORK {
        return run_freivalds(&a, &b, output, shape, seed);
    }
    let c = output.to_vec();
    tokio::task::spawn_blocking(move || run_freivalds(&a, &b, &c, shape, seed))
        .await
        .map_err(|e| ApiError::Internal(format!("verification task failed: {e}")))?
}

fn run_freivalds(
    a: &[u8],
    b: &[u8],
    c: &[u8],
    shape: MatmulShape,
    seed: [u8; 32],
) -> Result<Result<(), String>, ApiError> {
    let _span = metrics::span(Stage::Freivalds);
    let (a, b) = (decode(a)?, decode(b)?);
    let c = bytes_to_f32s(c).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(freivalds::check(&a, &b, &c, shape, seed).map_err(|e| e.to_string()))
}

/// Re-reads the lease inside the final transaction: another copy of the same result may have
/// been accepted, or the lease ended, since the first look.
fn reread_open_lease(conn: &Connection, lease_id: &str, now_ms: i64) -> Result<(), ApiError> {
    leasing::get(conn, lease_id)?
        .ok_or_else(|| leasing::unknown_lease(lease_id))?
        .require_open(now_ms)
}

/// 410 `job_cancelled` when the unit's job was cancelled after the lease was issued: nothing
/// more is credited for it.
fn refuse_cancelled(conn: &Connection, unit_id: i64) -> Result<(), ApiError> {
    if units::state_of(conn, unit_id)? == UnitState::Cancelled {
        return Err(ApiError::new(
            StatusCode::GONE,
            "job_cancelled",
            format!("unit {unit_id}'s job was cancelled by its requester; nothing is credited"),
        ));
    }
    Ok(())
}

/// Turns down a result that failed verification: it is stored invalid, the lease is rejected,
/// and [`settlement::checked_invalid`] requeues the unit and strikes the contributor. Nothing
/// is credited. Run it inside a transaction ([`crate::store::Db::batch`] does).
fn record_rejected(
    conn: &Connection,
    config: &Config,
    lease: &LeaseRow,
    public_key: &str,
    output_hash: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    let _span = metrics::span(Stage::RecordTx);
    reread_open_lease(conn, &lease.lease_id, now_ms)?;
    let result_id = result_rows::insert(
        conn,
        lease.unit_id,
        &lease.lease_id,
        public_key,
        output_hash,
        ResultState::Invalid,
        now_ms,
    )?;
    leasing::close(conn, &lease.lease_id, LeaseState::Rejected)?;
    contributors::seen(conn, public_key, now_ms)?;
    settlement::checked_invalid(
        conn,
        config,
        lease.unit_id,
        result_id,
        public_key,
        lease.proven,
        now_ms,
    )
}

/// An accepted result as [`store_submitted`] stored it.
struct Stored {
    /// Where its credits go: the key's own account or the address it linked.
    account: String,
    output_hash: ContentHash,
    result_id: i64,
}

/// What every accepted result does first: refuses a quarantined contributor and a lease that
/// is no longer open (both before any write), then stores the output blob and the result in
/// `state` ('valid' or 'pending') and marks the lease submitted.
fn store_submitted(
    conn: &Connection,
    lease: &LeaseRow,
    public_key: &str,
    output: &[u8],
    state: ResultState,
    now_ms: i64,
) -> Result<Stored, ApiError> {
    let account = links::account_of(conn, public_key)?;
    reputation::refuse_quarantined(conn, public_key, &account)?;
    reread_open_lease(conn, &lease.lease_id, now_ms)?;
    refuse_cancelled(conn, lease.unit_id)?;
    let output_hash = blobs::store(conn, output)?;
    let result_id = result_rows::insert(
        conn,
        lease.unit_id,
        &lease.lease_id,
        public_key,
        &output_hash.to_string(),
        state,
        now_ms,
    )?;
    leasing::close(conn, &lease.lease_id, LeaseState::Submitted)?;
    Ok(Stored {
        account,
        output_hash,
        result_id,
    })
}

/// Stores a replica of a replicated unit, pending, compares it with the others
/// ([`replication::decide`]) and settles what that decided ([`settlement::replicas`]). Run it
/// inside a transaction ([`crate::store::Db::batch`] does).
#[allow(clippy::too_many_arguments)]
fn record_replica(
    conn: &Connection,
    config: &Config,
    lease: &LeaseRow,
    unit: &Unit,
    public_key: &str,
    output: &[u8],
    tolerance: &Tolerance,
    now_ms: i64,
) -> Result<(Verdict, Recorded), ApiError> {
    let _span = metrics::span(Stage::RecordTx);
    let stored = store_submitted(
        conn,
        lease,
        public_key,
        output,
        ResultState::Pending,
        now_ms,
    )?;
    let (account, result_id) = (stored.account, stored.result_id);
    contributors::seen(conn, public_key, now_ms)?;
    let (replicas, decision) = replication::decide(conn, config, unit.id, tolerance)?;
    let verdict = settlement::replicas(
        conn, config, unit.id, &replicas, decision, result_id, now_ms,
    )?;
    // The lease's time counts towards a kernel unit's GPU budget (after the verdict: a unit
    // this result completed is not failed by it).
    leasing::charge_gpu_time(conn, config, &lease.lease_id, now_ms, false)?;
    let (verified, credited) = match verdict {
        Verdict::Valid(credited) => (true, credited),
        _ => (false, 0),
    };
    let receipt = receipt(
        conn, unit, result_id, public_key, &account, verified, credited,
    )?;
    Ok((verdict, receipt))
}

/// A stored result's receipt, with what the relay signs for its credit once the transaction
/// has committed ([`Recorded::signed`]: off the writer thread).
struct Recorded {
    receipt: ResultReceipt,
    result_id: i64,
    account: String,
}

impl Recorded {
    /// The receipt, with the relay's signed statement of the credit when one was made.
    fn signed(self, relay_key: &RelayKey, now: i64) -> ResultReceipt {
        let Recorded {
            mut receipt,
            result_id,
            account,
        } = self;
        if receipt.credited > 0 {
            receipt.receipt = Some(relay_key.sign_credit(
                result_id,
                receipt.unit_id,
                &account,
                receipt.credited,
                now,
            ));
        }
        receipt
    }
}

/// The receipt for result `result_id` of `unit`: whether it is `verified` now (or pending), what
/// `account` was `credited`, and its balance and the key's credits still pending after it.
fn receipt(
    conn: &Connection,
    unit: &Unit,
    result_id: i64,
    public_key: &str,
    account: &str,
    verified: bool,
    credited: i64,
) -> Result<Recorded, ApiError> {
    let pending = contributors::pending_credits(conn, public_key)?;
    Ok(Recorded {
        receipt: ResultReceipt {
            unit_id: unit.id,
            status: if verified { "verified" } else { "pending" }.into(),
            credited,
            pending,
            balance: ledger::balance(conn, account)?,
            flop: unit.flop,
            receipt: None,
        },
        result_id,
        account: account.to_string(),
    })
}

/// Accepts a verified result: stores it, closes the lease, and has [`settlement::checked_valid`]
/// mark the unit verified, credit the ledger and count it for the contributor. Run it inside a
/// transaction, so that all of it happens or none ([`crate::store::Db::batch_refusing_first`]
/// does: its refusals come before any write).
fn record_verified(
    conn: &Connection,
    config: &Config,
    lease: &LeaseRow,
    unit: &Unit,
    public_key: &str,
    output: &[u8],
    now_ms: i64,
) -> Result<Recorded, ApiError> {
    let _span = metrics::span(Stage::RecordTx);
    let stored = store_submitted(conn, lease, public_key, output, ResultState::Valid, now_ms)?;
    let credited = settlement::checked_valid(
        conn,
        config,
        unit.id,
        stored.result_id,
        public_key,
        &stored.account,
        &stored.output_hash,
        now_ms,
    )?;
    receipt(
        conn,
        unit,
        stored.result_id,
        public_key,
        &stored.account,
        true,
        credited,
    )
}
