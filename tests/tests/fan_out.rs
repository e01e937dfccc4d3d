//! A fan-out killed while it creates its children: `start` with `for_each` over 30,000
//! items on a real `kontor serve`, SIGKILLed three times while the children are being
//! created (each time once more of them exist than at the last kill), restarted on the
//! same database each time. Every child must exist exactly once, and the parent must see
//! all of them finish.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kontor::store::{RunFilter, Store};
use kontor_tests::{Server, fixture};
use serde_json::json;

const ITEMS: i64 = 30_000;
const KILLS: usize = 3;

/// The parent's children so far, as the API counts them (0 while the server restarts).
async fn children(server: &Server, parent: &str) -> i64 {
    match server.api.get(&format!("/api/v1/runs/{parent}")).await {
        Ok((200, body)) => body["children"]["total"].as_i64().unwrap_or(0),
        _ => 0,
    }
}

async fn a_fan_out_survives_sigkill_while_creating_children() {
    let mut server = Server::start(&fixture("fan-out"), &[]).unwrap();
    let items: Vec<i64> = (0..ITEMS).collect();
    let parent = server
        .api
        .start_run("fan-parent", &json!({"items": items}))
        .await;
    let mut seen_at_kills = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen_at_kills.len() < KILLS {
        let last = seen_at_kills.last().copied().unwrap_or(0);
        let now = children(&server, &parent).await;
        if now >= ITEMS {
            break;
        }
        if now > last {
            server.restart().unwrap();
            seen_at_kills.push(now);
        }
        assert!(Instant::now() < deadline, "no progress for 5 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let end = server.api.finished(&parent, Duration::from_secs(600)).await;
    assert_eq!(end["status"], "completed", "{end}");
    assert_eq!(end["output"]["total"], ITEMS, "{end}");
    assert_eq!(end["output"]["completed"], ITEMS, "{end}");
    eprintln!("fan-out: killed with {seen_at_kills:?} of {ITEMS} children created");
    assert_eq!(
        seen_at_kills.len(),
        KILLS,
        "the fan-out finished before {KILLS} kills ({seen_at_kills:?}): too fast to test crashes"
    );

    let url = server.database_url();
    server.kill();
    let store = Store::open(&url).await.unwrap();
    let mut seen = BTreeSet::new();
    let mut before = None;
    loop {
        let page = store
            .runs()
            .list(&RunFilter {
                parent_id: Some(parent.clone()),
                before: before.clone(),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id.clone());
        for run in &page {
            let n = run.input["n"].as_i64().unwrap();
            assert_eq!(run.input["at"], n, "item {n} went to the wrong index");
            assert_eq!(
                run.status.as_str(),
                "completed",
                "child {n}: {:?}",
                run.status
            );
            assert!(seen.insert(n), "item {n} has two children");
        }
    }
    assert_eq!(seen.len() as i64, ITEMS, "every item has a child");
}

kontor::on_both_backends!(a_fan_out_survives_sigkill_while_creating_children);
