//! The SSRF guard of plugin HTTP: which addresses a plugin may reach. The host resolves
//! every name itself and refuses the whole name when any of its addresses is loopback,
//! private, link-local, unique-local, cloud metadata or otherwise internal, unless the
//! plugin's `private_networks` grant names it; the connection then goes to exactly an
//! address checked here, so a second lookup cannot swap it.

use std::net::{IpAddr, SocketAddr};

use super::HttpError;
use crate::grants::{Grants, Origin};

/// The addresses of `origin` the plugin may reach; refuses the name if any address is
/// refused (a name that also points inside is not trusted).
pub(super) async fn resolve(
    grants: &Grants,
    origin: &Origin,
) -> Result<Vec<SocketAddr>, HttpError> {
    let addresses: Vec<SocketAddr> = match origin.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
        Err(_) => tokio::net::lookup_host((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| HttpError::Connection(format!("cannot resolve {}: {e}", origin.host)))?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(HttpError::Connection(format!(
            "{} has no addresses",
            origin.host
        )));
    }
    for address in &addresses {
        let ip = address.ip();
        if let Some(kind) = forbidden_kind(ip)
            && !grants.allows_private(ip)
        {
            let named = if origin.host.parse::<IpAddr>().is_ok() {
                format!("{ip} is a {kind} address")
            } else {
                format!("{} resolves to {ip}, a {kind} address", origin.host)
            };
            return Err(HttpError::ForbiddenAddress(format!(
                "{named}; plugins may not reach it unless [plugin.NAME.grants] private_networks names it"
            )));
        }
    }
    Ok(addresses)
}

/// IPv4 ranges a plugin may not reach without a grant: every entry of the IANA IPv4
/// Special-Purpose Address Registry that is not globally reachable (or is deprecated),
/// plus multicast, with the cloud metadata addresses named first.
const REFUSED_V4: &[([u8; 4], u8, &str)] = &[
    ([169, 254, 169, 254], 32, "cloud metadata"),
    ([100, 100, 100, 200], 32, "cloud metadata"),
    ([0, 0, 0, 0], 8, "unspecified"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "carrier-grade NAT"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignment"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 88, 99, 0], 24, "6to4 relay"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved"),
];

/// IPv6 ranges a plugin may not reach without a grant, from the IANA IPv6
/// Special-Purpose Address Registry, plus the ranges that embed an IPv4 address (the
/// embedded one could be anything: mapped, compatible, 6to4, NAT64) and multicast.
const REFUSED_V6: &[([u16; 8], u8, &str)] = &[
    ([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128, "cloud metadata"),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback"),
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified"),
    ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped"),
    ([0, 0, 0, 0, 0, 0, 0, 0], 96, "IPv4-compatible"),
    ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "IPv4-translated"),
    ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "IPv4-translated"),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
    ([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "dummy"),
    (
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignment",
    ),
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4"),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
    ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing"),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local"),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local"),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
];

/// What kind of address `ip` is, when a plugin may not reach it without a grant.
fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let address = u32::from(v4);
            REFUSED_V4
                .iter()
                .find(|(network, bits, _)| {
                    in_prefix(
                        address.into(),
                        u32::from_be_bytes(*network).into(),
                        *bits,
                        32,
                    )
                })
                .map(|(_, _, kind)| *kind)
        }
        IpAddr::V6(v6) => {
            let address = u128::from(v6);
            REFUSED_V6
                .iter()
                .find(|(network, bits, _)| {
                    in_prefix(
                        address,
                        u128::from(std::net::Ipv6Addr::from(*network)),
                        *bits,
                        128,
                    )
                })
                .map(|(_, _, kind)| *kind)
        }
    }
}

/// Whether the first `bits` of `address` and `network` (each `width` bits) agree.
fn in_prefix(address: u128, network: u128, bits: u8, width: u32) -> bool {
    let shift = width - u32::from(bits);
    shift >= width || (address >> shift) == (network >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refused_ranges_are_refused() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("100.100.100.200", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("192.0.0.8", "IETF protocol assignment"),
            ("192.0.2.1", "documentation"),
            ("203.0.113.7", "documentation"),
            ("192.88.99.1", "6to4 relay"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("fec0::1", "site-local"),
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:8.8.8.8", "IPv4-mapped"),
            ("::127.0.0.1", "IPv4-compatible"),
            ("::10.0.0.1", "IPv4-compatible"),
            ("64:ff9b::7f00:1", "IPv4-translated"),
            ("64:ff9b:1::a00:1", "IPv4-translated"),
            ("2002:7f00:1::", "6to4"),
            ("2001::1", "IETF protocol assignment"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("100::1", "discard-only"),
            ("5f00::1", "segment routing"),
            ("ff02::1", "multicast"),
            ("fd00:ec2::254", "cloud metadata"),
        ] {
            assert_eq!(forbidden_kind(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "198.20.0.1",
            "100.128.0.1",
            "192.0.3.1",
            "2a00:1450:4001::1",
            "2003::1",
            "64:ff9b:2::1",
            "193.99.144.80",
        ] {
            assert_eq!(forbidden_kind(ip.parse().unwrap()), None, "{ip}");
        }
    }
}
