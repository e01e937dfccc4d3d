//! The email tables: outbox, suppressions, bounces, daily counts.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{SqliteStore, Tx};
use crate::engine::effects::OutgoingEmail;
use crate::store::types::{millis, recipient_address};
use crate::store::{
    MessageFilter, MessageView, OutboxMessage, OutboxUpdate, StoreError, Suppression,
};

use crate::store::rows::{
    OUTBOX_COLUMNS as COLUMNS, message_view as view, outbox_message as message, suppression,
};

/// Inserts the outbox row of a `send_email` effect (inside the step's transaction).
pub(super) async fn enqueue(
    tx: &mut Tx<'_>,
    run_id: Option<&str>,
    step: Option<&str>,
    email: &OutgoingEmail,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (address, domain) = recipient_address(&email.to);
    sqlx::query(
        "INSERT INTO outbox (id, run_id, step, workflow, campaign, channel, template, locale, recipient,
                             address, domain, name, purpose, data, status, due_at, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)
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
    .bind(millis(now))
    .bind(millis(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The run, campaign and recipient of a [`MessageFilter`], as `?1`…`?3`.
const SCOPE: &str = "(?1 IS NULL OR run_id = ?1) AND (?2 IS NULL OR campaign = ?2)
                     AND (?3 IS NULL OR address = ?3)";

fn bind_scope<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    filter: &'q MessageFilter,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    query
        .bind(&filter.run_id)
        .bind(&filter.campaign)
        .bind(filter.recipient.as_ref().map(|r| r.trim().to_lowercase()))
}

impl SqliteStore {
    /// Queues messages outside any run in one transaction (proofs, benchmarks).
    pub async fn enqueue_emails(
        &self,
        emails: &[OutgoingEmail],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        for email in emails {
            enqueue(&mut tx, None, None, email, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// After a crash: messages caught mid-send go back to the queue with their id (and so
    /// their Message-ID). Returns how many.
    pub async fn recover_outbox(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE outbox SET status = 'queued', due_at = ?1, updated_at = ?1 WHERE status = 'sending'",
        )
        .bind(millis(now))
        .execute(&self.writer)
        .await?
        .rows_affected())
    }

    /// Claims up to `limit` due messages: they become `sending`.
    pub async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows = sqlx::query(&format!(
            "UPDATE outbox SET status = 'sending', updated_at = ?1
             WHERE id IN (SELECT id FROM outbox WHERE status = 'queued' AND due_at <= ?1
                          ORDER BY due_at, id LIMIT ?2)
             RETURNING {COLUMNS}"
        ))
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        let mut claimed = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(|a, b| a.email.id.cmp(&b.email.id));
        Ok(claimed)
    }

    /// Records what happened to dispatched messages, all in one transaction (one fsync
    /// for a whole dispatch pass).
    pub async fn update_outbox(&self, updates: &[OutboxUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for update in updates {
            match update {
                OutboxUpdate::Hold { id, until } => {
                    sqlx::query(
                        "UPDATE outbox SET status = 'queued', due_at = ? WHERE id = ? AND status = 'sending'",
                    )
                    .bind(millis(*until))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                OutboxUpdate::Sent {
                    id,
                    channel,
                    reply,
                    at,
                } => {
                    sqlx::query(
                        "UPDATE outbox SET status = 'sent', attempts = attempts + 1, reply = ?1, sent_at = ?2,
                                           updated_at = ?2 WHERE id = ?3",
                    )
                    .bind(reply)
                    .bind(millis(*at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO email_daily_counts (channel, day, sent) VALUES (?, ?, 1)
                         ON CONFLICT (channel, day) DO UPDATE SET sent = sent + 1",
                    )
                    .bind(channel)
                    .bind(at.format("%Y-%m-%d").to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                OutboxUpdate::Retry { id, reply, due, at } => {
                    sqlx::query(
                        "UPDATE outbox SET status = 'queued', attempts = attempts + 1, reply = ?, due_at = ?,
                                           updated_at = ? WHERE id = ?",
                    )
                    .bind(reply)
                    .bind(millis(*due))
                    .bind(millis(*at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                OutboxUpdate::Finished {
                    id,
                    status,
                    reply,
                    attempted,
                    at,
                } => {
                    sqlx::query(
                        "UPDATE outbox SET status = ?, attempts = attempts + ?, reply = ?, updated_at = ?
                         WHERE id = ?",
                    )
                    .bind(status)
                    .bind(i64::from(*attempted))
                    .bind(reply)
                    .bind(millis(*at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Messages a channel sent on the UTC day of `now`.
    pub async fn sent_today(&self, channel: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let sent: Option<i64> =
            sqlx::query_scalar("SELECT sent FROM email_daily_counts WHERE channel = ? AND day = ?")
                .bind(channel)
                .bind(now.format("%Y-%m-%d").to_string())
                .fetch_optional(&self.writer)
                .await?;
        Ok(sent.unwrap_or(0) as u64)
    }

    /// Why mail for `purpose` may not go to `address`, if it may not: a suppression for
    /// every purpose, or an unsubscribe from this one.
    pub async fn suppression(
        &self,
        address: &str,
        purpose: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        let row = sqlx::query(
            "SELECT address, purpose, reason, detail, created_at FROM email_suppressions
             WHERE address = ? AND (purpose = '*' OR purpose = ?)
             ORDER BY purpose = '*' DESC LIMIT 1",
        )
        .bind(address.trim().to_lowercase())
        .bind(purpose)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| suppression(&r)))
    }

    /// Blocks `purpose` (`*`: every purpose) for `address`. Keeps the first reason.
    pub async fn suppress(
        &self,
        address: &str,
        purpose: &str,
        reason: &str,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "INSERT INTO email_suppressions (address, purpose, reason, detail, created_at)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (address, purpose) DO NOTHING",
        )
        .bind(address.trim().to_lowercase())
        .bind(purpose)
        .bind(reason)
        .bind(detail)
        .bind(millis(now))
        .execute(&self.writer)
        .await?
        .rows_affected()
            == 1)
    }

    /// Suppressions of one address, or all (newest first).
    pub async fn suppressions(
        &self,
        address: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Suppression>, StoreError> {
        let rows = sqlx::query(
            "SELECT address, purpose, reason, detail, created_at FROM email_suppressions
             WHERE ?1 IS NULL OR address = ?1 ORDER BY created_at DESC, address LIMIT ?2",
        )
        .bind(address.map(|a| a.trim().to_lowercase()))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(suppression).collect())
    }

    /// Stores a bounce report; returns how many soft bounces `address` had since `since`.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_bounce(
        &self,
        address: &str,
        kind: &str,
        status: Option<&str>,
        detail: Option<&str>,
        message_id: Option<&str>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let address = address.trim().to_lowercase();
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO email_bounces (address, kind, status, detail, message_id, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&address)
        .bind(kind)
        .bind(status)
        .bind(detail)
        .bind(message_id)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        let soft: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM email_bounces WHERE address = ? AND kind = 'soft' AND created_at >= ?",
        )
        .bind(&address)
        .bind(millis(since))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(soft)
    }

    pub async fn get_message(&self, id: &str) -> Result<Option<MessageView>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(view))
    }

    /// Messages by run, campaign, recipient and status; newest first, `before` an id.
    pub async fn list_messages(
        &self,
        filter: &MessageFilter,
    ) -> Result<Vec<MessageView>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox
             WHERE {SCOPE} AND (?4 IS NULL OR status = ?4) AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC LIMIT ?6"
        );
        let rows = bind_scope(sqlx::query(&sql), filter)
            .bind(&filter.status)
            .bind(&filter.before)
            .bind(i64::from(filter.limit))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(view).collect())
    }

    /// Messages by status (`{"queued": 3, "sent": 10, ...}`) for the filter's run,
    /// campaign and recipient.
    pub async fn message_counts(
        &self,
        filter: &MessageFilter,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let sql = format!("SELECT status, count(*) AS n FROM outbox WHERE {SCOPE} GROUP BY status");
        let rows = bind_scope(sqlx::query(&sql), filter)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>("status"), r.get::<i64, _>("n")))
            .collect())
    }

    /// Deletes up to `batch` messages that reached a final state before `cutoff`.
    pub async fn prune_outbox(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox WHERE status IN ('sent', 'failed', 'suppressed')
                   AND updated_at < ? LIMIT ?)",
        )
        .bind(millis(cutoff))
        .bind(i64::from(batch))
        .execute(&self.writer)
        .await?
        .rows_affected())
    }
}
