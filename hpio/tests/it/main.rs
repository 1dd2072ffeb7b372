//! hpio's integration tests, one binary (one link, not one per file).

mod active_run;
mod bad_input;
mod common;
mod on_demand;
mod status_buffer;
mod tracking;
