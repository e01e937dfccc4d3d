//! Effects: what a step wants done in the world, committed with the step's result.
//!
//! A step never performs side effects itself. It returns [`Effect`]s; the store commits
//! them in the same transaction as the step's result, each under an idempotency key
//! (run, step sequence number, index), so a step that runs again after a crash cannot
//! produce the same effect twice. New kinds (send an email, call a webhook) are new
//! variants here plus their handling in the store or their dispatcher — the engine's core
//! does not change.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// Write (insert or replace) a record Kontor owns: a lead assignment, a ticket's
    /// escalation level, a recall recipient's state.
    Record {
        collection: String,
        key: String,
        data: Json,
    },
    /// Queue an email in the outbox; a dispatcher renders and sends it later.
    Email(Box<OutgoingEmail>),
}

/// An email as a step queues it: rendered and sent by the dispatcher, not the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingEmail {
    /// The outbox row's id; the `Message-ID` is made from it, so a retried send
    /// carries the same one.
    pub id: String,
    pub workflow: String,
    pub campaign: String,
    pub channel: String,
    pub template: String,
    /// Requested locale; `None`: the template's fallback.
    pub locale: Option<String>,
    pub to: String,
    pub name: Option<String>,
    pub purpose: String,
    pub data: Json,
}

impl Effect {
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::Record { .. } => "record",
            Effect::Email(_) => "email",
        }
    }
}
