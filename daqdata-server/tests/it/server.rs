//! The server as a client sees it: SPEC §3's status codes, pacing,
//! filters, fan-out, reconfiguration, disconnects, shutdown, torn writes
//! and uploads, against a real server on a temp unix socket and a real
//! `daqsim` tree.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use daqdata_proto::daqdata::{pano_image, PanoImage, UploadImageRequest};
use daqdata_server::InitOnStart;
use tonic::Code;

fn seconds(ts: &prost_types::Timestamp) -> f64 {
    ts.seconds as f64 + f64::from(ts.nanos) * 1e-9
}

// ---- SPEC §3 status table ------------------------------------------------

#[tokio::test]
async fn streams_and_uploads_before_init_are_failed_precondition() {
    let server = TestServer::start(None, |_| {}).await;
    let mut c = server.client().await;
    let r = c.stream_images(stream_request(true, true, 0.1, &[])).await;
    assert_eq!(code(r), Code::FailedPrecondition);
    let r = c
        .upload_images(tokio_stream::iter(Vec::<UploadImageRequest>::new()))
        .await;
    assert_eq!(code(r), Code::FailedPrecondition);
    // Ping answers whatever the state.
    c.ping(()).await.unwrap();
}

#[tokio::test]
async fn a_stream_asking_for_neither_type_is_invalid() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    let mut c = server.client().await;
    let r = c
        .stream_images(stream_request(false, false, 0.1, &[]))
        .await;
    assert_eq!(code(r), Code::InvalidArgument);
}

#[tokio::test]
async fn stream_intervals_that_are_not_sane_are_invalid() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |c| {
        c.max_client_update_interval_seconds = std::time::Duration::from_secs(10)
    })
    .await;
    let mut c = server.client().await;
    for bad in [f64::NAN, f64::INFINITY, 10.5] {
        let r = c.stream_images(stream_request(true, true, bad, &[])).await;
        assert_eq!(code(r), Code::InvalidArgument, "interval {bad}");
    }
    // 0, negative and -infinite mean "as fast as hp_io updates" (the
    // Python CLI's --plot-phdist sends -1).
    for fastest in [0.0, -1.0, f64::NEG_INFINITY] {
        let mut s = open(&mut c, stream_request(true, true, fastest, &[])).await;
        take(&mut s, 3).await;
    }
}

#[tokio::test]
async fn more_streams_than_the_limit_are_resource_exhausted() {
    let server =
        TestServer::start(Some(InitOnStart::Simulate), |c| c.max_concurrent_rpcs = 2).await;
    let mut c = server.client().await;
    let mut a = open(&mut c, stream_request(true, true, 0.1, &[])).await;
    let mut b = open(&mut c, stream_request(true, true, 0.1, &[])).await;
    take(&mut a, 1).await;
    take(&mut b, 1).await;
    let r = c.stream_images(stream_request(true, true, 0.1, &[])).await;
    assert_eq!(code(r), Code::ResourceExhausted);
}

#[tokio::test]
async fn init_hp_io_refuses_bad_directories_and_intervals() {
    let allowed = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = allowed.path().to_path_buf();
    let server = TestServer::start(None, |c| {
        c.allowed_data_roots = vec![root];
        c.max_client_update_interval_seconds = std::time::Duration::from_secs(10);
    })
    .await;
    let mut c = server.client().await;

    let missing = allowed.path().join("no_such_dir");
    let status = c.init_hp_io(dir_request(&missing)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("does not exist"),
        "{}",
        status.message()
    );

    let r = c.init_hp_io(dir_request(outside.path())).await;
    assert_eq!(code(r), Code::PermissionDenied);

    // Inside the roots, existing, but nothing is recording there.
    let r = c.init_hp_io(dir_request(allowed.path())).await;
    assert_eq!(code(r), Code::FailedPrecondition);

    for bad in [0.0001, 11.0, f64::NAN] {
        let mut req = sim_request();
        req.update_interval_seconds = bad;
        assert_eq!(
            code(c.init_hp_io(req).await),
            Code::InvalidArgument,
            "interval {bad}"
        );
    }
}

