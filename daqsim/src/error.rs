//! What can go wrong loading fixtures or replaying them.

use std::path::PathBuf;

/// A failure of `daqsim`, naming the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file or directory failed.
    // The reason is in the message, not a `source`, so an error chain
    // (anyhow's "Caused by") does not print it twice.
    #[error("{what} {}: {reason}", path.display())]
    Io {
        /// What was being done ("writing", "creating the run directory").
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        reason: std::io::Error,
    },
    /// A fixture file is not usable PFF.
    #[error("fixture {}: {what}", path.display())]
    Fixture {
        /// The fixture file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The fixture directory holds no `*.pff` file.
    #[error("no fixture frames (*.pff) under {}", .0.display())]
    NoFixtures(PathBuf),
    /// The replay settings cannot work (a rate of 0, a module mapping from a
    /// module the fixtures do not hold, ...).
    #[error("replay settings: {0}")]
    Config(String),
    /// The writer thread panicked; the tree may be left mid-run.
    #[error("the replay writer thread into {} panicked", .0.display())]
    Panicked(PathBuf),
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, reason: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            reason,
        }
    }

    pub(crate) fn fixture(path: impl Into<PathBuf>, what: impl ToString) -> Self {
        Error::Fixture {
            path: path.into(),
            what: what.to_string(),
        }
    }
}
