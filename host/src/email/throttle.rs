//! Send-rate limits on the engine's clock: per channel, per recipient domain, per day.
//!
//! Rates use the generic cell rate algorithm: each key has a theoretical arrival time
//! (TAT); a message may go when the TAT is not further ahead than the burst allows, and
//! moves the TAT one interval on. A channel may burst a tenth of a second's worth; a
//! domain never bursts, so `1` per second means one message each second. A held message
//! learns when it may go and waits in the queue until then — nothing is dropped.
//! Running on [`crate::clock::Clock`] lets tests drive throttles with the manual clock.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveTime, Utc};

use super::channel::ThrottleConfig;

#[derive(Debug, Default)]
pub struct Throttle {
    tat: HashMap<(String, String), DateTime<Utc>>,
    /// (channel, UTC day) → messages let through.
    daily: HashMap<String, (chrono::NaiveDate, u64)>,
}

/// The answer for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Go,
    /// Not before this time.
    Hold(DateTime<Utc>),
}

fn interval(rate: f64) -> Option<Duration> {
    (rate > 0.0).then(|| Duration::microseconds((1_000_000.0 / rate).round().max(1.0) as i64))
}

impl Throttle {
    /// Is `channel`'s daily count for `now`'s day known? (Else ask the store first.)
    pub fn knows_day(&self, channel: &str, now: DateTime<Utc>) -> bool {
        self.daily
            .get(channel)
            .is_some_and(|(day, _)| *day == now.date_naive())
    }

    /// Sets the count of `channel` for `now`'s day (read from the store after a restart).
    pub fn set_day(&mut self, channel: &str, now: DateTime<Utc>, sent: u64) {
        self.daily
            .insert(channel.to_string(), (now.date_naive(), sent));
    }

    /// May a message of `channel` to `domain` go now? If so, it is counted.
    pub fn decide(
        &mut self,
        channel: &str,
        config: &ThrottleConfig,
        domain: &str,
        now: DateTime<Utc>,
    ) -> Decision {
        if config.daily_cap > 0 {
            let today = now.date_naive();
            let entry = self.daily.entry(channel.to_string()).or_insert((today, 0));
            if entry.0 != today {
                *entry = (today, 0);
            }
            if entry.1 >= config.daily_cap {
                let midnight = (today + chrono::Days::new(1)).and_time(NaiveTime::MIN);
                return Decision::Hold(midnight.and_utc());
            }
        }
        let channel_key = (channel.to_string(), String::new());
        let domain_key = (channel.to_string(), domain.to_string());
        let limits = [
            (
                channel_key,
                interval(config.per_second),
                (config.per_second / 10.0).floor().max(1.0),
            ),
            (domain_key, interval(config.domain_rate(domain)), 1.0),
        ];
        let mut latest = now;
        for (key, interval, burst) in &limits {
            let Some(interval) = interval else { continue };
            let tolerance = *interval * (*burst as i32 - 1);
            let tat = self.tat.get(key).copied().unwrap_or(now).max(now);
            if tat - tolerance > now {
                latest = latest.max(tat - tolerance);
            }
        }
        if latest > now {
            // Round up to the store's millisecond so the message is not due a hair early.
            let ms = latest.timestamp_millis()
                + i64::from(!latest.timestamp_subsec_micros().is_multiple_of(1000));
            return Decision::Hold(DateTime::from_timestamp_millis(ms).unwrap_or(latest));
        }
        for (key, interval, _) in limits {
            if let Some(interval) = interval {
                let tat = self.tat.get(&key).copied().unwrap_or(now).max(now);
                self.tat.insert(key, tat + interval);
            }
        }
        if config.daily_cap > 0
            && let Some(entry) = self.daily.get_mut(channel)
        {
            entry.1 += 1;
        }
        Decision::Go
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + (seconds * 1000.0) as i64).unwrap()
    }

    #[test]
    fn one_per_second_per_domain_holds_the_rest_and_spares_other_domains() {
        let config = ThrottleConfig {
            per_domain_per_second: 0.0,
            domains: [("slow.example".to_string(), 1.0)].into(),
            ..ThrottleConfig::default()
        };
        let mut t = Throttle::default();
        assert_eq!(
            t.decide("c", &config, "slow.example", at(0.0)),
            Decision::Go
        );
        assert_eq!(
            t.decide("c", &config, "slow.example", at(0.0)),
            Decision::Hold(at(1.0))
        );
        for _ in 0..100 {
            assert_eq!(
                t.decide("c", &config, "fast.example", at(0.0)),
                Decision::Go
            );
        }
        assert_eq!(
            t.decide("c", &config, "slow.example", at(0.5)),
            Decision::Hold(at(1.0))
        );
        assert_eq!(
            t.decide("c", &config, "slow.example", at(1.0)),
            Decision::Go
        );
    }

    #[test]
    fn channel_rate_and_daily_cap() {
        let config = ThrottleConfig {
            per_second: 100.0,
            daily_cap: 25,
            ..ThrottleConfig::default()
        };
        let mut t = Throttle::default();
        // A burst of a tenth of a second's worth, then one per 10 ms.
        for _ in 0..10 {
            assert_eq!(t.decide("c", &config, "d", at(0.0)), Decision::Go);
        }
        assert!(matches!(
            t.decide("c", &config, "d", at(0.0)),
            Decision::Hold(_)
        ));
        let mut sent = 10;
        let mut now = 0.0;
        while sent < 25 {
            now += 0.01;
            if t.decide("c", &config, "d", at(now)) == Decision::Go {
                sent += 1;
            }
        }
        // The cap holds until the next UTC midnight.
        match t.decide("c", &config, "d", at(now + 1.0)) {
            Decision::Hold(until) => {
                assert_eq!(until.time(), NaiveTime::MIN);
                assert!(until > at(now));
            }
            Decision::Go => panic!("the daily cap let a message through"),
        }
    }
}
