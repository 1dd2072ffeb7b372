//! How PFF frames travel as `PanoImage`s, both ways.
//!
//! The rules, as the Python server applies them:
//! - the frame's JSON header travels as a `google.protobuf.Struct`, whose
//!   numbers are doubles;
//! - the pixels travel in file order as `uint32`; pulse-height pixels are
//!   `i16` and travel as their `u16` bit pattern (`-3` is `65533`);
//! - movie products (img8, img16) are `Type::Movie`, pulse-height products
//!   (ph256, ph1024) are `Type::PulseHeight`;
//! - an image is one of the four data products when its type, `shape`,
//!   `bytes_per_pixel` and pixel count match one, and every pixel fits
//!   in that many bytes.

use pff::{DataProduct, ImageKind, ModuleId, Pixels, RawFrame};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value as PbValue};
use serde_json::{Map, Number, Value};

use crate::daqdata::{pano_image, PanoImage};

/// Why a frame cannot become a `PanoImage`, or a `PanoImage` is not one of
/// the four data products.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MappingError {
    /// The frame's header is not UTF-8 JSON (frame -> `PanoImage`), or the
    /// image's header does not parse as a PFF header (`PanoImage` -> frame).
    #[error("header: {0}")]
    Header(String),
    /// The bytes are not a protobuf `PanoImage`.
    #[error("not a PanoImage: {0}")]
    Decode(prost::DecodeError),
    /// `type` is UNDEFINED or not a value of the enum.
    #[error("type {0} is neither MOVIE nor PULSE_HEIGHT")]
    Type(i32),
    /// `shape` does not have two entries.
    #[error("shape {0:?} is not [rows, cols]")]
    Shape(Vec<u32>),
    /// Type, shape and bytes per pixel match none of the four products.
    #[error(
        "{kind} image of shape {shape:?} with {bytes_per_pixel} bytes per pixel is no PANOSETI data product \
         (img16: 32x32, 2; img8: 32x32, 1; ph256: 16x16, 2; ph1024: 32x32, 2)",
        kind = kind_name(*.kind)
    )]
    NoDataProduct {
        /// The image's kind.
        kind: ImageKind,
        /// Its `shape`.
        shape: [u32; 2],
        /// Its `bytes_per_pixel`.
        bytes_per_pixel: i32,
    },
    /// The pixel count is not the product's.
    #[error("got {got} pixels, but a {data_product} image has {}", data_product.pixels())]
    PixelCount {
        /// The product type, shape and bytes per pixel name.
        data_product: DataProduct,
        /// `image_array.len()`.
        got: usize,
    },
    /// A pixel does not fit in the product's bytes per pixel.
    #[error(
        "pixel {index} is {value} but {data_product} pixels are {} byte(s), at most {}",
        data_product.bytes_per_pixel(),
        max_pixel(*data_product)
    )]
    PixelRange {
        /// The product.
        data_product: DataProduct,
        /// Which pixel, in file order.
        index: usize,
        /// Its value.
        value: u32,
    },
}

fn kind_name(kind: ImageKind) -> &'static str {
    pano_image::Type::from(kind).as_str_name()
}

/// The largest pixel value a product's images carry on the wire.
fn max_pixel(dp: DataProduct) -> u32 {
    match dp.bytes_per_pixel() {
        1 => u32::from(u8::MAX),
        _ => u32::from(u16::MAX),
    }
}

impl From<ImageKind> for pano_image::Type {
    fn from(kind: ImageKind) -> Self {
        match kind {
            ImageKind::Movie => pano_image::Type::Movie,
            ImageKind::PulseHeight => pano_image::Type::PulseHeight,
        }
    }
}

impl TryFrom<pano_image::Type> for ImageKind {
    type Error = MappingError;

    fn try_from(t: pano_image::Type) -> Result<Self, MappingError> {
        match t {
            pano_image::Type::Movie => Ok(ImageKind::Movie),
            pano_image::Type::PulseHeight => Ok(ImageKind::PulseHeight),
            pano_image::Type::Undefined => Err(MappingError::Type(t as i32)),
        }
    }
}

