//! A PFF file on disk, possibly still being appended to.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::frame::{header_len, MAX_HEADER_BYTES};
use crate::{DataProduct, Error, Frame, PffName, RawFrame, Result};

/// How much of a file is whole frames, at the moment it was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bytes in one frame (header + `*` + image), the same for every frame.
    pub frame_size: u64,
    /// Complete frames.
    pub frames: u64,
    /// Bytes of a frame still being written (or cut off) at the end.
    pub tail_bytes: u64,
}

impl Layout {
    /// The layout of a file of `len` bytes with frames of `frame_size`.
    pub fn of(len: u64, frame_size: u64) -> Self {
        // A zero size cannot come from a header; all bytes are then tail.
        Layout {
            frame_size,
            frames: len.checked_div(frame_size).unwrap_or(0),
            tail_bytes: len.checked_rem(frame_size).unwrap_or(len),
        }
    }
}

/// An open PFF file.
///
/// Hashpipe prints headers with fixed-width fields, so every frame of a file
/// has the size of the first: frame N is at `N * frame_size`, and the last
/// complete frame is found from the file length alone, by one seek, however
/// large the file.
#[derive(Debug)]
pub struct PffFile {
    path: PathBuf,
    file: File,
    dp: DataProduct,
    header_len: usize,
}

impl PffFile {
    /// Opens a file whose name says its data product.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let dp = PffName::parse(name)?.dp;
        Self::open_as(path, dp)
    }

    /// Opens a file of a known data product, whatever its name.
    ///
    /// Fails while the first frame's header is not complete: the frame size
    /// is not known until then.
    pub fn open_as(path: impl AsRef<Path>, dp: DataProduct) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut head = Vec::with_capacity(1024);
        (&file)
            .take(MAX_HEADER_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(|e| Error::io(&path, e))?;
        let header_len = header_len(&head).map_err(|e| e.in_file(&path, 0))?;
        Ok(PffFile {
            path,
            file,
            dp,
            header_len,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its data product.
    pub fn data_product(&self) -> DataProduct {
        self.dp
    }

    /// Header bytes of every frame (through the `*`).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u64 {
        (self.header_len + self.dp.image_bytes()) as u64
    }

    /// Current length of the file.
    pub fn len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.path, e))?
            .len())
    }

    /// True if the file has no bytes.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Complete frames and torn tail, now.
    pub fn layout(&self) -> Result<Layout> {
        Ok(Layout::of(self.len()?, self.frame_size()))
    }

    /// Where frame `n` starts; an index too large for any file is an error,
    /// not an overflow.
    fn offset_of(&self, n: u64) -> Result<u64> {
        n.checked_mul(self.frame_size())
            .ok_or_else(|| Error::Format {
                path: Some(self.path.clone()),
                offset: u64::MAX,
                what: format!("frame {n} lies beyond any possible file length"),
            })
    }

    /// Reads frame `n` by seek, checking that it is whole and aligned.
    pub fn read_raw(&self, n: u64) -> Result<RawFrame> {
        let size = self.frame_size();
        let offset = self.offset_of(n)?;
        let mut buf = vec![0; size as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(&self.path, e))?;
        RawFrame::with_header_len(buf, self.dp, self.header_len).map_err(|e| Error::Format {
            path: Some(self.path.clone()),
            offset,
            what: format!("frame {n}: {e}"),
        })
    }

    /// Reads and parses frame `n`.
    pub fn read_frame(&self, n: u64) -> Result<Frame> {
        let offset = self.offset_of(n)?;
        self.read_raw(n)?
            .parse()
            .map_err(|e| e.in_file(&self.path, offset))
    }

    /// The last complete frame and its index, or `None` if there is none
    /// yet. A frame still being appended is never returned.
    pub fn last_complete(&self) -> Result<Option<(u64, RawFrame)>> {
        let layout = self.layout()?;
        if layout.frames == 0 {
            return Ok(None);
        }
        let n = layout.frames - 1;
        Ok(Some((n, self.read_raw(n)?)))
    }

    /// Every complete frame from the start, parsed, read sequentially.
    pub fn frames(&self) -> Result<Frames> {
        // A cloned handle shares the file position, which `open_as` moved.
        let mut file = self
            .file
            .try_clone()
            .map_err(|e| Error::io(&self.path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(Frames {
            reader: BufReader::with_capacity(1 << 20, file),
            path: self.path.clone(),
            dp: self.dp,
            header_len: self.header_len,
            next: 0,
            remaining: self.layout()?.frames,
        })
    }
}

/// Iterator over the complete frames of a [`PffFile`].
#[derive(Debug)]
pub struct Frames {
    reader: BufReader<File>,
    path: PathBuf,
    dp: DataProduct,
    header_len: usize,
    next: u64,
    remaining: u64,
}

impl Iterator for Frames {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let size = self.header_len + self.dp.image_bytes();
        let offset = self.next * size as u64;
        self.next += 1;
        let mut buf = vec![0; size];
        if let Err(e) = self.reader.read_exact(&mut buf) {
            self.remaining = 0;
            return Some(Err(Error::io(&self.path, e)));
        }
        let parsed = RawFrame::with_header_len(buf, self.dp, self.header_len)
            .and_then(|raw| raw.parse())
            .map_err(|e| e.in_file(&self.path, offset));
        if parsed.is_err() {
            self.remaining = 0;
        }
        Some(parsed)
    }
}
