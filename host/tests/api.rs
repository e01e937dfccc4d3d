//! Router tests: the axum router driven with `tower::ServiceExt::oneshot`, on a real
//! SQLite file and the shipped workflows.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::router::{TOKEN, app, call, get_open, serve};
use http_body_util::BodyExt;
use kontor::api::hash_token;
use kontor::clock::Clock;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn every_api_route_needs_a_valid_token() {
    let (app, _f) = app().await;
    for (method, uri) in [
        ("GET", "/api/v1/workflows"),
        ("GET", "/api/v1/runs"),
        ("POST", "/api/v1/events"),
    ] {
        for auth in [None, Some("Bearer wrong"), Some("Basic abc")] {
            let mut request = Request::builder().method(method).uri(uri);
            if let Some(a) = auth {
                request = request.header("authorization", a);
            }
            let response = app
                .clone()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {auth:?}"
            );
        }
    }
    assert_eq!(get_open(&app, "/healthz").await.0, StatusCode::OK);
}

async fn starts_a_run_and_shows_its_step_history() {
    let (app, f) = app().await;
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/workflows/recall-campaign/runs",
        Some(r#"{"input": {"campaign": "R-1", "series": "S-9", "customers": [{"id": "K-1", "name": "Groß", "email": "a@b.de"}]}}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    f.settle().await;
    let (status, run) = call(&app, "GET", &format!("/api/v1/runs/{id}"), None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["status"], "waiting");
    assert_eq!(run["children"]["total"], 1);
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"], "contact_all");
    assert_eq!(
        steps[0]["output"],
        json!({"workflow": "recall-contact", "started": 1})
    );
    assert_eq!(steps[0]["attempt"], 1);
    let (_, children) = call(&app, "GET", &format!("/api/v1/runs?parent={id}"), None, &[]).await;
    assert_eq!(children["runs"][0]["input"]["customer"]["name"], "Groß");
}

async fn call_raw(app: &Router, uri: &str, body: &str, key: &str) -> (StatusCode, Vec<u8>) {
    let request = Request::post(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    (
        status,
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

async fn idempotency_key_replays_the_first_answer_byte_for_byte() {
    let (app, _f) = app().await;
    let uri = "/api/v1/workflows/recall-campaign/runs";
    let body = r#"{"input": {"campaign": "R-1", "series": "S-9", "customers": []}}"#;
    let first = call_raw(&app, uri, body, "abc-123").await;
    let second = call_raw(&app, uri, body, "abc-123").await;
    assert_eq!(first.0, StatusCode::CREATED);
    assert_eq!(first, second, "same status, same bytes");

    let other = r#"{"input": {"campaign": "R-2", "series": "S-9", "customers": []}}"#;
    let (status, bytes) = call_raw(&app, uri, other, "abc-123").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(error["error"]["field"], "Idempotency-Key");

    // 50 concurrent identical requests start one run and all get the same answer.
    let answers = futures_join(&app, uri, body, "concurrent-1", 50).await;
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "all answers identical"
    );
    let (_, list) = call(
        &app,
        "GET",
        "/api/v1/runs?workflow=recall-campaign",
        None,
        &[],
    )
    .await;
    assert_eq!(
        list["runs"].as_array().unwrap().len(),
        2,
        "abc-123 and concurrent-1 once each"
    );
}

async fn futures_join(
    app: &Router,
    uri: &str,
    body: &str,
    key: &str,
    n: usize,
) -> Vec<(StatusCode, Vec<u8>)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (app, uri, body, key) = (
                app.clone(),
                uri.to_string(),
                body.to_string(),
                key.to_string(),
            );
            tokio::spawn(async move { call_raw(&app, &uri, &body, &key).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

async fn bad_requests_name_the_problem() {
    let (app, _f) = app().await;
    let (status, body) = call(&app, "POST", "/api/v1/workflows/nope/runs", Some("{}"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["message"], "there is no workflow `nope`");

    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/workflows/recall-campaign/runs",
        Some(r#"{"input": {"campaign": 5}}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "input");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input/campaign"),
        "{body}"
    );

    let (status, body) = call(&app, "POST", "/api/v1/events", Some(r#"{"key": "x"}"#), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "type", "{body}");

    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/events",
        Some(r#"{"type": "a", "colour": 1}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "colour", "{body}");

    let (status, _) = call(&app, "POST", "/api/v1/events", Some("{not json"), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, body) = call(&app, "GET", "/api/v1/runs?status=sleeping", None, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "status");

    let (status, _) = call(&app, "GET", "/api/v1/runs/0000", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A malformed query string is the API's JSON error naming the parameter, not
    // axum's plain-text 400.
    let (status, body) = call(&app, "GET", "/api/v1/runs?limit=viele", None, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "limit", "{body}");

    // The server's own secrets are outside the secrets API.
    let (status, body) = call(
        &app,
        "PUT",
        "/api/v1/secrets/kontor.email.unsubscribe-keys",
        Some(r#"{"value": "[]"}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "name", "{body}");
    let (status, _) = call(
        &app,
        "DELETE",
        "/api/v1/secrets/kontor.email.unsubscribe-keys",
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let huge = format!(
        r#"{{"type": "a", "payload": "{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (status, _) = call(&app, "POST", "/api/v1/events", Some(&huge), &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

async fn lists_runs_page_by_page() {
    let (app, _f) = app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let body =
            format!(r#"{{"input": {{"campaign": "R-{i}", "series": "S", "customers": []}}}}"#);
        let (_, run) = call(
            &app,
            "POST",
            "/api/v1/workflows/recall-campaign/runs",
            Some(&body),
            &[],
        )
        .await;
        ids.push(run["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut uri = "/api/v1/runs?limit=2".to_string();
    loop {
        let (status, page) = call(&app, "GET", &uri, None, &[]).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(
            page["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/runs?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
}

async fn the_test_clock_moves_time_for_waiting_runs() {
    let (app, f) = app().await;
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/testing/clock",
        Some(r#"{"advance": "90m"}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["now"], "2026-06-08T08:30:00Z");
    assert_eq!(f.clock.now().to_rfc3339(), "2026-06-08T08:30:00+00:00");
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/testing/clock",
        Some(r#"{"advance": "soon"}"#),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "advance");
}

async fn workflows_list_shows_validation_state() {
    let (app, _f) = app().await;
    let (status, body) = call(&app, "GET", "/api/v1/workflows", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "lead-routing",
            "recall-campaign",
            "recall-contact",
            "recall-from-erp",
            "ticket-escalation"
        ]
    );
    assert!(
        body["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["valid"] == true)
    );
    assert_eq!(body["workflows"][0]["trigger"], "event lead.created");
    assert_eq!(body["valid"], 5);
    assert_eq!(body["invalid"], 0);
    assert_eq!(body["next_cursor"], Value::Null, "one page holds them all");

    // Page by page, in name order, each page only as long as asked.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/workflows?limit=2".to_string();
    loop {
        let (status, page) = call(&app, "GET", &uri, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let names = page["workflows"].as_array().unwrap();
        assert!(names.len() <= 2);
        seen.extend(
            names
                .iter()
                .map(|w| w["name"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/workflows?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, names);
    for bad in ["limit=0", "limit=1001", "limit=many"] {
        let (status, body) =
            call(&app, "GET", &format!("/api/v1/workflows?{bad}"), None, &[]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["field"], "limit", "{bad}: {body}");
    }
}

const FLAKY: &str = r#"
name: flaky
steps:
  - id: check
    branch:
      cases:
        - when: now < timestamp('2026-06-09T00:00:00Z')
          goto: broken
  - id: fine
    end:
      output: { ok: true }
  - id: broken
    fail:
      message: the ERP is down until tomorrow
"#;

async fn app_with(workflows: &[(&str, &str)]) -> (Router, common::Fixture) {
    let f = common::fixture("2026-06-08T07:00:00Z", workflows).await;
    let dir = f.dir.path().join("workflows");
    serve(f, dir).await
}

async fn a_failed_run_is_retried_from_its_failed_step() {
    let (app, f) = app_with(&[("flaky", FLAKY)]).await;
    let (_, body) = call(
        &app,
        "POST",
        "/api/v1/workflows/flaky/runs",
        Some("{}"),
        &[],
    )
    .await;
    let id = body["id"].as_str().unwrap().to_string();
    f.settle().await;
    assert_eq!(f.run(&id).await.status, kontor::run::RunStatus::Failed);
    let (status, _) = call(&app, "POST", "/api/v1/runs/nope/retry", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Retrying re-runs the failed step (`broken`), which fails again today...
    let (status, body) = call(&app, "POST", &format!("/api/v1/runs/{id}/retry"), None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["retrying_step"], "broken");
    f.settle().await;
    assert_eq!(f.run(&id).await.status, kontor::run::RunStatus::Failed);
    let history = f.steps(&id).await;
    assert_eq!(
        history,
        ["check:completed", "broken:failed", "broken:failed"]
    );

    // ...and a completed run cannot be retried.
    f.clock.set(common::at("2026-06-09T08:00:00Z"));
    let (_, later) = call(
        &app,
        "POST",
        "/api/v1/workflows/flaky/runs",
        Some("{}"),
        &[],
    )
    .await;
    f.settle().await;
    let later = later["id"].as_str().unwrap();
    assert_eq!(f.run(later).await.status, kontor::run::RunStatus::Completed);
    let (status, body) = call(
        &app,
        "POST",
        &format!("/api/v1/runs/{later}/retry"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

async fn cancelling_a_campaign_cancels_its_children() {
    let (app, f) = app().await;
    let (_, body) = call(
        &app,
        "POST",
        "/api/v1/workflows/recall-campaign/runs",
        Some(r#"{"input": {"campaign": "R-1", "series": "S", "customers": [{"id": "1", "name": "A", "email": "a@x.de"}, {"id": "2", "name": "B", "email": "b@x.de"}]}}"#),
        &[],
    )
    .await;
    let id = body["id"].as_str().unwrap().to_string();
    f.settle().await;
    let (status, body) = call(
        &app,
        "POST",
        &format!("/api/v1/runs/{id}/cancel"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cancelled_runs"].as_array().unwrap().len(), 3);
    assert_eq!(
        f.engine.store().jobs().pending().await.unwrap(),
        0,
        "no timeouts left"
    );
    let (status, _) = call(
        &app,
        "POST",
        &format!("/api/v1/runs/{id}/cancel"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A late response changes nothing.
    f.event("recall.response", "R-1/1", json!({})).await;
    assert_eq!(f.run(&id).await.status, kontor::run::RunStatus::Cancelled);
}

async fn reload_picks_up_changed_workflows_for_new_runs_only() {
    let v1 = "name: w\nsteps:\n  - id: pause\n    wait:\n      duration: 1h\n  - id: done\n    end:\n      output: { v: 1 }\n";
    let (app, f) = app_with(&[("w", v1)]).await;
    let (_, old) = call(&app, "POST", "/api/v1/workflows/w/runs", Some("{}"), &[]).await;
    f.settle().await;
    std::fs::write(
        f.dir.path().join("workflows/w.yaml"),
        "name: w\nsteps:\n  - id: done\n    end:\n      output: { v: 2 }\n",
    )
    .unwrap();
    std::fs::write(
        f.dir.path().join("workflows/broken.yaml"),
        "name: broken\nsteps: 5\n",
    )
    .unwrap();
    let (status, body) = call(&app, "POST", "/api/v1/workflows/reload", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let broken = body["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "broken")
        .unwrap()
        .clone();
    assert_eq!(broken["valid"], false);
    let (_, new) = call(&app, "POST", "/api/v1/workflows/w/runs", Some("{}"), &[]).await;
    f.advance(chrono::Duration::hours(1)).await;
    assert_eq!(
        f.run(old["id"].as_str().unwrap()).await.output,
        Some(json!({"v": 1}))
    );
    assert_eq!(
        f.run(new["id"].as_str().unwrap()).await.output,
        Some(json!({"v": 2}))
    );
}

async fn readiness_and_metrics_for_operators() {
    let (app, f) = app().await;
    let (_, _) = call(
        &app,
        "POST",
        "/api/v1/workflows/recall-campaign/runs",
        Some(r#"{"input": {"campaign": "R", "series": "S", "customers": []}}"#),
        &[],
    )
    .await;
    f.settle().await;
    assert_eq!(get_open(&app, "/readyz").await.0, StatusCode::OK);
    // `http.metrics = "loopback"`: open to this machine, a token for everyone else.
    let metrics_from = |peer: &str, token: Option<&str>| {
        let mut request = Request::get("/metrics");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let mut request = request.body(Body::empty()).unwrap();
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap().status() }
    };
    assert_eq!(metrics_from("127.0.0.1:5000", None).await, StatusCode::OK);
    assert_eq!(metrics_from("[::1]:5000", None).await, StatusCode::OK);
    assert_eq!(
        metrics_from("[::ffff:127.0.0.1]:5000", None).await,
        StatusCode::OK
    );
    assert_eq!(
        metrics_from("192.0.2.7:5000", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        metrics_from("192.0.2.7:5000", Some("wrong")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        metrics_from("192.0.2.7:5000", Some(TOKEN)).await,
        StatusCode::OK
    );
    assert_eq!(
        get_open(&app, "/metrics").await.0,
        StatusCode::UNAUTHORIZED,
        "no peer address known: not loopback"
    );
    let (status, text) = {
        let response = app
            .clone()
            .oneshot(
                Request::get("/metrics")
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    };
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("kontor_runs_started_total{workflow=\"recall-campaign\"}"),
        "{text}"
    );
    assert!(
        text.contains(
            "kontor_runs_finished_total{workflow=\"recall-campaign\",status=\"completed\"}"
        ),
        "{text}"
    );
    assert!(text.contains("kontor_queue_depth"), "{text}");
    assert!(
        text.contains("kontor_step_duration_seconds_bucket{action=\"start\""),
        "{text}"
    );
    assert!(
        text.contains("kontor_job_duration_seconds_bucket"),
        "{text}"
    );
}

/// Who asks, in the authorization matrix.
#[derive(Debug)]
enum Asker {
    Role(kontor::access::Role),
    /// A token of this role narrowed to these permissions.
    Narrowed(kontor::access::Role, Vec<kontor::access::Permission>),
    /// A token whose role this server does not know (written by a newer version).
    UnknownRole,
    /// No token, or one that was never issued.
    Nobody,
    /// A token that expired or was revoked, or whose user was deactivated.
    Refused,
    /// A token of a role its user no longer has.
    LostRole,
}

/// The authorization matrix: every route of the table, asked by a token of every role,
/// by narrowed, expired and revoked tokens, by a role this server does not know, without
/// a token and with an unknown one, by users' tokens (active, deactivated, of a role the
/// user lost), answers as the permission table says — 404 for a run of a domain the role
/// does not own — and every permission of the table guards at least one route, so a rule
/// cannot go unexercised.
async fn every_route_answers_every_principal_as_the_permission_table_says() {
    use kontor::access::{GRANTS, Permission, Role, allows, sees};
    use kontor::api::{Access, route_table};
    use kontor::store::Actor;
    use kontor::store::tokens::NewToken;
    use kontor::store::users::UserFields;
    let (app, f) = app().await;
    let now = f.clock.now();
    let store = f.engine.store().clone();
    let cli = Actor::cli();
    let mut people = Vec::new();
    for (id, email, roles) in [
        ("u-sales", "sandra.vogel@kaelte-nord.de", "sales"),
        ("u-gone", "jörg.schön@kaelte-nord.de", "sales"),
        ("u-moved", "ines.groß@kaelte-nord.de", "sales"),
    ] {
        let fields = UserFields {
            name: Some(email.into()),
            email: Some(email.into()),
            roles: Some(vec![roles.into()]),
            team: Some(Some("Nord".into())),
            ..UserFields::default()
        };
        store
            .users()
            .create(id, &fields, &cli, now)
            .await
            .unwrap()
            .unwrap();
        people.push(id);
    }
    let mut askers: Vec<(String, Asker)> = Vec::new();
    let mut issue = async |name: String, token: NewToken<'_>, asker: Asker| {
        store
            .tokens()
            .create(&name, &hash_token(&name), &token, &cli, now)
            .await
            .unwrap();
        askers.push((name, asker));
    };
    for role in Role::ALL {
        let token = NewToken {
            role: role.as_str(),
            ..NewToken::default()
        };
        issue(format!("kt_matrix_{role}"), token, Asker::Role(role)).await;
    }
    let ci = ["events:write".to_string(), "runs:read".to_string()];
    let narrowed = NewToken {
        role: "integrator",
        scopes: Some(&ci),
        ..NewToken::default()
    };
    let scopes = vec![Permission::EventsDeliver, Permission::RunsRead];
    issue(
        "kt_matrix_ci".into(),
        narrowed,
        Asker::Narrowed(Role::Integrator, scopes),
    )
    .await;
    let stranger = NewToken {
        role: "auditor",
        ..NewToken::default()
    };
    issue("kt_matrix_newer".into(), stranger, Asker::UnknownRole).await;
    let expired = NewToken {
        role: "admin",
        expires_at: Some(now - chrono::Duration::seconds(1)),
        ..NewToken::default()
    };
    issue("kt_matrix_expired".into(), expired, Asker::Refused).await;
    let admin = NewToken {
        role: "admin",
        ..NewToken::default()
    };
    issue("kt_matrix_revoked".into(), admin, Asker::Refused).await;
    for (user, asker) in [
        ("u-sales", Asker::Role(Role::Sales)),
        ("u-gone", Asker::Refused),
        ("u-moved", Asker::LostRole),
    ] {
        let token = NewToken {
            role: "sales",
            user_id: Some(user),
            ..NewToken::default()
        };
        issue(format!("kt_matrix_{user}"), token, asker).await;
    }
    assert!(
        store
            .tokens()
            .revoke("kt_matrix_revoked", &cli, now)
            .await
            .unwrap()
    );
    let change = |fields: UserFields, id: &str| {
        let store = store.clone();
        let cli = cli.clone();
        let id = id.to_string();
        async move {
            store
                .users()
                .update(&id, &fields, &cli, now)
                .await
                .unwrap()
                .unwrap()
                .unwrap()
        }
    };
    let gone = UserFields {
        active: Some(false),
        ..UserFields::default()
    };
    assert!(!change(gone, "u-gone").await.active);
    let moved = UserFields {
        roles: Some(vec!["viewer".into()]),
        ..UserFields::default()
    };
    change(moved, "u-moved").await;
    assert_eq!(people.len(), 3);
    askers.push((String::new(), Asker::Nobody));
    askers.push(("kt_not_a_token".to_string(), Asker::Nobody));

    // Run routes ask about a real run of a tickets workflow: roles that do not own the
    // domain get a 404, as for a run that does not exist.
    let ticket = f
        .engine
        .start_run(
            "ticket-escalation",
            json!({"id": "T-1", "customer_id": "K-1", "priority": "hoch", "subject": "Kühlung"}),
        )
        .await
        .unwrap()
        .run_id;
    let scoped = |path: &str| {
        path.starts_with("/api/v1/runs/{id}") || path == "/api/v1/workflows/{name}/runs"
    };
    let mut cases = 0;
    let mut hidden = 0;
    let mut exercised = std::collections::BTreeSet::new();
    for route in route_table(true) {
        let uri = route
            .path
            .replace("{name}", "ticket-escalation")
            .replace("{id}", if scoped(route.path) { &ticket } else { "x" })
            .replace("{collection}", "c")
            .replace("{source}", "shop")
            .replace("{token}", "not-a-token");
        for (token, asker) in &askers {
            let mut request = Request::builder()
                .method(route.method.clone())
                .uri(&uri)
                .header("content-type", "application/json");
            if !token.is_empty() {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let response = app
                .clone()
                .oneshot(request.body(Body::from("{}")).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let case = format!(
                "{} {} as {asker:?}: {status} {body}",
                route.method, route.path
            );
            let granted = |status: StatusCode| {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{case}"
                )
            };
            let forbidden = |status: StatusCode, needs: &str| {
                assert_eq!(status, StatusCode::FORBIDDEN, "{case}");
                assert_eq!(body["error"]["code"], "forbidden", "{case}");
                assert!(
                    body["error"]["message"].as_str().unwrap().contains(needs),
                    "{case}"
                );
            };
            let needed = match route.access {
                Access::Probe | Access::Public => {
                    granted(status);
                    None
                }
                // No peer address in-process: not loopback, so any valid token is needed.
                Access::Metrics => Some(None),
                // A bearer token is no signature, whoever holds it.
                Access::Signed => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
                    assert!(
                        body["error"]["message"]
                            .as_str()
                            .unwrap()
                            .contains("Kontor-Signature"),
                        "{case}"
                    );
                    None
                }
                Access::Needs(permission) => Some(Some(permission)),
            };
            match (needed, asker) {
                (None, _) => {}
                (Some(_), Asker::Nobody) => assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}"),
                (Some(_), Asker::Refused) => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
                    let message = body["error"]["message"].as_str().unwrap();
                    assert!(
                        message.contains("expired at")
                            || message.contains("revoked at")
                            || message.contains("deactivated at"),
                        "{case}"
                    );
                }
                (Some(_), Asker::UnknownRole) => forbidden(status, "`auditor`"),
                (Some(_), Asker::LostRole) => forbidden(status, "no longer has the sales role"),
                (Some(None), _) => assert_eq!(status, StatusCode::OK, "{case}"),
                (Some(Some(permission)), Asker::Role(role)) => {
                    exercised.insert(permission);
                    let domain = Some(kontor::access::Domain::Tickets);
                    if allows(*role, permission) && scoped(route.path) && !sees(*role, domain) {
                        hidden += 1;
                        assert_eq!(status, StatusCode::NOT_FOUND, "{case}");
                        assert!(
                            body["error"]["message"]
                                .as_str()
                                .unwrap()
                                .starts_with("there is no"),
                            "{case}"
                        );
                    } else if allows(*role, permission) {
                        granted(status)
                    } else {
                        forbidden(status, permission.as_str())
                    }
                }
                (Some(Some(permission)), Asker::Narrowed(role, scopes)) => {
                    if allows(*role, permission) && scopes.contains(&permission) {
                        granted(status)
                    } else {
                        forbidden(status, permission.as_str())
                    }
                }
            }
            cases += 1;
        }
    }
    let table: std::collections::BTreeSet<_> = GRANTS.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        exercised, table,
        "every permission guards a route the matrix asks"
    );
    assert_eq!(cases, route_table(true).len() * askers.len());
    assert!(cases >= 35 * 15, "{cases} cases");
    // Marketing asks for a tickets run, cancels and retries it, and starts its workflow.
    assert_eq!(hidden, 4, "cases of another domain's run");
}

async fn events_that_do_not_fit_are_refused_and_a_delivery_id_counts_once() {
    let (app, _f) = app().await;
    // A postal code longer than the schema allows: told, not dropped.
    let lead = json!({"type": "lead.created", "key": "L-1", "payload": {"id": "L-1",
        "email": "anna@beispiel.at", "company": "Kälte Wien GmbH", "country": "AT",
        "postal_code": "1010 Wien, Innere Stadt", "industry": "food", "product": "cold-room"}})
    .to_string();
    let (status, body) = call(&app, "POST", "/api/v1/events", Some(&lead), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "payload", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`lead-routing`"), "{message}");
    assert!(message.contains("payload/postal_code"), "{message}");
    assert!(message.contains("nothing was stored"), "{message}");
    let (_, runs) = call(&app, "GET", "/api/v1/runs", None, &[]).await;
    assert_eq!(runs["runs"], json!([]), "no run was started");

    let event =
        json!({"type": "order.shipped", "key": "4711", "id": "shop-delivery-1"}).to_string();
    let (status, first) = call(&app, "POST", "/api/v1/events", Some(&event), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["duplicate"], false);
    let (status, again) = call(&app, "POST", "/api/v1/events", Some(&event), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first["event_id"]);
    let other =
        json!({"type": "order.shipped", "key": "4711", "id": "shop-delivery-2"}).to_string();
    let (_, second) = call(&app, "POST", "/api/v1/events", Some(&other), &[]).await;
    assert_eq!(second["duplicate"], false);
    assert_ne!(second["event_id"], first["event_id"]);
    for id in [String::new(), "x".repeat(201)] {
        let body = json!({"type": "order.shipped", "id": id}).to_string();
        let (status, answer) = call(&app, "POST", "/api/v1/events", Some(&body), &[]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["field"], "id", "{answer}");
    }
}

/// Deliveries arriving together share a group commit: each is answered as if alone — a
/// repeated id once among them, however they were grouped, and a bad one refused alone.
async fn concurrent_deliveries_are_answered_each_as_if_alone() {
    let (app, _f) = app().await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let body = match i % 6 {
                // Ten deliveries of one id, among fifty of distinct ids.
                0 => json!({"type": "order.shipped", "key": "K-1", "id": "same-delivery"}),
                5 if i == 5 => json!({"type": "", "key": "K-1"}),
                _ => json!({"type": "order.shipped", "key": format!("K-{i}"), "id": format!("d-{i}")}),
            };
            call(&app, "POST", "/api/v1/events", Some(&body.to_string()), &[]).await
        }));
    }
    let mut event_ids = std::collections::BTreeSet::new();
    let mut firsts = 0;
    let mut refused = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::ACCEPTED => {
                event_ids.insert(body["event_id"].as_i64().unwrap());
                if i % 6 == 0 && body["duplicate"] == false {
                    firsts += 1;
                }
            }
            StatusCode::UNPROCESSABLE_ENTITY => refused += 1,
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(refused, 1, "the empty type, alone");
    assert_eq!(firsts, 1, "one of the ten deliveries of one id counts");
    assert_eq!(
        event_ids.len(),
        50,
        "49 distinct ids and the repeated one once"
    );
}

/// A delivery repeated after a reload starts nothing — and stores nothing, not even the new
/// version of the workflow it would have started, so the next start of that version must
/// store it (once this was taken as stored, and the start failed with a 500).
async fn a_repeated_delivery_after_a_reload_leaves_the_next_start_working() {
    let v1 = "name: w\ntrigger:\n  event: order.shipped\nsteps:\n  - id: done\n    end:\n      output: { v: 1 }\n";
    let (app, f) = app_with(&[("w", v1)]).await;
    let shipped = json!({"type": "order.shipped", "key": "4711", "id": "shop-1"}).to_string();
    let (status, first) = call(&app, "POST", "/api/v1/events", Some(&shipped), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let v2 = v1.replace("v: 1", "v: 2");
    std::fs::write(f.dir.path().join("workflows/w.yaml"), v2).unwrap();
    let (status, _) = call(&app, "POST", "/api/v1/workflows/reload", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, again) = call(&app, "POST", "/api/v1/events", Some(&shipped), &[]).await;
    assert_eq!(again["duplicate"], true, "{again}");
    let (status, started) = call(&app, "POST", "/api/v1/workflows/w/runs", Some("{}"), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    f.settle().await;
    let (_, run) = call(
        &app,
        "GET",
        &format!("/api/v1/runs/{}", started["id"].as_str().unwrap()),
        None,
        &[],
    )
    .await;
    assert_eq!(run["output"], json!({"v": 2}), "{run}");
}

async fn the_openapi_document_covers_exactly_the_routes() {
    let (app, _f) = app().await;
    let (status, text) = get_open(&app, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "served without a token");
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let mut routed: Vec<String> = kontor::api::route_table(true)
        .iter()
        .map(|route| format!("{} {}", route.method, route.path))
        .collect();
    routed.sort();
    assert_eq!(routed, documented);

    // Every documented route answers (none is a 404 or 405 of the router).
    for entry in &routed {
        let (method, path) = entry.split_once(' ').unwrap();
        let uri = path
            .replace("{name}", "recall-campaign")
            .replace("{id}", "x")
            .replace("{collection}", "c");
        let (status, _) = call(&app, method, &uri, Some("{}"), &[]).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{entry}");
        assert!(
            status != StatusCode::NOT_FOUND || path.contains('{'),
            "{entry}: {status}"
        );
    }

    let (status, page) = get_open(&app, "/api/v1/docs/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("swagger-ui"),
        "the docs page is served from the binary"
    );
    assert!(
        !page.contains("cdn.") && !page.contains("unpkg"),
        "no CDN: the page works offline"
    );
}

async fn lists_runs_by_creation_time() {
    let (app, f) = app().await;
    let body = r#"{"input": {"campaign": "R", "series": "S", "customers": []}}"#;
    call(
        &app,
        "POST",
        "/api/v1/workflows/recall-campaign/runs",
        Some(body),
        &[],
    )
    .await;
    f.clock.advance(chrono::Duration::hours(1));
    let (_, late) = call(
        &app,
        "POST",
        "/api/v1/workflows/recall-campaign/runs",
        Some(body),
        &[],
    )
    .await;
    let (_, page) = call(
        &app,
        "GET",
        "/api/v1/runs?created_after=2026-06-08T07:30:00Z",
        None,
        &[],
    )
    .await;
    let runs = page["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], late["id"]);
    let (_, page) = call(
        &app,
        "GET",
        "/api/v1/runs?created_before=2026-06-08T07:30:00Z",
        None,
        &[],
    )
    .await;
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    let (status, body) = call(
        &app,
        "GET",
        "/api/v1/runs?created_after=yesterday",
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "created_after");
}

kontor::on_both_backends!(
    every_api_route_needs_a_valid_token,
    starts_a_run_and_shows_its_step_history,
    idempotency_key_replays_the_first_answer_byte_for_byte,
    bad_requests_name_the_problem,
    lists_runs_page_by_page,
    the_test_clock_moves_time_for_waiting_runs,
    workflows_list_shows_validation_state,
    a_failed_run_is_retried_from_its_failed_step,
    cancelling_a_campaign_cancels_its_children,
    reload_picks_up_changed_workflows_for_new_runs_only,
    readiness_and_metrics_for_operators,
    the_openapi_document_covers_exactly_the_routes,
    every_route_answers_every_principal_as_the_permission_table_says,
    events_that_do_not_fit_are_refused_and_a_delivery_id_counts_once,
    lists_runs_by_creation_time,
    concurrent_deliveries_are_answered_each_as_if_alone,
    a_repeated_delivery_after_a_reload_leaves_the_next_start_working,
);
