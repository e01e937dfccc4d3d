//! Assignment: a `route` step's request, answered once per effect key — the team's
//! counters read, [`crate::crm::assignment::pick`] asked, the counters moved and the lead
//! updated in one transaction (on PostgreSQL under an advisory lock on the team, so
//! concurrent leads of several processes see each other's assignments).

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use super::{NewRow, histories, history, insert_lead, select_lead};
use crate::crm::assignment::{Assignment, RepState};
use crate::crm::lead::Stage;
use crate::crm::territory::{Routing, Team};
use crate::store::rows::Cols;
use crate::store::transaction::{Tx, on_tx};
use crate::store::{StoreError, from_millis, millis};

/// A `route` step's assignment.
pub struct RouteRequest<'a> {
    /// The step's effect key: the same key gets the same answer.
    pub key: &'a str,
    /// The run's input: the lead (`id`, and its fields when it came as a raw event).
    pub lead: &'a Json,
    pub team: &'a Team,
    /// The territory decision; `None` keeps the lead's team (reassignment).
    pub routing: Option<&'a Routing>,
    /// `{score, grade, explanation}` from scoring, when the step passes it.
    pub score: Option<&'a Json>,
    pub account_owner: Option<&'a str>,
    /// Pass the lead on: its earlier owners are skipped and their open count drops.
    pub reassign: bool,
    pub run_id: &'a str,
    pub now: DateTime<Utc>,
}

/// A [`RouteRequest`] that owns its data, for the SQLite writer's queue.
#[derive(Debug, Clone)]
pub struct OwnedRoute {
    key: String,
    lead: Json,
    team: Team,
    routing: Option<Routing>,
    score: Option<Json>,
    account_owner: Option<String>,
    reassign: bool,
    run_id: String,
    now: DateTime<Utc>,
}

impl OwnedRoute {
    pub fn of(r: &RouteRequest<'_>) -> OwnedRoute {
        OwnedRoute {
            key: r.key.to_string(),
            lead: r.lead.clone(),
            team: r.team.clone(),
            routing: r.routing.cloned(),
            score: r.score.cloned(),
            account_owner: r.account_owner.map(str::to_string),
            reassign: r.reassign,
            run_id: r.run_id.to_string(),
            now: r.now,
        }
    }

    pub fn request(&self) -> RouteRequest<'_> {
        RouteRequest {
            key: &self.key,
            lead: &self.lead,
            team: &self.team,
            routing: self.routing.as_ref(),
            score: self.score.as_ref(),
            account_owner: self.account_owner.as_deref(),
            reassign: self.reassign,
            run_id: &self.run_id,
            now: self.now,
        }
    }
}

/// [`Leads::route`] inside `tx`: the answer stored for the request's key, or a new
/// assignment.
pub(in crate::store) async fn route_keyed(
    tx: &mut Tx<'_>,
    request: &RouteRequest<'_>,
) -> Result<Json, StoreError> {
    let done: Option<(String,)> = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT result FROM lead_assignments WHERE key = $1"
    )
    .bind(request.key)
    .fetch_optional(conn)
    .await)?;
    if let Some((result,)) = done {
        return Ok(serde_json::from_str(&result)?);
    }
    route_in(tx, request).await
}

/// Moves a member's counters by `open` and `assigned`, making their row when they have none.
pub(super) async fn count(
    tx: &mut Tx<'_>,
    team: &str,
    rep: &str,
    open: i64,
    assigned: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let max = if matches!(tx, Tx::Postgres(_)) {
        "GREATEST"
    } else {
        "MAX"
    };
    let sql = format!(
        "INSERT INTO lead_reps (team, rep, open, assigned, active, updated_at) VALUES ($1, $2, {max}($3, 0), $4, 1, $5)
         ON CONFLICT (team, rep) DO UPDATE SET open = {max}(lead_reps.open + $3, 0), assigned = lead_reps.assigned + $4, updated_at = $5"
    );
    on_tx!(tx, |conn| sqlx::query(&sql)
        .bind(team)
        .bind(rep)
        .bind(open)
        .bind(assigned)
        .bind(millis(now))
        .execute(conn)
        .await
        .map(|_| ()))?;
    Ok(())
}

