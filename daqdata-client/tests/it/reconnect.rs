//! A live `daqdata --json` outlives a server restart: it says it is
//! reconnecting, and streams again soon after the server is back.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{daqdata, RealServer};
use daqdata_server::InitOnStart;

/// The real server on `sock`, simulating a run, until stopped.
struct Server(RealServer);

impl Server {
    fn start(sock: &Path) -> Server {
        let dir = sock.parent().expect("the socket's directory");
        let mut config = RealServer::config(dir);
        config.listen = vec![daqdata_net::Address::Unix(sock.to_path_buf())];
        Server(RealServer::start(
            config,
            Some(InitOnStart::Simulate),
            &dir.join("server.log"),
        ))
    }

    /// As SIGTERM stops it: streams end, the socket goes.
    fn stop(mut self) {
        self.0.stop();
    }
}

/// Lines of a child's pipe, read on a thread.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next image line within `wait`, skipping nothing else (stdout holds
/// only images).
fn next_image(rx: &mpsc::Receiver<String>, wait: Duration) -> Option<serde_json::Value> {
    let line = rx.recv_timeout(wait).ok()?;
    serde_json::from_str(&line).ok()
}

#[test]
fn a_json_stream_resumes_after_the_server_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("daq.sock");
    let server = Server::start(&sock);

    let mut viewer = daqdata()
        .args(["--host", &format!("unix://{}", sock.display())])
        .args(["--json", "--refresh-period", "0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daqdata starts");
    let images = lines(viewer.stdout.take().unwrap());
    let said = lines(viewer.stderr.take().unwrap());
    let first = next_image(&images, Duration::from_secs(30)).expect("images before the restart");
    assert!(first.get("frame_number").is_some(), "{first}");

    server.stop();
    // What came before the stop is drained; then the viewer says why it
    // waits, and keeps running.
    while images.recv_timeout(Duration::from_millis(300)).is_ok() {}
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut told = Vec::new();
    while !told
        .iter()
        .any(|l: &String| l.contains("reconnecting to unix://"))
    {
        assert!(
            Instant::now() < deadline,
            "no 'reconnecting' line: {told:?}"
        );
        if let Ok(line) = said.recv_timeout(Duration::from_millis(200)) {
            told.push(line);
        }
    }
    assert!(told.iter().any(|l| l.contains("(attempt ")), "{told:?}");
    assert!(
        viewer.try_wait().unwrap().is_none(),
        "daqdata exited: {told:?}"
    );

    let _server = Server::start(&sock);
    let resumed = next_image(&images, Duration::from_secs(30));
    let _ = viewer.kill();
    let _ = viewer.wait();
    let resumed = resumed.expect("images again after the restart");
    assert!(resumed.get("frame_number").is_some(), "{resumed}");
    // "Within about 2 s of the server coming back" is the back-off's cap:
    // no announced wait is longer, however long the server was away.
    told.extend(said.try_iter());
    let cap = daqdata_net::Backoff::default().max.as_secs_f64();
    let waits: Vec<f64> = told
        .iter()
        .filter_map(|l| l.split(") in ").nth(1)?.split(" s").next()?.parse().ok())
        .collect();
    assert!(!waits.is_empty(), "no announced wait: {told:?}");
    assert!(
        waits.iter().all(|w| *w <= cap),
        "a wait over the {cap} s cap: {waits:?}"
    );
}
