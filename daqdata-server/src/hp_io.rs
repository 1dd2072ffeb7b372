//! The running hp_io configuration: a tracker on a data directory, or on a
//! private simulated run, and the broadcast its frames go to.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broadcast::Broadcast;
use crate::config::SimulateConfig;

/// What InitHpIo asked for, once validated.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    /// The directory to track (ignored when simulating).
    pub data_dir: PathBuf,
    pub interval: Duration,
    pub modules: Vec<u32>,
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

/// A simulated DAQ: the replay and the private directory it writes into,
/// removed when this is dropped.
struct Simulation {
    replay: daqsim::Replay,
    dir: tempfile::TempDir,
}

/// A running configuration.
pub(crate) struct HpIo {
    pub settings: Settings,
    pub generation: Arc<Generation>,
    tracker: hpio::Tracker,
    simulation: Option<Simulation>,
}

impl HpIo {
    /// Starts tracking (and, when simulating, replaying first). Blocking:
    /// call from a blocking thread.
    pub(crate) fn start(
        settings: &Settings,
        simulate: &SimulateConfig,
        fixtures: &daqsim::Fixtures,
    ) -> Result<HpIo, StartError> {
        let (data_dir, simulation) = if settings.simulate {
            let sim = start_simulation(settings, simulate, fixtures)?;
            (sim.dir.path().to_path_buf(), Some(sim))
        } else {
            (settings.data_dir.clone(), None)
        };
        let broadcast = Arc::new(Broadcast::new());
        let sink = broadcast.clone();
        let tracker = hpio::Tracker::spawn(
            hpio::TrackerConfig {
                interval: settings.interval,
                modules: settings.modules.clone(),
                // Nothing is read while no stream watches: idle tracking
                // costs Hashpipe's node nothing.
                on_demand: true,
                ..hpio::TrackerConfig::new(data_dir.clone())
            },
            move |event| sink.publish_tracked(event),
        )
        .map_err(|source| StartError::Tracker {
            dir: data_dir.clone(),
            source,
        })?;
        let generation = Arc::new(Generation {
            broadcast,
            demand: tracker.demand(),
            interval: settings.interval,
            reconfigured: CancellationToken::new(),
        });
        Ok(HpIo {
            settings: settings.clone(),
            generation,
            tracker,
            simulation,
        })
    }

    /// Stops the tracker, then the replay (which marks its run ended) and
    /// removes the simulated directory. Blocking.
    pub(crate) fn stop(self) {
        self.tracker.stop();
        if let Some(sim) = self.simulation {
            if let Err(e) = sim.replay.stop() {
                tracing::warn!("stopping the simulated DAQ: {e}");
            }
        }
    }
}

fn start_simulation(
    settings: &Settings,
    simulate: &SimulateConfig,
    fixtures: &daqsim::Fixtures,
) -> Result<Simulation, StartError> {
    let dir = tempfile::Builder::new()
        .prefix("daqdata-sim-")
        .tempdir()
        .map_err(StartError::SimulationDir)?;
    // Output modules: the configured ones, else the ones InitHpIo asked
    // for, else the fixtures' own.
    let outputs = if !simulate.module_ids.is_empty() {
        simulate.module_ids.clone()
    } else {
        settings.modules.clone()
    };
    let modules = if outputs.is_empty() {
        Vec::new()
    } else {
        // One fixture module per output, the one with the most products,
        // so that each output module gets movie and pulse-height data.
        let source = primary_module(fixtures).ok_or(StartError::NoFixtures)?;
        outputs.iter().map(|&m| (source, m)).collect()
    };
    let replay = daqsim::Replay::start(
        fixtures.clone(),
        daqsim::ReplayConfig {
            out: dir.path().to_path_buf(),
            rate: simulate.frames_per_second,
            modules,
            frames_per_file: simulate.frames_per_file,
            ..daqsim::ReplayConfig::default()
        },
    )
    .map_err(StartError::Replay)?;
    Ok(Simulation { replay, dir })
}

fn primary_module(fixtures: &daqsim::Fixtures) -> Option<u32> {
    let streams = fixtures.streams();
    let mut modules: Vec<u32> = streams.iter().map(|(m, _)| *m).collect();
    modules.sort_unstable();
    modules.dedup();
    modules.into_iter().max_by_key(|m| {
        (
            streams.iter().filter(|(s, _)| s == m).count(),
            std::cmp::Reverse(*m),
        )
    })
}
