//! Service tickets and their timeline: one row per ticket with what it is now (status,
//! priority, group, assignee, the SLA policy in force, the warnings and levels already
//! sent, the customer's ERP snapshot), and `ticket_events`, only ever added to, with every
//! change, message, warning and escalation. The SLA clocks are not stored: they are
//! replayed from the events ([`Tickets::happenings`], [`crate::service::sla_clock`]).
//!
//! Numbers (`T-2026-000123`) count per calendar year (UTC) in `ticket_numbers`, given out
//! in the creating transaction, so a number is never used twice nor skipped by a rollback.

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;
use serde_json::{Value as Json, json};

use super::BeginWrite;
use super::audit::Actor;
use super::rows::Cols;
use super::timeline::Timeline;
use super::transaction::{Tx, on_tx};
use super::{Store, StoreError, from_millis, millis};
use crate::run::NewRun;
use crate::service::ticket::{Happening, Status, What};

#[derive(Clone, Copy)]
pub struct Tickets<'a> {
    pub(super) store: &'a Store,
}

/// A ticket as delivered (checked by the caller).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewTicket {
    /// The sending system's id: delivered again, the same ticket.
    pub external_id: Option<String>,
    pub customer_id: Option<String>,
    /// `{name, email, phone}`.
    pub contact: Json,
    pub subject: String,
    pub category: Option<String>,
    pub priority: String,
    pub channel: String,
    pub tier: Option<String>,
    pub group: Option<String>,
    pub assignee: Option<String>,
    /// The SLA policy selected for it.
    pub policy: Option<String>,
    /// The customer's first message, if the ticket came with one.
    pub message: Option<String>,
}

/// A ticket as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TicketView {
    pub id: String,
    pub number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[schema(value_type = Object)]
    pub contact: Json,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub priority: String,
    pub channel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[schema(value_type = String)]
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The warnings and escalation levels already sent (`resolution#0:warning@75%`).
    pub fired: Vec<String>,
    /// The customer's ERP view as last loaded, with what could not be loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub erp_snapshot: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erp_loaded_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One entry of a ticket's timeline: `created`, `status`, `priority`, `category`, `group`,
/// `assignee`, `tier`, `policy`, `reply`, `note`, `customer-message`, `warning`,
/// `escalation`, `erp`.
pub type TicketEvent = super::timeline::TimelineEntry;

/// A ticket's timeline.
const EVENTS: Timeline = Timeline {
    table: "ticket_events",
    owner: "ticket_id",
};

/// What storing a delivered ticket did.
#[derive(Debug, Clone, PartialEq)]
pub enum TicketIntake {
    Created(TicketView),
    /// The external id was delivered before with the same fields: that ticket.
    Again(TicketView),
    /// The external id was delivered before with other fields: that ticket, unchanged.
    Conflict(TicketView),
}

/// The fields a change sets; `None` leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TicketChange {
    pub status: Option<Status>,
    pub priority: Option<String>,
    pub category: Option<String>,
    pub tier: Option<String>,
    /// `Some(None)` clears it.
    pub group: Option<Option<String>>,
    pub assignee: Option<Option<String>>,
    /// The policy selected after the change.
    pub policy: Option<String>,
}

/// A message on a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An agent's reply to the customer (satisfies a response clock).
    Reply { body: String },
    /// An agent's internal note (satisfies nothing).
    Note { body: String },
    /// The customer wrote.
    Customer { body: String },
}

/// Which tickets a list shows.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub status: Option<Status>,
    pub group: Option<String>,
    pub assignee: Option<String>,
    pub customer_id: Option<String>,
    /// Only tickets created before this one (the previous page's last id).
    pub before: Option<String>,
    pub limit: u32,
}

const COLUMNS: &str = "id, number, external_id, customer_id, contact, subject, category, priority, channel, tier, \
     status, group_name, assignee, policy, fired, erp_snapshot, erp_loaded_at, run_id, created_at, updated_at";

fn ticket_view(r: &impl Cols) -> Result<TicketView, StoreError> {
    let status = r.text("status");
    let json = |text: Option<String>| -> Result<Option<Json>, StoreError> {
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    };
    Ok(TicketView {
        id: r.text("id"),
        number: r.text("number"),
        external_id: r.opt_text("external_id"),
        customer_id: r.opt_text("customer_id"),
        contact: serde_json::from_str(&r.text("contact"))?,
        subject: r.text("subject"),
        category: r.opt_text("category"),
        priority: r.text("priority"),
        channel: r.text("channel"),
        tier: r.opt_text("tier"),
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown ticket status {status:?}")))?,
        group: r.opt_text("group_name"),
        assignee: r.opt_text("assignee"),
        policy: r.opt_text("policy"),
        fired: serde_json::from_str(&r.text("fired"))?,
        erp_snapshot: json(r.opt_text("erp_snapshot"))?,
        erp_loaded_at: r.opt_int("erp_loaded_at").map(from_millis),
        run_id: r.opt_text("run_id"),
        created_at: from_millis(r.int("created_at")),
        updated_at: from_millis(r.int("updated_at")),
    })
}

