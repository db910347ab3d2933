//! The wasm-bindgen surface the page's Web Worker drives (`www/worker.js`).
//!
//! [`Contributor::step`] runs one unit end to end: take a lease (or the one prefetched during the
//! previous step), fetch its kernel and inputs through the content-hash caches ([`Fetcher`]),
//! compute on the GPU while the next unit is leased and fetched, sign the output and submit it.
//! Matmul units and custom kernels' units take the same path ([`protocol::work`] says which and
//! [`Gpu::run_work`] runs either). Errors cross the boundary as `JsError`s whose message says
//! what failed.
//!
//! A lost GPU device (wgpu's device-lost callback, [`Gpu::lost`]) is handled here: the unit that
//! was computing is given back as `gpu_failed`, a prefetched one as `stopped`, a new device is
//! opened, and `step()` reports `{kind: "recovered", reason, message}`.
//!
//! [`verify_earnings_proof`] checks a payout proof against the root the payout contract holds
//! (the page's "check my proof"), with `glowworm_protocol::merkle`; [`claim_calldata`] builds the
//! payout contract's `claim` for the page's Claim button (`glowworm_protocol::payout`).
//!
//! The benchmark exports (`bench`) are only in the module built with the `bench` feature, for
//! `www/bench.html`, so contributors do not download them.

#[cfg(feature = "bench")]
mod bench;
mod http;

use crate::gpu::{DeviceLoss, Gpu, GpuError};
use glowworm_protocol::protocol::{self, Fetched, Fetcher, ProtocolError, RelayError};
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{Lease, LeaseRequest, ReleaseReason};
use http::Relay;
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// Inputs kept in memory across units, in bytes.
const BLOB_CACHE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError<RelayError>),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("could not reopen the GPU: {0}")]
    Reopen(GpuError),
}

impl From<RelayError> for StepError {
    fn from(e: RelayError) -> Self {
        StepError::Protocol(ProtocolError::Transport(e))
    }
}

/// A unit leased and ready to compute: kernel and inputs in memory.
struct Prepared {
    lease: Lease,
    fetched: Fetched,
}

/// What one call of `step()` did; becomes a plain JS object.
#[derive(Serialize)]
#[serde(
    tag = "kind",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
enum StepReport {
    Verified {
        unit_id: i64,
        job_id: i64,
        kernel: String,
        flop: u64,
        credited: i64,
        balance: i64,
        bytes_downloaded: u64,
        cache_hits: u32,
        compute_ms: f64,
    },
    Idle {
        retry_after_ms: u32,
    },
    /// The GPU device was lost; the leases in hand were given back and a new device opened.
    Recovered {
        /// WebGPU's `GPUDeviceLostInfo.reason`: "destroyed" or "unknown".
        reason: String,
        message: String,
    },
}

struct Inner {
    relay: Relay,
    key: ContributorKey,
    /// The GPU device; replaced by a new one when it is lost ([`recover`]).
    gpu: RefCell<Rc<Gpu>>,
    fetcher: Fetcher,
    prefetched: RefCell<Option<Prepared>>,
    /// What every lease request says besides the key and the time: the adapter, and a partner
    /// widget's attribution when there is one. Each request is signed when it is made.
    lease_template: LeaseRequest,
}

/// One contributor: an ed25519 identity, a GPU device and a relay to work for.
#[wasm_bindgen]
pub struct Contributor {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl Contributor {
    /// Opens the GPU and restores (or creates) the contributor's key. `relay` is the relay's base
    /// URL ("" for the page's own origin); `secret_key` is what `secretKey()` returned earlier.
    /// In a partner's widget, `partner` (an Ethereum address) and `origin` (the embedding site)
    /// go with every lease request; the relay checks them.
    pub async fn start(
        relay: String,
        secret_key: Option<Vec<u8>>,
        partner: Option<String>,
        origin: Option<String>,
    ) -> Result<Contributor, JsError> {
        let key = match secret_key {
            Some(bytes) => ContributorKey::from_secret_bytes(&bytes)?,
            None => ContributorKey::generate()?,
        };
        let gpu = Gpu::new().await?;
        let lease_template = LeaseRequest {
            public_key: key.public_hex(),
            signed_at_ms: 0,
            signature: String::new(),
            adapter: Some(gpu.adapter().class()),
            partner,
            origin,
        };
        Ok(Contributor {
            inner: Rc::new(Inner {
                relay: Relay::new(relay),
                key,
                gpu: RefCell::new(Rc::new(gpu)),
                fetcher: Fetcher::new(crate::gpu::MAX_PIPELINES, BLOB_CACHE_BYTES),
                prefetched: RefCell::new(None),
                lease_template,
            }),
        })
    }

