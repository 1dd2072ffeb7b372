//! One frame: a JSON header, the byte `*`, then the image, little-endian.

use std::fmt::Write as _;

use serde::Deserialize;

use crate::time::{self, node_unix_time, wr_unix_time};
use crate::{DataProduct, Error, ImageKind, Result};

/// Headers are a few hundred bytes; anything this long without the end
/// marker is not a PFF header, and searching on would only waste time.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The header's end: a blank line, then the image marker. A header's
/// length ([`header_len`]) includes it; its text does not.
pub const HEADER_END: &[u8] = b"\n\n*";

/// One quabo's packet stamps, as Hashpipe writes them in every header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Quabo {
    /// Packet counter of the quabo.
    pub pkt_num: u32,
    /// Low 10 bits of White Rabbit TAI seconds.
    pub pkt_tai: u32,
    /// White Rabbit nanoseconds.
    pub pkt_nsec: u32,
    /// DAQ node seconds (Unix).
    pub tv_sec: i64,
    /// DAQ node microseconds.
    pub tv_usec: u32,
}

impl Quabo {
    /// The DAQ node's arrival time, Unix seconds.
    pub fn node_time(&self) -> f64 {
        node_unix_time(self.tv_sec, self.tv_usec)
    }

    /// The White Rabbit time as Unix `(seconds, nanoseconds)`.
    pub fn wr_time(&self) -> Result<(i64, u32)> {
        wr_unix_time(self.pkt_tai, self.pkt_nsec, self.tv_sec)
    }

    /// Seconds from the node's stamp to now ([`time::age`]).
    pub fn age(&self) -> f64 {
        time::age(self.node_time())
    }

    /// This quabo with both clocks stamped now, its packet counter kept:
    /// what a simulator writes so readers see a live frame.
    pub fn stamped_now(self) -> Quabo {
        let (tv_sec, tv_usec) = time::node_now();
        Quabo {
            tv_sec,
            tv_usec,
            pkt_tai: time::pkt_tai(tv_sec),
            pkt_nsec: tv_usec * 1000,
            ..self
        }
    }

    /// Appends the fields with Hashpipe's fixed widths.
    fn write_fields(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "\"pkt_num\": {:10}, \"pkt_tai\": {:4}, \"pkt_nsec\": {:9}, \"tv_sec\": {:10}, \"tv_usec\": {:6}}}",
            self.pkt_num, self.pkt_tai, self.pkt_nsec, self.tv_sec, self.tv_usec
        );
    }
}

/// The typed fields of any header layout; unknown fields are ignored.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct HeaderFields {
    pub(crate) quabo_num: Option<u8>,
    pub(crate) pkt_num: Option<u32>,
    pub(crate) pkt_tai: Option<u32>,
    pub(crate) pkt_nsec: Option<u32>,
    pub(crate) tv_sec: Option<i64>,
    pub(crate) tv_usec: Option<u32>,
    pub(crate) quabo_0: Option<Quabo>,
    pub(crate) quabo_1: Option<Quabo>,
    pub(crate) quabo_2: Option<Quabo>,
    pub(crate) quabo_3: Option<Quabo>,
}

/// A frame header: its text as written, and its quabo stamps.
///
/// Movie and ph1024 headers hold `quabo_0`..`quabo_3`; a ph256 header holds
/// one quabo's fields flat, with `quabo_num` saying which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    text: String,
    quabo_num: Option<u8>,
    quabos: [Option<Quabo>; 4],
}

impl Header {
    /// Parses header text (without the trailing blank line and `*`).
    pub fn parse(text: &str) -> Result<Self> {
        let f = match crate::header_scan::fields(text) {
            Some(f) => f,
            // Through a `Value`, which refuses what the header's readers
            // could not hold (a number beyond f64, such as 1e21882092, even
            // under a key the stamps ignore), so that every parsed header
            // is JSON to them too (`to_json`, the wire's Struct).
            None => serde_json::from_str::<serde_json::Value>(text)
                .and_then(HeaderFields::deserialize)
                .map_err(|e| Error::format(0, format!("header is not the expected JSON: {e}")))?,
        };
        let mut quabos = [f.quabo_0, f.quabo_1, f.quabo_2, f.quabo_3];
        let mut quabo_num = None;
        if quabos.iter().all(Option::is_none) {
            let flat = (f.pkt_num, f.pkt_tai, f.pkt_nsec, f.tv_sec, f.tv_usec);
            let (Some(pkt_num), Some(pkt_tai), Some(pkt_nsec), Some(tv_sec), Some(tv_usec)) = flat
            else {
                return Err(Error::format(
                    0,
                    "header has neither quabo_0..quabo_3 nor pkt_num, pkt_tai, pkt_nsec, tv_sec, tv_usec",
                ));
            };
            let n = f.quabo_num.unwrap_or(0);
            let slot = quabos
                .get_mut(usize::from(n))
                .ok_or_else(|| Error::format(0, format!("quabo_num {n} is not 0..3")))?;
            *slot = Some(Quabo {
                pkt_num,
                pkt_tai,
                pkt_nsec,
                tv_sec,
                tv_usec,
            });
            quabo_num = Some(n);
        }
        Ok(Header {
            text: text.to_string(),
            quabo_num,
            quabos,
        })
    }

