//! The `daqsim` command: the commands in fixtures/README.md regenerate the
//! fixtures, and a replay from the command line ends its run.

use std::path::Path;
use std::process::Command;

use testdata::{fixtures_dir, Origin};

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
/// when `prefix`, its first bytes (and shorter).
/// Returns how many files there were.
fn compare_with_fixtures(made: &Path, prefix: bool) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(made).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let new = std::fs::read(&path).unwrap();
        let kept = std::fs::read(fixtures_dir().join(&name)).unwrap();
        if prefix {
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
    // always from the fixtures themselves, with fewer frames so that no
    // output is its own input: cutting 100 frames gives each fixture's
    // first 100, and their 400 ph256 frames make 100 ph1024 frames (four
    // each), the first 100 of the synthetic fixtures.
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
        let (img16_frames, ph256_frames, synth_frames) = match origin {
            Origin::Fixtures => ("100", "100", "100"),
            Origin::Shared => ("300", "400", "200"),
        };
        let out = tempfile::tempdir().unwrap();
        let (img16, ph256) = (recording("img16", 1), recording("ph256", 1));
        daqsim(&["cut", &img16, "--frames", img16_frames], out.path());
        daqsim(&["cut", &ph256, "--frames", ph256_frames], out.path());
        daqsim(
            &["cut", &recording("ph256", 3), "--frames", ph256_frames],
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

#[test]
fn the_command_line_keeps_a_status_buffer_until_stopped() {
    use hpio::status::{ReadError, StatusLocation, StatusReader};
    use std::io::{BufRead, BufReader};
    let keyfile = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_daqsim"))
        .args(["--hashpipe-status", "--hashpipe-keyfile"])
        .arg(keyfile.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("Hashpipe status buffer: keyfile"), "{line}");
    let mut reader = StatusReader::new(StatusLocation::new(keyfile.path(), 0).unwrap());
    let snapshot = reader.read().unwrap();
    assert!(snapshot.cards.get("NETSTAT").is_some(), "{snapshot:?}");
    // SIGTERM, as systemd or a shell's kill sends it.
    let killed = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("status buffer removed"), "{line}");
    assert!(matches!(reader.read(), Err(ReadError::NoSegment { .. })));
}
