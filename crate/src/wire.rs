//! JSON types of the relay's public HTTP API, shared by the relay, the browser module and
//! (later) the native worker. The OpenAPI document served at `/v1/openapi.json` describes the
//! same shapes; `relay/tests` checks the two agree.

use crate::hash::ContentHash;
use serde::{Deserialize, Serialize};

/// Largest output a unit may have, in bytes. Bounds the size of a result submission.
pub const MAX_OUTPUT_BYTES: u64 = 4 << 20;

/// Dimensions of a matrix product C (m x n) = A (m x k) * B (k x n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatmulShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
}

impl MatmulShape {
    /// Floating-point operations in the product: one multiply and one add per term.
    pub fn flop(&self) -> u64 {
        2 * self.m as u64 * self.n as u64 * self.k as u64
    }

    /// Bytes of the f32 output C.
    pub fn output_bytes(&self) -> u64 {
        4 * self.m as u64 * self.n as u64
    }
}

/// `POST /v1/leases`: a contributor asks for work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The contributor's ed25519 public key, 64 hex characters.
    pub public_key: String,
}

/// Reference to a kernel in the relay's catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRef {
    pub id: String,
    pub hash: ContentHash,
}

/// Reference to an input blob, fetched from `GET /v1/blobs/{hash}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Binding name in the kernel ("a", "b").
    pub name: String,
    pub hash: ContentHash,
    pub bytes: u64,
}

/// A unit of work leased to one contributor until `deadline_unix_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub lease_id: String,
    pub unit_id: i64,
    pub job_id: i64,
    pub kernel: KernelRef,
    pub shape: MatmulShape,
    pub inputs: Vec<BlobRef>,
    pub output_bytes: u64,
    pub flop: u64,
    pub deadline_unix_ms: i64,
}

/// `GET /v1/kernels/{hash}`: a kernel's WGSL and how to dispatch it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSource {
    pub id: String,
    pub hash: ContentHash,
    pub entry_point: String,
    pub wgsl: String,
    /// Outputs per workgroup along x (columns) and y (rows).
    pub tile: [u32; 2],
}

/// `POST /v1/results`: a signed output for a lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultSubmission {
    pub lease_id: String,
    pub unit_id: i64,
    pub public_key: String,
    /// The output, f32 little-endian, base64.
    pub output: String,
    /// ed25519 signature (128 hex characters) over [`crate::signing::result_message`].
    pub signature: String,
}

/// Reply to an accepted result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultReceipt {
    pub unit_id: i64,
    /// "verified": the output passed verification and was credited.
    pub status: String,
    pub credited: i64,
    /// The contributor's balance after this credit.
    pub balance: i64,
    pub flop: u64,
}

/// `POST /v1/leases/{lease_id}/release`: give a lease back unworked (for example on Stop).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub public_key: String,
}

/// Body of every 4xx and 5xx reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code, such as "bad_signature" or "lease_expired".
    pub code: String,
    /// What was wrong, for people.
    pub message: String,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Contributors seen in the last 60 seconds.
    pub contributors_online: i64,
    pub units_completed: i64,
    pub units_pending: i64,
    pub units_leased: i64,
    pub units_failed: i64,
    pub flop_verified: i64,
    pub credits_issued: i64,
    pub jobs_done: i64,
}

/// `GET /v1/contributors/{public_key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributorInfo {
    pub public_key: String,
    pub credits: i64,
    pub units_verified: i64,
    pub flop_verified: i64,
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
}

/// Reply to `POST /v1/leases/{lease_id}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseReceipt {
    pub released: bool,
}

/// `GET /v1/jobs/{id}`: a job's state and progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: i64,
    /// "queued", "done" or "failed".
    pub state: String,
    pub units_total: i64,
    pub units_verified: i64,
    /// Waiting for a contributor.
    pub units_pending: i64,
    /// Leased to a contributor now.
    pub units_leased: i64,
    pub units_failed: i64,
    /// Hash of the assembled output C (m x n, f32 little-endian) once the job is done.
    pub output_hash: Option<ContentHash>,
}
