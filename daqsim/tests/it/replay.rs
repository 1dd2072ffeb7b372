//! A replay leaves the tree Hashpipe and the PANOSETI scripts would, and
//! `pff` reads it back as the fixture, restamped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use daqsim::{Error, Fixtures, Replay, ReplayConfig};
use pff::{DataProduct, ModuleId, PffFile, PffName};
use testdata::fixtures_dir;

/// Generous: tests wait for behaviour, never measure it; this only turns
/// a hang into a failure.
const PATIENCE: Duration = Duration::from_secs(30);

fn fixtures() -> Fixtures {
    Fixtures::load(&fixtures_dir()).unwrap()
}

fn config(out: &Path) -> ReplayConfig {
    ReplayConfig {
        out: out.to_path_buf(),
        rate: Some(5000.0),
        ..ReplayConfig::default()
    }
}

fn unix_now() -> i64 {
    pff::time::node_now().0
}

/// The one run directory of a module, and its PFF files by (dp, seqno).
fn run_files(out: &Path, module: u32) -> (PathBuf, Vec<(PffName, PathBuf)>) {
    let runs: Vec<PathBuf> = std::fs::read_dir(out.join(format!("module_{module}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "one run directory in module_{module}: {runs:?}"
    );
    let run = runs[0].clone();
    let mut files: Vec<(PffName, PathBuf)> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pff"))
        .map(|p| {
            (
                PffName::parse(p.file_name().unwrap().to_str().unwrap()).unwrap(),
                p,
            )
        })
        .collect();
    files.sort_by_key(|(n, _)| (n.dp, n.seqno));
    (run, files)
}

fn module_dirs(out: &Path) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("module_"))
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn replayed_frames_read_back_restamped_with_the_fixture_pixels() {
    let fixtures = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let before = unix_now();
    // More frames than the img16 fixture holds, so it must loop.
    let frames = fixtures.frame_count(ModuleId::new(1), DataProduct::Img16) as u64 + 20;
    let replay = Replay::start(
        fixtures.clone(),
        ReplayConfig {
            frames: Some(frames),
            ..config(dir.path())
        },
    )
    .unwrap();
    replay.wait();
    let stats = replay.stop().unwrap();
    let after = unix_now();
    let streams = fixtures.streams();
    assert_eq!(stats.streams, streams.len());
    assert_eq!(stats.frames, frames * streams.len() as u64);

    for (module, dp) in streams {
        let (_, files) = run_files(dir.path(), module.get());
        let (name, path) = files.iter().find(|(n, _)| n.dp == dp).unwrap();
        assert_eq!((name.module, name.seqno), (module, 0));
        let file = PffFile::open(path).unwrap();
        let layout = file.layout().unwrap();
        assert_eq!(
            (layout.frames, layout.tail_bytes),
            (frames, 0),
            "{}",
            path.display()
        );
        let count = fixtures.frame_count(module, dp);
        for n in 0..frames {
            let got = file.read_frame(n).unwrap();
            let want = fixtures
                .frame(module, dp, n as usize % count)
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(got.pixels, want.pixels, "{dp} module {module} frame {n}");
            for q in 0..4 {
                let (Some(g), Some(w)) = (got.header.quabo(q), want.header.quabo(q)) else {
                    continue;
                };
                assert_eq!(g.pkt_num, w.pkt_num);
                assert!((before..=after).contains(&g.tv_sec), "restamped: {g:?}");
                assert_eq!(i64::from(g.pkt_tai), (g.tv_sec + 37) % 1024);
                assert_eq!(g.pkt_nsec, g.tv_usec * 1000);
                assert_eq!(g.wr_time().unwrap().0, g.tv_sec, "WR and node clocks agree");
            }
        }
    }
}

#[test]
fn without_restamp_the_files_are_the_fixture_bytes() {
    let fixtures = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let frames = fixtures.frame_count(ModuleId::new(3), DataProduct::Ph256) as u64;
    let replay = Replay::start(
        fixtures.clone(),
        ReplayConfig {
            frames: Some(frames),
            restamp: false,
            modules: vec![(ModuleId::new(3), ModuleId::new(3))],
            ..config(dir.path())
        },
    )
    .unwrap();
    replay.wait();
    replay.stop().unwrap();
    let (_, files) = run_files(dir.path(), 3);
    let written = std::fs::read(&files[0].1).unwrap();
    let fixture = std::fs::read(
        fixtures_dir().join("start_2024-07-25T04_34_46Z.dp_ph256.bpp_2.module_3.seqno_0.pff"),
    )
    .unwrap();
    assert!(written == fixture, "ph256 module 3 replayed byte for byte");
}

#[test]
fn files_rotate_to_the_next_seqno_after_frames_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let replay = Replay::start(
        fixtures(),
        ReplayConfig {
            frames: Some(25),
            frames_per_file: Some(10),
            modules: vec![(ModuleId::new(1), ModuleId::new(1))],
            ..config(dir.path())
        },
    )
    .unwrap();
    replay.wait();
    replay.stop().unwrap();
    let (_, files) = run_files(dir.path(), 1);
    for dp in [DataProduct::Img16, DataProduct::Ph256] {
        let counts: Vec<(u32, u64)> = files
            .iter()
            .filter(|(n, _)| n.dp == dp)
            .map(|(n, p)| {
                let layout = PffFile::open(p).unwrap().layout().unwrap();
                assert_eq!(layout.tail_bytes, 0);
                (n.seqno, layout.frames)
            })
            .collect();
        assert_eq!(counts, vec![(0, 10), (1, 10), (2, 5)], "{dp}");
    }
}

