//! Listeners: TCP `HOST:PORT` and `unix:///abs/path.sock`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

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

/// Checks the form of a `listen` entry without binding it.
pub(crate) fn check_address(addr: &str) -> Result<()> {
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
    addr: &str,
    access: &AccessConfig,
    tls_config: Option<&Arc<rustls::ServerConfig>>,
) -> Result<(Listening, Listener)> {
    let fail = |reason: String| Error::Listen {
        addr: addr.to_string(),
        reason,
    };
    if let Some(path) = addr.strip_prefix("unix://") {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(fail(
                "a unix socket needs an absolute path: unix:///abs/path.sock".into(),
            ));
        }
        // SPEC §6: the socket's permissions guard its operator role.
        let mode = access.unix_socket_mode;
        let group = access.unix_socket_group.as_deref();
        let (listener, file) =
            SocketFile::bind(&path, mode, group).map_err(|e| fail(e.to_string()))?;
        return Ok((
            Listening::Unix(path),
            Listener::Unix {
                listener,
                _file: file,
            },
        ));
    }
    let (tls, addr) = match addr.strip_prefix("tls://") {
        Some(rest) => (true, rest),
        None => (false, addr),
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        // A host without IPv6 cannot bind [::]; all IPv4 addresses are
        // what the user meant.
        Err(e) if addr.starts_with("[::]:") => {
            let v4 = addr.replacen("[::]", "0.0.0.0", 1);
            tracing::warn!("binding {addr}: {e}; trying {v4}");
            TcpListener::bind(&v4)
                .await
                .map_err(|e| fail(format!("binding {v4}: {e}")))?
        }
        Err(e) => {
            return Err(fail(format!(
                "binding: {e} (expected HOST:PORT or unix:///abs/path.sock)"
            )))
        }
    };
    let local = listener
        .local_addr()
        .map_err(|e| fail(format!("reading the bound address: {e}")))?;
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
