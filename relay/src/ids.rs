//! Identifiers from outside, parsed in one place into the one form the relay stores and
//! compares: contributors' public keys ([`canonical_key`], decoded once with
//! [`verifying_key`]), Ethereum addresses ([`canonical_address`], EIP-55), web origins and
//! domains as browsers and wallets write them ([`canonical_origin`], [`is_domain`]: shared by
//! the settings, partner sites and sign-in), and the address bucket a client counts as
//! ([`address_bucket`]). It imports nothing of the relay but its errors.

use crate::error::ApiError;
use axum::http::uri::Authority;
use ed25519_dalek::VerifyingKey;
use glowworm_protocol::signing::{SignatureError, parse_public_key};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The longest origin accepted.
pub const MAX_ORIGIN_LEN: usize = 256;

/// The origin of a web page, as browsers serialize it: `http` or `https`, the host in lowercase
/// (IDNA as punycode), and the port unless it is the scheme's default; nothing else (no path,
/// query, fragment or user). Errors say what is wrong.
pub fn canonical_origin(text: &str) -> Result<String, String> {
    if text.len() > MAX_ORIGIN_LEN {
        return Err(format!("an origin is at most {MAX_ORIGIN_LEN} characters"));
    }
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not an origin: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: an origin is http:// or https://"));
    }
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && !text.trim_end_matches('/').ends_with(['?', '#'])
        && !text.ends_with("//");
    if !bare || url.host().is_none() {
        return Err(format!(
            "{text:?}: an origin is scheme://host[:port], without path, query or user"
        ));
    }
    // IDNA can make the host longer (punycode): the canonical form must fit too, or the relay
    // would refuse the very origin it stored.
    let canonical = url.origin().ascii_serialization();
    if canonical.len() > MAX_ORIGIN_LEN {
        return Err(format!(
            "{text:?}: its canonical form is {} characters, more than the {MAX_ORIGIN_LEN} accepted",
            canonical.len()
        ));
    }
    Ok(canonical)
}

/// Whether `text` is a domain a message can name: a host or host:port, without user info.
pub fn is_domain(text: &str) -> bool {
    !text.contains('@')
        && text
            .parse::<Authority>()
            .is_ok_and(|authority| !authority.host().is_empty())
}

/// Checks a public key and returns it in its one canonical form (lowercase hex), so the same key
/// written in upper case is the same contributor.
pub fn canonical_key(public_hex: &str) -> Result<String, ApiError> {
    let canonical = public_hex.to_ascii_lowercase();
    verifying_key(&canonical)?;
    Ok(canonical)
}

/// Most decoded keys [`verifying_key`] keeps.
const MAX_KEYS: usize = 1 << 16;

/// The ed25519 key of a canonical public key, decoded (a square root on the curve, some
/// microseconds) once and then remembered: contributors send the same key with every request.
pub fn verifying_key(canonical_hex: &str) -> Result<VerifyingKey, ApiError> {
    static KEYS: OnceLock<Mutex<HashMap<String, VerifyingKey>>> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    if let Some(key) = keys
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(canonical_hex)
    {
        return Ok(*key);
    }
    let key = parse_key(canonical_hex)?;
    let mut keys = keys.lock().unwrap_or_else(PoisonError::into_inner);
    if keys.len() >= MAX_KEYS {
        keys.clear();
    }
    keys.insert(canonical_hex.to_string(), key);
    Ok(key)
}

fn parse_key(public_hex: &str) -> Result<VerifyingKey, ApiError> {
    parse_public_key(public_hex).map_err(|e| match e {
        SignatureError::InvalidPublicKey => ApiError::bad_request(
            "bad_public_key",
            "public_key is not a valid ed25519 public key",
        ),
        _ => ApiError::bad_request(
            "bad_public_key",
            "public_key must be 64 hex characters (an ed25519 public key)",
        ),
    })
}

