//! Hashpipe's socket feed (SPEC §7), against the real server binary where
//! a test needs no more than its config file: frames pushed the way
//! Hashpipe's `snapshot.c` pushes them (daqsim's `SocketPush`) stream out
//! byte for byte, paced and filtered as file frames are; the sockets live
//! exactly as long as hp_io runs on real data; a bad or silent connection
//! is closed alone; and files and sockets together never take a stream
//! back in time.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use daqdata_proto::daqdata::{InitHpIoRequest, PanoImage, StreamImagesResponse};
use daqsim::{Fixtures, SocketPush, SocketPushConfig};
use pff::DataProduct;
use tonic::Streaming;

/// A data directory that passes the active-run check: its
/// `daq_hashpipe_pid` names this (live) test process.
fn live_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("daq_hashpipe_pid"),
        std::process::id().to_string(),
    )
    .unwrap();
    dir
}

fn real_request(dir: &Path) -> InitHpIoRequest {
    InitHpIoRequest {
        update_interval_seconds: 0.01,
        ..dir_request(dir)
    }
}

/// A server fed by Hashpipe's sockets alone (no file tracker), with hp_io
/// started on a live data directory; `tweak` changes the InitHpIo request.
struct SocketFed {
    server: BinServer,
    template: String,
    /// Kept for the test's length: its pid file says Hashpipe runs.
    data: tempfile::TempDir,
    client: daqdata_proto::daqdata::daq_data_client::DaqDataClient<tonic::transport::Channel>,
}

async fn socket_fed(tweak: impl FnOnce(&mut InitHpIoRequest)) -> SocketFed {
    let server = BinServer::start("track_files = false\n", &[]).await;
    let template = private_hashpipe_sockets(server.dir.path());
    let data = live_data_dir();
    let mut client = server.client().await;
    let mut request = real_request(data.path());
    tweak(&mut request);
    let reply = client.init_hp_io(request).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);
    SocketFed {
        server,
        template,
        data,
        client,
    }
}

fn socket(template: &str, dp: DataProduct) -> PathBuf {
    pff::socket_path(template, dp)
}

/// Fixture modules 1 (img16, ph256) and 2 (img8, ph1024) as `outputs`,
/// so each output module gets all four data products.
fn push(template: &str, outputs: &[u32], rate: f64, restamp: bool) -> SocketPush {
    let modules = outputs
        .iter()
        .flat_map(|&m| [(1.into(), m.into()), (2.into(), m.into())])
        .collect();
    SocketPush::start(
        Fixtures::embedded(),
        SocketPushConfig {
            template: template.to_string(),
            rate: Some(rate),
            modules,
            restamp,
            reconnect: Duration::from_millis(100),
            ..SocketPushConfig::default()
        },
    )
    .unwrap()
}

fn product(image: &PanoImage) -> DataProduct {
    let kind = match image.r#type {
        1 => pff::ImageKind::PulseHeight,
        _ => pff::ImageKind::Movie,
    };
    let shape = [image.shape[0] as usize, image.shape[1] as usize];
    DataProduct::from_image(kind, shape, image.bytes_per_pixel as usize).unwrap()
}

/// The node time stamp of an image's header: its first quabo's
/// (tv_sec, tv_usec).
fn stamp(image: &PanoImage) -> (i64, i64) {
    let header = image.header_json();
    let quabo = (0..4)
        .find_map(|i| header.get(format!("quabo_{i}")).cloned())
        .unwrap_or(header);
    let field = |k: &str| quabo[k].as_f64().unwrap() as i64;
    (field("tv_sec"), field("tv_usec"))
}