#[test]
fn modules_map_onto_the_output_ids_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let replay = Replay::start(
        fixtures(),
        ReplayConfig {
            frames: Some(5),
            modules: [(1, 200), (1, 201), (3, 202)]
                .map(|(a, b)| (ModuleId::new(a), ModuleId::new(b)))
                .to_vec(),
            ..config(dir.path())
        },
    )
    .unwrap();
    replay.wait();
    assert_eq!(replay.stop().unwrap().frames, 5 * 5);
    assert_eq!(
        module_dirs(dir.path()),
        ["module_200", "module_201", "module_202"]
    );
    for (module, dps) in [
        (200, vec![DataProduct::Img16, DataProduct::Ph256]),
        (201, vec![DataProduct::Img16, DataProduct::Ph256]),
        (202, vec![DataProduct::Ph256]),
    ] {
        let (_, files) = run_files(dir.path(), module);
        let got: Vec<(DataProduct, u32)> =
            files.iter().map(|(n, _)| (n.dp, n.module.get())).collect();
        let want: Vec<(DataProduct, u32)> = dps.into_iter().map(|dp| (dp, module)).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn a_running_replay_looks_live_and_stop_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let replay = Replay::start(
        fixtures(),
        ReplayConfig {
            rate: Some(200.0),
            ..config(dir.path())
        },
    )
    .unwrap();
    replay.wait(); // looping: returns at once
    let pid = std::fs::read_to_string(dir.path().join("daq_hashpipe_pid")).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());
    let run_name = std::fs::read_to_string(dir.path().join("daq_run_name")).unwrap();
    let run_name = run_name.trim();
    assert!(pff::RunName::parse(run_name).unwrap().runtype == "sim");
    for module in module_dirs(dir.path()) {
        let run = dir.path().join(&module).join(run_name);
        assert!(run.is_dir(), "{}", run.display());
        assert!(!run.join("recording_ended").exists());
    }
    let deadline = Instant::now() + PATIENCE;
    while replay.stats().frames < 10 {
        assert!(
            Instant::now() < deadline,
            "a looping replay at 200 frames/s wrote {} frames in {PATIENCE:?}",
            replay.stats().frames
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!replay.is_finished());
    let stats = replay.stop().unwrap();
    assert!(stats.finished && stats.frames >= 10);

    assert!(!dir.path().join("daq_hashpipe_pid").exists());
    for module in module_dirs(dir.path()) {
        let run = dir.path().join(&module).join(run_name);
        assert!(run.join("recording_ended").is_file(), "{}", run.display());
        for entry in std::fs::read_dir(&run).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "pff") {
                let layout = PffFile::open(&path).unwrap().layout().unwrap();
                assert_eq!(
                    layout.tail_bytes,
                    0,
                    "whole frames only: {}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn dropping_a_replay_also_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let replay = Replay::start(fixtures(), config(dir.path())).unwrap();
    drop(replay);
    assert!(!dir.path().join("daq_hashpipe_pid").exists());
    let (run, _) = run_files(dir.path(), 1);
    assert!(run.join("recording_ended").is_file());
}

#[test]
fn torn_writes_still_end_in_whole_frames() {
    let dir = tempfile::tempdir().unwrap();
    let replay = Replay::start(
        fixtures(),
        ReplayConfig {
            frames: Some(20),
            torn: true,
            modules: vec![(ModuleId::new(2), ModuleId::new(2))],
            ..config(dir.path())
        },
    )
    .unwrap();
    replay.wait();
    replay.stop().unwrap();
    let (_, files) = run_files(dir.path(), 2);
    assert_eq!(files.len(), 2, "img8 and ph1024");
    for (_, path) in files {
        let layout = PffFile::open(&path).unwrap().layout().unwrap();
        assert_eq!((layout.frames, layout.tail_bytes), (20, 0));
    }
}

#[test]
fn in_torn_mode_a_reader_meets_half_written_frames() {
    let dir = tempfile::tempdir().unwrap();
    let replay = Replay::start(
        fixtures(),
        ReplayConfig {
            rate: Some(100.0),
            frames: Some(100),
            torn: true,
            modules: vec![(ModuleId::new(3), ModuleId::new(3))],
            ..config(dir.path())
        },
    )
    .unwrap();
    let (_, files) = run_files(dir.path(), 3);
    let path = files[0].1.clone();
    // Each frame stays half-written for a quarter of its period; a reader
    // polling the size meets one long before the 100 frames are done.
    let mut torn_seen = false;
    let deadline = Instant::now() + PATIENCE;
    while !torn_seen && !replay.is_finished() {
        assert!(
            Instant::now() < deadline,
            "100 frames at 100 frames/s not done in {PATIENCE:?}"
        );
        let len = std::fs::metadata(&path).unwrap().len();
        torn_seen = len % 636 != 0;
    }
    replay.wait();
    replay.stop().unwrap();
    assert!(torn_seen, "a torn tail was visible while writing");
    let layout = PffFile::open(&path).unwrap().layout().unwrap();
    assert_eq!(
        (layout.frame_size, layout.frames, layout.tail_bytes),
        (636, 100, 0)
    );
}

#[test]
fn two_replays_in_one_process_do_not_interfere() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fixtures = fixtures();
    let first = Replay::start(
        fixtures.clone(),
        ReplayConfig {
            frames: Some(30),
            modules: vec![(ModuleId::new(1), ModuleId::new(10))],
            ..config(a.path())
        },
    )
    .unwrap();
    let second = Replay::start(
        fixtures,
        ReplayConfig {
            frames: Some(40),
            modules: vec![(ModuleId::new(3), ModuleId::new(20))],
            ..config(b.path())
        },
    )
    .unwrap();
    first.wait();
    second.wait();
    assert_eq!(first.stop().unwrap().frames, 2 * 30);
    assert_eq!(second.stop().unwrap().frames, 40);
    assert_eq!(module_dirs(a.path()), ["module_10"]);
    assert_eq!(module_dirs(b.path()), ["module_20"]);
    let (_, files) = run_files(b.path(), 20);
    let layout = PffFile::open(&files[0].1).unwrap().layout().unwrap();
    assert_eq!(layout.frames, 40);
}

#[test]
fn impossible_settings_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    for bad in [
        ReplayConfig {
            modules: vec![(ModuleId::new(7), ModuleId::new(1))],
            ..config(&out)
        },
        ReplayConfig {
            rate: Some(0.0),
            ..config(&out)
        },
        ReplayConfig {
            frames_per_file: Some(0),
            ..config(&out)
        },
    ] {
        let err = Replay::start(fixtures(), bad).err().unwrap();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }
    assert!(!out.exists());
}

