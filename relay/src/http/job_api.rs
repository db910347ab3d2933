//! The requester endpoints: submit a job, follow it, cancel it, download its output.
//!
//! `POST /v1/jobs` is a multipart/form-data upload: a `job` part with the [`JobSpec`] (JSON)
//! and one part per input (`a` and `b` for matmul, the declared input names for a kernel).
//! Everything is checked before anything is stored: the parts, the shapes and dtypes, a matrix's
//! values (finite, and a product that cannot overflow f32: [`MAX_PRODUCT_BOUND`]), the WGSL
//! (with naga, [`glowworm_protocol::kernels::custom::validate`]) and the sizes. A kernel input sent as a
//! .npy file (it starts with `\x93NUMPY`) is read as one: float32, int32 or uint32 in C order,
//! and only its data is the input. Then the inputs are cut
//! into units and written to the blob store, and one transaction checks the requester's quota
//! and inserts the job.

use crate::accounts::ledger;
use crate::accounts::payout_chain::requester_ref;
use crate::accounts::requesters::{Authenticated, Requester};
use crate::error::ApiError;
use crate::http::extract;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::state::AppState;
use crate::work::jobs::{self, KernelJob, MatmulJob, Owner, Split};
use axum::Json;
use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use glowworm_protocol::kernels::custom::{self, KernelError, Validated};
use glowworm_protocol::npy;
use glowworm_protocol::wire::{
    Budget, JobList, JobSpec, JobStatus, KernelSpec, MatmulShape, MatmulSpec,
};
use serde::Deserialize;
use std::collections::HashMap;

/// Largest side of a matrix in a matmul job.
pub const MAX_MATRIX_SIDE: u32 = 16_384;
/// Largest `job` part (the JSON spec with its WGSL), in bytes.
const MAX_SPEC_BYTES: usize = 1 << 20;
/// The media type of a .npy file.
pub const NPY: &str = "application/x-npy";

/// `POST /v1/jobs`: 201 with the new job's status.
pub async fn create_job(
    State(state): State<AppState>,
    Authenticated(requester): Authenticated,
    headers: HeaderMap,
    upload: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let content_length = extract::content_length(&headers);
    let upload = upload.map_err(|rejection| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_multipart",
            format!(
                "POST /v1/jobs takes multipart/form-data: a 'job' part (JSON) and one part per \
                 input ({})",
                rejection.body_text()
            ),
        )
    })?;
    let (spec, mut parts) =
        read_upload(upload, state.config.max_upload_bytes, content_length).await?;
    let config = state.config.clone();
    let store = state.db.blob_store().clone();
    // Cutting the inputs up and writing them is CPU and disk work: off the async threads.
    let job = tokio::task::spawn_blocking(move || -> Result<NewJob, ApiError> {
        match spec {
            JobSpec::Matmul(spec) => {
                let (a, b, shape) = matmul_inputs(&spec, &mut parts)?;
                let split = Split {
                    unit_size: config.unit_size,
                    max_attempts: config.max_attempts,
                    replicas: None,
                };
                Ok(NewJob::Matmul(MatmulJob::store(
                    &store, &a, &b, shape, split,
                )?))
            }
            JobSpec::Kernel(spec) => {
                let validated = custom::validate(&spec).map_err(invalid_kernel)?;
                let inputs = kernel_inputs(&spec, &validated, &mut parts)?;
                let job = KernelJob::store(
                    &store,
                    &spec,
                    &inputs,
                    validated.workgroup_size,
                    config.max_attempts,
                )?;
                Ok(NewJob::Kernel(job))
            }
        }
    })
    .await
    .map_err(|e| ApiError::Internal(format!("job upload task failed: {e}")))??;

    let now = state.now_ms();
    let status_config = state.config.clone();
    let status = state
        .db
        .call(move |conn| {
            let tx = conn.transaction()?;
            let queued = jobs::queued_units(&tx, requester.id)?;
            let units = job.units();
            if queued + units > requester.quota_units {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "quota_exceeded",
                    format!(
                        "this job has {units} units and your queued jobs {queued} more; your \
                         key's quota is {} units at once. Wait for jobs to finish, cancel \
                         some, or ask the relay's operator for a larger quota",
                        requester.quota_units
                    ),
                ));
            }
            let owner = Owner::Requester(requester.id);
            let job_id = match &job {
                NewJob::Matmul(job) => job.insert(&tx, &status_config, owner, now)?,
                NewJob::Kernel(job) => job.insert(&tx, &status_config, owner, now)?,
            };
            let status = jobs::status(&tx, &status_config, job_id, now)?
                .ok_or_else(|| ApiError::Internal(format!("job {job_id} vanished")))?;
            tx.commit()?;
            tracing::info!(
                "job {job_id} ({}, {units} units) queued by requester '{}'",
                status.kind,
                requester.name
            );
            Ok(status)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