/// A bad message in an upload is INVALID_ARGUMENT, and the error names it
/// by its place in the upload (0-based), after a good one.
#[tokio::test]
async fn malformed_uploads_are_invalid() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    let mut c = server.client().await;
    let good = upload_image(7, pano_image::Type::PulseHeight, [16, 16], 2);
    let bads = [
        req(upload_image(7, pano_image::Type::Movie, [16, 16], 2)),
        req(upload_image(7, pano_image::Type::Undefined, [32, 32], 2)),
        req(upload_image(7, pano_image::Type::Movie, [32, 32], 4)),
        req(PanoImage {
            image_array: vec![0; 10],
            ..good.clone()
        }),
        UploadImageRequest { pano_image: None },
    ];
    for bad in bads {
        let what = format!(
            "{:?}",
            bad.pano_image.as_ref().map(|i| (i.r#type, &i.shape))
        );
        let reqs = vec![req(good.clone()), req(good.clone()), bad];
        let status = c
            .upload_images(tokio_stream::iter(reqs))
            .await
            .expect_err(&what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
        assert!(
            status.message().starts_with("upload message 2"),
            "{what}: {}",
            status.message()
        );
    }
}

/// An upload message (an UploadImageRequest on the wire) of exactly `len`
/// bytes: a valid img16 image whose file name takes up the rest.
fn upload_of_len(len: usize) -> UploadImageRequest {
    use prost::Message;
    let named = |n: usize| {
        let mut image = upload_image(999, pano_image::Type::Movie, [32, 32], 2);
        image.file = "x".repeat(n);
        req(image)
    };
    // The name's own length prefix grows with it: the longest name that
    // does not overshoot.
    let mut n = len - named(0).encoded_len();
    while named(n).encoded_len() > len {
        n -= 1;
    }
    let r = named(n);
    assert_eq!(r.encoded_len(), len, "no file name makes {len} bytes");
    r
}

/// SPEC §6: an upload message may be 64 KiB, not one byte more, and the
/// largest frames a DAQ records (img16 and ph1024, 32x32 at 2 bytes, with
/// their headers) fit with room to spare.
#[tokio::test]
async fn uploads_are_capped_at_exactly_64_kib() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    let mut c = server.client().await;

    let at_limit = upload_of_len(64 * 1024);
    c.upload_images(tokio_stream::iter(vec![at_limit]))
        .await
        .unwrap_or_else(|s| panic!("a 64 KiB upload message was refused: {s}"));
    let over = upload_of_len(64 * 1024 + 1);
    let status = c
        .upload_images(tokio_stream::iter(vec![over]))
        .await
        .expect_err("an upload message of 64 KiB + 1 was taken");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    assert!(status.message().contains("64 KiB"), "{status}");

    // The simulator replays the fixtures: its img16 and ph1024 frames, as
    // streamed, go back up unchanged.
    let mut s = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    let mut largest: HashMap<(i32, u32), PanoImage> = HashMap::new();
    while largest.len() < 2 {
        let image = take(&mut s, 1).await.remove(0).pano_image.unwrap();
        if image.bytes_per_pixel == 2 && image.shape == [32, 32] {
            largest.insert((image.r#type, image.module_id), image);
        }
    }
    for image in largest.into_values() {
        let what = format!("{:?} of module {}", image.r#type(), image.module_id);
        c.upload_images(tokio_stream::iter(vec![req(image)]))
            .await
            .unwrap_or_else(|s| panic!("a real {what} frame was refused: {s}"));
    }
}

/// SPEC §6: a request message over the limit is RESOURCE_EXHAUSTED, as
/// gRPC's own implementations answer it (tonic alone says OUT_OF_RANGE),
/// naming the limit, on every RPC; one at the limit gets past it.
#[tokio::test]
async fn a_request_over_the_message_limit_is_resource_exhausted_on_every_rpc() {
    use daqdata_proto::daqdata::InitHpIoRequest;
    use prost::Message;
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    // Any message of `len` bytes: the path decides how the server reads it.
    let of_len = |len: usize| {
        let mut m = InitHpIoRequest {
            data_dir: "x".repeat(len - 4),
            ..Default::default()
        };
        while m.encoded_len() > len {
            m.data_dir.pop();
        }
        assert_eq!(m.encoded_len(), len);
        m
    };
    let call = |path: &'static str, m: InitHpIoRequest| {
        let sock = server.sock.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(unix_channel(&sock).await);
            grpc.ready().await.unwrap();
            let codec = tonic_prost::ProstCodec::<InitHpIoRequest, ()>::default();
            grpc.unary(
                tonic::Request::new(m),
                http::uri::PathAndQuery::from_static(path),
                codec,
            )
            .await
        }
    };
    for rpc in daqdata_proto::rpc::ALL {
        let status = call(rpc.path, of_len(64 * 1024 + 1))
            .await
            .expect_err("a request over the limit was answered");
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "{}: {status}",
            rpc.name
        );
        assert!(
            status.message().contains("64 KiB"),
            "{}: {status}",
            rpc.name
        );
        // At the limit, the message is read (and answered as what it is).
        if let Err(status) = call(rpc.path, of_len(64 * 1024)).await {
            assert_ne!(
                status.code(),
                Code::ResourceExhausted,
                "{}: {status}",
                rpc.name
            );
        }
    }
}

// ---- InitHpIo and streams ------------------------------------------------

#[tokio::test]
async fn reinit_without_force_is_refused_while_streams_run_and_force_cancels_them() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    let mut c = server.client().await;
    let mut req = sim_request();
    req.force = false;
    // With no stream open, no force is needed.
    let reply = c.init_hp_io(req.clone()).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);

    let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    take(&mut s, 2).await;
    let status = c.init_hp_io(req).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("1 stream"),
        "{}",
        status.message()
    );

    let reply = c.init_hp_io(sim_request()).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);
    let ended = loop {
        match next(&mut s).await {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(ended.unwrap_err().code(), Code::Cancelled);

    // The new configuration streams.
    let mut s2 = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    take(&mut s2, 2).await;
}

#[tokio::test]
async fn a_failed_reinit_keeps_the_working_configuration() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    let mut c = server.client().await;
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        code(c.init_hp_io(dir_request(empty.path())).await),
        Code::FailedPrecondition
    );
    let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    take(&mut s, 2).await;
}

