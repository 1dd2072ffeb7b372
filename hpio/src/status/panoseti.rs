//! The keys PANOSETI's Hashpipe writes (panoseti_daq's net, compute and
//! output threads), typed; rates between two reads; staleness.

use std::time::SystemTime;

use super::cards::Cards;
use super::reader::Snapshot;

/// The thread-state keys, as stored (`COMPUTESTAT` cut to 8 characters),
/// with the thread each belongs to.
pub const THREAD_STATES: [(&str, &str); 3] = [
    ("NETSTAT", "net"),
    ("COMPUTES", "compute"),
    ("OUTSTAT", "output"),
];

/// Cumulative counters whose movement shows Hashpipe is alive.
const PROGRESS_COUNTERS: [&str; 4] = ["NPACKETS", "TPKTLST", "NETBKOUT", "OUTBLKIN"];

/// PANOSETI's keys of one read; `None` where a key is absent or not of
/// the expected type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PanosetiStatus {
    /// `NETSTAT`, `COMPUTES`, `OUTSTAT`: `init`, `receiving`, `blocked`,
    /// ..., `exit`.
    pub thread_states: Vec<(&'static str, Option<String>)>,
    /// `NPACKETS`: packets received, cumulative.
    pub packets: Option<i64>,
    /// `TPKTLST`: packets lost (gaps in packet numbers), cumulative.
    pub lost: Option<i64>,
    /// `NETRECV`: the kernel's received count since the previous read.
    pub kernel_received: Option<i64>,
    /// `NETDROPS`: the kernel's drops since the previous read.
    pub kernel_drops: Option<i64>,
    /// `NPHEVENT`: pulse-height packets, cumulative.
    pub ph_events: Option<i64>,
    /// When it was read.
    pub read_at: Option<SystemTime>,
}

impl PanosetiStatus {
    /// The typed view of `snapshot`.
    pub fn from_snapshot(snapshot: &Snapshot) -> PanosetiStatus {
        PanosetiStatus {
            read_at: Some(snapshot.read_at),
            ..PanosetiStatus::from_cards(&snapshot.cards)
        }
    }

    /// The typed view of `cards`.
    pub fn from_cards(cards: &Cards) -> PanosetiStatus {
        let int = |key: &str| cards.get(key).and_then(|v| v.as_i64());
        PanosetiStatus {
            thread_states: THREAD_STATES
                .iter()
                .map(|&(key, thread)| {
                    (
                        thread,
                        cards.get(key).and_then(|v| v.as_str()).map(str::to_string),
                    )
                })
                .collect(),
            packets: int("NPACKETS"),
            lost: int("TPKTLST"),
            kernel_received: int("NETRECV"),
            kernel_drops: int("NETDROPS"),
            ph_events: int("NPHEVENT"),
            read_at: None,
        }
    }

    /// Threads whose state is `blocked` or `exit`: what an operator must
    /// see first.
    pub fn troubled_threads(&self) -> Vec<(&'static str, &str)> {
        self.thread_states
            .iter()
            .filter_map(|(thread, state)| {
                let state = state.as_deref()?;
                (state == "blocked" || state == "exit").then_some((*thread, state))
            })
            .collect()
    }

