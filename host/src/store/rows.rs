//! Decoding rows into the store's types, once for both backends: each backend's row type
//! answers [`Cols`], and the decoders below only ask for text and integers (both
//! backends store JSON as text and times as epoch milliseconds).

use serde_json::Value as Json;
use sqlx::Row;

use super::outbox::{MessageView, OutboxMessage};
use super::runs::{ChildCounts, RunView};
use super::suppressions::Suppression;
use super::{StoreError, from_millis};
use crate::run::{Job, JobKind, OutgoingEmail, RunState, RunStatus, StepRecord, StepStatus};

/// The column accessors the decoders need.
pub(super) trait Cols {
    fn text(&self, column: &str) -> String;
    fn opt_text(&self, column: &str) -> Option<String>;
    fn int(&self, column: &str) -> i64;
    fn opt_int(&self, column: &str) -> Option<i64>;
}

macro_rules! cols_for {
    ($($row:ty),*) => {$(
        impl Cols for $row {
            fn text(&self, column: &str) -> String {
                self.get(column)
            }
            fn opt_text(&self, column: &str) -> Option<String> {
                self.get(column)
            }
            fn int(&self, column: &str) -> i64 {
                self.get(column)
            }
            fn opt_int(&self, column: &str) -> Option<i64> {
                self.get(column)
            }
        }
    )*};
}
cols_for!(sqlx::sqlite::SqliteRow, sqlx::postgres::PgRow);

pub(super) fn json_of(row: &impl Cols, column: &str) -> Result<Json, StoreError> {
    Ok(serde_json::from_str(&row.text(column))?)
}

pub(super) fn opt_json_of(row: &impl Cols, column: &str) -> Result<Option<Json>, StoreError> {
    Ok(row
        .opt_text(column)
        .map(|t| serde_json::from_str(&t))
        .transpose()?)
}

pub(super) fn status_of(row: &impl Cols) -> Result<RunStatus, StoreError> {
    let s = row.text("status");
    RunStatus::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("unknown run status {s}")))
}

pub(super) fn run_view(r: &impl Cols) -> Result<RunView, StoreError> {
    Ok(RunView {
        id: r.text("id"),
        workflow: r.text("workflow"),
        version: r.text("version"),
        domain: r.opt_text("domain"),
        status: status_of(r)?,
        input: json_of(r, "input")?,
        output: opt_json_of(r, "output")?,
        error: r.opt_text("error"),
        current_step: r.opt_text("current_step"),
        parent_id: r.opt_text("parent_id"),
        context: json_of(r, "context")?,
        created_at: from_millis(r.int("created_at")),
        updated_at: from_millis(r.int("updated_at")),
        finished_at: r.opt_int("finished_at").map(from_millis),
    })
}

pub(super) fn run_state(r: &impl Cols) -> Result<RunState, StoreError> {
    Ok(RunState {
        id: r.text("id"),
        workflow: r.text("workflow"),
        version: r.text("version"),
        status: status_of(r)?,
        input: json_of(r, "input")?,
        context: json_of(r, "context")?,
        parent_id: r.opt_text("parent_id"),
        depth: r.int("depth"),
        step_count: r.int("step_count"),
        created_at: from_millis(r.int("created_at")),
    })
}

pub(super) fn step_record(r: &impl Cols) -> Result<StepRecord, StoreError> {
    Ok(StepRecord {
        step: r.text("step"),
        action: r.text("action"),
        attempt: r.int("attempt") as u32,
        status: StepStatus::parse(&r.text("status")).ok_or_else(|| {
            StoreError::Corrupt(format!("unknown step status {}", r.text("status")))
        })?,
        input: opt_json_of(r, "input")?,
        output: opt_json_of(r, "output")?,
        error: r.opt_text("error"),
        log: opt_json_of(r, "log")?,
        started_at: from_millis(r.int("started_at")),
        finished_at: from_millis(r.int("finished_at")),
    })
}

pub(super) fn job(r: &impl Cols) -> Result<Job, StoreError> {
    Ok(Job {
        id: r.int("id"),
        run_id: r.text("run_id"),
        kind: JobKind::parse(&r.text("kind"))
            .ok_or_else(|| StoreError::Corrupt("unknown job kind".into()))?,
        step: r.text("step"),
        timer: r.opt_text("timer"),
        payload: opt_json_of(r, "payload")?,
        due_at: from_millis(r.int("due_at")),
        attempt: r.int("attempt") as u32,
    })
}

/// An event as a resumed step sees it.
pub(super) fn event_output(row: &impl Cols) -> Result<Json, StoreError> {
    Ok(serde_json::json!({
        "event_id": row.int("id"),
        "type": row.text("type"),
        "key": row.text("key"),
        "payload": json_of(row, "payload")?,
        "received_at": from_millis(row.int("received_at")),
    }))
}

pub(super) fn child_counts<'a>(rows: impl IntoIterator<Item = &'a (String, i64)>) -> ChildCounts {
    let mut counts = ChildCounts::default();
    for (status, n) in rows {
        counts.total += n;
        match status.as_str() {
            "completed" => counts.completed += n,
            "failed" => counts.failed += n,
            "cancelled" => counts.cancelled += n,
            _ => counts.running += n,
        }
    }
    counts
}

/// The outbox columns the decoders below read.
pub(super) const OUTBOX_COLUMNS: &str = "id, run_id, step, workflow, campaign, channel, template, locale, recipient, domain, name,
                       purpose, data, status, attempts, due_at, reply, created_at, updated_at, sent_at";

pub(super) fn outbox_message(r: &impl Cols) -> Result<OutboxMessage, StoreError> {
    Ok(OutboxMessage {
        email: OutgoingEmail {
            id: r.text("id"),
            workflow: r.opt_text("workflow").unwrap_or_default(),
            campaign: r.text("campaign"),
            channel: r.text("channel"),
            template: r.text("template"),
            locale: r.opt_text("locale"),
            to: r.text("recipient"),
            name: r.opt_text("name"),
            purpose: r.text("purpose"),
            data: json_of(r, "data")?,
        },
        domain: r.text("domain"),
        run_id: r.opt_text("run_id"),
        attempts: r.int("attempts") as u32,
        created_at: from_millis(r.int("created_at")),
    })
}

pub(super) fn message_view(r: &impl Cols) -> MessageView {
    MessageView {
        id: r.text("id"),
        run_id: r.opt_text("run_id"),
        step: r.opt_text("step"),
        workflow: r.opt_text("workflow"),
        campaign: r.text("campaign"),
        channel: r.text("channel"),
        template: r.text("template"),
        locale: r.opt_text("locale"),
        to: r.text("recipient"),
        purpose: r.text("purpose"),
        status: r.text("status"),
        attempts: r.int("attempts") as u32,
        due_at: from_millis(r.int("due_at")),
        reply: r.opt_text("reply"),
        created_at: from_millis(r.int("created_at")),
        updated_at: from_millis(r.int("updated_at")),
        sent_at: r.opt_int("sent_at").map(from_millis),
    }
}

pub(super) fn suppression(r: &impl Cols) -> Suppression {
    Suppression {
        address: r.text("address"),
        purpose: r.text("purpose"),
        reason: r.text("reason"),
        detail: r.opt_text("detail"),
        created_at: from_millis(r.int("created_at")),
    }
}
