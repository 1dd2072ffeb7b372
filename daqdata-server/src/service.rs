//! The DaqData RPCs: status codes and messages exactly as SPEC §3 says.

use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use daqdata_proto::daqdata::{
    InitHpIoRequest, InitHpIoResponse, StreamImagesRequest, UploadImageRequest,
};
use daqdata_proto::SharedStreamImagesResponse;
use pff::DataProduct;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::config::Config;
use crate::hp_io::{Generation, HpIo, Settings};
use crate::stream::{Filter, ImageStream, Place};

/// Shared by every RPC.
pub(crate) struct State {
    pub config: Config,
    pub host: String,
    pub fixtures: daqsim::Fixtures,
    /// What new streams attach to; `None` before the first InitHpIo.
    current: RwLock<Option<Arc<Generation>>>,
    /// The running hp_io; its lock is the "one InitHpIo at a time" lock.
    hp_io: tokio::sync::Mutex<Option<HpIo>>,
    initializing: AtomicBool,
    /// Streams and uploads, against `max_concurrent_rpcs`.
    rpcs: Arc<AtomicUsize>,
    /// Streams alone, for InitHpIo's force check.
    streams: Arc<AtomicUsize>,
    pub shutdown: CancellationToken,
}

impl State {
    pub(crate) fn new(config: Config, fixtures: daqsim::Fixtures) -> Self {
        State {
            config,
            host: host_name(),
            fixtures,
            current: RwLock::new(None),
            hp_io: tokio::sync::Mutex::new(None),
            initializing: AtomicBool::new(false),
            rpcs: Arc::new(AtomicUsize::new(0)),
            streams: Arc::new(AtomicUsize::new(0)),
            shutdown: CancellationToken::new(),
        }
    }

    fn current(&self) -> Option<Arc<Generation>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_current(&self, generation: Option<Arc<Generation>>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = generation;
    }

    /// Applies an InitHpIo request; see SPEC §3.
    pub(crate) async fn init_hp_io(
        &self,
        req: &InitHpIoRequest,
    ) -> Result<InitHpIoResponse, Status> {
        let settings = self.validate_init(req)?;
        let mut hp_io = self.hp_io.lock().await;
        self.initializing.store(true, Ordering::Release);
        let _done = ClearOnDrop(&self.initializing);

        let active = self.streams.load(Ordering::Acquire);
        if active > 0 && !req.force {
            return Err(Status::failed_precondition(format!(
                "{active} stream(s) are active; InitHpIo with force=true ends them and reconfigures hp_io"
            )));
        }
        if !settings.simulate {
            let dir = settings.data_dir.clone();
            let idle = Duration::from_secs_f64(self.config.active_run_idle_seconds);
            let active_run = tokio::task::spawn_blocking(move || hpio::active_run(&dir, idle))
                .await
                .map_err(|e| Status::internal(format!("active-run check failed: {e}")))?
                .map_err(|e| {
                    Status::failed_precondition(format!("cannot check for an active run: {e}"))
                })?;
            match active_run {
                Some(why) => tracing::info!("active run under {}: {why}", settings.data_dir.display()),
                None => {
                    return Err(Status::failed_precondition(format!(
                        "no active run under {}: no live daq_hashpipe_pid and no PFF file grew in the last {} s; start the DAQ first",
                        settings.data_dir.display(),
                        self.config.active_run_idle_seconds
                    )))
                }
            }
        }

        if let Some(old) = self.current() {
            old.reconfigured.cancel();
        }
        self.set_current(None);
        let previous = hp_io.take();
        let previous_settings = previous.as_ref().map(|p| p.settings.clone());
        if let Some(old) = previous {
            blocking(move || old.stop()).await?;
        }

        match self.start(settings.clone()).await {
            Ok(started) => {
                tracing::info!("hp_io started: {}", started.settings);
                self.set_current(Some(started.generation.clone()));
                *hp_io = Some(started);
                Ok(InitHpIoResponse {
                    success: true,
                    error_message: String::new(),
                })
            }
            Err(e) => {
                let why = format!("hp_io could not start with {settings}: {e:#}");
                tracing::warn!("{why}");
                let Some(previous) = previous_settings else {
                    return Ok(failure(why));
                };
                match self.start(previous.clone()).await {
                    Ok(restored) => {
                        self.set_current(Some(restored.generation.clone()));
                        *hp_io = Some(restored);
                        Ok(failure(format!("{why}; the previous configuration ({previous}) was restored")))
                    }
                    Err(e2) => Ok(failure(format!(
                        "{why}; restoring the previous configuration ({previous}) failed too: {e2:#}; call InitHpIo again"
                    ))),
                }
            }
        }
    }

