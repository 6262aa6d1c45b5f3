//! `EXO-QD1POLL ...` and `EXO-QD1POLL-DRIVER ...`: the block service at
//! queue depth 1 measured at its client (`nvmetest qd1`, with `nvmed
//! serve` as the driver; QEMU tests `qd1poll_own_core` and
//! `qd1poll_shared_core`), parsed by `eval::drivers` for `cargo xtask
//! eval --drivers --smp 2`.
//!
//! One client line per workload: where the driver ran (`own-core`: pinned
//! to CPU 1, polling; `shared-core`: on the client's CPU, yielding), the
//! latencies the client saw from submit to answer, and the client's own
//! system calls and yields over the loop. One driver line when the
//! service stops: its requests, NVMe commands, doorbells and system calls
//! over the whole serving loop (both workloads and the flush between).

use super::{Fields, LineError};
use alloc::string::String;
use core::fmt;

/// Where the driver ran, as the client line names it.
/// (`own-sleep`: the driver polling on CPU 1 as for `own-core`, the
/// client sleeping until the completion interrupt wakes it.)
pub const PLACEMENTS: [&str; 3] = ["own-core", "shared-core", "own-sleep"];
/// The workloads, in the order the client runs them (the writes first:
/// the reads read back and check what they wrote).
pub const WORKLOADS: [&str; 2] = ["randwrite-qd1", "randread-qd1"];

#[derive(Debug, Clone, PartialEq)]
pub struct Qd1PollLine {
    pub placement: String,
    pub workload: String,
    pub ops: u64,
    /// Length of the loop in µs.
    pub micros: u64,
    pub iops: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// The client's system calls over the loop (its yields are all of
    /// them when it waits; 0 when the driver polls on its own core).
    pub client_syscalls: u64,
    pub client_yields: u64,
}

impl Qd1PollLine {
    pub const PREFIX: &'static str = "EXO-QD1POLL";

    pub fn parse(line: &str) -> Result<Qd1PollLine, LineError> {
        let mut f = Fields::new(line, Self::PREFIX)?;
        let placement = f.string("placement")?;
        if !PLACEMENTS.contains(&placement.as_str()) {
            return Err(LineError::Unexpected { field: "placement", value: placement });
        }
        let l = Qd1PollLine {
            placement,
            workload: f.string("workload")?,
            ops: f.int("ops")?,
            micros: f.int("micros")?,
            iops: f.int("iops")?,
            p50_us: f.int("p50_us")?,
            p99_us: f.int("p99_us")?,
            client_syscalls: f.int("client_syscalls")?,
            client_yields: f.int("client_yields")?,
        };
        f.done()?;
        Ok(l)
    }
}

impl fmt::Display for Qd1PollLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} placement={} workload={} ops={} micros={} iops={} p50_us={} p99_us={} client_syscalls={} client_yields={}",
            Self::PREFIX,
            self.placement,
            self.workload,
            self.ops,
            self.micros,
            self.iops,
            self.p50_us,
            self.p99_us,
            self.client_syscalls,
            self.client_yields
        )
    }
}

/// The driver's serving loop, printed by `nvmed serve` when it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct Qd1DriverLine {
    /// It polled on its own core (`serve poll`) rather than yielding.
    pub polls: bool,
    pub requests: u64,
    pub commands: u64,
    /// SQ tail and CQ head doorbells together.
    pub doorbells: u64,
    pub syscalls: u64,
    pub idle_yields: u64,
}

impl Qd1DriverLine {
    pub const PREFIX: &'static str = "EXO-QD1POLL-DRIVER";

    pub fn parse(line: &str) -> Result<Qd1DriverLine, LineError> {
        let mut f = Fields::new(line, Self::PREFIX)?;
        let polls = match f.int("polls")? {
            0 => false,
            1 => true,
            n => return Err(LineError::BadNumber { field: "polls", value: alloc::format!("{n}") }),
        };
        let l = Qd1DriverLine {
            polls,
            requests: f.int("requests")?,
            commands: f.int("commands")?,
            doorbells: f.int("doorbells")?,
            syscalls: f.int("syscalls")?,
            idle_yields: f.int("idle_yields")?,
        };
        f.done()?;
        Ok(l)
    }
}

impl fmt::Display for Qd1DriverLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} polls={} requests={} commands={} doorbells={} syscalls={} idle_yields={}",
            Self::PREFIX,
            self.polls as u8,
            self.requests,
            self.commands,
            self.doorbells,
            self.syscalls,
            self.idle_yields
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn qd1poll_lines_round_trip_and_refuse_what_they_do_not_know() {
        let l = Qd1PollLine {
            placement: "own-core".into(),
            workload: "randread-qd1".into(),
            ops: 2000,
            micros: 812_345,
            iops: 2462,
            p50_us: 301,
            p99_us: 911,
            client_syscalls: 0,
            client_yields: 0,
        };
        assert_eq!(Qd1PollLine::parse(&l.to_string()), Ok(l.clone()));
        let other = l.to_string().replace("own-core", "third-core");
        assert!(matches!(Qd1PollLine::parse(&other), Err(LineError::Unexpected { field: "placement", .. })));
        let d =
            Qd1DriverLine { polls: true, requests: 4001, commands: 4001, doorbells: 8002, syscalls: 0, idle_yields: 0 };
        assert_eq!(Qd1DriverLine::parse(&d.to_string()), Ok(d.clone()));
        assert!(Qd1DriverLine::parse(&d.to_string().replace("polls=1", "polls=2")).is_err());
        // The client line's prefix is not the driver line's.
        assert!(Qd1PollLine::parse(&d.to_string()).is_err());
    }
}
