//! One followed PFF file: notice growth, read its newest complete frame.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

use pff::{RawFrame, MAX_HEADER_BYTES};

use crate::tree::PffEntry;
use crate::warn::{Cause, Warnings};

/// The open file and what its first frame told.
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    header_len: usize,
    frame_size: u64,
    /// Length at the last check.
    len: u64,
}

/// What is known of a file whose first frame is not PFF: skipped until it
/// is replaced or truncated.
struct Bad {
    dev: u64,
    ino: u64,
    len: u64,
}

/// The active file of one (module, data product).
pub(crate) struct Followed {
    pub entry: PffEntry,
    open: Option<Open>,
    bad: Option<Bad>,
    /// Index of the last frame handed on from this file.
    last_index: Option<u64>,
    /// Look the path up at the next check: the file may have been replaced.
    recheck: bool,
    /// When it was last checked on a notification.
    pub notified_at: Option<std::time::Instant>,
}

/// A frame read from a followed file.
pub(crate) struct Read {
    pub file: Arc<str>,
    pub index: u64,
    pub frame: RawFrame,
}

impl Followed {
    pub(crate) fn new(entry: PffEntry) -> Self {
        Followed {
            entry,
            open: None,
            bad: None,
            last_index: None,
            recheck: false,
            notified_at: None,
        }
    }

    /// The file's directory changed: it may have been replaced or removed.
    pub(crate) fn recheck_path(&mut self) {
        self.recheck = true;
    }

    /// The next check hands on the newest frame even if it was handed on
    /// before (for watchers who arrived while nothing was read).
    pub(crate) fn forget_sent(&mut self) {
        self.last_index = None;
    }

    /// The newest complete frame, if the file grew past the last one handed
    /// on. One `fstat`, and one read of one frame when there is news.
    pub(crate) fn check(&mut self, warnings: &mut Warnings) -> Option<Read> {
        let meta = self.stat(warnings)?;
        let (dev, ino, len) = (meta.dev(), meta.ino(), meta.len());
        self.notice_replaced(dev, ino, len);
        if self.still_bad(dev, ino, len, warnings) {
            return None;
        }
        if self.open.is_none() {
            match open_file(&self.entry, dev, ino, len, warnings) {
                Opened::Open(open) => self.open = Some(open),
                Opened::NotYet => {}
                Opened::Bad => self.bad = Some(Bad { dev, ino, len }),
            }
        }
        self.read_newest(len, warnings)
    }

    /// The file's metadata, by the open handle when it can answer; `None`
    /// (and the handle dropped) when neither handle nor path can.
    fn stat(&mut self, warnings: &mut Warnings) -> Option<fs::Metadata> {
        let path = &self.entry.path;
        // The open handle answers for growth at a third of the cost of a
        // stat by path; the path is looked up again only when the file may
        // have been replaced (its directory changed) or was unlinked. (So
        // mutants that always ask the path, `!self.recheck` as false or
        // `nlink() < 0`, are equivalent but for the cost.)
        let by_handle = match &self.open {
            Some(open) if !self.recheck => open.file.metadata().ok().filter(|m| m.nlink() > 0),
            _ => None,
        };
        self.recheck = false;
        match by_handle.map_or_else(|| fs::metadata(path), Ok) {
            Ok(meta) => Some(meta),
            Err(e) => {
                let cause = if e.kind() == io::ErrorKind::NotFound {
                    Cause::Vanished
                } else {
                    Cause::Unreadable
                };
                warnings.once(path, cause, format_args!("cannot stat PFF file: {e}"));
                // A file that comes back under this name is a new one,
                // followed from its newest frame like any replacement.
                (self.open, self.last_index) = (None, None);
                None
            }
        }
    }

    /// A file replaced or truncated under its name is followed afresh,
    /// from its newest frame.
    fn notice_replaced(&mut self, dev: u64, ino: u64, len: u64) {
        let Some(open) = &self.open else { return };
        let path = &self.entry.path;
        if (open.dev, open.ino) != (dev, ino) {
            tracing::warn!(path = %path.display(), "PFF file was replaced; following the new one from its newest frame");
            (self.open, self.last_index) = (None, None);
        } else if len < open.len {
            tracing::warn!(path = %path.display(), "PFF file shrank from {} to {len} bytes; following it from its newest frame", open.len);
            (self.open, self.last_index) = (None, None);
        }
    }

