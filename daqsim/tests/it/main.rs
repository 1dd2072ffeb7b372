//! daqsim's integration tests, one binary (one link, not one per file).

#[cfg(feature = "cli")]
mod cli;
mod fixtures;
mod replay;
