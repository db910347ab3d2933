//! The contributor's side of the relay protocol, shared by the browser module (`web`) and the
//! native worker: fetching a lease's kernel and inputs with their content hashes checked, and
//! turning an output into a signed submission. HTTP itself is the caller's, behind [`Transport`].

use crate::encoding::{bytes_to_f32s, f32s_to_bytes, to_base64};
use crate::hash::ContentHash;
use crate::signing::ContributorKey;
use crate::wire::{AdapterClass, BlobRef, KernelRef, KernelSource, Lease, ResultSubmission};
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
}

/// Asks for a unit; `None` when the relay has no work. `adapter` says which GPU computes it.
pub async fn lease<T: Transport>(
    relay: &T,
    key: &ContributorKey,
    adapter: Option<&AdapterClass>,
) -> Result<Option<Lease>, ProtocolError<T::Error>> {
    let request = crate::wire::LeaseRequest {
        public_key: key.public_hex(),
        adapter: adapter.cloned(),
        partner: None,
        origin: None,
    };
    lease_with(relay, &request).await
}

/// Asks for a unit with a request of the caller's making (a partner widget's attribution, say).
pub async fn lease_with<T: Transport>(
    relay: &T,
    request: &crate::wire::LeaseRequest,
) -> Result<Option<Lease>, ProtocolError<T::Error>> {
    relay
        .post_json_optional("/v1/leases", request)
        .await
        .map_err(ProtocolError::Transport)
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

/// Fetches an f32 input blob, checking its hash and size. Returns the values and the bytes moved.
pub async fn fetch_f32_blob<T: Transport>(
    relay: &T,
    blob: &BlobRef,
) -> Result<(Vec<f32>, usize), ProtocolError<T::Error>> {
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
    let values = bytes_to_f32s(&bytes).map_err(|source| ProtocolError::BadInput {
        hash: blob.hash,
        source,
    })?;
    Ok((values, bytes.len()))
}

/// The lease's input called `name` ("a", "b").
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

/// The signed submission of `output` for `lease`.
pub fn submission(key: &ContributorKey, lease: &Lease, output: &[f32]) -> ResultSubmission {
    let bytes = f32s_to_bytes(output);
    ResultSubmission {
        lease_id: lease.lease_id.clone(),
        unit_id: lease.unit_id,
        public_key: key.public_hex(),
        signature: key.sign_result(lease.unit_id, &lease.lease_id, &lease.kernel.hash, &bytes),
        output: to_base64(&bytes),
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

/// Gives a lease back unworked.
pub async fn release<T: Transport>(
    relay: &T,
    key: &ContributorKey,
    lease: &Lease,
) -> Result<(), ProtocolError<T::Error>> {
    let body = crate::wire::ReleaseRequest {
        public_key: key.public_hex(),
    };
    let path = format!("/v1/leases/{}/release", lease.lease_id);
    let _: serde_json::Value = relay
        .post_json(&path, &body)
        .await
        .map_err(ProtocolError::Transport)?;
    Ok(())
}
