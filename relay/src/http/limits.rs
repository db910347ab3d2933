//! Refusing abuse politely: rate limits per client address and per key, and a deadline for
//! each request.
//!
//! - [`crate::http::middleware::per_address`] (middleware on every `/v1` route) allows `rate_per_address` requests per
//!   second from one IPv4 address or one IPv6 /64, with bursts of `burst_per_address`.
//! - [`Limits::check_key`] allows `rate_per_key` requests per second per key, with bursts of
//!   `burst_per_key`. The handlers that know a key call it: a contributor's public key
//!   (leases, releases, results) and a requester's API key (every requester endpoint).
//! - [`crate::http::middleware::deadline`] answers 408 when a request, body included, is not served within
//!   `request_timeout_seconds` (`upload_timeout_seconds` for job uploads), so a client that
//!   sends its body slowly cannot hold a handler for long. Slow headers are the listener's
//!   business ([`crate::http::serve`]).
//!
//! Refusals are 429 `rate_limited` with `Retry-After`; a rate of 0 turns a limit off. The
//! token buckets are the `governor` crate's (GCRA), in memory: a restart forgets them.

use crate::config::Config;
use crate::error::ApiError;
use crate::ids::address_bucket;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

/// Forget idle buckets after this many checks, so keys seen once do not stay in memory.
const SWEEP_EVERY: u64 = 10_000;

/// The relay's rate limiters.
pub struct Limits {
    by_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_key: Option<DefaultKeyedRateLimiter<String>>,
    checks: AtomicU64,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        Limits {
            by_address: limiter(config.rate_per_address, config.burst_per_address),
            by_key: limiter(config.rate_per_key, config.burst_per_key),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts a request from `address` (an IPv6 address counts as its /64).
    pub fn check_address(&self, address: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = &self.by_address else {
            return Ok(());
        };
        self.sweep();
        limiter
            .check_key(&address_bucket(address))
            .map_err(|not_until| refusal("this address", not_until))
    }

    /// Counts a request made with `key` (say "contributor:<hex>" or "requester:<id>").
    pub fn check_key(&self, key: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.by_key else {
            return Ok(());
        };
        self.sweep();
        limiter
            .check_key(&key.to_string())
            .map_err(|not_until| refusal("this key", not_until))
    }

    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            if let Some(limiter) = &self.by_address {
                limiter.retain_recent();
            }
            if let Some(limiter) = &self.by_key {
                limiter.retain_recent();
            }
        }
    }
}

fn limiter<K>(rate: u32, burst: u32) -> Option<DefaultKeyedRateLimiter<K>>
where
    K: std::hash::Hash + Eq + Clone,
{
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

fn refusal(who: &str, not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> ApiError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::RateLimited {
        message: format!("too many requests from {who}; try again in {seconds} s"),
        retry_after_seconds: seconds.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn limits(rate: u32, burst: u32) -> Limits {
        Limits::new(&Config {
            rate_per_address: rate,
            burst_per_address: burst,
            rate_per_key: rate,
            burst_per_key: burst,
            ..Config::default()
        })
    }

    #[test]
    fn a_burst_passes_and_the_next_request_is_refused_with_a_wait() {
        let limits = limits(1, 3);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            limits.check_address(ip).unwrap();
        }
        let refused = limits.check_address(ip).unwrap_err();
        assert_eq!(
            refused.status_and_code(),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        );
        // Another address and another key have buckets of their own.
        limits
            .check_address("203.0.113.8".parse().unwrap())
            .unwrap();
        limits.check_key("contributor:aa").unwrap();
    }

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        let limits = limits(1, 2);
        limits
            .check_address("2001:db8:1:2::1".parse().unwrap())
            .unwrap();
        limits
            .check_address("2001:db8:1:2::ffff".parse().unwrap())
            .unwrap();
        assert!(
            limits
                .check_address("2001:db8:1:2:3::9".parse().unwrap())
                .is_err()
        );
        limits
            .check_address("2001:db8:1:3::1".parse().unwrap())
            .unwrap();
    }

    #[test]
    fn a_rate_of_zero_turns_the_limit_off() {
        let limits = limits(0, 0);
        for _ in 0..1000 {
            limits.check_key("requester:1").unwrap();
        }
    }
}
