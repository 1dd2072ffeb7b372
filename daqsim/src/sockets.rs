//! Pushing fixtures into Hashpipe's sockets, the way `snapshot.c` does.
//!
//! Hashpipe connects to one unix stream socket per data product (the
//! server listens) and writes, per (module, data product) and snapshot, a
//! message: the module id (2 bytes, big-endian) and one PFF frame
//! ([`pff::encode_message`]). When the server goes away, Hashpipe drops
//! its snapshots and tries to connect again every 15 s.

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pff::{DataProduct, ModuleId};

use crate::fixtures::Stream;
use crate::{Error, Fixtures};

/// How long Hashpipe waits before connecting again.
pub const HASHPIPE_RECONNECT: Duration = Duration::from_secs(15);

/// A write that blocks this long means the server stopped reading: the
/// connection is dropped, as a broken one is.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// In torn mode, every this many messages a second connection sends a bad
/// one.
const HOSTILE_EVERY: u64 = 50;

/// What to push, where, how fast.
#[derive(Clone, Debug)]
pub struct SocketPushConfig {
    /// Socket paths, `{dp_name}` replaced by `img16`, `ph256`, ...
    pub template: String,
    /// Messages per second per (output module, data product). `None`: the
    /// fixture's recorded cadence where known, else 100.
    pub rate: Option<f64>,
    /// (fixture module, output module) pairs, as for a replay. Empty:
    /// every fixture module under its own id.
    pub modules: Vec<(ModuleId, ModuleId)>,
    /// Stamp each frame with the time of sending, as a live Hashpipe does.
    pub restamp: bool,
    /// Write each message in two parts with a pause between, and now and
    /// then open a second connection that sends garbage or a message cut
    /// short, so the server's per-connection failure handling is exercised.
    pub torn: bool,
    /// How long to wait before connecting again after a failure.
    pub reconnect: Duration,
}

impl Default for SocketPushConfig {
    fn default() -> Self {
        SocketPushConfig {
            template: pff::DEFAULT_SOCKET_TEMPLATE.into(),
            rate: None,
            modules: Vec::new(),
            restamp: true,
            torn: false,
            reconnect: HASHPIPE_RECONNECT,
        }
    }
}

/// Progress of a push.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Messages written whole.
    pub messages: u64,
    /// Messages dropped because no server was connected.
    pub dropped: u64,
    /// Connections made (the first ones and every reconnection).
    pub connections: u64,
    /// Bad messages sent on purpose ([`SocketPushConfig::torn`]).
    pub hostile: u64,
}

#[derive(Default)]
struct Counters {
    messages: AtomicU64,
    dropped: AtomicU64,
    connections: AtomicU64,
    hostile: AtomicU64,
}

/// A running push: one thread per data product socket. Dropping it stops
/// it.
pub struct SocketPush {
    counters: Arc<Counters>,
    /// Dropping these tells the threads to stop.
    stop: Vec<mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl SocketPush {
    /// Starts pushing. Connecting is not required to succeed: like
    /// Hashpipe, the push tries again every `reconnect`.
    pub fn start(fixtures: Fixtures, config: SocketPushConfig) -> Result<SocketPush, Error> {
        let plan = plan(&fixtures, &config)?;
        let counters = Arc::new(Counters::default());
        let mut push = SocketPush {
            counters: counters.clone(),
            stop: Vec::new(),
            threads: Vec::new(),
        };
        for dp in DataProduct::ALL {
            let outputs: Vec<Output> = plan
                .iter()
                .filter(|(_, d, _, _)| *d == dp)
                .map(|(stream, _, module, rate)| Output {
                    stream: stream.clone(),
                    module: *module,
                    rate: *rate,
                    next: 0,
                    sent: 0,
                })
                .collect();
            if outputs.is_empty() {
                continue;
            }
            let (tx, rx) = mpsc::channel();
            let sender = Sender {
                path: pff::socket_path(&config.template, dp),
                outputs,
                connection: None,
                next_connect: Instant::now(),
                config: config.clone(),
                counters: counters.clone(),
                buf: Vec::new(),
                told: false,
                due: 0,
            };
            let thread = std::thread::Builder::new()
                .name(format!("daqsim-push-{dp}"))
                .spawn(move || sender.run(rx))
                .map_err(|e| Error::io("starting a push thread for", dp.name(), e))?;
            push.stop.push(tx);
            push.threads.push(thread);
        }
        Ok(push)
    }

    /// Messages, drops and connections so far.
    pub fn stats(&self) -> PushStats {
        let c = &self.counters;
        PushStats {
            messages: c.messages.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
            hostile: c.hostile.load(Ordering::Relaxed),
        }
    }

    /// Stops every thread and closes the connections.
    pub fn stop(mut self) -> Result<PushStats, Error> {
        self.shutdown()?;
        Ok(self.stats())
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        self.stop.clear();
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                result = Err(Error::Config("a socket push thread panicked".into()));
            }
        }
        result
    }
}

