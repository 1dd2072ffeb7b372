//! SPEC §8: a gateway relays simulated DAQ nodes to its viewers over one
//! upstream stream per node, through restarts, re-inits, chains and
//! credentials, and refuses loops.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use common::*;
use daqdata_proto::daqdata::{
    InitHpIoRequest, InitHpIoResponse, StreamHashpipeStatusRequest, StreamHashpipeStatusResponse,
    StreamImagesResponse,
};
use futures::StreamExt;
use tonic::Streaming;

/// A simulated DAQ node whose frames carry `module`.
async fn node(module: u32, extra: &str) -> BinServer {
    BinServer::start(&node_toml(module, extra), &[]).await
}

fn node_toml(module: u32, extra: &str) -> String {
    format!(
        "metrics_listen = \"127.0.0.1:0\"\nsimulate.module_ids = [{module}]\nsimulate.frames_per_second = 40.0\n{extra}"
    )
}

fn unix(sock: &Path) -> String {
    format!("unix://{}", sock.display())
}

/// `[gateway]` relaying `upstreams`, with `keys` added to the table.
fn gateway_toml(upstreams: &[String], keys: &str) -> String {
    let list: Vec<String> = upstreams.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "metrics_listen = \"127.0.0.1:0\"\n[gateway]\nupstreams = [{}]\n{keys}",
        list.join(", ")
    )
}

async fn gateway(upstreams: &[String]) -> BinServer {
    BinServer::start(&gateway_toml(upstreams, ""), &[]).await
}

/// The reply to InitHpIo(simulate) at `server`, as a viewer would get it.
async fn init_sim_reply(server: &BinServer) -> InitHpIoResponse {
    server
        .client()
        .await
        .init_hp_io(sim_request())
        .await
        .unwrap()
        .into_inner()
}

async fn init_sim(server: &BinServer) {
    let reply = init_sim_reply(server).await;
    assert!(reply.success, "{}", reply.error_message);
}

async fn status(server: &BinServer) -> (bool, String) {
    let r = server.client().await.status(()).await.unwrap().into_inner();
    (r.hp_io_initialized, r.message)
}

