//! `daqdata web`: the live view in a browser, for the whole observatory.
//!
//! One set of gRPC streams (one per host, reconnecting on its own) feeds a
//! [`hub`], which keeps the newest image of every panel and publishes about
//! ten updates a second, each encoded once. Every browser tab is served by
//! its own task from the newest snapshot: a slow tab skips versions and
//! never slows the others or the streams. The page (HTML, CSS and
//! JavaScript written for it) is built into the binary and uses relative
//! URLs only, so it works behind `ssh -L`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Args;
use daqdata_client::{Backoff, DaqClient, StreamSpec};
use tokio::sync::watch;
use tracing::{debug, info, warn};

mod hub;

use hub::Snapshot;

/// Options of `daqdata web` beyond the hosts and credentials.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Address the page is served on. The default is this machine only: from
    /// a laptop, forward it with `ssh -L 8080:localhost:8080 DAQ_NODE` and
    /// open http://localhost:8080/.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

#[derive(Clone)]
struct App {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    tabs: Arc<AtomicUsize>,
}

/// Serves the page until Ctrl-C or SIGTERM.
pub async fn run(
    args: &WebArgs,
    client: &DaqClient,
    module_ids: &[pff::ModuleId],
) -> anyhow::Result<()> {
    // Every event for the pulse-height histograms; the hub thins the
    // images to what a browser draws.
    let spec = StreamSpec {
        movie: true,
        pulse_height: true,
        update_interval_seconds: 0.0,
        module_ids: module_ids.to_vec(),
    };
    let (stream, states) = client.stream_images_observed(&spec, Backoff::default());
    // Hashpipe's buffer once a second: its counters move once per block.
    let hashpipe = client.stream_hashpipe_status(1.0, Backoff::default());
    let app = App {
        snapshots: hub::start(stream, states, hashpipe),
        tabs: Arc::new(AtomicUsize::new(0)),
    };
    let router = Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/ws", get(websocket))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the web view", args.listen))?;
    let hosts: Vec<String> = client.hosts().map(ToString::to_string).collect();
    println!(
        "daqdata web: serving the live view of {} on http://{}/",
        hosts.join(", "),
        args.listen
    );
    if !args.listen.ip().is_loopback() {
        warn!(
            "the view on {} has no login: anyone who reaches it sees every host's images",
            args.listen
        );
    } else {
        println!(
            "  from another computer: ssh -L {port}:localhost:{port} THIS_HOST, then open http://localhost:{port}/",
            port = args.listen.port()
        );
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(super::live::shutdown_signal())
        .await
        .context("the web view's HTTP server failed")?;
    Ok(())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn websocket(ws: WebSocketUpgrade, headers: HeaderMap, State(app): State<App>) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !same_origin(origin, host) {
        warn!(
            origin = origin.unwrap_or(""),
            "refused a WebSocket from another site's page"
        );
        return (
            StatusCode::FORBIDDEN,
            "the live view serves its own page only",
        )
            .into_response();
    }
    ws.on_upgrade(move |socket| serve_tab(socket, app))
}

/// Whether a browser's `Origin` is the page's own host: another site's
/// script in the same browser must not read the view. Clients that send no
/// `Origin` (not browsers) are let through: the page shows nothing they
/// could not stream themselves.
fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(host) = host else {
        return false;
    };
    match origin.split_once("://") {
        Some(("http" | "https", authority)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// One tab: sends each message's newest version when it changes; "pause"
/// stops the images (the host bar goes on), "resume" sends them again.
async fn serve_tab(mut socket: WebSocket, app: App) {
    let tabs = app.tabs.fetch_add(1, Ordering::Relaxed) + 1;
    info!(tabs, "a browser tab opened the view");
    let mut snapshots = app.snapshots.clone();
    let mut sent: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut paused = false;
    // First the rules the page draws by: colour maps, the log floor, the
    // quabo layout (daqdata_client::view::rules).
    let rules = daqdata_client::view::rules::browser_rules().to_string();
    if socket.send(Message::Text(rules.into())).await.is_err() {
        app.tabs.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let snapshot = snapshots.borrow_and_update().clone();
                if send_changes(&mut socket, &snapshot, &mut sent, paused).await.is_err() {
                    break;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Text(t))) => match t.as_str() {
                    "pause" => paused = true,
                    "resume" => paused = false,
                    other => debug!("ignored a tab's message {other:?}"),
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let tabs = app.tabs.fetch_sub(1, Ordering::Relaxed) - 1;
    info!(tabs, "a browser tab left the view");
}

async fn send_changes(
    socket: &mut WebSocket,
    snapshot: &Snapshot,
    sent: &mut std::collections::HashMap<String, u64>,
    paused: bool,
) -> Result<(), axum::Error> {
    for m in snapshot.messages() {
        if paused && m.key != "hosts" && m.key != "hashpipe" {
            continue;
        }
        if sent.get(&m.key) == Some(&m.seq) {
            continue;
        }
        socket.send(m.body.message()).await?;
        sent.insert(m.key.clone(), m.seq);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn only_the_pages_own_origin_may_open_the_socket() {
        let host = Some("localhost:8080");
        assert!(same_origin(Some("http://localhost:8080"), host));
        assert!(same_origin(Some("https://localhost:8080"), host));
        assert!(same_origin(None, host), "a script without Origin");
        for hostile in [
            "http://evil.example",
            "http://localhost:8081",
            "http://localhost:8080.evil.example",
            "http://evil.example/localhost:8080",
            "file://",
            "null",
            "",
            "localhost:8080",
            "javascript://localhost:8080",
        ] {
            assert!(!same_origin(Some(hostile), host), "{hostile:?}");
        }
        assert!(!same_origin(Some("http://localhost:8080"), None));
    }
}
