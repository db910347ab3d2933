//! Contract wallets (ERC-1271): the relay asks the wallet contract itself whether it accepts a
//! signature, through an Ethereum node's JSON-RPC at `eth_rpc_url`.
//!
//! [`is_valid_signature`] first asks the node which chain it serves (`eth_chainId`): a contract
//! at the same address on another chain may belong to someone else, so only a message for the
//! node's own chain is checked. Then it calls `isValidSignature(bytes32 hash, bytes signature)`
//! on the message's address (`eth_call` on the latest block); the wallet accepts by returning
//! the magic value 0x1626ba7e. A call that reverts, or an address without code, is a refusal;
//! a node that cannot be reached or answers nonsense is 502 `rpc_failed`.

use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::Duration;

/// The selector of `isValidSignature(bytes32,bytes)`, which is also the value a contract
/// returns to accept the signature.
pub const MAGIC_VALUE: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];

/// How long one JSON-RPC call may take.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// What the contract wallet said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erc1271 {
    Valid,
    Invalid,
    /// The node serves this chain, not the message's; nothing was asked.
    OtherChain(u64),
}

/// ABI-encoded call data of `isValidSignature(hash, signature)`.
pub fn calldata(hash: &[u8; 32], signature: &[u8]) -> Vec<u8> {
    let padded = signature.len().div_ceil(32) * 32;
    let mut data = Vec::with_capacity(4 + 32 * 3 + padded);
    data.extend_from_slice(&MAGIC_VALUE);
    data.extend_from_slice(hash);
    data.extend_from_slice(&word(64)); // offset of the bytes argument: after the two head words
    data.extend_from_slice(&word(signature.len() as u64));
    data.extend_from_slice(signature);
    data.resize(4 + 32 * 3 + padded, 0);
    data
}

/// A big-endian 256-bit word holding `value`.
fn word(value: u64) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[24..].copy_from_slice(&value.to_be_bytes());
    word
}

fn client() -> Result<&'static reqwest::Client, ApiError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let client = reqwest::Client::builder()
        .timeout(RPC_TIMEOUT)
        .build()
        .map_err(|e| ApiError::Internal(format!("cannot build the JSON-RPC client: {e}")))?;
    Ok(CLIENT.get_or_init(|| client))
}

fn rpc_failed(why: impl std::fmt::Display) -> ApiError {
    tracing::warn!("Ethereum JSON-RPC failed: {why}");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "rpc_failed",
        "the relay could not ask its Ethereum node about this contract wallet; try again later",
    )
}

/// One JSON-RPC call: `Ok(Ok(result))`, or `Ok(Err(error object))` when the node answered with
/// an error (such as a revert).
async fn call(url: &str, method: &str, params: Value) -> Result<Result<Value, Value>, ApiError> {
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let reply = client()?
        .post(url)
        .json(&request)
        .send()
        .await
        .map_err(|e| rpc_failed(format!("{method}: {}", e.without_url())))?;
    if !reply.status().is_success() {
        return Err(rpc_failed(format!("{method}: HTTP {}", reply.status())));
    }
    let mut body: Value = reply
        .json()
        .await
        .map_err(|e| rpc_failed(format!("{method}: {}", e.without_url())))?;
    if let Some(error) = body.get_mut("error").filter(|error| !error.is_null()) {
        return Ok(Err(error.take()));
    }
    match body.get_mut("result") {
        Some(result) => Ok(Ok(result.take())),
        None => Err(rpc_failed(format!("{method}: neither result nor error"))),
    }
}

fn hex_bytes(value: &Value) -> Option<Vec<u8>> {
    hex::decode(value.as_str()?.strip_prefix("0x")?).ok()
}

/// Asks the contract at `address` on the node at `url` whether `signature` is valid for `hash`
/// (the EIP-191 hash of the message), if the node serves `chain_id`.
pub async fn is_valid_signature(
    url: &str,
    chain_id: u64,
    address: &[u8; 20],
    hash: &[u8; 32],
    signature: &[u8],
) -> Result<Erc1271, ApiError> {
    let served = call(url, "eth_chainId", json!([]))
        .await?
        .map_err(|e| rpc_failed(format!("eth_chainId: {e}")))?;
    let served = served
        .as_str()
        .and_then(|hex| u64::from_str_radix(hex.strip_prefix("0x")?, 16).ok())
        .ok_or_else(|| rpc_failed(format!("eth_chainId answered {served}")))?;
    if served != chain_id {
        return Ok(Erc1271::OtherChain(served));
    }
    let params = json!([
        {
            "to": format!("0x{}", hex::encode(address)),
            "data": format!("0x{}", hex::encode(calldata(hash, signature))),
        },
        "latest"
    ]);
    Ok(match call(url, "eth_call", params).await? {
        Ok(result) => {
            let bytes = hex_bytes(&result)
                .ok_or_else(|| rpc_failed(format!("eth_call answered {result}")))?;
            if bytes.starts_with(&MAGIC_VALUE) {
                Erc1271::Valid
            } else {
                Erc1271::Invalid
            }
        }
        // A revert: the contract refuses, or has no such function.
        Err(_) => Erc1271::Invalid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calldata_is_the_abi_encoding_of_hash_and_bytes() {
        let data = calldata(&[0x11; 32], &[0xaa; 65]);
        assert_eq!(data.len(), 4 + 32 * 3 + 96);
        assert_eq!(data[..4], [0x16, 0x26, 0xba, 0x7e]);
        assert_eq!(data[4..36], [0x11; 32]);
        assert_eq!(data[36 + 31], 64);
        assert_eq!(data[68 + 31], 65);
        assert_eq!(data[100..165], [0xaa; 65]);
        assert!(data[165..].iter().all(|&b| b == 0));
        assert_eq!(calldata(&[0; 32], &[1; 64]).len(), 4 + 32 * 3 + 64);
    }
}
