//! Behaviour of the durable engine with a manual clock, on a real SQLite file and on
//! PostgreSQL (each test runs on both: `NAME::sqlite`, `NAME::postgres`).

mod common;

use chrono::Duration;
use common::*;
use kontor::run::RunStatus;
use serde_json::json;

async fn pure_steps_run_inline_and_commit_together() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[(
            "score",
            r#"
name: score
input:
  type: object
  required: [employees]
  properties:
    employees: { type: integer }
    name: { type: string }
steps:
  - id: compute
    set:
      score: "${input.employees > 100 ? 30 : 10}"
      greeting: "Grüß Gott, ${input.name}!"
  - id: decide
    branch:
      cases:
        - when: vars.score >= 30
          goto: big
      otherwise: small
  - id: small
    end:
      output: { size: small }
  - id: big
    record:
      collection: leads
      key: "'L-1'"
      data:
        score: "${vars.score}"
  - id: finish
    end:
      output:
        size: big
        greeting: "${vars.greeting}"
"#,
        )],
    )
    .await;
    let id = f
        .start("score", json!({"employees": 250, "name": "Jürgen Müller"}))
        .await;
    f.settle().await;
    let run = f.run(&id).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(
        run.output,
        Some(json!({"size": "big", "greeting": "Grüß Gott, Jürgen Müller!"}))
    );
    assert_eq!(
        f.steps(&id).await,
        [
            "compute:completed",
            "decide:completed",
            "big:completed",
            "finish:completed"
        ]
    );
    assert_eq!(
        f.records("leads").await,
        [("L-1".to_string(), json!({"score": 30}))]
    );

    let err = f
        .engine
        .start_run("score", json!({"employees": "many"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/employees"), "{err}");
}

async fn waits_for_a_duration_and_a_business_duration() {
    let f = fixture(
        // Friday 2026-06-05 15:00 Berlin (13:00 UTC).
        "2026-06-05T13:00:00Z",
        &[(
            "pause",
            r#"
name: pause
steps:
  - id: short
    wait:
      duration: 30m
  - id: business
    wait:
      duration: 4h
      calendar: office
  - id: done
    end: {}
"#,
        )],
    )
    .await;
    let id = f.start("pause", json!({})).await;
    f.settle().await;
    assert_eq!(f.run(&id).await.status, RunStatus::Waiting);
    f.advance(Duration::minutes(29)).await;
    assert_eq!(f.run(&id).await.current_step.as_deref(), Some("short"));
    f.advance(Duration::minutes(1)).await;
    // 15:30 Friday + 4 business hours (08-17): 1.5 h on Friday, 2.5 h on Monday → Mon 10:30.
    let history = f.history(&id).await;
    let business = history.iter().find(|s| s.step == "business").unwrap();
    assert_eq!(
        business.input.as_ref().unwrap()["until"],
        json!("2026-06-08T08:30:00Z")
    );
    f.advance(Duration::days(2)).await;
    assert_eq!(f.run(&id).await.status, RunStatus::Waiting);
    f.clock.set(at("2026-06-08T08:30:00Z"));
    f.settle().await;
    assert_eq!(f.run(&id).await.status, RunStatus::Completed);
}

const AWAIT: &str = r#"
name: await
input:
  type: object
  properties:
    lead: { type: string }
steps:
  - id: first_a_pause
    wait:
      duration: 1h
  - id: feedback
    wait_for:
      events: [lead.accepted, lead.rejected]
      key: input.lead
      timeout:
        duration: 2d
      on_timeout: nobody_answered
  - id: answered
    end:
      output:
        answer: "${steps.feedback.type}"
        reason: "${steps.feedback.payload.reason}"
  - id: nobody_answered
    end:
      output:
        answer: none
"#;

async fn an_event_that_arrives_before_wait_for_is_not_lost() {
    let f = fixture("2026-06-01T10:00:00Z", &[("await", AWAIT)]).await;
    // An event from before the run started belongs to history, not to this run.
    f.event("lead.rejected", "L-7", json!({"reason": "alt"}))
        .await;
    let id = f.start("await", json!({"lead": "L-7"})).await;
    f.settle().await;
    f.event("lead.accepted", "L-8", json!({"reason": "other lead"}))
        .await;
    f.event("lead.rejected", "L-7", json!({"reason": "zu teuer"}))
        .await;
    assert_eq!(
        f.run(&id).await.status,
        RunStatus::Waiting,
        "still in its first wait"
    );
    f.advance(Duration::hours(1)).await;
    let run = f.run(&id).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(
        run.output,
        Some(json!({"answer": "lead.rejected", "reason": "zu teuer"}))
    );
}

async fn wait_for_resumes_on_the_event_or_takes_the_timeout_path() {
    let f = fixture("2026-06-01T10:00:00Z", &[("await", AWAIT)]).await;
    let answered = f.start("await", json!({"lead": "A"})).await;
    let silent = f.start("await", json!({"lead": "B"})).await;
    f.settle().await;
    f.advance(Duration::hours(1)).await;
    assert_eq!(f.run(&answered).await.status, RunStatus::Waiting);
    f.event("lead.accepted", "A", json!({"reason": "passt"}))
        .await;
    assert_eq!(
        f.run(&answered).await.output,
        Some(json!({"answer": "lead.accepted", "reason": "passt"}))
    );
    f.advance(Duration::hours(47)).await;
    assert_eq!(f.run(&silent).await.status, RunStatus::Waiting);
    f.advance(Duration::hours(1)).await;
    let run = f.run(&silent).await;
    assert_eq!(run.output, Some(json!({"answer": "none"})));
    assert!(
        f.steps(&silent)
            .await
            .contains(&"nobody_answered:completed".to_string())
    );
    // A late event changes nothing and is harmless.
    f.event("lead.accepted", "B", json!({})).await;
    assert_eq!(f.run(&silent).await.output, Some(json!({"answer": "none"})));
}

async fn fan_out_starts_children_and_waits_for_all() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[
            (
                "parent",
                r#"
name: parent
steps:
  - id: spawn
    start:
      workflow: child
      for_each: "['a', 'b', 'c']"
      input:
        name: "${item}"
        position: "${index}"
  - id: join
    wait_children: {}
  - id: report
    end:
      output:
        total: "${steps.join.total}"
        completed: "${steps.join.completed}"
        failed: "${steps.join.failed}"
"#,
            ),
            (
                "child",
                r#"
name: child
input:
  type: object
  required: [name, position]
steps:
  - id: maybe_fail
    branch:
      cases:
        - when: input.name == 'b'
          goto: broken
  - id: work
    wait:
      duration: "1h"
  - id: ok
    end: {}
  - id: broken
    fail:
      message: "child ${input.name} is broken"
"#,
            ),
        ],
    )
    .await;
    let parent = f.start("parent", json!({})).await;
    f.settle().await;
    assert_eq!(f.run(&parent).await.status, RunStatus::Waiting);
    let children = f
        .engine
        .store()
        .runs()
        .list(&kontor::store::RunFilter {
            parent_id: Some(parent.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 3);
    f.advance(Duration::hours(1)).await;
    let run = f.run(&parent).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(
        run.output,
        Some(json!({"total": 3, "completed": 2, "failed": 1}))
    );
}

/// A fan-out larger than a chunk is made in several commits, each child once, with its
/// own item and index, and the parent's step history holds one record for the step.
async fn a_large_fan_out_is_committed_in_chunks_each_child_once() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[
            (
                "parent",
                r#"
name: parent
steps:
  - id: spawn
    start:
      workflow: child
      for_each: input.customers
      input:
        customer: "${item.id}"
        position: "${index}"
        campaign: "${input.campaign}"
  - id: join
    wait_children: {}
  - id: report
    end:
      output:
        total: "${steps.join.total}"
        completed: "${steps.join.completed}"
"#,
            ),
            (
                "child",
                r#"
name: child
input:
  type: object
  required: [customer, position, campaign]
steps:
  - id: ok
    end:
      output:
        customer: "${input.customer}"
"#,
            ),
        ],
    )
    .await;
    let size = 2 * kontor::steps::start::FAN_OUT_CHUNK + 500;
    let customers: Vec<serde_json::Value> = (0..size)
        .map(|n| json!({"id": format!("K-{n}"), "name": format!("Müller {n}")}))
        .collect();
    let parent = f
        .start(
            "parent",
            json!({"campaign": "Rückruf", "customers": customers}),
        )
        .await;
    f.settle().await;
    let run = f.run(&parent).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(json!({"total": size, "completed": size})));
    let mut positions = std::collections::BTreeSet::new();
    let mut before = None;
    loop {
        let page = f
            .engine
            .store()
            .runs()
            .list(&kontor::store::RunFilter {
                parent_id: Some(parent.clone()),
                before: before.clone(),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id.clone());
        for child in page {
            let n = child.input["position"].as_u64().unwrap();
            assert_eq!(child.input["customer"], format!("K-{n}"));
            assert_eq!(child.input["campaign"], "Rückruf");
            assert!(positions.insert(n), "position {n} twice");
        }
    }
    assert_eq!(positions.len(), size);
    let spawns: Vec<_> = f
        .engine
        .store()
        .runs()
        .steps(&parent)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.step == "spawn")
        .collect();
    assert_eq!(spawns.len(), 1, "one record for the step: {spawns:?}");
    assert_eq!(
        spawns[0].output,
        Some(json!({"workflow": "child", "started": size}))
    );
}

