//! The services besides DaqData that clients rely on: gRPC reflection (v1,
//! and v1alpha, which the Python clients use) and health checking.

use crate::common;

use std::time::Duration;

use common::*;
use prost::Message as _;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const DAQDATA: &str = "daqdata.DaqData";

/// Asks reflection one question and returns its one answer, within 10 s.
macro_rules! reflect {
    ($v:ident, $sock:expr, $request:expr) => {{
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        let mut client = ServerReflectionClient::new(unix_channel($sock).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some($request),
        };
        let mut answers = tokio::time::timeout(
            Duration::from_secs(10),
            client.server_reflection_info(tokio_stream::iter(vec![request])),
        )
        .await
        .expect("reflection did not answer within 10 s")
        .unwrap()
        .into_inner();
        let answer = tokio::time::timeout(Duration::from_secs(10), answers.message())
            .await
            .expect("reflection did not answer within 10 s")
            .unwrap()
            .expect("reflection ended without an answer");
        let answer: MessageResponse = answer.message_response.unwrap();
        answer
    }};
}

#[tokio::test]
async fn reflection_v1_lists_and_describes_daqdata() {
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let server = TestServer::start(None, |_| {}).await;
    let answer = reflect!(
        v1,
        &server.sock,
        MessageRequest::ListServices(String::new())
    );
    let MessageResponse::ListServicesResponse(list) = answer else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&DAQDATA), "{names:?}");

    let answer = reflect!(
        v1,
        &server.sock,
        MessageRequest::FileContainingSymbol(DAQDATA.into())
    );
    let MessageResponse::FileDescriptorResponse(files) = answer else {
        panic!("not a file descriptor: {answer:?}");
    };
    assert_describes_daqdata(&files.file_descriptor_proto);
}

#[tokio::test]
async fn reflection_v1alpha_lists_and_describes_daqdata_for_the_python_clients() {
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let server = TestServer::start(None, |_| {}).await;
    let answer = reflect!(
        v1alpha,
        &server.sock,
        MessageRequest::ListServices(String::new())
    );
    let MessageResponse::ListServicesResponse(list) = answer else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&DAQDATA), "{names:?}");

    let answer = reflect!(
        v1alpha,
        &server.sock,
        MessageRequest::FileContainingSymbol(DAQDATA.into())
    );
    let MessageResponse::FileDescriptorResponse(files) = answer else {
        panic!("not a file descriptor: {answer:?}");
    };
    assert_describes_daqdata(&files.file_descriptor_proto);
}

/// One of the files declares package `daqdata` with service `DaqData` and
/// every RPC of SPEC §2 (Status and StreamHashpipeStatus included).
fn assert_describes_daqdata(files: &[Vec<u8>]) {
    let files: Vec<prost_types::FileDescriptorProto> = files
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .collect();
    let service = files
        .iter()
        .filter(|f| f.package() == "daqdata")
        .flat_map(|f| &f.service)
        .find(|s| s.name() == "DaqData")
        .unwrap_or_else(|| panic!("no daqdata.DaqData in {:?}", names_of(&files)));
    let mut rpcs: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
    rpcs.sort_unstable();
    assert_eq!(
        rpcs,
        [
            "InitHpIo",
            "Ping",
            "Status",
            "StreamHashpipeStatus",
            "StreamImages",
            "UploadImages"
        ]
    );
}

fn names_of(files: &[prost_types::FileDescriptorProto]) -> Vec<&str> {
    files.iter().map(|f| f.name()).collect()
}

#[tokio::test]
async fn health_says_serving_for_the_server_and_for_daqdata_before_any_init() {
    let server = TestServer::start(None, |_| {}).await;
    let mut health = HealthClient::new(unix_channel(&server.sock).await);
    for service in ["", DAQDATA] {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            health.check(HealthCheckRequest {
                service: service.into(),
            }),
        )
        .await
        .expect("health did not answer within 10 s")
        .unwrap_or_else(|s| panic!("health check of {service:?}: {s}"))
        .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
    // A service this server does not have is not reported as serving.
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await;
    assert_eq!(code(unknown), tonic::Code::NotFound);
}
