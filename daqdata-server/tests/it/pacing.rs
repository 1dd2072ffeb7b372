//! SPEC §3 rule 1: a stream is served at max(client interval, hp_io
//! interval) per (module, data product), never faster, and whenever frames
//! come faster than that, at that rate.

use crate::common;

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

/// The send stamps of each (module, type) over `MEASURED` seconds by the
/// server's clock, starting one second after the stream's first image.
async fn sends(mut stream: Streaming<StreamImagesResponse>) -> HashMap<(u32, i32), Vec<f64>> {
    let mut sent: HashMap<(u32, i32), Vec<f64>> = HashMap::new();
    let mut start = None;
    loop {
        let m = match next(&mut stream).await {
            Ok(Some(m)) => m,
            other => panic!("the stream ended early: {other:?}"),
        };
        let t = sent_at(&m);
        let from = *start.get_or_insert(t + 1.0);
        if t >= from + MEASURED {
            return sent;
        }
        if t >= from {
            let image = m.pano_image.expect("every response has an image");
            sent.entry((image.module_id, image.r#type))
                .or_default()
                .push(t);
        }
    }
}

/// Five (module, data product) pairs in the simulated run: img16 and
/// ph256 of module 1, img8 and ph1024 of module 2, ph256 of module 3. Each
/// is never sent faster than every `interval` (no window of N intervals
/// holds more than N + 1 sends, by the server's stamps: the bound is the
/// point, and a busy machine can only make sends rarer), and is served at
/// that pace, not starved: at least a quarter of the best count (the
/// share a loaded test machine cannot take from it).
fn assert_each_pair_paced(sends: &HashMap<(u32, i32), Vec<f64>>, interval: f64, case: &str) {
    assert_eq!(sends.len(), 5, "{case}: pairs seen {:?}", sends.keys());
    let best = MEASURED / interval;
    for (pair, stamps) in sends {
        assert_at_most_n_plus_one(stamps, interval, &format!("{case}, {pair:?}"));
        assert!(
            stamps.len() as f64 >= best / 4.0,
            "{case}: (module, type) {pair:?} was sent {} times in {MEASURED} s at {interval} s",
            stamps.len()
        );
    }
}

/// The second case checks the schedule itself: at hp_io 0.001 s a frame
/// is always waiting, so every send goes out the moment the pace allows,
/// and at 0.01 s the 1 ms allowance is a tenth of the interval, so a
/// schedule that crept early by it would break N + 1 within a second (at
/// 0.05 s it would take ten).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_client_is_served_at_its_own_interval() {
    for (client, hp_io) in [(0.05, 0.01), (0.01, 0.001)] {
        let server = simulated_server(hp_io).await;
        let mut c = server.client().await;
        let s = open(&mut c, stream_request(true, true, client, &[])).await;
        let sends = tokio::time::timeout(Duration::from_secs(30), sends(s))
            .await
            .expect("3 s of images within 30 s");
        assert_each_pair_paced(
            &sends,
            client,
            &format!("client {client} s, hp_io {hp_io} s"),
        );
    }
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
        streams.push((asked, tokio::spawn(sends(s))));
    }
    for (asked, task) in streams {
        let sends = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("3 s of images within 30 s")
            .expect("the stream task did not panic");
        assert_each_pair_paced(&sends, 0.05, &format!("client {asked} s, hp_io 0.05 s"));
    }
}
