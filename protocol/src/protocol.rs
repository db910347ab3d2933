//! The contributor's side of the relay protocol, shared by the browser module and the native
//! worker: leasing, fetching a lease's kernel and inputs with their content hashes checked (and
//! cached, by [`Fetcher`]), turning an output into a signed submission, and releasing. HTTP itself
//! is the caller's, behind [`Transport`]; whichever HTTP client it is (the page's `fetch`, reqwest
//! in the worker and the requester CLI, hyper in the benches), its failures are a [`RelayError`].

use crate::cache::BlobCache;
use crate::encoding::{bytes_to_f32s, f32s_to_bytes, to_base64};
use crate::hash::ContentHash;
use crate::signing::ContributorKey;
use crate::wire::{
    AdapterClass, BlobRef, KernelRef, KernelSource, Lease, LeaseWork, MAX_OUTPUT_BYTES,
    MatmulShape, ReleaseReason, ResultSubmission,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

mod relay_error;
pub use relay_error::RelayError;

/// HTTP to the relay: `fetch` in the browser, reqwest natively. Paths start with "/v1/".
// Each implementation is used on one kind of executor, so no `Send` bound is wanted here.
#[allow(async_fn_in_trait)]
pub trait Transport {
    type Error: std::error::Error + 'static;
    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, Self::Error>;
    async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, Self::Error>;
    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Self::Error>;
    /// Like `post_json`, but a 204 No Content reply is `None`.
    async fn post_json_optional<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, Self::Error>;
    /// The relay's error code (`ErrorBody.error.code`) when `error` is a refusal with one.
    fn refusal_code(error: &Self::Error) -> Option<&str> {
        let _ = error;
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Transport(E),
    #[error("the relay sent {what} whose content does not match its hash {hash}")]
    HashMismatch {
        what: &'static str,
        hash: ContentHash,
    },
    #[error("input {hash} is {got} bytes, the lease said {expected}")]
    WrongSize {
        hash: ContentHash,
        got: usize,
        expected: u64,
    },
    #[error("input {hash}: {source}")]
    BadInput {
        hash: ContentHash,
        source: crate::encoding::DecodeError,
    },
    #[error("lease {lease_id} lacks input '{name}'")]
    MissingInput { lease_id: String, name: String },
    #[error("lease {lease_id} is malformed: {reason}")]
    BadLease { lease_id: String, reason: String },
}

/// What a lease asks the GPU to run, with its inputs' bindings: [`work`] reads it from a lease,
/// and the contributor's GPU runner (`glowworm_contributor::gpu::Gpu::run_work`) runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// C (m x n) = A (m x k) * B (k x n) with a catalogue matmul kernel; the inputs are A and B.
    Matmul(MatmulShape),
    /// A custom kernel dispatched once: input i is bound at `bindings[i]`, the output is
    /// `output_bytes` at `output_binding`.
    Dispatch {
        bindings: Vec<u32>,
        output_binding: u32,
        output_bytes: u64,
        workgroups: [u32; 3],
    },
}

/// The lease's work and the input blobs it reads, in the order the GPU runner
/// (`glowworm_contributor::gpu::Gpu::run_work`) takes them. Fails on a matmul without inputs "a"
/// and "b", a custom input without a binding, or an output over [`MAX_OUTPUT_BYTES`].
pub fn work<E: std::error::Error + 'static>(
    lease: &Lease,
) -> Result<(Work, Vec<&BlobRef>), ProtocolError<E>> {
    let bad = |reason: String| ProtocolError::BadLease {
        lease_id: lease.lease_id.clone(),
        reason,
    };
    if lease.output_bytes > MAX_OUTPUT_BYTES {
        return Err(bad(format!(
            "its output of {} bytes is over {MAX_OUTPUT_BYTES}",
            lease.output_bytes
        )));
    }
    match lease.work {
        LeaseWork::Matmul { shape } => Ok((
            Work::Matmul(shape),
            vec![input(lease, "a")?, input(lease, "b")?],
        )),
        LeaseWork::Dispatch(dispatch) => {
            let bindings = lease
                .inputs
                .iter()
                .map(|i| {
                    i.binding
                        .ok_or_else(|| bad(format!("input '{}' has no binding", i.name)))
                })
                .collect::<Result<_, _>>()?;
            let work = Work::Dispatch {
                bindings,
                output_binding: dispatch.output_binding,
                output_bytes: lease.output_bytes,
                workgroups: dispatch.workgroups,
            };
            Ok((work, lease.inputs.iter().collect()))
        }
    }
}

