//! Who may start a stream or an upload (SPEC §3): hp_io must be configured
//! and not being reconfigured, and one of `max_concurrent_rpcs` places must
//! be free. A [`StreamTicket`] takes everything a stream holds, in the one
//! order that works, and gives it back when dropped.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use crate::broadcast::Watching;
use crate::hp_io::Generation;
use crate::keyed_count::{KeyedCounts, KeyedGuard};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;

/// The places of `max_concurrent_rpcs`, the streams among them, and each
/// remote peer's share (SPEC §6 `max_streams_per_peer`).
pub(crate) struct Admission {
    /// Streams and uploads: `max_concurrent_rpcs` permits.
    rpcs: Arc<Semaphore>,
    max: usize,
    /// Streams per limited peer address.
    per_peer: KeyedCounts<IpAddr>,
    max_per_peer: usize,
    /// Streams per peer, limited or not (the unix socket is `None`); keeps
    /// the active-peers gauge.
    peers: KeyedCounts<Option<IpAddr>>,
    metrics: Arc<Metrics>,
}

/// The places an admitted RPC holds. Fields drop in declaration order, the
/// reverse of how [`Admission::places`] takes them: the RPC permit first,
/// then the peer's share.
struct Places {
    _rpc: OwnedSemaphorePermit,
    _peer: Option<KeyedGuard<IpAddr>>,
}

/// Everything an admitted stream holds while it lives. Fields drop in
/// declaration order, the reverse of how [`Admission::stream`] takes them:
/// the demand and the watch go first, the stream leaves the counts, and its
/// places are given back last.
pub(crate) struct StreamTicket {
    pub generation: Arc<Generation>,
    _demand: hpio::DemandHold,
    _watching: Watching,
    _counted: ActiveStream,
    _places: Places,
}

/// What an admitted StreamHashpipeStatus holds while it lives: a place
/// among the RPCs and among its peer's streams.
pub(crate) struct StatusTicket {
    _places: Places,
}

/// What an admitted upload holds while it lives.
pub(crate) struct UploadTicket {
    pub generation: Arc<Generation>,
    _rpc: OwnedSemaphorePermit,
}

impl Admission {
    pub(crate) fn new(
        max_concurrent_rpcs: usize,
        max_streams_per_peer: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Admission {
            rpcs: Arc::new(Semaphore::new(
                max_concurrent_rpcs.min(Semaphore::MAX_PERMITS),
            )),
            max: max_concurrent_rpcs,
            per_peer: KeyedCounts::new(),
            max_per_peer: max_streams_per_peer,
            peers: KeyedCounts::with_keys_gauge(metrics.active_peers.clone()),
            metrics,
        }
    }

    /// Streams open now: the `active_streams` gauge, the one count of them.
    pub(crate) fn active_streams(&self) -> usize {
        usize::try_from(self.metrics.active_streams.get()).unwrap_or(0)
    }

    /// Lets a stream in. The broadcast is watched before the tracker's
    /// demand is taken: the first watcher of a quiet spell empties the
    /// stale tracked frames, and the demand wakes the tracker, whose fresh
    /// frames then refill the slots. The other order could empty fresh ones.
    /// `remote` is the caller's address (`None`: the unix socket);
    /// `limited` says whether the per-peer limit applies to it (TCP, not
    /// loopback or a relay peer unless configured so).
    pub(crate) fn stream(
        &self,
        lifecycle: &Lifecycle,
        remote: Option<IpAddr>,
        limited: bool,
    ) -> Result<StreamTicket, Status> {
        let generation = lifecycle.current()?;
        let places = self.places(remote, limited)?;
        let counted = ActiveStream::new(self, remote);
        let watching = generation.broadcast.watch();
        let demand = generation.demand.hold();
        Ok(StreamTicket {
            generation,
            _demand: demand,
            _watching: watching,
            _counted: counted,
            _places: places,
        })
    }

    /// Lets a StreamHashpipeStatus in: it needs no hp_io, only places.
    pub(crate) fn status_stream(
        &self,
        remote: Option<IpAddr>,
        limited: bool,
    ) -> Result<StatusTicket, Status> {
        Ok(StatusTicket {
            _places: self.places(remote, limited)?,
        })
    }

