//! A listener's sender allow-list: CIDR networks (`allow = ["10.0.0.0/8", "fd00::/8"]`),
//! checked at TCP accept (before any read or handshake) and per UDP datagram.
//!
//! An empty list allows every sender. An IPv4 sender seen as an IPv4-mapped IPv6 address
//! (`::ffff:10.1.2.3`, on a dual-stack socket) is matched as the IPv4 address. No host names:
//! reverse DNS is slow and the sender controls it. UDP source addresses can be spoofed, so on
//! UDP the list keeps out mistakes and casual senders, not an attacker (see docs/security.md).
//! Owns no socket and no metric.

use std::net::IpAddr;

use ipnet::IpNet;

/// Networks whose senders a listener accepts; empty: everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    networks: Vec<IpNet>,
}

impl AllowList {
    pub fn new(networks: Vec<IpNet>) -> AllowList {
        AllowList { networks }
    }

    /// True when `ip` may send to the listener.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.networks.is_empty() {
            return true;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        self.networks.iter().any(|network| network.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(networks: &[&str]) -> AllowList {
        AllowList::new(networks.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn empty_list_allows_everyone_and_networks_are_matched_by_prefix() {
        assert!(AllowList::default().permits("203.0.113.9".parse().unwrap()));
        let allow = list(&["10.0.0.0/8", "127.0.0.2/32", "fd00::/8"]);
        for (ip, expected) in [
            ("10.200.1.1", true),
            ("11.0.0.1", false),
            ("127.0.0.2", true),
            ("127.0.0.1", false),
            ("fd12::1", true),
            ("fe80::1", false),
            ("::ffff:10.1.2.3", true),
            ("::ffff:127.0.0.1", false),
        ] {
            assert_eq!(allow.permits(ip.parse().unwrap()), expected, "{ip}");
        }
    }
}
