//! Shared fixtures: an engine over a real SQLite file in a temp dir, a manual clock and a
//! workflows folder written by the test.

#![allow(dead_code)]

pub mod router;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use kontor::clock::ManualClock;
use kontor::engine::{Engine, EngineSettings};
use kontor::run::StepRecord;
use kontor::store::{RunView, Store};
use kontor::workflow::Catalog;
use serde_json::Value;

#[allow(unused_imports)] // each test binary uses a different part
pub use kontor::store::testing::{BACKEND, Backend, postgres_admin_url};

/// A database for this test: a SQLite file in `dir`, or a fresh PostgreSQL database.
pub async fn database_url(dir: &Path) -> String {
    match kontor::store::testing::backend() {
        Backend::Sqlite => format!("sqlite://{}/kontor.db", dir.display()),
        Backend::Postgres => {
            let admin = postgres_admin_url().expect("the postgres variant checks the URL first");
            kontor::store::scratch_postgres_database(&admin, "kontor_test")
                .await
                .unwrap()
        }
    }
}

pub struct Fixture {
    pub engine: Arc<Engine>,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
}

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
}

pub const OFFICE_CALENDAR: &str = "timezone: Europe/Berlin
working_hours:
  mon: [\"08:00-17:00\"]
  tue: [\"08:00-17:00\"]
  wed: [\"08:00-17:00\"]
  thu: [\"08:00-17:00\"]
  fri: [\"08:00-17:00\"]
holidays:
  german_state: BY
";

/// Writes `workflows` (name, yaml) and the office calendar into a temp folder and opens an
/// engine on it, its clock at `start`.
pub async fn fixture(start: &str, workflows: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("workflows");
    std::fs::create_dir_all(root.join("calendars")).unwrap();
    std::fs::write(root.join("calendars/office.yaml"), OFFICE_CALENDAR).unwrap();
    for (name, yaml) in workflows {
        std::fs::write(root.join(format!("{name}.yaml")), yaml).unwrap();
    }
    open(dir, start).await
}

/// A fixture on the repository's own `workflows/` folder.
pub async fn shipped_workflows(start: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(at(start)));
    let store = Store::open(&database_url(dir.path()).await).await.unwrap();
    let catalog = Catalog::load(Path::new("../workflows"), None);
    assert!(
        catalog.all_diagnostics().is_empty(),
        "{:?}",
        catalog.all_diagnostics()
    );
    with_engine(store, catalog, clock, dir)
}

/// A fixture's engine: default settings, no plugins, no email channels.
fn with_engine(
    store: Store,
    catalog: Catalog,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
) -> Fixture {
    let engine = Engine::new(
        store,
        clock.clone(),
        catalog,
        EngineSettings::default(),
        Default::default(),
    );
    Fixture { engine, clock, dir }
}

async fn open(dir: tempfile::TempDir, start: &str) -> Fixture {
    let clock = Arc::new(ManualClock::new(at(start)));
    let store = Store::open(&database_url(dir.path()).await).await.unwrap();
    let catalog = Catalog::load(&dir.path().join("workflows"), None);
    let problems = catalog.all_diagnostics();
    assert!(
        problems.is_empty(),
        "{}",
        problems
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    with_engine(store, catalog, clock, dir)
}

impl Fixture {
    pub async fn start(&self, workflow: &str, input: Value) -> String {
        self.engine.start_run(workflow, input).await.unwrap().run_id
    }

    /// Runs every job due now.
    pub async fn settle(&self) {
        self.engine.drain().await.unwrap();
    }

    /// Advances the clock and runs everything that became due.
    pub async fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
        self.engine.fire_due_cron().await.unwrap();
        self.settle().await;
    }

    /// Advances the clock in steps, running what becomes due after each, as a server
    /// whose workers are never late would.
    pub async fn advance_in_steps(&self, total: chrono::Duration, step: chrono::Duration) {
        let mut done = chrono::Duration::zero();
        while done < total {
            self.advance(step).await;
            done += step;
        }
    }

    pub async fn run(&self, id: &str) -> RunView {
        self.engine.store().runs().get(id).await.unwrap().unwrap()
    }

    pub async fn history(&self, id: &str) -> Vec<StepRecord> {
        self.engine.store().runs().steps(id).await.unwrap()
    }

    pub async fn steps(&self, id: &str) -> Vec<String> {
        self.history(id)
            .await
            .iter()
            .map(|s| format!("{}:{}", s.step, s.status.as_str()))
            .collect()
    }

    pub async fn event(&self, event_type: &str, key: &str, payload: Value) {
        self.engine
            .deliver_event(
                kontor::run::NewEvent {
                    event_type: event_type.into(),
                    key: key.into(),
                    payload,
                },
                None,
            )
            .await
            .unwrap();
        self.settle().await;
    }

    pub async fn records(&self, collection: &str) -> Vec<(String, Value)> {
        self.engine
            .store()
            .records()
            .list(collection)
            .await
            .unwrap()
    }
}
