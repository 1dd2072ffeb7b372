//! Writing fixtures into a DAQ tree on a schedule, the way Hashpipe would.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pff::daq_tree::{module_dir_name, HASHPIPE_PID_FILE, RECORDING_ENDED, RUN_NAME_FILE};
use pff::{ModuleId, ModuleProduct, PffName, Quabo, RunName, StartTime};

use crate::fixtures::Stream;
use crate::{Error, Fixtures};

/// Frames per second of a stream whose fixture cadence is unknown.
const DEFAULT_RATE: f64 = 100.0;

/// The longest pause inside a torn frame.
const MAX_TORN_PAUSE: Duration = Duration::from_millis(100);

/// How to replay: where, how fast, onto which modules, for how long.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// The DATA_DIR to write into; created if missing.
    pub out: PathBuf,
    /// Frames per second per (output module, data product). `None`: the
    /// fixture's recorded cadence where known, else 100.
    pub rate: Option<f64>,
    /// (fixture module, output module) pairs; a fixture module may feed
    /// several outputs, and fixture modules not named are not replayed.
    /// Empty: every fixture module under its own id.
    pub modules: Vec<(ModuleId, ModuleId)>,
    /// Close a file and open the next seqno after this many frames
    /// (Hashpipe does so at a size limit). `None`: one file per stream.
    pub frames_per_file: Option<u64>,
    /// Stop after this many frames per stream; `None`: loop the fixture
    /// until stopped.
    pub frames: Option<u64>,
    /// Rewrite the node and White Rabbit stamps to the time of writing, so
    /// the tree looks live and readers can measure latency.
    pub restamp: bool,
    /// Write each frame in two parts with a pause between, so readers meet
    /// torn frames the way they do when Hashpipe is mid-write.
    pub torn: bool,
}

impl Default for ReplayConfig {
    /// A fresh directory under the temp dir (not removed afterwards), at
    /// fixture cadence, restamped, looping forever.
    fn default() -> Self {
        // A fresh hasher key per call: a name no earlier process left behind.
        let salt = RandomState::new().hash_one(0u8) as u32;
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let name = format!("daqsim-{}-{salt:08x}-{serial}", std::process::id());
        ReplayConfig {
            out: std::env::temp_dir().join(name),
            rate: None,
            modules: Vec::new(),
            frames_per_file: None,
            frames: None,
            restamp: true,
            torn: false,
        }
    }
}

/// Progress of a replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Frames written, all streams together.
    pub frames: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Output streams (output module x data product).
    pub streams: usize,
    /// From the start to now, or to the end of the replay.
    pub elapsed: Duration,
    /// Whether the writer has ended (all frames written, stopped, or failed).
    pub finished: bool,
    /// The latest any frame was written after its scheduled time: small
    /// when the writer keeps up, growing when the disk or CPU cannot.
    pub worst_lag: Duration,
    /// Frames written more than [`LATE`] after their scheduled time.
    pub late_frames: u64,
}

/// How far behind schedule a frame counts as late in [`Stats`].
pub const LATE: Duration = Duration::from_millis(1);

impl Stats {
    /// Frames per second achieved, all streams together.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.frames as f64 / secs
        } else {
            0.0
        }
    }
}

/// What the writer thread and the handle share.
struct Shared {
    frames: AtomicU64,
    bytes: AtomicU64,
    worst_lag_nanos: AtomicU64,
    late_frames: AtomicU64,
    streams: usize,
    started: Instant,
    /// When the writer ended; waited on by [`Replay::wait`].
    ended: Mutex<Option<Instant>>,
    ended_signal: Condvar,
    finished: AtomicBool,
}

impl Shared {
    /// Nothing written yet by `streams` streams, starting now.
    fn new(streams: usize) -> Self {
        Shared {
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            worst_lag_nanos: AtomicU64::new(0),
            late_frames: AtomicU64::new(0),
            streams,
            started: Instant::now(),
            ended: Mutex::new(None),
            ended_signal: Condvar::new(),
            finished: AtomicBool::new(false),
        }
    }
}

/// A running replay: one writer thread for all its streams, no global
/// state, so several may run in one process. Dropping it stops it.
pub struct Replay {
    out: PathBuf,
    looping: bool,
    shared: Arc<Shared>,
    /// Dropping this tells the writer to stop.
    stop: Option<mpsc::Sender<()>>,
    writer: Option<JoinHandle<Result<(), Error>>>,
}