    /// Lets a stream or an upload in: hp_io must be configured and not
    /// being reconfigured, and a place must be free.
    fn admit(&self) -> Result<(Arc<Generation>, Place), Status> {
        if self.initializing.load(Ordering::Acquire) {
            return Err(Status::unavailable(
                "hp_io is being (re)configured by InitHpIo; retry in a moment",
            ));
        }
        let Some(generation) = self.current() else {
            return Err(Status::failed_precondition(
                "hp_io is not initialized on this server: call InitHpIo first (daqdata --init CONFIG or --init-sim)",
            ));
        };
        let max = self.config.max_concurrent_rpcs;
        let place = Place::take(&self.rpcs, max).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "this server already serves its maximum of {max} streams and uploads; try again later"
            ))
        })?;
        Ok((generation, place))
    }

    /// Takes the running hp_io away, for shutdown.
    pub(crate) async fn take_hp_io(&self) -> Option<HpIo> {
        self.set_current(None);
        self.hp_io.lock().await.take()
    }

    async fn start(&self, settings: Settings) -> anyhow::Result<HpIo> {
        let simulate = self.config.simulate.clone();
        let fixtures = self.fixtures.clone();
        tokio::task::spawn_blocking(move || HpIo::start(&settings, &simulate, &fixtures)).await?
    }

    fn validate_init(&self, req: &InitHpIoRequest) -> Result<Settings, Status> {
        let min = self.config.min_hp_io_update_interval_seconds;
        let max = self.config.max_client_update_interval_seconds;
        let interval = req.update_interval_seconds;
        if !(interval.is_finite() && interval >= min && interval <= max) {
            return Err(Status::invalid_argument(format!(
                "update_interval_seconds {interval} is outside this server's range {min}..={max} seconds"
            )));
        }
        let data_dir = PathBuf::from(&req.data_dir);
        if !req.simulate_daq {
            if req.data_dir.is_empty() {
                return Err(Status::invalid_argument(
                    "data_dir is empty and it does not exist: give the DAQ data directory, or set simulate_daq",
                ));
            }
            self.check_allowed(&data_dir)?;
            if !data_dir.is_dir() {
                return Err(Status::invalid_argument(format!(
                    "data_dir '{}' does not exist (or is not a directory) on this DAQ node",
                    req.data_dir
                )));
            }
        }
        Ok(Settings {
            data_dir,
            interval: Duration::from_secs_f64(interval),
            modules: req.module_ids.clone(),
            simulate: req.simulate_daq,
        })
    }

    fn check_allowed(&self, dir: &Path) -> Result<(), Status> {
        let roots = &self.config.allowed_data_roots;
        if roots.is_empty() {
            return Ok(());
        }
        // Resolve links where the path exists, so a link cannot lead out
        // of the allowed roots; otherwise compare the normalized path.
        let resolved = dir.canonicalize().unwrap_or_else(|_| normalize(dir));
        let inside = roots.iter().any(|root| {
            let root = root.canonicalize().unwrap_or_else(|_| normalize(root));
            resolved.starts_with(root)
        });
        if inside {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "data_dir '{}' is outside this server's allowed_data_roots {:?}",
                dir.display(),
                roots
            )))
        }
    }
}

