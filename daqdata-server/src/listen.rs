//! Listeners: TCP `HOST:PORT` and `unix:///abs/path.sock`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use daqdata_net::Address;

use crate::access::AccessConfig;
use crate::error::{Error, Result};
use crate::transport::Listener;
use crate::unix_socket::SocketFile;

/// An address the server is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listening {
    /// A TCP address (the real port when `:0` was asked for).
    Tcp(SocketAddr),
    /// A TCP address serving TLS (`tls://HOST:PORT`).
    Tls(SocketAddr),
    /// A unix socket file, removed when its listener stops.
    Unix(PathBuf),
}

impl fmt::Display for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listening::Tcp(a) => write!(f, "{a}"),
            Listening::Tls(a) => write!(f, "tls://{a}"),
            Listening::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// `[::]:port`: every address of this host.
pub(crate) fn any_host(port: u16) -> Address {
    Address::Tcp {
        host: "::".into(),
        port,
    }
}

/// A `listen` entry: its form checked (a port is required, a unix path is
/// absolute), then parsed.
pub fn parse_address(addr: &str) -> Result<Address> {
    check_address(addr)?;
    addr.parse().map_err(|e: daqdata_net::Error| Error::Listen {
        addr: addr.to_string(),
        reason: e.to_string(),
    })
}

/// `#[serde(deserialize_with)]` for `listen`: every entry parsed at load.
pub(crate) fn deserialize_addresses<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<Address>, D::Error> {
    let texts = <Vec<String> as serde::Deserialize>::deserialize(d)?;
    texts
        .iter()
        .map(|text| parse_address(text).map_err(serde::de::Error::custom))
        .collect()
}

/// Checks the form of a `listen` entry without binding it.
fn check_address(addr: &str) -> Result<()> {
    let fail = |reason: &str| {
        Err(Error::Listen {
            addr: addr.to_string(),
            reason: reason.to_string(),
        })
    };
    if let Some(path) = addr.strip_prefix("unix://") {
        if !Path::new(path).is_absolute() {
            return fail("a unix socket needs an absolute path: unix:///abs/path.sock");
        }
        return Ok(());
    }
    let addr = addr.strip_prefix("tls://").unwrap_or(addr);
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => {
            fail("expected HOST:PORT (e.g. [::]:50051 or 127.0.0.1:50051) or unix:///abs/path.sock")
        }
    }
}

/// Binds one `listen` entry.
pub(crate) async fn bind(
    addr: &Address,
    access: &AccessConfig,
    tls_config: Option<&Arc<rustls::ServerConfig>>,
) -> Result<(Listening, Listener)> {
    let fail = |reason: String| Error::Listen {
        addr: addr.to_string(),
        reason,
    };
    let (tls, host, port) = match addr {
        Address::Unix(path) => return bind_unix(path.clone(), access).map_err(fail),
        Address::Tcp { host, port } => (false, host, *port),
        Address::Tls { host, port } => (true, host, *port),
    };
    let tcp_addr = Address::Tcp {
        host: host.clone(),
        port,
    };
    let (local, listener) = bind_tcp(&tcp_addr.to_string()).await.map_err(fail)?;
    if !tls {
        return Ok((Listening::Tcp(local), Listener::Tcp(listener)));
    }
    let Some(config) = tls_config else {
        return Err(fail(
            "serves TLS but the config has no [tls] section".into(),
        ));
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
    Ok((Listening::Tls(local), Listener::Tls(listener, acceptor)))
}

/// A unix socket file with the `[access]` mode and group: SPEC §6, its
/// permissions guard its operator role.
fn bind_unix(
    path: PathBuf,
    access: &AccessConfig,
) -> std::result::Result<(Listening, Listener), String> {
    if !path.is_absolute() {
        return Err("a unix socket needs an absolute path: unix:///abs/path.sock".into());
    }
    let group = access.unix_socket_group.as_deref();
    let (listener, file) =
        SocketFile::bind(&path, access.unix_socket_mode, group).map_err(|e| e.to_string())?;
    Ok((
        Listening::Unix(path),
        Listener::Unix {
            listener,
            _file: file,
        },
    ))
}

/// A TCP listener on `HOST:PORT`, and the address it got.
async fn bind_tcp(addr: &str) -> std::result::Result<(SocketAddr, TcpListener), String> {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        // A host without IPv6 cannot bind [::]; all IPv4 addresses are
        // what the user meant.
        Err(e) if addr.starts_with("[::]:") => {
            let v4 = addr.replacen("[::]", "0.0.0.0", 1);
            tracing::warn!("binding {addr}: {e}; trying {v4}");
            TcpListener::bind(&v4)
                .await
                .map_err(|e| format!("binding {v4}: {e}"))?
        }
        Err(e) => {
            return Err(format!(
                "binding: {e} (expected HOST:PORT or unix:///abs/path.sock)"
            ))
        }
    };
    let local = listener
        .local_addr()
        .map_err(|e| format!("reading the bound address: {e}"))?;
    Ok((local, listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_checked_for_form() {
        for good in [
            "[::]:50051",
            "127.0.0.1:0",
            "daq1:50051",
            "unix:///tmp/x.sock",
        ] {
            assert!(check_address(good).is_ok(), "{good}");
        }
        for bad in [
            "50051",
            ":50051",
            "host:port",
            "host:70000",
            "unix://rel.sock",
            "",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
