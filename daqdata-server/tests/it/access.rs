//! SPEC §6 against the real binary, over TCP, TLS and the unix socket:
//! who may call what, certificates, refusals that change nothing, and the
//! limits that keep one peer (or a silent one) from starving the rest.

use crate::common;
#[path = "common/secure.rs"]
mod secure;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{code, next, sim_request, stream_request, take};
use daqdata_proto::daqdata::daq_data_client::DaqDataClient;
use daqdata_proto::daqdata::{
    pano_image, InitHpIoRequest, PanoImage, StreamImagesResponse, UploadImageRequest,
};
use secure::{token, token_files, with_token, NetServer, Pki};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// `[access]` with both token files: TCP without a token gets nothing.
const TOKENS: &str =
    "[access]\noperator_tokens_file = \"operators\"\nviewer_tokens_file = \"viewers\"\n";

/// An image only a stream of module 999 wants.
fn marked_image() -> PanoImage {
    PanoImage {
        r#type: pano_image::Type::Movie as i32,
        shape: vec![32, 32],
        bytes_per_pixel: 2,
        image_array: vec![7; 1024],
        module_id: 999,
        file: "injected.pff".into(),
        ..Default::default()
    }
}

async fn upload(
    c: &mut DaqDataClient<Channel>,
    image: PanoImage,
    token: Option<&str>,
) -> Result<(), Status> {
    let req = UploadImageRequest {
        pano_image: Some(image),
    };
    c.upload_images(with_token(tokio_stream::iter(vec![req]), token))
        .await
        .map(|_| ())
}

async fn init(
    c: &mut DaqDataClient<Channel>,
    req: InitHpIoRequest,
    token: Option<&str>,
) -> Result<(), Status> {
    let reply = c.init_hp_io(with_token(req, token)).await?.into_inner();
    assert!(reply.success, "{}", reply.error_message);
    Ok(())
}

async fn ping(c: &mut DaqDataClient<Channel>, token: Option<&str>) -> Result<(), Status> {
    c.ping(with_token((), token)).await.map(|_| ())
}

async fn stream(
    c: &mut DaqDataClient<Channel>,
    modules: &[u32],
    token: Option<&str>,
) -> Result<Streaming<StreamImagesResponse>, Status> {
    c.stream_images(with_token(stream_request(true, true, 0.0, modules), token))
        .await
        .map(|r| r.into_inner())
}

fn refused(r: Result<(), Status>, want: Code, role: &str) {
    match r {
        Ok(()) => panic!("expected {want:?}, the call succeeded"),
        Err(s) => {
            assert_eq!(s.code(), want, "{}", s.message());
            assert!(
                s.message().contains(&format!("{role} role")),
                "the refusal names the role needed: {}",
                s.message()
            );
        }
    }
}