impl Drop for SocketPush {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// (fixture stream, data product, output module, rate) for every output.
type Plan = Vec<(Arc<Stream>, DataProduct, u16, f64)>;

fn plan(fixtures: &Fixtures, config: &SocketPushConfig) -> Result<Plan, Error> {
    if let Some(rate) = config.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::Config(format!(
                "rate must be a positive number of frames per second, not {rate}"
            )));
        }
    }
    let streams = fixtures.streams();
    let mapping: Vec<(ModuleId, ModuleId)> = if config.modules.is_empty() {
        let mut held: Vec<ModuleId> = streams.iter().map(|(m, _)| *m).collect();
        held.dedup();
        held.iter().map(|&m| (m, m)).collect()
    } else {
        config.modules.clone()
    };
    let mut plan = Plan::new();
    for (from, to) in mapping {
        let module = u16::try_from(to.get()).map_err(|_| {
            Error::Config(format!(
                "module {to} does not fit the socket message's 2-byte module id"
            ))
        })?;
        let mut found = false;
        for &(m, dp) in streams.iter().filter(|(m, _)| *m == from) {
            let Some(stream) = fixtures.stream(m, dp) else {
                continue;
            };
            found = true;
            let rate = config.rate.or(stream.cadence).unwrap_or(100.0);
            plan.push((stream.clone(), dp, module, rate));
        }
        if !found {
            return Err(Error::Config(format!(
                "module mapping names fixture module {from}, which the fixtures do not hold"
            )));
        }
    }
    if plan.is_empty() {
        return Err(Error::Config("the fixtures hold no frames".into()));
    }
    Ok(plan)
}

struct Output {
    stream: Arc<Stream>,
    module: u16,
    rate: f64,
    /// The next fixture frame (the fixture loops).
    next: usize,
    /// Messages due so far (sent or dropped), for the schedule.
    sent: u64,
}

impl Output {
    /// When the next message is due.
    fn due(&self, start: Instant) -> Instant {
        crate::replay::nth_due(start, self.sent, self.rate)
    }
}

/// One data product's socket: its connection and the modules it carries.
struct Sender {
    path: PathBuf,
    outputs: Vec<Output>,
    connection: Option<UnixStream>,
    next_connect: Instant,
    config: SocketPushConfig,
    counters: Arc<Counters>,
    buf: Vec<u8>,
    /// Whether the current failure to connect was logged.
    told: bool,
    /// Messages due on this socket so far, for the torn mode's cadence.
    due: u64,
}

impl Sender {
    fn run(mut self, stop: mpsc::Receiver<()>) {
        let start = Instant::now();
        loop {
            let Some(i) = (0..self.outputs.len()).min_by_key(|&i| self.outputs[i].due(start))
            else {
                return;
            };
            let due = self.outputs[i].due(start);
            let wait = due.saturating_duration_since(Instant::now());
            match stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            self.send(i);
        }
    }

