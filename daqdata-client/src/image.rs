//! A received image, decoded from its `PanoImage`.

use daqdata_proto::daqdata::{pano_image, PanoImage};
use pff::{DataProduct, ImageKind, ModuleId, Pixels, Quabo};
use prost_types::{value::Kind, Struct};
use serde_json::Value;

/// One frame as a viewer needs it: typed pixels, where it came from, and its
/// times.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// The server's host name (the response's `name`), empty for images not
    /// received from a server.
    pub server: String,
    /// Which of the four data products this is.
    pub data_product: DataProduct,
    /// The module that recorded it.
    pub module_id: ModuleId,
    /// The PFF file name it was read from.
    pub file: String,
    /// 0-based index of the frame in that file.
    pub frame_number: u32,
    /// The frame's JSON header, as the server parsed it.
    pub header: Value,
    /// The pixels, row-major, typed as recorded.
    pub pixels: Pixels,
}

impl Image {
    /// Decodes a `PanoImage`; `server` names its sender for messages.
    ///
    /// Pixels travel as uint32; pulse-height (i16) values carry their u16
    /// bit pattern, as the Python server sends them.
    pub fn from_pano_image(server: &str, p: &PanoImage) -> Result<Self, crate::Error> {
        let bad = |e: daqdata_proto::MappingError| crate::Error::BadImage {
            host: server.to_string(),
            reason: format!(
                "{e} (module {}, {} frame {})",
                p.module_id, p.file, p.frame_number
            ),
        };
        let data_product = DataProduct::try_from(p).map_err(bad)?;
        let pixels = Pixels::try_from(p).map_err(bad)?;
        Ok(Image {
            server: server.to_string(),
            data_product,
            module_id: p.module(),
            file: p.file.clone(),
            frame_number: p.frame_number,
            header: p.header_json(),
            pixels,
        })
    }

    /// A frame read from a PFF file, as the server would send it.
    pub fn from_frame(
        data_product: DataProduct,
        frame: &pff::Frame,
        module_id: ModuleId,
        file: &str,
        frame_number: u32,
    ) -> Self {
        Image {
            server: String::new(),
            data_product,
            module_id,
            file: file.to_string(),
            frame_number,
            header: frame.header.to_json(),
            pixels: frame.pixels.clone(),
        }
    }

    /// The `PanoImage` that carries this image (for uploads).
    pub fn to_pano_image(&self) -> PanoImage {
        let mut p = PanoImage::from_pixels(self.data_product, self.header.clone(), &self.pixels);
        p.file = self.file.clone();
        p.frame_number = self.frame_number;
        p.module_id = self.module_id.get();
        p
    }

    /// Movie or pulse height.
    pub fn kind(&self) -> ImageKind {
        self.data_product.kind()
    }

    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        self.data_product.shape()
    }

    /// The quabo whose stamps time this frame: `quabo_0` of a movie frame,
    /// the one quabo of a pulse-height event.
    pub fn stamp(&self) -> Option<Quabo> {
        stamp_of(&self.header)
    }

    /// The DAQ node's clock when the frame arrived, Unix seconds.
    pub fn node_time(&self) -> Option<f64> {
        self.stamp().map(|q| q.node_time())
    }

    /// The White Rabbit time, Unix `(seconds, nanoseconds)`, when the two
    /// clocks agree to within a second.
    pub fn wr_time(&self) -> Option<(i64, u32)> {
        self.stamp().and_then(|q| q.wr_time().ok())
    }

    /// The largest pixel value: what a pulse-height histogram counts.
    pub fn max_pixel(&self) -> f64 {
        self.pixels.values().fold(f64::NEG_INFINITY, f64::max)
    }

    /// One JSON object per image, for scripts (`daqdata --json`).
    pub fn to_json(&self) -> Value {
        let pixels: Vec<Value> = match &self.pixels {
            Pixels::U8(v) => v.iter().map(|&x| x.into()).collect(),
            Pixels::U16(v) => v.iter().map(|&x| x.into()).collect(),
            Pixels::I16(v) => v.iter().map(|&x| x.into()).collect(),
        };
        serde_json::json!({
            "server": self.server,
            "type": pano_image::Type::from(self.kind()).as_str_name(),
            "data_product": self.data_product.name(),
            "module_id": self.module_id.get(),
            "file": self.file,
            "frame_number": self.frame_number,
            "shape": self.shape(),
            "node_time": self.node_time(),
            "wr_time": self.wr_time().map(|(s, ns)| s as f64 + f64::from(ns) * 1e-9),
            "header": self.header,
            "image_array": pixels,
        })
    }
}

