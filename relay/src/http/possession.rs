//! Proof that a contributor request comes from the key it names.
//!
//! Keys are free and travel in clear, so a request that changes state on a key's behalf (a
//! lease, a release, a result) must be signed by that key: otherwise anyone could take leases in
//! a victim key's name, give its leases back, or spend its rate limit. Results were always signed
//! ([`crate::work::results`]); lease requests and releases are signed with their own domains
//! ([`glowworm_protocol::signing::lease_message`], [`glowworm_protocol::signing::release_message`]).
//!
//! A lease request carries the time it was signed. [`SignedRequests`] takes each time once per
//! key, only within [`WINDOW_MS`] of the relay's clock and not far below the key's latest, so a
//! captured request cannot be replayed: while the key's times are remembered, a replay is taken
//! already or too old for the key; once they are forgotten (after twice the window without a
//! request), a replay is too old for the relay's clock.
//! A relay restart forgets every key, which lets a request signed within the window before the
//! restart be replayed once after it; that only leases work to the key that signed it. A release
//! names its lease, which takes one release, so it needs no time.
//!
//! The per-key rate limit is charged only after the signature is checked, so that nobody can
//! spend another key's.

use crate::error::ApiError;
use crate::ids;
use axum::http::StatusCode;
use glowworm_protocol::signing::{self, SignatureError};
use glowworm_protocol::wire::{LeaseRequest, ReleaseReason, ReleaseRequest};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// How far from the relay's clock a lease request's time may be: ten minutes, for contributors
/// whose clocks are a little off.
pub const WINDOW_MS: i64 = 10 * 60 * 1000;

/// Keys remembered before the first sweep of those idle longer than twice the window. After a
/// sweep the next one waits until the map has doubled, so a flood of new keys costs each
/// request O(1) on average, never a walk of the whole map.
const SWEEP_AT: usize = 1 << 16;

/// How many milliseconds below a key's latest signing time are still taken (once each): a
/// worker's lanes sign their requests one after another but may deliver them out of order.
const REORDER_MS: i64 = 128;

/// The signing times taken from one key lately: the latest, and which of the [`REORDER_MS`]
/// milliseconds below it were taken too (bit `i` is `latest - 1 - i`), as IPsec's anti-replay
/// window does (RFC 4303, 3.4.3).
#[derive(Debug, Clone, Copy)]
struct Taken {
    latest: i64,
    below: u128,
}

impl Taken {
    /// Takes `at` if it is new: later than the latest, or within [`REORDER_MS`] below it and
    /// not taken yet.
    fn take(&mut self, at: i64) -> bool {
        if at > self.latest {
            let shift = at - self.latest;
            self.below = match u32::try_from(shift) {
                Ok(shift) if shift <= 128 => {
                    self.below.checked_shl(shift).unwrap_or(0) | (1u128 << (shift - 1))
                }
                _ => 0,
            };
            self.latest = at;
            return true;
        }
        let offset = self.latest - 1 - at;
        if !(0..REORDER_MS).contains(&offset) {
            return false;
        }
        let bit = 1u128 << offset;
        let fresh = self.below & bit == 0;
        self.below |= bit;
        fresh
    }
}

/// The signing times taken from each key lately.
#[derive(Default)]
pub struct SignedRequests {
    taken: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    keys: HashMap<String, Taken>,
    /// The size at which the next sweep runs (at least [`SWEEP_AT`]).
    sweep_at: usize,
}

impl SignedRequests {
    /// Takes `signed_at_ms` from `key` (canonical hex) at `now_ms`, or refuses it (401) as too
    /// far from the relay's clock, or as taken already (or too far below the key's latest).
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
        let mut remembered = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        if remembered.keys.len() >= remembered.sweep_at.max(SWEEP_AT) {
            remembered
                .keys
                .retain(|_, seen| seen.latest >= now_ms - 2 * WINDOW_MS);
            remembered.sweep_at = 2 * remembered.keys.len();
        }
        let taken = &mut remembered.keys;
        let Some(seen) = taken.get_mut(key) else {
            let first = Taken {
                latest: signed_at_ms,
                below: 0,
            };
            taken.insert(key.to_string(), first);
            return Ok(());
        };
        if seen.take(signed_at_ms) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "replayed_request",
            format!(
                "this key already made a request signed at {signed_at_ms} (Unix ms), or one \
                 more than {REORDER_MS} ms later ({}); each lease request is signed anew with \
                 a later time",
                seen.latest
            ),
        ))
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
    let key = ids::verifying_key(public_key)?;
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
        assert!(requests.accept("a", now + 1, now).is_ok());
        assert!(requests.accept("b", now, now).is_ok(), "keys are apart");
        assert!(requests.accept("c", now - WINDOW_MS - 1, now).is_err());
        assert!(requests.accept("c", now + WINDOW_MS + 1, now).is_err());
        assert!(requests.accept("c", now - WINDOW_MS, now).is_ok());
    }

    #[test]
    fn requests_signed_together_may_arrive_out_of_order_but_once_each() {
        let requests = SignedRequests::default();
        let now = 1_000_000_000;
        for at in [
            now + 5,
            now + 3,
            now + 4,
            now + 1,
            now + 2,
            now + 200,
            now + 73,
        ] {
            assert!(requests.accept("a", at, now).is_ok(), "{at}");
        }
        for at in [now + 3, now + 5, now + 200, now + 73] {
            assert!(requests.accept("a", at, now).is_err(), "replay of {at}");
        }
        // More than REORDER_MS below the latest: refused, even though never seen.
        assert!(
            requests
                .accept("a", now + 200 - REORDER_MS - 1, now)
                .is_err()
        );
        assert!(requests.accept("a", now + 200 - REORDER_MS, now).is_ok());
        // A jump past the whole window forgets the bits, not the latest.
        assert!(requests.accept("a", now + 1_000, now).is_ok());
        assert!(requests.accept("a", now + 999, now).is_ok());
        assert!(requests.accept("a", now + 1_000, now).is_err());
    }
}
