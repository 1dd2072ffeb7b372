//! `daqdata bench` against a small in-test DaqData server that streams
//! real recorded frames.

use crate::common;

use common::{daqdata, FakeServer};

#[tokio::test(flavor = "multi_thread")]
async fn bench_reports_delivery_age_spread_and_server_usage() {
    let dir = tempfile::tempdir().unwrap();
    let host = FakeServer::new("daq1").serve_unix(dir.path()).to_string();
    // This test process is the server, so it samples itself.
    let pid = std::process::id().to_string();
    let out = tokio::task::spawn_blocking(move || {
        daqdata()
            .args([
                "bench",
                "--host",
                &host,
                "--clients",
                "3",
                "--duration",
                "1",
                "--warmup",
                "0.2",
            ])
            .args(["--server-pid", &pid, "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clients"], 3);
    assert!(report["images"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["per_client_min_images"].as_u64().unwrap() > 0,
        "every client got images: {report}"
    );
    assert_eq!(report["errors"], serde_json::json!({}));
    // Recorded frames are old, so their age is large and positive.
    assert!(
        report["frame_age_ms"]["p50"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["server"]["peak_rss_kib"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["server"]["cpu_percent"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_upload_counts_accepted_images() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::new("daq1");
    let host = server.serve_unix(dir.path()).to_string();
    let out = tokio::task::spawn_blocking(move || {
        daqdata()
            .args([
                "bench",
                "--upload",
                "--host",
                &host,
                "--clients",
                "2",
                "--duration",
                "0.5",
                "--warmup",
                "0",
            ])
            .arg("--json")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let accepted = report["images"].as_u64().unwrap();
    assert!(accepted > 0);
    assert_eq!(server.uploads.lock().unwrap().len() as u64, accepted);
}
