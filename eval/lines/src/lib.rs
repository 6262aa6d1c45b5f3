//! The result lines the exokernel's programs print on the serial console
//! and the evaluation (`eval`, driven by `cargo xtask eval`) parses,
//! defined once: each line is a struct whose `Display` is the printed text
//! and whose `parse` reads it back.
//!
//! - [`DbLine`]: `EXO-DB ...`, one per measured phase of `kvdb`
//!   (apps/src/bin/kvdb/workload.rs);
//! - [`BenchLine`]: `EXO-BENCH ...`, one per workload of `nvmed bench`
//!   (apps/src/bin/nvmed/bench.rs);
//! - [`microbench`]: init's `microbench:` lines (apps/src/bin/init/tests.rs);
//! - [`FsLine`]: `EXO-FS ...`, one per workload of `fsbench` (apps/src/bin/fsbench);
//! - [`recovery::RecoveryLine`]: `EXO-RECOVERY ...`, `kvdb <medium> recover`'s
//!   timed `Db::open` (and the database `eval --recovery` builds for it);
//! - [`qd1poll`]: `EXO-QD1POLL ...` / `EXO-QD1POLL-DRIVER ...`, the block
//!   service at queue depth 1 seen from its client (`nvmetest qd1`).
//! - [`readscale`]: `EXO-READER` / `EXO-READSCALE`, readrandom on one or
//!   two cores (`kvdb pmem readrandom`, init's readers; `eval --readscale`).
//!
//! `no_std` + `alloc` (the bare-metal programs get `alloc` through
//! `exo_rt`); host-tested with a round trip per line kind.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod fs;
pub mod microbench;
pub mod qd1poll;
pub mod readscale;
pub mod recovery;

pub use fs::FsLine;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// What is wrong with a line. The caller adds the line itself.
#[derive(Debug, Clone, PartialEq)]
pub enum LineError {
    /// The line does not start with the kind's prefix.
    WrongPrefix { expected: &'static str },
    /// A word without `=` (or with two).
    Malformed { word: String },
    /// A field given twice.
    Duplicate { field: String },
    /// A field this line kind does not have.
    UnknownField { field: String },
    /// A field the line kind needs is absent.
    MissingField { field: &'static str },
    /// A number that does not parse, is negative or not finite, or `-`
    /// where the field must be present.
    BadNumber { field: &'static str, value: String },
    /// A field whose value is fixed for this line kind has another.
    Unexpected { field: &'static str, value: String },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongPrefix { expected } => write!(f, "does not start with `{expected} `"),
            Self::Malformed { word } => write!(f, "word `{word}` is not a single key=value"),
            Self::Duplicate { field } => write!(f, "field `{field}` given twice"),
            Self::UnknownField { field } => write!(f, "has an unknown field `{field}`"),
            Self::MissingField { field } => write!(f, "has no `{field}=`"),
            Self::BadNumber { field, value } => {
                write!(f, "field `{field}={value}` is not a non-negative number")
            }
            Self::Unexpected { field, value } => write!(f, "has `{field}={value}`"),
        }
    }
}

/// A number printed with a fixed count of decimals.
struct Fixed(f64, usize);

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.*}", self.1, self.0)
    }
}

/// A number that may be absent (`-`: not measured on this medium).
struct Maybe(Option<f64>, usize);

impl fmt::Display for Maybe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => Fixed(v, self.1).fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The `key=value` words of a line after its prefix, every one used once.
struct Fields<'a> {
    words: Vec<(&'a str, &'a str, bool)>,
}

impl<'a> Fields<'a> {
    fn new(line: &'a str, prefix: &'static str) -> Result<Self, LineError> {
        let body = line
            .trim()
            .strip_prefix(prefix)
            .filter(|b| b.starts_with(' '))
            .ok_or(LineError::WrongPrefix { expected: prefix })?;
        let mut words: Vec<(&str, &str, bool)> = Vec::new();
        for w in body.split_whitespace() {
            match w.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() && !v.contains('=') => {
                    if words.iter().any(|(o, _, _)| *o == k) {
                        return Err(LineError::Duplicate { field: k.to_string() });
                    }
                    words.push((k, v, false));
                }
                _ => return Err(LineError::Malformed { word: w.to_string() }),
            }
        }
        Ok(Fields { words })
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, LineError> {
        let w = self.words.iter_mut().find(|(k, _, _)| *k == field).ok_or(LineError::MissingField { field })?;
        w.2 = true;
        Ok(w.1)
    }

    fn string(&mut self, field: &'static str) -> Result<String, LineError> {
        self.str(field).map(String::from)
    }

    fn fixed(&mut self, field: &'static str, value: &'static str) -> Result<(), LineError> {
        match self.str(field)? {
            v if v == value => Ok(()),
            v => Err(LineError::Unexpected { field, value: v.to_string() }),
        }
    }

