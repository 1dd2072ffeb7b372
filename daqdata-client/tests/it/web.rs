//! `daqdata web` as its tabs see it: the built-in page with relative URLs,
//! images thinned to about ten updates per panel per second however fast
//! the server sends, a stalled tab that slows no one, pause and resume, and
//! WebSockets refused to other sites' pages.

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{daqdata, within, FakeServer};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// `daqdata web` on a free port, killed when dropped.
struct Web {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_web(host: &str) -> Web {
    start_web_on(&[host]).await
}

async fn start_web_on(hosts: &[&str]) -> Web {
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let child = daqdata()
        .arg("web")
        .args(hosts.iter().flat_map(|h| ["--host", h]))
        .args(["--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daqdata web starts");
    let web = Web { child, addr };
    within("daqdata web listening", async {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    web
}

/// A plain HTTP/1.1 GET: status line and body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// A message's JSON, and for an image (a binary frame: the header's
/// length as u32 LE, the JSON header, the pixels) its pixel bytes.
fn decode(message: &Message) -> Option<(Value, Vec<u8>)> {
    match message {
        Message::Text(text) => Some((
            serde_json::from_str(text.as_str()).expect("text messages are JSON"),
            Vec::new(),
        )),
        Message::Binary(bytes) => {
            let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
            let header = serde_json::from_slice(&bytes[4..4 + len]).expect("the header is JSON");
            Some((header, bytes[4 + len..].to_vec()))
        }
        _ => None,
    }
}

/// Image messages per panel key ("node/module/kind") and the source rate each
/// panel's newest message reported, over `seconds` of reading `ws`.
async fn count_images<S>(ws: &mut S, seconds: f64) -> BTreeMap<String, (u32, f64)>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut counts = BTreeMap::new();
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(end, ws.next()).await {
        let Some((v, _)) = decode(&message) else {
            continue;
        };
        if v["t"] == "image" {
            let key = format!(
                "{}/{}/{}",
                v["node"].as_str().unwrap_or("?"),
                v["module"],
                v["kind"].as_str().unwrap_or("?")
            );
            let entry = counts.entry(key).or_insert((0, 0.0));
            entry.0 += 1;
            entry.1 = v["images_per_s"].as_f64().unwrap_or(0.0);
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_get_the_page_and_about_ten_updates_a_second_per_panel() {
    // The fake server sends a recorded frame every 5 ms, round the panels.
    let server = FakeServer::new("daq");
    let host = server.serve_tcp().await;
    let web = start_web(&host.to_string()).await;

    let (status, page) = get(web.addr, "/").await;
    assert!(status.contains("200"), "{status}");
    assert!(page.contains("<script src=\"app.js\">"), "{page}");
    for absolute in ["src=\"/", "href=\"/", "http://", "https://", "//cdn"] {
        assert!(
            !page.contains(absolute),
            "the page has {absolute:?}: URLs must be relative"
        );
    }
    let (status, script) = get(web.addr, "/app.js").await;
    assert!(
        status.contains("200") && script.contains("new WebSocket"),
        "{status}"
    );
    for elsewhere in ["import ", "http://", "https://", "fetch("] {
        assert!(
            !script.contains(elsewhere),
            "the script has {elsewhere:?}: it loads nothing else"
        );
    }

    let url = format!("ws://{}/ws", web.addr);
    // A stalled tab: a tiny receive buffer, never read.
    let stalled_socket = tokio::net::TcpSocket::new_v4().unwrap();
    stalled_socket.set_recv_buffer_size(4096).unwrap();
    let stalled_stream = stalled_socket.connect(web.addr).await.unwrap();
    let (_stalled, _) = tokio_tungstenite::client_async(url.as_str(), stalled_stream)
        .await
        .expect("the stalled tab connects");

    let (mut tab, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("a tab connects");
    // Past the first second, whose rates are still settling.
    count_images(&mut tab, 1.5).await;
    let seconds = 4.0;
    let counts = count_images(&mut tab, seconds).await;
    eprintln!("updates in {seconds} s per panel (and the server's rate): {counts:?}");
    let panels: Vec<&String> = counts.keys().collect();
    assert!(
        counts.len() >= 3,
        "panels of the recorded modules, got {panels:?}"
    );
    for (panel, (n, source_rate)) in &counts {
        let per_second = f64::from(*n) / seconds;
        // One update per 100 ms tick at most, and the tab keeps getting
        // them while the other tab stalls.
        assert!(
            *n <= (seconds * 10.0) as u32 + 2,
            "{panel}: {n} updates in {seconds} s (source {source_rate}/s)"
        );
        assert!(
            *n >= 8,
            "{panel}: only {n} updates in {seconds} s while another tab stalls"
        );
        assert!(
            *source_rate > per_second,
            "{panel}: the server sent {source_rate}/s and the tab got {per_second}/s: not thinned"
        );
    }

    // Pause: only the host bar goes on; resume: images again.
    tab.send(Message::text("pause")).await.unwrap();
    count_images(&mut tab, 0.5).await;
    let paused = count_images(&mut tab, 1.0).await;
    assert!(paused.is_empty(), "images while paused: {paused:?}");
    tab.send(Message::text("resume")).await.unwrap();
    let resumed = count_images(&mut tab, 1.0).await;
    assert!(!resumed.is_empty(), "no images after resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sites_page_cannot_open_the_socket() {
    let server = FakeServer::new("daq");
    let host = server.serve_tcp().await;
    let web = start_web(&host.to_string()).await;
    let url = format!("ws://{}/ws", web.addr);

    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("another site's page got {:?}", other.map(|_| "a socket")),
    }

    let mut request = url.as_str().into_client_request().unwrap();
    let own = format!("http://{}", web.addr);
    request.headers_mut().insert("origin", own.parse().unwrap());
    let (mut tab, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the page's own origin connects");
    let first = within("a first message", tab.next()).await;
    assert!(matches!(first, Some(Ok(Message::Text(_)))), "{first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_the_same_module_ids_get_a_panel_each_labelled_with_the_node() {
    // Two DAQ nodes that record the same module ids, as a gateway shows
    // them: one page, and each panel says which node it comes from.
    let (daq1, daq2) = (FakeServer::new("daq1"), FakeServer::new("daq2"));
    let (h1, h2) = (daq1.serve_tcp().await, daq2.serve_tcp().await);
    let web = start_web_on(&[&h1.to_string(), &h2.to_string()]).await;
    let url = format!("ws://{}/ws", web.addr);
    let (mut tab, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("a tab connects");

    let mut recorded: Vec<u64> = daq1.frames.iter().map(|p| u64::from(p.module_id)).collect();
    recorded.sort_unstable();
    recorded.dedup();
    let mut labels = BTreeMap::new();
    within("panels of both nodes", async {
        while let Some(Ok(message)) = tab.next().await {
            let Some((v, _)) = decode(&message) else {
                continue;
            };
            if v["t"] == "image" || v["t"] == "phdist" {
                let node = v["node"].as_str().unwrap_or_default().to_string();
                let module = v["module"].as_u64().unwrap_or_default();
                let label = v["label"].as_str().unwrap_or_default().to_string();
                labels.insert((node, module), label);
            }
            let modules = |n: &str| labels.keys().filter(|(node, _)| node == n).count();
            if modules("daq1") == recorded.len() && modules("daq2") == recorded.len() {
                break;
            }
        }
    })
    .await;
    for ((node, module), label) in &labels {
        assert_eq!(label, &format!("{node} · module {module}"));
    }
    let of = |n: &str| -> Vec<u64> {
        labels
            .keys()
            .filter(|(node, _)| node == n)
            .map(|(_, m)| *m)
            .collect()
    };
    assert_eq!(of("daq1"), recorded, "{labels:?}");
    assert_eq!(of("daq2"), recorded, "{labels:?}");
}

/// The newest "hashpipe" message of `ws` whose `node` entry passes `want`.
async fn hashpipe_node<S>(ws: &mut S, node: &str, want: impl Fn(&Value) -> bool) -> Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    within("a hashpipe message as wanted", async {
        loop {
            let Some(Ok(Message::Text(text))) = ws.next().await else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).expect("messages are JSON");
            if v["t"] != "hashpipe" {
                continue;
            }
            let found = v["nodes"]
                .as_array()
                .and_then(|nodes| nodes.iter().find(|n| n["node"] == node))
                .cloned();
            if let Some(n) = found.filter(|n| want(n)) {
                return n;
            }
        }
    })
    .await
}

/// The host bar shows each node's Hashpipe: its threads, packets/s and
/// losses/s and the plot's points; a thread that blocks turns it bad with
/// the reason, a stale buffer too, and it comes back when they pass. Sent
/// while the tab is paused, as the host bar is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_bar_shows_each_nodes_hashpipe_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let a = FakeServer::new("daq-a");
    let b = FakeServer::new("daq-b");
    let hosts = [
        a.serve_unix(dir.path()).to_string(),
        b.serve_unix(dir.path()).to_string(),
    ];
    let web = start_web_on(&[&hosts[0], &hosts[1]]).await;
    let (mut tab, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", web.addr))
        .await
        .expect("a tab connects");
    tab.send(Message::text("pause")).await.unwrap();

    // Two points on the plot: two rates, so three reads.
    let well = hashpipe_node(&mut tab, "daq-a", |n| {
        n["series_t"].as_array().is_some_and(|t| t.len() >= 2)
    })
    .await;
    assert_eq!(well["problems"], serde_json::json!([]), "{well}");
    let states: Vec<&str> = well["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["receiving", "processing", "waiting"]);
    assert!(well["packets_per_s"].as_f64().unwrap() > 0.0, "{well}");
    assert!(well["losses_per_s"].as_f64().unwrap() > 0.0, "{well}");
    let t = well["series_t"].as_array().unwrap();
    assert!(
        t.iter()
            .all(|t| t.as_f64().unwrap() <= 0.0 && t.as_f64().unwrap() > -600.0),
        "{well}"
    );
    assert_eq!(well["series_packets"].as_array().unwrap().len(), t.len());

    a.hashpipe.lock().unwrap().threads =
        Some(["blocked".into(), "processing".into(), "exit".into()]);
    let blocked = hashpipe_node(&mut tab, "daq-a", |n| {
        n["problems"] != serde_json::json!([])
    })
    .await;
    assert_eq!(
        blocked["problems"],
        serde_json::json!(["net thread blocked", "output thread exit"])
    );
    assert_eq!(blocked["threads"][0]["bad"], true);
    assert_eq!(blocked["threads"][1]["bad"], false);

    {
        let mut h = b.hashpipe.lock().unwrap();
        h.stale = true;
        h.message = "hashpipe (pid 4242) is gone".into();
    }
    let stale = hashpipe_node(&mut tab, "daq-b", |n| {
        n["problems"] != serde_json::json!([])
    })
    .await;
    assert_eq!(
        stale["problems"],
        serde_json::json!(["stale: hashpipe (pid 4242) is gone"])
    );

    *a.hashpipe.lock().unwrap() = common::FakeHashpipe::default();
    hashpipe_node(&mut tab, "daq-a", |n| {
        n["problems"] == serde_json::json!([])
    })
    .await;
}

/// The page draws by Rust's rules: the first message carries the colour
/// maps' tables (from colorous), the log floor and the quabo layout; each
/// image is a binary frame whose pixels are the recorded frame's, with the
/// colour limits and colour-bar ticks of each scale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_gets_the_rules_first_and_images_as_binary_frames() {
    let server = FakeServer::new("daq");
    let recorded = server.frames.clone();
    let host = server.serve_tcp().await;
    let web = start_web(&host.to_string()).await;
    let (mut tab, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", web.addr))
        .await
        .expect("a tab connects");
    let first = within("the first message", tab.next())
        .await
        .unwrap()
        .unwrap();
    let (rules, _) = decode(&first).unwrap();
    assert_eq!(rules["t"], "rules");
    let plasma = rules["colour_maps"]["plasma"].as_array().unwrap();
    assert_eq!(plasma.len(), 768);
    let start = colorous::PLASMA.eval_continuous(0.0);
    assert_eq!(plasma[..3], [start.r, start.g, start.b].map(Value::from));
    assert_eq!(rules["log_count_floor"], 0.5);
    assert_eq!(
        rules["quabo_layout"]["img16"][1023],
        serde_json::json!([3, 15, 15])
    );

    let (header, pixels) = within("a movie image", async {
        loop {
            let m = tab.next().await.unwrap().unwrap();
            assert!(
                !matches!(&m, Message::Text(t) if t.as_str().contains("\"t\":\"image\"")),
                "an image as JSON text"
            );
            if let (Message::Binary(_), Some((h, p))) = (&m, decode(&m)) {
                if h["kind"] == "movie" && h["data_product"] == "img16" {
                    return (h, p);
                }
            }
        }
    })
    .await;
    assert_eq!(header["pixel_type"], "u16");
    assert_eq!(pixels.len(), 1024 * 2);
    let values: Vec<u16> = pixels
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    let frame = header["frame"].as_u64().unwrap() as u32;
    let file = header["file"].as_str().unwrap();
    let original = recorded
        .iter()
        .find(|p| {
            p.frame_number == frame
                && p.file == file
                && p.module_id == header["module"].as_u64().unwrap() as u32
        })
        .expect("the image is one of the recorded frames");
    let want: Vec<u16> = original.image_array.iter().map(|v| *v as u16).collect();
    assert_eq!(values, want);
    let (lo, hi) = (
        header["scales"]["minmax"]["lo"].as_f64().unwrap(),
        header["scales"]["minmax"]["hi"].as_f64().unwrap(),
    );
    assert_eq!(lo, f64::from(*values.iter().min().unwrap()));
    assert_eq!(hi, f64::from(*values.iter().max().unwrap()));
    let pct = &header["scales"]["pct"];
    assert!(
        pct["lo"].as_f64().unwrap() < pct["hi"].as_f64().unwrap(),
        "{pct}"
    );
    let ticks = pct["ticks"].as_array().unwrap();
    assert!(ticks.len() >= 2, "{pct}");
    for t in ticks {
        let t = t.as_f64().unwrap();
        assert!(
            t >= pct["lo"].as_f64().unwrap() && t <= pct["hi"].as_f64().unwrap(),
            "{pct}"
        );
    }
}
