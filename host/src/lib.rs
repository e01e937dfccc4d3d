//! Kontor: a workflow and campaign automation server for companies that run a CRM next to
//! an ERP.
//!
//! Declarative workflow files (`workflows/*.yaml`) become durable runs: each step's
//! result, its next jobs and its effects commit in one transaction, so a run survives a
//! crash at any moment and resumes where its last commit left it.
//!
//! # Layout
//!
//! Data flows one way: trigger → engine → step → effects → store → dispatchers. Each module
//! imports only those below it: [`run`] at the bottom; [`store`] on `run`; [`templates`],
//! [`expr`], [`crm`], [`service`] and [`workflow`] beside it; [`steps`] and [`engine`] on those; [`email`] on the
//! store, the clock and the templates (never the engine); [`api`], [`bench`] on top;
//! [`server`] wires, passing everything a part needs when it is made (no setters after).
//! One pair knowingly imports both ways: [`workflow`]'s compiler hands each step to its
//! file in [`steps`], which compiles it with the compiler's helpers — the price of one
//! file per action.
//!
//! | module | concern |
//! |---|---|
//! | [`run`] | the data path's vocabulary shared by engine and store: jobs, outcomes, run and step statuses, waits, effects, outgoing email and what its addresses and headers may hold, plugin key-value writes |
//! | [`store`] | the only module that speaks SQL (SQLite embedded, PostgreSQL shared), one facade per concept (`store.runs()`, `.jobs()`, `.events()`, `.outbox()`, `.suppressions()`, `.secrets()`, `.tokens()`, `.users()`, `.audit()`, `.leads()`, `.tickets()`, `.plugin_state()`, `.cron()`, `.retention()`, `commit`); `sqlite/` and `postgres/` with the same file names for what differs |
//! | [`clock`] | the [`clock::Clock`] all time goes through; a manual clock for tests |
//! | [`diagnostics`] | compiler-style `file:line:col` messages |
//! | [`expr`] | CEL expressions: compile, evaluate safely (length, depth and cost limits in `expr/budget.rs`), find referenced variables |
//! | [`templates`] | handlebars message templates (subject, text, HTML per locale) from `workflows/templates/`, checked (size, nesting, partial circles: `templates/limits.rs`) and rendered; the set in force |
//! | [`crm`] | what Kontor owns, as pure types and rules: leads, their stages and what a new one must hold (`crm/lead.rs`), territories and teams (`crm/territory/`: the files, postal-code ranges, who wins and why, what `kontor check` refuses), who in a team gets a lead (`crm/assignment.rs`) |
//! | [`service`] | the service desk, as pure types and rules: ticket statuses and happenings (`service/ticket.rs`), SLA clocks replayed from them in business time (`service/sla_clock.rs`), SLA policy files and what `kontor check` refuses (`service/sla/`), the warnings and escalation levels due at a moment (`service/escalation.rs`) |
//! | [`workflow`] | workflow files: YAML source with spans → checks ([`workflow::compile`]: file, steps, references, with `file:line:col`) → compiled [`workflow::Workflow`]; `${…}` values ([`workflow::interpolation`]); the [`workflow::Catalog`] of a `workflows/` folder (workflows, calendars, templates, territories, SLA policies) |
//! | [`steps`] | one file per step action (`set`, `branch`, `wait`, `wait_for`, `timer`, `start`, `record`, `send_email`, `plugin`, `connector`, `fail`, `end`, …): its YAML shape, its checks, what it does when it runs; `steps/mod.rs` lists them |
//! | [`engine`] | starts runs and delivers events (`engine/mod.rs`), claims jobs and commits their outcomes (`engine/worker.rs`), drives chains of steps through them ([`engine::execute`]: job kinds, inline chains, retries, plugin calls), cron triggers ([`engine::cron`]) |
//! | [`email`] | channels (SMTP, folder; DKIM; throttles), the outbox dispatcher, unsubscribe tokens |
//! | [`access`] | roles, permissions and the one table between them; every route names its permission |
//! | [`webhooks`] | signed inbound webhooks: the `Kontor-Signature` header, HMAC-SHA256 over time and body, the replay window, `[webhooks.SOURCE]` |
//! | [`redact`] | personal data taken out of an answer for the `viewer` role, in one walk by key |
//! | [`users`] | the people who use Kontor: what a user's name, email, roles, team and rep id may hold |
//! | [`api`] | the only module that speaks HTTP: axum router, one file per resource, bearer tokens and the one `authorize` (`api/auth.rs`), rate limits (`api/rate_limit.rs`), signed webhooks (`api/hooks.rs`), JSON errors (malformed paths and query strings too: `api/extract.rs`); the listener with its connection and request limits and timeouts (`api/listener.rs`) |
//! | [`customer_overview`] | the customer's 360° view from the configured ERP connector, with a short cache |
//! | [`observability`] | Prometheus metrics (names and labels documented there) |
//! | [`retention`] | pruning of finished runs, old events and idempotency keys |
//! | [`secrets`] | the master key and sealing/opening secret values (stored by [`store`]) |
//! | [`plugin_services`] | what plugin capability calls borrow: granted secrets and committed key-value state |
//! | [`config`] | `kontor.toml` + `KONTOR_*` overrides, typed, unknown keys rejected |
//! | [`server`] | wires config, store, engine, dispatchers and API into `kontor serve` |
//! | [`bench`] | `kontor bench engine` (step throughput and workflow latency) and `kontor bench email` |
//! | `cli/` (of the `kontor` binary, not this library) | one file per subcommand: `serve`, `check`, `bench`, `plugin new\|build\|test\|inspect`, `email`, `secret`, `token`, `completions` |
//!
//! Business calendars, German public holidays, durations and cron schedules live in the
//! `kontor-time` crate (`host/time/`), so they build and test on their own; the Wasm
//! plugin runtime (sandbox, grants, the SSRF-guarded HTTP client, the `erp-connector`
//! functions) in `kontor-plugins` (`host/plugins/`). `host/build.rs` compiles the shipped
//! plugins (`plugins/`) for `wasm32-wasip2` when they are missing or stale, with
//! `host/build/wasm.rs`, which `tests/build.rs` shares.

#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod bench;
pub mod clock;
pub mod config;
pub mod crm;
pub mod customer_overview;
pub mod diagnostics;
pub mod email;
pub mod engine;
pub mod expr;
pub mod observability;
pub mod plugin_services;
pub mod redact;
pub mod retention;
pub mod run;
pub mod secrets;
pub mod server;
pub mod service;
pub mod steps;
pub mod store;
pub mod templates;
pub mod users;
pub mod webhooks;
pub mod workflow;