async fn select(
    tx: &mut Tx<'_>,
    column: &str,
    value: &str,
) -> Result<Option<TicketView>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM tickets WHERE {column} = $1");
    on_tx!(tx, |conn| {
        let row = sqlx::query(&sql).bind(value).fetch_optional(conn).await?;
        row.as_ref().map(ticket_view).transpose()
    })
}

/// Appends to a ticket's timeline.
async fn event(
    tx: &mut Tx<'_>,
    ticket: &str,
    actor: &str,
    kind: &str,
    detail: Json,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    EVENTS
        .append(tx, ticket, actor, &[(kind, detail)], now)
        .await
}

/// The year's next number, `T-2026-000123`.
async fn next_number(tx: &mut Tx<'_>, now: DateTime<Utc>) -> Result<String, StoreError> {
    let year = i64::from(now.year());
    let last: i64 = on_tx!(tx, |conn| sqlx::query_scalar(
        "INSERT INTO ticket_numbers (year, last) VALUES ($1, 1)
         ON CONFLICT (year) DO UPDATE SET last = ticket_numbers.last + 1 RETURNING last"
    )
    .bind(year)
    .fetch_one(conn)
    .await)?;
    Ok(format!("T-{year}-{last:06}"))
}

/// A change's events: (kind, detail) for each field that changes.
fn changes(before: &TicketView, change: &TicketChange) -> Vec<(&'static str, Json)> {
    let mut out = Vec::new();
    let mut field = |kind: &'static str, from: Json, to: Json| {
        if from != to {
            out.push((kind, json!({"from": from, "to": to})));
        }
    };
    if let Some(s) = change.status {
        field("status", json!(before.status), json!(s));
    }
    if let Some(p) = &change.priority {
        field("priority", json!(before.priority), json!(p));
    }
    if let Some(c) = &change.category {
        field("category", json!(before.category), json!(c));
    }
    if let Some(t) = &change.tier {
        field("tier", json!(before.tier), json!(t));
    }
    if let Some(g) = &change.group {
        field("group", json!(before.group), json!(g));
    }
    if let Some(a) = &change.assignee {
        field("assignee", json!(before.assignee), json!(a));
    }
    if let Some(p) = &change.policy {
        field("policy", json!(before.policy), json!(p));
    }
    out
}

