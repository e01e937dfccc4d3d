//! The email outbox: messages steps queued (committed with the step) or proofs queued
//! directly, claimed by the dispatcher, and what became of each — sent, held by a
//! throttle, retried, failed or suppressed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::rows::{OUTBOX_COLUMNS, message_view};
use super::transaction::{Tx, on_tx};
use super::{Backend, Store, StoreError, millis};
use crate::run::OutgoingEmail;

/// The outbox. Made by [`Store::outbox`].
#[derive(Clone, Copy)]
pub struct Outbox<'a> {
    pub(super) store: &'a Store,
}

/// A queued message as the dispatcher sees it: what the step queued, and its history.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub email: OutgoingEmail,
    /// The recipient's domain, lowercased (throttles count per domain).
    pub domain: String,
    pub run_id: Option<String>,
    /// Sends tried before this one.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// A message as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// The outbox id; the message's `Message-ID` is `<id@from-domain>`.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    pub campaign: String,
    pub channel: String,
    pub template: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    pub to: String,
    pub purpose: String,
    /// queued, sending, sent, failed or suppressed
    pub status: String,
    pub attempts: u32,
    /// When a queued message is sent next (throttles and retries move it).
    pub due_at: DateTime<Utc>,
    /// The SMTP server's last reply, the error, or why the message was suppressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
}

/// Filters and a cursor for listing messages (newest first).
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub run_id: Option<String>,
    pub campaign: Option<String>,
    pub recipient: Option<String>,
    pub status: Option<String>,
    /// Only messages older than this id (the previous page's last).
    pub before: Option<String>,
    pub limit: u32,
}

/// How a dispatched message's outbox row changes.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxUpdate {
    /// A throttle holds it: back to the queue, due at `until`, attempts unchanged.
    Hold { id: String, until: DateTime<Utc> },
    /// Accepted by the transport; counts for the channel's day.
    Sent {
        id: String,
        channel: String,
        reply: String,
        at: DateTime<Utc>,
    },
    /// A temporary failure: queued again, due at `due`.
    Retry {
        id: String,
        reply: String,
        due: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// `failed` or `suppressed`, with the reply or the reason.
    Finished {
        id: String,
        status: &'static str,
        reply: String,
        attempted: bool,
        at: DateTime<Utc>,
    },
}

/// A recipient as the outbox stores it for lookups: the lowercased address (suppressions)
/// and its domain (throttles).
pub(super) fn recipient_address(to: &str) -> (String, String) {
    let address = to.trim().to_lowercase();
    let domain = address.rsplit('@').next().unwrap_or_default().to_string();
    (address, domain)
}

/// The run, campaign and recipient of a [`MessageFilter`], as `$1`…`$3`.
const SCOPE: &str =
    "(CAST($1 AS TEXT) IS NULL OR run_id = $1) AND (CAST($2 AS TEXT) IS NULL OR campaign = $2)
                     AND (CAST($3 AS TEXT) IS NULL OR address = $3)";

