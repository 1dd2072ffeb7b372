//! Hashpipe's socket feed: frames pushed into a unix stream socket, one
//! socket per data product (SPEC §7).
//!
//! A message is a 2-byte big-endian module id, then one PFF frame exactly
//! as in a file: the JSON header (fixed width for a data product), a blank
//! line, `*`, and the image. Messages follow each other on a connection
//! with nothing in between, and the reader gets them in arbitrary pieces.
//!
//! [`SocketDecoder`] takes the bytes as they come ([`SocketDecoder::extend`])
//! and hands out whole messages ([`SocketDecoder::next_message`]) or a
//! [`SocketError`]; after an error the connection's byte stream has lost
//! its framing and should be closed. [`encode_message`] writes one, as
//! Hashpipe's `snapshot.c` does.
//!
//! Where the sockets are is a path template in which `{dp_name}`
//! ([`DP_NAME`]) stands for the data product's name; [`socket_path`] fills
//! it in. Hashpipe connects to [`DEFAULT_SOCKET_TEMPLATE`].
//!
//! ```
//! use pff::{DataProduct, Frame, Header, Pixels, Quabo, SocketDecoder};
//!
//! let frame = Frame {
//!     header: Header::new_quabo(2, Quabo::default()),
//!     pixels: Pixels::I16(vec![-3; 256]),
//! };
//! let message = pff::encode_message(224, &frame.to_bytes());
//! let mut decoder = SocketDecoder::new(DataProduct::Ph256);
//! // The bytes arrive in two pieces: nothing until the second.
//! decoder.extend(&message[..100]);
//! assert!(decoder.next_message()?.is_none());
//! decoder.extend(&message[100..]);
//! let got = decoder.next_message()?.expect("one whole message");
//! assert_eq!((got.module.get(), got.frame.parse()?), (224, frame));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use crate::frame::HEADER_END;
use crate::{DataProduct, Header, ModuleId, RawFrame, UnknownDataProduct};

/// What a socket path template's data product name replaces.
pub const DP_NAME: &str = "{dp_name}";

/// Where Hashpipe's `snapshot.c` connects, and where panoseti-grpc's
/// server listens.
pub const DEFAULT_SOCKET_TEMPLATE: &str = "/tmp/hashpipe_grpc.dp_{dp_name}.sock";

/// The socket of `dp` under `template`.
///
/// ```
/// use pff::{socket_path, DataProduct, DEFAULT_SOCKET_TEMPLATE};
/// assert_eq!(
///     socket_path(DEFAULT_SOCKET_TEMPLATE, DataProduct::Ph256),
///     std::path::Path::new("/tmp/hashpipe_grpc.dp_ph256.sock")
/// );
/// ```
pub fn socket_path(template: &str, dp: DataProduct) -> PathBuf {
    PathBuf::from(template.replace(DP_NAME, dp.name()))
}

/// A template for one socket per data product inside `dir` (a private
/// directory: a simulation's, a test's).
pub fn socket_template_in(dir: &Path) -> String {
    dir.join(format!("hashpipe.dp_{DP_NAME}.sock"))
        .to_string_lossy()
        .into_owned()
}

/// The longest header a socket message may have. Python's asyncio stream
/// reader, which panoseti-grpc reads these sockets with, gives up at 64 KiB;
/// real headers are a few hundred bytes.
pub const MAX_SOCKET_HEADER_BYTES: usize = 64 * 1024;

/// The module id that prefixes every message.
const MODULE_ID_BYTES: usize = 2;

/// One message: which module, and its frame, checked whole and aligned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketMessage {
    /// The module id, from the 2-byte prefix.
    pub module: ModuleId,
    /// The frame as sent.
    pub frame: RawFrame,
    /// Its header, parsed (every message's is, to refuse one that is not
    /// JSON), so a reader need not parse it again for the stamps.
    pub header: Header,
}

