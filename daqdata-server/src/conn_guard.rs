//! TCP connections that never speak, and peers that open too many (SPEC
//! §6): a connection that has not sent the HTTP/2 preface and its first
//! SETTINGS frame within [`HANDSHAKE_DEADLINE`] is closed, and each remote
//! address may hold at most `max_connections_per_peer` connections.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};

/// How long a new connection has to complete the HTTP/2 handshake.
pub(crate) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// The client preface (24 bytes) and a SETTINGS frame header (9 bytes):
/// once this much has come in, the peer speaks HTTP/2.
const HANDSHAKE_BYTES: usize = 24 + 9;

/// How often a refused peer is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Counts open connections per remote address.
#[derive(Clone)]
pub(crate) struct ConnLimits {
    inner: Arc<Mutex<Limits>>,
    max: usize,
    /// Whether an address is counted at all (`AccessConfig::limits_apply_to`).
    counted: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

#[derive(Default)]
struct Limits {
    open: HashMap<IpAddr, usize>,
    logged: HashMap<IpAddr, Instant>,
}

impl ConnLimits {
    pub(crate) fn new(
        max_connections_per_peer: usize,
        counted: impl Fn(IpAddr) -> bool + Send + Sync + 'static,
    ) -> Self {
        ConnLimits {
            inner: Arc::new(Mutex::new(Limits::default())),
            max: max_connections_per_peer,
            counted: Arc::new(counted),
        }
    }

    /// Takes a connection place for `ip`, or `None` (logged at most once a
    /// minute per peer) when it holds its maximum.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<ConnPlace> {
        if !(self.counted)(ip) {
            return Some(ConnPlace(None));
        }
        let mut limits = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let open = limits.open.get(&ip).copied().unwrap_or(0);
        if open >= self.max {
            let now = Instant::now();
            let due = limits
                .logged
                .get(&ip)
                .is_none_or(|last| now.duration_since(*last) >= LOG_EVERY);
            if due {
                limits.logged.insert(ip, now);
                tracing::warn!(
                    peer = %ip,
                    "refusing connections from {ip}: it holds {open}, this server's max_connections_per_peer (logged once a minute)"
                );
            }
            return None;
        }
        limits.open.insert(ip, open + 1);
        Some(ConnPlace(Some((self.clone(), ip))))
    }
}

/// One connection of a counted peer; given back when the connection closes.
pub(crate) struct ConnPlace(Option<(ConnLimits, IpAddr)>);

impl Drop for ConnPlace {
    fn drop(&mut self) {
        if let Some((limits, ip)) = self.0.take() {
            let mut l = limits.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = l.open.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    l.open.remove(&ip);
                }
            }
        }
    }
}

/// A connection that must complete the HTTP/2 handshake in time, holding
/// its peer's place while it is open.
pub(crate) struct Guarded<S> {
    inner: S,
    /// Until the handshake bytes are in.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    read: usize,
    _place: ConnPlace,
}

impl<S> Guarded<S> {
    /// A connection accepted now.
    pub(crate) fn new(inner: S, place: ConnPlace) -> Self {
        Self::until(
            inner,
            place,
            tokio::time::Instant::now() + HANDSHAKE_DEADLINE,
        )
    }

    /// A connection that must have sent the HTTP/2 handshake by `deadline`
    /// (a TLS connection, whose TLS handshake spent part of the time).
    pub(crate) fn until(inner: S, place: ConnPlace, deadline: tokio::time::Instant) -> Self {
        Guarded {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            read: 0,
            _place: place,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_some() {
            if let Poll::Ready(Ok(())) = &polled {
                this.read += buf.filled().len() - before;
                if this.read >= HANDSHAKE_BYTES {
                    this.deadline = None;
                    return polled;
                }
            }
            if let Some(deadline) = this.deadline.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no HTTP/2 handshake within {} s; closing the connection",
                            HANDSHAKE_DEADLINE.as_secs()
                        ),
                    )));
                }
            }
        }
        polled
    }
}

crate::io_wrap::pass_writes_through!(Guarded);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_at_most_its_share_of_connections() {
        let limits = ConnLimits::new(2, |ip: IpAddr| !ip.is_loopback());
        let far: IpAddr = "192.0.2.9".parse().unwrap();
        let a = limits.admit(far).expect("first");
        let _b = limits.admit(far).expect("second");
        assert!(limits.admit(far).is_none(), "a third is refused");
        assert!(limits.admit("192.0.2.10".parse().unwrap()).is_some());
        drop(a);
        assert!(
            limits.admit(far).is_some(),
            "a closed connection frees its place"
        );
        // Addresses that are not counted (loopback here) are not limited.
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..5).map(|_| limits.admit(local)).collect();
        assert!(held.iter().all(Option::is_some));
        let strict = ConnLimits::new(1, |_| true);
        let _one = strict.admit(local).expect("first");
        assert!(strict.admit(local).is_none());
    }

    #[tokio::test]
    async fn a_connection_that_never_speaks_is_closed_and_one_that_does_is_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tokio::time::pause();
        let (client, server) = tokio::io::duplex(1024);
        let mut silent = Guarded::new(server, ConnPlace(None));
        let mut buf = [0u8; 64];
        let err = silent.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(1024);
        let mut talking = Guarded::new(server, ConnPlace(None));
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        let mut got = 0;
        while got < HANDSHAKE_BYTES {
            got += talking.read(&mut buf).await.unwrap();
        }
        // Well past the deadline, it still reads.
        tokio::time::advance(HANDSHAKE_DEADLINE * 2).await;
        client.write_all(b"more").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 4);
    }
}