/// Checks an address and returns it EIP-55 checksummed. All-lowercase and all-uppercase hex are
/// accepted as they are; mixed case must carry a correct checksum.
pub fn canonical_address(text: &str) -> Result<String, ApiError> {
    let hex_digits = text
        .strip_prefix("0x")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_address",
                "an address is 0x followed by 40 hex characters",
            )
        })?;
    let mut bytes = [0u8; 20];
    hex::decode_to_slice(hex_digits, &mut bytes)
        .map_err(|e| ApiError::Internal(format!("checked hex did not decode: {e}")))?;
    let mixed_case = hex_digits.bytes().any(|b| b.is_ascii_lowercase())
        && hex_digits.bytes().any(|b| b.is_ascii_uppercase());
    if mixed_case && !siwe::is_checksum(hex_digits) {
        return Err(ApiError::bad_request(
            "bad_checksum",
            format!(
                "{text} mixes upper and lower case but is not EIP-55 checksummed; did you mean {}?",
                siwe::eip55(&bytes)
            ),
        ));
    }
    Ok(siwe::eip55(&bytes))
}

/// What the per-address connection cap counts by: an IPv4 address, or an IPv6 address's /64
/// (what one subscriber usually holds whole). IPv4-mapped IPv6 addresses count as IPv4.
pub fn address_bucket(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKSUMMED: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    #[test]
    fn addresses_come_out_checksummed_whatever_case_goes_in() {
        assert_eq!(canonical_address(CHECKSUMMED).unwrap(), CHECKSUMMED);
        let lower = CHECKSUMMED.to_ascii_lowercase();
        assert_eq!(canonical_address(&lower).unwrap(), CHECKSUMMED);
        let upper = format!("0x{}", CHECKSUMMED[2..].to_ascii_uppercase());
        assert_eq!(canonical_address(&upper).unwrap(), CHECKSUMMED);
    }

    #[test]
    fn malformed_addresses_and_wrong_checksums_are_told_apart() {
        let code = |text: &str| canonical_address(text).unwrap_err().status_and_code().1;
        for bad in [
            "",
            "0x",
            "f39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
            "0Xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb9226",
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb922666",
            "0xg39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        ] {
            assert_eq!(code(bad), "bad_address", "{bad:?}");
        }
        assert_eq!(
            code("0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            "bad_checksum"
        );
    }

    #[test]
    fn origins_are_canonical_or_refused() {
        let ok = |text: &str| canonical_origin(text).unwrap();
        assert_eq!(ok("https://Blog.Example"), "https://blog.example");
        assert_eq!(ok("https://blog.example:443"), "https://blog.example");
        assert_eq!(ok("http://127.0.0.2:8080"), "http://127.0.0.2:8080");
        assert_eq!(ok("https://blog.example/"), "https://blog.example");
        for bad in [
            "",
            "blog.example",
            "ftp://blog.example",
            "https://blog.example/page",
            "https://blog.example?x=1",
            "https://blog.example#top",
            "https://user@blog.example",
            "javascript:alert(1)",
            "null",
            "data:text/html,hi",
        ] {
            assert!(canonical_origin(bad).is_err(), "{bad:?} is refused");
        }
        assert!(canonical_origin(&format!("https://{}.example", "a".repeat(300))).is_err());
    }

    #[test]
    fn a_canonical_origin_is_itself_accepted() {
        // Found by the `protocol` fuzz target: 255 characters, but 260 once the host is punycode
        // ("https://xn--aaa…-…"); the relay stored an origin it would refuse.
        let long = format!("https://{}\u{e9}\u{e9}", "a".repeat(243));
        assert!(long.len() <= MAX_ORIGIN_LEN);
        assert!(canonical_origin(&long).is_err());
        let idna = canonical_origin("https://b\u{fc}cher.example").unwrap();
        assert_eq!(idna, "https://xn--bcher-kva.example");
        assert_eq!(canonical_origin(&idna), Ok(idna.clone()));
    }

    #[test]
    fn domains_are_hosts_with_an_optional_port() {
        for ok in [
            "relay.example",
            "localhost:8787",
            "127.0.0.1:80",
            "[::1]:8787",
        ] {
            assert!(is_domain(ok), "{ok}");
        }
        for bad in [
            "",
            "https://relay.example",
            "user@relay.example",
            "relay.example/x",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
    }
}
