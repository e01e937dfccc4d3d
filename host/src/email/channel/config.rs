//! `[channel.NAME]` as written in `kontor.toml`: transport, sender, SMTP, DKIM and
//! throttle settings, their defaults, and the checks that name the key that is wrong.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lettre::Address;
use lettre::message::Mailbox;
use serde::Deserialize;

/// The channel a `send_email` step uses when it names none.
pub const DEFAULT_CHANNEL: &str = "default";

/// `[channel.NAME]` in `kontor.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// `Name <address>` or a bare address.
    pub from: String,
    #[serde(default)]
    pub reply_to: Option<String>,
    /// `folder` (default) or `smtp`.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// Where the folder transport writes; default `data/mail/NAME`.
    #[serde(default)]
    pub folder: Option<PathBuf>,
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    #[serde(default)]
    pub dkim: Option<DkimSettings>,
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// The mailbox of the `mailto:` unsubscribe link; default: the from address.
    #[serde(default)]
    pub unsubscribe_mailto: Option<String>,
}

fn default_transport() -> String {
    "folder".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (implicit TLS) or `none` (local relays only).
    #[serde(default = "default_tls")]
    pub tls: String,
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the secret holding the password.
    #[serde(default)]
    pub password_secret: Option<String>,
    /// Connections kept open at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// A connection is closed after this many messages (0: never) and a fresh one
    /// opened. Some relays drop or rate-limit long-lived connections.
    #[serde(default = "default_recycle_after")]
    pub recycle_after: u64,
    /// Per SMTP command (`30s`).
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_tls() -> String {
    "starttls".into()
}
fn default_pool_size() -> u32 {
    4
}
fn default_recycle_after() -> u64 {
    100
}
fn default_timeout() -> String {
    "30s".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSettings {
    pub domain: String,
    pub selector: String,
    /// `ed25519` or `rsa`.
    pub algorithm: String,
    /// Name of the secret holding the private key: RSA as PEM (PKCS#1 or PKCS#8),
    /// Ed25519 as PEM (PKCS#8, as `openssl genpkey -algorithm ed25519` writes) or the
    /// base64 of the 32-byte seed.
    pub key_secret: String,
}

/// How fast a channel may send; 0 means unlimited. Held-back messages wait, never drop.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Messages per second over the whole channel.
    pub per_second: f64,
    /// Messages per second to any one recipient domain.
    pub per_domain_per_second: f64,
    /// Per-domain rates that differ from `per_domain_per_second`.
    pub domains: BTreeMap<String, f64>,
    /// Messages per UTC day; the count survives a restart.
    pub daily_cap: u64,
}

impl ThrottleConfig {
    pub fn domain_rate(&self, domain: &str) -> f64 {
        self.domains
            .get(domain)
            .copied()
            .unwrap_or(self.per_domain_per_second)
    }
}

/// Channels as configured, plus the built-in `default` (a folder) when none is.
pub fn configured(channels: &BTreeMap<String, ChannelConfig>) -> BTreeMap<String, ChannelConfig> {
    if !channels.is_empty() {
        return channels.clone();
    }
    BTreeMap::from([(
        DEFAULT_CHANNEL.to_string(),
        ChannelConfig {
            from: "Kontor <kontor@localhost>".into(),
            reply_to: None,
            transport: default_transport(),
            folder: None,
            smtp: None,
            dkim: None,
            throttle: ThrottleConfig::default(),
            unsubscribe_mailto: None,
        },
    )])
}

/// Checks a channel's configuration without touching secrets or the network.
pub fn validate(name: &str, c: &ChannelConfig) -> Result<(), String> {
    let key = format!("channel.{name}");
    c.from
        .parse::<Mailbox>()
        .map_err(|e| format!("{key}.from: `{}` is not a mailbox: {e}", c.from))?;
    if let Some(r) = &c.reply_to {
        r.parse::<Mailbox>()
            .map_err(|e| format!("{key}.reply_to: `{r}` is not a mailbox: {e}"))?;
    }
    if let Some(m) = &c.unsubscribe_mailto {
        m.parse::<Address>()
            .map_err(|e| format!("{key}.unsubscribe_mailto: `{m}` is not an address: {e}"))?;
    }
    match (c.transport.as_str(), &c.smtp) {
        ("folder", _) => {}
        ("smtp", None) => {
            return Err(format!(
                "{key}: transport `smtp` needs a `[{key}.smtp]` table with at least `host`"
            ));
        }
        ("smtp", Some(s)) => {
            if !matches!(s.tls.as_str(), "starttls" | "tls" | "none") {
                return Err(format!(
                    "{key}.smtp.tls must be `starttls`, `tls` or `none`, not `{}`",
                    s.tls
                ));
            }
            if s.pool_size == 0 {
                return Err(format!("{key}.smtp.pool_size must be at least 1"));
            }
            if s.password_secret.is_some() != s.username.is_some() {
                return Err(format!(
                    "{key}.smtp: set both `username` and `password_secret`, or neither"
                ));
            }
            kontor_time::parse_positive_duration(&s.timeout)
                .map_err(|e| format!("{key}.smtp.timeout: {e}"))?;
        }
        (other, _) => {
            return Err(format!(
                "{key}.transport must be `folder` or `smtp`, not `{other}`"
            ));
        }
    }
    if let Some(d) = &c.dkim
        && !matches!(d.algorithm.as_str(), "ed25519" | "rsa")
    {
        return Err(format!(
            "{key}.dkim.algorithm must be `ed25519` or `rsa`, not `{}`",
            d.algorithm
        ));
    }
    let t = &c.throttle;
    let rates = [
        ("per_second", t.per_second),
        ("per_domain_per_second", t.per_domain_per_second),
    ]
    .into_iter()
    .chain(t.domains.values().map(|r| ("domains", *r)));
    for (field, rate) in rates {
        if !rate.is_finite() || rate < 0.0 {
            return Err(format!(
                "{key}.throttle.{field} must be a number of messages per second ≥ 0 (0: unlimited)"
            ));
        }
    }
    Ok(())
}

/// What a channel needs from the secrets store, by secret name.
pub fn secret_names(c: &ChannelConfig) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(s) = c.smtp.as_ref().and_then(|s| s.password_secret.clone()) {
        names.push(s);
    }
    if let Some(d) = &c.dkim {
        names.push(d.key_secret.clone());
    }
    names
}
