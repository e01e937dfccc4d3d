//! Cancelling runs this process is executing right now.
//!
//! `cancel_run` marks a run cancelled in the store and deletes its jobs, so whatever a job
//! in flight computes is never committed — but the job could still spend its chain's
//! expression budgets before it got there. So each job in flight holds its run's flag
//! here, `cancel_run` sets it, and the job's expressions stop at their next cost charge.
//! A job in another process (PostgreSQL) is not reached: it stops at its budget, and its
//! commit is discarded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The flags of the runs whose jobs are executing in this process.
#[derive(Default)]
pub(super) struct InFlight(Mutex<HashMap<String, Arc<AtomicBool>>>);

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<AtomicBool>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers the runs of a batch; they leave when the returned guard is dropped.
    pub fn enter<'a>(&'a self, run_ids: &[&str]) -> Entered<'a> {
        let mut map = self.lock();
        let flags = run_ids
            .iter()
            .map(|id| {
                let flag = Arc::new(AtomicBool::new(false));
                map.insert(id.to_string(), flag.clone());
                (id.to_string(), flag)
            })
            .collect();
        Entered {
            in_flight: self,
            flags,
        }
    }

    /// Stops the expressions of `run_ids` that are executing here.
    pub fn cancel(&self, run_ids: &[String]) {
        let map = self.lock();
        for id in run_ids {
            if let Some(flag) = map.get(id) {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// A batch's runs, registered while its jobs execute.
pub(super) struct Entered<'a> {
    in_flight: &'a InFlight,
    flags: HashMap<String, Arc<AtomicBool>>,
}

impl Entered<'_> {
    pub fn flag(&self, run_id: &str) -> Option<&Arc<AtomicBool>> {
        self.flags.get(run_id)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock();
        for (id, flag) in &self.flags {
            // Only our own entry: a later batch may have registered the run again.
            if map
                .get(id)
                .is_some_and(|current| Arc::ptr_eq(current, flag))
            {
                map.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_reaches_the_runs_in_flight_and_only_while_they_are() {
        let in_flight = InFlight::default();
        let batch = in_flight.enter(&["r1", "r2"]);
        in_flight.cancel(&["r2".to_string(), "r3".to_string()]);
        assert!(!batch.flag("r1").unwrap().load(Ordering::Relaxed));
        assert!(batch.flag("r2").unwrap().load(Ordering::Relaxed));
        drop(batch);
        assert!(in_flight.lock().is_empty(), "a finished batch leaves");
    }
}