/// What is wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocketErrorKind {
    /// No blank line within [`MAX_SOCKET_HEADER_BYTES`] bytes.
    #[error("no blank line ending the header within {MAX_SOCKET_HEADER_BYTES} bytes")]
    HeaderTooLong,
    /// The header is not a PFF JSON header (or does not start with `{`).
    #[error("header is not a PFF JSON header: {0}")]
    NotJson(String),
    /// The byte after the header's blank line is not `*`.
    #[error("expected '*' after the header's blank line, found byte {found:#04x}")]
    MissingStar {
        /// The byte found instead.
        found: u8,
    },
    /// The header's width differs from the first one on this connection;
    /// Hashpipe's are fixed width for a data product, so the stream has
    /// lost its framing.
    #[error("header is not {expected} bytes wide like the first one on this connection (blank line and '*' not where expected)")]
    WrongLength {
        /// The width of the first header, including the blank line and `*`.
        expected: usize,
    },
    /// The socket's data product is not one of the four.
    #[error(transparent)]
    UnknownDataProduct(#[from] UnknownDataProduct),
}

/// A malformed message, at a byte offset of the connection's stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{dp} message at byte {offset}: {kind}")]
pub struct SocketError {
    /// The data product the socket carries (its name, as configured).
    pub dp: String,
    /// Where the message starts, counted from the connection's first byte.
    pub offset: u64,
    /// What is wrong.
    pub kind: SocketErrorKind,
}

/// Cuts a connection's byte stream into messages of one data product.
#[derive(Debug)]
pub struct SocketDecoder {
    dp: DataProduct,
    buf: Vec<u8>,
    /// Where the next message starts in `buf`.
    start: usize,
    /// Bytes dropped from the front of `buf` so far.
    consumed: u64,
    /// The header width (through `*`) of the first frame: Hashpipe's
    /// headers are fixed width, so later frames are checked, not searched.
    header_len: Option<usize>,
    /// How far into the current header the blank line was searched.
    searched: usize,
}

impl SocketDecoder {
    /// A decoder for a socket carrying `dp`.
    pub fn new(dp: DataProduct) -> Self {
        SocketDecoder {
            dp,
            buf: Vec::new(),
            start: 0,
            consumed: 0,
            header_len: None,
            searched: 0,
        }
    }

    /// A decoder for the data product named `name` (`img16`, ...), as a
    /// socket path template names it.
    pub fn for_name(name: &str) -> Result<Self, SocketError> {
        name.parse::<DataProduct>()
            .map(Self::new)
            .map_err(|e| SocketError {
                dp: name.to_string(),
                offset: 0,
                kind: e.into(),
            })
    }

    /// The data product.
    pub fn data_product(&self) -> DataProduct {
        self.dp
    }