    /// A movie (or ph1024) header, formatted exactly as Hashpipe does.
    pub fn new_module(quabos: [Quabo; 4]) -> Self {
        let mut text = String::with_capacity(490);
        text.push_str("{\n");
        for (i, q) in quabos.iter().enumerate() {
            if i > 0 {
                text.push_str(", \n");
            }
            let _ = write!(text, "   \"quabo_{i}\": {{ ");
            q.write_fields(&mut text);
        }
        text.push_str("\n}");
        Header {
            text,
            quabo_num: None,
            quabos: quabos.map(Some),
        }
    }

    /// A ph256 header for one quabo, formatted exactly as Hashpipe does.
    pub fn new_quabo(quabo_num: u8, quabo: Quabo) -> Self {
        let mut text = String::with_capacity(122);
        let _ = write!(text, "{{ \"quabo_num\": {quabo_num}, ");
        quabo.write_fields(&mut text);
        let mut quabos = [None; 4];
        quabos[usize::from(quabo_num & 3)] = Some(quabo);
        Header {
            text,
            quabo_num: Some(quabo_num),
            quabos,
        }
    }

    /// The same layout with every quabo's stamps changed by `f`; the widths
    /// stay fixed, so the frame keeps its size.
    pub fn map_quabos(&self, mut f: impl FnMut(Quabo) -> Quabo) -> Self {
        match self.quabo_num() {
            Some(n) => Header::new_quabo(n, f(self.quabos[usize::from(n & 3)].unwrap_or_default())),
            None => Header::new_module(self.quabos.map(|q| f(q.unwrap_or_default()))),
        }
    }

    /// The text as written in the file.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The header as a JSON value (what the gRPC `header` Struct carries).
    pub fn to_json(&self) -> serde_json::Value {
        // The text parsed as JSON in `parse` (or was made here), so this
        // cannot fail; Null is only a guard.
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }

    /// Quabo `n` (0..3), where the header has it.
    pub fn quabo(&self, n: usize) -> Option<&Quabo> {
        self.quabos.get(n).and_then(Option::as_ref)
    }

    /// For a single-quabo (ph256) header, which quabo it is.
    pub fn quabo_num(&self) -> Option<u8> {
        self.quabo_num
    }

    /// The quabo whose stamps time the frame: `quabo_0` of a module
    /// header, the one quabo of a ph256 event (see [`timing_quabo_of`]).
    pub fn timing_quabo(&self) -> Option<&Quabo> {
        self.quabo(usize::from(self.quabo_num.unwrap_or(0) & 3))
    }
}

/// The key of the quabo whose stamps time a module (movie, ph1024) frame.
pub const TIMING_QUABO: &str = "quabo_0";

/// The timing quabo's fields in a header held as a map (JSON, a protobuf
/// `Struct`): its [`TIMING_QUABO`] object when it has one, else the header
/// itself, whose flat fields are a ph256 event's one quabo. `field` looks
/// a key up as a nested map. [`Header::timing_quabo`] is the same rule on
/// a parsed header.
pub fn timing_quabo_of<'a, M: ?Sized>(
    header: &'a M,
    field: impl FnOnce(&'a M, &str) -> Option<&'a M>,
) -> &'a M {
    field(header, TIMING_QUABO).unwrap_or(header)
}

/// An image's pixels, typed as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pixels {
    /// img8.
    U8(Vec<u8>),
    /// img16.
    U16(Vec<u16>),
    /// ph256, ph1024 (baseline-subtracted, so signed).
    I16(Vec<i16>),
}

