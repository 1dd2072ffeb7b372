//! Every response's `Date` header, sent so that HPACK never indexes it.
//!
//! hyper gives each HTTP/2 response that has none a `Date` of the current
//! second, and h2 would add each new second's value to the connection's
//! HPACK table: on a viewer's connection that lives for months, every
//! re-opened stream (after each forced InitHpIo) stored one more entry
//! until the table (4 KiB by the client's default) was full, a few KiB of
//! server memory per connection that the soak saw as a slow creep. The
//! value is the same; it is only marked sensitive, which h2 sends as a
//! literal "never indexed" (RFC 7541 §6.2.3). hyper keeps a `Date` the
//! service set.

use std::task::{Context, Poll};
use std::time::SystemTime;

use futures::future::{MapOk, TryFutureExt};
use http::header::{HeaderValue, DATE};

/// Puts [`ResponseDate`] around a service.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ResponseDateLayer;

impl<S> tower::Layer<S> for ResponseDateLayer {
    type Service = ResponseDate<S>;
    fn layer(&self, inner: S) -> ResponseDate<S> {
        ResponseDate(inner)
    }
}

/// Adds a never-indexed `Date` to every response of the inner service.
#[derive(Clone, Debug)]
pub(crate) struct ResponseDate<S>(S);

type AddDate<R> = fn(http::Response<R>) -> http::Response<R>;

impl<S, B, R> tower::Service<http::Request<B>> for ResponseDate<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = MapOk<S::Future, AddDate<R>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.0.call(req).map_ok(add_date as AddDate<R>)
    }
}

fn add_date<R>(mut response: http::Response<R>) -> http::Response<R> {
    if !response.headers().contains_key(DATE) {
        if let Some(date) = never_indexed_date(SystemTime::now()) {
            response.headers_mut().insert(DATE, date);
        }
    }
    response
}

/// `<IMF-fixdate>` of `now`, marked sensitive. (Always some: the text is
/// ASCII; were it not, hyper would add its own.)
fn never_indexed_date(now: SystemTime) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&httpdate::fmt_http_date(now)).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_date_is_the_http_date_of_now_and_marked_sensitive() {
        let v = never_indexed_date(UNIX_EPOCH + Duration::from_secs(1_795_000_000)).unwrap();
        assert_eq!(v.to_str().unwrap(), "Wed, 18 Nov 2026 11:06:40 GMT");
        assert!(v.is_sensitive());
    }

    #[test]
    fn a_date_the_service_set_is_kept() {
        let mut r = http::Response::new(());
        r.headers_mut().insert(
            DATE,
            HeaderValue::from_static("Mon, 01 Jan 2024 00:00:00 GMT"),
        );
        let r = add_date(r);
        assert_eq!(r.headers()[DATE], "Mon, 01 Jan 2024 00:00:00 GMT");
        assert!(!r.headers()[DATE].is_sensitive());
    }
}
