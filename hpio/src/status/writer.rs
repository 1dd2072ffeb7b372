//! A status buffer kept the way Hashpipe keeps one, for simulators and
//! tests: a segment of [`SEGMENT_LEN`] bytes, mode 0666, and a semaphore
//! taken for each write. Both are removed on drop.

use std::time::Duration;

use super::cards::{StatusImage, SEGMENT_LEN};
use super::sys::{remove_segment, NamedSemaphore, Segment};
use super::{StatusError, StatusLocation};

/// Owns a status buffer's segment and semaphore; removes both on drop.
#[derive(Debug)]
pub struct StatusWriter {
    location: StatusLocation,
    segment: Segment,
    lock: NamedSemaphore,
    image: StatusImage,
}

impl StatusWriter {
    /// Creates the segment (failing if one has the key) and the
    /// semaphore, and writes a cleared buffer: an `END` card, then NULs.
    pub fn create(location: StatusLocation) -> Result<StatusWriter, StatusError> {
        let segment =
            Segment::create(location.key, SEGMENT_LEN).map_err(|source| StatusError::Create {
                what: format!("segment with key {:#010x}", location.key),
                source,
            })?;
        let lock = match NamedSemaphore::create(&location.semaphore) {
            Ok(lock) => lock,
            Err(source) => {
                let _ = remove_segment(segment.id());
                return Err(StatusError::Create {
                    what: format!("semaphore {}", location.semaphore),
                    source,
                });
            }
        };
        let mut writer = StatusWriter {
            location,
            segment,
            lock,
            image: StatusImage::new(),
        };
        writer.segment.write(writer.image.bytes());
        Ok(writer)
    }

    /// Where it is.
    pub fn location(&self) -> &StatusLocation {
        &self.location
    }

    /// Changes the cards with `edit` and writes them under the lock, as
    /// `hput*` between `hashpipe_status_lock` and `_unlock` does.
    pub fn update<T>(&mut self, edit: impl FnOnce(&mut StatusImage) -> T) -> std::io::Result<T> {
        let result = edit(&mut self.image);
        self.write_raw_with(|segment, image| segment.write(image.through_end()))?;
        Ok(result)
    }

    /// Writes `bytes` as they are at the start of the segment, under the
    /// lock: garbage, for tests of what a reader makes of it.
    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_raw_with(|segment, _| segment.write(bytes))
    }

    fn write_raw_with(
        &mut self,
        write: impl FnOnce(&mut Segment, &StatusImage),
    ) -> std::io::Result<()> {
        // Hashpipe waits without a timeout; a writer that waits forever
        // would hang a test, so a minute is the bound here.
        if !self.lock.wait_for(Duration::from_secs(60))? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "status semaphore held for a minute",
            ));
        }
        write(&mut self.segment, &self.image);
        self.lock.post()
    }

    /// Takes the lock and keeps it until the returned hold is dropped: a
    /// stuck Hashpipe thread, for tests.
    pub fn hold_lock(&self) -> std::io::Result<LockHold<'_>> {
        if !self.lock.wait_for(Duration::from_secs(60))? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "status semaphore held for a minute",
            ));
        }
        Ok(LockHold { lock: &self.lock })
    }
}

impl Drop for StatusWriter {
    fn drop(&mut self) {
        if let Err(e) = remove_segment(self.segment.id()) {
            tracing::warn!(
                "cannot remove status segment {:#010x}: {e}",
                self.location.key
            );
        }
        if let Err(e) = NamedSemaphore::unlink(&self.location.semaphore) {
            tracing::warn!(
                "cannot remove status semaphore {}: {e}",
                self.location.semaphore
            );
        }
    }
}

/// The status lock, held until dropped.
#[derive(Debug)]
pub struct LockHold<'a> {
    lock: &'a NamedSemaphore,
}

impl Drop for LockHold<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.lock.post() {
            tracing::warn!("cannot release the status semaphore: {e}");
        }
    }
}
