//! A ticket's SLA clocks — first response, next response, resolution — replayed from its
//! happenings against a policy's targets, in business time on the policy's calendar.
//!
//! The rules, stated once:
//! - **First response** runs from creation until the first *public* agent reply; an
//!   internal note satisfies nothing.
//! - **Next response** runs from a customer's message, once the first response is done,
//!   until the next public agent reply; each such message after a reply starts a new
//!   cycle with the full target.
//! - **Resolution** runs from creation until the ticket is resolved or closed. Reopened, it
//!   goes on with the time already used (`reopen: continue`) or starts over
//!   (`reopen: restart`). Resolving also ends the response clocks: nothing is owed.
//! - A clock **pauses** while the ticket is in one of the statuses its rule lists and
//!   resumes when it leaves them; paused time never counts.
//! - Business time counts only the calendar's working hours, so a clock started on a
//!   Friday evening has used nothing by Monday 08:00.
//!
//! Because the clocks are a function of the history and the targets, a new policy (the
//! priority or category changed) is the same history replayed against new targets: time
//! already used stays used, paused time stays excluded, and the due time is computed from
//! the ticket's start. The thresholds a clock has already reached are the caller's to
//! remember, so that each warning is sent once.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use kontor_time::Calendar;
use serde::Serialize;

use super::ticket::{Happening, Status, What};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockKind {
    FirstResponse,
    NextResponse,
    Resolution,
}

impl ClockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockKind::FirstResponse => "first_response",
            ClockKind::NextResponse => "next_response",
            ClockKind::Resolution => "resolution",
        }
    }
}

/// One clock's target in business time and the statuses that pause it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockRule {
    pub target: Duration,
    pub pause: BTreeSet<Status>,
}

/// What a reopened ticket's resolution clock does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reopen {
    /// Goes on with the business time used before the resolution.
    #[default]
    Continue,
    /// Starts over with the full target.
    Restart,
}

/// A policy's clocks, all on one calendar; a clock without a rule is not kept.
#[derive(Debug, Clone)]
pub struct Targets {
    pub calendar: Arc<Calendar>,
    pub first_response: Option<ClockRule>,
    pub next_response: Option<ClockRule>,
    pub resolution: Option<ClockRule>,
    pub reopen: Reopen,
}

impl Targets {
    fn rule(&self, kind: ClockKind) -> Option<&ClockRule> {
        match kind {
            ClockKind::FirstResponse => self.first_response.as_ref(),
            ClockKind::NextResponse => self.next_response.as_ref(),
            ClockKind::Resolution => self.resolution.as_ref(),
        }
    }
}

/// A point on a clock: a share of its target plus business time (`75%`, `100% + 4h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub percent: u32,
    pub plus: Duration,
}

impl Threshold {
    /// The business time a clock with `target` has used when it reaches this point.
    pub fn amount(&self, target: Duration) -> Duration {
        Duration::milliseconds(target.num_milliseconds() * i64::from(self.percent) / 100)
            + self.plus
    }
}

/// One run of a clock (the next-response clock has one per customer message after a
/// reply; a restarted resolution clock a second one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    pub kind: ClockKind,
    /// 0 for the first run; the next-response clock counts its runs.
    pub cycle: u32,
    pub target: Duration,
    pub started_at: DateTime<Utc>,
    /// The stretches it ran; the last one is open while it runs.
    pub running: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    /// When it was satisfied (a public reply, the resolution); `None` while it counts.
    pub stopped_at: Option<DateTime<Utc>>,
}

/// A clock at one moment, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockState {
    pub kind: ClockKind,
    pub cycle: u32,
    pub started_at: DateTime<Utc>,
    /// Business seconds.
    pub target_seconds: i64,
    pub used_seconds: i64,
    /// Target minus used; negative once breached.
    pub remaining_seconds: i64,
    /// When the target is (or was) reached; `None` while paused or once stopped in time.
    pub due_at: Option<DateTime<Utc>>,
    pub paused: bool,
    pub stopped_at: Option<DateTime<Utc>>,
    /// When it passed its target without being satisfied.
    pub breached_at: Option<DateTime<Utc>>,
}

