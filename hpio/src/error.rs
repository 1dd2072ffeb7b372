//! What can stop a tracker from starting, or an active-run check.

use std::path::PathBuf;

/// Why the tracker or the active-run check could not do its job at all.
///
/// Problems with single files or directories while tracking are not
/// errors: they are logged once and skipped, so one bad file never stops
/// the frames of the others.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory does not exist.
    #[error("data directory {} does not exist", .path.display())]
    DataDirMissing {
        /// The directory as given.
        path: PathBuf,
    },
    /// The data directory exists but cannot be listed.
    #[error("data directory {} cannot be read: {source}", .path.display())]
    DataDirUnreadable {
        /// The directory as given.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The operating system would not start the tracker thread.
    #[error("cannot start the tracker thread for {}: {source}", .path.display())]
    Thread {
        /// The data directory it was to follow.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl Error {
    /// Checks that `path` is a directory that can be listed.
    pub(crate) fn check_data_dir(path: &std::path::Path) -> Result<(), Error> {
        match std::fs::read_dir(path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::DataDirMissing {
                path: path.to_path_buf(),
            }),
            Err(source) => Err(Error::DataDirUnreadable {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}
