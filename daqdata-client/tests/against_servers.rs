//! The client against small in-test DaqData servers (on temporary unix
//! sockets and 127.0.0.1:0) that stream real recorded frames, and against
//! the real server binary.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daqdata_client::{DaqClient, Error, Host, HpIoConfig, Image, StreamSpec};
use daqdata_proto::daqdata::{
    InitHpIoRequest, InitHpIoResponse, PanoImage, StreamImagesRequest, UploadImageRequest,
};
use daqdata_proto::server::{DaqData, DaqDataServer};
use daqdata_proto::{encode_pano_image, SharedStreamImagesResponse};
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream, UnixListenerStream};
use tonic::{Code, Request, Response, Status};

/// The first frames of each recorded Lick file: the carried fixtures
/// always, the full-size shared samples too when present.
fn frames() -> Vec<PanoImage> {
    let mut out = Vec::new();
    for sample in testdata::samples()
        .into_iter()
        .filter(|s| s.lick && s.recorded)
    {
        let file = pff::PffFile::open(&sample.path)
            .unwrap_or_else(|e| panic!("{}: {e}", sample.path.display()));
        for n in 0..5 {
            let frame = file.read_frame(n).unwrap();
            out.push(
                Image::from_frame(
                    file.data_product(),
                    &frame,
                    sample.module,
                    sample.file_name(),
                    n as u32,
                )
                .to_pano_image(),
            );
        }
    }
    assert!(
        out.len() >= 15,
        "the fixtures hold three recorded Lick files"
    );
    out
}

/// A DaqData server for tests: streams `frames` round and round every few
/// milliseconds, or `stop_after` of them then ends with UNAVAILABLE.
#[derive(Clone)]
struct FakeServer {
    name: String,
    initialized: Arc<Mutex<bool>>,
    frames: Vec<PanoImage>,
    stop_after: Option<usize>,
    inits: Arc<Mutex<Vec<InitHpIoRequest>>>,
    uploads: Arc<Mutex<Vec<PanoImage>>>,
    stream_cancelled: Arc<Notify>,
}

impl FakeServer {
    fn new(name: &str) -> Self {
        FakeServer {
            name: name.into(),
            initialized: Arc::new(Mutex::new(true)),
            frames: frames(),
            stop_after: None,
            inits: Arc::default(),
            uploads: Arc::default(),
            stream_cancelled: Arc::default(),
        }
    }