    /// Appends bytes as they were read.
    pub fn extend(&mut self, bytes: &[u8]) {
        // Drop what earlier messages used, once it is most of the buffer,
        // so the buffer stays about one message long. (Mutants of this
        // line that only change when it compacts are equivalent: `>= 0`
        // and `||` drain nothing when start is 0; `% 2` compacts more often,
        // which costs copies but hands out the same messages.)
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.consumed += self.start as u64;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet handed out as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole message, `None` until more bytes arrive, or why the
    /// stream is not Hashpipe's. After an error, close the connection.
    pub fn next_message(&mut self) -> Result<Option<SocketMessage>, SocketError> {
        let rest = &self.buf[self.start..];
        if rest.len() <= MODULE_ID_BYTES {
            return Ok(None);
        }
        let opening = rest[MODULE_ID_BYTES];
        if opening != b'{' {
            return Err(self.error(SocketErrorKind::NotJson(format!(
                "expected '{{' to open the header, found byte {opening:#04x}"
            ))));
        }
        let header_len = match self.header_len {
            Some(len) => {
                let body = &rest[MODULE_ID_BYTES..];
                // Enough bytes to see where this header's end must be.
                // (`<=` for `<` waits at a header with no image byte yet,
                // where the image check below would wait too: equivalent.)
                if body.len() < len {
                    return Ok(None);
                }
                if body[len - HEADER_END.len()..len] != *HEADER_END {
                    return Err(self.error(SocketErrorKind::WrongLength { expected: len }));
                }
                len
            }
            None => match self.find_header_end()? {
                Some(len) => len,
                None => return Ok(None),
            },
        };
        let rest = &self.buf[self.start..];
        let module = ModuleId::new(u32::from(u16::from_be_bytes([rest[0], rest[1]])));
        let body = &rest[MODULE_ID_BYTES..];
        let frame_len = header_len + self.dp.image_bytes();
        if body.len() < frame_len {
            return Ok(None);
        }
        let bytes = body[..frame_len].to_vec();
        let frame = RawFrame::with_header_len(bytes, self.dp, header_len)
            .map_err(|e| self.error(SocketErrorKind::NotJson(e.to_string())))?;
        let parsed = frame
            .header_text()
            .map_err(|e| e.to_string())
            .and_then(|text| Header::parse(text).map_err(|e| e.to_string()));
        let header = parsed.map_err(|why| self.error(SocketErrorKind::NotJson(why)))?;
        self.header_len = Some(header_len);
        self.searched = 0;
        self.start += MODULE_ID_BYTES + frame_len;
        Ok(Some(SocketMessage {
            module,
            frame,
            header,
        }))
    }

    /// The first frame's header end (just past `*`): the first blank line,
    /// which must be followed by `*`. `None` until it has arrived.
    fn find_header_end(&mut self) -> Result<Option<usize>, SocketError> {
        let body = &self.buf[self.start + MODULE_ID_BYTES..];
        let window = &body[..body.len().min(MAX_SOCKET_HEADER_BYTES)];
        // Search on from where the last piece ended (less one byte: the
        // blank line may straddle the pieces).
        let from = self.searched.saturating_sub(1);
        let blank = &HEADER_END[..2];
        match memchr::memmem::find(&window[from..], blank) {
            Some(i) => {
                let star = from + i + blank.len();
                match body.get(star) {
                    None => Ok(None),
                    Some(b'*') => Ok(Some(star + 1)),
                    Some(&found) => Err(self.error(SocketErrorKind::MissingStar { found })),
                }
            }
            None if window.len() >= MAX_SOCKET_HEADER_BYTES => {
                Err(self.error(SocketErrorKind::HeaderTooLong))
            }
            None => {
                self.searched = window.len();
                Ok(None)
            }
        }
    }

    fn error(&self, kind: SocketErrorKind) -> SocketError {
        SocketError {
            dp: self.dp.name().to_string(),
            offset: self.consumed + self.start as u64,
            kind,
        }
    }
}

/// One message as Hashpipe sends it: `module` big-endian, then `frame`
/// (a whole PFF frame, as [`crate::Frame::to_bytes`] or a file holds it).
pub fn encode_message(module: u16, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MODULE_ID_BYTES + frame.len());
    push_message_prefix(&mut out, module);
    out.extend_from_slice(frame);
    out
}

