//! The server's own accept loop: every listener (TCP, TLS, unix socket)
//! serves tonic's routes over hyper's HTTP/2 connection builder, whose
//! knobs say what tonic's server builder hides (SPEC §6):
//!
//! - SETTINGS_HEADER_TABLE_SIZE = 0: h2 decodes header strings as slices
//!   of its 8 KiB read buffers, so each field a client added to the
//!   connection's HPACK table kept a whole buffer alive for as long as the
//!   connection (months for a viewer). With no table, no field outlives
//!   its request; requests are one per stream, so literals cost nothing.
//! - No `Date` header: hyper would add one per response, and h2 would add
//!   each new second's value to the HPACK table the client gave it; gRPC
//!   does not read it.
//! - HTTP/2 keepalive: a ping every 30 s, and a peer that does not answer
//!   within 10 s is dropped, freeing its streams' slots; TCP keepalive too.
//! - A connection must send the HTTP/2 preface and its first frame header
//!   within [`HANDSHAKE_DEADLINE`] of being accepted (a TLS handshake
//!   counts against the same deadline), or it is closed.
//! - At most `max_connections_per_peer` connections per remote address
//!   (see `conn_guard`).
//! - Each request carries its connection's [`Door`] in its extensions,
//!   which `access` reads.
//!
//! On shutdown the loop stops accepting (the listening socket closes),
//! tells every connection to finish (HTTP/2 GOAWAY: open streams may end,
//! no new ones start) and returns once all have closed; `Server::shutdown`
//! bounds that wait by the grace period.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::access::{self, AuthLayer, Door};
use crate::conn_guard::{ConnLimits, ConnPlace};
use crate::message_limit::MessageLimitLayer;
use crate::uds_authority::AuthorityFix;
use crate::unix_socket::SocketFile;

/// How long a new connection has to send the HTTP/2 preface and the
/// header of its first frame (its SETTINGS), TLS handshake included.
pub(crate) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// The client preface (24 bytes) and a frame header (9 bytes): once this
/// much has come in, the peer speaks HTTP/2.
const HANDSHAKE_BYTES: usize = 24 + 9;

/// HTTP/2 keepalive (SPEC §6).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keepalive probes start after this much silence (SPEC §6: dead peers
/// are dropped and their slots freed).
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// After a failed accept (out of file descriptors, most likely), wait this
/// long before the next, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound listening socket, before it serves; a unix socket's file is
/// removed when its listener is dropped.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Tls(TcpListener, tokio_rustls::TlsAcceptor),
    Unix {
        listener: UnixListener,
        _file: SocketFile,
    },
}

/// A connection just accepted, before any handshake.
enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l) | Listener::Tls(l, _) => {
                let (stream, peer) = l.accept().await?;
                Ok(Accepted::Tcp(stream, peer))
            }
            Listener::Unix { listener, .. } => Ok(Accepted::Unix(listener.accept().await?.0)),
        }
    }
}

/// What every connection of every listener shares.
#[derive(Clone)]
pub(crate) struct Transport {
    h2: http2::Builder<TokioExecutor>,
    routes: tonic::service::Routes,
    auth: AuthLayer,
    limits: ConnLimits,
}

impl Transport {
    pub(crate) fn new(routes: tonic::service::Routes, auth: AuthLayer, limits: ConnLimits) -> Self {
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .header_table_size(0)
            .auto_date_header(false)
            .keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            // As tonic's server: admission, not HTTP/2, limits streams,
            // and says why when it refuses one.
            .max_concurrent_streams(None);
        Transport {
            h2,
            routes: routes.prepare(),
            auth,
            limits,
        }
    }

    /// Accepts on `listener` until `shutdown`, then waits for every
    /// connection to close.
    pub(crate) async fn serve(self, listener: Listener, shutdown: CancellationToken) {
        let listener = Arc::new(listener);
        let mut conns = JoinSet::new();
        let mut last_error = None;
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                accepted = listener.accept() => accepted,
            };
            let accepted = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Logged once per cause, not once per attempt.
                    if last_error != Some(e.kind()) {
                        tracing::warn!("accepting a connection: {e}; retrying");
                        last_error = Some(e.kind());
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            last_error = None;
            let place = match &accepted {
                Accepted::Tcp(stream, peer) => {
                    set_tcp_options(stream, *peer);
                    // Beyond its share the connection is dropped, i.e. closed.
                    match self.limits.admit(peer.ip()) {
                        Some(place) => Some(place),
                        None => continue,
                    }
                }
                Accepted::Unix(_) => None,
            };
            let tls = match &*listener {
                Listener::Tls(_, acceptor) => Some(acceptor.clone()),
                _ => None,
            };
            conns.spawn(
                self.clone()
                    .connection(accepted, tls, place, shutdown.clone()),
            );
        }
        drop(listener);
        while conns.join_next().await.is_some() {}
    }

    /// One connection, from its handshakes to its close; holds its peer's
    /// place until then.
    async fn connection(
        self,
        accepted: Accepted,
        tls: Option<tokio_rustls::TlsAcceptor>,
        _place: Option<ConnPlace>,
        shutdown: CancellationToken,
    ) {
        let deadline = Instant::now() + HANDSHAKE_DEADLINE;
        let (door, read, write) = match open(accepted, tls, deadline).await {
            Ok(opened) => opened,
            Err(e) => {
                tracing::debug!("{e}; closed");
                return;
            }
        };
        let io = match handshake(read, write, deadline).await {
            Ok(io) => io,
            Err(e) => {
                tracing::debug!("{door}: {e}; closed");
                return;
            }
        };
        let peer = door.to_string();
        let service = ServiceBuilder::new()
            .map_request(move |req: http::Request<hyper::body::Incoming>| {
                let mut req = req.map(tonic::body::Body::new);
                req.extensions_mut().insert(door.clone());
                req
            })
            .layer(MessageLimitLayer)
            .layer(self.auth)
            .service(self.routes);
        let conn = self
            .h2
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        tokio::pin!(conn);
        let served = tokio::select! {
            served = conn.as_mut() => served,
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = served {
            tracing::debug!("connection from {peer}: {e}");
        }
    }
}

