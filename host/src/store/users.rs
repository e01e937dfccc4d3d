//! People: name, email, roles, and for sales their team and rep id. Tokens may belong to
//! a user; a deactivated user's tokens are refused. Every change is audited in its own
//! transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::BeginWrite;
use super::audit::{Actor, Change, append};
use super::rows::Cols;
use super::transaction::Tx;
use super::{Store, StoreError, from_millis, millis};

/// Users. Made by [`Store::users`].
#[derive(Clone, Copy)]
pub struct Users<'a> {
    pub(super) store: &'a Store,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub name: String,
    /// Lower case; unique.
    pub email: String,
    /// Role names (`sales`, `marketing`, …); a token of this user has one of them.
    pub roles: Vec<String>,
    /// The sales team the user works in (leads routed to the team are theirs to see).
    pub team: Option<String>,
    /// The id territory rules and the CRM use for this person; unique.
    pub rep: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
}

/// What a user is made with, or changed to (`None` keeps the value).
#[derive(Debug, Clone, Default)]
pub struct UserFields {
    pub name: Option<String>,
    pub email: Option<String>,
    pub roles: Option<Vec<String>>,
    /// `Some(None)` clears the team.
    pub team: Option<Option<String>>,
    /// `Some(None)` clears the rep id.
    pub rep: Option<Option<String>>,
    pub active: Option<bool>,
}

/// Why a user could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum UserConflict {
    #[error("a user with the email `{0}` exists already")]
    Email(String),
    #[error("another user has the rep id `{0}`")]
    Rep(String),
}

const COLUMNS: &str = "id, name, email, roles, team, rep, created_at, updated_at, deactivated_at";

fn user(row: &impl Cols) -> User {
    let deactivated_at = row.opt_int("deactivated_at").map(from_millis);
    User {
        id: row.text("id"),
        name: row.text("name"),
        email: row.text("email"),
        roles: row
            .text("roles")
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        team: row.opt_text("team"),
        rep: row.opt_text("rep"),
        active: deactivated_at.is_none(),
        created_at: from_millis(row.int("created_at")),
        updated_at: from_millis(row.int("updated_at")),
        deactivated_at,
    }
}

/// The conflict another user (not `id`) would have with `email` and `rep`: the email first.
/// Looked up before writing, so the answer names the field the caller must change; the
/// unique indexes still decide a race ([`conflict`]).
const CONFLICTS: &str = "SELECT email, rep FROM users WHERE id <> $1 AND (email = $2 OR rep = $3) ORDER BY email = $2 DESC LIMIT 1";

fn conflict_of(found: Option<(String, Option<String>)>, email: &str) -> Option<UserConflict> {
    let (other_email, other_rep) = found?;
    if other_email == email {
        Some(UserConflict::Email(other_email))
    } else {
        Some(UserConflict::Rep(other_rep.unwrap_or_default()))
    }
}

/// Which unique column a failed insert or update ran into.
fn conflict(e: &sqlx::Error, email: &str, rep: Option<&str>) -> Option<UserConflict> {
    let db = e.as_database_error()?;
    if !db.is_unique_violation() {
        return None;
    }
    let message = db.message();
    if message.contains("rep") {
        Some(UserConflict::Rep(rep.unwrap_or_default().to_string()))
    } else {
        Some(UserConflict::Email(email.to_string()))
    }
}