    fn int(&mut self, field: &'static str) -> Result<u64, LineError> {
        let v = self.str(field)?;
        v.parse().map_err(|_| LineError::BadNumber { field, value: v.to_string() })
    }

    fn maybe(&mut self, field: &'static str) -> Result<Option<f64>, LineError> {
        match self.str(field)? {
            "-" => Ok(None),
            v => v
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(Some)
                .ok_or(LineError::BadNumber { field, value: v.to_string() }),
        }
    }

    fn num(&mut self, field: &'static str) -> Result<f64, LineError> {
        self.maybe(field)?.ok_or(LineError::BadNumber { field, value: "-".to_string() })
    }

    /// Every word was a field of the kind.
    fn done(self) -> Result<(), LineError> {
        match self.words.iter().find(|w| !w.2) {
            Some((k, _, _)) => Err(LineError::UnknownField { field: k.to_string() }),
            None => Ok(()),
        }
    }
}

/// One measured phase of `kvdb` (libdb on the exokernel): per-op counts
/// over the phase. Printed with 3 decimals (`tsc_per_op`: none); `None`
/// prints as `-` (not measured on this medium, or the kernel's info page
/// was not shared).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DbLine {
    /// `nvme`, `nvme-vf` or `pmem`.
    pub medium: String,
    pub workload: String,
    pub value_bytes: u64,
    pub durability: String,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// TSC ticks over the phase per op (under `-icount shift=0`: guest
    /// instructions per op, machine-wide).
    pub tsc_per_op: f64,
    /// The kernel's counters, all processes (kvdb, the driver, init).
    pub syscalls_per_op: Option<f64>,
    pub upcalls_per_op: Option<f64>,
    /// kvdb's own.
    pub kvdb_syscalls_per_op: f64,
    pub kvdb_upcalls_per_op: f64,
    pub yields_per_op: f64,
    pub bytes_copied_per_op: f64,
    pub bytes_written_per_op: f64,
    pub flushes_per_op: f64,
    pub writes_per_op: f64,
    pub device_write_cmds_per_op: Option<f64>,
    pub device_flushes_per_op: Option<f64>,
    pub device_bytes_written_per_op: Option<f64>,
    pub blockq_requests_per_op: Option<f64>,
    /// Cache lines written back (pmem).
    pub lines_flushed_per_op: f64,
    pub doorbells_per_op: Option<f64>,
    pub checkpoints: u64,
    pub tsc_per_us: u64,
}

impl DbLine {
    pub const PREFIX: &'static str = "EXO-DB";
    /// The engine the line is for (kvdb runs libdb only).
    pub const ENGINE: &'static str = "libdb";

    pub fn parse(line: &str) -> Result<DbLine, LineError> {
        let mut f = Fields::new(line, Self::PREFIX)?;
        f.fixed("engine", Self::ENGINE)?;
        let l = DbLine {
            medium: f.string("medium")?,
            workload: f.string("workload")?,
            value_bytes: f.int("value_bytes")?,
            durability: f.string("durability")?,
            ops: f.int("ops")?,
            ops_per_sec: f.num("ops_per_sec")?,
            p50_us: f.num("p50_us")?,
            p99_us: f.num("p99_us")?,
            tsc_per_op: f.num("tsc_per_op")?,
            syscalls_per_op: f.maybe("syscalls_per_op")?,
            upcalls_per_op: f.maybe("upcalls_per_op")?,
            kvdb_syscalls_per_op: f.num("kvdb_syscalls_per_op")?,
            kvdb_upcalls_per_op: f.num("kvdb_upcalls_per_op")?,
            yields_per_op: f.num("yields_per_op")?,
            bytes_copied_per_op: f.num("bytes_copied_per_op")?,
            bytes_written_per_op: f.num("bytes_written_per_op")?,
            flushes_per_op: f.num("flushes_per_op")?,
            writes_per_op: f.num("writes_per_op")?,
            device_write_cmds_per_op: f.maybe("device_write_cmds_per_op")?,
            device_flushes_per_op: f.maybe("device_flushes_per_op")?,
            device_bytes_written_per_op: f.maybe("device_bytes_written_per_op")?,
            blockq_requests_per_op: f.maybe("blockq_requests_per_op")?,
            lines_flushed_per_op: f.num("lines_flushed_per_op")?,
            doorbells_per_op: f.maybe("doorbells_per_op")?,
            checkpoints: f.int("checkpoints")?,
            tsc_per_us: f.int("tsc_per_us")?,
        };
        f.done()?;
        Ok(l)
    }
}