impl Replay {
    /// Makes the run directories and the first files, writes
    /// `daq_run_name` and `daq_hashpipe_pid`, and starts writing.
    pub fn start(fixtures: Fixtures, config: ReplayConfig) -> Result<Replay, Error> {
        let plan = plan(&fixtures, &config)?;
        let out = config.out.clone();
        mkdir(&out)?;
        let start = StartTime::from_unix(pff::time::node_now().0);
        let run_name = RunName::new("SIM", start.clone(), "sim").to_string();
        let mut outputs = outputs(&fixtures, plan, &out, &run_name, &start)?;
        // Open the first files before announcing the run, so a bad
        // directory fails here (not in the writer) and leaves no pid file.
        for output in &mut outputs {
            output.open()?;
        }
        write_file(&out.join(RUN_NAME_FILE), format!("{run_name}\n").as_bytes())?;
        write_file(
            &out.join(HASHPIPE_PID_FILE),
            format!("{}\n", std::process::id()).as_bytes(),
        )?;
        let shared = Arc::new(Shared::new(outputs.len()));
        tracing::info!(
            "replaying {} streams into run {run_name} of the module directories in {}",
            outputs.len(),
            out.display()
        );
        let (stop, stopped) = mpsc::channel();
        let writer = Writer {
            outputs,
            out: out.clone(),
            frames: config.frames,
            frames_per_file: config.frames_per_file,
            restamp: config.restamp,
            torn: config.torn,
            shared: shared.clone(),
            buf: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("daqsim-writer".into())
            .spawn(move || writer.run(stopped))
            .map_err(|e| Error::io("starting the writer thread for", &out, e))?;
        Ok(Replay {
            out,
            looping: config.frames.is_none(),
            shared,
            stop: Some(stop),
            writer: Some(handle),
        })
    }

    /// The DATA_DIR being written.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Frames written so far and the rate achieved.
    pub fn stats(&self) -> Stats {
        let ended = *lock(&self.shared.ended);
        Stats {
            frames: self.shared.frames.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            streams: self.shared.streams,
            elapsed: ended.unwrap_or_else(Instant::now) - self.shared.started,
            finished: self.shared.finished.load(Ordering::Relaxed),
            worst_lag: Duration::from_nanos(self.shared.worst_lag_nanos.load(Ordering::Relaxed)),
            late_frames: self.shared.late_frames.load(Ordering::Relaxed),
        }
    }

    /// Whether the writer has ended: all `frames` written, or a failure
    /// (which [`Replay::stop`] returns).
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Relaxed)
    }

    /// Blocks until every stream has written its `frames` (or the writer
    /// failed). A looping replay (`frames: None`) has no such end, so this
    /// returns at once; stop it with [`Replay::stop`].
    pub fn wait(&self) {
        if self.looping {
            return;
        }
        let mut ended = lock(&self.shared.ended);
        while ended.is_none() {
            ended = self
                .shared
                .ended_signal
                .wait(ended)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stops writing (after the frame in progress, so files hold whole
    /// frames), writes `recording_ended` into each run directory and removes
    /// `daq_hashpipe_pid`. Returns the final counts, or the writer's error.
    pub fn stop(mut self) -> Result<Stats, Error> {
        self.shutdown()?;
        Ok(self.stats())
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        drop(self.stop.take());
        match self.writer.take() {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(Error::Panicked(self.out.clone()))),
            None => Ok(()),
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("replay into {}: {e}", self.out.display());
        }
    }
}

/// One output stream of a replay.
struct Planned {
    /// The fixture stream replayed.
    fixture: ModuleProduct,
    /// The module it is written as (same data product).
    module: ModuleId,
    /// Frames per second.
    rate: f64,
}

/// What every output stream replays, as which module, how fast.
fn plan(fixtures: &Fixtures, config: &ReplayConfig) -> Result<Vec<Planned>, Error> {
    if let Some(rate) = config.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::Config(format!(
                "rate must be a positive number of frames per second, not {rate}"
            )));
        }
    }
    if config.frames_per_file == Some(0) {
        return Err(Error::Config("frames per file must be at least 1".into()));
    }
    let streams = fixtures.streams();
    if streams.is_empty() {
        return Err(Error::Config("the fixtures hold no frames".into()));
    }
    let mut held: Vec<ModuleId> = streams.iter().map(|(m, _)| *m).collect();
    held.dedup();
    let mapping: Vec<(ModuleId, ModuleId)> = if config.modules.is_empty() {
        held.iter().map(|&m| (m, m)).collect()
    } else {
        for (from, _) in &config.modules {
            if !held.contains(from) {
                return Err(Error::Config(format!(
                    "module mapping names fixture module {from}, but the fixtures hold modules {held:?}"
                )));
            }
        }
        config.modules.clone()
    };
    let mut plan: Vec<Planned> = Vec::new();
    for &(from, to) in &mapping {
        for &(module, dp) in streams.iter().filter(|(m, _)| *m == from) {
            if plan.iter().any(|p| (p.fixture.dp, p.module) == (dp, to)) {
                return Err(Error::Config(format!(
                    "output module {to} is fed {dp} by two fixture modules"
                )));
            }
            let rate = config
                .rate
                .or_else(|| fixtures.cadence(module, dp))
                .unwrap_or(DEFAULT_RATE);
            plan.push(Planned {
                fixture: ModuleProduct::new(module, dp),
                module: to,
                rate,
            });
        }
    }
    Ok(plan)
}

