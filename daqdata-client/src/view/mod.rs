//! The live views: what they keep of the stream, and how they draw it.
//!
//! [`PlotView`] keeps the newest movie and pulse-height image of each
//! module with colour limits over recent frames; [`PhDist`] keeps each
//! pulse-height event's maximum pixel over rolling time windows. Both draw
//! into a terminal (ratatui `Widget` for `&PlotView` / `&PhDist`) and into
//! a PNG ([`PlotView::to_png`], [`PhDist::to_png`]) — the same picture, so
//! what a test checks in one holds for the other. Rows are per
//! [`PanelKey`], (node, module): through a gateway two nodes may report the
//! same module id, and each panel says which node it comes from.

use std::collections::{BTreeMap, VecDeque};

use pff::{ImageKind, ModuleId};

use crate::Image;

mod canvas;
mod png;
pub use png::save_png;
pub mod rules;
mod tui;

pub use rules::{ColourLimits, ColourMap, LIMIT_PERCENTILES, LIMIT_WINDOW_FRAMES, LOG_COUNT_FLOOR};
/// Histogram windows of `--plot-phdist`, seconds (as the Python demo).
pub const PHDIST_WINDOWS: [f64; 3] = [10.0, 60.0, 600.0];
/// Bins of each pulse-height histogram.
pub const PHDIST_BINS: usize = 24;

/// Which row of a view an image belongs to: the node that sent it (the
/// response's `name`) and its module. Rows sort by node, then module.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PanelKey {
    /// The sending server's host name; empty for images not received from
    /// a server.
    pub node: String,
    /// The module that recorded the image.
    pub module: ModuleId,
}

impl PanelKey {
    /// The row of `image`.
    pub fn of(image: &Image) -> Self {
        PanelKey {
            node: image.server.clone(),
            module: image.module_id,
        }
    }
}

/// The panel's label in every view: `daq1 · module 3`, or `module 3` when
/// the node is not known.
impl std::fmt::Display for PanelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.node.is_empty() {
            write!(f, "module {}", self.module)
        } else {
            write!(f, "{} · module {}", self.node, self.module)
        }
    }
}

/// The colour of `v` between limits `lo` and `hi` on the plasma map.
pub fn heat_color(v: f64, lo: f64, hi: f64) -> [u8; 3] {
    let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
    ColourMap::Plasma.at(t)
}

/// The newest image of one (module, type), with its colour limits.
#[derive(Clone, Debug)]
pub(crate) struct Panel {
    pub(crate) image: Image,
    pub(crate) limits: ColourLimits,
}

/// One (node, module)'s row: its newest pulse-height and movie images.
#[derive(Clone, Debug, Default)]
pub(crate) struct ModuleRow {
    pub(crate) pulse_height: Option<Panel>,
    pub(crate) movie: Option<Panel>,
}

/// `--plot-view`: per (node, module), the newest pulse-height and movie
/// image as heat maps.
#[derive(Clone, Debug, Default)]
pub struct PlotView {
    pub(crate) modules: BTreeMap<PanelKey, ModuleRow>,
    frames: u64,
}

impl PlotView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a received image.
    pub fn update(&mut self, image: Image) {
        self.frames += 1;
        let row = self.modules.entry(PanelKey::of(&image)).or_default();
        let slot = match image.kind() {
            ImageKind::Movie => &mut row.movie,
            ImageKind::PulseHeight => &mut row.pulse_height,
        };
        let values = image.pixels.values().collect();
        match slot {
            Some(panel) => {
                panel.limits.push(values);
                panel.image = image;
            }
            None => {
                let mut limits = ColourLimits::default();
                limits.push(values);
                *slot = Some(Panel { image, limits });
            }
        }
    }

    /// Images taken so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

/// One module's pulse-height maxima, oldest first.
#[derive(Clone, Debug, Default)]
pub(crate) struct Events {
    pub(crate) events: VecDeque<(f64, f64)>,
}

