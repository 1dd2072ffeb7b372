//! Bad files and vanishing directories: each is logged once with its path
//! and skipped, and everything else is still followed.

use crate::common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use pff::DataProduct::{Img16, Ph256};

const START: i64 = 1_721_882_046;

/// Every warning of every test in this binary; each test looks for its own
/// (temporary, so unique) paths.
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Warnings that name `path` and say `what`.
fn warnings(path: &Path, what: &str) -> usize {
    let log = log();
    let text = String::from_utf8_lossy(&log.lock().unwrap()).to_string();
    let path = path.display().to_string();
    text.lines()
        .filter(|l| l.contains("WARN") && l.contains(&path) && l.contains(what))
        .count()
}

/// A good module 1 file beside the bad input, to show tracking goes on.
struct Beside {
    frames: Vec<Vec<u8>>,
    file: std::path::PathBuf,
}

impl Beside {
    fn new(daq: &Daq) -> Self {
        let frames = sample_frames(Img16, 1, 20);
        let file = daq.run(Some(1), START).file(Img16, 1, 0);
        append(&file, &frames[..2]);
        Beside { frames, file }
    }

    /// Appends frame `i` and waits until it is handed on.
    fn still_followed(&self, tracked: &mut Tracked, i: usize) {
        append(&self.file, &self.frames[i..i + 1]);
        tracked.until("the good file", |ev| has(ev, &self.file, i as u64));
    }
}

#[test]
fn a_header_that_is_not_json_or_not_pff_is_skipped_and_logged_once() {
    let _ = log();
    for poll_only in MODES {
        let daq = Daq::new();
        let good = Beside::new(&daq);
        let run = daq.run(Some(2), START);
        let not_json = run.file(Ph256, 2, 0);
        let mut frame = b"{ this is not json }\n\n*".to_vec();
        frame.extend_from_slice(&[7; 512]);
        append(&not_json, &[frame.clone(), frame.clone()]);
        let run5 = daq.run(Some(5), START);
        let not_pff = run5.file(Img16, 5, 0);
        common::create(&not_pff, &[0xff; 5000]);

        let mut tracked = track(daq.path(), poll_only, vec![]);
        good.still_followed(&mut tracked, 2);
        append(&not_json, &[frame.clone()]);
        append(&not_pff, &[vec![0xfe; 3000]]);
        good.still_followed(&mut tracked, 3);
        tracked.drain(Duration::from_millis(200));
        good.still_followed(&mut tracked, 4);
        tracked.stop();
        assert!(tracked.events.iter().all(|e| e.module == 1));
        assert_eq!(warnings(&not_json, "not a PFF file"), 1);
        assert_eq!(warnings(&not_pff, "not a PFF file"), 1);
    }
}

#[test]
fn a_file_that_shrinks_is_followed_from_its_new_end() {
    let _ = log();
    let frames = sample_frames(Ph256, 1, 20);
    let other = sample_frames(Ph256, 3, 20);
    for poll_only in MODES {
        let daq = Daq::new();
        let f = daq.run(Some(1), START).file(Ph256, 1, 0);
        append(&f, &frames[..10]);
        let mut tracked = track(daq.path(), poll_only, vec![]);
        tracked.until("frame 9", |ev| has(ev, &f, 9));
        // Cut back to 3 frames and a torn one, then write other frames.
        fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(3 * 636 + 100)
            .unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(3 * 636)
            .unwrap();
        append(&f, &other[..5]);
        tracked.until("frame 7 of the rewritten file", |ev| {
            ev.iter()
                .any(|e| e.frame_index == 7 && e.frame.as_bytes() == &other[4][..])
        });
        tracked.stop();
        let content = fs::read(&f).unwrap();
        let cut = tracked
            .events
            .iter()
            .position(|e| e.frame_index == 9)
            .unwrap();
        for (n, e) in tracked.events.iter().enumerate() {
            let at = e.frame_index as usize * 636;
            let written = if n <= cut {
                &frames[e.frame_index as usize][..]
            } else {
                &content[at..at + 636]
            };
            assert_eq!(e.frame.as_bytes(), written, "frame {}", e.frame_index);
        }
        assert!(warnings(&f, "shrank") >= 1);
    }
}

