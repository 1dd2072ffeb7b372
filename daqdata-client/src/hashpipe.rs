//! Hashpipe's health as the client shows it (SPEC §9): the status
//! buffer's cards, streamed from every host by `StreamHashpipeStatus`,
//! read as thread states, packet and loss rates and staleness.
//!
//! This is the one home of the view's rules (which keys, what is bad, how
//! rates are computed from two reads); the table of
//! `daqdata --hashpipe-status`, the terminal view's host bar and the web
//! page's host bar and plot all read [`HashpipeStatus`].

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use daqdata_proto::daqdata::daq_data_client::DaqDataClient;
use daqdata_proto::daqdata::{StreamHashpipeStatusRequest, StreamHashpipeStatusResponse};
use daqdata_proto::rpc::STREAM_HASHPIPE_STATUS;
use futures::Stream;
use prost_types::value::Kind;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::reconnect;
use crate::{Connection, Error, Host};
use daqdata_net::{Attempts, Backoff};

/// The thread-state cards PANOSETI's Hashpipe writes, in pipeline order,
/// with the short name a view shows. Keys are cut to 8 characters in the
/// buffer (`COMPUTESTAT` is stored as `COMPUTES`).
pub const THREAD_KEYS: [(&str, &str); 3] = [
    ("NETSTAT", "net"),
    ("COMPUTES", "compute"),
    ("OUTSTAT", "output"),
];
/// Packets received, cumulative.
pub const PACKETS_KEY: &str = "NPACKETS";
/// Packets lost (gaps in packet numbers), cumulative.
pub const LOST_KEY: &str = "TPKTLST";
/// The kernel's packets dropped since the previous read (not a total).
pub const DROPS_KEY: &str = "NETDROPS";
/// The kernel's packets received since the previous read (not a total).
pub const RECV_KEY: &str = "NETRECV";

/// A thread state that means the thread does not work: `blocked` (starved,
/// rewritten every 250 ms) or `exit`.
pub fn thread_state_is_bad(state: &str) -> bool {
    matches!(state.trim(), "blocked" | "exit")
}

/// One card's value: numbers as numbers, strings as strings.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum CardValue {
    /// `%d`, `%lld` or `%.17g` in the buffer.
    Number(f64),
    /// A quoted string.
    Text(String),
}

/// The cards of one read of a status buffer.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct Cards(pub BTreeMap<String, CardValue>);

impl Cards {
    /// The cards of a response's `Struct` (values that are neither numbers
    /// nor strings are left out: the server sends none).
    pub fn from_struct(cards: &prost_types::Struct) -> Self {
        Cards(
            cards
                .fields
                .iter()
                .filter_map(|(k, v)| {
                    let value = match v.kind.as_ref()? {
                        Kind::NumberValue(n) => CardValue::Number(*n),
                        Kind::StringValue(s) => CardValue::Text(s.clone()),
                        Kind::BoolValue(b) => CardValue::Text(b.to_string()),
                        _ => return None,
                    };
                    Some((k.clone(), value))
                })
                .collect(),
        )
    }

    /// A number card (a number written as a string counts too).
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.0.get(key)? {
            CardValue::Number(n) => Some(*n),
            CardValue::Text(s) => s.trim().parse().ok(),
        }
    }

    /// A string card as written (numbers formatted).
    pub fn text(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            CardValue::Text(s) => Some(s.trim().to_string()),
            CardValue::Number(n) => Some(n.to_string()),
        }
    }

    /// The state of each thread of [`THREAD_KEYS`] that the buffer has.
    pub fn threads(&self) -> Vec<ThreadState> {
        THREAD_KEYS
            .iter()
            .filter_map(|(key, short)| {
                self.text(key).map(|state| ThreadState {
                    key,
                    name: short,
                    state,
                })
            })
            .collect()
    }
}

/// One Hashpipe thread's state card.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ThreadState {
    /// The card (`NETSTAT`).
    pub key: &'static str,
    /// What a view calls it (`net`).
    pub name: &'static str,
    /// What Hashpipe wrote (`receiving`, `blocked`, `exit`, ...).
    pub state: String,
}