/// Deliveries that arrive together are committed together (on SQLite with statements
/// shared between them) and still do what each would alone: every event starts its run,
/// resumes the run waiting for it — the first of two events with the same key resumes
/// it, the second finds it gone — and a run started by an event sees the events after
/// its own.
async fn concurrent_deliveries_each_start_and_resume_their_runs() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[
            (
                "waiter",
                r#"
name: waiter
steps:
  - id: wait
    wait_for:
      events: [go]
      key: string(input.n)
  - id: done
    end:
      output:
        signal: "${steps.wait.payload.signal}"
"#,
            ),
            (
                "intake",
                r#"
name: intake
trigger:
  event: lead.created
steps:
  - id: wait
    wait_for:
      events: [lead.accepted]
      key: input.id
  - id: done
    end:
      output:
        lead: "${input.id}"
        by: "${steps.wait.payload.by}"
"#,
            ),
        ],
    )
    .await;
    let mut waiters = Vec::new();
    for n in 0..20 {
        waiters.push(f.start("waiter", json!({"n": n})).await);
    }
    f.settle().await;
    let event = |event_type: &str, key: String, payload: serde_json::Value| {
        f.engine.deliver_event(
            kontor::run::NewEvent {
                event_type: event_type.into(),
                key,
                payload,
            },
            None,
        )
    };
    // For each n: a lead, and two `go`s for waiter n (which of the two comes first is
    // the store's choice: they arrive together).
    let mut deliveries = Vec::new();
    for n in 0..20 {
        deliveries.push(event(
            "lead.created",
            String::new(),
            json!({"id": format!("L-{n}")}),
        ));
        deliveries.push(event(
            "go",
            n.to_string(),
            json!({"signal": format!("first {n}")}),
        ));
        deliveries.push(event(
            "go",
            n.to_string(),
            json!({"signal": format!("second {n}")}),
        ));
    }
    let delivered: Vec<_> = futures_util::future::join_all(deliveries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // Then each lead's acceptance, together, before its run has run a step.
    let accepted: Vec<_> = futures_util::future::join_all((0..20).map(|n| {
        event(
            "lead.accepted",
            format!("L-{n}"),
            json!({"by": format!("rep {n}")}),
        )
    }))
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let ids: std::collections::BTreeSet<i64> = delivered
        .iter()
        .chain(&accepted)
        .map(|d| d.event_id)
        .collect();
    assert_eq!(ids.len(), 80, "every event has its own id");
    let mut resumed_by = Vec::new();
    for (n, group) in delivered.chunks(3).enumerate() {
        assert_eq!(group[0].started_runs.len(), 1, "lead {n} started its run");
        let resumed: Vec<(usize, &String)> = group[1..]
            .iter()
            .enumerate()
            .flat_map(|(i, d)| d.resumed_runs.iter().map(move |r| (i, r)))
            .collect();
        assert_eq!(
            resumed.len(),
            1,
            "one go of {n} resumes the waiter: {resumed:?}"
        );
        assert_eq!(resumed[0].1, &waiters[n]);
        resumed_by.push(if resumed[0].0 == 0 { "first" } else { "second" });
    }
    f.settle().await;
    for (n, waiter) in waiters.iter().enumerate() {
        let run = f.run(waiter).await;
        let signal = format!("{} {n}", resumed_by[n]);
        assert_eq!(run.output, Some(json!({"signal": signal})));
    }
    for (n, group) in delivered.chunks(3).enumerate() {
        // The acceptance came after the lead's event: the run parks and finds it.
        let run = f.run(&group[0].started_runs[0]).await;
        assert_eq!(run.status, RunStatus::Completed, "lead {n}");
        assert_eq!(
            run.output,
            Some(json!({"lead": format!("L-{n}"), "by": format!("rep {n}")}))
        );
    }
}