    /// Whether this is still the file found not to be PFF (the same file,
    /// not shorter); forgets it, and says it recovered, otherwise.
    fn still_bad(&mut self, dev: u64, ino: u64, len: u64, warnings: &mut Warnings) -> bool {
        let Some(bad) = &self.bad else { return false };
        if (bad.dev, bad.ino) == (dev, ino) && len >= bad.len {
            return true;
        }
        self.bad = None;
        warnings.recovered(&self.entry.path, Cause::NotPff);
        false
    }

    /// The newest whole frame of the open file, now `len` bytes long, when
    /// it was not handed on before.
    fn read_newest(&mut self, len: u64, warnings: &mut Warnings) -> Option<Read> {
        let path = &self.entry.path;
        let open = self.open.as_mut()?;
        open.len = len;
        let frames = len / open.frame_size;
        let newest = frames.checked_sub(1)?;
        if self.last_index.is_some_and(|last| last >= newest) {
            return None;
        }
        let size = open.frame_size as usize;
        let mut bytes = vec![0; size];
        if let Err(e) = open
            .file
            .read_exact_at(&mut bytes, newest * open.frame_size)
        {
            // Shorter than its length a moment ago: it shrank, which the
            // next check reports.
            if e.kind() != io::ErrorKind::UnexpectedEof {
                warnings.once(
                    path,
                    Cause::Unreadable,
                    format_args!("cannot read PFF file: {e}"),
                );
            }
            return None;
        }
        // Not retried: the next frame is read when the file grows again.
        self.last_index = Some(newest);
        match RawFrame::with_header_len(bytes, self.entry.name.dp, open.header_len) {
            Ok(frame) => {
                warnings.recovered(path, Cause::Misaligned);
                Some(Read {
                    file: self.entry.file_name.clone(),
                    index: newest,
                    frame,
                })
            }
            Err(e) => {
                warnings.once(
                    path,
                    Cause::Misaligned,
                    format_args!("frame {newest} is not where the first frame's size puts it (did the frame size change inside the file?): {e}"),
                );
                None
            }
        }
    }
}

/// What opening a file found.
enum Opened {
    Open(Open),
    /// The first header is still being written (or the file is empty).
    NotYet,
    /// Its first frame is not PFF.
    Bad,
}

/// Opens the file and learns its frame size from the first header;
/// `None` while that header is incomplete or when the file is bad.
fn open_file(entry: &PffEntry, dev: u64, ino: u64, len: u64, warnings: &mut Warnings) -> Opened {
    let path = &entry.path;
    if len == 0 {
        return Opened::NotYet;
    }
    let file = match open_noatime(path) {
        Ok(file) => file,
        Err(e) => {
            warnings.once(
                path,
                Cause::Unreadable,
                format_args!("cannot open PFF file: {e}"),
            );
            return Opened::NotYet;
        }
    };
    let mut head = vec![0; (len as usize).min(MAX_HEADER_BYTES)];
    if let Err(e) = file.read_exact_at(&mut head, 0) {
        if e.kind() != io::ErrorKind::UnexpectedEof {
            warnings.once(
                path,
                Cause::Unreadable,
                format_args!("cannot read PFF file: {e}"),
            );
        }
        return Opened::NotYet;
    }
    warnings.recovered(path, Cause::Unreadable);
    let first_frame = pff::header_len(&head).and_then(|header_len| {
        // The tracker never parses the frames it hands on; one parse
        // here keeps files that only look like PFF out.
        let text =
            std::str::from_utf8(&head[..header_len - pff::HEADER_END.len()]).map_err(|_| {
                pff::Error::Format {
                    path: None,
                    offset: 0,
                    what: "header is not UTF-8 text".into(),
                }
            })?;
        pff::Header::parse(text)?;
        Ok(header_len)
    });
    match first_frame {
        Ok(header_len) => Opened::Open(Open {
            file,
            dev,
            ino,
            header_len,
            frame_size: (header_len + entry.name.dp.image_bytes()) as u64,
            len,
        }),
        // The first header is still being written.
        Err(_)
            if head.first() == Some(&b'{')
                && pff::header_len(&head).is_err()
                && head.len() < MAX_HEADER_BYTES =>
        {
            Opened::NotYet
        }
        Err(e) => {
            warnings.once(path, Cause::NotPff, format_args!("not a PFF file: {e}"));
            Opened::Bad
        }
    }
}