impl ThreadState {
    /// `blocked` or `exit`: shown in red.
    pub fn is_bad(&self) -> bool {
        thread_state_is_bad(&self.state)
    }
}

/// One read of one host's status buffer, as a view shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HashpipeStatus {
    /// The host the client dialled.
    pub host: String,
    /// The node that read the buffer (the response's `name`; a gateway
    /// keeps the upstream's), or the host when the server sent none.
    pub name: String,
    /// When the buffer was read, Unix seconds (none when it was not).
    pub read_at: Option<f64>,
    /// Every card of the read.
    pub cards: Cards,
    /// NPACKETS per second between this read and the one before.
    pub packets_per_second: Option<f64>,
    /// TPKTLST per second between this read and the one before.
    pub losses_per_second: Option<f64>,
    /// The Hashpipe process is gone, or its counters stopped moving.
    pub stale: bool,
    /// Why the buffer is unavailable or stale, when the server says.
    pub message: String,
}

impl HashpipeStatus {
    /// The view of a response from `host`, with rates against `previous`
    /// (the host's read before it, if any).
    pub fn from_response(
        host: &Host,
        response: StreamHashpipeStatusResponse,
        previous: Option<&HashpipeStatus>,
    ) -> Self {
        let read_at = response
            .read_at
            .map(|t| t.seconds as f64 + f64::from(t.nanos) * 1e-9);
        let name = if response.name.is_empty() {
            host.to_string()
        } else {
            response.name
        };
        let cards = response
            .cards
            .as_ref()
            .map(Cards::from_struct)
            .unwrap_or_default();
        let mut status = HashpipeStatus {
            host: host.to_string(),
            name,
            read_at,
            cards,
            packets_per_second: None,
            losses_per_second: None,
            stale: response.stale,
            message: response.message,
        };
        if let Some(previous) = previous {
            status.packets_per_second = status.rate_since(previous, PACKETS_KEY);
            status.losses_per_second = status.rate_since(previous, LOST_KEY);
        }
        status
    }

    /// The change per second of a cumulative counter since `previous`:
    /// none without two reads at different times, or when the counter went
    /// back (Hashpipe restarted).
    pub fn rate_since(&self, previous: &HashpipeStatus, key: &str) -> Option<f64> {
        let dt = self.read_at? - previous.read_at?;
        let dn = self.cards.number(key)? - previous.cards.number(key)?;
        (dt > 0.0 && dn >= 0.0).then(|| dn / dt)
    }

    /// The thread states the buffer has.
    pub fn threads(&self) -> Vec<ThreadState> {
        self.cards.threads()
    }

    /// The kernel's drops since Hashpipe's previous read of them.
    pub fn net_drops(&self) -> Option<f64> {
        self.cards.number(DROPS_KEY)
    }

    /// Why this read should be shown in red: each thread that is blocked or
    /// has exited, a stale buffer (with the server's reason), and a buffer
    /// that could not be read. Empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .threads()
            .iter()
            .filter(|t| t.is_bad())
            .map(|t| format!("{} thread {}", t.name, t.state))
            .collect();
        if self.stale {
            out.push(if self.message.is_empty() {
                "stale: the counters stopped moving".to_string()
            } else {
                format!("stale: {}", self.message)
            });
        } else if self.cards.0.is_empty() {
            out.push(if self.message.is_empty() {
                "no status buffer".to_string()
            } else {
                self.message.clone()
            });
        }
        out
    }

    /// Seconds since the buffer was read, against `now` (Unix seconds).
    pub fn age(&self, now: f64) -> Option<f64> {
        self.read_at.map(|t| (now - t).max(0.0))
    }

    /// One JSON object for scripts: every field, the thread states and the
    /// problems (`daqdata --json --hashpipe-status`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!(self);
        if let Some(o) = v.as_object_mut() {
            o.insert("threads".into(), serde_json::json!(self.threads()));
            o.insert("problems".into(), serde_json::json!(self.problems()));
        }
        v
    }

    /// A few words for a host bar: thread states, rates, and what is wrong.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .threads()
            .iter()
            .map(|t| format!("{} {}", t.name, t.state))
            .collect();
        if let Some(p) = self.packets_per_second {
            parts.push(format!("{p:.0} pkt/s"));
        }
        if let Some(l) = self.losses_per_second {
            parts.push(format!("{l:.0} lost/s"));
        }
        let problems = self.problems();
        if !problems.is_empty() {
            parts.push(problems.join("; "));
        }
        parts.join(", ")
    }
}