/// Delivery ids keep concurrent deliveries idempotent: an id stored before, or sent twice
/// at once, is delivered once; the repeat answers with the first delivery's event id and
/// starts nothing.
async fn concurrent_deliveries_with_repeated_ids_are_delivered_once() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[(
            "intake",
            r#"
name: intake
trigger:
  event: lead.created
steps:
  - id: wait
    wait_for:
      events: [never]
      key: input.id
"#,
        )],
    )
    .await;
    let deliver = |id: &'static str| {
        f.engine.deliver_event(
            kontor::run::NewEvent {
                event_type: "lead.created".into(),
                key: String::new(),
                payload: json!({"id": id}),
            },
            Some(id),
        )
    };
    let before = deliver("D-1").await.unwrap();
    let ids = ["D-1", "D-2", "D-2", "D-3", "D-4", "D-5", "D-3"];
    let delivered: Vec<_> = futures_util::future::join_all(ids.iter().map(|&id| deliver(id)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(delivered[0].duplicate && delivered[0].started_runs.is_empty());
    assert_eq!(delivered[0].event_id, before.event_id);
    let mut runs = std::collections::BTreeMap::new();
    for (id, d) in ids.iter().zip(&delivered).skip(1) {
        let entry = runs.entry(*id).or_insert_with(Vec::new);
        entry.push((d.event_id, d.duplicate, d.started_runs.len()));
    }
    for (id, answers) in &runs {
        let firsts: Vec<_> = answers.iter().filter(|(_, dup, _)| !dup).collect();
        assert_eq!(firsts.len(), 1, "{id} is delivered once: {answers:?}");
        assert_eq!(firsts[0].2, 1, "{id} starts one run");
        for (event_id, duplicate, started) in answers {
            assert_eq!(
                *event_id, firsts[0].0,
                "{id}: every answer names the first event"
            );
            assert!(*duplicate || *started == 1);
        }
    }
    let listed = f
        .engine
        .store()
        .runs()
        .list(&kontor::store::RunFilter {
            workflow: Some("intake".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 5, "D-1 … D-5, one run each");
}

/// A delivery that fails while others are committed with it fails alone: the others
/// are stored with their runs, it stores nothing.
async fn a_failing_delivery_among_concurrent_ones_fails_alone() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[(
            "intake",
            r#"
name: intake
steps:
  - id: wait
    wait_for:
      events: [never]
      key: input.id
"#,
        )],
    )
    .await;
    let existing = f.start("intake", json!({"id": "x"})).await;
    let workflow = f.engine.catalog().get("intake").cloned().unwrap();
    let store = f.engine.store();
    let now = chrono::Utc::now();
    let events: Vec<(kontor::run::NewEvent, kontor::run::NewRun)> = (0..12)
        .map(|n| {
            let mut run = f
                .engine
                .new_run(&workflow, json!({"id": n.to_string()}), None)
                .unwrap();
            if n == 5 {
                run.id = existing.clone(); // taken: this delivery's insert must fail
            }
            // Delivery 5 would also end the existing run's wait, were it applied.
            let (event_type, key) = match n {
                5 => ("never".to_string(), "x".to_string()),
                _ => ("lead.created".to_string(), format!("K-{n}")),
            };
            let event = kontor::run::NewEvent {
                event_type,
                key,
                payload: json!({"n": n}),
            };
            (event, run)
        })
        .collect();
    let results = futures_util::future::join_all(events.iter().map(|(event, run)| {
        store
            .events()
            .deliver(event, None, std::slice::from_ref(run), now)
    }))
    .await;
    for (n, result) in results.iter().enumerate() {
        match n {
            5 => assert!(result.is_err(), "delivery 5 reuses a run id: {result:?}"),
            _ => assert_eq!(
                result.as_ref().unwrap().started_runs.len(),
                1,
                "delivery {n}"
            ),
        }
    }
    for (n, (_, run)) in events.iter().enumerate() {
        let stored = store.runs().get(&run.id).await.unwrap();
        match n {
            5 => assert_eq!(
                stored.unwrap().input,
                json!({"id": "x"}),
                "the old run is untouched"
            ),
            _ => assert!(stored.is_some(), "run of delivery {n}"),
        }
    }
    f.settle().await;
    assert_eq!(f.run(&existing).await.status, RunStatus::Waiting);
    // Alone, the same: nothing of it is stored, so the existing run still waits.
    let (event, run) = &events[5];
    let alone = store
        .events()
        .deliver(event, None, std::slice::from_ref(run), now)
        .await;
    assert!(alone.is_err(), "{alone:?}");
    f.settle().await;
    assert_eq!(f.run(&existing).await.status, RunStatus::Waiting);
}

async fn retryable_failures_back_off_exponentially_then_fail_the_run() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[(
            "flaky",
            r#"
name: flaky
steps:
  - id: call
    retry:
      max_attempts: 3
      backoff: 10s
    fail:
      message: ERP busy
      retryable: true
"#,
        )],
    )
    .await;
    let id = f.start("flaky", json!({})).await;
    f.settle().await;
    assert_eq!(f.steps(&id).await, ["call:retrying"]);
    f.advance(Duration::seconds(9)).await;
    assert_eq!(f.steps(&id).await.len(), 1, "backoff not over yet");
    f.advance(Duration::seconds(1)).await;
    assert_eq!(f.steps(&id).await, ["call:retrying", "call:retrying"]);
    f.advance(Duration::seconds(19)).await;
    assert_eq!(f.steps(&id).await.len(), 2, "second backoff is 20 s");
    f.advance(Duration::seconds(1)).await;
    let run = f.run(&id).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error.as_deref(),
        Some("step `call` failed: ERP busy (gave up after 3 attempts)")
    );
    let attempts: Vec<u32> = f.history(&id).await.iter().map(|s| s.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
}

