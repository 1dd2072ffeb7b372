//! The hub of `daqdata web`: takes the one merged stream of every host,
//! keeps the newest image of each panel and the pulse-height windows, and
//! every [`TICK`] publishes what changed, encoded once for every tab.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pff::time::unix_now;

use axum::extract::ws::{Message, Utf8Bytes};
use daqdata_client::view::rules::{
    log_ticks, log_top, nice_ticks, ColourLimits, COLOUR_BAR_TICKS, HIST_X_TICKS,
};
use daqdata_client::view::{PanelKey, PhDist, PHDIST_BINS};
use daqdata_client::{HashpipeStatus, HashpipeStream, HostState, HostStates, Image, ImageStream};
use futures::StreamExt;
use pff::{ImageKind, Pixels};
use serde::Serialize;
use tokio::sync::watch;
use tracing::warn;

/// How often panels are published: about 10 updates per second, what a
/// browser draws smoothly and a VPN carries.
pub const TICK: Duration = Duration::from_millis(100);
/// How often the pulse-height histograms and the host bar are published.
const SLOW_TICK: Duration = Duration::from_millis(1000);
/// How far back the Hashpipe plot reaches.
const SERIES_SPAN: f64 = 600.0;

/// Images/s are counted over this window.
const RATE_WINDOW: Duration = Duration::from_secs(3);

/// One message for the tabs, encoded once. `seq` changes when `body`
/// does, so a tab sends each version at most once.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub key: String,
    pub seq: u64,
    pub body: Body,
}

/// A message's bytes: JSON text, or an image as a binary frame.
#[derive(Clone, Debug)]
pub enum Body {
    Text(Utf8Bytes),
    Binary(axum::body::Bytes),
}

impl Body {
    /// The WebSocket message (cheap: the bytes are shared).
    pub fn message(&self) -> Message {
        match self {
            Body::Text(t) => Message::Text(t.clone()),
            Body::Binary(b) => Message::Binary(b.clone()),
        }
    }
}

/// What every tab should show now: newest first, nothing queued.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The host bar (always sent when it changed).
    pub hosts: Option<Encoded>,
    /// Hashpipe's state per node and its plot (sent even when paused, as
    /// the host bar is).
    pub hashpipe: Option<Encoded>,
    /// One per (node, module, movie / pulse height).
    pub panels: Vec<Encoded>,
    /// One per (node, module) with pulse-height images.
    pub phdists: Vec<Encoded>,
}

impl Snapshot {
    /// Every message, the host bar first.
    pub fn messages(&self) -> impl Iterator<Item = &Encoded> {
        self.hosts
            .iter()
            .chain(&self.hashpipe)
            .chain(&self.panels)
            .chain(&self.phdists)
    }
}

/// Counts events in the last [`RATE_WINDOW`], in tenths of it.
#[derive(Debug)]
struct Rate {
    buckets: [u32; 10],
    /// The bucket index `buckets[i % 10]` stands for, by time since start.
    newest: u64,
    start: Instant,
}

impl Rate {
    fn new(start: Instant) -> Self {
        Rate {
            buckets: [0; 10],
            newest: 0,
            start,
        }
    }

    fn bucket(&self, now: Instant) -> u64 {
        let tenth = RATE_WINDOW.as_secs_f64() / 10.0;
        (now.saturating_duration_since(self.start).as_secs_f64() / tenth) as u64
    }

    fn roll(&mut self, now: Instant) {
        let b = self.bucket(now);
        while self.newest < b {
            self.newest += 1;
            self.buckets[(self.newest % 10) as usize] = 0;
            if b - self.newest >= 10 {
                self.buckets = [0; 10];
                self.newest = b;
            }
        }
    }

    fn add(&mut self, now: Instant) {
        self.roll(now);
        let i = (self.newest % 10) as usize;
        self.buckets[i] = self.buckets[i].saturating_add(1);
    }

    /// Events per second over the window (or the time since start).
    fn per_second(&mut self, now: Instant) -> f64 {
        self.roll(now);
        let seen = now
            .saturating_duration_since(self.start)
            .min(RATE_WINDOW)
            .as_secs_f64();
        if seen < 0.2 {
            return 0.0;
        }
        f64::from(self.buckets.iter().sum::<u32>()) / seen
    }
}

/// The newest image of one (node, module, kind), and how fast they come.
#[derive(Debug)]
struct Panel {
    image: Image,
    seq: u64,
    rate: Rate,
    /// The same rule as the terminal's and the PNG's, over every image.
    limits: ColourLimits,
    encoded: Option<Encoded>,
}