/// One output per planned stream, its run directory `run_name` made
/// under its module's directory in `out`, its first file not yet open.
fn outputs(
    fixtures: &Fixtures,
    plan: Vec<Planned>,
    out: &Path,
    run_name: &str,
    start: &StartTime,
) -> Result<Vec<Output>, Error> {
    let mut outputs = Vec::with_capacity(plan.len());
    for Planned {
        fixture,
        module,
        rate,
    } in plan
    {
        let dp = fixture.dp;
        let stream = fixtures
            .stream(fixture.module, dp)
            .ok_or_else(|| Error::Config(format!("no fixture for {fixture}")))?
            .clone();
        let run_dir = out.join(module_dir_name(module)).join(run_name);
        tracing::info!("fixture {fixture} -> module {module} at {rate:.2} frames/s");
        mkdir(&run_dir)?;
        outputs.push(Output {
            stream,
            run_dir,
            name: PffName::new(start.clone(), dp, module, 0),
            file: None,
            in_file: 0,
            next: 0,
            written: 0,
            rate,
        });
    }
    Ok(outputs)
}

/// One output stream: a fixture stream written as one module's files.
struct Output {
    stream: Arc<Stream>,
    run_dir: PathBuf,
    /// The file being written (or to be opened next).
    name: PffName,
    file: Option<File>,
    /// Frames in the current file.
    in_file: u64,
    /// The next fixture frame (the fixture loops).
    next: usize,
    written: u64,
    rate: f64,
}

/// When the `n`-th frame (from 0) of a stream at `rate` frames/s that
/// began at `start` is due. Deadlines are absolute, so pacing does not
/// drift with the time spent writing or sending.
pub(crate) fn nth_due(start: Instant, n: u64, rate: f64) -> Instant {
    start + Duration::from_secs_f64(n as f64 / rate)
}

impl Output {
    /// When the next frame is due.
    fn due(&self, start: Instant) -> Instant {
        nth_due(start, self.written, self.rate)
    }

    fn path(&self) -> PathBuf {
        self.run_dir.join(self.name.to_string())
    }

    fn open(&mut self) -> Result<(), Error> {
        let path = self.path();
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("creating", &path, e))?;
        self.file = Some(file);
        Ok(())
    }
}