async fn a_step_that_gives_up_continues_at_its_on_error_step() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[(
            "optional",
            r#"
name: optional
steps:
  - id: enrich
    retry:
      max_attempts: 2
      backoff: 10s
    fail:
      message: ERP busy
      retryable: true
    on_error: fallback
  - id: fallback
    set:
      why: ${steps.enrich.error}
  - id: broken
    set:
      x: "${1 / (size(input) - size(input))}"
    on_error: done
  - id: skipped
    set:
      never: true
  - id: done
    end:
      output:
        why: ${vars.why}
        broken: ${steps.broken.error}
"#,
        )],
    )
    .await;
    let id = f.start("optional", json!({})).await;
    f.settle().await;
    assert_eq!(f.steps(&id).await, ["enrich:retrying"]);
    f.advance(Duration::seconds(10)).await;
    let run = f.run(&id).await;
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
    assert_eq!(
        f.steps(&id).await,
        [
            "enrich:retrying",
            "enrich:failed",
            "fallback:completed",
            "broken:failed",
            "done:completed"
        ]
    );
    let output = run.output.unwrap();
    assert_eq!(output["why"], "ERP busy (gave up after 2 attempts)");
    assert!(
        output["broken"]
            .as_str()
            .unwrap()
            .contains("Division by zero"),
        "{output}"
    );
}

