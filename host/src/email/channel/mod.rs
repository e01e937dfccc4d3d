//! Channels: where mail leaves (an SMTP server or a folder of `.eml` files), as whom,
//! signed how (DKIM), and how fast (throttles).
//!
//! ```toml
//! [channel.service]
//! from = "Müller Service <service@mueller.example>"
//! reply_to = "support@mueller.example"
//! transport = "smtp"                 # or "folder" (the default)
//!
//! [channel.service.smtp]
//! host = "mail.mueller.example"
//! tls = "starttls"                   # "tls" (implicit, port 465) or "none"
//! username = "kontor"
//! password_secret = "smtp-password"  # a name in the secrets store
//! pool_size = 4
//! recycle_after = 100                # new connections after this many messages
//!
//! [channel.service.dkim]
//! domain = "mueller.example"
//! selector = "kontor"
//! algorithm = "ed25519"              # or "rsa"
//! key_secret = "dkim-key"
//!
//! [channel.service.throttle]
//! per_second = 20
//! per_domain_per_second = 2
//! domains = { "gmx.de" = 1 }
//! daily_cap = 50000
//! ```

mod config;
mod dkim;
mod headers;

use std::path::PathBuf;

use lettre::message::dkim::{DkimCanonicalization, DkimCanonicalizationType, DkimConfig};
use lettre::message::header::{ContentTransferEncoding, HeaderName};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::TlsParameters;
use lettre::{Address, Message};

use crate::run::parse_address;
use crate::templates::Rendered;
pub use config::*;
pub use dkim::dkim_key;
use headers::{ContentLanguage, ListUnsubscribe, ListUnsubscribePost, Subject};

/// Why a send did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// Try again later: 4xx replies, connection problems, timeouts.
    Temporary(String),
    /// Do not retry: 5xx replies, a message that cannot be built.
    Permanent(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Temporary(m) | SendError::Permanent(m) => f.write_str(m),
        }
    }
}

/// One message, ready to render into a MIME message.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The outbox id: `Message-ID: <id@from-domain>`.
    pub id: &'a str,
    pub to: &'a str,
    pub name: Option<&'a str>,
    /// The unsubscribe link under `public_url` and its token, for mail that may carry one.
    pub unsubscribe: Option<(String, String)>,
}

/// A channel, opened: transport connected lazily, DKIM key parsed.
pub struct Channel {
    pub name: String,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    unsubscribe_mailto: Address,
    dkim: Option<DkimConfig>,
    pub dkim_algorithm: Option<String>,
    pub throttle: ThrottleConfig,
    transport: Transport,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("name", &self.name).finish()
    }
}

enum Transport {
    Folder(PathBuf),
    Smtp(Box<super::smtp::SmtpPool>),
}

