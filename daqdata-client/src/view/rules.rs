//! The rules every renderer of a view follows: the terminal, the PNG and
//! the browser page draw the same images, so colour limits, colour maps,
//! ticks, the log floor and the pixel -> quabo layout are decided here
//! once. The page receives them (`daqdata web` sends [`browser_rules`]
//! first, and limits and ticks with each image); it never retypes them.

use std::collections::VecDeque;

use pff::DataProduct;

/// Frames per (module, type) whose pixels set the colour limits.
pub const LIMIT_WINDOW_FRAMES: usize = 20;
/// The lower and upper colour limits are these percentiles of the last
/// [`LIMIT_WINDOW_FRAMES`] frames. One frame of a 16x16 image has 2-3
/// pixels beyond its 1st or 99th percentile, so a single hot pixel or a
/// cosmic ray would set the scale and the picture would flicker from frame
/// to frame; 5-95 over 20 frames keeps it steady and still follows a change
/// of sky within seconds.
pub const LIMIT_PERCENTILES: (f64, f64) = (0.05, 0.95);
/// The bottom of a log count axis: half an image, so a bin of one image
/// stands as high above the axis (a factor of 2) as it stands below a bin
/// of two.
pub const LOG_COUNT_FLOOR: f64 = 0.5;

/// The colour maps a view can use, from `colorous`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColourMap {
    /// The default: perceptually uniform, readable in grey print.
    Plasma,
    /// Blue to yellow through green.
    Viridis,
    /// Black to yellow through red.
    Inferno,
    /// Black to white.
    Gray,
}

impl ColourMap {
    /// Every map, the default first.
    pub const ALL: [ColourMap; 4] = [Self::Plasma, Self::Viridis, Self::Inferno, Self::Gray];

    /// Its name in the page's menu.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plasma => "plasma",
            Self::Viridis => "viridis",
            Self::Inferno => "inferno",
            Self::Gray => "gray",
        }
    }

    /// The colour at `t` in [0, 1] (clamped).
    pub fn at(self, t: f64) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let gradient = match self {
            Self::Plasma => colorous::PLASMA,
            Self::Viridis => colorous::VIRIDIS,
            Self::Inferno => colorous::INFERNO,
            // Greys runs white to black.
            Self::Gray => return colorous::GREYS.eval_continuous(1.0 - t).as_array(),
        };
        gradient.eval_continuous(t).as_array()
    }

    /// 256 colours, `r, g, b` each, evenly over [0, 1]: what the page
    /// indexes with a pixel's place between the limits.
    pub fn lut(self) -> Vec<u8> {
        (0..256)
            .flat_map(|i| self.at(f64::from(i) / 255.0))
            .collect()
    }
}

/// Ticks on a colour bar: the PNG asks plotters for this many, the page
/// gets [`nice_ticks`] of this many with each image.
pub const COLOUR_BAR_TICKS: usize = 8;
/// Ticks on a histogram's value axis.
pub const HIST_X_TICKS: usize = 6;

/// The step of about `n` ticks over `span`: 1, 2 or 5 times a power of
/// ten, the smallest not under `span / n`.
pub fn nice_step(span: f64, n: usize) -> f64 {
    if !(span > 0.0 && span.is_finite()) {
        return 1.0;
    }
    let raw = span / n.max(1) as f64;
    let decade = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * decade)
}

/// About `n` round tick values in [`lo`, `hi`], multiples of
/// [`nice_step`].
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(hi > lo && lo.is_finite() && hi.is_finite()) {
        return vec![lo];
    }
    let step = nice_step(hi - lo, n);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last)
        // Rounded so 0.1 * 3 reads 0.3.
        .map(|k| ((k as f64 * step) * 1e12).round() / 1e12)
        .collect()
}

/// Tick values of a log count axis up to `top`: the powers of ten, and 2
/// and 5 times them when there are few.
pub fn log_ticks(top: f64) -> Vec<f64> {
    let decades: Vec<f64> = (0..12)
        .map(|k| 10f64.powi(k))
        .filter(|v| *v <= top)
        .collect();
    if decades.len() >= 3 {
        return decades;
    }
    decades
        .iter()
        .flat_map(|d| [*d, 2.0 * d, 5.0 * d])
        .filter(|v| *v <= top)
        .collect()
}

/// The top of a log count axis for a tallest bin of `peak`: the next
/// power of ten above it.
pub fn log_top(peak: u64) -> f64 {
    10f64.powf(((peak as f64) + 1.0).log10().ceil()).max(10.0)
}

/// Colour limits over the last [`LIMIT_WINDOW_FRAMES`] frames' pixels, at
/// [`LIMIT_PERCENTILES`].
#[derive(Clone, Debug, Default)]
pub struct ColourLimits {
    frames: VecDeque<Vec<f64>>,
}