/// The hub's state; owned by its task.
struct Hub {
    /// Per (node, module): through a gateway, two nodes may report one
    /// module id, and each keeps its own panels.
    panels: BTreeMap<(PanelKey, Kind), Panel>,
    phdist: PhDist,
    ph_seq: u64,
    hosts: HostStates,
    host_rates: Vec<(u64, f64)>,
    hosts_seq: u64,
    hosts_text: String,
    images: Rate,
    start: Instant,
    hashpipe: Hashpipe,
}

/// Every node's newest Hashpipe read, and its packets/s and losses/s over
/// the last [`SERIES_SPAN`] seconds for the plot.
#[derive(Default)]
struct Hashpipe {
    rows: crate::cmd::hashpipe::Rows,
    /// Per node: (read_at, packets/s, losses/s), oldest first.
    series: BTreeMap<String, VecDeque<(f64, f64, f64)>>,
    seq: u64,
    text: String,
}

impl Hashpipe {
    fn take(&mut self, item: Result<HashpipeStatus, daqdata_client::Error>) {
        if let Ok(s) = &item {
            if let (Some(t), Some(p), Some(l)) =
                (s.read_at, s.packets_per_second, s.losses_per_second)
            {
                let points = self.series.entry(s.name.clone()).or_default();
                points.push_back((t, p, l));
                while points
                    .front()
                    .is_some_and(|(t0, _, _)| t - t0 > SERIES_SPAN)
                {
                    points.pop_front();
                }
            }
        }
        self.rows.take(item);
    }

    fn encode(&mut self, wall: f64) -> Encoded {
        use crate::cmd::hashpipe::Row;
        let nodes: Vec<HashpipeMsg> = self
            .rows
            .iter()
            .map(|(node, row)| match row {
                Row::Read(s) => {
                    let points = self.series.get(node);
                    let column = |f: &dyn Fn(&(f64, f64, f64)) -> f64| -> Vec<f64> {
                        points.map_or_else(Vec::new, |p| p.iter().map(|x| round2(f(x))).collect())
                    };
                    HashpipeMsg {
                        node: node.clone(),
                        host: s.host.clone(),
                        threads: s
                            .threads()
                            .into_iter()
                            .map(|t| ThreadMsg {
                                bad: t.is_bad(),
                                name: t.name,
                                state: t.state,
                            })
                            .collect(),
                        packets_per_s: s.packets_per_second.map(round2),
                        losses_per_s: s.losses_per_second.map(round2),
                        net_drops: s.net_drops(),
                        age_s: s.age(wall).map(round3),
                        problems: s.problems(),
                        // Seconds before now, so the page needs no clock.
                        series_t: column(&|x| x.0 - wall),
                        series_packets: column(&|x| x.1),
                        series_losses: column(&|x| x.2),
                    }
                }
                Row::Failed { host, why } => HashpipeMsg {
                    node: node.clone(),
                    host: host.clone(),
                    threads: Vec::new(),
                    packets_per_s: None,
                    losses_per_s: None,
                    net_drops: None,
                    age_s: None,
                    problems: vec![why.clone()],
                    series_t: Vec::new(),
                    series_packets: Vec::new(),
                    series_losses: Vec::new(),
                },
            })
            .collect();
        let axis = |field: fn(&HashpipeMsg) -> &Vec<f64>| {
            let peak = nodes
                .iter()
                .flat_map(|n| field(n).iter().copied())
                .fold(0.0, f64::max);
            let top = if peak > 0.0 { peak * 1.1 } else { 1.0 };
            Axis {
                top,
                ticks: nice_ticks(0.0, top, 3),
            }
        };
        let msg = HashpipesMsg {
            t: "hashpipe",
            span_s: SERIES_SPAN,
            t_ticks: nice_ticks(-SERIES_SPAN, 0.0, 6),
            packets_axis: axis(|n| &n.series_packets),
            losses_axis: axis(|n| &n.series_losses),
            nodes,
        };
        let text = serde_json::to_string(&msg).unwrap_or_default();
        if text != self.text {
            self.text = text;
            self.seq += 1;
        }
        Encoded {
            key: "hashpipe".into(),
            seq: self.seq,
            body: Body::Text(Utf8Bytes::from(self.text.clone())),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Movie,
    PulseHeight,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Movie => "movie",
            Kind::PulseHeight => "ph",
        }
    }
}

