//! What Kontor owns, as pure types and rules — no SQL, no HTTP: leads and their stages,
//! territories and the teams leads are routed to, and who in a team gets one. The store
//! keeps their state; steps and routes apply them.

pub mod assignment;
pub mod lead;
pub mod lead_file;
pub mod simulation;
pub mod territory;