impl ColourLimits {
    /// Takes one frame's pixel values.
    pub fn push(&mut self, values: Vec<f64>) {
        if self.frames.len() == LIMIT_WINDOW_FRAMES {
            self.frames.pop_front();
        }
        self.frames.push_back(values);
    }

    /// `(lo, hi)`, with `hi > lo` so a flat image still maps to colours.
    pub fn limits(&self) -> (f64, f64) {
        let mut all: Vec<f64> = self
            .frames
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if all.is_empty() {
            return (0.0, 1.0);
        }
        all.sort_by(f64::total_cmp);
        let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
        let (lo, hi) = (at(LIMIT_PERCENTILES.0), at(LIMIT_PERCENTILES.1));
        if hi > lo {
            (lo, hi)
        } else {
            (lo, lo + 1.0)
        }
    }
}

/// Where each pixel of `dp`'s image comes from, row-major, as
/// [`DataProduct::quabo_at`] says: `[quabo, row, column]` in the quabo's
/// own image, the quabo -1 where the header names it (ph256).
pub fn quabo_layout(dp: DataProduct) -> Vec<[i8; 3]> {
    let [rows, cols] = dp.shape();
    (0..rows * cols)
        .filter_map(|i| dp.quabo_at(i / cols, i % cols))
        .map(|p| [p.quabo.map_or(-1, |q| q as i8), p.row as i8, p.col as i8])
        .collect()
}

/// The page's first message: every colour map's table, the log floor,
/// the limit rule in words, and each data product's pixel -> quabo layout.
pub fn browser_rules() -> serde_json::Value {
    let maps: serde_json::Map<String, serde_json::Value> = ColourMap::ALL
        .iter()
        .map(|m| (m.name().to_string(), serde_json::json!(m.lut())))
        .collect();
    let layouts: serde_json::Map<String, serde_json::Value> = DataProduct::ALL
        .iter()
        .map(|dp| (dp.to_string(), serde_json::json!(quabo_layout(*dp))))
        .collect();
    serde_json::json!({
        "t": "rules",
        "colour_maps": maps,
        "default_colour_map": ColourMap::Plasma.name(),
        "log_count_floor": LOG_COUNT_FLOOR,
        "limits": format!(
            "{:.0}th to {:.0}th percentile of the last {LIMIT_WINDOW_FRAMES} frames",
            LIMIT_PERCENTILES.0 * 100.0,
            LIMIT_PERCENTILES.1 * 100.0
        ),
        "quabo_layout": layouts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        assert_eq!(
            nice_ticks(0.0, 1000.0, 5),
            [0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]
        );
        assert_eq!(
            nice_ticks(-600.0, 0.0, 6),
            [-600.0, -500.0, -400.0, -300.0, -200.0, -100.0, 0.0]
        );
        assert_eq!(nice_ticks(0.1, 0.45, 4), [0.1, 0.2, 0.3, 0.4]);
        assert_eq!(nice_ticks(0.1, 0.45, 3), [0.2, 0.4]);
        assert_eq!(nice_ticks(5.0, 5.0, 4), [5.0]);
        assert_eq!(log_ticks(1000.0), [1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(log_top(1), 10.0);
        assert_eq!(log_top(120), 1000.0);
    }

    #[test]
    fn each_lut_runs_from_its_maps_start_to_its_end() {
        for m in ColourMap::ALL {
            let lut = m.lut();
            assert_eq!(lut.len(), 768);
            assert_eq!(lut[..3], m.at(0.0));
            assert_eq!(lut[765..], m.at(1.0));
        }
        assert_eq!(ColourMap::Gray.at(0.0), [0, 0, 0]);
        assert_eq!(ColourMap::Gray.at(1.0), [255, 255, 255]);
    }

    #[test]
    fn the_rules_carry_every_map_and_layout() {
        let r = browser_rules();
        assert_eq!(r["colour_maps"].as_object().unwrap().len(), 4);
        assert_eq!(r["log_count_floor"], 0.5);
        let img16 = r["quabo_layout"]["img16"].as_array().unwrap();
        assert_eq!(img16.len(), 1024);
        let q = |i: usize| img16[i].clone();
        assert_eq!(q(0), serde_json::json!([0, 0, 0]));
        assert_eq!(q(16), serde_json::json!([1, 0, 0]));
        assert_eq!(q(32 * 16 + 1), serde_json::json!([2, 0, 1]));
        assert_eq!(q(1023), serde_json::json!([3, 15, 15]));
        let ph = r["quabo_layout"]["ph256"].as_array().unwrap();
        assert_eq!(ph.len(), 256);
        assert_eq!(ph[17], serde_json::json!([-1, 1, 1]));
    }
}