/// A job cut into units, not yet inserted.
enum NewJob {
    Matmul(MatmulJob),
    Kernel(KernelJob),
}

impl NewJob {
    fn units(&self) -> u64 {
        match self {
            NewJob::Matmul(job) => job.units(),
            NewJob::Kernel(job) => job.units(),
        }
    }
}

fn invalid_kernel(error: KernelError) -> ApiError {
    ApiError::bad_request("invalid_kernel", error.to_string())
}

/// Reads every part of the upload: the spec from `job`, the others by name. At most
/// `max_bytes` in all (413 `upload_too_large`, naming the body's `content_length` when known);
/// a cut-off upload is 400 `bad_upload`.
async fn read_upload(
    mut upload: Multipart,
    max_bytes: usize,
    content_length: Option<u64>,
) -> Result<(JobSpec, HashMap<String, Vec<u8>>), ApiError> {
    let bad_upload = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(
            "bad_upload",
            format!("the upload is malformed or cut short: {e}"),
        )
    };
    let mut spec = None;
    let mut parts: HashMap<String, Vec<u8>> = HashMap::new();
    let mut total = 0usize;
    while let Some(mut field) = upload.next_field().await.map_err(bad_upload)? {
        let name = field
            .name()
            .ok_or_else(|| ApiError::bad_request("bad_upload", "every part needs a name"))?
            .to_string();
        if name == "job" && spec.is_some() || parts.contains_key(&name) {
            return Err(ApiError::bad_request(
                "bad_upload",
                format!("the upload has two parts named '{name}'"),
            ));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad_upload)? {
            total += chunk.len();
            if total > max_bytes {
                return Err(ApiError::upload_too_large(max_bytes, content_length));
            }
            bytes.extend_from_slice(&chunk);
        }
        if name == "job" {
            if bytes.len() > MAX_SPEC_BYTES {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "upload_too_large",
                    format!("the 'job' part is larger than {MAX_SPEC_BYTES} bytes"),
                ));
            }
            let parsed: JobSpec = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::bad_request("bad_job", format!("the 'job' part is not a job: {e}"))
            })?;
            spec = Some(parsed);
        } else {
            parts.insert(name, bytes);
        }
    }
    let spec = spec.ok_or_else(|| {
        ApiError::bad_request(
            "bad_job",
            "the upload has no 'job' part (JSON: {\"kind\": \"matmul\"} or a kernel spec)",
        )
    })?;
    Ok((spec, parts))
}

/// A, B and the product's shape, from .npy or raw f32 parts.
fn matmul_inputs(
    spec: &MatmulSpec,
    parts: &mut HashMap<String, Vec<u8>>,
) -> Result<(Vec<f32>, Vec<f32>, MatmulShape), ApiError> {
    let a = take_part(parts, "a")?;
    let b = take_part(parts, "b")?;
    refuse_unexpected(parts, "a matmul job has only the parts 'job', 'a' and 'b'")?;
    let (a_dims, a_data) = matrix("a", &a, spec.shape.map(|s| (s.m, s.k)))?;
    let (b_dims, b_data) = matrix("b", &b, spec.shape.map(|s| (s.k, s.n)))?;
    if a_dims.1 != b_dims.0 {
        return Err(ApiError::bad_request(
            "bad_shape",
            format!(
                "A is {}x{} and B is {}x{}: A's columns must equal B's rows",
                a_dims.0, a_dims.1, b_dims.0, b_dims.1
            ),
        ));
    }
    let shape = MatmulShape {
        m: a_dims.0,
        n: b_dims.1,
        k: a_dims.1,
    };
    if let Some(declared) = spec.shape.filter(|declared| *declared != shape) {
        return Err(ApiError::bad_request(
            "bad_shape",
            format!(
                "the spec says m={} n={} k={}, the arrays are A {}x{} and B {}x{}",
                declared.m, declared.n, declared.k, shape.m, shape.k, shape.k, shape.n
            ),
        ));
    }
    let a = finite_f32s("A", a_data, shape.k)?;
    let b = finite_f32s("B", b_data, shape.n)?;
    check_product_bound(&a, &b, shape)?;
    Ok((a, b, shape))
}

