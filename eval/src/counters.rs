//! Counters read in-process around a measured phase.
//!
//! - `/proc/self/io`: `syscr`/`syscw` (read-/write-family calls), `rchar`/
//!   `wchar` (bytes those calls copied between user and kernel) and
//!   `write_bytes` (bytes this process caused to be sent to storage).
//! - All system calls: a `perf_event_open` counter on the
//!   `raw_syscalls:sys_enter` tracepoint for this process (feature
//!   `engines`). Where perf or tracefs is not available the count is
//!   reported as unavailable, never estimated.
//! - Flushes: `eval-bench` links with `-Wl,--wrap` around the fsync family
//!   and the write family (see `src/bin/eval-bench/flushwrap.rs`); the
//!   wrappers bump the atomics here.

use std::sync::atomic::{AtomicU64, Ordering};

/// One reading of `/proc/<pid>/io`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcIo {
    pub rchar: u64,
    pub wchar: u64,
    pub syscr: u64,
    pub syscw: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub cancelled_write_bytes: u64,
}

impl ProcIo {
    /// Parses the text of `/proc/<pid>/io`. Every field must be present.
    pub fn parse(text: &str) -> Result<ProcIo, String> {
        let mut io = ProcIo::default();
        let mut seen = 0u32;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (name, value) = line.split_once(':').ok_or_else(|| format!("/proc io line without ':': {line:?}"))?;
            let value: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("/proc io field {name}: {:?} is not a number", value.trim()))?;
            let (slot, bit) = match name.trim() {
                "rchar" => (&mut io.rchar, 0),
                "wchar" => (&mut io.wchar, 1),
                "syscr" => (&mut io.syscr, 2),
                "syscw" => (&mut io.syscw, 3),
                "read_bytes" => (&mut io.read_bytes, 4),
                "write_bytes" => (&mut io.write_bytes, 5),
                "cancelled_write_bytes" => (&mut io.cancelled_write_bytes, 6),
                _ => continue, // newer kernels may add fields
            };
            *slot = value;
            seen |= 1 << bit;
        }
        if seen != 0x7f {
            return Err(format!("/proc io text lacks fields (mask {seen:#x})"));
        }
        Ok(io)
    }

    /// Reads `/proc/self/io`.
    pub fn read_self() -> Result<ProcIo, String> {
        let text = std::fs::read_to_string("/proc/self/io").map_err(|e| format!("reading /proc/self/io: {e}"))?;
        ProcIo::parse(&text)
    }

    /// Counter growth from `earlier` to `self` (saturating: counters only grow).
    pub fn since(&self, earlier: &ProcIo) -> ProcIo {
        ProcIo {
            rchar: self.rchar.saturating_sub(earlier.rchar),
            wchar: self.wchar.saturating_sub(earlier.wchar),
            syscr: self.syscr.saturating_sub(earlier.syscr),
            syscw: self.syscw.saturating_sub(earlier.syscw),
            read_bytes: self.read_bytes.saturating_sub(earlier.read_bytes),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
            cancelled_write_bytes: self.cancelled_write_bytes.saturating_sub(earlier.cancelled_write_bytes),
        }
    }
}

/// One reading of a block device's `/sys/block/<dev>/stat` (the fields we
/// use; see the kernel's Documentation/block/stat.rst).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStat {
    /// Write requests completed (after merging).
    pub write_ios: u64,
    /// 512-byte sectors written.
    pub write_sectors: u64,
    /// Flush requests completed (kernel 5.5+; 0 where the file is older).
    pub flush_ios: u64,
}

impl BlockStat {
    pub fn parse(text: &str) -> Result<BlockStat, String> {
        let fields: Vec<u64> = text
            .split_whitespace()
            .map(|f| f.parse::<u64>().map_err(|_| format!("block stat field {f:?} is not a number")))
            .collect::<Result<_, _>>()?;
        if fields.len() < 11 {
            return Err(format!("block stat has {} fields, expected at least 11", fields.len()));
        }
        if fields.len() < 17 {
            return Err(format!("block stat has {} fields: this kernel does not report flushes", fields.len()));
        }
        Ok(BlockStat { write_ios: fields[4], write_sectors: fields[6], flush_ios: fields[15] })
    }