/// One window's histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// The window's length ([`PHDIST_WINDOWS`]).
    pub window_seconds: f64,
    /// Events per bin, [`PHDIST_BINS`] of them over [`PhDist::range`].
    pub counts: Vec<u64>,
    /// Events in the window.
    pub events: u64,
    /// Events per second over the window (or the time seen, if shorter).
    pub rate: f64,
}

/// `--plot-phdist`: per (node, module), histograms of each pulse-height
/// image's maximum pixel over rolling windows ([`PHDIST_WINDOWS`]).
#[derive(Clone, Debug, Default)]
pub struct PhDist {
    pub(crate) modules: BTreeMap<PanelKey, Events>,
    now: f64,
    /// When the first image came: a window longer than the time since
    /// then has not filled yet, and its rate is over the time seen.
    first: Option<f64>,
    frames: u64,
}

impl PhDist {
    /// An empty distribution.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes an image received at `now` (Unix seconds); movie frames are
    /// ignored.
    pub fn update(&mut self, image: &Image, now: f64) {
        if image.kind() != ImageKind::PulseHeight {
            return;
        }
        self.frames += 1;
        self.first.get_or_insert(now);
        let events = &mut self.modules.entry(PanelKey::of(image)).or_default().events;
        events.push_back((now, image.max_pixel()));
        self.advance(now);
    }

    /// Moves the windows to `now`, dropping events older than the longest.
    pub fn advance(&mut self, now: f64) {
        self.now = self.now.max(now);
        let oldest = self.now - PHDIST_WINDOWS[PHDIST_WINDOWS.len() - 1];
        for m in self.modules.values_mut() {
            while m.events.front().is_some_and(|(t, _)| *t < oldest) {
                m.events.pop_front();
            }
        }
    }

    /// Pulse-height images taken so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The bin range of a (node, module): all its kept maxima, so every
    /// window's histogram shares one x axis.
    pub fn range(&self, module: &PanelKey) -> (f64, f64) {
        let Some(m) = self.modules.get(module) else {
            return (0.0, 1.0);
        };
        let (lo, hi) = m
            .events
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
                (lo.min(*v), hi.max(*v))
            });
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi > lo {
            (lo, hi)
        } else {
            (lo, lo + 1.0)
        }
    }

    /// The (node, module)s that have sent pulse-height images, in order.
    pub fn modules(&self) -> impl Iterator<Item = &PanelKey> + '_ {
        self.modules.keys()
    }

    /// One histogram per window of [`PHDIST_WINDOWS`], all binned over
    /// [`range`](Self::range).
    pub fn histograms(&self, module: &PanelKey) -> Vec<Histogram> {
        let (lo, hi) = self.range(module);
        let empty = Events::default();
        let events = self.modules.get(module).unwrap_or(&empty);
        PHDIST_WINDOWS
            .iter()
            .map(|&w| {
                let mut counts = vec![0u64; PHDIST_BINS];
                let mut n = 0;
                for (_, v) in events.events.iter().filter(|(t, _)| *t >= self.now - w) {
                    let bin = (((v - lo) / (hi - lo)) * PHDIST_BINS as f64) as usize;
                    counts[bin.min(PHDIST_BINS - 1)] += 1;
                    n += 1;
                }
                let seen = self
                    .first
                    .map_or(w, |first| (self.now - first).clamp(1.0, w));
                Histogram {
                    window_seconds: w,
                    counts,
                    events: n,
                    rate: n as f64 / seen,
                }
            })
            .collect()
    }
}

/// A bar's height as a fraction of the tallest, on a log scale from
/// [`LOG_COUNT_FLOOR`]: pulse heights fall off steeply, and the rare bright
/// events in the tail are what an observer looks for.
pub(crate) fn log_height(count: u64, peak: u64) -> f64 {
    if count == 0 {
        return 0.0;
    }
    let floor = LOG_COUNT_FLOOR.log10();
    let top = (peak.max(1) as f64).log10();
    ((count as f64).log10() - floor) / (top - floor)
}

