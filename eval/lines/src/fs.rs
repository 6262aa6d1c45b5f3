//! `EXO-FS ...`: one line per workload of `fsbench` (libfs linked into an
//! application on the exokernel, apps/src/bin/fsbench), parsed by
//! `eval::fs` (`cargo xtask eval --fs`).

use super::{Fields, Fixed, LineError, Maybe};
use alloc::string::String;
use core::fmt;

/// The workloads, in the order fsbench runs them (eval/FS.md defines one
/// operation of each; the Linux side, `eval::fsbench`, makes the same).
pub const WORKLOADS: [&str; 5] = ["append-fsync", "create-small", "mmap-overwrite", "meta-mix", "seq-read"];
/// Bytes one `append-fsync` / `create-small` operation writes.
pub const BLOCK_BYTES: u64 = 4096;
/// Bytes one `mmap-overwrite` operation stores.
pub const SMALL_WRITE_BYTES: u64 = 64;
/// The mapped file `mmap-overwrite` stores into.
pub const MAPPED_FILE_BYTES: u64 = 1 << 20;
/// Bytes one `seq-read` operation reads.
pub const READ_CHUNK_BYTES: u64 = 64 << 10;

/// The file offset of `mmap-overwrite`'s operation `i`: 64-byte aligned,
/// spread over the mapped file's 256 pages.
pub fn overwrite_offset(i: u64) -> u64 {
    ((i * 37) % 256) * BLOCK_BYTES + (i % 64) * SMALL_WRITE_BYTES
}

/// Payload bytes one operation of `workload` writes or reads.
pub fn bytes_per_op(workload: &str) -> Option<u64> {
    match workload {
        "append-fsync" | "create-small" => Some(BLOCK_BYTES),
        "mmap-overwrite" => Some(SMALL_WRITE_BYTES),
        "meta-mix" => Some(0),
        "seq-read" => Some(READ_CHUNK_BYTES),
        _ => None,
    }
}

/// One measured workload of `fsbench`: per-op counts over the phase.
/// Printed with 3 decimals (`tsc_per_op`: none); `None` prints as `-`
/// (not measured on this medium, or the kernel's info page was not shared).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FsLine {
    /// `pmem` or `nvme`.
    pub medium: String,
    /// `append-fsync`, `create-small`, `mmap-overwrite`, `meta-mix`, `seq-read`.
    pub workload: String,
    /// How the operation is made durable (`fsync`, `persist`, `msync`,
    /// `sync-at-end`, `none`).
    pub method: String,
    pub ops: u64,
    /// Payload bytes one operation writes or reads.
    pub bytes_per_op: u64,
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// TSC ticks over the phase per op (under `-icount shift=0`: guest
    /// instructions per op, machine-wide).
    pub tsc_per_op: f64,
    /// The kernel's counters, all processes (fsbench, the driver, init).
    pub syscalls_per_op: Option<f64>,
    pub upcalls_per_op: Option<f64>,
    /// fsbench's own.
    pub app_syscalls_per_op: f64,
    pub app_upcalls_per_op: f64,
    /// Bytes copied into and out of the block service's shared data area.
    pub bytes_copied_per_op: f64,
    /// What libfs asked of its storage: writes, bytes, barriers.
    pub writes_per_op: f64,
    pub bytes_written_per_op: f64,
    pub flushes_per_op: f64,
    /// Block-service commands (NVMe only).
    pub device_write_cmds_per_op: Option<f64>,
    pub device_read_cmds_per_op: Option<f64>,
    pub device_flushes_per_op: Option<f64>,
    pub device_bytes_written_per_op: Option<f64>,
    /// Cache lines written back and fences (pmem only).
    pub lines_flushed_per_op: Option<f64>,
    pub fences_per_op: Option<f64>,
    /// libfs log commits and checkpoints over the phase (totals).
    pub commits: u64,
    pub checkpoints: u64,
    /// Timer ticks over the phase (total, the kernel's count; `None` if
    /// the info page was not shared): the upcalls they cause are
    /// preemption, not the file system's doing.
    pub timer_ticks: Option<u64>,
    pub tsc_per_us: u64,
}

