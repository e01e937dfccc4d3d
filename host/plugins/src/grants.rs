//! What a plugin is allowed to use (`[plugin.NAME.grants]`), deny by default: the
//! origins it may call, the internal address ranges it may reach anyway, its secrets and
//! its key-value store. Which addresses count as internal is the SSRF guard's
//! business (`http/address_guard.rs`).

use std::net::IpAddr;

use ipnet::IpNet;

/// The capabilities granted to one plugin installation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Origins the plugin may call.
    pub http: Vec<Origin>,
    /// Address ranges normally refused (loopback, private, link-local, unique-local) that
    /// this plugin may reach anyway, e.g. an ERP on the company network.
    pub private_networks: Vec<IpNet>,
    /// Secret names the plugin may read.
    pub secrets: Vec<String>,
    /// Whether the plugin has its key-value store.
    pub kv: bool,
}

/// Scheme, host and port of a URL: what an HTTP grant names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase; IPv6 literals without brackets.
    pub host: String,
    /// Explicit, or the scheme's default (80, 443).
    pub port: u16,
}

impl Origin {
    /// Parses `https://erp.example.com`, `http://10.1.2.3:8080` (a path is refused).
    pub fn parse(text: &str) -> Result<Origin, String> {
        let url = url::Url::parse(text)
            .map_err(|e| format!("`{text}` is not an origin like https://erp.example.com: {e}"))?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{text}` is not an origin: name only scheme, host and port (https://erp.example.com:8443)"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "`{text}` must not contain credentials; grant a secret instead"
            ));
        }
        Origin::of(&url).ok_or_else(|| format!("`{text}` is not an http or https origin"))
    }

    /// The origin of an http or https URL.
    pub fn of(url: &url::Url) -> Option<Origin> {
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let host = match url.host()? {
            url::Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        Some(Origin {
            scheme: url.scheme().to_string(),
            host,
            port: url.port_or_known_default()?,
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

impl Grants {
    /// Whether `origin` is granted.
    pub fn allows_origin(&self, origin: &Origin) -> bool {
        self.http.contains(origin)
    }

    /// Whether a normally refused `ip` is named by a `private_networks` grant.
    pub fn allows_private(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.private_networks.iter().any(|n| n.contains(&ip))
    }

    /// What a plugin asks for but is not granted, as lines of the `[plugin.NAME.grants]`
    /// table that would grant it; empty when everything is granted.
    pub fn missing(&self, hosts: &[String], secrets: &[String], kv: bool) -> Vec<String> {
        let mut missing = Vec::new();
        for host in hosts {
            match Origin::parse(host) {
                Ok(origin) if self.allows_origin(&origin) => {}
                Ok(origin) => missing.push(format!("http: \"{origin}\"")),
                Err(e) => missing.push(format!("http: {e}")),
            }
        }
        for secret in secrets {
            if !self.secrets.contains(secret) {
                missing.push(format!("secrets: \"{secret}\""));
            }
        }
        if kv && !self.kv {
            missing.push("kv = true".into());
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_get_their_default_ports_and_refuse_paths() {
        let o = Origin::parse("https://ERP.example.com").unwrap();
        assert_eq!(o.to_string(), "https://erp.example.com:443");
        assert_eq!(
            Origin::parse("http://[::1]:8080").unwrap().to_string(),
            "http://[::1]:8080"
        );
        assert!(Origin::parse("https://erp.example.com/odata").is_err());
        assert!(Origin::parse("ftp://erp.example.com").is_err());
        assert!(Origin::parse("https://user:pw@erp.example.com").is_err());
    }

    #[test]
    fn private_grants_name_ranges() {
        let grants = Grants {
            private_networks: vec![
                "10.1.0.0/16".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap(),
            ],
            ..Grants::default()
        };
        assert!(grants.allows_private("10.1.2.3".parse().unwrap()));
        assert!(grants.allows_private("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!grants.allows_private("10.2.0.1".parse().unwrap()));
        assert!(!grants.allows_private("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn missing_grants_are_listed_exactly() {
        let grants = Grants {
            http: vec![Origin::parse("https://erp.example.com").unwrap()],
            secrets: vec!["erp-token".into()],
            ..Grants::default()
        };
        let missing = grants.missing(
            &[
                "https://erp.example.com:443".into(),
                "https://crm.example.com".into(),
            ],
            &["erp-token".into(), "erp-password".into()],
            true,
        );
        assert_eq!(
            missing,
            [
                "http: \"https://crm.example.com:443\"",
                "secrets: \"erp-password\"",
                "kv = true"
            ]
        );
    }
}