impl Clock {
    fn new(kind: ClockKind, cycle: u32, target: Duration, at: DateTime<Utc>) -> Clock {
        Clock {
            kind,
            cycle,
            target,
            started_at: at,
            running: Vec::new(),
            stopped_at: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.running.last().is_some_and(|(_, end)| end.is_none())
    }

    fn resume(&mut self, at: DateTime<Utc>) {
        if self.stopped_at.is_none() && !self.is_running() {
            self.running.push((at, None));
        }
    }

    fn pause(&mut self, at: DateTime<Utc>) {
        if let Some((_, end @ None)) = self.running.last_mut() {
            *end = Some(at);
        }
    }

    fn stop(&mut self, at: DateTime<Utc>) {
        if self.stopped_at.is_none() {
            self.pause(at);
            self.stopped_at = Some(at);
        }
    }

    /// Business time used up to `now`.
    pub fn used(&self, calendar: &Calendar, now: DateTime<Utc>) -> Duration {
        self.running
            .iter()
            .map(|&(from, to)| calendar.business_duration_between(from, to.unwrap_or(now).min(now)))
            .fold(Duration::zero(), |a, b| a + b)
    }

    /// When the clock's used time reaches `amount`: in the past, or ahead while it runs;
    /// `None` if it stopped or paused before.
    pub fn reaches(&self, calendar: &Calendar, amount: Duration) -> Option<DateTime<Utc>> {
        let mut before = Duration::zero();
        for &(from, to) in &self.running {
            let left = amount - before;
            match to {
                Some(to) => {
                    let stretch = calendar.business_duration_between(from, to);
                    if stretch >= left {
                        return calendar.add_business_duration(from, left).ok();
                    }
                    before += stretch;
                }
                None => return calendar.add_business_duration(from, left).ok(),
            }
        }
        None
    }

    pub fn state(&self, calendar: &Calendar, now: DateTime<Utc>) -> ClockState {
        let used = self.used(calendar, now);
        let reached = self.reaches(calendar, self.target);
        let breached_at = reached.filter(|at| match self.stopped_at {
            Some(stop) => *at < stop,
            None => *at <= now,
        });
        ClockState {
            kind: self.kind,
            cycle: self.cycle,
            started_at: self.started_at,
            target_seconds: self.target.num_seconds(),
            used_seconds: used.num_seconds(),
            remaining_seconds: (self.target - used).num_seconds(),
            due_at: if self.stopped_at.is_some() {
                breached_at
            } else {
                reached
            },
            paused: self.stopped_at.is_none() && !self.is_running(),
            stopped_at: self.stopped_at,
            breached_at,
        }
    }
}

/// Replays `happenings` (in time order; the first is the creation) against `targets`:
/// every clock run the policy has, in the order they started.
pub fn replay(happenings: &[Happening], targets: &Targets) -> Vec<Clock> {
    let mut clocks: Vec<Clock> = Vec::new();
    let mut status = Status::New;
    let paused_by = |kind: ClockKind, status: Status| {
        targets
            .rule(kind)
            .is_some_and(|rule| rule.pause.contains(&status))
    };
    let start = |clocks: &mut Vec<Clock>, kind: ClockKind, cycle: u32, at, status| {
        if let Some(rule) = targets.rule(kind) {
            let mut clock = Clock::new(kind, cycle, rule.target, at);
            if !paused_by(kind, status) {
                clock.resume(at);
            }
            clocks.push(clock);
        }
    };
    let open = |clocks: &mut Vec<Clock>, kind: ClockKind| -> Option<usize> {
        clocks
            .iter()
            .rposition(|c| c.kind == kind && c.stopped_at.is_none())
    };
    for happening in happenings {
        let at = happening.at;
        match happening.what {
            What::Created => {
                status = Status::New;
                start(&mut clocks, ClockKind::FirstResponse, 0, at, status);
                start(&mut clocks, ClockKind::Resolution, 0, at, status);
            }
            What::Status(next) => {
                let reopened = status.is_done() && !next.is_done();
                status = next;
                if next.is_done() {
                    for clock in clocks.iter_mut() {
                        clock.stop(at);
                    }
                    continue;
                }
                if reopened {
                    match targets.reopen {
                        Reopen::Continue => {
                            if let Some(i) =
                                clocks.iter().rposition(|c| c.kind == ClockKind::Resolution)
                            {
                                clocks[i].stopped_at = None;
                            }
                        }
                        Reopen::Restart => {
                            let cycle = clocks
                                .iter()
                                .filter(|c| c.kind == ClockKind::Resolution)
                                .count() as u32;
                            start(&mut clocks, ClockKind::Resolution, cycle, at, status);
                        }
                    }
                }
                for clock in clocks.iter_mut().filter(|c| c.stopped_at.is_none()) {
                    if paused_by(clock.kind, status) {
                        clock.pause(at);
                    } else {
                        clock.resume(at);
                    }
                }
            }
            What::AgentReply { public: false } => {}
            What::AgentReply { public: true } => {
                for kind in [ClockKind::FirstResponse, ClockKind::NextResponse] {
                    if let Some(i) = open(&mut clocks, kind) {
                        clocks[i].stop(at);
                    }
                }
            }
            What::CustomerMessage => {
                let first_pending = open(&mut clocks, ClockKind::FirstResponse).is_some();
                let next_pending = open(&mut clocks, ClockKind::NextResponse).is_some();
                if !first_pending && !next_pending && !status.is_done() {
                    let cycle = clocks
                        .iter()
                        .filter(|c| c.kind == ClockKind::NextResponse)
                        .count() as u32;
                    start(&mut clocks, ClockKind::NextResponse, cycle, at, status);
                }
            }
        }
    }
    clocks
}

#[cfg(test)]
mod tests;
