//! Crash test: SIGKILL a real `kontor serve` at seeded random moments while 500 parent
//! runs (each with 2 child runs: 1,500 runs) start, wait, fan out, receive events and
//! finish. After every kill the server restarts on the same database (a SQLite file, or a
//! PostgreSQL database). At the end every
//! run's final state, step history and records must equal those of a crash-free reference
//! pass, and no effect may exist twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kontor::store::{RunFilter, Store};
use kontor_tests::{Api, Server, fixture};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const PARENTS: i64 = 500;
const KILLS: usize = 12;
const SEED: u64 = 0x6b6f6e746f72;

/// Retries an operation until the (possibly restarting) server answers it.
async fn until_ok(
    api: &Api,
    what: impl Fn(
        &Api,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<(u16, Value)>> + '_>,
    >,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok((status, body)) = what(api).await {
            if status < 300 {
                return body;
            }
            assert!(status >= 500, "unexpected answer {status}: {body}");
        }
        assert!(
            Instant::now() < deadline,
            "the server did not answer for 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn drive(api: Api) {
    let server = &api;
    for n in 0..PARENTS {
        let key = format!("crash-{n}");
        until_ok(server, |s| {
            let key = key.clone();
            Box::pin(async move {
                s.post_with(
                    "/api/v1/workflows/crash-parent/runs",
                    &json!({"input": {"n": n}}),
                    &[("Idempotency-Key", &key)],
                )
                .await
            })
        })
        .await;
    }
    for n in 0..PARENTS {
        until_ok(server, |s| {
            Box::pin(async move {
                s.post("/api/v1/events", &json!({"type": "crash.go", "key": n.to_string(), "payload": {"signal": format!("los {n}")}}))
                    .await
            })
        })
        .await;
    }
    // Wait until every parent has finished.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let body = until_ok(server, |s| {
            Box::pin(s.get("/api/v1/runs?workflow=crash-parent&status=completed&limit=1000"))
        })
        .await;
        if body["runs"].as_array().map(Vec::len) == Some(PARENTS as usize) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "parents did not all complete within 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Everything observable about the finished work, keyed by stable identities.
async fn final_state(database_url: &str) -> (BTreeMap<String, Value>, usize) {
    let store = Store::open(database_url).await.unwrap();
    let mut state = BTreeMap::new();
    let runs = store
        .runs()
        .list(&RunFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut all = runs;
    while all.len() % 1000 == 0 && !all.is_empty() {
        let more = store
            .runs()
            .list(&RunFilter {
                limit: 1000,
                before: all.last().map(|r| r.id.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        if more.is_empty() {
            break;
        }
        all.extend(more);
    }
    assert_eq!(
        all.len(),
        (PARENTS * 3) as usize,
        "every run exists exactly once"
    );
    for run in &all {
        let identity = match run.workflow.as_str() {
            "crash-parent" => format!("parent/{}", run.input["n"]),
            _ => format!("child/{}/{}", run.input["parent"], run.input["k"]),
        };
        let history: Vec<Value> = store
            .runs()
            .steps(&run.id)
            .await
            .unwrap()
            .iter()
            .map(|s| json!([s.step, s.status, s.attempt]))
            .collect();
        let previous = state.insert(
            identity.clone(),
            json!({"status": run.status, "output": run.output, "error": run.error, "history": history}),
        );
        assert!(previous.is_none(), "{identity} exists twice");
    }
    for collection in ["parents", "children", "finished"] {
        for (key, data) in store.records().list(collection).await.unwrap() {
            state.insert(format!("record/{collection}/{key}"), data);
        }
    }
    let keys = store.records().effect_keys().await.unwrap();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "an effect key appears twice");
    (state, keys.len())
}

/// On PostgreSQL a restarted process is a new lease owner: the jobs its predecessor had
/// claimed wait for their (short, see `Server::prepare`) lease to expire, then are taken
/// over.
async fn runs_survive_sigkill_at_seeded_moments() {
    let workflows = fixture("crash");

    // Reference: the same work without crashes.
    let mut reference_server = Server::start(&workflows, &[]).unwrap();
    drive(reference_server.api.clone()).await;
    let reference_url = reference_server.database_url();
    reference_server.kill();
    let (reference, reference_effects) = final_state(&reference_url).await;
    assert_eq!(
        reference_effects,
        (PARENTS * 4) as usize,
        "2 parent records + 1 per child"
    );

    // The same work, killed KILLS times at seeded moments.
    let server = Arc::new(Mutex::new(Server::start(&workflows, &[]).unwrap()));
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let server = server.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
            let mut kills = 0;
            while kills < KILLS && !done.load(Ordering::SeqCst) {
                let wait = rng.random_range(60..400);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                // Kill without waiting for the driver: requests in flight are cut off.
                let pid = server.lock().await.pid().expect("running");
                std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .unwrap();
                let mut guard = server.lock().await;
                guard.restart().expect("restart after SIGKILL");
                kills += 1;
            }
            kills
        })
    };
    let api = server.lock().await.api.clone();
    drive(api).await;
    done.store(true, Ordering::SeqCst);
    let kills = killer.await.unwrap();
    let url = server.lock().await.database_url();
    server.lock().await.kill();
    let (crashed, crashed_effects) = final_state(&url).await;

    eprintln!(
        "crash test: {kills} SIGKILLs, {} runs, {crashed_effects} effects",
        PARENTS * 3
    );
    assert!(
        kills >= 10,
        "only {kills} kills happened; the work finished too quickly to test crashes"
    );
    assert_eq!(crashed_effects, reference_effects);
    let differences: Vec<String> = reference
        .iter()
        .filter(|(k, v)| crashed.get(*k) != Some(v))
        .take(5)
        .map(|(k, v)| format!("{k}: reference {v}, after crashes {:?}", crashed.get(k)))
        .collect();
    assert!(
        differences.is_empty(),
        "final states differ:\n{}",
        differences.join("\n")
    );
    assert_eq!(reference.len(), crashed.len());
}

kontor::on_both_backends!(runs_survive_sigkill_at_seeded_moments);
