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

/// `POST /v1/leases`: a contributor asks for work, signed by its key
/// ([`crate::signing::lease_message`]); [`LeaseRequest::signed`] makes one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The contributor's ed25519 public key, 64 hex characters.
    pub public_key: String,
    /// When it was signed, Unix milliseconds: the relay takes each key's requests only in
    /// increasing order and near its own clock, so a request cannot be replayed.
    pub signed_at_ms: i64,
    /// The key's ed25519 signature over [`crate::signing::lease_message`], 128 hex characters.
    pub signature: String,
    /// The GPU's vendor and architecture, for relays that compare replicas only between
    /// adapters of the same kind (homogeneous redundancy). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterClass>,
    /// The partner whose widget this unit is computed through: an Ethereum address (0x and 40
    /// hex characters, lowercase or EIP-55). Given with `origin`, or not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    /// The origin of the site embedding the partner's widget, such as "https://blog.example".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// The kind of GPU a result was computed on, as the WebGPU adapter reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterClass {
    /// Such as "nvidia", "amd", "google" (SwiftShader); may be empty.
    pub vendor: String,
    /// Such as "hopper", "rdna-3", "swiftshader"; may be empty.
    pub architecture: String,
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
    /// The input's name: "a" and "b" for matmul units, the requester's names for custom kernels.
    pub name: String,
    pub hash: ContentHash,
    pub bytes: u64,
    /// For custom kernels: the binding (in group 0) of the read-only storage buffer it fills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<u32>,
}

/// How a custom-kernel unit is dispatched. Its inputs are the lease's `inputs`, each bound at its
/// `binding`; the output is a read_write storage buffer of `output_bytes` at `output_binding`,
/// zeroed before the dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispatch {
    /// Workgroups along x, y and z.
    pub workgroups: [u32; 3],
    pub output_binding: u32,
}

/// What a leased unit computes, tagged by `kind` on the wire:
/// `{"kind": "matmul", "shape": {"m": .., "n": .., "k": ..}}` or
/// `{"kind": "dispatch", "workgroups": [x, y, z], "output_binding": ..}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LeaseWork {
    /// A matmul unit: inputs "a" (m x k) and "b" (k x n), output m x n.
    Matmul { shape: MatmulShape },
    /// A custom-kernel unit's dispatch.
    Dispatch(Dispatch),
}

impl LeaseWork {
    /// The matmul's shape, for a matmul unit.
    pub fn shape(&self) -> Option<MatmulShape> {
        match self {
            LeaseWork::Matmul { shape } => Some(*shape),
            LeaseWork::Dispatch(_) => None,
        }
    }

    /// The dispatch, for a custom kernel's unit.
    pub fn dispatch(&self) -> Option<Dispatch> {
        match self {
            LeaseWork::Matmul { .. } => None,
            LeaseWork::Dispatch(dispatch) => Some(*dispatch),
        }
    }
}

/// A unit of work leased to one contributor until `deadline_unix_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub lease_id: String,
    pub unit_id: i64,
    pub job_id: i64,
    pub kernel: KernelRef,
    /// What the unit computes: a matmul or a custom kernel's dispatch.
    pub work: LeaseWork,
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
    /// Outputs per workgroup along x (columns) and y (rows), for matmul kernels; custom kernels'
    /// leases say how to dispatch them instead, and this means nothing for them.
    pub tile: [u32; 2],
}

/// `POST /v1/results`: a signed output for a lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultSubmission {
    pub lease_id: String,
    pub unit_id: i64,
    pub public_key: String,
    /// The output's bytes, base64: f32 little-endian for matmul units, the output buffer as the
    /// kernel left it for custom kernels.
    pub output: String,
    /// ed25519 signature (128 hex characters) over [`crate::signing::result_message`].
    pub signature: String,
}

/// Reply to an accepted result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultReceipt {
    pub unit_id: i64,
    /// "verified": the output passed verification and was credited. "pending": the output was
    /// accepted and waits for other contributors' replicas of the unit (or, for a trusted
    /// contributor, a later check) before it is credited; nothing is credited yet.
    pub status: String,
    pub credited: i64,
    /// Credits of this contributor's results that wait for verification (not in `balance`).
    #[serde(default)]
    pub pending: i64,
    /// The balance, after this credit, of the account credited: the contributor's own (its
    /// public key) or, once it has linked a wallet, the linked address's.
    pub balance: i64,
    pub flop: u64,
    /// The relay's signed statement of this credit (when one was made now): keep it to prove
    /// the credit later ([`crate::signing::verify_credit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<SignedCredit>,
}

