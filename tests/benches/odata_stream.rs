//! Streams the buyers of a series out of a real OData ERP into a workflow and reports
//! rows/s and the peak RSS of the `kontor serve` process.
//!
//! ```sh
//! cargo build --release -p kontor
//! cargo bench -p kontor-tests --bench odata_stream            # -- --customers 100000 --page 1000
//! ```
//!
//! SAP CAP (`tests/odata-server`) serves N generated customers, every one of whom owns a
//! heating controller of series HX-1; `kontor serve` (release, SQLite) runs
//! `tests/fixtures/odata/erp-audience.yaml`, which asks `plugins/odata-erp` for one page
//! of buyers per step until the cursor runs out. The peer: the same OData requests (taken
//! from the server's request log) replayed by a plain HTTP client without Kontor, so the
//! ratio shows what the sandbox, the engine and the store add on top of the ERP's own time.
//! `BENCH_VERBOSE=1` prints the process's RSS split (anonymous, file, shared) at every
//! sample.

use std::time::{Duration, Instant};

use kontor_tests::odata::{self, ErpServer};
use serde_json::json;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == &format!("--{name}"))
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        let lines: Vec<&str> = status
            .lines()
            .filter(|l| l.starts_with("Rss") || l.starts_with("VmRSS"))
            .collect();
        eprintln!("{}", lines.join(" | "));
    }
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; only our own flags matter.
    let customers = arg("customers", 100_000);
    let page = arg("page", 1000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("erp.sqlite");
    let started = Instant::now();
    odata::generate(customers, &db).unwrap();
    println!(
        "generated {customers} customers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let erp = ErpServer::serve(&db, dir.path().join("cds.log")).unwrap();

    let mut server = erp.kontor(&kontor_tests::fixture("odata"), "20s").unwrap();
    server.launch().unwrap();
    let pid = server.pid().expect("kontor serve runs");
    let (_, before) = memory(pid);
    erp.forget_requests().await.unwrap();

    let id = server
        .api
        .start_run(
            "erp-audience",
            &json!({"series": "HX-1", "page_size": page}),
        )
        .await;
    let mut peak_rss = 0;
    let run = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak_rss = peak_rss.max(memory(pid).0);
        // The runs list (without the step history, which holds every page).
        let (_, list) = server
            .api
            .get("/api/v1/runs?workflow=erp-audience&limit=1")
            .await
            .unwrap();
        let run = list["runs"][0].clone();
        assert_eq!(run["id"], id.as_str());
        match run["status"].as_str() {
            Some("completed") => break run,
            Some("failed") => panic!("the run failed: {}", run["error"]),
            _ => {}
        }
    };
    let (_, hwm) = memory(pid);
    let seconds = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(run[field].as_str().unwrap())
            .unwrap()
            .timestamp_micros() as f64
            / 1e6
    };
    let elapsed = seconds("finished_at") - seconds("created_at");
    let buyers = run["output"]["buyers"].as_u64().unwrap();
    assert_eq!(buyers as usize, customers, "{}", run["output"]);
    let rate = buyers as f64 / elapsed;

    // The peer: the same requests, replayed without Kontor.
    let requests = erp.requests().await.unwrap();
    let client = reqwest::Client::new();
    let replay_started = Instant::now();
    let mut bytes = 0;
    for path in &requests {
        let body = client
            .get(format!("{}{path}", erp.origin()))
            .basic_auth(odata::USER, Some(odata::PASSWORD))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        bytes += body.len();
    }
    let replay = replay_started.elapsed().as_secs_f64();

    // Where Kontor's time went, from its own Prometheus histograms (sum / count).
    let metrics = reqwest::get(format!("{}/metrics", server.api.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mean = |name: &str| {
        let value = |suffix: &str| {
            metrics
                .lines()
                .filter(|l| l.starts_with(&format!("{name}_{suffix}")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        let (sum, count) = (value("sum"), value("count"));
        format!("{count:.0} × {:.1} ms", 1000.0 * sum / count.max(1.0))
    };
    let replay_rate = buyers as f64 / replay;

    println!(
        "buyers streamed:        {buyers} in {} pages of {page} ({} OData requests, {:.1} MiB)",
        run["output"]["pages"],
        requests.len(),
        bytes as f64 / 1048576.0
    );
    println!("through Kontor:         {elapsed:.2} s, {rate:.0} rows/s");
    println!("replay without Kontor:  {replay:.2} s, {replay_rate:.0} rows/s");
    println!("ratio Kontor / replay:  {:.2}", rate / replay_rate);
    println!(
        "inside Kontor:          plugin calls {}, jobs {}, commits {}",
        mean("kontor_plugin_call_duration_seconds"),
        mean("kontor_job_duration_seconds"),
        mean("kontor_commit_duration_seconds")
    );
    println!(
        "kontor serve RSS:       peak while streaming {:.1} MiB (sampled every 250 ms), VmHWM {:.1} MiB (at start {:.1} MiB)",
        peak_rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        before as f64 / 1024.0
    );
}
