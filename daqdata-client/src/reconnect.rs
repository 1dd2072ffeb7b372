//! Streams that survive a server restart: a host whose stream ends for a
//! reason that passes (the server went away, restarted, or was
//! reconfigured) is dialled again after a capped, jittered exponential
//! back-off (`daqdata_net::Backoff`), and its part of the merged stream goes on. The other hosts'
//! parts never wait for it.

use std::sync::{Arc, Mutex, PoisonError};

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
    Reconnecting {
        /// Which attempt this wait is for (1 is the first reconnection).
        attempt: u32,
        /// Why the last stream ended.
        why: String,
    },
    /// The stream ended for a reason that would recur (a refused token, a
    /// wrong request): no new attempt.
    Refused {
        /// The server's reason.
        why: String,
    },
}

/// One host's state, with what it has delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct HostStatus {
    /// Where the host's stream is.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
