//! Hashpipe's socket feed (SPEC §7): the server listens on one unix stream
//! socket per data product, and Hashpipe connects and pushes a message (a
//! 2-byte module id and one PFF frame) per (module, data product) every
//! snapshot interval.
//!
//! The sockets exist while one hp_io configuration runs on real data (or a
//! socket-fed simulation), and are removed when it stops. Each connection
//! is read on its own task through a [`pff::SocketDecoder`]; its frames go
//! into the same broadcast slots as the file tracker's, as
//! `file = "uds_{dp_name}"` with `frame_number` counting from 0 per
//! connection, as the Python server does. A malformed message or a silent
//! spell of `read_timeout_seconds` closes that connection only.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pff::{DataProduct, ModuleId, SocketDecoder};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::broadcast::Broadcast;
use crate::unix_socket::{SocketFile, SocketFileError, SocketMode};

/// Hashpipe and the server may share a group (`group`), nobody else.
const MODE: SocketMode = SocketMode::OWNER_AND_GROUP;

/// The `[hashpipe_sockets]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HashpipeSocketsConfig {
    /// Listen on Hashpipe's sockets while hp_io runs on real data.
    pub enabled: bool,
    /// One socket per data product named here (`img8`, `img16`, `ph256`,
    /// `ph1024`).
    pub data_products: Vec<String>,
    /// Where each socket is made; `{dp_name}` is replaced by the product's
    /// name. Hashpipe's `snapshot.c` connects to the default.
    pub path_template: String,
    /// A connection that sends nothing for this long is closed.
    #[serde(deserialize_with = "crate::seconds::deserialize")]
    pub read_timeout_seconds: Duration,
    /// Group (name or number) given the socket files; unset: the server's.
    pub group: Option<String>,
}

impl Default for HashpipeSocketsConfig {
    fn default() -> Self {
        HashpipeSocketsConfig {
            enabled: true,
            data_products: DataProduct::ALL.iter().map(|d| d.name().into()).collect(),
            path_template: pff::DEFAULT_SOCKET_TEMPLATE.into(),
            read_timeout_seconds: Duration::from_secs(600),
            group: None,
        }
    }
}

impl HashpipeSocketsConfig {
    /// Checks what a typo could make absurd; the message names the key.
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.products()?;
        if !self.path_template.contains(pff::DP_NAME) && self.data_products.len() > 1 {
            return Err(format!(
                "[hashpipe_sockets] path_template {:?} has no {}, so every data product would share one socket",
                self.path_template,
                pff::DP_NAME
            ));
        }
        if self.read_timeout_seconds.is_zero() {
            return Err(
                "[hashpipe_sockets] read_timeout_seconds must be a positive number of seconds, got 0"
                    .into(),
            );
        }
        Ok(())
    }

    fn products(&self) -> Result<Vec<DataProduct>, String> {
        self.data_products
            .iter()
            .map(|n| {
                n.parse()
                    .map_err(|e| format!("[hashpipe_sockets] data_products: {e}"))
            })
            .collect()
    }
}

/// Why the sockets could not be made; each names the path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SocketsError {
    #[error("Hashpipe socket {0}; see [hashpipe_sockets] path_template and group")]
    Socket(#[from] SocketFileError),
    #[error("{0}")]
    Config(String),
}

/// Everything one hp_io configuration listens on; dropped (or stopped), it
/// closes every connection and removes its socket files.
pub(crate) struct HashpipeSockets {
    cancel: CancellationToken,
    bound: Vec<SocketFile>,
}

/// What every connection of every socket shares.
struct Feed {
    broadcast: Arc<Broadcast>,
    cancel: CancellationToken,
    read_timeout: Duration,
    /// Open connections of the whole server (the active-run check reads it).
    open: Arc<AtomicUsize>,
    /// InitHpIo's `module_ids`: frames of other modules are dropped, as the
    /// tracker skips their files. Empty: every module.
    modules: Vec<ModuleId>,
    /// Numbers connections in logs.
    next_connection: AtomicU64,
}

impl HashpipeSockets {
    /// Makes one socket per configured data product, at `template` (the
    /// configured one, or a simulation's private one), and reads every
    /// connection into `broadcast`, keeping the frames of `modules` (empty:
    /// all). `open` counts open connections. A socket another live server
    /// already listens on is an error when the sockets are the only
    /// source (`sole_source`); beside the file tracker it is a warning, and
    /// that socket is left to the other server (a Python server on the same
    /// node, say), so hp_io still starts.
    ///
    /// Call within a tokio runtime (a `spawn_blocking` thread is).
    pub(crate) fn start(
        config: &HashpipeSocketsConfig,
        template: &str,
        modules: &[ModuleId],
        broadcast: Arc<Broadcast>,
        open: Arc<AtomicUsize>,
        sole_source: bool,
    ) -> Result<HashpipeSockets, SocketsError> {
        let products = config.products().map_err(SocketsError::Config)?;
        let feed = Arc::new(Feed {
            broadcast,
            cancel: CancellationToken::new(),
            read_timeout: config.read_timeout_seconds,
            open,
            modules: modules.to_vec(),
            next_connection: AtomicU64::new(0),
        });
        let mut sockets = HashpipeSockets {
            cancel: feed.cancel.clone(),
            bound: Vec::new(),
        };
        // On an error, dropping `sockets` removes the ones already made.
        for dp in products {
            let path = pff::socket_path(template, dp);
            let (listener, bound) = match SocketFile::bind(&path, MODE, config.group.as_deref()) {
                Err(e @ SocketFileError::InUse { .. }) if !sole_source => {
                    tracing::warn!(
                        "Hashpipe socket {e}; not listening there, the files are tracked"
                    );
                    continue;
                }
                other => other?,
            };
            sockets.bound.push(bound);
            tracing::info!("listening for Hashpipe's {dp} frames on {}", path.display());
            tokio::spawn(accept(listener, path, dp, feed.clone()));
        }
        Ok(sockets)
    }

