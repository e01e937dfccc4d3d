//! Runs: starting them (idempotently by trigger or by an API idempotency key), the state
//! a job executes against, the views and step history the API shows, cancel and retry.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;
use sqlx::Row;

use super::BeginWrite;
use super::jobs::insert_jobs;
use super::rows::{child_counts, run_view, step_record};
use super::transaction::{Notice, Tx, on_tx};
use super::{Backend, Store, StoreError, millis};
use crate::run::{NewJob, NewRun, RunState, RunStatus, Started, StepRecord};

/// Runs and their history. Made by [`Store::runs`].
#[derive(Clone, Copy)]
pub struct Runs<'a> {
    pub(super) store: &'a Store,
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: String,
    pub workflow: String,
    /// SHA-256 of the workflow file the run started with.
    pub version: String,
    /// The workflow's domain when the run started (`leads`, `tickets`, `campaigns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub status: RunStatus,
    #[schema(value_type = Object)]
    pub input: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// `{"vars": {...}, "steps": {...}}`
    #[schema(value_type = Object)]
    pub context: Json,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// Filters and a cursor for listing runs (newest first).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
    pub parent_id: Option<String>,
    /// Only runs created before this run (the previous page's last id).
    pub before: Option<String>,
    /// Only runs created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only runs created before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Only runs of these domains, and runs without one; `None`: every run.
    pub domains: Option<Vec<&'static str>>,
    pub limit: u32,
}

/// Child runs of a parent, counted by status.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ChildCounts {
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub running: i64,
}

/// Why a run cannot be retried.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryRefused {
    NotFound,
    /// Only failed runs are retried; this is the run's status.
    NotFailed(String),
}

/// An answer kept for an idempotency key: status code and exact body.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
}

/// What a start with an idempotency key did.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotentStart {
    /// The run was started now; the given answer was stored.
    Started,
    /// The key was used before, for a request with this body hash and this answer.
    Replay {
        request_hash: String,
        answer: StoredAnswer,
    },
}

