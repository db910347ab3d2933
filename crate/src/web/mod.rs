//! The wasm-bindgen surface the page's Web Worker drives (`www/worker.js`).
//!
//! [`Contributor::step`] runs one unit end to end: take a lease (or the one prefetched during the
//! previous step), fetch its kernel and inputs through the content-hash caches, compute on the GPU
//! while the next unit is leased and fetched, sign the output and submit it. Errors cross the
//! boundary as `JsError`s whose message says what failed.

mod http;

use crate::cache::BlobCache;
use crate::encoding::f32s_to_bytes;
use crate::gpu::Gpu;
use crate::hash::ContentHash;
use crate::signing::ContributorKey;
use crate::wire::{KernelSource, Lease, ReleaseRequest, ResultReceipt, ResultSubmission};
use http::{HttpError, Relay};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// Inputs kept in memory across units, in bytes.
const BLOB_CACHE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error("the relay sent {what} whose content does not match its hash {hash}")]
    HashMismatch {
        what: &'static str,
        hash: ContentHash,
    },
    #[error("lease {lease_id} lacks input '{name}'")]
    MissingInput {
        lease_id: String,
        name: &'static str,
    },
    #[error("input {hash}: {source}")]
    BadInput {
        hash: ContentHash,
        source: crate::encoding::DecodeError,
    },
}

/// A unit leased and ready to compute: kernel and inputs in memory.
struct Prepared {
    lease: Lease,
    kernel: KernelSource,
    a: Rc<Vec<f32>>,
    b: Rc<Vec<f32>>,
    bytes_downloaded: u64,
    cache_hits: u32,
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
}

struct Inner {
    relay: Relay,
    key: ContributorKey,
    gpu: Gpu,
    kernels: RefCell<HashMap<ContentHash, KernelSource>>,
    blobs: RefCell<BlobCache>,
    prefetched: RefCell<Option<Prepared>>,
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
    pub async fn start(relay: String, secret_key: Option<Vec<u8>>) -> Result<Contributor, JsError> {
        let key = match secret_key {
            Some(bytes) => ContributorKey::from_secret_bytes(&bytes)?,
            None => ContributorKey::generate()?,
        };
        let gpu = Gpu::new().await?;
        Ok(Contributor {
            inner: Rc::new(Inner {
                relay: Relay::new(relay),
                key,
                gpu,
                kernels: RefCell::new(HashMap::new()),
                blobs: RefCell::new(BlobCache::new(BLOB_CACHE_BYTES)),
                prefetched: RefCell::new(None),
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
        Ok(serde_wasm_bindgen::to_value(self.inner.gpu.adapter())?)
    }

    /// Runs one unit; resolves to `{kind: "verified", ...}` or `{kind: "idle", retryAfterMs}`.
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
                release(&inner, &p.lease)
                    .await
                    .map_err(|e| JsError::new(&e.to_string()))?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }
}

async fn step(inner: &Inner) -> Result<StepReport, StepError> {
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
        let out = inner
            .gpu
            .run_matmul(&current.kernel, &current.a, &current.b, current.lease.shape)
            .await;
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
            let _ = release(inner, &current.lease).await;
            return Err(e.into());
        }
    };

    let lease = &current.lease;
    let bytes = f32s_to_bytes(&output);
    let submission = ResultSubmission {
        lease_id: lease.lease_id.clone(),
        unit_id: lease.unit_id,
        public_key: inner.key.public_hex(),
        signature: inner.key.sign_result(
            lease.unit_id,
            &lease.lease_id,
            &lease.kernel.hash,
            &bytes,
        ),
        output: crate::encoding::to_base64(&bytes),
    };
    let receipt: ResultReceipt = inner.relay.post_json("/v1/results", &submission).await?;
    Ok(StepReport::Verified {
        unit_id: receipt.unit_id,
        job_id: lease.job_id,
        kernel: current.kernel.id.clone(),
        flop: receipt.flop,
        credited: receipt.credited,
        balance: receipt.balance,
        bytes_downloaded: current.bytes_downloaded,
        cache_hits: current.cache_hits,
        compute_ms,
    })
}

/// Leases a unit and brings its kernel and inputs into memory; `None` when the relay has no work.
async fn prepare_next(inner: &Inner) -> Result<Option<Prepared>, StepError> {
    let request = crate::wire::LeaseRequest {
        public_key: inner.key.public_hex(),
    };
    let Some(lease) = inner
        .relay
        .post_json_optional::<_, Lease>("/v1/leases", &request)
        .await?
    else {
        return Ok(None);
    };
    match fetch_inputs(inner, lease.clone()).await {
        Ok(prepared) => Ok(Some(prepared)),
        Err(e) => {
            let _ = release(inner, &lease).await;
            Err(e)
        }
    }
}

async fn fetch_inputs(inner: &Inner, lease: Lease) -> Result<Prepared, StepError> {
    let mut bytes_downloaded = 0;
    let mut cache_hits = 0;

    let cached_kernel = inner.kernels.borrow().get(&lease.kernel.hash).cloned();
    let kernel = match cached_kernel {
        Some(k) => {
            cache_hits += 1;
            k
        }
        None => {
            let path = format!("/v1/kernels/{}", lease.kernel.hash);
            let k: KernelSource = inner.relay.get_json(&path).await?;
            if ContentHash::of(k.wgsl.as_bytes()) != lease.kernel.hash {
                return Err(StepError::HashMismatch {
                    what: "a kernel",
                    hash: lease.kernel.hash,
                });
            }
            bytes_downloaded += k.wgsl.len() as u64;
            inner.kernels.borrow_mut().insert(k.hash, k.clone());
            k
        }
    };

    let input = |name: &'static str| {
        lease
            .inputs
            .iter()
            .find(|i| i.name == name)
            .cloned()
            .ok_or(StepError::MissingInput {
                lease_id: lease.lease_id.clone(),
                name,
            })
    };
    let (a_ref, b_ref) = (input("a")?, input("b")?);
    let mut matrices = Vec::with_capacity(2);
    for blob in [a_ref, b_ref] {
        let cached = inner.blobs.borrow_mut().get(&blob.hash);
        let values = match cached {
            Some(v) => {
                cache_hits += 1;
                v
            }
            None => {
                let bytes = inner
                    .relay
                    .get_bytes(&format!("/v1/blobs/{}", blob.hash))
                    .await?;
                if ContentHash::of(&bytes) != blob.hash {
                    return Err(StepError::HashMismatch {
                        what: "an input",
                        hash: blob.hash,
                    });
                }
                bytes_downloaded += bytes.len() as u64;
                let values = crate::encoding::bytes_to_f32s(&bytes).map_err(|source| {
                    StepError::BadInput {
                        hash: blob.hash,
                        source,
                    }
                })?;
                let values = Rc::new(values);
                inner.blobs.borrow_mut().insert(blob.hash, values.clone());
                values
            }
        };
        matrices.push(values);
    }
    let b = matrices.pop().expect("two inputs");
    let a = matrices.pop().expect("two inputs");
    Ok(Prepared {
        lease,
        kernel,
        a,
        b,
        bytes_downloaded,
        cache_hits,
    })
}

async fn release(inner: &Inner, lease: &Lease) -> Result<(), StepError> {
    let body = ReleaseRequest {
        public_key: inner.key.public_hex(),
    };
    let path = format!("/v1/leases/{}/release", lease.lease_id);
    let _: serde_json::Value = inner.relay.post_json(&path, &body).await?;
    Ok(())
}
