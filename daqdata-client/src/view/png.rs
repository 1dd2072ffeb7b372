//! The views as PNG pictures, for reports and tests. Text is drawn with an
//! embedded 8x8 bitmap font, so no system font library is needed.

use std::path::Path;

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

use super::{caption, fmt_limit, heat_color, log_height, Panel, PhDist, PlotView, PHDIST_BINS};

/// Side of every heat map, pixels: 8 per movie pixel, 16 per pulse-height.
pub(crate) const MAP_PX: u32 = 256;
const MARGIN: u32 = 16;
const BAR_W: u32 = 16;
/// Panel width: map, gap, bar, labels, and room for an 80-character file
/// name at 8 px a character.
pub(crate) const PANEL_PX: u32 = 660;
const TITLE_H: u32 = 28;
const CAPTION_H: u32 = 3 * 20;
pub(crate) const VIEW_ROW_PX: u32 = TITLE_H + MAP_PX + CAPTION_H + MARGIN;
const HIST_W: u32 = PHDIST_BINS as u32 * 14;
const HIST_H: u32 = 160;
const HIST_GAP: u32 = 48;
const PHDIST_ROW_PX: u32 = TITLE_H + HIST_H + 60 + MARGIN;
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);
const GRID: Rgb<u8> = Rgb([190, 190, 190]);

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, c: Rgb<u8>) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, c);
        }
    }
}

/// Draws `text` with its top-left at `(x, y)`, `scale` pixels per font dot.
fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, scale: u32, c: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'));
        let Some(glyph) = glyph else { continue };
        let gx = x + i as u32 * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    fill(
                        img,
                        gx + col * scale,
                        y + row as u32 * scale,
                        scale,
                        scale,
                        c,
                    );
                }
            }
        }
    }
}

/// Where the heat map of `panel` (0 = pulse height, 1 = movie) of the
/// `row`-th module starts.
pub(crate) fn map_origin(row: u32, panel: u32) -> (u32, u32) {
    (
        MARGIN + panel * PANEL_PX,
        MARGIN + row * VIEW_ROW_PX + TITLE_H,
    )
}

fn draw_panel(img: &mut RgbImage, x0: u32, y0: u32, panel: &Panel) {
    let image = &panel.image;
    let (lo, hi) = panel.limits.limits();
    let [rows, cols] = image.shape();
    let (rows, cols) = (rows.max(1) as u32, cols.max(1) as u32);
    let (pw, ph) = (MAP_PX / cols, MAP_PX / rows);
    for r in 0..rows {
        for c in 0..cols {
            let v = image.pixels.value((r * cols + c) as usize).unwrap_or(lo);
            fill(
                img,
                x0 + c * pw,
                y0 + r * ph,
                pw,
                ph,
                Rgb(heat_color(v, lo, hi)),
            );
        }
    }
    let bar_x = x0 + MAP_PX + 8;
    for k in 0..MAP_PX {
        let v = hi - (hi - lo) * f64::from(k) / f64::from(MAP_PX - 1);
        fill(img, bar_x, y0 + k, BAR_W, 1, Rgb(heat_color(v, lo, hi)));
    }
    text(img, bar_x + BAR_W + 6, y0, &fmt_limit(hi), 2, INK);
    text(
        img,
        bar_x + BAR_W + 6,
        y0 + MAP_PX - 16,
        &fmt_limit(lo),
        2,
        INK,
    );
    let [time, frame, file] = caption(image);
    let y = y0 + MAP_PX + 6;
    text(img, x0, y, &time, 2, INK);
    text(img, x0, y + 20, &frame, 2, INK);
    text(img, x0, y + 40, &file, 1, INK);
}

impl PlotView {
    /// The view as a picture: one row per module, pulse height then movie.
    pub fn to_png(&self) -> RgbImage {
        let rows = self.modules.len().max(1) as u32;
        let mut img = RgbImage::from_pixel(
            2 * MARGIN + 2 * PANEL_PX,
            2 * MARGIN + rows * VIEW_ROW_PX,
            BACKGROUND,
        );
        if self.modules.is_empty() {
            text(&mut img, MARGIN, MARGIN, "no images received", 2, INK);
        }
        for (row, (module, m)) in self.modules.iter().enumerate() {
            let row = row as u32;
            let (_, y) = map_origin(row, 0);
            text(
                &mut img,
                MARGIN,
                y - TITLE_H + 4,
                &format!("module {module}"),
                2,
                INK,
            );
            for (i, panel) in [&m.pulse_height, &m.movie].into_iter().enumerate() {
                let (x0, y0) = map_origin(row, i as u32);
                match panel {
                    Some(p) => draw_panel(&mut img, x0, y0, p),
                    None => {
                        let what = if i == 0 {
                            "no pulse-height image yet"
                        } else {
                            "no movie image yet"
                        };
                        text(&mut img, x0, y0, what, 2, GRID)
                    }
                }
            }
        }
        img
    }
}

