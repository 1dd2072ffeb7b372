//! hp_io's lifecycle (SPEC §3, InitHpIo): validate the request, refuse or
//! end the active streams, stop the running configuration, start the new
//! one and, if it fails, restore the previous one. At most one runs at a
//! time; while it runs, new streams are told to retry. The start-up config
//! (SPEC §8) may start hp_io before any run exists: it then waits, and the
//! Status RPC says so until a run appears.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use daqdata_proto::daqdata::{InitHpIoRequest, InitHpIoResponse};
use tonic::Status;

use pff::ModuleId;

use crate::config::Config;
use crate::hashpipe_status::SimulatedSource;
use crate::hp_io::{Generation, HpIo, Settings, StartError};
use crate::metrics::{HpIoLabels, Metrics};

/// The running hp_io configuration and what new streams attach to.
pub(crate) struct Lifecycle {
    config: Config,
    fixtures: daqsim::Fixtures,
    /// What new streams attach to; `None` before the first InitHpIo.
    current: RwLock<Option<Arc<Generation>>>,
    /// The running hp_io; its lock is the "one InitHpIo at a time" lock.
    running: tokio::sync::Mutex<Option<HpIo>>,
    initializing: AtomicBool,
    /// What the running configuration follows, or why none runs: the
    /// Status RPC's message. Shared with the task that notices the run a
    /// waiting configuration waits for.
    described: Arc<RwLock<String>>,
    /// Open Hashpipe socket connections: Hashpipe is running.
    hashpipe_connections: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    /// Told where a simulation's Hashpipe status buffer is, and when it
    /// goes.
    simulated_status: std::sync::OnceLock<SimulatedSource>,
}

impl Lifecycle {
    pub(crate) fn new(config: Config, fixtures: daqsim::Fixtures, metrics: Arc<Metrics>) -> Self {
        Lifecycle {
            config,
            fixtures,
            metrics,
            current: RwLock::new(None),
            running: tokio::sync::Mutex::new(None),
            initializing: AtomicBool::new(false),
            described: Arc::new(RwLock::new(NOT_INITIALIZED.to_string())),
            hashpipe_connections: Arc::new(AtomicUsize::new(0)),
            simulated_status: std::sync::OnceLock::new(),
        }
    }

    /// Where to say which simulated status buffer runs (SPEC §9).
    pub(crate) fn report_simulated_status_to(&self, source: SimulatedSource) {
        let _ = self.simulated_status.set(source);
    }

    fn set_simulated_status(&self, location: Option<hpio::status::StatusLocation>) {
        if let Some(source) = self.simulated_status.get() {
            source.set(location);
        }
    }

