//! `kontor bench engine`: how fast the engine dispatches and commits steps, measured on a
//! real SQLite file in a temp folder or a scratch PostgreSQL database (optionally with
//! several processes working on it), counting only committed steps.
//!
//! - **throughput**: N runs of a one-step no-op workflow are stored first (not timed);
//!   then the workers execute them all. Steps/s = committed step records / elapsed.
//! - **latency**: runs of a 3-step workflow (`set` → `record` → `end`) are started one at
//!   a time through [`Engine::start_run`]; the time from the start call until the run's
//!   completion is committed is recorded; p50/p99 are printed. Its steps are pure, so a
//!   run commits once.
//! - **durable steps** (`--durable-steps N`): the same, for a workflow of N plugin steps
//!   (`lead-scoring`), each call's result committed before the next call is made — what a
//!   durable-execution engine that checkpoints every step does (the DBOS peer).
//!
//! On a terminal each phase shows a progress bar on stderr (see [`progress_bar`]); the
//! figures go to stdout, so a script or CI log gets only them.

pub mod email;
pub mod fan_out;

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
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

#[derive(Clone)]
pub struct EngineBenchOptions {
    pub runs: usize,
    pub latency_runs: usize,
    pub settings: EngineSettings,
    /// PostgreSQL server to make a scratch database on; `None`: a temp SQLite file.
    pub postgres: Option<String>,
    /// Processes working on the database (PostgreSQL only).
    pub processes: usize,
    /// Also measure a workflow of this many steps that each commit on their own: plugin
    /// steps calling `lead-scoring` from these plugins (`--durable-steps`).
    pub durable_steps: Option<(usize, Arc<kontor_plugins::PluginRegistry>)>,
}

/// A workflow of `steps` plugin steps: each call's result is committed before the next
/// call is made, as a durable-execution engine checkpoints every step.
fn durable_workflow(steps: usize) -> String {
    let mut yaml = String::from("name: durable\nsteps:\n");
    for n in 0..steps {
        yaml.push_str(&format!("  - id: step{n}\n    plugin: lead-scoring\n"));
    }
    yaml
}

/// The README's lead, as the durable-steps workflow's input.
fn bench_lead(n: usize) -> serde_json::Value {
    json!({
        "id": format!("L-{n}"), "email": "m.mueller@example.de", "company": "Müller Maschinenbau GmbH",
        "country": "DE", "employees": 400, "title": "Leitung Einkauf", "postal_code": "80331",
        "industry": "maschinenbau", "product": "A", "quote_requested": true,
    })
}

/// The database a benchmark measures on: a scratch database next to the PostgreSQL one
/// `postgres` names (dropped by [`clean_up`]), or a SQLite file in `dir`.
pub(crate) async fn bench_database(
    dir: &std::path::Path,
    postgres: Option<&str>,
) -> anyhow::Result<String> {
    Ok(match postgres {
        Some(server) => crate::store::scratch_postgres_database(server, "kontor_bench").await?,
        None => format!("sqlite://{}/bench.db", dir.display()),
    })
}

/// The lines every benchmark starts with: which store, and how durable its commits are.
pub(crate) async fn print_store(bench: &str, store: &Store, url: &str) -> anyhow::Result<()> {
    println!("kontor bench {bench}");
    println!("  store: {} {}", store.backend(), crate::store::redact(url));
    println!("  durability: {}", store.durability().await?);
    Ok(())
}