/// The largest bound on a row of the product that the relay accepts: half of `f32::MAX`.
///
/// [`check_product_bound`] computes, for each row i of A, `S_i = Σ_l |a_il| · max_j |b_lj|` in
/// f64. Every partial sum of every element of row i of C, in any summation order, is at most
/// `S_i` in exact arithmetic; computed in f32 each of the k roundings can grow it by a factor
/// `(1 + 2^-24)`, so by at most `(1 + 2^-24)^16384 < 1.001` for the largest k. Below half of
/// `f32::MAX` an honest GPU therefore stays a factor of about 2 from overflow whatever its
/// summation order, tiling or fused multiply-adds, and a non-finite output is a wrong output
/// (Freivalds' check rejects it soundly). The factor 2 rather than 1.001 costs requesters one
/// binary exponent of 128 and leaves room for kernels that accumulate differently.
pub const MAX_PRODUCT_BOUND: f64 = f32::MAX as f64 / 2.0;

/// A matrix's little-endian f32 `data` (`cols` columns) as values, refusing the first element
/// that is NaN or infinite (400 `non_finite_input`, naming `name`, the row and the column).
/// One pass over the data: the values are checked as they are decoded.
fn finite_f32s(name: &str, data: &[u8], cols: u32) -> Result<Vec<f32>, ApiError> {
    let mut values = Vec::with_capacity(data.len() / 4);
    for (index, word) in data.chunks_exact(4).enumerate() {
        let value = f32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        if !value.is_finite() {
            let cols = cols.max(1) as usize;
            return Err(ApiError::bad_request(
                "non_finite_input",
                format!(
                    "{name} has {} at row {}, column {} (counting from 0); matrix inputs must \
                     be finite f32 values: replace or drop NaN and infinities before uploading \
                     (numpy: np.isfinite({}).all() checks, np.nan_to_num replaces)",
                    describe_non_finite(value),
                    index / cols,
                    index % cols,
                    name.to_lowercase()
                ),
            ));
        }
        values.push(value);
    }
    Ok(values)
}

fn describe_non_finite(value: f32) -> &'static str {
    if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

/// Refuses a product that an honest GPU might not compute in f32 (400 `product_overflows`,
/// naming the first row of A whose bound reaches [`MAX_PRODUCT_BOUND`]). O(mk + kn).
fn check_product_bound(a: &[f32], b: &[f32], shape: MatmulShape) -> Result<(), ApiError> {
    let (n, k) = (shape.n as usize, shape.k as usize);
    let b_row_max: Vec<f64> = b
        .chunks_exact(n)
        .map(|row| f64::from(row.iter().fold(0f32, |max, v| max.max(v.abs()))))
        .collect();
    for (row, a_row) in a.chunks_exact(k).enumerate() {
        let bound: f64 = a_row
            .iter()
            .zip(&b_row_max)
            .map(|(&x, &y)| f64::from(x.abs()) * y)
            .sum();
        if bound >= MAX_PRODUCT_BOUND {
            return Err(ApiError::bad_request(
                "product_overflows",
                format!(
                    "row {row} of A times B could overflow f32: sum over l of |A[{row},l]| * \
                     max_j |B[l,j]| is {bound:.3e}, and the relay accepts products whose every \
                     row stays under f32::MAX / 2 = {MAX_PRODUCT_BOUND:.3e}. Scale A or B down \
                     (for example by a power of two, which is exact) and scale the result back"
                ),
            ));
        }
    }
    Ok(())
}

