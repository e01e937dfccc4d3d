//! Signed inbound webhooks: a CRM, shop or form system posts events to
//! `POST /hooks/{source}` and signs each one, so no bearer token has to live in the
//! sender's configuration.
//!
//! The sender computes `HMAC-SHA256(secret, "{t}.{body}")` over the Unix time `t` and the
//! raw body, and sends it hex-encoded:
//!
//! ```text
//! Kontor-Signature: t=1764759600,v1=5d3c…(64 hex digits)
//! ```
//!
//! A request is accepted when `t` lies within the source's window (5 minutes by default)
//! of the server's clock and one `v1` matches one of the source's secrets. Several `v1`
//! values and several secrets per source let a secret be rotated without a gap: add the
//! new secret, move the sender over, remove the old one. Keys other than `t` and `v1` are
//! ignored, so a later scheme can be added beside `v1`. The same signed request sent
//! again within the window is accepted once (its signature is its delivery id).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// The header a webhook's signature comes in.
pub const SIGNATURE_HEADER: &str = "kontor-signature";

/// Headers longer than this are refused before they are parsed.
const MAX_HEADER: usize = 4096;
/// At most this many `v1` values in one header.
const MAX_SIGNATURES: usize = 8;

/// One webhook source (`[webhooks.NAME]` in kontor.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSource {
    /// Names of secrets (`kontor secret set NAME`) the source signs with; more than one
    /// while a secret is being rotated.
    pub secrets: Vec<String>,
    /// The event types this source may deliver.
    pub events: Vec<String>,
    /// How far the signature's time may be from the server's clock (`5m`).
    #[serde(default = "default_window")]
    pub window: String,
}

fn default_window() -> String {
    "5m".into()
}

impl WebhookSource {
    /// The window as a duration; checked when the configuration loads.
    pub fn window(&self) -> Result<std::time::Duration, String> {
        kontor_time::parse_positive_duration(&self.window).map_err(|e| e.to_string())
    }

    /// Checks `[webhooks.NAME]`: a name fit for a URL path, at least one secret and
    /// one event type, a valid window.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let fits = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !fits {
            return Err(format!(
                "webhooks.{name}: a source name has 1 to 64 lower-case letters, digits, `-` or `_`"
            ));
        }
        if self.secrets.is_empty() {
            return Err(format!(
                "webhooks.{name}.secrets: name at least one secret the source signs with"
            ));
        }
        if self.events.is_empty() || self.events.iter().any(|e| e.trim().is_empty()) {
            return Err(format!(
                "webhooks.{name}.events: name the event types the source may deliver"
            ));
        }
        self.window()
            .map_err(|e| format!("webhooks.{name}.window: {e}"))?;
        Ok(())
    }
}

/// A parsed `Kontor-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Unix seconds the sender signed at.
    pub timestamp: i64,
    /// The `v1` MACs, 32 bytes each.
    pub macs: Vec<[u8; 32]>,
}

/// Why a webhook's signature was refused. The messages go to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request has no Kontor-Signature header")]
    Missing,
    #[error("the Kontor-Signature header is malformed: {0} (expected t=UNIX_SECONDS,v1=HEX)")]
    Malformed(String),
    #[error(
        "the signature's time is {seconds} s away from the server's clock; the window is {window} s (resend with a fresh signature)"
    )]
    OutsideWindow { seconds: i64, window: u64 },
    #[error("no v1 signature matches a secret of this source")]
    Mismatch,
}

impl SignatureError {
    /// The metrics label of the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Missing => "missing",
            SignatureError::Malformed(_) => "malformed",
            SignatureError::OutsideWindow { .. } => "window",
            SignatureError::Mismatch => "mismatch",
        }
    }
}

/// Parses a `Kontor-Signature` header value.
pub fn parse(header: &str) -> Result<Signature, SignatureError> {
    let malformed = |m: &str| SignatureError::Malformed(m.to_string());
    if header.len() > MAX_HEADER {
        return Err(malformed("it is longer than 4096 bytes"));
    }
    let mut timestamp = None;
    let mut macs = Vec::new();
    for part in header.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| malformed(&format!("`{}` is not KEY=VALUE", clip(part))))?;
        match key.trim() {
            "t" => {
                if timestamp.is_some() {
                    return Err(malformed("`t` is given twice"));
                }
                let value = value.trim();
                if value.is_empty()
                    || value.len() > 12
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(malformed("`t` is not Unix seconds"));
                }
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| malformed("`t` is not Unix seconds"))?,
                );
            }
            "v1" => {
                if macs.len() == MAX_SIGNATURES {
                    return Err(malformed("more than 8 v1 signatures"));
                }
                let mut mac = [0u8; 32];
                hex::decode_to_slice(value.trim(), &mut mac)
                    .map_err(|_| malformed("a v1 signature is not 64 hex digits"))?;
                macs.push(mac);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed("`t` is missing"))?;
    if macs.is_empty() {
        return Err(malformed("no v1 signature"));
    }
    Ok(Signature { timestamp, macs })
}