impl fmt::Display for DbLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |v| Fixed(v, 3);
        let m = |v| Maybe(v, 3);
        write!(
            f,
            "{} engine={} medium={} workload={} value_bytes={} durability={} ops={} \
             ops_per_sec={} p50_us={} p99_us={} tsc_per_op={} syscalls_per_op={} upcalls_per_op={} \
             kvdb_syscalls_per_op={} kvdb_upcalls_per_op={} \
             yields_per_op={} bytes_copied_per_op={} bytes_written_per_op={} flushes_per_op={} writes_per_op={} \
             device_write_cmds_per_op={} device_flushes_per_op={} device_bytes_written_per_op={} blockq_requests_per_op={} \
             lines_flushed_per_op={} doorbells_per_op={} checkpoints={} tsc_per_us={}",
            Self::PREFIX,
            Self::ENGINE,
            self.medium,
            self.workload,
            self.value_bytes,
            self.durability,
            self.ops,
            n(self.ops_per_sec),
            n(self.p50_us),
            n(self.p99_us),
            Fixed(self.tsc_per_op, 0),
            m(self.syscalls_per_op),
            m(self.upcalls_per_op),
            n(self.kvdb_syscalls_per_op),
            n(self.kvdb_upcalls_per_op),
            n(self.yields_per_op),
            n(self.bytes_copied_per_op),
            n(self.bytes_written_per_op),
            n(self.flushes_per_op),
            n(self.writes_per_op),
            m(self.device_write_cmds_per_op),
            m(self.device_flushes_per_op),
            m(self.device_bytes_written_per_op),
            m(self.blockq_requests_per_op),
            n(self.lines_flushed_per_op),
            m(self.doorbells_per_op),
            self.checkpoints,
            self.tsc_per_us,
        )
    }
}

/// One workload of `nvmed bench` (raw 4 KiB NVMe I/O): the driver's own
/// timing and doorbell counts and the kernel's crossing counters over the
/// measured loop (machine-wide).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BenchLine {
    pub workload: String,
    pub ops: u64,
    /// Length of the loop in µs (printed as seconds with 6 decimals).
    pub micros: u64,
    pub iops: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// All doorbell writes (SQ + CQ) per I/O, printed with 2 decimals.
    pub doorbells_per_io: f64,
    /// Submission-queue doorbells over the loop (the driver's own count).
    pub sq_doorbells: u64,
    pub cq_doorbells: u64,
    pub syscalls: u64,
    pub upcalls: u64,
    pub timer_ticks: u64,
}

impl BenchLine {
    pub const PREFIX: &'static str = "EXO-BENCH";
    pub const SYSTEM: &'static str = "exo";
    pub const ENGINE: &'static str = "nvme-raw";

    /// The loop's length in seconds.
    pub fn secs(&self) -> f64 {
        self.micros as f64 / 1e6
    }

    pub fn parse(line: &str) -> Result<BenchLine, LineError> {
        let mut f = Fields::new(line, Self::PREFIX)?;
        f.fixed("system", Self::SYSTEM)?;
        f.fixed("engine", Self::ENGINE)?;
        let workload = f.string("workload")?;
        let ops = f.int("ops")?;
        let secs = f.str("secs")?;
        let bad = || LineError::BadNumber { field: "secs", value: secs.to_string() };
        let micros = match secs.split_once('.') {
            Some((s, us)) if us.len() == 6 && us.bytes().all(|b| b.is_ascii_digit()) => s
                .parse::<u64>()
                .ok()
                .and_then(|s| s.checked_mul(1_000_000))
                .and_then(|s| s.checked_add(us.parse().ok()?))
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        let l = BenchLine {
            workload,
            ops,
            micros,
            iops: f.int("iops")?,
            p50_us: f.int("p50_us")?,
            p99_us: f.int("p99_us")?,
            doorbells_per_io: f.num("doorbells_per_io")?,
            sq_doorbells: f.int("sq_doorbells")?,
            cq_doorbells: f.int("cq_doorbells")?,
            syscalls: f.int("syscalls")?,
            upcalls: f.int("upcalls")?,
            timer_ticks: f.int("timer_ticks")?,
        };
        f.done()?;
        Ok(l)
    }
}

impl fmt::Display for BenchLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} system={} engine={} workload={} ops={} secs={}.{:06} iops={} p50_us={} p99_us={} \
             doorbells_per_io={} sq_doorbells={} cq_doorbells={} syscalls={} upcalls={} timer_ticks={}",
            Self::PREFIX,
            Self::SYSTEM,
            Self::ENGINE,
            self.workload,
            self.ops,
            self.micros / 1_000_000,
            self.micros % 1_000_000,
            self.iops,
            self.p50_us,
            self.p99_us,
            Fixed(self.doorbells_per_io, 2),
            self.sq_doorbells,
            self.cq_doorbells,
            self.syscalls,
            self.upcalls,
            self.timer_ticks,
        )
    }
}

#[cfg(test)]
mod tests;
