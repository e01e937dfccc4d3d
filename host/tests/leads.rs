//! Leads in the store, on both backends: intake idempotent on the external id, routing
//! with fair assignment under concurrent intake, reassignment, accept and reject.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use kontor::crm::lead::{NewLead, Stage};
use kontor::crm::territory::{Team, Territories};
use kontor::store::Store;
use kontor::store::audit::Actor;
use kontor::store::leads::{Decided, Decision, Intake, LeadFilter, RouteRequest};
use serde_json::{Value, json};

async fn store(dir: &tempfile::TempDir) -> Store {
    Store::open(&common::database_url(dir.path()).await)
        .await
        .unwrap()
}

fn territories() -> Territories {
    let catalog = kontor::workflow::Catalog::load(std::path::Path::new("../workflows"), None);
    assert!(
        catalog.all_diagnostics().is_empty(),
        "{:?}",
        catalog.all_diagnostics()
    );
    (*catalog.territories).clone()
}

fn new_lead(external: &str) -> NewLead {
    NewLead {
        external_id: external.into(),
        company: "Müller Maschinenbau GmbH".into(),
        country: "DE".into(),
        postal_code: Some("20095".into()),
        industry: Some("maschinenbau".into()),
        products: vec!["A".into()],
        source: Some("web".into()),
        ..NewLead::default()
    }
    .check()
    .unwrap()
}

async fn intake(store: &Store, external: &str) -> String {
    let lead = new_lead(external);
    let hash = format!("hash-of-{external}");
    match store
        .leads()
        .intake(
            &format!("lead-{external}"),
            &lead,
            &hash,
            &[],
            &Actor::cli(),
            Utc::now(),
        )
        .await
        .unwrap()
    {
        Intake::Created(view) => view.id,
        other => panic!("{other:?}"),
    }
}

async fn route(store: &Store, team: &Team, lead: &str, key: &str, reassign: bool) -> Value {
    let input = json!({"id": lead});
    store
        .leads()
        .route(&RouteRequest {
            key,
            lead: &input,
            team,
            routing: None,
            score: Some(&json!({"score": 80, "grade": "A", "explanation": [{"factor": "title", "points": 30}]})),
            account_owner: None,
            reassign,
            run_id: "run-1",
            now: Utc::now(),
        })
        .await
        .unwrap()
}

async fn a_delivered_lead_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let lead = new_lead("CRM-1");
    let now = Utc::now();
    let first = store
        .leads()
        .intake("lead-1", &lead, "h1", &[], &Actor::cli(), now)
        .await
        .unwrap();
    let Intake::Created(view) = first else {
        panic!("{first:?}")
    };
    assert_eq!(
        (view.stage, view.external_id.as_str()),
        (Stage::New, "CRM-1")
    );
    assert_eq!(view.data["company"], "Müller Maschinenbau GmbH");
    // The same delivery again: the same lead; with other fields: refused, unchanged.
    let again = store
        .leads()
        .intake("lead-2", &lead, "h1", &[], &Actor::cli(), now)
        .await
        .unwrap();
    assert!(
        matches!(&again, Intake::Again(v) if v.id == "lead-1"),
        "{again:?}"
    );
    let other = store
        .leads()
        .intake("lead-3", &lead, "h2", &[], &Actor::cli(), now)
        .await
        .unwrap();
    assert!(
        matches!(&other, Intake::Conflict(v) if v.id == "lead-1"),
        "{other:?}"
    );
    assert!(store.leads().get("lead-2").await.unwrap().is_none());
    let history = store.leads().history("lead-1").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].kind.as_str(), history[0].actor.as_str()),
        ("created", "cli")
    );
}

