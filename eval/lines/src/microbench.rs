//! init's `microbench` lines (the `test=microbench` boot that
//! `cargo xtask eval --kernel` runs twice): the TSC rate the kernel
//! calibrated and, per operation, the best batch's TSC ticks per op.
//!
//! ```text
//! microbench: tsc ticks per microsecond 2600
//! microbench: null system call (BadSyscall): 1234 ticks
//! ```

use crate::LineError;
use alloc::string::ToString;
use core::fmt;

pub const PREFIX: &str = "microbench: ";

/// The operations init measures, in the order it prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    NullSyscall,
    MapPage,
    YieldRoundtrip,
    /// Share one page into the caller's own space and unmap it (Linux's
    /// counterpart: `mmap` + `munmap` of one anonymous page).
    MapUnmapPage,
    /// A→B→A between two address spaces with no scheduler in between:
    /// A's upcall entry resumes A's own yield at once.
    DirectYieldRoundtrip,
    /// Unmap a page, touch it, the process's own pager maps it back from
    /// the fault upcall and resumes (Linux: `madvise(DONTNEED)` + a fault
    /// that a `userfaultfd` thread resolves).
    FaultUpcall,
}

impl Op {
    pub const ALL: [Op; 6] =
        [Op::NullSyscall, Op::MapPage, Op::YieldRoundtrip, Op::MapUnmapPage, Op::DirectYieldRoundtrip, Op::FaultUpcall];

    /// The `workload` column of eval's kernel.csv.
    pub fn workload(self) -> &'static str {
        match self {
            Op::NullSyscall => "null-syscall",
            Op::MapPage => "map-page",
            Op::YieldRoundtrip => "yield-roundtrip",
            Op::MapUnmapPage => "map-unmap-page",
            Op::DirectYieldRoundtrip => "direct-yield-roundtrip",
            Op::FaultUpcall => "fault-upcall",
        }
    }

    /// What the line says the operation is.
    pub fn label(self) -> &'static str {
        match self {
            Op::NullSyscall => "null system call (BadSyscall)",
            Op::MapPage => "map (move) one 4 KiB page",
            Op::YieldRoundtrip => "null yield round trip (2 yields, 2 upcalls, 2 user-level resumes, init's scheduler)",
            Op::MapUnmapPage => "share and unmap one 4 KiB page",
            Op::DirectYieldRoundtrip => {
                "direct yield round trip (2 yields, 2 upcalls, 2 user-level resumes, no scheduler)"
            }
            Op::FaultUpcall => "page fault upcall to the own pager (unmap, fault, map, resume)",
        }
    }
}

/// `microbench: <label>: <ticks> ticks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpLine {
    pub op: Op,
    pub ticks: u64,
}

impl fmt::Display for OpLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}: {} ticks", self.op.label(), self.ticks)
    }
}

impl OpLine {
    /// `Ok(None)`: the line is not `op`'s; an error: it is, but garbled.
    pub fn parse(line: &str, op: Op) -> Result<Option<OpLine>, LineError> {
        let Some(rest) = line
            .trim()
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix(op.label()))
            .and_then(|r| r.strip_prefix(": "))
        else {
            return Ok(None);
        };
        let ticks = rest
            .strip_suffix(" ticks")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| LineError::BadNumber { field: "ticks", value: rest.to_string() })?;
        Ok(Some(OpLine { op, ticks }))
    }
}

/// `microbench: tsc ticks per microsecond <n>`: the rate the kernel
/// calibrated against the PIT at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TscLine(pub u64);

const TSC: &str = "tsc ticks per microsecond ";

impl fmt::Display for TscLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{TSC}{}", self.0)
    }
}

impl TscLine {
    /// `Ok(None)`: not this line; an error: it is, but the number is garbled.
    pub fn parse(line: &str) -> Result<Option<TscLine>, LineError> {
        let Some(rest) = line.trim().strip_prefix(PREFIX).and_then(|r| r.strip_prefix(TSC)) else {
            return Ok(None);
        };
        rest.parse()
            .map(|n| Some(TscLine(n)))
            .map_err(|_| LineError::BadNumber { field: "tsc ticks per microsecond", value: rest.to_string() })
    }
}
