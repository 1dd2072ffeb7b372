//! The running hp_io configuration: a tracker on a data directory, or on a
//! private simulated run, and the broadcast its frames go to.

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use pff::ModuleId;
use tokio_util::sync::CancellationToken;

use crate::broadcast::Broadcast;
use crate::config::{Config, SimulateConfig, SimulateMode};
use crate::hashpipe_sockets::{HashpipeSockets, HashpipeSocketsConfig, SocketsError};
use crate::metrics::Metrics;

/// What InitHpIo asked for, once validated.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    /// The directory to track (ignored when simulating).
    pub data_dir: PathBuf,
    pub interval: Duration,
    pub modules: Vec<ModuleId>,
    pub simulate: bool,
}

impl std::fmt::Display for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.simulate {
            write!(f, "simulated run")?;
        } else {
            write!(f, "data_dir {}", self.data_dir.display())?;
        }
        write!(f, ", every {:?}", self.interval)?;
        if !self.modules.is_empty() {
            write!(f, ", modules {:?}", self.modules)?;
        }
        Ok(())
    }
}

/// Why a configuration could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("making a private directory for the simulated DAQ: {0}")]
    SimulationDir(std::io::Error),
    #[error("the simulation fixtures hold no frames")]
    NoFixtures,
    #[error("starting the simulated DAQ: {0}")]
    Replay(daqsim::Error),
    #[error("starting hp_io on {}: {source}", .dir.display())]
    Tracker { dir: PathBuf, source: hpio::Error },
    #[error("starting hp_io failed unexpectedly: {0}")]
    Panicked(String),
    #[error(transparent)]
    Sockets(#[from] SocketsError),
    #[error("hp_io would have no source of frames: track_files is false and [hashpipe_sockets] is disabled")]
    NoSource,
    #[error("starting the simulated Hashpipe socket feed: {0}")]
    Push(daqsim::Error),
    #[error("counting stream demand: {0}")]
    Demand(std::io::Error),
}

/// What streams of one configuration share.
pub(crate) struct Generation {
    pub broadcast: Arc<Broadcast>,
    /// Held by every stream: the tracker reads frames only while held.
    pub demand: hpio::Demand,
    pub interval: Duration,
    /// Cancelled when a forced InitHpIo replaces this configuration.
    pub reconfigured: CancellationToken,
}

/// A simulated DAQ: what feeds frames and the private directory it works
/// in, removed when this is dropped.
struct Simulation {
    feeder: Feeder,
    /// Its Hashpipe status buffer, keyed on the private directory.
    status: Option<daqsim::StatusSim>,
    /// Removed on drop, after the feeder stopped.
    dir: tempfile::TempDir,
}

/// How a simulation hands frames on (`[simulate] mode`).
enum Feeder {
    /// PFF files in a run directory, for the tracker.
    Files(daqsim::Replay),
    /// Messages into Hashpipe's sockets, made in the private directory.
    Sockets(daqsim::SocketPush),
}

/// A running configuration.
pub(crate) struct HpIo {
    pub settings: Settings,
    pub generation: Arc<Generation>,
    tracker: Option<hpio::Tracker>,
    sockets: Option<HashpipeSockets>,
    simulation: Option<Simulation>,
}

impl HpIo {
    /// Starts tracking (and, when simulating, replaying first) and
    /// Hashpipe's sockets where configured; `connections` counts their open
    /// connections. Blocking, and needs the tokio runtime: call from
    /// `spawn_blocking`.
    pub(crate) fn start(
        settings: &Settings,
        config: &Config,
        fixtures: &daqsim::Fixtures,
        connections: Arc<AtomicUsize>,
        metrics: Arc<Metrics>,
    ) -> Result<HpIo, StartError> {
        let sources = Sources::decide(settings, config)?;
        let broadcast = Arc::new(Broadcast::new(metrics.clone()));
        let (data_dir, simulation, sockets) = match sources {
            Sources::Live { sockets, .. } => {
                let sockets = sockets
                    .then(|| start_live_sockets(settings, config, &broadcast, connections))
                    .transpose()?;
                (settings.data_dir.clone(), None, sockets)
            }
            Sources::Simulated(mode) => {
                let (simulation, sockets) =
                    Simulation::start(mode, settings, config, fixtures, &broadcast, connections)?;
                (simulation.dir(), Some(simulation), sockets)
            }
        };
        let tracker = sources
            .tracks_files()
            .then(|| start_tracker(settings, config, &data_dir, &broadcast, &metrics))
            .transpose()?;
        let demand = match &tracker {
            Some(t) => t.demand(),
            None => hpio::Demand::detached().map_err(StartError::Demand)?,
        };
        if let Some(s) = &sockets {
            let paths: Vec<_> = s.paths().map(|p| p.display().to_string()).collect();
            tracing::info!("Hashpipe's sockets: {}", paths.join(", "));
        }
        let generation = Arc::new(Generation {
            broadcast,
            demand,
            interval: settings.interval,
            reconfigured: CancellationToken::new(),
        });
        Ok(HpIo {
            settings: settings.clone(),
            generation,
            tracker,
            sockets,
            simulation,
        })
    }

