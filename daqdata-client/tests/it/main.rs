//! The client's integration tests, one binary (one link, not one per
//! file). The command line's tests need the `cli` feature (the default).

#[cfg(feature = "cli")]
mod bench;
#[cfg(feature = "cli")]
mod cli;
mod common;
mod library;
#[cfg(feature = "cli")]
mod reconnect;
#[cfg(feature = "cli")]
mod web;