/// One matrix: its (rows, columns) and data, from a 2-D .npy or raw f32 of the `declared`
/// size. Public for the `npy` fuzz target.
pub fn matrix<'a>(
    name: &str,
    bytes: &'a [u8],
    declared: Option<(u32, u32)>,
) -> Result<((u32, u32), &'a [u8]), ApiError> {
    let (dims, data) = if npy::is_npy(bytes) {
        let array = npy::parse_f32(bytes).map_err(|e| match e {
            npy::NpyError::NotF32(_) => ApiError::bad_request("not_f32", format!("{name}: {e}")),
            _ => ApiError::bad_request("bad_npy", format!("{name}: {e}")),
        })?;
        let [rows, cols] = array.shape[..] else {
            return Err(ApiError::bad_request(
                "bad_shape",
                format!(
                    "{name} has shape {:?}; a matrix has two dimensions",
                    array.shape
                ),
            ));
        };
        let side = |d: usize| u32::try_from(d).unwrap_or(u32::MAX);
        ((side(rows), side(cols)), array.data)
    } else {
        let (rows, cols) = declared.ok_or_else(|| {
            ApiError::bad_request(
                "bad_shape",
                format!(
                    "{name} is raw data (not .npy), so the job needs \"shape\": \
                     {{\"m\", \"n\", \"k\"}}"
                ),
            )
        })?;
        let expected = 4 * rows as u64 * cols as u64;
        if bytes.len() as u64 != expected {
            return Err(ApiError::bad_request(
                "bad_shape",
                format!(
                    "{name} is {} bytes of raw f32; {rows}x{cols} needs {expected}",
                    bytes.len()
                ),
            ));
        }
        ((rows, cols), bytes)
    };
    if dims.0 == 0 || dims.1 == 0 || dims.0 > MAX_MATRIX_SIDE || dims.1 > MAX_MATRIX_SIDE {
        return Err(ApiError::bad_request(
            "bad_shape",
            format!(
                "{name} is {}x{}; each side must be 1 to {MAX_MATRIX_SIDE}",
                dims.0, dims.1
            ),
        ));
    }
    Ok((dims, data))
}

/// The bytes of each declared input, in the spec's order, checked against the limits.
fn kernel_inputs(
    spec: &KernelSpec,
    validated: &Validated,
    parts: &mut HashMap<String, Vec<u8>>,
) -> Result<Vec<Vec<u8>>, ApiError> {
    let mut inputs = Vec::with_capacity(spec.inputs.len());
    for (index, declared) in spec.inputs.iter().enumerate() {
        let mut bytes = take_part(parts, &declared.name)?;
        if npy::is_npy(&bytes) {
            let header = npy_header_len(&declared.name, &bytes)?;
            bytes.drain(..header);
        }
        let per_unit = if declared.shared {
            bytes.len() as u64
        } else {
            let units = spec.units as u64;
            if !(bytes.len() as u64).is_multiple_of(4 * units) {
                return Err(ApiError::bad_request(
                    "bad_input",
                    format!(
                        "input '{}' is {} bytes; split between {units} units it must be a \
                         multiple of {} bytes (4 per unit)",
                        declared.name,
                        bytes.len(),
                        4 * units
                    ),
                ));
            }
            bytes.len() as u64 / units
        };
        // At least what the shader reads at its binding, a whole number of words, within limits.
        validated
            .check_input(index, &declared.name, per_unit)
            .map_err(invalid_kernel)?;
        inputs.push(bytes);
    }
    refuse_unexpected(
        parts,
        "a kernel job has the part 'job' and one part per input",
    )?;
    Ok(inputs)
}

/// The length of the header of kernel input `name`, a .npy file: its array must be float32,
/// int32 or uint32 in C order (400 `unsupported_dtype` or `bad_npy`). Only the data after the
/// header is the input; the header is never given to the kernel.
fn npy_header_len(name: &str, bytes: &[u8]) -> Result<usize, ApiError> {
    match npy::parse(bytes, npy::KERNEL_DTYPES) {
        Ok(array) => Ok(bytes.len() - array.data.len()),
        Err(e @ npy::NpyError::Dtype { .. }) => Err(ApiError::bad_request(
            "unsupported_dtype",
            format!("input '{name}' is a .npy file: {e}"),
        )),
        Err(e) => Err(ApiError::bad_request(
            "bad_npy",
            format!(
                "input '{name}' starts like a .npy file (\\x93NUMPY) but is not one the relay \
                 can read: {e}"
            ),
        )),
    }
}

