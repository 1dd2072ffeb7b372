//! The `daqdata` command line against small in-test DaqData servers that
//! stream real recorded frames, and against the real server binary.

use crate::common;

use std::time::Duration;

use common::{daqdata, FakeServer, RealServer};

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_snapshots_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let host = FakeServer::new("daq1").serve_unix(dir.path()).to_string();
    let png = dir.path().join("both.png");
    let out = tokio::task::spawn_blocking({
        let (host, png) = (host.clone(), png.clone());
        move || {
            daqdata()
                .args([
                    "--host",
                    &host,
                    "--plot-view",
                    "--plot-phdist",
                    "--snapshot",
                ])
                .arg(&png)
                .args(["--snapshot-frames", "12", "--refresh-period", "0"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let picture = image::open(&png).unwrap();
    assert!(picture.width() > 1000 && picture.height() > 600);

    let out = tokio::task::spawn_blocking(move || {
        let mut child = daqdata()
            .args([
                "--host",
                &host,
                "--json",
                "--module-ids",
                "3",
                "--refresh-period",
                "0",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let first: Vec<String> = (&mut lines).take(3).map(Result::unwrap).collect();
        drop(lines);
        // Closing the pipe ends it like `| head` would.
        let status = child.wait().unwrap();
        (first, status)
    })
    .await
    .unwrap();
    let (lines, status) = out;
    assert!(status.success());
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["module_id"], 3);
        assert_eq!(v["image_array"].as_array().unwrap().len(), 256);
        assert!(v["node_time"].as_f64().is_some());
    }
}

#[test]
fn the_command_line_names_unreachable_hosts() {
    let out = daqdata()
        .args(["--host", "unix:///nonexistent/daq.sock", "--ping"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PING unix:///nonexistent/daq.sock: failed"),
        "{text}"
    );

    let out = daqdata()
        .args([
            "--host",
            "unix:///nonexistent/daq.sock",
            "--plot-view",
            "--snapshot",
            "x.png",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("cannot connect") && text.contains("DaqData server running"),
        "{text}"
    );
}

/// The real server: ping, simulate, and a snapshot from what it streams.
#[test]
fn against_the_real_server_binary() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("daq.sock");
    let host = format!("unix://{}", sock.display());
    let mut server = RealServer::start(
        RealServer::config(dir.path()),
        None,
        &dir.path().join("server.log"),
    );
    let mut answered = false;
    for _ in 0..100 {
        if daqdata()
            .args(["--host", &host, "--ping"])
            .output()
            .unwrap()
            .status
            .success()
        {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let png = dir.path().join("view.png");
    let out = answered.then(|| {
        daqdata()
            .args(["--host", &host, "--init-sim", "--plot-view", "--snapshot"])
            .arg(&png)
            .args(["--snapshot-frames", "10"])
            .output()
            .unwrap()
    });
    server.stop();
    assert!(answered, "the server did not answer pings");
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(image::open(&png).is_ok());
}

/// `--status` prints every host's answer, one line each, and fails when a
/// host does not answer; `--json` makes each line a JSON object.
#[test]
fn status_prints_every_hosts_answer() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("daq.sock");
    let host = format!("unix://{}", sock.display());
    let gone = "unix:///nonexistent/daq.sock";
    let mut server = RealServer::start(
        RealServer::config(dir.path()),
        None,
        &dir.path().join("server.log"),
    );
    let status = |args: &[&str]| daqdata().arg("--status").args(args).output().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let before = loop {
        let out = status(&["--host", &host]);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let both = status(&["--host", &host, "--host", gone]);
    let init = daqdata()
        .args(["--host", &host, "--init-sim"])
        .output()
        .unwrap();
    let after = status(&["--host", &host, "--json"]);
    server.stop();

    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(before.status.success(), "{}", text(&before.stderr));
    let line = text(&before.stdout);
    assert!(
        line.starts_with(&format!("STATUS {host}: not initialized: "))
            && line.contains("InitHpIo")
            && line.lines().count() == 1,
        "{line}"
    );
    assert!(!both.status.success(), "an unreachable host is a failure");
    let lines = text(&both.stdout);
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines.contains(&format!("STATUS {host}: not initialized")),
        "{lines}"
    );
    assert!(
        lines.contains(&format!("STATUS {gone}: unreachable")),
        "{lines}"
    );
    assert!(init.status.success(), "{}", text(&init.stderr));
    assert!(after.status.success(), "{}", text(&after.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&after.stdout).trim()).unwrap();
    assert_eq!(v["host"], host.as_str());
    assert_eq!(v["hp_io_initialized"], true);
    assert!(
        v["message"].as_str().unwrap().contains("simulated run"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_ends_when_too_few_images_come() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = FakeServer::new("daq1");
    // Movie frames only: a pulse-height snapshot waits for images that never come.
    server
        .frames
        .retain(|p| p.r#type() == daqdata_proto::daqdata::pano_image::Type::Movie);
    let host = server.serve_unix(dir.path()).to_string();
    let png = dir.path().join("phdist.png");
    let out = tokio::task::spawn_blocking(move || {
        daqdata()
            .args(["--host", &host, "--plot-phdist", "--snapshot"])
            .arg(&png)
            .args(["--snapshot-timeout", "1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("no images received"), "{text}");
}

/// A CA, the server's certificate for 127.0.0.1, and client certificates
/// named `ctrl-room` and `laptop`, made now (no key is committed); files in
/// `dir`: ca.pem, server.pem/.key, ctrl-room.pem/.key, laptop.pem/.key.
fn test_pki(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_key = KeyPair::generate().unwrap();
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for cn in ["server", "ctrl-room", "laptop"] {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{cn}.pem")), cert.pem()).unwrap();
        private(&dir.join(format!("{cn}.key")), &key.serialize_pem());
    }
}

fn private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `daqdata` against the real server over mutual TLS with [access] token
/// files: tokens from a file or DAQDATA_TOKEN, a certificate's name as the
/// role, refusals that say what to do, and no token in any output.
#[test]
fn tls_and_tokens_against_the_real_server_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    test_pki(d);
    let (op, view) = ("op0123456789abcdef0123", "view0123456789abcdef01");
    private(&d.join("operators"), &format!("alice {op}\n"));
    private(&d.join("viewers"), &format!("bob {view}\n"));
    private(&d.join("op.token"), &format!("{op}\n"));
    private(&d.join("view.token"), &format!("# mine\nbob {view}\n"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sock = d.join("daq.sock");
    std::fs::write(
        d.join("config.toml"),
        format!(
            "listen = [\"unix://{}\", \"tls://127.0.0.1:{port}\"]\nmetrics_listen = \"\"\n\
             hashpipe_sockets.path_template = \"{}/hp.{{dp_name}}.sock\"\n\
             [access]\noperator_tokens_file = \"operators\"\nviewer_tokens_file = \"viewers\"\n\
             operator_names = [\"ctrl-room\"]\n\
             [tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\nclient_ca_file = \"ca.pem\"\n",
            sock.display(),
            d.display()
        ),
    )
    .unwrap();
    let config = daqdata_server::Config::load(&d.join("config.toml")).unwrap();
    let mut server = RealServer::start(config, None, &d.join("server.log"));
    let host = format!("tls://127.0.0.1:{port}");
    let file = |name: &str| d.join(name).display().to_string();
    let run = |cn: &str, token_file: Option<&str>, env: Option<&str>, more: &[&str]| {
        let mut cmd = daqdata();
        cmd.args([
            "--host",
            &host,
            "--log-level",
            "debug",
            "--tls-ca",
            &file("ca.pem"),
        ])
        .args(["--tls-cert", &file(&format!("{cn}.pem"))])
        .args(["--tls-key", &file(&format!("{cn}.key"))])
        .env_remove("DAQDATA_TOKEN");
        if let Some(t) = token_file {
            cmd.args(["--token-file", &file(t)]);
        }
        if let Some(t) = env {
            cmd.env("DAQDATA_TOKEN", t);
        }
        let out = cmd.args(more).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains(op) && !text.contains(view),
            "a token was printed:\n{text}"
        );
        (out.status.success(), text)
    };
    let mut up = false;
    for _ in 0..100 {
        if run("laptop", Some("view.token"), None, &["--ping"]).0 {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = || std::fs::read_to_string(d.join("server.log")).unwrap();
    assert!(up, "the server did not answer over TLS:\n{}", log());

    // `laptop` is signed by the CA but named nowhere: a token decides.
    let (ok, text) = run("laptop", None, None, &["--init-sim"]);
    assert!(!ok);
    assert!(
        text.contains("InitHpIo needs the operator role: pass --token-file")
            && text.contains("unix socket on the DAQ node"),
        "{text}"
    );
    // The server says what was wrong; the advice, once, says what to do.
    assert_eq!(text.matches("--token-file").count(), 1, "{text}");
    assert_eq!(text.matches("unix socket").count(), 1, "{text}");
    let (ok, text) = run("laptop", Some("view.token"), None, &["--init-sim"]);
    assert!(!ok);
    assert!(
        text.contains("your token gives only the viewer role"),
        "{text}"
    );
    let (ok, text) = run("laptop", Some("op.token"), None, &["--init-sim", "--ping"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("InitHpIo tls://127.0.0.1") && text.contains("success"),
        "{text}"
    );
    // DAQDATA_TOKEN when there is no --token-file.
    let (ok, text) = run("laptop", None, Some(op), &["--init-sim"]);
    assert!(ok, "{text}");
    // A viewer token streams.
    let mut child = daqdata()
        .args(["--host", &host, "--json", "--refresh-period", "0"])
        .args([
            "--tls-ca",
            &file("ca.pem"),
            "--tls-cert",
            &file("laptop.pem"),
        ])
        .args(["--tls-key", &file("laptop.key")])
        .env("DAQDATA_TOKEN", view)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first: Vec<String> = lines.take(2).map(Result::unwrap).collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(first.len(), 2, "no images streamed");
    assert!(first
        .iter()
        .all(|l| l.contains("\"module_id\"") && !l.contains(view)));
    // The certificate named in operator_names needs no token.
    let (ok, text) = run("ctrl-room", None, None, &["--init-sim"]);
    assert!(ok, "{text}");

    // Without --tls-ca a tls:// host cannot be checked: say so.
    let out = daqdata()
        .args(["--host", &host, "--ping"])
        .env_remove("DAQDATA_TOKEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("--tls-ca"), "{text}");

    server.stop();
    let log = log();
    assert!(
        !log.contains(op) && !log.contains(view),
        "a token is in the server's log"
    );
}

/// daqsim's status buffer, through the real server's StreamHashpipeStatus,
/// to `daqdata --hashpipe-status`: the table shows the net thread's state
/// change, in red when blocked; `--json` carries the cards.
#[test]
fn hashpipe_status_from_the_simulator_reaches_the_table_and_json() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("daq.sock");
    let host = format!("unix://{}", sock.display());
    // Before --init-sim, the server reads the buffer keyed on this
    // private directory (none), never the real one of $HOME.
    let mut server = RealServer::start(
        RealServer::config(dir.path()),
        None,
        &dir.path().join("server.log"),
    );
    let answered = (0..100).any(|_| {
        let ok = daqdata()
            .args(["--host", &host, "--ping"])
            .output()
            .unwrap()
            .status
            .success();
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    let run = |extra: &[&str]| {
        daqdata()
            .args([
                "--host",
                &host,
                "--hashpipe-status",
                "--refresh-period",
                "0.2",
            ])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut seen = Vec::new();
    let mut json_line = None;
    if answered {
        let mut table = run(&["--init-sim"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let lines = BufReader::new(table.stdout.take().unwrap()).lines();
        for line in lines {
            let line = line.unwrap();
            for state in ["receiving", "blocked"] {
                if line.contains(state)
                    && seen.last() != Some(&(state, line.contains("net thread blocked")))
                {
                    seen.push((state, line.contains("net thread blocked")));
                }
            }
            if (seen.iter().any(|s| s.0 == "receiving") && seen.iter().any(|s| s.0 == "blocked"))
                || std::time::Instant::now() > deadline
            {
                break;
            }
        }
        testdata::stop(&mut table);
        let mut json = run(&["--json"]);
        json_line = BufReader::new(json.stdout.take().unwrap())
            .lines()
            .map(Result::unwrap)
            .find(|l| l.contains("\"cards\"") && l.contains("NPACKETS"));
        testdata::stop(&mut json);
    }
    server.stop();
    assert!(answered, "the server did not answer pings");
    assert!(seen.contains(&("receiving", false)), "{seen:?}");
    assert!(
        seen.contains(&("blocked", true)),
        "the blocked net thread is named as the trouble: {seen:?}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&json_line.expect("a JSON status line")).unwrap();
    let status = &v;
    assert_eq!(status["cards"]["OBS"], "SIM");
    assert!(status["cards"]["NPACKETS"].as_f64().is_some());
    assert!(status["read_at"].as_f64().is_some());
}

/// Reads `child`'s stdout line by line until `done` says so, then kills it.
fn read_until(mut child: std::process::Child, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut seen = Vec::new();
    for line in &mut lines {
        let line = line.unwrap();
        let stop = done(&line);
        seen.push(line);
        if stop {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

/// `--hashpipe-status` is a table of every node that refreshes: a thread
/// that blocks turns its row into "net thread blocked", and a host that is
/// down has a row that says so; `--json` gives one object per read.
#[tokio::test(flavor = "multi_thread")]
async fn hashpipe_status_table_follows_each_nodes_threads() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::new("daq1");
    let host = fake.serve_unix(dir.path()).to_string();
    let gone = format!("unix://{}/gone.sock", dir.path().display());
    let script = fake.hashpipe.clone();
    let (host2, gone2) = (host.clone(), gone.clone());
    let lines = tokio::task::spawn_blocking(move || {
        let child = daqdata()
            .args(["--host", &host2, "--host", &gone2, "--hashpipe-status"])
            .args(["--refresh-period", "0.05"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut blocked = false;
        read_until(child, |line| {
            let row: Vec<&str> = line.split_whitespace().collect();
            if !blocked && row.first() == Some(&"daq1") && row.get(4).is_some_and(|p| *p != "-") {
                script.lock().unwrap().threads =
                    Some(["blocked".into(), "processing".into(), "waiting".into()]);
                blocked = true;
            }
            blocked && line.starts_with("daq1") && line.contains("net thread blocked")
        })
    })
    .await
    .unwrap();
    let text = lines.join("\n");
    assert!(
        lines[0].starts_with("NODE") && lines[0].contains("PKT/S") && lines[0].contains("NETDROPS"),
        "{text}"
    );
    let ok_row = lines
        .iter()
        .find(|l| l.starts_with("daq1") && l.ends_with("ok"))
        .unwrap_or_else(|| panic!("no healthy daq1 row in\n{text}"));
    let cells: Vec<&str> = ok_row.split_whitespace().collect();
    assert_eq!(
        &cells[1..4],
        ["receiving", "processing", "waiting"],
        "{ok_row}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&gone) && l.contains("cannot connect")),
        "{text}"
    );

    let json = tokio::task::spawn_blocking(move || {
        let child = daqdata()
            .args(["--host", &host, "--hashpipe-status", "--json"])
            .args(["--refresh-period", "0.05"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        read_until(child, |line| {
            line.contains("packets_per_second\":") && !line.contains("packets_per_second\":null")
        })
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(json.last().unwrap()).unwrap();
    assert_eq!(v["name"], "daq1");
    assert_eq!(v["threads"][0]["state"], "blocked");
    assert_eq!(v["problems"][0], "net thread blocked");
    assert!(v["packets_per_second"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["cards"]["BINDHOST"], "eth0");
}