/// The first characters of what a sender sent, for a message.
fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The `v1` signature of `body` signed at `timestamp` with `secret`, hex-encoded.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks `signature` over `body` against `secrets` at `now` (Unix seconds): within the
/// window, and one MAC matching one secret (compared in constant time).
pub fn verify(
    signature: &Signature,
    secrets: &[&[u8]],
    body: &[u8],
    now: i64,
    window: std::time::Duration,
) -> Result<(), SignatureError> {
    let seconds = now.saturating_sub(signature.timestamp);
    let window_secs = window.as_secs();
    if seconds.unsigned_abs() > window_secs {
        return Err(SignatureError::OutsideWindow {
            seconds,
            window: window_secs,
        });
    }
    for secret in secrets {
        for candidate in &signature.macs {
            if mac(secret, signature.timestamp, body)
                .verify_slice(candidate)
                .is_ok()
            {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

    #[test]
    fn a_signed_body_verifies_with_any_of_the_secrets_within_the_window() {
        let body = br#"{"type":"lead.created","payload":{"company":"M\u00fcller"}}"#;
        let header = format!("t=1764759600,v1={}", sign(b"new", 1764759600, body));
        let signature = parse(&header).unwrap();
        assert_eq!(signature.timestamp, 1764759600);
        assert_eq!(
            verify(
                &signature,
                &[b"old", b"new"],
                body,
                1764759600 + 299,
                WINDOW
            ),
            Ok(())
        );
        assert_eq!(
            verify(&signature, &[b"old"], body, 1764759600, WINDOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&signature, &[b"new"], b"{}", 1764759600, WINDOW),
            Err(SignatureError::Mismatch),
            "another body"
        );
        assert!(matches!(
            verify(&signature, &[b"new"], body, 1764759600 + 301, WINDOW),
            Err(SignatureError::OutsideWindow {
                seconds: 301,
                window: 300
            })
        ));
        assert!(matches!(
            verify(&signature, &[b"new"], body, 1764759600 - 301, WINDOW),
            Err(SignatureError::OutsideWindow { seconds: -301, .. })
        ));
    }

    #[test]
    fn a_rotating_sender_may_send_two_signatures_and_later_schemes() {
        let body = b"{}";
        let header = format!(
            " t=10 , v1={}, v1={}, v2=whatever",
            sign(b"old", 10, body),
            sign(b"new", 10, body)
        );
        let signature = parse(&header).unwrap();
        assert_eq!(signature.macs.len(), 2);
        assert_eq!(verify(&signature, &[b"new"], body, 10, WINDOW), Ok(()));
    }

    #[test]
    fn malformed_headers_are_named() {
        let v1 = "v1=".to_string() + &"ab".repeat(32);
        for (header, says) in [
            ("", "`t` is missing"),
            ("t=1", "no v1 signature"),
            (v1.as_str(), "`t` is missing"),
            ("t=1,t=2,v1=00", "twice"),
            ("t=-5,v1=00", "Unix seconds"),
            ("t=9999999999999,v1=00", "Unix seconds"),
            ("t=1,v1=zz", "64 hex digits"),
            ("t=1,v1=abcd", "64 hex digits"),
            ("t=1,garbage", "KEY=VALUE"),
        ] {
            match parse(header) {
                Err(SignatureError::Malformed(m)) => assert!(m.contains(says), "{header}: {m}"),
                other => panic!("{header}: {other:?}"),
            }
        }
        let many = format!("t=1{}", format!(",{v1}").repeat(9));
        assert!(matches!(parse(&many), Err(SignatureError::Malformed(_))));
        assert!(matches!(
            parse(&"x".repeat(5000)),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn sources_are_checked() {
        let source = WebhookSource {
            secrets: vec!["shop-hook".into()],
            events: vec!["order.shipped".into()],
            window: "5m".into(),
        };
        assert_eq!(source.validate("shop"), Ok(()));
        assert!(source.validate("Shop/../x").is_err());
        let no_events = WebhookSource {
            events: vec![],
            ..source.clone()
        };
        assert!(no_events.validate("shop").unwrap_err().contains("events"));
        let bad_window = WebhookSource {
            window: "soon".into(),
            ..source
        };
        assert!(bad_window.validate("shop").unwrap_err().contains("window"));
    }
}
