//! Group commit: step outcomes, run starts and event deliveries go to one writer task, which commits
//! whatever has queued up meanwhile in one transaction (one fsync for all). Deliveries
//! — the intake — share their statements (each statement is a round
//! trip to SQLite's thread); should any write of a batch fail, the batch is applied again
//! with each write in a savepoint of its own, so one failing write fails alone.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqlitePool;

use super::Tx;
use crate::run::{JobOutcome, NewEvent, NewRun, Started};
use crate::store::transaction::Tx as AnyTx;
use crate::store::{Delivered, StoreError};

/// A write waiting for the next group commit.
pub(super) enum GroupWrite {
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
    Bounce {
        bounce: crate::store::suppressions::Bounce,
        actor: crate::store::audit::Actor,
        now: DateTime<Utc>,
        reply:
            tokio::sync::oneshot::Sender<Result<crate::store::suppressions::Bounced, StoreError>>,
    },
    Route {
        route: Box<crate::store::leads::OwnedRoute>,
        reply: tokio::sync::oneshot::Sender<Result<serde_json::Value, StoreError>>,
    },
    Lead {
        intake: Box<crate::store::leads::NewIntake>,
        reply: tokio::sync::oneshot::Sender<Result<crate::store::leads::Intake, StoreError>>,
    },
    Deliver {
        event: NewEvent,
        delivery_id: Option<String>,
        /// Each with whether its workflow version is stored already.
        starts: Vec<(NewRun, bool)>,
        now: DateTime<Utc>,
        reply: tokio::sync::oneshot::Sender<Result<Delivered, StoreError>>,
    },
}

/// Writes one group commit takes at most.
const GROUP_LIMIT: usize = 64;