/// Asks for a unit; `None` when the relay has no work. `adapter` says which GPU computes it;
/// `now_ms` is the time the request is signed at (Unix milliseconds).
pub async fn lease<T: Transport>(
    relay: &T,
    key: &ContributorKey,
    adapter: Option<&AdapterClass>,
    now_ms: i64,
) -> Result<Option<Lease>, ProtocolError<T::Error>> {
    let request = crate::wire::LeaseRequest::signed(key, now_ms, adapter.cloned(), None, None);
    lease_with(relay, &request).await
}

/// Asks for a unit with a signed request of the caller's making ([`crate::wire::LeaseRequest::signed`],
/// with a partner widget's attribution, say). A key that holds as many leases as the relay
/// lets it (429 `lease_cap`) has no work for now either: `None`, and it asks again later.
pub async fn lease_with<T: Transport>(
    relay: &T,
    request: &crate::wire::LeaseRequest,
) -> Result<Option<Lease>, ProtocolError<T::Error>> {
    match relay.post_json_optional("/v1/leases", request).await {
        Err(e) if T::refusal_code(&e) == Some("lease_cap") => Ok(None),
        other => other.map_err(ProtocolError::Transport),
    }
}

/// Fetches a kernel's source and checks it is the one the lease names.
pub async fn fetch_kernel<T: Transport>(
    relay: &T,
    kernel: &KernelRef,
) -> Result<KernelSource, ProtocolError<T::Error>> {
    let path = format!("/v1/kernels/{}", kernel.hash);
    let source: KernelSource = relay
        .get_json(&path)
        .await
        .map_err(ProtocolError::Transport)?;
    if ContentHash::of(source.wgsl.as_bytes()) != kernel.hash {
        return Err(ProtocolError::HashMismatch {
            what: "a kernel",
            hash: kernel.hash,
        });
    }
    Ok(source)
}

/// Fetches an input blob's bytes, checking its hash and size (custom kernels' inputs are any
/// bytes).
pub async fn fetch_blob<T: Transport>(
    relay: &T,
    blob: &BlobRef,
) -> Result<Vec<u8>, ProtocolError<T::Error>> {
    let bytes = relay
        .get_bytes(&format!("/v1/blobs/{}", blob.hash))
        .await
        .map_err(ProtocolError::Transport)?;
    if ContentHash::of(&bytes) != blob.hash {
        return Err(ProtocolError::HashMismatch {
            what: "an input",
            hash: blob.hash,
        });
    }
    if bytes.len() as u64 != blob.bytes {
        return Err(ProtocolError::WrongSize {
            hash: blob.hash,
            got: bytes.len(),
            expected: blob.bytes,
        });
    }
    Ok(bytes)
}

/// Fetches an f32 input blob (a matmul unit's), checking its hash and size. Returns the values
/// and the bytes moved.
pub async fn fetch_f32_blob<T: Transport>(
    relay: &T,
    blob: &BlobRef,
) -> Result<(Vec<f32>, usize), ProtocolError<T::Error>> {
    let bytes = fetch_blob(relay, blob).await?;
    let values = bytes_to_f32s(&bytes).map_err(|source| ProtocolError::BadInput {
        hash: blob.hash,
        source,
    })?;
    Ok((values, bytes.len()))
}

