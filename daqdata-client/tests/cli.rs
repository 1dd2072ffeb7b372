//! The `daqdata` command line against small in-test DaqData servers that
//! stream real recorded frames, and against the real server binary.

mod common;

use std::time::Duration;

use common::{daqdata, server_binary, FakeServer};

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
    let bin = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("daq.sock");
    let host = format!("unix://{}", sock.display());
    let mut server = std::process::Command::new(bin)
        .args(["--listen", &host])
        .spawn()
        .unwrap();
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
    let _ = server.kill();
    let _ = server.wait();
    assert!(answered, "the server did not answer pings");
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(image::open(&png).is_ok());
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
