//! StreamHashpipeStatus, Status and the metrics against real Hashpipe
//! status buffers: System V segments and named semaphores each test makes
//! under its own keyfile (a temporary directory), and the simulator's.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use daqdata_proto::daqdata::{StreamHashpipeStatusRequest, StreamHashpipeStatusResponse};
use daqdata_server::{Config, HashpipeStatusConfig, InitOnStart};
use hpio::status::{StatusError, StatusImage, StatusLocation, StatusWriter, SEGMENT_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Streaming;

/// A status buffer under a keyfile of its own. `ftok` keeps 16 bits of the
/// inode, so another process's key can collide: then another directory is
/// tried.
fn fresh_buffer() -> (tempfile::TempDir, StatusWriter) {
    for _ in 0..50 {
        let dir = tempfile::tempdir().unwrap();
        let location = StatusLocation::new(dir.path(), 0).unwrap();
        match StatusWriter::create(location) {
            Ok(writer) => return (dir, writer),
            Err(StatusError::Create { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                continue
            }
            Err(e) => panic!("cannot create a status buffer: {e}"),
        }
    }
    panic!("every key tried is taken");
}

fn put_packets(writer: &mut StatusWriter, packets: i64) {
    writer
        .update(|image: &mut StatusImage| {
            image.put_str("NETSTAT", "receiving")?;
            image.put_int("NPACKETS", packets)
        })
        .unwrap()
        .unwrap();
}

/// A server polling the buffer under `keyfile` quickly, with metrics on a
/// port of its own.
async fn server_on(keyfile: &Path, init: Option<InitOnStart>) -> TestServer {
    let keyfile = keyfile.to_path_buf();
    TestServer::start(init, move |c: &mut Config| {
        c.hashpipe_status = HashpipeStatusConfig {
            keyfile: Some(keyfile),
            poll_seconds: std::time::Duration::from_millis(20),
            ..HashpipeStatusConfig::default()
        };
        c.metrics_listen = "127.0.0.1:0".into();
    })
    .await
}

async fn status_stream(server: &TestServer) -> Streaming<StreamHashpipeStatusResponse> {
    let mut client = server.client().await;
    client
        .stream_hashpipe_status(StreamHashpipeStatusRequest {
            update_interval_seconds: 0.0,
        })
        .await
        .unwrap()
        .into_inner()
}

/// The value of the first sample whose line starts with `prefix`.
async fn metric(server: &TestServer, prefix: &str) -> f64 {
    let addr = server
        .server
        .as_ref()
        .unwrap()
        .metrics_addr()
        .expect("metrics on");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn without_a_segment_there_is_one_log_line_a_status_phrase_and_a_message() {
    let server = BinServer::start(
        "metrics_listen = \"\"\nhashpipe_status.poll_seconds = 0.02\n",
        &[],
    )
    .await;
    let mut client = server.client().await;
    let mut stream = client
        .stream_hashpipe_status(StreamHashpipeStatusRequest {
            update_interval_seconds: 0.0,
        })
        .await
        .unwrap()
        .into_inner();
    // Many polls (one per response at least, 20 ms apart) ...
    for _ in 0..10 {
        let response = stream.message().await.unwrap().unwrap();
        assert!(response.cards.is_none());
        assert!(!response.stale);
        assert!(
            response.message.contains("no Hashpipe status buffer"),
            "{response:?}"
        );
        assert!(
            response
                .message
                .contains(&server.dir.path().display().to_string()),
            "{response:?}"
        );
    }
    // ... and one line in the log, which is no error.
    let log = server.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("no Hashpipe status buffer"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("INFO"), "{log}");
    let status = client.status(()).await.unwrap().into_inner();
    assert!(
        status.message.contains("Hashpipe: no status buffer"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_held_semaphore_skips_reads_counted_while_frames_keep_flowing() {
    let (dir, mut writer) = fresh_buffer();
    put_packets(&mut writer, 10);
    let (_replay, tree) = live_tree(false, 200.0);
    let server = server_on(dir.path(), None).await;
    let mut client = server.client().await;
    let init = client
        .init_hp_io(dir_request(tree.path()))
        .await
        .unwrap()
        .into_inner();
    assert!(init.success, "{init:?}");
    let mut status = status_stream(&server).await;
    until(&mut status, "NPACKETS 10", |r| {
        number(r, "NPACKETS") == Some(10.0)
    })
    .await;
    let hold = writer.hold_lock().unwrap();
    // Skipped reads are counted ...
    let deadline = Instant::now() + PATIENCE;
    while metric(
        &server,
        "daqdata_hashpipe_status_reads_total{outcome=\"skipped\"}",
    )
    .await
        < 3.0
    {
        assert!(Instant::now() < deadline, "no skipped read counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... the status stream goes on with the last good read ...
    let response = status.message().await.unwrap().unwrap();
    assert_eq!(number(&response, "NPACKETS"), Some(10.0));
    // ... and frames keep flowing.
    let mut images = open(&mut client, stream_request(true, true, 0.0, &[])).await;
    for _ in 0..5 {
        next(&mut images)
            .await
            .unwrap()
            .expect("a frame while the lock is held");
    }
    drop(hold);
    put_packets(&mut writer, 11);
    until(
        &mut status,
        "NPACKETS 11 after the lock was released",
        |r| number(r, "NPACKETS") == Some(11.0),
    )
    .await;
}

#[tokio::test]
async fn a_removed_and_recreated_segment_is_read_again() {
    let (dir, mut writer) = fresh_buffer();
    put_packets(&mut writer, 1);
    let location = writer.location().clone();
    let server = server_on(dir.path(), None).await;
    let mut status = status_stream(&server).await;
    until(&mut status, "NPACKETS 1", |r| {
        number(r, "NPACKETS") == Some(1.0)
    })
    .await;
    drop(writer);
    until(&mut status, "the removal said", |r| {
        r.cards.is_none() && r.message.contains("no Hashpipe status buffer")
    })
    .await;
    let mut writer = StatusWriter::create(location).unwrap();
    put_packets(&mut writer, 2);
    until(&mut status, "NPACKETS 2 from the new segment", |r| {
        number(r, "NPACKETS") == Some(2.0)
    })
    .await;
}

#[tokio::test]
async fn garbage_in_the_segment_is_a_counted_parse_error_and_no_panic() {
    let (dir, mut writer) = fresh_buffer();
    let server = server_on(dir.path(), None).await;
    let mut status = status_stream(&server).await;
    let card = |s: &str| format!("{s:<80}");
    let mut junk = vec![0u8; SEGMENT_LEN];
    let mut x: u32 = 0x9e37_79b9;
    for b in &mut junk {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "no END",
            card("NPACKETS=                    1").into_bytes(),
        ),
        (
            "non-ASCII",
            format!("{}{}", card("OBS     = 'Lické'"), card("END")).into_bytes(),
        ),
        (
            "without =",
            format!("{}{}", card("NETSTAT   'receiving'"), card("END")).into_bytes(),
        ),
        (
            "unterminated quote",
            format!("{}{}", card("NETSTAT = 'receiving"), card("END")).into_bytes(),
        ),
        ("junk", junk),
    ];
    for (i, (what, mut bytes)) in cases.into_iter().enumerate() {
        bytes.resize(SEGMENT_LEN, 0);
        writer.write_raw(&bytes).unwrap();
        let response = until(&mut status, what, |r| {
            r.cards.is_none() && r.message.contains("card")
        })
        .await;
        assert!(
            response.message.contains("status buffer"),
            "{what}: {response:?}"
        );
        let failures = metric(
            &server,
            "daqdata_hashpipe_status_reads_total{outcome=\"parse_failed\"}",
        )
        .await;
        assert!(
            failures >= (i + 1) as f64,
            "{what}: {failures} parse failures counted"
        );
        // Good cards between the cases: each case is read afresh.
        writer.write_raw(&bytes_of_good(i as i64)).unwrap();
        until(&mut status, "good cards again", |r| {
            number(r, "NPACKETS") == Some(i as f64)
        })
        .await;
    }
}

fn bytes_of_good(packets: i64) -> Vec<u8> {
    let mut image = StatusImage::new();
    image.put_int("NPACKETS", packets).unwrap();
    image.bytes().to_vec()
}

#[tokio::test]
async fn a_missing_keyfile_is_said_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-keyfile");
    let server = server_on(&missing, None).await;
    let mut status = status_stream(&server).await;
    let response = status.message().await.unwrap().unwrap();
    assert!(
        response.message.contains(&missing.display().to_string()),
        "{response:?}"
    );
    let mut client = server.client().await;
    let message = client.status(()).await.unwrap().into_inner().message;
    assert!(
        message.contains("Hashpipe: status not read (no keyfile)"),
        "{message}"
    );
}

#[tokio::test]
async fn the_simulators_buffer_reaches_stream_hashpipe_status_and_its_states_change() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_on(dir.path(), Some(InitOnStart::Simulate)).await;
    let mut status = status_stream(&server).await;
    let first = until(&mut status, "the simulated buffer's counters", |r| {
        text(r, "OBS").as_deref() == Some("SIM") && number(r, "NPACKETS").is_some()
    })
    .await;
    assert!(!first.name.is_empty());
    assert!(first.read_at.is_some());
    let packets = number(&first, "NPACKETS").unwrap();
    until(&mut status, "NPACKETS growing", |r| {
        number(r, "NPACKETS").is_some_and(|n| n > packets)
    })
    .await;
    until(&mut status, "the net thread receiving", |r| {
        text(r, "NETSTAT").as_deref() == Some("receiving")
    })
    .await;
    until(&mut status, "the net thread blocked", |r| {
        text(r, "NETSTAT").as_deref() == Some("blocked")
    })
    .await;
    let mut client = server.client().await;
    let message = client.status(()).await.unwrap().into_inner().message;
    assert!(message.contains("Hashpipe net "), "{message}");
    assert!(metric(&server, "daqdata_hashpipe_value{key=\"NPACKETS\"}").await > 0.0);
}