/// The writer thread's state.
struct Writer {
    outputs: Vec<Output>,
    out: PathBuf,
    frames: Option<u64>,
    frames_per_file: Option<u64>,
    restamp: bool,
    torn: bool,
    shared: Arc<Shared>,
    /// Reused for every restamped frame.
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self, stopped: mpsc::Receiver<()>) -> Result<(), Error> {
        let result = self.write_until(&stopped);
        if let Err(e) = &result {
            tracing::error!("replay into {} failed: {e}", self.out.display());
        }
        let ended = self.end_run();
        {
            let mut at = lock(&self.shared.ended);
            *at = Some(Instant::now());
            self.shared.finished.store(true, Ordering::Relaxed);
            self.shared.ended_signal.notify_all();
        }
        result.and(ended)
    }

    fn write_until(&mut self, stopped: &mpsc::Receiver<()>) -> Result<(), Error> {
        let start = self.shared.started;
        let torn_pause = self
            .outputs
            .iter()
            .map(|o| Duration::from_secs_f64(0.5 / o.rate / self.outputs.len() as f64))
            .min()
            .unwrap_or_default()
            .min(MAX_TORN_PAUSE);
        loop {
            let now = Instant::now();
            let mut next_due: Option<Instant> = None;
            for i in 0..self.outputs.len() {
                // Write what is due; if behind, catch up in one batch.
                let (mut worst, mut late) = (Duration::ZERO, 0);
                while !self.done(i) && self.outputs[i].due(start) <= now {
                    let lag = Instant::now().saturating_duration_since(self.outputs[i].due(start));
                    worst = worst.max(lag);
                    late += u64::from(lag > LATE);
                    self.write_frame(i, torn_pause)?;
                }
                let worst = u64::try_from(worst.as_nanos()).unwrap_or(u64::MAX);
                self.shared
                    .worst_lag_nanos
                    .fetch_max(worst, Ordering::Relaxed);
                self.shared.late_frames.fetch_add(late, Ordering::Relaxed);
                if !self.done(i) {
                    let due = self.outputs[i].due(start);
                    next_due = Some(next_due.map_or(due, |n| n.min(due)));
                }
            }
            let Some(next_due) = next_due else {
                return Ok(());
            };
            let wait = next_due.saturating_duration_since(Instant::now());
            // Go on only while nothing was sent and the handle is alive.
            let go_on = if wait.is_zero() {
                matches!(stopped.try_recv(), Err(TryRecvError::Empty))
            } else {
                matches!(stopped.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
            };
            if !go_on {
                return Ok(());
            }
        }
    }

    fn done(&self, i: usize) -> bool {
        self.frames.is_some_and(|n| self.outputs[i].written >= n)
    }

    fn write_frame(&mut self, i: usize, torn_pause: Duration) -> Result<(), Error> {
        let restamp = self.restamp;
        let output = &mut self.outputs[i];
        if output.file.is_none() {
            output.open()?;
        }
        let stream = &output.stream;
        let n = output.next;
        let frame = stream.frame(n);
        let bytes: &[u8] = if restamp {
            let header = stamped_now(&stream.headers[n]);
            self.buf.clear();
            pff::append_frame(&mut self.buf, header.text(), &frame[stream.header_len..]);
            &self.buf
        } else {
            frame
        };
        let path = || output.run_dir.join(output.name.to_string());
        let Some(file) = output.file.as_mut() else {
            return Err(Error::io(
                "writing",
                path(),
                std::io::ErrorKind::NotFound.into(),
            ));
        };
        if self.torn {
            let (first, rest) = bytes.split_at(bytes.len() / 2);
            file.write_all(first)
                .map_err(|e| Error::io("writing", path(), e))?;
            std::thread::sleep(torn_pause);
            file.write_all(rest)
                .map_err(|e| Error::io("writing", path(), e))?;
        } else {
            // One write per frame: a reader sees whole frames appear.
            file.write_all(bytes)
                .map_err(|e| Error::io("writing", path(), e))?;
        }
        self.shared.frames.fetch_add(1, Ordering::Relaxed);
        self.shared
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        output.written += 1;
        output.next = (n + 1) % stream.len();
        output.in_file += 1;
        if self
            .frames_per_file
            .is_some_and(|max| output.in_file >= max)
        {
            // The next frame opens the next seqno, as Hashpipe does when a
            // file reaches its size limit.
            output.file = None;
            output.in_file = 0;
            output.name = output.name.next_seqno();
        }
        Ok(())
    }

    /// What the PANOSETI stop script leaves: `recording_ended` in each run
    /// directory, no pid file.
    fn end_run(&mut self) -> Result<(), Error> {
        for output in &mut self.outputs {
            output.file = None;
        }
        let ended = format!("{}\n", StartTime::from_unix(pff::time::node_now().0));
        let mut result = Ok(());
        let mut dirs: Vec<&PathBuf> = self.outputs.iter().map(|o| &o.run_dir).collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            if let Err(e) = write_file(&dir.join(RECORDING_ENDED), ended.as_bytes()) {
                result = result.and(Err(e));
            }
        }
        let pid = self.out.join(HASHPIPE_PID_FILE);
        if let Err(e) = std::fs::remove_file(&pid) {
            if e.kind() != std::io::ErrorKind::NotFound {
                result = result.and(Err(Error::io("removing", pid, e)));
            }
        }
        result
    }
}

/// `header` with every quabo stamped now, as Hashpipe would have: node
/// time, and a White Rabbit time that agrees with it.
pub(crate) fn stamped_now(header: &pff::Header) -> pff::Header {
    header.map_quabos(Quabo::stamped_now)
}

fn mkdir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|e| Error::io("writing", path, e))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
