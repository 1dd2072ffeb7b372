//! Where a Hashpipe instance's status buffer is: its System V key and the
//! name of its semaphore (SPEC §9), from explicit settings and the values
//! of Hashpipe's environment variables, which the binary reads and passes
//! in a [`HashpipeEnv`] (a library reads no environment).

use std::path::{Path, PathBuf};

use super::{sys, StatusError};

/// glibc keeps a semaphore as `/dev/shm/sem.NAME`, and that file name
/// must fit NAME_MAX (255): at most 251 bytes after the leading `/`.
const MAX_SEMAPHORE_NAME: usize = 251;

/// The environment variables Hashpipe finds its status buffer by, as the
/// binary read them (`None`: unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashpipeEnv {
    /// `$HASHPIPE_STATUS_KEY`: the key, a number in any C base.
    pub status_key: Option<String>,
    /// `$HASHPIPE_STATUS_SEMNAME`: the semaphore's name.
    pub status_semname: Option<String>,
    /// `$HASHPIPE_KEYFILE`.
    pub keyfile: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
}

/// A status buffer's key and semaphore name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLocation {
    /// The System V IPC key of the segment.
    pub key: i32,
    /// The named semaphore that guards it, with its leading `/`.
    pub semaphore: String,
    /// The keyfile both came from, if they were derived from one (for
    /// messages).
    pub keyfile: Option<PathBuf>,
    /// The Hashpipe instance (0-63).
    pub instance: u32,
}

impl StatusLocation {
    /// Hashpipe's rule for instance `instance` with keyfile `keyfile`:
    /// key `ftok(keyfile, (instance & 0x3f) | 0x40)`; semaphore the
    /// keyfile with every `/` after the first turned into `_`, then
    /// `_hashpipe_status_<instance & 0x3f>`.
    ///
    /// Fails, naming the path, when the keyfile does not exist or the
    /// semaphore name would be too long.
    pub fn new(keyfile: &Path, instance: u32) -> Result<StatusLocation, StatusError> {
        let semaphore = semaphore_name(keyfile, instance)?;
        let key = keyfile_key(keyfile, instance)?;
        Ok(StatusLocation {
            key,
            semaphore,
            keyfile: Some(keyfile.to_path_buf()),
            instance: instance & 0x3f,
        })
    }

    /// As Hashpipe finds it in its environment `env`: `$HASHPIPE_STATUS_KEY`
    /// and `$HASHPIPE_STATUS_SEMNAME` when set; else derived from `keyfile`,
    /// or when that is `None` from [`default_keyfile`].
    pub fn with_env(
        keyfile: Option<&Path>,
        instance: u32,
        env: &HashpipeEnv,
    ) -> Result<StatusLocation, StatusError> {
        let keyfile = keyfile.map_or_else(
            || default_keyfile(env.keyfile.as_deref(), env.home.as_deref()),
            Path::to_path_buf,
        );
        let key = match &env.status_key {
            Some(text) => {
                parse_c_number(text).ok_or_else(|| StatusError::BadKey { text: text.clone() })?
            }
            None => keyfile_key(&keyfile, instance)?,
        };
        let semaphore = match &env.status_semname {
            Some(name) => check_semaphore_name(name.clone(), &keyfile)?,
            None => semaphore_name(&keyfile, instance)?,
        };
        Ok(StatusLocation {
            key,
            semaphore,
            keyfile: Some(keyfile),
            instance: instance & 0x3f,
        })
    }
}

/// Hashpipe's keyfile (SPEC §9): `$HASHPIPE_KEYFILE` (`hashpipe_keyfile`),
/// else `$HOME` (`home`), else `/tmp`.
pub fn default_keyfile(hashpipe_keyfile: Option<&Path>, home: Option<&Path>) -> PathBuf {
    hashpipe_keyfile
        .or(home)
        .map_or_else(|| PathBuf::from("/tmp"), Path::to_path_buf)
}

fn keyfile_key(keyfile: &Path, instance: u32) -> Result<i32, StatusError> {
    let proj_id = ((instance & 0x3f) | 0x40) as i32;
    sys::ftok(keyfile, proj_id).map_err(|source| StatusError::Keyfile {
        path: keyfile.to_path_buf(),
        source,
    })
}

fn semaphore_name(keyfile: &Path, instance: u32) -> Result<String, StatusError> {
    let path = keyfile.to_string_lossy();
    let mut name = String::with_capacity(path.len() + 20);
    for (i, c) in path.chars().enumerate() {
        name.push(if c == '/' && i > 0 { '_' } else { c });
    }
    name.push_str(&format!("_hashpipe_status_{}", instance & 0x3f));
    check_semaphore_name(name, keyfile)
}

