//! Images encoded once and shared: the server's `StreamImagesResponse`
//! with its `PanoImage` as bytes, and a client that keeps them as bytes.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{Body, GrpcMethod, StdError};

use crate::daqdata::{PanoImage, StreamImagesRequest};
use crate::server::SERVICE_NAME;

/// Encodes a `PanoImage` once, for sharing among many
/// [`SharedStreamImagesResponse`]s.
pub fn encode_pano_image(image: &PanoImage) -> Bytes {
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

/// Just the header (field 2) of an encoded `PanoImage`: decoding skips the
/// pixels, one length-delimited field that is most of the decoding cost.
#[derive(Clone, PartialEq, prost::Message)]
struct PanoImageHeader {
    #[prost(message, optional, tag = "2")]
    header: Option<prost_types::Struct>,
}

/// The header of an encoded `PanoImage` (see [`encode_pano_image`]),
/// without decoding its pixels.
pub fn decode_pano_image_header(
    encoded: &[u8],
) -> Result<Option<prost_types::Struct>, prost::DecodeError> {
    Ok(PanoImageHeader::decode(encoded)?.header)
}

/// What a relay must know of an encoded `PanoImage` to file and filter it:
/// fields 1, 4, 5 and 8; the header and pixels are skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct PanoImageIdentity {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(uint32, repeated, tag = "4")]
    shape: Vec<u32>,
    #[prost(int32, tag = "5")]
    bytes_per_pixel: i32,
    #[prost(uint32, tag = "8")]
    module_id: u32,
}

/// The module id and data product of an encoded `PanoImage`, without
/// decoding its header or pixels: what a relay needs to put it in a slot.
pub fn decode_pano_image_product(
    encoded: &[u8],
) -> Result<pff::ModuleProduct, crate::MappingError> {
    let id = PanoImageIdentity::decode(encoded).map_err(crate::MappingError::Decode)?;
    let dp = crate::mapping::product_of(id.r#type, &id.shape, id.bytes_per_pixel)?;
    Ok(pff::ModuleProduct::new(id.module_id, dp))
}

/// The codec of a StreamImages call whose responses keep their image as
/// bytes ([`SharedStreamImagesResponse`]).
pub type SharedStreamImagesCodec =
    tonic_prost::ProstCodec<StreamImagesRequest, SharedStreamImagesResponse>;

/// The one method of a DaqData client that leaves images encoded: for load
/// generators and relays, which would otherwise spend more on decoding
/// pixels than the server spends sending them.
#[derive(Clone, Debug)]
pub struct SharedStreamImagesClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> SharedStreamImagesClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    /// A client on `inner` (a `tonic::transport::Channel`, say).
    pub fn new(inner: T) -> Self {
        SharedStreamImagesClient {
            inner: tonic::client::Grpc::new(inner),
        }
    }

    /// Limits the size of a decoded response (tonic's default: 4 MiB).
    #[must_use]
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.inner = self.inner.max_decoding_message_size(limit);
        self
    }

    /// Calls StreamImages. A connection that is not ready is UNAVAILABLE,
    /// as a transport failure during the call is.
    pub async fn stream_images(
        &mut self,
        request: impl tonic::IntoRequest<StreamImagesRequest>,
    ) -> Result<tonic::Response<tonic::Streaming<SharedStreamImagesResponse>>, tonic::Status> {
        self.inner.ready().await.map_err(|e| {
            tonic::Status::unavailable(format!("connection not ready: {}", e.into()))
        })?;
        let path = PathAndQuery::try_from(format!("/{SERVICE_NAME}/{STREAM_IMAGES}"))
            .map_err(|e| tonic::Status::internal(format!("StreamImages path: {e}")))?;
        let mut request = request.into_request();
        request
            .extensions_mut()
            .insert(GrpcMethod::new(SERVICE_NAME, STREAM_IMAGES));
        self.inner
            .server_streaming(request, path, SharedStreamImagesCodec::default())
            .await
    }
}

/// The method's name in `daq_data.proto`.
const STREAM_IMAGES: &str = "StreamImages";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_names_a_method_of_the_compiled_service() {
        let fds = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
        let found = fds.file.iter().any(|f| {
            f.service.iter().any(|s| {
                format!("{}.{}", f.package(), s.name()) == SERVICE_NAME
                    && s.method.iter().any(|m| {
                        m.name() == STREAM_IMAGES
                            && m.server_streaming()
                            && m.output_type() == ".daqdata.StreamImagesResponse"
                    })
            })
        });
        assert!(
            found,
            "{SERVICE_NAME}/{STREAM_IMAGES} is not in daq_data.proto"
        );
    }

    #[test]
    fn the_header_decodes_without_the_pixels() {
        let header = crate::json_to_struct(serde_json::json!({"tv_sec": 7}));
        let image = PanoImage {
            header: header.clone(),
            image_array: vec![65533; 256],
            ..Default::default()
        };
        let encoded = encode_pano_image(&image);
        assert_eq!(decode_pano_image_header(&encoded), Ok(header));
        assert_eq!(
            decode_pano_image_header(&encode_pano_image(&PanoImage::default())),
            Ok(None)
        );
        assert!(decode_pano_image_header(&[0x12, 0xff]).is_err());
    }

    #[test]
    fn a_relay_reads_module_and_product_without_the_pixels() {
        let image = PanoImage {
            r#type: crate::daqdata::pano_image::Type::Movie as i32,
            shape: vec![32, 32],
            bytes_per_pixel: 2,
            module_id: 254,
            image_array: vec![7; 1024],
            ..Default::default()
        };
        assert_eq!(
            decode_pano_image_product(&encode_pano_image(&image)),
            Ok(pff::ModuleProduct::new(254, pff::DataProduct::Img16))
        );
        let odd = PanoImage {
            shape: vec![5],
            ..image.clone()
        };
        assert!(decode_pano_image_product(&encode_pano_image(&odd)).is_err());
        assert!(matches!(
            decode_pano_image_product(&[0x22, 0xff, 0x01]),
            Err(crate::MappingError::Decode(_))
        ));
    }

    proptest::proptest! {
        /// Hostile bytes from an upstream: an error or an answer, never a panic.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_pano_image_product(&bytes);
        }
    }
}
