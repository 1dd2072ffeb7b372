//! SPEC §3: "a slow client never delays the others": a stream whose client
//! stopped reading does not slow a stream that reads, and is itself served
//! again, with the newest frames, when it reads.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use daqdata_proto::daqdata::daq_data_client::DaqDataClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

fn seconds(ts: &prost_types::Timestamp) -> f64 {
    ts.seconds as f64 + f64::from(ts.nanos) * 1e-9
}

/// A connection whose HTTP/2 windows are the protocol's minimum, so a
/// stream that is not read stalls the server's sends after ~64 KiB.
async fn small_window_channel(sock: &Path) -> Channel {
    let sock = sock.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect_with_connector(tower::service_fn(move |_| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?))
            }
        }))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_does_not_slow_a_fast_one() {
    // Frames far faster than either stream's pace.
    let server = TestServer::start(None, |c| c.simulate.frames_per_second = Some(1000.0)).await;
    let mut c = server.client().await;
    let reply = c.init_hp_io(sim_request()).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);

    // A: 0.01 s, opened and never read while B runs.
    let mut a_client = DaqDataClient::new(small_window_channel(&server.sock).await);
    let mut a = open(&mut a_client, stream_request(true, true, 0.01, &[])).await;

    // B: 0.05 s on its own connection, read for 4 s.
    let interval = 0.05;
    let mut b = open(&mut c, stream_request(true, true, interval, &[])).await;
    let mut sent: HashMap<(u32, i32), Vec<f64>> = HashMap::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        let m = take(&mut b, 1).await.remove(0);
        let image = m.pano_image.unwrap();
        sent.entry((image.module_id, image.r#type))
            .or_default()
            .push(seconds(m.timestamp.as_ref().unwrap()));
    }
    let b_end = sent.values().flatten().fold(0.0f64, |a, &t| a.max(t));

    // B got each (module, type) at its pace, by the server's stamps: never
    // faster than its interval, and not held up by A. A stream blocked
    // behind A would get nothing once A's 64 KiB window filled (a few
    // dozen images); a quarter of the best count says it was not, and a
    // loaded test machine cannot take that share from it.
    assert!(sent.len() >= 2, "{:?}", sent.keys());
    for (pair, times) in &sent {
        assert_at_most_n_plus_one(times, interval, &format!("B {pair:?}"));
        let window = times.last().unwrap() - times[0];
        let best = window / interval + 1.0;
        assert!(
            window > 3.0 && times.len() as f64 >= best / 4.0,
            "{pair:?}: {} frames in {window:.3} s at {interval} s",
            times.len()
        );
    }

    // A is still open, and when read it gets past what was held for it to
    // frames sent after B's window; the backlog it missed was dropped.
    let mut held = 0;
    loop {
        let m = take(&mut a, 1).await.remove(0);
        if seconds(m.timestamp.as_ref().unwrap()) > b_end {
            break;
        }
        held += 1;
        assert!(held < 500, "A was queued every frame it missed");
    }
    a_client.ping(()).await.unwrap();
}

/// SPEC §3 (shutdown): a client that never reads cannot hold the process
/// past its grace period. The bound is the point here: the grace period is
/// what an operator (and systemd's stop timeout) counts on, and 1 s more
/// leaves room for stopping hp_io and for a busy machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_the_grace_period_when_a_client_never_reads() {
    let grace = 1.0;
    let mut server = BinServer::start(
        &format!("shutdown_grace_period_seconds = {grace}\nsimulate.frames_per_second = 1000.0\n"),
        &[],
    )
    .await;
    let mut c = server.client().await;
    let reply = c.init_hp_io(sim_request()).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);

    let mut stalled_client = DaqDataClient::new(small_window_channel(&server.sock).await);
    let _stalled = open(&mut stalled_client, stream_request(true, true, 0.0, &[])).await;
    // 200 images read on another stream at the same pace are far more
    // than the stalled stream's 64 KiB window holds: its sends are stuck.
    let mut reader = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    take(&mut reader, 200).await;

    let (status, took) = server.terminate().await;
    let log = server.log();
    assert!(status.success(), "{status}:\n{log}");
    // The stuck stream held its connection open: the grace period ran out.
    assert!(log.contains("after the 1s grace period"), "{log}");
    assert!(
        took < Duration::from_secs_f64(grace + 1.0),
        "exited {took:?} after SIGTERM, grace period {grace} s:\n{log}"
    );
}