impl PhDist {
    /// The histograms as a picture: one row per module, one chart per window.
    pub fn to_png(&self) -> RgbImage {
        let rows = self.modules.len().max(1) as u32;
        let width = 2 * MARGIN + 3 * (HIST_W + HIST_GAP);
        let mut img = RgbImage::from_pixel(width, 2 * MARGIN + rows * PHDIST_ROW_PX, BACKGROUND);
        if self.modules.is_empty() {
            text(
                &mut img,
                MARGIN,
                MARGIN,
                "no pulse-height images received",
                2,
                INK,
            );
        }
        let bar = Rgb(heat_color(0.7, 0.0, 1.0));
        for (row, module) in self.modules.keys().enumerate() {
            let y_title = MARGIN + row as u32 * PHDIST_ROW_PX;
            let title = format!("module {module}: max pixel per pulse-height image (log counts)");
            text(&mut img, MARGIN, y_title + 4, &title, 2, INK);
            let y0 = y_title + TITLE_H;
            let (lo, hi) = self.range(*module);
            for (i, h) in self.histograms(*module).iter().enumerate() {
                let x0 = MARGIN + i as u32 * (HIST_W + HIST_GAP);
                let peak = h.counts.iter().copied().max().unwrap_or(0).max(1);
                let bin_w = HIST_W / PHDIST_BINS as u32;
                for (b, &count) in h.counts.iter().enumerate() {
                    let height = (log_height(count, peak) * f64::from(HIST_H)).ceil() as u32;
                    fill(
                        &mut img,
                        x0 + b as u32 * bin_w + 1,
                        y0 + HIST_H - height,
                        bin_w - 2,
                        height,
                        bar,
                    );
                }
                fill(&mut img, x0, y0 + HIST_H, HIST_W, 1, INK);
                let hi_text = fmt_limit(hi);
                text(&mut img, x0, y0 + HIST_H + 4, &fmt_limit(lo), 1, INK);
                text(
                    &mut img,
                    x0 + HIST_W - 8 * hi_text.len() as u32,
                    y0 + HIST_H + 4,
                    &hi_text,
                    1,
                    INK,
                );
                text(
                    &mut img,
                    x0 + HIST_W - 8 * 6,
                    y0 + 2,
                    &format!("{peak:>6}"),
                    1,
                    GRID,
                );
                let counts = format!("{:.0} s: {} events", h.window_seconds, h.events);
                text(&mut img, x0, y0 + HIST_H + 18, &counts, 2, INK);
                text(
                    &mut img,
                    x0,
                    y0 + HIST_H + 38,
                    &format!("{:.1} events/s", h.rate),
                    2,
                    INK,
                );
            }
        }
        img
    }
}

/// Writes a picture to `path` as PNG.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<(), crate::Error> {
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| crate::Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::one_bright_pixel;
    use super::*;
    use pff::DataProduct;

    #[test]
    fn one_bright_pixel_lights_exactly_its_square_in_the_png() {
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
            // The colour bar beside it runs from the top colour down.
            let bar_x = x0 + MAP_PX + 8 + BAR_W / 2;
            assert_eq!(*img.get_pixel(bar_x, y0), top);
            assert_eq!(*img.get_pixel(bar_x, y0 + MAP_PX - 1), bottom);
        }
    }

    #[test]
    fn snapshot_is_a_readable_png_file() {
        let mut dist = PhDist::new();
        dist.update(&one_bright_pixel(DataProduct::Ph256, 3, 0, 0), 1.0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phdist.png");
        save_png(&dist.to_png(), &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(
            back.dimensions(),
            (
                2 * MARGIN + 3 * (HIST_W + HIST_GAP),
                2 * MARGIN + PHDIST_ROW_PX
            )
        );
        // The one bin with events is drawn in the bar colour.
        let bar = Rgb(heat_color(0.7, 0.0, 1.0));
        assert!(back.pixels().any(|p| *p == bar));
    }
}