/// A simulated status buffer under a keyfile of its own. `ftok` keeps 16
/// bits of the inode, so another process's key can collide: then another
/// directory is tried.
fn status_sim(interval: Duration) -> (tempfile::TempDir, daqsim::StatusSim) {
    let mut last = None;
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let config = daqsim::StatusSimConfig {
            interval,
            ..daqsim::StatusSimConfig::new(dir.path())
        };
        match daqsim::StatusSim::start(config) {
            Ok(sim) => return (dir, sim),
            Err(e) => last = Some(e),
        }
    }
    panic!("cannot start a status buffer: {last:?}");
}

#[test]
fn the_simulated_status_buffer_moves_and_is_removed_at_the_end() {
    use hpio::status::{PanosetiStatus, ReadError, StatusReader};
    let (_dir, sim) = status_sim(Duration::from_millis(5));
    let mut reader = StatusReader::new(sim.location().clone());
    let deadline = Instant::now() + PATIENCE;
    let mut states = std::collections::BTreeSet::new();
    let mut packets = Vec::new();
    // Until the net thread has been seen receiving and blocked, with the
    // packet count growing.
    while !(states.contains("receiving") && states.contains("blocked") && packets.len() > 1) {
        assert!(
            Instant::now() < deadline,
            "states {states:?}, packets {packets:?}"
        );
        let Ok(snapshot) = reader.read() else {
            continue;
        };
        let status = PanosetiStatus::from_snapshot(&snapshot);
        assert_eq!(
            snapshot.cards.get("OBS").and_then(|v| v.as_str()),
            Some("SIM")
        );
        if let Some(net) = status.thread_states[0].1.clone() {
            states.insert(net);
        }
        if let Some(n) = status.packets.filter(|&n| n > 0) {
            if packets.last() != Some(&n) {
                packets.push(n);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(packets.windows(2).all(|w| w[0] < w[1]), "{packets:?}");
    sim.stop();
    assert!(matches!(reader.read(), Err(ReadError::NoSegment { .. })));
}
