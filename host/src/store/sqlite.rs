//! The SQLite backend: one file in WAL mode, one writer connection.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::StoreError;
use super::rows::*;
use super::types::*;
use crate::engine::effects::Effect;

mod email;

/// The store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Exactly one connection: every write transaction is serialized in-process, so
    /// SQLite never answers `SQLITE_BUSY` to our own workers.
    writer: SqlitePool,
    /// Readers see committed data only (WAL) and never block the writer.
    reader: SqlitePool,
    /// Jobs claimed by this process's workers and not committed yet. The embedded store
    /// belongs to one process, so its leases live here rather than in the file: a claim
    /// is a read, not a write transaction, and a killed process leaves no lease behind.
    claims: Arc<tokio::sync::Mutex<Claims>>,
    /// Workflow versions known to be stored, so starting a run skips that insert.
    stored_versions: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Group commit: step outcomes and run starts go to one writer task, which commits
    /// whatever has queued up meanwhile in one transaction (one fsync for all).
    group: tokio::sync::mpsc::Sender<GroupWrite>,
}

/// A write waiting for the next group commit.
enum GroupWrite {
    Commit {
        outcomes: Arc<[JobOutcome]>,
        now: DateTime<Utc>,
        reply: tokio::sync::oneshot::Sender<Result<Vec<bool>, StoreError>>,
    },
    Start {
        runs: Vec<(NewRun, bool)>,
        now: DateTime<Utc>,
        reply: tokio::sync::oneshot::Sender<Result<Vec<Started>, StoreError>>,
    },
}

/// Writes one group commit takes at most.
const GROUP_LIMIT: usize = 64;

/// The writer task: takes the first queued write, adds whatever else is queued already
/// (never waiting for more, so a lone write is not delayed), and commits them in one
/// transaction, each inside its own savepoint so one failing write fails alone.
async fn group_writer(pool: SqlitePool, mut queue: tokio::sync::mpsc::Receiver<GroupWrite>) {
    use sqlx::Acquire;
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < GROUP_LIMIT {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let mut tx = match pool.begin().await {
            Ok(tx) => tx,
            Err(e) => {
                let message = e.to_string();
                batch.into_iter().for_each(|w| w.fail(&message));
                continue;
            }
        };
        let mut results: Vec<Result<GroupResult, StoreError>> = Vec::with_capacity(batch.len());
        if let [write] = batch.as_slice() {
            // A lone write needs no savepoint: the transaction is its own.
            results.push(apply_group_write(&mut tx, write).await);
        } else {
            for write in &batch {
                let result = async {
                    let mut savepoint = tx.begin().await?;
                    let result = apply_group_write(&mut savepoint, write).await?;
                    savepoint.commit().await?;
                    Ok::<_, StoreError>(result)
                }
                .await;
                results.push(result);
            }
        }
        match tx.commit().await {
            Ok(()) => {
                for (write, result) in batch.into_iter().zip(results) {
                    write.answer(result);
                }
            }
            Err(e) => {
                let message = e.to_string();
                batch.into_iter().for_each(|w| w.fail(&message));
            }
        }
    }
}

async fn apply_group_write(tx: &mut Tx<'_>, write: &GroupWrite) -> Result<GroupResult, StoreError> {
    Ok(match write {
        GroupWrite::Commit { outcomes, now, .. } => {
            GroupResult::Commit(commit_outcomes(tx, outcomes, *now).await?)
        }
        GroupWrite::Start { runs, now, .. } => {
            let mut started = Vec::with_capacity(runs.len());
            for (run, version_stored) in runs {
                started.push(insert_run(tx, run, *version_stored, *now).await?);
            }
            GroupResult::Start(started)
        }
    })
}

enum GroupResult {
    Commit(Vec<bool>),
    Start(Vec<Started>),
}

