//! Where a request comes from, coarsely: the network replicas of a unit must not share.
//!
//! Replicas of a unit go to contributors on different networks by default, so that one person
//! running many browser profiles (or many keys) behind one connection cannot supply every
//! replica of a unit and agree with themselves. The address is the TCP peer's; behind a reverse
//! proxy, `trust_forwarded_for` takes the first address of `X-Forwarded-For` instead.
//!
//! What counts as one network ([`network_of`]):
//! - a public address: its /24 (IPv4) or /64 (IPv6), what one household or one cloud customer
//!   usually holds;
//! - a private, shared-address-space, link-local or unique-local address: the address itself,
//!   one host of the operator's own network (they reach the relay only from inside it);
//! - a loopback address: this machine. When the relay listens on loopback only, every
//!   contributor is a process of the operator's own machine and nothing is kept apart by
//!   network (keys and linked addresses still are), so a relay on one machine completes
//!   replicated jobs out of the box. A relay that listens beyond loopback and sees loopback
//!   peers is behind a local reverse proxy: they are one network, and the job status says to set
//!   `trust_forwarded_for`.

use crate::config::Config;
use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use std::net::{IpAddr, SocketAddr};

/// Where a request came from, when known (requests made without a socket, as in tests that
/// call the router directly, have neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNetwork {
    /// The network replicas of a unit must not share ([`network_of`]).
    pub network: Option<String>,
    /// What the per-network lease caps count against ([`crate::work::lease_caps`]): the network, or
    /// on a loopback-only relay the loopback address itself, so that each local process (an
    /// operator's worker, a test's simulated attacker) has caps of its own.
    pub source: Option<String>,
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

/// The network of `ip` (see the module's doc): "a.b.c.0/24" or "xxxx:xxxx:xxxx:xxxx::/64" for
/// a public address, "a.b.c.d/32" or "…/128" for a host of a private network, "loopback" for
/// this machine, or `None` (nothing to keep apart) for loopback when `local_only`, the relay
/// listening on loopback alone.
pub fn network_of(ip: IpAddr, local_only: bool) -> Option<String> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        return (!local_only).then(|| "loopback".to_string());
    }
    Some(match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            // 100.64.0.0/10: carrier-grade NAT's shared address space.
            let shared = a == 100 && (64..128).contains(&b);
            if v4.is_private() || v4.is_link_local() || shared {
                format!("{a}.{b}.{c}.{d}/32")
            } else {
                format!("{a}.{b}.{c}.0/24")
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let unique_local = s[0] & 0xfe00 == 0xfc00;
            let link_local = s[0] & 0xffc0 == 0xfe80;
            if unique_local || link_local {
                format!("{v6}/128")
            } else {
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        let net = |s: &str| network_of(s.parse().unwrap(), false).unwrap();
        assert_eq!(net("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(net("203.0.113.77"), net("203.0.113.1"));
        assert_ne!(net("203.0.113.77"), net("203.0.114.77"));
        assert_eq!(net("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(net("2001:db8:1:2:ffff::1"), net("2001:db8:1:2::9"));
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        assert_eq!(net("::ffff:203.0.113.9"), "203.0.113.0/24");
    }

    #[test]
    fn private_hosts_are_apart_and_loopback_is_one_machine() {
        let net = |s: &str, local_only| network_of(s.parse().unwrap(), local_only);
        // Hosts of one private network are distinct machines of the operator's.
        assert_eq!(net("192.168.1.20", false).unwrap(), "192.168.1.20/32");
        assert_ne!(net("192.168.1.20", false), net("192.168.1.21", false));
        assert_ne!(net("10.0.0.1", false), net("10.0.0.2", false));
        assert_eq!(net("100.64.3.4", false).unwrap(), "100.64.3.4/32");
        assert_eq!(net("fd12:3456::1", false).unwrap(), "fd12:3456::1/128");
        assert_eq!(net("::ffff:10.1.2.3", false).unwrap(), "10.1.2.3/32");
        // Loopback is this machine: one network behind a proxy, none on a loopback-only relay.
        assert_eq!(net("127.0.0.1", false).unwrap(), "loopback");
        assert_eq!(net("127.0.0.1", false), net("::1", false));
        assert_eq!(net("127.0.0.1", true), None);
        assert_eq!(net("::1", true), None);
        // A public address stays its /24 whatever the relay listens on.
        assert_eq!(net("203.0.113.7", true).unwrap(), "203.0.113.0/24");
    }
}