fn take_part(parts: &mut HashMap<String, Vec<u8>>, name: &str) -> Result<Vec<u8>, ApiError> {
    parts.remove(name).ok_or_else(|| {
        ApiError::bad_request(
            "missing_input",
            format!("the upload has no part named '{name}'"),
        )
    })
}

fn refuse_unexpected(parts: &HashMap<String, Vec<u8>>, rule: &str) -> Result<(), ApiError> {
    match parts.keys().next() {
        Some(name) => Err(ApiError::bad_request(
            "unexpected_part",
            format!("the upload has a part named '{name}'; {rule}"),
        )),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
}

/// `GET /v1/jobs`: the requester's jobs, newest first (at most `limit`, default 100).
pub async fn list_jobs(
    State(state): State<AppState>,
    Authenticated(requester): Authenticated,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let jobs = state
        .db
        .read(move |conn| jobs::list(conn, requester.id, limit))
        .await?;
    Ok(Json(JobList { jobs }))
}

/// `GET /v1/budget`: the requester's budget and the prices its jobs pay.
pub async fn get_budget(
    State(state): State<AppState>,
    Authenticated(requester): Authenticated,
) -> Result<Json<Budget>, ApiError> {
    let (available, reserved) = state
        .db
        .read(move |conn| {
            let budget = jobs::budget_of(Owner::Requester(requester.id));
            Ok((
                ledger::balance(conn, &budget)?,
                jobs::reserved_by_open_jobs(conn, requester.id)?,
            ))
        })
        .await?;
    let config = &state.config;
    Ok(Json(Budget {
        available,
        reserved,
        price_per_gflop: config.price_per_gflop,
        operator_fee_bps: config.operator_fee_bps,
        partner_share_bps: config.partner_share_bps,
        token_units_per_credit: config.token_units_per_credit,
        deposit_reference: requester_ref(requester.id).to_string(),
        payout_contract: state.payout_chain.as_ref().map(|chain| chain.contract()),
    }))
}

/// Checks that the request may see job `id`: anyone may see a demo job; a requester's job needs
/// its key (401 without a key, 403 `not_your_job` with another requester's).
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    job_id: i64,
    need_key: bool,
) -> Result<(), ApiError> {
    let requester: Option<Requester> = extract::of_request(state, headers).await?;
    let owner = state
        .db
        .read(move |conn| jobs::owner(conn, job_id))
        .await?
        .ok_or_else(|| unknown_job(job_id))?;
    match (owner, requester) {
        (_, None) if need_key => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "this endpoint needs the job's requester's API key: 'Authorization: Bearer gw_...'",
        )),
        (Owner::Demo, _) => Ok(()),
        (Owner::Requester(_), None) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            format!("job {job_id} belongs to a requester; send its API key"),
        )),
        (Owner::Requester(id), Some(requester)) if id == requester.id => Ok(()),
        (Owner::Requester(_), Some(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_your_job",
            format!("job {job_id} belongs to another requester"),
        )),
    }
}

fn unknown_job(job_id: i64) -> ApiError {
    ApiError::not_found("unknown_job", format!("no job with id {job_id}"))
}

async fn status_of(state: &AppState, job_id: i64) -> Result<JobStatus, ApiError> {
    let (config, now) = (state.config.clone(), state.now_ms());
    state
        .db
        .read(move |conn| jobs::status(conn, &config, job_id, now))
        .await?
        .ok_or_else(|| unknown_job(job_id))
}

