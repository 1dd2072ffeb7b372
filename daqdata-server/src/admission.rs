//! Who may start a stream or an upload (SPEC §3): hp_io must be configured
//! and not being reconfigured, and one of `max_concurrent_rpcs` places must
//! be free. A [`StreamTicket`] takes everything a stream holds, in the one
//! order that works, and gives it back when dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tonic::Status;

use crate::broadcast::Watching;
use crate::hp_io::Generation;
use crate::lifecycle::Lifecycle;

/// The places of `max_concurrent_rpcs`, and the streams among them.
pub(crate) struct Admission {
    /// Streams and uploads, against `max`.
    rpcs: Arc<AtomicUsize>,
    /// Streams alone, for InitHpIo's force check.
    streams: Arc<AtomicUsize>,
    max: usize,
}

/// Everything an admitted stream holds while it lives.
pub(crate) struct StreamTicket {
    pub generation: Arc<Generation>,
    // Fields drop in order: the reverse of how they were taken.
    _demand: hpio::DemandHold,
    _watching: Watching,
    _stream: Place,
    _rpc: Place,
}

/// What an admitted upload holds while it lives.
pub(crate) struct UploadTicket {
    pub generation: Arc<Generation>,
    _rpc: Place,
}

impl Admission {
    pub(crate) fn new(max_concurrent_rpcs: usize) -> Self {
        Admission {
            rpcs: Arc::new(AtomicUsize::new(0)),
            streams: Arc::new(AtomicUsize::new(0)),
            max: max_concurrent_rpcs,
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
    pub(crate) fn stream(&self, lifecycle: &Lifecycle) -> Result<StreamTicket, Status> {
        let generation = lifecycle.current()?;
        let rpc = self.rpc_place()?;
        let stream = Place::count(&self.streams);
        let watching = generation.broadcast.watch();
        let demand = generation.demand.hold();
        Ok(StreamTicket {
            generation,
            _demand: demand,
            _watching: watching,
            _stream: stream,
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
}