/// Appends what precedes the frame in a message: `module`, big-endian. For
/// senders that reuse one buffer; the frame's bytes must follow at once.
pub fn push_message_prefix(buf: &mut Vec<u8>, module: u16) {
    buf.extend_from_slice(&module.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Frame, Pixels, Quabo};

    fn ph256(n: u32) -> Vec<u8> {
        let q = Quabo {
            pkt_num: n,
            ..Quabo::default()
        };
        Frame {
            header: Header::new_quabo(0, q),
            pixels: Pixels::I16(vec![n as i16; 256]),
        }
        .to_bytes()
    }

    fn decode_all(d: &mut SocketDecoder) -> Result<Vec<SocketMessage>, SocketError> {
        let mut out = Vec::new();
        while let Some(m) = d.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn a_private_template_names_one_socket_per_product_in_its_directory() {
        let dir = Path::new("/run/sim-42");
        let template = socket_template_in(dir);
        assert_eq!(
            socket_path(&template, DataProduct::Img16),
            Path::new("/run/sim-42/hashpipe.dp_img16.sock")
        );
        assert_eq!(
            socket_path(&template, DataProduct::Ph1024),
            Path::new("/run/sim-42/hashpipe.dp_ph1024.sock")
        );
    }

    #[test]
    fn a_header_of_many_kilobytes_is_hashpipes_and_decodes() {
        // Well under the 64 KiB that Python's reader allows, well over 1 KiB.
        let mut frame = ph256(7);
        frame.splice(1..1, std::iter::repeat_n(b' ', 20_000));
        let mut d = SocketDecoder::new(DataProduct::Ph256);
        d.extend(&encode_message(3, &frame));
        let got = decode_all(&mut d).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].module.get(), 3);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn two_bytes_are_a_module_id_still_waiting_for_its_frame() {
        let mut d = SocketDecoder::new(DataProduct::Ph256);
        d.extend(&[0, 1]);
        assert_eq!(d.next_message().unwrap(), None);
        assert_eq!(d.buffered(), 2);
    }

    #[test]
    fn the_buffer_holds_about_one_message_however_many_pass() {
        let message = encode_message(1, &ph256(1));
        let mut d = SocketDecoder::new(DataProduct::Ph256);
        // Each piece is a message and a half: one whole message is handed
        // out per piece and the rest waits, so a buffer that never drops
        // what it handed out grows by a message each time.
        let stream: Vec<u8> = message
            .iter()
            .copied()
            .cycle()
            .take(message.len() * 300)
            .collect();
        let mut decoded = 0;
        for piece in stream.chunks(message.len() * 3 / 2) {
            d.extend(piece);
            decoded += decode_all(&mut d).unwrap().len();
            assert!(
                d.buf.len() <= 3 * message.len(),
                "{} bytes buffered for messages of {}",
                d.buf.len(),
                message.len()
            );
        }
        assert_eq!(decoded, 300);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn messages_split_anywhere_decode_whole() {
        let stream: Vec<u8> = (0..3)
            .flat_map(|n| encode_message(n, &ph256(n.into())))
            .collect();
        for cut in 0..stream.len() {
            let mut d = SocketDecoder::new(DataProduct::Ph256);
            d.extend(&stream[..cut]);
            let mut got = decode_all(&mut d).unwrap();
            d.extend(&stream[cut..]);
            got.extend(decode_all(&mut d).unwrap());
            let modules: Vec<u32> = got.iter().map(|m| m.module.get()).collect();
            assert_eq!(modules, [0, 1, 2], "cut at {cut}");
            assert_eq!(d.buffered(), 0);
        }
    }

    fn first_error(bytes: &[u8], dp: DataProduct) -> SocketErrorKind {
        let mut d = SocketDecoder::new(dp);
        d.extend(bytes);
        decode_all(&mut d).unwrap_err().kind
    }

    #[test]
    fn each_malformation_has_its_own_error() {
        let good = encode_message(7, &ph256(1));
        let long: Vec<u8> = [&[0, 7, b'{'][..], &[b' '; MAX_SOCKET_HEADER_BYTES]].concat();
        assert_eq!(
            first_error(&long, DataProduct::Ph256),
            SocketErrorKind::HeaderTooLong
        );
        assert!(matches!(
            first_error(b"\0\x07garbage", DataProduct::Ph256),
            SocketErrorKind::NotJson(_)
        ));
        let mut no_star = good.clone();
        let star = no_star.iter().position(|&b| b == b'*').unwrap();
        no_star[star] = b'#';
        assert_eq!(
            first_error(&no_star, DataProduct::Ph256),
            SocketErrorKind::MissingStar { found: b'#' }
        );
        // A second frame whose header is one byte wider than the first.
        let mut wider = ph256(2);
        wider.insert(1, b' ');
        let stream = [good.clone(), encode_message(7, &wider)].concat();
        assert!(matches!(
            first_error(&stream, DataProduct::Ph256),
            SocketErrorKind::WrongLength { .. }
        ));
        // A ph256 frame on an img16 socket: the image runs into the next
        // message, whose header is then not where it must be.
        let stream = good.repeat(8);
        assert!(matches!(
            first_error(&stream, DataProduct::Img16),
            SocketErrorKind::WrongLength { .. } | SocketErrorKind::NotJson(_)
        ));
        let mut not_json = good;
        not_json[2 + 13] = b'!'; // the colon after "quabo_num"
        assert!(matches!(
            first_error(&not_json, DataProduct::Ph256),
            SocketErrorKind::NotJson(_)
        ));
        let e = SocketDecoder::for_name("img32").unwrap_err();
        assert!(matches!(e.kind, SocketErrorKind::UnknownDataProduct(_)));
        assert!(e.to_string().contains("img32"), "{e}");
    }

    #[test]
    fn errors_say_where_the_bad_message_starts() {
        let good = encode_message(1, &ph256(1));
        let stream = [&good[..], b"\0\x01xx"].concat();
        let mut d = SocketDecoder::new(DataProduct::Ph256);
        d.extend(&stream);
        assert!(d.next_message().unwrap().is_some());
        let e = d.next_message().unwrap_err();
        assert_eq!(e.offset, good.len() as u64);
        assert!(e.to_string().starts_with("ph256 message at byte"), "{e}");
    }
}
