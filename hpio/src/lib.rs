//! Follows a live PANOSETI DAQ data directory and hands on each newest
//! complete frame, the moment Hashpipe finishes writing it.
//!
//! # Brief overview
//!
//! Hashpipe appends frames to `DATA_DIR/module_M/RUN.pffd/*.pff` (or a bare
//! `DATA_DIR/RUN.pffd/*.pff`), a new file when one is full (`seqno` + 1)
//! and a new run directory for each run.
//!
//! - A [`Tracker`], started from a [`TrackerConfig`], follows that tree on
//!   its own thread: for each (module, data product) it follows the
//!   highest-`seqno` file of the module's newest run, wakes on each write
//!   (inotify, read on that same thread) and on each tick of the interval
//!   (the only wake-up when polling), and reads only the newest *complete*
//!   frame of a file that grew, by one `fstat` and one `pread`.
//! - Each such frame becomes a [`FrameEvent`] (module, data product, file,
//!   index, a per-(module, data product) `seq`, the checked frame bytes)
//!   handed to the caller's sink on the tracker thread. The server
//!   publishes it to its streams; frames nobody had time for are dropped,
//!   never queued.
//! - [`active_run`] answers whether Hashpipe is recording at all (SPEC §3),
//!   before a tracker is started.
//! - An on-demand tracker ([`TrackerConfig::on_demand`]) reads nothing
//!   while no [`DemandHold`] of its [`Demand`] lives, and hands on every
//!   newest frame the moment one is taken: a server with no viewers costs
//!   Hashpipe nothing.
//!
//! A torn or misaligned frame is never handed on; bad files and vanished
//! directories are logged once and skipped while everything else goes on.
//! Work per tick grows with what changed, not with the size of files or
//! the number of old runs.
//!
//! - [`status`] reads Hashpipe's status buffer (SPEC §9): its threads'
//!   states and counters, without costing Hashpipe packets.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! let config = hpio::TrackerConfig {
//!     interval: Duration::from_millis(10),
//!     modules: vec![pff::ModuleId::new(1), pff::ModuleId::new(3)],
//!     ..hpio::TrackerConfig::new("/mnt/panoseti/data")
//! };
//! let tracker = hpio::Tracker::spawn(config, |event| {
//!     println!("module {} {} frame {} of {}", event.module, event.dp, event.frame_index, event.file);
//! })?;
//! std::thread::sleep(Duration::from_secs(10));
//! tracker.stop();
//! # Ok::<(), hpio::Error>(())
//! ```

mod active;
mod demand;
mod error;
mod follow;
pub mod status;
mod tracker;
mod tree;
mod wake;
mod warn;

pub use active::active_run;
pub use demand::{Demand, DemandHold};
pub use error::Error;
pub use tracker::{FrameEvent, Tracker, TrackerConfig};
