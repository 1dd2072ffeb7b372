//! The `daqdata-server` command line as an operator uses it: checking a
//! config before a restart, and logs that suit files, journald and log
//! shippers.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn server() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_daqdata-server"));
    c.env_remove("RUST_BACKTRACE");
    c
}

fn check(config: &Path) -> Output {
    server()
        .arg("--check-config")
        .arg(config)
        .output()
        .expect("daqdata-server runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_accepts_a_good_file_and_names_what_is_wrong_with_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let hp_io = write(
        "hp_io_config.json",
        r#"{"data_dir": "/mnt/panoseti", "update_interval_seconds": 0.1, "simulate_daq": false}"#,
    );
    let good = write(
        "good.toml",
        &format!(
            "listen = [\"127.0.0.1:50051\", \"unix:///tmp/daq_data.sock\"]\ninit_hp_io_config = \"{}\"\n",
            hp_io.display()
        ),
    );
    let out = check(&good);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("good") && said.contains("127.0.0.1:50051") && said.contains("/mnt/panoseti"),
        "{said}"
    );

    let cases = [
        (
            "typo.toml",
            "max_concurent_rpcs = 3\n",
            "max_concurent_rpcs",
        ),
        ("addr.toml", "listen = [\"50051\"]\n", "50051"),
        (
            "zero.toml",
            "max_concurrent_rpcs = 0\n",
            "max_concurrent_rpcs",
        ),
        (
            "missing_init.toml",
            "init_hp_io_config = \"no_such_hp_io_config.json\"\n",
            "no_such_hp_io_config.json",
        ),
        (
            "json.json",
            "{\"max_concurrent_rpcs\": \"many\"}",
            "max_concurrent_rpcs",
        ),
    ];
    for (name, body, named) in cases {
        let path = write(name, body);
        let out = check(&path);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(named), "{name} should name {named}: {err}");
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
    }
    let out = check(&dir.path().join("absent.toml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("absent.toml"));
}

/// SPEC §8: the DAQ node's example config starts Hashpipe's socket feed at
/// boot, from the hp_io_config.json beside it, and waits for the run.
#[test]
fn the_daq_node_example_config_starts_the_socket_feed_at_boot() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist");
    let out = check(&dist.join("daq_data_server.toml"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("at start tracks data_dir /mnt/panoseti")
            && said.contains("waiting for a run if none is active")
            && said.contains("Hashpipe's sockets listen at /tmp/hashpipe_grpc.dp_{dp_name}.sock"),
        "{said}"
    );
    let hp_io = daqdata_proto::HpIoConfig::load(dist.join("hp_io_config.json")).unwrap();
    assert!(!hp_io.simulate_daq && hp_io.data_dir == "/mnt/panoseti");
}

/// Runs the server briefly on a private socket and returns its stderr.
fn logs_of(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let mut child = server()
        .args(["--listen", &format!("unix://{}", sock.display())])
        .args(["--metrics-listen", ""])
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("daqdata-server starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGTERM: a graceful shutdown that logs it.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("stderr is read");
    assert!(sock.exists() || !out.stderr.is_empty(), "the server ran");
    text(&out.stderr)
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes_and_json_logs_are_json() {
    let plain = logs_of(&[]);
    assert!(plain.contains("listening on unix://"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "escape codes in logs to a pipe: {plain:?}"
    );

    let json = logs_of(&["--log-format", "json"]);
    let lines: Vec<&str> = json.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v.get("level").is_some() && v.get("fields").is_some(),
            "{line}"
        );
    }
    assert!(json.contains("listening on unix://"), "{json}");
}
