//! People, the audit log and signed webhooks through the router, on both backends: users
//! made and deactivated by an admin and what their tokens may then do; every change in
//! the audit log (and a refused change not); webhook signatures computed by Python's
//! `hmac`, an implementation independent of Kontor's.

mod common;

use axum::http::StatusCode;
use common::router::{SHOP_SECRET, app, call, call_as};
use kontor::api::hash_token;
use kontor::clock::Clock;
use serde_json::{Value, json};

async fn users_are_managed_by_admins_and_their_tokens_follow_them() {
    let (app, f) = app().await;
    let jurgen = json!({"name": "Jürgen Groß", "email": "Juergen.Gross@Kälte-Nord.de",
        "roles": ["sales"], "team": "Nord", "rep": "R-17"})
    .to_string();
    let (status, user) = call(&app, "POST", "/api/v1/users", Some(&jurgen), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["email"], "juergen.gross@kälte-nord.de");
    assert_eq!(user["roles"], json!(["sales"]));
    assert_eq!(user["active"], true);
    let id = user["id"].as_str().unwrap().to_string();

    // Refused changes name the field or the conflict, and leave no trace in the log.
    let (status, body) = call(&app, "POST", "/api/v1/users", Some(&jurgen), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("juergen.gross@kälte-nord.de"),
        "{body}"
    );
    let same_rep =
        json!({"name": "Anna", "email": "anna@kaelte-nord.de", "roles": ["sales"], "rep": "R-17"});
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/users",
        Some(&same_rep.to_string()),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rep id `R-17`"),
        "{body}"
    );
    for (body, field) in [
        (
            json!({"name": "Anna", "email": "anna@kaelte-nord.de", "roles": []}),
            "roles",
        ),
        (
            json!({"name": "Anna", "email": "anna@kaelte-nord.de", "roles": ["root"]}),
            "roles",
        ),
        (
            json!({"name": "Anna", "email": "anna(at)kaelte-nord.de", "roles": ["sales"]}),
            "email",
        ),
        (
            json!({"name": " ", "email": "anna@kaelte-nord.de", "roles": ["sales"]}),
            "name",
        ),
        (
            json!({"name": "Anna", "email": "anna@kaelte-nord.de", "roles": ["sales"], "colour": "blue"}),
            "colour",
        ),
        (
            json!({"email": "anna@kaelte-nord.de", "roles": ["sales"]}),
            "name",
        ),
    ] {
        let (status, answer) =
            call(&app, "POST", "/api/v1/users", Some(&body.to_string()), &[]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let (_, log) = call(&app, "GET", "/api/v1/audit?action=user.create", None, &[]).await;
    assert_eq!(log["entries"].as_array().unwrap().len(), 1, "{log}");
    let entry = &log["entries"][0];
    assert_eq!(entry["actor"], "token:t1");
    assert_eq!(entry["role"], "admin");
    assert_eq!(entry["target"], id.as_str());
    assert_eq!(entry["detail"]["roles"], json!(["sales"]));

    let (status, found) = call(
        &app,
        "GET",
        "/api/v1/users/JUERGEN.GROSS@kälte-nord.de",
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["id"], id.as_str());
    let (_, all) = call(&app, "GET", "/api/v1/users", None, &[]).await;
    assert_eq!(all["users"].as_array().unwrap().len(), 1);

    // Jürgen's token: a sales token while he is active and has the role.
    let token = "kt_user_jurgen";
    let cli = kontor::store::Actor::cli();
    f.engine
        .store()
        .tokens()
        .create(
            "tok-jurgen",
            &hash_token(token),
            &kontor::store::tokens::NewToken {
                role: "sales",
                user_id: Some(&id),
                ..Default::default()
            },
            &cli,
            f.clock.now(),
        )
        .await
        .unwrap();
    let overview = "/api/v1/customers/K-10001/overview";
    let (status, _) = call_as(&app, token, "GET", overview, None, &[]).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "allowed: no ERP is configured here"
    );
    let (status, _) = call_as(&app, token, "GET", "/api/v1/runs", None, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let user_uri = format!("/api/v1/users/{id}");
    let off = json!({"active": false}).to_string();
    let (status, changed) = call(&app, "PATCH", &user_uri, Some(&off), &[]).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["active"], false);
    let (status, body) = call_as(&app, token, "GET", overview, None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message
            .contains("juergen.gross@kälte-nord.de, who was deactivated at 2026-06-08T07:00:00Z"),
        "{message}"
    );
    let on = json!({"active": true, "team": null}).to_string();
    let (_, changed) = call(&app, "PATCH", &user_uri, Some(&on), &[]).await;
    assert_eq!(changed["active"], true);
    assert_eq!(changed["team"], Value::Null);
    assert_eq!(changed["rep"], "R-17", "a field not sent is kept");
    let (status, _) = call_as(&app, token, "GET", overview, None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "active again");
    let (status, body) = call(&app, "PATCH", &user_uri, Some(r#"{"roles": []}"#), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "roles");
    let (status, _) = call(&app, "PATCH", "/api/v1/users/nobody", Some("{}"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The log: newest first, each change with what it changed, page by page.
    let (_, log) = call(
        &app,
        "GET",
        &format!("/api/v1/audit?target={id}"),
        None,
        &[],
    )
    .await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["user.change", "user.change", "user.create"],
        "{log}"
    );
    assert_eq!(
        log["entries"][0]["detail"]["active"],
        json!({"from": false, "to": true})
    );
    assert_eq!(
        log["entries"][0]["detail"]["team"],
        json!({"from": "Nord", "to": null})
    );
    assert_eq!(
        log["entries"][1]["detail"]["active"],
        json!({"from": true, "to": false})
    );
    let (_, page) = call(
        &app,
        "GET",
        &format!("/api/v1/audit?target={id}&limit=2"),
        None,
        &[],
    )
    .await;
    let cursor = page["next_cursor"].as_i64().unwrap();
    let (_, rest) = call(
        &app,
        "GET",
        &format!("/api/v1/audit?target={id}&limit=2&cursor={cursor}"),
        None,
        &[],
    )
    .await;
    assert_eq!(rest["entries"][0]["action"], "user.create");
    assert_eq!(rest["next_cursor"], Value::Null);

    // Secrets by name only; reloads; tokens made on the command line.
    let value = "Pa$$wört-4711";
    let (status, _) = call(
        &app,
        "PUT",
        "/api/v1/secrets/erp-password",
        Some(&json!({"value": value}).to_string()),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&app, "POST", "/api/v1/workflows/reload", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, log) = call(&app, "GET", "/api/v1/audit?limit=1000", None, &[]).await;
    let text = log.to_string();
    assert!(!text.contains("wört"), "no secret value in the log: {text}");
    let find = |action: &str, target: &str| {
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == action && e["target"] == target)
    };
    assert!(find("secret.put", "erp-password"), "{log}");
    assert!(find("workflows.reload", "workflows"), "{log}");
    assert!(find("token.create", "tok-jurgen"), "{log}");
    let (_, by_cli) = call(
        &app,
        "GET",
        "/api/v1/audit?actor=cli&action=token.create",
        None,
        &[],
    )
    .await;
    assert_eq!(by_cli["entries"][0]["detail"]["user_id"], id.as_str());
    let (status, body) = call(&app, "GET", "/api/v1/audit?since=yesterday", None, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "since");
    let (status, _) = call(
        &app,
        "GET",
        "/api/v1/audit?until=2026-06-08T06:00:00Z",
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// The `v1` signature Python's `hmac` computes for `body` at `t` with `secret`.
fn python_signature(secret: &str, t: i64, body: &str) -> String {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import hmac, hashlib, os, sys\n\
             key = os.environ['KEY'].encode()\n\
             msg = os.environ['T'].encode() + b'.' + os.environ['BODY'].encode()\n\
             sys.stdout.write(hmac.new(key, msg, hashlib.sha256).hexdigest())",
        ])
        .env("KEY", secret)
        .env("T", t.to_string())
        .env("BODY", body)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn webhooks_are_verified_with_an_independent_hmac() {
    let (app, f) = app().await;
    let now = f.clock.now().timestamp();
    let hook = async |body: &str, signature: Option<String>| {
        let header = signature.map(|s| ("kontor-signature", s));
        let headers: Vec<(&str, &str)> = header.iter().map(|(k, v)| (*k, v.as_str())).collect();
        call_as(&app, "", "POST", "/hooks/shop", Some(body), &headers).await
    };
    let signed = |secret: &str, t: i64, body: &str| {
        format!("t={t},v1={}", python_signature(secret, t, body))
    };

    let shipped = json!({"type": "order.shipped", "key": "4711",
        "payload": {"carrier": "Spedition Müller"}})
    .to_string();
    let (status, first) = hook(&shipped, Some(signed(SHOP_SECRET, now, &shipped))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["duplicate"], false);
    let (status, again) = hook(&shipped, Some(signed(SHOP_SECRET, now, &shipped))).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the same signed request, replayed: {again}"
    );
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first["event_id"]);

    let refused = |body: &Value, says: &str| {
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{says}: {body}");
    };
    let (status, body) = hook(&shipped, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    refused(&body, "no Kontor-Signature header");
    let (status, body) = hook(&shipped, Some("sha256=abc".into())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    refused(&body, "malformed");
    let (status, body) = hook(&shipped, Some(signed("guessed", now, &shipped))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    refused(&body, "no v1 signature matches");
    let tampered = shipped.replace("4711", "4712");
    let (status, body) = hook(&tampered, Some(signed(SHOP_SECRET, now, &shipped))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    refused(&body, "no v1 signature matches");
    let (status, body) = hook(&shipped, Some(signed(SHOP_SECRET, now - 301, &shipped))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    refused(
        &body,
        "301 s away from the server's clock; the window is 300 s",
    );
    let (status, _) = hook(&shipped, Some(signed(SHOP_SECRET, now - 290, &shipped))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "inside the window");

    // Only the event types the source may deliver; events as the events API checks them.
    let ticket = json!({"type": "ticket.created", "payload": {}}).to_string();
    let (status, body) = hook(&ticket, Some(signed(SHOP_SECRET, now, &ticket))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    refused(&body, "may deliver order.shipped, lead.created");
    let lead = json!({"type": "lead.created", "id": "form-77", "payload": {"id": "L-9",
        "email": "anna@beispiel.at", "company": "Kälte Wien GmbH", "country": "AT",
        "postal_code": "1010 Wien, Innere Stadt", "industry": "food", "product": "cold-room"}})
    .to_string();
    // A postal code longer than the workflow's schema allows.
    let (status, body) = hook(&lead, Some(signed(SHOP_SECRET, now, &lead))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "payload");
    let lead = lead.replace("\"1010 Wien, Innere Stadt\"", "\"1010\"");
    let (status, body) = hook(&lead, Some(signed(SHOP_SECRET, now, &lead))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body["started_runs"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    let later = signed(SHOP_SECRET, now + 5, &lead);
    let (_, body) = hook(&lead, Some(later)).await;
    assert_eq!(
        body["duplicate"], true,
        "the sender's id counts, not the signature"
    );
    let (status, _) = call_as(&app, "", "POST", "/hooks/crm", Some(&shipped), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Rotation: the next secret joins, the sender signs with both, the old one goes.
    let next = "whsec_shop_next_2";
    let (status, _) = call(
        &app,
        "PUT",
        "/api/v1/secrets/shop-hook-next",
        Some(&json!({"value": next}).to_string()),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let order = json!({"type": "order.shipped", "key": "4713"}).to_string();
    let both = format!(
        "{},v1={}",
        signed(SHOP_SECRET, now, &order),
        python_signature(next, now, &order)
    );
    let (status, _) = hook(&order, Some(both)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = call(&app, "DELETE", "/api/v1/secrets/shop-hook", None, &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let order = json!({"type": "order.shipped", "key": "4714"}).to_string();
    let (status, _) = hook(&order, Some(signed(SHOP_SECRET, now, &order))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old secret is gone");
    let (status, _) = hook(&order, Some(signed(next, now, &order))).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let (_, metrics) = get_open_with_token(&app).await;
    for outcome in [
        "accepted",
        "duplicate",
        "missing",
        "malformed",
        "mismatch",
        "window",
        "type",
    ] {
        assert!(
            metrics.contains(&format!(
                "kontor_webhooks_total{{source=\"shop\",outcome=\"{outcome}\"}}"
            )),
            "{outcome}: {metrics}"
        );
    }
}

async fn rate_limits_answer_429_until_the_client_may_again() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let limits = kontor::config::RateLimitConfig {
        api: "2/s".into(),
        api_burst: 2,
        public: "1/min".into(),
        public_burst: 2,
    };
    let (app, f) = common::router::app_limited(&limits).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(call(&app, "GET", "/api/v1/workflows", None, &[]).await.0);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let (_, body) = call(&app, "GET", "/api/v1/workflows", None, &[]).await;
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this token"),
        "{body}"
    );
    // Another token has its own allowance; the first gets one back after half a second.
    let other = "kt_other_token";
    f.engine
        .store()
        .tokens()
        .insert("t2", &hash_token(other), "viewer", None, f.clock.now())
        .await
        .unwrap();
    assert_eq!(
        call_as(&app, other, "GET", "/api/v1/workflows", None, &[])
            .await
            .0,
        StatusCode::OK
    );
    f.clock.advance(chrono::Duration::milliseconds(500));
    assert_eq!(
        call(&app, "GET", "/api/v1/workflows", None, &[]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/api/v1/workflows", None, &[]).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Per client address on the pages without a token; probes are never limited.
    let from = |peer: &str, uri: &str| {
        let method = if uri.starts_with("/hooks/") {
            "POST"
        } else {
            "GET"
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap() }
    };
    for _ in 0..2 {
        assert_eq!(
            from("198.51.100.7:4000", "/u/not-a-token").await.status(),
            StatusCode::NOT_FOUND
        );
    }
    let refused = from("198.51.100.7:4001", "/u/not-a-token").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.headers()["retry-after"],
        "60",
        "one request a minute, bursts of two"
    );
    assert_eq!(
        from("[2001:db8::1]:4000", "/u/not-a-token").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        from("198.51.100.7:4002", "/hooks/shop").await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "webhooks count against the same address"
    );
    for _ in 0..5 {
        assert_eq!(
            from("198.51.100.7:4003", "/healthz").await.status(),
            StatusCode::OK
        );
    }
    f.clock.advance(chrono::Duration::seconds(59));
    assert_eq!(
        from("198.51.100.7:4004", "/u/not-a-token").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    f.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(
        from("198.51.100.7:4005", "/u/not-a-token").await.status(),
        StatusCode::NOT_FOUND
    );
}

async fn runs_and_workflows_are_seen_by_the_roles_owning_their_domain() {
    let (app, f) = app().await;
    let recall = r#"{"input": {"campaign": "R-1", "series": "S-9", "customers": [{"id": "K-1", "name": "Groß", "email": "a@b.de"}]}}"#;
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/workflows/recall-campaign/runs",
        Some(recall),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let campaign = body["id"].as_str().unwrap().to_string();
    let ticket = r#"{"input": {"id": "T-1", "customer_id": "K-1", "priority": "hoch", "subject": "Kühlung fällt aus"}}"#;
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/workflows/ticket-escalation/runs",
        Some(ticket),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let escalation = body["id"].as_str().unwrap().to_string();
    f.settle().await;

    let store = f.engine.store();
    for role in ["marketing", "service-lead", "integrator", "viewer"] {
        let token = format!("kt_domain_{role}");
        store
            .tokens()
            .insert(&token, &hash_token(&token), role, None, f.clock.now())
            .await
            .unwrap();
    }
    let runs_of = async |token: &str| {
        let (status, body) =
            call_as(&app, token, "GET", "/api/v1/runs?limit=1000", None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut workflows: Vec<String> = body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["workflow"].as_str().unwrap(),
                    r["domain"].as_str().unwrap()
                )
            })
            .collect();
        workflows.sort();
        workflows.dedup();
        workflows
    };
    assert_eq!(
        runs_of("kt_domain_marketing").await,
        ["recall-campaign campaigns", "recall-contact campaigns"]
    );
    assert_eq!(
        runs_of("kt_domain_service-lead").await,
        ["ticket-escalation tickets"]
    );
    assert_eq!(
        runs_of("kt_domain_integrator").await.len(),
        3,
        "integrators see every domain"
    );

    // Another domain's run is not there: 404, exactly as for an id that never existed.
    let (status, hidden) = call_as(
        &app,
        "kt_domain_marketing",
        "GET",
        &format!("/api/v1/runs/{escalation}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, never) = call_as(
        &app,
        "kt_domain_marketing",
        "GET",
        "/api/v1/runs/no-such-run",
        None,
        &[],
    )
    .await;
    assert_eq!(
        hidden["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&escalation, "ID"),
        never["error"]["message"]
            .as_str()
            .unwrap()
            .replace("no-such-run", "ID")
    );
    for action in ["cancel", "retry"] {
        let uri = format!("/api/v1/runs/{escalation}/{action}");
        let (status, _) = call_as(&app, "kt_domain_marketing", "POST", &uri, None, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
    }
    let (status, run) = call_as(
        &app,
        "kt_domain_service-lead",
        "GET",
        &format!("/api/v1/runs/{escalation}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["status"], "waiting", "{run}");
    let (status, _) = call_as(
        &app,
        "kt_domain_service-lead",
        "GET",
        &format!("/api/v1/runs/{campaign}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call_as(
        &app,
        "kt_domain_marketing",
        "POST",
        "/api/v1/workflows/ticket-escalation/runs",
        Some(ticket),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        body["error"]["message"],
        "there is no workflow `ticket-escalation`"
    );

    // The workflow list shows a role its own domains.
    let (_, list) = call_as(
        &app,
        "kt_domain_service-lead",
        "GET",
        "/api/v1/workflows",
        None,
        &[],
    )
    .await;
    let names: Vec<&str> = list["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ticket-escalation"], "{list}");
    assert_eq!(list["valid"], 1);
    let (_, list) = call(&app, "GET", "/api/v1/workflows", None, &[]).await;
    assert_eq!(list["valid"], 5, "an admin sees them all");
    assert_eq!(list["workflows"][0]["domain"], "leads");
}

async fn a_checked_token_is_trusted_for_a_second_and_its_expiry_is_always_checked() {
    let (app, f) = app().await;
    let store = f.engine.store();
    let token = "kt_cached_integrator";
    store
        .tokens()
        .insert(
            "t-cached",
            &hash_token(token),
            "integrator",
            None,
            f.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        call_as(&app, token, "GET", "/api/v1/plugins", None, &[])
            .await
            .0,
        StatusCode::OK
    );
    // Revoked behind the server's back, as `kontor token revoke` in another process does.
    let cli = kontor::store::Actor::cli();
    assert!(
        store
            .tokens()
            .revoke("t-cached", &cli, f.clock.now())
            .await
            .unwrap()
    );
    assert_eq!(
        call_as(&app, token, "GET", "/api/v1/plugins", None, &[])
            .await
            .0,
        StatusCode::OK,
        "checked less than a second ago: no store read"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = call_as(&app, token, "GET", "/api/v1/plugins", None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Expiry is checked on every request, cached or not.
    let expiring = "kt_cached_expiring";
    let soon = kontor::store::tokens::NewToken {
        role: "integrator",
        expires_at: Some(f.clock.now() + chrono::Duration::minutes(5)),
        ..Default::default()
    };
    store
        .tokens()
        .create(
            "t-expiring",
            &hash_token(expiring),
            &soon,
            &cli,
            f.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        call_as(&app, expiring, "GET", "/api/v1/plugins", None, &[])
            .await
            .0,
        StatusCode::OK
    );
    f.clock.advance(chrono::Duration::minutes(6));
    assert_eq!(
        call_as(&app, expiring, "GET", "/api/v1/plugins", None, &[])
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

async fn get_open_with_token(app: &axum::Router) -> (StatusCode, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let response = app
        .clone()
        .oneshot(
            axum::http::Request::get("/metrics")
                .header("authorization", format!("Bearer {}", common::router::TOKEN))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

kontor::on_both_backends!(
    users_are_managed_by_admins_and_their_tokens_follow_them,
    webhooks_are_verified_with_an_independent_hmac,
    rate_limits_answer_429_until_the_client_may_again,
    runs_and_workflows_are_seen_by_the_roles_owning_their_domain,
    a_checked_token_is_trusted_for_a_second_and_its_expiry_is_always_checked,
);
