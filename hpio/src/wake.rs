//! What wakes the tracker thread: a write or a change in a watched
//! directory (inotify), a stop request, or the next tick.
//!
//! inotify is read on the tracker thread itself, not on a helper thread:
//! at 8,000 writes a second, a hand-over between threads per write cost
//! more than all the tracking, and one thread reading the queue takes
//! every write of the moment in one read.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::tree::Watches;

/// Writes and changes of entries, and the watched directory's own end.
fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

/// Why [`Wake::wait`] returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    Stop,
    Notified,
    Timeout,
}

/// One notification: the watched directory (`None` when the kernel's
/// queue overflowed and anything may have changed), what happened, and
/// the entry's name.
pub(crate) struct Notice<'a> {
    pub dir: Option<&'a Path>,
    pub mask: EventMask,
    pub name: Option<&'a OsStr>,
}

/// The tracker thread's sleep, and the inotify watches that end it.
pub(crate) struct Wake {
    /// Readable (end of stream) when the [`crate::Tracker`] asks to stop or
    /// is dropped.
    stop: UnixStream,
    /// Readable when an on-demand tracker's first watcher arrives.
    demand: UnixStream,
    inotify: Option<Inotify>,
    dirs: HashMap<PathBuf, WatchDescriptor>,
    wds: HashMap<WatchDescriptor, PathBuf>,
    /// Directories that could not be watched, for the caller to log.
    pub failed: Vec<(PathBuf, io::Error)>,
    /// Directories that should be watched but are not.
    unwatched: HashSet<PathBuf>,
    buf: Vec<u8>,
}

impl Wake {
    /// `notify`: use inotify if the system allows; else only ticks.
    pub(crate) fn new(
        stop: UnixStream,
        demand: UnixStream,
        notify: bool,
        interval: Duration,
    ) -> Self {
        let inotify = if notify {
            match Inotify::init() {
                Ok(i) => Some(i),
                Err(e) => {
                    tracing::warn!(
                        "file-system notifications unavailable ({e}); polling every {interval:?}"
                    );
                    None
                }
            }
        } else {
            tracing::info!("file-system notifications off; polling every {interval:?}");
            None
        };
        Wake {
            stop,
            demand,
            inotify,
            dirs: HashMap::new(),
            wds: HashMap::new(),
            failed: Vec::new(),
            unwatched: HashSet::new(),
            buf: vec![0; 64 * 1024],
        }
    }

    /// True while every followed directory is watched: changes to them
    /// are then notified and need not be looked for on every tick.
    pub(crate) fn notifying(&self) -> bool {
        self.inotify.is_some() && self.unwatched.is_empty()
    }

    /// How many directories are watched.
    #[cfg(test)]
    pub(crate) fn watched(&self) -> usize {
        assert_eq!(self.dirs.len(), self.wds.len());
        self.dirs.len()
    }

    /// Sleeps until a notification (when `notifications`), a stop
    /// request, a demand wake-up, or `timeout`.
    pub(crate) fn wait(&mut self, timeout: Duration, notifications: bool) -> Woken {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};

        let inotify = self.inotify.as_ref().filter(|_| notifications);
        // Without inotify, only the first two are polled.
        let third = inotify.map_or(self.stop.as_fd(), |i| i.as_fd());
        let mut fds = [
            PollFd::new(&self.stop, PollFlags::IN),
            PollFd::new(&self.demand, PollFlags::IN),
            PollFd::from_borrowed_fd(third, PollFlags::IN),
        ];
        let polled = if inotify.is_some() { 3 } else { 2 };
        let ts = Timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        // ppoll, with the signal mask unchanged.
        match poll(&mut fds[..polled], Some(&ts)) {
            // Timeout, or a signal (EINTR): either way, look and wait again.
            Ok(0) | Err(_) => return Woken::Timeout,
            Ok(_) => {}
        }
        let woke = |i: usize| i < polled && !fds[i].revents().is_empty();
        let (stop, demand, notified) = (woke(0), woke(1), woke(2));
        if stop {
            return Woken::Stop;
        }
        if demand {
            crate::demand::drain(&mut self.demand);
        }
        if notified {
            Woken::Notified
        } else {
            Woken::Timeout
        }
    }

    /// Hands pending notifications to `each`, without blocking: one read
    /// (64 KiB holds hundreds); if more are left, the next wait returns at
    /// once. A second read only to learn that the queue is empty would
    /// cost a system call per wake. Returns how many there were.
    pub(crate) fn drain(&mut self, mut each: impl FnMut(Notice<'_>)) -> usize {
        let Some(inotify) = self.inotify.as_mut() else {
            return 0;
        };
        let events = match inotify.read_events(&mut self.buf) {
            Ok(events) => events,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return 0
            }
            Err(e) => {
                tracing::warn!("reading file-system notifications failed ({e}); polling only");
                self.inotify = None;
                return 0;
            }
        };
        let mut count = 0;
        for event in events {
            count += 1;
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                each(Notice {
                    dir: None,
                    mask: event.mask,
                    name: None,
                });
                continue;
            }
            let Some(dir) = self.wds.get(&event.wd) else {
                continue;
            };
            each(Notice {
                dir: Some(dir),
                mask: event.mask,
                name: event.name,
            });
            if event.mask.contains(EventMask::IGNORED) {
                // The kernel ended the watch (the directory is gone).
                if let Some(dir) = self.wds.remove(&event.wd) {
                    self.dirs.remove(&dir);
                }
            }
        }
        count
    }
}

impl Watches for Wake {
    fn watch(&mut self, dir: &Path) {
        let Some(inotify) = self.inotify.as_mut() else {
            return;
        };
        if self.dirs.contains_key(dir) {
            return;
        }
        match inotify.watches().add(dir, mask()) {
            Ok(wd) => {
                self.unwatched.remove(dir);
                self.wds.insert(wd.clone(), dir.to_path_buf());
                self.dirs.insert(dir.to_path_buf(), wd);
            }
            Err(e) => {
                self.unwatched.insert(dir.to_path_buf());
                self.failed.push((dir.to_path_buf(), e));
            }
        }
    }

    fn unwatch(&mut self, dir: &Path) {
        self.unwatched.remove(dir);
        let Some(inotify) = self.inotify.as_mut() else {
            return;
        };
        if let Some(wd) = self.dirs.remove(dir) {
            self.wds.remove(&wd);
            // Fails when the directory is gone, which ended the watch too.
            let _ = inotify.watches().remove(wd);
        }
    }
}

/// Makes the two ends of a stop channel: the tracker keeps one, the
/// thread polls the other.
pub(crate) fn stop_pair() -> io::Result<(UnixStream, UnixStream)> {
    UnixStream::pair()
}
