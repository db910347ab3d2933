//! The contributor's side of the relay protocol, shared by the browser module (`web`) and the
//! native worker: fetching a lease's kernel and inputs with their content hashes checked, and
//! turning an output into a signed submission. HTTP itself is the caller's, behind [`Transport`].

use crate::encoding::{bytes_to_f32s, f32s_to_bytes, to_base64};
use crate::hash::ContentHash;
use crate::signing::ContributorKey;
use crate::wire::{
    AdapterClass, BlobRef, KernelRef, KernelSource, Lease, MAX_OUTPUT_BYTES, MatmulShape,
    ResultSubmission,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// What a lease asks the GPU to run: [`work`] reads it from a lease, and
/// [`crate::gpu::Gpu::run_work`] runs it.
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

/// The lease's work and the input blobs it reads, in the order [`crate::gpu::Gpu::run_work`]
/// takes them. Fails on a lease that is neither (or both) a matmul and a custom dispatch, a
/// matmul without inputs "a" and "b", a custom input without a binding, or an output over
/// [`MAX_OUTPUT_BYTES`].
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
    match (lease.shape, lease.dispatch) {
        (Some(shape), None) => Ok((
            Work::Matmul(shape),
            vec![input(lease, "a")?, input(lease, "b")?],
        )),
        (None, Some(dispatch)) => {
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
        _ => Err(bad(
            "it must have exactly one of a matmul shape and a dispatch".into(),
        )),
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
    reason: crate::wire::ReleaseReason,
) -> Result<(), ProtocolError<T::Error>> {
    let body = crate::wire::ReleaseRequest::signed(key, &lease.lease_id, reason);
    let path = format!("/v1/leases/{}/release", lease.lease_id);
    let _: serde_json::Value = relay
        .post_json(&path, &body)
        .await
        .map_err(ProtocolError::Transport)?;
    Ok(())
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

    fn lease(
        shape: Option<MatmulShape>,
        dispatch: Option<Dispatch>,
        inputs: Vec<BlobRef>,
    ) -> Lease {
        Lease {
            lease_id: "l1".into(),
            unit_id: 1,
            job_id: 1,
            kernel: KernelRef {
                id: "k".into(),
                hash: ContentHash::of(b"k"),
            },
            shape,
            dispatch,
            inputs,
            output_bytes: 16,
            flop: 0,
            deadline_unix_ms: 0,
        }
    }

    const SHAPE: MatmulShape = MatmulShape { m: 2, n: 2, k: 2 };
    const DISPATCH: Dispatch = Dispatch {
        workgroups: [4, 1, 1],
        output_binding: 2,
    };

    #[test]
    fn matmul_work_reads_a_then_b() {
        let l = lease(Some(SHAPE), None, vec![blob("b", None), blob("a", None)]);
        let (got, inputs) = work::<std::io::Error>(&l).unwrap();
        assert_eq!(got, Work::Matmul(SHAPE));
        let names: Vec<&str> = inputs.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let l = lease(Some(SHAPE), None, vec![blob("a", None)]);
        assert!(matches!(
            work::<std::io::Error>(&l),
            Err(Error::MissingInput { .. })
        ));
    }

    #[test]
    fn dispatch_work_binds_inputs_in_lease_order() {
        let l = lease(
            None,
            Some(DISPATCH),
            vec![blob("y", Some(1)), blob("x", Some(0))],
        );
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
        let no_binding = lease(None, Some(DISPATCH), vec![blob("x", None)]);
        let both = lease(Some(SHAPE), Some(DISPATCH), vec![]);
        let neither = lease(None, None, vec![]);
        let mut huge = lease(None, Some(DISPATCH), vec![blob("x", Some(0))]);
        huge.output_bytes = MAX_OUTPUT_BYTES + 4;
        for (l, needle) in [
            (no_binding, "input 'x' has no binding"),
            (both, "exactly one"),
            (neither, "exactly one"),
            (huge, "over"),
        ] {
            let err = work::<std::io::Error>(&l).unwrap_err();
            assert!(matches!(err, Error::BadLease { .. }), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn byte_submissions_sign_the_bytes() {
        let key = ContributorKey::from_secret_bytes(&[7; 32]).unwrap();
        let l = lease(None, Some(DISPATCH), vec![]);
        let output = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let s = submission_of_bytes(&key, &l, &output);
        assert_eq!(s.output, to_base64(&output));
        let f32_output = [1.5f32, -2.0];
        assert_eq!(
            submission(&key, &l, &f32_output).signature,
            submission_of_bytes(&key, &l, &f32s_to_bytes(&f32_output)).signature
        );
    }
}