/// A credit, signed by the relay's key ([`crate::signing::RelayKey::sign_credit`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCredit {
    pub result_id: i64,
    pub unit_id: i64,
    /// The account credited: the contributor's public key, or the address it linked.
    pub account: String,
    pub credited: i64,
    pub credited_at_ms: i64,
    /// The relay's ed25519 public key, 64 hex characters.
    pub relay_key: String,
    /// Its signature over [`crate::signing::credit_message`], 128 hex characters.
    pub signature: String,
}

/// `POST /v1/leases/{lease_id}/release`: give a lease back unworked (for example on Stop).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub public_key: String,
    /// The key's ed25519 signature over [`crate::signing::release_message`] of the lease id and
    /// the reason's wire name ("stopped" when `reason` is absent), 128 hex characters.
    pub signature: String,
    /// Why the lease is given back; older contributors say nothing (`Stopped` is assumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReleaseReason>,
}

/// Why a contributor gives a lease back unworked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// The person stopped, paused or closed the page; or the worker shut down.
    Stopped,
    /// The kernel or an input could not be fetched.
    FetchFailed,
    /// The GPU failed running the unit (an error, or the device was lost, for example to a
    /// watchdog reset). The relay charges the time to the unit's GPU budget.
    GpuFailed,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Stopped => "stopped",
            ReleaseReason::FetchFailed => "fetch_failed",
            ReleaseReason::GpuFailed => "gpu_failed",
        }
    }
}

/// Body of every 4xx and 5xx reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// The `(code, message)` of an error reply's body. A body that is not an `ErrorBody` (a proxy's
    /// HTML page, say) becomes `("http_error", its first 200 characters)`.
    pub fn code_and_message(body: &str) -> (String, String) {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(parsed) => (parsed.error.code, parsed.error.message),
            Err(_) => ("http_error".to_string(), body.chars().take(200).collect()),
        }
    }
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
    /// The relay's ed25519 public key (64 hex characters), which signs every credit's receipt.
    #[serde(default)]
    pub relay_key: String,
}

/// `GET /v1/contributors/{public_key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributorInfo {
    pub public_key: String,
    /// The balance of the account this key's credits go to: its own before it links a wallet,
    /// the linked address's after (see `GET /v1/accounts/{address}`).
    pub credits: i64,
    /// Units verified and FLOP earned by this key itself, before and after linking.
    pub units_verified: i64,
    pub flop_verified: i64,
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    /// The Ethereum address (EIP-55) this key is linked to, if any.
    pub linked_address: Option<String>,
    /// Credits of this key's results that wait for replicas or a later check; not yet in
    /// `credits`.
    #[serde(default)]
    pub pending_credits: i64,
    /// The key's standing with the relay's verifier.
    #[serde(default)]
    pub reputation: Reputation,
}

/// What the verifier knows of a contributor (a session key, or an address across its keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reputation {
    /// Results that passed verification, and that failed it.
    pub results_valid: i64,
    pub results_invalid: i64,
    /// Valid results since the last invalid one.
    pub consecutive_valid: i64,
    /// Trusted contributors' results are replicated only now and then.
    pub trusted: bool,
    /// Invalid results not yet outweighed by a run of valid ones; at the relay's limit the
    /// contributor is quarantined.
    pub strikes: i64,
    /// Quarantined: no more leases, pending credits withheld.
    pub quarantined: bool,
    pub quarantined_at_unix_ms: Option<i64>,
}

/// Reply to `POST /v1/leases/{lease_id}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseReceipt {
    pub released: bool,
}

