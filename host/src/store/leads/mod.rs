//! Leads, their history, and the counters assignment reads: one lead row per external id,
//! an append-only history, per-member counters and absence (`lead_reps`), and the
//! assignments `route` steps made, by effect key.
//!
//! Assignment happens in one transaction that reads the team's counters, picks
//! ([`crate::crm::assignment::pick`]), moves the counters and updates the lead; on
//! PostgreSQL an advisory lock on the team serializes it across processes (SQLite's one
//! writer does that anyway), so concurrent leads see each other's assignments.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value as Json, json};

use super::BeginWrite;
use super::audit::Actor;
use super::rows::{Cols, opt_json_of};
use super::timeline::Timeline;
use super::transaction::{Tx, on_tx};
use super::{Backend, Store, StoreError, from_millis, millis};
use crate::crm::assignment::RepState;
use crate::crm::lead::{NewLead, Stage};
use crate::run::NewRun;

mod assignment;

pub(super) use assignment::route_keyed;
pub use assignment::{OwnedRoute, RouteRequest};
use assignment::{count, rep_state};

pub struct Leads<'a> {
    pub(super) store: &'a Store,
}

/// A lead as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LeadView {
    pub id: String,
    pub external_id: String,
    pub stage: Stage,
    /// The lead's fields as delivered (checked and normalized).
    #[schema(value_type = Object)]
    pub data: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grade: Option<String>,
    /// Every point of the score, from the scoring plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub explanation: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Why nobody in the team could take it (it waits in the team's overflow queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow: Option<String>,
    /// The routing decision: rules matched, the winner and why, every candidate and why
    /// they were skipped, the strategy's pick.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub routing: Option<Json>,
    pub reassignments: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opportunity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One entry of a lead's history: `created`, `scored`, `stage`, `assigned`, `reassigned`,
/// `overflow`, `accepted`, `rejected`, …
pub type HistoryEntry = super::timeline::TimelineEntry;

/// A lead's history.
const HISTORY: Timeline = Timeline {
    table: "lead_history",
    owner: "lead_id",
};

/// What storing a delivered lead did.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// A new lead, stored with its run(s) started.
    Created(LeadView),
    /// The external id was delivered before with the same fields: that lead.
    Again(LeadView),
    /// The external id was delivered before with other fields: that lead, unchanged.
    Conflict(LeadView),
}

/// Which leads a list shows.
#[derive(Debug, Clone, Default)]
pub struct LeadFilter {
    pub stage: Option<Stage>,
    pub team: Option<String>,
    pub owner: Option<String>,
    pub source: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Only leads created before this lead (the previous page's last id).
    pub before: Option<String>,
    /// Only leads owned by one of these ids or routed to this team (a sales principal).
    pub reach: Option<(Vec<String>, Option<String>)>,
    pub limit: u32,
}

/// What accepting or rejecting did.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    Done(LeadView),
    /// The same decision was made before: the lead as it is (nothing changed).
    Again(LeadView),
    /// The lead is closed already with another decision, or has no owner yet.
    Refused {
        lead: Box<LeadView>,
        why: String,
    },
}

/// Sales' answer to a lead.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Accept {
        opportunity_id: String,
    },
    Reject {
        reason: String,
        note: Option<String>,
    },
}

const COLUMNS: &str = "id, external_id, data, stage, score, grade, explanation, team, owner, overflow, routing, \
     reassignments, opportunity_id, rejection_reason, rejection_note, run_id, created_at, updated_at";

fn lead_view(r: &impl Cols) -> Result<LeadView, StoreError> {
    let stage = r.text("stage");
    Ok(LeadView {
        id: r.text("id"),
        external_id: r.text("external_id"),
        stage: Stage::parse(&stage)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown lead stage {stage}")))?,
        data: serde_json::from_str(&r.text("data"))?,
        score: r.opt_int("score"),
        grade: r.opt_text("grade"),
        explanation: opt_json_of(r, "explanation")?,
        team: r.opt_text("team"),
        owner: r.opt_text("owner"),
        overflow: r.opt_text("overflow"),
        routing: opt_json_of(r, "routing")?,
        reassignments: r.int("reassignments"),
        opportunity_id: r.opt_text("opportunity_id"),
        rejection_reason: r.opt_text("rejection_reason"),
        rejection_note: r.opt_text("rejection_note"),
        run_id: r.opt_text("run_id"),
        created_at: from_millis(r.int("created_at")),
        updated_at: from_millis(r.int("updated_at")),
    })
}