    /// The configuration a new stream or upload attaches to: UNAVAILABLE
    /// while InitHpIo runs, FAILED_PRECONDITION before the first one.
    pub(crate) fn current(&self) -> Result<Arc<Generation>, Status> {
        if self.initializing.load(Ordering::Acquire) {
            return Err(Status::unavailable(
                "hp_io is being (re)configured by InitHpIo; retry in a moment",
            ));
        }
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                Status::failed_precondition(
                    "hp_io is not initialized on this server: call InitHpIo first (daqdata --init CONFIG or --init-sim)",
                )
            })
    }

    /// The Status RPC's answer (SPEC §2): whether hp_io runs, and one line
    /// that says what it follows or why it does not.
    pub(crate) fn status(&self) -> (bool, String) {
        let initialized = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        let mut message = self
            .described
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if self.initializing.load(Ordering::Acquire) {
            message = format!("InitHpIo is reconfiguring hp_io; {message}");
        }
        (initialized, message)
    }

    /// A gateway (SPEC §8): streams attach to `generation`, which relayed
    /// frames feed, from the start and for good.
    pub(crate) fn serve_relayed(&self, generation: Arc<Generation>) {
        self.describe("gateway: relays its upstreams' frames".into());
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(generation);
    }

    fn describe(&self, line: String) {
        *self.described.write().unwrap_or_else(|e| e.into_inner()) = line;
    }

    fn set_current(&self, running: Option<(&Settings, Arc<Generation>)>) {
        self.metrics
            .set_hp_io(running.as_ref().map(|(settings, _)| HpIoLabels {
                data_dir: settings.data_dir.display().to_string(),
                interval_seconds: settings.interval.as_secs_f64().to_string(),
                simulate: settings.simulate.to_string(),
                modules: format!("{:?}", settings.modules),
            }));
        self.describe(match &running {
            Some((settings, _)) => format!("hp_io follows the {settings}"),
            None => NOT_INITIALIZED.to_string(),
        });
        let generation = running.map(|(_, g)| g);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = generation;
    }

    /// Applies an InitHpIo request. `active_streams` counts the streams
    /// open once no new one can start. A refusal while no configuration
    /// runs becomes the Status RPC's answer: the last failure is why hp_io
    /// does not run.
    pub(crate) async fn init(
        &self,
        req: &InitHpIoRequest,
        no_run: NoRun,
        active_streams: impl FnOnce() -> usize,
    ) -> Result<InitHpIoResponse, Status> {
        let result = self.apply(req, no_run, active_streams).await;
        if let Err(refused) = &result {
            let running = self
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_some();
            if !running {
                self.describe(format!(
                    "hp_io is not initialized: the last InitHpIo was refused: {}",
                    refused.message()
                ));
            }
        }
        result
    }

    async fn apply(
        &self,
        req: &InitHpIoRequest,
        no_run: NoRun,
        active_streams: impl FnOnce() -> usize,
    ) -> Result<InitHpIoResponse, Status> {
        let settings = self.validate(req)?;
        let mut running = self.running.lock().await;
        self.initializing.store(true, Ordering::Release);
        let _done = ClearOnDrop(&self.initializing);

        let active = active_streams();
        if active > 0 && !req.force {
            return Err(Status::failed_precondition(format!(
                "{active} stream(s) are active; InitHpIo with force=true ends them and reconfigures hp_io"
            )));
        }
        let mut waiting = None;
        if !settings.simulate && !self.active_run(&settings.data_dir).await? {
            let no_run_yet = self.no_active_run(&settings.data_dir);
            match no_run {
                NoRun::Refuse => return Err(Status::failed_precondition(no_run_yet)),
                NoRun::Wait => waiting = Some(no_run_yet),
            }
        }

        if let Some(old) = self
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            old.reconfigured.cancel();
            self.metrics.set_hp_io(None);
        }
        let previous = running.take();
        let previous_settings = previous.as_ref().map(|p| p.settings.clone());
        if let Some(old) = previous {
            self.set_simulated_status(None);
            stop_blocking(old).await?;
        }

        match self.start(settings.clone()).await {
            Ok(started) => {
                tracing::info!("hp_io started: {}", started.settings);
                self.set_current(Some((&started.settings, started.generation.clone())));
                if let Some(why) = waiting {
                    self.wait_for_run(&started, why);
                }
                *running = Some(started);
                Ok(InitHpIoResponse {
                    success: true,
                    error_message: String::new(),
                })
            }
            Err(e) => {
                let why = format!("hp_io could not start with {settings}: {e}");
                tracing::warn!("{why}");
                let Some(previous) = previous_settings else {
                    self.describe(format!("hp_io is not initialized: {why}"));
                    return Ok(failure(why));
                };
                match self.start(previous.clone()).await {
                    Ok(restored) => {
                        self.set_current(Some((&restored.settings, restored.generation.clone())));
                        *running = Some(restored);
                        Ok(failure(format!(
                            "{why}; the previous configuration ({previous}) was restored"
                        )))
                    }
                    Err(e2) => {
                        let why = format!(
                            "{why}; restoring the previous configuration ({previous}) failed too: {e2}; call InitHpIo again"
                        );
                        self.describe(format!("hp_io is not initialized: {why}"));
                        Ok(failure(why))
                    }
                }
            }
        }
    }

    /// Stops the running hp_io, for shutdown. Blocking work runs on a
    /// blocking thread. (The state dropped at exit stops the same parts,
    /// so a mutant that returns at once is equivalent but for joining
    /// them on a runtime worker; the shutdown tests see no difference.)
    pub(crate) async fn stop(&self) -> Result<(), tokio::task::JoinError> {
        self.set_current(None);
        self.set_simulated_status(None);
        match self.running.lock().await.take() {
            Some(hp_io) => tokio::task::spawn_blocking(move || hp_io.stop()).await,
            None => Ok(()),
        }
    }

    async fn start(&self, settings: Settings) -> Result<HpIo, StartError> {
        let config = self.config.clone();
        let fixtures = self.fixtures.clone();
        let connections = self.hashpipe_connections.clone();
        let metrics = self.metrics.clone();
        let started = tokio::task::spawn_blocking(move || {
            HpIo::start(&settings, &config, &fixtures, connections, metrics)
        })
        .await
        .unwrap_or_else(|e| Err(StartError::Panicked(e.to_string())));
        if let Ok(hp_io) = &started {
            self.set_simulated_status(hp_io.simulated_status());
        }
        started
    }

    /// SPEC §3: the active-run check, on a blocking thread (it may walk a
    /// large tree).
    async fn active_run(&self, data_dir: &Path) -> Result<bool, Status> {
        let idle = self.config.active_run_idle_seconds;
        find_active_run(data_dir, idle, &self.hashpipe_connections)
            .await
            .map(|found| found.is_some())
    }

    fn no_active_run(&self, data_dir: &Path) -> String {
        format!(
            "no active run under {}: no hashpipe process, no live daq_hashpipe_pid, no Hashpipe socket connection and no PFF file grew in the last {} s; start the DAQ first",
            data_dir.display(),
            self.config.active_run_idle_seconds.as_secs_f64()
        )
    }

    /// SPEC §8: a configuration started before its run says so in Status
    /// until the run appears (the tracker and the sockets already follow
    /// it); replaced by InitHpIo, it stops looking.
    fn wait_for_run(&self, started: &HpIo, why: String) {
        let dir = started.settings.data_dir.clone();
        tracing::info!("hp_io waits for a run under {}: {why}", dir.display());
        self.describe(format!(
            "hp_io is waiting for a run under {}: {why}; Hashpipe's sockets listen and files are tracked when they appear",
            dir.display()
        ));
        let follows = format!("hp_io follows the {}", started.settings);
        let replaced = started.generation.reconfigured.clone();
        let described = self.described.clone();
        let connections = self.hashpipe_connections.clone();
        let idle = self.config.active_run_idle_seconds;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = replaced.cancelled() => return,
                    _ = tokio::time::sleep(RUN_POLL) => {}
                }
                // A failed check is the same as no run yet: look again.
                if let Ok(Some(_)) = find_active_run(&dir, idle, &connections).await {
                    let mut line = described.write().unwrap_or_else(|e| e.into_inner());
                    // Under the lock: an InitHpIo that replaced this
                    // configuration cancelled it before describing its own.
                    if !replaced.is_cancelled() {
                        *line = follows;
                    }
                    return;
                }
            }
        });
    }

    fn validate(&self, req: &InitHpIoRequest) -> Result<Settings, Status> {
        let min = self.config.min_hp_io_update_interval_seconds.as_secs_f64();
        let max = self.config.max_client_update_interval_seconds.as_secs_f64();
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
            check_allowed(&self.config.allowed_data_roots, &data_dir)?;
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
            modules: req.module_ids.iter().copied().map(ModuleId::new).collect(),
            simulate: req.simulate_daq,
        })
    }
}

