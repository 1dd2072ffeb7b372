use std::path::PathBuf;

/// What went wrong reading or naming PFF data, and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a PFF frame: `offset` is counted from the start of
    /// the frame (or of the file, when `path` is set).
    #[error("{}byte {offset}: {what}", path_prefix(.path))]
    Format {
        /// The file, when known.
        path: Option<PathBuf>,
        /// Byte offset of the problem.
        offset: u64,
        /// What was expected there.
        what: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file or run-directory name is not of the PANOSETI form.
    #[error("{name:?} is not a PANOSETI {of} name: {what}")]
    Name {
        /// The name as given.
        name: String,
        /// "file" or "run directory".
        of: &'static str,
        /// What is missing or wrong.
        what: String,
    },
    /// White Rabbit and the DAQ node's clock disagree by more than a second.
    #[error("White Rabbit time (pkt_tai {pkt_tai}) and node time (tv_sec {tv_sec}) disagree by more than one second")]
    ClockMismatch {
        /// 10 bits of TAI seconds from the quabo.
        pkt_tai: u32,
        /// The DAQ node's Unix seconds.
        tv_sec: i64,
    },
}

fn path_prefix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

impl Error {
    pub(crate) fn format(offset: u64, what: impl Into<String>) -> Self {
        Error::Format {
            path: None,
            offset,
            what: what.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Places a frame-relative error in a file, at the frame's offset.
    pub(crate) fn in_file(self, file: &std::path::Path, frame_offset: u64) -> Self {
        match self {
            Error::Format { offset, what, .. } => Error::Format {
                path: Some(file.to_path_buf()),
                offset: frame_offset + offset,
                what,
            },
            other => other,
        }
    }
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
