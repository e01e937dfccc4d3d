//! Kontor: a workflow and campaign automation server for companies that run a CRM next to
//! an ERP.
//!
//! Declarative workflow files (`workflows/*.yaml`) become durable runs: each step's
//! result, its next jobs and its effects commit in one transaction, so a run survives a
//! crash at any moment and resumes where its last commit left it.
//!
//! # Layout
//!
//! Data flows one way: trigger → engine → step → effects.
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | `kontor.toml` + `KONTOR_*` overrides, typed, unknown keys rejected |
//! | [`clock`] | the [`clock::Clock`] all time goes through; a manual clock for tests |
//! | [`diagnostics`] | compiler-style `file:line:col` messages |
//! | [`email`] | templates (handlebars; subject, text, HTML per locale), channels (SMTP, folder; DKIM; throttles), the outbox dispatcher, unsubscribe tokens, `kontor bench email` |
//! | [`expr`] | CEL expressions: compile, evaluate safely, find referenced variables |
//! | [`workflow`] | workflow files: YAML source with spans → checks → compiled [`workflow::Workflow`]; the [`workflow::Catalog`] of a `workflows/` folder |
//! | [`engine`] | claims jobs, executes steps ([`engine::execute`]), cron triggers ([`engine::cron`]), typed effects ([`engine::effects`]) |
//! | [`store`] | the only module that speaks SQL (SQLite embedded, PostgreSQL shared): runs, jobs, events, waits, effects, tokens, outbox; leases and leaders for several processes |
//! | [`api`] | the only module that speaks HTTP: axum router, bearer tokens, JSON errors |
//! | [`observability`] | Prometheus metrics (names and labels documented there) |
//! | [`retention`] | pruning of finished runs, old events and idempotency keys |
//! | [`secrets`] | the master key and sealing/opening secret values (stored by [`store`]) |
//! | [`plugin_services`] | what plugin capability calls borrow: granted secrets and committed key-value state |
//! | `cli/` (of the `kontor` binary, not this library) | one file per subcommand: `serve`, `check`, `bench`, `plugin new\|build\|test\|inspect`, `email`, `secret`, `token`, `completions` |
//! | [`erp`] | the customer's 360° view from the configured ERP connector, with a short cache |
//! | [`server`] | wires config, store, engine and API into `kontor serve` |
//! | [`bench`] | `kontor bench engine`: step throughput and workflow latency |
//!
//! Business calendars, German public holidays, durations and cron schedules live in the
//! `kontor-time` crate (`host/time/`), so they build and test on their own; the Wasm
//! plugin runtime (sandbox, grants, the SSRF-guarded HTTP client, the `erp-connector`
//! functions) in `kontor-plugins` (`host/plugins/`).

#![forbid(unsafe_code)]

pub mod api;
pub mod bench;
pub mod clock;
pub mod config;
pub mod diagnostics;
pub mod email;
pub mod engine;
pub mod erp;
pub mod expr;
pub mod observability;
pub mod plugin_services;
pub mod retention;
pub mod secrets;
pub mod server;
pub mod store;
pub mod workflow;
