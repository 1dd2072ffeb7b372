//! An IP address or CIDR block as an operator writes it in `[access]
//! relay_peers` (SPEC §8): `192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`.
//! Parsed once, at config load; a bad entry is an error that names it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Deserialize;

/// Every address whose first `prefix` bits are `network`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// Whether `ip` lies in this block. An IPv4 peer seen through a
    /// dual-stack listener (`::ffff:192.0.2.7`) is its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(ip, self.prefix) == net,
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(ip, self.prefix) == net,
            _ => false,
        }
    }
}

fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let bits = u32::from(ip);
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(bits & mask)
}

fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let bits = u128::from(ip);
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    Ipv6Addr::from(bits & mask)
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for IpBlock {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: String| format!("{text:?} is not an IP address or CIDR block: {why}");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| bad(format!("{addr:?} is not an IPv4 or IPv6 address")))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // u8's parser takes a leading '+'; a prefix is digits only.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| bad(format!("the prefix length must be 0..={max}")))?,
            Some(p) => return Err(bad(format!("the prefix length {p:?} is not a number"))),
        };
        let masked = match network {
            IpAddr::V4(ip) => IpAddr::V4(mask_v4(ip, prefix)),
            IpAddr::V6(ip) => IpAddr::V6(mask_v6(ip, prefix)),
        };
        if masked != network {
            return Err(bad(format!(
                "it has bits set beyond its /{prefix} prefix; did you mean {masked}/{prefix}?"
            )));
        }
        Ok(IpBlock { network, prefix })
    }
}

impl<'de> Deserialize<'de> for IpBlock {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|why: String| serde::de::Error::custom(format!("relay_peers: {why}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_blocks_contain_what_they_say() {
        let one: IpBlock = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        assert!(one.contains(ip("::ffff:192.0.2.7")), "a dual-stack peer");
        let net: IpBlock = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.255.3")) && !net.contains(ip("10.2.0.1")));
        assert!(!net.contains(ip("::1")));
        let all: IpBlock = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        let v6: IpBlock = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert_eq!(net.to_string(), "10.1.0.0/16");
    }

    #[test]
    fn hostile_entries_are_refused_naming_the_entry() {
        for text in [
            "",
            "/",
            "/24",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/0008",
            "10.0.0.0/8/8",
            "10.0.0.0 /8",
            " 10.0.0.1",
            "10.0.0",
            "10.0.0.256",
            "daq1.local",
            "::/129",
            "10.0.0.5/24",
            "2001:db8::1/32",
            "10.0.0.0/٨",
        ] {
            let err = text.parse::<IpBlock>().unwrap_err();
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
        let err = "10.0.0.5/24".parse::<IpBlock>().unwrap_err();
        assert!(err.contains("did you mean 10.0.0.0/24"), "{err}");
    }

    #[test]
    fn the_access_table_reads_relay_peers_and_names_a_bad_one() {
        let c: crate::Config =
            toml::from_str("[access]\nrelay_peers = [\"192.0.2.7\", \"10.0.0.0/8\"]\n").unwrap();
        assert_eq!(c.access.relay_peers.len(), 2);
        let err = toml::from_str::<crate::Config>(
            "[access]\nrelay_peers = [\"10.0.0.0/8\", \"head-node\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("relay_peers") && err.contains("\"head-node\""),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,48}") {
            let _ = text.parse::<IpBlock>();
        }

        #[test]
        fn a_block_contains_every_address_under_its_prefix(
            bits in any::<u32>(), other in any::<u32>(), prefix in 0u8..=32
        ) {
            let network = mask_v4(Ipv4Addr::from(bits), prefix);
            let block: IpBlock = format!("{network}/{prefix}").parse().unwrap();
            prop_assert!(block.contains(IpAddr::V4(Ipv4Addr::from(bits))));
            let same_prefix = mask_v4(Ipv4Addr::from(other), prefix) == network;
            prop_assert_eq!(block.contains(IpAddr::V4(Ipv4Addr::from(other))), same_prefix);
        }
    }
}