impl Channel {
    /// Opens channel `name`; `secret` returns a secret's value by name.
    pub fn open(
        name: &str,
        c: &ChannelConfig,
        secret: &dyn Fn(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Channel, String> {
        validate(name, c)?;
        let key = format!("channel.{name}");
        let from: Mailbox = c.from.parse().map_err(|e| format!("{key}.from: {e}"))?;
        let reply_to = match &c.reply_to {
            Some(r) => Some(r.parse().map_err(|e| format!("{key}.reply_to: {e}"))?),
            None => None,
        };
        let unsubscribe_mailto = match &c.unsubscribe_mailto {
            Some(m) => m
                .parse()
                .map_err(|e| format!("{key}.unsubscribe_mailto: {e}"))?,
            None => from.email.clone(),
        };
        let (dkim, dkim_algorithm) = match &c.dkim {
            None => (None, None),
            Some(d) => {
                let raw = secret(&d.key_secret)
                    .map_err(|e| format!("{key}.dkim.key_secret `{}`: {e}", d.key_secret))?;
                let text = String::from_utf8(raw)
                    .map_err(|_| format!("{key}.dkim: secret `{}` is not text", d.key_secret))?;
                let signing_key = dkim_key(&d.algorithm, &text)
                    .map_err(|e| format!("{key}.dkim: the key in secret `{}` {e}", d.key_secret))?;
                let config = DkimConfig::new(
                    d.selector.clone(),
                    d.domain.clone(),
                    signing_key,
                    SIGNED_HEADERS
                        .iter()
                        .map(|h| HeaderName::new_from_ascii_str(h))
                        .collect(),
                    DkimCanonicalization {
                        header: DkimCanonicalizationType::Relaxed,
                        body: DkimCanonicalizationType::Relaxed,
                    },
                );
                (Some(config), Some(d.algorithm.clone()))
            }
        };
        let transport = match (c.transport.as_str(), &c.smtp) {
            ("smtp", Some(s)) => Transport::Smtp(Box::new(smtp_pool(&key, s, secret)?)),
            _ => Transport::Folder(
                c.folder
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("data/mail").join(name)),
            ),
        };
        Ok(Channel {
            name: name.to_string(),
            from,
            reply_to,
            unsubscribe_mailto,
            dkim,
            dkim_algorithm,
            throttle: c.throttle.clone(),
            transport,
        })
    }

    /// `Name <address>` of the sender.
    pub fn from_address(&self) -> String {
        self.from.to_string()
    }

    /// The domain of the from address (for `Message-ID`s).
    pub fn from_domain(&self) -> &str {
        self.from.email.domain()
    }

    /// Builds the MIME message for `envelope` with `rendered` content, DKIM-signed if the
    /// channel signs. CPU work: call it off the async threads for bulk sends.
    pub fn build(
        &self,
        envelope: &Envelope<'_>,
        rendered: &Rendered,
    ) -> Result<Message, SendError> {
        let to = parse_address(envelope.to).map_err(SendError::Permanent)?;
        let mut builder = Message::builder()
            .message_id(Some(format!("<{}@{}>", envelope.id, self.from_domain())))
            .from(self.from.clone())
            .to(Mailbox::new(envelope.name.map(str::to_string), to))
            .header(Subject(rendered.subject.clone()))
            .header(ContentLanguage(rendered.locale.clone()));
        if let Some(r) = &self.reply_to {
            builder = builder.reply_to(r.clone());
        }
        if let Some((url, token)) = &envelope.unsubscribe {
            builder = builder
                .header(ListUnsubscribe(format!(
                    "<{url}>, <mailto:{}?subject=unsubscribe%20{token}>",
                    self.unsubscribe_mailto
                )))
                .header(ListUnsubscribePost);
        }
        let body = MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(lettre::message::header::ContentType::TEXT_PLAIN)
                    .header(ContentTransferEncoding::QuotedPrintable)
                    .body(rendered.text.clone()),
            )
            .singlepart(
                SinglePart::builder()
                    .header(lettre::message::header::ContentType::TEXT_HTML)
                    .header(ContentTransferEncoding::QuotedPrintable)
                    .body(rendered.html.clone()),
            );
        let mut message = builder
            .multipart(body)
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))?;
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
        Ok(message)
    }

    /// Hands `message` to the transport. Returns the server's reply (or the file).
    pub async fn send(&self, message: &Message, id: &str) -> Result<String, SendError> {
        match &self.transport {
            Transport::Folder(dir) => {
                let bytes = message.formatted();
                let dir = dir.clone();
                let id = id.to_string();
                tokio::task::spawn_blocking(move || write_eml(&dir, &id, &bytes))
                    .await
                    .map_err(|e| SendError::Temporary(e.to_string()))?
            }
            Transport::Smtp(pool) => {
                let response = pool.send(message.envelope(), &message.formatted()).await?;
                Ok(format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                ))
            }
        }
    }

    pub fn transport_name(&self) -> &'static str {
        match self.transport {
            Transport::Folder(_) => "folder",
            Transport::Smtp(_) => "smtp",
        }
    }
}

/// Headers the DKIM signature covers when present. RFC 8058 requires the two
/// `List-Unsubscribe` headers to be signed; lettre's default list has only four headers.
/// Not `Content-Type`: lettre writes a multipart's type with the body, after signing, so
/// the signer would skip it while a verifier hashes it.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Language",
];

