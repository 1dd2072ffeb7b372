//! A plotters drawing backend over an [`RgbImage`], whose text is DejaVu
//! Sans built into the binary (the `dejavu` crate), laid out with
//! ab_glyph.
//!
//! plotters' own `ab_glyph` text (0.3.7) places each glyph at the pen
//! position without its side bearing and rounds every glyph's baseline on
//! its own, so letters sit unevenly ("TR UN CATED", raised full stops).
//! Here a line is laid out once, with kerning and bearings, and every
//! glyph's coverage is blended onto the picture. No font is looked up on
//! the machine, so a snapshot looks the same everywhere.

use std::convert::Infallible;
use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, Glyph, PxScale, ScaleFont};
use image::RgbImage;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

/// The built-in font, parsed once; `None` if its bytes do not parse (then
/// text is reported as a font error and left out, nothing panics).
fn font() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(dejavu::sans::regular()).ok())
        .as_ref()
}

#[derive(Debug, thiserror::Error)]
#[error("the built-in DejaVu Sans font could not be read")]
struct NoFont;

fn no_font() -> DrawingErrorKind<Infallible> {
    DrawingErrorKind::FontError(Box::new(NoFont))
}

/// A line of text laid out from its line box's top-left: glyphs placed on
/// a baseline `ascent` below the top, the width to the last pen position.
struct Line {
    glyphs: Vec<Glyph>,
    width: f32,
    height: f32,
}

/// `text` at `size` pixels from the top of the ascenders to the bottom of
/// the descenders (plotters' and ab_glyph's meaning of a font size).
fn layout(font: &FontRef<'static>, size: f64, text: &str) -> Line {
    let scale = PxScale::from(size as f32);
    let scaled = font.as_scaled(scale);
    let mut glyphs = Vec::with_capacity(text.len());
    let mut pen = 0.0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            pen += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(scale, point(pen, scaled.ascent())));
        pen += scaled.h_advance(id);
        previous = Some(id);
    }
    Line {
        glyphs,
        width: pen,
        height: scaled.ascent() - scaled.descent(),
    }
}

/// The picture being drawn into.
pub(crate) struct Canvas<'a> {
    image: &'a mut RgbImage,
}

impl<'a> Canvas<'a> {
    pub(crate) fn new(image: &'a mut RgbImage) -> Self {
        Canvas { image }
    }

    /// Lays `color` over the pixel at `(x, y)` with opacity `alpha`;
    /// outside the picture, nothing.
    fn blend(&mut self, (x, y): BackendCoord, color: BackendColor, alpha: f64) {
        let (Ok(x), Ok(y)) = (u32::try_from(x), u32::try_from(y)) else {
            return;
        };
        let Some(px) = self.image.get_pixel_mut_checked(x, y) else {
            return;
        };
        let a = alpha.clamp(0.0, 1.0);
        let (r, g, b) = color.rgb;
        for (dst, src) in px.0.iter_mut().zip([r, g, b]) {
            *dst = (f64::from(src) * a + f64::from(*dst) * (1.0 - a)).round() as u8;
        }
    }
}

