//! Hashpipe's status buffer as each node's server streams it
//! (StreamHashpipeStatus, SPEC §9), and the few figures an operator
//! watches: thread states, packets/s and losses.

use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::Host;

/// Hashpipe's thread-state cards (as stored: `COMPUTESTAT` is cut to
/// `COMPUTES`) and the thread each is for.
pub const THREAD_STATE_KEYS: [(&str, &str); 3] = [
    ("NETSTAT", "net"),
    ("COMPUTES", "compute"),
    ("OUTSTAT", "output"),
];

/// One node's status buffer, as one StreamHashpipeStatus response says it.
#[derive(Clone, Debug, PartialEq)]
pub struct HashpipeStatus {
    /// The host it came from.
    pub host: Host,
    /// The server's name for itself (its host name).
    pub name: String,
    /// When the server read the buffer.
    pub read_at: Option<SystemTime>,
    /// The cards: numbers as numbers, strings as strings; empty when the
    /// buffer is unavailable.
    pub cards: Map<String, Value>,
    /// The Hashpipe process is gone, or its counters stopped moving.
    pub stale: bool,
    /// Why it is stale or unavailable; empty otherwise.
    pub message: String,
}

impl HashpipeStatus {
    pub(crate) fn from_response(
        host: &Host,
        r: daqdata_proto::daqdata::StreamHashpipeStatusResponse,
    ) -> Self {
        let cards = match r.cards {
            Some(s) => match daqdata_proto::struct_to_json(&s) {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            None => Map::new(),
        };
        HashpipeStatus {
            host: host.clone(),
            name: r.name,
            read_at: r.read_at.and_then(|t| SystemTime::try_from(t).ok()),
            cards,
            stale: r.stale,
            message: r.message,
        }
    }

    /// A numeric card.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.cards.get(key)?.as_f64()
    }

    /// A string card.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.cards.get(key)?.as_str()
    }

    /// (thread, state) of each thread that has a state card.
    pub fn thread_states(&self) -> Vec<(&'static str, &str)> {
        THREAD_STATE_KEYS
            .iter()
            .filter_map(|&(key, thread)| Some((thread, self.text(key)?)))
            .collect()
    }

    /// What an operator must see in red, in a few words: a thread that is
    /// `blocked` or has `exit`ed, a stale buffer, or none at all.
    pub fn trouble(&self) -> Option<String> {
        let mut why: Vec<String> = self
            .thread_states()
            .into_iter()
            .filter(|(_, state)| *state == "blocked" || *state == "exit")
            .map(|(thread, state)| format!("{thread} thread {state}"))
            .collect();
        if self.stale || self.cards.is_empty() {
            why.push(if self.message.is_empty() {
                "stale".to_string()
            } else {
                self.message.clone()
            });
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Packets/s and lost/s since `earlier` (the same node's previous
    /// response); `None` without both reads' counters, or when a counter
    /// went down (Hashpipe restarted).
    pub fn rates_since(&self, earlier: &HashpipeStatus) -> Option<(f64, f64)> {
        let seconds = self
            .read_at?
            .duration_since(earlier.read_at?)
            .ok()?
            .as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        let rate = |key: &str| {
            let delta = self.number(key)? - earlier.number(key)?;
            (delta >= 0.0).then_some(delta / seconds)
        };
        Some((rate("NPACKETS")?, rate("TPKTLST")?))
    }

    /// One JSON object, for `daqdata --json`.
    pub fn to_json(&self) -> Value {
        let read_at = self
            .read_at
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64());
        serde_json::json!({
            "hashpipe_status": {
                "host": self.host.to_string(),
                "name": self.name,
                "read_at": read_at,
                "stale": self.stale,
                "message": self.message,
                "cards": self.cards,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn status(packets: f64, lost: f64, at: u64, net: &str) -> HashpipeStatus {
        let mut cards = Map::new();
        cards.insert("NPACKETS".into(), packets.into());
        cards.insert("TPKTLST".into(), lost.into());
        cards.insert("NETSTAT".into(), net.into());
        HashpipeStatus {
            host: "localhost".parse().unwrap(),
            name: "daq0".into(),
            read_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(at)),
            cards,
            stale: false,
            message: String::new(),
        }
    }

    #[test]
    fn rates_and_trouble_are_what_an_operator_reads() {
        let a = status(1000.0, 2.0, 10, "receiving");
        let b = status(3000.0, 6.0, 12, "blocked");
        assert_eq!(b.rates_since(&a), Some((1000.0, 2.0)));
        assert_eq!(a.trouble(), None);
        assert_eq!(b.trouble().as_deref(), Some("net thread blocked"));
        let gone = HashpipeStatus {
            cards: Map::new(),
            message: "no Hashpipe status buffer".into(),
            ..a.clone()
        };
        assert_eq!(gone.trouble().as_deref(), Some("no Hashpipe status buffer"));
        assert_eq!(
            a.to_json()["hashpipe_status"]["cards"]["NETSTAT"],
            "receiving"
        );
    }
}