impl Tickets<'_> {
    /// Stores a delivered ticket (`hash` the SHA-256 of its fields) with its number, its
    /// `created` event (and the customer's first message), and starts `runs` for it — in
    /// one transaction. A known external id stores nothing.
    pub async fn create(
        self,
        id: &str,
        new: &NewTicket,
        hash: &str,
        runs: &[NewRun],
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<TicketIntake, StoreError> {
        on_writer!(self.store, |pool| {
            let mut transaction = pool.begin_write().await?;
            let mut tx = Tx::from(&mut *transaction);
            if let Some(external) = &new.external_id {
                tx.lock("ticket", external, "").await?;
                let known: Option<(String,)> = on_tx!(&mut tx, |conn| sqlx::query_as(
                    "SELECT request_hash FROM tickets WHERE external_id = $1"
                )
                .bind(external)
                .fetch_optional(conn)
                .await)?;
                if let Some((known_hash,)) = known {
                    let view = select(&mut tx, "external_id", external)
                        .await?
                        .ok_or_else(|| StoreError::Corrupt("a ticket vanished".into()))?;
                    return Ok(if known_hash == hash {
                        TicketIntake::Again(view)
                    } else {
                        TicketIntake::Conflict(view)
                    });
                }
            }
            let number = next_number(&mut tx, now).await?;
            let contact = serde_json::to_string(&new.contact)?;
            on_tx!(&mut tx, |conn| {
                sqlx::query(
                "INSERT INTO tickets (id, number, external_id, request_hash, customer_id, contact, subject, category,
                     priority, channel, tier, status, group_name, assignee, policy, run_id, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'new', $12, $13, $14, $15, $16, $16)"
            )
            .bind(id)
            .bind(&number)
            .bind(&new.external_id)
            .bind(hash)
            .bind(&new.customer_id)
            .bind(&contact)
            .bind(&new.subject)
            .bind(&new.category)
            .bind(&new.priority)
            .bind(&new.channel)
            .bind(&new.tier)
            .bind(&new.group)
            .bind(&new.assignee)
            .bind(&new.policy)
            .bind(runs.first().map(|r| r.id.as_str()))
            .bind(millis(now))
            .execute(conn)
            .await
            .map(|_| ())
            })?;
            let created = json!({
                "number": number, "channel": new.channel, "priority": new.priority,
                "category": new.category, "policy": new.policy,
            });
            event(&mut tx, id, &actor.name, "created", created, now).await?;
            if let Some(body) = &new.message {
                event(
                    &mut tx,
                    id,
                    &actor.name,
                    "customer-message",
                    json!({"body": body, "first": true}),
                    now,
                )
                .await?;
            }
            for run in runs {
                super::runs::insert_run(&mut tx, run, false, now).await?;
            }
            if !runs.is_empty() {
                tx.notify(super::transaction::Notice::Work).await?;
            }
            let view = select(&mut tx, "id", id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("a ticket vanished".into()))?;
            transaction.commit().await?;
            Ok(TicketIntake::Created(view))
        })
    }

    /// By id or by number (`T-2026-000123`).
    pub async fn get(self, id_or_number: &str) -> Result<Option<TicketView>, StoreError> {
        let column = if id_or_number.starts_with("T-") {
            "number"
        } else {
            "id"
        };
        let sql = format!("SELECT {COLUMNS} FROM tickets WHERE {column} = $1");
        on_reader!(self.store, |pool| {
            let row = sqlx::query(&sql)
                .bind(id_or_number)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(ticket_view).transpose()
        })
    }

    /// Newest first.
    pub async fn list(self, filter: &TicketFilter) -> Result<Vec<TicketView>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tickets
             WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
               AND (CAST($2 AS TEXT) IS NULL OR group_name = $2)
               AND (CAST($3 AS TEXT) IS NULL OR assignee = $3)
               AND (CAST($4 AS TEXT) IS NULL OR customer_id = $4)
               AND (CAST($5 AS TEXT) IS NULL OR (created_at, id) < (SELECT created_at, id FROM tickets WHERE id = $5))
             ORDER BY created_at DESC, id DESC
             LIMIT $6"
        );
        on_reader!(self.store, |pool| {
            let rows = sqlx::query(&sql)
                .bind(filter.status.map(Status::as_str))
                .bind(&filter.group)
                .bind(&filter.assignee)
                .bind(&filter.customer_id)
                .bind(&filter.before)
                .bind(i64::from(filter.limit.clamp(1, 1000)))
                .fetch_all(pool)
                .await?;
            rows.iter().map(ticket_view).collect()
        })
    }

    /// The timeline, oldest first.
    pub async fn events(self, id: &str) -> Result<Vec<TicketEvent>, StoreError> {
        EVENTS.read(self.store, id).await
    }

    /// What the SLA clocks are replayed from: creation, status changes, public replies
    /// and the customer's messages, in order.
    pub async fn happenings(self, id: &str) -> Result<Vec<Happening>, StoreError> {
        Ok(self
            .events(id)
            .await?
            .iter()
            .filter_map(happening)
            .collect())
    }

    /// Applies `change`, one event per field that changes; `None` when there is no such
    /// ticket.
    pub async fn change(
        self,
        id: &str,
        change: &TicketChange,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Option<TicketView>, StoreError> {
        on_writer!(self.store, |pool| {
            let mut transaction = pool.begin_write().await?;
            let mut tx = Tx::from(&mut *transaction);
            tx.lock("ticket-id", id, "").await?;
            let Some(before) = select(&mut tx, "id", id).await? else {
                return Ok(None);
            };
            let events = changes(&before, change);
            if events.is_empty() {
                return Ok(Some(before));
            }
            let pick = |new: &Option<Option<String>>, old: &Option<String>| match new {
                Some(v) => v.clone(),
                None => old.clone(),
            };
            on_tx!(&mut tx, |conn| {
                sqlx::query(
                "UPDATE tickets SET status = $2, priority = $3, category = $4, tier = $5, group_name = $6,
                     assignee = $7, policy = $8, updated_at = $9 WHERE id = $1"
            )
            .bind(id)
            .bind(change.status.unwrap_or(before.status).as_str())
            .bind(change.priority.as_ref().unwrap_or(&before.priority))
            .bind(change.category.as_ref().or(before.category.as_ref()))
            .bind(change.tier.as_ref().or(before.tier.as_ref()))
            .bind(pick(&change.group, &before.group))
            .bind(pick(&change.assignee, &before.assignee))
            .bind(change.policy.as_ref().or(before.policy.as_ref()))
            .bind(millis(now))
            .execute(conn)
            .await
            .map(|_| ())
            })?;
            for (kind, detail) in events {
                event(&mut tx, id, &actor.name, kind, detail, now).await?;
            }
            let after = select(&mut tx, "id", id).await?;
            transaction.commit().await?;
            Ok(after)
        })
    }

    /// Adds a reply, a note or the customer's message; `false` when there is no such
    /// ticket.
    pub async fn add_message(
        self,
        id: &str,
        message: &Message,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (kind, detail) = match message {
            Message::Reply { body } => ("reply", json!({"body": body, "public": true})),
            Message::Note { body } => ("note", json!({"body": body, "public": false})),
            Message::Customer { body } => ("customer-message", json!({"body": body})),
        };
        self.append(id, kind, detail, actor, now).await
    }

    /// Remembers that warnings or levels fired (each key once), each on the timeline with
    /// its `detail`; `false` when there is no such ticket.
    pub async fn record_fired(
        self,
        id: &str,
        fired: &[(String, &'static str, Json)],
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        on_writer!(self.store, |pool| {
            let mut transaction = pool.begin_write().await?;
            let mut tx = Tx::from(&mut *transaction);
            tx.lock("ticket-id", id, "").await?;
            let Some(ticket) = select(&mut tx, "id", id).await? else {
                return Ok(false);
            };
            let mut keys = ticket.fired.clone();
            for (key, kind, detail) in fired {
                if keys.contains(key) {
                    continue;
                }
                keys.push(key.clone());
                let mut detail = detail.clone();
                detail["key"] = json!(key);
                event(&mut tx, id, &actor.name, kind, detail, now).await?;
            }
            let keys = serde_json::to_string(&keys)?;
            on_tx!(&mut tx, |conn| sqlx::query(
                "UPDATE tickets SET fired = $2, updated_at = $3 WHERE id = $1"
            )
            .bind(id)
            .bind(&keys)
            .bind(millis(now))
            .execute(conn)
            .await
            .map(|_| ()))?;
            transaction.commit().await?;
            Ok(true)
        })
    }

    /// Stores the customer's ERP view as loaded now; `false` when there is no such ticket.
    pub async fn set_erp_snapshot(
        self,
        id: &str,
        snapshot: &Json,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let text = serde_json::to_string(snapshot)?;
        on_writer!(self.store, |pool| {
            let mut transaction = pool.begin_write().await?;
            let mut tx = Tx::from(&mut *transaction);
            let updated = on_tx!(&mut tx, |conn| {
                sqlx::query(
                "UPDATE tickets SET erp_snapshot = $2, erp_loaded_at = $3, updated_at = $3 WHERE id = $1"
            )
            .bind(id)
            .bind(&text)
            .bind(millis(now))
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
            })?;
            if updated == 0 {
                return Ok(false);
            }
            let missing = snapshot.get("missing").cloned().unwrap_or(json!([]));
            event(
                &mut tx,
                id,
                &actor.name,
                "erp",
                json!({"missing": missing}),
                now,
            )
            .await?;
            transaction.commit().await?;
            Ok(true)
        })
    }

    async fn append(
        self,
        id: &str,
        kind: &str,
        detail: Json,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        on_writer!(self.store, |pool| {
            let mut transaction = pool.begin_write().await?;
            let mut tx = Tx::from(&mut *transaction);
            let updated = on_tx!(&mut tx, |conn| sqlx::query(
                "UPDATE tickets SET updated_at = $2 WHERE id = $1"
            )
            .bind(id)
            .bind(millis(now))
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))?;
            if updated == 0 {
                return Ok(false);
            }
            event(&mut tx, id, &actor.name, kind, detail, now).await?;
            transaction.commit().await?;
            Ok(true)
        })
    }
}

/// The clock-relevant part of a timeline entry.
fn happening(e: &TicketEvent) -> Option<Happening> {
    let what = match e.kind.as_str() {
        "created" => What::Created,
        "status" => What::Status(Status::parse(e.detail["to"].as_str()?)?),
        "reply" => What::AgentReply { public: true },
        "note" => What::AgentReply { public: false },
        "customer-message" if e.detail["first"] == true => return None,
        "customer-message" => What::CustomerMessage,
        _ => return None,
    };
    Some(Happening { at: e.at, what })
}