/// The images a stream brings within `wait`, without failing on silence.
async fn images_within(s: &mut Streaming<StreamImagesResponse>, wait: Duration) -> usize {
    let end = tokio::time::Instant::now() + wait;
    let mut n = 0;
    while let Ok(Ok(Some(_))) = tokio::time::timeout_at(end, s.message()).await {
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_spec_6_over_tcp_and_the_unix_socket() {
    let (op, view) = (token("op"), token("view"));
    let server = NetServer::start(&["127.0.0.1:0"], TOKENS, &["--init-sim"], |d| {
        token_files(d, &op, &view)
    })
    .await;
    let mut tcp = server.tcp().await;
    let bad = "not-a-token-this-server-knows";

    // With both files, TCP without a (known) token may not even watch.
    refused(ping(&mut tcp, None).await, Code::Unauthenticated, "viewer");
    refused(
        ping(&mut tcp, Some(bad)).await,
        Code::Unauthenticated,
        "viewer",
    );
    assert_eq!(
        code(stream(&mut tcp, &[], None).await),
        Code::Unauthenticated
    );
    let mut health = HealthClient::new(secure::tcp_channel(server.tcp[0]).await);
    let check = || with_token(HealthCheckRequest::default(), None);
    assert_eq!(code(health.check(check()).await), Code::Unauthenticated);
    let mut viewer_check = check();
    viewer_check
        .metadata_mut()
        .insert("authorization", format!("Bearer {view}").parse().unwrap());
    health.check(viewer_check).await.unwrap();

    // A viewer token watches, asks for Status, and may do nothing else.
    ping(&mut tcp, Some(&view)).await.unwrap();
    let status = tcp.status(with_token((), Some(&view))).await.unwrap();
    assert!(status.get_ref().hp_io_initialized, "{:?}", status.get_ref());
    refused(
        tcp.status(with_token((), None)).await.map(drop),
        Code::Unauthenticated,
        "viewer",
    );
    let mut s = stream(&mut tcp, &[], Some(&view)).await.unwrap();
    take(&mut s, 3).await;
    refused(
        init(&mut tcp, sim_request(), Some(&view)).await,
        Code::PermissionDenied,
        "operator",
    );
    refused(
        upload(&mut tcp, marked_image(), Some(&view)).await,
        Code::PermissionDenied,
        "operator",
    );
    refused(
        init(&mut tcp, sim_request(), None).await,
        Code::Unauthenticated,
        "operator",
    );
    refused(
        init(&mut tcp, sim_request(), Some(bad)).await,
        Code::Unauthenticated,
        "operator",
    );

    // An operator token does everything.
    let mut s = stream(&mut tcp, &[999], Some(&op)).await.unwrap();
    upload(&mut tcp, marked_image(), Some(&op)).await.unwrap();
    assert_eq!(
        take(&mut s, 1).await[0]
            .pano_image
            .as_ref()
            .unwrap()
            .module_id,
        999
    );
    init(&mut tcp, sim_request(), Some(&op)).await.unwrap();

    // The unix socket is the local operator's door, no token needed.
    let mut unix = server.unix().await;
    init(&mut unix, sim_request(), None).await.unwrap();
    upload(&mut unix, marked_image(), None).await.unwrap();

    // Audit: each refusal at INFO with the peer, never the token.
    let log = server.log();
    assert!(
        log.contains("refused") && log.contains("127.0.0.1"),
        "{log}"
    );
    assert!(
        log.contains("alice"),
        "the operator's name is audited: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_without_a_token_follow_the_configured_files() {
    let (op, view) = (token("op"), token("view"));
    // An operator file alone: TCP watches without a token. The unix socket
    // made a viewer's door here, an operator must bring a token there too.
    let server = NetServer::start(
        &["127.0.0.1:0"],
        "[access]\noperator_tokens_file = \"operators\"\nunix_socket_role = \"viewer\"\n",
        &["--init-sim"],
        |d| token_files(d, &op, &view),
    )
    .await;
    let mut tcp = server.tcp().await;
    ping(&mut tcp, None).await.unwrap();
    take(&mut stream(&mut tcp, &[], None).await.unwrap(), 2).await;
    refused(
        init(&mut tcp, sim_request(), None).await,
        Code::Unauthenticated,
        "operator",
    );
    init(&mut tcp, sim_request(), Some(&op)).await.unwrap();
    let mut unix = server.unix().await;
    refused(
        init(&mut unix, sim_request(), None).await,
        Code::Unauthenticated,
        "operator",
    );
    init(&mut unix, sim_request(), Some(&op)).await.unwrap();
    drop(server);

    // No [access]: the Python server's behaviour, and a warning for every
    // listener that is not loopback.
    let open = NetServer::start(&["0.0.0.0:0", "127.0.0.1:0"], "", &[], |_| {}).await;
    let mut far = DaqDataClient::new(secure::tcp_channel(secure::loopback(open.tcp[0])).await);
    init(&mut far, sim_request(), None).await.unwrap();
    upload(&mut far, marked_image(), None).await.unwrap();
    let log = open.log();
    let warning = "InitHpIo and UploadImages are open to anyone who can reach";
    assert!(
        log.contains(&format!("{warning} {}; see [access]", open.tcp[0])),
        "{log}"
    );
    assert_eq!(
        log.matches(warning).count(),
        1,
        "loopback is not warned about: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_names_give_roles_over_mutual_tls() {
    let (op, view) = (token("op"), token("view"));
    let mut pki = None;
    let server = NetServer::start(
        &["tls://127.0.0.1:0"],
        &format!(
            "{TOKENS}operator_names = [\"ctrl-room\"]\nviewer_names = [\"laptop\"]\n\
             [tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\nclient_ca_file = \"ours-ca.pem\"\n"
        ),
        &["--init-sim"],
        |d| {
            token_files(d, &op, &view);
            let p = Pki::new(d, "ours");
            p.server_files();
            pki = Some(p);
        },
    )
    .await;
    let pki = pki.unwrap();
    let as_cn = |cn: &str| Some(pki.leaf(cn).identity());

    let mut ctrl = server.tls(&pki.ca_pem, as_cn("ctrl-room")).await.unwrap();
    init(&mut ctrl, sim_request(), None).await.unwrap();
    upload(&mut ctrl, marked_image(), None).await.unwrap();

    let mut laptop = server.tls(&pki.ca_pem, as_cn("laptop")).await.unwrap();
    ping(&mut laptop, None).await.unwrap();
    take(&mut stream(&mut laptop, &[], None).await.unwrap(), 2).await;
    refused(
        init(&mut laptop, sim_request(), None).await,
        Code::Unauthenticated,
        "operator",
    );
    refused(
        init(&mut laptop, sim_request(), Some(&view)).await,
        Code::PermissionDenied,
        "operator",
    );
    init(&mut laptop, sim_request(), Some(&op)).await.unwrap();

    // Signed by the CA but named nowhere: a TCP caller like any other.
    let mut stranger = server.tls(&pki.ca_pem, as_cn("stranger")).await.unwrap();
    refused(
        ping(&mut stranger, None).await,
        Code::Unauthenticated,
        "viewer",
    );
    ping(&mut stranger, Some(&view)).await.unwrap();

    // A certificate from another CA, even with a known name, and no
    // certificate at all: the handshake fails, nothing is answered.
    let other = Pki::new(server.dir.path(), "theirs");
    for identity in [Some(other.leaf("ctrl-room").identity()), None] {
        let result = match server.tls(&pki.ca_pem, identity).await {
            Err(e) => Err(e.to_string()),
            Ok(mut c) => ping(&mut c, None).await.map_err(|s| format!("{s:?}")),
        };
        let err = result.expect_err("an untrusted client got an answer");
        assert!(!err.contains("role"), "refused after the handshake: {err}");
    }
    // A client that does not trust the server's CA refuses it too.
    let err = secure::tls_channel(server.tls[0], &other.ca_pem, as_cn("ctrl-room")).await;
    match err {
        Err(_) => {}
        Ok(ch) => assert!(ping(&mut DaqDataClient::new(ch), None).await.is_err()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_init_or_upload_changes_nothing() {
    let (op, view) = (token("op"), token("view"));
    let mut pki = None;
    let server = NetServer::start(
        &["127.0.0.1:0", "tls://127.0.0.1:0"],
        &format!("{TOKENS}[tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\n"),
        &["--init-sim"],
        |d| {
            token_files(d, &op, &view);
            let p = Pki::new(d, "ours");
            p.server_files();
            pki = Some(p);
        },
    )
    .await;
    let pki = pki.unwrap();
    // Over TLS without client certificates, tokens carry the roles.
    let mut tls = server.tls(&pki.ca_pem, None).await.unwrap();
    refused(ping(&mut tls, None).await, Code::Unauthenticated, "viewer");
    let mut watching = stream(&mut tls, &[], Some(&view)).await.unwrap();
    let before = take(&mut watching, 5).await;
    let mut marked = stream(&mut server.unix().await, &[999], None)
        .await
        .unwrap();

    // InitHpIo with force=true to an empty directory would end every
    // stream and stop the simulation: refused, it does neither.
    let elsewhere = tempfile::tempdir().unwrap();
    let hostile = InitHpIoRequest {
        data_dir: elsewhere.path().display().to_string(),
        update_interval_seconds: 0.01,
        force: true,
        ..Default::default()
    };
    let mut tcp = server.tcp().await;
    refused(
        init(&mut tcp, hostile.clone(), None).await,
        Code::Unauthenticated,
        "operator",
    );
    refused(
        init(&mut tls, hostile.clone(), Some(&view)).await,
        Code::PermissionDenied,
        "operator",
    );
    refused(
        upload(&mut tcp, marked_image(), None).await,
        Code::Unauthenticated,
        "operator",
    );
    refused(
        upload(&mut tls, marked_image(), Some(&view)).await,
        Code::PermissionDenied,
        "operator",
    );
    let after = take(&mut watching, 20).await;
    let modules = |msgs: &[StreamImagesResponse]| {
        msgs.iter()
            .map(|m| m.pano_image.as_ref().unwrap().module_id)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert!(
        modules(&after).is_superset(&modules(&before)),
        "still the simulated run's modules"
    );
    assert_eq!(
        images_within(&mut marked, Duration::from_secs(1)).await,
        0,
        "a refused upload reached a stream"
    );
    // The same upload by an operator does reach it: the check above
    // would have seen one.
    upload(&mut tls, marked_image(), Some(&op)).await.unwrap();
    let got = take(&mut marked, 1).await.remove(0).pano_image.unwrap();
    assert_eq!(got.file, "injected.pff");
    assert!(elsewhere.path().read_dir().unwrap().next().is_none());
}

/// Runs the binary with `config`, expecting it to exit at start; its stderr.
fn refuses_to_start(dir: &std::path::Path, config: &str) -> String {
    let mut child = secure::spawn(dir, config, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with {config}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    std::fs::read_to_string(dir.join("server.log")).unwrap()
}

#[test]
fn the_server_refuses_to_start_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("x.sock");
    let head = format!(
        "listen = [\"unix://{}\"]\nmetrics_listen = \"\"\n",
        sock.display()
    );

    // A token file the group may read.
    let ops = d.join("operators");
    secure::write_private(&ops, &format!("alice {}\n", token("op")));
    std::fs::set_permissions(&ops, std::fs::Permissions::from_mode(0o640)).unwrap();
    let log = refuses_to_start(
        d,
        &format!("{head}[access]\noperator_tokens_file = \"operators\"\n"),
    );
    assert!(
        log.contains(&ops.display().to_string()) && log.contains("chmod 600"),
        "{log}"
    );

    // A key that is not the certificate's.
    let pki = Pki::new(d, "ours");
    let (cert, _) = pki.leaf("a").write(d, "a");
    let (_, other_key) = pki.leaf("b").write(d, "b");
    let log = refuses_to_start(
        d,
        &format!(
            "listen = [\"tls://127.0.0.1:0\"]\nmetrics_listen = \"\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            other_key.display()
        ),
    );
    assert!(
        log.contains(&other_key.display().to_string()) && log.contains("does not go with"),
        "{log}"
    );

    // A relay peer that is not an address or a CIDR block.
    let log = refuses_to_start(
        d,
        &format!("{head}[access]\nrelay_peers = [\"10.0.0.0/8\", \"10.1.2.3/16\"]\n"),
    );
    assert!(
        log.contains(&d.join("config.toml").display().to_string())
            && log.contains("relay_peers")
            && log.contains("\"10.1.2.3/16\"")
            && log.contains("did you mean 10.1.0.0/16"),
        "{log}"
    );

    // A tls:// listener and no [tls].
    let log = refuses_to_start(
        d,
        "listen = [\"tls://127.0.0.1:0\"]\nmetrics_listen = \"\"\n",
    );
    assert!(
        log.contains(&d.join("config.toml").display().to_string())
            && log.contains("tls://127.0.0.1:0")
            && log.contains("[tls]"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_holds_at_most_max_streams_per_peer_and_another_still_gets_slots() {
    let server = NetServer::start(
        &["127.0.0.1:0"],
        "max_streams_per_peer = 2\n[access]\nper_peer_limits_on_loopback = true\n",
        &["--init-sim"],
        |_| {},
    )
    .await;
    let addr = server.tcp[0];
    let from = |ip: &str| secure::tcp_channel_from(addr, ip.parse::<IpAddr>().unwrap());
    let mut a = DaqDataClient::new(from("127.0.0.2").await);
    let mut a1 = stream(&mut a, &[], None).await.unwrap();
    let _a2 = stream(&mut a, &[], None).await.unwrap();
    let third = stream(&mut a, &[], None).await;
    assert_eq!(code(third), Code::ResourceExhausted);
    // A second connection from the same address is the same peer.
    let mut a_again = DaqDataClient::new(from("127.0.0.2").await);
    assert_eq!(
        code(stream(&mut a_again, &[], None).await),
        Code::ResourceExhausted
    );

    let mut b = DaqDataClient::new(from("127.0.0.3").await);
    take(&mut stream(&mut b, &[], None).await.unwrap(), 3).await;
    take(&mut a1, 3).await;

    // A closed stream gives its slot back.
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match stream(&mut a, &[], None).await {
            Ok(mut s) => {
                take(&mut s, 1).await;
                break;
            }
            Err(s) if s.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(s) => panic!("{s}"),
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_holds_at_most_max_connections_per_peer_logged_once() {
    use tokio::io::AsyncReadExt;
    let server = NetServer::start(
        &["127.0.0.1:0"],
        "max_connections_per_peer = 3\n[access]\nper_peer_limits_on_loopback = true\n",
        &[],
        |_| {},
    )
    .await;
    let connect_from = |ip: &str| {
        let source: IpAddr = ip.parse().unwrap();
        let to = server.tcp[0];
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
            socket.connect(to).await.unwrap()
        }
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.2").await);
    }
    // Beyond its share a connection is closed at once, before any HTTP/2.
    for _ in 0..4 {
        let mut extra = connect_from("127.0.0.2").await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
            .await
            .expect("an extra connection was held")
            .unwrap_or(0);
        assert_eq!(n, 0, "an extra connection was served");
    }
    // Another address is another peer; the held ones are served.
    let mut other = DaqDataClient::new(
        secure::tcp_channel_from(server.tcp[0], "127.0.0.3".parse().unwrap()).await,
    );
    ping(&mut other, None).await.unwrap();
    let log = server.log();
    assert_eq!(
        log.matches("refusing connections from 127.0.0.2").count(),
        1,
        "one refusal line per peer per minute: {log}"
    );
    drop(held);
}

type Switch = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// A TCP relay that, once frozen, forwards nothing more in either
/// direction and closes nothing: to the server, a peer whose packets are
/// all dropped.
async fn black_hole(to: std::net::SocketAddr) -> (std::net::SocketAddr, Switch) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let frozen = Switch::default();
    let f = frozen.clone();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(to).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(relay(cr, sw, f.clone()));
            tokio::spawn(relay(sr, cw, f.clone()));
        }
    });
    (at, frozen)
}

async fn relay(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut into: impl tokio::io::AsyncWrite + Unpin,
    frozen: Switch,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(std::sync::atomic::Ordering::Acquire) {
            // Both sockets stay open (held by this task), forever silent.
            std::future::pending::<()>().await;
        }
        if into.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_vanishes_has_its_slots_freed_by_keepalive() {
    let server = NetServer::start(
        &["127.0.0.1:0"],
        "max_concurrent_rpcs = 2\n",
        &["--init-sim"],
        |_| {},
    )
    .await;
    let (relay, frozen) = black_hole(server.tcp[0]).await;
    let mut gone = DaqDataClient::new(secure::tcp_channel(relay).await);
    let mut s1 = stream(&mut gone, &[], None).await.unwrap();
    let mut s2 = stream(&mut gone, &[], None).await.unwrap();
    take(&mut s1, 2).await;
    take(&mut s2, 2).await;
    frozen.store(true, std::sync::atomic::Ordering::Release);
    let vanished = Instant::now();

    let mut unix = server.unix().await;
    assert_eq!(
        code(stream(&mut unix, &[], None).await),
        Code::ResourceExhausted,
        "the vanished peer holds every slot"
    );
    loop {
        match stream(&mut unix, &[], None).await {
            Ok(mut s) => {
                take(&mut s, 2).await;
                break;
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                // Keepalive pings every 30 s and drops a peer silent for
                // 10 s more: about 40 s. The bound only separates "freed by
                // keepalive" from "never"; three times that is no close
                // call on a busy machine.
                assert!(
                    vanished.elapsed() < Duration::from_secs(120),
                    "the slots are still held 120 s after the peer vanished"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => panic!("{s}"),
        }
    }
    eprintln!(
        "slots freed {:?} after the peer vanished",
        vanished.elapsed()
    );
    drop((s1, s2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mib_upload_message_is_resource_exhausted_and_serving_goes_on() {
    let server = NetServer::start(&["127.0.0.1:0"], "", &["--init-sim"], |_| {}).await;
    let mut tcp = server.tcp().await;
    let mut watching = stream(&mut tcp, &[], None).await.unwrap();
    take(&mut watching, 2).await;
    let mut huge = marked_image();
    huge.file = "x".repeat(1 << 20);
    let status = upload(&mut tcp, huge, None).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    take(&mut watching, 10).await;
    ping(&mut tcp, None).await.unwrap();
    upload(&mut tcp, marked_image(), None).await.unwrap();
}

/// The soft limit on open files of this process.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft = line.split_whitespace().nth(3).unwrap();
    soft.parse().unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_send_the_preface_are_closed_by_the_handshake_deadline() {
    use tokio::io::AsyncReadExt;
    // Each connection is a descriptor here and one in the server (which
    // inherits this limit), plus what both need besides.
    let n = 500usize;
    assert!(
        open_files_limit() >= n as u64 + 200,
        "ulimit -n is {}: raise it to run {n} connections",
        open_files_limit()
    );
    let server = NetServer::start(&["127.0.0.1:0"], "", &["--init-sim"], |_| {}).await;
    let mut unix = server.unix().await;
    let mut watching = stream(&mut unix, &[], None).await.unwrap();
    let opened = Instant::now();
    let mut silent = Vec::with_capacity(n);
    for _ in 0..n {
        silent.push(tokio::net::TcpStream::connect(server.tcp[0]).await.unwrap());
    }
    // The handshake deadline is 10 s; 40 s only separates "closed by the
    // deadline" from "never", with room for a busy machine.
    let deadline = tokio::time::Instant::from_std(opened + Duration::from_secs(40));
    let mut closing = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let mut closed = 0;
        for mut c in silent {
            // Whatever the server writes, it must then close.
            closed += loop {
                match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
                    Err(_) => break 0,
                    Ok(Ok(0)) | Ok(Err(_)) => break 1,
                    Ok(Ok(_)) => continue,
                }
            };
        }
        closed
    });
    // The server serves throughout: the stream keeps delivering until
    // every silent connection is closed.
    let mut images = 0u64;
    let closed = loop {
        tokio::select! {
            closed = &mut closing => break closed.unwrap(),
            m = next(&mut watching) => {
                assert!(
                    m.unwrap().is_some(),
                    "the stream ended while {n} connections were open"
                );
                images += 1;
            }
        }
    };
    assert!(images > 0, "no image while {n} connections were open");
    assert_eq!(
        closed, n,
        "connections still open 40 s after they were opened"
    );
    // And new clients still get in.
    ping(&mut server.tcp().await, None).await.unwrap();
    assert!(next(&mut watching).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_appears_in_the_logs_at_any_level() {
    let (op, view) = (token("op"), token("view"));
    let bad = token("bad");
    let server = NetServer::start(
        &["127.0.0.1:0"],
        TOKENS,
        &["--init-sim", "--log-level", "trace"],
        |d| token_files(d, &op, &view),
    )
    .await;
    let mut tcp = server.tcp().await;
    ping(&mut tcp, Some(&view)).await.unwrap();
    let _ = ping(&mut tcp, Some(&bad)).await.unwrap_err();
    let _ = init(&mut tcp, sim_request(), Some(&view))
        .await
        .unwrap_err();
    let _ = init(&mut tcp, sim_request(), Some(&bad)).await.unwrap_err();
    let _ = upload(&mut tcp, marked_image(), Some(&view))
        .await
        .unwrap_err();
    init(&mut tcp, sim_request(), Some(&op)).await.unwrap();
    upload(&mut tcp, marked_image(), Some(&op)).await.unwrap();
    take(&mut stream(&mut tcp, &[], Some(&op)).await.unwrap(), 3).await;
    take(&mut stream(&mut tcp, &[], Some(&view)).await.unwrap(), 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.log();
    assert!(log.contains("TRACE"), "the log is at trace level");
    assert!(log.contains("alice") && log.contains("refused"), "{log}");
    for t in [&op, &view, &bad] {
        assert!(!log.contains(t.as_str()), "a token is in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_token_file_is_one_the_server_reads() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/tokens.example");
    let text = std::fs::read_to_string(example).unwrap();
    let server = NetServer::start(
        &["127.0.0.1:0"],
        "[access]\noperator_tokens_file = \"operators\"\n",
        &[],
        |d| secure::write_private(&d.join("operators"), &text),
    )
    .await;
    // Its first token, as `daqdata --token-file` takes it from such a line.
    let line = text
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .find(|l| !l.is_empty())
        .unwrap();
    let first = line.split_whitespace().last().unwrap();
    let mut tcp = server.tcp().await;
    init(&mut tcp, sim_request(), Some(first)).await.unwrap();
    assert!(
        server.log().contains("as operator (alice)"),
        "{}",
        server.log()
    );
}

/// On a `tls://` listener the HTTP/2 handshake deadline counts decrypted
/// bytes: a client that completes TLS and then says nothing is closed too
/// (the TLS handshake alone used to clear it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_that_never_sends_the_preface_is_closed_by_the_handshake_deadline() {
    use rustls_pki_types::pem::PemObject;
    use std::io::Read;
    let mut pki = None;
    let server = NetServer::start(
        &["tls://127.0.0.1:0"],
        "[tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\n",
        &[],
        |d| {
            let p = Pki::new(d, "ours");
            p.server_files();
            pki = Some(p);
        },
    )
    .await;
    let ca =
        rustls_pki_types::CertificateDer::from_pem_slice(pki.unwrap().ca_pem.as_bytes()).unwrap();
    let addr = server.tls[0];
    let held = tokio::task::spawn_blocking(move || {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let conn = rustls::ClientConnection::new(
            std::sync::Arc::new(config),
            "localhost".try_into().unwrap(),
        )
        .unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let opened = Instant::now();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        let mut buf = [0u8; 256];
        // The handshake deadline is 10 s; 40 s separates "closed" from
        // "never", with room for a busy machine.
        while opened.elapsed() < Duration::from_secs(40) {
            match tls.read(&mut buf) {
                Ok(0) => return None,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(_) => return None,
            }
        }
        Some(opened.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(held, None, "a silent TLS connection was still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_peer_is_exempt_from_the_per_peer_limits_but_not_from_max_concurrent_rpcs() {
    let server = NetServer::start(
        &["127.0.0.1:0"],
        "max_streams_per_peer = 2\nmax_connections_per_peer = 2\nmax_concurrent_rpcs = 6\n\
         [access]\nper_peer_limits_on_loopback = true\nrelay_peers = [\"127.0.0.2\"]\n",
        &["--init-sim"],
        |_| {},
    )
    .await;
    let addr = server.tcp[0];
    let from = |ip: &str| secure::tcp_channel_from(addr, ip.parse::<IpAddr>().unwrap());

    // The relay peer holds more streams, over more connections, than any
    // one peer may.
    let mut relayed = Vec::new();
    for _ in 0..3 {
        let mut c = DaqDataClient::new(from("127.0.0.2").await);
        for _ in 0..2 {
            let mut s = stream(&mut c, &[], None).await.unwrap();
            take(&mut s, 1).await;
            relayed.push(s);
        }
    }
    // ... which leaves no place of max_concurrent_rpcs for it, or anyone.
    let mut c = DaqDataClient::new(from("127.0.0.2").await);
    assert_eq!(
        code(stream(&mut c, &[], None).await),
        Code::ResourceExhausted
    );
    relayed.truncate(2);

    // A peer not listed keeps its limit. (The server frees the dropped
    // streams' places when it sees them end: until then a stream is
    // refused for max_concurrent_rpcs, never for the peer's own limit.)
    let mut other = DaqDataClient::new(from("127.0.0.3").await);
    let mut kept = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while kept.len() < 2 {
        match stream(&mut other, &[], None).await {
            Ok(s) => kept.push(s),
            Err(s)
                if s.code() == Code::ResourceExhausted
                    && s.message().contains("maximum of 6 streams")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("a peer within its limit was refused: {s:?}"),
        }
    }
    let refused = stream(&mut other, &[], None).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("max_streams_per_peer"),
        "{}",
        refused.message()
    );
    for s in &mut kept {
        take(s, 1).await;
    }
}
