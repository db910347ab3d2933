//! Sign-In with Ethereum (EIP-4361) messages and the wallet signatures over them.
//!
//! [`parse`] reads a message with the `siwe` crate and insists it is written exactly as that crate
//! writes it back, so the text the wallet showed and signed is the text checked. [`check`] then
//! holds it to what the relay expects: its domain, a URI on that domain, an allowed chain, a
//! validity window around now, and the session key in its resources. The domain and the URI's
//! scheme come from the relay's settings (`public_origin`, or `siwe_domain`), never from the
//! request: a page on another site that gets a wallet to sign a message for itself cannot link
//! with it, so the wallet's warning about a message for another site means what it says. [`check_wallet_signature`]
//! recovers the signer of an EIP-191 `personal_sign` signature and, when the relay knows an
//! Ethereum node, asks contract wallets themselves ([`crate::accounts::erc1271`]).
//!
//! Each refusal has its own code; none of them touches the database.

use crate::accounts::erc1271::{self, Erc1271};
use crate::error::ApiError;
pub use crate::ids::is_domain;
use axum::http::StatusCode;
use glowworm_protocol::signing::session_resource;
use siwe::{Message, TimeStamp};

/// Longest message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Longest wallet signature accepted, in bytes (contract wallets' can be long).
pub const MAX_SIGNATURE_BYTES: usize = 4096;
/// How far in the future a message's issued-at or not-before time may be, for clocks that differ.
pub const MAX_CLOCK_SKEW_MS: i64 = 60_000;
/// Bytes of an ordinary wallet's `personal_sign` signature: r, s and v.
pub const EOA_SIGNATURE_BYTES: usize = 65;

/// What a message must match.
pub struct Expected<'a> {
    /// The relay's domain: host or host:port, compared without regard to case.
    pub domain: &'a str,
    /// The scheme the message's URI must have ("https", say); `None` allows http and https.
    pub scheme: Option<&'a str>,
    /// Allowed chain ids; empty allows any.
    pub chain_ids: &'a [u64],
    /// The session key (canonical lowercase hex) the message must name.
    pub public_key: &'a str,
    pub now_ms: i64,
}

/// The EIP-4361 message in `text`, or 400 `malformed_message` saying what is wrong with it.
pub fn parse(text: &str) -> Result<Message, ApiError> {
    let malformed = |why: String| {
        ApiError::bad_request(
            "malformed_message",
            format!("message is not a Sign-In with Ethereum (EIP-4361) message: {why}"),
        )
    };
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(malformed(format!(
            "it has {} bytes, more than the {MAX_MESSAGE_BYTES} accepted",
            text.len()
        )));
    }
    let message: Message = text.parse().map_err(|e| malformed(format!("{e}")))?;
    if message.to_string() != text {
        return Err(malformed(
            "it is not in the canonical layout (line breaks, blank lines, field order)".into(),
        ));
    }
    if message.chain_id > i64::MAX as u64 {
        return Err(malformed(format!(
            "chain id {} is too large",
            message.chain_id
        )));
    }
    Ok(message)
}

/// Holds a parsed message to the domain, URI, chain, times and session key the relay expects.
pub fn check(message: &Message, expected: &Expected) -> Result<(), ApiError> {
    let domain = message.domain.as_str();
    if !domain.eq_ignore_ascii_case(expected.domain) {
        return Err(ApiError::bad_request(
            "wrong_domain",
            format!(
                "the message is for {domain:?}, but this relay signs in for {:?} (its public \
                 origin); a message for another site is never accepted",
                expected.domain
            ),
        ));
    }
    let uri = &message.uri;
    let scheme = uri.scheme_str().to_ascii_lowercase();
    let scheme_ok = match expected.scheme {
        Some(expected) => scheme.eq_ignore_ascii_case(expected),
        None => matches!(scheme.as_str(), "http" | "https"),
    };
    let on_domain = scheme_ok
        && uri
            .authority_str()
            .is_some_and(|authority| authority.eq_ignore_ascii_case(expected.domain));
    if !on_domain {
        return Err(ApiError::bad_request(
            "wrong_uri",
            format!(
                "the message's URI {:?} is not an {} URI on {:?}",
                uri.as_str(),
                expected.scheme.unwrap_or("http(s)"),
                expected.domain
            ),
        ));
    }
    if !expected.chain_ids.is_empty() && !expected.chain_ids.contains(&message.chain_id) {
        return Err(ApiError::bad_request(
            "wrong_chain",
            format!(
                "chain id {} is not one this relay accepts ({:?})",
                message.chain_id, expected.chain_ids
            ),
        ));
    }
    check_times(message, expected.now_ms)?;
    let resource = session_resource(expected.public_key);
    if !message
        .resources
        .iter()
        .any(|r| r.as_str().eq_ignore_ascii_case(&resource))
    {
        return Err(ApiError::bad_request(
            "wrong_session_key",
            format!("the message's resources do not list {resource}, the session key posting it"),
        ));
    }
    Ok(())
}

