//! The PostgreSQL backend: several `kontor serve` processes on one database.
//!
//! - **Claims**: jobs (and outbox messages) are claimed in batches with
//!   `FOR UPDATE SKIP LOCKED` and leased to the claiming process until a wall-clock time.
//!   A job whose lease expired (its process died) is claimed again; a commit only applies
//!   to jobs still leased to the committing process, so a taken-over job is never
//!   committed twice.
//! - **Wakeups**: every transaction that adds jobs, events or mail sends `NOTIFY`; one
//!   `LISTEN` connection per process wakes its idle workers. Polling stays as fallback.
//! - **Leaders**: one process fires cron and one dispatches email, each holding a session
//!   advisory lock on a connection of its own (see [`LeaderLease`]).
//! - **Races between processes**: a run parking in `wait_for` and an event arriving for
//!   it take the same transaction-scoped advisory lock (per event type and key); a parent
//!   parking in `wait_children` and a child finishing lock the parent's row. Either way
//!   the second transaction sees what the first committed.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, Row, Transaction};
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::rows::*;
use super::types::*;
use super::{StoreError, redact};
use crate::engine::effects::{Effect, OutgoingEmail};

/// Channel notified when jobs or events were added.
const WORK_CHANNEL: &str = "kontor_work";
/// Channel notified when email was queued.
const MAIL_CHANNEL: &str = "kontor_mail";
/// Advisory lock keys of the leaders ("kontorcr", "kontorml" as 64-bit integers).
fn lock_key(role: Role) -> i64 {
    match role {
        Role::Cron => 0x6b6f_6e74_6f72_6372,
        Role::Mail => 0x6b6f_6e74_6f72_6d6c,
    }
}

type Tx<'a> = Transaction<'a, Postgres>;
type LeaderConnection = Arc<tokio::sync::Mutex<Option<PgConnection>>>;

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    options: Arc<PgConnectOptions>,
    /// Names this process in outbox leases.
    owner: String,
    /// How long a claimed outbox message stays leased (ms, wall clock).
    mail_lease_ms: Arc<AtomicI64>,
    stored_versions: Arc<std::sync::Mutex<HashSet<String>>>,
    /// The connections that hold (or ask for) the leaders' advisory locks.
    cron_conn: LeaderConnection,
    mail_conn: LeaderConnection,
    work_added: Arc<Notify>,
    mail_added: Arc<Notify>,
}

