//! The dispatcher: claims due outbox rows, checks suppressions and throttles at send
//! time, renders, signs and sends, and records the outcome of every message.
//!
//! A row is `sending` while its message is with the transport. A crash then leaves it
//! `sending`; the next start puts it back in the queue with the same id, hence the same
//! `Message-ID`. So a message can be sent twice only if the process dies between the
//! SMTP server's `250` and our commit of `sent` — and the copies share a Message-ID that
//! receiving systems use to drop duplicates.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::Duration;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{debug, warn};

use super::channel::{Channel, Envelope, SendError};
use super::throttle::{Decision, Throttle};
use super::unsubscribe::{Keyring, Unsubscribe, may_unsubscribe};
use crate::engine::Engine;
use crate::store::{OutboxMessage, StoreError};

/// `[email]` in `kontor.toml`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// How often an idle dispatcher looks for due messages.
    pub poll_interval_ms: u64,
    /// Messages claimed at once.
    pub batch_size: u32,
    /// Messages being rendered and sent at the same time.
    pub concurrency: usize,
    /// Sends tried before a temporarily failing message fails for good.
    pub max_attempts: u32,
    /// First wait after a temporary failure, doubled each time, at most `max_retry_backoff`.
    pub retry_backoff: String,
    pub max_retry_backoff: String,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            poll_interval_ms: 200,
            batch_size: 64,
            concurrency: 16,
            max_attempts: 8,
            retry_backoff: "30s".into(),
            max_retry_backoff: "1h".into(),
        }
    }
}

impl EmailConfig {
    pub fn backoffs(&self) -> Result<(Duration, Duration), String> {
        let parse = |field: &str, text: &str| {
            kontor_time::parse_duration(text)
                .ok()
                .filter(|d| *d > Duration::zero())
                .ok_or_else(|| format!("email.{field}: `{text}` is not a duration such as `30s`"))
        };
        Ok((
            parse("retry_backoff", &self.retry_backoff)?,
            parse("max_retry_backoff", &self.max_retry_backoff)?,
        ))
    }
}

/// Sends what the outbox holds.
pub struct Dispatcher {
    engine: Arc<Engine>,
    channels: BTreeMap<String, Arc<Channel>>,
    keyring: Keyring,
    public_url: String,
    config: EmailConfig,
    backoff: (Duration, Duration),
    throttle: Mutex<Throttle>,
    wake: Notify,
    permits: Arc<Semaphore>,
}

/// What happened to one message in one pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent,
    Held,
    Retry,
    Failed,
    Suppressed,
}

impl Dispatcher {
    pub fn new(
        engine: Arc<Engine>,
        channels: BTreeMap<String, Arc<Channel>>,
        keyring: Keyring,
        public_url: &str,
        config: EmailConfig,
    ) -> Result<Arc<Dispatcher>, String> {
        let backoff = config.backoffs()?;
        Ok(Arc::new(Dispatcher {
            engine,
            channels,
            keyring,
            public_url: public_url.trim_end_matches('/').to_string(),
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
            backoff,
            throttle: Mutex::new(Throttle::default()),
            wake: Notify::new(),
        }))
    }

    pub fn channel(&self, name: &str) -> Option<&Arc<Channel>> {
        self.channels.get(name)
    }

    pub fn channel_names(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Look at the outbox now (a message was queued).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The link of an unsubscribe token.
    pub fn unsubscribe_url(&self, token: &str) -> String {
        format!("{}/u/{token}", self.public_url)
    }

    /// Runs until `stopped`: requeues what a crash left mid-send, then dispatches.
    pub fn spawn(
        self: &Arc<Self>,
        mut stopped: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let clock = this.engine.clock().clone();
            match this.engine.store().recover_outbox(clock.now()).await {
                Ok(0) => {}
                Ok(n) => warn!(
                    messages = n,
                    "outbox: messages interrupted mid-send are queued again (same Message-ID)"
                ),
                Err(e) => warn!(error = %e, "outbox: recovering interrupted sends failed"),
            }
            loop {
                if *stopped.borrow() {
                    return;
                }
                let busy = match this.dispatch_once().await {
                    Ok(n) => n > 0,
                    Err(e) => {
                        warn!(error = %e, "outbox: dispatch failed");
                        false
                    }
                };
                if busy {
                    continue;
                }
                let poll = StdDuration::from_millis(this.config.poll_interval_ms.max(10));
                let clock_moved = async {
                    match clock.changed() {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = this.wake.notified() => {}
                    _ = clock_moved => {}
                    _ = stopped.changed() => {}
                }
            }
        })
    }