#[test]
fn a_file_replaced_by_another_is_followed_from_the_new_one() {
    let _ = log();
    let frames = sample_frames(Ph256, 1, 10);
    let other = sample_frames(Ph256, 3, 10);
    for poll_only in MODES {
        let daq = Daq::new();
        let f = daq.run(Some(1), START).file(Ph256, 1, 0);
        append(&f, &frames[..8]);
        let mut tracked = track(daq.path(), poll_only, vec![]);
        tracked.until("frame 7", |ev| has(ev, &f, 7));
        let tmp = daq.path().join("replacement");
        append(&tmp, &other[..3]);
        fs::rename(&tmp, &f).unwrap();
        tracked.until("the replacement's newest frame", |ev| {
            ev.iter()
                .any(|e| e.frame_index == 2 && e.frame.as_bytes() == &other[2][..])
        });
        append(&f, &other[3..4]);
        tracked.until("the replacement's next frame", |ev| {
            ev.iter()
                .any(|e| e.frame_index == 3 && e.frame.as_bytes() == &other[3][..])
        });
        tracked.stop();
        // The new file's indexes start again; seq still rises by one.
        for (n, e) in tracked.events.iter().enumerate() {
            assert_eq!(e.seq, n as u64 + 1);
        }
        assert_eq!(warnings(&f, "replaced"), 1);
    }
}

#[test]
fn a_frame_size_change_inside_a_file_is_never_handed_on() {
    let _ = log();
    let frames = sample_frames(Img16, 1, 30);
    for poll_only in MODES {
        let daq = Daq::new();
        let good = Beside::new(&daq);
        let f = daq.run(Some(4), START).file(Img16, 4, 0);
        append(&f, &frames[..5]);
        let mut tracked = track(daq.path(), poll_only, vec![]);
        tracked.until("frame 4", |ev| has(ev, &f, 4));
        // Wider headers: still PFF frames, but no longer where the first
        // frame's size says.
        let wide: Vec<Vec<u8>> = frames[5..30]
            .iter()
            .map(|fr| {
                let end = fr.windows(3).position(|w| w == b"\n\n*").unwrap();
                [&fr[..end], b"       ", &fr[end..]].concat()
            })
            .collect();
        for w in &wide {
            append(&f, std::slice::from_ref(w));
            std::thread::sleep(Duration::from_millis(2));
        }
        good.still_followed(&mut tracked, 2);
        tracked.drain(Duration::from_millis(200));
        tracked.stop();
        for e in tracked.of(4, Img16) {
            assert!(e.frame_index < 5, "frame {} was handed on", e.frame_index);
            assert_eq!(e.frame.as_bytes(), &frames[e.frame_index as usize][..]);
        }
        assert_eq!(warnings(&f, "not where the first frame's size puts it"), 1);
    }
}

