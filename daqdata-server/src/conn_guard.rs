//! Peers that open too many connections (SPEC §6): each remote address
//! may hold at most `max_connections_per_peer` connections; the accept
//! loop (`transport`) closes the ones beyond.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::keyed_count::{KeyedCounts, KeyedGuard};

/// How often a refused peer is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Counts open connections per remote address.
#[derive(Clone)]
pub(crate) struct ConnLimits {
    open: KeyedCounts<IpAddr>,
    /// When each refused peer was last logged.
    logged: Arc<Mutex<HashMap<IpAddr, Instant>>>,
    max: usize,
    /// Whether an address is counted at all (`AccessConfig::limits_apply_to`).
    counted: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl ConnLimits {
    pub(crate) fn new(
        max_connections_per_peer: usize,
        counted: impl Fn(IpAddr) -> bool + Send + Sync + 'static,
    ) -> Self {
        ConnLimits {
            open: KeyedCounts::new(),
            logged: Arc::new(Mutex::new(HashMap::new())),
            max: max_connections_per_peer,
            counted: Arc::new(counted),
        }
    }

    /// Takes a connection place for `ip`, or `None` (logged at most once a
    /// minute per peer) when it holds its maximum.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<ConnPlace> {
        if !(self.counted)(ip) {
            return Some(ConnPlace { _place: None });
        }
        match self.open.try_take(ip, self.max) {
            Ok(place) => Some(ConnPlace {
                _place: Some(place),
            }),
            Err(open) => {
                self.log_refusal(ip, open);
                None
            }
        }
    }

    fn log_refusal(&self, ip: IpAddr, open: usize) {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let due = logged
            .get(&ip)
            .is_none_or(|last| now.duration_since(*last) >= LOG_EVERY);
        if due {
            logged.insert(ip, now);
            tracing::warn!(
                peer = %ip,
                "refusing connections from {ip}: it holds {open}, this server's max_connections_per_peer (logged once a minute)"
            );
        }
    }
}

/// One connection of a counted peer (`None`: an uncounted one); given back
/// when the connection closes.
pub(crate) struct ConnPlace {
    _place: Option<KeyedGuard<IpAddr>>,
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

    /// The log lines `f` writes at WARN and above.
    fn warnings_of(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
                lines.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = lines.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// A peer that retries in a loop must not flood the log: a refused
    /// peer is named once a minute, each peer on its own.
    #[test]
    fn a_refused_peer_is_logged_once_a_minute() {
        let limits = ConnLimits::new(1, |_| true);
        let far: IpAddr = "192.0.2.9".parse().unwrap();
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        let _held = [limits.admit(far), limits.admit(other)];
        let refuse = |ip, times| {
            for _ in 0..times {
                assert!(limits.admit(ip).is_none());
            }
        };
        let logs = warnings_of(|| refuse(far, 5));
        assert_eq!(
            logs.matches("refusing connections from 192.0.2.9").count(),
            1,
            "{logs}"
        );
        assert!(logs.contains("it holds 1"), "{logs}");
        let logs = warnings_of(|| refuse(other, 3));
        assert_eq!(
            logs.matches("refusing connections from 192.0.2.10").count(),
            1,
            "{logs}"
        );

        let a_minute_ago = Instant::now()
            .checked_sub(LOG_EVERY)
            .expect("the monotonic clock started over a minute ago");
        let mut logged = limits.logged.lock().unwrap();
        logged.insert(far, a_minute_ago);
        drop(logged);
        let logs = warnings_of(|| refuse(far, 3));
        assert_eq!(
            logs.matches("refusing connections from 192.0.2.9").count(),
            1,
            "a minute later: {logs}"
        );
    }
}
