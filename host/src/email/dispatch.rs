//! The dispatcher: claims due outbox rows, checks suppressions and throttles at send
//! time, renders, signs and sends, and records the outcome of every message.
//!
//! A row is `sending` while its message is with the transport. A crash then leaves it
//! `sending`; the next start puts it back in the queue with the same id, hence the same
//! `Message-ID`. So a message can be sent twice only if the process dies between the
//! SMTP server's `250` and our commit of `sent` — outcomes are committed in groups, at
//! most [`FLUSH_EVERY`] after the first of them — and the copies share a Message-ID that
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
use crate::clock::SharedClock;
use crate::store::Store;
use crate::store::{OutboxMessage, OutboxUpdate, StoreError};
use crate::templates::CurrentTemplates;

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
    /// `[testing] crash_after_send` (not an `[email]` key).
    #[serde(skip)]
    pub crash_after_send: bool,
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
            crash_after_send: false,
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
    store: Store,
    clock: SharedClock,
    /// The templates in force (swapped when workflows reload).
    templates: CurrentTemplates,
    channels: BTreeMap<String, Arc<Channel>>,
    keyring: Keyring,
    public_url: String,
    config: EmailConfig,
    backoff: (Duration, Duration),
    throttle: Mutex<Throttle>,
    wake: Notify,
    permits: Arc<Semaphore>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        clock: SharedClock,
        templates: CurrentTemplates,
        channels: BTreeMap<String, Arc<Channel>>,
        keyring: Keyring,
        public_url: &str,
        config: EmailConfig,
    ) -> Result<Arc<Dispatcher>, String> {
        let backoff = config.backoffs()?;
        Ok(Arc::new(Dispatcher {
            store,
            clock,
            templates,
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

    /// A message's `decision_links: {lead, owner}` becomes the signed links the owner
    /// accepts or rejects the lead with: `{accept, reject}` (`/l/TOKEN/accept`, …), valid
    /// for [`DecisionLink::VALID_DAYS`]. Signed here, at sending, because the keyring is a
    /// secret steps do not hold.
    ///
    /// [`DecisionLink::VALID_DAYS`]: crate::crm::lead::DecisionLink::VALID_DAYS
    fn sign_decision_links(
        &self,
        data: &mut serde_json::Value,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        use crate::crm::lead::DecisionLink;
        let Some(links) = data.get_mut("decision_links") else {
            return;
        };
        let (Some(lead), Some(owner)) = (
            links.get("lead").and_then(|v| v.as_str()),
            links.get("owner").and_then(|v| v.as_str()),
        ) else {
            return;
        };
        let token = self.keyring.sign_as(
            DecisionLink::CONTEXT,
            &DecisionLink {
                lead: lead.to_string(),
                owner: owner.to_string(),
                expires: (now + chrono::Duration::days(DecisionLink::VALID_DAYS)).timestamp(),
            },
        );
        *links = serde_json::json!({
            "accept": format!("{}/l/{token}/accept", self.public_url),
            "reject": format!("{}/l/{token}/reject", self.public_url),
        });
    }

    /// Runs until `stopped`: requeues what a crash left mid-send, then dispatches.
    pub fn spawn(
        self: &Arc<Self>,
        mut stopped: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let clock = this.clock.clone();
            match &this.store.outbox().recover(clock.now()).await {
                Ok(0) => {}
                Ok(n) => warn!(
                    messages = n,
                    "outbox: messages interrupted mid-send are queued again (same Message-ID)"
                ),
                Err(e) => warn!(error = %e, "outbox: recovering interrupted sends failed"),
            }
            // Several processes on one database: one dispatches, so the throttles and
            // daily caps it keeps hold for all of them; the others stand by.
            let mut leader = crate::store::Leadership::new(crate::store::Role::Mail);
            loop {
                if *stopped.borrow() {
                    return;
                }
                if !leader.holds(&this.store).await {
                    tokio::select! {
                        _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
                        _ = stopped.changed() => {}
                    }
                    continue;
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
                let mail_added = async {
                    match &this.store.mail_added() {
                        Some(added) => added.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = this.wake.notified() => {}
                    _ = mail_added => {}
                    _ = clock_moved => {}
                    _ = stopped.changed() => {}
                }
            }
        })
    }

    /// One pass: claims due messages and takes each as far as it goes now. Returns how
    /// many were claimed.
    pub async fn dispatch_once(self: &Arc<Self>) -> Result<usize, StoreError> {
        let store = &self.store;
        let now = self.clock.now();
        let claimed = store.outbox().claim(now, self.config.batch_size).await?;
        let count = claimed.len();
        let mut tasks = tokio::task::JoinSet::new();
        // Outcomes are committed together, at most FLUSH_EVERY after the first of them:
        // few transactions (one fsync each), and a short window in which a crash makes
        // an accepted message go out again.
        let mut pending = Pending::default();
        let mut flushes = Vec::new();
        for message in claimed {
            let permit = tokio::select! {
                permit = self.permits.clone().acquire_owned() => {
                    permit.expect("the semaphore is never closed")
                }
                _ = pending.due() => {
                    flushes.push(pending.flush_in_background(store));
                    self.permits.clone().acquire_owned().await.expect("the semaphore is never closed")
                }
            };
            let this = self.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let id = message.email.id.clone();
                let update = this.process(message).await;
                if let Err(e) = &update {
                    warn!(message = %id, error = %e, "outbox: checking a message failed");
                }
                update.ok()
            });
            while let Some(done) = tasks.try_join_next() {
                pending.add(done.ok().flatten());
            }
        }
        loop {
            tokio::select! {
                done = tasks.join_next() => match done {
                    Some(done) => pending.add(done.ok().flatten()),
                    None => break,
                },
                _ = pending.due() => flushes.push(pending.flush_in_background(store)),
            }
        }
        flushes.push(pending.flush_in_background(store));
        for flush in flushes {
            flush
                .await
                .map_err(|e| StoreError::GroupCommit(e.to_string()))??;
        }
        Ok(count)
    }

    /// Takes one claimed message as far as it goes now; returns how its row changes.
    async fn process(&self, message: OutboxMessage) -> Result<OutboxUpdate, StoreError> {
        let store = &self.store;
        let clock = &self.clock;
        let now = clock.now();
        let Some(channel) = self.channels.get(&message.email.channel).cloned() else {
            let reply = format!("there is no email channel `{}`", message.email.channel);
            metrics::counter!("kontor_email_failed_total", "channel" => message.email.channel)
                .increment(1);
            return Ok(OutboxUpdate::Finished {
                id: message.email.id,
                status: "failed",
                reply,
                attempted: false,
                at: now,
            });
        };
        // Consent is checked when the mail leaves, not only when it was queued.
        if let Some(s) = store
            .suppressions()
            .find(&message.email.to, &message.email.purpose)
            .await?
            && (s.purpose == "*" || may_unsubscribe(&message.email.purpose))
        {
            let reply = match s.purpose.as_str() {
                "*" => format!("suppressed: {}", s.reason),
                p => format!("suppressed: {} from {p}", s.reason),
            };
            metrics::counter!("kontor_email_suppressed_total", "reason" => s.reason).increment(1);
            return Ok(OutboxUpdate::Finished {
                id: message.email.id,
                status: "suppressed",
                reply,
                attempted: false,
                at: now,
            });
        }

        if channel.throttle.daily_cap > 0 {
            let known = self.lock_throttle().knows_day(&channel.name, now);
            if !known {
                let sent = store.outbox().sent_today(&channel.name, now).await?;
                self.lock_throttle().set_day(&channel.name, now, sent);
            }
        }
        let decision =
            self.lock_throttle()
                .decide(&channel.name, &channel.throttle, &message.domain, now);
        if let Decision::Hold(until) = decision {
            return Ok(OutboxUpdate::Hold {
                id: message.email.id,
                until,
            });
        }

        let built = {
            let templates = self.templates.get();
            let channel = channel.clone();
            let unsubscribe = may_unsubscribe(&message.email.purpose).then(|| {
                let token = self.keyring.sign(&Unsubscribe {
                    address: message.email.to.to_lowercase(),
                    purpose: message.email.purpose.clone(),
                    locale: message.email.locale.clone().unwrap_or_else(|| "de".into()),
                });
                (self.unsubscribe_url(&token), token)
            });
            let mut message = message.clone();
            self.sign_decision_links(&mut message.email.data, now);
            tokio::task::spawn_blocking(move || {
                let locale = message.email.locale.as_deref().unwrap_or("");
                let rendered = templates
                    .render(&message.email.template, locale, &message.email.data)
                    .map_err(|e| SendError::Permanent(e.to_string()))?;
                channel.build(
                    &Envelope {
                        id: &message.email.id,
                        to: &message.email.to,
                        name: message.email.name.as_deref(),
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
            Ok(mime) => channel.send(&mime, &message.email.id).await,
            Err(e) => Err(e),
        };
        let now = clock.now();
        if self.config.crash_after_send && result.is_ok() {
            warn!(message = %message.email.id, "testing.crash_after_send: aborting after the send, before its commit");
            std::process::abort();
        }
        match result {
            Ok(reply) => {
                metrics::counter!("kontor_email_sent_total", "channel" => channel.name.clone())
                    .increment(1);
                let latency = (now - message.created_at).to_std().unwrap_or_default();
                metrics::histogram!("kontor_email_dispatch_latency_seconds")
                    .record(latency.as_secs_f64());
                Ok(OutboxUpdate::Sent {
                    id: message.email.id,
                    channel: channel.name.clone(),
                    reply,
                    at: now,
                })
            }
            Err(SendError::Temporary(reply)) if message.attempts + 1 < self.config.max_attempts => {
                let (first, max) = self.backoff;
                let wait = (first * 2i32.saturating_pow(message.attempts.min(20))).min(max);
                metrics::counter!("kontor_email_retries_total", "channel" => channel.name.clone())
                    .increment(1);
                debug!(message = %message.email.id, %reply, "outbox: temporary failure, retrying");
                Ok(OutboxUpdate::Retry {
                    id: message.email.id,
                    reply,
                    due: now + wait,
                    at: now,
                })
            }
            Err(SendError::Temporary(reply) | SendError::Permanent(reply)) => {
                metrics::counter!("kontor_email_failed_total", "channel" => channel.name.clone())
                    .increment(1);
                warn!(message = %message.email.id, %reply, "outbox: message failed");
                Ok(OutboxUpdate::Finished {
                    id: message.email.id,
                    status: "failed",
                    reply,
                    attempted: true,
                    at: now,
                })
            }
        }
    }

    fn lock_throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long a finished message's outcome may wait for company before it is committed.
const FLUSH_EVERY: StdDuration = StdDuration::from_millis(50);

/// Outcomes not committed yet, and since when the oldest waits.
#[derive(Default)]
struct Pending {
    updates: Vec<OutboxUpdate>,
    since: Option<tokio::time::Instant>,
}

impl Pending {
    fn add(&mut self, update: Option<OutboxUpdate>) {
        if let Some(update) = update {
            self.since.get_or_insert_with(tokio::time::Instant::now);
            self.updates.push(update);
        }
    }

    /// Resolves when the oldest outcome has waited FLUSH_EVERY; never when none waits.
    async fn due(&self) {
        match self.since {
            Some(since) => tokio::time::sleep_until(since + FLUSH_EVERY).await,
            None => std::future::pending().await,
        }
    }

    /// Commits every outcome in one transaction, while dispatching goes on. One not
    /// committed (the process dies first) leaves its message `sending`: it is sent again
    /// after the restart, with its Message-ID.
    fn flush_in_background(
        &mut self,
        store: &crate::store::Store,
    ) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        let updates = std::mem::take(&mut self.updates);
        self.since = None;
        let store = store.clone();
        tokio::spawn(async move {
            store.outbox().update(&updates).await?;
            for update in &updates {
                debug!(?update, "outbox");
            }
            Ok(())
        })
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
            let value = match crate::secrets::read(store, master, &secret).await? {
                Some(plain) => Ok(plain.expose().to_vec()),
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
