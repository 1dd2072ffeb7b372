//! The DaqData gRPC protocol of PANOSETI, as `panoseti-grpc` 0.3.5 defines it.
//!
//! # Brief overview
//!
//! - [`daqdata`]: the message types ([`daqdata::PanoImage`],
//!   [`daqdata::StreamImagesRequest`], ...) and the client
//!   [`daqdata::daq_data_client::DaqDataClient`].
//! - [`server`]: the service trait and router for servers. Its
//!   `StreamImages` yields [`SharedStreamImagesResponse`], whose image is
//!   bytes encoded once ([`encode_pano_image`]) and shared by every stream,
//!   so a frame sent to a hundred clients is encoded once, not a hundred
//!   times. On the wire it is an ordinary `StreamImagesResponse`.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC reflection.
//!
//! The `.proto` is compiled at build time by `protox`, so no system `protoc`
//! is needed.
//!
//! ```
//! use daqdata_proto::{daqdata::PanoImage, encode_pano_image, SharedStreamImagesResponse};
//! use prost::Message;
//!
//! let image = PanoImage { module_id: 1, shape: vec![16, 16], ..Default::default() };
//! let shared = SharedStreamImagesResponse {
//!     name: "daq1".into(),
//!     pano_image: Some(encode_pano_image(&image)),
//!     ..Default::default()
//! };
//! let plain = daqdata_proto::daqdata::StreamImagesResponse::decode(shared.encode_to_vec().as_slice()).unwrap();
//! assert_eq!(plain.pano_image, Some(image));
//! ```

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::Message;

/// Messages and the client of package `daqdata`.
#[allow(missing_docs, clippy::all)]
pub mod daqdata {
    include!(concat!(env!("OUT_DIR"), "/messages/daqdata.rs"));
}

/// The server side of service `DaqData`: implement [`server::DaqData`] and
/// serve it with [`server::DaqDataServer`].
#[allow(missing_docs, clippy::all)]
pub mod server {
    include!(concat!(env!("OUT_DIR"), "/server/daqdata.rs"));
    pub use daq_data_server::{DaqData, DaqDataServer, SERVICE_NAME};
}

/// Encoded `FileDescriptorSet` of `daq_data.proto` and its imports, served by
/// gRPC reflection so clients can discover the service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/daqdata_descriptor.bin"));

/// Full gRPC name of the service.
pub const SERVICE: &str = "daqdata.DaqData";

/// Encodes a `PanoImage` once, for sharing among many
/// [`SharedStreamImagesResponse`]s.
pub fn encode_pano_image(image: &daqdata::PanoImage) -> Bytes {
    Bytes::from(image.encode_to_vec())
}

/// A `StreamImagesResponse` whose `pano_image` is already encoded.
///
/// Encoding a 32x32 image (1024 varints and a header `Struct`) costs far
/// more than copying its bytes, and every stream sends the same image, so
/// the server encodes it once and each response only adds its own name and
/// timestamp. Decoding keeps the image as raw bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SharedStreamImagesResponse {
    /// Field 1: the server's host name.
    pub name: String,
    /// Field 2: when the server sent the response.
    pub timestamp: Option<prost_types::Timestamp>,
    /// Field 3: empty unless there is something to say.
    pub message: String,
    /// Field 4: an encoded `PanoImage` (see [`encode_pano_image`]).
    pub pano_image: Option<Bytes>,
}

impl Message for SharedStreamImagesResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.name.is_empty() {
            encoding::string::encode(1, &self.name, buf);
        }
        if let Some(ts) = &self.timestamp {
            encoding::message::encode(2, ts, buf);
        }
        if !self.message.is_empty() {
            encoding::string::encode(3, &self.message, buf);
        }
        if let Some(image) = &self.pano_image {
            encoding::bytes::encode(4, image, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => encoding::string::merge(wire_type, &mut self.name, buf, ctx),
            2 => encoding::message::merge(
                wire_type,
                self.timestamp.get_or_insert_with(Default::default),
                buf,
                ctx,
            ),
            3 => encoding::string::merge(wire_type, &mut self.message, buf, ctx),
            4 => encoding::bytes::merge(
                wire_type,
                self.pano_image.get_or_insert_with(Bytes::new),
                buf,
                ctx,
            ),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let mut len = 0;
        if !self.name.is_empty() {
            len += encoding::string::encoded_len(1, &self.name);
        }
        if let Some(ts) = &self.timestamp {
            len += encoding::message::encoded_len(2, ts);
        }
        if !self.message.is_empty() {
            len += encoding::string::encoded_len(3, &self.message);
        }
        if let Some(image) = &self.pano_image {
            len += encoding::bytes::encoded_len(4, image);
        }
        len
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}