/// The text under an image: time, frame number, file.
pub(crate) fn caption(image: &Image) -> [String; 3] {
    let time = match image.stamp() {
        Some(q) => pff::time::iso_utc(q.tv_sec, q.tv_usec),
        None => "no time in header".to_string(),
    };
    [
        time,
        format!("{} frame {}", image.data_product, image.frame_number),
        image.file.clone(),
    ]
}

/// Axis-limit text: integers stay integers.
pub(crate) fn fmt_limit(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pff::{DataProduct, Header, Pixels, Quabo};

    /// A frame of `dp` that is dark except one bright pixel at (row, col).
    pub(crate) fn one_bright_pixel(dp: DataProduct, module: u32, row: usize, col: usize) -> Image {
        let [_, cols] = dp.shape();
        let i = row * cols + col;
        let q = Quabo {
            pkt_num: 1,
            pkt_tai: 0,
            pkt_nsec: 0,
            tv_sec: 1_721_882_086,
            tv_usec: 5,
        };
        let (header, pixels) = match dp {
            DataProduct::Img16 => {
                let mut v = vec![100u16; dp.pixels()];
                v[i] = 4000;
                (Header::new_module([q; 4]), Pixels::U16(v))
            }
            _ => {
                let mut v = vec![0i16; dp.pixels()];
                v[i] = 900;
                (Header::new_quabo(0, q), Pixels::I16(v))
            }
        };
        Image::from_frame(
            dp,
            &pff::Frame { header, pixels },
            module.into(),
            "test.pff",
            7,
        )
    }

    pub(crate) fn key(node: &str, module: u32) -> PanelKey {
        PanelKey {
            node: node.into(),
            module: module.into(),
        }
    }

    /// `one_bright_pixel`, as node `node` sent it.
    pub(crate) fn from_node(node: &str, mut image: Image) -> Image {
        image.server = node.into();
        image
    }

    #[test]
    fn two_nodes_with_one_module_id_get_a_row_each_labelled_with_the_node() {
        let mut view = PlotView::new();
        let mut dist = PhDist::new();
        for node in ["daq2", "daq1"] {
            view.update(from_node(
                node,
                one_bright_pixel(DataProduct::Img16, 3, 0, 0),
            ));
            let ph = from_node(node, one_bright_pixel(DataProduct::Ph256, 3, 0, 0));
            dist.update(&ph, 1.0);
            view.update(ph);
        }
        let rows: Vec<String> = view.modules.keys().map(ToString::to_string).collect();
        assert_eq!(rows, ["daq1 · module 3", "daq2 · module 3"]);
        let rows: Vec<String> = dist.modules().map(ToString::to_string).collect();
        assert_eq!(rows, ["daq1 · module 3", "daq2 · module 3"]);
        assert_eq!(key("", 3).to_string(), "module 3");
    }

    #[test]
    fn one_hot_pixel_does_not_set_the_upper_limit() {
        let mut view = PlotView::new();
        view.update(one_bright_pixel(DataProduct::Img16, 1, 3, 4));
        let panel = view.modules[&key("", 1)].movie.as_ref().unwrap();
        assert_eq!(panel.limits.limits(), (100.0, 101.0));
    }

    #[test]
    fn phdist_windows_count_only_their_events() {
        let mut dist = PhDist::new();
        let ev = one_bright_pixel(DataProduct::Ph256, 3, 0, 0);
        for t in [0.0, 500.0, 595.0, 599.0] {
            dist.update(&ev, t);
        }
        let h = dist.histograms(&key("", 3));
        assert_eq!(
            h.iter().map(|h| h.events).collect::<Vec<_>>(),
            vec![2, 2, 4]
        );
        assert_eq!(h[0].rate, 0.2);
        dist.advance(700.0);
        assert_eq!(
            dist.histograms(&key("", 3))[2].events,
            3,
            "the event at t=0 left the 600 s window"
        );
    }
}