async fn failing_expressions_fail_the_run_readably() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[(
            "broken",
            r#"
name: broken
steps:
  - id: divide
    set:
      x: "${1 / (size(input) - size(input))}"
"#,
        )],
    )
    .await;
    let id = f.start("broken", json!({})).await;
    f.settle().await;
    let run = f.run(&id).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.error
            .unwrap()
            .contains("step `divide` failed: expression"),
        "readable error"
    );
}

async fn a_loop_without_waits_is_stopped_by_the_step_limit() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[(
            "spin",
            r#"
name: spin
steps:
  - id: again
    set:
      n: 1
    next: again
"#,
        )],
    )
    .await;
    let id = f.start("spin", json!({})).await;
    f.settle().await;
    let run = f.run(&id).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.unwrap().contains("limit"));
}

async fn timers_fire_and_can_be_recomputed_or_cancelled() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[(
            "sla",
            r#"
name: sla
input:
  type: object
  properties:
    ticket: { type: string }
steps:
  - id: arm
    timer:
      name: reminder
      duration: 2h
  - id: watch
    wait_for:
      events: [timer.reminder, ticket.snoozed, ticket.closed]
      key: input.ticket
  - id: react
    branch:
      cases:
        - when: steps.watch.type == 'ticket.snoozed'
          goto: arm
        - when: steps.watch.type == 'ticket.closed'
          goto: close
  - id: remind
    record:
      collection: reminders
      key: input.ticket
      data:
        at: "${now}"
    next: watch
  - id: close
    cancel_timer: reminder
  - id: done
    end: {}
"#,
        )],
    )
    .await;
    let id = f.start("sla", json!({"ticket": "T-1"})).await;
    f.settle().await;
    f.advance(Duration::minutes(90)).await;
    // Snoozing re-arms the timer: it now fires 2 h after the snooze, not after the start.
    f.event("ticket.snoozed", "T-1", json!({})).await;
    f.advance(Duration::minutes(60)).await;
    assert!(
        f.records("reminders").await.is_empty(),
        "the first timer was replaced"
    );
    f.advance(Duration::minutes(60)).await;
    assert_eq!(
        f.records("reminders").await[0].1,
        json!({"at": "2026-06-01T13:30:00+00:00"})
    );
    f.event("ticket.closed", "T-1", json!({})).await;
    assert_eq!(f.run(&id).await.status, RunStatus::Completed);
    assert_eq!(
        f.engine.store().jobs().pending().await.unwrap(),
        0,
        "no timer left behind"
    );
}