// ---- what a stream delivers --------------------------------------------

#[tokio::test]
async fn a_stream_is_paced_per_module_and_type() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    let mut c = server.client().await;
    let mut s = open(&mut c, stream_request(true, true, 0.2, &[])).await;
    let mut last: HashMap<(u32, i32), f64> = HashMap::new();
    let mut pairs = 0;
    for m in take(&mut s, 30).await {
        let image = m.pano_image.unwrap();
        let t = seconds(m.timestamp.as_ref().unwrap());
        if let Some(prev) = last.insert((image.module_id, image.r#type), t) {
            assert!(
                t - prev >= 0.19,
                "module {} type {} sent {:.3} s apart",
                image.module_id,
                image.r#type,
                t - prev
            );
            pairs += 1;
        }
    }
    assert!(pairs > 10);
    assert!(
        last.len() >= 2,
        "expected several (module, type) pairs, got {last:?}"
    );
}

#[tokio::test]
async fn type_and_module_filters_hold() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    let mut c = server.client().await;
    let mut movie = open(&mut c, stream_request(true, false, 0.01, &[])).await;
    for m in take(&mut movie, 20).await {
        assert_eq!(m.pano_image.unwrap().r#type, pano_image::Type::Movie as i32);
    }
    // Module 3's pulse heights come slower than the stream's interval, so
    // each is sent the moment it arrives and none is skipped.
    let mut ph3 = open(&mut c, stream_request(false, true, 0.01, &[3])).await;
    let numbers: Vec<u32> = take(&mut ph3, 12)
        .await
        .into_iter()
        .map(|m| {
            let image = m.pano_image.unwrap();
            assert_eq!(image.r#type, pano_image::Type::PulseHeight as i32);
            assert_eq!(image.module_id, 3);
            image.frame_number
        })
        .collect();
    let first = numbers[0];
    assert_eq!(numbers, (first..first + 12).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_hundred_streams_are_served_at_once() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    // Ten connections, ten streams each.
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(server.client().await);
    }
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut c = clients[i % 10].clone();
        let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
        tasks.push(tokio::spawn(async move { take(&mut s, 5).await }));
    }
    // Each stream got five different frames, each newer than the last it
    // got of that (module, type).
    for t in tasks {
        let mut last: HashMap<(u32, i32), (u32, u32)> = HashMap::new();
        for m in t.await.unwrap() {
            let image = m.pano_image.unwrap();
            let seqno = pff::PffName::parse(&image.file).unwrap().seqno;
            let at = (seqno, image.frame_number);
            if let Some(before) = last.insert((image.module_id, image.r#type), at) {
                assert!(
                    before < at,
                    "module {} type {}: (seqno, frame) {before:?} then {at:?}",
                    image.module_id,
                    image.r#type
                );
            }
        }
    }
}

#[tokio::test]
async fn abrupt_disconnects_free_their_places() {
    let server =
        TestServer::start(Some(InitOnStart::Simulate), |c| c.max_concurrent_rpcs = 3).await;
    for _ in 0..3 {
        let mut c = server.client().await;
        let mut s = open(&mut c, stream_request(true, true, 0.01, &[])).await;
        take(&mut s, 1).await;
        // Dropping the stream and its connection without a goodbye.
        drop(s);
        drop(c);
    }
    let mut c = server.client().await;
    let mut accepted = Vec::new();
    for _ in 0..50 {
        match c.stream_images(stream_request(true, true, 0.01, &[])).await {
            Ok(s) => {
                let mut s = s.into_inner();
                take(&mut s, 1).await;
                accepted.push(s);
                if accepted.len() == 3 {
                    break;
                }
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("{s}"),
        }
    }
    assert_eq!(
        accepted.len(),
        3,
        "the places of dropped streams were not freed"
    );
}

#[tokio::test]
async fn shutdown_under_load_ends_every_stream_with_a_status() {
    let mut server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    let sock = server.sock.clone();
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut c = server.client().await;
        let mut s = open(&mut c, stream_request(true, true, 0.01, &[])).await;
        take(&mut s, 1).await;
        streams.push(s);
    }
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                loop {
                    match next(&mut s).await {
                        Ok(Some(_)) => continue,
                        Ok(None) => return None,
                        Err(status) => return Some(status.code()),
                    }
                }
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown did not finish");
    for r in readers {
        let code = r.await.unwrap();
        assert!(
            matches!(code, Some(Code::Unavailable | Code::Cancelled)),
            "a stream ended with {code:?}"
        );
    }
    assert!(!sock.exists(), "the unix socket file was left behind");
}

#[tokio::test]
async fn torn_writes_never_reach_a_client_and_pixels_equal_the_files() {
    let (replay, tree) = live_tree(true, 200.0);
    let server = TestServer::start(None, |_| {}).await;
    let mut c = server.client().await;
    let reply = c
        .init_hp_io(dir_request(tree.path()))
        .await
        .unwrap()
        .into_inner();
    assert!(reply.success, "{}", reply.error_message);
    let mut s = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    let images: Vec<PanoImage> = take(&mut s, 200)
        .await
        .into_iter()
        .map(|m| m.pano_image.unwrap())
        .collect();
    drop(s);
    replay.stop().unwrap();
    let files: HashMap<String, std::path::PathBuf> = walk(tree.path())
        .into_iter()
        .filter_map(|p| Some((p.file_name()?.to_str()?.to_string(), p)))
        .collect();
    for image in images {
        let path = &files[&image.file];
        let file = pff::PffFile::open(path).unwrap();
        let frame = file.read_frame(u64::from(image.frame_number)).unwrap();
        let want: Vec<u32> = match &frame.pixels {
            pff::Pixels::U8(p) => p.iter().map(|&v| u32::from(v)).collect(),
            pff::Pixels::U16(p) => p.iter().map(|&v| u32::from(v)).collect(),
            // i16 pulse heights travel as their u16 bit pattern.
            pff::Pixels::I16(p) => p.iter().map(|&v| u32::from(v as u16)).collect(),
        };
        let at = format!("{} frame {}", image.file, image.frame_number);
        assert_eq!(image.image_array, want, "{at}");
        assert_eq!(
            json_of(image.header.unwrap()),
            frame.header.to_json(),
            "{at}"
        );
    }
}

#[tokio::test]
async fn an_upload_comes_back_byte_exact() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    let mut c = server.client().await;
    let mut s = open(&mut c, stream_request(true, true, 0.0, &[999])).await;
    let mut image = upload_image(999, pano_image::Type::Movie, [32, 32], 2);
    image.image_array = (0..1024).map(|i| i * 61 % 65536).collect();
    image.file = "uploaded.pff".into();
    image.frame_number = 42;
    c.upload_images(tokio_stream::iter(vec![req(image.clone())]))
        .await
        .unwrap();
    let got = take(&mut s, 1).await.remove(0).pano_image.unwrap();
    assert_eq!(got, image);
}

