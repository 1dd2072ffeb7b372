//! Every system call of the status buffer, and all of hpio's `unsafe`:
//! System V shared memory (`shmget`, `shmat`, `shmctl`, `shmdt`), named
//! POSIX semaphores (`sem_open`, `sem_timedwait`, `sem_post`,
//! `sem_close`, `sem_unlink`) and `ftok`. Everything above this module
//! is safe code.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;
use std::time::Duration;

use super::cards::CARD_LEN;

/// `SHM_DEST` of `<linux/shm.h>`: the segment is marked for removal and
/// goes when its last process detaches.
const SHM_DEST: libc::c_ushort = 0o1000;

fn c_string(text: &[u8]) -> io::Result<CString> {
    CString::new(text)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// `ftok(path, proj_id)`.
pub(crate) fn ftok(path: &Path, proj_id: i32) -> io::Result<libc::key_t> {
    let path = c_string(path.as_os_str().as_bytes())?;
    // SAFETY: `path` is a NUL-terminated string that lives across the call;
    // ftok only reads it.
    let key = unsafe { libc::ftok(path.as_ptr(), proj_id) };
    if key == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(key)
}

/// The id of the segment of `key`, if one exists. Creates nothing.
pub(crate) fn find_segment(key: libc::key_t) -> io::Result<Option<i32>> {
    // SAFETY: shmget takes plain integers; without IPC_CREAT it only looks.
    let id = unsafe { libc::shmget(key, 0, 0) };
    if id == -1 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(error),
        };
    }
    Ok(Some(id))
}

/// `IPC_STAT` of segment `id`: its size, and whether it is marked for
/// removal. `None` when it is gone.
fn segment_stat(id: i32) -> io::Result<Option<(usize, bool)>> {
    // SAFETY: shmid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid, writable shmid_ds for IPC_STAT to fill.
    let rc = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
    if rc == -1 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::EIDRM) => Ok(None),
            _ => Err(error),
        };
    }
    Ok(Some((ds.shm_segsz, ds.shm_perm.mode & SHM_DEST != 0)))
}

/// Marks segment `id` for removal (`IPC_RMID`).
pub(crate) fn remove_segment(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer; a null pointer is what it expects.
    let rc = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A segment attached to this process; detached on drop.
#[derive(Debug)]
pub(crate) struct Segment {
    id: i32,
    addr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping belongs to the process, not to a thread; a Segment
// is only read or written through &self / &mut self like any buffer.
unsafe impl Send for Segment {}

impl Segment {
    /// Attaches segment `id` read-only.
    pub(crate) fn attach_read_only(id: i32) -> io::Result<Segment> {
        Segment::attach(id, libc::SHM_RDONLY)
    }

    /// Creates a segment of `len` bytes, mode 0666, for `key` (failing if
    /// one exists) and attaches it for writing: what a simulator does.
    pub(crate) fn create(key: libc::key_t, len: usize) -> io::Result<Segment> {
        // SAFETY: shmget takes plain integers.
        let id = unsafe { libc::shmget(key, len, 0o666 | libc::IPC_CREAT | libc::IPC_EXCL) };
        if id == -1 {
            return Err(io::Error::last_os_error());
        }
        Segment::attach(id, 0).inspect_err(|_| {
            let _ = remove_segment(id);
        })
    }

    fn attach(id: i32, flags: i32) -> io::Result<Segment> {
        let Some((len, _)) = segment_stat(id)? else {
            return Err(io::Error::from_raw_os_error(libc::EIDRM));
        };
        // SAFETY: a null address lets the kernel choose where to map; the
        // result is checked before use.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if addr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        let addr = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("shmat returned null"))?;
        Ok(Segment { id, addr, len })
    }

    pub(crate) fn id(&self) -> i32 {
        self.id
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the segment was removed or marked for removal.
    pub(crate) fn is_removed(&self) -> io::Result<bool> {
        Ok(segment_stat(self.id)?.is_none_or(|(_, doomed)| doomed))
    }

    /// Copies whole cards into `out` up to and including the first card
    /// whose key is `END` (or the whole segment if there is none).
    /// Call with the lock held.
    pub(crate) fn copy_through_end(&self, out: &mut Vec<u8>) {
        out.clear();
        let cards = self.len / CARD_LEN;
        out.reserve(cards * CARD_LEN);
        for i in 0..cards {
            let mut card = [0u8; CARD_LEN];
            // SAFETY: `i * CARD_LEN + CARD_LEN <= len`, the attached size
            // from IPC_STAT, so the source is inside the mapping for as
            // long as `self` lives; `card` is a distinct local. Writers
            // that follow Hashpipe's protocol hold the lock while they
            // write, and the caller holds it now.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.addr.as_ptr().add(i * CARD_LEN),
                    card.as_mut_ptr(),
                    CARD_LEN,
                );
            }
            out.extend_from_slice(&card);
            if card.starts_with(b"END") && card[3..8].iter().all(|&b| b == b' ') {
                break;
            }
        }
    }

    /// Writes `bytes` at the start of a segment this process created.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let len = bytes.len().min(self.len);
        // SAFETY: the segment was attached writable by `create` (the only
        // constructor a writer has), `len` is inside the mapping and
        // `bytes` is a separate buffer.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.addr.as_ptr(), len) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `addr` came from shmat and is detached only here.
        unsafe {
            libc::shmdt(self.addr.as_ptr().cast());
        }
    }
}

