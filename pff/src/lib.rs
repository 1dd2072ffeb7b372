//! The PANOSETI PFF file format.
//!
//! # Brief overview
//!
//! Hashpipe records each data product of each module into PFF files: a
//! file is frames, and a frame is a JSON header, a blank line, the byte `*`,
//! then the image, little-endian.
//!
//! - [`DataProduct`] says what an image holds (`img16`, `img8`, `ph256`,
//!   `ph1024`): shape, pixel type, movie or pulse height.
//! - [`PffFile`] opens a file, possibly one Hashpipe is still appending to,
//!   and reads frame N or the last *complete* frame by seek, as a
//!   [`RawFrame`]: checked bytes, cheap to pass around.
//! - [`Frame`] is a parsed frame: [`Header`] (its text and typed [`Quabo`]
//!   stamps) and [`Pixels`]. [`Frame::to_bytes`] writes it back exactly as
//!   Hashpipe does; [`Header::new_module`] and [`Header::new_quabo`] make
//!   Hashpipe's fixed-width headers from values.
//! - [`PffName`] and [`RunName`] parse and make file and run-directory names;
//!   [`daq_tree`] names the rest of a DAQ node's data directory
//!   (`module_M`, `daq_hashpipe_pid`, `recording_ended`, `hk.pff`).
//! - [`ModuleId`] is a module's id; [`ModuleProduct`] one data product of
//!   one module, the unit a tracker follows.
//! - [`time`] turns node and White Rabbit stamps into Unix time, and Unix
//!   time into the `pkt_tai` a writer stamps ([`time::pkt_tai`]).
//! - [`SocketDecoder`] cuts Hashpipe's socket feed (a module id and a
//!   frame per message) into [`SocketMessage`]s; [`encode_message`] makes one.
//!
//! Data moves one way: bytes on disk -> [`PffFile`] (seek, check) ->
//! [`RawFrame`] -> [`Frame`] (parse) -> the caller. Writers go the other
//! way: [`Header`] + [`Pixels`] -> [`Frame::to_bytes`] (or a header and
//! image bytes -> [`frame_bytes`]) -> a file.
//! Nothing here blocks on anything but the file it reads, and no async
//! runtime is needed.
//!
//! The crate's binary, `pff`, shows the same to a person:
//! `cargo run -p pff -- info FILE...` (frames, torn tail, times) and
//! `cargo run -p pff -- show FILE --frame N` (header, pixel statistics).
//!
//! ```
//! use pff::{DataProduct, Frame, Header, ModuleId, PffFile, PffName, Pixels, Quabo, StartTime};
//!
//! // A pulse-height frame, stamped and formatted as Hashpipe writes one...
//! let stamp = Quabo {
//!     pkt_num: 3444,
//!     pkt_tai: 531,
//!     pkt_nsec: 288_621_037,
//!     tv_sec: 1_721_882_094,
//!     tv_usec: 288_954,
//! };
//! let frame = Frame {
//!     header: Header::new_quabo(0, stamp),
//!     pixels: Pixels::I16(vec![7; 256]),
//! };
//! // ...two and a bit of them in a file that is still being appended to...
//! let name = PffName::new(StartTime::from_unix(1_721_882_086), DataProduct::Ph256, ModuleId::new(1), 0);
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join(name.to_string());
//! let bytes = frame.to_bytes();
//! std::fs::write(&path, [&bytes[..], &bytes[..], &bytes[..100]].concat())?;
//! // ...read back by seek: the torn third frame is never returned.
//! let file = PffFile::open(&path)?;
//! assert_eq!(file.layout()?.frames, 2);
//! let (index, raw) = file.last_complete()?.expect("two complete frames");
//! assert_eq!(index, 1);
//! assert_eq!(raw.parse()?, frame);
//! assert_eq!(pff::time::iso_utc(stamp.tv_sec, stamp.tv_usec), "2024-07-25T04:34:54.288954Z");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod daq_tree;
mod error;
mod file;
mod frame;
mod header_scan;
mod module;
mod names;
mod product;
mod socket;
pub mod time;

pub use error::{Error, Result};
pub use file::{Frames, Layout, PffFile};
pub use frame::{
    append_frame, frame_bytes, header_len, timing_quabo_of, Frame, Header, Pixels, Quabo, RawFrame,
    HEADER_END, MAX_HEADER_BYTES, TIMING_QUABO,
};
pub use module::{ModuleId, ModuleProduct};
pub use names::{PffName, RunName, StartTime};
pub use product::{DataProduct, ImageKind, QuaboPixel, UnknownDataProduct, QUABO_SIDE};
pub use socket::{
    encode_message, push_message_prefix, socket_path, socket_template_in, SocketDecoder,
    SocketError, SocketErrorKind, SocketMessage, DEFAULT_SOCKET_TEMPLATE, DP_NAME,
    MAX_SOCKET_HEADER_BYTES,
};