#[test]
fn an_unreadable_file_is_logged_once_and_followed_once_readable() {
    use std::os::unix::fs::PermissionsExt;
    let _ = log();
    let frames = sample_frames(Ph256, 3, 10);
    let daq = Daq::new();
    let good = Beside::new(&daq);
    let f = daq.run(Some(3), START).file(Ph256, 3, 0);
    append(&f, &frames[..3]);
    fs::set_permissions(&f, fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads files whatever their mode (and CI runs as root): the
    // tracker is started from a thread that gave up that power, which its
    // own thread inherits.
    let data_dir = daq.path().to_path_buf();
    let unreadable = f.clone();
    let mut tracked = std::thread::spawn(move || {
        use testdata::caps;
        caps::drop_capabilities(caps::DAC_OVERRIDE | caps::DAC_READ_SEARCH);
        let err = fs::File::open(&unreadable).expect_err("a mode-000 file opened");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
        track(&data_dir, true, vec![])
    })
    .join()
    .unwrap();
    good.still_followed(&mut tracked, 2);
    tracked.drain(Duration::from_millis(100));
    good.still_followed(&mut tracked, 3);
    assert!(tracked.of(3, Ph256).is_empty());
    assert_eq!(warnings(&f, "cannot open"), 1);
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    tracked.until("the file once readable", |ev| has(ev, &f, 2));
    tracked.stop();
    assert_eq!(
        tracked.of(3, Ph256).last().unwrap().frame.as_bytes(),
        &frames[2][..]
    );
    assert_eq!(warnings(&f, "cannot open"), 1, "logged once, not per tick");
}

#[test]
fn a_vanishing_module_directory_leaves_the_others_followed() {
    let _ = log();
    let ph = sample_frames(Ph256, 3, 10);
    for poll_only in MODES {
        let daq = Daq::new();
        let good = Beside::new(&daq);
        let f3 = daq.run(Some(3), START).file(Ph256, 3, 0);
        append(&f3, &ph[..3]);
        let mut tracked = track(daq.path(), poll_only, vec![]);
        tracked.until("module 3", |ev| has(ev, &f3, 2));
        fs::remove_dir_all(daq.path().join("module_3")).unwrap();
        good.still_followed(&mut tracked, 2);
        tracked.drain(Duration::from_millis(100));
        good.still_followed(&mut tracked, 3);
        // And it is followed again when it comes back.
        let back = daq.run(Some(3), START + 5).file(Ph256, 3, 0);
        append(&back, &ph[..4]);
        tracked.until("module 3 back", |ev| has(ev, &back, 3));
        tracked.stop();
        assert_ordered(&tracked.events);
    }
}

#[test]
fn a_data_directory_that_vanishes_and_returns_is_followed_again() {
    let _ = log();
    let ph = sample_frames(Ph256, 3, 10);
    for poll_only in MODES {
        let parent = Daq::new();
        let data = parent.path().join("data");
        fs::create_dir(&data).unwrap();
        let run = Run {
            dir: data
                .join("module_3")
                .join("obs_X.start_2024-07-25T04:34:06Z.runtype_t.pffd"),
            start: START,
        };
        fs::create_dir_all(&run.dir).unwrap();
        let f = run.file(Ph256, 3, 0);
        append(&f, &ph[..2]);
        let mut tracked = track(&data, poll_only, vec![]);
        tracked.until("frame 1", |ev| has(ev, &f, 1));
        fs::remove_dir_all(&data).unwrap();
        // Said once, while it is gone (waited for, not timed).
        let deadline = std::time::Instant::now() + PATIENCE;
        while warnings(&data, "cannot list the data directory") == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "poll_only={poll_only}: no warning {PATIENCE:?} after the data directory vanished"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        fs::create_dir_all(&run.dir).unwrap();
        append(&f, &ph[..5]);
        tracked.until("frame 4 after the return", |ev| has(ev, &f, 4));
        tracked.stop();
        assert_eq!(
            warnings(&data, "cannot list the data directory"),
            1,
            "poll_only={poll_only}"
        );
    }
}

#[test]
fn a_pff_name_that_cannot_be_read_is_logged_once_even_as_root() {
    let _ = log();
    for poll_only in MODES {
        let daq = Daq::new();
        let good = Beside::new(&daq);
        // A directory with a PFF file's name: opens, but every read fails.
        let f = daq.run(Some(3), START).file(Ph256, 3, 0);
        fs::create_dir(&f).unwrap();
        let mut tracked = track(daq.path(), poll_only, vec![]);
        good.still_followed(&mut tracked, 2);
        tracked.drain(Duration::from_millis(100));
        good.still_followed(&mut tracked, 3);
        tracked.stop();
        assert!(tracked.of(3, Ph256).is_empty());
        assert_eq!(
            warnings(&f, "cannot read PFF file"),
            1,
            "poll_only={poll_only}"
        );
    }
}