/// `GET /v1/jobs/{id}`: a job's state and progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: i64,
    /// "matmul" or "kernel".
    #[serde(default)]
    pub kind: String,
    /// "queued", "done", "failed" or "cancelled".
    pub state: String,
    /// For matmul jobs: C (m x n) = A (m x k) * B (k x n).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<MatmulShape>,
    /// Bytes of the assembled output: C as f32, or every unit's output in unit order.
    #[serde(default)]
    pub output_bytes: u64,
    #[serde(default)]
    pub created_at_unix_ms: i64,
    /// Verified units as a share of all units, 0 to 1.
    #[serde(default)]
    pub progress: f64,
    pub units_total: i64,
    pub units_verified: i64,
    /// Waiting for a contributor.
    pub units_pending: i64,
    /// Leased to a contributor now.
    pub units_leased: i64,
    pub units_failed: i64,
    /// Hash of the assembled output (f32 little-endian for matmul) once the job is done.
    pub output_hash: Option<ContentHash>,
    /// Why a failed job failed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Why the units not yet verified are waiting, grouped by reason (empty once the job has
    /// ended).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<Waiting>,
    /// Credits reserved from the requester's budget when the job was accepted: each unit's
    /// price times the results it may pay.
    #[serde(default)]
    pub credits_reserved: i64,
    /// Credits paid so far for its verified results.
    #[serde(default)]
    pub credits_paid: i64,
    /// Credits returned to the budget when the job ended (what was reserved and not paid).
    #[serde(default)]
    pub credits_returned: i64,
}

/// A group of a job's units that wait for the same reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// `queued` (no contributor has taken it yet), `computing` (leased now), `replicas` (has
    /// results, waits for agreeing replicas from other contributors), `settling` (a trusted
    /// contributor's result, waiting for that contributor's next check).
    pub reason: String,
    pub units: i64,
    /// The reason in words, with what would unblock it where the relay knows.
    pub detail: String,
}

/// `GET /v1/budget`: a requester's budget and the prices its jobs pay, in credits (the payout
/// token's smallest unit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Credits the requester can spend on new jobs.
    pub available: i64,
    /// Credits reserved by its jobs that have not ended (returned, less what they pay, when
    /// they end).
    pub reserved: i64,
    /// What a verified matmul result pays, per GFLOP (2·m·n·k / 10^9), rounded down per unit.
    pub price_per_gflop: u64,
    /// The operator's fee, in basis points of each result's price.
    pub operator_fee_bps: u32,
    /// A partner's share, in basis points of the price of a result computed through its widget.
    pub partner_share_bps: u32,
    /// The payout token's smallest units per credit: a deposit of N units funds N / this
    /// credits.
    pub token_units_per_credit: u64,
    /// What to pass as `requester` to the payout contract's `deposit(amount, requester)` so the
    /// deposit funds this budget (bytes32, 0x and 64 hex characters).
    pub deposit_reference: String,
    /// The payout contract deposits go to, when the relay has a chain.
    pub payout_contract: Option<String>,
}

/// `GET /v1/jobs`: the requester's jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobStatus>,
}

/// The `job` part of `POST /v1/jobs` (a multipart/form-data upload): what to compute. The
/// inputs are the other parts, named "a" and "b" for matmul jobs and by input name for kernels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum JobSpec {
    /// C = A * B, with A and B as .npy (f32, C order, 2-D) or raw little-endian f32. Verified
    /// with Freivalds' check.
    Matmul(MatmulSpec),
    /// A custom WGSL compute kernel, verified by replication.
    Kernel(KernelSpec),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatmulSpec {
    /// Required when A and B are raw f32; with .npy uploads, optional and checked against them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<MatmulShape>,
}

/// A custom kernel job: `units` dispatches of one WGSL compute shader. Each input is either split
/// into `units` equal chunks (unit i gets chunk i) or, when `shared`, given whole to every unit.
/// The job's output is every unit's output, concatenated in unit order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    /// Shown to contributors as the kernel running; defaults to "custom".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub wgsl: String,
    #[serde(default = "default_entry_point")]
    pub entry_point: String,
    /// Read-only storage buffers (`var<storage, read>`), in group 0.
    pub inputs: Vec<KernelInput>,
    /// The read_write storage buffer the output is read back from, in group 0.
    pub output: KernelOutput,
    /// Workgroups per unit along x, y and z.
    pub workgroups: [u32; 3],
    /// Units (dispatches) in the job; default 1.
    #[serde(default = "default_units")]
    pub units: u32,
    /// Distinct contributors whose outputs must agree before a unit counts: 2 (the default) to
    /// 5. Kernels have no cheap check, so a unit is never credited on one result.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// How far replicas' f32 outputs may differ, in units in the last place; 0 (the default)
    /// compares bytes exactly.
    #[serde(default)]
    pub tolerance_ulps: u32,
    /// What each verified result of a unit pays its contributor, in credits; absent: the
    /// relay's rate per GFLOP applied to the unit's invocations. The job reserves up to
    /// `max_replicas` results' worth per unit from the requester's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_unit: Option<u64>,
}