/// `GET /v1/jobs/{id}`: state and progress.
pub async fn get_job(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobStatus>, ApiError> {
    authorize(&state, &headers, id, false).await?;
    Ok(Json(status_of(&state, id).await?))
}

/// `DELETE /v1/jobs/{id}`: cancels a queued job (a finished one is left as it is).
pub async fn cancel_job(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobStatus>, ApiError> {
    authorize(&state, &headers, id, true).await?;
    let now = state.now_ms();
    let cancelled = state.db.call(move |conn| {
        let tx = conn.transaction()?;
        let cancelled = jobs::cancel(&tx, id, now)?;
        tx.commit()?;
        Ok(cancelled)
    });
    if cancelled.await? {
        tracing::info!("job {id} cancelled by its requester");
    }
    Ok(Json(status_of(&state, id).await?))
}

/// `GET /v1/jobs/{id}/result`: the assembled output, as .npy when the request accepts
/// `application/x-npy`, else raw bytes.
pub async fn get_result(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, id, false).await?;
    let status = status_of(&state, id).await?;
    let output_hash = match (status.state.as_str(), status.output_hash) {
        ("done", Some(hash)) => hash,
        ("failed", _) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_failed",
                format!("job {id} failed: a unit failed verification or ran out of attempts"),
            ));
        }
        ("cancelled", _) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_cancelled",
                format!("job {id} was cancelled; it has no output"),
            ));
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_not_done",
                format!(
                    "job {id} is {}: {} of {} units verified",
                    status.state, status.units_verified, status.units_total
                ),
            ));
        }
    };
    let bytes =
        state.db.blob(output_hash).await?.ok_or_else(|| {
            ApiError::Internal(format!("job {id}'s output {output_hash} is missing"))
        })?;
    let wants_npy = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains(NPY));
    if wants_npy {
        let shape = match status.shape {
            Some(shape) => vec![shape.m as usize, shape.n as usize],
            None => vec![bytes.len() / 4],
        };
        let file = npy::write_f32(&shape, &bytes[..bytes.len() / 4 * 4]);
        return Ok(([(header::CONTENT_TYPE, NPY)], file).into_response());
    }
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(m: u32, n: u32, k: u32) -> MatmulShape {
        MatmulShape { m, n, k }
    }

    fn message(error: ApiError) -> (&'static str, String) {
        match error {
            ApiError::Refused {
                status,
                code,
                message,
            } => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                (code, message)
            }
            other => panic!("not a refusal: {other}"),
        }
    }

    #[test]
    fn the_first_non_finite_element_is_named_by_row_and_column() {
        let data = glowworm_protocol::encoding::f32s_to_bytes(&[
            1.0,
            2.0,
            3.0,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        let (code, text) = message(finite_f32s("B", &data, 2).unwrap_err());
        assert_eq!(code, "non_finite_input");
        assert!(text.starts_with("B has -inf at row 1, column 1"), "{text}");
        assert_eq!(finite_f32s("A", &data[..12], 2).unwrap(), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn the_product_bound_is_refused_from_half_of_f32_max() {
        let half = MAX_PRODUCT_BOUND as f32;
        // A 2x2 times B 2x1: row 1 of A reaches the bound with |a| * max|b| summed over l.
        let b = [1.0, 1.0];
        assert!(
            check_product_bound(&[1.0, 1.0, half / 2.0, half / 2.1], &b, shape(2, 1, 2)).is_ok()
        );
        let (code, text) = message(
            check_product_bound(&[1.0, 1.0, -half / 2.0, half / 1.9], &b, shape(2, 1, 2))
                .unwrap_err(),
        );
        assert_eq!(code, "product_overflows");
        assert!(text.starts_with("row 1 of A"), "{text}");
        // Large values that cancel still count: a partial sum could overflow on the way.
        let (code, _) = message(
            check_product_bound(&[f32::MAX, -f32::MAX], &[1.0, 1.0], shape(1, 1, 2)).unwrap_err(),
        );
        assert_eq!(code, "product_overflows");
        // B's largest element of each row is what counts, whatever its column.
        let (code, _) = message(
            check_product_bound(&[1.0], &[0.0, -f32::MAX, 0.0], shape(1, 3, 1)).unwrap_err(),
        );
        assert_eq!(code, "product_overflows");
        assert!(check_product_bound(&[0.5], &[0.0, -f32::MAX, 0.0], shape(1, 3, 1)).is_err());
        assert!(check_product_bound(&[0.49], &[0.0, -f32::MAX, 0.0], shape(1, 3, 1)).is_ok());
    }
}
