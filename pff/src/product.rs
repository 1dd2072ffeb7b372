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
