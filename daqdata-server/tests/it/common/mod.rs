//! A real server on a temp unix socket, and clients for it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use daqdata_proto::daqdata::daq_data_client::DaqDataClient;
use daqdata_proto::daqdata::{InitHpIoRequest, StreamImagesRequest, StreamImagesResponse};
use daqdata_server::{Config, HashpipeSocketsConfig, InitOnStart, Server};
pub use testdata::server::unix_channel;
use testdata::server::ServerProcess;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

mod hashpipe;
mod scrape;
#[allow(unused_imports)]
pub use hashpipe::*;
#[allow(unused_imports)]
pub use scrape::*;

pub struct TestServer {
    pub server: Option<Server>,
    pub sock: PathBuf,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(init: Option<InitOnStart>, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("daq_data.sock");
        let mut config = Config {
            listen: vec![daqdata_net::Address::Unix(sock.clone())],
            shutdown_grace_period_seconds: std::time::Duration::from_secs(2),
            // Metrics off: a test that scrapes them sets port 0.
            metrics_listen: String::new(),
            // Hashpipe's sockets in the test's own directory: tests run
            // servers on real data in parallel, and /tmp is shared.
            hashpipe_sockets: HashpipeSocketsConfig {
                path_template: private_hashpipe_sockets(dir.path()),
                ..HashpipeSocketsConfig::default()
            },
            // Hashpipe's status buffer keyed on the test's own directory,
            // never the real one of $HOME.
            hashpipe_status: daqdata_server::HashpipeStatusConfig {
                keyfile: Some(dir.path().to_path_buf()),
                ..Default::default()
            },
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::start(config, init).await.unwrap();
        TestServer {
            server: Some(server),
            sock,
            dir,
        }
    }

    pub async fn client(&self) -> DaqDataClient<Channel> {
        DaqDataClient::new(unix_channel(&self.sock).await)
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }
}

/// A `[hashpipe_sockets] path_template` inside `dir`.
pub fn private_hashpipe_sockets(dir: &Path) -> String {
    pff::socket_template_in(dir)
}

pub fn sim_request() -> InitHpIoRequest {
    InitHpIoRequest {
        simulate_daq: true,
        update_interval_seconds: 0.01,
        force: true,
        ..Default::default()
    }
}

pub fn dir_request(dir: &Path) -> InitHpIoRequest {
    InitHpIoRequest {
        data_dir: dir.display().to_string(),
        update_interval_seconds: 0.01,
        force: true,
        ..Default::default()
    }
}

pub fn stream_request(
    movie: bool,
    ph: bool,
    interval: f64,
    modules: &[u32],
) -> StreamImagesRequest {
    StreamImagesRequest {
        stream_movie_data: movie,
        stream_pulse_height_data: ph,
        update_interval_seconds: interval,
        module_ids: modules.to_vec(),
    }
}

/// Opens a stream, expecting the server to accept it.
pub async fn open(
    client: &mut DaqDataClient<Channel>,
    req: StreamImagesRequest,
) -> Streaming<StreamImagesResponse> {
    client.stream_images(req).await.unwrap().into_inner()
}

/// The next message, or the status the stream ended with, within 10 s.
pub async fn next(
    stream: &mut Streaming<StreamImagesResponse>,
) -> Result<Option<StreamImagesResponse>, Status> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap_or_else(|_| panic!("no message within 10 s"))
}

/// Reads `n` images, failing on an error status.
pub async fn take(
    stream: &mut Streaming<StreamImagesResponse>,
    n: usize,
) -> Vec<StreamImagesResponse> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match next(stream).await {
            Ok(Some(m)) => out.push(m),
            Ok(None) => panic!("stream ended after {} of {n} images", out.len()),
            Err(s) => panic!("stream failed after {} of {n} images: {s}", out.len()),
        }
    }
    out
}

/// The status code of a call that must fail.
pub fn code<T: std::fmt::Debug>(r: Result<T, Status>) -> Code {
    match r {
        Ok(v) => panic!("expected an error status, got {v:?}"),
        Err(s) => s.code(),
    }
}

/// A live fake DAQ tree in its own temp dir.
pub fn live_tree(torn: bool, rate: f64) -> (daqsim::Replay, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let replay = daqsim::Replay::start(
        daqsim::Fixtures::embedded(),
        daqsim::ReplayConfig {
            out: dir.path().to_path_buf(),
            rate: Some(rate),
            torn,
            ..daqsim::ReplayConfig::default()
        },
    )
    .unwrap();
    (replay, dir)
}

/// The real `daqdata-server` binary on a temp unix socket, killed when
/// dropped (so a failing test leaves no process behind). Its log is kept
/// in a file, for assertion messages.
pub struct BinServer {
    process: ServerProcess,
    pub sock: PathBuf,
    pub dir: tempfile::TempDir,
}

impl BinServer {
    /// Starts the binary with `toml` as its config file (the listen address
    /// and a private `hashpipe_sockets.path_template` are added, so `toml`
    /// sets other such keys dotted, not as a table; metrics are off unless
    /// it sets `metrics_listen`; Hashpipe's status buffer is keyed on the
    /// server's own directory unless it sets `hashpipe_status.keyfile`) and
    /// `env` set, and waits (up to 20 s)
    /// until it answers Ping.
    pub async fn start(toml: &str, env: &[(&str, &str)]) -> BinServer {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("x.sock");
        Self::start_in(dir, sock, toml, env).await
    }

