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

/// What kind of address `ip` is, when a plugin may not reach it without a grant.
fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if o == [169, 254, 169, 254] || o == [100, 100, 100, 200] {
                Some("cloud metadata")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_unspecified() || v4.is_broadcast() || o[0] == 0 {
                Some("unspecified")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("carrier-grade NAT")
            } else if v4.is_multicast() || o[0] >= 240 {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if s[0..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff {
                Some("IPv4-mapped")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                Some("IPv4-translated")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("unique-local")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] {
                Some("cloud metadata")
            } else if (s[0] & 0xff00) == 0xff00 {
                Some("multicast")
            } else {
                None
            }
        }
    }
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
            ("169.254.1.1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:8.8.8.8", "IPv4-mapped"),
        ] {
            assert_eq!(forbidden_kind(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "2a00:1450:4001::1",
            "193.99.144.80",
        ] {
            assert_eq!(forbidden_kind(ip.parse().unwrap()), None, "{ip}");
        }
    }
}