impl GroupWrite {
    fn answer(self, result: Result<GroupResult, StoreError>) {
        match (self, result) {
            (GroupWrite::Commit { reply, .. }, Ok(GroupResult::Commit(applied))) => {
                let _ = reply.send(Ok(applied));
            }
            (GroupWrite::Start { reply, .. }, Ok(GroupResult::Start(started))) => {
                let _ = reply.send(Ok(started));
            }
            (GroupWrite::Commit { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (GroupWrite::Start { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (write, Ok(_)) => write.fail("group commit answered the wrong kind of write"),
        }
    }

    fn fail(self, message: &str) {
        let error = || StoreError::GroupCommit(message.to_string());
        match self {
            GroupWrite::Commit { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
            GroupWrite::Start { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
        }
    }
}

#[derive(Debug, Default)]
struct Claims {
    jobs: HashSet<i64>,
    runs: HashSet<String>,
}

type Tx<'a> = Transaction<'a, Sqlite>;

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/file.db`) and
    /// applies migrations.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::Open {
                url: url.to_string(),
                reason: "only sqlite:// URLs are supported by this build".into(),
            })?;
        let path = path.split('?').next().unwrap_or(path);
        if let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
                url: url.to_string(),
                reason: format!("cannot create {}: {e}", parent.display()),
            })?;
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(StdDuration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let (group, queue) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(group_writer(writer.clone(), queue));
        Ok(SqliteStore {
            writer,
            reader,
            claims: Arc::default(),
            stored_versions: Arc::default(),
            group,
        })
    }

    /// The durability settings in force, e.g. `journal_mode=wal, synchronous=FULL`.
    pub async fn durability(&self) -> Result<String, StoreError> {
        let mut conn = self.writer.acquire().await?;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await?;
        let level = match synchronous {
            0 => "OFF",
            1 => "NORMAL",
            2 => "FULL",
            _ => "EXTRA",
        };
        Ok(format!(
            "journal_mode={journal}, synchronous={level} (every commit is fsynced)"
        ))
    }

    /// Step records committed so far (benchmarks count these).
    pub async fn committed_steps(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM step_runs")
            .fetch_one(&self.reader)
            .await?)
    }

    /// Returns true when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.reader).await.is_ok()
    }

    // ----- runs ------------------------------------------------------------------------

    /// Starts runs (each with its first job), idempotently by trigger key.
    pub async fn start_runs(
        &self,
        runs: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<Vec<Started>, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let runs_with_versions = runs
            .iter()
            .map(|r| (r.clone(), self.version_stored(&r.version)))
            .collect();
        self.group
            .send(GroupWrite::Start {
                runs: runs_with_versions,
                now,
                reply,
            })
            .await
            .map_err(|_| StoreError::GroupCommit("the writer task has stopped".into()))?;
        let started = answer
            .await
            .map_err(|_| StoreError::GroupCommit("the writer task has stopped".into()))??;
        let mut stored = self
            .stored_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        stored.extend(runs.iter().map(|r| r.version.clone()));
        Ok(started)
    }

    /// Starts `run` unless `key` was used before; stores the answer for replays.
    pub async fn start_run_once(
        &self,
        run: &NewRun,
        key: &str,
        request_hash: &str,
        answer: &StoredAnswer,
        now: DateTime<Utc>,
    ) -> Result<Once, StoreError> {
        let mut tx = self.writer.begin().await?;
        let existing = sqlx::query(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE key = ?",
        )
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            return Ok(Once::Replay {
                request_hash: row.get("request_hash"),
                answer: StoredAnswer {
                    status: row.get::<i64, _>("status") as u16,
                    body: row.get("response"),
                },
            });
        }
        insert_run(&mut tx, run, self.version_stored(&run.version), now).await?;
        sqlx::query(
            "INSERT INTO idempotency_keys (key, request_hash, status, response, run_id, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(key)
        .bind(request_hash)
        .bind(i64::from(answer.status))
        .bind(&answer.body)
        .bind(&run.id)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.stored_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run.version.clone());
        Ok(Once::Started)
    }

    /// The state of several runs in one query (the runs of a claimed batch).
    fn version_stored(&self, version: &str) -> bool {
        self.stored_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(version)
    }

    pub async fn load_runs(&self, ids: &[&str]) -> Result<Vec<RunState>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, workflow, version, status, input, context, parent_id, step_count, created_at
             FROM runs WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::to_string(ids)?)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(run_state).collect()
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<RunView>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| run_view(&r)).transpose()
    }

    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunView>, StoreError> {
        // Fixed SQL with optional filters: `? IS NULL OR column = ?`.
        let rows = sqlx::query(
            "SELECT * FROM runs
             WHERE (?1 IS NULL OR workflow = ?1)
               AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR parent_id = ?3)
               AND (?4 IS NULL OR (created_at, id) < (SELECT created_at, id FROM runs WHERE id = ?4))
               AND (?6 IS NULL OR created_at >= ?6)
               AND (?7 IS NULL OR created_at < ?7)
             ORDER BY created_at DESC, id DESC
             LIMIT ?5",
        )
        .bind(&filter.workflow)
        .bind(filter.status.map(RunStatus::as_str))
        .bind(&filter.parent_id)
        .bind(&filter.before)
        .bind(i64::from(filter.limit.clamp(1, 1000)))
        .bind(filter.created_after.map(millis))
        .bind(filter.created_before.map(millis))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(run_view).collect()
    }

    pub async fn step_history(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM step_runs WHERE run_id = ? ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(step_record).collect()
    }

    pub async fn child_counts(&self, parent_id: &str) -> Result<ChildCounts, StoreError> {
        child_counts(&self.reader, parent_id).await
    }

    /// The stored source of a workflow version (for runs whose file has changed since).
    pub async fn workflow_source(
        &self,
        version: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT name, source FROM workflow_versions WHERE version = ?")
            .bind(version)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|r| (r.get("name"), r.get("source"))))
    }

    /// Records of a collection (what `record` steps wrote), for the API and tests.
    pub async fn records(&self, collection: &str) -> Result<Vec<(String, Json)>, StoreError> {
        let rows = sqlx::query("SELECT key, data FROM records WHERE collection = ? ORDER BY key")
            .bind(collection)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("key"), json_of(r, "data")?)))
            .collect()
    }

    /// All effect idempotency keys, in commit order (crash tests compare them).
    pub async fn effect_keys(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT idempotency_key FROM effects ORDER BY id")
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    // ----- jobs --------------------------------------------------------------------------

    /// Claims up to `limit` due jobs, at most one per run and none of a run that already
    /// has a claimed job. `now` is engine time (due dates). The lease arguments exist for
    /// backends shared by several processes; here claims are held in memory.
    pub async fn claim_jobs(
        &self,
        _owner: &str,
        now: DateTime<Utc>,
        _wall_now: DateTime<Utc>,
        _lease: chrono::Duration,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let mut claims = self.claims.lock().await;
        let busy: Vec<&String> = claims.runs.iter().collect();
        let rows = sqlx::query(
            "SELECT j.id, j.run_id, j.kind, j.step, j.timer, j.payload, j.due_at, j.attempt FROM jobs j
             WHERE j.due_at <= ?1
               AND j.id = (SELECT min(m.id) FROM jobs m WHERE m.run_id = j.run_id AND m.due_at <= ?1)
               AND j.run_id NOT IN (SELECT value FROM json_each(?2))
             ORDER BY j.due_at, j.id
             LIMIT ?3",
        )
        .bind(millis(now))
        .bind(serde_json::to_string(&busy)?)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        for r in &rows {
            claims.jobs.insert(r.get("id"));
            claims.runs.insert(r.get("run_id"));
        }
        drop(claims);
        let mut jobs: Vec<Job> = rows.iter().map(job).collect::<Result<_, StoreError>>()?;
        jobs.sort_by_key(|j| (j.due_at, j.id));
        Ok(jobs)
    }

    /// Forgets the claims of these jobs (committed, or given back).
    async fn release(&self, outcomes: &[JobOutcome]) {
        let mut claims = self.claims.lock().await;
        for outcome in outcomes {
            claims.jobs.remove(&outcome.job_id);
            claims.runs.remove(&outcome.run_id);
        }
    }

    /// When the earliest job is due, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row: Option<i64> = sqlx::query_scalar("SELECT min(due_at) FROM jobs")
            .fetch_one(&self.reader)
            .await?;
        Ok(row.map(from_millis))
    }

    /// Jobs due at `now` (leased or not): work the engine has not finished yet.
    pub async fn due_jobs(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE due_at <= ?")
                .bind(millis(now))
                .fetch_one(&self.reader)
                .await?,
        )
    }

    /// How many jobs are due at `now` and since when the oldest of them has been due.
    pub async fn queue_stats(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        let row =
            sqlx::query("SELECT count(*) AS n, min(due_at) AS oldest FROM jobs WHERE due_at <= ?")
                .bind(millis(now))
                .fetch_one(&self.reader)
                .await?;
        Ok((
            row.get("n"),
            row.get::<Option<i64>, _>("oldest").map(from_millis),
        ))
    }

    /// Cancels a run that has not finished, and all its descendants; returns the
    /// cancelled run ids, or `None` if the run does not exist.
    pub async fn cancel_run(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let parent: Option<Option<String>> =
            sqlx::query_scalar("SELECT parent_id FROM runs WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(parent) = parent else {
            return Ok(None);
        };
        let cancelled: Vec<String> = sqlx::query_scalar(
            "WITH RECURSIVE tree(id) AS (SELECT ?1 UNION ALL SELECT r.id FROM runs r JOIN tree ON r.parent_id = tree.id)
             UPDATE runs SET status = 'cancelled', error = 'cancelled', updated_at = ?2, finished_at = ?2
             WHERE id IN (SELECT id FROM tree) AND status IN ('running', 'waiting')
             RETURNING id",
        )
        .bind(id)
        .bind(millis(now))
        .fetch_all(&mut *tx)
        .await?;
        let ids = serde_json::to_string(&cancelled)?;
        sqlx::query("DELETE FROM jobs WHERE run_id IN (SELECT value FROM json_each(?))")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM waits WHERE run_id IN (SELECT value FROM json_each(?))")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        if let Some(parent) = parent.filter(|_| cancelled.iter().any(|c| c == id)) {
            wake_parent(&mut tx, &parent, now).await?;
        }
        tx.commit().await?;
        Ok(Some(cancelled))
    }

    /// Puts a failed run back to work at the step that failed, with a fresh attempt
    /// count; the run keeps its workflow version. Returns the step, or why not.
    pub async fn retry_run(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<String, RetryRefused>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query("SELECT status, current_step FROM runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(Err(RetryRefused::NotFound));
        };
        let status: String = row.get("status");
        let step: Option<String> = row.get("current_step");
        let Some(step) = step.filter(|_| status == "failed") else {
            return Ok(Err(RetryRefused::NotFailed(status)));
        };
        sqlx::query("UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, updated_at = ? WHERE id = ?")
            .bind(millis(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_job(&mut tx, id, &NewJob::step(&step, now)).await?;
        tx.commit().await?;
        Ok(Ok(step))
    }

    /// Deletes up to `batch` finished runs (completed or cancelled) that finished before
    /// `cutoff`, with their history. Failed runs are kept until someone handles them.
    /// Runs that still have child rows, or whose parent is still active, wait for a later
    /// pass (children go first). Returns how many runs were deleted.
    pub async fn prune_runs(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT r.id FROM runs r
             WHERE r.status IN ('completed', 'cancelled') AND r.finished_at < ?1
               AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_id = r.id)
               AND NOT EXISTS (SELECT 1 FROM runs p WHERE p.id = r.parent_id AND p.status IN ('running', 'waiting'))
             LIMIT ?2",
        )
        .bind(millis(cutoff))
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let ids = serde_json::to_string(&ids)?;
        for statement in [
            "DELETE FROM step_runs WHERE run_id IN (SELECT value FROM json_each(?))",
            "DELETE FROM consumed_events WHERE run_id IN (SELECT value FROM json_each(?))",
            "DELETE FROM effects WHERE run_id IN (SELECT value FROM json_each(?))",
            "DELETE FROM jobs WHERE run_id IN (SELECT value FROM json_each(?))",
            "DELETE FROM waits WHERE run_id IN (SELECT value FROM json_each(?))",
        ] {
            sqlx::query(statement).bind(&ids).execute(&mut *tx).await?;
        }
        let deleted = sqlx::query("DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))")
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    /// Deletes up to `batch` events received before `cutoff`.
    pub async fn prune_events(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM events WHERE received_at < ? ORDER BY id LIMIT ?")
                .bind(millis(cutoff))
                .bind(i64::from(batch))
                .fetch_all(&mut *tx)
                .await?;
        let ids = serde_json::to_string(&ids)?;
        sqlx::query(
            "DELETE FROM consumed_events WHERE event_id IN (SELECT value FROM json_each(?))",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        let deleted =
            sqlx::query("DELETE FROM events WHERE id IN (SELECT value FROM json_each(?))")
                .bind(&ids)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    /// Forgets idempotency keys stored before `cutoff` (at most `batch`).
    pub async fn prune_idempotency_keys(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM idempotency_keys WHERE key IN
               (SELECT key FROM idempotency_keys WHERE created_at < ? LIMIT ?)",
        )
        .bind(millis(cutoff))
        .bind(i64::from(batch))
        .execute(&self.writer)
        .await?
        .rows_affected())
    }

    /// Number of jobs (all kinds), for tests and readiness.
    pub async fn pending_jobs(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&self.reader)
            .await?)
    }

    /// Commits the outcomes of many jobs in one transaction. An outcome whose job no
    /// longer exists (deleted meanwhile, e.g. a timeout an event made moot) is skipped
    /// and reported as `false`. `owner` names the lease holder for backends shared by
    /// several processes.
    pub async fn commit(
        &self,
        _owner: &str,
        outcomes: Arc<[JobOutcome]>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let result = async {
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.group
                .send(GroupWrite::Commit {
                    outcomes: outcomes.clone(),
                    now,
                    reply,
                })
                .await
                .map_err(|_| StoreError::GroupCommit("the writer task has stopped".into()))?;
            answer
                .await
                .map_err(|_| StoreError::GroupCommit("the writer task has stopped".into()))?
        }
        .await;
        // Committed or not, the claims end here; uncommitted jobs are claimed again.
        self.release(&outcomes).await;
        result
    }

    // ----- events ------------------------------------------------------------------------

    /// Stores an event, resumes the runs waiting for it and starts the runs it triggers
    /// (`starts`, whose trigger keys are derived from the event id), atomically.
    pub async fn deliver_event(
        &self,
        event: &NewEvent,
        starts: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<Delivered, StoreError> {
        let mut tx = self.writer.begin().await?;
        let (event_id, resumed_runs) = insert_event(&mut tx, event, now).await?;
        let mut started_runs = Vec::new();
        for run in starts {
            let mut run = run.clone();
            run.trigger_key = Some(format!("event:{event_id}:{}", run.workflow));
            started_runs.push(insert_run(&mut tx, &run, false, now).await?.run_id);
        }
        tx.commit().await?;
        Ok(Delivered {
            event_id,
            resumed_runs,
            started_runs,
        })
    }

    // ----- tokens ------------------------------------------------------------------------

    pub async fn insert_token(
        &self,
        id: &str,
        token_hash: &str,
        role: &str,
        description: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (id, token_hash, role, description, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(id)
            .bind(token_hash)
            .bind(role)
            .bind(description)
            .bind(millis(now))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn count_tokens(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM api_tokens")
            .fetch_one(&self.reader)
            .await?)
    }

    /// The role of the token with this hash, if any.
    pub async fn token_role(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT role FROM api_tokens WHERE token_hash = ?")
                .bind(token_hash)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    // ----- secrets -----------------------------------------------------------------------

    /// Stores a sealed secret (insert or replace).
    pub async fn put_secret(
        &self,
        name: &str,
        sealed: &crate::secrets::Sealed,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secrets (name, key_id, nonce, ciphertext, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce,
                                              ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(millis(now))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Stores a sealed secret unless one of that name exists; returns whether it did.
    pub async fn put_secret_if_absent(
        &self,
        name: &str,
        sealed: &crate::secrets::Sealed,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "INSERT INTO secrets (name, key_id, nonce, ciphertext, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(millis(now))
        .execute(&self.writer)
        .await?
        .rows_affected()
            == 1)
    }

    pub async fn plugin_kv_get(
        &self,
        plugin: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM plugin_kv WHERE plugin = ? AND key = ?")
                .bind(plugin)
                .bind(key)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    pub async fn plugin_configs(&self) -> Result<Vec<(String, Json)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT plugin, config FROM plugin_config ORDER BY plugin")
                .fetch_all(&self.reader)
                .await?;
        plugin_configs(rows)
    }

    pub async fn put_plugin_config(
        &self,
        plugin: &str,
        config: Option<&Json>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match config {
            Some(config) => {
                sqlx::query(
                    "INSERT INTO plugin_config (plugin, config, updated_at) VALUES (?, ?, ?)
                     ON CONFLICT (plugin) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                )
                .bind(plugin)
                .bind(config.to_string())
                .bind(millis(now))
                .execute(&self.writer)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM plugin_config WHERE plugin = ?")
                    .bind(plugin)
                    .execute(&self.writer)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn get_secret(
        &self,
        name: &str,
    ) -> Result<Option<crate::secrets::Sealed>, StoreError> {
        let row = sqlx::query("SELECT key_id, nonce, ciphertext FROM secrets WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|r| crate::secrets::Sealed {
            key_id: r.get("key_id"),
            nonce: r.get("nonce"),
            ciphertext: r.get("ciphertext"),
        }))
    }

    /// Names and times of all secrets (never their values).
    pub async fn list_secrets(&self) -> Result<Vec<SecretInfo>, StoreError> {
        let rows =
            sqlx::query("SELECT name, key_id, created_at, updated_at FROM secrets ORDER BY name")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows
            .iter()
            .map(|r| SecretInfo {
                name: r.get("name"),
                key_id: r.get("key_id"),
                created_at: from_millis(r.get("created_at")),
                updated_at: from_millis(r.get("updated_at")),
            })
            .collect())
    }

    pub async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM secrets WHERE name = ?")
            .bind(name)
            .execute(&self.writer)
            .await?
            .rows_affected()
            == 1)
    }

    /// Re-seals every secret in one transaction: `reseal` gets each name and sealed value
    /// and returns the new sealed value. Nothing changes if any secret fails.
    pub async fn reseal_secrets<E>(
        &self,
        mut reseal: impl FnMut(&str, &crate::secrets::Sealed) -> Result<crate::secrets::Sealed, E>,
        now: DateTime<Utc>,
    ) -> Result<Result<usize, E>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query("SELECT name, key_id, nonce, ciphertext FROM secrets")
            .fetch_all(&mut *tx)
            .await?;
        for r in &rows {
            let name: String = r.get("name");
            let sealed = crate::secrets::Sealed {
                key_id: r.get("key_id"),
                nonce: r.get("nonce"),
                ciphertext: r.get("ciphertext"),
            };
            let new = match reseal(&name, &sealed) {
                Ok(new) => new,
                Err(e) => return Ok(Err(e)),
            };
            sqlx::query("UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ?, updated_at = ? WHERE name = ?")
                .bind(&new.key_id)
                .bind(&new.nonce)
                .bind(&new.ciphertext)
                .bind(millis(now))
                .bind(&name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Ok(rows.len()))
    }

    // ----- cron --------------------------------------------------------------------------

    /// Up to when the schedule of `workflow` has been handled.
    pub async fn cron_cursor(&self, workflow: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT checked_to FROM cron_cursors WHERE workflow = ?")
                .bind(workflow)
                .fetch_optional(&self.reader)
                .await?;
        Ok(v.map(from_millis))
    }

    /// Records one firing and starts its run, unless this (workflow, local time) fired
    /// already; moves the cursor. Returns whether a run was started.
    pub async fn fire_cron(
        &self,
        workflow: &str,
        local_time: &str,
        run: Option<&NewRun>,
        checked_to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let mut fired = false;
        if let Some(run) = run {
            let inserted = sqlx::query(
                "INSERT INTO cron_firings (workflow, local_time, fired_at, run_id) VALUES (?, ?, ?, ?)
                 ON CONFLICT (workflow, local_time) DO NOTHING",
            )
            .bind(workflow)
            .bind(local_time)
            .bind(millis(now))
            .bind(&run.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                insert_run(&mut tx, run, false, now).await?;
                fired = true;
            }
        }
        sqlx::query(
            "INSERT INTO cron_cursors (workflow, checked_to) VALUES (?1, ?2)
             ON CONFLICT (workflow) DO UPDATE SET checked_to = max(checked_to, ?2)",
        )
        .bind(workflow)
        .bind(millis(checked_to))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(fired)
    }

    /// Every recorded firing of a workflow's schedule: (local time, run id).
    pub async fn cron_firings(
        &self,
        workflow: &str,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query("SELECT local_time, run_id FROM cron_firings WHERE workflow = ? ORDER BY fired_at, local_time")
            .bind(workflow)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

// ----- helpers inside a transaction ------------------------------------------------------

/// Inserts a run and its first job; `version_stored` skips storing the workflow version.
async fn insert_run(
    tx: &mut Tx<'_>,
    run: &NewRun,
    version_stored: bool,
    now: DateTime<Utc>,
) -> Result<Started, StoreError> {
    if let Some(key) = &run.trigger_key {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM runs WHERE trigger_key = ?")
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(run_id) = existing {
            return Ok(Started {
                run_id,
                created: false,
            });
        }
    }
    if !version_stored {
        sqlx::query(
            "INSERT INTO workflow_versions (version, name, source, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(&run.version)
        .bind(&run.workflow)
        .bind(&run.source)
        .bind(millis(now))
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO runs (id, workflow, version, status, input, context, current_step, parent_id,
                           trigger_key, events_after, created_at, updated_at)
         VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, (SELECT coalesce(max(id), 0) FROM events), ?, ?)",
    )
    .bind(&run.id)
    .bind(&run.workflow)
    .bind(&run.version)
    .bind(run.input.to_string())
    .bind(serde_json::json!({"vars": {}, "steps": {}}).to_string())
    .bind(&run.first_step)
    .bind(&run.parent_id)
    .bind(&run.trigger_key)
    .bind(millis(now))
    .bind(millis(now))
    .execute(&mut **tx)
    .await?;
    insert_job(tx, &run.id, &NewJob::step(&run.first_step, run.due_at)).await?;
    Ok(Started {
        run_id: run.id.clone(),
        created: true,
    })
}

async fn insert_job(tx: &mut Tx<'_>, run_id: &str, job: &NewJob) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO jobs (run_id, kind, step, timer, payload, due_at, attempt) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(run_id)
    .bind(job.kind.as_str())
    .bind(&job.step)
    .bind(&job.timer)
    .bind(job.payload.as_ref().map(Json::to_string))
    .bind(millis(job.due_at))
    .bind(i64::from(job.attempt))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies the outcomes of a batch of jobs with a handful of statements for the whole
/// batch (each statement is a round trip to SQLite's thread), plus per-outcome statements
/// only for what is rare: waits, timers, effects, events, children, key-value writes.
///
/// Outcomes in one batch belong to different runs (claims take one job per run).
async fn commit_outcomes(
    tx: &mut Tx<'_>,
    outcomes: &[JobOutcome],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    // The commit point of each execution: its job is deleted. A job that is gone already
    // (an event ended the wait whose timeout this was) makes its outcome void.
    let job_ids: Vec<i64> = outcomes.iter().map(|o| o.job_id).collect();
    let deleted: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?)) RETURNING id",
    )
    .bind(serde_json::to_string(&job_ids)?)
    .fetch_all(&mut **tx)
    .await?;
    let deleted: std::collections::HashSet<i64> = deleted.into_iter().collect();
    let applied: Vec<bool> = outcomes
        .iter()
        .map(|o| deleted.contains(&o.job_id))
        .collect();
    let live: Vec<&JobOutcome> = outcomes
        .iter()
        .zip(&applied)
        .filter(|(_, a)| **a)
        .map(|(o, _)| o)
        .collect();

    // Step history.
    let records: Vec<Json> = live
        .iter()
        .flat_map(|o| {
            o.steps.iter().map(move |s| {
                serde_json::json!({
                    "run": o.run_id, "step": s.step, "action": s.action, "attempt": s.attempt,
                    "status": s.status, "input": s.input.as_ref().map(Json::to_string),
                    "output": s.output.as_ref().map(Json::to_string), "error": s.error,
                    "log": s.log.as_ref().map(Json::to_string),
                    "started": millis(s.started_at), "finished": millis(s.finished_at),
                })
            })
        })
        .collect();
    if !records.is_empty() {
        sqlx::query(
            "INSERT INTO step_runs (run_id, step, action, attempt, status, input, output, error, log, started_at, finished_at)
             SELECT value ->> '$.run', value ->> '$.step', value ->> '$.action', value ->> '$.attempt',
                    value ->> '$.status', value ->> '$.input', value ->> '$.output', value ->> '$.error',
                    value ->> '$.log', value ->> '$.started', value ->> '$.finished'
             FROM json_each(?)",
        )
        .bind(Json::Array(records).to_string())
        .execute(&mut **tx)
        .await?;
    }

    for outcome in &live {
        let run_id = outcome.run_id.as_str();
        for (key, effect) in &outcome.effects {
            apply_effect(tx, run_id, key, effect, now).await?;
        }
        for write in &outcome.kv_writes {
            write_kv(tx, write, now).await?;
        }
        for name in &outcome.cancel_timers {
            forget_timer(tx, run_id, name).await?;
        }
        for timer in &outcome.start_timers {
            if let Some(name) = &timer.timer {
                forget_timer(tx, run_id, name).await?;
            }
            insert_job(tx, run_id, timer).await?;
        }
        for child in &outcome.children {
            insert_run(tx, child, false, now).await?;
        }
    }

    // New jobs of the whole batch.
    let jobs: Vec<Json> = live
        .iter()
        .flat_map(|o| o.jobs.iter().map(move |j| job_json(&o.run_id, j)))
        .collect();
    insert_jobs(tx, jobs).await?;

    // A timed-out wait is over: its other event keys no longer apply. (A wait ended by
    // an event was cleared when the event arrived.)
    let ended: Vec<&str> = live
        .iter()
        .filter(|o| o.ends_wait)
        .map(|o| o.run_id.as_str())
        .collect();
    if !ended.is_empty() {
        let ids = serde_json::to_string(&ended)?;
        sqlx::query("DELETE FROM waits WHERE run_id IN (SELECT value FROM json_each(?))")
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
    }

    // Run updates; new waits are registered, unless what they wait for is already there
    // (then the run resumes at once).
    let mut rows = Vec::new();
    let mut finished = Vec::new();
    let mut parents = std::collections::BTreeSet::new();
    for outcome in &live {
        let Some(update) = &outcome.run else { continue };
        let status = match &outcome.wait {
            Some(wait) => register_wait(tx, &outcome.run_id, wait, update.status, now).await?,
            None => update.status,
        };
        if status.is_finished() {
            finished.push(outcome.run_id.as_str());
            parents.extend(outcome.parent_id.iter());
        }
        rows.push(serde_json::json!({
            "id": outcome.run_id, "status": status.as_str(), "context": update.context.to_string(),
            "current_step": update.current_step, "output": update.output.as_ref().map(Json::to_string),
            "error": update.error, "step_count": update.step_count,
            "finished_at": status.is_finished().then(|| millis(now)),
        }));
    }
    if !rows.is_empty() {
        sqlx::query(
            "UPDATE runs SET status = u.status, context = u.context, current_step = u.current_step,
                             output = u.output, error = u.error, step_count = u.step_count,
                             updated_at = ?1, finished_at = u.finished_at
             FROM (SELECT value ->> '$.id' AS id, value ->> '$.status' AS status,
                          value ->> '$.context' AS context, value ->> '$.current_step' AS current_step,
                          value ->> '$.output' AS output, value ->> '$.error' AS error,
                          value ->> '$.step_count' AS step_count, value ->> '$.finished_at' AS finished_at
                   FROM json_each(?2)) AS u
             WHERE runs.id = u.id",
        )
        .bind(millis(now))
        .bind(Json::Array(rows).to_string())
        .execute(&mut **tx)
        .await?;
    }
    if !finished.is_empty() {
        // A finished run leaves no timers behind.
        sqlx::query("DELETE FROM jobs WHERE run_id IN (SELECT value FROM json_each(?))")
            .bind(serde_json::to_string(&finished)?)
            .execute(&mut **tx)
            .await?;
    }
    for outcome in &live {
        for event in &outcome.events {
            insert_event(tx, event, now).await?;
        }
    }
    for parent in parents {
        wake_parent(tx, parent, now).await?;
    }
    Ok(applied)
}

/// Registers a parked run's wait; returns the run's status: `Running` if what it waits
/// for is already there (a resume job is scheduled), else the status it asked for.
async fn register_wait(
    tx: &mut Tx<'_>,
    run_id: &str,
    wait: &WaitFor,
    status: RunStatus,
    now: DateTime<Utc>,
) -> Result<RunStatus, StoreError> {
    match wait {
        WaitFor::Events {
            step,
            keys,
            timeout,
        } => match find_arrived_event(tx, run_id, keys).await? {
            Some(event) => {
                consume(tx, run_id, event["event_id"].as_i64().unwrap_or_default()).await?;
                insert_job(tx, run_id, &NewJob::resume(step, event, now)).await?;
                Ok(RunStatus::Running)
            }
            None => {
                for (event_type, key) in keys {
                    sqlx::query("INSERT OR IGNORE INTO waits (run_id, event_type, key, step) VALUES (?, ?, ?, ?)")
                        .bind(run_id)
                        .bind(event_type)
                        .bind(key)
                        .bind(step)
                        .execute(&mut **tx)
                        .await?;
                }
                if let Some(timeout) = timeout {
                    insert_job(tx, run_id, timeout).await?;
                }
                Ok(status)
            }
        },
        WaitFor::Children { step } => {
            if has_unfinished_children(tx, run_id).await? {
                sqlx::query("INSERT OR IGNORE INTO waits (run_id, event_type, key, step) VALUES (?, 'children', '', ?)")
                    .bind(run_id)
                    .bind(step)
                    .execute(&mut **tx)
                    .await?;
                Ok(status)
            } else {
                let counts = child_counts(&mut **tx, run_id).await?;
                insert_job(
                    tx,
                    run_id,
                    &NewJob::resume(step, serde_json::to_value(counts)?, now),
                )
                .await?;
                Ok(RunStatus::Running)
            }
        }
    }
}

fn job_json(run_id: &str, job: &NewJob) -> Json {
    serde_json::json!({
        "run": run_id, "kind": job.kind.as_str(), "step": job.step, "timer": job.timer,
        "payload": job.payload.as_ref().map(Json::to_string), "due": millis(job.due_at), "attempt": job.attempt,
    })
}

/// Inserts many jobs with one statement.
async fn insert_jobs(tx: &mut Tx<'_>, jobs: Vec<Json>) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO jobs (run_id, kind, step, timer, payload, due_at, attempt)
         SELECT value ->> '$.run', value ->> '$.kind', value ->> '$.step', value ->> '$.timer',
                value ->> '$.payload', value ->> '$.due', value ->> '$.attempt'
         FROM json_each(?)",
    )
    .bind(Json::Array(jobs).to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes a pending timer and marks its fired-but-unconsumed events as consumed, so a
/// restarted timer is not satisfied by its previous firing.
async fn forget_timer(tx: &mut Tx<'_>, run_id: &str, name: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM jobs WHERE run_id = ? AND timer = ?")
        .bind(run_id)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT OR IGNORE INTO consumed_events (run_id, event_id)
         SELECT ?1, id FROM events WHERE type = ?2 AND key = ?1",
    )
    .bind(run_id)
    .bind(format!("{}{name}", crate::workflow::TIMER_EVENT_PREFIX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn consume(tx: &mut Tx<'_>, run_id: &str, event_id: i64) -> Result<(), StoreError> {
    sqlx::query("INSERT OR IGNORE INTO consumed_events (run_id, event_id) VALUES (?, ?)")
        .bind(run_id)
        .bind(event_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The oldest event matching one of `keys` that arrived after the run started and that
/// the run has not consumed yet.
async fn find_arrived_event(
    tx: &mut Tx<'_>,
    run_id: &str,
    keys: &[(String, String)],
) -> Result<Option<Json>, StoreError> {
    let mut best: Option<(i64, Json)> = None;
    for (event_type, key) in keys {
        let row = sqlx::query(
            "SELECT e.* FROM events e
             WHERE e.type = ? AND e.key = ?
               AND e.id > (SELECT events_after FROM runs WHERE id = ?3)
               AND NOT EXISTS (SELECT 1 FROM consumed_events c WHERE c.run_id = ?3 AND c.event_id = e.id)
             ORDER BY e.id LIMIT 1",
        )
        .bind(event_type)
        .bind(key)
        .bind(run_id)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = row {
            let id: i64 = row.get("id");
            if best.as_ref().is_none_or(|(b, _)| id < *b) {
                best = Some((id, event_output(&row)?));
            }
        }
    }
    Ok(best.map(|(_, e)| e))
}

/// Stores an event and resumes every run waiting for it. Returns the event id and the
/// resumed runs.
async fn insert_event(
    tx: &mut Tx<'_>,
    event: &NewEvent,
    now: DateTime<Utc>,
) -> Result<(i64, Vec<String>), StoreError> {
    let row = sqlx::query(
        "INSERT INTO events (type, key, payload, received_at) VALUES (?, ?, ?, ?) RETURNING *",
    )
    .bind(&event.event_type)
    .bind(&event.key)
    .bind(event.payload.to_string())
    .bind(millis(now))
    .fetch_one(&mut **tx)
    .await?;
    let event_id: i64 = row.get("id");
    let output = event_output(&row)?;
    let waiting = sqlx::query("SELECT run_id, step FROM waits WHERE event_type = ? AND key = ?")
        .bind(&event.event_type)
        .bind(&event.key)
        .fetch_all(&mut **tx)
        .await?;
    let mut resumed = Vec::new();
    for w in waiting {
        let run_id: String = w.get("run_id");
        let step: String = w.get("step");
        resume_waiting_run(tx, &run_id, &step, output.clone(), now).await?;
        consume(tx, &run_id, event_id).await?;
        resumed.push(run_id);
    }
    Ok((event_id, resumed))
}

/// Ends a run's wait: drops its wait rows and timeout, schedules the resume.
async fn resume_waiting_run(
    tx: &mut Tx<'_>,
    run_id: &str,
    step: &str,
    payload: Json,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM waits WHERE run_id = ?")
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM jobs WHERE run_id = ? AND kind = 'timeout'")
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    insert_job(tx, run_id, &NewJob::resume(step, payload, now)).await?;
    sqlx::query(
        "UPDATE runs SET status = 'running', updated_at = ? WHERE id = ? AND status = 'waiting'",
    )
    .bind(millis(now))
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn has_unfinished_children(tx: &mut Tx<'_>, parent: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM runs WHERE parent_id = ? AND status IN ('running', 'waiting') LIMIT 1",
    )
    .bind(parent)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

async fn wake_parent(tx: &mut Tx<'_>, parent: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    let step: Option<String> =
        sqlx::query_scalar("SELECT step FROM waits WHERE run_id = ? AND event_type = 'children'")
            .bind(parent)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(step) = step else { return Ok(()) };
    if has_unfinished_children(tx, parent).await? {
        return Ok(());
    }
    let counts = child_counts(&mut **tx, parent).await?;
    resume_waiting_run(tx, parent, &step, serde_json::to_value(counts)?, now).await
}

async fn child_counts<'e, E: sqlx::Executor<'e, Database = Sqlite>>(
    executor: E,
    parent: &str,
) -> Result<ChildCounts, StoreError> {
    let rows =
        sqlx::query("SELECT status, count(*) AS n FROM runs WHERE parent_id = ? GROUP BY status")
            .bind(parent)
            .fetch_all(executor)
            .await?;
    let rows: Vec<(String, i64)> = rows.iter().map(|r| (r.get("status"), r.get("n"))).collect();
    Ok(super::rows::child_counts(&rows))
}

async fn apply_effect(
    tx: &mut Tx<'_>,
    run_id: &str,
    key: &str,
    effect: &Effect,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO effects (idempotency_key, run_id, step, kind, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(run_id)
    .bind(key.rsplit(':').nth(1).unwrap_or_default())
    .bind(effect.kind())
    .bind(serde_json::to_string(effect)?)
    .bind(millis(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(());
    }
    match effect {
        Effect::Email(email) => {
            let step = key.rsplit(':').nth(1);
            email::enqueue(tx, Some(run_id), step, email, now).await?;
        }
        Effect::Record {
            collection,
            key,
            data,
        } => {
            sqlx::query(
                "INSERT INTO records (collection, key, data, run_id, updated_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (collection, key) DO UPDATE SET data = excluded.data, run_id = excluded.run_id,
                                                             updated_at = excluded.updated_at",
            )
            .bind(collection)
            .bind(key)
            .bind(data.to_string())
            .bind(run_id)
            .bind(millis(now))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Applies one plugin key-value write (a `None` value deletes the key).
async fn write_kv(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    write: &kontor_plugins::KvWrite,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match &write.value {
        Some(value) => {
            sqlx::query(
                "INSERT INTO plugin_kv (plugin, key, value, updated_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(&write.plugin)
            .bind(&write.key)
            .bind(value)
            .bind(millis(now))
            .execute(&mut **tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM plugin_kv WHERE plugin = ? AND key = ?")
                .bind(&write.plugin)
                .bind(&write.key)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}
