//! The fixtures: what they hold, that the compiled-in copy is the same, and
//! that the commands in fixtures/README.md regenerate them.

use std::path::PathBuf;
use std::process::Command;

use daqsim::Fixtures;
use pff::DataProduct;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures"))
}

fn lick() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/pff-samples/lick-2024-07-25"
    ));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is absent", dir.display());
        None
    }
}

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
fn loading_the_lick_run_drops_the_torn_tails() {
    let Some(dir) = lick() else { return };
    let f = Fixtures::load(&dir).unwrap();
    assert_eq!(f.frame_count(1, DataProduct::Img16), 4128);
    assert_eq!(f.frame_count(3, DataProduct::Ph256), 16487);
    assert_eq!(f.cadence(1, DataProduct::Img16), Some(1000.0));
}

#[test]
fn the_readme_commands_regenerate_the_fixtures_byte_for_byte() {
    let Some(lick) = lick() else { return };
    let out = tempfile::tempdir().unwrap();
    let sample = |dp: &str, module: u32| {
        lick.join(format!(
            "start_2024-07-25T04_34_46Z.dp_{dp}.bpp_2.module_{module}.seqno_0.debug_TRUNCATED.pff"
        ))
    };
    let run = |args: &[&str]| {
        let status = Command::new(env!("CARGO_BIN_EXE_daqsim"))
            .args(args)
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap();
        assert!(status.status.success(), "{args:?}: {status:?}");
    };
    let img16 = sample("img16", 1);
    let ph256 = sample("ph256", 1);
    run(&["cut", img16.to_str().unwrap(), "--frames", "300"]);
    run(&["cut", ph256.to_str().unwrap(), "--frames", "400"]);
    run(&[
        "cut",
        sample("ph256", 3).to_str().unwrap(),
        "--frames",
        "400",
    ]);
    run(&[
        "synth",
        "--img16",
        img16.to_str().unwrap(),
        "--ph256",
        ph256.to_str().unwrap(),
        "--frames",
        "200",
        "--module",
        "2",
    ]);
    let mut made = 0;
    for entry in std::fs::read_dir(out.path()).unwrap() {
        let path = entry.unwrap().path();
        let kept = fixtures_dir().join(path.file_name().unwrap());
        assert!(
            std::fs::read(&path).unwrap() == std::fs::read(&kept).unwrap(),
            "{} differs from {}",
            path.display(),
            kept.display()
        );
        made += 1;
    }
    assert_eq!(made, 5);
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