/// Waits (up to 20 s) until the push has dropped more than `before`
/// frames: no server is connected.
async fn wait_for_drops(push: &SocketPush, before: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while push.stats().dropped <= before {
        assert!(
            Instant::now() < deadline,
            "the push dropped nothing: {:?}",
            push.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (up to 20 s) until `push` has made `want` connections in all.
async fn wait_for_connections(push: &SocketPush, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while push.stats().connections < want {
        assert!(
            Instant::now() < deadline,
            "the push did not connect {want} times: {:?}",
            push.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every image until `deadline`.
async fn images_until(
    stream: &mut Streaming<StreamImagesResponse>,
    deadline: Duration,
) -> Vec<PanoImage> {
    let end = Instant::now() + deadline;
    let mut out = Vec::new();
    while let Ok(got) = tokio::time::timeout_at(end.into(), stream.message()).await {
        match got {
            Ok(Some(m)) => out.extend(m.pano_image),
            Ok(None) => break,
            Err(s) => panic!("stream failed after {} images: {s}", out.len()),
        }
    }
    out
}

/// Waits until `path` is closed by the server: a read gives end of file
/// (or a reset), within `within`.
fn closed_within(conn: &mut UnixStream, within: Duration) -> bool {
    conn.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 16];
    match conn.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[tokio::test]
async fn three_modules_of_four_products_stream_every_pixel_as_pushed() {
    let SocketFed {
        server: _server,
        template,
        data: _data,
        client: mut c,
    } = socket_fed(|_| {}).await;
    let _push = push(&template, &[10, 11, 12], 200.0, true);

    // What was pushed: the fixtures' images, per data product.
    let fixtures = Fixtures::embedded();
    let mut pushed: HashMap<DataProduct, HashSet<Vec<u8>>> = HashMap::new();
    for (m, dp) in fixtures.streams() {
        for n in 0..fixtures.frame_count(m, dp) {
            let frame = fixtures.frame(m, dp, n).unwrap();
            pushed.entry(dp).or_default().insert(frame.image().to_vec());
        }
    }

    let mut stream = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    let images = images_until(&mut stream, Duration::from_secs(3)).await;
    let mut seen = HashSet::new();
    for image in &images {
        let dp = product(image);
        assert_eq!(image.file, format!("uds_{dp}"));
        // The wire carries each pixel as its u16 (or u8) bit pattern.
        let bytes: Vec<u8> = match dp.bytes_per_pixel() {
            1 => image.image_array.iter().map(|&p| p as u8).collect(),
            _ => image
                .image_array
                .iter()
                .flat_map(|&p| (p as u16).to_le_bytes())
                .collect(),
        };
        assert!(
            pushed[&dp].contains(&bytes),
            "module {} {dp} frame {}: pixels that were never pushed",
            image.module_id,
            image.frame_number
        );
        seen.insert((image.module_id, dp));
    }
    let want: HashSet<_> = [10, 11, 12]
        .into_iter()
        .flat_map(|m| DataProduct::ALL.map(|dp| (m, dp)))
        .collect();
    assert_eq!(seen, want, "{} images", images.len());

    // frame_number counts the frames of each connection, as the Python
    // server's does: each slot's numbers rise.
    let mut numbers: HashMap<(u32, DataProduct), Vec<u32>> = HashMap::new();
    for image in &images {
        numbers
            .entry((image.module_id, product(image)))
            .or_default()
            .push(image.frame_number);
    }
    for (slot, n) in &numbers {
        assert!(n.windows(2).all(|w| w[0] < w[1]), "{slot:?}: {n:?}");
        assert!(n.len() < 2 || n[n.len() - 1] > 0, "{slot:?}: {n:?}");
    }
}

#[tokio::test]
async fn socket_frames_are_paced_and_filtered_as_file_frames_are() {
    let SocketFed {
        server: _server,
        template,
        data: _data,
        client: mut c,
    } = socket_fed(|_| {}).await;
    let _push = push(&template, &[10, 11], 500.0, true);

    let interval = 0.1;
    let mut stream = open(&mut c, stream_request(true, false, interval, &[11])).await;
    let mut sends: HashMap<(u32, DataProduct), Vec<f64>> = HashMap::new();
    for m in take(&mut stream, 40).await {
        let image = m.pano_image.as_ref().unwrap();
        assert_eq!(image.module_id, 11, "module filter");
        let dp = product(image);
        assert!(
            matches!(dp, DataProduct::Img16 | DataProduct::Img8),
            "type filter: {dp}"
        );
        sends
            .entry((image.module_id, dp))
            .or_default()
            .push(sent_at(&m));
    }
    // Paced as file frames are: never faster than the interval by the
    // server's stamps (500 frames/s are pushed, so every slot has one).
    for (pair, stamps) in &sends {
        assert_at_most_n_plus_one(stamps, interval, &format!("{pair:?}"));
    }
    let per_pair: HashMap<_, _> = sends.iter().map(|(k, v)| (*k, v.len())).collect();
    assert_eq!(per_pair.len(), 2, "{per_pair:?}");
}

#[tokio::test]
async fn the_sockets_live_while_hp_io_runs_on_real_data() {
    let mut server = TestServer::start(None, |c| c.track_files = false).await;
    let template = private_hashpipe_sockets(server.dir.path());
    let paths: Vec<PathBuf> = DataProduct::ALL
        .iter()
        .map(|&dp| socket(&template, dp))
        .collect();
    let exist = |paths: &[PathBuf]| paths.iter().filter(|p| p.exists()).count();
    assert_eq!(exist(&paths), 0, "no sockets before InitHpIo");

    let data = live_data_dir();
    let mut c = server.client().await;
    assert!(
        c.init_hp_io(real_request(data.path()))
            .await
            .unwrap()
            .into_inner()
            .success
    );
    assert_eq!(exist(&paths), 4, "a socket per data product at InitHpIo");
    for p in &paths {
        let mode = std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660, "{}", p.display());
    }

    // A Hashpipe connection counts as an active run: InitHpIo on a
    // directory with no pid file and no recent files passes while one is
    // open.
    let hashpipe = UnixStream::connect(&paths[0]).unwrap();
    let idle = tempfile::tempdir().unwrap();
    // The server counts the connection once it has accepted it: until
    // then the directory alone is (rightly) no active run.
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        match c.init_hp_io(real_request(idle.path())).await {
            Err(s) if s.code() == tonic::Code::FailedPrecondition && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            r => break r.unwrap().into_inner(),
        }
    };
    assert!(reply.success, "{}", reply.error_message);
    drop(hashpipe);

    // Closed (by Hashpipe, and by the reconfiguration that replaced its
    // socket), the connection no longer counts: the idle directory alone
    // is no active run again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.init_hp_io(real_request(idle.path())).await {
            Err(s) if s.code() == tonic::Code::FailedPrecondition => break,
            r => {
                assert!(
                    Instant::now() < deadline,
                    "a closed Hashpipe connection still counts as a run: {r:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    // Reconfigured onto a simulation: gone.
    assert!(
        c.init_hp_io(sim_request())
            .await
            .unwrap()
            .into_inner()
            .success
    );
    assert_eq!(
        exist(&paths),
        0,
        "sockets left after reconfiguring to a simulation"
    );

    // Back on real data, then shut down: gone again.
    assert!(
        c.init_hp_io(real_request(data.path()))
            .await
            .unwrap()
            .into_inner()
            .success
    );
    assert_eq!(exist(&paths), 4);
    drop(c);
    server.shutdown().await;
    assert_eq!(exist(&paths), 0, "sockets left after shutdown");
}

#[tokio::test]
async fn a_bad_connection_is_closed_and_a_good_one_on_the_same_socket_streams_on() {
    let SocketFed {
        server,
        template,
        data: _data,
        client: mut c,
    } = socket_fed(|_| {}).await;
    let _push = push(&template, &[10], 200.0, true);
    let ph256 = socket(&template, DataProduct::Ph256);

    let mut stream = open(&mut c, stream_request(false, true, 0.0, &[10])).await;
    take(&mut stream, 5).await;

    let mut garbage = UnixStream::connect(&ph256).unwrap();
    garbage
        .write_all(b"\x00\x0aGET / HTTP/1.1\r\n\r\n")
        .unwrap();
    assert!(
        closed_within(&mut garbage, Duration::from_secs(5)),
        "garbage connection left open"
    );

    // A 1 MiB "header": refused after 64 KiB (the write fails part way, or
    // the server closes once it has read enough).
    let mut huge = UnixStream::connect(&ph256).unwrap();
    let mut message = vec![0u8, 10, b'{'];
    message.resize(1 << 20, b' ');
    let _ = huge.write_all(&message);
    assert!(
        closed_within(&mut huge, Duration::from_secs(5)),
        "1 MiB header left open"
    );

    // The good connection goes on: new frames keep coming.
    let before = take(&mut stream, 1).await[0].pano_image.clone().unwrap();
    let later = images_until(&mut stream, Duration::from_millis(500)).await;
    assert!(
        later.len() >= 5,
        "{} images after the bad connections",
        later.len()
    );
    assert!(later.iter().any(|i| stamp(i) > stamp(&before)));

    let log = server.log();
    let closed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&*ph256.to_string_lossy()) && l.contains("closed after"))
        .collect();
    assert_eq!(closed.len(), 2, "one line per bad connection:\n{log}");
    assert!(
        closed.iter().any(|l| l.contains("not a PFF JSON header")),
        "{log}"
    );
    assert!(closed.iter().any(|l| l.contains("65536 bytes")), "{log}");
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_read_timeout() {
    let server = BinServer::start(
        "track_files = false\nhashpipe_sockets.read_timeout_seconds = 0.5\n",
        &[],
    )
    .await;
    let template = private_hashpipe_sockets(server.dir.path());
    let data = live_data_dir();
    let mut c = server.client().await;
    assert!(
        c.init_hp_io(real_request(data.path()))
            .await
            .unwrap()
            .into_inner()
            .success
    );
    let mut silent = UnixStream::connect(socket(&template, DataProduct::Img16)).unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)),
        "silent connection left open"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "closed after only {waited:?}"
    );
    assert!(
        server.log().contains("read_timeout_seconds"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn files_and_sockets_feeding_one_module_never_go_back_in_time() {
    let server = BinServer::start("", &[]).await;
    let template = private_hashpipe_sockets(server.dir.path());
    // Files written now, restamped; sockets carrying the fixtures' 2024
    // stamps for the same modules: every socket frame is older than the
    // file frames, so once a file frame is in a slot none may follow.
    let tree = tempfile::tempdir().unwrap();
    let _files = live_tree_at(tree.path(), 100.0, &[(1, 1), (2, 2)]);
    let mut c = server.client().await;
    assert!(
        c.init_hp_io(real_request(tree.path()))
            .await
            .unwrap()
            .into_inner()
            .success
    );
    let push = SocketPush::start(
        Fixtures::embedded(),
        SocketPushConfig {
            template: template.clone(),
            rate: Some(300.0),
            modules: vec![(1.into(), 1.into()), (2.into(), 2.into())],
            restamp: false,
            reconnect: Duration::from_millis(100),
            ..SocketPushConfig::default()
        },
    )
    .unwrap();

    let mut stream = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    let images = images_until(&mut stream, Duration::from_secs(3)).await;
    assert!(push.stats().messages > 100, "{:?}", push.stats());
    let mut last: HashMap<(u32, DataProduct), (i64, i64)> = HashMap::new();
    let mut from_files = 0;
    for image in &images {
        let key = (image.module_id, product(image));
        let t = stamp(image);
        if let Some(prev) = last.insert(key, t) {
            assert!(
                t >= prev,
                "{key:?} went back from {prev:?} to {t:?} ({})",
                image.file
            );
        }
        from_files += usize::from(!image.file.starts_with("uds_"));
    }
    assert!(
        from_files > 10,
        "{from_files} file frames of {}",
        images.len()
    );
}

#[tokio::test]
async fn a_socket_fed_simulation_streams_through_private_sockets() {
    let server = TestServer::start(None, |c| {
        c.simulate.mode = daqdata_server::SimulateMode::Sockets;
        c.simulate.frames_per_second = Some(200.0);
    })
    .await;
    let mut c = server.client().await;
    assert!(
        c.init_hp_io(sim_request())
            .await
            .unwrap()
            .into_inner()
            .success
    );
    let mut stream = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    let images = images_until(&mut stream, Duration::from_secs(2)).await;
    let files: HashSet<&str> = images.iter().map(|i| i.file.as_str()).collect();
    assert!(files.len() >= 3, "{files:?}");
    assert!(files.iter().all(|f| f.starts_with("uds_")), "{files:?}");
    // Not in the configured (shared) place: in the simulation's own directory.
    let template = private_hashpipe_sockets(server.dir.path());
    assert!(!socket(&template, DataProduct::Img16).exists());
}

#[tokio::test]
async fn a_torn_push_with_hostile_connections_keeps_streaming() {
    let SocketFed {
        server,
        template,
        data: _data,
        client: mut c,
    } = socket_fed(|_| {}).await;
    let push = SocketPush::start(
        Fixtures::embedded(),
        SocketPushConfig {
            template: template.clone(),
            rate: Some(200.0),
            modules: vec![(1.into(), 5.into())],
            torn: true,
            reconnect: Duration::from_millis(100),
            ..SocketPushConfig::default()
        },
    )
    .unwrap();
    let mut stream = open(&mut c, stream_request(true, true, 0.0, &[5])).await;
    let images = images_until(&mut stream, Duration::from_secs(3)).await;
    let stats = push.stop().unwrap();
    assert!(stats.hostile >= 2, "{stats:?}");
    // The good connections were never the ones closed.
    assert_eq!(stats.connections, 2, "{stats:?}");
    assert!(images.len() >= 100, "{} images", images.len());
    let log = server.log();
    assert!(
        log.matches("closed after").count() as u64 >= stats.hostile.min(1),
        "{log}"
    );
}

#[tokio::test]
async fn init_hp_io_module_ids_select_socket_frames_as_they_select_files() {
    let SocketFed {
        server: _server,
        template,
        data: _data,
        client: mut c,
    } = socket_fed(|r| r.module_ids = vec![10, 12]).await;
    let _push = push(&template, &[10, 11, 12], 200.0, true);
    let mut stream = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    let images = images_until(&mut stream, Duration::from_secs(2)).await;
    let modules: HashSet<u32> = images.iter().map(|i| i.module_id).collect();
    assert_eq!(modules, HashSet::from([10, 12]));
}

#[tokio::test]
async fn the_push_connects_again_when_the_sockets_come_back() {
    let server = TestServer::start(None, |c| c.track_files = false).await;
    let template = private_hashpipe_sockets(server.dir.path());
    let data = live_data_dir();
    let mut c = server.client().await;
    let push = push(&template, &[10], 200.0, true);
    // No sockets yet: the push drops its frames and keeps trying.
    wait_for_drops(&push, 0).await;
    assert_eq!(push.stats().connections, 0, "{:?}", push.stats());

    for round in 1..=2 {
        assert!(
            c.init_hp_io(real_request(data.path()))
                .await
                .unwrap()
                .into_inner()
                .success
        );
        let mut stream = open(&mut c, stream_request(true, true, 0.0, &[10])).await;
        let images = take(&mut stream, 10).await;
        assert!(
            images
                .iter()
                .all(|m| m.pano_image.as_ref().unwrap().module_id == 10),
            "round {round}"
        );
        // The push reaches every product's socket (module 10's images may
        // arrive before the last of the four connects).
        wait_for_connections(&push, 4 * round).await;
        // Reconfigured away from real data: the sockets go, the connections
        // drop, and the push drops frames again.
        drop(stream);
        let dropped = push.stats().dropped;
        assert!(
            c.init_hp_io(sim_request())
                .await
                .unwrap()
                .into_inner()
                .success
        );
        wait_for_drops(&push, dropped).await;
    }
    let stats = push.stop().unwrap();
    assert!(stats.connections >= 2 * 4, "{stats:?}");
}