/// The lease's input called `name` ("a", "b" for matmul units).
pub fn input<'a, E: std::error::Error + 'static>(
    lease: &'a Lease,
    name: &str,
) -> Result<&'a BlobRef, ProtocolError<E>> {
    lease
        .inputs
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| ProtocolError::MissingInput {
            lease_id: lease.lease_id.clone(),
            name: name.to_string(),
        })
}

/// The signed submission of an f32 `output` (a matmul unit's) for `lease`.
pub fn submission(key: &ContributorKey, lease: &Lease, output: &[f32]) -> ResultSubmission {
    submission_of_bytes(key, lease, &f32s_to_bytes(output))
}

/// The signed submission of `output`, as bytes (a custom kernel's output buffer), for `lease`.
/// The signature covers exactly these bytes.
pub fn submission_of_bytes(key: &ContributorKey, lease: &Lease, output: &[u8]) -> ResultSubmission {
    ResultSubmission {
        lease_id: lease.lease_id.clone(),
        unit_id: lease.unit_id,
        public_key: key.public_hex(),
        signature: key.sign_result(lease.unit_id, &lease.lease_id, &lease.kernel.hash, output),
        output: to_base64(output),
    }
}

/// Submits a signed result; the receipt says what was credited.
pub async fn submit<T: Transport>(
    relay: &T,
    submission: &ResultSubmission,
) -> Result<crate::wire::ResultReceipt, ProtocolError<T::Error>> {
    relay
        .post_json("/v1/results", submission)
        .await
        .map_err(ProtocolError::Transport)
}

/// Gives a lease back unworked, saying why.
pub async fn release<T: Transport>(
    relay: &T,
    key: &ContributorKey,
    lease: &Lease,
    reason: ReleaseReason,
) -> Result<(), ProtocolError<T::Error>> {
    let body = crate::wire::ReleaseRequest::signed(key, &lease.lease_id, reason);
    let path = format!("/v1/leases/{}/release", lease.lease_id);
    let _: serde_json::Value = relay
        .post_json(&path, &body)
        .await
        .map_err(ProtocolError::Transport)?;
    Ok(())
}

/// A unit's kernel and inputs in memory, as [`Fetcher::fetch`] brought them.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// What to run ([`work`]).
    pub work: Work,
    pub kernel: Arc<KernelSource>,
    /// The blobs `work` reads, in the order [`work`] lists them.
    pub inputs: Vec<Arc<Vec<u8>>>,
    /// Whether the kernel came from the cache.
    pub kernel_cached: bool,
    /// How many of the inputs came from the cache.
    pub inputs_cached: u32,
    /// Input bytes downloaded for this unit: those of the inputs not in the cache.
    pub input_bytes_downloaded: u64,
    /// Input bytes the unit reads, cached or not: without the cache, `input_bytes_downloaded`.
    pub input_bytes_used: u64,
}

impl Fetched {
    /// The kernel and inputs found in the caches.
    pub fn cache_hits(&self) -> u32 {
        u32::from(self.kernel_cached) + self.inputs_cached
    }

    /// Bytes downloaded for this unit: the kernel's source when it was not cached, and the inputs
    /// not in the cache.
    pub fn bytes_downloaded(&self) -> u64 {
        let kernel = if self.kernel_cached {
            0
        } else {
            self.kernel.wgsl.len() as u64
        };
        kernel + self.input_bytes_downloaded
    }
}

/// The one fetch path of every contributor (the page, the native worker, the benches' simulated
/// contributors): brings a lease's kernel and inputs into memory, each checked against its content
/// hash and cached by it, so a kernel or a matrix panel that many units share is downloaded once.
/// A lease whose kernel or inputs cannot be fetched is given back to the relay at once.
///
/// Shared by the units a contributor works on at once (`&self`); the caches are locked only
/// between downloads, never across one.
pub struct Fetcher {
    kernels: Mutex<HashMap<ContentHash, Arc<KernelSource>>>,
    /// At most this many kernels are kept; every custom-kernel job brings a new one.
    max_kernels: usize,
    blobs: Mutex<BlobCache<Arc<Vec<u8>>>>,
}

