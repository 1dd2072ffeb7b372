//! What can stop the server from starting or serving.

use std::path::PathBuf;

/// Why [`Server::start`](crate::Server::start) or serving failed; each says
/// which file, address or step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file could not be read.
    #[error("reading config {}: {source}", .path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A configuration file is not what the server understands.
    #[error("config {}: {reason}", .path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where in the file.
        reason: String,
    },
    /// A configuration value is absurd (a typo, most likely).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The `hp_io_config.json` to apply at start.
    #[error(transparent)]
    HpIoConfig(#[from] daqdata_proto::HpIoConfigError),
    /// The `[simulate] fixtures_dir` could not be loaded.
    #[error("loading simulation fixtures from {}: {source}", .dir.display())]
    Fixtures {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        source: daqsim::Error,
    },
    /// A `listen` entry cannot be served.
    #[error("listen address {addr}: {reason}")]
    Listen {
        /// The address as configured.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// InitHpIo at start (`--init`, `--init-sim`, `init_hp_io_config`)
    /// failed.
    #[error("initializing hp_io at start: {0}")]
    InitAtStart(String),
    /// The gRPC reflection service could not be built.
    #[error("building the gRPC reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A server task panicked or was aborted.
    #[error("a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The server library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