/// 8 clients route 96 leads into one round-robin team of 4 at once: every member gets
/// 24 (equal capacities: counts differ by at most 1), and a step repeated after a crash
/// (same key) gets its first answer without moving a counter.
async fn concurrent_routing_is_fair() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let mut team = territories().teams["nord-maschinenbau"].as_ref().clone();
    team.members = ["a", "b", "c", "d"]
        .iter()
        .map(|u| kontor::crm::territory::Member {
            user: u.to_string(),
            capacity: 1000,
        })
        .collect();
    let team = Arc::new(team);
    for i in 0..96 {
        intake(&store, &format!("C-{i}")).await;
    }
    let mut clients = Vec::new();
    for client in 0..8 {
        let (store, team) = (store.clone(), team.clone());
        clients.push(tokio::spawn(async move {
            let mut owners = Vec::new();
            for i in (client..96).step_by(8) {
                let lead = format!("lead-C-{i}");
                let result = route(&store, &team, &lead, &format!("key-{i}"), false).await;
                owners.push(result["owner"].as_str().unwrap().to_string());
            }
            owners
        }));
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for client in clients {
        for owner in client.await.unwrap() {
            *counts.entry(owner).or_default() += 1;
        }
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [24, 24, 24, 24],
        "{counts:?}"
    );
    let before = route(&store, &team, "lead-C-5", "key-5", false).await;
    let reps = store.leads().reps(&team.name).await.unwrap();
    assert_eq!(reps.iter().map(|r| r.assigned).sum::<u64>(), 96);
    assert_eq!(reps.iter().map(|r| r.open).sum::<u32>(), 96);
    let lead = store.leads().get("lead-C-5").await.unwrap().unwrap();
    assert_eq!(lead.owner.as_deref(), before["owner"].as_str());
    assert_eq!(
        (lead.stage, lead.score, lead.team.as_deref()),
        (Stage::SalesQualified, Some(80), Some("nord-maschinenbau"))
    );
    let kinds: Vec<String> = store
        .leads()
        .history("lead-C-5")
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.kind)
        .collect();
    assert_eq!(kinds, ["created", "scored", "stage", "assigned"]);
}

async fn reassignment_skips_earlier_owners_then_overflows() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let team = territories().teams["nord-maschinenbau"].clone(); // anna.schroeder, jens.petersen
    let lead = intake(&store, "R-1").await;
    let first = route(&store, &team, &lead, "k1", false).await;
    assert_eq!(first["owner"], "anna.schroeder");
    let second = route(&store, &team, &lead, "k2", true).await;
    assert_eq!(second["owner"], "jens.petersen");
    assert_eq!(second["reassignments"], 1);
    let third = route(&store, &team, &lead, "k3", true).await;
    assert_eq!(third["owner"], Value::Null);
    assert_eq!(third["overflow"], "nobody-available");
    let view = store.leads().get(&lead).await.unwrap().unwrap();
    assert_eq!(
        (view.owner, view.overflow.as_deref()),
        (None, Some("nobody-available"))
    );
    // Nobody holds it open any more.
    let reps = store.leads().reps(&team.name).await.unwrap();
    assert!(reps.iter().all(|r| r.open == 0), "{reps:?}");
    let kinds: Vec<String> = store
        .leads()
        .history(&lead)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "scored",
            "stage",
            "assigned",
            "reassigned",
            "overflow"
        ]
    );
}

async fn sales_accepts_or_rejects_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let team = territories().teams["nord-maschinenbau"].clone();
    let (a, b) = (intake(&store, "D-1").await, intake(&store, "D-2").await);
    route(&store, &team, &a, "ka", false).await;
    route(&store, &team, &b, "kb", false).await;
    let actor = Actor::named("token:sales");
    let now = Utc::now();
    let accept = Decision::Accept {
        opportunity_id: "OPP-7".into(),
    };
    let done = store
        .leads()
        .decide(&a, &accept, &actor, now)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&done, Decided::Done(v) if v.stage == Stage::Accepted && v.opportunity_id.as_deref() == Some("OPP-7")),
        "{done:?}"
    );
    let again = store
        .leads()
        .decide(&a, &accept, &actor, now)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(again, Decided::Again(_)));
    let reject = Decision::Reject {
        reason: "no-budget".into(),
        note: Some("Budget erst 2027".into()),
    };
    let refused = store
        .leads()
        .decide(&a, &reject, &actor, now)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&refused, Decided::Refused { why, .. } if why.contains("accepted already")),
        "{refused:?}"
    );
    store
        .leads()
        .decide(&b, &reject, &actor, now)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .leads()
            .decide("nope", &reject, &actor, now)
            .await
            .unwrap()
            .is_none()
    );
    // Both owners' open counts went back down.
    let reps = store.leads().reps(&team.name).await.unwrap();
    assert!(
        reps.iter().all(|r| r.open == 0 && r.assigned == 1),
        "{reps:?}"
    );
    let counts = store.leads().rejection_counts().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(
        (
            counts[0].reason.as_str(),
            counts[0].team.as_deref(),
            counts[0].source.as_deref(),
            counts[0].count
        ),
        ("no-budget", Some("nord-maschinenbau"), Some("web"), 1)
    );
    let history = store.leads().history(&b).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        ("rejected", "token:sales")
    );
    assert_eq!(last.detail["note"], "Budget erst 2027");
}

