//! Peers that open too many connections (SPEC §6): each remote address
//! may hold at most `max_connections_per_peer` connections; the accept
//! loop (`transport`) closes the ones beyond.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}