    fn connected(&mut self) -> Option<&mut UnixStream> {
        if self.connection.is_none() && Instant::now() >= self.next_connect {
            match UnixStream::connect(&self.path) {
                Ok(s) => {
                    let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
                    tracing::info!("connected to {}", self.path.display());
                    self.counters.connections.fetch_add(1, Ordering::Relaxed);
                    self.connection = Some(s);
                    self.told = false;
                }
                Err(e) => {
                    if !self.told {
                        tracing::warn!(
                            "cannot connect to {}: {e}; trying every {:?}",
                            self.path.display(),
                            self.config.reconnect
                        );
                        self.told = true;
                    }
                    self.next_connect = Instant::now() + self.config.reconnect;
                }
            }
        }
        self.connection.as_mut()
    }

    fn send(&mut self, i: usize) {
        let output = &mut self.outputs[i];
        let stream = output.stream.clone();
        let n = output.next;
        output.next = (n + 1) % stream.len();
        output.sent += 1;
        let module = output.module;
        self.buf.clear();
        pff::push_message_prefix(&mut self.buf, module);
        let frame = stream.frame(n);
        if self.config.restamp {
            let header = crate::replay::stamped_now(&stream.headers[n]);
            pff::append_frame(&mut self.buf, header.text(), &frame[stream.header_len..]);
        } else {
            self.buf.extend_from_slice(frame);
        }
        let torn = self.config.torn;
        self.due += 1;
        if torn && self.due % HOSTILE_EVERY == 0 {
            self.send_hostile(self.due / HOSTILE_EVERY);
        }
        let buf = std::mem::take(&mut self.buf);
        let Some(conn) = self.connected() else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.buf = buf;
            return;
        };
        let written = if torn {
            let (first, rest) = buf.split_at(buf.len() / 2);
            conn.write_all(first).and_then(|()| {
                std::thread::sleep(Duration::from_millis(1));
                conn.write_all(rest)
            })
        } else {
            conn.write_all(&buf)
        };
        match written {
            Ok(()) => {
                self.counters.messages.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(
                    "{} went away ({e}); connecting again in {:?}",
                    self.path.display(),
                    self.config.reconnect
                );
                self.connection = None;
                self.next_connect = Instant::now() + self.config.reconnect;
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.buf = buf;
    }

    /// A second connection that sends garbage (odd `n`), or a good message
    /// cut short (even `n`), then closes; the server must drop it and keep
    /// the first.
    fn send_hostile(&mut self, n: u64) {
        let Ok(mut conn) = UnixStream::connect(&self.path) else {
            return;
        };
        let _ = conn.set_write_timeout(Some(WRITE_TIMEOUT));
        let bad: Vec<u8> = if n % 2 == 1 {
            b"\x00\x01this is not a PFF header\n\n*".to_vec()
        } else {
            self.buf[..self.buf.len() / 3].to_vec()
        };
        if conn.write_all(&bad).is_ok() {
            self.counters.hostile.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_messages_decode_to_the_fixture_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let template = pff::socket_template_in(dir.path());
        let path = pff::socket_path(&template, DataProduct::Ph256);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let fixtures = Fixtures::embedded();
        let push = SocketPush::start(
            fixtures.clone(),
            SocketPushConfig {
                template,
                rate: Some(500.0),
                modules: vec![(ModuleId::new(3), ModuleId::new(300))],
                ..SocketPushConfig::default()
            },
        )
        .unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut decoder = pff::SocketDecoder::new(DataProduct::Ph256);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < 5 {
            let n = std::io::Read::read(&mut conn, &mut buf).unwrap();
            assert!(n > 0, "the push closed its connection");
            decoder.extend(&buf[..n]);
            while let Some(m) = decoder.next_message().unwrap() {
                got.push(m);
            }
        }
        for (n, m) in got.iter().enumerate() {
            assert_eq!(m.module, 300);
            let fixture = fixtures
                .frame(ModuleId::new(3), DataProduct::Ph256, n)
                .unwrap();
            assert_eq!(m.frame.image(), fixture.image(), "frame {n}");
        }
        let stats = push.stop().unwrap();
        assert!(stats.messages >= 5 && stats.connections == 1, "{stats:?}");
    }
}
