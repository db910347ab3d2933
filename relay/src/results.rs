//! Result submissions: checked, verified with Freivalds' check, then credited, in that order.
//!
//! [`submit`] refuses a submission at the first check it fails, each with its own code: the key,
//! the lease, the unit, the holder, the output, the signature, whether the lease is still open,
//! and finally the product itself. The expensive check runs outside the database lock. Only then
//! does one transaction (which re-checks that the lease is still open, so two racing copies of a
//! result cannot both be credited) store the output, mark lease and unit, and credit the ledger:
//! the contributor's own account, or the address it linked ([`links::account_of`]).

use crate::blobs;
use crate::contributors::{self, canonical_key};
use crate::error::ApiError;
use crate::jobs;
use crate::leasing::{self, LeaseRow};
use crate::ledger;
use crate::links;
use crate::metrics::{self, Stage};
use crate::random;
use crate::state::AppState;
use crate::units::{self, Unit};
use axum::http::StatusCode;
use glowworm::encoding::{bytes_to_f32s, from_base64};
use glowworm::freivalds;
use glowworm::hash::ContentHash;
use glowworm::signing::{SignatureError, verify_result_with_key};
use glowworm::wire::{MatmulShape, ResultReceipt, ResultSubmission};
use rusqlite::{Connection, params};
use std::sync::Arc;

