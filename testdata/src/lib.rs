//! Where the tests find real PANOSETI frames.
//!
//! # Brief overview
//!
//! Two sets of files hold recorded frames of the same Lick run
//! (2024-07-25):
//!
//! - the repository's `fixtures/` ([`fixtures_dir`]): the first whole
//!   frames of each recording, plus two synthetic products; always there;
//!   with them, `testdata/pypff/`: the first frame of the `pypff` example
//!   file, so its header variant (no White Rabbit time) is always tested;
//! - the full-size samples in `../shared/pff-samples` beside the checkout
//!   ([`shared_samples`]): 10 MiB cuts that end in torn frames, and a
//!   `pypff` file; always there in CI, maybe not on a laptop.
//!
//! [`samples`] lists every PFF file of both, each a [`Sample`] carrying
//! what `fixtures/README.md` and `SOURCES.md` state of it. A test loops
//! over that list: it checks recorded data wherever it runs, and the
//! full-size files too where they are. Nothing is skipped.
//!
//! Setting [`NO_SHARED_SAMPLES`] (`DAQDATA_NO_SHARED_SAMPLES=1`) runs the
//! tests as on a machine without `../shared`. [`sample_set`] says in one
//! line which set a run tests; this crate's own tests print it.
//!
//! With the `server` feature, [`server`] runs a `daqdata-server` process
//! for a test: started, waited on until it answers, stopped ([`stop`]).
//!
//! ```
//! for sample in testdata::samples() {
//!     let len = std::fs::metadata(&sample.path).unwrap().len();
//!     assert_eq!(len, sample.frames * sample.frame_size + sample.tail_bytes, "{sample}");
//! }
//! ```

use std::fmt;
use std::path::PathBuf;

pub mod caps;
#[cfg(feature = "server")]
pub mod server;

/// Set (to anything but empty or `0`) to act as if the shared samples were
/// absent.
pub const NO_SHARED_SAMPLES: &str = "DAQDATA_NO_SHARED_SAMPLES";

/// The Lick run's directory among the shared samples.
const LICK: &str = "lick-2024-07-25";
/// The `pypff` example file's directory among the shared samples.
const PYPFF: &str = "pypff-2025-08-02";
/// The `pypff` example file's name.
const PYPFF_FILE: &str = "start_2025-08-02T05_31_36Z.dp_ph256.bpp_2.module_254.seqno_0.pff";
/// The Lick files' common name start.
const LICK_START: &str = "start_2024-07-25T04_34_46Z";

/// The workspace root (the directory holding `fixtures/`).
pub fn workspace_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The repository's `fixtures/`.
pub fn fixtures_dir() -> PathBuf {
    workspace_dir().join("fixtures")
}

/// `../shared/pff-samples` beside the checkout, when it is there and not
/// hidden by [`NO_SHARED_SAMPLES`].
pub fn shared_samples() -> Option<PathBuf> {
    let hidden = std::env::var_os(NO_SHARED_SAMPLES).is_some_and(|v| !v.is_empty() && v != "0");
    let dir = workspace_dir().join("../shared/pff-samples");
    (!hidden && dir.is_dir()).then_some(dir)
}

/// Directories laid out as a Lick run directory (PFF files,
/// `daq_config.json`, `data_config.json`): `fixtures/` always, then the
/// shared Lick samples when present.
pub fn lick_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![fixtures_dir()];
    dirs.extend(shared_samples().map(|s| s.join(LICK)));
    dirs
}

/// The first frame of the `pypff` example file, in the repository (not in
/// `fixtures/`, which `daqsim` replays as a Lick run).
pub fn pypff_fixture_dir() -> PathBuf {
    workspace_dir().join("testdata").join("pypff")
}

/// Which set a sample belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// In the repository: `fixtures/` and `testdata/pypff/`.
    Fixtures,
    /// The full-size shared samples.
    Shared,
}

/// One PFF file to test, and what its README says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Where the file is.
    pub path: PathBuf,
    /// Which sample set it belongs to.
    pub origin: Origin,
    /// Data product as named in file names: `img16`, `img8`, `ph256`, `ph1024`.
    pub dp: &'static str,
    /// Module id, from the file name.
    pub module: u32,
    /// Complete frames.
    pub frames: u64,
    /// Bytes per frame.
    pub frame_size: u64,
    /// Bytes of the torn frame at the end (0: ends on a whole frame).
    pub tail_bytes: u64,
    /// Recorded by a telescope (false: made by the project's writer).
    pub recorded: bool,
    /// Part of the Lick run (false: the `pypff` example file).
    pub lick: bool,
}

impl Sample {
    /// The file name.
    pub fn file_name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = match self.origin {
            Origin::Fixtures => "fixtures",
            Origin::Shared => "shared",
        };
        write!(f, "{set}/{}", self.file_name())
    }
}

