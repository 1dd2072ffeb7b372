//! The views in a terminal. A terminal cell is about twice as tall as it is
//! wide, so a heat map draws two pixel rows per cell with the upper half
//! block `▀`: its foreground is the upper pixel, its background the lower.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::Widget;

use super::{caption, fmt_limit, heat_color, log_height, Panel, PhDist, PlotView, PHDIST_BINS};

/// Cells across (and half-cells down) of every heat map: a 32x32 movie image
/// at one pixel per half-cell, a 16x16 pulse-height image at two.
pub(crate) const MAP_COLS: u16 = 32;
/// Cell rows of every heat map.
pub(crate) const MAP_ROWS: u16 = 16;
/// Columns of one panel: map, gap, colour bar (2), gap, limit labels.
pub(crate) const PANEL_W: u16 = MAP_COLS + 1 + 2 + 1 + 8;
/// Rows of one module: title, map, four caption lines, a blank line.
pub(crate) const VIEW_ROW_H: u16 = 1 + MAP_ROWS + 4 + 1;
/// Histogram height in cells.
const HIST_ROWS: u16 = 8;
/// Rows of one module in the pulse-height view: title, bars, axis, counts, blank.
pub(crate) const PHDIST_ROW_H: u16 = 1 + HIST_ROWS + 1 + 1 + 1;
/// Columns of one histogram window and the gap after it.
const HIST_W: u16 = PHDIST_BINS as u16 + 4;

fn rgb(c: [u8; 3]) -> Color {
    Color::Rgb(c[0], c[1], c[2])
}

/// Where the heat map of `panel` (0 = pulse height, 1 = movie) of the
/// `row`-th module starts.
pub(crate) fn map_origin(area: Rect, row: u16, panel: u16) -> (u16, u16) {
    (
        area.x + panel * (PANEL_W + 2),
        area.y + row * VIEW_ROW_H + 1,
    )
}

fn put(buf: &mut Buffer, area: Rect, x: u16, y: u16, text: &str, style: Style) {
    if y >= area.bottom() || x >= area.right() {
        return;
    }
    buf.set_stringn(x, y, text, usize::from(area.right() - x), style);
}

fn draw_panel(buf: &mut Buffer, area: Rect, x0: u16, y0: u16, panel: &Panel) {
    let image = &panel.image;
    let (lo, hi) = panel.limits.limits();
    let [rows, cols] = image.shape();
    let scale = (usize::from(MAP_COLS) / cols.max(1)).max(1);
    let pixel = |r: usize, c: usize| image.pixels.value(r * cols + c).unwrap_or(lo);
    for cy in 0..MAP_ROWS {
        for cx in 0..MAP_COLS {
            let (x, y) = (x0 + cx, y0 + cy);
            if x >= area.right() || y >= area.bottom() {
                continue;
            }
            let col = usize::from(cx) / scale;
            let upper = usize::from(2 * cy) / scale;
            let lower = usize::from(2 * cy + 1) / scale;
            if col >= cols || lower >= rows {
                continue;
            }
            if let Some(cell) = buf.cell_mut((x, y)) {
                cell.set_symbol("▀")
                    .set_fg(rgb(heat_color(pixel(upper, col), lo, hi)))
                    .set_bg(rgb(heat_color(pixel(lower, col), lo, hi)));
            }
        }
    }
    // Colour bar: top is the upper limit, one colour step per half cell.
    let bar_x = x0 + MAP_COLS + 1;
    let steps = f64::from(2 * MAP_ROWS - 1);
    for cy in 0..MAP_ROWS {
        let t = |k: u16| hi - (hi - lo) * f64::from(k) / steps;
        for dx in 0..2 {
            if bar_x + dx >= area.right() || y0 + cy >= area.bottom() {
                continue;
            }
            if let Some(cell) = buf.cell_mut((bar_x + dx, y0 + cy)) {
                cell.set_symbol("▀")
                    .set_fg(rgb(heat_color(t(2 * cy), lo, hi)))
                    .set_bg(rgb(heat_color(t(2 * cy + 1), lo, hi)));
            }
        }
    }
    let label = Style::default();
    put(buf, area, bar_x + 3, y0, &fmt_limit(hi), label);
    put(
        buf,
        area,
        bar_x + 3,
        y0 + MAP_ROWS - 1,
        &fmt_limit(lo),
        label,
    );
    let [time, frame, file] = caption(image);
    let w = usize::from(PANEL_W);
    put(buf, area, x0, y0 + MAP_ROWS, &time, label);
    put(buf, area, x0, y0 + MAP_ROWS + 1, &frame, label);
    // File names run to 80 characters: two lines.
    let split = file.char_indices().nth(w).map_or(file.len(), |(i, _)| i);
    put(
        buf,
        area,
        x0,
        y0 + MAP_ROWS + 2,
        &file[..split],
        label.add_modifier(Modifier::DIM),
    );
    put(
        buf,
        area,
        x0,
        y0 + MAP_ROWS + 3,
        &file[split..],
        label.add_modifier(Modifier::DIM),
    );
}