// ---- rotation and new runs --------------------------------------------

/// A replay into `out` closing a file every `frames_per_file` frames.
fn rotating_replay(out: &std::path::Path, frames_per_file: Option<u64>) -> daqsim::Replay {
    daqsim::Replay::start(
        daqsim::Fixtures::embedded(),
        daqsim::ReplayConfig {
            out: out.to_path_buf(),
            rate: Some(100.0),
            frames_per_file,
            ..daqsim::ReplayConfig::default()
        },
    )
    .unwrap()
}

/// Hashpipe closes a full file and opens the next seqno: a stream follows
/// each (module, data product) into its newer files, never back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_follows_each_file_rotation() {
    let tree = tempfile::tempdir().unwrap();
    let _replay = rotating_replay(tree.path(), Some(10));
    let server = TestServer::start(None, |_| {}).await;
    let mut c = server.client().await;
    let reply = c
        .init_hp_io(dir_request(tree.path()))
        .await
        .unwrap()
        .into_inner();
    assert!(reply.success, "{}", reply.error_message);

    let mut s = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    let mut seqnos: HashMap<(u32, pff::DataProduct), Vec<u32>> = HashMap::new();
    // Until some (module, product) was seen in three files.
    while seqnos.values().all(|v| v.len() < 3) {
        let image = take(&mut s, 1).await.remove(0).pano_image.unwrap();
        let name = pff::PffName::parse(&image.file).unwrap();
        let seen = seqnos.entry((name.module.get(), name.dp)).or_default();
        match seen.last() {
            Some(&last) if name.seqno < last => {
                panic!(
                    "{:?} went back from seqno {last} to {}",
                    (name.module, name.dp),
                    name.seqno
                )
            }
            Some(&last) if name.seqno == last => {}
            _ => seen.push(name.seqno),
        }
    }
}