    /// The contributor's id: its ed25519 public key in hex.
    #[wasm_bindgen(js_name = publicKey)]
    pub fn public_key(&self) -> String {
        self.inner.key.public_hex()
    }

    /// The 32-byte secret key, to keep in IndexedDB so a reload is the same contributor.
    #[wasm_bindgen(js_name = secretKey)]
    pub fn secret_key(&self) -> Vec<u8> {
        self.inner.key.secret_bytes().to_vec()
    }

    /// The adapter wgpu opened: {vendor, architecture, device, description, backend}.
    pub fn adapter(&self) -> Result<JsValue, JsError> {
        Ok(serde_wasm_bindgen::to_value(
            self.inner.gpu.borrow().adapter(),
        )?)
    }

    /// The Sign-In with Ethereum (EIP-4361) message that links this contributor to a wallet:
    /// `fields` is `{domain, address, uri, chainId, nonce, issuedAt, expirationTime}`; the session
    /// key is this contributor's. Throws on a malformed address or a line break in a field.
    #[wasm_bindgen(js_name = siweMessage)]
    pub fn siwe_message(&self, fields: JsValue) -> Result<String, JsError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Fields {
            domain: String,
            address: String,
            uri: String,
            chain_id: u64,
            nonce: String,
            issued_at: String,
            expiration_time: String,
        }
        let f: Fields = serde_wasm_bindgen::from_value(fields)?;
        use glowworm_protocol::link::{SiweFields, siwe_message};
        Ok(siwe_message(&SiweFields {
            domain: f.domain,
            address: f.address,
            uri: f.uri,
            chain_id: f.chain_id,
            nonce: f.nonce,
            issued_at: f.issued_at,
            expiration_time: f.expiration_time,
            session_public_key: self.inner.key.public_hex(),
        })?)
    }

    /// The session key's signature (hex) agreeing to the link described by `siwe_message`.
    #[wasm_bindgen(js_name = signLink)]
    pub fn sign_link(&self, siwe_message: &str) -> String {
        self.inner.key.sign_link(siwe_message)
    }

    /// Runs one unit; resolves to `{kind: "verified", ...}`, `{kind: "idle", retryAfterMs}`, or
    /// `{kind: "recovered", reason, message}` when the GPU device was lost and a new one opened.
    pub fn step(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let report = step(&inner)
                .await
                .map_err(|e| JsError::new(&e.to_string()))?;
            Ok(serde_wasm_bindgen::to_value(&report)?)
        })
    }

    /// Gives a prefetched lease back to the relay, so Stop leaves no unit waiting on a deadline.
    pub fn release(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let prepared = inner.prefetched.borrow_mut().take();
            if let Some(p) = prepared {
                release(&inner, &p.lease, ReleaseReason::Stopped)
                    .await
                    .map_err(|e| JsError::new(&e.to_string()))?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }
}

async fn step(inner: &Inner) -> Result<StepReport, StepError> {
    // A device lost since the last step (even while resting) is replaced before anything runs.
    let lost = inner.gpu.borrow().lost();
    if let Some(loss) = lost {
        return recover(inner, loss).await;
    }
    let gpu = inner.gpu.borrow().clone();
    let prefetched = inner.prefetched.borrow_mut().take();
    let current = match prefetched {
        Some(p) => p,
        None => match prepare_next(inner).await? {
            Some(p) => p,
            None => {
                return Ok(StepReport::Idle {
                    retry_after_ms: 1000,
                });
            }
        },
    };

    // Pipeline: lease and fetch the next unit while the GPU computes this one.
    let compute = async {
        let started = js_sys::Date::now();
        let fetched = &current.fetched;
        let inputs: Vec<&[u8]> = fetched.inputs.iter().map(|i| i.as_slice()).collect();
        let out = gpu.run_work(&fetched.kernel, &fetched.work, &inputs).await;
        (out, js_sys::Date::now() - started)
    };
    let ((output, compute_ms), next) =
        futures_util::future::join(compute, prepare_next(inner)).await;
    match next {
        Ok(next) => *inner.prefetched.borrow_mut() = next,
        // The next step will simply lease again.
        Err(e) => web_sys::console::warn_1(&format!("prefetch failed: {e}").into()),
    }
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            let _ = release(inner, &current.lease, ReleaseReason::GpuFailed).await;
            if let GpuError::DeviceLost(loss) = e {
                return recover(inner, loss).await;
            }
            return Err(e.into());
        }
    };

    let lease = &current.lease;
    let submission = protocol::submission_of_bytes(&inner.key, lease, &output);
    let receipt = protocol::submit(&inner.relay, &submission).await?;
    Ok(StepReport::Verified {
        unit_id: receipt.unit_id,
        job_id: lease.job_id,
        kernel: current.fetched.kernel.id.clone(),
        flop: receipt.flop,
        credited: receipt.credited,
        balance: receipt.balance,
        bytes_downloaded: current.fetched.bytes_downloaded(),
        cache_hits: current.fetched.cache_hits(),
        compute_ms,
    })
}

