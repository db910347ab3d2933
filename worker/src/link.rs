//! `glowworm-worker link`: credit this worker's results to an Ethereum address, with one wallet
//! signature made anywhere (any wallet's "sign message"). The worker asks the relay for a nonce,
//! prints the Sign-In with Ethereum message naming its key ([`prepare`]); the operator signs it and
//! hands the signature back; the worker adds its own session signature and posts both ([`finish`]).

use crate::client::RelayClient;
use glowworm_protocol::link::{LinkError, SiweFields, siwe_message};
use glowworm_protocol::protocol::RelayError;
use glowworm_protocol::protocol::Transport;
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{LinkReply, LinkRequest, NonceReply};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How long the operator has to sign the message.
pub const VALIDITY: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
pub enum LinkCommandError {
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    Message(#[from] LinkError),
    #[error("the relay URL {0} has no host to sign in to")]
    NoHost(String),
    #[error("a wallet signature is 0x followed by 130 hex characters, got {0:?}")]
    MalformedSignature(String),
}

/// Asks the relay for a nonce and builds the message the wallet must sign.
pub async fn prepare(
    client: &RelayClient,
    key: &ContributorKey,
    address: &str,
    chain_id: u64,
) -> Result<String, LinkCommandError> {
    let base = reqwest::Url::parse(client.base())
        .map_err(|_| LinkCommandError::NoHost(client.base().to_string()))?;
    let host = base
        .host_str()
        .ok_or_else(|| LinkCommandError::NoHost(client.base().to_string()))?;
    let domain = match base.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let nonce: NonceReply = client
        .post_json("/v1/auth/nonce", &serde_json::json!({}))
        .await?;
    let now = OffsetDateTime::now_utc();
    let rfc3339 = |t: OffsetDateTime| t.format(&Rfc3339).expect("a UTC time formats as RFC 3339");
    Ok(siwe_message(&SiweFields {
        domain,
        address: address.to_string(),
        uri: base.origin().ascii_serialization(),
        chain_id,
        nonce: nonce.nonce,
        issued_at: rfc3339(now),
        expiration_time: rfc3339(now + VALIDITY),
        session_public_key: key.public_hex(),
    })?)
}

/// Posts the wallet's signature of `message` with this worker's session signature.
pub async fn finish(
    client: &RelayClient,
    key: &ContributorKey,
    message: &str,
    wallet_signature: &str,
) -> Result<LinkReply, LinkCommandError> {
    let signature = wallet_signature.trim();
    let well_formed = signature.len() == 132
        && signature.starts_with("0x")
        && signature[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return Err(LinkCommandError::MalformedSignature(signature.to_string()));
    }
    let request = LinkRequest {
        message: message.to_string(),
        signature: signature.to_string(),
        public_key: key.public_hex(),
        session_signature: key.sign_link(message),
    };
    Ok(client.post_json("/v1/auth/link", &request).await?)
}
