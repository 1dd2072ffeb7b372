//! Streams that survive a server restart: a host whose stream ends for a
//! reason that passes (the server went away, restarted, or was
//! reconfigured) is dialled again after a capped, jittered exponential
//! back-off, and its part of the merged stream goes on. The other hosts'
//! parts never wait for it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tonic::Code;

use crate::{Error, Host, Image};

/// Where one host's part of a reconnecting stream stands.
#[derive(Clone, Debug, PartialEq)]
pub enum HostState {
    /// Dialling, before the server has answered.
    Connecting,
    /// The server accepted the stream.
    Streaming,
    /// The stream ended for a reason that passes; attempt `attempt` waits.
    Reconnecting { attempt: u32, why: String },
    /// The stream ended for a reason that would recur (a refused token, a
    /// wrong request): no new attempt.
    Refused { why: String },
}

/// One host's state, with what it has delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct HostStatus {
    pub state: HostState,
    /// Images received since the stream began (over every attempt).
    pub images: u64,
    /// The newest image's own time stamp (node time, Unix seconds).
    pub newest_frame_time: Option<f64>,
}

/// Every host's [`HostStatus`], shared between a stream's tasks and the
/// viewer that shows them ([`crate::DaqClient::stream_images_observed`]).
#[derive(Clone, Debug)]
pub struct HostStates(Arc<[(Host, Mutex<HostStatus>)]>);

impl HostStates {
    pub(crate) fn new<'a>(hosts: impl Iterator<Item = &'a Host>) -> Self {
        let initial = HostStatus {
            state: HostState::Connecting,
            images: 0,
            newest_frame_time: None,
        };
        HostStates(
            hosts
                .map(|h| (h.clone(), Mutex::new(initial.clone())))
                .collect(),
        )
    }

    /// A copy of every host's status, in the client's host order.
    pub fn snapshot(&self) -> Vec<(Host, HostStatus)> {
        self.0
            .iter()
            .map(|(h, s)| (h.clone(), lock(s).clone()))
            .collect()
    }

    /// The entry of the `index`th host (the client's host order), for the
    /// task that streams from it: found once, not per image.
    pub(crate) fn slot(&self, index: usize) -> HostSlot {
        HostSlot {
            states: self.clone(),
            index,
        }
    }
}

/// One host's entry of a [`HostStates`].
#[derive(Clone, Debug)]
pub(crate) struct HostSlot {
    states: HostStates,
    index: usize,
}

impl HostSlot {
    fn with(&self, f: impl FnOnce(&mut HostStatus)) {
        if let Some((_, s)) = self.states.0.get(self.index) {
            f(&mut lock(s));
        }
    }

    pub(crate) fn set(&self, state: HostState) {
        self.with(|s| s.state = state);
    }

    pub(crate) fn received(&self, image: &Image) {
        let time = image.node_time();
        self.with(|s| {
            s.images += 1;
            if let Some(t) = time {
                s.newest_frame_time = Some(s.newest_frame_time.map_or(t, |n| n.max(t)));
            }
        });
    }
}

/// A status is plain data: a panic elsewhere cannot leave it half-written.
fn lock(s: &Mutex<HostStatus>) -> std::sync::MutexGuard<'_, HostStatus> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

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
    /// 0.25 s, doubling, at most 2 s: a restarted server is streaming again
    /// within about 2 s of coming back.
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
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(nanos) ^ (u64::from(std::process::id()) << 32) ^ u64::from(attempt);
    // splitmix64's finalizer: spreads the bits of a weak seed.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a stream that ended with `error` is worth dialling again: the
/// server was away, shutting down, restarting, reconfigured (CANCELLED),
/// not yet initialized, or full. Wrong requests and refused credentials are
/// not: they would fail the same way again.
pub(crate) fn passes(error: &Error) -> bool {
    matches!(
        error.code(),
        Some(
            Code::Unavailable
                | Code::Cancelled
                | Code::FailedPrecondition
                | Code::ResourceExhausted
                | Code::Unknown
                | Code::Internal
                | Code::Aborted
        )
    )
}

/// Counts attempts, starting afresh after a stream that went well.
pub(crate) struct Attempts {
    backoff: Backoff,
    attempt: u32,
}

impl Attempts {
    pub(crate) fn new(backoff: Backoff) -> Self {
        Attempts {
            backoff,
            attempt: 0,
        }
    }

    /// The next attempt's number and wait, after a stream that started at
    /// `started`.
    pub(crate) fn next(&mut self, started: Instant) -> (u32, Duration) {
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
        let b = Backoff::default();
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

    #[test]
    fn passing_troubles_are_retried_and_wrong_requests_are_not() {
        let rpc = |code| Error::Rpc {
            host: "daq".into(),
            rpc: "StreamImages",
            code,
            message: String::new(),
        };
        for code in [Code::Unavailable, Code::Cancelled, Code::FailedPrecondition] {
            assert!(passes(&rpc(code)), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
        ] {
            assert!(!passes(&rpc(code)), "{code:?}");
        }
        let gone = Error::Unreachable {
            host: "daq".into(),
            reason: "Connection refused".into(),
        };
        assert!(passes(&gone));
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