    fn router(&self) -> tonic::transport::server::Router {
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(daqdata_proto::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .unwrap();
        tonic::transport::Server::builder()
            .add_service(DaqDataServer::new(self.clone()))
            .add_service(reflection)
    }

    /// Serves on a fresh unix socket in `dir`.
    fn serve_unix(&self, dir: &Path) -> Host {
        let path = dir.join(format!("{}.sock", self.name));
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let router = self.router();
        tokio::spawn(router.serve_with_incoming(UnixListenerStream::new(listener)));
        Host::Unix(path)
    }

    /// Serves on 127.0.0.1 at a free port.
    async fn serve_tcp(&self) -> Host {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = self.router();
        tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
        format!("127.0.0.1:{port}").parse().unwrap()
    }
}

type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<SharedStreamImagesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DaqData for FakeServer {
    type StreamImagesStream = ResponseStream;

    async fn stream_images(
        &self,
        request: Request<StreamImagesRequest>,
    ) -> Result<Response<ResponseStream>, Status> {
        if !*self.initialized.lock().unwrap() {
            return Err(Status::failed_precondition("hp_io is not initialized"));
        }
        let req = request.into_inner();
        let wanted: Vec<PanoImage> = self
            .frames
            .iter()
            .filter(|p| {
                let movie = p.r#type() == daqdata_proto::daqdata::pano_image::Type::Movie;
                (movie && req.stream_movie_data || !movie && req.stream_pulse_height_data)
                    && (req.module_ids.is_empty() || req.module_ids.contains(&p.module_id))
            })
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(4);
        let (name, stop_after, cancelled) = (
            self.name.clone(),
            self.stop_after,
            self.stream_cancelled.clone(),
        );
        tokio::spawn(async move {
            for (i, p) in wanted.iter().cycle().enumerate() {
                if stop_after == Some(i) {
                    let _ = tx
                        .send(Err(Status::unavailable("server is shutting down")))
                        .await;
                    return;
                }
                let response = SharedStreamImagesResponse {
                    name: name.clone(),
                    timestamp: Some(prost_types::Timestamp::default()),
                    message: String::new(),
                    pano_image: Some(encode_pano_image(p)),
                };
                tokio::select! {
                    sent = tx.send(Ok(response)) => if sent.is_err() { break },
                    _ = tx.closed() => break,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            cancelled.notify_one();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn init_hp_io(
        &self,
        request: Request<InitHpIoRequest>,
    ) -> Result<Response<InitHpIoResponse>, Status> {
        let req = request.into_inner();
        if !req.simulate_daq && req.data_dir == "/nowhere" {
            return Err(Status::invalid_argument("data_dir /nowhere does not exist"));
        }
        self.inits.lock().unwrap().push(req);
        *self.initialized.lock().unwrap() = true;
        Ok(Response::new(InitHpIoResponse {
            success: true,
            error_message: String::new(),
        }))
    }

    async fn ping(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn upload_images(
        &self,
        request: Request<tonic::Streaming<UploadImageRequest>>,
    ) -> Result<Response<()>, Status> {
        let mut stream = request.into_inner();
        while let Some(req) = stream.message().await? {
            if let Some(p) = req.pano_image {
                self.uploads.lock().unwrap().push(p);
            }
        }
        Ok(Response::new(()))
    }
}

/// Guards a test against hanging; never asserts on time.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
}

#[tokio::test]
async fn merged_stream_goes_on_with_one_host_down() {
    let dir = tempfile::tempdir().unwrap();
    let a = FakeServer::new("daq-a").serve_unix(dir.path());
    let b = FakeServer::new("daq-b").serve_tcp().await;
    let down = Host::Unix(dir.path().join("nobody-listens.sock"));
    let client = DaqClient::new([a, b, down.clone()]).unwrap();

    let status = client.host_status().await;
    assert_eq!(status.iter().filter(|(_, s)| s.is_ok()).count(), 2);
    assert!(client.ping(&down).await.is_err());

    let spec = StreamSpec {
        movie: true,
        pulse_height: true,
        update_interval_seconds: 0.0,
        module_ids: vec![],
    };
    let mut stream = client.stream_images(&spec);
    let (mut from_a, mut from_b, mut errors) = (0, 0, Vec::new());
    within("streaming from the two live hosts", async {
        while from_a < 10 || from_b < 10 {
            match stream
                .next()
                .await
                .expect("the live hosts' parts must not end")
            {
                Ok(image) if image.server == "daq-a" => from_a += 1,
                Ok(image) if image.server == "daq-b" => from_b += 1,
                Ok(image) => panic!("image from unknown server {}", image.server),
                Err(e) => errors.push(e),
            }
        }
    })
    .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = errors[0].to_string();
    assert!(
        msg.contains("nobody-listens.sock") && msg.contains("cannot connect"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_node_that_goes_away_ends_only_its_part() {
    let dir = tempfile::tempdir().unwrap();
    let mut leaving = FakeServer::new("leaving");
    leaving.stop_after = Some(3);
    let a = leaving.serve_unix(dir.path());
    let b = FakeServer::new("staying").serve_unix(dir.path());
    let client = DaqClient::new([a, b]).unwrap();
    let spec = StreamSpec {
        movie: true,
        pulse_height: true,
        update_interval_seconds: 0.0,
        module_ids: vec![],
    };
    let mut stream = client.stream_images(&spec);
    let mut after_the_error = 0;
    let mut error = None;
    within("the staying host streaming on", async {
        while after_the_error < 10 {
            match stream
                .next()
                .await
                .expect("the staying host's part must not end")
            {
                Err(e) => error = Some(e),
                Ok(image) if error.is_some() => {
                    assert_eq!(image.server, "staying");
                    after_the_error += 1;
                }
                Ok(_) => {}
            }
        }
    })
    .await;
    let error = error.unwrap();
    assert_eq!(error.code(), Some(Code::Unavailable));
    assert!(error.to_string().contains("retry"), "{error}");
}

#[tokio::test]
async fn streaming_before_init_says_to_run_init() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::new("fresh");
    *server.initialized.lock().unwrap() = false;
    let host = server.serve_unix(dir.path());
    let client = DaqClient::new([host]).unwrap();
    let spec = StreamSpec {
        movie: true,
        pulse_height: false,
        update_interval_seconds: 1.0,
        module_ids: vec![],
    };
    let first = within("the refusal", client.stream_images(&spec).next())
        .await
        .unwrap();
    let err = first.unwrap_err();
    assert_eq!(err.code(), Some(Code::FailedPrecondition));
    assert!(err.to_string().contains("--init-sim"), "{err}");

    let results = client.init_sim().await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let sent = server.inits.lock().unwrap()[0].clone();
    assert!(sent.simulate_daq && sent.force);
    assert_eq!(sent.update_interval_seconds, 0.1);

    let image = within("an image after init", client.stream_images(&spec).next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(image.data_product.kind(), pff::ImageKind::Movie);
    assert!(image.node_time().is_some());
}

#[tokio::test]
async fn init_sends_the_hp_io_config_and_reports_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::new("daq1");
    let client = DaqClient::new([server.serve_unix(dir.path())]).unwrap();
    let config = HpIoConfig {
        data_dir: "/mnt/data10".into(),
        update_interval_seconds: 0.25,
        force: false,
        simulate_daq: false,
        module_ids: vec![1, 3],
        comments: None,
    };
    let results = client.init_hp_io(&config).await;
    assert!(results[0].1.is_ok());
    let sent = server.inits.lock().unwrap()[0].clone();
    assert_eq!(
        (sent.data_dir.as_str(), sent.module_ids),
        ("/mnt/data10", vec![1, 3])
    );

    let missing = HpIoConfig {
        data_dir: "/nowhere".into(),
        ..config
    };
    let err = client.init_hp_io(&missing).await.remove(0).1.unwrap_err();
    assert!(matches!(
        err,
        Error::Rpc {
            code: Code::InvalidArgument,
            ..
        }
    ));
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn uploads_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::new("daq1");
    let host = server.serve_unix(dir.path());
    let client = DaqClient::new([host.clone()]).unwrap();
    let images = frames();
    within(
        "the upload",
        client.upload_images(&host, futures::stream::iter(images.clone())),
    )
    .await
    .unwrap();
    assert_eq!(*server.uploads.lock().unwrap(), images);
}

#[tokio::test]
async fn reflection_lists_the_daqdata_methods() {
    let dir = tempfile::tempdir().unwrap();
    let host = FakeServer::new("daq1").serve_unix(dir.path());
    let client = DaqClient::new([host.clone()]).unwrap();
    let listing = within("reflection", client.reflect_services(&host))
        .await
        .unwrap();
    assert_eq!(listing.protocol, "v1alpha");
    assert!(
        listing.services.iter().any(|s| s == "daqdata.DaqData"),
        "{listing}"
    );
    let text = listing.to_string();
    assert!(
        text.contains(
            "rpc StreamImages(StreamImagesRequest) returns (stream StreamImagesResponse)"
        ),
        "{text}"
    );
    assert!(
        text.contains("rpc UploadImages(stream UploadImageRequest) returns (Empty)"),
        "{text}"
    );
}

#[tokio::test]
async fn dropping_the_stream_cancels_its_rpc_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::new("daq1");
    let client = DaqClient::new([server.serve_unix(dir.path())]).unwrap();
    let spec = StreamSpec {
        movie: true,
        pulse_height: true,
        update_interval_seconds: 0.0,
        module_ids: vec![3],
    };
    let mut stream = client.stream_images(&spec);
    let image = within("an image", stream.next()).await.unwrap().unwrap();
    assert_eq!(image.module_id, 3, "module_ids reach the server");
    let cancelled = server.stream_cancelled.notified();
    drop(stream);
    within("the server noticing the cancel", cancelled).await;
}

fn daqdata() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_daqdata"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_snapshots_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let host = FakeServer::new("daq1").serve_unix(dir.path()).to_string();
    let png = dir.path().join("both.png");
    let out = tokio::task::spawn_blocking({
        let (host, png) = (host.clone(), png.clone());
        move || {
            daqdata()
                .args([
                    "--host",
                    &host,
                    "--plot-view",
                    "--plot-phdist",
                    "--snapshot",
                ])
                .arg(&png)
                .args(["--snapshot-frames", "12", "--refresh-period", "0"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let picture = image::open(&png).unwrap();
    assert!(picture.width() > 1000 && picture.height() > 600);

    let out = tokio::task::spawn_blocking(move || {
        let mut child = daqdata()
            .args([
                "--host",
                &host,
                "--json",
                "--module-ids",
                "3",
                "--refresh-period",
                "0",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let first: Vec<String> = (&mut lines).take(3).map(Result::unwrap).collect();
        drop(lines);
        // Closing the pipe ends it like `| head` would.
        let status = child.wait().unwrap();
        (first, status)
    })
    .await
    .unwrap();
    let (lines, status) = out;
    assert!(status.success());
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["module_id"], 3);
        assert_eq!(v["image_array"].as_array().unwrap().len(), 256);
        assert!(v["node_time"].as_f64().is_some());
    }
}

#[test]
fn the_command_line_names_unreachable_hosts() {
    let out = daqdata()
        .args(["--host", "unix:///nonexistent/daq.sock", "--ping"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PING unix:///nonexistent/daq.sock: failed"),
        "{text}"
    );

    let out = daqdata()
        .args([
            "--host",
            "unix:///nonexistent/daq.sock",
            "--plot-view",
            "--snapshot",
            "x.png",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("cannot connect") && text.contains("DaqData server running"),
        "{text}"
    );
}

/// The real server, when `DAQDATA_SERVER_BIN` names its binary.
#[test]
fn against_the_real_server_binary() {
    let Some(bin) = std::env::var_os("DAQDATA_SERVER_BIN").map(PathBuf::from) else {
        eprintln!("skipping: set DAQDATA_SERVER_BIN to the daqdata-server binary to run this");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("daq.sock");
    let host = format!("unix://{}", sock.display());
    let mut server = std::process::Command::new(bin)
        .args(["--listen", &host])
        .spawn()
        .unwrap();
    let mut answered = false;
    for _ in 0..100 {
        if daqdata()
            .args(["--host", &host, "--ping"])
            .output()
            .unwrap()
            .status
            .success()
        {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let png = dir.path().join("view.png");
    let out = answered.then(|| {
        daqdata()
            .args(["--host", &host, "--init-sim", "--plot-view", "--snapshot"])
            .arg(&png)
            .args(["--snapshot-frames", "10"])
            .output()
            .unwrap()
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(answered, "the server did not answer pings");
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(image::open(&png).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_reports_delivery_age_spread_and_server_usage() {
    let dir = tempfile::tempdir().unwrap();
    let host = FakeServer::new("daq1").serve_unix(dir.path()).to_string();
    // This test process is the server, so it samples itself.
    let pid = std::process::id().to_string();
    let out = tokio::task::spawn_blocking(move || {
        daqdata()
            .args([
                "bench",
                "--host",
                &host,
                "--clients",
                "3",
                "--duration",
                "1",
                "--warmup",
                "0.2",
            ])
            .args(["--server-pid", &pid, "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clients"], 3);
    assert!(report["images"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["per_client_min_images"].as_u64().unwrap() > 0,
        "every client got images: {report}"
    );
    assert_eq!(report["errors"], serde_json::json!({}));
    // Recorded frames are old, so their age is large and positive.
    assert!(
        report["frame_age_ms"]["p50"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["server"]["peak_rss_kib"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["server"]["cpu_percent"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_upload_counts_accepted_images() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::new("daq1");
    let host = server.serve_unix(dir.path()).to_string();
    let out = tokio::task::spawn_blocking(move || {
        daqdata()
            .args([
                "bench",
                "--upload",
                "--host",
                &host,
                "--clients",
                "2",
                "--duration",
                "0.5",
                "--warmup",
                "0",
            ])
            .arg("--json")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let accepted = report["images"].as_u64().unwrap();
    assert!(accepted > 0);
    assert_eq!(server.uploads.lock().unwrap().len() as u64, accepted);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_ends_when_too_few_images_come() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = FakeServer::new("daq1");
    // Movie frames only: a pulse-height snapshot waits for images that never come.
    server
        .frames
        .retain(|p| p.r#type() == daqdata_proto::daqdata::pano_image::Type::Movie);
    let host = server.serve_unix(dir.path()).to_string();
    let png = dir.path().join("phdist.png");
    let out = tokio::task::spawn_blocking(move || {
        daqdata()
            .args(["--host", &host, "--plot-phdist", "--snapshot"])
            .arg(&png)
            .args(["--snapshot-timeout", "1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("no images received"), "{text}");
}