/// Opens for reading without updating the access time where allowed (the
/// file's owner, or root). A file being written always has an access time
/// older than its modification time, so every read would otherwise write
/// the inode back: more work for the disk than the read itself.
fn open_noatime(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
        .or_else(|e| match e.raw_os_error() {
            Some(libc::EPERM) => File::open(path),
            _ => Err(e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pff::{DataProduct, PffName};
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    const NAME: &str = "start_2024-07-25T04_34_46Z.dp_img16.bpp_2.module_1.seqno_0.pff";

    /// The first `n` frames of the repository's real img16 recording.
    fn frames(n: u64) -> Vec<Vec<u8>> {
        let sample = testdata::fixture(DataProduct::Img16.name(), 1);
        let file = pff::PffFile::open(&sample.path).unwrap();
        (0..n)
            .map(|i| file.read_raw(i).unwrap().as_bytes().to_vec())
            .collect()
    }

    fn followed(path: &Path) -> Followed {
        Followed::new(PffEntry {
            path: path.to_path_buf(),
            file_name: NAME.into(),
            name: PffName::parse(NAME).unwrap(),
        })
    }

    fn append(path: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    /// The index of the frame a check hands on, if any.
    fn check(f: &mut Followed, w: &mut Warnings) -> Option<u64> {
        f.check(w).map(|r| r.index)
    }

    /// The index and the bytes of the frame a check hands on, if any.
    fn read(f: &mut Followed, w: &mut Warnings) -> Option<(u64, Vec<u8>)> {
        f.check(w).map(|r| (r.index, r.frame.as_bytes().to_vec()))
    }

    #[test]
    fn a_frame_is_handed_on_once_until_the_file_grows_or_a_watcher_asks_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NAME);
        let frames = frames(3);
        append(&path, &frames[0]);
        append(&path, &frames[1]);
        let (mut f, mut w) = (followed(&path), Warnings::default());
        assert_eq!(
            read(&mut f, &mut w),
            Some((1, frames[1].clone())),
            "the newest, whole"
        );
        assert_eq!(check(&mut f, &mut w), None, "no growth, no frame");
        f.forget_sent();
        assert_eq!(
            check(&mut f, &mut w),
            Some(1),
            "a new watcher gets it again"
        );
        append(&path, &frames[2][..100]);
        assert_eq!(check(&mut f, &mut w), None, "a torn frame is not news");
        append(&path, &frames[2][100..]);
        assert_eq!(check(&mut f, &mut w), Some(2));
    }

    #[test]
    fn a_file_rewritten_shorter_in_place_is_followed_from_its_newest_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NAME);
        let frames = frames(4);
        for frame in &frames {
            append(&path, frame);
        }
        let (mut f, mut w) = (followed(&path), Warnings::default());
        assert_eq!(check(&mut f, &mut w), Some(3));
        // Same inode, truncated and two frames written again.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(0).unwrap();
        drop(file);
        append(&path, &frames[0]);
        append(&path, &frames[1]);
        assert_eq!(check(&mut f, &mut w), Some(1));
        assert_eq!(check(&mut f, &mut w), None);
    }

    #[test]
    fn a_file_moved_aside_and_replaced_is_followed_once_its_directory_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NAME);
        let frames = frames(3);
        for frame in &frames {
            append(&path, frame);
        }
        let (mut f, mut w) = (followed(&path), Warnings::default());
        assert_eq!(check(&mut f, &mut w), Some(2));
        // The old file keeps a name (its handle still answers), a new one
        // takes the path: only the directory's notification tells.
        fs::rename(&path, dir.path().join("old.pff")).unwrap();
        append(&path, &frames[0]);
        f.recheck_path();
        assert_eq!(
            check(&mut f, &mut w),
            Some(0),
            "the new file's newest frame"
        );
    }

    #[test]
    fn a_file_that_is_not_pff_is_skipped_until_it_is_replaced_or_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NAME);
        append(&path, b"not a PFF file at all\n");
        let (mut f, mut w) = (followed(&path), Warnings::default());
        assert_eq!(check(&mut f, &mut w), None);
        assert!(f.bad.is_some(), "known bad");
        append(&path, &frames(1)[0]);
        assert_eq!(
            check(&mut f, &mut w),
            None,
            "still the bad file, only longer"
        );
        // Emptied in place: shorter than when it was found bad, so it is
        // looked at afresh, and its first frame read once written.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(0).unwrap();
        drop(file);
        assert_eq!(check(&mut f, &mut w), None);
        assert!(f.bad.is_none(), "forgotten once it shrank");
        append(&path, &frames(1)[0]);
        assert_eq!(check(&mut f, &mut w), Some(0));
    }

    #[test]
    fn a_header_still_being_written_waits_but_one_longer_than_any_header_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NAME);
        let frame = &frames(1)[0];
        append(&path, &frame[..20]);
        let (mut f, mut w) = (followed(&path), Warnings::default());
        assert_eq!(check(&mut f, &mut w), None);
        assert!(f.bad.is_none(), "an unfinished header is not bad");
        append(&path, &frame[20..]);
        assert_eq!(check(&mut f, &mut w), Some(0));

        let long = dir.path().join("long.pff");
        let mut text = vec![b'{'];
        text.resize(MAX_HEADER_BYTES + 10, b' ');
        append(&long, &text);
        let mut f = followed(&long);
        assert_eq!(check(&mut f, &mut w), None);
        assert!(f.bad.is_some(), "no header is that long");
    }

    #[test]
    fn a_bad_file_replaced_under_its_name_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NAME);
        append(&path, b"not a PFF file at all\n");
        let (mut f, mut w) = (followed(&path), Warnings::default());
        assert_eq!(check(&mut f, &mut w), None);
        let new = dir.path().join("new.pff");
        append(&new, &frames(1)[0]);
        append(&new, &frames(2)[1]);
        fs::rename(&new, &path).unwrap();
        assert_eq!(check(&mut f, &mut w), Some(1), "a new file, though longer");
    }

    #[test]
    fn a_file_deleted_and_written_again_is_followed_without_a_notification() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NAME);
        let frames = frames(2);
        append(&path, &frames[0]);
        append(&path, &frames[1]);
        let (mut f, mut w) = (followed(&path), Warnings::default());
        assert_eq!(check(&mut f, &mut w), Some(1));
        // The open handle still answers for the unlinked file; its link
        // count says it is gone.
        fs::remove_file(&path).unwrap();
        assert_eq!(check(&mut f, &mut w), None);
        assert!(w.holds(&path, Cause::Vanished), "said to have vanished");
        append(&path, &frames[0]);
        assert_eq!(
            check(&mut f, &mut w),
            Some(0),
            "the new file at the old path"
        );
    }

    /// A file shorter than its length a moment ago is caught mid-shrink:
    /// the next check sees it, and nothing is worth a warning.
    #[test]
    fn reading_past_the_end_of_a_file_that_shrank_warns_of_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NAME);
        let frame = &frames(1)[0];
        append(&path, frame);
        let (mut f, mut w) = (followed(&path), Warnings::default());
        let longer = fs::metadata(&path).unwrap().len() + 2 * frame.len() as u64;
        let entry = followed(&dir.path().join("short.pff")).entry;
        append(&entry.path, &frame[..40]);
        let short = fs::metadata(&entry.path).unwrap();
        let opened = open_file(&entry, short.dev(), short.ino(), short.len() + 1000, &mut w);
        assert!(matches!(opened, Opened::NotYet), "a header cut short");
        assert_eq!(check(&mut f, &mut w), Some(0));
        assert_eq!(f.read_newest(longer, &mut w).map(|r| r.index), None);
        assert_eq!(w.count(), 0, "no warning");
    }

    /// `O_NOATIME` is refused (EPERM) on a file the reader does not own,
    /// unless it has `CAP_FOWNER`: such a file (Hashpipe writing as another
    /// user) is opened all the same, without it.
    #[test]
    fn a_file_another_user_owns_is_opened_without_noatime() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join(NAME);
        append(&ours, &frames(1)[0]);
        let theirs = if fs::metadata(&ours).unwrap().uid() == 0 {
            std::os::unix::fs::chown(&ours, Some(65534), Some(65534)).unwrap();
            ours
        } else {
            std::path::PathBuf::from("/etc/passwd")
        };
        std::thread::spawn(move || {
            testdata::caps::drop_capabilities(testdata::caps::FOWNER);
            let plain = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOATIME)
                .open(&theirs);
            let refused = plain.err().and_then(|e| e.raw_os_error());
            assert_eq!(
                refused,
                Some(libc::EPERM),
                "O_NOATIME on {}",
                theirs.display()
            );
            assert!(open_noatime(&theirs).is_ok(), "{}", theirs.display());
        })
        .join()
        .unwrap();
    }
}
