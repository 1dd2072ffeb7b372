//! Hashpipe's status buffer (SPEC §9), served: one poller thread reads the
//! buffer every `poll_seconds` with `hpio::status::StatusReader` (which
//! never costs Hashpipe packets) and publishes a [`Report`] into a watch
//! channel; each StreamHashpipeStatus call sends the newest report at its
//! pace, the Status RPC appends a few words of it, and the metrics carry
//! its numbers. A simulation (`simulate_daq`) points the poller at its own
//! buffer while it runs.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use daqdata_proto::daqdata::{StreamHashpipeStatusRequest, StreamHashpipeStatusResponse};
use hpio::status::{
    hashpipe_running, CardValue, Cards, PanosetiStatus, Rates, ReadError, Staleness,
    StatusLocation, StatusReader,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::watch;
use tonic::Status;

use crate::access::Caller;
use crate::metrics::Metrics;
use crate::state::State;

/// The `[hashpipe_status]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HashpipeStatusConfig {
    /// Read the buffer at all.
    pub enabled: bool,
    /// Hashpipe's instance (PANOSETI runs 0).
    pub instance: u32,
    /// The keyfile Hashpipe's key and semaphore come from; unset:
    /// `$HASHPIPE_KEYFILE`, else `$HOME` of the server's user.
    /// `$HASHPIPE_STATUS_KEY` and `$HASHPIPE_STATUS_SEMNAME` win when set.
    pub keyfile: Option<PathBuf>,
    /// Those environment variables, as the binary read them.
    #[serde(skip)]
    pub env: hpio::status::HashpipeEnv,
    /// Seconds between reads; also the fastest a stream is sent.
    #[serde(deserialize_with = "crate::seconds::deserialize")]
    pub poll_seconds: Duration,
}

impl Default for HashpipeStatusConfig {
    fn default() -> Self {
        HashpipeStatusConfig {
            enabled: true,
            instance: 0,
            keyfile: None,
            env: Default::default(),
            poll_seconds: Duration::from_secs(1),
        }
    }
}

impl HashpipeStatusConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&self.poll_seconds) {
            return Err(format!(
                "[hashpipe_status] poll_seconds = {} must be between 0.01 and 3600",
                self.poll_seconds.as_secs_f64()
            ));
        }
        if self.instance > 63 {
            return Err(format!(
                "[hashpipe_status] instance = {} must be 0-63",
                self.instance
            ));
        }
        Ok(())
    }

    /// The poll interval: on a gateway, the fastest relayed status is sent.
    pub(crate) fn poll(&self) -> Duration {
        self.poll_seconds
    }
}

/// A buffer whose counters have not moved for this long is stale.
/// Counters change once per input block (16,384 packets in production).
const STALE_AFTER: Duration = Duration::from_secs(30);

/// The newest state of the buffer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Report {
    /// When it was read (or the read was tried).
    pub read_at: Option<SystemTime>,
    /// The cards of the newest good read; `None` when unavailable.
    pub cards: Option<Cards>,
    pub stale: bool,
    /// Why it is stale or unavailable; empty otherwise.
    pub message: String,
    /// A few words for the Status RPC, always starting `Hashpipe`.
    pub summary: String,
}

impl Report {
    fn unavailable(message: String, summary: String) -> Report {
        Report {
            read_at: Some(pff::time::now()),
            cards: None,
            stale: false,
            message,
            summary,
        }
    }

    /// The wire form, with the server's host name.
    pub(crate) fn to_response(&self, host: &str) -> StreamHashpipeStatusResponse {
        StreamHashpipeStatusResponse {
            name: host.to_string(),
            read_at: self.read_at.map(prost_types::Timestamp::from),
            cards: self.cards.as_ref().map(cards_struct),
            stale: self.stale,
            message: self.message.clone(),
        }
    }
}

/// Cards as a `google.protobuf.Struct`: numbers as numbers, strings as
/// strings.
fn cards_struct(cards: &Cards) -> prost_types::Struct {
    use prost_types::value::Kind;
    let fields = cards
        .iter()
        .map(|(key, value)| {
            let kind = match value {
                CardValue::Text(s) => Kind::StringValue(s.clone()),
                number => Kind::NumberValue(number.as_f64().unwrap_or(f64::NAN)),
            };
            (key.to_string(), prost_types::Value { kind: Some(kind) })
        })
        .collect();
    prost_types::Struct { fields }
}

