//! Log a recurring problem once per cause, not once per tick.

use std::collections::HashSet;
use std::fmt::Display;
use std::path::{Path, PathBuf};

/// What is wrong with a path; each is logged once until the path recovers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Cause {
    /// A directory could not be listed or stat'ed.
    Unlistable,
    /// A file could not be opened, stat'ed or read.
    Unreadable,
    /// A file's first frame is not a PFF frame with a JSON header.
    NotPff,
    /// A frame is torn or misaligned (its size changed inside the file).
    Misaligned,
    /// A followed file or directory disappeared.
    Vanished,
    /// A directory cannot be watched; it is polled.
    Unwatched,
}

/// The causes already logged, by path.
#[derive(Default)]
pub(crate) struct Warnings(HashSet<(PathBuf, Cause)>);

impl Warnings {
    /// Logs `what` at warn level unless this cause was already logged for
    /// this path.
    pub(crate) fn once(&mut self, path: &Path, cause: Cause, what: impl Display) {
        if self.0.contains(&(path.to_path_buf(), cause)) {
            return;
        }
        tracing::warn!(path = %path.display(), "{what}; skipping it");
        self.0.insert((path.to_path_buf(), cause));
    }

    /// How many (path, cause) pairs are remembered.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.0.len()
    }

    /// Whether this cause is remembered (was logged) for this path.
    #[cfg(test)]
    pub(crate) fn holds(&self, path: &Path, cause: Cause) -> bool {
        self.0.contains(&(path.to_path_buf(), cause))
    }

    /// The path works again: a later failure is news and is logged.
    pub(crate) fn recovered(&mut self, path: &Path, cause: Cause) {
        if !self.0.is_empty() {
            self.0.remove(&(path.to_path_buf(), cause));
        }
    }
}
