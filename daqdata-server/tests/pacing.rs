//! SPEC §3 rule 1: a stream is served at max(client interval, hp_io
//! interval) per (module, data product), never faster, and whenever frames
//! come faster than that, at that rate.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use daqdata_proto::daqdata::{InitHpIoRequest, StreamImagesResponse};
use tonic::Streaming;

/// Every fixture stream of the simulated run is written at this rate, far
/// faster than any stream below is served.
const WRITE_RATE: f64 = 1000.0;

/// Seconds measured per stream, after the first second of it.
const MEASURED: f64 = 3.0;

async fn simulated_server(hp_io_interval: f64) -> TestServer {
    let server = TestServer::start(None, |c| {
        c.simulate.frames_per_second = Some(WRITE_RATE);
    })
    .await;
    let reply = server
        .client()
        .await
        .init_hp_io(InitHpIoRequest {
            update_interval_seconds: hp_io_interval,
            ..sim_request()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.success, "{}", reply.error_message);
    server
}

/// Sends per second of each (module, type), counted by the server's send
/// time stamps over `MEASURED` seconds that start one second after the
/// stream's first image.
async fn rates(mut stream: Streaming<StreamImagesResponse>) -> HashMap<(u32, i32), f64> {
    let mut sent: HashMap<(u32, i32), Vec<f64>> = HashMap::new();
    let mut start = None;
    loop {
        let m = match next(&mut stream).await {
            Ok(Some(m)) => m,
            other => panic!("the stream ended early: {other:?}"),
        };
        let t = seconds(
            m.timestamp
                .as_ref()
                .expect("every response has a time stamp"),
        );
        let from = *start.get_or_insert(t + 1.0);
        if t >= from + MEASURED {
            break;
        }
        if t >= from {
            let image = m.pano_image.expect("every response has an image");
            sent.entry((image.module_id, image.r#type))
                .or_default()
                .push(t);
        }
    }
    sent.into_iter()
        .map(|(key, times)| (key, times.len() as f64 / MEASURED))
        .collect()
}

fn seconds(ts: &prost_types::Timestamp) -> f64 {
    ts.seconds as f64 + f64::from(ts.nanos) * 1e-9
}

/// Five (module, data product) pairs in the simulated run: img16 and
/// ph256 of module 1, img8 and ph1024 of module 2, ph256 of module 3.
fn assert_each_pair_at_20_per_second(rates: &HashMap<(u32, i32), f64>, case: &str) {
    assert_eq!(rates.len(), 5, "{case}: pairs seen {rates:?}");
    for (pair, rate) in rates {
        assert!(
            (18.0..=21.0).contains(rate),
            "{case}: (module, type) {pair:?} was served {rate:.2} frames/s, not 18 to 21"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_client_is_served_at_its_own_interval() {
    let server = simulated_server(0.01).await;
    let mut c = server.client().await;
    let s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    let rates = tokio::time::timeout(Duration::from_secs(30), rates(s))
        .await
        .expect("3 s of images within 30 s");
    assert_each_pair_at_20_per_second(&rates, "client 0.05 s, hp_io 0.01 s");
}

/// hp_io's interval is the fastest any stream is served: asking for it, for
/// 0 or for -1 (what the Python CLI's --plot-phdist sends) is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_is_served_faster_than_hp_io() {
    let server = simulated_server(0.05).await;
    let mut streams = Vec::new();
    for asked in [0.05, 0.0, -1.0, 0.001] {
        let mut c = server.client().await;
        let s = open(&mut c, stream_request(true, true, asked, &[])).await;
        streams.push((asked, tokio::spawn(rates(s))));
    }
    for (asked, task) in streams {
        let rates = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("3 s of images within 30 s")
            .expect("the stream task did not panic");
        assert_each_pair_at_20_per_second(&rates, &format!("client {asked} s, hp_io 0.05 s"));
    }
}
