//! Where a request comes from, coarsely: the client's /24 (IPv4) or /64 (IPv6) network.
//!
//! Replicas of a unit go to contributors on different networks by default, so that one person
//! running many browser profiles (or many keys) behind one connection cannot supply every
//! replica of a unit and agree with themselves. The address is the TCP peer's; behind a reverse
//! proxy, `trust_forwarded_for` takes the first address of `X-Forwarded-For` instead.

use crate::config::Config;
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The network a request came from, when known (requests made without a socket, as in tests
/// that call the router directly, have none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNetwork(pub Option<String>);

impl FromRequestParts<AppState> for ClientNetwork {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let address = client_ip(&state.config, &parts.headers, &parts.extensions);
        Ok(ClientNetwork(address.map(network_of)))
    }
}

/// The client's address: the TCP peer's, or with `trust_forwarded_for` the first address of
/// `X-Forwarded-For`. `None` for requests made without a socket.
pub fn client_ip(config: &Config, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
    let forwarded = config
        .trust_forwarded_for
        .then(|| headers.get("x-forwarded-for"))
        .flatten()
        .and_then(|value| value.to_str().ok())
        .and_then(|list| list.split(',').next())
        .and_then(|first| first.trim().parse::<IpAddr>().ok());
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    forwarded.or(peer)
}

/// "a.b.c.0/24" for IPv4 (and IPv4-mapped IPv6), "xxxx:xxxx:xxxx:xxxx::/64" for IPv6.
pub fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network_of(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        let net = |s: &str| network_of(s.parse().unwrap());
        assert_eq!(net("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(net("203.0.113.77"), net("203.0.113.1"));
        assert_ne!(net("203.0.113.77"), net("203.0.114.77"));
        assert_eq!(net("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(net("2001:db8:1:2:ffff::1"), net("2001:db8:1:2::9"));
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        assert_eq!(net("::ffff:203.0.113.9"), "203.0.113.0/24");
    }
}
