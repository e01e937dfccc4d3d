//! `kontor bench fan-out`: how fast one `start` with `for_each` creates its children,
//! at several sizes, on a real SQLite file (or a scratch PostgreSQL database).
//!
//! For each size a parent run is started with that many customers in its input (about
//! 200 bytes each, as a recall campaign's audience); its `start` step fans out one child
//! per customer, in committed chunks. The figure is the time from the start call until
//! the last child is committed, counted in the store, as children/s; then the time until
//! every child has run (each does one `set`) and the parent has finished. A rate that
//! holds from 1,000 to 100,000 children shows the fan-out is linear in its size.

use std::time::{Duration as StdDuration, Instant};

use serde_json::json;
use tokio::sync::watch;

use crate::engine::EngineSettings;

const PARENT: &str = "name: campaign
steps:
  - id: contact_all
    start:
      workflow: contact
      for_each: input.customers
      input:
        campaign: ${input.campaign}
        customer: ${item}
  - id: all_done
    wait_children: {}
";
const CHILD: &str = "name: contact
input:
  type: object
  required: [campaign, customer]
steps:
  - id: note
    set:
      contacted: ${input.customer.id}
";

#[derive(Debug, Clone)]
pub struct FanOutBenchOptions {
    /// Children per fan-out, one measurement each.
    pub sizes: Vec<usize>,
    pub settings: EngineSettings,
    /// PostgreSQL server to make a scratch database on; `None`: a temp SQLite file.
    pub postgres: Option<String>,
}

pub async fn run(options: FanOutBenchOptions) -> anyhow::Result<()> {
    let dir = super::tempfile_dir()?;
    let url = super::bench_database(&dir, options.postgres.as_deref()).await?;
    let mut settings = options.settings.clone();
    settings.limits.max_children_per_step = settings
        .limits
        .max_children_per_step
        .max(options.sizes.iter().copied().max().unwrap_or(0));
    let workflows = [
        ("campaign", PARENT.to_string()),
        ("contact", CHILD.to_string()),
    ];
    let (store, engine) = super::bench_engine(&dir, &url, settings, &workflows, None).await?;
    super::print_store("fan-out", &store, &url).await?;
    println!(
        "  one `start` with `for_each`, committed in chunks of at least {} children, at most {} chunks",
        crate::steps::start::FAN_OUT_CHUNK,
        crate::steps::start::FAN_OUT_MAX_CHUNKS
    );
    let (stop, stopped) = watch::channel(false);
    let workers = engine.spawn_workers(stopped);
    let mut finished = engine.subscribe_finished();
    for &size in &options.sizes {
        let customers: Vec<serde_json::Value> = (0..size)
            .map(|n| {
                json!({
                    "id": format!("K-{n:06}"), "name": format!("Müller & Söhne GmbH {n}"),
                    "email": format!("einkauf{n}@example.de"), "channel": "email", "locale": "de",
                    "serial_numbers": [format!("SN-{n:06}-A"), format!("SN-{n:06}-B")],
                })
            })
            .collect();
        let input = json!({"campaign": format!("bench-{size}"), "customers": customers});
        let t0 = Instant::now();
        let parent = engine.start_run("campaign", input).await?.run_id;
        let bar = super::progress_bar(size, "children");
        let created = loop {
            let counts = store.runs().child_counts(&parent).await?;
            bar.set_position(counts.total as u64);
            if counts.total as usize >= size {
                break t0.elapsed();
            }
            anyhow::ensure!(
                t0.elapsed() < StdDuration::from_secs(600),
                "{size} children were not created within 10 minutes ({} were)",
                counts.total
            );
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        };
        bar.finish_and_clear();
        loop {
            match tokio::time::timeout(StdDuration::from_secs(600), finished.recv()).await {
                Ok(Ok(id)) if id == parent => break,
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => anyhow::bail!("completion feed closed: {e}"),
                Err(_) => anyhow::bail!("the parent of {size} children did not finish in 10 min"),
            }
        }
        let all_done = t0.elapsed();
        let counts = store.runs().child_counts(&parent).await?;
        anyhow::ensure!(
            counts.total as usize == size && counts.completed as usize == size,
            "expected {size} completed children, found {counts:?}"
        );
        println!(
            "  {size:>7} children: created in {:.2} s = {:.0} children/s; all run and the parent done in {:.2} s; peak RSS {:.0} MiB",
            created.as_secs_f64(),
            size as f64 / created.as_secs_f64(),
            all_done.as_secs_f64(),
            super::peak_rss_kib() as f64 / 1024.0
        );
    }
    let _ = stop.send(true);
    for w in workers {
        let _ = w.await;
    }
    drop(engine);
    super::clean_up(store, &dir, options.postgres.as_deref(), &url).await
}