    /// Where the simulation's Hashpipe status buffer is, if one runs.
    pub(crate) fn simulated_status(&self) -> Option<hpio::status::StatusLocation> {
        let status = self.simulation.as_ref()?.status.as_ref()?;
        Some(status.location().clone())
    }

    /// Stops the tracker, closes and removes Hashpipe's sockets, then stops
    /// the simulation (a replay marks its run ended) and removes its
    /// directory. Blocking.
    pub(crate) fn stop(self) {
        if let Some(tracker) = self.tracker {
            tracker.stop();
        }
        drop(self.sockets);
        if let Some(sim) = self.simulation {
            drop(sim.status);
            let stopped = match sim.feeder {
                Feeder::Files(replay) => replay.stop().map(drop),
                Feeder::Sockets(push) => push.stop().map(drop),
            };
            if let Err(e) = stopped {
                tracing::warn!("stopping the simulated DAQ: {e}");
            }
        }
    }
}

/// Where a configuration's frames come from, decided before anything
/// starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sources {
    /// `simulate_daq`: a simulated DAQ in a private directory, handing
    /// frames on as `[simulate] mode` says.
    Simulated(SimulateMode),
    /// Real data: Hashpipe's sockets and/or the PFF files under `data_dir`
    /// (at least one).
    Live { sockets: bool, files: bool },
}

impl Sources {
    fn decide(settings: &Settings, config: &Config) -> Result<Sources, StartError> {
        if settings.simulate {
            return Ok(Sources::Simulated(config.simulate.mode));
        }
        let sockets = config.hashpipe_sockets.enabled;
        let files = config.track_files;
        if !sockets && !files {
            return Err(StartError::NoSource);
        }
        Ok(Sources::Live { sockets, files })
    }

    /// Whether a tracker follows PFF files.
    fn tracks_files(self) -> bool {
        matches!(
            self,
            Sources::Simulated(SimulateMode::Files) | Sources::Live { files: true, .. }
        )
    }
}

impl Simulation {
    /// Starts a simulated DAQ in a new private directory: a replay into
    /// PFF files, or (SPEC §7) Hashpipe's sockets made in that directory
    /// and a push into them; and its status buffer.
    fn start(
        mode: SimulateMode,
        settings: &Settings,
        config: &Config,
        fixtures: &daqsim::Fixtures,
        broadcast: &Arc<Broadcast>,
        connections: Arc<AtomicUsize>,
    ) -> Result<(Simulation, Option<HashpipeSockets>), StartError> {
        let dir = tempfile::Builder::new()
            .prefix("daqdata-sim-")
            .tempdir()
            .map_err(StartError::SimulationDir)?;
        let path = dir.path();
        let simulate = &config.simulate;
        let (feeder, sockets) = match mode {
            SimulateMode::Files => (
                Feeder::Files(start_replay(settings, simulate, fixtures, path)?),
                None,
            ),
            SimulateMode::Sockets => {
                let template = pff::socket_template_in(path);
                let all = HashpipeSocketsConfig {
                    enabled: true,
                    ..HashpipeSocketsConfig::default()
                };
                let sockets = HashpipeSockets::start(
                    &all,
                    &template,
                    &settings.modules,
                    broadcast.clone(),
                    connections,
                    true,
                )?;
                let push = start_push(settings, simulate, fixtures, template)?;
                (Feeder::Sockets(push), Some(sockets))
            }
        };
        let status = start_status_sim(config, path);
        let simulation = Simulation {
            feeder,
            status,
            dir,
        };
        Ok((simulation, sockets))
    }