async fn a_run_keeps_its_workflow_version_after_the_file_changes() {
    let v1 = "name: versioned\nsteps:\n  - id: pause\n    wait:\n      duration: 1h\n  - id: done\n    end:\n      output: { version: 1 }\n";
    let v2 = "name: versioned\nsteps:\n  - id: other\n    end:\n      output: { version: 2 }\n";
    let f = fixture("2026-06-01T10:00:00Z", &[("versioned", v1)]).await;
    let old = f.start("versioned", json!({})).await;
    f.settle().await;
    let root = f.dir.path().join("workflows");
    std::fs::write(root.join("versioned.yaml"), v2).unwrap();
    f.engine
        .set_catalog(kontor::workflow::Catalog::load(&root, None));
    let new = f.start("versioned", json!({})).await;
    f.advance(Duration::hours(1)).await;
    assert_eq!(f.run(&old).await.output, Some(json!({"version": 1})));
    assert_eq!(f.run(&new).await.output, Some(json!({"version": 2})));
    assert_ne!(f.run(&old).await.version, f.run(&new).await.version);
}

async fn cron_fires_exactly_once_on_both_dst_switch_days() {
    let f = fixture(
        "2026-03-28T00:00:00Z",
        &[(
            "nightly",
            r#"
name: nightly
trigger:
  cron: "30 2 * * *"
  timezone: Europe/Berlin
steps:
  - id: done
    end: {}
"#,
        )],
    )
    .await;
    f.engine.fire_due_cron().await.unwrap();
    // Walk through the March switch (2026-03-29, 02:30 does not exist) in 10-minute steps.
    for _ in 0..(3 * 24 * 6) {
        f.advance(Duration::minutes(10)).await;
    }
    let march = f.engine.store().cron().firings("nightly").await.unwrap();
    let locals: Vec<&str> = march
        .iter()
        .filter(|(l, _)| !l.is_empty())
        .map(|(l, _)| l.as_str())
        .collect();
    assert_eq!(
        locals,
        [
            "2026-03-28T02:30:00",
            "2026-03-29T02:30:00",
            "2026-03-30T02:30:00"
        ]
    );

    // October: 02:30 happens twice on 2026-10-25; it fires once.
    f.clock.set(at("2026-10-24T00:00:00Z"));
    f.engine.fire_due_cron().await.unwrap();
    for _ in 0..(3 * 24 * 6) {
        f.advance(Duration::minutes(10)).await;
    }
    let all = f.engine.store().cron().firings("nightly").await.unwrap();
    let october: Vec<&str> = all
        .iter()
        .map(|(l, _)| l.as_str())
        .filter(|l| l.starts_with("2026-10"))
        .collect();
    assert_eq!(
        october,
        [
            "2026-10-24T02:30:00",
            "2026-10-25T02:30:00",
            "2026-10-26T02:30:00"
        ]
    );
    let completed = f
        .engine
        .store()
        .runs()
        .list(&kontor::store::RunFilter {
            workflow: Some("nightly".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(completed.len(), 6);
    assert!(completed.iter().all(|r| r.status == RunStatus::Completed));
}

async fn retention_prunes_finished_runs_but_keeps_failed_and_active_ones() {
    let f = fixture(
        "2026-06-01T10:00:00Z",
        &[
            ("quick", "name: quick\nsteps:\n  - id: done\n    end: {}\n"),
            ("broken", "name: broken\nsteps:\n  - id: boom\n    fail:\n      message: nope\n"),
            (
                "parent",
                "name: parent\nsteps:\n  - id: spawn\n    start:\n      workflow: quick\n  - id: pause\n    wait:\n      duration: 60d\n  - id: join\n    wait_children: {}\n",
            ),
        ],
    )
    .await;
    let quick = f.start("quick", json!({})).await;
    let broken = f.start("broken", json!({})).await;
    // Two outbox messages: one sent, one still queued (a throttle or an outage).
    let store = f.engine.store();
    let email = |id: &str| kontor::run::OutgoingEmail {
        id: id.into(),
        workflow: "quick".into(),
        campaign: "c".into(),
        channel: "default".into(),
        template: "t".into(),
        locale: None,
        to: "a@b.example".into(),
        name: None,
        purpose: "service".into(),
        data: json!({}),
    };
    store
        .outbox()
        .enqueue(
            &[email("m-sent"), email("m-queued")],
            kontor::clock::Clock::now(f.clock.as_ref()),
        )
        .await
        .unwrap();
    store
        .outbox()
        .update(&[kontor::store::OutboxUpdate::Sent {
            id: "m-sent".into(),
            channel: "default".into(),
            reply: "250 ok".into(),
            at: kontor::clock::Clock::now(f.clock.as_ref()),
        }])
        .await
        .unwrap();
    let parent = f.start("parent", json!({})).await;
    f.settle().await;
    f.event("some.event", "k", json!({})).await;
    f.clock.advance(Duration::days(31));
    let settings = kontor::retention::RetentionSettings {
        finished_runs: Duration::days(30),
        events: Duration::days(30),
        idempotency_keys: Duration::hours(24),
        interval: std::time::Duration::from_secs(600),
    };
    let pruned = kontor::retention::prune(&f.engine, &settings)
        .await
        .unwrap();
    assert_eq!(
        (pruned.runs, pruned.events),
        (1, 1),
        "only the quick run; the parent's child stays"
    );
    assert_eq!(pruned.messages, 1, "the sent message; the queued one waits");
    assert!(store.outbox().get("m-sent").await.unwrap().is_none());
    assert_eq!(
        store
            .outbox()
            .get("m-queued")
            .await
            .unwrap()
            .unwrap()
            .status,
        "queued"
    );
    assert!(f.engine.store().runs().get(&quick).await.unwrap().is_none());
    assert!(f.history(&quick).await.is_empty());
    assert_eq!(
        f.run(&broken).await.status,
        RunStatus::Failed,
        "failed runs are kept"
    );
    assert_eq!(
        f.engine
            .store()
            .runs()
            .child_counts(&parent)
            .await
            .unwrap()
            .total,
        1,
        "children of an active parent stay"
    );
    // Once the parent is done and old, parent and child go.
    f.advance(Duration::days(30)).await;
    assert_eq!(f.run(&parent).await.status, RunStatus::Completed);
    f.clock.advance(Duration::days(31));
    let pruned = kontor::retention::prune(&f.engine, &settings)
        .await
        .unwrap();
    assert_eq!(pruned.runs, 2);
    assert_eq!(f.engine.store().jobs().pending().await.unwrap(), 0);
}

/// PostgreSQL: a claimed job stays with its claimer until the lease expires (another
/// process asking earlier gets nothing); then it is taken over, and the first claimer's
/// late commit is void while the new holder's applies.
#[tokio::test]
async fn a_leased_job_is_taken_over_only_after_its_lease_expires() {
    if postgres_admin_url().is_none() {
        return;
    }
    BACKEND
        .scope(Backend::Postgres, async {
            let f = fixture(
                "2026-06-01T10:00:00Z",
                &[(
                    "once",
                    "name: once\nsteps:\n  - id: save\n    record:\n      collection: once\n      key: \"'k'\"\n      data: { n: 1 }\n",
                )],
            )
            .await;
            let run = f.engine.start_run("once", json!({})).await.unwrap();
            let store = f.engine.store();
            let now = kontor::clock::Clock::now(f.clock.as_ref());
            let wall = chrono::Utc::now();
            let lease = Duration::seconds(30);
            let first = store.jobs().claim("a", now, wall, lease, 10).await.unwrap();
            assert_eq!(first.len(), 1);
            let taken_early = store
                .jobs().claim("b", now, wall + Duration::seconds(29), lease, 10)
                .await
                .unwrap();
            assert!(taken_early.is_empty(), "a live lease was taken over");
            let taken = store
                .jobs().claim("b", now, wall + Duration::seconds(31), lease, 10)
                .await
                .unwrap();
            assert_eq!(taken.len(), 1);
            assert_eq!(taken[0].id, first[0].id);
            let outcome = |job_id| kontor::run::JobOutcome {
                job_id,
                run_id: run.run_id.clone(),
                ..Default::default()
            };
            let late = store
                .commit("a", vec![outcome(first[0].id)].into(), now)
                .await
                .unwrap();
            assert_eq!(late, vec![false], "the expired holder's commit must be void");
            let applied = store
                .commit("b", vec![outcome(taken[0].id)].into(), now)
                .await
                .unwrap();
            assert_eq!(applied, vec![true]);
        })
        .await;
}

kontor::on_both_backends!(
    pure_steps_run_inline_and_commit_together,
    waits_for_a_duration_and_a_business_duration,
    an_event_that_arrives_before_wait_for_is_not_lost,
    wait_for_resumes_on_the_event_or_takes_the_timeout_path,
    fan_out_starts_children_and_waits_for_all,
    a_large_fan_out_is_committed_in_chunks_each_child_once,
    concurrent_deliveries_each_start_and_resume_their_runs,
    a_failing_delivery_among_concurrent_ones_fails_alone,
    concurrent_deliveries_with_repeated_ids_are_delivered_once,
    retryable_failures_back_off_exponentially_then_fail_the_run,
    a_step_that_gives_up_continues_at_its_on_error_step,
    failing_expressions_fail_the_run_readably,
    a_loop_without_waits_is_stopped_by_the_step_limit,
    timers_fire_and_can_be_recomputed_or_cancelled,
    a_run_keeps_its_workflow_version_after_the_file_changes,
    cron_fires_exactly_once_on_both_dst_switch_days,
    retention_prunes_finished_runs_but_keeps_failed_and_active_ones,
);

/// A cancelled run's expression stops where it is, and the worker it held goes on:
/// without that, this expression (10^10 steps, with the budget out of the way) would
/// hold the only worker for hours. On the multi-threaded runtime `kontor serve` uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_stops_its_expression_and_frees_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("workflows");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("hog.yaml"),
        "name: hog\nsteps:\n  - id: spin\n    set:\n      n: ${input.items.map(i, input.items.filter(j, j == i).size()).size()}\n",
    )
    .unwrap();
    std::fs::write(
        root.join("quick.yaml"),
        "name: quick\nsteps:\n  - id: done\n    end:\n      output: { ok: true }\n",
    )
    .unwrap();
    let catalog = kontor::workflow::Catalog::load(&root, None);
    assert!(
        catalog.all_diagnostics().is_empty(),
        "{:?}",
        catalog.all_diagnostics()
    );
    let store = kontor::store::Store::open(&database_url(dir.path()).await)
        .await
        .unwrap();
    let settings = kontor::engine::EngineSettings {
        workers: 1,
        poll_interval: std::time::Duration::from_millis(20),
        limits: kontor::engine::execute::Limits {
            expression_budget: u64::MAX,
            ..Default::default()
        },
        ..Default::default()
    };
    let engine = kontor::engine::Engine::new(
        store,
        std::sync::Arc::new(kontor::clock::SystemClock),
        catalog,
        settings,
        Default::default(),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = engine.spawn_workers(stopped);

    let items: Vec<u32> = (0..100_000).collect();
    let hog = engine
        .start_run("hog", json!({ "items": items }))
        .await
        .unwrap()
        .run_id;
    // Let the only worker take the job and sink into the expression.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let cancelled = engine.cancel_run(&hog).await.unwrap().unwrap();
    assert_eq!(cancelled, std::slice::from_ref(&hog));

    let quick = engine.start_run("quick", json!({})).await.unwrap().run_id;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let run = engine.store().runs().get(&quick).await.unwrap().unwrap();
        if run.status == RunStatus::Completed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker is still held by the cancelled run's expression"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let hog_run = engine.store().runs().get(&hog).await.unwrap().unwrap();
    assert_eq!(hog_run.status, RunStatus::Cancelled);
    let _ = stop.send(true);
    for worker in workers {
        worker.await.unwrap();
    }
}