async fn lists_filter_and_page_and_reach_only_what_sales_may_see() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let team = territories().teams["nord-maschinenbau"].clone();
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = intake(&store, &format!("F-{i}")).await;
        route(&store, &team, &id, &format!("kf{i}"), false).await;
        ids.push(id);
    }
    let all = |filter: LeadFilter| {
        let store = store.clone();
        async move {
            store
                .leads()
                .list(&LeadFilter {
                    limit: 100,
                    ..filter
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(all(LeadFilter::default()).await.len(), 5);
    let anna = all(LeadFilter {
        owner: Some("anna.schroeder".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(anna.len(), 3);
    assert_eq!(
        all(LeadFilter {
            stage: Some(Stage::Accepted),
            ..Default::default()
        })
        .await
        .len(),
        0
    );
    assert_eq!(
        all(LeadFilter {
            source: Some("web".into()),
            ..Default::default()
        })
        .await
        .len(),
        5
    );
    // Pages of two, newest first, none twice.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .leads()
            .list(&LeadFilter {
                limit: 2,
                before: before.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|l| l.id.clone());
        seen.extend(page.into_iter().map(|l| l.id));
    }
    assert_eq!(seen.len(), 5);
    // A sales rep without the team sees their own; with the team, all of it.
    let own = all(LeadFilter {
        reach: Some((vec!["jens.petersen".into()], None)),
        ..Default::default()
    })
    .await;
    assert_eq!(own.len(), 2);
    assert!(
        own.iter()
            .all(|l| l.owner.as_deref() == Some("jens.petersen"))
    );
    let team_wide = all(LeadFilter {
        reach: Some((vec!["x".into()], Some("nord-maschinenbau".into()))),
        ..Default::default()
    })
    .await;
    assert_eq!(team_wide.len(), 5);
    let nobody = all(LeadFilter {
        reach: Some((vec!["x".into()], Some("sued".into()))),
        ..Default::default()
    })
    .await;
    assert!(nobody.is_empty());
}

kontor::on_both_backends!(
    a_delivered_lead_is_stored_once,
    concurrent_routing_is_fair,
    reassignment_skips_earlier_owners_then_overflows,
    sales_accepts_or_rejects_once,
    lists_filter_and_page_and_reach_only_what_sales_may_see,
    sales_reach_their_leads_and_their_team_only,
);

/// Through the router: sales see and decide only their own and their team's leads, and
/// change only their own team's members; an absence set there is honoured by the next
/// assignment and is in the audit log.
async fn sales_reach_their_leads_and_their_team_only() {
    use axum::http::StatusCode;
    use common::router::{app, call, call_as};
    use kontor::clock::Clock;
    use kontor::store::tokens::NewToken;
    use kontor::store::users::UserFields;

    let (app, f) = app().await;
    let store = f.engine.store().clone();
    let cli = Actor::cli();
    let now = Utc::now();
    for (id, team, rep) in [
        ("u-lena", "sued", "lena.maier"),
        ("u-anna", "nord-maschinenbau", "anna.schroeder"),
    ] {
        let fields = UserFields {
            name: Some(id.into()),
            email: Some(format!("{id}@example.de")),
            roles: Some(vec!["sales".into()]),
            team: Some(Some(team.into())),
            rep: Some(Some(rep.into())),
            active: None,
        };
        store
            .users()
            .create(id, &fields, &cli, now)
            .await
            .unwrap()
            .unwrap();
        let token = NewToken {
            role: "sales",
            user_id: Some(id),
            ..NewToken::default()
        };
        let name = format!("kt_{id}");
        store
            .tokens()
            .create(&name, &kontor::api::hash_token(&name), &token, &cli, now)
            .await
            .unwrap();
    }
    // Lena is away over Christmas: Xaver gets the next Munich lead in her place.
    let absence =
        json!({"absence": {"from": "2026-06-01T00:00:00Z", "until": "2026-06-30T00:00:00Z"}})
            .to_string();
    let (status, body) = call_as(
        &app,
        "kt_u-lena",
        "PATCH",
        "/api/v1/teams/sued/members/lena.maier",
        Some(&absence),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["available"].as_bool(), body["active"].as_bool()),
        (Some(false), Some(true)),
        "{body}"
    );
    // Not her team, not a member, an absence that ends before it begins.
    let (status, _) = call_as(
        &app,
        "kt_u-lena",
        "PATCH",
        "/api/v1/teams/nord-alle/members/maike.jansen",
        Some(&absence),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(
        &app,
        "PATCH",
        "/api/v1/teams/sued/members/nobody",
        Some(&absence),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("members: josef.huber, lena.maier, xaver.bauer"),
        "{body}"
    );
    let backwards =
        json!({"absence": {"from": "2026-06-30T00:00:00Z", "until": "2026-06-01T00:00:00Z"}})
            .to_string();
    let (status, body) = call(
        &app,
        "PATCH",
        "/api/v1/teams/sued/members/xaver.bauer",
        Some(&backwards),
        &[],
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("absence.until")),
        "{body}"
    );
    let (_, audit) = call(&app, "GET", "/api/v1/audit?action=team.member", None, &[]).await;
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(1),
        "{audit}"
    );

    let post = |lead: serde_json::Value| {
        let app = app.clone();
        async move { call(&app, "POST", "/api/v1/leads", Some(&lead.to_string()), &[]).await }
    };
    let munich = json!({"external_id": "M-1", "company": "Bäckerei Groß", "country": "DE", "postal_code": "80331",
        "industry": "lebensmittel", "products": ["C"], "title": "Geschäftsführerin", "employees": 40, "quote_requested": true});
    let hamburg = json!({"external_id": "H-1", "company": "Werft Nord", "country": "DE", "postal_code": "20095",
        "industry": "maschinenbau", "products": ["A"], "title": "Geschäftsführer", "employees": 300, "quote_requested": true});
    let (status, m) = post(munich).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let (_, h) = post(hamburg).await;
    let (m, h) = (
        m["id"].as_str().unwrap().to_string(),
        h["id"].as_str().unwrap().to_string(),
    );
    // Routed as the workflow's `route` step does it (the shipped workflow scores with a
    // plugin first, which this in-process engine has not loaded).
    let territories = territories();
    for (lead, team) in [(&m, "sued"), (&h, "nord-maschinenbau")] {
        let input = json!({"id": lead});
        store
            .leads()
            .route(&RouteRequest {
                key: lead,
                lead: &input,
                team: &territories.teams[team],
                routing: None,
                score: Some(&json!({"score": 90, "grade": "A"})),
                account_owner: None,
                reassign: false,
                run_id: "run-x",
                now: f.clock.now(),
            })
            .await
            .unwrap();
    }
    let (_, lead) = call(&app, "GET", &format!("/api/v1/leads/{m}"), None, &[]).await;
    assert_eq!(
        (lead["team"].as_str(), lead["owner"].as_str()),
        (Some("sued"), Some("xaver.bauer")),
        "{lead}"
    );
    let skipped = &lead["routing"]["assignment"]["candidates"];
    assert!(
        skipped
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["user"] == "lena.maier" && c["skipped"] == "absent"),
        "{skipped}"
    );

    // Lena (team sued) sees the Munich lead, not the Hamburg one; Anna the other way round.
    let (status, _) = call_as(
        &app,
        "kt_u-lena",
        "GET",
        &format!("/api/v1/leads/{m}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call_as(
        &app,
        "kt_u-lena",
        "GET",
        &format!("/api/v1/leads/{h}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = call_as(&app, "kt_u-anna", "GET", "/api/v1/leads", None, &[]).await;
    let ids: Vec<&str> = list["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [h.as_str()]);
    let accept = json!({"opportunity_id": "OPP-1"}).to_string();
    let (status, _) = call_as(
        &app,
        "kt_u-anna",
        "POST",
        &format!("/api/v1/leads/{m}/accept"),
        Some(&accept),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call_as(
        &app,
        "kt_u-anna",
        "POST",
        &format!("/api/v1/leads/{h}/accept"),
        Some(&accept),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, teams) = call(&app, "GET", "/api/v1/teams", None, &[]).await;
    let nord = teams["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "nord-maschinenbau")
        .unwrap();
    assert_eq!(nord["members"][0]["assigned"], 1, "{nord}");
    assert_eq!(nord["members"][0]["open"], 0, "accepted: no longer open");
}