impl DrawingBackend for Canvas<'_> {
    type ErrorType = Infallible;

    fn get_size(&self) -> (u32, u32) {
        self.image.dimensions()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Infallible>> {
        Ok(())
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Infallible>> {
        Ok(())
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Infallible>> {
        self.blend(point, color, color.alpha);
        Ok(())
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Infallible>> {
        let font = font().ok_or_else(no_font)?;
        let color = style.color();
        let line = layout(font, style.size(), text);
        // The anchor is a point of the unrotated line box; the rotation
        // then turns the box about it, as plotters' own text does.
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -line.width / 2.0,
            HPos::Right => -line.width,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0.0,
            VPos::Center => -line.height / 2.0,
            VPos::Bottom => -line.height,
        };
        let (dx, dy) = (dx.round(), dy.round());
        let turn = style.transform();
        for glyph in line.glyphs {
            let Some(outline) = font.outline_glyph(glyph) else {
                continue; // a space
            };
            let bounds = outline.px_bounds();
            outline.draw(|x, y, coverage| {
                let gx = (bounds.min.x + x as f32 + dx).round() as i32;
                let gy = (bounds.min.y + y as f32 + dy).round() as i32;
                let (tx, ty) = turn.transform(gx, gy);
                self.blend(
                    (pos.0 + tx, pos.1 + ty),
                    color,
                    color.alpha * f64::from(coverage),
                );
            });
        }
        Ok(())
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Infallible>> {
        let font = font().ok_or_else(no_font)?;
        let line = layout(font, style.size(), text);
        Ok((line.width.ceil() as u32, line.height.ceil() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;
    use plotters::prelude::*;
    use plotters::style::text_anchor::Pos;

    /// The box `(x0, y0, x1, y1)` of the dark pixels of `img`.
    fn ink_box(img: &RgbImage) -> (u32, u32, u32, u32) {
        let ink: Vec<_> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0.iter().all(|&c| c < 128))
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(!ink.is_empty(), "no text drawn");
        let xs = ink.iter().map(|p| p.0);
        let ys = ink.iter().map(|p| p.1);
        (
            xs.clone().min().unwrap_or(0),
            ys.clone().min().unwrap_or(0),
            xs.max().unwrap_or(0),
            ys.max().unwrap_or(0),
        )
    }

    fn draw(text: &str, style: TextStyle) -> RgbImage {
        let mut img = RgbImage::from_pixel(400, 400, Rgb([255, 255, 255]));
        let root = Canvas::new(&mut img).into_drawing_area();
        root.draw_text(text, &style, (200, 200)).unwrap();
        drop(root);
        img
    }

    const LABEL: &str = "maximum pixel (ADC counts)";

    #[test]
    fn centred_text_is_centred_on_its_anchor_and_as_wide_as_estimated() {
        let style = ("sans-serif", 16.0)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let img = draw(LABEL, style.clone());
        let (x0, y0, x1, y1) = ink_box(&img);
        assert!((x0 + x1).abs_diff(400) <= 2, "{x0}..{x1}");
        assert!((y0 + y1).abs_diff(400) <= 4, "{y0}..{y1}");
        let mut probe = RgbImage::new(1, 1);
        let (w, h) = Canvas::new(&mut probe)
            .estimate_text_size(LABEL, &style)
            .unwrap();
        // Within the first and last glyphs' side bearings: dropping every
        // glyph's bearing would narrow it by tens of pixels.
        assert!(
            (x1 - x0 + 1).abs_diff(w) <= 4,
            "ink {} wide, estimated {w}",
            x1 - x0 + 1
        );
        assert!(
            y1 - y0 < h && h < 2 * (y1 - y0),
            "ink {} tall, line {h}",
            y1 - y0
        );
    }

    #[test]
    fn an_axis_name_turned_a_quarter_reads_upward_beside_its_anchor() {
        let style = ("sans-serif", 16.0)
            .into_font()
            .transform(FontTransform::Rotate270)
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        let img = draw(LABEL, style);
        let (x0, y0, x1, y1) = ink_box(&img);
        // Tall and thin, centred on the anchor's row, right of it (the
        // line's top faces left).
        assert!(y1 - y0 > 8 * (x1 - x0), "{x0}..{x1} x {y0}..{y1}");
        assert!((y0 + y1).abs_diff(400) <= 2, "{y0}..{y1}");
        assert!(x0 >= 200 && x1 < 200 + 20, "{x0}..{x1}");
        // Upward, tops to the left: "ma" at the bottom has no ascender,
        // so its ink stops further right than the ")" at the top.
        let leftmost = |rows: std::ops::RangeInclusive<u32>| {
            rows.flat_map(|y| (x0..=x1).map(move |x| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 128)
                .map(|(x, _)| x)
                .min()
                .unwrap_or(u32::MAX)
        };
        let (start, end) = (leftmost(y1 - 16..=y1), leftmost(y0..=y0 + 8));
        assert!(start > end + 1, "start of the text {start}, end {end}");
    }
}