impl FsLine {
    pub const PREFIX: &'static str = "EXO-FS";
    /// The file system the line is for.
    pub const ENGINE: &'static str = "libfs";

    pub fn parse(line: &str) -> Result<FsLine, LineError> {
        let mut f = Fields::new(line, Self::PREFIX)?;
        f.fixed("engine", Self::ENGINE)?;
        let l = FsLine {
            medium: f.string("medium")?,
            workload: f.string("workload")?,
            method: f.string("method")?,
            ops: f.int("ops")?,
            bytes_per_op: f.int("bytes_per_op")?,
            ops_per_sec: f.num("ops_per_sec")?,
            p50_us: f.num("p50_us")?,
            p99_us: f.num("p99_us")?,
            tsc_per_op: f.num("tsc_per_op")?,
            syscalls_per_op: f.maybe("syscalls_per_op")?,
            upcalls_per_op: f.maybe("upcalls_per_op")?,
            app_syscalls_per_op: f.num("app_syscalls_per_op")?,
            app_upcalls_per_op: f.num("app_upcalls_per_op")?,
            bytes_copied_per_op: f.num("bytes_copied_per_op")?,
            writes_per_op: f.num("writes_per_op")?,
            bytes_written_per_op: f.num("bytes_written_per_op")?,
            flushes_per_op: f.num("flushes_per_op")?,
            device_write_cmds_per_op: f.maybe("device_write_cmds_per_op")?,
            device_read_cmds_per_op: f.maybe("device_read_cmds_per_op")?,
            device_flushes_per_op: f.maybe("device_flushes_per_op")?,
            device_bytes_written_per_op: f.maybe("device_bytes_written_per_op")?,
            lines_flushed_per_op: f.maybe("lines_flushed_per_op")?,
            fences_per_op: f.maybe("fences_per_op")?,
            commits: f.int("commits")?,
            checkpoints: f.int("checkpoints")?,
            timer_ticks: match f.str("timer_ticks")? {
                "-" => None,
                v => Some(v.parse().map_err(|_| LineError::BadNumber { field: "timer_ticks", value: v.into() })?),
            },
            tsc_per_us: f.int("tsc_per_us")?,
        };
        f.done()?;
        Ok(l)
    }
}

impl fmt::Display for FsLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |v| Fixed(v, 3);
        let m = |v| Maybe(v, 3);
        write!(
            f,
            "{} engine={} medium={} workload={} method={} ops={} bytes_per_op={} \
             ops_per_sec={} p50_us={} p99_us={} tsc_per_op={} syscalls_per_op={} upcalls_per_op={} \
             app_syscalls_per_op={} app_upcalls_per_op={} bytes_copied_per_op={} \
             writes_per_op={} bytes_written_per_op={} flushes_per_op={} \
             device_write_cmds_per_op={} device_read_cmds_per_op={} device_flushes_per_op={} \
             device_bytes_written_per_op={} lines_flushed_per_op={} fences_per_op={} \
             commits={} checkpoints={} timer_ticks={} tsc_per_us={}",
            Self::PREFIX,
            Self::ENGINE,
            self.medium,
            self.workload,
            self.method,
            self.ops,
            self.bytes_per_op,
            n(self.ops_per_sec),
            n(self.p50_us),
            n(self.p99_us),
            Fixed(self.tsc_per_op, 0),
            m(self.syscalls_per_op),
            m(self.upcalls_per_op),
            n(self.app_syscalls_per_op),
            n(self.app_upcalls_per_op),
            n(self.bytes_copied_per_op),
            n(self.writes_per_op),
            n(self.bytes_written_per_op),
            n(self.flushes_per_op),
            m(self.device_write_cmds_per_op),
            m(self.device_read_cmds_per_op),
            m(self.device_flushes_per_op),
            m(self.device_bytes_written_per_op),
            m(self.lines_flushed_per_op),
            m(self.fences_per_op),
            self.commits,
            self.checkpoints,
            Ticks(self.timer_ticks),
            self.tsc_per_us,
        )
    }
}