/// The DAQ stops one run and starts the next in the same data directory:
/// an open stream moves to the new run's files without a new InitHpIo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_moves_to_a_new_run() {
    let tree = tempfile::tempdir().unwrap();
    let first = rotating_replay(tree.path(), None);
    let server = TestServer::start(None, |_| {}).await;
    let mut c = server.client().await;
    let reply = c
        .init_hp_io(dir_request(tree.path()))
        .await
        .unwrap()
        .into_inner();
    assert!(reply.success, "{}", reply.error_message);
    let mut s = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    take(&mut s, 5).await;

    first.stop().unwrap();
    let old = pff_names(tree.path());
    // Run names are stamped to the second: the next run starts in a later
    // one.
    let started = pff::time::node_now().0;
    while pff::time::node_now().0 == started {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _second = rotating_replay(tree.path(), None);

    // Within 500 images (5 s of every stream at 100 frames/s), the new
    // run's files, whose names the old run never had.
    for _ in 0..500 {
        let image = take(&mut s, 1).await.remove(0).pano_image.unwrap();
        if !old.contains(&image.file) {
            assert!(
                pff_names(tree.path()).contains(&image.file),
                "{}",
                image.file
            );
            return;
        }
    }
    panic!("the stream stayed on the first run's files");
}

// ---- helpers ---------------------------------------------------------