impl Fetcher {
    /// Caches at most `max_kernels` kernels (the GPU runner's pipeline cache is bounded alike)
    /// and `blob_budget_bytes` of inputs.
    pub fn new(max_kernels: usize, blob_budget_bytes: usize) -> Self {
        Fetcher {
            kernels: Mutex::new(HashMap::new()),
            max_kernels,
            blobs: Mutex::new(BlobCache::new(blob_budget_bytes)),
        }
    }

    /// The lease's work, kernel and inputs, from the caches where possible. When that fails
    /// (a malformed lease, the relay unreachable, bytes that do not match their hash), the
    /// lease is released ([`ReleaseReason::FetchFailed`]) before the error is returned, so the
    /// unit does not wait for its deadline.
    pub async fn fetch<T: Transport>(
        &self,
        relay: &T,
        key: &ContributorKey,
        lease: &Lease,
    ) -> Result<Fetched, ProtocolError<T::Error>> {
        match self.fetch_only(relay, lease).await {
            Ok(fetched) => Ok(fetched),
            Err(e) => {
                let _ = release(relay, key, lease, ReleaseReason::FetchFailed).await;
                Err(e)
            }
        }
    }

    async fn fetch_only<T: Transport>(
        &self,
        relay: &T,
        lease: &Lease,
    ) -> Result<Fetched, ProtocolError<T::Error>> {
        let (work, blobs) = work(lease)?;
        let cached_kernel = lock(&self.kernels).get(&lease.kernel.hash).cloned();
        let kernel_cached = cached_kernel.is_some();
        let kernel = match cached_kernel {
            Some(kernel) => kernel,
            None => {
                let kernel = Arc::new(fetch_kernel(relay, &lease.kernel).await?);
                let mut kernels = lock(&self.kernels);
                if kernels.len() >= self.max_kernels {
                    kernels.clear();
                }
                kernels.insert(kernel.hash, kernel.clone());
                kernel
            }
        };

        let mut inputs = Vec::with_capacity(blobs.len());
        let mut inputs_cached = 0;
        let mut input_bytes_downloaded = 0;
        let mut input_bytes_used = 0;
        for blob in blobs {
            input_bytes_used += blob.bytes;
            let cached = lock(&self.blobs).get(&blob.hash);
            let bytes = match cached {
                Some(bytes) => {
                    inputs_cached += 1;
                    bytes
                }
                None => {
                    let bytes = Arc::new(fetch_blob(relay, blob).await?);
                    input_bytes_downloaded += bytes.len() as u64;
                    lock(&self.blobs).insert(blob.hash, bytes.clone(), bytes.len());
                    bytes
                }
            };
            inputs.push(bytes);
        }
        Ok(Fetched {
            work,
            kernel,
            inputs,
            kernel_cached,
            inputs_cached,
            input_bytes_downloaded,
            input_bytes_used,
        })
    }
}