/// Every PFF file to test: the fixtures, then the shared samples when
/// present.
pub fn samples() -> Vec<Sample> {
    // (data product, bytes per pixel, module, complete frames, frame size,
    // torn tail, recorded)
    type Facts = (&'static str, u64, u32, u64, u64, u64, bool);
    let lick = |dir: &PathBuf, origin, suffix: &str, facts: &[Facts]| -> Vec<Sample> {
        facts
            .iter()
            .map(
                |&(dp, bpp, module, frames, frame_size, tail_bytes, recorded)| Sample {
                    path: dir.join(format!(
                        "{LICK_START}.dp_{dp}.bpp_{bpp}.module_{module}.seqno_0{suffix}.pff"
                    )),
                    origin,
                    dp,
                    module,
                    frames,
                    frame_size,
                    tail_bytes,
                    recorded,
                    lick: true,
                },
            )
            .collect()
    };
    // fixtures/README.md.
    let mut all = lick(
        &fixtures_dir(),
        Origin::Fixtures,
        "",
        &[
            ("img16", 2, 1, 300, 2540, 0, true),
            ("ph256", 2, 1, 400, 636, 0, true),
            ("ph256", 2, 3, 400, 636, 0, true),
            ("img8", 1, 2, 200, 1516, 0, false),
            ("ph1024", 2, 2, 200, 2540, 0, false),
        ],
    );
    let pypff = |dir: PathBuf, origin, frames| Sample {
        path: dir.join(PYPFF_FILE),
        origin,
        dp: "ph256",
        module: 254,
        frames,
        frame_size: 636,
        tail_bytes: 0,
        recorded: true,
        lick: false,
    };
    // Its first frame's bytes (also pff's fuzz seed `ph256_pypff`).
    all.push(pypff(pypff_fixture_dir(), Origin::Fixtures, 1));
    // ../shared/pff-samples/SOURCES.md.
    if let Some(shared) = shared_samples() {
        all.extend(lick(
            &shared.join(LICK),
            Origin::Shared,
            ".debug_TRUNCATED",
            &[
                ("img16", 2, 1, 4128, 2540, 640, true),
                ("ph256", 2, 1, 16487, 636, 28, true),
                ("ph256", 2, 3, 16487, 636, 28, true),
            ],
        ));
        all.push(pypff(shared.join(PYPFF), Origin::Shared, 88));
    }
    all
}

/// One line naming the sample set this run tests: the repository's files
/// only, or those and the shared samples (which recordings, how many
/// frames, how many end torn).
pub fn sample_set() -> String {
    let all = samples();
    let count = |origin| all.iter().filter(|s| s.origin == origin).count();
    let shared: Vec<String> = all
        .iter()
        .filter(|s| s.origin == Origin::Shared)
        .map(|s| {
            let torn = if s.tail_bytes > 0 { ", torn tail" } else { "" };
            let recording = s
                .path
                .parent()
                .and_then(|d| d.file_name())
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!(
                "{recording} {} module {} ({} frames{torn})",
                s.dp, s.module, s.frames
            )
        })
        .collect();
    if shared.is_empty() {
        format!(
            "sample set: fixtures only ({} files; no ../shared/pff-samples, or {NO_SHARED_SAMPLES} set): the full-size recordings with torn tails are not tested",
            count(Origin::Fixtures)
        )
    } else {
        format!(
            "sample set: fixtures ({} files) + ../shared/pff-samples: {}",
            count(Origin::Fixtures),
            shared.join(", ")
        )
    }
}

/// The Lick samples of `dp` and `module`: the fixture, then the
/// full-size one when present.
pub fn lick_samples(dp: &str, module: u32) -> Vec<Sample> {
    samples()
        .into_iter()
        .filter(|s| s.lick && s.dp == dp && s.module == module)
        .collect()
}

/// The fixture of `dp` and `module` (always present).
///
/// # Panics
/// When `fixtures/` holds no such file: see `fixtures/README.md`.
pub fn fixture(dp: &str, module: u32) -> Sample {
    lick_samples(dp, module)
        .into_iter()
        .find(|s| s.origin == Origin::Fixtures)
        .unwrap_or_else(|| panic!("fixtures/ holds no {dp} file of module {module}"))
}

/// The full-size shared Lick sample of `dp` and `module`, when present.
pub fn shared_sample(dp: &str, module: u32) -> Option<Sample> {
    lick_samples(dp, module)
        .into_iter()
        .find(|s| s.origin == Origin::Shared)
}

/// Stops a server process the way systemd does: SIGTERM, up to 10 s to
/// finish, then SIGKILL. A server killed outright leaves its simulated run
/// in /tmp (`daqdata-sim-*`, up to 150 MB), which fills a test machine's
/// disk run after run.
pub fn stop(child: &mut std::process::Child) {
    // Reaped already (a stop before a drop): its pid may be another
    // process's by now, so it gets no signal.
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Says which set this run tests, in `cargo test`'s output: written to
    /// the process's stderr, which the test harness does not capture.
    #[test]
    fn the_sample_set_is_named() {
        use std::io::Write;
        let line = sample_set();
        assert!(line.starts_with("sample set: fixtures"), "{line}");
        assert_eq!(
            line.contains("../shared/pff-samples:"),
            shared_samples().is_some(),
            "{line}"
        );
        let _ = writeln!(std::io::stderr(), "\n{line}");
    }

    #[test]
    fn every_listed_file_has_the_length_its_facts_give() {
        let all = samples();
        assert!(all.iter().filter(|s| s.origin == Origin::Fixtures).count() == 6);
        for s in all {
            let len = std::fs::metadata(&s.path)
                .unwrap_or_else(|e| panic!("{}: {e}", s.path.display()))
                .len();
            assert_eq!(len, s.frames * s.frame_size + s.tail_bytes, "{s}");
        }
    }

    #[test]
    fn every_lick_directory_has_the_run_configs() {
        for dir in lick_dirs() {
            for name in ["daq_config.json", "data_config.json"] {
                assert!(dir.join(name).is_file(), "{}/{name}", dir.display());
            }
        }
    }
}