/// Closes the store, drops the scratch database (if on PostgreSQL) and the temp folder.
pub(crate) async fn clean_up(
    store: Store,
    dir: &std::path::Path,
    postgres: Option<&str>,
    url: &str,
) -> anyhow::Result<()> {
    drop(store);
    if let Some(server) = postgres {
        crate::store::drop_scratch_postgres_database(server, url)
            .await
            .context("dropping the scratch database")?;
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// `workflows` (name, YAML) in a temp folder, and an engine on `url` running them with
/// these plugins.
pub(crate) async fn bench_engine(
    dir: &std::path::Path,
    url: &str,
    settings: EngineSettings,
    workflows: &[(&str, String)],
    plugins: Option<Arc<kontor_plugins::PluginRegistry>>,
) -> anyhow::Result<(Store, Arc<Engine>)> {
    let folder = dir.join("workflows");
    std::fs::create_dir_all(&folder)?;
    for (name, yaml) in workflows {
        std::fs::write(folder.join(format!("{name}.yaml")), yaml)?;
    }
    let store = Store::open(url).await?;
    let index = plugins
        .as_ref()
        .map(|p| crate::workflow::PluginIndex::from_registry(p));
    let catalog = Catalog::load(&folder, index.as_ref());
    anyhow::ensure!(
        catalog.all_diagnostics().is_empty(),
        "bench workflows are invalid: {:?}",
        catalog.all_diagnostics()
    );
    let engine = Engine::new(
        store.clone(),
        Arc::new(SystemClock),
        catalog,
        settings,
        crate::engine::EngineServices {
            plugins,
            channels: None,
        },
    );
    Ok((store, engine))
}

/// The workflows of `bench engine`.
fn engine_workflows(durable_steps: Option<usize>) -> Vec<(&'static str, String)> {
    let mut workflows = vec![
        ("noop", NOOP.to_string()),
        ("three", THREE_STEPS.to_string()),
    ];
    if let Some(steps) = durable_steps {
        workflows.push(("durable", durable_workflow(steps)));
    }
    workflows
}

/// A helper process of a multi-process benchmark: opens the engine, says `ready`, waits
/// for a line on stdin, then works until stdin closes.
pub async fn engine_helper(url: &str, settings: EngineSettings) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile_dir()?;
    let (_store, engine) = bench_engine(&dir, url, settings, &engine_workflows(None), None).await?;
    println!("ready");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    lines.next_line().await?;
    let (stop, stopped) = watch::channel(false);
    let workers = engine.spawn_workers(stopped);
    while lines.next_line().await?.is_some() {}
    let _ = stop.send(true);
    for w in workers {
        let _ = w.await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts `count` helper processes on `url` and waits until each is ready.
async fn start_helpers(
    url: &str,
    settings: &EngineSettings,
    count: usize,
) -> anyhow::Result<Vec<tokio::process::Child>> {
    use tokio::io::AsyncBufReadExt;
    let mut helpers = Vec::with_capacity(count);
    for _ in 0..count {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["bench", "engine-helper", url])
            .args(["--workers", &settings.workers.to_string()])
            .args(["--batch-size", &settings.batch_size.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a helper process")?;
        let stdout = child.stdout.take().context("helper stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        anyhow::ensure!(
            lines.next_line().await?.as_deref() == Some("ready"),
            "a helper process did not start"
        );
        helpers.push(child);
    }
    Ok(helpers)
}

pub async fn engine(options: EngineBenchOptions) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let url = bench_database(&dir, options.postgres.as_deref()).await?;
    let (store, engine) = bench_engine(
        &dir,
        &url,
        options.settings.clone(),
        &engine_workflows(options.durable_steps.as_ref().map(|(steps, _)| *steps)),
        options
            .durable_steps
            .as_ref()
            .map(|(_, plugins)| plugins.clone()),
    )
    .await?;

    print_store("engine", &store, &url).await?;
    println!(
        "  engine: {} process(es) x {} workers, batches of {} jobs",
        options.processes, options.settings.workers, options.settings.batch_size
    );

    // Throughput: store the runs first, then let the workers go.
    let noop = engine
        .catalog()
        .get("noop")
        .cloned()
        .context("noop workflow")?;
    let bar = progress_bar(options.runs, "storing runs");
    let mut pending = Vec::with_capacity(1000);
    for _ in 0..options.runs {
        pending.push(engine.new_run(&noop, json!({}), None)?);
        if pending.len() == 1000 {
            store.runs().start(&pending, chrono::Utc::now()).await?;
            bar.inc(pending.len() as u64);
            pending.clear();
        }
    }
    store.runs().start(&pending, chrono::Utc::now()).await?;
    bar.finish_and_clear();
    let mut helpers = start_helpers(&url, &options.settings, options.processes - 1).await?;
    let before = store.runs().committed_steps().await?;
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    for helper in &mut helpers {
        use tokio::io::AsyncWriteExt;
        helper
            .stdin
            .as_mut()
            .context("helper stdin")?
            .write_all(b"go\n")
            .await?;
    }
    let workers = engine.spawn_workers(stopped.clone());
    // Counting PostgreSQL's jobs costs more CPU than reading SQLite's: look less often.
    let poll = StdDuration::from_millis(if store.is_shared() { 10 } else { 2 });
    let bar = progress_bar(options.runs, "throughput");
    let (mut last, mut progressed) = (i64::MAX, Instant::now());
    loop {
        let left = store.jobs().pending().await?;
        if left == 0 {
            break;
        }
        if left < last {
            (last, progressed) = (left, Instant::now());
        }
        anyhow::ensure!(
            progressed.elapsed() < StdDuration::from_secs(30),
            "no job was committed for 30 s ({left} left): the engine's log says why"
        );
        bar.set_position(options.runs.saturating_sub(left as usize) as u64);
        tokio::time::sleep(poll).await;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let steps = store.runs().committed_steps().await? - before;
    for mut helper in helpers {
        drop(helper.stdin.take());
        let _ = helper.wait().await;
    }
    println!(
        "  throughput: {steps} no-op steps committed in {:.2} s = {:.0} steps/s",
        elapsed.as_secs_f64(),
        steps as f64 / elapsed.as_secs_f64()
    );

    // Latency of a 3-step workflow, one run at a time.
    let latencies =
        sequential_runs(&engine, "three", options.latency_runs, |n| json!({"n": n})).await?;
    print_latencies("3-step workflow end to end", &latencies);
    if let Some((steps, _)) = &options.durable_steps {
        let latencies =
            sequential_runs(&engine, "durable", options.latency_runs, bench_lead).await?;
        let total: StdDuration = latencies.iter().sum();
        print_latencies(
            &format!("{steps} durable steps (a plugin call each, each committed)"),
            &latencies,
        );
        println!(
            "    = {:.0} workflows/s one at a time",
            latencies.len() as f64 / total.as_secs_f64()
        );
    }
    let _ = stop.send(true);
    for w in workers {
        let _ = w.await;
    }
    drop(engine);
    clean_up(store, &dir, options.postgres.as_deref(), &url).await
}

/// Starts `count` runs of `workflow` one after another, each once the previous one has
/// completed; returns each run's time from the start call until its completion was
/// committed, sorted.
async fn sequential_runs(
    engine: &Engine,
    workflow: &'static str,
    count: usize,
    input: impl Fn(usize) -> serde_json::Value,
) -> anyhow::Result<Vec<StdDuration>> {
    let mut finished = engine.subscribe_finished();
    let mut latencies = Vec::with_capacity(count);
    let bar = progress_bar(count, "latency");
    for n in 0..count {
        let t0 = Instant::now();
        let run = engine.start_run(workflow, input(n)).await?.run_id;
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
        bar.inc(1);
    }
    bar.finish_and_clear();
    latencies.sort();
    Ok(latencies)
}

fn print_latencies(what: &str, latencies: &[StdDuration]) {
    let Some(max) = latencies.last() else { return };
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "  {what} ({} runs): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

/// A bar over `len` items of one benchmark phase, on stderr. indicatif draws nothing
/// when stderr is not a terminal, so scripts and CI logs see only the figures; a bar is
/// cleared before its phase's figures are printed.
pub(crate) fn progress_bar(len: usize, phase: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>14} [{bar:30}] {human_pos}/{human_len} {per_sec:>12} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(phase);
    bar
}

pub fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("kontor-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Options of `kontor bench plugin`.
#[derive(Debug, Clone)]
pub struct PluginBenchOptions {
    pub path: std::path::PathBuf,
    pub input: serde_json::Value,
    pub calls: usize,
    pub tasks: usize,
}

/// `kontor bench plugin`: the cost of one plugin call (fresh instance from the
/// `InstancePre`, fresh store, input check, call, output parse) one at a time (p50/p99)
/// and from several tasks at once (calls/s); and the start-up cost of a plugin without
/// and with the on-disk code cache.
pub async fn plugin(options: PluginBenchOptions) -> anyhow::Result<()> {
    use kontor_plugins::{Invocation, PluginRuntime, PluginSettings, RuntimeSettings};
    let dir = tempfile_dir()?;
    let settings = RuntimeSettings {
        cache_dir: Some(dir.join("cache")),
        ..RuntimeSettings::default()
    };
    println!("kontor bench plugin");
    println!(
        "  component: {} ({} KiB)",
        options.path.display(),
        std::fs::metadata(&options.path)?.len() / 1024
    );
    println!(
        "  cores: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let spinner = ProgressBar::new_spinner();
    spinner.set_message("start-up: compiling, then loading from the disk cache …");
    spinner.tick();
    let t0 = Instant::now();
    let cold = PluginRuntime::new(&settings).map_err(anyhow::Error::msg)?;
    cold.load("bench", &options.path, PluginSettings::default())
        .await?;
    let compile = t0.elapsed();
    drop(cold);
    let t0 = Instant::now();
    let runtime = PluginRuntime::new(&settings).map_err(anyhow::Error::msg)?;
    let plugin = Arc::new(
        runtime
            .load("bench", &options.path, PluginSettings::default())
            .await?,
    );
    let cached = t0.elapsed();
    spinner.finish_and_clear();
    println!(
        "  start-up (runtime + load + describe): {:.1} ms compiling, {:.1} ms from the disk cache (as after a restart)",
        compile.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3
    );

    let invocation = Invocation {
        run_id: "bench".into(),
        workflow: "bench".into(),
        step: "bench".into(),
        attempt: 1,
    };
    if let Err(f) = plugin.call(&invocation, &options.input).await {
        anyhow::bail!("the benchmark call fails: {}", f.error);
    }
    for _ in 0..1000 {
        let _ = plugin.call_in_place(&invocation, &options.input).await;
    }
    for (what, hop) in [
        ("instantiate + call, in place", false),
        (
            "instantiate + call via the plugin threads (as the engine calls)",
            true,
        ),
    ] {
        let mut latencies = Vec::with_capacity(options.calls);
        let bar = progress_bar(options.calls, if hop { "via threads" } else { "in place" });
        for _ in 0..options.calls {
            let t = Instant::now();
            let result = if hop {
                plugin.call(&invocation, &options.input).await
            } else {
                plugin.call_in_place(&invocation, &options.input).await
            };
            latencies.push(t.elapsed());
            bar.inc(1);
            anyhow::ensure!(result.is_ok(), "a call failed during the benchmark");
        }
        bar.finish_and_clear();
        latencies.sort();
        let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "  {what} ({} calls, one at a time): p50 {:.1} µs, p99 {:.1} µs",
            latencies.len(),
            pick(0.5).as_secs_f64() * 1e6,
            pick(0.99).as_secs_f64() * 1e6
        );
    }

    let tasks = options.tasks.max(1);
    let per_task = options.calls / tasks;
    let bar = progress_bar(per_task * tasks, "throughput");
    let t0 = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let plugin = plugin.clone();
            let input = options.input.clone();
            let invocation = invocation.clone();
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut failed = 0usize;
                for _ in 0..per_task {
                    failed += usize::from(plugin.call(&invocation, &input).await.is_err());
                    bar.inc(1);
                }
                failed
            })
        })
        .collect();
    let mut failed = 0;
    for h in handles {
        failed += h.await?;
    }
    let elapsed = t0.elapsed();
    bar.finish_and_clear();
    anyhow::ensure!(failed == 0, "{failed} calls failed during the benchmark");
    println!(
        "  throughput ({tasks} tasks on the multi-threaded runtime): {} calls in {:.2} s = {:.0} calls/s",
        per_task * tasks,
        elapsed.as_secs_f64(),
        (per_task * tasks) as f64 / elapsed.as_secs_f64()
    );
    drop(plugin);
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The process's peak resident set (`VmHWM`), in KiB; 0 where /proc is missing.
pub(crate) fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}