/// One numeric key of the buffer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key: String,
}

/// A Hashpipe thread and its state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThreadLabels {
    thread: &'static str,
    state: String,
}

/// What became of a read.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabels {
    outcome: &'static str,
}

/// The buffer's metrics; registered with the server's others.
#[derive(Debug, Default)]
pub(crate) struct HashpipeMetrics {
    values: Family<KeyLabels, Gauge<f64, AtomicU64>>,
    threads: Family<ThreadLabels, Gauge>,
    packets_per_second: Gauge<f64, AtomicU64>,
    lost_per_second: Gauge<f64, AtomicU64>,
    reads: Family<ReadLabels, Counter>,
    stale: Gauge,
    streams: Gauge,
}

impl HashpipeMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "hashpipe_value",
            "Each numeric card of Hashpipe's status buffer (NPACKETS, TPKTLST, ...), by key",
            self.values.clone(),
        );
        registry.register(
            "hashpipe_thread_state",
            "Hashpipe's thread states (NETSTAT, COMPUTESTAT, OUTSTAT): 1 for the current state",
            self.threads.clone(),
        );
        registry.register(
            "hashpipe_packets_per_second",
            "NPACKETS per second between the last two reads",
            self.packets_per_second.clone(),
        );
        registry.register(
            "hashpipe_lost_per_second",
            "TPKTLST (packets lost) per second between the last two reads",
            self.lost_per_second.clone(),
        );
        registry.register(
            "hashpipe_status_reads",
            "Reads of Hashpipe's status buffer: read, skipped (lock busy 100 ms), parse_failed, unavailable",
            self.reads.clone(),
        );
        registry.register(
            "hashpipe_status_streams",
            "StreamHashpipeStatus calls open now (on a gateway: its viewers', relayed)",
            self.streams.clone(),
        );
        registry.register(
            "hashpipe_status_stale",
            "1 when the Hashpipe process is gone or its counters stopped moving",
            self.stale.clone(),
        );
    }

    fn count(&self, outcome: &'static str) {
        self.reads.get_or_create(&ReadLabels { outcome }).inc();
    }

    fn show(&self, cards: &Cards, status: &PanosetiStatus, rates: Option<Rates>, stale: bool) {
        for (key, value) in cards.iter() {
            if let Some(x) = value.as_f64() {
                self.values
                    .get_or_create(&KeyLabels {
                        key: key.to_string(),
                    })
                    .set(x);
            }
        }
        self.threads.clear();
        for (thread, state) in &status.thread_states {
            if let Some(state) = state {
                self.threads
                    .get_or_create(&ThreadLabels {
                        thread,
                        state: state.clone(),
                    })
                    .set(1);
            }
        }
        if let Some(rates) = rates {
            self.packets_per_second.set(rates.packets_per_second);
            self.lost_per_second.set(rates.lost_per_second);
        }
        self.stale.set(i64::from(stale));
    }
}

/// One open StreamHashpipeStatus in `daqdata_hashpipe_status_streams`.
pub(crate) struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An admitted StreamHashpipeStatus: its pace, and what it holds while it
/// lives.
pub(crate) struct Admitted {
    pub ticker: tokio::time::Interval,
    pub held: (crate::admission::StatusTicket, OpenStream),
}

/// Lets a StreamHashpipeStatus in, on a DAQ node or a gateway: not while
/// the server shuts down, a valid interval, a place among the RPCs and the
/// peer's streams. It is sent at most every max(asked interval, `floor`).
pub(crate) fn admit(
    state: &State,
    req: &StreamHashpipeStatusRequest,
    caller: &Caller,
    floor: Duration,
) -> Result<Admitted, Status> {
    if state.shutdown.is_cancelled() {
        return Err(Status::unavailable("the DaqData server is shutting down"));
    }
    let max = state
        .config
        .max_client_update_interval_seconds
        .as_secs_f64();
    let asked = crate::stream::client_interval(req.update_interval_seconds, max)?;
    let interval = asked.unwrap_or_default().max(floor);
    let remote = caller.ip();
    let limited = remote.is_some_and(|ip| state.access.config().limits_apply_to(ip));
    let ticket = state.admission.status_stream(remote, limited)?;
    let gauge = state.metrics.hashpipe.streams.clone();
    gauge.inc();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Ok(Admitted {
        ticker,
        held: (ticket, OpenStream(gauge)),
    })
}