/// Polls `check` on the server's Status (every 50 ms, up to 30 s).
async fn wait_for_status(server: &BinServer, check: impl Fn(bool, &str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, message) = status(server).await;
        if check(ok, &message) {
            return message;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Status never became as expected; last: {ok} {message}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads until images of every module in `want` came; returns them all.
async fn until_modules(
    stream: &mut Streaming<StreamImagesResponse>,
    want: &[u32],
) -> Vec<StreamImagesResponse> {
    let want: BTreeSet<u32> = want.iter().copied().collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while !want.is_subset(&seen) {
        let m = take(stream, 1).await.remove(0);
        if let Some(image) = &m.pano_image {
            seen.insert(image.module_id);
        }
        out.push(m);
    }
    out
}

fn module_of(m: &StreamImagesResponse) -> u32 {
    m.pano_image.as_ref().map_or(0, |i| i.module_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_viewers_cost_each_node_one_stream() {
    let nodes = [node(10, "").await, node(20, "").await, node(30, "").await];
    let upstreams: Vec<String> = nodes.iter().map(|n| unix(&n.sock)).collect();
    let gw = gateway(&upstreams).await;

    // Nodes not initialized yet: the gateway says so, naming each.
    let (ok, message) = status(&gw).await;
    assert!(!ok, "{message}");
    for u in &upstreams {
        assert!(
            message.contains(&format!("{u}: not initialized")),
            "{message}"
        );
    }

    // InitHpIo through the gateway reaches every node.
    let reply = init_sim_reply(&gw).await;
    assert!(reply.success, "{}", reply.error_message);
    for n in &nodes {
        let (ok, message) = status(n).await;
        assert!(ok, "{message}");
    }
    let message = wait_for_status(&gw, |ok, _| ok).await;
    for u in &upstreams {
        assert!(message.contains(&format!("{u}: initialized")), "{message}");
    }

    // 100 viewers over 10 connections: each gets every node's modules.
    let mut viewers = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let client = gw.client().await;
        for _ in 0..10 {
            let mut client = client.clone();
            viewers.spawn(async move {
                let mut s = open(&mut client, stream_request(true, true, 0.1, &[])).await;
                until_modules(&mut s, &[10, 20, 30]).await;
                s
            });
        }
    }
    let mut open_streams = Vec::new();
    while let Some(done) = viewers.join_next().await {
        open_streams.push(done.unwrap());
    }
    assert_eq!(open_streams.len(), 100);

    // Every node serves the gateway exactly one stream.
    for n in &nodes {
        let m = scrape(&metrics_addr(n)).await;
        assert_eq!(get(&m, "daqdata_active_streams"), 1.0, "{}", n.log());
    }
    let m = scrape(&metrics_addr(&gw)).await;
    assert_eq!(get(&m, "daqdata_active_streams"), 100.0);
    for u in &upstreams {
        let up = get(
            &m,
            &format!("daqdata_gateway_upstream_up{{upstream=\"{u}\"}}"),
        );
        assert_eq!(up, 1.0, "{u}");
        let images = get(
            &m,
            &format!("daqdata_gateway_upstream_images_total{{upstream=\"{u}\"}}"),
        );
        assert!(images > 0.0, "{u}");
    }

    // Pacing at the gateway: by its send stamps, any N intervals hold at
    // most N + 1 images of each (module, data product).
    // The other viewers close: unread, they would fill the flow-control
    // window their connection shares with this one.
    let mut s = open_streams.pop().unwrap();
    drop(open_streams);
    let mut sends: HashMap<(u32, i32, i32, u32), Vec<f64>> = HashMap::new();
    for m in take(&mut s, 400).await {
        let image = m.pano_image.as_ref().unwrap();
        let ts = m.timestamp.unwrap();
        let key = (
            image.module_id,
            image.r#type,
            image.bytes_per_pixel,
            image.shape[0],
        );
        sends
            .entry(key)
            .or_default()
            .push(ts.seconds as f64 + f64::from(ts.nanos) * 1e-9);
    }
    assert!(sends.keys().map(|k| k.0).collect::<BTreeSet<_>>().len() == 3);
    for (key, times) in &sends {
        for n in 1..=5usize {
            let window = 0.1 * n as f64;
            for (i, t0) in times.iter().enumerate() {
                let within = times[i..].iter().take_while(|&&t| t - t0 <= window).count();
                assert!(within <= n + 1, "{key:?}: {within} sends in {n} intervals");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_restarted_or_reinitialized_comes_back_to_open_viewers() {
    let socks = tempfile::tempdir().unwrap();
    let sock1 = socks.path().join("node1.sock");
    let n1 = BinServer::start_at(&sock1, &node_toml(10, ""), &[]).await;
    let n2 = node(20, "").await;
    init_sim(&n1).await;
    init_sim(&n2).await;
    let gw = gateway(&[unix(&sock1), unix(&n2.sock)]).await;
    let mut c = gw.client().await;
    let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    until_modules(&mut s, &[10, 20]).await;

    // Node 1 killed: the viewer goes on with node 2; Status names node 1.
    drop(n1);
    wait_for_status(&gw, |_, m| {
        m.contains(&format!("{}: unreachable", unix(&sock1)))
    })
    .await;
    // Frames from before the kill may still be queued: read past them.
    let mut later = Vec::new();
    for _ in 0..40 {
        later.push(module_of(&take(&mut s, 1).await[0]));
    }
    assert!(later.contains(&20), "{later:?}");

    // Restarted where it listened: its frames come back to the same stream.
    let n1 = BinServer::start_at(&sock1, &node_toml(10, ""), &[]).await;
    init_sim(&n1).await;
    until_modules(&mut s, &[10]).await;

    // A forced re-init of node 2 ends its stream to the gateway, not the
    // gateway's viewer, which gets node 2's frames again.
    let mut forced = sim_request();
    forced.force = true;
    let reply = n2
        .client()
        .await
        .init_hp_io(forced)
        .await
        .unwrap()
        .into_inner();
    assert!(reply.success, "{}", reply.error_message);
    wait_for_log(&gw, "upstream stream ended").await;
    let mut after = Vec::new();
    while !after.contains(&20) {
        after.push(module_of(&take(&mut s, 1).await[0]));
        assert!(after.len() < 2000, "node 2 never came back:\n{}", gw.log());
    }
    drop(n1);
}

/// Polls the server's log for `needle` (every 50 ms, up to 30 s).
async fn wait_for_log(server: &BinServer, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !server.log().contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "{needle:?} never logged:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_through_the_gateway_names_each_node_that_failed() {
    let nodes = [node(10, "").await, node(20, "").await];
    let upstreams: Vec<String> = nodes.iter().map(|n| unix(&n.sock)).collect();
    let gw = gateway(&upstreams).await;
    let reply = gw
        .client()
        .await
        .init_hp_io(InitHpIoRequest {
            data_dir: "/no/such/daq/dir".into(),
            update_interval_seconds: 0.1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!reply.success);
    for u in &upstreams {
        assert!(
            reply
                .error_message
                .contains(&format!("{u}: InvalidArgument")),
            "{}",
            reply.error_message
        );
    }
    assert!(
        reply.error_message.contains("does not exist"),
        "{}",
        reply.error_message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_at_start_leaves_the_others_served() {
    let n = node(10, "").await;
    init_sim(&n).await;
    let missing = tempfile::tempdir().unwrap();
    let gone = unix(&missing.path().join("nobody.sock"));
    let gw = gateway(&[gone.clone(), unix(&n.sock)]).await;
    let mut c = gw.client().await;
    let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    until_modules(&mut s, &[10]).await;
    let message = wait_for_status(&gw, |ok, m| {
        !ok && m.contains(&format!("{gone}: unreachable"))
    })
    .await;
    assert!(
        message.contains(&format!("{}: initialized", unix(&n.sock))),
        "{message}"
    );
}

/// `name` reads `value` at each of `looks` looks 50 ms apart: a state that
/// must last, not only be reached. `log` is shown when it does not.
async fn holds_gauge(server: &BinServer, name: &str, value: f64, looks: usize, log: &str) {
    for look in 0..looks {
        assert_eq!(
            gauge(server, name).await,
            value,
            "{name} changed at look {look} of {looks}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gateway no one watches asks its nodes for nothing: the node serves
/// no stream until a viewer comes to the gateway, and one stream then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwatched_gateway_holds_no_upstream_stream() {
    let n = node(10, "").await;
    init_sim(&n).await;
    let gw = BinServer::start(&gateway_toml(&[unix(&n.sock)], ""), &[]).await;
    // Up, and its node reachable (Status asks it).
    wait_for_status(&gw, |ok, _| ok).await;
    holds_gauge(&n, "daqdata_active_streams", 0.0, 10, &n.log()).await;
    let mut c = gw.client().await;
    let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    until_modules(&mut s, &[10]).await;
    assert_eq!(gauge(&n, "daqdata_active_streams").await, 1.0);

    // The viewer leaves. The node's stream lingers (a viewer back within
    // 10 s costs the node no new call): it is still open a second later,
    // five of the gateway's looks at its demand. Then it closes.
    drop(s);
    wait_for_gauge(&gw, "daqdata_active_streams", 0.0).await;
    holds_gauge(&n, "daqdata_active_streams", 1.0, 20, &gw.log()).await;
    wait_for_gauge(&n, "daqdata_active_streams", 0.0).await;
    let up = format!(
        "daqdata_gateway_upstream_up{{upstream=\"{}\"}}",
        unix(&n.sock)
    );
    wait_for_gauge(&gw, &up, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_two_gateways_relays_and_a_loop_is_refused() {
    let n = node(10, "").await;
    init_sim(&n).await;
    let socks = tempfile::tempdir().unwrap();
    let sock1 = socks.path().join("gw1.sock");
    let sock2 = socks.path().join("gw2.sock");
    // gw1 relays the node and gw2; gw2 relays gw1: a loop through two.
    let gw1 = BinServer::start_at(
        &sock1,
        &gateway_toml(&[unix(&n.sock), unix(&sock2)], ""),
        &[],
    )
    .await;
    let gw2 = BinServer::start_at(&sock2, &gateway_toml(&[unix(&sock1)], ""), &[]).await;

    // The chain works: a viewer of gw2 gets the node's frames through gw1.
    let mut c = gw2.client().await;
    let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    let got = until_modules(&mut s, &[10]).await;
    assert!(got.iter().all(|m| module_of(m) == 10));
    // A viewer of gw1 too, and the loop between them is found and refused.
    let mut c1 = gw1.client().await;
    let mut s1 = open(&mut c1, stream_request(true, true, 0.05, &[])).await;
    until_modules(&mut s1, &[10]).await;
    let loop_seen = |_: bool, m: &str| m.contains("gateway loop");
    let found = wait_for_any_status(&[&gw1, &gw2], loop_seen).await;
    assert!(found.contains("gateway loop"), "{found}");
    // The viewers go on with the node's frames, and only its frames.
    for m in take(&mut s1, 20).await {
        assert_eq!(module_of(&m), 10);
    }

    // A gateway that lists itself.
    let sock3 = socks.path().join("gw3.sock");
    let gw3 = BinServer::start_at(
        &sock3,
        &gateway_toml(&[unix(&sock3), unix(&n.sock)], ""),
        &[],
    )
    .await;
    let mut c3 = gw3.client().await;
    let mut s3 = open(&mut c3, stream_request(true, true, 0.05, &[])).await;
    until_modules(&mut s3, &[10]).await;
    let message = wait_for_status(&gw3, |_, m| m.contains("gateway loop")).await;
    assert!(
        message.contains(&format!("{}: refused: gateway loop", unix(&sock3))),
        "{message}"
    );
    // Its relayed Hashpipe status names the loop too, as refused.
    let mut hs = hashpipe_stream(&mut c3).await;
    let looped = until(&mut hs, "the status relay's loop named", |r| {
        r.name == unix(&sock3) && r.message.contains("gateway loop")
    })
    .await;
    assert!(looped.stale, "{looped:?}");
    assert!(
        looped.message.starts_with("refused: gateway loop"),
        "{looped:?}"
    );
}

/// Polls Status on several servers until one answers as `check` wants.
async fn wait_for_any_status(servers: &[&BinServer], check: impl Fn(bool, &str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        for s in servers {
            let (ok, message) = status(s).await;
            if check(ok, &message) {
                return message;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no server's Status became as expected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn private_file(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_presents_its_operator_token_to_nodes_that_require_one() {
    let secrets = tempfile::tempdir().unwrap();
    let token = "0123456789abcdef0123456789abcdef";
    let operators = private_file(
        secrets.path(),
        "operators",
        &format!("head {token}\n"),
        0o600,
    );
    let access = format!(
        "access.operator_tokens_file = \"{}\"\naccess.unix_socket_role = \"viewer\"\n",
        operators.display()
    );
    let nodes = [node(10, &access).await, node(20, &access).await];
    let upstreams: Vec<String> = nodes.iter().map(|n| unix(&n.sock)).collect();

    // Without a token the nodes refuse, and the reply names each.
    let plain = gateway(&upstreams).await;
    let reply = init_sim_reply(&plain).await;
    assert!(!reply.success);
    for u in &upstreams {
        assert!(
            reply
                .error_message
                .contains(&format!("{u}: Unauthenticated")),
            "{}",
            reply.error_message
        );
    }

    let mine = private_file(
        secrets.path(),
        "gateway_token",
        &format!("{token}\n"),
        0o600,
    );
    let keys = format!("token_file = \"{}\"\n", mine.display());
    let gw = BinServer::start(&gateway_toml(&upstreams, &keys), &[]).await;
    let reply = init_sim_reply(&gw).await;
    assert!(reply.success, "{}", reply.error_message);
    let mut c = gw.client().await;
    let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    until_modules(&mut s, &[10, 20]).await;
}

/// `daqdata-server` run to its exit: status and stderr.
fn run_server(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_daqdata-server"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_gateway_settings_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let sock = format!("unix://{}", dir.path().join("g.sock").display());
    let (ok, err) = run_server(&[
        "--listen",
        &sock,
        "--metrics-listen",
        "",
        "--upstream",
        "daq1:port",
    ]);
    assert!(!ok);
    assert!(
        err.contains("daq1:port") && err.contains("port is not a number"),
        "{err}"
    );

    let token = private_file(dir.path(), "token", "0123456789abcdef0123\n", 0o644);
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "metrics_listen = \"\"\nlisten = [\"{sock}\"]\n[gateway]\nupstreams = [\"daq1\"]\ntoken_file = \"{}\"\n",
            token.display()
        ),
    )
    .unwrap();
    let (ok, err) = run_server(&["--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("chmod 600") && err.contains("token"), "{err}");
}

/// An upstream that answers StreamImages with one good image, then
/// garbage: an image that is no data product, or a message over the
/// gateway's size limit, by turns. It refuses every InitHpIo with
/// `success: false`, as a node does whose configuration fails.
///
/// `looping`: it sends one good image and ends the stream as a gateway
/// does that finds its caller upstream of it ("gateway loop: ...").
#[derive(Default)]
struct Garbage {
    calls: std::sync::atomic::AtomicUsize,
    looping: bool,
}

type Images = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<daqdata_proto::SharedStreamImagesResponse, tonic::Status>>
            + Send,
    >,
>;

#[tonic::async_trait]
impl daqdata_proto::server::DaqData for Garbage {
    type StreamImagesStream = Images;
    type StreamHashpipeStatusStream = std::pin::Pin<
        Box<
            dyn futures::Stream<
                    Item = Result<
                        daqdata_proto::daqdata::StreamHashpipeStatusResponse,
                        tonic::Status,
                    >,
                > + Send,
        >,
    >;

    async fn stream_images(
        &self,
        _: tonic::Request<daqdata_proto::daqdata::StreamImagesRequest>,
    ) -> Result<tonic::Response<Images>, tonic::Status> {
        use daqdata_proto::daqdata::PanoImage;
        let call = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let good = ph_image(99, 1);
        let bad = if call % 2 == 0 {
            daqdata_proto::encode_pano_image(&PanoImage {
                shape: vec![7, 7],
                ..good.clone()
            })
        } else {
            bytes::Bytes::from(vec![0u8; 2 << 20])
        };
        let [good, bad] = [daqdata_proto::encode_pano_image(&good), bad].map(|image| {
            Ok(daqdata_proto::SharedStreamImagesResponse {
                name: "garbage".into(),
                pano_image: Some(image),
                ..Default::default()
            })
        });
        let then = if self.looping {
            Err(tonic::Status::failed_precondition(
                "gateway loop: the calling gateway turned out to be upstream of this one",
            ))
        } else {
            bad
        };
        Ok(tonic::Response::new(Box::pin(
            futures::stream::iter([good, then]).chain(futures::stream::pending()),
        )))
    }

    async fn init_hp_io(
        &self,
        _: tonic::Request<InitHpIoRequest>,
    ) -> Result<tonic::Response<daqdata_proto::daqdata::InitHpIoResponse>, tonic::Status> {
        Ok(tonic::Response::new(
            daqdata_proto::daqdata::InitHpIoResponse {
                success: false,
                error_message: "garbage takes no configuration".into(),
            },
        ))
    }

    async fn ping(&self, _: tonic::Request<()>) -> Result<tonic::Response<()>, tonic::Status> {
        Ok(tonic::Response::new(()))
    }

    async fn upload_images(
        &self,
        _: tonic::Request<tonic::Streaming<daqdata_proto::daqdata::UploadImageRequest>>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        Err(tonic::Status::unimplemented("garbage"))
    }

    async fn status(
        &self,
        _: tonic::Request<()>,
    ) -> Result<tonic::Response<daqdata_proto::daqdata::StatusResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("garbage"))
    }

    async fn stream_hashpipe_status(
        &self,
        _: tonic::Request<daqdata_proto::daqdata::StreamHashpipeStatusRequest>,
    ) -> Result<tonic::Response<Self::StreamHashpipeStatusStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("garbage"))
    }
}

/// Serves a [`Garbage`] upstream on a unix socket in `dir`; its address.
fn serve_garbage(dir: &Path) -> String {
    serve_fake(dir, Garbage::default())
}

fn serve_fake(dir: &Path, fake: Garbage) -> String {
    let sock = dir.join("garbage.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(daqdata_proto::server::DaqDataServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    unix(&sock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_one_upstream_resets_only_its_stream() {
    let n = node(10, "").await;
    init_sim(&n).await;
    let dir = tempfile::tempdir().unwrap();
    let fake = serve_garbage(dir.path());
    let gw = gateway(&[fake.clone(), unix(&n.sock)]).await;
    let addr = metrics_addr(&gw);
    let mut c = gw.client().await;
    let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    let first = until_modules(&mut s, &[10, 99]).await;
    // Relayed under the name its upstream gave.
    for m in first.iter().filter(|m| module_of(m) == 99) {
        assert_eq!(m.name, "garbage");
    }

    // The fake's stream is reset again and again (back-off 0.5 s, 1 s,
    // 2 s ...); the node's frames go on meanwhile.
    let reconnects = format!("daqdata_gateway_upstream_reconnects_total{{upstream=\"{fake}\"}}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while get(&scrape(&addr).await, &reconnects) < 4.0 {
        until_modules(&mut s, &[10]).await;
        assert!(std::time::Instant::now() < deadline, "{}", gw.log());
    }
    let m = scrape(&addr).await;
    let node_reconnects = format!(
        "daqdata_gateway_upstream_reconnects_total{{upstream=\"{}\"}}",
        unix(&n.sock)
    );
    assert_eq!(get(&m, &node_reconnects), 0.0, "{}", gw.log());
    // One log line per cause (a bad image; an oversized message), not per reset.
    let log = gw.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("upstream stream ended") && l.contains(&fake))
        .count();
    assert!((1..=2).contains(&lines), "{lines} lines:\n{log}");
    assert!(log.contains("not one"), "{log}");
    // An error status from the upstream is named with its gRPC code.
    assert!(log.contains("ended: OutOfRange: "), "{log}");
}

/// An upstream that ends a relayed stream with "gateway loop" is named in
/// the gateway's Status as refusing it, not as unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_found_mid_stream_is_named_as_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = serve_fake(
        dir.path(),
        Garbage {
            looping: true,
            ..Default::default()
        },
    );
    let gw = gateway(std::slice::from_ref(&fake)).await;
    let mut c = gw.client().await;
    let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    until_modules(&mut s, &[99]).await;
    let refused = format!("{fake}: refused: gateway loop: the calling gateway");
    wait_for_status(&gw, |_, m| m.contains(&refused)).await;
}

/// An image uploaded to the gateway, for its own viewers, keeps a slot of
/// its own: the node's frames of the same module and data product do not
/// overwrite it, and a viewer who comes later still gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_the_gateway_keeps_its_slot_beside_a_nodes_frames() {
    use daqdata_proto::daqdata::UploadImageRequest;
    let n = node(10, "").await;
    init_sim(&n).await;
    let gw = gateway(&[unix(&n.sock)]).await;
    let mut c = gw.client().await;
    // Module 10's pulse-height images, as they come.
    let mut early = open(&mut c, stream_request(false, true, 0.0, &[10])).await;
    until_modules(&mut early, &[10]).await;

    let upload = ph_image(10, 7);
    let is_upload = |m: &StreamImagesResponse| {
        m.pano_image
            .as_ref()
            .is_some_and(|i| i.image_array == upload.image_array)
    };
    let request = UploadImageRequest {
        pano_image: Some(upload.clone()),
    };
    c.upload_images(tokio_stream::iter(vec![request]))
        .await
        .unwrap();
    // The early viewer gets the upload, then more of the node's ph256.
    let mut seen = false;
    let mut after = 0;
    while after < 3 {
        let m = take(&mut early, 1).await.remove(0);
        let image = m.pano_image.as_ref().unwrap();
        if is_upload(&m) {
            seen = true;
        } else if seen && image.shape == [16, 16] {
            after += 1;
        }
    }

    // A viewer who comes now gets every slot's newest: the upload among
    // them, before the node's ph256 slot comes round a third time.
    let mut late = open(&mut c, stream_request(false, true, 0.5, &[10])).await;
    let mut node_ph256 = 0;
    loop {
        let m = take(&mut late, 1).await.remove(0);
        if is_upload(&m) {
            break;
        }
        if m.pano_image.as_ref().unwrap().shape == [16, 16] {
            node_ph256 += 1;
        }
        assert!(
            node_ph256 < 3,
            "the upload was overwritten by the node's frames"
        );
    }
}

/// An upstream that answers InitHpIo with `success: false` (no error
/// status) fails the gateway's InitHpIo, named with its reason; the other
/// upstreams are configured all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_init_is_named_and_the_others_are_configured() {
    let n = node(10, "").await;
    let dir = tempfile::tempdir().unwrap();
    let fake = serve_garbage(dir.path());
    let gw = gateway(&[fake.clone(), unix(&n.sock)]).await;
    let reply = init_sim_reply(&gw).await;
    assert!(!reply.success, "{reply:?}");
    assert!(
        reply.error_message.contains(&format!(
            "on 1 of 2 upstream(s): {fake}: refused: garbage takes no configuration"
        )),
        "{}",
        reply.error_message
    );
    assert!(
        !reply.error_message.contains(&unix(&n.sock)),
        "{}",
        reply.error_message
    );
    let (initialized, message) = status(&n).await;
    assert!(initialized, "{message}");
}

/// A DAQ node reading the status buffer of Hashpipe `instance` under
/// `keyfile` (a `daqsim --hashpipe-status --hashpipe-keyfile` buffer).
fn status_node_toml(module: u32, keyfile: &Path, instance: u32) -> String {
    node_toml(
        module,
        &format!(
            "hashpipe_status.keyfile = \"{}\"\nhashpipe_status.instance = {instance}\nhashpipe_status.poll_seconds = 0.05\n",
            keyfile.display()
        ),
    )
}

/// A gateway relaying `upstreams`, sending status as fast as it comes.
async fn status_gateway(upstreams: &[String]) -> BinServer {
    let toml = format!(
        "hashpipe_status.poll_seconds = 0.05\n{}",
        gateway_toml(upstreams, "")
    );
    BinServer::start(&toml, &[]).await
}

async fn hashpipe_stream(
    client: &mut daqdata_proto::daqdata::daq_data_client::DaqDataClient<tonic::transport::Channel>,
) -> Streaming<StreamHashpipeStatusResponse> {
    client
        .stream_hashpipe_status(StreamHashpipeStatusRequest {
            update_interval_seconds: 0.0,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Which node a response is of: the `INSTANCE` card of its buffer.
fn instance(r: &StreamHashpipeStatusResponse) -> Option<u32> {
    number(r, "INSTANCE").map(|x| x as u32)
}

/// Reads until responses with counters came from every instance in
/// `want`; the newest of each.
async fn until_instances(
    stream: &mut Streaming<StreamHashpipeStatusResponse>,
    want: &[u32],
) -> HashMap<u32, StreamHashpipeStatusResponse> {
    let mut seen = HashMap::new();
    while want.iter().any(|i| !seen.contains_key(i)) {
        let r = until(stream, &format!("counters of instances {want:?}"), |r| {
            instance(r).is_some() && number(r, "NPACKETS").is_some()
        })
        .await;
        seen.insert(instance(&r).unwrap_or_default(), r);
    }
    seen
}

async fn gauge(server: &BinServer, name: &str) -> f64 {
    get(&scrape(&metrics_addr(server)).await, name)
}

/// Polls `name` on the server's metrics until it reads `want` (up to 30 s).
async fn wait_for_gauge(server: &BinServer, name: &str, want: f64) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let value = gauge(server, name).await;
        if value == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} stayed {value}, not {want}:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const STATUS_STREAMS: &str = "daqdata_hashpipe_status_streams";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nodes_hashpipe_status_reaches_many_viewers_over_one_stream_each() {
    let (key0, _buffer0) = simulated_status_buffer(0);
    let (key1, _buffer1) = simulated_status_buffer(1);
    let nodes = [
        BinServer::start(&status_node_toml(10, key0.path(), 0), &[]).await,
        BinServer::start(&status_node_toml(20, key1.path(), 1), &[]).await,
    ];
    // What a node calls itself, asked directly.
    let mut direct = nodes[0].client().await;
    let own = until(
        &mut hashpipe_stream(&mut direct).await,
        "a node's own cards",
        |r| r.cards.is_some(),
    )
    .await;
    wait_for_gauge(&nodes[0], STATUS_STREAMS, 0.0).await;

    let upstreams: Vec<String> = nodes.iter().map(|n| unix(&n.sock)).collect();
    let gw = status_gateway(&upstreams).await;
    // No Hashpipe on the head node: nothing polled, nothing said of it.
    assert!(
        !gw.log().contains("no Hashpipe status buffer"),
        "{}",
        gw.log()
    );

    // 20 viewers over two connections: each sees both nodes' buffers, by
    // the names the nodes gave.
    let mut viewers = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let client = gw.client().await;
        for _ in 0..10 {
            let mut client = client.clone();
            viewers.spawn(async move {
                let mut s = hashpipe_stream(&mut client).await;
                let newest = until_instances(&mut s, &[0, 1]).await;
                (s, newest)
            });
        }
    }
    let mut open_streams = Vec::new();
    while let Some(done) = viewers.join_next().await {
        let (s, newest) = done.unwrap();
        for r in newest.values() {
            assert_eq!(r.name, own.name, "{r:?}");
            // Stale as the node says (a simulator's buffer has no hashpipe
            // process behind it), but never down.
            assert!(
                r.read_at.is_some() && !r.message.contains("unreachable"),
                "{r:?}"
            );
        }
        open_streams.push(s);
    }
    assert_eq!(open_streams.len(), 20);

    // Every node serves the gateway exactly one status stream.
    for n in &nodes {
        assert_eq!(gauge(n, STATUS_STREAMS).await, 1.0, "{}", n.log());
    }
    assert_eq!(gauge(&gw, STATUS_STREAMS).await, 20.0);

    // The cards move: each node's packet count grows on a viewer's stream.
    let mut s = open_streams.pop().unwrap();
    drop(open_streams);
    let first = until_instances(&mut s, &[0, 1]).await;
    for (i, r) in &first {
        let before = number(r, "NPACKETS").expect("NPACKETS");
        until(&mut s, &format!("instance {i}'s NPACKETS growing"), |r| {
            instance(r) == Some(*i) && number(r, "NPACKETS").is_some_and(|n| n > before)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_is_named_in_the_relayed_status_and_its_cards_come_back() {
    let (key0, _buffer0) = simulated_status_buffer(0);
    let (key1, _buffer1) = simulated_status_buffer(1);
    let socks = tempfile::tempdir().unwrap();
    let sock1 = socks.path().join("node1.sock");
    let n1 = BinServer::start_at(&sock1, &status_node_toml(10, key0.path(), 0), &[]).await;
    let n2 = BinServer::start(&status_node_toml(20, key1.path(), 1), &[]).await;
    let gw = status_gateway(&[unix(&sock1), unix(&n2.sock)]).await;
    let mut c = gw.client().await;
    let mut s = hashpipe_stream(&mut c).await;
    until_instances(&mut s, &[0, 1]).await;

    // Node 1 killed: the stream goes on and names it, down, with a reason.
    drop(n1);
    let gone = until(&mut s, "node 1 named as down", |r| r.name == unix(&sock1)).await;
    assert!(gone.stale, "{gone:?}");
    assert!(gone.cards.is_none(), "{gone:?}");
    assert!(gone.message.starts_with("unreachable: "), "{gone:?}");
    // Each try to reach it again says why it failed.
    let retried = until(&mut s, "node 1's reconnect failure", |r| {
        r.name == unix(&sock1) && r.message != "unreachable: it ended the stream"
    })
    .await;
    assert!(retried.message.starts_with("unreachable: "), "{retried:?}");
    // Node 2's cards go on moving meanwhile.
    let node2 = until(&mut s, "node 2's cards", |r| instance(r) == Some(1)).await;
    let before = number(&node2, "NPACKETS").expect("NPACKETS");
    until(
        &mut s,
        "node 2's NPACKETS growing while node 1 is down",
        |r| instance(r) == Some(1) && number(r, "NPACKETS").is_some_and(|n| n > before),
    )
    .await;

    // Restarted where it listened: its cards come back to the same stream.
    let _n1 = BinServer::start_at(&sock1, &status_node_toml(10, key0.path(), 0), &[]).await;
    let back = until(&mut s, "node 1's cards back", |r| instance(r) == Some(0)).await;
    // Both nodes run on this machine: the same host name.
    assert_eq!(back.name, node2.name, "{back:?}");
    assert!(!back.message.contains("unreachable"), "{back:?}");
}