pub(super) fn rep_state(r: &impl Cols) -> RepState {
    RepState {
        user: r.text("rep"),
        open: r.int("open").max(0) as u32,
        assigned: r.int("assigned").max(0) as u64,
        active: r.int("active") != 0,
        absent_from: r.opt_int("absent_from").map(from_millis),
        absent_until: r.opt_int("absent_until").map(from_millis),
    }
}

/// A name and an address.
type Person = Option<(String, String)>;

/// The names and addresses of the active users whose id or rep id are `owner` and
/// `lead` (team members and leads are named by either in territory files), in one query.
async fn people(
    tx: &mut Tx<'_>,
    owner: Option<&str>,
    lead: Option<&str>,
) -> Result<(Person, Person), StoreError> {
    if owner.is_none() && lead.is_none() {
        return Ok((None, None));
    }
    let rows: Vec<(String, Option<String>, String, String)> = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT id, rep, name, email FROM users
         WHERE (id IN ($1, $2) OR rep IN ($1, $2)) AND deactivated_at IS NULL"
    )
    .bind(owner)
    .bind(lead)
    .fetch_all(conn)
    .await)?;
    let find = |who: Option<&str>| {
        let who = who?;
        rows.iter()
            .find(|(id, rep, ..)| id == who || rep.as_deref() == Some(who))
            .map(|(_, _, name, email)| (name.clone(), email.clone()))
    };
    Ok((find(owner), find(lead)))
}