/// The timing quabo of a header ([`pff::timing_quabo_of`]).
pub(crate) fn stamp_of(header: &Value) -> Option<Quabo> {
    let q = pff::timing_quabo_of(header, |h, key| h.get(key));
    serde_json::from_value(q.clone()).ok()
}

/// `(tv_sec, tv_usec)` straight from a header `Struct`, without converting
/// the whole header: the load generator does this 20 000 times a second.
pub(crate) fn node_stamp_of_struct(header: &Struct) -> Option<(i64, u32)> {
    let fields = pff::timing_quabo_of(&header.fields, |h, key| {
        match h.get(key).and_then(|v| v.kind.as_ref()) {
            Some(Kind::StructValue(q)) => Some(&q.fields),
            _ => None,
        }
    });
    let num = |k: &str| match fields.get(k).and_then(|v| v.kind.as_ref()) {
        Some(Kind::NumberValue(n)) => Some(*n),
        _ => None,
    };
    Some((num("tv_sec")? as i64, num("tv_usec")? as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movie_quabo(tv_sec: i64) -> Quabo {
        Quabo {
            pkt_num: 7,
            pkt_tai: pff::time::pkt_tai(tv_sec),
            pkt_nsec: 500_000_000,
            tv_sec,
            tv_usec: 250_000,
        }
    }

    #[test]
    fn pulse_height_values_survive_the_u16_bit_pattern() {
        let header = pff::Header::new_quabo(2, movie_quabo(1_721_882_086));
        let mut values = vec![0i16; 256];
        values[0] = -3;
        values[17] = 1200;
        let frame = pff::Frame {
            header,
            pixels: Pixels::I16(values.clone()),
        };
        let image = Image::from_frame(DataProduct::Ph256, &frame, ModuleId::new(3), "f.pff", 9);
        let wire = image.to_pano_image();
        assert_eq!(
            wire.image_array[0], 65533,
            "-3 travels as its u16 bit pattern"
        );
        let back = Image::from_pano_image("daq1", &wire).unwrap();
        assert_eq!(back.pixels, Pixels::I16(values));
        assert_eq!(back.module_id, 3);
        assert_eq!(back.frame_number, 9);
        assert_eq!(back.node_time(), Some(1_721_882_086.25));
        assert_eq!(back.wr_time(), Some((1_721_882_086, 500_000_000)));
        assert_eq!(back.max_pixel(), 1200.0);
        assert_eq!(
            node_stamp_of_struct(wire.header.as_ref().unwrap()),
            Some((1_721_882_086, 250_000))
        );
    }

    #[test]
    fn movie_frames_are_timed_by_quabo_0() {
        let q = movie_quabo(1_721_882_090);
        let later = Quabo {
            tv_sec: q.tv_sec + 5,
            ..q
        };
        let frame = pff::Frame {
            header: pff::Header::new_module([q, later, later, later]),
            pixels: Pixels::U16(vec![5; 1024]),
        };
        let wire = Image::from_frame(DataProduct::Img16, &frame, ModuleId::new(1), "m.pff", 0)
            .to_pano_image();
        let back = Image::from_pano_image("daq1", &wire).unwrap();
        assert_eq!(back.node_time(), Some(1_721_882_090.25));
        assert_eq!(
            back.header["quabo_0"]["tv_sec"],
            serde_json::json!(1_721_882_090)
        );
        assert_eq!(
            node_stamp_of_struct(wire.header.as_ref().unwrap()),
            Some((1_721_882_090, 250_000))
        );
    }

    #[test]
    fn images_that_are_no_data_product_are_refused_with_reasons() {
        let mut p = PanoImage {
            shape: vec![16, 16],
            bytes_per_pixel: 2,
            image_array: vec![0; 255],
            module_id: 4,
            file: "x.pff".into(),
            ..Default::default()
        };
        p.set_type(pano_image::Type::PulseHeight);
        let err = Image::from_pano_image("daq1", &p).unwrap_err().to_string();
        assert!(
            err.contains("255 pixels") && err.contains("module 4"),
            "{err}"
        );
        p.shape = vec![16, 32];
        let err = Image::from_pano_image("daq1", &p).unwrap_err().to_string();
        assert!(err.contains("no PANOSETI data product"), "{err}");
    }
}
