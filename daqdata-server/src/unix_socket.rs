//! A unix socket file this server owns, for the gRPC unix listeners and
//! Hashpipe's sockets alike: a stale file (a socket nobody accepts on) is
//! replaced, anything else at the path is refused with the path named,
//! the mode and group are set once bound (the group looked up through
//! NSS, so LDAP groups work), and the file is removed on drop only if it
//! is still ours (same device and inode: a server started since on the
//! same path keeps its socket).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group};
use tokio::net::UnixListener;

/// Why a socket file could not be made; each names the path or group.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SocketFileError {
    #[error("{}: a {kind} is in the way; not replacing it", .path.display())]
    InTheWay { path: PathBuf, kind: &'static str },
    #[error("{}: another process is already listening on it (another DaqData server?)", .path.display())]
    InUse { path: PathBuf },
    #[error("{}: {what}: {source}", .path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("group {group:?} is not a group on this host")]
    UnknownGroup { group: String },
    #[error("looking up group {group:?}: {source}")]
    GroupLookup { group: String, source: nix::Error },
}

/// A socket file's permission bits, parsed once from octal text
/// (`"0660"`, `"660"`, `"0o660"`) where the configuration is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketMode(u32);

impl SocketMode {
    /// Owner and group may connect: the default of the gRPC unix socket
    /// and of Hashpipe's sockets.
    pub const OWNER_AND_GROUP: SocketMode = SocketMode(0o660);

    /// The permission bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl Default for SocketMode {
    fn default() -> Self {
        SocketMode::OWNER_AND_GROUP
    }
}

impl std::str::FromStr for SocketMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        u32::from_str_radix(digits, 8)
            .ok()
            .filter(|m| *m <= 0o777 && !digits.starts_with('+'))
            .map(SocketMode)
            .ok_or_else(|| format!("{text:?} is not an octal file mode such as \"0660\""))
    }
}

impl std::fmt::Display for SocketMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SocketMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A bound socket file; removed when dropped, if still ours.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    /// (device, inode) when bound. A file unlinked and made again at once
    /// may get the same inode number back; while our listener is open our
    /// file is never stale, so no other server unlinks it before we do.
    id: (u64, u64),
}

impl SocketFile {
    /// Binds a unix stream socket at `path` with `mode` and, when given,
    /// `group` (a name or a number). Call within a tokio runtime.
    pub(crate) fn bind(
        path: &Path,
        mode: SocketMode,
        group: Option<&str>,
    ) -> Result<(UnixListener, SocketFile), SocketFileError> {
        let io = |what| {
            let path = path.to_path_buf();
            move |source| SocketFileError::Io { path, what, source }
        };
        // Before anything is made: a typo in the group changes nothing.
        let gid = group.map(group_id).transpose()?;
        replace_stale(path)?;
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(io("binding"))?;
        let meta = std::fs::symlink_metadata(path).map_err(io("reading the new socket back"))?;
        // From here on, an error removes the file again.
        let file = SocketFile {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode.bits()))
            .map_err(io("setting its mode"))?;
        if let Some(gid) = gid {
            nix::unistd::chown(path, None, Some(gid))
                .map_err(|e| io("setting its group")(io::Error::from(e)))?;
        }
        listener
            .set_nonblocking(true)
            .map_err(io("making it non-blocking"))?;
        let listener = UnixListener::from_std(listener).map_err(io("registering it"))?;
        Ok((listener, file))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if !ours {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("removing socket file {}: {e}", self.path.display());
            }
        }
    }
}

/// Removes a socket file nobody accepts on; refuses a live one and any
/// other kind of file.
fn replace_stale(path: &Path) -> Result<(), SocketFileError> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketFileError::Io {
                path: path.to_path_buf(),
                what: "looking at what is there",
                source,
            })
        }
        Ok(meta) => meta,
    };
    if !meta.file_type().is_socket() {
        let kind = if meta.is_dir() {
            "directory"
        } else if meta.file_type().is_symlink() {
            "symbolic link"
        } else {
            "file that is not a socket"
        };
        return Err(SocketFileError::InTheWay {
            path: path.to_path_buf(),
            kind,
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(SocketFileError::InUse {
            path: path.to_path_buf(),
        });
    }
    std::fs::remove_file(path).map_err(|source| SocketFileError::Io {
        path: path.to_path_buf(),
        what: "removing the stale socket file",
        source,
    })?;
    tracing::info!("replaced a stale socket file at {}", path.display());
    Ok(())
}

/// A group given by number, or by name through NSS (files, LDAP, ...).
fn group_id(group: &str) -> Result<Gid, SocketFileError> {
    if let Ok(gid) = group.parse() {
        return Ok(Gid::from_raw(gid));
    }
    match Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(SocketFileError::UnknownGroup {
            group: group.to_string(),
        }),
        Err(source) => Err(SocketFileError::GroupLookup {
            group: group.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_mode_and_group_are_applied_by_name_or_number() {
        let dir = tempfile::tempdir().unwrap();
        // The process's own group: any user may give a file to it.
        let gid = nix::unistd::getegid();
        let name = Group::from_gid(gid).unwrap().map(|g| g.name);
        let mut groups = vec![gid.as_raw().to_string()];
        groups.extend(name);
        for (i, group) in groups.iter().enumerate() {
            let path = dir.path().join(format!("g{i}.sock"));
            let (_l, _f) = SocketFile::bind(&path, SocketMode(0o640), Some(group)).unwrap();
            assert_eq!(mode_of(&path), 0o640);
            assert_eq!(std::fs::metadata(&path).unwrap().gid(), gid.as_raw());
        }
        let path = dir.path().join("x.sock");
        let err =
            SocketFile::bind(&path, SocketMode(0o660), Some("no-such-group-here")).unwrap_err();
        assert!(err.to_string().contains("no-such-group-here"), "{err}");
        assert!(!path.exists(), "nothing is made for an unknown group");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let (live, _file) = SocketFile::bind(&path, SocketMode(0o600), None).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let err = SocketFile::bind(&path, SocketMode(0o600), None).unwrap_err();
        assert!(matches!(err, SocketFileError::InUse { .. }), "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        drop(live);
    }

    #[tokio::test]
    async fn a_regular_file_or_directory_in_the_way_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.sock");
        std::fs::write(&file, "keep me").unwrap();
        let sub = dir.path().join("sub.sock");
        std::fs::create_dir(&sub).unwrap();
        for path in [&file, &sub] {
            let err = SocketFile::bind(path, SocketMode(0o660), None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&*path.to_string_lossy()) && err.contains("in the way"),
                "{err}"
            );
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        assert!(sub.is_dir());
    }

    #[tokio::test]
    async fn the_file_is_removed_on_drop_unless_replaced_since() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (listener, file) = SocketFile::bind(&path, SocketMode(0o660), None).unwrap();
        assert_eq!(file.path(), path);
        drop((listener, file));
        assert!(!path.exists(), "ours: removed");

        let (_old_listener, old) = SocketFile::bind(&path, SocketMode(0o660), None).unwrap();
        // Another server's socket is moved over it (made first, so the
        // two cannot share an inode number)...
        let other = dir.path().join("other.sock");
        let (_new_listener, new) = SocketFile::bind(&other, SocketMode(0o660), None).unwrap();
        std::fs::rename(&other, &path).unwrap();
        // ...and the old owner's drop leaves it alone.
        drop(old);
        assert!(path.exists(), "the new server's socket was removed");
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        drop(new);
    }
}
