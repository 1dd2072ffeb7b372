//! A fake DAQ node for the tests: run directories in a temporary data
//! directory, writers that append real frames as Hashpipe does, and a sink
//! that collects what the tracker hands on.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hpio::{FrameEvent, Tracker, TrackerConfig};
use pff::{DataProduct, PffName, RunName, StartTime};

/// Generous: tests wait for behaviour, never measure it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The first `n` complete frames of the real Lick recording of `dp` and
/// `module`, as bytes: the repository's fixture (the shared full-size
/// sample starts with the same bytes).
pub fn sample_frames(dp: DataProduct, module: u32, n: usize) -> Vec<Vec<u8>> {
    let fixture = testdata::fixture(dp.name(), module);
    assert!(
        n as u64 <= fixture.frames,
        "{fixture} holds {} frames",
        fixture.frames
    );
    read_frames(&fixture.path, 0..n as u64)
}

/// `n` real frames of `dp` and `module` from each recording there is: the
/// fixture's first, then, when the shared samples are present, the last
/// `n` of the full-size file.
pub fn real_frame_sets(dp: DataProduct, module: u32, n: usize) -> Vec<Vec<Vec<u8>>> {
    testdata::lick_samples(dp.name(), module)
        .into_iter()
        .map(|s| match s.origin {
            testdata::Origin::Fixtures => read_frames(&s.path, 0..n as u64),
            testdata::Origin::Shared => read_frames(&s.path, s.frames - n as u64..s.frames),
        })
        .collect()
}

fn read_frames(path: &Path, range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    let file = pff::PffFile::open(path).unwrap();
    range
        .map(|i| file.read_raw(i).unwrap().as_bytes().to_vec())
        .collect()
}

/// Frames made here, for products with no sample (and for size changes):
/// `header_pad` spaces widen the header.
pub fn synthetic_frames(dp: DataProduct, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let q = pff::Quabo {
                pkt_num: i as u32,
                pkt_tai: 100,
                pkt_nsec: 1000 * i as u32,
                tv_sec: 1_721_882_094,
                tv_usec: i as u32 % 1_000_000,
            };
            let header = match dp {
                DataProduct::Ph256 => pff::Header::new_quabo(0, q),
                _ => pff::Header::new_module([q; 4]),
            };
            let pixels = pff::Pixels::from_le_bytes(
                dp,
                &(0..dp.image_bytes())
                    .map(|b| (b + i) as u8)
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            pff::Frame { header, pixels }.to_bytes()
        })
        .collect()
}

/// A data directory in a temporary place.
pub struct Daq {
    pub dir: tempfile::TempDir,
}

impl Daq {
    pub fn new() -> Self {
        Daq {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `module_M/obs_TEST.start_T.runtype_test.pffd` (or a bare run for
    /// `None`), made if missing; `start` in Unix seconds.
    pub fn run(&self, module: Option<u32>, start: i64) -> Run {
        let name = RunName::new("TEST", StartTime::from_unix(start), "test").to_string();
        let dir = match module {
            Some(m) => self.path().join(format!("module_{m}")).join(name),
            None => self.path().join(name),
        };
        fs::create_dir_all(&dir).unwrap();
        Run { dir, start }
    }
}

/// A run directory.
#[derive(Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub start: i64,
}

impl Run {
    /// The path Hashpipe gives a file of this run.
    pub fn file(&self, dp: DataProduct, module: u32, seqno: u32) -> PathBuf {
        let name = PffName::new(StartTime::from_unix(self.start), dp, module.into(), seqno);
        self.dir.join(name.to_string())
    }
}

/// How a writer appends each frame.
#[derive(Clone, Copy)]
pub enum Pace {
    /// One write per frame, this long apart.
    Whole(Duration),
    /// Two writes per frame (split inside the header or the image) with a
    /// pause between, as a slow disk or a big frame may be seen.
    Split(Duration),
}

/// Appends `frames` to `path` in a thread, as Hashpipe does.
pub fn write_frames(path: PathBuf, frames: Vec<Vec<u8>>, pace: Pace) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for (i, frame) in frames.iter().enumerate() {
            match pace {
                Pace::Whole(gap) => {
                    file.write_all(frame).unwrap();
                    std::thread::sleep(gap);
                }
                Pace::Split(pause) => {
                    // Alternate a cut in the header and in the image.
                    let cut = if i % 2 == 0 { 40 } else { frame.len() - 100 };
                    file.write_all(&frame[..cut]).unwrap();
                    std::thread::sleep(pause);
                    file.write_all(&frame[cut..]).unwrap();
                    std::thread::sleep(pause);
                }
            }
        }
    })
}