/// Starts the hub on `stream` (every host's images) and `hosts` (their
/// states). The receiver always holds the newest [`Snapshot`].
pub fn start(
    stream: ImageStream,
    hosts: HostStates,
    hashpipe: HashpipeStream,
) -> watch::Receiver<Arc<Snapshot>> {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let start = Instant::now();
    let hub = Hub {
        panels: BTreeMap::new(),
        phdist: PhDist::new(),
        ph_seq: 0,
        host_rates: vec![(0, 0.0); hosts.snapshot().len()],
        hosts,
        hosts_seq: 0,
        hosts_text: String::new(),
        images: Rate::new(start),
        start,
        hashpipe: Hashpipe::default(),
    };
    tokio::spawn(hub.run(stream, hashpipe, tx));
    rx
}

impl Hub {
    async fn run(
        mut self,
        mut stream: ImageStream,
        mut hashpipe: HashpipeStream,
        tx: watch::Sender<Arc<Snapshot>>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_slow: Option<Instant> = None;
        let mut phdists = Vec::new();
        let mut hashpipe_msg = None;
        let (mut ended, mut hashpipe_ended) = (false, false);
        loop {
            tokio::select! {
                item = stream.next(), if !ended => match item {
                    Some(Ok(image)) => self.take(image, Instant::now()),
                    // That host's part has ended; its state says why.
                    Some(Err(e)) => warn!("{e}"),
                    None => ended = true,
                },
                item = hashpipe.next(), if !hashpipe_ended => match item {
                    Some(item) => self.hashpipe.take(item),
                    None => hashpipe_ended = true,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    let slow = last_slow.is_none_or(|t| now.duration_since(t) >= SLOW_TICK);
                    if slow {
                        last_slow = Some(now);
                        self.phdist.advance(unix_now());
                        phdists = self.encode_phdists();
                        hashpipe_msg = Some(self.hashpipe.encode(unix_now()));
                    }
                    let snapshot = Snapshot {
                        hosts: Some(self.encode_hosts(now, slow)),
                        hashpipe: hashpipe_msg.clone(),
                        panels: self.encode_panels(now),
                        phdists: phdists.clone(),
                    };
                    if tx.send(Arc::new(snapshot)).is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn take(&mut self, image: Image, now: Instant) {
        self.images.add(now);
        let kind = match image.kind() {
            ImageKind::Movie => Kind::Movie,
            ImageKind::PulseHeight => {
                self.phdist.update(&image, unix_now());
                Kind::PulseHeight
            }
        };
        let start = self.start;
        let key = (PanelKey::of(&image), kind);
        let values = image.pixels.values().collect();
        match self.panels.get_mut(&key) {
            Some(p) => {
                p.image = image;
                p.seq += 1;
                p.rate.add(now);
                p.limits.push(values);
            }
            None => {
                let mut rate = Rate::new(start);
                rate.add(now);
                let mut limits = ColourLimits::default();
                limits.push(values);
                self.panels.insert(
                    key,
                    Panel {
                        image,
                        seq: 1,
                        rate,
                        limits,
                        encoded: None,
                    },
                );
            }
        }
    }

    /// Each panel's newest image, encoded again only if it changed.
    fn encode_panels(&mut self, now: Instant) -> Vec<Encoded> {
        self.panels
            .iter_mut()
            .map(|((panel, kind), p)| match &p.encoded {
                Some(e) if e.seq == p.seq => e.clone(),
                _ => {
                    let e = Encoded {
                        key: format!("img/{}/{}/{}", panel.node, panel.module.get(), kind.name()),
                        seq: p.seq,
                        body: Body::Binary(encode_image(
                            panel,
                            &p.image,
                            *kind,
                            p.rate.per_second(now),
                            p.limits.limits(),
                        )),
                    };
                    p.encoded = Some(e.clone());
                    e
                }
            })
            .collect()
    }

    fn encode_phdists(&mut self) -> Vec<Encoded> {
        self.ph_seq += 1;
        let phdist = &self.phdist;
        let seq = self.ph_seq;
        phdist
            .modules()
            .map(|panel| {
                let (lo, hi) = phdist.range(panel);
                let windows: Vec<WindowMsg> = phdist
                    .histograms(panel)
                    .into_iter()
                    .map(|h| WindowMsg {
                        seconds: h.window_seconds,
                        counts: h.counts,
                        events: h.events,
                        rate: round2(h.rate),
                    })
                    .collect();
                let peak = windows
                    .iter()
                    .flat_map(|w| w.counts.iter().copied())
                    .max()
                    .unwrap_or(0)
                    .max(1);
                let top = log_top(peak);
                let linear_top = peak as f64 * 1.05;
                let msg = PhDistMsg {
                    t: "phdist",
                    node: &panel.node,
                    module: panel.module.get(),
                    label: panel.to_string(),
                    lo,
                    hi,
                    bins: PHDIST_BINS,
                    x_ticks: nice_ticks(lo, hi, HIST_X_TICKS),
                    log_axis: Axis {
                        top,
                        ticks: log_ticks(top),
                    },
                    linear_axis: Axis {
                        top: linear_top,
                        ticks: nice_ticks(0.0, linear_top, 5),
                    },
                    windows,
                };
                Encoded {
                    key: format!("phdist/{}/{}", panel.node, panel.module.get()),
                    seq,
                    body: Body::Text(to_text(&msg)),
                }
            })
            .collect()
    }

    /// The host bar; its rates are refreshed each slow tick, its states
    /// every tick (a reconnect shows at once).
    fn encode_hosts(&mut self, now: Instant, slow: bool) -> Encoded {
        let statuses = self.hosts.snapshot();
        let since = now.saturating_duration_since(self.start).as_secs_f64();
        let hosts: Vec<HostMsg> = statuses
            .iter()
            .zip(self.host_rates.iter_mut())
            .map(|((host, status), (last_images, rate))| {
                if slow {
                    // Images since the last slow tick, per second.
                    let seconds = SLOW_TICK.as_secs_f64().min(since.max(0.1));
                    *rate = status.images.saturating_sub(*last_images) as f64 / seconds;
                    *last_images = status.images;
                }
                let (state, attempt, why) = match &status.state {
                    HostState::Connecting => ("connecting", 0, String::new()),
                    HostState::Streaming => ("streaming", 0, String::new()),
                    HostState::Reconnecting { attempt, why } => {
                        ("reconnecting", *attempt, why.clone())
                    }
                    HostState::Refused { why } => ("refused", 0, why.clone()),
                };
                HostMsg {
                    host: host.to_string(),
                    state,
                    attempt,
                    why,
                    images_per_s: round2(*rate),
                    age_s: status.newest_frame_time.map(|t| round3(pff::time::age(t))),
                }
            })
            .collect();
        let msg = HostsMsg {
            t: "hosts",
            images_per_s: round2(self.images.per_second(now)),
            hosts,
        };
        let text = serde_json::to_string(&msg).unwrap_or_default();
        if text != self.hosts_text {
            self.hosts_text = text;
            self.hosts_seq += 1;
        }
        Encoded {
            key: "hosts".into(),
            seq: self.hosts_seq,
            body: Body::Text(Utf8Bytes::from(self.hosts_text.clone())),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn to_text<T: Serialize>(msg: &T) -> Utf8Bytes {
    // Our own plain structs of numbers and strings always serialize.
    Utf8Bytes::from(serde_json::to_string(msg).unwrap_or_default())
}

#[derive(Serialize)]
struct ImageMsg<'a> {
    t: &'static str,
    /// The node that sent it (the response's `name`): with `module`, which
    /// panel it is.
    node: &'a str,
    module: u32,
    /// The panel's label, as every view writes it (`daq1 · module 3`).
    label: String,
    kind: &'static str,
    data_product: String,
    file: &'a str,
    frame: u32,
    /// The frame's own time stamp, ISO 8601 UTC.
    utc: Option<String>,
    images_per_s: f64,
    rows: usize,
    cols: usize,
    /// The quabo of a pulse-height event (its header's `quabo_num`).
    quabo: Option<u8>,
    /// How the pixels after the header are stored: `u8`, `u16` or `i16`,
    /// little-endian (pulse heights are signed).
    pixel_type: &'static str,
    /// Colour limits and the colour bar's ticks, per scale the page offers.
    scales: Scales,
}

#[derive(Serialize)]
struct Scales {
    /// The views' rule (`view::rules::LIMIT_PERCENTILES` over the last
    /// frames).
    pct: Scale,
    /// This frame's minimum and maximum.
    minmax: Scale,
}

#[derive(Serialize)]
struct Scale {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Scale {
    fn new(lo: f64, hi: f64) -> Self {
        let hi = if hi > lo { hi } else { lo + 1.0 };
        Scale {
            lo,
            hi,
            ticks: nice_ticks(lo, hi, COLOUR_BAR_TICKS),
        }
    }
}

/// An image as one binary WebSocket frame: the header's length (u32,
/// little-endian), the JSON header ([`ImageMsg`]) padded with spaces to a
/// multiple of 4 bytes, then the pixels as stored, little-endian, so the
/// page views them as a typed array without parsing numbers.
fn encode_image(
    panel: &PanelKey,
    image: &Image,
    kind: Kind,
    rate: f64,
    (lo, hi): (f64, f64),
) -> axum::body::Bytes {
    let [rows, cols] = image.shape();
    let quabo = match kind {
        Kind::PulseHeight => image
            .header
            .get("quabo_num")
            .and_then(serde_json::Value::as_u64)
            .and_then(|q| u8::try_from(q).ok()),
        Kind::Movie => None,
    };
    let (min, max) = image
        .pixels
        .values()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    let (pixel_type, pixels): (&str, Vec<u8>) = match &image.pixels {
        Pixels::U8(v) => ("u8", v.clone()),
        Pixels::U16(v) => ("u16", v.iter().flat_map(|p| p.to_le_bytes()).collect()),
        Pixels::I16(v) => ("i16", v.iter().flat_map(|p| p.to_le_bytes()).collect()),
    };
    let msg = ImageMsg {
        t: "image",
        node: &panel.node,
        module: panel.module.get(),
        label: panel.to_string(),
        kind: kind.name(),
        data_product: image.data_product.to_string(),
        file: &image.file,
        frame: image.frame_number,
        utc: image
            .stamp()
            .map(|q| pff::time::iso_utc(q.tv_sec, q.tv_usec)),
        images_per_s: round2(rate),
        rows,
        cols,
        quabo,
        pixel_type,
        scales: Scales {
            pct: Scale::new(lo, hi),
            minmax: Scale::new(min, max),
        },
    };
    // Our own plain struct of numbers and strings always serializes.
    let mut header = serde_json::to_vec(&msg).unwrap_or_default();
    while (4 + header.len()) % 4 != 0 {
        header.push(b' ');
    }
    let mut out = Vec::with_capacity(4 + header.len() + pixels.len());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&pixels);
    axum::body::Bytes::from(out)
}

#[derive(Serialize)]
struct WindowMsg {
    seconds: f64,
    counts: Vec<u64>,
    events: u64,
    rate: f64,
}

#[derive(Serialize)]
struct PhDistMsg<'a> {
    t: &'static str,
    node: &'a str,
    module: u32,
    label: String,
    lo: f64,
    hi: f64,
    bins: usize,
    x_ticks: Vec<f64>,
    log_axis: Axis,
    linear_axis: Axis,
    windows: Vec<WindowMsg>,
}

#[derive(Serialize)]
struct HostMsg {
    host: String,
    state: &'static str,
    attempt: u32,
    why: String,
    images_per_s: f64,
    /// Now minus the newest frame's own time stamp, seconds.
    age_s: Option<f64>,
}

#[derive(Serialize)]
struct ThreadMsg {
    name: &'static str,
    state: String,
    /// `blocked` or `exit`: drawn in red.
    bad: bool,
}

/// One node's Hashpipe: its state in a few fields, what is wrong, and the
/// plot's points.
#[derive(Serialize)]
struct HashpipeMsg {
    node: String,
    host: String,
    threads: Vec<ThreadMsg>,
    packets_per_s: Option<f64>,
    losses_per_s: Option<f64>,
    net_drops: Option<f64>,
    /// Seconds since the buffer was read.
    age_s: Option<f64>,
    /// Why the node is drawn in red; empty when it is well.
    problems: Vec<String>,
    /// Each point's time, seconds before now (negative).
    series_t: Vec<f64>,
    series_packets: Vec<f64>,
    series_losses: Vec<f64>,
}

#[derive(Serialize)]
struct HashpipesMsg {
    t: &'static str,
    span_s: f64,
    /// Ticks of the time axis, seconds before now.
    t_ticks: Vec<f64>,
    packets_axis: Axis,
    losses_axis: Axis,
    nodes: Vec<HashpipeMsg>,
}

/// A value axis as the page draws it: its top and its ticks.
#[derive(Serialize)]
struct Axis {
    top: f64,
    ticks: Vec<f64>,
}

#[derive(Serialize)]
struct HostsMsg {
    t: &'static str,
    images_per_s: f64,
    hosts: Vec<HostMsg>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_count_the_last_window_only() {
        let start = Instant::now();
        let mut r = Rate::new(start);
        for i in 0..300 {
            r.add(start + Duration::from_millis(10 * i));
        }
        // 300 events over 3 s.
        let at = start + Duration::from_millis(3000);
        assert!(
            (r.per_second(at) - 100.0).abs() < 15.0,
            "{}",
            r.per_second(at)
        );
        // A quiet spell longer than the window: nothing.
        assert_eq!(r.per_second(start + Duration::from_secs(10)), 0.0);
        r.add(start + Duration::from_secs(10));
        assert!(r.per_second(start + Duration::from_secs(11)) > 0.0);
    }
}
