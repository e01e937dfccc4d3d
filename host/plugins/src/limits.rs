//! How a call's limits are enforced and told apart: each call gets a `Store` with the
//! plugin's deadline (epoch interruption), fuel and memory cap, and when wasmtime stops
//! a guest, [`Plugin::classify`] says which limit it hit, in words the step's error can
//! carry.

use std::time::Instant;

use wasmtime::{Store, Trap, UpdateDeadline};

use crate::sandbox::State;
use crate::{CallError, Plugin};

impl Plugin {
    /// A store with this plugin's limits, for one call.
    pub(crate) fn store(&self) -> Store<State> {
        let deadline = Instant::now() + self.settings.deadline;
        let mut store = Store::new(
            &self.runtime.engine,
            State::new(self.settings.memory, self.context.clone(), deadline),
        );
        store.limiter(|state| state);
        store
            .set_fuel(self.settings.fuel.unwrap_or(u64::MAX))
            .expect("fuel is enabled");
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(Trap::Interrupt.into())
            } else {
                // Let other calls on the plugin threads run, then continue.
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store
    }

    /// Classifies an error out of wasmtime.
    pub(crate) fn classify(&self, error: wasmtime::Error, state: &State) -> CallError {
        if state.memory_exceeded {
            return CallError::OutOfMemory(self.settings.memory);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Timeout(self.settings.deadline),
            Some(Trap::OutOfFuel) => CallError::OutOfFuel(self.settings.fuel.unwrap_or(u64::MAX)),
            Some(trap) => {
                let tail = state.stderr_tail();
                if tail.is_empty() {
                    CallError::Trap(trap.to_string())
                } else {
                    CallError::Trap(format!("{trap}; it wrote: {tail}"))
                }
            }
            None => {
                let message = format!("{error:#}");
                let pool_full = error
                    .chain()
                    .any(|cause| cause.is::<wasmtime::PoolConcurrencyLimitError>());
                if pool_full || message.contains("maximum concurrent") {
                    CallError::Busy(message)
                } else {
                    CallError::Trap(message)
                }
            }
        }
    }
}
