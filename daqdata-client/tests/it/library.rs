//! The library, `DaqClient`, against small in-test DaqData servers that
//! stream real recorded frames.

use crate::common;

use common::{frames, within, FakeServer};
use daqdata_client::{DaqClient, Error, Host, HpIoConfig, StreamSpec};
use futures::StreamExt;
use tonic::Code;

#[tokio::test]
async fn merged_stream_goes_on_with_one_host_down() {
    let dir = tempfile::tempdir().unwrap();
    let a = FakeServer::new("daq-a").serve_unix(dir.path());
    let b = FakeServer::new("daq-b").serve_tcp().await;
    let down = Host::Unix(dir.path().join("nobody-listens.sock"));
    let client = DaqClient::new([a, b, down.clone()]).unwrap();

    let status = client.host_status().await;
    assert_eq!(status.iter().filter(|(_, s)| s.is_ok()).count(), 2);
    assert!(client.ping(&down).await.is_err());

    let spec = StreamSpec {
        movie: true,
        pulse_height: true,
        update_interval_seconds: 0.0,
        module_ids: vec![],
    };
    let mut stream = client.stream_images(&spec);
    let (mut from_a, mut from_b, mut errors) = (0, 0, Vec::new());
    within("streaming from the two live hosts", async {
        while from_a < 10 || from_b < 10 {
            match stream
                .next()
                .await
                .expect("the live hosts' parts must not end")
            {
                Ok(image) if image.server == "daq-a" => from_a += 1,
                Ok(image) if image.server == "daq-b" => from_b += 1,
                Ok(image) => panic!("image from unknown server {}", image.server),
                Err(e) => errors.push(e),
            }
        }
    })
    .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = errors[0].to_string();
    assert!(
        msg.contains("nobody-listens.sock") && msg.contains("cannot connect"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_node_that_goes_away_ends_only_its_part() {
    let dir = tempfile::tempdir().unwrap();
    let mut leaving = FakeServer::new("leaving");
    leaving.stop_after = Some(3);
    let a = leaving.serve_unix(dir.path());
    let b = FakeServer::new("staying").serve_unix(dir.path());
    let client = DaqClient::new([a, b]).unwrap();
    let spec = StreamSpec {
        movie: true,
        pulse_height: true,
        update_interval_seconds: 0.0,
        module_ids: vec![],
    };
    let mut stream = client.stream_images(&spec);
    let mut after_the_error = 0;
    let mut error = None;
    within("the staying host streaming on", async {
        while after_the_error < 10 {
            match stream
                .next()
                .await
                .expect("the staying host's part must not end")
            {
                Err(e) => error = Some(e),
                Ok(image) if error.is_some() => {
                    assert_eq!(image.server, "staying");
                    after_the_error += 1;
                }
                Ok(_) => {}
            }
        }
    })
    .await;
    let error = error.unwrap();
    assert_eq!(error.code(), Some(Code::Unavailable));
    assert!(error.to_string().contains("retry"), "{error}");
}

#[tokio::test]
async fn streaming_before_init_says_to_run_init() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::new("fresh");
    *server.initialized.lock().unwrap() = false;
    let host = server.serve_unix(dir.path());
    let client = DaqClient::new([host]).unwrap();
    let spec = StreamSpec {
        movie: true,
        pulse_height: false,
        update_interval_seconds: 1.0,
        module_ids: vec![],
    };
    let first = within("the refusal", client.stream_images(&spec).next())
        .await
        .unwrap();
    let err = first.unwrap_err();
    assert_eq!(err.code(), Some(Code::FailedPrecondition));
    assert!(err.to_string().contains("--init-sim"), "{err}");

    let results = client.init_sim().await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let sent = server.inits.lock().unwrap()[0].clone();
    assert!(sent.simulate_daq && sent.force);
    assert_eq!(sent.update_interval_seconds, 0.1);

    let image = within("an image after init", client.stream_images(&spec).next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(image.data_product.kind(), pff::ImageKind::Movie);
    assert!(image.node_time().is_some());
}

#[tokio::test]
async fn init_sends_the_hp_io_config_and_reports_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::new("daq1");
    let client = DaqClient::new([server.serve_unix(dir.path())]).unwrap();
    let config = HpIoConfig {
        data_dir: "/mnt/data10".into(),
        update_interval_seconds: 0.25,
        force: false,
        simulate_daq: false,
        module_ids: vec![1, 3],
        comments: None,
    };
    let results = client.init_hp_io(&config).await;
    assert!(results[0].1.is_ok());
    let sent = server.inits.lock().unwrap()[0].clone();
    assert_eq!(
        (sent.data_dir.as_str(), sent.module_ids),
        ("/mnt/data10", vec![1, 3])
    );

    let missing = HpIoConfig {
        data_dir: "/nowhere".into(),
        ..config
    };
    let err = client.init_hp_io(&missing).await.remove(0).1.unwrap_err();
    assert!(matches!(
        err,
        Error::Rpc {
            code: Code::InvalidArgument,
            ..
        }
    ));
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn uploads_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::new("daq1");
    let host = server.serve_unix(dir.path());
    let client = DaqClient::new([host.clone()]).unwrap();
    let images = frames();
    within(
        "the upload",
        client.upload_images(&host, futures::stream::iter(images.clone())),
    )
    .await
    .unwrap();
    assert_eq!(*server.uploads.lock().unwrap(), images);
}

#[tokio::test]
async fn reflection_lists_the_daqdata_methods() {
    let dir = tempfile::tempdir().unwrap();
    let host = FakeServer::new("daq1").serve_unix(dir.path());
    let client = DaqClient::new([host.clone()]).unwrap();
    let listing = within("reflection", client.reflect_services(&host))
        .await
        .unwrap();
    assert_eq!(listing.protocol, "v1alpha");
    assert!(
        listing.services.iter().any(|s| s == "daqdata.DaqData"),
        "{listing}"
    );
    let text = listing.to_string();
    assert!(
        text.contains(
            "rpc StreamImages(StreamImagesRequest) returns (stream StreamImagesResponse)"
        ),
        "{text}"
    );
    assert!(
        text.contains("rpc UploadImages(stream UploadImageRequest) returns (Empty)"),
        "{text}"
    );
}

#[tokio::test]
async fn dropping_the_stream_cancels_its_rpc_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::new("daq1");
    let client = DaqClient::new([server.serve_unix(dir.path())]).unwrap();
    let spec = StreamSpec {
        movie: true,
        pulse_height: true,
        update_interval_seconds: 0.0,
        module_ids: vec![pff::ModuleId::new(3)],
    };
    let mut stream = client.stream_images(&spec);
    let image = within("an image", stream.next()).await.unwrap().unwrap();
    assert_eq!(image.module_id, 3, "module_ids reach the server");
    let cancelled = server.stream_cancelled.notified();
    drop(stream);
    within("the server noticing the cancel", cancelled).await;
}

#[tokio::test]
async fn hashpipe_status_of_every_node_with_rates_and_a_thread_that_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let a = FakeServer::new("daq-a");
    let b = FakeServer::new("daq-b");
    b.hashpipe.lock().unwrap().threads = None;
    b.hashpipe.lock().unwrap().message = "no status buffer (no segment for /home/hp)".into();
    let client = DaqClient::new([a.serve_unix(dir.path()), b.serve_tcp().await]).unwrap();
    let mut stream = client.stream_hashpipe_status(0.02, daqdata_client::Backoff::default());

    // Both nodes, and daq-a's rates once it has two reads.
    let (mut rated_a, mut seen_b) = (None, None);
    within("a rated read of daq-a and a read of daq-b", async {
        while rated_a.is_none() || seen_b.is_none() {
            let s = stream.next().await.expect("the stream goes on").unwrap();
            match s.name.as_str() {
                "daq-a" if s.packets_per_second.is_some() => rated_a = Some(s),
                "daq-a" => {}
                "daq-b" => seen_b = Some(s),
                other => panic!("status from unknown node {other}"),
            }
        }
    })
    .await;
    let a_read = rated_a.unwrap();
    assert!(a_read.problems().is_empty(), "{:?}", a_read.problems());
    assert!(a_read.packets_per_second.unwrap() > 0.0);
    assert!(a_read.losses_per_second.unwrap() > 0.0);
    // Lost per read is 3 of 16384: the two rates keep that ratio.
    let ratio = a_read.losses_per_second.unwrap() / a_read.packets_per_second.unwrap();
    assert!((ratio - 3.0 / 16384.0).abs() < 1e-9, "{ratio}");
    assert_eq!(
        seen_b.unwrap().problems(),
        ["no status buffer (no segment for /home/hp)"]
    );

    // The net thread blocks: the next reads of daq-a say so.
    a.hashpipe.lock().unwrap().threads =
        Some(["blocked".into(), "processing".into(), "waiting".into()]);
    within("daq-a's blocked net thread", async {
        loop {
            let s = stream.next().await.expect("the stream goes on").unwrap();
            if s.name == "daq-a" && s.problems() == ["net thread blocked"] {
                break;
            }
        }
    })
    .await;
}
