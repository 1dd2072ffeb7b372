//! Whether anyone wants frames now.
//!
//! Reading the newest frame of every write costs a few system calls each:
//! about 5% of a core at 8,000 frames a second. When no one is watching
//! (a server with no streams), an on-demand tracker reads nothing; the
//! first [`DemandHold`] wakes it, and it hands on the newest frame of every
//! file at once, so a new viewer still starts with the freshest frames.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Shared {
    holders: AtomicUsize,
    /// Written to when the first holder arrives, to wake the tracker.
    wake: UnixStream,
    /// The tracker's end, kept here when no tracker polls it.
    _unpolled: Option<UnixStream>,
}

/// A handle to say "frames are wanted" to an on-demand tracker
/// ([`crate::TrackerConfig::on_demand`]). Cheap to clone.
#[derive(Clone)]
pub struct Demand {
    shared: Arc<Shared>,
}

/// Frames are wanted while this lives.
pub struct DemandHold {
    shared: Arc<Shared>,
}

impl Demand {
    /// Wants frames until the returned hold is dropped.
    pub fn hold(&self) -> DemandHold {
        if self.shared.holders.fetch_add(1, Ordering::AcqRel) == 0 {
            // A full socket buffer means a wake-up is already pending.
            let _ = (&self.shared.wake).write(&[1]);
        }
        DemandHold {
            shared: self.shared.clone(),
        }
    }

    /// A demand no tracker follows, for a source of frames that needs no
    /// waking (Hashpipe's socket feed): holds are counted, nothing else.
    pub fn detached() -> io::Result<Demand> {
        let (mut demand, woken) = pair()?;
        if let Some(shared) = Arc::get_mut(&mut demand.shared) {
            shared._unpolled = Some(woken);
        }
        Ok(demand)
    }

    /// True while any hold lives.
    pub fn is_held(&self) -> bool {
        self.shared.holders.load(Ordering::Acquire) > 0
    }
}

impl Drop for DemandHold {
    fn drop(&mut self) {
        self.shared.holders.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Demand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demand")
            .field("held", &self.is_held())
            .finish()
    }
}

/// A demand handle and the end the tracker thread polls.
pub(crate) fn pair() -> io::Result<(Demand, UnixStream)> {
    let (wake, woken) = UnixStream::pair()?;
    wake.set_nonblocking(true)?;
    woken.set_nonblocking(true)?;
    let demand = Demand {
        shared: Arc::new(Shared {
            holders: AtomicUsize::new(0),
            wake,
            _unpolled: None,
        }),
    };
    Ok((demand, woken))
}

/// Empties the tracker's end after a wake-up.
pub(crate) fn drain(woken: &mut UnixStream) {
    let mut buf = [0u8; 64];
    while matches!(woken.read(&mut buf), Ok(n) if n > 0) {}
}