/// Appends frames at once.
pub fn append(path: &Path, frames: &[Vec<u8>]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for f in frames {
        file.write_all(f).unwrap();
    }
}

/// Writes a whole file at once.
pub fn create(path: &Path, bytes: &[u8]) {
    File::create(path).unwrap().write_all(bytes).unwrap();
}

/// A running tracker and what it handed on.
pub struct Tracked {
    pub tracker: Option<Tracker>,
    rx: Receiver<FrameEvent>,
    pub events: Vec<FrameEvent>,
}

/// Both modes, so every behaviour is checked with and without
/// notifications.
pub const MODES: [bool; 2] = [false, true];

pub fn track(data_dir: &Path, poll_only: bool, modules: Vec<u32>) -> Tracked {
    track_with(TrackerConfig {
        interval: Duration::from_millis(if poll_only { 5 } else { 50 }),
        modules: modules.into_iter().map(pff::ModuleId::new).collect(),
        poll_only,
        ..TrackerConfig::new(data_dir)
    })
}

/// A tracker started with `config`, collecting what it hands on.
pub fn track_with(config: TrackerConfig) -> Tracked {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let tracker = Tracker::spawn(config, move |e| {
        let _ = tx.lock().unwrap().send(e);
    })
    .unwrap();
    Tracked {
        tracker: Some(tracker),
        rx,
        events: Vec::new(),
    }
}

impl Tracked {
    /// Collects events until `done` holds for them (panics after PATIENCE).
    pub fn until(&mut self, what: &str, done: impl Fn(&[FrameEvent]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(&self.events) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => self.events.push(e),
                Err(_) => panic!(
                    "waited {PATIENCE:?} for {what}; got {} events: {:?}",
                    self.events.len(),
                    self.events
                        .iter()
                        .map(|e| (e.module, e.dp, e.file.to_string(), e.frame_index))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Takes whatever else arrives within `settle`.
    pub fn drain(&mut self, settle: Duration) {
        while let Ok(e) = self.rx.recv_timeout(settle) {
            self.events.push(e);
        }
    }

    /// Stops the tracker and collects what it handed on before it stopped.
    pub fn stop(&mut self) {
        if let Some(t) = self.tracker.take() {
            t.stop();
        }
        while let Ok(e) = self.rx.try_recv() {
            self.events.push(e);
        }
    }

    pub fn of(&self, module: u32, dp: DataProduct) -> Vec<&FrameEvent> {
        self.events
            .iter()
            .filter(|e| e.module == module && e.dp == dp)
            .collect()
    }
}

/// True once an event for `file` (by name) with index `index` arrived.
pub fn has(events: &[FrameEvent], file: &Path, index: u64) -> bool {
    let name = file.file_name().unwrap().to_str().unwrap();
    events
        .iter()
        .any(|e| &*e.file == name && e.frame_index == index)
}

/// Checks what a consumer relies on: per (module, data product) `seq`
/// rises by one, and within a file the index only rises.
pub fn assert_ordered(events: &[FrameEvent]) {
    let mut last: std::collections::HashMap<pff::ModuleProduct, (u64, Arc<str>, u64)> =
        Default::default();
    for e in events {
        if let Some((seq, file, index)) = last.get(&e.module_product()) {
            assert_eq!(e.seq, seq + 1, "seq of {} {}", e.module, e.dp);
            if *file == e.file {
                assert!(
                    e.frame_index > *index,
                    "{} went back to frame {}",
                    e.file,
                    e.frame_index
                );
            }
        }
        last.insert(e.module_product(), (e.seq, e.file.clone(), e.frame_index));
    }
}
