//! Email: channels, the outbox's dispatcher, unsubscribes (templates are
//! [`crate::templates`]).
//!
//! Data flows one way: a `send_email` step queues an outbox row in its own transaction
//! ([`crate::run::Effect::Email`]); the [`dispatch::Dispatcher`] claims due
//! rows, checks suppressions and throttles at send time, renders the template, signs
//! with DKIM and hands the message to the channel's transport.

pub mod channel;
pub mod dispatch;
pub mod smtp;
pub mod throttle;
pub mod unsubscribe;

pub use crate::run::parse_address;