async fn route_in(tx: &mut Tx<'_>, request: &RouteRequest<'_>) -> Result<Json, StoreError> {
    let now = request.now;
    let actor = format!("run:{}", request.run_id);
    let lead_id = request
        .lead
        .get("id")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    if lead_id.is_empty() {
        return Err(StoreError::Invalid(
            "the run's input has no lead `id`".into(),
        ));
    }
    let team = &request.team.name;
    // Assignments in one team one at a time, across processes too.
    tx.lock("lead-team", team, "").await?;
    let lead = match select_lead(tx, "id", &lead_id).await? {
        Some(lead) => lead,
        None => {
            // A lead that came as an event: stored as it came.
            let external = request
                .lead
                .get("external_id")
                .and_then(Json::as_str)
                .unwrap_or(&lead_id)
                .to_string();
            let company = request
                .lead
                .get("company")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            let source = request
                .lead
                .get("source")
                .and_then(Json::as_str)
                .map(str::to_string);
            let data = request.lead.to_string();
            let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data.as_bytes()));
            let new = NewRow {
                id: &lead_id,
                external_id: &external,
                hash: &hash,
                data: &data,
                company: &company,
                source: source.as_deref(),
                run_id: Some(request.run_id),
            };
            insert_lead(tx, &new, now).await?;
            history(
                tx,
                &lead_id,
                &actor,
                "created",
                json!({"external_id": external, "source": source, "as": "event"}),
                now,
            )
            .await?;
            select_lead(tx, "id", &lead_id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("a lead vanished".into()))?
        }
    };
    let states: Vec<RepState> = on_tx!(tx, |conn| {
        let rows = sqlx::query("SELECT rep, open, assigned, active, absent_from, absent_until FROM lead_reps WHERE team = $1")
            .bind(team)
            .fetch_all(conn)
            .await?;
        Ok::<_, StoreError>(rows.iter().map(rep_state).collect())
    })?;
    let had_it: Vec<String> = if request.reassign {
        let rows: Vec<(String,)> = on_tx!(tx, |conn| {
            sqlx::query_as(
            "SELECT detail FROM lead_history WHERE lead_id = $1 AND kind IN ('assigned', 'reassigned') ORDER BY id"
        )
        .bind(&lead_id)
        .fetch_all(conn)
        .await
        })?;
        rows.iter()
            .filter_map(|(d,)| serde_json::from_str::<Json>(d).ok())
            .filter_map(|d| d.get("owner").and_then(Json::as_str).map(str::to_string))
            .collect()
    } else {
        Vec::new()
    };
    let score = request.score;
    let grade = score.and_then(|s| s.get("grade")).and_then(Json::as_str);
    let stage = match grade {
        Some(grade) if !lead.stage.is_closed() => Stage::for_grade(grade),
        _ => lead.stage,
    };
    // An unqualified lead stays with marketing: routed (its team is known), not assigned.
    let assignment: Option<Assignment> = (stage != Stage::Unqualified).then(|| {
        crate::crm::assignment::pick(request.team, &states, now, request.account_owner, &had_it)
    });
    // The earlier owner gives the lead up.
    if let (Some(old_team), Some(old_owner)) = (&lead.team, &lead.owner)
        && !lead.stage.is_closed()
    {
        count(tx, old_team, old_owner, -1, 0, now).await?;
    }
    let owner = assignment.as_ref().and_then(|a| a.owner.clone());
    let overflow = assignment.as_ref().and_then(|a| a.overflow);
    let reason = match &assignment {
        Some(a) => a.reason.clone(),
        None => "unqualified: it stays with marketing, nobody in sales is assigned".to_string(),
    };
    if let Some(owner) = &owner {
        count(tx, team, owner, 1, 1, now).await?;
    }
    let routing = json!({
        "territory": request.routing,
        "assignment": assignment,
    });
    let reassigned = request.reassign && lead.owner.is_some();
    on_tx!(tx, |conn| {
        sqlx::query(
        "UPDATE leads SET stage = $2, score = COALESCE($3, score), grade = COALESCE($4, grade),
                explanation = COALESCE($5, explanation), team = $6, owner = $7, overflow = $8, routing = $9,
                reassignments = reassignments + $10, run_id = COALESCE(run_id, $11), updated_at = $12
         WHERE id = $1"
    )
    .bind(&lead_id)
    .bind(stage.as_str())
    .bind(score.and_then(|s| s.get("score")).and_then(Json::as_i64))
    .bind(grade)
    .bind(score.and_then(|s| s.get("explanation")).map(Json::to_string))
    .bind(team)
    .bind(owner.as_deref())
    .bind(overflow.map(|o| o.as_str()))
    .bind(routing.to_string())
    .bind(i64::from(reassigned))
    .bind(request.run_id)
    .bind(millis(now))
    .execute(conn)
    .await
        .map(|_| ())
    })?;
    let mut entries: Vec<(&str, Json)> = Vec::with_capacity(3);
    if let Some(score) = score
        && lead.score.is_none()
    {
        entries.push((
            "scored",
            json!({"score": score.get("score"), "grade": grade}),
        ));
    }
    if stage != lead.stage {
        entries.push(("stage", json!({"from": lead.stage, "to": stage})));
    }
    let kind = match (&assignment, &owner, reassigned) {
        (None, ..) => "routed",
        (Some(_), None, _) => "overflow",
        (Some(_), Some(_), true) => "reassigned",
        (Some(_), Some(_), false) => "assigned",
    };
    entries.push((
        kind,
        json!({
            "team": team,
            "owner": owner,
            "previous_owner": lead.owner,
            "overflow": overflow,
            "rule": request.routing.and_then(|r| r.rule.clone()),
            "reason": reason,
        }),
    ));
    histories(tx, &lead_id, &actor, &entries, now).await?;
    let (owner_user, lead_user) =
        people(tx, owner.as_deref(), request.team.lead.as_deref()).await?;
    let result = json!({
        "owner_name": owner_user.as_ref().map(|(name, _)| name),
        "owner_email": owner_user.as_ref().map(|(_, email)| email),
        "team_lead_name": lead_user.as_ref().map(|(name, _)| name),
        "team_lead_email": lead_user.as_ref().map(|(_, email)| email),
        "previous_owner": lead.owner,
        "lead": lead_id,
        "stage": stage,
        "team": team,
        "owner": owner,
        "overflow": overflow,
        "team_lead": request.team.lead,
        "locale": request.team.locale,
        "calendar": request.team.calendar,
        "reassignments": lead.reassignments + i64::from(reassigned),
        "reason": reason,
        "rule": request.routing.and_then(|r| r.rule.clone()),
    });
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO lead_assignments (key, lead_id, result, created_at) VALUES ($1, $2, $3, $4)"
    )
    .bind(request.key)
    .bind(&lead_id)
    .bind(result.to_string())
    .bind(millis(now))
    .execute(conn)
    .await
    .map(|_| ()))?;
    Ok(result)
}