/// Writes the message as `<id>.eml`; a re-send of the same message (after a crash between
/// the write and its commit) becomes `<id>.2.eml`, `<id>.3.eml`, …, so every attempt stays
/// visible. Each file appears whole: written beside, then linked into place without ever
/// replacing another.
fn write_eml(dir: &std::path::Path, id: &str, bytes: &[u8]) -> Result<String, SendError> {
    let temporary = |e: std::io::Error| SendError::Temporary(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(temporary)?;
    let partial = dir.join(format!(".{id}.eml.partial"));
    std::fs::write(&partial, bytes).map_err(temporary)?;
    let mut written = None;
    for attempt in 1..=1000 {
        let path = match attempt {
            1 => dir.join(format!("{id}.eml")),
            n => dir.join(format!("{id}.{n}.eml")),
        };
        match std::fs::hard_link(&partial, &path) {
            Ok(()) => {
                written = Some(path);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(temporary(e));
            }
        }
    }
    let _ = std::fs::remove_file(&partial);
    let path = written.ok_or_else(|| {
        SendError::Permanent(format!(
            "message {id} was already written 1,000 times to {}",
            dir.display()
        ))
    })?;
    Ok(format!("written to {}", path.display()))
}

fn smtp_pool(
    key: &str,
    s: &SmtpConfig,
    secret: &dyn Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<super::smtp::SmtpPool, String> {
    use super::smtp::Security;
    let credentials = match (&s.username, &s.password_secret) {
        (Some(user), Some(name)) => {
            let password =
                secret(name).map_err(|e| format!("{key}.smtp.password_secret `{name}`: {e}"))?;
            let password = String::from_utf8(password)
                .map_err(|_| format!("{key}.smtp: secret `{name}` is not text"))?;
            Some(Credentials::new(user.clone(), password))
        }
        _ => None,
    };
    let security = match s.tls.as_str() {
        "none" => Security::None,
        mode => {
            // Certificates are verified against the bundled web PKI roots.
            let parameters = TlsParameters::new(s.host.clone())
                .map_err(|e| format!("{key}.smtp: TLS for `{}`: {e}", s.host))?;
            if mode == "tls" {
                Security::Implicit(parameters)
            } else {
                Security::StartTls(parameters)
            }
        }
    };
    let port = s.port.unwrap_or(match s.tls.as_str() {
        "tls" => 465,
        "none" => 25,
        _ => 587,
    });
    Ok(super::smtp::SmtpPool::new(
        s.host.clone(),
        port,
        security,
        credentials,
        kontor_time::parse_positive_duration(&s.timeout)?,
        s.pool_size,
        s.recycle_after,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_are_not_keys_are_refused_with_the_reason() {
        let err = |alg: &str, text: &str| dkim_key(alg, text).err().unwrap();
        assert!(err("rsa", "hello").contains("is not a PEM RSA private key"));
        assert!(
            err(
                "rsa",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
            )
            .contains("PKCS#8")
        );
        assert!(err("ed25519", "bm90IGEga2V5").contains("Ed25519"));
        assert!(
            err(
                "ed25519",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
            )
            .contains("PKCS#8")
        );
        // A 32-byte seed in base64 is an Ed25519 key.
        assert!(dkim_key("ed25519", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let parse = |text: &str| -> ChannelConfig { toml::from_str(text).unwrap() };
        let cases = [
            ("from = \"nobody\"", "channel.x.from"),
            (
                "from = \"a@b.example\"\ntransport = \"pigeon\"",
                "channel.x.transport",
            ),
            (
                "from = \"a@b.example\"\ntransport = \"smtp\"",
                "[channel.x.smtp]",
            ),
            (
                "from = \"a@b.example\"\ntransport = \"smtp\"\n[smtp]\nhost = \"h\"\ntls = \"maybe\"",
                "channel.x.smtp.tls",
            ),
            (
                "from = \"a@b.example\"\n[throttle]\nper_second = -1",
                "channel.x.throttle.per_second",
            ),
            (
                "from = \"a@b.example\"\n[dkim]\ndomain = \"d\"\nselector = \"s\"\nalgorithm = \"dsa\"\nkey_secret = \"k\"",
                "channel.x.dkim.algorithm",
            ),
        ];
        for (text, key) in cases {
            let error = validate("x", &parse(text)).unwrap_err();
            assert!(error.contains(key), "{error} names {key}");
        }
        assert!(validate("x", &parse("from = \"Müller GmbH <info@mueller.example>\"")).is_ok());
    }

    #[test]
    fn a_resent_message_is_written_beside_the_first_never_over_it() {
        let dir = tempfile::tempdir().unwrap();
        write_eml(dir.path(), "m1", b"first").unwrap();
        let second = write_eml(dir.path(), "m1", b"second").unwrap();
        assert!(second.ends_with("m1.2.eml"), "{second}");
        assert_eq!(std::fs::read(dir.path().join("m1.eml")).unwrap(), b"first");
        assert_eq!(
            std::fs::read(dir.path().join("m1.2.eml")).unwrap(),
            b"second"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "no partial file is left behind");
    }

    #[test]
    fn long_subjects_and_names_fold_within_the_rfc_5322_line_limits() {
        let config: ChannelConfig =
            toml::from_str("from = \"Service <service@example.com>\"").unwrap();
        let channel = Channel::open("x", &config, &|_| Err("none".into())).unwrap();
        let long_word = format!("Rückruf {} Ende", "A1".repeat(750));
        let many_words = "Rückruf der Serie KS-2000 für Bäckerei Groß ".repeat(40);
        let name = format!("{} Müller", "B".repeat(300));
        for subject in [long_word, many_words] {
            let rendered = Rendered {
                locale: "de".into(),
                subject: subject.clone(),
                text: "t".into(),
                html: "h".into(),
            };
            let envelope = Envelope {
                id: "m1",
                to: "a@example.com",
                name: Some(&name),
                unsubscribe: None,
            };
            let message = channel.build(&envelope, &rendered).unwrap();
            let bytes = message.formatted();
            let text = String::from_utf8_lossy(&bytes);
            let head = &text[..text.find("\r\n\r\n").unwrap()];
            // Every line within the hard limit; the subject's within the recommended 78.
            let mut in_subject = false;
            for line in head.split("\r\n") {
                in_subject = line.starts_with("Subject:") || (in_subject && line.starts_with(' '));
                let limit = if in_subject { 78 } else { 998 };
                assert!(line.len() <= limit, "{} characters: {line}", line.len());
            }
            let parsed = mailparse::parse_mail(&bytes).unwrap();
            use mailparse::MailHeaderMap;
            assert_eq!(
                parsed.headers.get_first_value("Subject").unwrap(),
                subject.trim_end(),
                "decodes to the same subject"
            );
        }
    }
}
