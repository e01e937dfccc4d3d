//! End-to-end: a real `kontor serve` process on 127.0.0.1, driven over HTTP, with the
//! manual test clock moved through the API.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kontor_tests::{
    Server, advance, copy_tree, fixture, free_port, kontor_bin, settle, shipped_workflows,
    test_plugins,
};
use mailparse::MailHeaderMap;
use serde_json::{Value, json};

/// A copy of the shipped workflows plus one broken file.
fn workflows_with_a_broken_one() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&shipped_workflows(), dir.path());
    std::fs::write(
        dir.path().join("broken.yaml"),
        "name: broken\nsteps:\n  - id: a\n    branch:\n      cases:\n        - when: \"x >\"\n          goto: a\n",
    )
    .unwrap();
    dir
}

async fn records(server: &Server, collection: &str) -> Vec<Value> {
    let (status, body) = server
        .api
        .get(&format!("/api/v1/records/{collection}"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    body["records"].as_array().cloned().unwrap_or_default()
}

async fn serves_the_api_with_tokens_and_lists_invalid_workflows() {
    let workflows = workflows_with_a_broken_one();
    let mut server = Server::start(workflows.path(), &[]).unwrap();

    assert_eq!(server.api.get_anonymous("/healthz").await.unwrap(), 200);
    assert_eq!(
        server.api.get_anonymous("/api/v1/workflows").await.unwrap(),
        401
    );

    let (status, body) = server.api.get("/api/v1/workflows").await.unwrap();
    assert_eq!(status, 200);
    let list = body["workflows"].as_array().unwrap();
    let broken = list.iter().find(|w| w["name"] == "broken").unwrap();
    assert_eq!(broken["valid"], false);
    assert!(
        broken["diagnostics"][0]
            .as_str()
            .unwrap()
            .contains("broken.yaml:6:"),
        "{broken}"
    );
    assert!(
        list.iter()
            .any(|w| w["name"] == "lead-routing" && w["valid"] == true)
    );

    // The valid workflows run although one file is broken.
    let (status, body) = server
        .api
        .post(
            "/api/v1/workflows/recall-campaign/runs",
            &json!({"input": {"campaign": "R-1", "series": "X-7", "customers": []}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let mut run = Value::Null;
    for _ in 0..200 {
        run = server
            .api
            .get(&format!("/api/v1/runs/{id}"))
            .await
            .unwrap()
            .1;
        if run["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"]["contacted"], 0);

    let (status, body) = server
        .api
        .post("/api/v1/workflows/broken/runs", &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
    let (status, _) = server.api.get("/api/v1/runs/no-such-run").await.unwrap();
    assert_eq!(status, 404);
    let (status, body) = server
        .api
        .post(
            "/api/v1/workflows/lead-routing/runs",
            &json!({"input": {"id": "L-1"}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "input", "{body}");

    // The manual clock is off unless configured.
    let (status, _) = server
        .api
        .post("/api/v1/testing/clock", &json!({"advance": "1h"}))
        .await
        .unwrap();
    assert_eq!(status, 404);

    let exit = server.terminate().unwrap();
    assert!(exit.success(), "SIGTERM stops the server cleanly: {exit:?}");
}

async fn ticket_escalation_follows_business_hours_on_the_test_clock() {
    // Monday 2026-06-08 09:00 in Berlin.
    let server = Server::start(
        &shipped_workflows(),
        &[
            ("KONTOR_TESTING_MANUAL_CLOCK", "true"),
            ("KONTOR_TESTING_CLOCK_START", "2026-06-08T07:00:00Z"),
        ],
    )
    .unwrap();
    let (status, body) = server
        .api
        .post(
            "/api/v1/events",
            &json!({"type": "ticket.created", "payload": {
                "id": "T-100", "customer_id": "K-4711", "priority": "hoch",
                "subject": "Kühlaggregat fällt aus", "service_lead": "frau.özdemir"}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["started_runs"].as_array().unwrap().len(), 1);
    let run_id = body["started_runs"][0].as_str().unwrap().to_string();
    settle(&server).await;

    // "hoch": warning after 6 business hours, breach after 8. Monday's hours are 08–12 and
    // 13–17: 09–12 is 3 h, 13–16 another 3 h → warning Mon 16:00; 13–17 gives 7 h in all,
    // so the breach comes after the first hour of Tuesday → Tue 09:00.
    advance(&server, "6h").await; // Mon 15:00
    assert!(records(&server, "ticket_escalations").await.is_empty());
    advance(&server, "1h").await; // Mon 16:00
    let escalations = records(&server, "ticket_escalations").await;
    assert_eq!(escalations.len(), 1, "warning at Mon 16:00");
    assert_eq!(escalations[0]["data"]["level"], 1);
    assert_eq!(
        escalations[0]["data"]["message"],
        "Ticket T-100 („Kühlaggregat fällt aus“) erreicht bald sein SLA-Ziel"
    );

    advance(&server, "16h").await; // Tue 08:00 — still before the breach.
    assert_eq!(
        records(&server, "ticket_escalations").await[0]["data"]["level"],
        1
    );
    advance(&server, "1h").await; // Tue 09:00
    assert_eq!(
        records(&server, "ticket_escalations").await[0]["data"]["level"],
        2
    );

    let (status, _) = server
        .api
        .post(
            "/api/v1/events",
            &json!({"type": "ticket.resolved", "key": "T-100", "payload": {}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 202);
    settle(&server).await;
    let (_, run) = server
        .api
        .get(&format!("/api/v1/runs/{run_id}"))
        .await
        .unwrap();
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"]["escalation_level"], 2);
    let steps: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(
        steps.contains(&"warn") && steps.contains(&"escalate") && steps.contains(&"resolved"),
        "{steps:?}"
    );
}

/// A run pinned to a workflow version whose expression is too deep to evaluate (it used
/// to overflow the stack, and the durable run crashed the server again on every
/// restart): the run fails with the reason and the server stays up, restart after
/// restart.
#[tokio::test]
async fn a_poisoned_pinned_version_fails_its_run_and_never_crash_loops_the_server() {
    let mut server = Server::start(&shipped_workflows(), &[]).unwrap();
    server.kill();
    let store = kontor::store::Store::open(&server.database_url())
        .await
        .unwrap();
    let chain = vec!["1"; 2_000].join(" + ");
    let source =
        format!("name: poisoned\nsteps:\n  - id: sum\n    set:\n      total: \"${{{chain}}}\"\n");
    let run_id = kontor::engine::new_run_id();
    let now = chrono::Utc::now();
    store
        .runs()
        .start(
            &[kontor::run::NewRun {
                id: run_id.clone(),
                workflow: "poisoned".into(),
                version: "poisoned-v1".into(),
                domain: None,
                source,
                input: json!({}),
                parent_id: None,
                depth: 0,
                trigger_key: None,
                first_step: "sum".into(),
                due_at: now,
            }],
            now,
        )
        .await
        .unwrap();
    drop(store);
    for restart in 1..=3 {
        server.restart().unwrap();
        assert_eq!(
            server.api.get_anonymous("/healthz").await.unwrap(),
            200,
            "restart {restart}"
        );
        let run = server.api.finished(&run_id, Duration::from_secs(30)).await;
        assert_eq!(run["status"], "failed", "restart {restart}: {run}");
        let error = run["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("no longer compiles") && error.contains("levels deep"),
            "restart {restart}: {error}"
        );
    }
}

#[tokio::test]
async fn a_second_server_on_the_same_sqlite_file_is_refused() {
    let server = Server::start(&shipped_workflows(), &[]).unwrap();
    let (code, _, stderr) = server.cli(&["serve"], None).unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("another `kontor serve` is already using"),
        "{stderr}"
    );
    // Nor through another name for the same file: a symlink, a hard link.
    let db = server.dir.path().join("kontor.db");
    let symlink = server.dir.path().join("alias.db");
    std::os::unix::fs::symlink(&db, &symlink).unwrap();
    let hard_link = server.dir.path().join("hard.db");
    std::fs::hard_link(&db, &hard_link).unwrap();
    for alias in [&symlink, &hard_link] {
        let url = format!("sqlite://{}", alias.display());
        let (code, _, stderr) = server
            .cli_with(&["serve"], &[("KONTOR_DATABASE_URL", &url)], None)
            .unwrap();
        assert_eq!(code, 1, "{}: {stderr}", alias.display());
        assert!(
            stderr.contains("another `kontor serve` is already using"),
            "{stderr}"
        );
    }
    // The first one still serves.
    assert_eq!(server.api.get_anonymous("/healthz").await.unwrap(), 200);
}

async fn cron_triggers_fire_on_the_test_clock_in_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("morning-report.yaml"),
        "name: morning-report\ntrigger:\n  cron: \"0 8 * * MON-FRI\"\n  timezone: Europe/Berlin\n  input:\n    title: Frühbericht\nsteps:\n  - id: done\n    end:\n      output:\n        title: \"${input.title}\"\n",
    )
    .unwrap();
    // Friday 2026-06-05 07:00 Berlin.
    let server = Server::start(
        dir.path(),
        &[
            ("KONTOR_TESTING_MANUAL_CLOCK", "true"),
            ("KONTOR_TESTING_CLOCK_START", "2026-06-05T05:00:00Z"),
        ],
    )
    .unwrap();
    let runs = |server: &Server| {
        let api = server.api.clone();
        async move {
            let (_, body) = api
                .get("/api/v1/runs?workflow=morning-report")
                .await
                .unwrap();
            body["runs"].as_array().cloned().unwrap_or_default()
        }
    };
    // Let the scheduler see the workflow once at the start time, then move through Friday
    // 08:00, the weekend and Monday 08:00 in steps.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for _ in 0..(3 * 24 + 2) {
        advance(&server, "1h").await;
    }
    let mut fired = Vec::new();
    for _ in 0..100 {
        fired = runs(&server).await;
        if fired.len() >= 2 && fired.iter().all(|r| r["status"] == "completed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut times: Vec<String> = fired
        .iter()
        .map(|r| r["input"]["scheduled_at"].as_str().unwrap().to_string())
        .collect();
    times.sort();
    assert_eq!(
        times,
        ["2026-06-05T06:00:00Z", "2026-06-08T06:00:00Z"],
        "Friday and Monday 08:00 Berlin, not the weekend"
    );
    assert!(fired.iter().all(|r| r["output"]["title"] == "Frühbericht"));
}

fn lead(id: &str, postal_code: &str, employees: i64, quote: bool) -> Value {
    json!({
        "external_id": id, "email": "einkauf@example.de", "company": "Müller Maschinenbau GmbH",
        "title": "Leiter Einkauf", "country": "DE", "postal_code": postal_code,
        "industry": "maschinenbau", "products": ["B"], "employees": employees,
        "quote_requested": quote, "source": "web"
    })
}

/// Lead routing through `POST /api/v1/leads` with the compiled lead-scoring plugin:
/// score (with its explanation), territory, fair owner, acceptance, and reassignment in
/// business hours when nobody reacts.
async fn lead_routing_scores_with_the_plugin_assigns_and_follows_up() {
    // Monday 2026-06-08 10:00 Berlin.
    let server = Server::start(
        &shipped_workflows(),
        &[
            ("KONTOR_TESTING_MANUAL_CLOCK", "true"),
            ("KONTOR_TESTING_CLOCK_START", "2026-06-08T08:00:00Z"),
        ],
    )
    .unwrap();
    let mut ids = Vec::new();
    for l in [
        lead("L-1", "20095", 320, true),
        lead("L-2", "80331", 10, false),
    ] {
        let (status, body) = server.api.post("/api/v1/leads", &l).await.unwrap();
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["stage"], "new");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    // The same delivery again is the same lead; other fields under the same id are refused.
    let (status, again) = server
        .api
        .post("/api/v1/leads", &lead("L-1", "20095", 320, true))
        .await
        .unwrap();
    assert_eq!(
        (status, again["id"].as_str()),
        (200, Some(ids[0].as_str())),
        "{again}"
    );
    let (status, body) = server
        .api
        .post("/api/v1/leads", &lead("L-1", "20095", 321, true))
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
    let (status, body) = server
        .api
        .post(
            "/api/v1/leads",
            &json!({"external_id": "L-3", "company": "X", "country": "DE", "postal_code": "8033"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("postal_code")),
        "{body}"
    );
    settle(&server).await;
    let get = |id: String| {
        let api = server.api.clone();
        async move { api.get(&format!("/api/v1/leads/{id}")).await.unwrap().1 }
    };
    // L-1: DE 20 + 320 staff 25 + Maschinenbau 20 + quote 30 + "Leiter Einkauf" 10 = 105 → A;
    // Hamburg 20095 × maschinenbau × product B → only team nord-maschinenbau owns B there.
    let l1 = get(ids[0].clone()).await;
    assert_eq!(l1["stage"], "sales-qualified", "{l1}");
    assert_eq!(l1["score"], 105);
    assert_eq!(l1["team"], "nord-maschinenbau");
    assert_eq!(l1["owner"], "anna.schroeder");
    assert_eq!(l1["routing"]["territory"]["rule"], "nord-machinery");
    assert_eq!(l1["routing"]["assignment"]["strategy"], "round-robin");
    let explanation = l1["explanation"].as_array().unwrap();
    assert_eq!(explanation.len(), 5);
    assert_eq!(explanation[4]["value"], "Leiter Einkauf (leiter)");
    let kinds: Vec<&str> = l1["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "scored", "stage", "assigned"]);
    // L-2: 20 + 5 + 20 + 10 = 55 → B: marketing-qualified, Munich → team sued, weighted by
    // capacity (10, 30, 20): lena.maier first.
    let l2 = get(ids[1].clone()).await;
    assert_eq!(
        (l2["stage"].as_str(), l2["score"].as_i64()),
        (Some("marketing-qualified"), Some(55)),
        "{l2}"
    );
    assert_eq!(
        (l2["team"].as_str(), l2["owner"].as_str()),
        (Some("sued"), Some("lena.maier"))
    );

    let (status, body) = server
        .api
        .post(
            &format!("/api/v1/leads/{}/accept", ids[0]),
            &json!({"opportunity_id": "OPP-9"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["stage"].as_str(), body["opportunity_id"].as_str()),
        (Some("accepted"), Some("OPP-9"))
    );
    let (status, body) = server
        .api
        .post(
            &format!("/api/v1/leads/{}/reject", ids[0]),
            &json!({"reason": "no-budget"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
    settle(&server).await;
    let run = |id: String| {
        let api = server.api.clone();
        async move { api.get(&format!("/api/v1/runs/{id}")).await.unwrap().1 }
    };
    assert_eq!(
        run(l1["run_id"].as_str().unwrap().to_string()).await["status"],
        "completed"
    );

    // Nobody reacts to L-2: after 16 business hours (two working days) the next member
    // gets it; when everyone had it, it waits in the team's overflow queue.
    advance(&server, "2d").await; // Wed 10:00
    let l2 = get(ids[1].clone()).await;
    assert_eq!(
        (l2["owner"].as_str(), l2["reassignments"].as_i64()),
        (Some("xaver.bauer"), Some(1)),
        "{l2}"
    );
    for _ in 0..8 {
        advance(&server, "1d").await;
    }
    let l2 = get(ids[1].clone()).await;
    assert_eq!(l2["owner"], Value::Null, "{l2}");
    assert_eq!(l2["overflow"], "nobody-available");
    let kinds: Vec<&str> = l2["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "scored",
            "stage",
            "assigned",
            "reassigned",
            "reassigned",
            "overflow"
        ]
    );
    assert_eq!(
        run(l2["run_id"].as_str().unwrap().to_string()).await["status"],
        "completed"
    );
}

/// `kontor serve` in `dir` (its working folder) on a SQLite file there, with the given
/// workflows and the test plugins; its log goes to `dir/serve.log`.
fn serve_in(dir: &std::path::Path, workflows: &std::path::Path) -> Command {
    let mut command = Command::new(kontor_bin());
    command
        .arg("serve")
        .current_dir(dir)
        .env(
            "KONTOR_DATABASE_URL",
            format!("sqlite://{}/kontor.db", dir.display()),
        )
        .env("KONTOR_WORKFLOWS_DIR", workflows)
        .env("KONTOR_PLUGINS_DIR", test_plugins())
        .env("KONTOR_PLUGINS_CACHE_DIR", dir.join("plugin-cache"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

/// A running `kontor serve`, killed when dropped (also when an assertion fails).
struct Serving {
    child: Child,
    /// The admin token it printed on its first start.
    token: String,
    /// The address from its `kontor listening on` line.
    address: String,
}

impl Serving {
    /// Starts `command` and waits for its first-start token and its listening line.
    fn start(command: &mut Command, log: &std::path::Path) -> Serving {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut serving = Serving {
            child,
            token: String::new(),
            address: String::new(),
        };
        while serving.address.is_empty() {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
                panic!(
                    "kontor serve did not start listening: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            };
            if let Some(token) = line.strip_prefix("first start: created admin token ") {
                serving.token = token.to_string();
            } else if let Some(url) = line.strip_prefix("kontor listening on http://") {
                serving.address = url.to_string();
            }
        }
        serving
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_taken_port_fails_naming_it_and_leaves_no_token_and_no_master_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = serve_in(dir.path(), &shipped_workflows())
        .args(["--listen", &address])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("error: binding {address}: ")),
        "{stderr}"
    );
    assert!(!stdout.contains("token"), "{stdout}");
    assert!(
        !dir.path().join("data/master.key").exists(),
        "a failed start created a master key"
    );

    // Nor a token: once the port is free, the next start on the same database is still
    // the first one, and it listens where --listen says.
    drop(taken);
    let serving = Serving::start(
        serve_in(dir.path(), &shipped_workflows()).args(["--listen", &address]),
        &dir.path().join("serve.log"),
    );
    assert!(!serving.token.is_empty(), "no first-start token");
    assert_eq!(serving.address, address);
    assert!(dir.path().join("data/master.key").exists());
}

#[tokio::test]
async fn listen_overrides_the_config_and_links_in_mail_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    // No public_url: the unsubscribe link must point at the address --listen gives.
    std::fs::write(
        dir.path().join("kontor.toml"),
        "[email]\npoll_interval_ms = 50\n\
         [channel.news]\nfrom = \"Kältetechnik Süd <news@kaeltetechnik-sued.example>\"\n\
         [channel.service]\nfrom = \"Kältetechnik Süd <service@kaeltetechnik-sued.example>\"\n",
    )
    .unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let serving = Serving::start(
        serve_in(dir.path(), &fixture("email"))
            // What --listen overrides: the environment (and with it the file).
            .env("KONTOR_LISTEN", format!("127.0.0.1:{}", free_port()))
            .args(["--listen", &address]),
        &dir.path().join("serve.log"),
    );
    assert_eq!(serving.address, address);

    let http = reqwest::Client::new();
    let response = http
        .post(format!("http://{address}/api/v1/workflows/newsletter/runs"))
        .bearer_auth(&serving.token)
        .json(&json!({"input": {"email": "kunde@example.de", "name": "Jürgen"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let folder = dir.path().join("data/mail/news");
    let mut mail = None;
    for _ in 0..400 {
        if let Some(file) = std::fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "eml"))
        {
            mail = Some(std::fs::read(file).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mail = mail.expect("the newsletter was not written to data/mail/news");
    let parsed = mailparse::parse_mail(&mail).unwrap();
    let unsubscribe = parsed
        .headers
        .get_first_value("List-Unsubscribe")
        .expect("a marketing mail has a List-Unsubscribe header");
    let prefix = format!("<http://{address}/u/");
    assert!(unsubscribe.starts_with(&prefix), "{unsubscribe}");
    // And the link opens the unsubscribe page of this server.
    let link = unsubscribe[1..].split('>').next().unwrap();
    let page = http.get(link).send().await.unwrap();
    assert_eq!(page.status(), 200, "{link}");
}

kontor::on_both_backends!(
    serves_the_api_with_tokens_and_lists_invalid_workflows,
    ticket_escalation_follows_business_hours_on_the_test_clock,
    cron_triggers_fire_on_the_test_clock_in_a_real_server,
    lead_routing_scores_with_the_plugin_assigns_and_follows_up,
);

#[tokio::test]
async fn a_token_does_what_its_role_may_and_is_told_what_it_lacks() {
    let server = Server::start(&shipped_workflows(), &[]).unwrap();
    let (code, token, stderr) = server
        .cli(&["token", "create", "--role", "marketing"], None)
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("created marketing token"), "{stderr}");
    let token = token.trim();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{}{path}", server.api.url))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(get("/api/v1/email/messages").await.unwrap().status(), 200);
    let refused = get("/api/v1/secrets").await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`marketing` role may not do this: it needs the `secrets:read` permission"),
        "{body}"
    );
    let (code, _, stderr) = server
        .cli(&["token", "create", "--role", "root"], None)
        .unwrap();
    assert_ne!(code, 0);
    assert!(stderr.contains("possible values"), "{stderr}");

    // A CI token narrowed to delivering events, then revoked.
    let (code, ci, stderr) = server
        .cli(
            &[
                "token",
                "create",
                "--role",
                "integrator",
                "--scope",
                "events:write",
                "--expires",
                "90d",
            ],
            None,
        )
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let ci = ci.trim().to_string();
    let id = stderr
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches(';')
        .to_string();
    let post_event = || {
        http.post(format!("{}/api/v1/events", server.api.url))
            .bearer_auth(&ci)
            .json(&json!({"type": "nothing.listens", "key": "k", "payload": {}}))
            .send()
    };
    assert_eq!(post_event().await.unwrap().status(), 202);
    let plugins = http
        .get(format!("{}/api/v1/plugins", server.api.url))
        .bearer_auth(&ci)
        .send()
        .await
        .unwrap();
    assert_eq!(
        plugins.status(),
        403,
        "narrowed: the role could, the token may not"
    );
    let (code, list, _) = server.cli(&["token", "list"], None).unwrap();
    assert_eq!(code, 0);
    let row = list.lines().find(|l| l.starts_with(&id)).expect("listed");
    assert!(row.contains("integrator\tevents:write\t"), "{row}");
    assert!(!list.contains(&ci), "the token itself is never shown again");
    let (code, _, stderr) = server.cli(&["token", "revoke", &id], None).unwrap();
    assert_eq!(code, 0, "{stderr}");
    let refused = refused_soon(post_event).await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked at"),
        "{body}"
    );
    let (code, _, stderr) = server
        .cli(
            &[
                "token",
                "create",
                "--role",
                "sales",
                "--scope",
                "secrets:write",
            ],
            None,
        )
        .unwrap();
    assert_ne!(code, 0);
    assert!(
        stderr.contains("the sales role does not have it"),
        "{stderr}"
    );
}

/// Asks until the answer is a 401, for at most 3 s: a server trusts a token it checked for
/// up to a second, so a revocation or deactivation by another process (the CLI) takes
/// that long (README, Access control).
async fn refused_soon<F, Fut>(ask: F) -> reqwest::Response
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let since = std::time::Instant::now();
    loop {
        let answer = ask().await.unwrap();
        if answer.status() == 401 || since.elapsed() > std::time::Duration::from_secs(3) {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn people_get_tokens_that_stop_working_when_they_are_deactivated() {
    let server = Server::start(&shipped_workflows(), &[]).unwrap();
    let cli = |args: &[&str]| server.cli(args, None).unwrap();
    let add = [
        "user",
        "add",
        "--name",
        "Jürgen Groß",
        "--email",
        "Juergen@Kälte-Nord.de",
        "--role",
        "sales",
        "--team",
        "Nord",
        "--rep",
        "R-17",
    ];
    let (code, _, stderr) = cli(&add);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("added juergen@kälte-nord.de"), "{stderr}");
    let (code, _, stderr) = cli(&add);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("`juergen@kälte-nord.de` exists already"),
        "{stderr}"
    );
    let (code, _, stderr) = cli(&[
        "user", "add", "--name", "A", "--email", "a.b", "--role", "sales",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("--email: `a.b` is not an email address"),
        "{stderr}"
    );

    let (code, _, stderr) = cli(&[
        "token",
        "create",
        "--user",
        "juergen@kälte-nord.de",
        "--role",
        "marketing",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("does not have that role (they have sales)"),
        "{stderr}"
    );
    let (code, token, stderr) = cli(&["token", "create", "--user", "JUERGEN@kälte-nord.de"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("created sales token") && stderr.contains("for juergen@kälte-nord.de"),
        "{stderr}"
    );
    let token = token.trim().to_string();
    let http = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        http.get(format!("{}{path}", server.api.url))
            .bearer_auth(token)
            .send()
    };
    let overview = "/api/v1/customers/K-10001/overview";
    assert_eq!(
        get(overview, &token).await.unwrap().status(),
        404,
        "allowed; no ERP here"
    );
    assert_eq!(get("/api/v1/runs", &token).await.unwrap().status(), 403);
    let (_, list, _) = cli(&["token", "list"]);
    assert!(
        list.lines()
            .any(|l| l.contains("\tjuergen@kälte-nord.de\tsales\t")),
        "{list}"
    );

    let (code, _, stderr) = cli(&["user", "deactivate", "juergen@kälte-nord.de"]);
    assert_eq!(code, 0, "{stderr}");
    let refused = refused_soon(|| get(overview, &token)).await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("who was deactivated at"),
        "{body}"
    );
    let (_, users, _) = cli(&["user", "list"]);
    assert!(
        users.contains("\tJürgen Groß\tsales\tNord\tR-17\tno"),
        "{users}"
    );
    let (code, _, stderr) = cli(&[
        "user",
        "change",
        "juergen@kälte-nord.de",
        "--no-team",
        "--role",
        "sales",
        "--role",
        "viewer",
    ]);
    assert_eq!(code, 0, "{stderr}");
    cli(&["user", "activate", "juergen@kälte-nord.de"]);
    assert_eq!(
        get(overview, &token).await.unwrap().status(),
        404,
        "active again"
    );

    // What the command line changed is in the audit log, made by `cli`.
    let audit: Value = get("/api/v1/audit?actor=cli", &server.api.token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "user.change",
            "user.change",
            "user.change",
            "token.create",
            "user.create",
            "token.create", // the harness's admin token
        ],
        "{audit}"
    );
    assert_eq!(
        audit["entries"][1]["detail"],
        json!({"team": {"from": "Nord", "to": null}, "roles": {"from": ["sales"], "to": ["sales", "viewer"]}})
    );
}