/// A cache's lock. A panic while it was held left the cache as consistent as any other moment
/// (each change is one insert or one clear), so a poisoned lock is simply taken.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Dispatch;

    type Error = ProtocolError<std::io::Error>;

    fn blob(name: &str, binding: Option<u32>) -> BlobRef {
        BlobRef {
            name: name.into(),
            hash: ContentHash::of(name.as_bytes()),
            bytes: 16,
            binding,
        }
    }

    fn lease(work: LeaseWork, inputs: Vec<BlobRef>) -> Lease {
        Lease {
            lease_id: "l1".into(),
            unit_id: 1,
            job_id: 1,
            kernel: KernelRef {
                id: "k".into(),
                hash: ContentHash::of(b"k"),
            },
            work,
            inputs,
            output_bytes: 16,
            flop: 0,
            deadline_unix_ms: 0,
        }
    }

    const SHAPE: MatmulShape = MatmulShape { m: 2, n: 2, k: 2 };
    const MATMUL: LeaseWork = LeaseWork::Matmul { shape: SHAPE };
    const DISPATCH: LeaseWork = LeaseWork::Dispatch(Dispatch {
        workgroups: [4, 1, 1],
        output_binding: 2,
    });

    #[test]
    fn matmul_work_reads_a_then_b() {
        let l = lease(MATMUL, vec![blob("b", None), blob("a", None)]);
        let (got, inputs) = work::<std::io::Error>(&l).unwrap();
        assert_eq!(got, Work::Matmul(SHAPE));
        let names: Vec<&str> = inputs.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let l = lease(MATMUL, vec![blob("a", None)]);
        assert!(matches!(
            work::<std::io::Error>(&l),
            Err(Error::MissingInput { .. })
        ));
    }

    #[test]
    fn dispatch_work_binds_inputs_in_lease_order() {
        let l = lease(DISPATCH, vec![blob("y", Some(1)), blob("x", Some(0))]);
        let (got, inputs) = work::<std::io::Error>(&l).unwrap();
        assert_eq!(
            got,
            Work::Dispatch {
                bindings: vec![1, 0],
                output_binding: 2,
                output_bytes: 16,
                workgroups: [4, 1, 1],
            }
        );
        assert_eq!(inputs[0].name, "y");
    }

    #[test]
    fn malformed_leases_are_refused() {
        let no_binding = lease(DISPATCH, vec![blob("x", None)]);
        let mut huge = lease(DISPATCH, vec![blob("x", Some(0))]);
        huge.output_bytes = MAX_OUTPUT_BYTES + 4;
        for (l, needle) in [(no_binding, "input 'x' has no binding"), (huge, "over")] {
            let err = work::<std::io::Error>(&l).unwrap_err();
            assert!(matches!(err, Error::BadLease { .. }), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn byte_submissions_sign_the_bytes() {
        let key = ContributorKey::from_secret_bytes(&[7; 32]).unwrap();
        let l = lease(DISPATCH, vec![]);
        let output = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let s = submission_of_bytes(&key, &l, &output);
        assert_eq!(s.output, to_base64(&output));
        let f32_output = [1.5f32, -2.0];
        assert_eq!(
            submission(&key, &l, &f32_output).signature,
            submission_of_bytes(&key, &l, &f32s_to_bytes(&f32_output)).signature
        );
    }

    /// A relay in memory: serves `kernel` and the blobs it holds, logs every request.
    struct FakeRelay {
        kernel: KernelSource,
        blobs: HashMap<ContentHash, Vec<u8>>,
        log: Mutex<Vec<String>>,
    }

    impl FakeRelay {
        fn new(blobs: &[&[u8]]) -> FakeRelay {
            let wgsl = "@compute @workgroup_size(1) fn main() {}".to_string();
            FakeRelay {
                kernel: KernelSource {
                    id: "k".into(),
                    hash: ContentHash::of(wgsl.as_bytes()),
                    entry_point: "main".into(),
                    wgsl,
                    tile: [1, 1],
                },
                blobs: blobs
                    .iter()
                    .map(|b| (ContentHash::of(b), b.to_vec()))
                    .collect(),
                log: Mutex::new(Vec::new()),
            }
        }

        fn lease(&self, inputs: &[(&str, &[u8])]) -> Lease {
            let mut l = lease(
                MATMUL,
                inputs
                    .iter()
                    .map(|(name, bytes)| BlobRef {
                        name: name.to_string(),
                        hash: ContentHash::of(bytes),
                        bytes: bytes.len() as u64,
                        binding: None,
                    })
                    .collect(),
            );
            l.kernel = KernelRef {
                id: "k".into(),
                hash: self.kernel.hash,
            };
            l
        }

        fn requests(&self) -> Vec<String> {
            std::mem::take(&mut *self.log.lock().unwrap())
        }

        fn logged(&self, request: String) {
            self.log.lock().unwrap().push(request);
        }
    }

    fn not_found(path: &str) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, path.to_string())
    }

    impl Transport for FakeRelay {
        type Error = std::io::Error;

        async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, Self::Error> {
            self.logged(format!("GET {path}"));
            let value = serde_json::to_value(&self.kernel).unwrap();
            Ok(serde_json::from_value(value).unwrap())
        }

        async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, Self::Error> {
            self.logged(format!("GET {path}"));
            let hash = path.trim_start_matches("/v1/blobs/");
            let found = self.blobs.iter().find(|(h, _)| h.to_string() == hash);
            // A blob the relay lacks comes back as other bytes, which do not match the hash.
            Ok(found.map_or_else(|| b"other bytes".to_vec(), |(_, b)| b.clone()))
        }

        async fn post_json<B: Serialize, T: DeserializeOwned>(
            &self,
            path: &str,
            _body: &B,
        ) -> Result<T, Self::Error> {
            self.logged(format!("POST {path}"));
            serde_json::from_value(serde_json::json!({})).map_err(|_| not_found(path))
        }

        async fn post_json_optional<B: Serialize, T: DeserializeOwned>(
            &self,
            path: &str,
            _body: &B,
        ) -> Result<Option<T>, Self::Error> {
            Err(not_found(path))
        }
    }

    #[test]
    fn the_fetcher_downloads_each_kernel_and_input_once() {
        let (a, b, c) = (&[1u8; 16][..], &[2u8; 16][..], &[3u8; 16][..]);
        let relay = FakeRelay::new(&[a, b, c]);
        let key = ContributorKey::from_secret_bytes(&[7; 32]).unwrap();
        let fetcher = Fetcher::new(4, 1 << 20);

        let first = relay.lease(&[("a", a), ("b", b)]);
        let got = pollster::block_on(fetcher.fetch(&relay, &key, &first)).unwrap();
        assert_eq!(got.work, Work::Matmul(SHAPE));
        assert_eq!(got.inputs, [Arc::new(a.to_vec()), Arc::new(b.to_vec())]);
        assert_eq!((got.cache_hits(), got.input_bytes_used), (0, 32));
        assert_eq!(got.input_bytes_downloaded, 32);
        let kernel_bytes = relay.kernel.wgsl.len() as u64;
        assert_eq!(got.bytes_downloaded(), kernel_bytes + 32);
        assert_eq!(relay.requests().len(), 3, "the kernel and two inputs");

        // The next unit shares its kernel and its row panel "a".
        let second = relay.lease(&[("a", a), ("b", c)]);
        let got = pollster::block_on(fetcher.fetch(&relay, &key, &second)).unwrap();
        assert!(got.kernel_cached);
        assert_eq!((got.inputs_cached, got.cache_hits()), (1, 2));
        assert_eq!((got.bytes_downloaded(), got.input_bytes_used), (16, 32));
        assert_eq!(
            relay.requests(),
            [format!("GET /v1/blobs/{}", ContentHash::of(c))]
        );
    }

    #[test]
    fn a_failed_fetch_releases_the_lease() {
        let (a, b) = (&[1u8; 16][..], &[2u8; 16][..]);
        // The relay has "a" but sends other bytes for "b".
        let relay = FakeRelay::new(&[a]);
        let key = ContributorKey::from_secret_bytes(&[7; 32]).unwrap();
        let fetcher = Fetcher::new(4, 1 << 20);
        let l = relay.lease(&[("a", a), ("b", b)]);
        let err = pollster::block_on(fetcher.fetch(&relay, &key, &l)).unwrap_err();
        assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
        let requests = relay.requests();
        assert_eq!(requests.last().unwrap(), "POST /v1/leases/l1/release");

        // A malformed lease is released too, before anything is fetched.
        let mut huge = relay.lease(&[("a", a), ("b", b)]);
        huge.output_bytes = MAX_OUTPUT_BYTES + 4;
        let err = pollster::block_on(fetcher.fetch(&relay, &key, &huge)).unwrap_err();
        assert!(matches!(err, Error::BadLease { .. }), "{err}");
        assert_eq!(relay.requests(), ["POST /v1/leases/l1/release"]);
    }
}
