//! The audit log: who changed what and when. Rows are only ever added, and each one is
//! written in the transaction of the change it describes ([`append`]), so the log holds a
//! change exactly when the change happened.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use super::BeginWrite;
use super::rows::Cols;
use super::transaction::{Tx, on_tx};
use super::{Store, StoreError, from_millis, millis};

/// The audit log. Made by [`Store::audit`].
#[derive(Clone, Copy)]
pub struct Audit<'a> {
    pub(super) store: &'a Store,
}

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `token:ID` for the API, `cli` for the command line, `webhook:SOURCE`, `recipient`
    /// (an unsubscribe link).
    pub name: String,
    /// The person behind the token, when it belongs to one.
    pub user_id: Option<String>,
    /// The role the change was made in.
    pub role: Option<String>,
}

impl Actor {
    /// The command line, run by whoever may open the database.
    pub fn cli() -> Actor {
        Actor {
            name: "cli".into(),
            user_id: None,
            role: None,
        }
    }

    /// Someone without a token: a recipient's unsubscribe link, a signed webhook.
    pub fn named(name: impl Into<String>) -> Actor {
        Actor {
            name: name.into(),
            user_id: None,
            role: None,
        }
    }
}

/// One change, as the log keeps it.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub actor: &'a Actor,
    /// What was done: `user.create`, `secret.put`, `plugin.configure`, ….
    pub action: &'static str,
    /// What it was done to: a user id, a secret's name, a plugin's name, ….
    pub target: String,
    /// What changed, without secret values.
    pub detail: Json,
}

impl<'a> Change<'a> {
    pub fn new(actor: &'a Actor, action: &'static str, target: impl Into<String>) -> Self {
        Change {
            actor,
            action,
            target: target.into(),
            detail: Json::Object(Default::default()),
        }
    }

    pub fn with(mut self, detail: Json) -> Self {
        self.detail = detail;
        self
    }
}

/// A row of the audit log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub user_id: Option<String>,
    pub role: Option<String>,
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub detail: Json,
}

/// Which rows to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub user_id: Option<String>,
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only rows older than this id (the previous page's last).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Adds `change` to the log inside the transaction `tx` of the change itself.
pub(super) async fn append(
    tx: Tx<'_>,
    change: &Change<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = tx;
    on_tx!(&mut tx, |conn| {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, user_id, role, action, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(millis(now))
        .bind(&change.actor.name)
        .bind(change.actor.user_id.as_deref())
        .bind(change.actor.role.as_deref())
        .bind(change.action)
        .bind(&change.target)
        .bind(change.detail.to_string())
        .execute(conn)
        .await?;
        Ok(())
    })
}

fn entry(row: &impl Cols) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.int("id"),
        at: from_millis(row.int("at")),
        actor: row.text("actor"),
        user_id: row.opt_text("user_id"),
        role: row.opt_text("role"),
        action: row.text("action"),
        target: row.text("target"),
        detail: super::rows::json_of(row, "detail")?,
    })
}

impl Audit<'_> {
    /// Logs a change that touches nothing else in the database (a workflow reload).
    pub async fn record(self, change: &Change<'_>, now: DateTime<Utc>) -> Result<(), StoreError> {
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            append(Tx::from(&mut *tx), change, now).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Rows matching `filter`, newest first.
    pub async fn list(self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = "SELECT id, at, actor, user_id, role, action, target, detail FROM audit_log \
                   WHERE ($1 IS NULL OR action = $1) AND ($2 IS NULL OR actor = $2) \
                   AND ($3 IS NULL OR user_id = $3) AND ($4 IS NULL OR target = $4) \
                   AND ($5 IS NULL OR at >= $5) AND ($6 IS NULL OR at < $6) \
                   AND ($7 IS NULL OR id < $7) \
                   ORDER BY id DESC LIMIT $8";
        on_reader!(self.store, |pool| {
            let rows = sqlx::query(sql)
                .bind(filter.action.as_deref())
                .bind(filter.actor.as_deref())
                .bind(filter.user_id.as_deref())
                .bind(filter.target.as_deref())
                .bind(filter.since.map(millis))
                .bind(filter.until.map(millis))
                .bind(filter.before)
                .bind(filter.limit)
                .fetch_all(pool)
                .await?;
            rows.iter().map(entry).collect()
        })
    }
}
