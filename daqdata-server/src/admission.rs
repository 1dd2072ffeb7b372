//! Who may start a stream or an upload (SPEC §3): hp_io must be configured
//! and not being reconfigured, and one of `max_concurrent_rpcs` places must
//! be free. A [`StreamTicket`] takes everything a stream holds, in the one
//! order that works, and gives it back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tonic::Status;

use crate::broadcast::Watching;
use crate::hp_io::Generation;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;

/// The places of `max_concurrent_rpcs`, the streams among them, and each
/// remote peer's share (SPEC §6 `max_streams_per_peer`).
pub(crate) struct Admission {
    /// Streams and uploads, against `max`.
    rpcs: Arc<AtomicUsize>,
    /// Streams alone, for InitHpIo's force check.
    streams: Arc<AtomicUsize>,
    max: usize,
    /// Streams per limited peer address.
    per_peer: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_peer: usize,
    /// Streams per peer, limited or not (the unix socket is `None`), for
    /// the active-peers gauge.
    peers: Arc<Mutex<HashMap<Option<IpAddr>, usize>>>,
    metrics: Arc<Metrics>,
}

/// Everything an admitted stream holds while it lives.
pub(crate) struct StreamTicket {
    pub generation: Arc<Generation>,
    // Fields drop in order: the reverse of how they were taken.
    _demand: hpio::DemandHold,
    _watching: Watching,
    _stream: Place,
    _peer: Option<PeerPlace>,
    _seen: SeenPeer,
    _rpc: Place,
}

/// What an admitted StreamHashpipeStatus holds while it lives: a place
/// among the RPCs and among its peer's streams.
pub(crate) struct StatusTicket {
    _peer: Option<PeerPlace>,
    _rpc: Place,
}

/// What an admitted upload holds while it lives.
pub(crate) struct UploadTicket {
    pub generation: Arc<Generation>,
    _rpc: Place,
}

impl Admission {
    pub(crate) fn new(
        max_concurrent_rpcs: usize,
        max_streams_per_peer: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Admission {
            peers: Arc::new(Mutex::new(HashMap::new())),
            metrics,
            rpcs: Arc::new(AtomicUsize::new(0)),
            streams: Arc::new(AtomicUsize::new(0)),
            max: max_concurrent_rpcs,
            per_peer: Arc::new(Mutex::new(HashMap::new())),
            max_per_peer: max_streams_per_peer,
        }
    }

    /// Streams open now.
    pub(crate) fn active_streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }

    /// Lets a stream in. The broadcast is watched before the tracker's
    /// demand is taken: the first watcher of a quiet spell empties the
    /// stale tracked frames, and the demand wakes the tracker, whose fresh
    /// frames then refill the slots. The other order could empty fresh ones.
    /// `remote` is the caller's address (`None`: the unix socket);
    /// `limited` says whether the per-peer limit applies to it (TCP, not
    /// loopback unless configured so).
    pub(crate) fn stream(
        &self,
        lifecycle: &Lifecycle,
        remote: Option<IpAddr>,
        limited: bool,
    ) -> Result<StreamTicket, Status> {
        let generation = lifecycle.current()?;
        let peer = match remote {
            Some(ip) if limited => Some(self.peer_place(ip)?),
            _ => None,
        };
        let rpc = self.rpc_place()?;
        let stream = Place::count(&self.streams);
        let seen = SeenPeer::new(self, remote);
        let watching = generation.broadcast.watch();
        let demand = generation.demand.hold();
        Ok(StreamTicket {
            generation,
            _demand: demand,
            _watching: watching,
            _stream: stream,
            _peer: peer,
            _seen: seen,
            _rpc: rpc,
        })
    }

    /// Lets a StreamHashpipeStatus in: it needs no hp_io, only places.
    pub(crate) fn status_stream(
        &self,
        remote: Option<IpAddr>,
        limited: bool,
    ) -> Result<StatusTicket, Status> {
        let peer = match remote {
            Some(ip) if limited => Some(self.peer_place(ip)?),
            _ => None,
        };
        let rpc = self.rpc_place()?;
        Ok(StatusTicket {
            _peer: peer,
            _rpc: rpc,
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

    fn peer_place(&self, ip: IpAddr) -> Result<PeerPlace, Status> {
        let mut counts = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.max_per_peer {
            return Err(Status::resource_exhausted(format!(
                "{ip} already holds {n} streams, this server's max_streams_per_peer; close one first",
                n = *n
            )));
        }
        *n += 1;
        Ok(PeerPlace {
            counts: self.per_peer.clone(),
            ip,
        })
    }

    fn rpc_place(&self) -> Result<Place, Status> {
        let max = self.max;
        Place::take(&self.rpcs, max).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "this server already serves its maximum of {max} streams and uploads; try again later"
            ))
        })
    }
}

/// Holds one count of a counter; gives it back when dropped, which tonic
/// does the moment a client goes away.
struct Place(Arc<AtomicUsize>);

impl Place {
    /// Takes a place if fewer than `max` are taken.
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Place> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Place(count.clone()))
    }

    /// Counts one in, without a limit.
    fn count(count: &Arc<AtomicUsize>) -> Place {
        count.fetch_add(1, Ordering::AcqRel);
        Place(count.clone())
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open stream in the active-streams and active-peers gauges.
struct SeenPeer {
    peers: Arc<Mutex<HashMap<Option<IpAddr>, usize>>>,
    metrics: Arc<Metrics>,
    remote: Option<IpAddr>,
}

impl SeenPeer {
    fn new(admission: &Admission, remote: Option<IpAddr>) -> SeenPeer {
        let mut peers = admission.peers.lock().unwrap_or_else(|e| e.into_inner());
        *peers.entry(remote).or_insert(0) += 1;
        admission.metrics.active_peers.set(peers.len() as i64);
        admission.metrics.active_streams.inc();
        SeenPeer {
            peers: admission.peers.clone(),
            metrics: admission.metrics.clone(),
            remote,
        }
    }
}

impl Drop for SeenPeer {
    fn drop(&mut self) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = peers.get_mut(&self.remote) {
            *n -= 1;
            if *n == 0 {
                peers.remove(&self.remote);
            }
        }
        self.metrics.active_peers.set(peers.len() as i64);
        self.metrics.active_streams.dec();
    }
}

/// One stream of a limited peer; given back when dropped.
struct PeerPlace {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_limited_and_given_back() {
        let count = Arc::new(AtomicUsize::new(0));
        let a = Place::take(&count, 2);
        let b = Place::take(&count, 2);
        assert!(a.is_some() && b.is_some());
        assert!(Place::take(&count, 2).is_none());
        drop(a);
        assert!(Place::take(&count, 2).is_some());
        drop(b);
        assert_eq!(count.load(Ordering::Acquire), 0);
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
}