/// Module titles.
const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);

/// What a view shows before its first image.
fn waiting(buf: &mut Buffer, area: Rect, text: &str) {
    put(buf, area, area.x, area.y, text, Style::default());
}

impl Widget for &PlotView {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if self.modules.is_empty() {
            waiting(buf, area, "waiting for images...");
            return;
        }
        for (row, (module, m)) in self.modules.iter().enumerate() {
            let row = u16::try_from(row).unwrap_or(u16::MAX);
            let (_, y_title) = map_origin(area, row, 0);
            if y_title > area.bottom() {
                break;
            }
            put(buf, area, area.x, y_title - 1, &module.to_string(), BOLD);
            for (i, panel) in [&m.pulse_height, &m.movie].into_iter().enumerate() {
                let (x0, y0) = map_origin(area, row, i as u16);
                match panel {
                    Some(p) => draw_panel(buf, area, x0, y0, p),
                    None => put(
                        buf,
                        area,
                        x0,
                        y0,
                        if i == 0 {
                            "no pulse-height image yet"
                        } else {
                            "no movie image yet"
                        },
                        Style::default().add_modifier(Modifier::DIM),
                    ),
                }
            }
        }
    }
}

/// Eighths of a cell, for bar tops.
const BARS: [&str; 9] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];

impl Widget for &PhDist {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if self.modules.is_empty() {
            waiting(buf, area, "waiting for pulse-height images...");
            return;
        }
        let bar_style = Style::default().fg(rgb(heat_color(0.7, 0.0, 1.0)));
        for (row, module) in self.modules().enumerate() {
            let y0 = area.y
                + u16::try_from(row)
                    .unwrap_or(u16::MAX)
                    .saturating_mul(PHDIST_ROW_H);
            if y0 >= area.bottom() {
                break;
            }
            put(
                buf,
                area,
                area.x,
                y0,
                &format!("{module}: max pixel per pulse-height image (log counts)"),
                BOLD,
            );
            let (lo, hi) = self.range(module);
            for (i, h) in self.histograms(module).iter().enumerate() {
                let x0 = area.x + i as u16 * HIST_W;
                let peak = h.counts.iter().copied().max().unwrap_or(0).max(1);
                for (b, &count) in h.counts.iter().enumerate() {
                    // Height in eighths of a cell, at least one for a non-empty bin.
                    let eighths =
                        (log_height(count, peak) * f64::from(HIST_ROWS * 8)).ceil() as u64;
                    for r in 0..HIST_ROWS {
                        let filled = eighths.saturating_sub(u64::from(r) * 8).min(8) as usize;
                        let y = y0 + HIST_ROWS - r;
                        put(buf, area, x0 + b as u16, y, BARS[filled], bar_style);
                    }
                }
                let axis_y = y0 + HIST_ROWS + 1;
                let hi_text = fmt_limit(hi);
                put(buf, area, x0, axis_y, &fmt_limit(lo), Style::default());
                put(
                    buf,
                    area,
                    x0 + (PHDIST_BINS as u16).saturating_sub(hi_text.len() as u16),
                    axis_y,
                    &hi_text,
                    Style::default(),
                );
                let counts = format!("{:.0} s: {} ev {:.1}/s", h.window_seconds, h.events, h.rate);
                put(buf, area, x0, axis_y + 1, &counts, Style::default());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::one_bright_pixel;
    use super::*;
    use pff::DataProduct;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn top() -> Color {
        rgb(heat_color(1.0, 0.0, 1.0))
    }
    fn bottom() -> Color {
        rgb(heat_color(0.0, 0.0, 1.0))
    }

    /// Every half cell of the map at `(x0, y0)` whose colour is `c`, as
    /// `(cell x, cell y, upper half?)` relative to the map.
    fn halves_of(buf: &Buffer, x0: u16, y0: u16, c: Color) -> Vec<(u16, u16, bool)> {
        let mut out = Vec::new();
        for y in 0..MAP_ROWS {
            for x in 0..MAP_COLS {
                let cell = &buf[(x0 + x, y0 + y)];
                assert_eq!(cell.symbol(), "▀");
                if cell.fg == c {
                    out.push((x, y, true));
                }
                if cell.bg == c {
                    out.push((x, y, false));
                }
            }
        }
        out
    }

    #[test]
    fn one_bright_movie_pixel_lights_exactly_its_half_cell() {
        let mut view = PlotView::new();
        view.update(one_bright_pixel(DataProduct::Img16, 1, 5, 9));
        view.update(one_bright_pixel(DataProduct::Ph256, 1, 2, 3));
        let mut term = Terminal::new(TestBackend::new(100, VIEW_ROW_H)).unwrap();
        term.draw(|f| f.render_widget(&view, f.area())).unwrap();
        let buf = term.backend().buffer();
        assert_eq!(buf.area, Rect::new(0, 0, 100, VIEW_ROW_H));

        let (x0, y0) = map_origin(buf.area, 0, 1);
        // Row 5 is the lower half of cell row 2.
        assert_eq!(halves_of(buf, x0, y0, top()), vec![(9, 2, false)]);
        assert_eq!(halves_of(buf, x0, y0, bottom()).len(), 32 * 32 - 1);

        // Pulse height: 16x16 at two half cells per pixel, so (2, 3) is
        // the whole cell (6..8, 2).
        let (x0, y0) = map_origin(buf.area, 0, 0);
        assert_eq!(
            halves_of(buf, x0, y0, top()),
            vec![(6, 2, true), (6, 2, false), (7, 2, true), (7, 2, false)]
        );
    }

    #[test]
    fn colour_bar_spans_the_map_with_its_limits() {
        let mut view = PlotView::new();
        view.update(one_bright_pixel(DataProduct::Img16, 4, 0, 0));
        let mut term = Terminal::new(TestBackend::new(100, VIEW_ROW_H)).unwrap();
        term.draw(|f| f.render_widget(&view, f.area())).unwrap();
        let buf = term.backend().buffer();
        let (x0, y0) = map_origin(buf.area, 0, 1);
        let bar_x = x0 + MAP_COLS + 1;
        assert_eq!(buf[(bar_x, y0)].fg, top());
        assert_eq!(buf[(bar_x + 1, y0 + MAP_ROWS - 1)].bg, bottom());
        let line = |y: u16| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        };
        assert!(
            line(y0).contains("101"),
            "upper limit at the top: {}",
            line(y0)
        );
        assert!(line(y0 + MAP_ROWS - 1).contains("100"));
        assert!(line(y0 + MAP_ROWS + 1).contains("img16 frame 7"));
        assert!(line(0).contains("module 4"));
        assert!(line(y0).contains("no pulse-height image yet"));
    }

    #[test]
    fn each_module_row_and_histogram_names_its_node() {
        use crate::view::tests::from_node;
        let mut view = PlotView::new();
        let mut dist = PhDist::new();
        let ph = from_node("daq7", one_bright_pixel(DataProduct::Ph256, 4, 0, 0));
        dist.update(&ph, 1.0);
        view.update(ph);
        let first_line = |buf: &Buffer| {
            (0..buf.area.width)
                .map(|x| buf[(x, 0)].symbol())
                .collect::<String>()
        };
        let mut term = Terminal::new(TestBackend::new(100, VIEW_ROW_H)).unwrap();
        term.draw(|f| f.render_widget(&view, f.area())).unwrap();
        let line = first_line(term.backend().buffer());
        assert!(line.contains("daq7 · module 4"), "{line}");
        let mut term = Terminal::new(TestBackend::new(100, PHDIST_ROW_H)).unwrap();
        term.draw(|f| f.render_widget(&dist, f.area())).unwrap();
        let line = first_line(term.backend().buffer());
        assert!(line.contains("daq7 · module 4: max pixel"), "{line}");
    }

    #[test]
    fn phdist_shows_counts_and_rates_per_window() {
        let mut dist = PhDist::new();
        for i in 0..30 {
            let mut ev = one_bright_pixel(DataProduct::Ph256, 3, 0, 0);
            if let pff::Pixels::I16(v) = &mut ev.pixels {
                v[0] = 100 + (i % 3) * 50;
            }
            dist.update(&ev, f64::from(i));
        }
        let mut term = Terminal::new(TestBackend::new(90, PHDIST_ROW_H)).unwrap();
        term.draw(|f| f.render_widget(&dist, f.area())).unwrap();
        let buf = term.backend().buffer();
        let text: String = (0..PHDIST_ROW_H)
            .map(|y| (0..90).map(|x| buf[(x, y)].symbol()).collect::<String>() + "\n")
            .collect();
        assert!(text.contains("10 s: 11 ev 1.1/s"), "{text}");
        // 30 events in the 29 s seen so far: a window that has not filled
        // yet gives the rate over the time seen, not over its length.
        assert!(text.contains("60 s: 30 ev 1.0/s"), "{text}");
        assert!(text.contains("100") && text.contains("200"), "{text}");
        // Three equal bins of the 600 s window reach the top row.
        let top_row: String = (2 * HIST_W..3 * HIST_W)
            .map(|x| buf[(x, 1)].symbol())
            .collect();
        assert_eq!(top_row.matches('█').count(), 3, "{top_row}");
    }
}
