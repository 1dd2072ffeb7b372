//! Listeners: TCP `HOST:PORT` and `unix:///abs/path.sock`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};

use crate::access::AccessConfig;
use crate::error::{Error, Result};
use crate::transport::Listener;

/// An address the server is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listening {
    /// A TCP address (the real port when `:0` was asked for).
    Tcp(SocketAddr),
    /// A TCP address serving TLS (`tls://HOST:PORT`).
    Tls(SocketAddr),
    /// A unix socket file, removed at shutdown, and the (device, inode) it
    /// had when bound.
    Unix(PathBuf, (u64, u64)),
}

fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

impl Listening {
    /// Removes the socket file, unless another server has replaced it
    /// since (a new server on the same path must stay reachable).
    pub(crate) fn remove_socket_file(&self) {
        if let Listening::Unix(path, id) = self {
            if file_id(path).ok() != Some(*id) {
                return;
            }
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("removing socket file {}: {e}", path.display());
                }
            }
        }
    }
}

impl fmt::Display for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listening::Tcp(a) => write!(f, "{a}"),
            Listening::Tls(a) => write!(f, "tls://{a}"),
            Listening::Unix(p, _) => write!(f, "unix://{}", p.display()),
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
        remove_stale_socket(&path).await.map_err(fail)?;
        let listener = UnixListener::bind(&path)
            .map_err(|e| fail(format!("binding unix socket {}: {e}", path.display())))?;
        set_socket_access(&path, access).map_err(fail)?;
        let id =
            file_id(&path).map_err(|e| fail(format!("reading back {}: {e}", path.display())))?;
        return Ok((Listening::Unix(path, id), Listener::Unix(listener)));
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

/// SPEC §6: the unix socket's permissions are the guard of its operator
/// role: `unix_socket_mode` and, when set, `unix_socket_group`.
fn set_socket_access(path: &Path, access: &AccessConfig) -> std::result::Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = access.socket_mode().map_err(|e| e.to_string())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("setting mode {mode:04o} on {}: {e}", path.display()))?;
    if let Some(group) = &access.unix_socket_group {
        let gid = match group.parse::<u32>() {
            Ok(gid) => nix::unistd::Gid::from_raw(gid),
            Err(_) => {
                nix::unistd::Group::from_name(group)
                    .map_err(|e| format!("looking up group {group:?}: {e}"))?
                    .ok_or_else(|| {
                        format!("unix_socket_group {group:?} is not a group on this host")
                    })?
                    .gid
            }
        };
        nix::unistd::chown(path, None, Some(gid))
            .map_err(|e| format!("giving {} to group {group}: {e}", path.display()))?;
    }
    Ok(())
}

/// A socket file left by a server that died is replaced; one a live server
/// answers on is not.
async fn remove_stale_socket(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket; not replacing it",
            path.display()
        ));
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(format!(
            "another server is already listening on {}",
            path.display()
        ));
    }
    tracing::info!("replacing stale socket file {}", path.display());
    std::fs::remove_file(path).map_err(|e| format!("removing stale socket {}: {e}", path.display()))
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
