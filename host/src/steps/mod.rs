//! Step actions: what one step of a workflow does. One file per action, each holding the
//! action's YAML shape (its `Source`), its checks for `kontor check`, and what it does
//! when its step runs — the way mini-redis keeps one file per command in `cmd/`.
//!
//! This file lists the actions; the `actions!` macro (`dispatch.rs`) expands the list
//! into the step's YAML keys ([`StepSource`]), the compiled [`Action`], the names
//! `kontor check` offers ([`ACTIONS`]) and the calls from the compiler and the engine
//! into each action. The list's order is the order of the step's keys and of `kontor
//! check`'s list.
//!
//! Adding an action means adding its file, implementing [`StepAction`] there (the YAML
//! under its key, its checks, what it does), and naming it twice below: in a `mod` line,
//! outside the macro so `cargo fmt` formats the file, and in `actions!`.
//!
//! Each action file starts with what its action does and an example; [`delay`] holds
//! what `wait`, `wait_for` and `timer` share (durations, business time, `until` times),
//! [`StepRun`] what an action sees when its step runs.

#[macro_use]
mod dispatch;

mod action;
pub mod delay;
mod execution;

pub mod branch;
pub mod cancel_timer;
pub mod connector;
pub mod end;
pub mod fail;
pub mod plugin;
pub mod record;
pub mod route;
pub mod send_email;
pub mod set;
pub mod start;
pub mod timer;
pub mod wait;
pub mod wait_children;
pub mod wait_for;

pub use action::{StepAction, StepSite};
pub use execution::{Flow, Parking, PluginCall, StepError, StepRun};

actions! {
    set: Set,
    branch: Branch,
    wait: Wait,
    wait_for: WaitFor,
    timer: Timer,
    cancel_timer: CancelTimer,
    start: Start,
    wait_children: WaitChildren,
    record: Record,
    fail: Fail,
    end: End,
    plugin: Plugin,
    connector: Connector with call,
    send_email: SendEmail,
    route: Route,
}
