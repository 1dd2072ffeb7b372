//! The views as PNG pictures, for reports and tests: each heat map and
//! histogram is a plotters chart with axes, ticks and labels, drawn on a
//! [`Canvas`] (text in the built-in DejaVu Sans).
//!
//! A chart that plotters cannot draw is logged and left out; the rest of
//! the picture is still drawn.

use std::ops::Range;
use std::path::Path;

use image::{Rgb, RgbImage};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::canvas::Canvas;
use super::rules::{log_ticks, nice_step, COLOUR_BAR_TICKS, HIST_X_TICKS};
use super::{
    caption, heat_color, Histogram, Panel, PhDist, PlotView, LOG_COUNT_FLOOR, PHDIST_BINS,
    PHDIST_WINDOWS,
};

/// The drawing area of a whole picture.
type Area<'a> = DrawingArea<Canvas<'a>, Shift>;

/// Why a chart could not be drawn: plotters' error, as text.
#[derive(Debug)]
struct DrawError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawError(e.to_string())
    }
}

type Drawn = Result<(), DrawError>;

/// Side of every heat map, pixels: 16 per pulse-height pixel (16x16), 8 per
/// movie or ph1024 pixel (32x32).
pub(crate) const MAP_PX: u32 = 256;
/// Around the whole picture, and between rows.
const MARGIN: u32 = 16;
/// Above each chart: its title.
const TITLE_H: u32 = 32;
/// Left of a heat map: row tick labels and the axis name.
const Y_AXIS_W: u32 = 56;
/// Below a heat map or histogram: tick labels and the axis name.
const X_AXIS_H: u32 = 50;
/// Between a heat map and its colour bar.
const BAR_GAP: u32 = 14;
pub(crate) const BAR_W: u32 = 16;
/// Right of a colour bar: its tick labels.
const BAR_AXIS_W: u32 = 56;
/// Between the two panels of a row.
const PANEL_GAP: u32 = 44;
/// Under a heat map's x axis: frame, time, and the file on up to two lines.
const CAPTION_LINE_H: u32 = 18;
const CAPTION_H: u32 = 4 + 4 * CAPTION_LINE_H;
/// One heat-map panel: y axis, map, colour bar and its labels.
pub(crate) const PANEL_PX: u32 = Y_AXIS_W + MAP_PX + BAR_GAP + BAR_W + BAR_AXIS_W + PANEL_GAP;
/// One module's row of heat maps.
pub(crate) const VIEW_ROW_PX: u32 = TITLE_H + MAP_PX + X_AXIS_H + CAPTION_H + MARGIN;
/// A histogram's plot area.
pub(crate) const HIST_W: u32 = 300;
pub(crate) const HIST_H: u32 = 180;
/// Left of a histogram: count tick labels and the axis name.
const HIST_Y_AXIS_W: u32 = 64;
/// One histogram with its axes, and the space after it.
const HIST_PANEL_PX: u32 = HIST_Y_AXIS_W + HIST_W + 36;
/// Above a module's histograms: the module's heading.
const HEADING_H: u32 = 30;
/// One module's row of histograms.
pub(crate) const PHDIST_ROW_PX: u32 = HEADING_H + TITLE_H + HIST_H + X_AXIS_H + MARGIN;

const INK: RGBColor = RGBColor(20, 20, 20);
/// File names and "not yet" notes.
const MUTED: RGBColor = RGBColor(110, 110, 110);

/// Font sizes, pixels from ascender to descender (an em is 0.86 of it):
/// about matplotlib's defaults at 100 dpi.
const HEADING_SIZE: f64 = 19.0;
const TITLE_SIZE: f64 = 17.0;
const LABEL_SIZE: f64 = 16.0;
const TICK_SIZE: f64 = 15.0;
const CAPTION_SIZE: f64 = 15.0;
/// Tick marks point outward, this long.
const TICK_MARK: i32 = 5;

fn text_style(size: f64, color: &RGBColor) -> TextStyle<'static> {
    // The canvas has one face; plotters still wants a family.
    (FontFamily::SansSerif, size).into_font().color(color)
}

/// A white picture of `width` x `height`, drawn into by `draw`.
fn picture(width: u32, height: u32, draw: impl FnOnce(&Area) -> Drawn) -> RgbImage {
    let mut image = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let root = Canvas::new(&mut image).into_drawing_area();
    or_log("the picture", draw(&root));
    drop(root);
    image
}

