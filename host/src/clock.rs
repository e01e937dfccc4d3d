//! Time as the engine sees it.
//!
//! Every part of Kontor that asks "what time is it?" asks a [`Clock`]: timers, `wait`
//! steps, `wait_for` timeouts, cron schedules and retry backoff. Production uses
//! [`SystemClock`]; tests (and a `kontor serve` started with `[testing] manual_clock = true`)
//! use [`ManualClock`], which only moves when told to, so a three-day SLA is tested in
//! milliseconds instead of three days.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::Notify;

/// The source of "now" for everything time-dependent.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// Is this clock driven by hand? Workers then wake on [`Clock::changed`] instead of
    /// trusting wall-clock sleeps to line up with due times.
    fn is_manual(&self) -> bool {
        false
    }

    /// Notified whenever a manual clock moves; never for the system clock.
    fn changed(&self) -> Option<&Notify> {
        None
    }
}

/// Shared handle used throughout the crate.
pub type SharedClock = Arc<dyn Clock>;

/// The real wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        // Millisecond precision: the store keeps milliseconds, and comparing a value with
        // its own round trip through the store must be exact.
        let now = Utc::now();
        DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
    }
}

/// A clock that only moves when [`ManualClock::advance`] or [`ManualClock::set`] is called.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    changed: Notify,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        let start = DateTime::from_timestamp_millis(start.timestamp_millis()).unwrap_or(start);
        ManualClock {
            now: Mutex::new(start),
            changed: Notify::new(),
        }
    }

    /// Moves the clock forward (never backward: negative durations are ignored).
    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if by > Duration::zero() {
            *now += by;
        }
        let result = *now;
        drop(now);
        self.changed.notify_waiters();
        result
    }

    /// Sets the clock to `to` if that is not in the past of the current value.
    pub fn set(&self, to: DateTime<Utc>) -> DateTime<Utc> {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if to > *now {
            *now = to;
        }
        let result = *now;
        drop(now);
        self.changed.notify_waiters();
        result
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_manual(&self) -> bool {
        true
    }

    fn changed(&self) -> Option<&Notify> {
        Some(&self.changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let start = DateTime::parse_from_rfc3339("2026-03-28T12:00:00Z")
            .unwrap()
            .to_utc();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::hours(25));
        assert_eq!(clock.now(), start + Duration::hours(25));
        clock.advance(Duration::hours(-5));
        assert_eq!(clock.now(), start + Duration::hours(25));
        clock.set(start);
        assert_eq!(clock.now(), start + Duration::hours(25));
    }
}
