//! Proof that a contributor request comes from the key it names.
//!
//! Keys are free and travel in clear, so a request that changes state on a key's behalf (a
//! lease, a release, a result) must be signed by that key: otherwise anyone could take leases in
//! a victim key's name, give its leases back, or spend its rate limit. Results were always signed
//! ([`crate::results`]); lease requests and releases are signed with their own domains
//! ([`glowworm::signing::lease_message`], [`glowworm::signing::release_message`]).
//!
//! A lease request carries the time it was signed. [`SignedRequests`] takes a key's requests only
//! in increasing order of that time and only within [`WINDOW_MS`] of the relay's clock, so a
//! captured request cannot be replayed: while the key's last time is remembered, a replay is not
//! newer; once it is forgotten (after twice the window without a request), a replay is too old.
//! A relay restart forgets every key, which lets a request signed within the window before the
//! restart be replayed once after it; that only leases work to the key that signed it. A release
//! names its lease, which takes one release, so it needs no time.
//!
//! The per-key rate limit is charged only after the signature is checked, so that nobody can
//! spend another key's.

use crate::contributors;
use crate::error::ApiError;
use axum::http::StatusCode;
use glowworm::signing::{self, SignatureError};
use glowworm::wire::{LeaseRequest, ReleaseReason, ReleaseRequest};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// How far from the relay's clock a lease request's time may be: ten minutes, for contributors
/// whose clocks are a little off.
pub const WINDOW_MS: i64 = 10 * 60 * 1000;

/// Keys remembered before the ones idle longer than twice the window are forgotten.
const SWEEP_AT: usize = 1 << 16;

/// The last signing time accepted from each key lately.
#[derive(Default)]
pub struct SignedRequests {
    last: Mutex<HashMap<String, i64>>,
}

impl SignedRequests {
    /// Takes `signed_at_ms` from `key` (canonical hex) at `now_ms`, or refuses it (401) as too
    /// far from the relay's clock or not newer than the key's last request.
    pub fn accept(&self, key: &str, signed_at_ms: i64, now_ms: i64) -> Result<(), ApiError> {
        let skew = signed_at_ms.saturating_sub(now_ms);
        if skew.abs() > WINDOW_MS {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "stale_request",
                format!(
                    "the request was signed at {signed_at_ms} (Unix ms), {} s {} the relay's \
                     clock ({now_ms}); requests are taken within {} s of it: set the device's \
                     clock right",
                    skew.abs() / 1000,
                    if skew > 0 { "ahead of" } else { "behind" },
                    WINDOW_MS / 1000
                ),
            ));
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.len() >= SWEEP_AT {
            last.retain(|_, at| *at >= now_ms - 2 * WINDOW_MS);
        }
        match last.get(key) {
            Some(&previous) if signed_at_ms <= previous => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "replayed_request",
                format!(
                    "this key already made a request signed at {previous} (Unix ms); each lease \
                     request is signed anew with a later time"
                ),
            )),
            _ => {
                last.insert(key.to_string(), signed_at_ms);
                Ok(())
            }
        }
    }
}

/// Checks that `request` is signed by the key it names (`public_key`, canonical), then that its
/// time is fresh for that key.
pub fn check_lease_request(
    requests: &SignedRequests,
    request: &LeaseRequest,
    public_key: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    let message = signing::lease_message(public_key, request.signed_at_ms, request.fields());
    check(public_key, &request.signature, &message)?;
    requests.accept(public_key, request.signed_at_ms, now_ms)
}

/// Checks that `request`, releasing `lease_id`, is signed by the key it names (`public_key`,
/// canonical).
pub fn check_release(
    request: &ReleaseRequest,
    public_key: &str,
    lease_id: &str,
) -> Result<(), ApiError> {
    let reason = request.reason.unwrap_or(ReleaseReason::Stopped);
    let message = signing::release_message(lease_id, reason.as_str());
    check(public_key, &request.signature, &message)
}

fn check(public_key: &str, signature: &str, message: &[u8]) -> Result<(), ApiError> {
    let key = contributors::verifying_key(public_key)?;
    signing::verify_message_with_key(&key, signature, message).map_err(|e| match e {
        SignatureError::MalformedSignature => {
            ApiError::bad_request("bad_signature_format", e.to_string())
        }
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_signature",
            format!("{e}: the request must be signed by the key it names"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_moves_forward_within_the_window() {
        let requests = SignedRequests::default();
        let now = 1_000_000_000;
        assert!(requests.accept("a", now, now).is_ok());
        assert!(requests.accept("a", now, now).is_err(), "a replay");
        assert!(requests.accept("a", now - 1, now).is_err(), "an older one");
        assert!(requests.accept("a", now + 1, now).is_ok());
        assert!(requests.accept("b", now, now).is_ok(), "keys are apart");
        assert!(requests.accept("c", now - WINDOW_MS - 1, now).is_err());
        assert!(requests.accept("c", now + WINDOW_MS + 1, now).is_err());
        assert!(requests.accept("c", now - WINDOW_MS, now).is_ok());
    }
}