/// SPEC §3: a `data_dir` outside `allowed_data_roots` (when any are set) is
/// PERMISSION_DENIED. Links are resolved where the path exists, so a link
/// cannot lead out of the roots; otherwise the normalized path is compared.
fn check_allowed(roots: &[PathBuf], dir: &Path) -> Result<(), Status> {
    if roots.is_empty() {
        return Ok(());
    }
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

/// Whether an active run lies under `data_dir` (SPEC §3, §7), and why.
/// Hashpipe connected to the running configuration's sockets is Hashpipe
/// running, whatever the files say; the file check may walk a large tree,
/// so it runs on a blocking thread.
async fn find_active_run(
    data_dir: &Path,
    idle: Duration,
    hashpipe_connections: &AtomicUsize,
) -> Result<Option<String>, Status> {
    let connections = hashpipe_connections.load(Ordering::Acquire);
    let found = if connections > 0 {
        Some(format!("{connections} Hashpipe socket connection(s) open"))
    } else {
        let dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || hpio::active_run(&dir, idle))
            .await
            .map_err(|e| Status::internal(format!("active-run check failed: {e}")))?
            .map_err(|e| {
                Status::failed_precondition(format!("cannot check for an active run: {e}"))
            })?
    };
    if let Some(why) = &found {
        tracing::info!("active run under {}: {why}", data_dir.display());
    }
    Ok(found)
}