/// Logs a chart that could not be drawn, and goes on with the others.
fn or_log(what: &str, drawn: Drawn) {
    if let Err(e) = drawn {
        tracing::warn!("PNG snapshot: cannot draw {what}: {}", e.0);
    }
}

fn text_width(area: &Area, text: &str, style: &TextStyle) -> u32 {
    area.estimate_text_size(text, style).map_or(0, |(w, _)| w)
}

/// `text` shortened in the middle with "…" until it is at most `width`
/// pixels wide, so nothing runs off the picture or into a neighbour.
fn fit(area: &Area, text: &str, style: &TextStyle, width: u32) -> String {
    if text_width(area, text, style) <= width {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    (1..chars.len())
        .map(|cut| {
            let keep = chars.len() - cut;
            let (head, tail) = (keep / 2, keep - keep / 2);
            let mut s: String = chars[..head].iter().collect();
            s.push('…');
            s.extend(&chars[chars.len() - tail..]);
            s
        })
        .find(|s| text_width(area, s, style) <= width)
        .unwrap_or_else(|| "…".to_string())
}

/// A file name on at most two lines of `width` pixels: broken after the
/// last `.` or `_` that lets the first line fit, the rest shortened if
/// it still does not.
fn wrap(area: &Area, text: &str, style: &TextStyle, width: u32) -> Vec<String> {
    if text_width(area, text, style) <= width {
        return vec![text.to_string()];
    }
    let split = text
        .char_indices()
        .filter(|(_, c)| matches!(c, '.' | '_'))
        .map(|(i, _)| i + 1)
        .rev()
        .find(|&i| text_width(area, &text[..i], style) <= width);
    match split {
        Some(i) => vec![text[..i].to_string(), fit(area, &text[i..], style, width)],
        None => vec![fit(area, text, style, width)],
    }
}

/// Tick-label text for values whose ticks are about `step` apart:
/// integers stay integers, no more decimals than the step needs, and a
/// true minus sign.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 || step <= 0.0 || !step.is_finite() {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        // "-0" reads as a glitch.
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        Some(rest) => format!("\u{2212}{rest}"),
        None => s,
    }
}

fn px(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// A sub-area of the picture at `(x, y)` of `w` x `h`.
fn sub<'a>(root: &Area<'a>, x: u32, y: u32, w: u32, h: u32) -> Area<'a> {
    root.clone().shrink((x, y), (w, h))
}

/// A frame just outside a chart's plot area, over its axis lines, as
/// matplotlib's four spines: it hides no data pixel.
fn frame<DB: DrawingBackend, CT: CoordTranslate>(root: &Area, plot: &DrawingArea<DB, CT>) -> Drawn {
    let (x, y) = plot.get_base_pixel();
    let (w, h) = plot.dim_in_pixel();
    root.draw(&Rectangle::new(
        [(x - 1, y - 1), (x + px(w), y + px(h))],
        INK.stroke_width(1),
    ))?;
    Ok(())
}

/// A title centred over a plot area at `plot`, `width` wide.
fn draw_title(root: &Area, plot: (u32, u32), width: u32, title: &str) -> Drawn {
    let style = text_style(TITLE_SIZE, &INK).pos(Pos::new(HPos::Center, VPos::Bottom));
    let title = fit(root, title, &style, width + 2 * Y_AXIS_W);
    root.draw_text(&title, &style, (px(plot.0 + width / 2), px(plot.1) - 8))?;
    Ok(())
}

/// Where the heat map of `panel` (0 = pulse height, 1 = movie) of the
/// `row`-th module starts.
pub(crate) fn map_origin(row: u32, panel: u32) -> (u32, u32) {
    (
        MARGIN + panel * PANEL_PX + Y_AXIS_W,
        MARGIN + row * VIEW_ROW_PX + TITLE_H,
    )
}

/// Where the colour bar beside the heat map at `map` starts.
pub(crate) fn bar_origin(map: (u32, u32)) -> (u32, u32) {
    (map.0 + MAP_PX + BAR_GAP, map.1)
}

