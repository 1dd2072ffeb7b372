//! A small DaqData server for the tests (on temporary unix sockets and
//! 127.0.0.1:0) that streams real recorded frames, and the `daqdata`
//! binary.

// Each test file uses a part.
#![allow(dead_code)]

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daqdata_client::{Host, Image};
use daqdata_proto::daqdata::{
    InitHpIoRequest, InitHpIoResponse, PanoImage, StatusResponse, StreamHashpipeStatusRequest,
    StreamHashpipeStatusResponse, StreamImagesRequest, UploadImageRequest,
};
use daqdata_proto::server::{DaqData, DaqDataServer};
use daqdata_proto::{encode_pano_image, SharedStreamImagesResponse};
use futures::Stream;
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream, UnixListenerStream};
use tonic::{Request, Response, Status};

#[cfg(feature = "cli")]
mod real_server;
#[cfg(feature = "cli")]
pub use real_server::RealServer;

/// The first frames of each recorded Lick file: the carried fixtures
/// always, the full-size shared samples too when present.
pub fn frames() -> Vec<PanoImage> {
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
                    sample.module.into(),
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
pub struct FakeServer {
    pub name: String,
    pub initialized: Arc<Mutex<bool>>,
    pub frames: Vec<PanoImage>,
    pub stop_after: Option<usize>,
    pub inits: Arc<Mutex<Vec<InitHpIoRequest>>>,
    pub uploads: Arc<Mutex<Vec<PanoImage>>>,
    pub stream_cancelled: Arc<Notify>,
    /// What StreamHashpipeStatus reports; a test changes it while a
    /// stream runs.
    pub hashpipe: Arc<Mutex<FakeHashpipe>>,
}

/// The scripted status buffer of a [`FakeServer`]: thread states as set,
/// counters that move by `packets_per_read` and `lost_per_read` per read.
#[derive(Clone, Debug)]
pub struct FakeHashpipe {
    /// NETSTAT, COMPUTES, OUTSTAT; `None`: no segment (no cards, a message).
    pub threads: Option<[String; 3]>,
    pub packets_per_read: f64,
    pub lost_per_read: f64,
    pub stale: bool,
    pub message: String,
}

impl Default for FakeHashpipe {
    fn default() -> Self {
        FakeHashpipe {
            threads: Some(["receiving".into(), "processing".into(), "waiting".into()]),
            packets_per_read: 16384.0,
            lost_per_read: 3.0,
            stale: false,
            message: String::new(),
        }
    }
}

impl FakeServer {
    pub fn new(name: &str) -> Self {
        FakeServer {
            name: name.into(),
            initialized: Arc::new(Mutex::new(true)),
            frames: frames(),
            stop_after: None,
            inits: Arc::default(),
            uploads: Arc::default(),
            stream_cancelled: Arc::default(),
            hashpipe: Arc::default(),
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
    pub fn serve_unix(&self, dir: &Path) -> Host {
        let path = dir.join(format!("{}.sock", self.name));
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let router = self.router();
        tokio::spawn(router.serve_with_incoming(UnixListenerStream::new(listener)));
        Host::Unix(path)
    }

    /// Serves on 127.0.0.1 at a free port.
    pub async fn serve_tcp(&self) -> Host {
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
    type StreamHashpipeStatusStream =
        Pin<Box<dyn Stream<Item = Result<StreamHashpipeStatusResponse, Status>> + Send>>;

    async fn status(&self, _: Request<()>) -> Result<Response<StatusResponse>, Status> {
        let initialized = *self.initialized.lock().unwrap();
        Ok(Response::new(StatusResponse {
            hp_io_initialized: initialized,
            message: format!("{} streams recorded frames", self.name),
        }))
    }

    async fn stream_hashpipe_status(
        &self,
        request: Request<StreamHashpipeStatusRequest>,
    ) -> Result<Response<Self::StreamHashpipeStatusStream>, Status> {
        // Fast enough for tests, never a busy loop.
        let interval =
            Duration::from_secs_f64(request.into_inner().update_interval_seconds.max(0.02));
        let (tx, rx) = mpsc::channel(4);
        let (name, script) = (self.name.clone(), self.hashpipe.clone());
        tokio::spawn(async move {
            let (mut packets, mut lost) = (0.0, 0.0);
            loop {
                let now = pff::time::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                let script = script.lock().unwrap().clone();
                packets += script.packets_per_read;
                lost += script.lost_per_read;
                let cards = script.threads.map(|[net, compute, out]| {
                    let text = |s: String| prost_types::Value {
                        kind: Some(prost_types::value::Kind::StringValue(s)),
                    };
                    let number = |n: f64| prost_types::Value {
                        kind: Some(prost_types::value::Kind::NumberValue(n)),
                    };
                    prost_types::Struct {
                        fields: [
                            ("NETSTAT".to_string(), text(net)),
                            ("COMPUTES".to_string(), text(compute)),
                            ("OUTSTAT".to_string(), text(out)),
                            ("NPACKETS".to_string(), number(packets)),
                            ("TPKTLST".to_string(), number(lost)),
                            ("NETDROPS".to_string(), number(2.0)),
                            ("NETRECV".to_string(), number(script.packets_per_read)),
                            ("BINDHOST".to_string(), text("eth0".into())),
                        ]
                        .into_iter()
                        .collect(),
                    }
                });
                let response = StreamHashpipeStatusResponse {
                    name: name.clone(),
                    read_at: Some(prost_types::Timestamp {
                        seconds: now.as_secs() as i64,
                        nanos: now.subsec_nanos() as i32,
                    }),
                    cards,
                    stale: script.stale,
                    message: script.message,
                };
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
                tokio::time::sleep(interval).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

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
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
}

/// The `daqdata` binary.
#[cfg(feature = "cli")]
pub fn daqdata() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_daqdata"))
}
