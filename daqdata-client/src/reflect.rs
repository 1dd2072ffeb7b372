//! `--reflect-services`: what a server offers, by gRPC server reflection.
//!
//! The Python client speaks `grpc.reflection.v1alpha`, so that is tried
//! first; `v1` is the fallback for servers that offer only the newer one.

use std::fmt;

use prost::Message;
use prost_types::FileDescriptorProto;

use crate::{Error, Host};
use daqdata_net::Connection;

/// The services of one server, and the methods of `daqdata.DaqData`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceListing {
    /// The server, as addressed.
    pub host: String,
    /// Which reflection protocol answered (`v1alpha` or `v1`).
    pub protocol: &'static str,
    /// Full names of every service offered.
    pub services: Vec<String>,
    /// The DaqData methods, when the server offers the service.
    pub methods: Vec<Method>,
}

/// One RPC of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    /// The RPC name (`StreamImages`).
    pub name: String,
    /// Request message type, without package.
    pub input: String,
    /// Response message type, without package.
    pub output: String,
    /// The client sends a stream.
    pub client_streaming: bool,
    /// The server sends a stream.
    pub server_streaming: bool,
}

impl fmt::Display for ServiceListing {
    /// The Python client's layout, so the two can be compared by eye.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Reflecting services on {} (reflection {}):",
            self.host, self.protocol
        )?;
        writeln!(f, "\tfound services: {:?}", self.services)?;
        if self.methods.is_empty() {
            return writeln!(f, "\tno {} service found", daqdata_proto::SERVICE);
        }
        writeln!(
            f,
            "\tfound DaqData service with name: {}",
            daqdata_proto::SERVICE
        )?;
        for m in &self.methods {
            let stream = |s: bool| if s { "stream " } else { "" };
            writeln!(
                f,
                "\tfound: rpc {}({}{}) returns ({}{})",
                m.name,
                stream(m.client_streaming),
                m.input,
                stream(m.server_streaming),
                m.output
            )?;
        }
        Ok(())
    }
}

/// One reflection protocol version: the same messages in two packages.
macro_rules! reflection_version {
    ($name:ident, $pb:path, $label:literal) => {
        async fn $name(host: &Host, ch: Connection) -> Result<ServiceListing, tonic::Status> {
            use pb::server_reflection_client::ServerReflectionClient;
            use pb::server_reflection_request::MessageRequest;
            use pb::server_reflection_response::MessageResponse;
            use $pb as pb;

            let mut client = ServerReflectionClient::new(ch);
            let requests = vec![
                pb::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                },
                pb::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::FileContainingSymbol(
                        daqdata_proto::SERVICE.to_string(),
                    )),
                },
            ];
            let mut replies = client
                .server_reflection_info(futures::stream::iter(requests))
                .await?
                .into_inner();
            let mut services = Vec::new();
            let mut files = Vec::new();
            while let Some(reply) = replies.message().await? {
                match reply.message_response {
                    Some(MessageResponse::ListServicesResponse(l)) => {
                        services.extend(l.service.into_iter().map(|s| s.name));
                    }
                    Some(MessageResponse::FileDescriptorResponse(f)) => {
                        files.extend(f.file_descriptor_proto);
                    }
                    // The server does not know the symbol: no DaqData.
                    Some(MessageResponse::ErrorResponse(_)) | _ => {}
                }
            }
            Ok(ServiceListing {
                host: host.to_string(),
                protocol: $label,
                services,
                methods: daqdata_methods(&files),
            })
        }
    };
}

reflection_version!(list_v1alpha, tonic_reflection::pb::v1alpha, "v1alpha");
reflection_version!(list_v1, tonic_reflection::pb::v1, "v1");

/// Lists `host`'s services: v1alpha, else v1.
pub(crate) async fn list(host: &Host, ch: Connection) -> Result<ServiceListing, Error> {
    match list_v1alpha(host, ch.clone()).await {
        Ok(listing) => Ok(listing),
        Err(s) if s.code() == tonic::Code::Unimplemented => list_v1(host, ch)
            .await
            .map_err(|s| Error::rpc(host, "ServerReflectionInfo", s)),
        Err(s) => Err(Error::rpc(host, "ServerReflectionInfo", s)),
    }
}

/// The methods of `daqdata.DaqData` in the encoded file descriptors.
fn daqdata_methods(files: &[Vec<u8>]) -> Vec<Method> {
    let short = |t: &str| t.rsplit('.').next().unwrap_or(t).to_string();
    for bytes in files {
        let Ok(file) = FileDescriptorProto::decode(bytes.as_slice()) else {
            continue;
        };
        if file.package() != "daqdata" {
            continue;
        }
        if let Some(service) = file.service.iter().find(|s| s.name() == "DaqData") {
            return service
                .method
                .iter()
                .map(|m| Method {
                    name: m.name().to_string(),
                    input: short(m.input_type()),
                    output: short(m.output_type()),
                    client_streaming: m.client_streaming(),
                    server_streaming: m.server_streaming(),
                })
                .collect();
        }
    }
    Vec::new()
}
