//! Giving up some of root's powers in one thread, for tests of what an
//! unprivileged reader on a DAQ node meets (CI runs as root). Linux keeps
//! capabilities per thread: the rest of the test binary is unaffected, and
//! threads started from this one afterwards inherit the smaller set. As
//! another user this changes nothing.

/// `CAP_DAC_OVERRIDE`: read or write any file, whatever its mode.
pub const DAC_OVERRIDE: u32 = 1 << 1;
/// `CAP_DAC_READ_SEARCH`: read any file and list any directory.
pub const DAC_READ_SEARCH: u32 = 1 << 2;
/// `CAP_FOWNER`: act as any file's owner (e.g. open it with `O_NOATIME`).
pub const FOWNER: u32 = 1 << 3;

/// Drops the capabilities in `mask` from the calling thread's effective,
/// permitted and inheritable sets, for good. Panics if the kernel refuses.
#[allow(unsafe_code)] // capget/capset have no safe wrapper
pub fn drop_capabilities(mask: u32) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a version-3 header read or write exactly
    // two `Data`, which `data` holds.
    let got = unsafe { libc::syscall(libc::SYS_capget, &header, data.as_mut_ptr()) };
    assert_eq!(got, 0, "capget: {}", std::io::Error::last_os_error());
    data[0].effective &= !mask;
    data[0].permitted &= !mask;
    data[0].inheritable &= !mask;
    // SAFETY: as above.
    let set = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    assert_eq!(set, 0, "capset: {}", std::io::Error::last_os_error());
}
