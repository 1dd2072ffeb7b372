//! The four data products Hashpipe records.

use std::fmt;
use std::str::FromStr;

/// Whether a product is a movie image or a pulse-height event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageKind {
    /// `img8`, `img16`: integrated images at a fixed cadence.
    Movie,
    /// `ph256`, `ph1024`: triggered pulse-height events.
    PulseHeight,
}

/// A PANOSETI data product: what one frame's image holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataProduct {
    /// 32x32 movie image, u16 pixels.
    Img16,
    /// 32x32 movie image, u8 pixels.
    Img8,
    /// 16x16 pulse-height image of one quabo, i16 pixels.
    Ph256,
    /// 32x32 pulse-height image of a whole module, i16 pixels.
    Ph1024,
}

/// Pixels on a side of one quabo's image.
pub const QUABO_SIDE: usize = 16;

/// Where a pixel of an image comes from ([`DataProduct::quabo_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuaboPixel {
    /// The quabo (0-3) of a module image; `None` for a ph256 image, whose
    /// header names its quabo.
    pub quabo: Option<u8>,
    /// The row in that quabo's 16x16 image.
    pub row: usize,
    /// The column in that quabo's 16x16 image.
    pub col: usize,
}

impl DataProduct {
    /// Every product, in a fixed order.
    pub const ALL: [DataProduct; 4] = [Self::Img16, Self::Img8, Self::Ph256, Self::Ph1024];

    /// The name used in file names (`dp_img16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Img16 => "img16",
            Self::Img8 => "img8",
            Self::Ph256 => "ph256",
            Self::Ph1024 => "ph1024",
        }
    }

    /// Movie or pulse height.
    pub fn kind(self) -> ImageKind {
        match self {
            Self::Img16 | Self::Img8 => ImageKind::Movie,
            Self::Ph256 | Self::Ph1024 => ImageKind::PulseHeight,
        }
    }

    /// Rows and columns: `[16, 16]` for ph256, `[32, 32]` for the rest.
    pub fn shape(self) -> [usize; 2] {
        match self {
            Self::Ph256 => [16, 16],
            _ => [32, 32],
        }
    }

    /// Number of pixels in one image.
    pub fn pixels(self) -> usize {
        let [r, c] = self.shape();
        r * c
    }

    /// Which quabo recorded the pixel at (`row`, `col`) of an image, and
    /// where it sits in that quabo's own 16x16 image. A module's 32x32
    /// image holds its four quabos as row-major 16x16 quadrants (quabo 0
    /// top left, 1 top right, 2 bottom left, 3 bottom right); a ph256 image
    /// is one quabo's, the one its header names, so its pixel is its own.
    /// `None` outside the image.
    pub fn quabo_at(self, row: usize, col: usize) -> Option<QuaboPixel> {
        let [rows, cols] = self.shape();
        if row >= rows || col >= cols {
            return None;
        }
        Some(match self {
            Self::Ph256 => QuaboPixel {
                quabo: None,
                row,
                col,
            },
            _ => QuaboPixel {
                quabo: Some((2 * (row / QUABO_SIDE) + col / QUABO_SIDE) as u8),
                row: row % QUABO_SIDE,
                col: col % QUABO_SIDE,
            },
        })
    }

    /// The pixel of a 32x32 module image that holds pixel (`row`, `col`)
    /// of quabo `quabo`'s 16x16 image: the inverse of [`quabo_at`](Self::quabo_at).
    pub fn module_pixel(quabo: u8, row: usize, col: usize) -> (usize, usize) {
        let q = usize::from(quabo % 4);
        ((q / 2) * QUABO_SIDE + row, (q % 2) * QUABO_SIDE + col)
    }

    /// Bytes per pixel as stored (the `bpp_` of the file name).
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Img8 => 1,
            _ => 2,
        }
    }

    /// Size of one image in bytes.
    pub fn image_bytes(self) -> usize {
        self.pixels() * self.bytes_per_pixel()
    }

    /// Pulse heights are baseline-subtracted, so they can be negative.
    pub fn is_signed(self) -> bool {
        self.kind() == ImageKind::PulseHeight
    }

    /// The product whose images have this kind, shape and pixel width, if any.
    pub fn from_image(kind: ImageKind, shape: [usize; 2], bytes_per_pixel: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|dp| {
            dp.kind() == kind && dp.shape() == shape && dp.bytes_per_pixel() == bytes_per_pixel
        })
    }
}

impl fmt::Display for DataProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name is not one of `img16`, `img8`, `ph256`, `ph1024`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown data product {0:?} (expected img16, img8, ph256 or ph1024)")]
pub struct UnknownDataProduct(pub String);

impl FromStr for DataProduct {
    type Err = UnknownDataProduct;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|dp| dp.name() == s)
            .ok_or_else(|| UnknownDataProduct(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_image_holds_its_quabos_as_row_major_quadrants() {
        let at = |row, col| DataProduct::Img16.quabo_at(row, col).unwrap();
        assert_eq!(at(0, 0).quabo, Some(0));
        assert_eq!(at(0, 16).quabo, Some(1));
        assert_eq!(at(16, 0).quabo, Some(2));
        let p = at(31, 17);
        assert_eq!((p.quabo, p.row, p.col), (Some(3), 15, 1));
        for dp in [DataProduct::Img16, DataProduct::Img8, DataProduct::Ph1024] {
            for row in 0..32 {
                for col in 0..32 {
                    let p = dp.quabo_at(row, col).unwrap();
                    let q = p.quabo.unwrap();
                    assert_eq!(DataProduct::module_pixel(q, p.row, p.col), (row, col));
                }
            }
            assert_eq!(dp.quabo_at(32, 0), None);
            assert_eq!(dp.quabo_at(0, 32), None);
        }
        let ph = DataProduct::Ph256.quabo_at(5, 9).unwrap();
        assert_eq!((ph.quabo, ph.row, ph.col), (None, 5, 9));
        assert_eq!(DataProduct::Ph256.quabo_at(16, 0), None);
    }

    #[test]
    fn sizes_match_the_format() {
        assert_eq!(DataProduct::Img16.image_bytes(), 2048);
        assert_eq!(DataProduct::Img8.image_bytes(), 1024);
        assert_eq!(DataProduct::Ph256.image_bytes(), 512);
        assert_eq!(DataProduct::Ph1024.image_bytes(), 2048);
    }

    #[test]
    fn names_round_trip_and_images_identify_products() {
        for dp in DataProduct::ALL {
            assert_eq!(dp.name().parse::<DataProduct>(), Ok(dp));
            assert_eq!(
                DataProduct::from_image(dp.kind(), dp.shape(), dp.bytes_per_pixel()),
                Some(dp)
            );
        }
        assert!("img32".parse::<DataProduct>().is_err());
        assert_eq!(DataProduct::from_image(ImageKind::Movie, [16, 16], 2), None);
    }
}