fn default_entry_point() -> String {
    "main".to_string()
}

fn default_units() -> u32 {
    1
}

fn default_replicas() -> u32 {
    2
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelInput {
    /// The multipart part that carries its bytes.
    pub name: String,
    pub binding: u32,
    /// Given whole to every unit instead of split between them.
    #[serde(default)]
    pub shared: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelOutput {
    pub binding: u32,
    /// Output bytes of each unit (a multiple of 4).
    pub bytes: u64,
}

/// `POST /v1/auth/nonce`: a single-use nonce for one Sign-In with Ethereum message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceReply {
    /// At least 16 random alphanumeric characters; goes in the message's `Nonce:` line.
    pub nonce: String,
    /// When the relay forgets the nonce, in Unix milliseconds.
    pub expires_unix_ms: i64,
}

/// `POST /v1/auth/link`: link a session key to the wallet that signed `message`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The EIP-4361 (Sign-In with Ethereum) message, exactly as the wallet signed it. Its
    /// resources list [`crate::signing::session_resource`] of `public_key`.
    pub message: String,
    /// The wallet's `personal_sign` signature of `message`: 0x and 130 hex characters (65 bytes).
    pub signature: String,
    /// The session's ed25519 public key, 64 hex characters.
    pub public_key: String,
    /// The session key's ed25519 signature (128 hex characters) over
    /// [`crate::signing::link_message`] of `message`.
    pub session_signature: String,
}

/// Reply to a successful link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReply {
    /// The linked Ethereum address, EIP-55 checksummed.
    pub address: String,
    pub public_key: String,
    /// Credits moved from the session key's own account to the address (0 when linking again).
    pub credits_moved: i64,
    /// The address's balance after the link.
    pub balance: i64,
}

/// `GET /v1/accounts/{address}`: an Ethereum address's credits and where they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// EIP-55 checksummed.
    pub address: String,
    /// The sum of the address's ledger entries.
    pub credits: i64,
    /// Units verified and FLOP earned by every session key linked to the address.
    pub units_verified: i64,
    pub flop_verified: i64,
    /// Credits of the linked keys' results that wait for verification; not yet in `credits`.
    #[serde(default)]
    pub pending_credits: i64,
    /// The address's standing with the verifier (a quarantined address gets no leases for any
    /// of its keys).
    #[serde(default)]
    pub reputation: Reputation,
    pub linked_sessions: Vec<LinkedSession>,
    /// The address's ledger entries, newest first, one page of them.
    pub entries: Vec<LedgerEntry>,
    /// Pass as `?before=` for the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

/// A session key linked to an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedSession {
    pub public_key: String,
    /// The chain id of the Sign-In with Ethereum message that linked it.
    pub chain_id: u64,
    pub linked_at_unix_ms: i64,
}

/// `GET /v1/partners/{address}`: what a partner earned from units computed through its widget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerInfo {
    /// EIP-55 checksummed.
    pub address: String,
    /// The sum of the partner's `partner_share` ledger entries.
    pub credits: i64,
    /// Distinct contributors (session keys) whose verified units earned it a share.
    pub contributors: i64,
    /// Verified units that earned it a share.
    pub units: i64,
    /// The same, per embedding site, most credits first.
    pub sites: Vec<PartnerSite>,
}

/// A partner's earnings through one embedding site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerSite {
    /// The embedding page's origin, such as "https://blog.example".
    pub origin: String,
    pub credits: i64,
    pub contributors: i64,
    pub units: i64,
}

/// One row of the append-only credit ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: i64,
    /// Integer credits; negative for credits moved away.
    pub amount: i64,
    /// "unit_verified", "partner_share", "link_in" or "link_out".
    pub kind: String,
    /// The verified unit, for "unit_verified".
    pub unit_id: Option<i64>,
    /// The session key that earned the credit or whose link moved it.
    pub public_key: Option<String>,
    pub created_at_unix_ms: i64,
}

impl LeaseRequest {
    /// A lease request from `key`, signed when the clock reads `now_ms` (Unix milliseconds; the
    /// time signed is [`crate::signing::ContributorKey::lease_time`]), with the optional adapter
    /// and partner attribution.
    pub fn signed(
        key: &crate::signing::ContributorKey,
        now_ms: i64,
        adapter: Option<AdapterClass>,
        partner: Option<String>,
        origin: Option<String>,
    ) -> LeaseRequest {
        let signed_at_ms = key.lease_time(now_ms);
        let mut request = LeaseRequest {
            public_key: key.public_hex(),
            signed_at_ms,
            signature: String::new(),
            adapter,
            partner,
            origin,
        };
        request.signature = key.sign_lease(signed_at_ms, request.fields());
        request
    }

