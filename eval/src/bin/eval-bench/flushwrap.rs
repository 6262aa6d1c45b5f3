//! Link-time wrappers (`-Wl,--wrap=SYM`, see build.rs) that count the
//! flushes every engine makes, whether from Rust or from bundled C code.
//!
//! A flush is a call of the fsync family (fsync, fdatasync, msync with
//! MS_SYNC, syncfs, sync) or a write to a descriptor opened O_SYNC/O_DSYNC
//! (or a pwritev2 with RWF_SYNC/RWF_DSYNC), which the kernel completes with
//! a device flush or FUA write on the caller's behalf (LMDB writes its meta
//! page that way).

use eval::counters::{FLUSH_WRAPPERS_LINKED, FSYNC_CALLS, SYNC_WRITES};
use libc::{c_int, c_void, iovec, off64_t, off_t, size_t, ssize_t};
use std::sync::atomic::{AtomicU8, Ordering};

extern "C" {
    fn __real_fsync(fd: c_int) -> c_int;
    fn __real_fdatasync(fd: c_int) -> c_int;
    fn __real_msync(addr: *mut c_void, len: size_t, flags: c_int) -> c_int;
    fn __real_syncfs(fd: c_int) -> c_int;
    fn __real_sync();
    fn __real_write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t;
    fn __real_pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t;
    fn __real_pwrite64(fd: c_int, buf: *const c_void, n: size_t, off: off64_t) -> ssize_t;
    fn __real_writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t;
    fn __real_pwritev(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t) -> ssize_t;
    fn __real_pwritev64(fd: c_int, iov: *const iovec, cnt: c_int, off: off64_t) -> ssize_t;
    fn __real_pwritev2(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t, flags: c_int) -> ssize_t;
    fn __real_close(fd: c_int) -> c_int;
}

/// Marks the counters live; call once at start-up.
pub fn install() {
    FLUSH_WRAPPERS_LINKED.store(1, Ordering::Relaxed);
}

fn count_fsync() {
    FSYNC_CALLS.fetch_add(1, Ordering::Relaxed);
}

const UNKNOWN: u8 = 0;
const PLAIN: u8 = 1;
const SYNCED: u8 = 2;
/// Per-descriptor cache of "opened with O_SYNC/O_DSYNC?", reset on close.
static FD_MODE: [AtomicU8; 4096] = [const { AtomicU8::new(UNKNOWN) }; 4096];

fn fd_is_synced(fd: c_int) -> bool {
    let slot = usize::try_from(fd).ok().and_then(|i| FD_MODE.get(i));
    if let Some(slot) = slot {
        match slot.load(Ordering::Relaxed) {
            PLAIN => return false,
            SYNCED => return true,
            _ => {}
        }
    }
    // SAFETY: F_GETFL takes no argument and only reads the descriptor's
    // status flags; an invalid fd just returns -1.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return false;
    }
    let synced = flags & (libc::O_DSYNC | libc::O_SYNC) != 0;
    if let Some(slot) = slot {
        slot.store(if synced { SYNCED } else { PLAIN }, Ordering::Relaxed);
    }
    synced
}

fn count_write(fd: c_int) {
    if fd_is_synced(fd) {
        SYNC_WRITES.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY (for every wrapper below): each forwards its arguments unchanged to
// the real libc function of the same signature (resolved by the linker's
// --wrap), so the caller's obligations are exactly libc's.

#[no_mangle]
pub extern "C" fn __wrap_fsync(fd: c_int) -> c_int {
    count_fsync();
    // SAFETY: see above.
    unsafe { __real_fsync(fd) }
}

#[no_mangle]
pub extern "C" fn __wrap_fdatasync(fd: c_int) -> c_int {
    count_fsync();
    // SAFETY: see above.
    unsafe { __real_fdatasync(fd) }
}

#[no_mangle]
pub extern "C" fn __wrap_msync(addr: *mut c_void, len: size_t, flags: c_int) -> c_int {
    if flags & libc::MS_SYNC != 0 {
        count_fsync();
    }
    // SAFETY: see above.
    unsafe { __real_msync(addr, len, flags) }
}

#[no_mangle]
pub extern "C" fn __wrap_syncfs(fd: c_int) -> c_int {
    count_fsync();
    // SAFETY: see above.
    unsafe { __real_syncfs(fd) }
}

#[no_mangle]
pub extern "C" fn __wrap_sync() {
    count_fsync();
    // SAFETY: see above.
    unsafe { __real_sync() }
}

#[no_mangle]
pub extern "C" fn __wrap_write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    count_write(fd);
    // SAFETY: see above.
    unsafe { __real_write(fd, buf, n) }
}

#[no_mangle]
pub extern "C" fn __wrap_pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t {
    count_write(fd);
    // SAFETY: see above.
    unsafe { __real_pwrite(fd, buf, n, off) }
}

#[no_mangle]
pub extern "C" fn __wrap_pwrite64(fd: c_int, buf: *const c_void, n: size_t, off: off64_t) -> ssize_t {
    count_write(fd);
    // SAFETY: see above.
    unsafe { __real_pwrite64(fd, buf, n, off) }
}

#[no_mangle]
pub extern "C" fn __wrap_writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    count_write(fd);
    // SAFETY: see above.
    unsafe { __real_writev(fd, iov, cnt) }
}

#[no_mangle]
pub extern "C" fn __wrap_pwritev(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t) -> ssize_t {
    count_write(fd);
    // SAFETY: see above.
    unsafe { __real_pwritev(fd, iov, cnt, off) }
}

#[no_mangle]
pub extern "C" fn __wrap_pwritev64(fd: c_int, iov: *const iovec, cnt: c_int, off: off64_t) -> ssize_t {
    count_write(fd);
    // SAFETY: see above.
    unsafe { __real_pwritev64(fd, iov, cnt, off) }
}

#[no_mangle]
pub extern "C" fn __wrap_pwritev2(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t, flags: c_int) -> ssize_t {
    if flags & (libc::RWF_DSYNC | libc::RWF_SYNC) != 0 {
        SYNC_WRITES.fetch_add(1, Ordering::Relaxed);
    } else {
        count_write(fd);
    }
    // SAFETY: see above.
    unsafe { __real_pwritev2(fd, iov, cnt, off, flags) }
}

#[no_mangle]
pub extern "C" fn __wrap_close(fd: c_int) -> c_int {
    if let Some(slot) = usize::try_from(fd).ok().and_then(|i| FD_MODE.get(i)) {
        slot.store(UNKNOWN, Ordering::Relaxed);
    }
    // SAFETY: see above.
    unsafe { __real_close(fd) }
}
