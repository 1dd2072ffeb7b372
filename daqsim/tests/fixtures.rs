//! The fixtures: what they hold, that the compiled-in copy is the same, and
//! that the commands in fixtures/README.md regenerate them.

use std::path::Path;
use std::process::Command;

use daqsim::Fixtures;
use pff::DataProduct;
use testdata::{fixtures_dir, Origin};

#[test]
fn the_fixtures_cover_all_four_data_products() {
    let f = Fixtures::load(&fixtures_dir()).unwrap();
    assert_eq!(
        f.streams(),
        [
            (1, DataProduct::Img16),
            (1, DataProduct::Ph256),
            (2, DataProduct::Img8),
            (2, DataProduct::Ph1024),
            (3, DataProduct::Ph256),
        ]
    );
    // data_config.json: integration_time_usec 1000.
    assert_eq!(f.cadence(1, DataProduct::Img16), Some(1000.0));
    let ph = f.cadence(3, DataProduct::Ph256).unwrap();
    assert!(ph > 1.0 && ph < 100.0, "recorded pulse-height rate {ph}");
}

#[test]
fn the_embedded_fixtures_equal_the_fixtures_directory() {
    assert!(Fixtures::embedded() == Fixtures::load(&fixtures_dir()).unwrap());
}

#[test]
fn a_directory_without_pff_files_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = Fixtures::load(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn loading_a_lick_run_directory_keeps_only_whole_frames() {
    // fixtures/ always; the shared Lick directory, whose files end in torn
    // frames, when present.
    for dir in testdata::lick_dirs() {
        let f = Fixtures::load(&dir).unwrap();
        for (dp, module) in [(DataProduct::Img16, 1), (DataProduct::Ph256, 3)] {
            let sample = testdata::lick_samples(dp.name(), module)
                .into_iter()
                .find(|s| s.path.parent() == Some(dir.as_path()))
                .unwrap();
            assert_eq!(
                f.frame_count(module, dp),
                sample.frames as usize,
                "{sample}"
            );
            let last = f.frame(module, dp, sample.frames as usize - 1).unwrap();
            let on_disk = pff::PffFile::open(&sample.path)
                .unwrap()
                .read_raw(sample.frames - 1)
                .unwrap();
            assert_eq!(last.as_bytes(), on_disk.as_bytes(), "{sample}");
        }
        assert_eq!(f.cadence(1, DataProduct::Img16), Some(1000.0));
    }
}

/// Runs `daqsim ARGS --out OUT`, which must succeed.
fn daqsim(args: &[&str], out: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_daqsim"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
}

/// Checks each file in `made` against the fixture of its name: equal, or,
/// for the synthetic products when `synth_prefix`, its first bytes.
/// Returns how many files there were.
fn compare_with_fixtures(made: &Path, synth_prefix: bool) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(made).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let new = std::fs::read(&path).unwrap();
        let kept = std::fs::read(fixtures_dir().join(&name)).unwrap();
        let synthetic = name.contains(".dp_img8.") || name.contains(".dp_ph1024.");
        if synth_prefix && synthetic {
            assert!(
                new.len() < kept.len() && kept.starts_with(&new),
                "{name} is not the start of the fixture"
            );
        } else {
            assert!(new == kept, "{name} differs from the fixture");
        }
        n += 1;
    }
    n
}

#[test]
fn the_readme_commands_regenerate_the_fixtures_byte_for_byte() {
    // From the shared samples as fixtures/README.md says, when present; and
    // always from the fixtures themselves: cutting them gives them back,
    // and their 400 ph256 frames make 100 ph1024 frames (four each), the
    // first 100 of the synthetic fixtures.
    let mut origins = vec![Origin::Fixtures];
    if testdata::shared_samples().is_some() {
        origins.push(Origin::Shared);
    }
    for origin in origins {
        let recording = |dp: &str, module: u32| {
            let s = testdata::lick_samples(dp, module)
                .into_iter()
                .find(|s| s.origin == origin)
                .unwrap();
            s.path.to_str().unwrap().to_string()
        };
        let synth_frames = match origin {
            Origin::Fixtures => "100",
            Origin::Shared => "200",
        };
        let out = tempfile::tempdir().unwrap();
        let (img16, ph256) = (recording("img16", 1), recording("ph256", 1));
        daqsim(&["cut", &img16, "--frames", "300"], out.path());
        daqsim(&["cut", &ph256, "--frames", "400"], out.path());
        daqsim(
            &["cut", &recording("ph256", 3), "--frames", "400"],
            out.path(),
        );
        daqsim(
            &[
                "synth",
                "--img16",
                &img16,
                "--ph256",
                &ph256,
                "--frames",
                synth_frames,
                "--module",
                "2",
            ],
            out.path(),
        );
        let made = compare_with_fixtures(out.path(), origin == Origin::Fixtures);
        assert_eq!(made, 5, "{origin:?}");
    }
}

#[test]
fn the_command_line_replays_n_frames_and_ends_the_run() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_daqsim"))
        .arg("--replay")
        .arg(fixtures_dir())
        .arg("--out")
        .arg(out.path())
        .args(["--rate", "2000", "--frames", "50", "--modules", "1:7"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&out.path().display().to_string()),
        "prints where: {stdout}"
    );
    assert!(stdout.contains("wrote 100 frames"), "{stdout}");
    assert!(!out.path().join("daq_hashpipe_pid").exists());
}
