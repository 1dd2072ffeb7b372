//! What can go wrong before a call is made: a file, a config or an address
//! that cannot be used.

use std::path::PathBuf;

/// Errors of reading addresses and credentials. Each names the file or
/// address it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file was read but does not say what it should.
    #[error("{path}: {reason}")]
    Config {
        /// The file (or files).
        path: String,
        /// What is wrong in it.
        reason: String,
    },
    /// An address as typed on a command line or in a config cannot be used.
    #[error("invalid host {address:?}: {reason} (expected HOST, HOST:PORT, tls://HOST:PORT or unix:///path.sock)")]
    Address {
        /// The text given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
}
