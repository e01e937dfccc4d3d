//! The SMTP connection pool of a channel, on lettre's SMTP client.
//!
//! Why not lettre's own pooled transport: it cannot retire a connection after N messages,
//! and its sockets keep Nagle's algorithm on. lettre writes a message body and its final
//! `.` in two writes; with Nagle the second waits for the server's ACK of the first, which
//! a server delays by up to 40 ms — 23 messages/s per connection instead of thousands.
//! Here every plain or STARTTLS connection is a TCP socket with `TCP_NODELAY`, made by us
//! and handed to lettre's client. (Implicit TLS, port 465, is connected by lettre and keeps
//! the default.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use tokio::sync::Semaphore;

use super::channel::SendError;

/// How connections are secured.
#[derive(Clone)]
pub enum Security {
    None,
    StartTls(TlsParameters),
    Implicit(TlsParameters),
}

/// Idle connections this old are checked with `NOOP` before they are used again.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(10);

pub struct SmtpPool {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    recycle_after: u64,
    /// Open connections not in use: (connection, messages sent on it, idle since).
    idle: Mutex<Vec<(AsyncSmtpConnection, u64, Instant)>>,
    /// At most `pool_size` connections at once.
    slots: Semaphore,
}

impl SmtpPool {
    pub fn new(
        host: String,
        port: u16,
        security: Security,
        credentials: Option<Credentials>,
        timeout: Duration,
        pool_size: u32,
        recycle_after: u64,
    ) -> SmtpPool {
        SmtpPool {
            host,
            port,
            security,
            credentials,
            timeout,
            hello: ClientId::default(),
            recycle_after,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(pool_size.max(1) as usize),
        }
    }

    /// Sends one message. A reused connection that turns out dead is replaced once.
    pub async fn send(&self, envelope: &Envelope, bytes: &[u8]) -> Result<Response, SendError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| SendError::Temporary(e.to_string()))?;
        let (mut connection, mut sent, reused) = match self.take_idle().await {
            Some((c, sent)) => (c, sent, true),
            None => (self.connect().await?, 0, false),
        };
        let mut attempt = self.send_on(&mut connection, envelope, bytes).await;
        if reused && matches!(attempt, Attempt::Broken(_)) {
            connection.abort().await;
            connection = self.connect().await?;
            sent = 0;
            attempt = self.send_on(&mut connection, envelope, bytes).await;
        }
        match attempt {
            Attempt::Accepted(response) => {
                self.put_back(connection, sent + 1).await;
                Ok(response)
            }
            Attempt::Refused(e) => {
                // The server refused this message; the connection may carry the next.
                if !connection.has_broken()
                    && connection
                        .command(lettre::transport::smtp::commands::Rset)
                        .await
                        .is_ok()
                {
                    self.put_back(connection, sent).await;
                } else {
                    connection.abort().await;
                }
                Err(classify(&e))
            }
            Attempt::Broken(e) => {
                connection.abort().await;
                Err(e)
            }
        }
    }

    async fn send_on(
        &self,
        connection: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Attempt {
        match tokio::time::timeout(self.timeout, connection.send(envelope, bytes)).await {
            Ok(Ok(response)) => Attempt::Accepted(response),
            Ok(Err(e)) if e.is_response() => Attempt::Refused(e),
            Ok(Err(e)) => Attempt::Broken(classify(&e)),
            Err(_) => Attempt::Broken(SendError::Temporary(format!(
                "{}:{} did not answer within {:?}",
                self.host, self.port, self.timeout
            ))),
        }
    }

    async fn take_idle(&self) -> Option<(AsyncSmtpConnection, u64)> {
        loop {
            let (mut connection, sent, since) = self.lock().pop()?;
            if since.elapsed() < CHECK_IDLE_AFTER || connection.test_connected().await {
                return Some((connection, sent));
            }
            connection.abort().await;
        }
    }

    async fn put_back(&self, mut connection: AsyncSmtpConnection, sent: u64) {
        if self.recycle_after > 0 && sent >= self.recycle_after {
            let _ = connection.quit().await;
            return;
        }
        self.lock().push((connection, sent, Instant::now()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(AsyncSmtpConnection, u64, Instant)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let temporary = |what: &str, e: &dyn std::fmt::Display| {
            SendError::Temporary(format!("{what} {}:{}: {e}", self.host, self.port))
        };
        let mut connection = match &self.security {
            Security::Implicit(tls) => AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                Some(tls.clone()),
                None,
            )
            .await
            .map_err(|e| temporary("connecting to", &e))?,
            plain_or_starttls => {
                let tcp = tokio::time::timeout(
                    self.timeout,
                    tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
                )
                .await
                .map_err(|_| temporary("timed out connecting to", &"no answer"))?
                .map_err(|e| temporary("connecting to", &e))?;
                tcp.set_nodelay(true)
                    .map_err(|e| temporary("configuring the socket to", &e))?;
                let mut connection = tokio::time::timeout(
                    self.timeout,
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
                )
                .await
                .map_err(|_| temporary("no greeting from", &"timeout"))?
                .map_err(|e| classify_connect(&e, &self.host, self.port))?;
                if let Security::StartTls(tls) = plain_or_starttls {
                    connection
                        .starttls(tls.clone(), &self.hello)
                        .await
                        .map_err(|e| classify_connect(&e, &self.host, self.port))?;
                }
                connection
            }
        };
        if let Some(credentials) = &self.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| classify_connect(&e, &self.host, self.port))?;
        }
        Ok(connection)
    }
}

enum Attempt {
    Accepted(Response),
    /// The server answered with an error reply.
    Refused(lettre::transport::smtp::Error),
    /// The connection failed or timed out.
    Broken(SendError),
}

/// 5xx: permanent; everything else (4xx, network, TLS, timeouts): temporary.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let text = e.to_string();
    let text = match e.status() {
        Some(code) if !text.contains(&code.to_string()) => format!("{code} {text}"),
        _ => text,
    };
    if e.is_permanent() {
        SendError::Permanent(text)
    } else {
        SendError::Temporary(text)
    }
}

/// A refused login or TLS handshake keeps failing, but the message itself is fine:
/// temporary, so it goes once the configuration is fixed.
fn classify_connect(e: &lettre::transport::smtp::Error, host: &str, port: u16) -> SendError {
    SendError::Temporary(format!("{host}:{port}: {}", classify(e)))
}