enum Command {
    /// A simulation's buffer to read instead of the configured one, or
    /// back to the configured one.
    Simulated(Option<StatusLocation>),
    Stop,
}

/// Where a simulation tells the poller about its buffer.
#[derive(Clone)]
pub(crate) struct SimulatedSource(Option<mpsc::Sender<Command>>);

impl SimulatedSource {
    pub(crate) fn set(&self, location: Option<StatusLocation>) {
        if let Some(commands) = &self.0 {
            let _ = commands.send(Command::Simulated(location));
        }
    }
}

/// The poller and what it publishes.
pub(crate) struct StatusFeed {
    config: HashpipeStatusConfig,
    latest: watch::Receiver<Arc<Report>>,
    commands: Option<mpsc::Sender<Command>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl StatusFeed {
    /// Starts the poller (unless disabled).
    pub(crate) fn start(config: &HashpipeStatusConfig, metrics: Arc<Metrics>) -> StatusFeed {
        if !config.enabled {
            return StatusFeed::unpolled(
                config,
                "this server does not read Hashpipe's status buffer ([hashpipe_status] enabled = false)",
                "Hashpipe: status not read (disabled)",
            );
        }
        let first = Report::unavailable(
            "Hashpipe's status buffer has not been read yet".into(),
            "Hashpipe: status not read yet".into(),
        );
        let (publish, latest) = watch::channel(Arc::new(first));
        let (commands, inbox) = mpsc::channel();
        let poller = Poller::new(config, publish, metrics);
        let thread = std::thread::Builder::new()
            .name("hashpipe-status".into())
            .spawn(move || poller.run(inbox));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!("cannot start the Hashpipe status poller thread: {e}");
                None
            }
        };
        StatusFeed {
            config: config.clone(),
            latest,
            commands: Some(commands),
            thread: Mutex::new(thread),
        }
    }

    /// A gateway's (SPEC §9): the head node runs no Hashpipe, so nothing is
    /// polled; StreamHashpipeStatus relays its upstreams' instead.
    pub(crate) fn for_gateway(config: &HashpipeStatusConfig) -> StatusFeed {
        StatusFeed::unpolled(
            config,
            "a gateway relays its upstreams' Hashpipe status and reads none of its own",
            "Hashpipe: relayed from the upstreams",
        )
    }

    fn unpolled(config: &HashpipeStatusConfig, message: &str, summary: &str) -> StatusFeed {
        let report = Report::unavailable(message.into(), summary.into());
        let (_, latest) = watch::channel(Arc::new(report));
        StatusFeed {
            config: config.clone(),
            latest,
            commands: None,
            thread: Mutex::new(None),
        }
    }

    /// Where a simulation reports its buffer.
    pub(crate) fn simulated_source(&self) -> SimulatedSource {
        SimulatedSource(self.commands.clone())
    }

    /// A few words for the Status RPC.
    pub(crate) fn summary(&self) -> String {
        self.latest.borrow().summary.clone()
    }

    /// Opens a StreamHashpipeStatus call: the newest report at once, then
    /// every max(asked interval, poll interval), until the client goes or
    /// the server shuts down.
    pub(crate) fn stream(
        &self,
        state: &State,
        req: &StreamHashpipeStatusRequest,
        caller: &Caller,
    ) -> Result<
        impl futures::Stream<Item = Result<StreamHashpipeStatusResponse, Status>> + Send + 'static,
        Status,
    > {
        if !self.config.enabled {
            return Err(Status::failed_precondition(
                "this server does not read Hashpipe's status buffer ([hashpipe_status] enabled = false)",
            ));
        }
        let admitted = admit(state, req, caller, self.config.poll())?;
        let sending = Sending {
            latest: self.latest.clone(),
            ticker: admitted.ticker,
            shutdown: state.shutdown.clone(),
            host: state.host.clone(),
            _held: admitted.held,
        };
        Ok(futures::stream::unfold(sending, |mut s| async move {
            tokio::select! {
                _ = s.ticker.tick() => {}
                _ = s.shutdown.cancelled() => return None,
            }
            let response = s.latest.borrow().to_response(&s.host);
            Some((Ok(response), s))
        }))
    }
}