/// One heat map with its axes, colour bar, title and caption; the map's
/// top-left at `map`.
fn draw_panel(root: &Area, map: (u32, u32), title: &str, panel: &Panel) -> Drawn {
    let image = &panel.image;
    let (lo, hi) = panel.limits.limits();
    let [rows, cols] = image.shape();
    let (rows, cols) = (rows.max(1), cols.max(1));
    draw_title(root, map, MAP_PX, title)?;

    // Pixel (r, c) is the unit square around (c, r), row 0 on top, as
    // matplotlib's imshow draws it. plotters maps an axis's range onto
    // its first to last pixel (MAP_PX - 1 steps), so the ranges end one
    // screen pixel short of the last image pixel's edge: then every image
    // pixel is a square of exactly MAP_PX / n screen pixels.
    let area = sub(
        root,
        map.0 - Y_AXIS_W,
        map.1,
        Y_AXIS_W + MAP_PX,
        MAP_PX + X_AXIS_H,
    );
    let span = |n: usize| f64::from(MAP_PX - 1) * n as f64 / f64::from(MAP_PX);
    let mut chart = ChartBuilder::on(&area)
        .y_label_area_size(Y_AXIS_W)
        .x_label_area_size(X_AXIS_H)
        .build_cartesian_2d(-0.5..span(cols) - 0.5, span(rows) - 0.5..-0.5)?;
    chart.draw_series((0..rows * cols).map(|k| {
        let (r, c) = ((k / cols) as f64, (k % cols) as f64);
        let v = image.pixels.value(k).unwrap_or(lo);
        let [red, green, blue] = heat_color(v, lo, hi);
        Rectangle::new(
            [(c - 0.5, r - 0.5), (c + 0.5, r + 0.5)],
            RGBColor(red, green, blue).filled(),
        )
    }))?;
    let whole = |v: &f64| tick_label(*v, 1.0);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&whole)
        .y_label_formatter(&whole)
        .set_all_tick_mark_size(TICK_MARK)
        .label_style(text_style(TICK_SIZE, &INK))
        .axis_desc_style(text_style(LABEL_SIZE, &INK))
        .x_desc("pixel column")
        .y_desc("pixel row")
        .axis_style(INK)
        .draw()?;
    frame(root, chart.plotting_area())?;

    draw_colour_bar(root, bar_origin(map), lo, hi)?;

    // Under the x axis, from the map's left edge to the next panel's map.
    let [time, frame_number, file] = caption(image);
    let width = PANEL_PX - Y_AXIS_W;
    let ink = text_style(CAPTION_SIZE, &INK);
    let muted = text_style(CAPTION_SIZE, &MUTED);
    let mut lines = vec![
        (fit(root, &frame_number, &ink, width), &ink),
        (fit(root, &time, &ink, width), &ink),
    ];
    lines.extend(
        wrap(root, &file, &muted, width)
            .into_iter()
            .map(|l| (l, &muted)),
    );
    let top = map.1 + MAP_PX + X_AXIS_H + 4;
    for (k, (line, style)) in lines.iter().enumerate() {
        let y = top + k as u32 * CAPTION_LINE_H;
        root.draw_text(line, style, (px(map.0), px(y)))?;
    }
    Ok(())
}

/// A colour bar from `lo` (bottom) to `hi` (top) with its ticks on the
/// right; top-left at `at`, as tall as a map.
fn draw_colour_bar(root: &Area, at: (u32, u32), lo: f64, hi: f64) -> Drawn {
    let area = sub(root, at.0, at.1, BAR_W + BAR_AXIS_W, MAP_PX);
    let mut bar = ChartBuilder::on(&area)
        .right_y_label_area_size(BAR_AXIS_W)
        .build_cartesian_2d(0.0..1.0, lo..hi)?;
    // One band per pixel row.
    let steps = MAP_PX as usize;
    let band = (hi - lo) / steps as f64;
    bar.draw_series((0..steps).map(|k| {
        let v0 = lo + band * k as f64;
        let [r, g, b] = heat_color(v0 + band / 2.0, lo, hi);
        Rectangle::new([(0.0, v0), (1.0, v0 + band)], RGBColor(r, g, b).filled())
    }))?;
    let step = nice_step(hi - lo, COLOUR_BAR_TICKS);
    let label = |v: &f64| tick_label(*v, step);
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(COLOUR_BAR_TICKS)
        .y_label_formatter(&label)
        .set_all_tick_mark_size(TICK_MARK)
        .label_style(text_style(TICK_SIZE, &INK))
        .axis_style(INK)
        .draw()?;
    frame(root, bar.plotting_area())?;
    Ok(())
}