    /// The socket files, for logs and tests.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &Path> {
        self.bound.iter().map(SocketFile::path)
    }
}

impl Drop for HashpipeSockets {
    /// Closes every connection; each socket file goes with its
    /// [`SocketFile`].
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept(listener: UnixListener, path: PathBuf, dp: DataProduct, feed: Arc<Feed>) {
    let path: Arc<Path> = path.into();
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            _ = feed.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                failing = false;
                let n = feed.next_connection.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(read_connection(stream, path.clone(), n, dp, feed.clone()));
            }
            Err(e) => {
                // Out of file descriptors, most likely: say it once, and
                // give the system a moment. (Only the log's repetition
                // hangs on `failing`; the tests cannot run a process out of
                // descriptors, so its mutant is left as equivalent.)
                if !failing {
                    tracing::warn!("accepting on Hashpipe socket {}: {e}", path.display());
                    failing = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Counts a connection as open while it lives.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads one connection until it ends, fails, falls silent or the
/// configuration stops; logs why it closed, once.
async fn read_connection(
    mut stream: UnixStream,
    path: Arc<Path>,
    n: u64,
    dp: DataProduct,
    feed: Arc<Feed>,
) {
    feed.open.fetch_add(1, Ordering::AcqRel);
    let _open = Open(feed.open.clone());
    let who = format!("Hashpipe socket {} connection {n}", path.display());
    tracing::info!("{who}: opened");
    let file: Arc<str> = format!("uds_{dp}").into();
    let mut decoder = SocketDecoder::new(dp);
    let mut buf = vec![0u8; 64 * 1024];
    let mut frames = 0u64;
    loop {
        let read = tokio::select! {
            _ = feed.cancel.cancelled() => return,
            read = tokio::time::timeout(feed.read_timeout, stream.read(&mut buf)) => read,
        };
        let got = match read {
            Err(_) => {
                tracing::info!(
                    "{who}: closed after {frames} frames: nothing received for {:?} (read_timeout_seconds)",
                    feed.read_timeout
                );
                return;
            }
            Ok(Ok(0)) => {
                tracing::info!("{who}: closed by the sender after {frames} frames");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!("{who}: closed after {frames} frames: reading failed: {e}");
                return;
            }
            Ok(Ok(got)) => got,
        };
        decoder.extend(&buf[..got]);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    // Counts every frame the connection carried, as the
                    // Python server's frame_number does.
                    let index = frames;
                    frames += 1;
                    let module = message.module;
                    if !(feed.modules.is_empty() || feed.modules.contains(&module)) {
                        continue;
                    }
                    feed.broadcast.publish_pushed(
                        module,
                        message.frame,
                        &message.header,
                        file.clone(),
                        index,
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("{who}: closed after {frames} frames: {e}");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_another_server_holds_is_left_to_it_only_beside_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let template = pff::socket_template_in(dir.path());
        let held = pff::socket_path(&template, DataProduct::Img16);
        let _other_server = std::os::unix::net::UnixListener::bind(&held).unwrap();
        let config = HashpipeSocketsConfig {
            data_products: vec!["img16".into(), "ph256".into()],
            ..HashpipeSocketsConfig::default()
        };
        let start = |sole_source| {
            HashpipeSockets::start(
                &config,
                &template,
                &[],
                Arc::new(Broadcast::new(crate::metrics::Metrics::new())),
                Arc::default(),
                sole_source,
            )
        };
        // Beside the file tracker: hp_io starts, and listens on the rest.
        let sockets = start(false).unwrap();
        let paths: Vec<&Path> = sockets.paths().collect();
        assert_eq!(
            paths,
            [pff::socket_path(&template, DataProduct::Ph256).as_path()]
        );
        drop(sockets);
        // As the only source: an error that names the path.
        let err = start(true).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("already listening") && err.contains("dp_img16"),
            "{err}"
        );
        assert!(held.exists(), "the other server's socket is left alone");
    }

    #[test]
    fn defaults_are_the_python_servers() {
        let c = HashpipeSocketsConfig::default();
        assert!(c.enabled);
        assert_eq!(c.data_products, ["img16", "img8", "ph256", "ph1024"]);
        assert_eq!(
            pff::socket_path(&c.path_template, DataProduct::Ph256),
            Path::new("/tmp/hashpipe_grpc.dp_ph256.sock")
        );
        assert_eq!(c.read_timeout_seconds, Duration::from_secs(600));
        c.validate().unwrap();
    }

    #[test]
    fn typos_are_named() {
        let bad = |f: fn(&mut HashpipeSocketsConfig)| {
            let mut c = HashpipeSocketsConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.data_products.push("img32".into())).contains("img32"));
        assert!(bad(|c| c.path_template = "/tmp/x.sock".into()).contains("{dp_name}"));
        assert!(bad(|c| c.read_timeout_seconds = Duration::ZERO).contains("read_timeout_seconds"));
        // One data product needs no {dp_name}: its socket is the template.
        let one = HashpipeSocketsConfig {
            data_products: vec!["ph256".into()],
            path_template: "/run/hashpipe/ph.sock".into(),
            ..HashpipeSocketsConfig::default()
        };
        one.validate().unwrap();
    }
}
