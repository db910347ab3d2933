//! `siwe`: Sign-In with Ethereum (EIP-4361) messages, as the relay checks them before it links
//! a wallet (`POST /v1/auth/link`).
//!
//! The input is the message text, optionally followed by a NUL byte and the wallet's signature
//! (the request's `signature` field, "0x" and hex). The relay parses the message
//! (`sign_in::parse`, the `siwe` crate plus the canonical-layout check), holds it to its domain,
//! chain, times and session key (`sign_in::check`), reads the signature's form
//! (`sign_in::parse_wallet_signature`) and recovers its signer (`sign_in::check_wallet_signature`,
//! EIP-191; contract wallets need an Ethereum node, and this target has none).
//!
//! Properties: nothing panics; a message accepted is exactly the text `siwe` writes back, and
//! parses again to the same message.

#![no_main]

use glowworm_relay::accounts::sign_in::{self, Expected};
use libfuzzer_sys::fuzz_target;

/// The resource that names the session key, as `glowworm_protocol::signing::session_resource` writes it.
const SESSION: &str = "urn:glowworm:session:";

fuzz_target!(|input: &[u8]| {
    let (text, signature) = match input.iter().position(|&b| b == 0) {
        Some(nul) => (&input[..nul], Some(&input[nul + 1..])),
        None => (input, None),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(message) = sign_in::parse(text) else {
        return;
    };
    assert_eq!(message.to_string(), text);
    assert_eq!(
        sign_in::parse(&message.to_string()).ok(),
        Some(message.clone())
    );

    // Checked against what the message itself names (so that every check runs) and against a
    // relay it was not written for.
    let domain = message.domain.as_str().to_string();
    let public_key = message
        .resources
        .iter()
        .find_map(|r| r.as_str().strip_prefix(SESSION))
        .unwrap_or("00")
        .to_ascii_lowercase();
    let issued_ms = message.issued_at.as_ref().unix_timestamp_nanos() / 1_000_000;
    let now_ms = i64::try_from(issued_ms).unwrap_or(0);
    let own = Expected {
        domain: &domain,
        scheme: None,
        chain_ids: &[message.chain_id],
        public_key: &public_key,
        now_ms,
    };
    let other = Expected {
        domain: "relay.example",
        scheme: Some("https"),
        chain_ids: &[1],
        public_key: &"ab".repeat(32),
        now_ms: 1_750_000_000_000,
    };
    let _ = sign_in::check(&message, &own);
    let _ = sign_in::check(&message, &other);

    if let Some(Ok(signature)) = signature.map(std::str::from_utf8)
        && let Ok(bytes) = sign_in::parse_wallet_signature(signature, true)
    {
        let _ = pollster::block_on(sign_in::check_wallet_signature(&message, &bytes, None));
    }
});