    /// [`BinServer::start`] listening on `sock`, which may lie outside its
    /// own directory (a server restarted where the last one listened).
    pub async fn start_at(sock: &Path, toml: &str, env: &[(&str, &str)]) -> BinServer {
        Self::start_in(tempfile::tempdir().unwrap(), sock.to_path_buf(), toml, env).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        sock: PathBuf,
        toml: &str,
        env: &[(&str, &str)],
    ) -> BinServer {
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "listen = [\"unix://{}\"]\nhashpipe_sockets.path_template = \"{}\"\n{}{}{toml}",
                sock.display(),
                private_hashpipe_sockets(dir.path()),
                if toml.contains("hashpipe_status.keyfile") {
                    String::new()
                } else {
                    format!("hashpipe_status.keyfile = \"{}\"\n", dir.path().display())
                },
                if toml.contains("metrics_listen") {
                    ""
                } else {
                    "metrics_listen = \"\"\n"
                }
            ),
        )
        .unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_daqdata-server"));
        command
            .arg("--config")
            .arg(&config)
            .envs(env.iter().copied());
        let log = dir.path().join("server.log");
        let process = ServerProcess::start(command, &sock, &log, |_| true).await;
        BinServer { process, sock, dir }
    }

    pub async fn client(&self) -> DaqDataClient<Channel> {
        DaqDataClient::new(unix_channel(&self.sock).await)
    }

    /// Sends SIGTERM and waits (up to 30 s, then fails) for the process to
    /// exit: its exit status and how long it took.
    pub async fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let sent = std::time::Instant::now();
        self.process.send_term();
        loop {
            if let Some(status) = self.process.exited() {
                return (status, sent.elapsed());
            }
            assert!(
                sent.elapsed() < Duration::from_secs(30),
                "daqdata-server still runs 30 s after SIGTERM:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The address the server logged for its metrics endpoint.
    pub fn metrics_addr(&self) -> String {
        self.process.metrics_addr()
    }
}

/// Reads a stream until it ends, within 10 s per message: its final
/// status (`Ok(())` for a clean end) and how many images came first.
pub async fn read_to_end(
    stream: &mut Streaming<StreamImagesResponse>,
) -> (Result<(), Status>, u64) {
    let mut images = 0;
    loop {
        match next(stream).await {
            Ok(Some(_)) => images += 1,
            Ok(None) => return (Ok(()), images),
            Err(s) => return (Err(s), images),
        }
    }
}

/// The names of every PFF file under `dir`, however deep.
pub fn pff_names(dir: &Path) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                if name.ends_with(".pff") {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

/// A live fake DAQ tree written into `out` (created), its fixture modules
/// renamed by `modules` ((fixture, output) pairs; empty: their own ids).
pub fn live_tree_at(out: &Path, rate: f64, modules: &[(u32, u32)]) -> daqsim::Replay {
    daqsim::Replay::start(
        daqsim::Fixtures::embedded(),
        daqsim::ReplayConfig {
            out: out.to_path_buf(),
            rate: Some(rate),
            modules: modules.iter().map(|&(a, b)| (a.into(), b.into())).collect(),
            ..daqsim::ReplayConfig::default()
        },
    )
    .unwrap()
}

/// A response's send stamp (the server's clock), in seconds.
pub fn sent_at(m: &StreamImagesResponse) -> f64 {
    let ts = m
        .timestamp
        .as_ref()
        .expect("every response has a time stamp");
    ts.seconds as f64 + f64::from(ts.nanos) * 1e-9
}

/// SPEC §3 rule 1 by the server's own send stamps: no window of `n`
/// intervals holds more than n + 1 of `stamps` (one (module, data
/// product)'s sends, in order), for every n up to the whole span: long
/// windows catch a pace a little too fast, short ones a burst.
pub fn assert_at_most_n_plus_one(stamps: &[f64], interval: f64, what: &str) {
    let span = stamps.last().copied().unwrap_or(0.0) - stamps.first().copied().unwrap_or(0.0);
    for n in 1..=(span / interval) as u32 + 1 {
        let window = interval * f64::from(n);
        let most = (0..stamps.len())
            .map(|i| {
                stamps[i..]
                    .iter()
                    .take_while(|&&s| s - stamps[i] <= window)
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(
            most <= n as usize + 1,
            "{what}: {most} sends within {n} intervals of {interval} s"
        );
    }
}

/// A 16x16 pulse-height image of `module`, every pixel `value`: an upload
/// or a fake node's frame, told apart by its pixels.
pub fn ph_image(module: u32, value: u32) -> daqdata_proto::daqdata::PanoImage {
    use daqdata_proto::daqdata::{pano_image, PanoImage};
    PanoImage {
        r#type: pano_image::Type::PulseHeight as i32,
        shape: vec![16, 16],
        bytes_per_pixel: 2,
        image_array: vec![value; 256],
        module_id: module,
        ..Default::default()
    }
}