/// An empty plot area at `at`, framed, with a note in its middle.
fn draw_note(root: &Area, at: (u32, u32), (w, h): (u32, u32), note: &str) -> Drawn {
    let area = sub(root, at.0, at.1, w, h);
    frame(root, &area)?;
    let style = text_style(LABEL_SIZE, &MUTED).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text(note, &style, (px(w / 2), px(h / 2)))?;
    Ok(())
}

/// What a view with nothing to draw says, in the middle of the picture.
fn draw_message(root: &Area, message: &str) -> Drawn {
    let (w, h) = root.dim_in_pixel();
    let style = text_style(TITLE_SIZE, &INK).pos(Pos::new(HPos::Center, VPos::Center));
    root.draw_text(message, &style, (px(w / 2), px(h / 2)))?;
    Ok(())
}

/// Says of a view without images.
pub(crate) const NO_IMAGES: &str = "no images received";
pub(crate) const NO_PULSE_HEIGHT_IMAGES: &str = "no pulse-height images received";

impl PlotView {
    /// The view as a picture: one row per module, pulse height then movie,
    /// each a heat map with axes, a colour bar and a caption.
    pub fn to_png(&self) -> RgbImage {
        let rows = self.modules.len().max(1) as u32;
        picture(
            2 * MARGIN + 2 * PANEL_PX,
            2 * MARGIN + rows * VIEW_ROW_PX,
            |root| {
                if self.modules.is_empty() {
                    return draw_message(root, NO_IMAGES);
                }
                for (row, (module, m)) in self.modules.iter().enumerate() {
                    let kinds = [(&m.pulse_height, "pulse height"), (&m.movie, "movie")];
                    for (p, (panel, kind)) in kinds.into_iter().enumerate() {
                        let map = map_origin(row as u32, p as u32);
                        let drawn = match panel {
                            Some(panel) => {
                                let dp = panel.image.data_product;
                                draw_panel(root, map, &format!("{module} — {kind} ({dp})"), panel)
                            }
                            None => draw_title(root, map, MAP_PX, &format!("{module} — {kind}"))
                                .and_then(|()| {
                                    draw_note(
                                        root,
                                        map,
                                        (MAP_PX, MAP_PX),
                                        &format!("no {kind} image yet"),
                                    )
                                }),
                        };
                        or_log(&format!("{module}'s {kind} image"), drawn);
                    }
                }
                Ok(())
            },
        )
    }
}

/// Where the plot area of window `window` (0 = 10 s) of the `row`-th
/// module's histograms starts.
pub(crate) fn hist_origin(row: u32, window: u32) -> (u32, u32) {
    (
        MARGIN + window * HIST_PANEL_PX + HIST_Y_AXIS_W,
        MARGIN + row * PHDIST_ROW_PX + HEADING_H + TITLE_H,
    )
}

/// The bars' colour: the one the terminal view uses.
pub(crate) fn bar_color() -> [u8; 3] {
    heat_color(0.7, 0.0, 1.0)
}