fn check_semaphore_name(name: String, keyfile: &Path) -> Result<String, StatusError> {
    if name.trim_start_matches('/').len() > MAX_SEMAPHORE_NAME {
        return Err(StatusError::SemaphoreNameTooLong {
            len: name.len(),
            keyfile: keyfile.to_path_buf(),
        });
    }
    Ok(name)
}

/// `strtoul(text, NULL, 0)` for a whole string: `0x` hex, leading `0`
/// octal, else decimal; the result is C's conversion to `key_t`.
fn parse_c_number(text: &str) -> Option<i32> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        u64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        u64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse::<u64>().ok()?
    };
    let value = if negative {
        value.wrapping_neg()
    } else {
        value
    };
    // key_t is a 32-bit int: C keeps the low 32 bits.
    Some(value as u32 as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_semaphore_name_follows_hashpipe() {
        assert_eq!(
            semaphore_name(Path::new("/home/panosetigraph"), 0).unwrap(),
            "/home_panosetigraph_hashpipe_status_0"
        );
        assert_eq!(
            semaphore_name(Path::new("/tmp"), 65).unwrap(),
            "/tmp_hashpipe_status_1"
        );
    }

    #[test]
    fn status_keys_are_read_in_any_c_base() {
        assert_eq!(parse_c_number("0x1234"), Some(0x1234));
        assert_eq!(parse_c_number("010"), Some(8));
        assert_eq!(parse_c_number("42"), Some(42));
        assert_eq!(parse_c_number("0"), Some(0));
        assert_eq!(parse_c_number("0xffffffff"), Some(-1));
        assert_eq!(parse_c_number("forty"), None);
    }

    #[test]
    fn the_key_is_ftok_of_the_keyfile_with_the_status_project_id() {
        let dir = tempfile::tempdir().unwrap();
        let a = StatusLocation::new(dir.path(), 0).unwrap();
        let b = StatusLocation::new(dir.path(), 1).unwrap();
        // proj_id is the top byte of an ftok key: 0x40 | instance.
        assert_eq!((a.key as u32) >> 24, 0x40);
        assert_eq!((b.key as u32) >> 24, 0x41);
    }

    #[test]
    fn a_missing_keyfile_or_a_long_name_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-keyfile");
        let error = StatusLocation::new(&missing, 0).unwrap_err();
        assert!(
            error.to_string().contains(&missing.display().to_string()),
            "{error}"
        );
        let long = dir.path().join("k".repeat(250));
        let error = StatusLocation::new(&long, 0).unwrap_err();
        assert!(matches!(error, StatusError::SemaphoreNameTooLong { .. }));
        assert!(
            error.to_string().contains(&long.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn the_keyfile_is_hashpipe_keyfile_else_home_else_tmp() {
        let (k, h) = (Path::new("/opt/hp"), Path::new("/home/panosetigraph"));
        assert_eq!(default_keyfile(Some(k), Some(h)), k);
        assert_eq!(default_keyfile(None, Some(h)), h);
        assert_eq!(default_keyfile(None, None), Path::new("/tmp"));
    }

    #[test]
    fn the_environment_s_key_and_semaphore_win_over_the_keyfile() {
        let dir = tempfile::tempdir().unwrap();
        let env = HashpipeEnv {
            status_key: Some("0x1234".into()),
            status_semname: Some("/my_sem".into()),
            keyfile: Some(PathBuf::from("/nonexistent/keyfile")),
            home: None,
        };
        let loc = StatusLocation::with_env(None, 3, &env).unwrap();
        assert_eq!((loc.key, loc.semaphore.as_str()), (0x1234, "/my_sem"));
        assert_eq!(
            loc.keyfile.as_deref(),
            Some(Path::new("/nonexistent/keyfile"))
        );
        // No overrides: derived from the keyfile ($HOME here), as `new` does.
        let home = HashpipeEnv {
            home: Some(dir.path().to_path_buf()),
            ..HashpipeEnv::default()
        };
        let derived = StatusLocation::with_env(None, 3, &home).unwrap();
        assert_eq!(derived, StatusLocation::new(dir.path(), 3).unwrap());
        let bad = HashpipeEnv {
            status_key: Some("twelve".into()),
            ..home
        };
        assert!(StatusLocation::with_env(None, 3, &bad).is_err());
    }
}