    /// One pass: claims due messages and takes each as far as it goes now. Returns how
    /// many were claimed.
    pub async fn dispatch_once(self: &Arc<Self>) -> Result<usize, StoreError> {
        let store = self.engine.store();
        let now = self.engine.clock().now();
        let claimed = store.claim_outbox(now, self.config.batch_size).await?;
        let count = claimed.len();
        let mut tasks = tokio::task::JoinSet::new();
        for message in claimed {
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let this = self.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let id = message.id.clone();
                match this.process(message).await {
                    Ok(outcome) => debug!(message = %id, ?outcome, "outbox"),
                    Err(e) => {
                        warn!(message = %id, error = %e, "outbox: recording an outcome failed")
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(count)
    }

    async fn process(&self, message: OutboxMessage) -> Result<Outcome, StoreError> {
        let store = self.engine.store();
        let clock = self.engine.clock();
        let now = clock.now();
        let Some(channel) = self.channels.get(&message.channel).cloned() else {
            let reply = format!("there is no email channel `{}`", message.channel);
            store
                .email_finished(&message.id, "failed", &reply, false, now)
                .await?;
            metrics::counter!("kontor_email_failed_total", "channel" => message.channel)
                .increment(1);
            return Ok(Outcome::Failed);
        };
        // Consent is checked when the mail leaves, not only when it was queued.
        if let Some(s) = store.suppression(&message.to, &message.purpose).await?
            && (s.purpose == "*" || may_unsubscribe(&message.purpose))
        {
            let reply = match s.purpose.as_str() {
                "*" => format!("suppressed: {}", s.reason),
                p => format!("suppressed: {} from {p}", s.reason),
            };
            store
                .email_finished(&message.id, "suppressed", &reply, false, now)
                .await?;
            metrics::counter!("kontor_email_suppressed_total", "reason" => s.reason).increment(1);
            return Ok(Outcome::Suppressed);
        }
        let domain = message
            .to
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_lowercase();
        if channel.throttle.daily_cap > 0 {
            let known = self.lock_throttle().knows_day(&channel.name, now);
            if !known {
                let sent = store.sent_today(&channel.name, now).await?;
                self.lock_throttle().set_day(&channel.name, now, sent);
            }
        }
        let decision = self
            .lock_throttle()
            .decide(&channel.name, &channel.throttle, &domain, now);
        if let Decision::Hold(until) = decision {
            store.hold_email(&message.id, until).await?;
            return Ok(Outcome::Held);
        }

        let built = {
            let templates = self.engine.catalog().templates.clone();
            let channel = channel.clone();
            let unsubscribe = may_unsubscribe(&message.purpose).then(|| {
                let token = self.keyring.sign(&Unsubscribe {
                    address: message.to.to_lowercase(),
                    purpose: message.purpose.clone(),
                    locale: message.locale.clone().unwrap_or_else(|| "de".into()),
                });
                (self.unsubscribe_url(&token), token)
            });
            let message = message.clone();
            tokio::task::spawn_blocking(move || {
                let locale = message.locale.as_deref().unwrap_or("");
                let rendered = templates
                    .render(&message.template, locale, &message.data)
                    .map_err(|e| SendError::Permanent(e.to_string()))?;
                channel.build(
                    &Envelope {
                        id: &message.id,
                        to: &message.to,
                        name: message.name.as_deref(),
                        unsubscribe,
                    },
                    &rendered,
                )
            })
            .await
            .map_err(|e| SendError::Temporary(format!("rendering was interrupted: {e}")))
            .and_then(|r| r)
        };
        let result = match built {
            Ok(mime) => channel.send(&mime, &message.id).await,
            Err(e) => Err(e),
        };
        let now = clock.now();
        match result {
            Ok(reply) => {
                store
                    .email_sent(&message.id, &channel.name, &reply, now)
                    .await?;
                metrics::counter!("kontor_email_sent_total", "channel" => channel.name.clone())
                    .increment(1);
                let latency = (now - message.created_at).to_std().unwrap_or_default();
                metrics::histogram!("kontor_email_dispatch_latency_seconds")
                    .record(latency.as_secs_f64());
                Ok(Outcome::Sent)
            }
            Err(SendError::Temporary(reply)) if message.attempts + 1 < self.config.max_attempts => {
                let (first, max) = self.backoff;
                let wait = (first * 2i32.saturating_pow(message.attempts.min(20))).min(max);
                store
                    .email_retry(&message.id, &reply, now + wait, now)
                    .await?;
                metrics::counter!("kontor_email_retries_total", "channel" => channel.name.clone())
                    .increment(1);
                debug!(message = %message.id, %reply, "outbox: temporary failure, retrying");
                Ok(Outcome::Retry)
            }
            Err(SendError::Temporary(reply) | SendError::Permanent(reply)) => {
                store
                    .email_finished(&message.id, "failed", &reply, true, now)
                    .await?;
                metrics::counter!("kontor_email_failed_total", "channel" => channel.name.clone())
                    .increment(1);
                warn!(message = %message.id, %reply, "outbox: message failed");
                Ok(Outcome::Failed)
            }
        }
    }

    fn lock_throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens every configured channel, reading its secrets from the store.
pub async fn open_channels(
    configs: &BTreeMap<String, super::channel::ChannelConfig>,
    store: &crate::store::Store,
    master: &crate::secrets::MasterKey,
) -> anyhow::Result<BTreeMap<String, Arc<Channel>>> {
    let mut channels = BTreeMap::new();
    for (name, config) in super::channel::configured(configs) {
        let mut secrets = BTreeMap::new();
        for secret in super::channel::secret_names(&config) {
            let value = match store.get_secret(&secret).await? {
                Some(sealed) => Ok(master.open(&secret, &sealed)?.expose().to_vec()),
                None => Err(format!(
                    "is not in the secrets store; add it with `kontor secret set {secret}`"
                )),
            };
            secrets.insert(secret, value);
        }
        let lookup = |name: &str| -> Result<Vec<u8>, String> {
            secrets
                .get(name)
                .cloned()
                .unwrap_or_else(|| Err("is not available".into()))
        };
        let channel = Channel::open(&name, &config, &lookup).map_err(anyhow::Error::msg)?;
        channels.insert(name, Arc::new(channel));
    }
    Ok(channels)
}
