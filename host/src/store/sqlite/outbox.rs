//! The outbox on SQLite: the single writer connection serializes claims, so a claim is
//! one `UPDATE … RETURNING`; a crash leaves `sending` rows, requeued at the next start.

use crate::store::BeginWrite;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::run::OutgoingEmail;
use crate::store::outbox::{OutboxMessage, OutboxUpdate};
use crate::store::rows::{OUTBOX_COLUMNS as COLUMNS, outbox_message as message};
use crate::store::transaction::Tx as AnyTx;
use crate::store::{StoreError, millis};

/// Queues messages outside any run in one transaction (proofs, benchmarks).
pub(in crate::store) async fn enqueue(
    db: &SqliteStore,
    emails: &[OutgoingEmail],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = db.writer.begin_write().await?;
    for email in emails {
        crate::store::outbox::enqueue_row(&mut AnyTx::from(&mut *tx), None, None, email, now)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// After a crash: messages caught mid-send go back to the queue with their id (and so
/// their Message-ID). Returns how many.
pub(in crate::store) async fn recover(
    db: &SqliteStore,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE outbox SET status = 'queued', due_at = ?1, updated_at = ?1 WHERE status = 'sending'",
    )
    .bind(millis(now))
    .execute(&db.writer)
    .await?
    .rows_affected())
}

/// Claims up to `limit` due messages: they become `sending`.
pub(in crate::store) async fn claim(
    db: &SqliteStore,
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
    .fetch_all(&db.writer)
    .await?;
    let mut claimed = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by(|a, b| a.email.id.cmp(&b.email.id));
    Ok(claimed)
}

/// Records what happened to dispatched messages, all in one transaction (one fsync
/// for a whole dispatch pass).
pub(in crate::store) async fn update(
    db: &SqliteStore,
    updates: &[OutboxUpdate],
) -> Result<(), StoreError> {
    let mut tx = db.writer.begin_write().await?;
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