    /// The states in a few words: `net receiving, compute processing,
    /// output waiting`.
    pub fn states_summary(&self) -> String {
        let parts: Vec<String> = self
            .thread_states
            .iter()
            .filter_map(|(thread, state)| Some(format!("{thread} {}", state.as_deref()?)))
            .collect();
        if parts.is_empty() {
            "no thread states".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// Packet and loss rates between two reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// `NPACKETS` per second.
    pub packets_per_second: f64,
    /// `TPKTLST` per second.
    pub lost_per_second: f64,
}

impl Rates {
    /// The rates from `earlier` to `later`; `None` without both counters
    /// in both, when no time passed, or when a counter went down (Hashpipe
    /// restarted).
    pub fn between(earlier: &PanosetiStatus, later: &PanosetiStatus) -> Option<Rates> {
        let seconds = later
            .read_at?
            .duration_since(earlier.read_at?)
            .ok()?
            .as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        let per_second = |a: Option<i64>, b: Option<i64>| -> Option<f64> {
            let delta = b?.checked_sub(a?)?;
            (delta >= 0).then(|| delta as f64 / seconds)
        };
        Some(Rates {
            packets_per_second: per_second(earlier.packets, later.packets)?,
            lost_per_second: per_second(earlier.lost, later.lost)?,
        })
    }
}

/// Decides whether a buffer is still being written. Nothing in it is a
/// heartbeat, so it is inferred: the counters have not moved since the
/// last read and no Hashpipe process runs (when the caller checks for
/// it), or the counters have not moved for a number of reads. Counters
/// that move are being written, whatever the writer's process is called.
#[derive(Debug, Clone)]
pub struct Staleness {
    limit: u32,
    still: u32,
    last: Option<Vec<Option<i64>>>,
}

impl Staleness {
    /// Stale after `limit` reads in a row with unchanged counters.
    pub fn new(limit: u32) -> Staleness {
        Staleness {
            limit: limit.max(1),
            still: 0,
            last: None,
        }
    }

    /// Takes one read; returns why the buffer is stale, or `None`.
    /// `process_alive` is `None` when the process is not checked (a
    /// simulator's buffer).
    pub fn observe(&mut self, cards: &Cards, process_alive: Option<bool>) -> Option<String> {
        let counters: Vec<Option<i64>> = PROGRESS_COUNTERS
            .iter()
            .map(|k| cards.get(k).and_then(|v| v.as_i64()))
            .collect();
        if self.last.as_ref() == Some(&counters) {
            self.still = self.still.saturating_add(1);
        } else {
            self.still = 0;
        }
        self.last = Some(counters);
        if process_alive == Some(false) && self.still > 0 {
            return Some("no hashpipe process is running".to_string());
        }
        (self.still >= self.limit)
            .then(|| format!("counters have not moved in {} reads", self.still))
    }
}

/// Whether a process named `hashpipe` runs on this machine (the rule the
/// active-run check and panoseti's `control_utils` use).
pub fn hashpipe_running() -> bool {
    crate::active::hashpipe_process().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::parse_cards;
    use crate::status::StatusImage;
    use std::time::Duration;

    fn status(packets: i64, lost: i64, at: u64, net: &str) -> (Cards, PanosetiStatus) {
        let mut image = StatusImage::new();
        image.put_int("NPACKETS", packets).unwrap();
        image.put_int("TPKTLST", lost).unwrap();
        image.put_str("NETSTAT", net).unwrap();
        image.put_str("COMPUTESTAT", "processing").unwrap();
        let cards = parse_cards(image.bytes()).unwrap();
        let snapshot = Snapshot {
            cards: cards.clone(),
            read_at: SystemTime::UNIX_EPOCH + Duration::from_secs(at),
        };
        (cards, PanosetiStatus::from_snapshot(&snapshot))
    }

    #[test]
    fn rates_come_from_two_reads() {
        let (_, a) = status(1000, 10, 100, "receiving");
        let (_, b) = status(3000, 14, 102, "receiving");
        let rates = Rates::between(&a, &b).unwrap();
        assert_eq!(rates.packets_per_second, 1000.0);
        assert_eq!(rates.lost_per_second, 2.0);
        // A restarted Hashpipe counts from zero: no rate, not a negative one.
        assert_eq!(Rates::between(&b, &status(5, 0, 104, "init").1), None);
    }

    #[test]
    fn states_say_which_thread_is_blocked() {
        let (_, s) = status(1, 0, 1, "blocked");
        assert_eq!(s.states_summary(), "net blocked, compute processing");
        assert_eq!(s.troubled_threads(), vec![("net", "blocked")]);
    }

    #[test]
    fn counters_that_do_not_move_make_a_buffer_stale() {
        let mut staleness = Staleness::new(3);
        let (moving, _) = status(1, 0, 1, "receiving");
        let (moved, _) = status(2, 0, 2, "receiving");
        assert_eq!(staleness.observe(&moving, None), None);
        assert_eq!(staleness.observe(&moved, None), None);
        assert_eq!(staleness.observe(&moved, None), None);
        assert_eq!(staleness.observe(&moved, None), None);
        assert!(staleness.observe(&moved, None).unwrap().contains("3 reads"));
        assert_eq!(staleness.observe(&moving, None), None);
        // Moving counters are written by someone, named hashpipe or not.
        assert_eq!(staleness.observe(&moved, Some(false)), None);
        assert!(staleness
            .observe(&moved, Some(false))
            .unwrap()
            .contains("no hashpipe process"));
    }
}