/// The writer task: takes the first queued write, adds whatever else is queued already
/// (never waiting for more, so a lone write is not delayed), and commits them in one
/// transaction. The batch is first applied as a whole, without savepoints (each costs two
/// round trips to SQLite's thread), the deliveries together; should any write fail, that
/// attempt is rolled back and the batch applied again with each write in a savepoint of
/// its own, so the one at fault fails alone and the others commit.
pub(super) async fn group_writer(
    pool: SqlitePool,
    mut queue: tokio::sync::mpsc::Receiver<GroupWrite>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < GROUP_LIMIT {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let committed = match commit_whole(&pool, &batch).await {
            Ok(results) => Ok(results),
            // A lone write that failed is the one at fault.
            Err(e) if batch.len() == 1 => Ok(vec![Err(e)]),
            Err(_) => commit_isolated(&pool, &batch).await,
        };
        match committed {
            Ok(results) => {
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

/// Applies and commits the whole batch in one transaction without savepoints; any
/// failure rolls all of it back.
async fn commit_whole(
    pool: &SqlitePool,
    batch: &[GroupWrite],
) -> Result<Vec<Result<GroupResult, StoreError>>, StoreError> {
    let mut tx = pool.begin().await?;
    let mut results: Vec<Option<GroupResult>> = batch.iter().map(|_| None).collect();
    let (together, deliveries): (Vec<usize>, Vec<super::events::Delivery>) = batch
        .iter()
        .enumerate()
        .filter_map(|(i, write)| Some((i, write.delivery()?)))
        .unzip();
    if !deliveries.is_empty() {
        let delivered = super::events::deliver_together(&mut tx, &deliveries).await?;
        for (&i, delivered) in together.iter().zip(delivered) {
            results[i] = Some(GroupResult::Deliver(delivered));
        }
    }
    for (write, result) in batch.iter().zip(results.iter_mut()) {
        if result.is_none() {
            *result = Some(apply_group_write(&mut tx, write).await?);
        }
    }
    tx.commit().await?;
    Ok(results
        .into_iter()
        .map(|r| r.ok_or_else(|| StoreError::GroupCommit("a write was not applied".into())))
        .collect())
}

/// Applies the batch with each write in a savepoint of its own, so a failing write fails
/// alone, and commits the rest.
async fn commit_isolated(
    pool: &SqlitePool,
    batch: &[GroupWrite],
) -> Result<Vec<Result<GroupResult, StoreError>>, StoreError> {
    use sqlx::Acquire;
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for write in batch {
        results.push(
            async {
                let mut savepoint = tx.begin().await?;
                let result = apply_group_write(&mut savepoint, write).await?;
                savepoint.commit().await?;
                Ok::<_, StoreError>(result)
            }
            .await,
        );
    }
    tx.commit().await?;
    Ok(results)
}

async fn apply_group_write(tx: &mut Tx<'_>, write: &GroupWrite) -> Result<GroupResult, StoreError> {
    Ok(match write {
        GroupWrite::Commit { outcomes, now, .. } => {
            GroupResult::Commit(super::commit::commit_outcomes(tx, outcomes, *now).await?)
        }
        GroupWrite::Start { runs, now, .. } => {
            let mut started = Vec::with_capacity(runs.len());
            for (run, version_stored) in runs {
                started.push(
                    crate::store::runs::insert_run(
                        &mut AnyTx::from(&mut **tx),
                        run,
                        *version_stored,
                        *now,
                    )
                    .await?,
                );
            }
            GroupResult::Start(started)
        }
        GroupWrite::Bounce {
            bounce, actor, now, ..
        } => GroupResult::Bounce(
            crate::store::suppressions::bounce_in(&mut AnyTx::from(&mut **tx), bounce, actor, *now)
                .await?,
        ),
        GroupWrite::Route { route, .. } => GroupResult::Route(
            crate::store::leads::route_keyed(&mut AnyTx::from(&mut **tx), &route.request()).await?,
        ),
        GroupWrite::Lead { intake, .. } => GroupResult::Lead(Box::new(
            crate::store::leads::intake_in(&mut AnyTx::from(&mut **tx), intake).await?,
        )),
        GroupWrite::Deliver { .. } => {
            let delivery = write.delivery().into_iter().collect::<Vec<_>>();
            let mut delivered = super::events::deliver_together(tx, &delivery).await?;
            GroupResult::Deliver(
                delivered
                    .pop()
                    .ok_or_else(|| StoreError::GroupCommit("a delivery was not applied".into()))?,
            )
        }
    })
}

enum GroupResult {
    Bounce(crate::store::suppressions::Bounced),
    Lead(Box<crate::store::leads::Intake>),
    Route(serde_json::Value),
    Commit(Vec<bool>),
    Start(Vec<Started>),
    Deliver(Delivered),
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
            (GroupWrite::Deliver { reply, .. }, Ok(GroupResult::Deliver(delivered))) => {
                let _ = reply.send(Ok(delivered));
            }
            (GroupWrite::Bounce { reply, .. }, Ok(GroupResult::Bounce(bounced))) => {
                let _ = reply.send(Ok(bounced));
            }
            (GroupWrite::Bounce { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (GroupWrite::Lead { reply, .. }, Ok(GroupResult::Lead(intake))) => {
                let _ = reply.send(Ok(*intake));
            }
            (GroupWrite::Lead { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (GroupWrite::Route { reply, .. }, Ok(GroupResult::Route(result))) => {
                let _ = reply.send(Ok(result));
            }
            (GroupWrite::Route { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (GroupWrite::Commit { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (GroupWrite::Deliver { reply, .. }, Err(e)) => {
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
            GroupWrite::Deliver { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
            GroupWrite::Bounce { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
            GroupWrite::Lead { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
            GroupWrite::Route { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
        }
    }
}

impl GroupWrite {
    /// The delivery this write is, if it is one.
    fn delivery(&self) -> Option<super::events::Delivery<'_>> {
        match self {
            GroupWrite::Deliver {
                event,
                delivery_id,
                starts,
                now,
                ..
            } => Some(super::events::Delivery {
                event,
                delivery_id: delivery_id.as_deref(),
                starts,
                now: *now,
            }),
            _ => None,
        }
    }

    /// Hands the write to the writer task and waits for its group's commit.
    pub(super) async fn submit<T>(
        queue: &tokio::sync::mpsc::Sender<GroupWrite>,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, StoreError>>) -> GroupWrite,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::GroupCommit("the writer task has stopped".into());
        queue.send(make(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}