impl Runs<'_> {
    /// Starts runs (each with its first job), idempotently by trigger key.
    pub async fn start(
        self,
        runs: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<Vec<Started>, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::runs::start(db, runs, now).await,
            Backend::Postgres(db) => super::postgres::runs::start(db, runs, now).await,
        }
    }

    /// Starts `run` unless `key` was used before; stores the answer for replays.
    pub async fn start_once(
        self,
        run: &NewRun,
        key: &str,
        request_hash: &str,
        answer: &StoredAnswer,
        now: DateTime<Utc>,
    ) -> Result<IdempotentStart, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => {
                super::sqlite::runs::start_once(db, run, key, request_hash, answer, now).await
            }
            Backend::Postgres(db) => {
                super::postgres::runs::start_once(db, run, key, request_hash, answer, now).await
            }
        }
    }

    /// The state of several runs in one query (the runs of a claimed batch).
    pub async fn load(self, ids: &[&str]) -> Result<Vec<RunState>, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::runs::load(db, ids).await,
            Backend::Postgres(db) => super::postgres::runs::load(db, ids).await,
        }
    }

    /// One run as the API shows it.
    pub async fn get(self, id: &str) -> Result<Option<RunView>, StoreError> {
        on_reader!(self.store, |pool| {
            let row = sqlx::query("SELECT * FROM runs WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.map(|r| run_view(&r)).transpose()
        })
    }

    /// Runs by workflow, status and parent, newest first, a page at a time.
    pub async fn list(self, filter: &RunFilter) -> Result<Vec<RunView>, StoreError> {
        // Fixed SQL with optional filters: `CAST($n AS …) IS NULL OR column = $n`.
        on_reader!(self.store, |pool| {
            let rows = sqlx::query(
                "SELECT * FROM runs
                 WHERE (CAST($1 AS TEXT) IS NULL OR workflow = $1)
                   AND (CAST($2 AS TEXT) IS NULL OR status = $2)
                   AND (CAST($3 AS TEXT) IS NULL OR parent_id = $3)
                   AND (CAST($4 AS TEXT) IS NULL OR (created_at, id) < (SELECT created_at, id FROM runs WHERE id = $4))
                   AND (CAST($6 AS BIGINT) IS NULL OR created_at >= $6)
                   AND (CAST($7 AS BIGINT) IS NULL OR created_at < $7)
                   AND (CAST($8 AS TEXT) IS NULL OR domain IS NULL
                        OR (' ' || $8 || ' ') LIKE ('% ' || domain || ' %'))
                 ORDER BY created_at DESC, id DESC
                 LIMIT $5",
            )
            .bind(&filter.workflow)
            .bind(filter.status.map(RunStatus::as_str))
            .bind(&filter.parent_id)
            .bind(&filter.before)
            .bind(i64::from(filter.limit.clamp(1, 1000)))
            .bind(filter.created_after.map(millis))
            .bind(filter.created_before.map(millis))
            .bind(filter.domains.as_ref().map(|d| d.join(" ")))
            .fetch_all(pool)
            .await?;
            rows.iter().map(run_view).collect()
        })
    }

    /// Every step execution of a run, in order.
    pub async fn steps(self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        on_reader!(self.store, |pool| {
            let rows = sqlx::query("SELECT * FROM step_runs WHERE run_id = $1 ORDER BY id")
                .bind(run_id)
                .fetch_all(pool)
                .await?;
            rows.iter().map(step_record).collect()
        })
    }

    /// The child runs of a parent, counted by status.
    pub async fn child_counts(self, parent_id: &str) -> Result<ChildCounts, StoreError> {
        on_reader!(self.store, |pool| {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT status, count(*) AS n FROM runs WHERE parent_id = $1 GROUP BY status",
            )
            .bind(parent_id)
            .fetch_all(pool)
            .await?;
            Ok(child_counts(&rows))
        })
    }

    /// The stored source of a workflow version (for runs whose file has changed since).
    pub async fn workflow_source(
        self,
        version: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        on_reader!(self.store, |pool| {
            let row = sqlx::query("SELECT name, source FROM workflow_versions WHERE version = $1")
                .bind(version)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| (r.get("name"), r.get("source"))))
        })
    }

    /// Step records committed so far (benchmarks count these).
    pub async fn committed_steps(self) -> Result<i64, StoreError> {
        on_reader!(self.store, |pool| Ok(sqlx::query_scalar(
            "SELECT count(*) FROM step_runs"
        )
        .fetch_one(pool)
        .await?))
    }

    /// Cancels a run that has not finished, and all its descendants; returns the
    /// cancelled run ids, or `None` if the run does not exist.
    pub async fn cancel(
        self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        match &self.store.backend {
            Backend::Sqlite(db) => super::sqlite::runs::cancel(db, id, now).await,
            Backend::Postgres(db) => super::postgres::runs::cancel(db, id, now).await,
        }
    }

    /// Puts a failed run back to work at the step that failed, with a fresh attempt
    /// count; the run keeps its workflow version. Returns the step, or why not.
    pub async fn retry(
        self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<String, RetryRefused>, StoreError> {
        on_writer!(self.store, |pool| {
            let mut transaction = pool.begin_write().await?;
            let tx = &mut Tx::from(&mut *transaction);
            tx.lock_run(id).await?;
            let row: Option<(String, Option<String>)> = on_tx!(tx, |conn| sqlx::query_as(
                "SELECT status, current_step FROM runs WHERE id = $1"
            )
            .bind(id)
            .fetch_optional(conn)
            .await)?;
            let Some((status, step)) = row else {
                return Ok(Err(RetryRefused::NotFound));
            };
            let Some(step) = step.filter(|_| status == "failed") else {
                return Ok(Err(RetryRefused::NotFailed(status)));
            };
            on_tx!(tx, |conn| {
                sqlx::query(
                "UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, updated_at = $1 WHERE id = $2",
            )
            .bind(millis(now))
            .bind(id)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
            })?;
            insert_jobs(tx, &[(id, &NewJob::step(&step, now))]).await?;
            tx.notify(Notice::Work).await?;
            transaction.commit().await?;
            Ok(Ok(step))
        })
    }
}

/// Inserts a run and its first job inside a transaction, unless its trigger key started
/// a run before; `version_stored` skips storing the workflow version.
pub(super) async fn insert_run(
    tx: &mut Tx<'_>,
    run: &NewRun,
    version_stored: bool,
    now: DateTime<Utc>,
) -> Result<Started, StoreError> {
    if let Some(key) = &run.trigger_key {
        let existing: Option<String> = on_tx!(tx, |conn| sqlx::query_scalar(
            "SELECT id FROM runs WHERE trigger_key = $1"
        )
        .bind(key)
        .fetch_optional(conn)
        .await)?;
        if let Some(run_id) = existing {
            return Ok(Started {
                run_id,
                created: false,
            });
        }
    }
    insert_new_run(tx, run, version_stored, now).await
}

