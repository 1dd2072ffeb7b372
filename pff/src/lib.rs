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
//! - [`PffName`] and [`RunName`] parse and make file and run-directory names.
//! - [`time`] turns node and White Rabbit stamps into Unix time.
//!
//! ```no_run
//! let file = pff::PffFile::open(
//!     "start_2024-07-25T04_34_46Z.dp_img16.bpp_2.module_1.seqno_0.pff",
//! )?;
//! if let Some((index, raw)) = file.last_complete()? {
//!     let frame = raw.parse()?;
//!     let stamp = frame.header.first_quabo().map(|q| q.node_time());
//!     println!("frame {index}: {} pixels at {stamp:?}", frame.pixels.len());
//! }
//! # Ok::<(), pff::Error>(())
//! ```

mod error;
mod file;
mod frame;
mod header_scan;
mod names;
mod product;
pub mod time;

pub use error::{Error, Result};
pub use file::{Frames, Layout, PffFile};
pub use frame::{header_len, Frame, Header, Pixels, Quabo, RawFrame, MAX_HEADER_BYTES};
pub use names::{PffName, RunName, StartTime};
pub use product::{DataProduct, ImageKind, UnknownDataProduct};
