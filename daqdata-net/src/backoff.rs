//! Dialling again after a stream broke: a capped, jittered exponential
//! back-off, so that many callers of one server do not all call at once,
//! and a count that starts afresh after a stream that went well.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::time::{Duration, Instant};

/// How long to wait before each new attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The wait before the first new attempt.
    pub first: Duration,
    /// No wait is longer than this (so a server that is back is found
    /// within about this long).
    pub max: Duration,
}

impl Default for Backoff {
    /// 0.25 s, doubling, at most 2 s: a viewer of a restarted server is
    /// streaming again within about 2 s of it coming back.
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(250),
            max: Duration::from_secs(2),
        }
    }
}

/// A stream that lasted this long was a success: the next outage starts
/// the back-off afresh.
const HEALTHY: Duration = Duration::from_secs(10);

impl Backoff {
    /// The wait before attempt `attempt` (1 = the first new attempt):
    /// `first * 2^(attempt-1)`, capped at `max`, times a jitter in
    /// [0.5, 1], so that many viewers of one server do not all call at once.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self
            .first
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        doubled.min(self.max).mul_f64(0.5 + 0.5 * jitter(attempt))
    }
}

/// A number in [0, 1) that differs from call to call and process to process.
fn jitter(attempt: u32) -> f64 {
    (random_u64(u64::from(attempt)) >> 11) as f64 / (1u64 << 53) as f64
}

/// A number that differs from call to call and process to process (not
/// for secrets): `salt` hashed under a fresh [`RandomState`], whose keys are
/// random per process and stepped for every new state.
pub fn random_u64(salt: u64) -> u64 {
    RandomState::new().hash_one(salt)
}

/// Counts attempts, starting afresh after a stream that went well.
#[derive(Debug)]
pub struct Attempts {
    backoff: Backoff,
    attempt: u32,
}

impl Attempts {
    /// No attempt yet.
    pub fn new(backoff: Backoff) -> Self {
        Attempts {
            backoff,
            attempt: 0,
        }
    }

    /// The next attempt's number and wait, after a stream that started at
    /// `started`.
    pub fn next(&mut self, started: Instant) -> (u32, Duration) {
        if started.elapsed() >= HEALTHY {
            self.attempt = 0;
        }
        self.attempt += 1;
        (self.attempt, self.backoff.delay(self.attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter() {
        for b in [
            Backoff::default(),
            Backoff {
                first: Duration::from_millis(500),
                max: Duration::from_secs(10),
            },
        ] {
            for attempt in 1..40 {
                let full = (b.first * (1 << (attempt - 1).min(16))).min(b.max);
                let d = b.delay(attempt);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} vs {full:?}"
                );
            }
            assert!(b.delay(100) <= b.max);
        }
    }

    #[test]
    fn a_stream_that_went_well_starts_the_count_afresh() {
        let mut a = Attempts::new(Backoff::default());
        let now = Instant::now();
        assert_eq!(a.next(now).0, 1);
        assert_eq!(a.next(now).0, 2);
        let long_ago = now.checked_sub(HEALTHY * 2).unwrap_or(now);
        if long_ago < now {
            assert_eq!(a.next(long_ago).0, 1);
        }
    }
}