/// A named POSIX semaphore opened by this process; closed on drop.
#[derive(Debug)]
pub(crate) struct NamedSemaphore {
    sem: NonNull<libc::sem_t>,
}

// SAFETY: POSIX semaphores are made to be used from any thread.
unsafe impl Send for NamedSemaphore {}
// SAFETY: as above; sem_timedwait and sem_post are thread-safe.
unsafe impl Sync for NamedSemaphore {}

impl NamedSemaphore {
    /// Opens an existing semaphore; `None` if there is none. Creates nothing.
    pub(crate) fn open(name: &str) -> io::Result<Option<NamedSemaphore>> {
        let c_name = c_string(name.as_bytes())?;
        // SAFETY: `c_name` is NUL-terminated and outlives the call; without
        // O_CREAT, sem_open takes no further arguments.
        let sem = unsafe { libc::sem_open(c_name.as_ptr(), 0) };
        if sem == libc::SEM_FAILED {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                _ => Err(error),
            };
        }
        Ok(NonNull::new(sem).map(|sem| NamedSemaphore { sem }))
    }

    /// Creates (or opens) a semaphore with value 1, mode 0666, as Hashpipe
    /// does: what a simulator does.
    pub(crate) fn create(name: &str) -> io::Result<NamedSemaphore> {
        let c_name = c_string(name.as_bytes())?;
        // SAFETY: with O_CREAT, sem_open reads a mode and an initial value,
        // both passed as C unsigned ints (their promoted types).
        let sem = unsafe {
            libc::sem_open(
                c_name.as_ptr(),
                libc::O_CREAT,
                0o666 as libc::c_uint,
                1 as libc::c_uint,
            )
        };
        if sem == libc::SEM_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(sem)
            .map(|sem| NamedSemaphore { sem })
            .ok_or_else(|| io::Error::other("sem_open returned null"))
    }

    /// Removes the semaphore's name.
    pub(crate) fn unlink(name: &str) -> io::Result<()> {
        let c_name = c_string(name.as_bytes())?;
        // SAFETY: `c_name` is NUL-terminated and outlives the call.
        if unsafe { libc::sem_unlink(c_name.as_ptr()) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits at most `timeout` for the semaphore; `false` if the wait
    /// timed out.
    pub(crate) fn wait_for(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = realtime_after(timeout)?;
        loop {
            // SAFETY: `sem` came from sem_open and is closed only on drop;
            // `deadline` is a valid timespec.
            let rc = unsafe { libc::sem_timedwait(self.sem.as_ptr(), &deadline) };
            if rc == 0 {
                return Ok(true);
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ETIMEDOUT) => return Ok(false),
                _ => return Err(error),
            }
        }
    }

    /// Releases the semaphore.
    pub(crate) fn post(&self) -> io::Result<()> {
        // SAFETY: `sem` came from sem_open and is closed only on drop.
        if unsafe { libc::sem_post(self.sem.as_ptr()) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for NamedSemaphore {
    fn drop(&mut self) {
        // SAFETY: `sem` came from sem_open and is closed only here.
        unsafe {
            libc::sem_close(self.sem.as_ptr());
        }
    }
}

/// `CLOCK_REALTIME` now plus `timeout`: sem_timedwait's absolute deadline.
fn realtime_after(timeout: Duration) -> io::Result<libc::timespec> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let nanos = now.tv_nsec + i64::from(timeout.subsec_nanos());
    Ok(libc::timespec {
        tv_sec: now.tv_sec
            + timeout.as_secs() as libc::time_t
            + (nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as _,
    })
}
