//! A tonic channel to one [`Address`], presenting [`Credentials`].

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::credentials::Bearer;
use crate::{Address, Credentials, Error};

/// Connecting to a host that drops packets must not hang a caller.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A channel to one server that presents [`Credentials`]: TLS for `tls://`
/// addresses, and the bearer token on every call.
pub type Connection = InterceptedService<Channel, Bearer>;

/// Opens a channel to `address` that connects on first use (and again
/// after a server restart), with no credentials.
pub fn channel(address: &Address) -> Result<Connection, Error> {
    channel_with(address, &Credentials::default())
}

/// Opens a channel to `address` that connects on first use (and again
/// after a server restart) and presents `credentials`.
pub fn channel_with(address: &Address, credentials: &Credentials) -> Result<Connection, Error> {
    let bad = |reason: String| Error::Address {
        address: address.to_string(),
        reason,
    };
    let channel = match address {
        Address::Tcp { host: name, .. } => {
            if credentials.has_token() && !is_local(name) {
                tracing::warn!("{address}: the token goes over plaintext TCP, readable on the network path; use tls://{address} if the server offers it");
            }
            Endpoint::from_shared(format!("http://{address}"))
                .map_err(|e| bad(e.to_string()))?
                .connect_timeout(CONNECT_TIMEOUT)
                .connect_lazy()
        }
        Address::Tls { host: name, port } => {
            let authority = if name.contains(':') {
                format!("[{name}]:{port}")
            } else {
                format!("{name}:{port}")
            };
            Endpoint::from_shared(format!("https://{authority}"))
                .map_err(|e| bad(e.to_string()))?
                .tls_config(credentials.tls_config(name).map_err(bad)?)
                .map_err(|e| bad(e.to_string()))?
                .connect_timeout(CONNECT_TIMEOUT)
                .connect_lazy()
        }
        Address::Unix(path) => {
            let path = path.clone();
            // The URI is unused: the connector dials the socket.
            Endpoint::from_static("http://localhost")
                .connect_timeout(CONNECT_TIMEOUT)
                .connect_with_connector_lazy(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
        }
    };
    Ok(InterceptedService::new(channel, credentials.interceptor()))
}

/// Whether a host name is this machine (a token sent there stays on it).
fn is_local(name: &str) -> bool {
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What went wrong on a call: the server's message, or for a connection
/// that failed, the transport's innermost reason ("Connection refused").
pub fn status_reason(status: &tonic::Status) -> String {
    let mut reason = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}