impl PanoImage {
    /// Frame `index` of PFF file `file` (a name, no directory), recorded by
    /// `module`, as the Python server sends it.
    pub fn from_frame(
        module: ModuleId,
        frame: &RawFrame,
        file: &str,
        index: u64,
    ) -> Result<PanoImage, MappingError> {
        let dp = frame.data_product();
        let text = frame
            .header_text()
            .map_err(|e| MappingError::Header(e.to_string()))?;
        let header: Value = serde_json::from_str(text)
            .map_err(|e| MappingError::Header(format!("not JSON: {e}")))?;
        let image = frame.image();
        // Little-endian 2-byte pixels read as u16 are already the bit
        // pattern the wire wants, signed or not.
        let image_array: Vec<u32> = match dp.bytes_per_pixel() {
            1 => image.iter().map(|&p| u32::from(p)).collect(),
            _ => image
                .chunks_exact(2)
                .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        };
        let mut p = PanoImage::of_product(dp, image_array);
        // A frame's header starts with `{`, so it parsed as an object.
        p.header = Some(json_to_struct(header).unwrap_or_default());
        p.file = file.to_string();
        p.frame_number = u32::try_from(index).unwrap_or(u32::MAX);
        p.module_id = module.get();
        Ok(p)
    }

    /// The module that recorded it (every `u32` is a module id).
    pub fn module(&self) -> ModuleId {
        ModuleId::new(self.module_id)
    }

    /// An image of `dp` with these pixels, its header a JSON object (any
    /// other JSON means no header).
    pub fn from_pixels(dp: DataProduct, header: Value, pixels: &Pixels) -> PanoImage {
        let image_array = match pixels {
            Pixels::U8(v) => v.iter().map(|&x| u32::from(x)).collect(),
            Pixels::U16(v) => v.iter().map(|&x| u32::from(x)).collect(),
            Pixels::I16(v) => v.iter().map(|&x| u32::from(x as u16)).collect(),
        };
        let mut p = PanoImage::of_product(dp, image_array);
        p.header = json_to_struct(header);
        p
    }

    fn of_product(dp: DataProduct, image_array: Vec<u32>) -> PanoImage {
        let [rows, cols] = dp.shape();
        let mut p = PanoImage {
            image_array,
            shape: vec![rows as u32, cols as u32],
            bytes_per_pixel: dp.bytes_per_pixel() as i32,
            ..Default::default()
        };
        p.set_type(dp.kind().into());
        p
    }

    /// The header as JSON: integral numbers become JSON integers again, as
    /// they were in the PFF header; no header is `Null`.
    pub fn header_json(&self) -> Value {
        self.header.as_ref().map_or(Value::Null, struct_to_json)
    }
}

/// Which of the four data products an image is; an error says what does
/// not match.
/// The data product of an image's `type`, `shape` and `bytes_per_pixel`
/// (pixels not checked).
pub(crate) fn product_of(
    r#type: i32,
    shape: &[u32],
    bytes_per_pixel: i32,
) -> Result<DataProduct, MappingError> {
    let kind = pano_image::Type::try_from(r#type)
        .map_err(|_| MappingError::Type(r#type))
        .and_then(ImageKind::try_from)?;
    let [rows, cols] = shape[..] else {
        return Err(MappingError::Shape(shape.to_vec()));
    };
    let bpp = usize::try_from(bytes_per_pixel).unwrap_or(0);
    DataProduct::from_image(kind, [rows as usize, cols as usize], bpp).ok_or(
        MappingError::NoDataProduct {
            kind,
            shape: [rows, cols],
            bytes_per_pixel,
        },
    )
}

impl TryFrom<&PanoImage> for DataProduct {
    type Error = MappingError;

    fn try_from(p: &PanoImage) -> Result<Self, MappingError> {
        let dp = product_of(p.r#type, &p.shape, p.bytes_per_pixel)?;
        if p.image_array.len() != dp.pixels() {
            return Err(MappingError::PixelCount {
                data_product: dp,
                got: p.image_array.len(),
            });
        }
        let max = max_pixel(dp);
        if let Some(index) = p.image_array.iter().position(|&v| v > max) {
            return Err(MappingError::PixelRange {
                data_product: dp,
                index,
                value: p.image_array[index],
            });
        }
        Ok(dp)
    }
}

/// The pixels, typed as the data product stores them.
impl TryFrom<&PanoImage> for Pixels {
    type Error = MappingError;

    fn try_from(p: &PanoImage) -> Result<Self, MappingError> {
        let v = &p.image_array;
        // In range: the product check refuses pixels wider than its bytes.
        Ok(match DataProduct::try_from(p)? {
            DataProduct::Img8 => Pixels::U8(v.iter().map(|&x| x as u8).collect()),
            DataProduct::Img16 => Pixels::U16(v.iter().map(|&x| x as u16).collect()),
            DataProduct::Ph256 | DataProduct::Ph1024 => {
                Pixels::I16(v.iter().map(|&x| x as u16 as i16).collect())
            }
        })
    }
}

/// Back to a PFF frame: the header (which must hold the quabo stamps a PFF
/// header has) and the pixels. The header text is the JSON of the
/// `Struct`, not Hashpipe's fixed-width layout.
impl TryFrom<&PanoImage> for pff::Frame {
    type Error = MappingError;

    fn try_from(p: &PanoImage) -> Result<Self, MappingError> {
        let pixels = Pixels::try_from(p)?;
        let text = p.header_json().to_string();
        let header = pff::Header::parse(&text).map_err(|e| MappingError::Header(e.to_string()))?;
        Ok(pff::Frame { header, pixels })
    }
}

/// A JSON object as a `google.protobuf.Struct`, numbers as doubles (as
/// protobuf's own JSON mapping does); `None` for JSON that is not an
/// object.
pub fn json_to_struct(json: Value) -> Option<Struct> {
    match json {
        Value::Object(m) => Some(Struct {
            fields: m.into_iter().map(|(k, v)| (k, json_to_pb(v))).collect(),
        }),
        _ => None,
    }
}

fn json_to_pb(json: Value) -> PbValue {
    let kind = match json {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => Kind::ListValue(ListValue {
            values: a.into_iter().map(json_to_pb).collect(),
        }),
        Value::Object(o) => Kind::StructValue(Struct {
            fields: o.into_iter().map(|(k, v)| (k, json_to_pb(v))).collect(),
        }),
    };
    PbValue { kind: Some(kind) }
}

/// A `google.protobuf.Struct` as a JSON object. Struct numbers are
/// doubles; integral ones become JSON integers again, as they were in the
/// PFF header.
pub fn struct_to_json(s: &Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), pb_to_json(v)))
            .collect::<Map<_, _>>(),
    )
}