fn failure(error_message: String) -> InitHpIoResponse {
    InitHpIoResponse {
        success: false,
        error_message,
    }
}

async fn blocking(f: impl FnOnce() + Send + 'static) -> Result<(), Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("stopping hp_io failed: {e}")))
}

/// `a/./b/../c` -> `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The gRPC service.
#[derive(Clone)]
pub(crate) struct DaqDataService {
    pub state: Arc<State>,
}

fn peer<T>(req: &Request<T>) -> String {
    match req.remote_addr() {
        Some(addr) => addr.to_string(),
        None => "unix socket".into(),
    }
}

type ImageResponses =
    Pin<Box<dyn futures::Stream<Item = Result<SharedStreamImagesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl daqdata_proto::server::DaqData for DaqDataService {
    type StreamImagesStream = ImageResponses;

    async fn stream_images(
        &self,
        request: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let peer = peer(&request);
        let req = request.into_inner();
        tracing::info!(
            %peer, movie = req.stream_movie_data, pulse_height = req.stream_pulse_height_data,
            interval = req.update_interval_seconds, modules = ?req.module_ids, "StreamImages started"
        );
        let result = self.open_stream(req, peer.clone());
        if let Err(status) = &result {
            tracing::info!(%peer, code = ?status.code(), "StreamImages refused: {}", status.message());
        }
        result.map(Response::new)
    }

    async fn init_hp_io(
        &self,
        request: Request<InitHpIoRequest>,
    ) -> Result<Response<InitHpIoResponse>, Status> {
        let peer = peer(&request);
        let req = request.into_inner();
        tracing::info!(
            %peer, data_dir = %req.data_dir, interval = req.update_interval_seconds, force = req.force,
            simulate = req.simulate_daq, modules = ?req.module_ids, "InitHpIo started"
        );
        let result = self.state.init_hp_io(&req).await;
        match &result {
            Ok(r) if r.success => tracing::info!(%peer, "InitHpIo succeeded"),
            Ok(r) => tracing::warn!(%peer, "InitHpIo failed: {}", r.error_message),
            Err(s) => tracing::info!(%peer, code = ?s.code(), "InitHpIo refused: {}", s.message()),
        }
        result.map(Response::new)
    }

    async fn ping(&self, request: Request<()>) -> Result<Response<()>, Status> {
        tracing::debug!(peer = %peer(&request), "Ping");
        Ok(Response::new(()))
    }

    async fn upload_images(
        &self,
        request: Request<Streaming<UploadImageRequest>>,
    ) -> Result<Response<()>, Status> {
        let peer = peer(&request);
        tracing::info!(%peer, "UploadImages started");
        let result = self.upload(request.into_inner()).await;
        match &result {
            Ok(n) => tracing::info!(%peer, images = n, "UploadImages ended"),
            Err(s) => {
                tracing::info!(%peer, code = ?s.code(), "UploadImages ended: {}", s.message())
            }
        }
        result.map(|_| Response::new(()))
    }
}

impl DaqDataService {
    fn open_stream(
        &self,
        req: StreamImagesRequest,
        peer: String,
    ) -> Result<ImageResponses, Status> {
        let state = &self.state;
        if state.shutdown.is_cancelled() {
            return Err(Status::unavailable("the DaqData server is shutting down"));
        }
        if !req.stream_movie_data && !req.stream_pulse_height_data {
            return Err(Status::invalid_argument(
                "At least one stream flag must be True: set stream_movie_data and/or stream_pulse_height_data",
            ));
        }
        let max = state.config.max_client_update_interval_seconds;
        let asked = client_interval(req.update_interval_seconds, max)?;
        let (generation, place) = state.admit()?;
        let stream_place = Place::take(&state.streams, usize::MAX)
            .ok_or_else(|| Status::internal("stream count overflow"))?;
        let interval = effective_interval(asked, generation.interval);
        let stream = ImageStream::new(
            state.host.clone(),
            Filter {
                movie: req.stream_movie_data,
                pulse_height: req.stream_pulse_height_data,
                modules: req.module_ids,
            },
            interval,
            &generation,
            state.shutdown.clone(),
            [place, stream_place],
            peer,
        );
        Ok(Box::pin(stream.into_stream()))
    }