/// "Check my proof": whether `proof` (the `0x…` hashes `GET /v1/payouts/{address}` returns, leaf to
/// root) shows that `address` is owed `amount` (decimal, in the token's smallest unit) in the
/// earnings tree whose root is `root` (the one the payout contract holds), as the contract checks
/// it (OpenZeppelin's `StandardMerkleTree` of `(address, uint256)`). Needs no GPU and no
/// `Contributor`. Throws on malformed text (an address with a wrong EIP-55 checksum, an amount
/// that is not a decimal `uint256`, a hash that is not `0x` and 64 hex characters).
#[wasm_bindgen(js_name = verifyEarningsProof)]
pub fn verify_earnings_proof(
    root: &str,
    address: &str,
    amount: &str,
    proof: Vec<String>,
) -> Result<bool, JsError> {
    Ok(glowworm_protocol::merkle::verify_hex(
        root, address, amount, &proof,
    )?)
}

/// The calldata of the payout contract's `claim(account, amount, proof)` as `0x` and hex, for the
/// page's Claim button to send through the person's wallet (`eth_sendTransaction` to the
/// contract): `amount` is the lifetime amount in decimal (`in_root` of
/// `GET /v1/payouts/{address}`) and `proof` its hashes. Throws on malformed text, as
/// [`verify_earnings_proof`] does.
#[wasm_bindgen(js_name = claimCalldata)]
pub fn claim_calldata(account: &str, amount: &str, proof: Vec<String>) -> Result<String, JsError> {
    Ok(glowworm_protocol::payout::claim_calldata_hex(
        account, amount, &proof,
    )?)
}

/// The calldata of the payout contract's `latestRoot()` view as `0x` and hex, for `eth_call`.
#[wasm_bindgen(js_name = latestRootCalldata)]
pub fn latest_root_calldata() -> String {
    let data = glowworm_protocol::payout::latest_root_calldata();
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    format!("0x{hex}")
}

/// After the GPU device was lost (the unit computing on it, if any, was given back already):
/// gives back the prefetched lease and opens a new device. When no device opens, the lost one
/// stays, so the next step tries again.
async fn recover(inner: &Inner, loss: DeviceLoss) -> Result<StepReport, StepError> {
    let prefetched = inner.prefetched.borrow_mut().take();
    if let Some(p) = prefetched {
        if let Err(e) = release(inner, &p.lease, ReleaseReason::Stopped).await {
            let warning = format!("could not release the prefetched unit: {e}");
            web_sys::console::warn_1(&warning.into());
        }
    }
    let gpu = Gpu::new().await.map_err(StepError::Reopen)?;
    *inner.gpu.borrow_mut() = Rc::new(gpu);
    Ok(StepReport::Recovered {
        reason: loss.reason.to_string(),
        message: loss.message,
    })
}

/// Leases a unit and brings its kernel and inputs into memory; `None` when the relay has no work.
async fn prepare_next(inner: &Inner) -> Result<Option<Prepared>, StepError> {
    let template = &inner.lease_template;
    let request = LeaseRequest::signed(
        &inner.key,
        js_sys::Date::now() as i64,
        template.adapter.clone(),
        template.partner.clone(),
        template.origin.clone(),
    );
    let Some(lease) = protocol::lease_with(&inner.relay, &request).await? else {
        return Ok(None);
    };
    // A lease whose kernel or inputs cannot be fetched is released by the fetcher.
    let fetched = inner
        .fetcher
        .fetch(&inner.relay, &inner.key, &lease)
        .await?;
    Ok(Some(Prepared { lease, fetched }))
}

async fn release(inner: &Inner, lease: &Lease, reason: ReleaseReason) -> Result<(), StepError> {
    Ok(protocol::release(&inner.relay, &inner.key, lease, reason).await?)
}