/// What InitHpIo does when no run is active under `data_dir`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoRun {
    /// Refuse (FAILED_PRECONDITION): an operator asked for a run that is
    /// not there.
    Refuse,
    /// Start and wait for one: the start-up config of a DAQ node that boots
    /// before Hashpipe does (SPEC §8).
    Wait,
}

/// How often a waiting configuration looks for its run. Only Status's line
/// waits for this (the tracker and the sockets follow the run at once), and
/// each look may walk the data directory of a node Hashpipe shares.
const RUN_POLL: Duration = Duration::from_secs(5);

fn failure(error_message: String) -> InitHpIoResponse {
    InitHpIoResponse {
        success: false,
        error_message,
    }
}

/// Stops a configuration on a blocking thread (it joins the tracker and
/// the replay). (A mutant that returns at once drops `hp_io` here instead,
/// which stops the same parts through their `Drop`s, but joins them on a
/// runtime worker: equivalent but for blocking that worker.)
async fn stop_blocking(hp_io: HpIo) -> Result<(), Status> {
    tokio::task::spawn_blocking(move || hp_io.stop())
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

const NOT_INITIALIZED: &str =
    "hp_io is not initialized: call InitHpIo (daqdata --init CONFIG or --init-sim)";

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_opened_while_init_runs_are_told_to_retry() {
        let lifecycle = Lifecycle::new(
            Config::default(),
            daqsim::Fixtures::embedded(),
            Metrics::new(),
        );
        let code = |l: &Lifecycle| l.current().err().map(|s| s.code());
        assert_eq!(code(&lifecycle), Some(tonic::Code::FailedPrecondition));
        lifecycle.initializing.store(true, Ordering::Release);
        assert_eq!(code(&lifecycle), Some(tonic::Code::Unavailable));
    }

    #[test]
    fn status_says_why_hp_io_does_not_run() {
        let lifecycle = Lifecycle::new(
            Config::default(),
            daqsim::Fixtures::embedded(),
            Metrics::new(),
        );
        let (initialized, message) = lifecycle.status();
        assert!(!initialized);
        assert!(message.contains("not initialized"), "{message}");
        lifecycle.initializing.store(true, Ordering::Release);
        assert!(lifecycle.status().1.contains("reconfiguring"));
    }

    #[test]
    fn paths_normalize_without_the_file_system() {
        assert_eq!(
            normalize(Path::new("/data/../etc/./x")),
            PathBuf::from("/etc/x")
        );
    }

    #[test]
    fn data_dirs_must_lie_under_an_allowed_root() {
        let roots = [PathBuf::from("/no/such/root")];
        assert!(check_allowed(&[], Path::new("/anywhere")).is_ok());
        assert!(check_allowed(&roots, Path::new("/no/such/root/run")).is_ok());
        let code = |p: &str| check_allowed(&roots, Path::new(p)).err().map(|s| s.code());
        assert_eq!(
            code("/no/such/root/../other"),
            Some(tonic::Code::PermissionDenied)
        );
        assert_eq!(
            code("/no/such/rootless"),
            Some(tonic::Code::PermissionDenied)
        );
    }
}