impl Pixels {
    /// Decodes a little-endian image of `dp`. `bytes` must be exactly
    /// `dp.image_bytes()` long.
    pub fn from_le_bytes(dp: DataProduct, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != dp.image_bytes() {
            return Err(Error::format(
                0,
                format!(
                    "{dp} image needs {} bytes, got {}",
                    dp.image_bytes(),
                    bytes.len()
                ),
            ));
        }
        Ok(match dp {
            DataProduct::Img8 => Pixels::U8(bytes.to_vec()),
            DataProduct::Img16 => Pixels::U16(decode_le(bytes, u16::from_le_bytes)),
            DataProduct::Ph256 | DataProduct::Ph1024 => {
                Pixels::I16(decode_le(bytes, i16::from_le_bytes))
            }
        })
    }

    /// The image as stored in a file.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Pixels::U8(v) => v.clone(),
            Pixels::U16(v) => v.iter().flat_map(|p| p.to_le_bytes()).collect(),
            Pixels::I16(v) => v.iter().flat_map(|p| p.to_le_bytes()).collect(),
        }
    }

    /// Number of pixels.
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::U16(v) => v.len(),
            Pixels::I16(v) => v.len(),
        }
    }

    /// True for an image with no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixel `i` as a number, for statistics and display.
    pub fn value(&self, i: usize) -> Option<f64> {
        match self {
            Pixels::U8(v) => v.get(i).map(|&p| f64::from(p)),
            Pixels::U16(v) => v.get(i).map(|&p| f64::from(p)),
            Pixels::I16(v) => v.get(i).map(|&p| f64::from(p)),
        }
    }

    /// All pixels as numbers.
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.len()).filter_map(|i| self.value(i))
    }
}

/// Decodes 2-byte little-endian values into a vector filled in place, a
/// loop the compiler turns into vector moves (a `collect` over pairs does
/// not, and was a quarter of a frame's parse time).
fn decode_le<T: Copy + Default>(bytes: &[u8], from: fn([u8; 2]) -> T) -> Vec<T> {
    let mut out = vec![T::default(); bytes.len() / 2];
    for (value, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *value = from([pair[0], pair[1]]);
    }
    out
}

/// Bytes of one frame, checked to be whole and aligned but not parsed.
///
/// This is what a tracker reads and passes on: checking costs a few byte
/// compares, and parsing can wait until someone wants the pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    bytes: Vec<u8>,
    header_len: usize,
    dp: DataProduct,
}

impl RawFrame {
    /// Checks that `bytes` is exactly one frame of `dp`: a `{`, a header
    /// ending in a blank line and `*`, then one image.
    pub fn new(bytes: Vec<u8>, dp: DataProduct) -> Result<Self> {
        let header_len = header_len(&bytes)?;
        let want = header_len + dp.image_bytes();
        if bytes.len() != want {
            return Err(Error::format(
                bytes.len().min(want) as u64,
                format!(
                    "{dp} frame with a {header_len}-byte header is {want} bytes, got {}",
                    bytes.len()
                ),
            ));
        }
        Ok(RawFrame {
            bytes,
            header_len,
            dp,
        })
    }

    /// Like [`RawFrame::new`] for a frame whose header length is already
    /// known (all frames of a file share it): a torn or misaligned frame
    /// fails here, without a search.
    pub fn with_header_len(bytes: Vec<u8>, dp: DataProduct, header_len: usize) -> Result<Self> {
        let ok = header_len.checked_add(dp.image_bytes()) == Some(bytes.len())
            // `>=` here is equivalent: a 3-byte header would have to be
            // HEADER_END itself, which does not start with `{`.
            && header_len > HEADER_END.len()
            && bytes.first() == Some(&b'{')
            && bytes.get(header_len - HEADER_END.len()..header_len) == Some(HEADER_END);
        if !ok {
            return Err(Error::format(
                0,
                format!(
                    "not a whole {dp} frame with a {header_len}-byte header (torn, or misaligned)"
                ),
            ));
        }
        Ok(RawFrame {
            bytes,
            header_len,
            dp,
        })
    }

    /// The data product.
    pub fn data_product(&self) -> DataProduct {
        self.dp
    }

    /// The whole frame as in the file.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Header bytes including the blank line and `*`.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The header text, without the blank line and `*`.
    pub fn header_text(&self) -> Result<&str> {
        let raw = &self.bytes[..self.header_len - HEADER_END.len()];
        std::str::from_utf8(raw)
            .map_err(|e| Error::format(e.valid_up_to() as u64, "header is not UTF-8 text"))
    }

    /// The image bytes, little-endian.
    pub fn image(&self) -> &[u8] {
        &self.bytes[self.header_len..]
    }

