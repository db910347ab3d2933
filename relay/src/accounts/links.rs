//! Wallet links: from the moment a session key links an Ethereum address, its credits go there.
//!
//! [`link`] checks a `POST /v1/auth/link` request in order, each refusal with its own code and
//! none of them writing anything: the session key; the message ([`sign_in`]: its form, domain,
//! URI, chain, times, and the session key in its resources); the session key's signature over it
//! ([`glowworm_protocol::signing::verify_link`]); the wallet signature's form; that the nonce is usable;
//! and the wallet signature itself. Only then does one transaction ([`record`]) use up the
//! nonce, store the link with its evidence, and move the key's anonymous balance to the address.
//! A key links at most once; linking it again to the same address moves nothing.

use crate::accounts::contributors;
use crate::accounts::ledger;
use crate::accounts::nonces;
use crate::accounts::sign_in::{self, Expected};
use crate::config::Config;
use crate::error::ApiError;
use crate::ids::canonical_key;
use crate::store::Db;
use axum::http::StatusCode;
use glowworm_protocol::signing::{SignatureError, verify_link};
use glowworm_protocol::wire::{LinkReply, LinkRequest};
use rusqlite::{Connection, OptionalExtension, params};

/// The address `public_key` is linked to, if any.
pub fn address_of(conn: &Connection, public_key: &str) -> Result<Option<String>, ApiError> {
    let address = conn
        .prepare_cached("SELECT address FROM links WHERE public_key = ?1")?
        .query_row([public_key], |row| row.get(0))
        .optional()?;
    Ok(address)
}

/// The ledger account `public_key`'s credits go to: its linked address, or itself.
pub fn account_of(conn: &Connection, public_key: &str) -> Result<String, ApiError> {
    Ok(address_of(conn, public_key)?.unwrap_or_else(|| public_key.to_string()))
}

/// The session keys linked to `address`.
pub fn keys_of(conn: &Connection, address: &str) -> Result<Vec<String>, ApiError> {
    Ok(conn
        .prepare_cached("SELECT public_key FROM links WHERE address = ?1")?
        .query_map([address], |row| row.get(0))?
        .collect::<Result<_, _>>()?)
}

/// Checks a link request and, if every check passes, links. The message must name the relay's
/// own domain ([`crate::Config::siwe_domain`]: the host of `public_origin`), whatever Host the
/// request was sent with.
pub async fn link(
    db: &Db,
    config: &Config,
    now: i64,
    request: LinkRequest,
) -> Result<LinkReply, ApiError> {
    let public_key = canonical_key(&request.public_key)?;

    let message = sign_in::parse(&request.message)?;
    let domain = config.siwe_domain();
    let origin = config.public_origin();
    // With siwe_domain set the URI may be http or https; else it is on the public origin.
    let scheme = match &config.siwe_domain {
        Some(_) => None,
        None => origin.split_once("://").map(|(scheme, _)| scheme),
    };
    sign_in::check(
        &message,
        &Expected {
            domain: &domain,
            scheme,
            chain_ids: &config.siwe_chain_ids,
            public_key: &public_key,
            now_ms: now,
        },
    )?;
    check_session_signature(&public_key, &request.session_signature, &request.message)?;
    let rpc = config.eth_rpc_url.as_deref();
    let signature = sign_in::parse_wallet_signature(&request.signature, rpc.is_some())?;

    // The cheap check of the nonce comes before the wallet check, which may ask an Ethereum node.
    let nonce = message.nonce.clone();
    db.call(move |conn| nonces::require_usable(conn, &nonce, now))
        .await?;
    sign_in::check_wallet_signature(&message, &signature, rpc).await?;

    let link = Link {
        public_key,
        address: siwe::eip55(&message.address),
        chain_id: message.chain_id as i64,
        nonce: message.nonce.clone(),
        siwe_message: request.message,
        wallet_signature: request.signature,
        session_signature: request.session_signature.to_ascii_lowercase(),
    };
    db.call(move |conn| record(conn, &link, now)).await
}

fn check_session_signature(
    public_key: &str,
    signature: &str,
    message: &str,
) -> Result<(), ApiError> {
    verify_link(public_key, signature, message).map_err(|e| match e {
        SignatureError::MalformedSignature => ApiError::bad_request(
            "bad_session_signature_format",
            "session_signature must be 128 hex characters (an ed25519 signature)",
        ),
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_session_signature",
            "session_signature is not the session key's signature of the message (over \
             LINK_DOMAIN followed by the message, see glowworm_protocol::signing::link_message)",
        ),
    })
}

/// A checked link, ready to record.
struct Link {
    public_key: String,
    /// EIP-55.
    address: String,
    chain_id: i64,
    nonce: String,
    siwe_message: String,
    wallet_signature: String,
    session_signature: String,
}

/// The one transaction that links: uses up the nonce, stores the link and moves the key's
/// anonymous balance. Refuses (and so changes nothing) when the nonce is no longer usable or the
/// key is linked to another address.
fn record(conn: &mut Connection, link: &Link, now_ms: i64) -> Result<LinkReply, ApiError> {
    let tx = conn.transaction()?;
    nonces::consume(&tx, &link.nonce, now_ms)?;
    let credits_moved = match address_of(&tx, &link.public_key)? {
        Some(address) if address == link.address => 0,
        Some(address) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_linked",
                format!(
                    "session key {} is already linked to {address}; a key links one address",
                    link.public_key
                ),
            ));
        }
        None => {
            tx.execute(
                "INSERT INTO links (public_key, address, chain_id, linked_at_ms, siwe_message,
                                    wallet_signature, session_signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    link.public_key,
                    link.address,
                    link.chain_id,
                    now_ms,
                    link.siwe_message,
                    link.wallet_signature,
                    link.session_signature
                ],
            )?;
            contributors::seen(&tx, &link.public_key, now_ms)?;
            ledger::move_for_link(&tx, &link.public_key, &link.address, now_ms)?
        }
    };
    let balance = ledger::balance(&tx, &link.address)?;
    tx.commit()?;
    tracing::info!(
        "session key {} linked to {} ({credits_moved} credits moved)",
        link.public_key,
        link.address
    );
    Ok(LinkReply {
        address: link.address.clone(),
        public_key: link.public_key.clone(),
        credits_moved,
        balance,
    })
}