impl PgStore {
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            url: redact(url),
            reason,
        };
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| open_error(e.to_string()))?
            .application_name("kontor");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(2)
            .acquire_timeout(StdDuration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| open_error(e.to_string()))?;
        // sqlx takes an advisory lock around migrations, so processes starting together
        // apply them once.
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let store = PgStore {
            pool,
            options: Arc::new(options),
            owner: format!(
                "kontor-{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
            mail_lease_ms: Arc::new(AtomicI64::new(120_000)),
            stored_versions: Arc::default(),
            cron_conn: Arc::default(),
            mail_conn: Arc::default(),
            work_added: Arc::new(Notify::new()),
            mail_added: Arc::new(Notify::new()),
        };
        store.listen().await?;
        Ok(store)
    }

    /// Starts the `LISTEN` task: notifications from any process wake this one's workers
    /// and dispatcher. A lost connection is re-established by sqlx; since notifications
    /// sent meanwhile are lost, everyone is woken once to look for themselves.
    async fn listen(&self) -> Result<(), StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all([WORK_CHANNEL, MAIL_CHANNEL]).await?;
        let work = self.work_added.clone();
        let mail = self.mail_added.clone();
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) if n.channel() == MAIL_CHANNEL => mail.notify_waiters(),
                    Ok(Some(_)) => work.notify_waiters(),
                    Ok(None) => {
                        debug!("LISTEN connection lost; reconnecting");
                        work.notify_waiters();
                        mail.notify_waiters();
                    }
                    Err(e) => {
                        warn!(error = %e, "LISTEN failed; polling until it is back");
                        tokio::time::sleep(StdDuration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }

    pub fn work_added(&self) -> &Arc<Notify> {
        &self.work_added
    }

    pub fn mail_added(&self) -> &Arc<Notify> {
        &self.mail_added
    }

    /// How long a claimed outbox message stays leased to this process.
    pub fn set_mail_lease(&self, lease: StdDuration) {
        self.mail_lease_ms
            .store(lease.as_millis() as i64, Ordering::Relaxed);
    }

    /// Asks for a leader's lock on this process's connection for that role (opened on
    /// first use and kept, so followers do not reconnect every time they ask).
    pub async fn try_lead(&self, role: Role) -> Result<Option<LeaderLease>, StoreError> {
        let conn = match role {
            Role::Cron => &self.cron_conn,
            Role::Mail => &self.mail_conn,
        };
        let mut slot = conn.lock().await;
        if slot.is_none() {
            *slot = Some(PgConnection::connect_with(&self.options).await?);
        }
        let session = slot.as_mut().expect("connected above");
        let locked = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key(role))
            .fetch_one(&mut *session)
            .await;
        match locked {
            Ok(true) => Ok(Some(LeaderLease {
                conn: Some(conn.clone()),
            })),
            Ok(false) => Ok(None),
            Err(e) => {
                *slot = None;
                Err(e.into())
            }
        }
    }

    pub async fn durability(&self) -> Result<String, StoreError> {
        let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&self.pool)
            .await?;
        let fsync: String = sqlx::query_scalar("SHOW fsync")
            .fetch_one(&self.pool)
            .await?;
        Ok(format!(
            "PostgreSQL synchronous_commit={sync}, fsync={fsync}"
        ))
    }

    pub async fn committed_steps(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM step_runs")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    fn version_stored(&self, version: &str) -> bool {
        self.stored_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(version)
    }

    fn versions_stored<'a>(&self, versions: impl IntoIterator<Item = &'a String>) {
        self.stored_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(versions.into_iter().cloned());
    }

    // ----- runs ------------------------------------------------------------------------

    pub async fn start_runs(
        &self,
        runs: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<Vec<Started>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut started = Vec::with_capacity(runs.len());
        for run in runs {
            started.push(insert_run(&mut tx, run, self.version_stored(&run.version), now).await?);
        }
        notify(&mut tx, WORK_CHANNEL).await?;
        tx.commit().await?;
        self.versions_stored(runs.iter().map(|r| &r.version));
        Ok(started)
    }

    pub async fn start_run_once(
        &self,
        run: &NewRun,
        key: &str,
        request_hash: &str,
        answer: &StoredAnswer,
        now: DateTime<Utc>,
    ) -> Result<Once, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Two processes given the same key at once: the second waits here and replays.
        lock(&mut tx, "idempotency", key, "").await?;
        let existing = sqlx::query(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE key = $1",
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
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key)
        .bind(request_hash)
        .bind(i64::from(answer.status))
        .bind(&answer.body)
        .bind(&run.id)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        notify(&mut tx, WORK_CHANNEL).await?;
        tx.commit().await?;
        self.versions_stored([&run.version]);
        Ok(Once::Started)
    }

    pub async fn load_runs(&self, ids: &[&str]) -> Result<Vec<RunState>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, workflow, version, status, input, context, parent_id, step_count, created_at
             FROM runs WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_state).collect()
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<RunView>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| run_view(&r)).transpose()
    }

    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunView>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM runs
             WHERE ($1::text IS NULL OR workflow = $1)
               AND ($2::text IS NULL OR status = $2)
               AND ($3::text IS NULL OR parent_id = $3)
               AND ($4::text IS NULL OR (created_at, id) < (SELECT created_at, id FROM runs WHERE id = $4))
               AND ($6::bigint IS NULL OR created_at >= $6)
               AND ($7::bigint IS NULL OR created_at < $7)
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
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_view).collect()
    }

    pub async fn step_history(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM step_runs WHERE run_id = $1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(step_record).collect()
    }

    pub async fn child_counts(&self, parent_id: &str) -> Result<ChildCounts, StoreError> {
        let mut conn = self.pool.acquire().await?;
        child_counts_of(&mut conn, parent_id).await
    }

    pub async fn workflow_source(
        &self,
        version: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT name, source FROM workflow_versions WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get("name"), r.get("source"))))
    }

    pub async fn records(&self, collection: &str) -> Result<Vec<(String, Json)>, StoreError> {
        let rows = sqlx::query("SELECT key, data FROM records WHERE collection = $1 ORDER BY key")
            .bind(collection)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("key"), json_of(r, "data")?)))
            .collect()
    }

    pub async fn effect_keys(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT idempotency_key FROM effects ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    // ----- jobs --------------------------------------------------------------------------

    /// Claims due jobs whose lease is free or expired, skipping rows other processes are
    /// claiming right now, at most one per run and none of a run with a live lease or an
    /// earlier due job.
    pub async fn claim_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        wall_now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(
            "WITH picked AS (
                 SELECT j.id FROM jobs j
                 WHERE j.due_at <= $1 AND (j.lease_until IS NULL OR j.lease_until < $2)
                   AND NOT EXISTS (
                       SELECT 1 FROM jobs o
                       WHERE o.run_id = j.run_id AND o.id <> j.id
                         AND (o.lease_until >= $2 OR (o.due_at <= $1 AND o.id < j.id)))
                 ORDER BY j.due_at, j.id
                 LIMIT $5
                 FOR UPDATE SKIP LOCKED)
             -- ANY(ARRAY(...)): primary-key lookups; a join here made the planner scan
             -- the whole table.
             UPDATE jobs SET lease_owner = $3, lease_until = $4
             WHERE id = ANY(ARRAY(SELECT id FROM picked))
             RETURNING id, run_id, kind, step, timer, payload, due_at, attempt",
        )
        .bind(millis(now))
        .bind(millis(wall_now))
        .bind(owner)
        .bind(millis(wall_now + lease))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut jobs: Vec<Job> = rows.iter().map(job).collect::<Result<_, StoreError>>()?;
        jobs.sort_by_key(|j| (j.due_at, j.id));
        Ok(jobs)
    }

    /// Gives jobs back before their lease ends (their commit failed).
    async fn release(&self, owner: &str, ids: &[i64]) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL
             WHERE id = ANY($1) AND lease_owner = $2",
        )
        .bind(ids)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row: Option<i64> = sqlx::query_scalar("SELECT min(due_at) FROM jobs")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.map(from_millis))
    }

    pub async fn due_jobs(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE due_at <= $1")
                .bind(millis(now))
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn queue_stats(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        let row =
            sqlx::query("SELECT count(*) AS n, min(due_at) AS oldest FROM jobs WHERE due_at <= $1")
                .bind(millis(now))
                .fetch_one(&self.pool)
                .await?;
        Ok((
            row.get("n"),
            row.get::<Option<i64>, _>("oldest").map(from_millis),
        ))
    }

    pub async fn cancel_run(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let parent: Option<Option<String>> =
            sqlx::query_scalar("SELECT parent_id FROM runs WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(parent) = parent else {
            return Ok(None);
        };
        let cancelled: Vec<String> = sqlx::query_scalar(
            "WITH RECURSIVE tree(id) AS (SELECT $1::text COLLATE \"C\" UNION ALL SELECT r.id FROM runs r JOIN tree ON r.parent_id = tree.id)
             UPDATE runs SET status = 'cancelled', error = 'cancelled', updated_at = $2, finished_at = $2
             WHERE id IN (SELECT id FROM tree) AND status IN ('running', 'waiting')
             RETURNING id",
        )
        .bind(id)
        .bind(millis(now))
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM jobs WHERE run_id = ANY($1)")
            .bind(&cancelled)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM waits WHERE run_id = ANY($1)")
            .bind(&cancelled)
            .execute(&mut *tx)
            .await?;
        if let Some(parent) = parent.filter(|_| cancelled.iter().any(|c| c == id)) {
            wake_parent(&mut tx, &parent, now).await?;
        }
        notify(&mut tx, WORK_CHANNEL).await?;
        tx.commit().await?;
        Ok(Some(cancelled))
    }

    pub async fn retry_run(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<String, RetryRefused>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT status, current_step FROM runs WHERE id = $1 FOR UPDATE")
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
        sqlx::query("UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, updated_at = $1 WHERE id = $2")
            .bind(millis(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_jobs(&mut tx, &[(id, &NewJob::step(&step, now))]).await?;
        notify(&mut tx, WORK_CHANNEL).await?;
        tx.commit().await?;
        Ok(Ok(step))
    }

    pub async fn prune_runs(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT r.id FROM runs r
             WHERE r.status IN ('completed', 'cancelled') AND r.finished_at < $1
               AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_id = r.id)
               AND NOT EXISTS (SELECT 1 FROM runs p WHERE p.id = r.parent_id AND p.status IN ('running', 'waiting'))
             LIMIT $2
             FOR UPDATE SKIP LOCKED",
        )
        .bind(millis(cutoff))
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        for statement in [
            "DELETE FROM step_runs WHERE run_id = ANY($1)",
            "DELETE FROM consumed_events WHERE run_id = ANY($1)",
            "DELETE FROM effects WHERE run_id = ANY($1)",
            "DELETE FROM jobs WHERE run_id = ANY($1)",
            "DELETE FROM waits WHERE run_id = ANY($1)",
        ] {
            sqlx::query(statement).bind(&ids).execute(&mut *tx).await?;
        }
        let deleted = sqlx::query("DELETE FROM runs WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    pub async fn prune_events(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM events WHERE received_at < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(millis(cutoff))
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM consumed_events WHERE event_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM events WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    pub async fn prune_idempotency_keys(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM idempotency_keys WHERE key IN
               (SELECT key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
        )
        .bind(millis(cutoff))
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn pending_jobs(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn commit(
        &self,
        owner: &str,
        outcomes: Arc<[JobOutcome]>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let result = async {
            let mut tx = self.pool.begin().await?;
            let applied = commit_outcomes(&mut tx, owner, &outcomes, now).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(applied)
        }
        .await;
        if result.is_err() {
            // Not committed: give the jobs back now rather than when their lease ends.
            let ids: Vec<i64> = outcomes.iter().map(|o| o.job_id).collect();
            if let Err(e) = self.release(owner, &ids).await {
                warn!(error = %e, "could not release the leases of an uncommitted batch");
            }
        }
        result
    }

    // ----- events ------------------------------------------------------------------------

    pub async fn deliver_event(
        &self,
        event: &NewEvent,
        starts: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<Delivered, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (event_id, resumed_runs) = insert_event(&mut tx, event, now).await?;
        let mut started_runs = Vec::new();
        for run in starts {
            let mut run = run.clone();
            run.trigger_key = Some(format!("event:{event_id}:{}", run.workflow));
            started_runs.push(insert_run(&mut tx, &run, false, now).await?.run_id);
        }
        notify(&mut tx, WORK_CHANNEL).await?;
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
        sqlx::query("INSERT INTO api_tokens (id, token_hash, role, description, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(token_hash)
            .bind(role)
            .bind(description)
            .bind(millis(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn count_tokens(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM api_tokens")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn token_role(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT role FROM api_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    // ----- secrets -----------------------------------------------------------------------

    pub async fn put_secret(
        &self,
        name: &str,
        sealed: &crate::secrets::Sealed,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secrets (name, key_id, nonce, ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce,
                                              ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(millis(now))
        .execute(&self.pool)
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
            "INSERT INTO secrets (name, key_id, nonce, ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(millis(now))
        .execute(&self.pool)
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
            sqlx::query_scalar("SELECT value FROM plugin_kv WHERE plugin = $1 AND key = $2")
                .bind(plugin)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn plugin_configs(&self) -> Result<Vec<(String, Json)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT plugin, config FROM plugin_config ORDER BY plugin")
                .fetch_all(&self.pool)
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
                    "INSERT INTO plugin_config (plugin, config, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (plugin) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                )
                .bind(plugin)
                .bind(config.to_string())
                .bind(millis(now))
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM plugin_config WHERE plugin = $1")
                    .bind(plugin)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn get_secret(
        &self,
        name: &str,
    ) -> Result<Option<crate::secrets::Sealed>, StoreError> {
        let row = sqlx::query("SELECT key_id, nonce, ciphertext FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| crate::secrets::Sealed {
            key_id: r.get("key_id"),
            nonce: r.get("nonce"),
            ciphertext: r.get("ciphertext"),
        }))
    }

    pub async fn list_secrets(&self) -> Result<Vec<SecretInfo>, StoreError> {
        let rows =
            sqlx::query("SELECT name, key_id, created_at, updated_at FROM secrets ORDER BY name")
                .fetch_all(&self.pool)
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
        Ok(sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    pub async fn reseal_secrets<E>(
        &self,
        mut reseal: impl FnMut(&str, &crate::secrets::Sealed) -> Result<crate::secrets::Sealed, E>,
        now: DateTime<Utc>,
    ) -> Result<Result<usize, E>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT name, key_id, nonce, ciphertext FROM secrets FOR UPDATE")
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
            sqlx::query("UPDATE secrets SET key_id = $1, nonce = $2, ciphertext = $3, updated_at = $4 WHERE name = $5")
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

    pub async fn cron_cursor(&self, workflow: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT checked_to FROM cron_cursors WHERE workflow = $1")
                .bind(workflow)
                .fetch_optional(&self.pool)
                .await?;
        Ok(v.map(from_millis))
    }

    pub async fn fire_cron(
        &self,
        workflow: &str,
        local_time: &str,
        run: Option<&NewRun>,
        checked_to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut fired = false;
        if let Some(run) = run {
            let inserted = sqlx::query(
                "INSERT INTO cron_firings (workflow, local_time, fired_at, run_id) VALUES ($1, $2, $3, $4)
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
                notify(&mut tx, WORK_CHANNEL).await?;
                fired = true;
            }
        }
        sqlx::query(
            "INSERT INTO cron_cursors (workflow, checked_to) VALUES ($1, $2)
             ON CONFLICT (workflow) DO UPDATE SET checked_to = GREATEST(cron_cursors.checked_to, $2)",
        )
        .bind(workflow)
        .bind(millis(checked_to))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(fired)
    }

    pub async fn cron_firings(
        &self,
        workflow: &str,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query("SELECT local_time, run_id FROM cron_firings WHERE workflow = $1 ORDER BY fired_at, local_time")
            .bind(workflow)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    // ----- email -------------------------------------------------------------------------

    pub async fn enqueue_emails(
        &self,
        emails: &[OutgoingEmail],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for email in emails {
            enqueue_email(&mut tx, None, None, email, now).await?;
        }
        notify(&mut tx, MAIL_CHANNEL).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Messages whose sender died mid-send (their lease expired) go back to the queue.
    /// Messages other live processes are sending are left alone.
    pub async fn recover_outbox(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE outbox SET status = 'queued', due_at = $1, updated_at = $1,
                               lease_owner = NULL, lease_until = NULL
             WHERE status = 'sending' AND lease_until < $2",
        )
        .bind(millis(now))
        .bind(millis(Utc::now()))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.recover_outbox(now).await?;
        let wall = millis(Utc::now());
        let rows = sqlx::query(&format!(
            "UPDATE outbox SET status = 'sending', updated_at = $1, lease_owner = $3, lease_until = $4
             WHERE id IN (SELECT id FROM outbox WHERE status = 'queued' AND due_at <= $1
                          ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING {OUTBOX_COLUMNS}"
        ))
        .bind(millis(now))
        .bind(i64::from(limit))
        .bind(&self.owner)
        .bind(wall + self.mail_lease_ms.load(Ordering::Relaxed))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .iter()
            .map(outbox_message)
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(|a, b| a.email.id.cmp(&b.email.id));
        Ok(claimed)
    }

    pub async fn update_outbox(&self, updates: &[OutboxUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let mut requeued = false;
        for update in updates {
            match update {
                OutboxUpdate::Hold { id, until } => {
                    requeued = true;
                    sqlx::query(
                        "UPDATE outbox SET status = 'queued', due_at = $1, lease_owner = NULL, lease_until = NULL
                         WHERE id = $2 AND status = 'sending'",
                    )
                    .bind(millis(*until))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                OutboxUpdate::Sent {
                    id,
                    channel,
                    reply,
                    at,
                } => {
                    sqlx::query(
                        "UPDATE outbox SET status = 'sent', attempts = attempts + 1, reply = $1, sent_at = $2,
                                           updated_at = $2, lease_owner = NULL, lease_until = NULL
                         WHERE id = $3",
                    )
                    .bind(reply)
                    .bind(millis(*at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO email_daily_counts (channel, day, sent) VALUES ($1, $2, 1)
                         ON CONFLICT (channel, day) DO UPDATE SET sent = email_daily_counts.sent + 1",
                    )
                    .bind(channel)
                    .bind(at.format("%Y-%m-%d").to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                OutboxUpdate::Retry { id, reply, due, at } => {
                    requeued = true;
                    sqlx::query(
                        "UPDATE outbox SET status = 'queued', attempts = attempts + 1, reply = $1, due_at = $2,
                                           updated_at = $3, lease_owner = NULL, lease_until = NULL
                         WHERE id = $4",
                    )
                    .bind(reply)
                    .bind(millis(*due))
                    .bind(millis(*at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                OutboxUpdate::Finished {
                    id,
                    status,
                    reply,
                    attempted,
                    at,
                } => {
                    sqlx::query(
                        "UPDATE outbox SET status = $1, attempts = attempts + $2, reply = $3, updated_at = $4,
                                           lease_owner = NULL, lease_until = NULL
                         WHERE id = $5",
                    )
                    .bind(status)
                    .bind(i64::from(*attempted))
                    .bind(reply)
                    .bind(millis(*at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        if requeued {
            notify(&mut tx, MAIL_CHANNEL).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn sent_today(&self, channel: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let sent: Option<i64> = sqlx::query_scalar(
            "SELECT sent FROM email_daily_counts WHERE channel = $1 AND day = $2",
        )
        .bind(channel)
        .bind(now.format("%Y-%m-%d").to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(sent.unwrap_or(0) as u64)
    }

    pub async fn suppression(
        &self,
        address: &str,
        purpose: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        let row = sqlx::query(
            "SELECT address, purpose, reason, detail, created_at FROM email_suppressions
             WHERE address = $1 AND (purpose = '*' OR purpose = $2)
             ORDER BY purpose = '*' DESC LIMIT 1",
        )
        .bind(address.trim().to_lowercase())
        .bind(purpose)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| suppression(&r)))
    }

    pub async fn suppress(
        &self,
        address: &str,
        purpose: &str,
        reason: &str,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "INSERT INTO email_suppressions (address, purpose, reason, detail, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address, purpose) DO NOTHING",
        )
        .bind(address.trim().to_lowercase())
        .bind(purpose)
        .bind(reason)
        .bind(detail)
        .bind(millis(now))
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    pub async fn suppressions(
        &self,
        address: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Suppression>, StoreError> {
        let rows = sqlx::query(
            "SELECT address, purpose, reason, detail, created_at FROM email_suppressions
             WHERE $1::text IS NULL OR address = $1 ORDER BY created_at DESC, address LIMIT $2",
        )
        .bind(address.map(|a| a.trim().to_lowercase()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(suppression).collect())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn record_bounce(
        &self,
        address: &str,
        kind: &str,
        status: Option<&str>,
        detail: Option<&str>,
        message_id: Option<&str>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let address = address.trim().to_lowercase();
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, "bounce", &address, "").await?;
        sqlx::query(
            "INSERT INTO email_bounces (address, kind, status, detail, message_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&address)
        .bind(kind)
        .bind(status)
        .bind(detail)
        .bind(message_id)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        let soft: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM email_bounces WHERE address = $1 AND kind = 'soft' AND created_at >= $2",
        )
        .bind(&address)
        .bind(millis(since))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(soft)
    }

    pub async fn get_message(&self, id: &str) -> Result<Option<MessageView>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(message_view))
    }

    pub async fn list_messages(
        &self,
        filter: &MessageFilter,
    ) -> Result<Vec<MessageView>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox
             WHERE {SCOPE} AND ($4::text IS NULL OR status = $4) AND ($5::text IS NULL OR id < $5)
             ORDER BY id DESC LIMIT $6"
        );
        let rows = bind_scope(sqlx::query(&sql), filter)
            .bind(&filter.status)
            .bind(&filter.before)
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(message_view).collect())
    }

    pub async fn message_counts(
        &self,
        filter: &MessageFilter,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let sql = format!("SELECT status, count(*) AS n FROM outbox WHERE {SCOPE} GROUP BY status");
        let rows = bind_scope(sqlx::query(&sql), filter)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>("status"), r.get::<i64, _>("n")))
            .collect())
    }

    pub async fn prune_outbox(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox WHERE status IN ('sent', 'failed', 'suppressed')
                   AND updated_at < $1 LIMIT $2)",
        )
        .bind(millis(cutoff))
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

/// The run, campaign and recipient of a [`MessageFilter`], as `$1`…`$3`.
const SCOPE: &str = "($1::text IS NULL OR run_id = $1) AND ($2::text IS NULL OR campaign = $2)
                     AND ($3::text IS NULL OR address = $3)";

fn bind_scope<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    filter: &'q MessageFilter,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&filter.run_id)
        .bind(&filter.campaign)
        .bind(filter.recipient.as_ref().map(|r| r.trim().to_lowercase()))
}

/// What one process at a time does when several share a database: fire cron (so each
/// firing is decided once) and dispatch email (so throttles and daily caps, kept in that
/// process's memory, hold for the whole installation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Cron,
    Mail,
}

/// A leadership of one process. On PostgreSQL it is a session advisory lock held on a
/// connection of its own (a pooled connection could be handed to someone else, or
/// recycled, taking the lock with it); when the process or the connection dies, the lock
/// is released and another process takes over.
#[derive(Debug)]
pub struct LeaderLease {
    conn: Option<LeaderConnection>,
}

impl LeaderLease {
    /// The embedded store's process always leads.
    pub fn embedded() -> LeaderLease {
        LeaderLease { conn: None }
    }

    /// Whether the lease still holds: a session advisory lock lasts as long as its
    /// connection, so the connection answering is the lock being held.
    pub async fn is_held(&self) -> bool {
        let Some(conn) = &self.conn else {
            return true;
        };
        let mut slot = conn.lock().await;
        let Some(conn) = slot.as_mut() else {
            return false;
        };
        if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
            return true;
        }
        *slot = None;
        false
    }
}

// ----- helpers inside a transaction ------------------------------------------------------

/// `NOTIFY channel`, delivered to every listening process when the transaction commits
/// (several in one transaction are delivered once).
async fn notify(tx: &mut Tx<'_>, channel: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A transaction-scoped advisory lock on (`scope`, `a`, `b`).
async fn lock(tx: &mut Tx<'_>, scope: &str, a: &str, b: &str) -> Result<(), StoreError> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2 || chr(31) || $3, 0))",
    )
    .bind(scope)
    .bind(a)
    .bind(b)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_run(
    tx: &mut Tx<'_>,
    run: &NewRun,
    version_stored: bool,
    now: DateTime<Utc>,
) -> Result<Started, StoreError> {
    if let Some(key) = &run.trigger_key {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM runs WHERE trigger_key = $1")
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
            "INSERT INTO workflow_versions (version, name, source, created_at) VALUES ($1, $2, $3, $4)
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
         VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $8, (SELECT coalesce(max(id), 0) FROM events), $9, $9)",
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
    .execute(&mut **tx)
    .await?;
    insert_jobs(tx, &[(&run.id, &NewJob::step(&run.first_step, run.due_at))]).await?;
    Ok(Started {
        run_id: run.id.clone(),
        created: true,
    })
}

/// Inserts many jobs with one statement.
async fn insert_jobs(tx: &mut Tx<'_>, jobs: &[(&str, &NewJob)]) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut run_ids = Vec::with_capacity(jobs.len());
    let mut kinds = Vec::with_capacity(jobs.len());
    let mut steps = Vec::with_capacity(jobs.len());
    let mut timers = Vec::with_capacity(jobs.len());
    let mut payloads = Vec::with_capacity(jobs.len());
    let mut dues = Vec::with_capacity(jobs.len());
    let mut attempts = Vec::with_capacity(jobs.len());
    for (run_id, job) in jobs {
        run_ids.push(*run_id);
        kinds.push(job.kind.as_str());
        steps.push(job.step.as_str());
        timers.push(job.timer.as_deref());
        payloads.push(job.payload.as_ref().map(Json::to_string));
        dues.push(millis(job.due_at));
        attempts.push(i64::from(job.attempt));
    }
    sqlx::query(
        "INSERT INTO jobs (run_id, kind, step, timer, payload, due_at, attempt)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[])",
    )
    .bind(&run_ids)
    .bind(&kinds)
    .bind(&steps)
    .bind(&timers)
    .bind(&payloads)
    .bind(&dues)
    .bind(&attempts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies the outcomes of a batch: a handful of array statements for the whole batch,
/// per-outcome statements only for what is rare (waits, timers, effects, events,
/// children). An outcome counts only if its job still exists and is still leased to
/// `owner`; otherwise another process has taken it over and the outcome is void.
async fn commit_outcomes(
    tx: &mut Tx<'_>,
    owner: &str,
    outcomes: &[JobOutcome],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    // The claimed jobs go; so do the other jobs (timers) of runs this batch finishes — a
    // finished run leaves no timers behind — if their job was still ours. One statement.
    let job_ids: Vec<i64> = outcomes.iter().map(|o| o.job_id).collect();
    let finishing: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.run.as_ref().is_some_and(|r| r.status.is_finished()))
        .map(|o| o.run_id.as_str())
        .collect();
    let deleted: Vec<i64> = sqlx::query_scalar(
        "WITH mine AS (DELETE FROM jobs WHERE id = ANY($1) AND lease_owner = $2 RETURNING id, run_id),
              timers AS (DELETE FROM jobs WHERE run_id = ANY($3) AND id <> ALL($1)
                           AND run_id IN (SELECT run_id FROM mine))
         SELECT id FROM mine",
    )
    .bind(&job_ids)
    .bind(owner)
    .bind(&finishing)
    .fetch_all(&mut **tx)
    .await?;
    let deleted: HashSet<i64> = deleted.into_iter().collect();
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
    if live.is_empty() {
        return Ok(applied);
    }

    // Step history.
    let steps: Vec<(&str, &StepRecord)> = live
        .iter()
        .flat_map(|o| o.steps.iter().map(move |s| (o.run_id.as_str(), s)))
        .collect();
    if !steps.is_empty() {
        let column = |f: &dyn Fn(&StepRecord) -> Option<String>| -> Vec<Option<String>> {
            steps.iter().map(|(_, s)| f(s)).collect()
        };
        let runs: Vec<&str> = steps.iter().map(|(r, _)| *r).collect();
        sqlx::query(
            "INSERT INTO step_runs (run_id, step, action, attempt, status, input, output, error, log, started_at, finished_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
                                  $7::text[], $8::text[], $9::text[], $10::int8[], $11::int8[])",
        )
        .bind(&runs)
        .bind(column(&|s| Some(s.step.clone())))
        .bind(column(&|s| Some(s.action.clone())))
        .bind(steps.iter().map(|(_, s)| i64::from(s.attempt)).collect::<Vec<_>>())
        .bind(column(&|s| Some(s.status.clone())))
        .bind(column(&|s| s.input.as_ref().map(Json::to_string)))
        .bind(column(&|s| s.output.as_ref().map(Json::to_string)))
        .bind(column(&|s| s.error.clone()))
        .bind(column(&|s| s.log.as_ref().map(Json::to_string)))
        .bind(steps.iter().map(|(_, s)| millis(s.started_at)).collect::<Vec<_>>())
        .bind(steps.iter().map(|(_, s)| millis(s.finished_at)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }

    let mut mail = false;
    for outcome in &live {
        let run_id = outcome.run_id.as_str();
        for (key, effect) in &outcome.effects {
            mail |= apply_effect(tx, run_id, key, effect, now).await?;
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
            insert_jobs(tx, &[(run_id, timer)]).await?;
        }
        for child in &outcome.children {
            insert_run(tx, child, false, now).await?;
        }
    }

    let jobs: Vec<(&str, &NewJob)> = live
        .iter()
        .flat_map(|o| o.jobs.iter().map(move |j| (o.run_id.as_str(), j)))
        .collect();
    insert_jobs(tx, &jobs).await?;

    let ended: Vec<&str> = live
        .iter()
        .filter(|o| o.ends_wait)
        .map(|o| o.run_id.as_str())
        .collect();
    if !ended.is_empty() {
        sqlx::query("DELETE FROM waits WHERE run_id = ANY($1)")
            .bind(&ended)
            .execute(&mut **tx)
            .await?;
    }

    // Run updates; new waits are registered, unless what they wait for is already there
    // (then the run resumes at once).
    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    let mut contexts = Vec::new();
    let mut current = Vec::new();
    let mut outputs = Vec::new();
    let mut errors = Vec::new();
    let mut counts = Vec::new();
    let mut finished_at = Vec::new();
    let mut parents = std::collections::BTreeSet::new();
    for outcome in &live {
        let Some(update) = &outcome.run else { continue };
        let status = match &outcome.wait {
            Some(wait) => register_wait(tx, &outcome.run_id, wait, update.status, now).await?,
            None => update.status,
        };
        if status.is_finished() {
            parents.extend(outcome.parent_id.iter());
        }
        ids.push(outcome.run_id.as_str());
        statuses.push(status.as_str());
        contexts.push(update.context.to_string());
        current.push(update.current_step.clone());
        outputs.push(update.output.as_ref().map(Json::to_string));
        errors.push(update.error.clone());
        counts.push(update.step_count);
        finished_at.push(status.is_finished().then(|| millis(now)));
    }
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE runs SET status = u.status, context = u.context, current_step = u.current_step,
                             output = u.output, error = u.error, step_count = u.step_count,
                             updated_at = $1, finished_at = u.finished_at
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::int8[], $9::int8[])
                  AS u(id, status, context, current_step, output, error, step_count, finished_at)
             WHERE runs.id = u.id",
        )
        .bind(millis(now))
        .bind(&ids)
        .bind(&statuses)
        .bind(&contexts)
        .bind(&current)
        .bind(&outputs)
        .bind(&errors)
        .bind(&counts)
        .bind(&finished_at)
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
    if !jobs.is_empty()
        || live
            .iter()
            .any(|o| !o.events.is_empty() || !o.children.is_empty())
    {
        notify(tx, WORK_CHANNEL).await?;
    }
    if mail {
        notify(tx, MAIL_CHANNEL).await?;
    }
    Ok(applied)
}

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
        } => {
            // Serialize with deliveries of these events (same lock, sorted against
            // deadlocks between two parking runs).
            let mut sorted: Vec<&(String, String)> = keys.iter().collect();
            sorted.sort();
            for (event_type, key) in &sorted {
                lock(tx, "event", event_type, key).await?;
            }
            match find_arrived_event(tx, run_id, keys).await? {
                Some(event) => {
                    consume(tx, run_id, event["event_id"].as_i64().unwrap_or_default()).await?;
                    insert_jobs(tx, &[(run_id, &NewJob::resume(step, event, now))]).await?;
                    Ok(RunStatus::Running)
                }
                None => {
                    for (event_type, key) in keys {
                        sqlx::query(
                            "INSERT INTO waits (run_id, event_type, key, step) VALUES ($1, $2, $3, $4)
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(run_id)
                        .bind(event_type)
                        .bind(key)
                        .bind(step)
                        .execute(&mut **tx)
                        .await?;
                    }
                    if let Some(timeout) = timeout {
                        insert_jobs(tx, &[(run_id, timeout)]).await?;
                    }
                    Ok(status)
                }
            }
        }
        WaitFor::Children { step } => {
            // Serialize with children finishing in other processes (they lock this row
            // before looking for the wait).
            sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE")
                .bind(run_id)
                .execute(&mut **tx)
                .await?;
            if has_unfinished_children(tx, run_id).await? {
                sqlx::query(
                    "INSERT INTO waits (run_id, event_type, key, step) VALUES ($1, 'children', '', $2)
                     ON CONFLICT DO NOTHING",
                )
                .bind(run_id)
                .bind(step)
                .execute(&mut **tx)
                .await?;
                Ok(status)
            } else {
                let counts = child_counts_of(tx, run_id).await?;
                insert_jobs(
                    tx,
                    &[(
                        run_id,
                        &NewJob::resume(step, serde_json::to_value(counts)?, now),
                    )],
                )
                .await?;
                Ok(RunStatus::Running)
            }
        }
    }
}

async fn forget_timer(tx: &mut Tx<'_>, run_id: &str, name: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM jobs WHERE run_id = $1 AND timer = $2")
        .bind(run_id)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO consumed_events (run_id, event_id)
         SELECT $1, id FROM events WHERE type = $2 AND key = $1
         ON CONFLICT DO NOTHING",
    )
    .bind(run_id)
    .bind(format!("{}{name}", crate::workflow::TIMER_EVENT_PREFIX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn consume(tx: &mut Tx<'_>, run_id: &str, event_id: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consumed_events (run_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(run_id)
    .bind(event_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn find_arrived_event(
    tx: &mut Tx<'_>,
    run_id: &str,
    keys: &[(String, String)],
) -> Result<Option<Json>, StoreError> {
    let mut best: Option<(i64, Json)> = None;
    for (event_type, key) in keys {
        let row = sqlx::query(
            "SELECT e.* FROM events e
             WHERE e.type = $1 AND e.key = $2
               AND e.id > (SELECT events_after FROM runs WHERE id = $3)
               AND NOT EXISTS (SELECT 1 FROM consumed_events c WHERE c.run_id = $3 AND c.event_id = e.id)
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

async fn insert_event(
    tx: &mut Tx<'_>,
    event: &NewEvent,
    now: DateTime<Utc>,
) -> Result<(i64, Vec<String>), StoreError> {
    lock(tx, "event", &event.event_type, &event.key).await?;
    let row = sqlx::query(
        "INSERT INTO events (type, key, payload, received_at) VALUES ($1, $2, $3, $4) RETURNING *",
    )
    .bind(&event.event_type)
    .bind(&event.key)
    .bind(event.payload.to_string())
    .bind(millis(now))
    .fetch_one(&mut **tx)
    .await?;
    let event_id: i64 = row.get("id");
    let output = event_output(&row)?;
    let waiting = sqlx::query("SELECT run_id, step FROM waits WHERE event_type = $1 AND key = $2")
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

async fn resume_waiting_run(
    tx: &mut Tx<'_>,
    run_id: &str,
    step: &str,
    payload: Json,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM waits WHERE run_id = $1")
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM jobs WHERE run_id = $1 AND kind = 'timeout'")
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    insert_jobs(tx, &[(run_id, &NewJob::resume(step, payload, now))]).await?;
    sqlx::query(
        "UPDATE runs SET status = 'running', updated_at = $1 WHERE id = $2 AND status = 'waiting'",
    )
    .bind(millis(now))
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn has_unfinished_children(tx: &mut Tx<'_>, parent: &str) -> Result<bool, StoreError> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM runs WHERE parent_id = $1 AND status IN ('running', 'waiting') LIMIT 1",
    )
    .bind(parent)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

async fn wake_parent(tx: &mut Tx<'_>, parent: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    // The parent may be parking in another process right now: wait for its row.
    sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE")
        .bind(parent)
        .execute(&mut **tx)
        .await?;
    let step: Option<String> =
        sqlx::query_scalar("SELECT step FROM waits WHERE run_id = $1 AND event_type = 'children'")
            .bind(parent)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(step) = step else { return Ok(()) };
    if has_unfinished_children(tx, parent).await? {
        return Ok(());
    }
    let counts = child_counts_of(tx, parent).await?;
    resume_waiting_run(tx, parent, &step, serde_json::to_value(counts)?, now).await
}

async fn child_counts_of(conn: &mut PgConnection, parent: &str) -> Result<ChildCounts, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) AS n FROM runs WHERE parent_id = $1 GROUP BY status",
    )
    .bind(parent)
    .fetch_all(&mut *conn)
    .await?;
    Ok(child_counts(&rows))
}

/// Applies one effect unless its key was applied before; returns whether it queued mail.
async fn apply_effect(
    tx: &mut Tx<'_>,
    run_id: &str,
    key: &str,
    effect: &Effect,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let step = key.rsplit(':').nth(1);
    let inserted = sqlx::query(
        "INSERT INTO effects (idempotency_key, run_id, step, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(run_id)
    .bind(step.unwrap_or_default())
    .bind(effect.kind())
    .bind(serde_json::to_string(effect)?)
    .bind(millis(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    match effect {
        Effect::Email(email) => {
            enqueue_email(tx, Some(run_id), step, email, now).await?;
            Ok(true)
        }
        Effect::Record {
            collection,
            key,
            data,
        } => {
            sqlx::query(
                "INSERT INTO records (collection, key, data, run_id, updated_at) VALUES ($1, $2, $3, $4, $5)
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
            Ok(false)
        }
    }
}

async fn enqueue_email(
    tx: &mut Tx<'_>,
    run_id: Option<&str>,
    step: Option<&str>,
    email: &OutgoingEmail,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (address, domain) = recipient_address(&email.to);
    sqlx::query(
        "INSERT INTO outbox (id, run_id, step, workflow, campaign, channel, template, locale, recipient,
                             address, domain, name, purpose, data, status, due_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'queued', $15, $15, $15)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&email.id)
    .bind(run_id)
    .bind(step)
    .bind(Some(&email.workflow).filter(|w| !w.is_empty()))
    .bind(&email.campaign)
    .bind(&email.channel)
    .bind(&email.template)
    .bind(&email.locale)
    .bind(email.to.trim())
    .bind(&address)
    .bind(&domain)
    .bind(&email.name)
    .bind(&email.purpose)
    .bind(email.data.to_string())
    .bind(millis(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies one plugin key-value write (a `None` value deletes the key).
async fn write_kv(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    write: &kontor_plugins::KvWrite,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match &write.value {
        Some(value) => {
            sqlx::query(
                "INSERT INTO plugin_kv (plugin, key, value, updated_at) VALUES ($1, $2, $3, $4)
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
            sqlx::query("DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2")
                .bind(&write.plugin)
                .bind(&write.key)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}
