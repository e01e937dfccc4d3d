//! What Kontor owns, as pure types and rules — no SQL, no HTTP: territories and the teams
//! leads are routed to. The store keeps their state; steps and routes apply them.

pub mod territory;
