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
//!   [`SharedStreamImagesClient`] receives them the same way, leaving the
//!   image as bytes (for load generators).
//! - The mapping between PFF frames and `PanoImage`s, the one copy of it:
//!   [`daqdata::PanoImage::from_frame`] and
//!   [`daqdata::PanoImage::from_pixels`] one way; `DataProduct`, `Pixels`
//!   and `pff::Frame` `try_from(&PanoImage)` the other, which also checks
//!   that an image is one of the four data products ([`MappingError`] says
//!   what is not); `From<ImageKind> for pano_image::Type`; headers with
//!   [`json_to_struct`] and [`struct_to_json`].
//! - [`HpIoConfig`]: the Python project's `hp_io_config.json`, and the
//!   `InitHpIoRequest` it makes.
//! - [`rpc`]: each RPC's name, path and whether it needs the operator role.
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

mod hp_io_config;
mod mapping;
pub mod rpc;
mod shared;

pub use hp_io_config::{HpIoConfig, HpIoConfigError};
pub use mapping::{json_to_struct, struct_to_json, MappingError};
pub use shared::{
    decode_pano_image_header, decode_pano_image_product, encode_pano_image,
    SharedStreamImagesClient, SharedStreamImagesCodec, SharedStreamImagesResponse,
};

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
pub const SERVICE: &str = server::SERVICE_NAME;