fn upload_image(module: u32, kind: pano_image::Type, shape: [u32; 2], bpp: i32) -> PanoImage {
    PanoImage {
        r#type: kind as i32,
        shape: shape.to_vec(),
        bytes_per_pixel: bpp,
        image_array: vec![1; (shape[0] * shape[1]) as usize],
        module_id: module,
        ..Default::default()
    }
}

fn req(image: PanoImage) -> UploadImageRequest {
    UploadImageRequest {
        pano_image: Some(image),
    }
}

/// A header Struct back as JSON, integers as integers, to compare with the file.
fn json_of(s: prost_types::Struct) -> serde_json::Value {
    use prost_types::value::Kind;
    fn value(v: prost_types::Value) -> serde_json::Value {
        match v.kind {
            Some(Kind::NumberValue(n)) if n.fract() == 0.0 => serde_json::json!(n as i64),
            Some(Kind::NumberValue(n)) => serde_json::json!(n),
            Some(Kind::StringValue(s)) => serde_json::json!(s),
            Some(Kind::BoolValue(b)) => serde_json::json!(b),
            Some(Kind::StructValue(s)) => json_of(s),
            Some(Kind::ListValue(l)) => l.values.into_iter().map(value).collect(),
            Some(Kind::NullValue(_)) | None => serde_json::Value::Null,
        }
    }
    s.fields.into_iter().map(|(k, v)| (k, value(v))).collect()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|e| e == "pff") {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_stopping_server_leaves_a_socket_that_replaced_its_own() {
    let mut server = TestServer::start(None, |_| {}).await;
    std::fs::remove_file(&server.sock).unwrap();
    let newcomer = tokio::net::UnixListener::bind(&server.sock).unwrap();
    server.shutdown().await;
    assert!(server.sock.exists(), "the new socket file was removed");
    drop(newcomer);
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    // A socket file no one listens on, as a crashed server leaves it.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let listen = vec![daqdata_net::Address::Unix(sock.clone())];
    let config = daqdata_server::Config {
        listen: listen.clone(),
        ..Default::default()
    };
    let server = daqdata_server::Server::start(config.clone(), None)
        .await
        .unwrap();
    let mut c =
        daqdata_proto::daqdata::daq_data_client::DaqDataClient::new(unix_channel(&sock).await);
    c.ping(()).await.unwrap();
    let second = daqdata_server::Server::start(config, None).await;
    let err = second
        .err()
        .expect("a second server on a live socket must fail")
        .to_string();
    assert!(err.contains("already listening"), "{err}");
    server.shutdown().await.unwrap();
    assert!(!sock.exists());
}

#[tokio::test]
async fn a_stream_after_a_quiet_spell_starts_with_fresh_frames() {
    let (_replay, tree) = live_tree(false, 200.0);
    let server = TestServer::start(None, |_| {}).await;
    let mut c = server.client().await;
    let reply = c
        .init_hp_io(dir_request(tree.path()))
        .await
        .unwrap()
        .into_inner();
    assert!(reply.success, "{}", reply.error_message);
    let movie_1 = walk(tree.path())
        .into_iter()
        .find(|p| {
            let name = pff::PffName::parse(p.file_name().unwrap().to_str().unwrap()).unwrap();
            name.module == 1 && name.dp == pff::DataProduct::Img16
        })
        .expect("module 1 records img16");
    let written = || {
        let file = pff::PffFile::open(&movie_1).unwrap();
        file.layout().unwrap().frames
    };

    let mut s = open(&mut c, stream_request(true, false, 0.0, &[1])).await;
    take(&mut s, 3).await;
    drop(s);
    // No stream: the tracker reads nothing, and what the server held is
    // not served to the next stream as if it were new.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_open = written();
    let mut s = open(&mut c, stream_request(true, false, 0.0, &[1])).await;
    let first = take(&mut s, 1).await.remove(0).pano_image.unwrap();
    assert_eq!(first.file, movie_1.file_name().unwrap().to_str().unwrap());
    // The newest frame complete when the stream opened, or a later one.
    assert!(
        u64::from(first.frame_number) + 1 >= before_open,
        "the first frame after the quiet spell is frame {} of {}; {before_open} were written before the stream opened",
        first.frame_number,
        first.file
    );
}