    /// Parses header and pixels.
    pub fn parse(&self) -> Result<Frame> {
        Ok(Frame {
            header: Header::parse(self.header_text()?)?,
            pixels: Pixels::from_le_bytes(self.dp, self.image())?,
        })
    }
}

/// One frame's bytes as Hashpipe writes them: the header text, a blank
/// line, `*`, then the image (little-endian, `dp.image_bytes()` long).
pub fn frame_bytes(header_text: &str, image: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_text.len() + HEADER_END.len() + image.len());
    append_frame(&mut out, header_text, image);
    out
}

/// Like [`frame_bytes`], appending to `out`: a writer of many frames
/// reuses one buffer.
pub fn append_frame(out: &mut Vec<u8>, header_text: &str, image: &[u8]) {
    out.extend_from_slice(header_text.as_bytes());
    out.extend_from_slice(HEADER_END);
    out.extend_from_slice(image);
}

/// Length of the header at the start of `bytes`, up to and including `*`.
pub fn header_len(bytes: &[u8]) -> Result<usize> {
    match bytes.first() {
        Some(b'{') => {}
        Some(b) => {
            return Err(Error::format(
                0,
                format!("expected '{{' to open a header, found byte {b:#04x}"),
            ))
        }
        None => return Err(Error::format(0, "expected a header, found no bytes")),
    }
    let window = &bytes[..bytes.len().min(MAX_HEADER_BYTES)];
    match find_header_end(window) {
        Some(end) => Ok(end),
        None if bytes.len() >= MAX_HEADER_BYTES => Err(Error::format(
            0,
            format!("no blank line and '*' ending the header within {MAX_HEADER_BYTES} bytes"),
        )),
        None => Err(Error::format(
            bytes.len() as u64,
            "header ends before its blank line and '*' (torn frame)",
        )),
    }
}

/// The end of the first `\n\n*` in `window`, just past the `*`.
///
/// Headers hold no `*`, so the first `*` is nearly always the marker;
/// memchr finds it several times faster than comparing every window.
fn find_header_end(window: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'*', &window[from..]) {
        let star = from + i;
        if star >= 2 && window[star - 2..star] == HEADER_END[..2] {
            return Some(star + 1);
        }
        from = star + 1;
    }
    None
}

/// A parsed frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The JSON header.
    pub header: Header,
    /// The image.
    pub pixels: Pixels,
}

impl Frame {
    /// Parses the frame at the start of `bytes`; returns it and its length.
    pub fn parse(bytes: &[u8], dp: DataProduct) -> Result<(Frame, usize)> {
        let hlen = header_len(bytes)?;
        let len = hlen + dp.image_bytes();
        let Some(frame) = bytes.get(..len) else {
            return Err(Error::format(
                bytes.len() as u64,
                format!(
                    "{dp} frame needs {len} bytes, only {} left (torn frame)",
                    bytes.len()
                ),
            ));
        };
        let text = std::str::from_utf8(&frame[..hlen - HEADER_END.len()])
            .map_err(|e| Error::format(e.valid_up_to() as u64, "header is not UTF-8 text"))?;
        let header = Header::parse(text)?;
        let pixels = Pixels::from_le_bytes(dp, &frame[hlen..])?;
        Ok((Frame { header, pixels }, len))
    }