/// [`insert_run`] for a run whose trigger key cannot have been used (one made from an
/// event id this transaction inserted): no lookup first.
pub(super) async fn insert_new_run(
    tx: &mut Tx<'_>,
    run: &NewRun,
    version_stored: bool,
    now: DateTime<Utc>,
) -> Result<Started, StoreError> {
    if !version_stored {
        store_version(tx, run, now).await?;
    }
    on_tx!(tx, |conn| {
        sqlx::query(
        "INSERT INTO runs (id, workflow, version, status, input, context, current_step, parent_id,
                           depth, trigger_key, events_after, created_at, updated_at, domain)
         VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $8, $9, (SELECT coalesce(max(id), 0) FROM events), $10, $10, $11)",
    )
    .bind(&run.id)
    .bind(&run.workflow)
    .bind(&run.version)
    .bind(run.input.to_string())
    .bind(serde_json::json!({"vars": {}, "steps": {}}).to_string())
    .bind(&run.first_step)
    .bind(&run.parent_id)
    .bind(run.depth)
    .bind(&run.trigger_key)
    .bind(millis(now))
    .bind(&run.domain)
    .execute(conn)
    .await
    .map(|done| done.rows_affected())
    })?;
    let first = NewJob::step(&run.first_step, run.due_at);
    insert_jobs(tx, &[(run.id.as_str(), &first)]).await?;
    Ok(Started {
        run_id: run.id.clone(),
        created: true,
    })
}

/// The context of a run that has not run a step yet.
pub(super) const FRESH_CONTEXT: &str = r#"{"vars":{},"steps":{}}"#;

/// Stores the workflow version a run executes, unless it is stored already.
async fn store_version(
    tx: &mut Tx<'_>,
    run: &NewRun,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO workflow_versions (version, name, source, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(&run.version)
        .bind(&run.workflow)
        .bind(&run.source)
        .bind(millis(now))
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(())
}

/// Stores the workflow versions these runs execute, each once.
pub(super) async fn store_versions<'r>(
    tx: &mut Tx<'_>,
    runs: impl IntoIterator<Item = &'r NewRun>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut stored: Vec<&str> = Vec::new();
    for run in runs {
        if !stored.contains(&run.version.as_str()) {
            store_version(tx, run, now).await?;
            stored.push(&run.version);
        }
    }
    Ok(())
}

/// Inserts the child runs of a `start` step (up to a fan-out chunk, 1,000) with a few
/// statements for all of them: their workflow versions, the runs, their first jobs. A
/// child whose trigger key exists already — a chunk repeated after a crash — is skipped,
/// so each child exists once.
pub(super) async fn insert_children(
    tx: &mut Tx<'_>,
    children: &[NewRun],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match children {
        [] => return Ok(()),
        [child] => return insert_run(tx, child, false, now).await.map(|_| ()),
        _ => {}
    }
    store_versions(tx, children, now).await?;
    let inserted: Vec<String> = match tx {
        Tx::Sqlite(conn) => {
            let rows: Vec<super::sqlite::runs::RunRow> = children
                .iter()
                .map(|run| super::sqlite::runs::RunRow {
                    run,
                    events_after: None,
                    created: now,
                })
                .collect();
            super::sqlite::runs::insert_runs(conn, &rows, true).await?
        }
        Tx::Postgres(conn) => {
            let column =
                |f: fn(&NewRun) -> Option<String>| children.iter().map(f).collect::<Vec<_>>();
            sqlx::query_scalar(
                "INSERT INTO runs (id, workflow, version, status, input, context, current_step, parent_id,
                                   depth, trigger_key, events_after, created_at, updated_at, domain)
                 SELECT c.id, c.workflow, c.version, 'running', c.input, $10, c.first_step, c.parent_id,
                        c.depth, c.trigger_key, (SELECT coalesce(max(id), 0) FROM events), $11, $11, c.domain
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                             $7::bigint[], $8::text[], $9::text[])
                      AS c(id, workflow, version, input, first_step, parent_id, depth, trigger_key, domain)
                 ON CONFLICT (trigger_key) DO NOTHING
                 RETURNING id",
            )
            .bind(column(|c| Some(c.id.clone())))
            .bind(column(|c| Some(c.workflow.clone())))
            .bind(column(|c| Some(c.version.clone())))
            .bind(column(|c| Some(c.input.to_string())))
            .bind(column(|c| Some(c.first_step.clone())))
            .bind(column(|c| c.parent_id.clone()))
            .bind(children.iter().map(|c| c.depth).collect::<Vec<i64>>())
            .bind(column(|c| c.trigger_key.clone()))
            .bind(column(|c| c.domain.clone()))
            .bind(FRESH_CONTEXT)
            .bind(millis(now))
            .fetch_all(&mut **conn)
            .await?
        }
    };
    let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
    let jobs: Vec<(&str, NewJob)> = children
        .iter()
        .filter(|c| inserted.contains(&c.id))
        .map(|c| (c.id.as_str(), NewJob::step(&c.first_step, c.due_at)))
        .collect();
    let jobs: Vec<(&str, &NewJob)> = jobs.iter().map(|(id, job)| (*id, job)).collect();
    insert_jobs(tx, &jobs).await
}
