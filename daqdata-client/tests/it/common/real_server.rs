//! The real DaqData server for the command line's tests: the
//! daqdata-server library, run in this process on its own runtime.
//!
//! Why in-process: cargo builds a dev-dependency's library for these tests
//! from this checkout, so the server they talk to is always the current
//! one. Another crate's binary gets no `CARGO_BIN_EXE_` here; it could
//! only be found by guessing where cargo put it, and the guess may find a
//! stale build or none (`cargo test -p daqdata-client` builds no server
//! binary). None of these tests needs the server to be another process:
//! `daqdata` is, and it reaches the server over its unix or TLS socket.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use daqdata_server::{Config, HashpipeSocketsConfig, HashpipeStatusConfig, InitOnStart, Server};

/// A running server; shut down (as on SIGTERM) when stopped or dropped.
pub struct RealServer {
    server: Option<Server>,
    runtime: tokio::runtime::Runtime,
    log: PathBuf,
}

impl RealServer {
    /// The config of a server on `dir/daq.sock`: metrics off, Hashpipe's
    /// sockets and status buffer keyed in `dir` (never the shared /tmp or
    /// the real buffer of $HOME).
    pub fn config(dir: &Path) -> Config {
        Config {
            listen: vec![daqdata_net::Address::Unix(dir.join("daq.sock"))],
            metrics_listen: String::new(),
            hashpipe_sockets: HashpipeSocketsConfig {
                path_template: pff::socket_template_in(dir),
                ..HashpipeSocketsConfig::default()
            },
            hashpipe_status: HashpipeStatusConfig {
                keyfile: Some(dir.to_path_buf()),
                ..HashpipeStatusConfig::default()
            },
            ..Config::default()
        }
    }

    /// Starts a server of `config` (and `init`, as `--init-sim` does) and
    /// returns once it listens. What it logs (at info, the binary's
    /// default) goes to `log`: its runtime's threads log there, not to a
    /// process-wide subscriber, so servers of several tests stay apart.
    pub fn start(config: Config, init: Option<InitOnStart>, log: &Path) -> RealServer {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .with_writer(Mutex::new(file))
                .finish(),
        );
        let on_threads = dispatch.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                // For the thread's whole life.
                std::mem::forget(tracing::dispatcher::set_default(&on_threads));
            })
            .build()
            .expect("a tokio runtime for the server");
        let server = tracing::dispatcher::with_default(&dispatch, || {
            runtime.block_on(Server::start(config, init))
        })
        .unwrap_or_else(|e| panic!("the server did not start: {e:#}"));
        RealServer {
            server: Some(server),
            runtime,
            log: log.to_path_buf(),
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Shuts it down as SIGTERM does: streams end, the socket goes.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            if let Err(e) = self.runtime.block_on(server.shutdown()) {
                panic!("the server did not shut down cleanly: {e:#}");
            }
        }
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}