/// Checks, verifies and credits one result.
pub async fn submit(
    state: &AppState,
    submission: ResultSubmission,
) -> Result<ResultReceipt, ApiError> {
    let public_key = canonical_key(&submission.public_key)?;
    let now = state.now_ms();

    let issued = match state.leases.get(&submission.lease_id) {
        Some(issued) => issued,
        None => {
            let lease_id = submission.lease_id.clone();
            state
                .db
                .read(move |conn| {
                    let _span = metrics::span(Stage::SubmitLookup);
                    let lease = leasing::get(conn, &lease_id)?
                        .ok_or_else(|| leasing::unknown_lease(&lease_id))?;
                    let unit = units::get(conn, lease.unit_id)?.ok_or_else(|| {
                        ApiError::Internal(format!("lease {lease_id} has no unit"))
                    })?;
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
    lease.require_open(now)?;

    let verified = verify(state, unit, &output).await?;
    // Whatever happens next, the lease is closed or (on a failure of the relay's own) will be
    // read from the database again.
    state.leases.forget(&lease.lease_id);
    match verified {
        Ok(()) => {
            state
                .db
                .batch_refusing_first(move |conn| {
                    let (lease, unit) = (&issued.0, &issued.1);
                    record_verified(conn, lease, unit, &public_key, &output, now)
                })
                .await
        }
        Err(failure) => {
            tracing::warn!(
                "result for unit {} from {public_key} rejected: {failure}",
                unit.id
            );
            let output_hash = ContentHash::of(&output).to_string();
            state
                .db
                .batch(move |conn| record_rejected(conn, &issued.0, &public_key, &output_hash, now))
                .await?;
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "verification_failed",
                format!("the output is not the product of the unit's inputs: {failure}"),
            ))
        }
    }
}

/// The output bytes, if they are base64 of exactly the unit's output size.
fn decode_output(text: &str, unit: &Unit) -> Result<Vec<u8>, ApiError> {
    let output = from_base64(text)
        .map_err(|e| ApiError::bad_request("bad_output", format!("output: {e}")))?;
    let expected = unit.shape.output_bytes();
    if output.len() as u64 != expected {
        return Err(ApiError::bad_request(
            "bad_output",
            format!(
                "output has {} bytes; unit {} needs {expected} ({} x {} f32)",
                output.len(),
                unit.id,
                unit.shape.m,
                unit.shape.n
            ),
        ));
    }
    Ok(output)
}

/// The check of [`glowworm::signing::verify_result`] (strict ed25519 over
/// [`result_message`]), with the public key decoded once per contributor
/// ([`contributors::verifying_key`]) rather than once per result.
fn check_signature(
    submission: &ResultSubmission,
    public_key: &str,
    unit: &Unit,
    output: &[u8],
) -> Result<(), ApiError> {
    let _span = metrics::span(Stage::Signature);
    let key = contributors::verifying_key(public_key)?;
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

/// Freivalds' check of the output against the unit's inputs (from the blob cache, else the
/// database), with a fresh secret seed, outside the database writer. The outer error is the
/// relay's own failure; the inner one is the output's.
async fn verify(
    state: &AppState,
    unit: &Unit,
    output: &[u8],
) -> Result<Result<(), freivalds::FreivaldsError>, ApiError> {
    let input = |hash: ContentHash| async move {
        state
            .db
            .blob(hash)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("blob {hash} is missing")))
    };
    let (a, b) = (input(unit.a_hash).await?, input(unit.b_hash).await?);
    let seed = random::bytes::<32>()?;
    let shape = unit.shape;
    let (m, n, k) = (shape.m as u64, shape.n as u64, shape.k as u64);
    if k * (m + n) + m * n <= INLINE_CHECK_WORK {
        return freivalds_check(&a, &b, output, shape, seed);
    }
    let c = output.to_vec();
    tokio::task::spawn_blocking(move || freivalds_check(&a, &b, &c, shape, seed))
        .await
        .map_err(|e| ApiError::Internal(format!("verification task failed: {e}")))?
}

fn freivalds_check(
    a: &[u8],
    b: &[u8],
    c: &[u8],
    shape: MatmulShape,
    seed: [u8; 32],
) -> Result<Result<(), freivalds::FreivaldsError>, ApiError> {
    let _span = metrics::span(Stage::Freivalds);
    let decode = |bytes: &[u8]| {
        bytes_to_f32s(bytes).map_err(|e| ApiError::Internal(format!("stored input: {e}")))
    };
    let (a, b) = (decode(a)?, decode(b)?);
    let c = bytes_to_f32s(c).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(freivalds::check(&a, &b, &c, shape, seed))
}

/// Re-reads the lease inside the final transaction: another copy of the same result may have
/// been accepted, or the lease ended, since the first look.
fn reread_open_lease(conn: &Connection, lease_id: &str, now_ms: i64) -> Result<(), ApiError> {
    leasing::get(conn, lease_id)?
        .ok_or_else(|| leasing::unknown_lease(lease_id))?
        .require_open(now_ms)
}

fn insert_result(
    conn: &Connection,
    lease: &LeaseRow,
    public_key: &str,
    output_hash: &str,
    verified: bool,
    now_ms: i64,
) -> Result<i64, ApiError> {
    conn.prepare_cached(
        "INSERT INTO results (unit_id, lease_id, public_key, output_hash, verified, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        lease.unit_id,
        lease.lease_id,
        public_key,
        output_hash,
        verified,
        now_ms
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Turns down a result that failed verification: the lease is rejected and the unit goes back
/// to the queue (or fails), nothing is credited. Run it inside a transaction
/// ([`crate::db::Db::batch`] does).
fn record_rejected(
    conn: &Connection,
    lease: &LeaseRow,
    public_key: &str,
    output_hash: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    let _span = metrics::span(Stage::RecordTx);
    reread_open_lease(conn, &lease.lease_id, now_ms)?;
    insert_result(conn, lease, public_key, output_hash, false, now_ms)?;
    conn.prepare_cached("UPDATE leases SET state = 'rejected' WHERE lease_id = ?1")?
        .execute([&lease.lease_id])?;
    units::requeue_or_fail(conn, lease.unit_id)?;
    contributors::touch(conn, public_key, now_ms)?;
    Ok(())
}

/// Accepts a verified result: stores it, closes the lease, marks the unit verified and credits
/// the ledger. Run it inside a transaction, so that all of it happens or none
/// ([`crate::db::Db::batch_refusing_first`] does: its refusals come before any write).
fn record_verified(
    conn: &Connection,
    lease: &LeaseRow,
    unit: &Unit,
    public_key: &str,
    output: &[u8],
    now_ms: i64,
) -> Result<ResultReceipt, ApiError> {
    let flop = unit.shape.flop();
    let credited = i64::try_from(flop)
        .map_err(|_| ApiError::Internal(format!("unit {} is too large to credit", unit.id)))?;

    let _span = metrics::span(Stage::RecordTx);
    reread_open_lease(conn, &lease.lease_id, now_ms)?;
    let output_hash = blobs::store(conn, output)?.to_string();
    let result_id = insert_result(conn, lease, public_key, &output_hash, true, now_ms)?;
    conn.prepare_cached("UPDATE leases SET state = 'submitted' WHERE lease_id = ?1")?
        .execute([&lease.lease_id])?;
    conn.prepare_cached("UPDATE units SET state = 'verified', result_hash = ?2 WHERE id = ?1")?
        .execute(params![unit.id, output_hash])?;
    let account = links::account_of(conn, public_key)?;
    ledger::credit_verified_unit(conn, &account, credited, unit.id, result_id, now_ms)?;
    crate::partners::credit_share(conn, result_id, credited, now_ms)?;
    contributors::touch(conn, public_key, now_ms)?;
    jobs::complete_if_done(conn, unit.job_id)?;
    let balance = ledger::balance(conn, &account)?;

    Ok(ResultReceipt {
        unit_id: unit.id,
        status: "verified".into(),
        credited,
        balance,
        flop,
    })
}