/// Read and write halves of one connection, whatever its door.
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// The connection's door, and its (decrypted) halves: a TLS handshake
/// done within `deadline`; a unix socket's reads behind [`AuthorityFix`].
async fn open(
    accepted: Accepted,
    tls: Option<tokio_rustls::TlsAcceptor>,
    deadline: Instant,
) -> io::Result<(Door, ReadHalf, WriteHalf)> {
    match (accepted, tls) {
        (Accepted::Tcp(stream, peer), None) => {
            let (read, write) = stream.into_split();
            Ok((Door::Tcp(peer), Box::new(read), Box::new(write)))
        }
        (Accepted::Tcp(stream, peer), Some(acceptor)) => {
            let tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    return Err(io::Error::other(format!("TLS handshake with {peer}: {e}")))
                }
                Err(_) => {
                    return Err(io::Error::other(format!(
                        "no TLS handshake from {peer} within {} s",
                        HANDSHAKE_DEADLINE.as_secs()
                    )))
                }
            };
            let name = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| access::common_name(cert.as_ref()));
            let (read, write) = tokio::io::split(tls);
            Ok((Door::Tls(peer, name), Box::new(read), Box::new(write)))
        }
        (Accepted::Unix(stream), _) => {
            let (read, write) = stream.into_split();
            // hyperium/h2#487: grpcio's %-encoded `:authority` on unix
            // sockets; see uds_authority.rs for when to delete this.
            Ok((
                Door::Unix,
                Box::new(AuthorityFix::new(read)),
                Box::new(write),
            ))
        }
    }
}

/// The connection, once its first [`HANDSHAKE_BYTES`] have come in by
/// `deadline`; those bytes are read again by HTTP/2.
async fn handshake(
    mut read: ReadHalf,
    write: WriteHalf,
    deadline: Instant,
) -> io::Result<
    tokio::io::Join<tokio::io::Chain<io::Cursor<[u8; HANDSHAKE_BYTES]>, ReadHalf>, WriteHalf>,
> {
    let mut first = [0u8; HANDSHAKE_BYTES];
    match tokio::time::timeout_at(deadline, read.read_exact(&mut first)).await {
        Ok(Ok(_)) => Ok(tokio::io::join(io::Cursor::new(first).chain(read), write)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no HTTP/2 handshake within {} s",
                HANDSHAKE_DEADLINE.as_secs()
            ),
        )),
    }
}

/// TCP_NODELAY (a frame is sent when it is ready) and TCP keepalive; a
/// socket that refuses them is served anyway.
fn set_tcp_options(stream: &TcpStream, peer: SocketAddr) {
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    let set = stream
        .set_nodelay(true)
        .and_then(|()| socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive));
    if let Err(e) = set {
        tracing::debug!("setting TCP options for {peer}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn halves(s: tokio::io::DuplexStream) -> (ReadHalf, WriteHalf) {
        let (r, w) = tokio::io::split(s);
        (Box::new(r), Box::new(w))
    }

    #[tokio::test]
    async fn a_connection_that_never_speaks_is_closed_and_one_that_does_is_served_whole() {
        tokio::time::pause();
        let (_client, server) = tokio::io::duplex(1024);
        let (r, w) = halves(server);
        let silent = handshake(r, w, Instant::now() + HANDSHAKE_DEADLINE).await;
        assert_eq!(
            silent.err().map(|e| e.kind()),
            Some(io::ErrorKind::TimedOut)
        );

        let (mut client, server) = tokio::io::duplex(1024);
        let (r, w) = halves(server);
        let hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0more";
        client.write_all(hello).await.unwrap();
        let mut talking = handshake(r, w, Instant::now() + HANDSHAKE_DEADLINE)
            .await
            .unwrap();
        // What the handshake looked at is read again, then the rest.
        let mut got = vec![0u8; hello.len()];
        talking.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..], &hello[..]);
    }
}