    /// The frame's bytes as Hashpipe writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        frame_bytes(&self.header.text, &self.pixels.to_le_bytes())
    }

    /// Movie or pulse height, from the pixel type and the header layout.
    pub fn kind(&self) -> ImageKind {
        match self.pixels {
            Pixels::I16(_) => ImageKind::PulseHeight,
            _ => ImageKind::Movie,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PH: &str = r#"{ "quabo_num": 0, "pkt_num":       3444, "pkt_tai":  531, "pkt_nsec": 288621037, "tv_sec": 1721882094, "tv_usec": 288954}"#;

    #[test]
    fn a_quabos_node_time_is_its_seconds_and_microseconds() {
        let q = Quabo {
            tv_sec: 1_721_882_094,
            tv_usec: 288_954,
            ..Quabo::default()
        };
        assert!((q.node_time() - 1_721_882_094.288_954).abs() < 1e-6);
    }

    #[test]
    fn mapping_a_pulse_height_header_keeps_its_own_quabo() {
        for n in 0..4u8 {
            let q = Quabo {
                pkt_num: 100 + u32::from(n),
                ..Quabo::default()
            };
            let header = Header::new_quabo(n, q);
            let mapped = header.map_quabos(|mut q| {
                q.pkt_tai = 7;
                q
            });
            assert_eq!(mapped.quabo_num(), Some(n));
            let got = mapped.quabo(usize::from(n)).copied();
            assert_eq!(
                got.map(|q| (q.pkt_num, q.pkt_tai)),
                Some((100 + u32::from(n), 7))
            );
        }
    }

    #[test]
    fn pixels_read_as_numbers_of_their_own_kind() {
        let ph = Pixels::I16(vec![-3, 0, 4]);
        assert!(!ph.is_empty());
        assert!(Pixels::U8(vec![]).is_empty());
        assert_eq!(ph.value(0), Some(-3.0));
        assert_eq!(ph.value(2), Some(4.0));
        assert_eq!(ph.value(3), None);
        assert_eq!(Pixels::U16(vec![0, 65_535]).value(1), Some(65_535.0));
        assert_eq!(Pixels::U8(vec![200]).value(0), Some(200.0));
        let frame = |pixels| Frame {
            header: Header::new_quabo(0, Quabo::default()),
            pixels,
        };
        assert_eq!(frame(ph).kind(), ImageKind::PulseHeight);
        assert_eq!(frame(Pixels::U16(vec![0; 4])).kind(), ImageKind::Movie);
    }

    #[test]
    fn the_timing_quabo_is_quabo_0_or_a_ph256_events_own() {
        let q = |pkt_num| Quabo {
            pkt_num,
            ..Quabo::default()
        };
        let ph = Header::new_quabo(2, q(7));
        assert_eq!(ph.timing_quabo(), Some(&q(7)));
        let module = Header::new_module([q(0), q(1), q(2), q(3)]);
        assert_eq!(module.timing_quabo(), Some(&q(0)));
        // The same rule on the header as a JSON map.
        let stamp = |h: &Header| {
            let json = h.to_json();
            timing_quabo_of(&json, |h, key| h.get(key))["pkt_num"].clone()
        };
        assert_eq!(stamp(&ph), serde_json::json!(7));
        assert_eq!(stamp(&module), serde_json::json!(0));
    }

    #[test]
    fn a_quabo_stamped_now_keeps_its_counter_and_agrees_with_itself() {
        let q = Quabo {
            pkt_num: 9,
            ..Quabo::default()
        }
        .stamped_now();
        assert_eq!(q.pkt_num, 9);
        // The White Rabbit stamp gives the node's time back, to the
        // microsecond the node's clock has.
        assert_eq!(q.wr_time().unwrap(), (q.tv_sec, q.tv_usec * 1000));
        assert!(q.age() < 3600.0);
        // Age is seconds since the node's stamp (a test run lasts less
        // than ten minutes).
        let age = Quabo {
            tv_sec: q.tv_sec - 3600,
            ..q
        }
        .age();
        assert!((3600.0..4200.0).contains(&age), "{age}");
    }

    #[test]
    fn a_ph256_header_reformats_to_the_same_text() {
        let h = Header::parse(PH).unwrap();
        assert_eq!(h.quabo_num(), Some(0));
        let q = *h.quabo(0).unwrap();
        assert_eq!(q.pkt_num, 3444);
        assert_eq!(Header::new_quabo(0, q).text(), PH);
    }

    #[test]
    fn headers_that_are_not_pff_are_errors() {
        assert!(Header::parse("{}").is_err());
        assert!(Header::parse("not json").is_err());
        assert!(Header::parse(
            r#"{"quabo_num": 9, "pkt_num":1,"pkt_tai":1,"pkt_nsec":1,"tv_sec":1,"tv_usec":1}"#
        )
        .is_err());
    }

    #[test]
    fn a_torn_frame_is_an_error_with_its_offset() {
        let mut bytes = PH.as_bytes().to_vec();
        bytes.extend_from_slice(b"\n\n*");
        bytes.extend_from_slice(&[0; 100]);
        let err = Frame::parse(&bytes, DataProduct::Ph256).unwrap_err();
        assert!(err.to_string().contains("torn"), "{err}");
        bytes.extend_from_slice(&[0; 412]);
        let (frame, len) = Frame::parse(&bytes, DataProduct::Ph256).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(frame.to_bytes(), bytes);
        assert_eq!(frame_bytes(PH, &bytes[len - 512..]), bytes);
        assert!(
            RawFrame::with_header_len(bytes[1..].to_vec(), DataProduct::Ph256, len - 512).is_err()
        );
    }
}