async fn history(
    tx: &mut Tx<'_>,
    lead: &str,
    actor: &str,
    kind: &str,
    detail: Json,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    histories(tx, lead, actor, &[(kind, detail)], now).await
}

/// Several history entries of one lead in one statement.
async fn histories(
    tx: &mut Tx<'_>,
    lead: &str,
    actor: &str,
    entries: &[(&str, Json)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    HISTORY.append(tx, lead, actor, entries, now).await
}

/// A delivered lead to store, with the runs it starts.
#[derive(Debug, Clone)]
pub struct NewIntake {
    pub id: String,
    pub lead: NewLead,
    pub hash: String,
    pub runs: Vec<NewRun>,
    /// Per run, whether its workflow version is stored already (its text then is not
    /// written again).
    pub versions_stored: Vec<bool>,
    pub actor: Actor,
    pub now: DateTime<Utc>,
}

/// [`Leads::intake`] inside `tx`.
pub(super) async fn intake_in(tx: &mut Tx<'_>, new: &NewIntake) -> Result<Intake, StoreError> {
    let (id, lead, now) = (new.id.as_str(), &new.lead, new.now);
    let data = serde_json::to_string(lead)?;
    tx.lock("lead", &lead.external_id, "").await?;
    let known: Option<(String,)> = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT request_hash FROM leads WHERE external_id = $1"
    )
    .bind(&lead.external_id)
    .fetch_optional(conn)
    .await)?;
    if let Some((known_hash,)) = known {
        let view = select_lead(tx, "external_id", &lead.external_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a lead vanished".into()))?;
        return Ok(if known_hash == new.hash {
            Intake::Again(view)
        } else {
            Intake::Conflict(view)
        });
    }
    let row = NewRow {
        id,
        external_id: &lead.external_id,
        hash: &new.hash,
        data: &data,
        company: &lead.company,
        source: lead.source.as_deref(),
        run_id: new.runs.first().map(|r| r.id.as_str()),
    };
    insert_lead(tx, &row, now).await?;
    history(
        tx,
        id,
        &new.actor.name,
        "created",
        json!({"external_id": lead.external_id, "source": lead.source}),
        now,
    )
    .await?;
    for (i, run) in new.runs.iter().enumerate() {
        let stored = new.versions_stored.get(i).copied().unwrap_or(false);
        super::runs::insert_run(tx, run, stored, now).await?;
    }
    if !new.runs.is_empty() {
        tx.notify(super::transaction::Notice::Work).await?;
    }
    // As stored (times to the millisecond), without reading it back.
    let at = from_millis(millis(now));
    Ok(Intake::Created(LeadView {
        id: id.to_string(),
        external_id: lead.external_id.clone(),
        stage: Stage::New,
        data: serde_json::from_str(&data)?,
        score: None,
        grade: None,
        explanation: None,
        team: None,
        owner: None,
        overflow: None,
        routing: None,
        reassignments: 0,
        opportunity_id: None,
        rejection_reason: None,
        rejection_note: None,
        run_id: new.runs.first().map(|r| r.id.clone()),
        created_at: at,
        updated_at: at,
    }))
}

async fn select_lead(
    tx: &mut Tx<'_>,
    column: &str,
    value: &str,
) -> Result<Option<LeadView>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM leads WHERE {column} = $1");
    on_tx!(tx, |conn| {
        let row = sqlx::query(&sql).bind(value).fetch_optional(conn).await?;
        row.as_ref().map(lead_view).transpose()
    })
}

/// A lead row as first stored.
struct NewRow<'a> {
    id: &'a str,
    external_id: &'a str,
    hash: &'a str,
    data: &'a str,
    company: &'a str,
    source: Option<&'a str>,
    run_id: Option<&'a str>,
}

async fn insert_lead(
    tx: &mut Tx<'_>,
    row: &NewRow<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_tx!(tx, |conn| {
        sqlx::query(
        "INSERT INTO leads (id, external_id, request_hash, data, company, source, stage, run_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'new', $7, $8, $8)"
    )
    .bind(row.id)
    .bind(row.external_id)
    .bind(row.hash)
    .bind(row.data)
    .bind(row.company)
    .bind(row.source)
    .bind(row.run_id)
    .bind(millis(now))
    .execute(conn)
    .await
    .map(|_| ())
    })?;
    Ok(())
}