fn pb_to_json(v: &PbValue) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => {
            // Below 2^53 a double holds every integer exactly. (At the
            // bound itself both arms give the exact value; `<=` would only
            // spell it without ".0": an equivalent mutant.)
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Value::Number(Number::from(*n as i64))
            } else {
                Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(pb_to_json).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pano_image::Type::{Movie, PulseHeight, Undefined};

    /// An image's module is its `module_id`, whatever the number (an
    /// upload's module decides which streams get it).
    #[test]
    fn an_image_s_module_is_its_module_id() {
        for id in [0, 7, 254, u32::MAX] {
            let image = PanoImage {
                module_id: id,
                ..PanoImage::default()
            };
            assert_eq!(image.module(), pff::ModuleId::new(id));
        }
    }

    /// Every real PFF file to test (the fixtures, and the full-size shared
    /// samples when present), open, with its module and name.
    fn samples() -> Vec<(pff::PffFile, u32, String)> {
        testdata::samples()
            .into_iter()
            .map(|s| {
                let file = pff::PffFile::open(&s.path).unwrap();
                (file, s.module, s.file_name().to_string())
            })
            .collect()
    }

    fn image(kind: pano_image::Type, shape: [u32; 2], bpp: i32, pixels: usize) -> PanoImage {
        PanoImage {
            r#type: kind as i32,
            shape: shape.to_vec(),
            bytes_per_pixel: bpp,
            image_array: vec![1; pixels],
            ..Default::default()
        }
    }

    #[test]
    fn real_frames_of_every_product_go_out_and_come_back_whole() {
        let samples = samples();
        for dp in DataProduct::ALL {
            assert!(
                samples.iter().any(|(f, ..)| f.data_product() == dp),
                "no {dp} sample"
            );
        }
        for (file, module, name) in samples {
            let dp = file.data_product();
            let n = file.layout().unwrap().frames;
            for index in [0, n / 2, n - 1] {
                let raw = file.read_raw(index).unwrap();
                let wire = PanoImage::from_frame(module.into(), &raw, &name, index).unwrap();
                assert_eq!(wire.r#type(), dp.kind().into(), "{dp}");
                assert_eq!(wire.shape, dp.shape().map(|s| s as u32), "{dp}");
                assert_eq!(wire.bytes_per_pixel as usize, dp.bytes_per_pixel());
                assert_eq!((wire.module_id, wire.frame_number), (module, index as u32));
                assert_eq!(wire.file, name);
                assert_eq!(DataProduct::try_from(&wire), Ok(dp));

                let original = raw.parse().unwrap();
                let back = pff::Frame::try_from(&wire).unwrap();
                assert_eq!(back.pixels, original.pixels, "{dp} frame {index}");
                assert_eq!(back.header.to_json(), original.header.to_json());
                assert_eq!(back.header.timing_quabo(), original.header.timing_quabo());
                assert_eq!(wire.header_json(), original.header.to_json());

                let again = PanoImage::from_pixels(dp, original.header.to_json(), &original.pixels);
                assert_eq!(again.image_array, wire.image_array, "{dp}");
                assert_eq!(again.header, wire.header);
            }
        }
    }

    #[test]
    fn negative_pulse_heights_travel_as_u16_bit_patterns() {
        let (file, module, _) = samples()
            .into_iter()
            .find(|(f, ..)| f.data_product() == DataProduct::Ph256)
            .unwrap();
        let (index, raw, values) = (0..file.layout().unwrap().frames)
            .find_map(|i| {
                let raw = file.read_raw(i).unwrap();
                match raw.parse().unwrap().pixels {
                    Pixels::I16(v) if v.iter().any(|&p| p < 0) => Some((i, raw, v)),
                    _ => None,
                }
            })
            .expect("the ph256 fixture has a negative pulse height");
        let wire = PanoImage::from_frame(module.into(), &raw, "f.pff", index).unwrap();
        for (&sent, &value) in wire.image_array.iter().zip(&values) {
            assert_eq!(sent, u32::from(value as u16));
        }
        let negative = values.iter().position(|&v| v < 0).unwrap();
        assert!(wire.image_array[negative] > 32767);
        assert_eq!(Pixels::try_from(&wire), Ok(Pixels::I16(values.clone())));

        let mut made = values.clone();
        made[0] = -3;
        let wire = PanoImage::from_pixels(DataProduct::Ph256, Value::Null, &Pixels::I16(made));
        assert_eq!(wire.image_array[0], 65533, "-3 travels as 65533");
        assert_eq!(wire.header, None);
    }

    #[test]
    fn uploads_must_be_one_of_the_four_products() {
        let product = |p: &PanoImage| DataProduct::try_from(p);
        assert_eq!(
            product(&image(Movie, [32, 32], 2, 1024)),
            Ok(DataProduct::Img16)
        );
        assert_eq!(
            product(&image(Movie, [32, 32], 1, 1024)),
            Ok(DataProduct::Img8)
        );
        assert_eq!(
            product(&image(PulseHeight, [16, 16], 2, 256)),
            Ok(DataProduct::Ph256)
        );
        assert_eq!(
            product(&image(PulseHeight, [32, 32], 2, 1024)),
            Ok(DataProduct::Ph1024)
        );
        assert!(product(&image(Movie, [16, 16], 2, 256)).is_err());
        assert!(product(&image(Undefined, [32, 32], 2, 1024)).is_err());
        assert!(product(&image(Movie, [32, 32], 2, 1000)).is_err());
        let mut big = image(Movie, [32, 32], 1, 1024);
        big.image_array[5] = 256;
        assert!(product(&big).unwrap_err().to_string().contains("pixel 5"));
    }

    #[test]
    fn every_malformed_image_is_refused_with_what_is_wrong() {
        let product = |p: &PanoImage| DataProduct::try_from(p).unwrap_err();
        let ok = image(PulseHeight, [16, 16], 2, 256);

        let undefined = image(Undefined, [16, 16], 2, 256);
        assert_eq!(product(&undefined), MappingError::Type(0));
        let out_of_enum = PanoImage {
            r#type: 7,
            ..ok.clone()
        };
        assert_eq!(product(&out_of_enum), MappingError::Type(7));
        assert!(product(&out_of_enum).to_string().contains("type 7"));

        for shape in [vec![], vec![256], vec![16, 16, 1]] {
            let p = PanoImage {
                shape: shape.clone(),
                ..ok.clone()
            };
            assert_eq!(product(&p), MappingError::Shape(shape));
        }

        // Each of kind, shape and bytes per pixel off by itself.
        for (kind, shape, bpp) in [
            (Movie, [16, 16], 2),
            (PulseHeight, [32, 32], 1),
            (PulseHeight, [16, 16], 1),
            (PulseHeight, [16, 32], 2),
            (Movie, [32, 32], 4),
            (Movie, [32, 32], 0),
            (Movie, [32, 32], -2),
            (Movie, [u32::MAX, u32::MAX], 2),
        ] {
            let err = product(&image(kind, shape, bpp, 1024));
            assert_eq!(
                err,
                MappingError::NoDataProduct {
                    kind: ImageKind::try_from(kind).unwrap(),
                    shape,
                    bytes_per_pixel: bpp
                }
            );
            assert!(
                err.to_string().contains("no PANOSETI data product"),
                "{err}"
            );
            // The message names the kind as the wire does.
            assert!(err.to_string().starts_with(kind.as_str_name()), "{err}");
        }

        for n in [0, 255, 257, 1024] {
            let err = product(&image(PulseHeight, [16, 16], 2, n));
            assert_eq!(
                err,
                MappingError::PixelCount {
                    data_product: DataProduct::Ph256,
                    got: n
                }
            );
            assert!(err.to_string().contains(&format!("{n} pixels")), "{err}");
        }

        for (dp, kind, shape, bpp, too_big, max) in [
            (DataProduct::Img8, Movie, [32, 32], 1, 256, 255),
            (DataProduct::Img16, Movie, [32, 32], 2, 65536, 65535),
            (
                DataProduct::Ph1024,
                PulseHeight,
                [32, 32],
                2,
                u32::MAX,
                65535,
            ),
        ] {
            let mut p = image(kind, shape, bpp, dp.pixels());
            p.image_array[dp.pixels() - 1] = too_big;
            let err = product(&p);
            assert_eq!(
                err,
                MappingError::PixelRange {
                    data_product: dp,
                    index: dp.pixels() - 1,
                    value: too_big
                }
            );
            p.image_array[dp.pixels() - 1] = max;
            assert_eq!(DataProduct::try_from(&p), Ok(dp));
        }
        assert_eq!(Pixels::try_from(&out_of_enum), Err(MappingError::Type(7)));
    }

    #[test]
    fn a_header_without_stamps_is_no_pff_frame() {
        let mut p = image(Movie, [32, 32], 1, 1024);
        p.header = json_to_struct(serde_json::json!({"note": "made up"}));
        assert!(matches!(
            pff::Frame::try_from(&p),
            Err(MappingError::Header(_))
        ));
        p.header = None;
        assert!(matches!(
            pff::Frame::try_from(&p),
            Err(MappingError::Header(_))
        ));
    }

    #[test]
    fn headers_become_structs_of_numbers() {
        let s =
            json_to_struct(serde_json::json!({"quabo_0": {"pkt_num": 5}, "tv_sec": 7})).unwrap();
        assert_eq!(
            s.fields["tv_sec"].kind,
            Some(prost_types::value::Kind::NumberValue(7.0))
        );
        assert!(matches!(
            s.fields["quabo_0"].kind,
            Some(prost_types::value::Kind::StructValue(_))
        ));
    }

    #[test]
    fn json_survives_the_struct_round_trip() {
        let json = serde_json::json!({
            "tv_sec": 1_721_882_086i64, "neg": -5, "half": 0.5, "big": 1.0e16,
            "s": "x", "b": true, "n": null, "list": [1, "two", [3.5]],
            "nested": {"quabo_0": {"pkt_nsec": 288_621_037}},
        });
        let back = struct_to_json(&json_to_struct(json.clone()).unwrap());
        assert_eq!(back, json);
        assert_eq!(json_to_struct(serde_json::json!([1, 2])), None);
        assert_eq!(json_to_struct(Value::Null), None);
        // NaN has no JSON form.
        let nan = Struct {
            fields: [(
                "x".to_string(),
                PbValue {
                    kind: Some(Kind::NumberValue(f64::NAN)),
                },
            )]
            .into_iter()
            .collect(),
        };
        assert_eq!(struct_to_json(&nan), serde_json::json!({"x": null}));
    }

    #[test]
    fn kinds_map_to_types_and_back() {
        for kind in [ImageKind::Movie, ImageKind::PulseHeight] {
            assert_eq!(ImageKind::try_from(pano_image::Type::from(kind)), Ok(kind));
        }
        assert_eq!(pano_image::Type::from(ImageKind::Movie), Movie);
        assert_eq!(pano_image::Type::from(ImageKind::PulseHeight), PulseHeight);
        assert_eq!(ImageKind::try_from(Undefined), Err(MappingError::Type(0)));
    }
}