impl Drop for StatusFeed {
    fn drop(&mut self) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(Command::Stop);
        }
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// What one StreamHashpipeStatus call holds.
struct Sending {
    latest: watch::Receiver<Arc<Report>>,
    ticker: tokio::time::Interval,
    shutdown: tokio_util::sync::CancellationToken,
    host: String,
    _held: (crate::admission::StatusTicket, OpenStream),
}

/// The poller thread's state.
struct Poller {
    poll: Duration,
    stale_after_reads: u32,
    /// The configured buffer, or why it cannot be located.
    configured: Result<StatusLocation, String>,
    simulated: Option<StatusLocation>,
    reader: Option<StatusReader>,
    staleness: Staleness,
    previous: Option<PanosetiStatus>,
    publish: watch::Sender<Arc<Report>>,
    metrics: Arc<Metrics>,
    /// The last problem logged, so each is logged once per cause.
    logged: Option<&'static str>,
}

impl Poller {
    fn new(
        config: &HashpipeStatusConfig,
        publish: watch::Sender<Arc<Report>>,
        metrics: Arc<Metrics>,
    ) -> Poller {
        let configured =
            StatusLocation::with_env(config.keyfile.as_deref(), config.instance, &config.env)
                .map_err(|e| e.to_string());
        if let Err(why) = &configured {
            tracing::warn!(
                "not reading Hashpipe's status buffer: {why} (set [hashpipe_status] keyfile)"
            );
        }
        let poll = config.poll();
        let stale_after_reads = (STALE_AFTER.as_secs_f64() / poll.as_secs_f64())
            .ceil()
            .max(1.0) as u32;
        Poller {
            poll,
            stale_after_reads,
            configured,
            simulated: None,
            reader: None,
            staleness: Staleness::new(stale_after_reads),
            previous: None,
            publish,
            metrics,
            logged: None,
        }
    }