/// Hashpipe statuses merged from every host of a [`crate::DaqClient`]; an
/// `Err` is one host's trouble (its part reconnects when the trouble
/// passes). Dropping it cancels every RPC it runs.
pub struct HashpipeStream {
    rx: mpsc::Receiver<Result<HashpipeStatus, Error>>,
    _tasks: JoinSet<()>,
}

impl Stream for HashpipeStream {
    type Item = Result<HashpipeStatus, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// One reconnecting `StreamHashpipeStatus` per node, merged.
pub(crate) fn stream_all(
    nodes: &[(Host, Connection)],
    update_interval_seconds: f64,
    backoff: Backoff,
) -> HashpipeStream {
    let (tx, rx) = mpsc::channel(64);
    let mut tasks = JoinSet::new();
    for (host, ch) in nodes {
        let (host, ch, tx) = (host.clone(), ch.clone(), tx.clone());
        tasks.spawn(async move {
            let mut attempts = Attempts::new(backoff);
            // Kept across reconnections: a rate needs two reads.
            let mut previous: Option<HashpipeStatus> = None;
            loop {
                let started = std::time::Instant::now();
                let ended = stream_one(
                    &host,
                    ch.clone(),
                    update_interval_seconds,
                    &tx,
                    &mut previous,
                )
                .await;
                if tx.is_closed() {
                    return;
                }
                let why = match ended {
                    Ok(()) => "the server ended the stream".to_string(),
                    Err(e) if reconnect::passes(&e) => {
                        let why = e.to_string();
                        if tx.send(Err(e)).await.is_err() {
                            return;
                        }
                        why
                    }
                    Err(e) => {
                        debug!("{e}");
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let (attempt, wait) = attempts.next(started);
                // Once per outage: the items say the rest.
                if attempt == 1 {
                    warn!(%host, "{} of {host}: reconnecting in {:.1} s: {why}", STREAM_HASHPIPE_STATUS.name, wait.as_secs_f64());
                } else {
                    debug!(%host, "{} of {host}: reconnecting (attempt {attempt}): {why}", STREAM_HASHPIPE_STATUS.name);
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = tx.closed() => return,
                }
            }
        });
    }
    HashpipeStream { rx, _tasks: tasks }
}

async fn stream_one(
    host: &Host,
    ch: Connection,
    update_interval_seconds: f64,
    tx: &mpsc::Sender<Result<HashpipeStatus, Error>>,
    previous: &mut Option<HashpipeStatus>,
) -> Result<(), Error> {
    let failed = |s| Error::rpc(host, STREAM_HASHPIPE_STATUS.name, s);
    let mut stub = DaqDataClient::new(ch);
    let mut stream = stub
        .stream_hashpipe_status(StreamHashpipeStatusRequest {
            update_interval_seconds,
        })
        .await
        .map_err(failed)?
        .into_inner();
    info!(%host, "StreamHashpipeStatus started");
    while let Some(response) = stream.message().await.map_err(failed)? {
        let status = HashpipeStatus::from_response(host, response, previous.as_ref());
        *previous = Some(status.clone());
        if tx.send(Ok(status)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{Struct, Timestamp, Value};

    fn response(t: i64, cards: &[(&str, Kind)]) -> StreamHashpipeStatusResponse {
        StreamHashpipeStatusResponse {
            name: "daq1".into(),
            read_at: Some(Timestamp {
                seconds: t,
                nanos: 0,
            }),
            cards: Some(Struct {
                fields: cards
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Value {
                                kind: Some(v.clone()),
                            },
                        )
                    })
                    .collect(),
            }),
            stale: false,
            message: String::new(),
        }
    }

    fn read(t: i64, packets: f64, lost: f64, net: &str) -> StreamHashpipeStatusResponse {
        response(
            t,
            &[
                (PACKETS_KEY, Kind::NumberValue(packets)),
                (LOST_KEY, Kind::NumberValue(lost)),
                ("NETSTAT", Kind::StringValue(net.into())),
                ("COMPUTES", Kind::StringValue("processing".into())),
                ("OUTSTAT", Kind::StringValue("waiting".into())),
            ],
        )
    }

    #[test]
    fn rates_come_from_two_reads_and_a_restart_gives_none() {
        let host: Host = "daq1".parse().unwrap();
        let first =
            HashpipeStatus::from_response(&host, read(100, 1000.0, 10.0, "receiving"), None);
        assert_eq!(first.packets_per_second, None);
        let second = HashpipeStatus::from_response(
            &host,
            read(102, 5000.0, 14.0, "receiving"),
            Some(&first),
        );
        assert_eq!(second.packets_per_second, Some(2000.0));
        assert_eq!(second.losses_per_second, Some(2.0));
        // Hashpipe restarted: its counters begin again.
        let third =
            HashpipeStatus::from_response(&host, read(103, 10.0, 0.0, "receiving"), Some(&second));
        assert_eq!(third.packets_per_second, None);
        // The same read again is no rate.
        let same =
            HashpipeStatus::from_response(&host, read(103, 10.0, 0.0, "receiving"), Some(&third));
        assert_eq!(same.packets_per_second, None);
    }

    #[test]
    fn a_blocked_or_exited_thread_and_a_stale_buffer_are_problems_with_reasons() {
        let host: Host = "daq1".parse().unwrap();
        let ok = HashpipeStatus::from_response(&host, read(1, 1.0, 0.0, "receiving"), None);
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        let names: Vec<_> = ok
            .threads()
            .iter()
            .map(|t| (t.name, t.state.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("net", "receiving".to_string()),
                ("compute", "processing".to_string()),
                ("output", "waiting".to_string())
            ]
        );
        let blocked = HashpipeStatus::from_response(&host, read(1, 1.0, 0.0, "blocked"), None);
        assert_eq!(blocked.problems(), ["net thread blocked"]);
        let exited = HashpipeStatus::from_response(&host, read(1, 1.0, 0.0, " exit "), None);
        assert_eq!(exited.problems(), ["net thread exit"]);
        let mut r = read(1, 1.0, 0.0, "receiving");
        r.stale = true;
        r.message = "hashpipe (pid 42) is gone".into();
        let stale = HashpipeStatus::from_response(&host, r, None);
        assert_eq!(stale.problems(), ["stale: hashpipe (pid 42) is gone"]);
        let mut none = read(1, 0.0, 0.0, "x");
        none.cards = None;
        none.message = "no status buffer: no segment for key 0x4001".into();
        let none = HashpipeStatus::from_response(&host, none, None);
        assert_eq!(
            none.problems(),
            ["no status buffer: no segment for key 0x4001"]
        );
        assert!(none.summary().contains("no segment"), "{}", none.summary());
    }

    #[test]
    fn numbers_written_as_strings_still_count_and_other_values_are_left_out() {
        let host: Host = "daq1".parse().unwrap();
        let r = response(
            5,
            &[
                (DROPS_KEY, Kind::StringValue(" 12 ".into())),
                ("LIST", Kind::ListValue(prost_types::ListValue::default())),
            ],
        );
        let s = HashpipeStatus::from_response(&host, r, None);
        assert_eq!(s.net_drops(), Some(12.0));
        assert!(!s.cards.0.contains_key("LIST"));
        assert_eq!(s.name, "daq1");
        assert_eq!(s.age(7.5), Some(2.5));
    }
}