fn unix_ms(time: &TimeStamp) -> i64 {
    let ms = time.as_ref().unix_timestamp_nanos() / 1_000_000;
    ms.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn check_times(message: &Message, now_ms: i64) -> Result<(), ApiError> {
    let Some(expiration) = &message.expiration_time else {
        return Err(ApiError::bad_request(
            "missing_expiration",
            "the message has no Expiration Time; a link message must expire",
        ));
    };
    if unix_ms(expiration) <= now_ms {
        return Err(ApiError::bad_request(
            "message_expired",
            format!("the message expired at {expiration}"),
        ));
    }
    let starts = [
        ("issued", Some(&message.issued_at)),
        ("valid from", message.not_before.as_ref()),
    ];
    for (what, time) in starts {
        if let Some(time) = time
            && unix_ms(time) > now_ms + MAX_CLOCK_SKEW_MS
        {
            return Err(ApiError::bad_request(
                "message_not_yet_valid",
                format!("the message is {what} {time}, which is still in the future"),
            ));
        }
    }
    Ok(())
}

/// The bytes of a wallet signature written as 0x and hex; 400 `bad_wallet_signature_format`
/// unless it is 65 bytes, or (only when contract wallets can be checked) up to
/// [`MAX_SIGNATURE_BYTES`].
pub fn parse_wallet_signature(text: &str, contract_wallets: bool) -> Result<Vec<u8>, ApiError> {
    let bad = |why: &str| {
        let contracts = if contract_wallets {
            ""
        } else {
            "; signatures of smart-contract wallets (ERC-1271) are not accepted because this \
             relay has no Ethereum RPC endpoint configured (eth_rpc_url)"
        };
        ApiError::bad_request(
            "bad_wallet_signature_format",
            format!(
                "signature {why}: it must be the wallet's personal_sign signature, 0x and 130 hex \
                 characters (65 bytes){contracts}"
            ),
        )
    };
    let hex_digits = text
        .strip_prefix("0x")
        .ok_or_else(|| bad("does not start with 0x"))?;
    if hex_digits.len() > 2 * MAX_SIGNATURE_BYTES {
        return Err(bad("is too long"));
    }
    let bytes = hex::decode(hex_digits).map_err(|_| bad("is not hex"))?;
    if bytes.is_empty() || (!contract_wallets && bytes.len() != EOA_SIGNATURE_BYTES) {
        return Err(bad(&format!("has {} bytes", bytes.len())));
    }
    Ok(bytes)
}

/// Checks that the message's address signed it: by EIP-191 recovery, or else (with an Ethereum
/// node at `eth_rpc_url`) by asking the contract at that address (ERC-1271). 403
/// `bad_wallet_signature` when neither accepts it.
pub async fn check_wallet_signature(
    message: &Message,
    signature: &[u8],
    eth_rpc_url: Option<&str>,
) -> Result<(), ApiError> {
    let address = siwe::eip55(&message.address);
    if let Ok(eoa) = <&[u8; EOA_SIGNATURE_BYTES]>::try_from(signature)
        && message.verify_eip191(eoa).is_ok()
    {
        return Ok(());
    }
    let refused = |why: String| ApiError::new(StatusCode::FORBIDDEN, "bad_wallet_signature", why);
    let Some(url) = eth_rpc_url else {
        return Err(refused(format!(
            "the wallet signature does not recover to {address}, the message's address. \
             Smart-contract wallets (ERC-1271) are not supported unless the relay is configured \
             with an Ethereum RPC endpoint (eth_rpc_url), and this one is not"
        )));
    };
    let hash = message
        .eip191_hash()
        .map_err(|e| ApiError::Internal(format!("hashing a parsed message: {e}")))?;
    match erc1271::is_valid_signature(url, message.chain_id, &message.address, &hash, signature)
        .await?
    {
        Erc1271::Valid => Ok(()),
        Erc1271::Invalid => Err(refused(format!(
            "the wallet signature does not recover to {address}, the message's address, and no \
             contract wallet there accepts it (ERC-1271 isValidSignature)"
        ))),
        Erc1271::OtherChain(served) => Err(refused(format!(
            "the wallet signature does not recover to {address}, the message's address; contract \
             wallets (ERC-1271) can only be checked on chain {served}, the chain of the relay's \
             Ethereum node, not on chain {}",
            message.chain_id
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contributors_message_builder_writes_what_the_relay_accepts() {
        use glowworm_protocol::link::{SiweFields, siwe_message};
        let key = glowworm_protocol::signing::ContributorKey::from_secret_bytes(&[1; 32]).unwrap();
        let text = siwe_message(&SiweFields {
            domain: "127.0.0.1:8787".into(),
            address: "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266".into(),
            uri: "http://127.0.0.1:8787".into(),
            chain_id: 1,
            nonce: "abcdefgh12345678".into(),
            issued_at: "2025-06-01T11:59:00.000Z".into(),
            expiration_time: "2025-06-01T12:10:00.000Z".into(),
            session_public_key: key.public_hex(),
        })
        .unwrap();
        let message = parse(&text).unwrap();
        let expected = Expected {
            domain: "127.0.0.1:8787",
            scheme: Some("http"),
            chain_ids: &[1],
            public_key: &key.public_hex(),
            now_ms: 1_748_779_200_000, // 2025-06-01T12:00:00Z
        };
        check(&message, &expected).unwrap();
        assert_eq!(
            siwe::eip55(&message.address),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
    }

    #[test]
    fn wallet_signatures_are_0x_hex_of_65_bytes_unless_contracts_are_checked() {
        let eoa = format!("0x{}", "ab".repeat(65));
        assert_eq!(parse_wallet_signature(&eoa, false).unwrap().len(), 65);
        let long = format!("0x{}", "ab".repeat(100));
        assert_eq!(parse_wallet_signature(&long, true).unwrap().len(), 100);
        let refused = [
            ("ab".repeat(65), false),
            (format!("0x{}", "ab".repeat(64)), false),
            (long, false),
            (format!("0x{}", "zz".repeat(65)), true),
            ("0x".to_string(), true),
            (format!("0x{}", "ab".repeat(MAX_SIGNATURE_BYTES + 1)), true),
        ];
        for (text, contracts) in refused {
            let (status, code) = parse_wallet_signature(&text, contracts)
                .unwrap_err()
                .status_and_code();
            assert_eq!(
                (status.as_u16(), code),
                (400, "bad_wallet_signature_format")
            );
        }
    }
}
