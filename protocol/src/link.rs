//! Linking a contributor's session key to an Ethereum address with one wallet signature.
//!
//! The contributor (the page's worker, or the native worker's `link` command) builds a Sign-In with
//! Ethereum message (EIP-4361) for the relay's domain whose resources name the session key, the
//! wallet signs it with `personal_sign`, the session key signs it too
//! ([`crate::signing::ContributorKey::sign_link`]), and the relay checks both before it credits that
//! address. This module builds the message text; the relay parses and verifies it with the `siwe`
//! crate, an independent implementation, so a formatting mistake here cannot go unnoticed.

use sha3::{Digest, Keccak256};

/// The fields of an EIP-4361 message, as this project uses them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiweFields {
    /// The relay's host (and port), such as "relay.example.org" or "127.0.0.1:8787".
    pub domain: String,
    /// The signing address, any case; the message carries it EIP-55 checksummed.
    pub address: String,
    /// The relay's origin or page URI, such as "https://relay.example.org".
    pub uri: String,
    pub chain_id: u64,
    /// The single-use nonce from `POST /v1/auth/nonce`.
    pub nonce: String,
    /// RFC 3339 times, such as "2026-11-24T12:00:00.000Z".
    pub issued_at: String,
    pub expiration_time: String,
    /// The contributor's ed25519 public key (hex) that the link names.
    pub session_public_key: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("an Ethereum address is 0x followed by 40 hex characters, got {0:?}")]
    MalformedAddress(String),
    #[error("address {given} has a wrong EIP-55 checksum (expected {expected})")]
    BadChecksum { given: String, expected: String },
    #[error("{0} must not contain a line break")]
    LineBreak(&'static str),
}

pub use crate::signing::session_resource;

/// The EIP-55 checksummed form of an address given in lower, upper or correct mixed case.
/// Mixed case with a wrong checksum is refused, as EIP-55 intends.
pub fn checksum_address(address: &str) -> Result<String, LinkError> {
    let hex_part = address
        .strip_prefix("0x")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| LinkError::MalformedAddress(address.to_string()))?;
    let lower = hex_part.to_ascii_lowercase();
    let hash = Keccak256::digest(lower.as_bytes());
    let checksummed: String = lower
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0xf;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let expected = format!("0x{checksummed}");
    let mixed = hex_part != lower && hex_part != hex_part.to_ascii_uppercase();
    if mixed && hex_part != checksummed {
        return Err(LinkError::BadChecksum {
            given: address.to_string(),
            expected,
        });
    }
    Ok(expected)
}

/// The EIP-4361 message text the wallet signs.
pub fn siwe_message(fields: &SiweFields) -> Result<String, LinkError> {
    for (name, value) in [
        ("domain", &fields.domain),
        ("uri", &fields.uri),
        ("nonce", &fields.nonce),
        ("issued_at", &fields.issued_at),
        ("expiration_time", &fields.expiration_time),
        ("session_public_key", &fields.session_public_key),
    ] {
        if value.contains(['\n', '\r']) {
            return Err(LinkError::LineBreak(name));
        }
    }
    let address = checksum_address(&fields.address)?;
    let key = fields.session_public_key.to_ascii_lowercase();
    Ok(format!(
        "{domain} wants you to sign in with your Ethereum account:\n\
         {address}\n\
         \n\
         Credit Glowworm work done by session key {key} to this address.\n\
         \n\
         URI: {uri}\n\
         Version: 1\n\
         Chain ID: {chain_id}\n\
         Nonce: {nonce}\n\
         Issued At: {issued_at}\n\
         Expiration Time: {expiration}\n\
         Resources:\n\
         - {resource}",
        domain = fields.domain,
        uri = fields.uri,
        chain_id = fields.chain_id,
        nonce = fields.nonce,
        issued_at = fields.issued_at,
        expiration = fields.expiration_time,
        resource = session_resource(&key),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_the_eip55_test_vectors() {
        // From EIP-55 itself.
        for good in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(checksum_address(&good.to_ascii_lowercase()).unwrap(), good);
            assert_eq!(checksum_address(good).unwrap(), good);
        }
        assert!(matches!(
            checksum_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"),
            Err(LinkError::BadChecksum { .. })
        ));
        assert!(matches!(
            checksum_address("0x1234"),
            Err(LinkError::MalformedAddress(_))
        ));
    }

    #[test]
    fn builds_an_eip4361_message_naming_the_session_key() {
        let fields = SiweFields {
            domain: "127.0.0.1:8787".into(),
            address: "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".into(),
            uri: "http://127.0.0.1:8787".into(),
            chain_id: 1,
            nonce: "abcdefgh12345678".into(),
            issued_at: "2026-11-24T12:00:00.000Z".into(),
            expiration_time: "2026-11-24T12:10:00.000Z".into(),
            session_public_key: "AB".repeat(32),
        };
        let text = siwe_message(&fields).unwrap();
        assert!(text.starts_with(
            "127.0.0.1:8787 wants you to sign in with your Ethereum account:\n\
             0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\n\n"
        ));
        assert!(text.ends_with(&format!(
            "Resources:\n- urn:glowworm:session:{}",
            "ab".repeat(32)
        )));
        let mut bad = fields.clone();
        bad.nonce = "x\nURI: https://evil".into();
        assert_eq!(siwe_message(&bad), Err(LinkError::LineBreak("nonce")));
    }
}
