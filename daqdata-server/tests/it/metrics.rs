//! `/metrics` as a Prometheus server scrapes it: the text format parses,
//! and the counters move as the streams, uploads and refusals do.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use daqdata_proto::daqdata::daq_data_client::DaqDataClient;
use daqdata_proto::daqdata::{PanoImage, UploadImageRequest};
use tonic::transport::Channel;
use tonic::Code;

/// A server simulating 200 frames/s with hp_io initialised, its metrics
/// address and a client.
async fn simulating_with_metrics() -> (BinServer, String, DaqDataClient<Channel>) {
    let server = BinServer::start(
        "metrics_listen = \"127.0.0.1:0\"\nsimulate.frames_per_second = 200.0\n",
        &[],
    )
    .await;
    let addr = metrics_addr(&server);
    let mut c = server.client().await;
    let reply = c.init_hp_io(sim_request()).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);
    (server, addr, c)
}

/// A stream wakes once per image it sends, when its slot falls due, and
/// not for the frames that arrive in between (here about 20 per interval).
/// A stream that also waited on slots that are not due would wake for the
/// first of those each time: the same images, twice the wake-ups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_wakes_once_per_image_it_sends() {
    let (_server, addr, mut c) = simulating_with_metrics().await;
    // One slot: module 1's movie images.
    let mut s = open(&mut c, stream_request(true, false, 0.1, &[1])).await;
    take(&mut s, 40).await;
    let m = scrape(&addr).await;
    let sent = get(&m, "daqdata_images_sent_total");
    let wakeups = get(&m, "daqdata_stream_wakeups_total");
    assert!(sent >= 40.0, "{sent} images sent");
    // One wake-up per send (the first may need none), and a few to find
    // the slot at the start: 41 to 44 for 40 sends here. A
    // frame late for its slot (a stalled replay on a busy machine) costs
    // one more; half the sends would have to be late to reach the bound.
    assert!(
        wakeups >= sent - 1.0 && wakeups <= 1.5 * sent + 3.0,
        "{wakeups} wake-ups for {sent} images"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_move_as_the_streams_do() {
    let (_server, addr, mut c) = simulating_with_metrics().await;

    let before = scrape(&addr).await;
    assert_eq!(get(&before, "daqdata_images_sent_total"), 0.0);
    assert_eq!(get(&before, "daqdata_hp_io_generation_total"), 1.0);
    assert!(get(&before, "daqdata_process_resident_memory_bytes") > 1e6);
    assert!(get(&before, "daqdata_process_open_fds") > 3.0);

    // A stream runs: the scrape sees it, and the counters move.
    let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    let mut received = take(&mut s, 20).await.len() as u64;
    let during = scrape(&addr).await;
    assert_eq!(get(&during, "daqdata_active_streams"), 1.0);
    assert_eq!(get(&during, "daqdata_active_peers"), 1.0);
    assert!(get(&during, "daqdata_images_sent_total") >= 20.0);
    assert!(get(&during, "daqdata_tracker_wakeups_total") > 0.0);
    let tracked = get(
        &during,
        "daqdata_frames_tracked_total{data_product=\"img16\",module=\"1\"}",
    );
    assert!(tracked > 0.0);
    assert!(get(&during, "daqdata_frame_age_seconds_count") > 0.0);

    // A forced InitHpIo ends the stream once the server has sent it
    // everything: what the client received is what the server counted.
    let reply = c.init_hp_io(sim_request()).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);
    let (end, rest) = read_to_end(&mut s).await;
    assert_eq!(end.unwrap_err().code(), Code::Cancelled);
    received += rest;
    let after = scrape(&addr).await;
    assert_eq!(get(&after, "daqdata_images_sent_total"), received as f64);
    assert_eq!(get(&after, "daqdata_active_streams"), 0.0);
    assert_eq!(get(&after, "daqdata_active_peers"), 0.0);
    assert_eq!(get(&after, "daqdata_hp_io_generation_total"), 2.0);
    assert!(
        get(
            &after,
            "daqdata_frames_tracked_total{data_product=\"img16\",module=\"1\"}"
        ) >= tracked
    );

    // Uploads accepted, a refused one, and a refused stream.
    let image = ph_image(9, 7);
    let good: Vec<_> = (0..3)
        .map(|_| UploadImageRequest {
            pano_image: Some(image.clone()),
        })
        .collect();
    c.upload_images(tokio_stream::iter(good)).await.unwrap();
    let bad = UploadImageRequest {
        pano_image: Some(PanoImage {
            image_array: vec![7; 3],
            ..image
        }),
    };
    let refused = c.upload_images(tokio_stream::iter(vec![bad])).await;
    assert_eq!(code(refused), Code::InvalidArgument);
    let neither = c
        .stream_images(stream_request(false, false, 0.1, &[]))
        .await;
    assert_eq!(code(neither), Code::InvalidArgument);

    let last = scrape(&addr).await;
    assert_eq!(
        get(&last, "daqdata_uploads_total{outcome=\"accepted\"}"),
        3.0
    );
    assert_eq!(
        get(&last, "daqdata_uploads_total{outcome=\"refused\"}"),
        1.0
    );
    assert_eq!(
        get(
            &last,
            "daqdata_refused_rpcs_total{code=\"InvalidArgument\",rpc=\"StreamImages\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &last,
            "daqdata_refused_rpcs_total{code=\"InvalidArgument\",rpc=\"UploadImages\"}"
        ),
        1.0
    );
    let info: Vec<_> = last
        .keys()
        .filter(|k| k.starts_with("daqdata_hp_io{"))
        .collect();
    assert_eq!(info.len(), 1, "one running configuration: {info:?}");
    assert!(info[0].contains("simulate=\"true\""), "{info:?}");

    // Frame age is sampled one frame in eight, from the first: over a run
    // that has ended, ceil(tracked / 8) samples (every simulated frame
    // carries its stamp). Both configurations' trackers are idle now.
    let tracked = frames_tracked(&last);
    assert!(tracked > 8.0, "{tracked} frames tracked");
    assert_eq!(
        get(&last, "daqdata_frame_age_seconds_count"),
        (tracked / 8.0).ceil(),
        "{tracked} frames tracked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_metrics_listen_serves_no_metrics() {
    let server = BinServer::start("metrics_listen = \"\"\n", &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !server.log().contains("metrics on http://"),
        "{}",
        server.log()
    );
}

/// The frames the server's tracker read, over every module and product.
fn frames_tracked(m: &HashMap<String, f64>) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with("daqdata_frames_tracked_total"))
        .map(|(_, v)| v)
        .sum()
}

/// Bytes of PFF data under `dir`.
fn pff_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "pff") {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

/// Tracking is on demand: while no stream is open the server reads no
/// frame however much the DAQ writes (Hashpipe's node pays nothing for an
/// idle server), and reads once one opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_reads_no_frame_until_a_stream_opens() {
    let (_replay, tree) = live_tree(false, 200.0);
    let server = TestServer::start(None, |c| c.metrics_listen = "127.0.0.1:0".into()).await;
    let addr = server
        .server
        .as_ref()
        .unwrap()
        .metrics_addr()
        .unwrap()
        .to_string();
    let mut c = server.client().await;
    let reply = c
        .init_hp_io(dir_request(tree.path()))
        .await
        .unwrap()
        .into_inner();
    assert!(reply.success, "{}", reply.error_message);

    // The DAQ writes 64 KiB more while the server idles.
    let written = pff_bytes(tree.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pff_bytes(tree.path()) < written + 64 * 1024 {
        assert!(std::time::Instant::now() < deadline, "daqsim wrote nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(frames_tracked(&scrape(&addr).await), 0.0);

    let mut s = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    take(&mut s, 1).await;
    assert!(frames_tracked(&scrape(&addr).await) > 0.0);
}