    /// The fields its signature covers besides the key and the time.
    pub fn fields(&self) -> crate::signing::LeaseFields<'_> {
        crate::signing::LeaseFields {
            adapter: self
                .adapter
                .as_ref()
                .map(|a| (a.vendor.as_str(), a.architecture.as_str())),
            partner: self.partner.as_deref(),
            origin: self.origin.as_deref(),
        }
    }
}

impl ReleaseRequest {
    /// `key`'s signed release of `lease_id` for `reason`.
    pub fn signed(
        key: &crate::signing::ContributorKey,
        lease_id: &str,
        reason: ReleaseReason,
    ) -> ReleaseRequest {
        ReleaseRequest {
            public_key: key.public_hex(),
            signature: key.sign_release(lease_id, reason.as_str()),
            reason: Some(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_says_its_work_by_kind() {
        let matmul = LeaseWork::Matmul {
            shape: MatmulShape { m: 2, n: 3, k: 4 },
        };
        let dispatch = LeaseWork::Dispatch(Dispatch {
            workgroups: [4, 1, 1],
            output_binding: 2,
        });
        for (work, json) in [
            (
                matmul,
                serde_json::json!({"kind": "matmul", "shape": {"m": 2, "n": 3, "k": 4}}),
            ),
            (
                dispatch,
                serde_json::json!({"kind": "dispatch", "workgroups": [4, 1, 1], "output_binding": 2}),
            ),
        ] {
            assert_eq!(serde_json::to_value(work).unwrap(), json);
            assert_eq!(serde_json::from_value::<LeaseWork>(json).unwrap(), work);
        }
        let unknown = serde_json::json!({"kind": "dispatch", "workgroups": [1, 1, 1],
            "output_binding": 0, "extra": 1});
        assert!(serde_json::from_value::<LeaseWork>(unknown).is_err());
        let neither = serde_json::json!({"kind": "sort"});
        assert!(serde_json::from_value::<LeaseWork>(neither).is_err());
    }
}

/// `GET /v1/epochs/{epoch}`: a closed epoch. Amounts are decimal strings (the payout token's
/// smallest unit; JavaScript numbers cannot hold them all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochInfo {
    pub epoch: i64,
    /// The last ledger entry leg it covers.
    pub ledger_position: i64,
    /// The Merkle root of every address's lifetime earnings up to there, 0x and 64 hex.
    pub root: String,
    /// The sum of the tree's amounts.
    pub total: String,
    /// Addresses in the tree.
    pub leaves: i64,
    /// Where the whole tree is, as OpenZeppelin's `StandardMerkleTree` dump (`standard-v1`):
    /// anyone can fetch it and recompute the root.
    pub tree_url: String,
    pub tree_hash: ContentHash,
    pub closed_at_unix_ms: i64,
    /// The transaction that published the root to the payout contract, once one did.
    pub publish_tx: Option<String>,
}

/// `GET /v1/epochs`: the latest epochs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochList {
    pub epochs: Vec<EpochInfo>,
}

/// `GET /v1/payouts/{address}`: what an address has earned and what it can claim. Amounts
/// are decimal strings of the payout token's smallest unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// EIP-55.
    pub address: String,
    /// Lifetime earnings in the ledger now (more than `in_root` until the next epoch).
    pub earned: String,
    /// The latest epoch, if one was closed.
    pub epoch: Option<i64>,
    /// Its root.
    pub root: Option<String>,
    /// Lifetime earnings in that root ("0" when the address is not in it).
    pub in_root: String,
    /// The proof of `in_root` against `root` (empty when not in it), 0x-hex nodes.
    pub proof: Vec<String>,
    /// Already claimed, as the payout contract says; `null` when the relay has no chain.
    pub claimed: Option<String>,
    /// `in_root` less `claimed`; `null` when the relay has no chain.
    pub claimable: Option<String>,
    /// The payout contract and its chain, when the relay has one.
    pub contract: Option<String>,
    pub chain_id: Option<u64>,
    /// Whether claims can be made now (a chain is configured and the root published).
    pub claims_enabled: bool,
}
