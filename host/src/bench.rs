//! `kontor bench engine`: how fast the engine dispatches and commits steps, measured on a
//! real SQLite file in a temp folder, counting only committed steps.
//!
//! - **throughput**: N runs of a one-step no-op workflow are stored first (not timed);
//!   then the workers execute them all. Steps/s = committed step records / elapsed.
//! - **latency**: runs of a 3-step workflow (`set` → `record` → `end`) are started one at
//!   a time through [`Engine::start_run`]; the time from the start call until the run's
//!   completion is committed is recorded; p50/p99 are printed.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::sync::watch;

use crate::clock::SystemClock;
use crate::engine::{Engine, EngineSettings};
use crate::store::Store;
use crate::workflow::Catalog;

const NOOP: &str = "name: noop\nsteps:\n  - id: nothing\n    set: {}\n";
const THREE_STEPS: &str = "name: three
steps:
  - id: compute
    set:
      total: \"${input.n * 2}\"
  - id: save
    record:
      collection: bench
      key: string(input.n)
      data:
        total: \"${vars.total}\"
  - id: done
    end:
      output:
        total: \"${vars.total}\"
";

#[derive(Debug, Clone)]
pub struct EngineBenchOptions {
    pub runs: usize,
    pub latency_runs: usize,
    pub settings: EngineSettings,
}

pub async fn engine(options: EngineBenchOptions) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let workflows = dir.join("workflows");
    std::fs::create_dir_all(&workflows)?;
    std::fs::write(workflows.join("noop.yaml"), NOOP)?;
    std::fs::write(workflows.join("three.yaml"), THREE_STEPS)?;
    let url = format!("sqlite://{}/bench.db", dir.display());
    let store = Store::open(&url).await?;
    let catalog = Catalog::load(&workflows);
    anyhow::ensure!(
        catalog.all_diagnostics().is_empty(),
        "bench workflows are invalid"
    );
    let engine = Engine::new(
        store.clone(),
        Arc::new(SystemClock),
        catalog,
        options.settings.clone(),
    );

    println!("kontor bench engine");
    println!("  store: SQLite {url}");
    println!("  durability: {}", store.durability().await?);
    println!(
        "  engine: {} workers, batches of {} jobs",
        options.settings.workers, options.settings.batch_size
    );

    // Throughput: store the runs first, then let the workers go.
    let noop = engine
        .catalog()
        .get("noop")
        .cloned()
        .context("noop workflow")?;
    let mut pending = Vec::with_capacity(1000);
    for _ in 0..options.runs {
        pending.push(engine.new_run(&noop, json!({}), None)?);
        if pending.len() == 1000 {
            store.start_runs(&pending, chrono::Utc::now()).await?;
            pending.clear();
        }
    }
    store.start_runs(&pending, chrono::Utc::now()).await?;
    let before = store.committed_steps().await?;
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let workers = engine.spawn_workers(stopped.clone());
    while store.pending_jobs().await? > 0 {
        tokio::time::sleep(StdDuration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let steps = store.committed_steps().await? - before;
    println!(
        "  throughput: {steps} no-op steps committed in {:.2} s = {:.0} steps/s",
        elapsed.as_secs_f64(),
        steps as f64 / elapsed.as_secs_f64()
    );

    // Latency of a 3-step durable workflow, one run at a time.
    let mut finished = engine.subscribe_finished();
    let mut latencies = Vec::with_capacity(options.latency_runs);
    for n in 0..options.latency_runs {
        let t0 = Instant::now();
        let run = engine.start_run("three", json!({"n": n})).await?.run_id;
        loop {
            match tokio::time::timeout(StdDuration::from_secs(10), finished.recv()).await {
                Ok(Ok(id)) if id == run => break,
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    continue;
                }
                Ok(Err(e)) => anyhow::bail!("completion feed closed: {e}"),
                Err(_) => anyhow::bail!("run {run} did not complete within 10 s"),
            }
        }
        latencies.push(t0.elapsed());
    }
    let _ = stop.send(true);
    for w in workers {
        let _ = w.await;
    }
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    if !latencies.is_empty() {
        println!(
            "  3-step workflow end to end ({} runs): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            latencies.len(),
            pick(0.5).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3,
            latencies[latencies.len() - 1].as_secs_f64() * 1e3
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("kontor-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
