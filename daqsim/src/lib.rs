//! A fake PANOSETI DAQ: replays archived frames into a live directory tree.
//!
//! # Brief overview
//!
//! On a telescope, Hashpipe appends frames to PFF files under
//! `DATA_DIR/module_M/RUN.pffd/` while readers follow them. This crate does
//! the same from recorded frames, so servers, tests and benchmarks have a
//! live data source without a telescope.
//!
//! - [`Fixtures`] holds archived frames in memory per (fixture module,
//!   [`pff::DataProduct`]): from a directory ([`Fixtures::load`]) or the
//!   repository's `fixtures/` compiled in ([`Fixtures::embedded`]).
//! - [`Replay::start`] takes fixtures and a [`ReplayConfig`] and writes
//!   `OUT/module_M/obs_SIM.start_TIME.runtype_sim.pffd/start_TIME.dp_DP.bpp_B.module_M.seqno_S.pff`
//!   on one background thread, each frame restamped with the time of
//!   writing and appended whole at its scheduled time, looping the
//!   fixture. `OUT/daq_run_name` and `OUT/daq_hashpipe_pid` say a run is
//!   live; [`Replay::stop`] (or drop) writes `recording_ended` and removes
//!   the pid file, as the PANOSETI stop script does.
//! - [`Stats`] reports frames written and the rate achieved.
//! - [`SocketPush`] pushes the same frames into Hashpipe's unix sockets
//!   instead (a module id and a frame per message), as Hashpipe's
//!   `snapshot.c` does for a DaqData server that listens on them.
//! - [`StatusSim`] keeps a real Hashpipe status buffer (a System V
//!   segment and a named semaphore, SPEC §9) under its own keyfile, with
//!   counters and thread states that move.
//!
//! ```no_run
//! use daqsim::{Fixtures, Replay, ReplayConfig};
//!
//! let replay = Replay::start(
//!     Fixtures::embedded(),
//!     ReplayConfig {
//!         modules: vec![(1.into(), 200.into()), (1.into(), 201.into())], // fixture module 1 as modules 200 and 201
//!         frames: Some(1000),
//!         ..ReplayConfig::default()
//!     },
//! )?;
//! println!("writing under {}", replay.out().display());
//! replay.wait();
//! let stats = replay.stop()?;
//! println!("{} frames at {:.0} frames/s", stats.frames, stats.rate());
//! # Ok::<(), daqsim::Error>(())
//! ```

mod error;
mod fixtures;
mod replay;
mod sockets;
mod status;

pub use error::Error;
pub use fixtures::Fixtures;
pub use replay::{Replay, ReplayConfig, Stats, LATE};
pub use sockets::{PushStats, SocketPush, SocketPushConfig, HASHPIPE_RECONNECT};
pub use status::{StatusSim, StatusSimConfig};
