//! pff's integration tests, one binary (one link, not one per file).

#[cfg(feature = "cli")]
mod cli;
mod robustness;
mod samples;
mod socket_feed;