impl Leads<'_> {
    /// Stores a delivered lead (`hash` the SHA-256 of its fields) and starts `runs` for
    /// it, in one transaction; a known external id stores nothing. On SQLite the write
    /// shares a group commit with whatever else is being written.
    pub async fn intake(
        self,
        id: &str,
        lead: &NewLead,
        hash: &str,
        runs: &[NewRun],
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Intake, StoreError> {
        let new = NewIntake {
            id: id.to_string(),
            lead: lead.clone(),
            hash: hash.to_string(),
            runs: runs.to_vec(),
            versions_stored: Vec::new(),
            actor: actor.clone(),
            now,
        };
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::leads::intake(db, new).await,
            Backend::Postgres(db) => super::postgres::leads::intake(db, new).await,
        }
    }

    pub async fn get(self, id: &str) -> Result<Option<LeadView>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM leads WHERE id = $1");
        on_reader!(self.store, |pool| {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(lead_view).transpose()
        })
    }

    /// Newest first.
    pub async fn list(self, filter: &LeadFilter) -> Result<Vec<LeadView>, StoreError> {
        let (owners, team) = match &filter.reach {
            Some((owners, team)) => (Some(format!(" {} ", owners.join(" "))), team.clone()),
            None => (None, None),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM leads
             WHERE (CAST($1 AS TEXT) IS NULL OR stage = $1)
               AND (CAST($2 AS TEXT) IS NULL OR team = $2)
               AND (CAST($3 AS TEXT) IS NULL OR owner = $3)
               AND (CAST($4 AS TEXT) IS NULL OR source = $4)
               AND (CAST($5 AS BIGINT) IS NULL OR created_at >= $5)
               AND (CAST($6 AS BIGINT) IS NULL OR created_at < $6)
               AND (CAST($7 AS TEXT) IS NULL OR (created_at, id) < (SELECT created_at, id FROM leads WHERE id = $7))
               AND (CAST($9 AS INTEGER) IS NULL
                    OR (owner IS NOT NULL AND CAST($10 AS TEXT) LIKE ('% ' || owner || ' %'))
                    OR (CAST($11 AS TEXT) IS NOT NULL AND team = $11))
             ORDER BY created_at DESC, id DESC
             LIMIT $8"
        );
        on_reader!(self.store, |pool| {
            let rows = sqlx::query(&sql)
                .bind(filter.stage.map(Stage::as_str))
                .bind(&filter.team)
                .bind(&filter.owner)
                .bind(&filter.source)
                .bind(filter.created_after.map(millis))
                .bind(filter.created_before.map(millis))
                .bind(&filter.before)
                .bind(i64::from(filter.limit.clamp(1, 1000)))
                .bind(filter.reach.as_ref().map(|_| 1i32))
                .bind(owners.as_deref().unwrap_or(""))
                .bind(team.as_deref())
                .fetch_all(pool)
                .await?;
            rows.iter().map(lead_view).collect()
        })
    }

    /// Everything that happened to lead `id`, oldest first.
    pub async fn history(self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        HISTORY.read(self.store, id).await
    }

    /// The stored state of `team`'s members.
    pub async fn reps(self, team: &str) -> Result<Vec<RepState>, StoreError> {
        on_reader!(self.store, |pool| {
            let rows = sqlx::query("SELECT rep, open, assigned, active, absent_from, absent_until FROM lead_reps WHERE team = $1 ORDER BY rep")
                .bind(team)
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(rep_state).collect())
        })
    }

    /// Routes and assigns a lead for a `route` step (see [`RouteRequest`]); the answer is
    /// what the step outputs. A lead that came as a raw event (no row yet) is stored.
    pub async fn route(self, request: &RouteRequest<'_>) -> Result<Json, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::leads::route(db, OwnedRoute::of(request)).await,
            Backend::Postgres(db) => super::postgres::leads::route(db, request).await,
        }
    }

    /// Accepts or rejects lead `id`; `None` when there is no such lead.
    pub async fn decide(
        self,
        id: &str,
        decision: &Decision,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Option<Decided>, StoreError> {
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut any = Tx::from(&mut *tx);
            any.lock("lead-id", id, "").await?;
            let Some(lead) = select_lead(&mut any, "id", id).await? else {
                return Ok(None);
            };
            let same = match (decision, lead.stage) {
                (Decision::Accept { opportunity_id }, Stage::Accepted) => {
                    lead.opportunity_id.as_deref() == Some(opportunity_id)
                }
                (Decision::Reject { reason, note }, Stage::Rejected) => {
                    lead.rejection_reason.as_deref() == Some(reason) && lead.rejection_note == *note
                }
                _ => false,
            };
            if same {
                return Ok(Some(Decided::Again(lead)));
            }
            if lead.stage.is_closed() {
                let why = format!("the lead is {} already", lead.stage.as_str());
                return Ok(Some(Decided::Refused {
                    lead: Box::new(lead),
                    why,
                }));
            }
            let (stage, kind, detail) = match decision {
                Decision::Accept { opportunity_id } => (
                    Stage::Accepted,
                    "accepted",
                    json!({"opportunity_id": opportunity_id, "owner": lead.owner}),
                ),
                Decision::Reject { reason, note } => (
                    Stage::Rejected,
                    "rejected",
                    json!({"reason": reason, "note": note, "owner": lead.owner}),
                ),
            };
            let (opportunity, reason, note) = match decision {
                Decision::Accept { opportunity_id } => (Some(opportunity_id.as_str()), None, None),
                Decision::Reject { reason, note } => (None, Some(reason.as_str()), note.as_deref()),
            };
            on_tx!(&mut any, |conn| {
                sqlx::query(
                "UPDATE leads SET stage = $2, opportunity_id = $3, rejection_reason = $4, rejection_note = $5, updated_at = $6 WHERE id = $1"
            )
            .bind(id)
            .bind(stage.as_str())
            .bind(opportunity)
            .bind(reason)
            .bind(note)
            .bind(millis(now))
            .execute(conn)
            .await
        .map(|_| ())
            })?;
            if let (Some(team), Some(owner)) = (&lead.team, &lead.owner) {
                count(&mut any, team, owner, -1, 0, now).await?;
            }
            history(&mut any, id, &actor.name, kind, detail, now).await?;
            let view = select_lead(&mut any, "id", id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("a lead vanished".into()))?;
            tx.commit().await?;
            Ok(Some(Decided::Done(view)))
        })
    }

    /// Changes whether member `rep` of `team` takes leads, audited as done by `actor`
    /// with the state before and after; returns the state after.
    pub async fn set_member(
        self,
        team: &str,
        rep: &str,
        change: &MemberChange,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<RepState, StoreError> {
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut any = Tx::from(&mut *tx);
            // The same lock assignment takes: a change lands between two assignments.
            any.lock("lead-team", team, "").await?;
            count(&mut any, team, rep, 0, 0, now).await?;
            let before: RepState = on_tx!(&mut any, |conn| {
                let row = sqlx::query(
                    "SELECT rep, open, assigned, active, absent_from, absent_until FROM lead_reps WHERE team = $1 AND rep = $2",
                )
                .bind(team)
                .bind(rep)
                .fetch_one(conn)
                .await?;
                Ok::<_, StoreError>(rep_state(&row))
            })?;
            let mut after = before.clone();
            if let Some(active) = change.active {
                after.active = active;
            }
            if let Some((from, until)) = change.absent {
                after.absent_from = from;
                after.absent_until = until;
            }
            on_tx!(&mut any, |conn| {
                sqlx::query(
                "UPDATE lead_reps SET active = $3, absent_from = $4, absent_until = $5, updated_at = $6 WHERE team = $1 AND rep = $2"
            )
            .bind(team)
            .bind(rep)
            .bind(i64::from(after.active))
            .bind(after.absent_from.map(millis))
            .bind(after.absent_until.map(millis))
            .bind(millis(now))
            .execute(conn)
            .await
            .map(|_| ())
            })?;
            let state = |s: &RepState| json!({"active": s.active, "absent_from": s.absent_from, "absent_until": s.absent_until});
            let audited = super::audit::Change::new(actor, "team.member", format!("{team}/{rep}"))
                .with(json!({"before": state(&before), "after": state(&after)}));
            super::audit::append(any, &audited, now).await?;
            tx.commit().await?;
            Ok(after)
        })
    }

    /// Rejections for marketing: counts by reason, team and source.
    pub async fn rejection_counts(self) -> Result<Vec<RejectionCount>, StoreError> {
        on_reader!(self.store, |pool| {
            let rows = sqlx::query(
                "SELECT rejection_reason AS reason, team, source, COUNT(*) AS n FROM leads WHERE stage = 'rejected'
                 GROUP BY rejection_reason, team, source ORDER BY n DESC, reason, team, source",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|r| RejectionCount {
                    reason: r.opt_text("reason").unwrap_or_default(),
                    team: r.opt_text("team"),
                    source: r.opt_text("source"),
                    count: r.int("n"),
                })
                .collect())
        })
    }
}

/// An absence: from, until; either end open.
pub type Absence = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A change of a team member's availability (`None` keeps the value).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberChange {
    pub active: Option<bool>,
    /// `Some((from, until))` sets the absence (either end open); `Some((None, None))`
    /// clears it.
    pub absent: Option<Absence>,
}

/// Rejected leads of one reason, team and source.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RejectionCount {
    pub reason: String,
    pub team: Option<String>,
    pub source: Option<String>,
    pub count: i64,
}
