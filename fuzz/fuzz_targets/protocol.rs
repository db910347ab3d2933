//! `protocol`: the contributor protocol's request bodies, as the relay decodes them.
//!
//! The input is one JSON request body. The relay decodes it with serde_json (axum's `Json`
//! extractor) as one of the `glowworm_protocol::wire` requests:
//!
//! - `POST /v1/leases`: [`LeaseRequest`], then its public key (`ids::canonical_key`),
//!   its signature and signing time (`possession::check_lease_request`) and partner attribution
//!   (`partners::attribution`: EIP-55 address, web origin);
//! - `POST /v1/results`: [`ResultSubmission`], then the key, the output (base64, then f32) and
//!   the signature (`signing::verify_result`: hex, strict ed25519);
//! - `POST /v1/leases/{id}/release`: [`ReleaseRequest`], then the key and its signature
//!   (`possession::check_release`);
//! - `POST /v1/auth/link`: [`LinkRequest`], then the key, the session key's signature
//!   (`signing::verify_link`) and the wallet signature's form (`sign_in::parse_wallet_signature`;
//!   the message itself is the `siwe` target's);
//! - the `job` part of `POST /v1/jobs`: [`JobSpec`] (its WGSL is the `wgsl` target's).
//!
//! The input as text is also tried as the path parameters the relay parses: a content hash
//! (`/v1/blobs/{hash}`), a public key (`/v1/contributors/{key}`), an address
//! (`/v1/accounts/{address}`); and as an `X-Forwarded-For` header (`network::client_ip`, with
//! `trust_forwarded_for`).
//!
//! Properties: nothing panics; every request that decodes encodes and decodes to the same value;
//! the decoders that have an encoder round-trip; the relay's and the crate's EIP-55 checks agree.

#![no_main]

use axum::http::{Extensions, HeaderMap, HeaderValue};
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes, from_base64, to_base64};
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::link::checksum_address;
use glowworm_protocol::signing::{verify_link, verify_result};
use glowworm_protocol::wire::{JobSpec, LeaseRequest, LinkRequest, ReleaseRequest, ResultSubmission};
use glowworm_relay::Config;
use glowworm_relay::ids::{canonical_address, canonical_key};
use glowworm_relay::http::network::{client_ip, network_of};
use glowworm_relay::accounts::partners::{attribution, canonical_origin};
use glowworm_relay::http::possession::{SignedRequests, check_lease_request, check_release};
use glowworm_relay::accounts::sign_in::parse_wallet_signature;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|body: &[u8]| {
    if let Some(request) = decode::<LeaseRequest>(body) {
        check_key(&request.public_key);
        if let Ok(key) = canonical_key(&request.public_key) {
            // A request taken once is refused the second time: each signing time is taken once.
            let requests = SignedRequests::default();
            let now = request.signed_at_ms;
            if check_lease_request(&requests, &request, &key, now).is_ok() {
                assert!(check_lease_request(&requests, &request, &key, now).is_err());
            }
        }
        if let Ok(Some(found)) = attribution(&Config::default(), &request) {
            assert_eq!(canonical_origin(&found.origin), Ok(found.origin.clone()));
            assert_eq!(canonical_address(&found.partner).ok(), Some(found.partner));
        }
    }
    if let Some(submission) = decode::<ResultSubmission>(body) {
        check_key(&submission.public_key);
        if let Ok(output) = from_base64(&submission.output) {
            assert_eq!(to_base64(&output), submission.output);
            if let Ok(values) = bytes_to_f32s(&output) {
                assert_eq!(f32s_to_bytes(&values), output);
            }
            let kernel = ContentHash::of(b"kernel");
            let _ = verify_result(
                &submission.public_key,
                &submission.signature,
                submission.unit_id,
                &submission.lease_id,
                &kernel,
                &output,
            );
        }
    }
    if let Some(release) = decode::<ReleaseRequest>(body) {
        check_key(&release.public_key);
        if let Ok(key) = canonical_key(&release.public_key) {
            let _ = check_release(&release, &key, "0195a3f2c0de00112233445566778899");
        }
    }
    if let Some(link) = decode::<LinkRequest>(body) {
        check_key(&link.public_key);
        let _ = verify_link(&link.public_key, &link.session_signature, &link.message);
        for contract_wallets in [false, true] {
            if let Ok(bytes) = parse_wallet_signature(&link.signature, contract_wallets) {
                assert!(!bytes.is_empty());
                assert!(contract_wallets || bytes.len() == 65);
            }
        }
    }
    let _ = decode::<JobSpec>(body);

    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(hash) = text.parse::<ContentHash>() {
            assert_eq!(hash.to_string(), text.to_ascii_lowercase());
        }
        check_key(text);
        check_address(text);
        if let Ok(origin) = canonical_origin(text) {
            assert_eq!(canonical_origin(&origin), Ok(origin.clone()));
        }
    }
    check_forwarded_for(body);
});

/// `body` decoded as `T`, if it is one; it must encode and decode to the same JSON again.
fn decode<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(body).ok()?;
    let json = serde_json::to_value(&value).expect("a decoded request encodes");
    let again: T = serde_json::from_value(json.clone()).expect("an encoded request decodes");
    assert_eq!(serde_json::to_value(&again).unwrap(), json);
    Some(value)
}

/// A public key the relay accepts is 64 hex characters, kept in lowercase.
fn check_key(text: &str) {
    if let Ok(key) = canonical_key(text) {
        assert_eq!(key, text.to_ascii_lowercase());
        assert_eq!(canonical_key(&key).ok(), Some(key));
    }
}

/// The relay's address check (`accounts`) and the crate's (`link`) accept the same addresses
/// and write them the same way.
fn check_address(text: &str) {
    let relay = canonical_address(text).ok();
    assert_eq!(relay, checksum_address(text).ok());
    if let Some(address) = relay {
        assert_eq!(canonical_address(&address).ok(), Some(address));
    }
}

/// A client address read from `X-Forwarded-For` falls in a /24 or /64 network.
fn check_forwarded_for(header: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(header) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", value);
    let config = Config {
        trust_forwarded_for: true,
        ..Config::default()
    };
    if let Some(ip) = client_ip(&config, &headers, &Extensions::new()) {
        // Beyond a loopback-only relay every address has a network; on one, loopback has none.
        let network = network_of(ip, false).expect("every address has a network");
        assert!(
            ["/24", "/64", "/32", "/128"]
                .iter()
                .any(|suffix| network.ends_with(suffix))
                || network == "loopback",
            "{network}"
        );
        assert_eq!(
            network_of(ip, true).is_none(),
            ip.to_canonical().is_loopback()
        );
    }
}