    pub fn read(path: &std::path::Path) -> Result<BlockStat, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        BlockStat::parse(&text)
    }
}

/// fsync, fdatasync, msync, sync_file_range, syncfs calls made by anything
/// in the process (counted by the link-time wrappers of `eval-bench`).
pub static FSYNC_CALLS: AtomicU64 = AtomicU64::new(0);
/// write-family calls to a descriptor opened O_SYNC or O_DSYNC: each one is
/// a device flush (or FUA write) the kernel performs on the caller's behalf.
pub static SYNC_WRITES: AtomicU64 = AtomicU64::new(0);
/// Set by the wrappers' installer: the counters above are live.
pub static FLUSH_WRAPPERS_LINKED: AtomicU64 = AtomicU64::new(0);

/// A reading of the flush counters, or None when the wrappers are not
/// linked into this binary (then flushes cannot be counted here).
pub fn flushes_now() -> Option<u64> {
    if FLUSH_WRAPPERS_LINKED.load(Ordering::Relaxed) == 0 {
        return None;
    }
    Some(FSYNC_CALLS.load(Ordering::Relaxed) + SYNC_WRITES.load(Ordering::Relaxed))
}

#[cfg(feature = "engines")]
pub use perf::SyscallCounter;

#[cfg(feature = "engines")]
mod perf {
    //! Counting every system call of this process with the
    //! `raw_syscalls:sys_enter` tracepoint through `perf_event_open`.

    use std::fs;

    /// The first 64 bytes of the kernel's `struct perf_event_attr`
    /// (PERF_ATTR_SIZE_VER0), all a counting tracepoint event needs; the
    /// libc crate does not define it.
    #[repr(C)]
    #[derive(Default)]
    struct PerfEventAttr {
        type_: u32,
        size: u32,
        config: u64,
        sample_period: u64,
        sample_type: u64,
        read_format: u64,
        /// Bit field: bit 0 disabled, bit 1 inherit, ...
        flags: u64,
        wakeup_events: u32,
        bp_type: u32,
        config1: u64,
    }
    const PERF_TYPE_TRACEPOINT: u32 = 2;
    const FLAG_INHERIT: u64 = 1 << 1;

    const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

    fn tracepoint_id() -> Result<u64, String> {
        let rel = "events/raw_syscalls/sys_enter/id";
        for dir in TRACEFS_DIRS {
            if let Ok(text) = fs::read_to_string(format!("{dir}/{rel}")) {
                return text.trim().parse().map_err(|_| format!("{dir}/{rel}: not a number: {text:?}"));
            }
        }
        // Not mounted (a fresh guest): try to mount tracefs ourselves.
        let target = c"/sys/kernel/tracing";
        // SAFETY: all pointers are valid NUL-terminated strings that outlive
        // the call; a null `data` is allowed by mount(2).
        let rc = unsafe { libc::mount(c"tracefs".as_ptr(), target.as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null()) };
        if rc == 0 {
            if let Ok(text) = fs::read_to_string(format!("{}/{rel}", TRACEFS_DIRS[0])) {
                return text.trim().parse().map_err(|_| format!("tracepoint id not a number: {text:?}"));
            }
        }
        Err("tracefs not available (no raw_syscalls:sys_enter id)".into())
    }

    /// A running count of this process's system calls (threads created
    /// after it inherit it).
    pub struct SyscallCounter {
        fd: libc::c_int,
        /// Calls the counter's own read adds to each measured interval.
        overhead: u64,
    }