    /// Lets an upload in.
    pub(crate) fn upload(&self, lifecycle: &Lifecycle) -> Result<UploadTicket, Status> {
        let generation = lifecycle.current()?;
        let rpc = self.rpc_place()?;
        Ok(UploadTicket {
            generation,
            _rpc: rpc,
        })
    }

    /// The peer's share (when `limited`), then an RPC place.
    fn places(&self, remote: Option<IpAddr>, limited: bool) -> Result<Places, Status> {
        let peer = match remote {
            Some(ip) if limited => Some(self.peer_place(ip)?),
            _ => None,
        };
        let rpc = self.rpc_place()?;
        Ok(Places {
            _rpc: rpc,
            _peer: peer,
        })
    }

    fn peer_place(&self, ip: IpAddr) -> Result<KeyedGuard<IpAddr>, Status> {
        self.per_peer.try_take(ip, self.max_per_peer).map_err(|n| {
            Status::resource_exhausted(format!(
                "{ip} already holds {n} streams, this server's max_streams_per_peer; close one first"
            ))
        })
    }

    fn rpc_place(&self) -> Result<OwnedSemaphorePermit, Status> {
        let max = self.max;
        self.rpcs.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this server already serves its maximum of {max} streams and uploads; try again later"
            ))
        })
    }
}

/// One open stream in the active-streams gauge (InitHpIo's force check
/// reads the same gauge) and in its peer's count for the active-peers gauge.
struct ActiveStream {
    metrics: Arc<Metrics>,
    _peer: KeyedGuard<Option<IpAddr>>,
}

impl ActiveStream {
    fn new(admission: &Admission, remote: Option<IpAddr>) -> ActiveStream {
        admission.metrics.active_streams.inc();
        ActiveStream {
            metrics: admission.metrics.clone(),
            _peer: admission.peers.take(remote),
        }
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.metrics.active_streams.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_places_are_limited_and_given_back() {
        let admission = Admission::new(2, 10, Metrics::new());
        let a = admission.rpc_place();
        let b = admission.rpc_place();
        assert!(a.is_ok() && b.is_ok());
        let refused = admission.rpc_place().err().map(|s| s.code());
        assert_eq!(refused, Some(tonic::Code::ResourceExhausted));
        drop(a);
        assert!(admission.rpc_place().is_ok());
    }

    #[test]
    fn a_status_stream_takes_its_peer_share_and_an_rpc_place() {
        let admission = Admission::new(1, 1, Metrics::new());
        let far: IpAddr = "192.0.2.1".parse().unwrap();
        let held = admission.status_stream(Some(far), true).unwrap();
        assert!(admission.rpc_place().is_err(), "the only RPC place is held");
        assert!(
            admission.peer_place(far).is_err(),
            "the peer's share is held"
        );
        drop(held);
        assert!(admission.rpc_place().is_ok() && admission.peer_place(far).is_ok());
        // An unlimited peer (loopback, a relay peer) takes no share.
        let _relayed = admission.status_stream(Some(far), false).unwrap();
        assert!(admission.peer_place(far).is_ok());
    }

    #[test]
    fn each_peer_gets_its_share_and_gives_it_back() {
        let admission = Admission::new(10, 2, Metrics::new());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = admission.peer_place(a).unwrap();
        let _a2 = admission.peer_place(a).unwrap();
        let refused = admission.peer_place(a).err().map(|s| s.code());
        assert_eq!(refused, Some(tonic::Code::ResourceExhausted));
        assert!(
            admission.peer_place(b).is_ok(),
            "another peer still gets places"
        );
        drop(a1);
        assert!(admission.peer_place(a).is_ok());
    }

    /// The active-streams gauge, which InitHpIo without force reads, counts
    /// each open stream once and forgets it when it ends; the active-peers
    /// gauge counts the peers that hold any.
    #[test]
    fn open_streams_are_counted_until_they_end() {
        let admission = Admission::new(10, 10, Metrics::new());
        let far: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(admission.active_streams(), 0);
        let local = ActiveStream::new(&admission, None);
        let a = ActiveStream::new(&admission, Some(far));
        let b = ActiveStream::new(&admission, Some(far));
        assert_eq!(admission.active_streams(), 3);
        assert_eq!(admission.metrics.active_peers.get(), 2);
        drop(a);
        assert_eq!(admission.active_streams(), 2);
        drop((local, b));
        assert_eq!(admission.active_streams(), 0);
        assert_eq!(admission.metrics.active_peers.get(), 0);
    }
}