impl Outbox<'_> {
    /// Queues messages outside any run in one transaction (proofs, benchmarks).
    pub async fn enqueue(
        self,
        emails: &[OutgoingEmail],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::outbox::enqueue(db, emails, now).await,
            Backend::Postgres(db) => super::postgres::outbox::enqueue(db, emails, now).await,
        }
    }

    /// Messages a crash left mid-send go back to the queue with their id (and so their
    /// Message-ID). Returns how many.
    pub async fn recover(self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::outbox::recover(db, now).await,
            Backend::Postgres(db) => super::postgres::outbox::recover(db, now).await,
        }
    }

    /// Claims up to `limit` due messages: they become `sending`.
    pub async fn claim(
        self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::outbox::claim(db, now, limit).await,
            Backend::Postgres(db) => super::postgres::outbox::claim(db, now, limit).await,
        }
    }

    /// Records what happened to dispatched messages, all in one transaction (one fsync
    /// for a whole dispatch pass).
    pub async fn update(self, updates: &[OutboxUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::outbox::update(db, updates).await,
            Backend::Postgres(db) => super::postgres::outbox::update(db, updates).await,
        }
    }

    /// How long a claimed message stays leased to this process (shared store only: the
    /// embedded store requeues interrupted sends at start).
    pub fn set_lease(self, lease: std::time::Duration) {
        if let Backend::Postgres(db) = &self.store.backend {
            db.set_mail_lease(lease);
        }
    }

    /// Messages a channel sent on the UTC day of `now`.
    pub async fn sent_today(self, channel: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        on_writer!(self.store, |pool| {
            let sent: Option<i64> = sqlx::query_scalar(
                "SELECT sent FROM email_daily_counts WHERE channel = $1 AND day = $2",
            )
            .bind(channel)
            .bind(now.format("%Y-%m-%d").to_string())
            .fetch_optional(pool)
            .await?;
            Ok(sent.unwrap_or(0) as u64)
        })
    }

    /// One message as the API shows it.
    pub async fn get(self, id: &str) -> Result<Option<MessageView>, StoreError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1");
        on_reader!(self.store, |pool| {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            Ok(row.as_ref().map(message_view))
        })
    }

    /// Messages by run, campaign, recipient and status; newest first, `before` an id.
    pub async fn list(self, filter: &MessageFilter) -> Result<Vec<MessageView>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox
             WHERE {SCOPE} AND (CAST($4 AS TEXT) IS NULL OR status = $4) AND (CAST($5 AS TEXT) IS NULL OR id < $5)
             ORDER BY id DESC LIMIT $6"
        );
        let recipient = filter.recipient.as_ref().map(|r| r.trim().to_lowercase());
        on_reader!(self.store, |pool| {
            let rows = sqlx::query(&sql)
                .bind(&filter.run_id)
                .bind(&filter.campaign)
                .bind(&recipient)
                .bind(&filter.status)
                .bind(&filter.before)
                .bind(i64::from(filter.limit))
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(message_view).collect())
        })
    }

    /// Messages by status (`{"queued": 3, "sent": 10, ...}`) for the filter's run,
    /// campaign and recipient.
    pub async fn counts(self, filter: &MessageFilter) -> Result<BTreeMap<String, i64>, StoreError> {
        let sql = format!("SELECT status, count(*) AS n FROM outbox WHERE {SCOPE} GROUP BY status");
        let recipient = filter.recipient.as_ref().map(|r| r.trim().to_lowercase());
        on_reader!(self.store, |pool| {
            let rows = sqlx::query(&sql)
                .bind(&filter.run_id)
                .bind(&filter.campaign)
                .bind(&recipient)
                .fetch_all(pool)
                .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<String, _>("status"), r.get::<i64, _>("n")))
                .collect())
        })
    }
}

/// Inserts the outbox row of an email effect or a proof, inside the transaction that
/// queued it; a row of that id queued before stays as it is.
pub(super) async fn enqueue_row(
    tx: &mut Tx<'_>,
    run_id: Option<&str>,
    step: Option<&str>,
    email: &OutgoingEmail,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (address, domain) = recipient_address(&email.to);
    on_tx!(tx, |conn| {
        sqlx::query(
        "INSERT INTO outbox (id, run_id, step, workflow, campaign, channel, template, locale, recipient,
                             address, domain, name, purpose, data, status, due_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'queued', $15, $15, $15)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&email.id)
    .bind(run_id)
    .bind(step)
    .bind(Some(&email.workflow).filter(|w| !w.is_empty()))
    .bind(&email.campaign)
    .bind(&email.channel)
    .bind(&email.template)
    .bind(&email.locale)
    .bind(email.to.trim())
    .bind(&address)
    .bind(&domain)
    .bind(&email.name)
    .bind(&email.purpose)
    .bind(email.data.to_string())
    .bind(millis(now))
    .execute(conn)
    .await
    .map(|done| done.rows_affected())
    })?;
    Ok(())
}