    impl SyscallCounter {
        pub fn open() -> Result<SyscallCounter, String> {
            let id = tracepoint_id()?;
            let attr = PerfEventAttr {
                type_: PERF_TYPE_TRACEPOINT,
                size: std::mem::size_of::<PerfEventAttr>() as u32,
                config: id,
                flags: FLAG_INHERIT,
                ..PerfEventAttr::default()
            };
            // SAFETY: the attr pointer is valid for the call; pid 0 / cpu -1
            // means "this process, any CPU"; no group fd, no flags.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    &attr as *const PerfEventAttr,
                    0 as libc::pid_t,
                    -1 as libc::c_int,
                    -1 as libc::c_int,
                    0 as libc::c_ulong,
                )
            };
            if fd < 0 {
                return Err(format!("perf_event_open(raw_syscalls:sys_enter): {}", std::io::Error::last_os_error()));
            }
            let mut counter = SyscallCounter { fd: fd as libc::c_int, overhead: 0 };
            // Calibrate: the difference between two back-to-back reads is
            // the reading's own cost.
            let a = counter.read()?;
            let b = counter.read()?;
            counter.overhead = b.saturating_sub(a);
            Ok(counter)
        }

        /// The raw count so far.
        pub fn read(&self) -> Result<u64, String> {
            let mut value = 0u64;
            // SAFETY: `value` is 8 writable bytes, exactly what a perf
            // counter without read_format flags returns.
            let n = unsafe { libc::read(self.fd, &mut value as *mut u64 as *mut libc::c_void, 8) };
            if n != 8 {
                return Err(format!("reading the syscall counter: {}", std::io::Error::last_os_error()));
            }
            Ok(value)
        }

        /// Calls between two readings, less the readings' own cost.
        pub fn between(&self, start: u64, end: u64) -> u64 {
            end.saturating_sub(start).saturating_sub(self.overhead)
        }
    }

    impl Drop for SyscallCounter {
        fn drop(&mut self) {
            // SAFETY: fd is a descriptor this struct opened and owns.
            unsafe { libc::close(self.fd) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "rchar: 6976\nwchar: 12\nsyscr: 10\nsyscw: 1\nread_bytes: 0\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n";

    #[test]
    fn parses_proc_io() {
        let io = ProcIo::parse(SAMPLE).unwrap();
        assert_eq!(io.rchar, 6976);
        assert_eq!(io.syscw, 1);
        assert_eq!(io.write_bytes, 4096);
        let later = ProcIo { write_bytes: 8192, ..io };
        assert_eq!(later.since(&io).write_bytes, 4096);
        assert_eq!(io.since(&later).write_bytes, 0);
    }

    #[test]
    fn rejects_malformed_proc_io() {
        assert!(ProcIo::parse("rchar: x\n").unwrap_err().contains("rchar"));
        assert!(ProcIo::parse("rchar 1\n").unwrap_err().contains("without ':'"));
        assert!(ProcIo::parse("rchar: 1\n").unwrap_err().contains("lacks"));
        let extra = format!("{SAMPLE}future_field: 3\n");
        assert!(ProcIo::parse(&extra).is_ok());
    }

    #[test]
    fn parses_block_stat() {
        let text = "  116846  7190  6877119  166883  282813  64390 35122220  342116  0  33320  516867  15004  41 10651464  5285  50667  2581\n";
        let s = BlockStat::parse(text).unwrap();
        assert_eq!(s, BlockStat { write_ios: 282813, write_sectors: 35122220, flush_ios: 50667 });
        assert!(BlockStat::parse("1 2 3").unwrap_err().contains("at least 11"));
        assert!(BlockStat::parse("1 2 3 4 5 6 7 8 9 10 11").unwrap_err().contains("flushes"));
        assert!(BlockStat::parse("1 2 x").unwrap_err().contains("\"x\""));
    }

    #[test]
    fn reads_own_proc_io_on_linux() {
        if std::path::Path::new("/proc/self/io").exists() {
            let a = ProcIo::read_self().unwrap();
            let b = ProcIo::read_self().unwrap();
            assert!(b.syscr > a.syscr, "reading /proc/self/io is itself a read call");
        }
    }
}