    async fn upload(&self, mut images: Streaming<UploadImageRequest>) -> Result<u64, Status> {
        let state = &self.state;
        let (generation, _place) = state.admit()?;
        let mut n = 0u64;
        loop {
            let next = tokio::select! {
                biased;
                _ = state.shutdown.cancelled() => return Err(Status::unavailable("the DaqData server is shutting down")),
                _ = generation.reconfigured.cancelled() => {
                    return Err(Status::cancelled("hp_io was reconfigured by InitHpIo (force=true) during the upload"))
                }
                next = images.message() => next?,
            };
            let Some(request) = next else { return Ok(n) };
            let image = request.pano_image.ok_or_else(|| {
                Status::invalid_argument(format!("upload message {n} has no pano_image"))
            })?;
            let dp = DataProduct::try_from(&image)
                .map_err(|e| Status::invalid_argument(format!("upload message {n}: {e}")))?;
            generation.broadcast.publish_uploaded(dp, image);
            n += 1;
        }
    }
}

/// The interval a client asked for, checked (SPEC §3): NaN, +infinite and
/// anything above `max` are refused; zero, negative and -infinite mean "as
/// fast as hp_io updates" and come back as `None`.
fn client_interval(asked: f64, max: f64) -> Result<Option<Duration>, Status> {
    if asked.is_nan() || asked > max {
        return Err(Status::invalid_argument(format!(
            "update_interval_seconds {asked} must be a number of seconds up to {max} (0 or negative = as fast as hp_io updates)"
        )));
    }
    Ok((asked > 0.0).then(|| Duration::from_secs_f64(asked)))
}

/// SPEC §3 rule 1: `max(client interval, hp_io interval)`, as the Python
/// server computes it. hp_io's interval is the fastest any stream is
/// served; a client asking "as fast as hp_io updates" gets exactly that.
fn effective_interval(asked: Option<Duration>, hp_io: Duration) -> Duration {
    asked.map_or(hp_io, |asked| asked.max(hp_io))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_opened_while_init_runs_are_told_to_retry() {
        let state = Arc::new(State::new(Config::default(), daqsim::Fixtures::embedded()));
        state.initializing.store(true, Ordering::Release);
        let service = DaqDataService { state };
        let request = StreamImagesRequest {
            stream_movie_data: true,
            ..Default::default()
        };
        let code = service
            .open_stream(request, "test".into())
            .err()
            .map(|s| s.code());
        assert_eq!(code, Some(tonic::Code::Unavailable));
    }

    #[test]
    fn the_effective_interval_is_the_larger_of_the_clients_and_hp_ios() {
        let ms = Duration::from_millis;
        let hp_io = ms(10);
        let effective =
            |asked: f64| client_interval(asked, 60.0).map(|a| effective_interval(a, hp_io));
        assert_eq!(effective(0.05).ok(), Some(ms(50)));
        assert_eq!(effective(0.01).ok(), Some(ms(10)));
        assert_eq!(effective(0.001).ok(), Some(ms(10)));
        for fastest in [0.0, -0.0, -1.0, f64::NEG_INFINITY] {
            assert_eq!(effective(fastest).ok(), Some(hp_io), "{fastest}");
        }
        assert_eq!(effective(60.0).ok(), Some(Duration::from_secs(60)));
        for bad in [f64::NAN, f64::INFINITY, 60.5] {
            let code = effective(bad).err().map(|s| s.code());
            assert_eq!(code, Some(tonic::Code::InvalidArgument), "{bad}");
        }
    }

    #[test]
    fn paths_normalize_without_the_file_system() {
        assert_eq!(
            normalize(Path::new("/data/../etc/./x")),
            PathBuf::from("/etc/x")
        );
    }
}
