//! The outbox on PostgreSQL: messages are claimed with `FOR UPDATE SKIP LOCKED` and
//! leased to the dispatching process; an expired lease (its sender died) requeues them.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::PgStore;
use crate::run::OutgoingEmail;
use crate::store::outbox::{OutboxMessage, OutboxUpdate};
use crate::store::rows::{OUTBOX_COLUMNS, outbox_message};
use crate::store::transaction::{Notice, Tx as AnyTx};
use crate::store::{StoreError, millis};

pub(in crate::store) async fn enqueue(
    db: &PgStore,
    emails: &[OutgoingEmail],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = db.pool.begin().await?;
    for email in emails {
        crate::store::outbox::enqueue_row(&mut AnyTx::from(&mut *tx), None, None, email, now)
            .await?;
    }
    super::notify(&mut tx, Notice::Mail).await?;
    tx.commit().await?;
    Ok(())
}

/// Messages whose sender died mid-send (their lease expired) go back to the queue.
/// Messages other live processes are sending are left alone.
pub(in crate::store) async fn recover(db: &PgStore, now: DateTime<Utc>) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE outbox SET status = 'queued', due_at = $1, updated_at = $1,
                           lease_owner = NULL, lease_until = NULL
         WHERE status = 'sending' AND lease_until < $2",
    )
    .bind(millis(now))
    .bind(millis(Utc::now()))
    .execute(&db.pool)
    .await?
    .rows_affected())
}

pub(in crate::store) async fn claim(
    db: &PgStore,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<OutboxMessage>, StoreError> {
    recover(db, now).await?;
    let wall = millis(Utc::now());
    let rows = sqlx::query(&format!(
        "UPDATE outbox SET status = 'sending', updated_at = $1, lease_owner = $3, lease_until = $4
         WHERE id IN (SELECT id FROM outbox WHERE status = 'queued' AND due_at <= $1
                      ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING {OUTBOX_COLUMNS}"
    ))
    .bind(millis(now))
    .bind(i64::from(limit))
    .bind(&db.owner)
    .bind(wall + db.mail_lease_ms.load(Ordering::Relaxed))
    .fetch_all(&db.pool)
    .await?;
    let mut claimed = rows
        .iter()
        .map(outbox_message)
        .collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by(|a, b| a.email.id.cmp(&b.email.id));
    Ok(claimed)
}

pub(in crate::store) async fn update(
    db: &PgStore,
    updates: &[OutboxUpdate],
) -> Result<(), StoreError> {
    let mut tx = db.pool.begin().await?;
    let mut requeued = false;
    for update in updates {
        match update {
            OutboxUpdate::Hold { id, until } => {
                requeued = true;
                sqlx::query(
                    "UPDATE outbox SET status = 'queued', due_at = $1, lease_owner = NULL, lease_until = NULL
                     WHERE id = $2 AND status = 'sending'",
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
                    "UPDATE outbox SET status = 'sent', attempts = attempts + 1, reply = $1, sent_at = $2,
                                       updated_at = $2, lease_owner = NULL, lease_until = NULL
                     WHERE id = $3",
                )
                .bind(reply)
                .bind(millis(*at))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO email_daily_counts (channel, day, sent) VALUES ($1, $2, 1)
                     ON CONFLICT (channel, day) DO UPDATE SET sent = email_daily_counts.sent + 1",
                )
                .bind(channel)
                .bind(at.format("%Y-%m-%d").to_string())
                .execute(&mut *tx)
                .await?;
            }
            OutboxUpdate::Retry { id, reply, due, at } => {
                requeued = true;
                sqlx::query(
                    "UPDATE outbox SET status = 'queued', attempts = attempts + 1, reply = $1, due_at = $2,
                                       updated_at = $3, lease_owner = NULL, lease_until = NULL
                     WHERE id = $4",
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
                    "UPDATE outbox SET status = $1, attempts = attempts + $2, reply = $3, updated_at = $4,
                                       lease_owner = NULL, lease_until = NULL
                     WHERE id = $5",
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
    if requeued {
        super::notify(&mut tx, Notice::Mail).await?;
    }
    tx.commit().await?;
    Ok(())
}
