//! Email: templates today; channels, the outbox and dispatchers with the email issue.

pub mod templates;
