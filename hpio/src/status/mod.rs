//! Hashpipe's status buffer (SPEC §9): a System V segment of 80-byte
//! cards guarded by a named semaphore, where Hashpipe's threads keep their
//! state and counters.
//!
//! - [`StatusLocation`] says where one is (key and semaphore name).
//! - A [`StatusReader`] reads it without costing Hashpipe packets: it
//!   creates nothing, attaches read-only, waits at most 100 ms for the
//!   lock (a busy lock skips the read, counted), copies up to `END`,
//!   releases at once and parses outside the lock; it attaches again when
//!   the segment is removed or replaced.
//! - [`Cards`] are what a read holds; [`PanosetiStatus`] is the typed view
//!   of the keys PANOSETI's Hashpipe writes, [`Rates`] the packet and loss
//!   rates between two reads and [`Staleness`] whether the buffer is still
//!   being written.
//! - A [`StatusWriter`] keeps a buffer as Hashpipe does, for simulators
//!   and tests.

mod cards;
mod location;
mod panoseti;
mod reader;
mod sys;
mod writer;

use std::path::PathBuf;

pub use cards::{
    check_parse, parse_cards, CardValue, Cards, ImageFull, ParseError, StatusImage, CARD_LEN,
    SEGMENT_LEN,
};
pub use location::{default_keyfile, HashpipeEnv, StatusLocation};
pub use panoseti::{hashpipe_running, PanosetiStatus, Rates, Staleness, THREAD_STATES};
pub use reader::{ReadError, ReaderStats, Snapshot, StatusReader, LOCK_TIMEOUT};
pub use writer::{LockHold, StatusWriter};

/// Why a status buffer cannot even be located or created.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// `ftok` failed: the keyfile does not exist or cannot be read.
    #[error("Hashpipe keyfile {}: {source}", .path.display())]
    Keyfile {
        /// The keyfile.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The semaphore name made from the keyfile would not fit NAME_MAX.
    #[error("Hashpipe keyfile {}: its semaphore name would be {len} bytes, more than a semaphore name may have (251)", .keyfile.display())]
    SemaphoreNameTooLong {
        /// The name's length.
        len: usize,
        /// The keyfile it was made from.
        keyfile: PathBuf,
    },
    /// `$HASHPIPE_STATUS_KEY` is not a number.
    #[error("HASHPIPE_STATUS_KEY={text:?} is not a number")]
    BadKey {
        /// Its text.
        text: String,
    },
    /// A writer could not create its segment or semaphore.
    #[error("cannot create the status buffer ({what}): {source}")]
    Create {
        /// Which part, with its key or name.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}