    /// The private directory the simulated DAQ works in.
    fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// Hashpipe's sockets on real data: they exist while hp_io runs (SPEC §7).
fn start_live_sockets(
    settings: &Settings,
    config: &Config,
    broadcast: &Arc<Broadcast>,
    connections: Arc<AtomicUsize>,
) -> Result<HashpipeSockets, StartError> {
    let hashpipe = &config.hashpipe_sockets;
    Ok(HashpipeSockets::start(
        hashpipe,
        &hashpipe.path_template,
        &settings.modules,
        broadcast.clone(),
        connections,
        !config.track_files,
    )?)
}

/// The tracker on `data_dir`, reading only while a stream holds its
/// demand: idle tracking costs Hashpipe's node nothing.
fn start_tracker(
    settings: &Settings,
    config: &Config,
    data_dir: &std::path::Path,
    broadcast: &Arc<Broadcast>,
    metrics: &Metrics,
) -> Result<hpio::Tracker, StartError> {
    let sink = broadcast.clone();
    hpio::Tracker::spawn(
        hpio::TrackerConfig {
            interval: settings.interval,
            modules: settings.modules.clone(),
            on_demand: true,
            poll_only: config.poll_only,
            wakeups: metrics.tracker_wakeups.clone(),
            ..hpio::TrackerConfig::new(data_dir)
        },
        move |event| sink.publish_tracked(event),
    )
    .map_err(|source| StartError::Tracker {
        dir: data_dir.to_path_buf(),
        source,
    })
}

/// Output modules of a simulation: the configured ones, else the ones
/// InitHpIo asked for, else the fixtures' own; as (fixture, output) pairs.
fn simulated_modules(
    settings: &Settings,
    simulate: &SimulateConfig,
    fixtures: &daqsim::Fixtures,
) -> Result<Vec<(ModuleId, ModuleId)>, StartError> {
    let outputs = if !simulate.module_ids.is_empty() {
        simulate
            .module_ids
            .iter()
            .copied()
            .map(ModuleId::new)
            .collect()
    } else {
        settings.modules.clone()
    };
    if outputs.is_empty() {
        return Ok(Vec::new());
    }
    // One fixture module per output, the one with the most products, so
    // that each output module gets movie and pulse-height data.
    let source = primary_module(fixtures).ok_or(StartError::NoFixtures)?;
    Ok(outputs.iter().map(|&m| (source, m)).collect())
}

/// A simulated Hashpipe status buffer keyed on the simulation's private
/// directory, so every view shows one (SPEC §9). Frames do not need it: a
/// failure is logged and the simulation runs without.
fn start_status_sim(config: &Config, dir: &std::path::Path) -> Option<daqsim::StatusSim> {
    let status = &config.hashpipe_status;
    if !status.enabled {
        return None;
    }
    let sim_config = daqsim::StatusSimConfig {
        instance: status.instance,
        ..daqsim::StatusSimConfig::new(dir)
    };
    match daqsim::StatusSim::start(sim_config) {
        Ok(sim) => Some(sim),
        Err(e) => {
            tracing::warn!("the simulated DAQ runs without a Hashpipe status buffer: {e}");
            None
        }
    }
}

fn start_push(
    settings: &Settings,
    simulate: &SimulateConfig,
    fixtures: &daqsim::Fixtures,
    template: String,
) -> Result<daqsim::SocketPush, StartError> {
    daqsim::SocketPush::start(
        fixtures.clone(),
        daqsim::SocketPushConfig {
            template,
            rate: simulate.frames_per_second,
            modules: simulated_modules(settings, simulate, fixtures)?,
            ..daqsim::SocketPushConfig::default()
        },
    )
    .map_err(StartError::Push)
}

fn start_replay(
    settings: &Settings,
    simulate: &SimulateConfig,
    fixtures: &daqsim::Fixtures,
    out: &std::path::Path,
) -> Result<daqsim::Replay, StartError> {
    daqsim::Replay::start(
        fixtures.clone(),
        daqsim::ReplayConfig {
            out: out.to_path_buf(),
            rate: simulate.frames_per_second,
            modules: simulated_modules(settings, simulate, fixtures)?,
            frames_per_file: simulate.frames_per_file,
            ..daqsim::ReplayConfig::default()
        },
    )
    .map_err(StartError::Replay)
}

fn primary_module(fixtures: &daqsim::Fixtures) -> Option<ModuleId> {
    let streams = fixtures.streams();
    let mut modules: Vec<ModuleId> = streams.iter().map(|(m, _)| *m).collect();
    modules.sort_unstable();
    modules.dedup();
    modules.into_iter().max_by_key(|m| {
        (
            streams.iter().filter(|(s, _)| s == m).count(),
            std::cmp::Reverse(*m),
        )
    })
}
