//! The safe reader of SPEC §9.

use std::time::{Duration, Instant, SystemTime};

use super::cards::{parse_cards, Cards, ParseError};
use super::sys::{find_segment, NamedSemaphore, Segment};
use super::StatusLocation;

/// The longest a reader waits for the lock: Hashpipe's net thread takes it
/// inside its packet loop, so a reader that holds it costs packets.
pub const LOCK_TIMEOUT: Duration = Duration::from_millis(100);

/// One read of the buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The cards, in buffer order.
    pub cards: Cards,
    /// When the copy was made.
    pub read_at: SystemTime,
}

/// Why a read gave no cards. None of these is a reason to stop polling.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No segment has the key: Hashpipe has not run since boot (or it was
    /// removed).
    #[error("no Hashpipe status buffer (key {key:#010x})")]
    NoSegment {
        /// The key looked for.
        key: i32,
    },
    /// The segment exists but its semaphore does not.
    #[error("no Hashpipe status semaphore {name}")]
    NoSemaphore {
        /// The semaphore's name.
        name: String,
    },
    /// The lock stayed taken for [`LOCK_TIMEOUT`]: the read was skipped.
    #[error("Hashpipe status semaphore {name} was busy for {} ms; read skipped", LOCK_TIMEOUT.as_millis())]
    LockBusy {
        /// The semaphore's name.
        name: String,
    },
    /// The copy is not cards.
    #[error("Hashpipe status buffer (key {key:#010x}): {source}")]
    Parse {
        /// The segment's key.
        key: i32,
        /// What is wrong with it.
        source: ParseError,
    },
    /// A system call failed.
    #[error("Hashpipe status buffer (key {key:#010x}, semaphore {semaphore}): {what}: {source}")]
    Os {
        /// The segment's key.
        key: i32,
        /// The semaphore's name.
        semaphore: String,
        /// Which call.
        what: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// What a reader has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Reads that gave cards.
    pub reads: u64,
    /// Reads skipped because the lock was busy.
    pub skipped: u64,
    /// Copies that were not cards.
    pub parse_failures: u64,
    /// Times a segment was attached (the first, and again after it was
    /// removed or replaced).
    pub attaches: u64,
}

/// Reads one Hashpipe instance's status buffer; see the module docs.
#[derive(Debug)]
pub struct StatusReader {
    location: StatusLocation,
    attached: Option<(Segment, NamedSemaphore)>,
    copy: Vec<u8>,
    stats: ReaderStats,
}

impl StatusReader {
    /// A reader of the buffer at `location`. Attaches nothing yet.
    pub fn new(location: StatusLocation) -> StatusReader {
        StatusReader {
            location,
            attached: None,
            copy: Vec::new(),
            stats: ReaderStats::default(),
        }
    }

    /// Where it reads.
    pub fn location(&self) -> &StatusLocation {
        &self.location
    }

    /// Counts of reads, skips, parse failures and attaches.
    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    /// Copies the buffer under the lock and parses the copy.
    pub fn read(&mut self) -> Result<Snapshot, ReadError> {
        self.copy()?;
        let read_at = pff::time::now();
        match parse_cards(&self.copy) {
            Ok(cards) => {
                self.stats.reads += 1;
                Ok(Snapshot { cards, read_at })
            }
            Err(source) => {
                self.stats.parse_failures += 1;
                Err(ReadError::Parse {
                    key: self.location.key,
                    source,
                })
            }
        }
    }

    /// Copies the cards through `END` into the reader's buffer (see
    /// [`StatusReader::copied`]) and returns how long the lock was held.
    pub fn copy(&mut self) -> Result<Duration, ReadError> {
        self.ensure_attached()?;
        let Some((segment, lock)) = &self.attached else {
            return Err(ReadError::NoSegment {
                key: self.location.key,
            });
        };
        let got = lock
            .wait_for(LOCK_TIMEOUT)
            .map_err(|source| self.os("sem_timedwait", source))?;
        if !got {
            self.stats.skipped += 1;
            return Err(ReadError::LockBusy {
                name: self.location.semaphore.clone(),
            });
        }
        let start = Instant::now();
        segment.copy_through_end(&mut self.copy);
        let posted = lock.post();
        let held = start.elapsed();
        posted.map_err(|source| self.os("sem_post", source))?;
        Ok(held)
    }

    /// The bytes of the last copy.
    pub fn copied(&self) -> &[u8] {
        &self.copy
    }

    /// Keeps the attachment to the segment that has the key now: attaches
    /// when there was none, again when it was removed or replaced.
    fn ensure_attached(&mut self) -> Result<(), ReadError> {
        let key = self.location.key;
        let id = find_segment(key).map_err(|source| self.os("shmget", source))?;
        let Some(id) = id else {
            self.attached = None;
            return Err(ReadError::NoSegment { key });
        };
        if let Some((segment, _)) = &self.attached {
            let removed = segment
                .is_removed()
                .map_err(|source| self.os("shmctl(IPC_STAT)", source))?;
            if segment.id() == id && !removed {
                return Ok(());
            }
            tracing::info!(
                key = format_args!("{key:#010x}"),
                "Hashpipe status buffer was replaced; attaching again"
            );
            self.attached = None;
        }
        let segment = match Segment::attach_read_only(id) {
            Ok(segment) => segment,
            // Removed between shmget and shmat.
            Err(e)
                if e.raw_os_error() == Some(libc::EIDRM)
                    || e.raw_os_error() == Some(libc::EINVAL) =>
            {
                return Err(ReadError::NoSegment { key });
            }
            Err(source) => return Err(self.os("shmat", source)),
        };
        // A new segment may come with a new semaphore (a simulator or a
        // cleaned-up node unlinks it), so it is opened again too.
        let name = &self.location.semaphore;
        let lock = NamedSemaphore::open(name).map_err(|source| self.os("sem_open", source))?;
        let Some(lock) = lock else {
            return Err(ReadError::NoSemaphore { name: name.clone() });
        };
        self.stats.attaches += 1;
        tracing::debug!(
            key = format_args!("{key:#010x}"),
            len = segment.len(),
            "attached Hashpipe status buffer"
        );
        self.attached = Some((segment, lock));
        Ok(())
    }

    fn os(&self, what: &'static str, source: std::io::Error) -> ReadError {
        ReadError::Os {
            key: self.location.key,
            semaphore: self.location.semaphore.clone(),
            what,
            source,
        }
    }
}
