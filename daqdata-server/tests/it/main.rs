//! The server's integration tests, one binary (one link, not one per
//! file): `cargo test -p daqdata-server --test it access::` runs one file's.

mod access;
mod cli;
mod common;
mod gateway;
mod hashpipe_sockets;
mod hashpipe_status;
mod http2_headers;
mod init_hp_io;
mod metrics;
mod pacing;
mod server;
mod services;
mod slow_clients;