impl Users<'_> {
    /// Stores a new user (every field of `fields` but `active` given), audited as made by
    /// `actor` with the fields it was made with.
    pub async fn create(
        self,
        id: &str,
        fields: &UserFields,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Result<User, UserConflict>, StoreError> {
        let name = fields.name.clone().unwrap_or_default();
        let email = fields.email.clone().unwrap_or_default();
        let roles = fields.roles.clone().unwrap_or_default();
        let team = fields.team.clone().flatten();
        let rep = fields.rep.clone().flatten();
        let change = Change::new(actor, "user.create", id).with(json!({
            "name": name, "email": email, "roles": roles, "team": team, "rep": rep,
        }));
        let roles = roles.join(" ");
        let deactivated = (fields.active == Some(false)).then_some(millis(now));
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            let found = sqlx::query_as(CONFLICTS)
                .bind(id)
                .bind(&email)
                .bind(rep.as_deref())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(c) = conflict_of(found, &email) {
                return Ok(Err(c));
            }
            let inserted = sqlx::query(
                "INSERT INTO users (id, name, email, roles, team, rep, created_at, updated_at, deactivated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
            )
            .bind(id)
            .bind(&name)
            .bind(&email)
            .bind(&roles)
            .bind(team.as_deref())
            .bind(rep.as_deref())
            .bind(millis(now))
            .bind(deactivated)
            .execute(&mut *tx)
            .await;
            if let Err(e) = &inserted
                && let Some(c) = conflict(e, &email, rep.as_deref())
            {
                return Ok(Err(c));
            }
            inserted?;
            append(Tx::from(&mut *tx), &change, now).await?;
            let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Ok(user(&row)))
        })
    }

    /// Changes the given fields of user `id`, audited as done by `actor` with the fields
    /// that changed, before and after; `None` if there is no such user.
    pub async fn update(
        self,
        id: &str,
        fields: &UserFields,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Option<Result<User, UserConflict>>, StoreError> {
        let select = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            Tx::from(&mut *tx).lock("user", id, "").await?;
            let Some(row) = sqlx::query(&select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            let before = user(&row);
            let mut after = before.clone();
            if let Some(name) = &fields.name {
                after.name = name.clone();
            }
            if let Some(email) = &fields.email {
                after.email = email.clone();
            }
            if let Some(roles) = &fields.roles {
                after.roles = roles.clone();
            }
            if let Some(team) = &fields.team {
                after.team = team.clone();
            }
            if let Some(rep) = &fields.rep {
                after.rep = rep.clone();
            }
            if let Some(active) = fields.active
                && active != before.active
            {
                after.active = active;
                after.deactivated_at = (!active).then_some(now);
            }
            let changed = differences(&before, &after);
            if changed.is_empty() {
                return Ok(Some(Ok(before)));
            }
            after.updated_at = now;
            let found = sqlx::query_as(CONFLICTS)
                .bind(id)
                .bind(&after.email)
                .bind(after.rep.as_deref())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(c) = conflict_of(found, &after.email) {
                return Ok(Some(Err(c)));
            }
            let updated = sqlx::query(
                "UPDATE users SET name = $1, email = $2, roles = $3, team = $4, rep = $5, \
                 updated_at = $6, deactivated_at = $7 WHERE id = $8",
            )
            .bind(&after.name)
            .bind(&after.email)
            .bind(after.roles.join(" "))
            .bind(after.team.as_deref())
            .bind(after.rep.as_deref())
            .bind(millis(now))
            .bind(after.deactivated_at.map(millis))
            .bind(id)
            .execute(&mut *tx)
            .await;
            if let Err(e) = &updated
                && let Some(c) = conflict(e, &after.email, after.rep.as_deref())
            {
                return Ok(Some(Err(c)));
            }
            updated?;
            let change =
                Change::new(actor, "user.change", id).with(serde_json::Value::Object(changed));
            append(Tx::from(&mut *tx), &change, now).await?;
            tx.commit().await?;
            Ok(Some(Ok(after)))
        })
    }

    /// The user with this id.
    pub async fn get(self, id: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
        on_reader!(self.store, |pool| Ok(sqlx::query(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|row| user(&row))))
    }

    /// The user with this id or (lower-cased) email.
    pub async fn find(self, id_or_email: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1 OR email = $2");
        let email = id_or_email.to_lowercase();
        on_reader!(self.store, |pool| Ok(sqlx::query(&sql)
            .bind(id_or_email)
            .bind(&email)
            .fetch_optional(pool)
            .await?
            .map(|row| user(&row))))
    }

    /// Every user, by email.
    pub async fn list(self) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM users ORDER BY email");
        on_reader!(self.store, |pool| Ok(sqlx::query(&sql)
            .fetch_all(pool)
            .await?
            .iter()
            .map(user)
            .collect()))
    }
}

/// The fields that differ between `before` and `after`, as `{field: {from, to}}`.
fn differences(before: &User, after: &User) -> serde_json::Map<String, serde_json::Value> {
    let mut changed = serde_json::Map::new();
    let mut compare = |field: &str, from: serde_json::Value, to: serde_json::Value| {
        if from != to {
            changed.insert(field.into(), json!({"from": from, "to": to}));
        }
    };
    compare("name", json!(before.name), json!(after.name));
    compare("email", json!(before.email), json!(after.email));
    compare("roles", json!(before.roles), json!(after.roles));
    compare("team", json!(before.team), json!(after.team));
    compare("rep", json!(before.rep), json!(after.rep));
    compare("active", json!(before.active), json!(after.active));
    changed
}