    fn run(mut self, inbox: mpsc::Receiver<Command>) {
        loop {
            self.poll_once();
            match inbox.recv_timeout(self.poll) {
                Ok(Command::Simulated(location)) => self.simulated = location,
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// The location to read now: a running simulation's, else the
    /// configured one.
    fn location(&self) -> Result<&StatusLocation, &str> {
        match &self.simulated {
            Some(location) => Ok(location),
            None => self.configured.as_ref().map_err(String::as_str),
        }
    }

    fn poll_once(&mut self) {
        let location = match self.location() {
            Ok(location) => location.clone(),
            Err(why) => {
                let why = why.to_string();
                self.publish(Report::unavailable(
                    format!("Hashpipe's status buffer is not read: {why}"),
                    "Hashpipe: status not read (no keyfile)".into(),
                ));
                return;
            }
        };
        if self
            .reader
            .as_ref()
            .is_none_or(|r| r.location() != &location)
        {
            self.reader = Some(StatusReader::new(location.clone()));
            self.staleness = Staleness::new(self.stale_after_reads);
            self.previous = None;
            self.logged = None;
        }
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        let result = reader.read();
        let hashpipe = &self.metrics.hashpipe;
        let keyfile = location
            .keyfile
            .as_ref()
            .map_or_else(String::new, |k| format!(" of keyfile {}", k.display()));
        match result {
            Ok(snapshot) => {
                hashpipe.count("read");
                if self.logged.take().is_some() {
                    tracing::info!("Hashpipe's status buffer{keyfile} is readable");
                }
                let status = PanosetiStatus::from_snapshot(&snapshot);
                let rates = self
                    .previous
                    .as_ref()
                    .and_then(|p| Rates::between(p, &status));
                // A simulation's buffer has no hashpipe process behind it.
                let alive = self.simulated.is_none().then(hashpipe_running);
                let stale = self.staleness.observe(&snapshot.cards, alive);
                hashpipe.show(&snapshot.cards, &status, rates, stale.is_some());
                let summary = summarize(&status, rates, stale.as_deref());
                self.publish(Report {
                    read_at: Some(snapshot.read_at),
                    cards: Some(snapshot.cards),
                    stale: stale.is_some(),
                    message: stale.map(|why| format!("stale: {why}")).unwrap_or_default(),
                    summary,
                });
                self.previous = Some(status);
            }
            // Hashpipe holds the lock: the previous report stands.
            Err(e @ ReadError::LockBusy { .. }) => {
                hashpipe.count("skipped");
                self.log_once("busy", || {
                    tracing::warn!("{e} (counted in daqdata_hashpipe_status_reads)")
                });
            }
            Err(e @ ReadError::Parse { .. }) => {
                hashpipe.count("parse_failed");
                let message = e.to_string();
                self.log_once("parse", || tracing::warn!("{message}"));
                self.publish(Report::unavailable(
                    message,
                    "Hashpipe: status buffer unreadable".into(),
                ));
            }
            Err(e @ (ReadError::NoSegment { .. } | ReadError::NoSemaphore { .. })) => {
                hashpipe.count("unavailable");
                let message = format!(
                    "{e}{keyfile}: Hashpipe has not run on this node, or its buffer was removed"
                );
                let poll = self.poll;
                self.log_once("none", || {
                    tracing::info!("{message}; looking again every {poll:?}, quietly")
                });
                self.publish(Report::unavailable(
                    message,
                    "Hashpipe: no status buffer".into(),
                ));
            }
            Err(e) => {
                hashpipe.count("unavailable");
                let message = e.to_string();
                self.log_once("os", || tracing::warn!("{message}"));
                self.publish(Report::unavailable(
                    message,
                    "Hashpipe: status unreadable".into(),
                ));
            }
        }
    }

    fn log_once(&mut self, cause: &'static str, log: impl FnOnce()) {
        if self.logged != Some(cause) {
            self.logged = Some(cause);
            log();
        }
    }

    fn publish(&self, report: Report) {
        self.publish.send_replace(Arc::new(report));
    }
}

/// Hashpipe's state in a few words: `Hashpipe net receiving, compute
/// processing, output writing; 10000 packets/s, 0.8 lost/s`.
fn summarize(status: &PanosetiStatus, rates: Option<Rates>, stale: Option<&str>) -> String {
    let mut words = format!("Hashpipe {}", status.states_summary());
    if let Some(r) = rates {
        words.push_str(&format!(
            "; {:.0} packets/s, {:.1} lost/s",
            r.packets_per_second, r.lost_per_second
        ));
    }
    if let Some(why) = stale {
        words.push_str(&format!("; stale ({why})"));
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_numbers_and_strings_are_strings_on_the_wire() {
        let mut image = hpio::status::StatusImage::new();
        image.put_str("NETSTAT", "receiving").unwrap();
        image.put_int("NPACKETS", 42).unwrap();
        image.put_float("SSINT", 0.5).unwrap();
        let cards = hpio::status::parse_cards(image.bytes()).unwrap();
        let report = Report {
            read_at: Some(SystemTime::UNIX_EPOCH),
            cards: Some(cards),
            ..Report::default()
        };
        let response = report.to_response("daq0");
        let fields = response.cards.unwrap().fields;
        use prost_types::value::Kind;
        assert_eq!(
            fields["NETSTAT"].kind,
            Some(Kind::StringValue("receiving".into()))
        );
        assert_eq!(fields["NPACKETS"].kind, Some(Kind::NumberValue(42.0)));
        assert_eq!(fields["SSINT"].kind, Some(Kind::NumberValue(0.5)));
        assert_eq!(response.name, "daq0");
    }

    #[test]
    fn the_config_table_has_the_spec_defaults_and_is_checked() {
        let c = HashpipeStatusConfig::default();
        assert!(
            c.enabled
                && c.instance == 0
                && c.keyfile.is_none()
                && c.poll_seconds == Duration::from_secs(1)
        );
        assert!(HashpipeStatusConfig {
            poll_seconds: Duration::ZERO,
            ..c.clone()
        }
        .validate()
        .is_err());
        assert!(HashpipeStatusConfig { instance: 64, ..c }
            .validate()
            .is_err());
    }
}