/// An optional count: `-` when absent.
struct Ticks(Option<u64>);

impl fmt::Display for Ticks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line with a distinct value in every field, so a field read into
    /// another's place shows.
    fn line() -> FsLine {
        FsLine {
            medium: "nvme".into(),
            workload: "mmap-overwrite".into(),
            method: "msync".into(),
            ops: 201,
            bytes_per_op: 64,
            ops_per_sec: 1.5,
            p50_us: 2.25,
            p99_us: 3.125,
            tsc_per_op: 4000.0,
            syscalls_per_op: Some(5.5),
            upcalls_per_op: None,
            app_syscalls_per_op: 6.75,
            app_upcalls_per_op: 7.25,
            bytes_copied_per_op: 8.5,
            writes_per_op: 9.125,
            bytes_written_per_op: 10.5,
            flushes_per_op: 11.25,
            device_write_cmds_per_op: Some(12.75),
            device_read_cmds_per_op: Some(13.5),
            device_flushes_per_op: None,
            device_bytes_written_per_op: Some(14.25),
            lines_flushed_per_op: Some(15.5),
            fences_per_op: Some(16.125),
            commits: 17,
            checkpoints: 18,
            timer_ticks: Some(20),
            tsc_per_us: 19,
        }
    }

    #[test]
    fn round_trips_every_field() {
        let l = line();
        let text = l.to_string();
        assert_eq!(FsLine::parse(&text), Ok(l.clone()));
        for (k, v) in [("ops", "201"), ("tsc_per_op", "4000"), ("upcalls_per_op", "-"), ("fences_per_op", "16.125")] {
            assert!(text.contains(&alloc::format!(" {k}={v}")), "{k} in {text}");
        }
        let mut none = l.clone();
        none.syscalls_per_op = None;
        none.device_write_cmds_per_op = None;
        none.device_read_cmds_per_op = None;
        none.device_bytes_written_per_op = None;
        none.lines_flushed_per_op = None;
        none.fences_per_op = None;
        none.timer_ticks = None;
        assert_eq!(FsLine::parse(&none.to_string()), Ok(none));
    }

    #[test]
    fn overwrite_offsets_stay_in_the_file_and_aligned() {
        for i in 0..10_000 {
            let off = overwrite_offset(i);
            assert!(
                off + SMALL_WRITE_BYTES <= MAPPED_FILE_BYTES && off.is_multiple_of(SMALL_WRITE_BYTES),
                "{i}: {off}"
            );
        }
        // Consecutive operations land on different pages.
        assert_ne!(overwrite_offset(0) / BLOCK_BYTES, overwrite_offset(1) / BLOCK_BYTES);
        assert!(WORKLOADS.iter().all(|w| bytes_per_op(w).is_some()));
        assert_eq!(bytes_per_op("fsync"), None);
    }

    #[test]
    fn bad_lines_name_the_field() {
        let text = line().to_string();
        let e = |from: &str, to: &str| FsLine::parse(&text.replacen(from, to, 1)).unwrap_err();
        assert_eq!(e(" tsc_per_us=19", ""), LineError::MissingField { field: "tsc_per_us" });
        assert_eq!(e("engine=libfs", "engine=ext4"), LineError::Unexpected { field: "engine", value: "ext4".into() });
        assert_eq!(e("ops=201", "ops=x"), LineError::BadNumber { field: "ops", value: "x".into() });
        assert_eq!(
            e("timer_ticks=20", "timer_ticks=1.5"),
            LineError::BadNumber { field: "timer_ticks", value: "1.5".into() }
        );
        assert_eq!(e(" commits=17", " commits=17 color=red"), LineError::UnknownField { field: "color".into() });
        assert_eq!(FsLine::parse("EXO-DB engine=libfs"), Err(LineError::WrongPrefix { expected: "EXO-FS" }));
    }
}
