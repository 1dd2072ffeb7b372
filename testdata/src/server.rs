//! A `daqdata-server` process for tests (the `server` feature): spawned
//! with its log in a file, waited on until it answers Ping on its unix
//! socket, stopped as systemd stops it when dropped.
//!
//! Each crate names the binary it runs: the server's own tests pass
//! `env!("CARGO_BIN_EXE_daqdata-server")`, which cargo builds first and
//! never guesses.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use daqdata_proto::daqdata::daq_data_client::DaqDataClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// How long a server may take to answer its first Ping on a busy machine.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A server process listening on a unix socket; stopped (SIGTERM, then
/// SIGKILL) when dropped, so a failing test leaves no process behind.
pub struct ServerProcess {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
}

impl ServerProcess {
    /// Spawns `command` (the binary and its arguments, which make it listen
    /// on `sock`) with its stderr in `log`, and waits until it answers Ping
    /// on `sock` and `ready` holds for its log (e.g. every listener logged).
    /// Panics with the log when it exits first or is not ready in 20 s.
    pub async fn start(
        mut command: Command,
        sock: &Path,
        log: &Path,
        ready: impl Fn(&str) -> bool,
    ) -> ServerProcess {
        let stderr = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create the server log {}: {e}", log.display()));
        let child = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
        let mut server = ServerProcess {
            child,
            sock: sock.to_path_buf(),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = server.exited() {
                panic!("the server exited at start ({status}):\n{}", server.log());
            }
            if ready(&server.log()) && server.answers_ping().await {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not answer within {READY_WITHIN:?}:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether a Ping on the socket succeeds now. The socket file appears
    /// at bind, a moment before the server accepts on it: a refused
    /// connection is "not yet", not a failure.
    async fn answers_ping(&self) -> bool {
        if !self.sock.exists() {
            return false;
        }
        match try_unix_channel(&self.sock).await {
            Ok(channel) => DaqDataClient::new(channel).ping(()).await.is_ok(),
            Err(_) => false,
        }
    }

    /// The unix socket it listens on.
    pub fn sock(&self) -> &Path {
        &self.sock
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot wait for the server: {e}"))
    }

    /// Sends SIGTERM, as systemd does to stop it.
    pub fn send_term(&self) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(kill.success(), "kill -TERM failed: {kill}");
    }

    /// The `HOST:PORT` of its metrics endpoint, as it logged it (a config
    /// with `metrics_listen = "127.0.0.1:0"` lets the system pick).
    pub fn metrics_addr(&self) -> String {
        let log = self.log();
        let (_, rest) = log
            .split_once("metrics on http://")
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
        rest.split('/').next().unwrap_or_default().to_string()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        crate::stop(&mut self.child);
    }
}

/// A gRPC channel over the unix socket `sock`.
pub async fn unix_channel(sock: &Path) -> Channel {
    try_unix_channel(sock)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", sock.display()))
}

async fn try_unix_channel(sock: &Path) -> Result<Channel, tonic::transport::Error> {
    let sock = sock.to_path_buf();
    // The URI is required by the API and never dialled.
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?))
            }
        }))
        .await
}