/// One window's histogram with axes; its plot area's top-left at `plot`.
/// `x` is the module's bin range, `top` the count axis's upper end.
fn draw_histogram(root: &Area, plot: (u32, u32), h: &Histogram, x: Range<f64>, top: f64) -> Drawn {
    let title = format!(
        "last {:.0} s: {} events, {:.1} events/s",
        h.window_seconds, h.events, h.rate
    );
    draw_title(root, plot, HIST_W, &title)?;
    let area = sub(
        root,
        plot.0 - HIST_Y_AXIS_W,
        plot.1,
        HIST_Y_AXIS_W + HIST_W,
        HIST_H + X_AXIS_H,
    );
    let mut chart = ChartBuilder::on(&area)
        .y_label_area_size(HIST_Y_AXIS_W)
        .x_label_area_size(X_AXIS_H)
        .build_cartesian_2d(
            x.clone(),
            (LOG_COUNT_FLOOR..top)
                .log_scale()
                .with_key_points(log_ticks(top)),
        )?;
    let bin = (x.end - x.start) / PHDIST_BINS as f64;
    let [r, g, b] = bar_color();
    let bars = h.counts.iter().enumerate().filter(|(_, &n)| n > 0);
    chart.draw_series(bars.map(|(k, &n)| {
        let x0 = x.start + bin * k as f64;
        Rectangle::new(
            [(x0, LOG_COUNT_FLOOR), (x0 + bin, n as f64)],
            RGBColor(r, g, b).filled(),
        )
    }))?;
    let x_step = nice_step(x.end - x.start, HIST_X_TICKS);
    let x_label = |v: &f64| tick_label(*v, x_step);
    let y_label = |v: &f64| tick_label(*v, 1.0);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(HIST_X_TICKS)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .set_all_tick_mark_size(TICK_MARK)
        .label_style(text_style(TICK_SIZE, &INK))
        .axis_desc_style(text_style(LABEL_SIZE, &INK))
        .x_desc("maximum pixel (ADC counts)")
        .y_desc("events (log scale)")
        .axis_style(INK)
        .draw()?;
    frame(root, chart.plotting_area())?;
    if h.events == 0 {
        let style = text_style(LABEL_SIZE, &MUTED).pos(Pos::new(HPos::Center, VPos::Center));
        root.draw_text(
            &format!("no events in the last {:.0} s", h.window_seconds),
            &style,
            (px(plot.0 + HIST_W / 2), px(plot.1 + HIST_H / 2)),
        )?;
    }
    Ok(())
}

impl PhDist {
    /// The histograms as a picture: one row per module, one chart per
    /// window, counts on a log axis shared by the module's windows.
    pub fn to_png(&self) -> RgbImage {
        let rows = self.modules.len().max(1) as u32;
        let width = 2 * MARGIN + PHDIST_WINDOWS.len() as u32 * HIST_PANEL_PX;
        picture(width, 2 * MARGIN + rows * PHDIST_ROW_PX, |root| {
            if self.modules.is_empty() {
                return draw_message(root, NO_PULSE_HEIGHT_IMAGES);
            }
            let heading_style = text_style(HEADING_SIZE, &INK);
            for (row, module) in self.modules().enumerate() {
                let row = row as u32;
                let heading = format!("{module} — maximum pixel of each pulse-height image");
                let at = (px(MARGIN), px(MARGIN + row * PHDIST_ROW_PX));
                or_log(
                    &heading,
                    root.draw_text(&heading, &heading_style, at)
                        .map_err(DrawError::from),
                );
                let (lo, hi) = self.range(module);
                let histograms = self.histograms(module);
                // One count axis for the module's windows, so they compare
                // at a glance.
                let peak = histograms
                    .iter()
                    .flat_map(|h| h.counts.iter().copied())
                    .max()
                    .unwrap_or(0)
                    .max(1);
                for (w, h) in histograms.iter().enumerate() {
                    or_log(
                        &format!("{module}'s {:.0} s histogram", h.window_seconds),
                        draw_histogram(
                            root,
                            hist_origin(row, w as u32),
                            h,
                            lo..hi,
                            2.0 * peak as f64,
                        ),
                    );
                }
            }
            Ok(())
        })
    }
}

