//! The largest request message (SPEC §6), and RESOURCE_EXHAUSTED for one
//! over it, on every RPC.
//!
//! tonic refuses a message over its decoding limit with OUT_OF_RANGE;
//! gRPC's own code for it is RESOURCE_EXHAUSTED (grpc-core and grpc-go
//! answer so), and Python clients handle that one. A unary or
//! server-streaming request is decoded before the service runs, so tonic
//! answers it itself (a trailers-only response): [`MessageLimitLayer`]
//! rewrites that answer. A client-streaming one (UploadImages) fails in
//! the service, which calls [`exhausted`].

use std::task::{Context, Poll};

use futures::future::{MapOk, TryFutureExt};
use tonic::{Code, Status};

/// Largest request message, in bytes, on every RPC.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// `status` as RESOURCE_EXHAUSTED naming the limit when it is tonic's
/// "message too large"; any other status unchanged.
pub(crate) fn exhausted(status: Status) -> Status {
    if status.code() == Code::OutOfRange && status.message().contains("too large") {
        Status::resource_exhausted(format!(
            "a request message is larger than this server's limit of {} KiB ({} bytes): {}",
            MAX_MESSAGE_BYTES / 1024,
            MAX_MESSAGE_BYTES,
            status.message()
        ))
    } else {
        status
    }
}

/// Puts [`MessageLimit`] around a service.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MessageLimitLayer;

impl<S> tower::Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;
    fn layer(&self, inner: S) -> MessageLimit<S> {
        MessageLimit(inner)
    }
}

/// Rewrites a trailers-only OUT_OF_RANGE "too large" answer as
/// RESOURCE_EXHAUSTED.
#[derive(Clone, Debug)]
pub(crate) struct MessageLimit<S>(S);

type Rewrite<R> = fn(http::Response<R>) -> http::Response<R>;

impl<S, B, R> tower::Service<http::Request<B>> for MessageLimit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = MapOk<S::Future, Rewrite<R>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.0.call(req).map_ok(rewrite as Rewrite<R>)
    }
}

fn rewrite<R>(mut response: http::Response<R>) -> http::Response<R> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if status.code() != Code::OutOfRange {
        return response;
    }
    let status = exhausted(status);
    if status.code() == Code::ResourceExhausted {
        // Replaces grpc-status and grpc-message; a status that cannot be
        // put in headers leaves tonic's own answer.
        let _ = status.add_header(response.headers_mut());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: Status) -> http::Response<()> {
        let mut r = http::Response::new(());
        status.add_header(r.headers_mut()).unwrap();
        rewrite(r)
    }

    #[test]
    fn too_large_becomes_resource_exhausted_naming_the_limit() {
        let r = answered(Status::out_of_range(
            "Error, decoded message length too large: found 65537 bytes, the limit is: 65536 bytes",
        ));
        let status = Status::from_header_map(r.headers()).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("64 KiB"), "{status}");
        assert!(status.message().contains("found 65537 bytes"), "{status}");
    }

    #[test]
    fn other_answers_are_left_alone() {
        for status in [
            Status::out_of_range("frame 7 is past the end"),
            Status::invalid_argument("too large an interval"),
            Status::ok(""),
        ] {
            let code = status.code();
            let message = status.message().to_string();
            let r = answered(status);
            let after = Status::from_header_map(r.headers()).unwrap();
            assert_eq!((after.code(), after.message()), (code, message.as_str()));
        }
        assert!(Status::from_header_map(rewrite(http::Response::new(())).headers()).is_none());
    }
}
