//! Scale-out on PostgreSQL: three real `kontor serve` processes on one database run 1,000
//! runs while a per-second cron schedule ticks; one process (the first, which leads cron)
//! is killed with SIGKILL mid-way. Every run must complete, every step attempt must be
//! recorded once, every effect exist once, and every cron tick fire exactly once — also
//! the ticks that fell into the leader's death. And three processes assign leads to one
//! team at once, fairly.
//!
//! Needs `KONTOR_TEST_DATABASE_URL` (skipped without it, failed without it under CI=true).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kontor::run::RunStatus;
use kontor::store::{RunFilter, Store};
use kontor_tests::{Server, fixture};
use serde_json::json;

const RUNS: i64 = 1000;
/// One cluster at a time: two of them (six servers) on two cores time each other out.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Seconds a leased job stays claimed: what a killed process's jobs wait at most.
const LEASE_SECONDS: &str = "5";

async fn all_runs(store: &Store, workflow: &str) -> Vec<kontor::store::RunView> {
    let mut all: Vec<kontor::store::RunView> = Vec::new();
    loop {
        let page = store
            .runs()
            .list(&RunFilter {
                workflow: Some(workflow.into()),
                limit: 1000,
                before: all.last().map(|r| r.id.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_the_work_and_survive_a_sigkill() {
    let Some(admin) = kontor_tests::postgres_admin_url() else {
        return;
    };
    let _alone = ONE_CLUSTER.lock().await;
    let url = kontor::store::scratch_postgres_database(&admin, "kontor_cluster")
        .await
        .unwrap();
    let workflows = fixture("cluster");
    let env = [
        ("KONTOR_DATABASE_URL", url.as_str()),
        ("KONTOR_ENGINE_LEASE_SECONDS", LEASE_SECONDS),
        // Processes sharing a database share its secrets, so they share the master key.
        (
            "KONTOR_MASTER_KEY",
            "6b6f6e746f722d636c75737465722d746573742d6d61737465722d6b65792121",
        ),
        ("RUST_LOG", "info"),
    ];
    let mut servers: Vec<Server> = (0..3)
        .map(|_| Server::start(&workflows, &env).unwrap())
        .collect();
    let store = Store::open(&url).await.unwrap();

    // 1,000 runs, started round-robin through all three APIs; process 0 dies after 300.
    let started = Instant::now();
    let mut killed_at = None;
    for chunk in 0..(RUNS / 50) {
        let alive: Vec<usize> = if killed_at.is_some() {
            vec![1, 2]
        } else {
            vec![0, 1, 2]
        };
        let mut posts = tokio::task::JoinSet::new();
        for i in 0..50 {
            let n = chunk * 50 + i;
            let api = servers[alive[n as usize % alive.len()]].api.clone();
            posts.spawn(async move {
                let (status, body) = api
                    .post(
                        "/api/v1/workflows/cluster-job/runs",
                        &json!({"input": {"n": n}}),
                    )
                    .await
                    .unwrap();
                assert_eq!(status, 201, "{body}");
            });
        }
        posts.join_all().await;
        if chunk * 50 >= 300 && killed_at.is_none() {
            // The first process started first and so leads cron; it has jobs leased now.
            let log = std::fs::read_to_string(servers[0].log_path()).unwrap();
            assert!(
                log.contains("this process now leads cron"),
                "the first process should lead cron:\n{log}"
            );
            // One process dispatches email (its throttles then hold for all three).
            let dispatchers = servers
                .iter()
                .filter(|s| {
                    std::fs::read_to_string(s.log_path())
                        .unwrap()
                        .contains("this process now dispatches email")
                })
                .count();
            assert_eq!(dispatchers, 1, "exactly one process dispatches email");
            servers[0].kill();
            killed_at = Some(Instant::now());
        }
    }

    // Everything completes, on the two survivors.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let runs = all_runs(&store, "cluster-job").await;
        let done = runs
            .iter()
            .filter(|r| r.status == RunStatus::Completed)
            .count();
        if done == RUNS as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {RUNS} runs completed within 4 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    // Let cron tick on under the new leader for a few seconds more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for server in &mut servers[1..] {
        server.terminate().unwrap();
    }

    // Every run once, each step attempt recorded once, the effect of each run once.
    let runs = all_runs(&store, "cluster-job").await;
    assert_eq!(runs.len(), RUNS as usize);
    let inputs: BTreeSet<i64> = runs
        .iter()
        .map(|r| r.input["n"].as_i64().unwrap())
        .collect();
    assert_eq!(
        inputs.len(),
        RUNS as usize,
        "every input started exactly once"
    );
    for run in &runs {
        assert_eq!(run.status, RunStatus::Completed, "{}", run.id);
        let history = store.runs().steps(&run.id).await.unwrap();
        // A `wait` step records its attempt twice by design: parked, then completed.
        let attempts: Vec<(String, u32, String)> = history
            .iter()
            .map(|s| (s.step.clone(), s.attempt, s.status.as_str().to_string()))
            .collect();
        let unique: BTreeSet<&(String, u32, String)> = attempts.iter().collect();
        assert_eq!(
            unique.len(),
            attempts.len(),
            "run {} recorded a step attempt twice: {attempts:?}",
            run.id
        );
        let steps: Vec<&str> = history
            .iter()
            .filter(|s| s.status.as_str() == "completed")
            .map(|s| s.step.as_str())
            .collect();
        assert!(
            steps.ends_with(&["done"]) && steps.contains(&"save"),
            "run {}: {steps:?}",
            run.id
        );
    }
    let records = store.records().list("cluster").await.unwrap();
    assert_eq!(records.len(), RUNS as usize);
    let keys = store.records().effect_keys().await.unwrap();
    assert_eq!(keys.len(), RUNS as usize, "one record effect per run");

    // Every cron tick fired exactly once, with no second missing, across the takeover.
    let firings = store.cron().firings("cluster-tick").await.unwrap();
    let mut seconds = BTreeMap::new();
    for (local, run_id) in &firings {
        let at = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S").unwrap();
        assert!(
            seconds.insert(at, run_id.clone()).is_none(),
            "{local} fired twice"
        );
    }
    let ticks: Vec<&chrono::NaiveDateTime> = seconds.keys().collect();
    assert!(
        ticks.len() as u64 > elapsed.as_secs(),
        "{} ticks in {elapsed:?}",
        ticks.len()
    );
    for pair in ticks.windows(2) {
        assert_eq!(
            *pair[1] - *pair[0],
            chrono::Duration::seconds(1),
            "cron ticks between {} and {} are missing",
            pair[0],
            pair[1]
        );
    }
    let tick_runs = all_runs(&store, "cluster-tick").await;
    assert_eq!(tick_runs.len(), seconds.len(), "one run per tick");
    let survivors_led = [1, 2].iter().any(|&i| {
        std::fs::read_to_string(servers[i].log_path())
            .unwrap()
            .contains("this process now leads cron")
    });
    assert!(survivors_led, "no survivor took over cron");
    eprintln!(
        "cluster: {RUNS} runs on 3 processes (one SIGKILLed after {:?}) in {elapsed:?}, {} cron ticks",
        killed_at.map(|k| k - started),
        ticks.len()
    );
}

/// Lead assignment across processes: three `kontor serve` on one PostgreSQL database take
/// 40 leads for the same round-robin team at once (8 clients, each lead posted to one of
/// the three APIs in turn), each process's engine routing what it claims. Every lead gets
/// exactly one owner, and the two members' counts differ by at most 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_assign_leads_fairly() {
    const LEADS: usize = 40;
    let Some(admin) = kontor_tests::postgres_admin_url() else {
        return;
    };
    let _alone = ONE_CLUSTER.lock().await;
    let url = kontor::store::scratch_postgres_database(&admin, "kontor_cluster")
        .await
        .unwrap();
    let env = [
        ("KONTOR_DATABASE_URL", url.as_str()),
        ("KONTOR_ENGINE_LEASE_SECONDS", LEASE_SECONDS),
        (
            "KONTOR_MASTER_KEY",
            "6b6f6e746f722d636c75737465722d746573742d6d61737465722d6b65792121",
        ),
    ];
    let mut servers: Vec<Server> = (0..3)
        .map(|_| Server::start(&kontor_tests::shipped_workflows(), &env).unwrap())
        .collect();
    let apis: Vec<kontor_tests::Api> = servers.iter().map(|s| s.api.clone()).collect();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..8 {
        let apis = apis.clone();
        clients.spawn(async move {
            for i in (client..LEADS).step_by(8) {
                // Hamburg machinery, product A: team nord-maschinenbau (round-robin,
                // anna.schroeder and jens.petersen, capacity 25 each); score 55.
                let lead = json!({
                    "external_id": format!("HH-{i}"), "company": format!("Maschinenbau Nord {i} GmbH"),
                    "title": "Leiterin Einkauf", "country": "DE", "postal_code": "20095",
                    "industry": "maschinenbau", "products": ["A"], "employees": 10, "source": "messe"
                });
                let (status, body) = apis[i % 3].post("/api/v1/leads", &lead).await.unwrap();
                assert_eq!(status, 201, "{body}");
            }
        });
    }
    clients.join_all().await;

    let deadline = Instant::now() + Duration::from_secs(120);
    let owners: BTreeMap<String, usize> = loop {
        let (status, page) = apis[0]
            .get("/api/v1/leads?team=nord-maschinenbau&limit=100")
            .await
            .unwrap();
        assert_eq!(status, 200, "{page}");
        let leads = page["leads"].as_array().unwrap();
        let owned: Vec<&str> = leads.iter().filter_map(|l| l["owner"].as_str()).collect();
        if owned.len() == LEADS {
            let mut counts = BTreeMap::new();
            for owner in owned {
                *counts.entry(owner.to_string()).or_default() += 1;
            }
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {LEADS} leads routed to nord-maschinenbau have an owner after 2 minutes: {page}",
            owned.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let counts: Vec<usize> = owners.values().copied().collect();
    assert_eq!(owners.len(), 2, "{owners:?}");
    assert!(counts[0].abs_diff(counts[1]) <= 1, "{owners:?}");
    // The members' counters agree with the leads.
    let (_, teams) = apis[1].get("/api/v1/teams").await.unwrap();
    let team = teams["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "nord-maschinenbau")
        .unwrap_or_else(|| panic!("{teams}"));
    for member in team["members"].as_array().unwrap() {
        let user = member["user"].as_str().unwrap();
        assert_eq!(
            member["open"].as_u64(),
            owners.get(user).map(|&n| n as u64),
            "{member}"
        );
    }
    for server in &mut servers {
        server.terminate().unwrap();
    }
}