/// Writes a picture to `path` as PNG.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<(), crate::Error> {
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| crate::Error::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{key, one_bright_pixel};
    use super::*;
    use crate::Image;
    use pff::DataProduct;

    /// The repository's Lick recording of `dp` and `module`, decoded.
    fn lick(dp: &str, module: u32) -> Vec<Image> {
        let sample = testdata::fixture(dp, module);
        let file = pff::PffFile::open(&sample.path).unwrap();
        let dp = file.data_product();
        let frames: Vec<_> = file.frames().unwrap().map(Result::unwrap).collect();
        assert!(frames.len() > 10, "{sample}");
        frames
            .iter()
            .enumerate()
            .map(|(n, f)| Image::from_frame(dp, f, module.into(), sample.file_name(), n as u32))
            .collect()
    }

    /// Text ink: the dark grey of labels, darker than any colour of the map
    /// (plasma's darkest is a blue of 135) and than the muted notes.
    fn is_ink(p: &Rgb<u8>) -> bool {
        p.0.iter().all(|&c| c < 100)
    }

    fn count(
        img: &RgbImage,
        (x, y): (u32, u32),
        (w, h): (u32, u32),
        f: impl Fn(&Rgb<u8>) -> bool,
    ) -> usize {
        (y..y + h)
            .flat_map(|yy| (x..x + w).map(move |xx| (xx, yy)))
            .filter(|&(xx, yy)| f(img.get_pixel(xx, yy)))
            .count()
    }

    /// Grey of the muted notes and file names, where fully covered.
    fn is_muted(p: &Rgb<u8>) -> bool {
        let [r, g, b] = p.0;
        r == g && g == b && (110..=140).contains(&r)
    }

    /// Where `c` lies on the plasma map (0 = bottom colour, 1 = top), and
    /// how far from it (largest channel difference).
    fn on_plasma(c: &Rgb<u8>) -> (f64, u8) {
        static MAP: std::sync::OnceLock<Vec<[u8; 3]>> = std::sync::OnceLock::new();
        let map = MAP.get_or_init(|| {
            (0..=1000)
                .map(|k| heat_color(f64::from(k), 0.0, 1000.0))
                .collect()
        });
        map.iter()
            .enumerate()
            .map(|(k, m)| {
                let d = (0..3).map(|i| m[i].abs_diff(c.0[i])).max().unwrap_or(0);
                (k as f64 / 1000.0, d)
            })
            .min_by_key(|&(_, d)| d)
            .unwrap_or((0.0, u8::MAX))
    }

    /// The distinct colours of a part of the picture.
    fn colours(
        img: &RgbImage,
        (x, y): (u32, u32),
        (w, h): (u32, u32),
    ) -> std::collections::HashSet<[u8; 3]> {
        (y..y + h)
            .flat_map(|yy| (x..x + w).map(move |xx| img.get_pixel(xx, yy).0))
            .collect()
    }

    /// The ink in the title band above the `row`-th row's pulse-height map.
    fn title_ink(img: &RgbImage, row: u32) -> Vec<(u32, u32)> {
        let (x, y) = map_origin(row, 0);
        let (x0, y0) = (x - Y_AXIS_W, y - TITLE_H);
        (y0..y)
            .flat_map(|yy| (x0..x + MAP_PX + Y_AXIS_W).map(move |xx| (xx, yy)))
            .filter(|&(xx, yy)| img.get_pixel(xx, yy).0.iter().all(|&c| c < 100))
            .map(|(xx, yy)| (xx - x0, yy - y0))
            .collect()
    }

    #[test]
    fn each_row_is_titled_with_its_node_and_two_nodes_get_two_rows() {
        use super::super::tests::from_node;
        let mut view = PlotView::new();
        for node in ["daq1", "daq2"] {
            view.update(from_node(
                node,
                one_bright_pixel(DataProduct::Ph256, 3, 0, 0),
            ));
        }
        let img = view.to_png();
        assert_eq!(img.height(), 2 * MARGIN + 2 * VIEW_ROW_PX, "a row per node");
        let (daq1, daq2) = (title_ink(&img, 0), title_ink(&img, 1));
        assert!(!daq1.is_empty());
        assert_ne!(daq1, daq2, "the two rows' titles are the same");

        let mut unnamed = PlotView::new();
        unnamed.update(one_bright_pixel(DataProduct::Ph256, 3, 0, 0));
        let plain = title_ink(&unnamed.to_png(), 0);
        assert!(
            daq1.len() > plain.len() + 50,
            "\"daq1 · module 3\" is no wider than \"module 3\": {} vs {} ink pixels",
            daq1.len(),
            plain.len()
        );
    }

    #[test]
    fn one_bright_pixel_lights_exactly_its_square_with_row_zero_on_top() {
        let mut view = PlotView::new();
        view.update(one_bright_pixel(DataProduct::Ph256, 1, 2, 3));
        view.update(one_bright_pixel(DataProduct::Img16, 1, 5, 9));
        let img = view.to_png();
        assert_eq!(
            img.dimensions(),
            (2 * MARGIN + 2 * PANEL_PX, 2 * MARGIN + VIEW_ROW_PX)
        );
        let top = Rgb(heat_color(1.0, 0.0, 1.0));
        let bottom = Rgb(heat_color(0.0, 0.0, 1.0));
        for (panel, side, (r, c)) in [(0, 16, (2, 3)), (1, 32, (5, 9))] {
            let (x0, y0) = map_origin(0, panel);
            let px = MAP_PX / side;
            let mut lit = Vec::new();
            for y in (0..MAP_PX).step_by(px as usize) {
                for x in (0..MAP_PX).step_by(px as usize) {
                    let c = *img.get_pixel(x0 + x + px / 2, y0 + y + px / 2);
                    if c == top {
                        lit.push((y / px, x / px));
                    } else {
                        assert_eq!(c, bottom, "panel {panel} pixel ({}, {})", y / px, x / px);
                    }
                }
            }
            assert_eq!(lit, vec![(r, c)], "panel {panel}");
            // The whole square is lit, up to its edges.
            let (sx, sy) = (x0 + c * px, y0 + r * px);
            assert_eq!(
                count(&img, (sx, sy), (px, px), |p| *p == top),
                (px * px) as usize,
                "panel {panel}"
            );
        }
    }

    #[test]
    fn a_lick_snapshot_has_titles_axes_colour_bars_and_captions() {
        let mut view = PlotView::new();
        for image in lick("ph256", 1)
            .into_iter()
            .chain(lick("img16", 1))
            .chain(lick("ph256", 3))
        {
            view.update(image);
        }
        let img = view.to_png();
        let (width, height) = (2 * MARGIN + 2 * PANEL_PX, 2 * MARGIN + 2 * VIEW_ROW_PX);
        assert_eq!(img.dimensions(), (width, height));

        for (row, panel) in [(0, 0), (0, 1), (1, 0)] {
            let map = map_origin(row, panel);
            let at = format!("module row {row}, panel {panel}");
            // Every pixel of the map is a colour of the map: no label or
            // axis is drawn over it.
            let off_map: Vec<_> = colours(&img, map, (MAP_PX, MAP_PX))
                .into_iter()
                .filter(|c| on_plasma(&Rgb(*c)).1 > 3)
                .collect();
            assert!(off_map.is_empty(), "{at}: {off_map:?}");
            // Text where a reader looks for it.
            let areas = [
                ("title", (map.0, map.1 - TITLE_H), (MAP_PX, TITLE_H)),
                (
                    "row ticks and label",
                    (map.0 - Y_AXIS_W, map.1),
                    (Y_AXIS_W - 1, MAP_PX),
                ),
                (
                    "column ticks and label",
                    (map.0, map.1 + MAP_PX + 1),
                    (MAP_PX, X_AXIS_H - 1),
                ),
                (
                    "colour bar ticks",
                    (bar_origin(map).0 + BAR_W + 1, map.1),
                    (BAR_AXIS_W - 1, MAP_PX),
                ),
                (
                    "frame and time",
                    (map.0, map.1 + MAP_PX + X_AXIS_H),
                    (MAP_PX, 2 * CAPTION_LINE_H),
                ),
            ];
            for (what, at_xy, size) in areas {
                assert!(count(&img, at_xy, size, is_ink) > 40, "{at}: no {what}");
            }
            // The file name, muted, under them.
            let file = (map.0, map.1 + MAP_PX + X_AXIS_H + 2 * CAPTION_LINE_H);
            let size = (MAP_PX, 2 * CAPTION_LINE_H);
            assert!(count(&img, file, size, is_muted) > 40, "{at}: no file name");
            assert_eq!(
                count(&img, file, size, is_ink),
                0,
                "{at}: file name not muted"
            );

            // The colour bar runs through the colour map, bottom to top.
            let bar = bar_origin(map);
            let along: Vec<f64> = (0..MAP_PX)
                .rev()
                .map(|dy| {
                    let (t, d) = on_plasma(img.get_pixel(bar.0 + BAR_W / 2, bar.1 + dy));
                    assert!(d <= 3, "{at}: bar pixel {dy} is off the map");
                    t
                })
                .collect();
            assert!(along[0] < 0.01 && along[along.len() - 1] > 0.99, "{at}");
            assert!(
                along.windows(2).all(|w| w[1] >= w[0] - 0.005),
                "{at}: the bar's colours go back down"
            );
        }
        // Module 3 sent no movie: its place says so, in muted grey, no map.
        let missing = map_origin(1, 1);
        let (missing, inside) = ((missing.0 + 1, missing.1 + 1), (MAP_PX - 2, MAP_PX - 2));
        let on_map: Vec<_> = colours(&img, missing, inside)
            .into_iter()
            .filter(|c| on_plasma(&Rgb(*c)).1 <= 3)
            .collect();
        assert!(on_map.is_empty(), "{on_map:?}");
        assert!(count(&img, missing, inside, is_muted) > 40);
        assert_eq!(count(&img, missing, inside, is_ink), 0);
        // Nothing runs off the picture: its margins stay white.
        let white = |p: &Rgb<u8>| p.0 == [255, 255, 255];
        for (at, size) in [
            ((width - MARGIN / 2, 0), (MARGIN / 2, height)),
            ((0, height - MARGIN / 2), (width, MARGIN / 2)),
            ((0, 0), (MARGIN / 2, height)),
            ((0, 0), (width, MARGIN / 2)),
        ] {
            assert_eq!(count(&img, at, size, |p| !white(p)), 0, "margin at {at:?}");
        }
    }

    #[test]
    fn a_histogram_with_events_draws_bars_in_its_plot_area() {
        let mut dist = PhDist::new();
        for (k, image) in lick("ph256", 3).iter().enumerate() {
            dist.update(image, k as f64 * 0.01);
        }
        // A minute and a half later only the 600 s window holds them.
        dist.advance(100.0);
        let img = dist.to_png();
        assert_eq!(
            img.dimensions(),
            (2 * MARGIN + 3 * HIST_PANEL_PX, 2 * MARGIN + PHDIST_ROW_PX)
        );
        let bar = Rgb(bar_color());
        let plot = |w| (hist_origin(0, w), (HIST_W, HIST_H));
        for w in [0, 1] {
            let (at, size) = plot(w);
            assert_eq!(count(&img, at, size, |p| *p == bar), 0, "window {w}");
            // "no events in the last ... s"
            assert!(count(&img, at, size, is_muted) > 40);
        }
        let (at, _) = plot(2);
        // Each bin's bar is as tall as its count ranks among the others.
        let counts = &dist.histograms(&key("", 3))[2].counts;
        let heights: Vec<usize> = (0..PHDIST_BINS as u32)
            .map(|b| {
                let x = at.0 + (2 * b + 1) * HIST_W / (2 * PHDIST_BINS as u32);
                count(&img, (x, at.1), (1, HIST_H), |p| *p == bar)
            })
            .collect();
        assert!(counts.iter().filter(|&&n| n > 0).count() > 1, "{counts:?}");
        for a in 0..PHDIST_BINS {
            assert_eq!(
                counts[a] == 0,
                heights[a] == 0,
                "bin {a}: {counts:?} {heights:?}"
            );
            for b in 0..PHDIST_BINS {
                if counts[a] > counts[b] {
                    assert!(
                        heights[a] > heights[b],
                        "bins {a}, {b}: {counts:?} {heights:?}"
                    );
                }
            }
        }
        // Axes: count ticks and label left of each plot, maxima under it,
        // the window and rate above it.
        for w in 0..3 {
            let (at, _) = plot(w);
            let left = (at.0 - HIST_Y_AXIS_W, at.1);
            assert!(count(&img, left, (HIST_Y_AXIS_W - 1, HIST_H), is_ink) > 40);
            let under = (at.0, at.1 + HIST_H + 1);
            assert!(count(&img, under, (HIST_W, X_AXIS_H - 1), is_ink) > 40);
            let above = (at.0, at.1 - TITLE_H);
            assert!(count(&img, above, (HIST_W, TITLE_H), is_ink) > 40);
        }
    }

    #[test]
    fn an_empty_view_says_no_images_received_and_nothing_else() {
        for (img, message) in [
            (PlotView::new().to_png(), NO_IMAGES),
            (PhDist::new().to_png(), NO_PULSE_HEIGHT_IMAGES),
        ] {
            let alone = picture(img.width(), img.height(), |root| {
                draw_message(root, message)
            });
            assert!(img == alone, "{message}");
            assert!(
                count(&img, (0, 0), img.dimensions(), is_ink) > 100,
                "{message}"
            );
        }
    }

    #[test]
    fn snapshot_is_a_readable_png_file() {
        let mut dist = PhDist::new();
        dist.update(&one_bright_pixel(DataProduct::Ph256, 3, 0, 0), 1.0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phdist.png");
        let img = dist.to_png();
        save_png(&img, &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert!(back == img);
        let err = save_png(&img, &dir.path().join("no/such/dir/x.png")).unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
