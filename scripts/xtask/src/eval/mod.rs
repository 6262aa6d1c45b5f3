//! `cargo xtask eval`: dispatch to the evaluation drivers. `host` (micro-
//! benchmarks of the libOS code on the host) and `linux` (the Linux
//! baseline guest on the standard machine) are owned by the eval helpers;
//! this file only parses the flags.

use anyhow::{bail, Result};

mod db;
mod drivers;
mod drivers_smp;
mod fs;
mod host;
mod kernel;
mod linux;
mod readscale;
mod recovery;

/// `EVAL_ROUNDS=N`: fewer (or more) interleaved rounds for `--db`,
/// `--drivers` and `--readscale` (its timed boot) than their defaults, for a host too loaded to finish them
/// in time (a development aid; the reports record the rounds used).
pub fn rounds_override() -> Result<Option<usize>> {
    match std::env::var("EVAL_ROUNDS") {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => bail!("EVAL_ROUNDS={v:?}: expected a whole number of rounds, at least 1"),
        },
    }
}

/// `EVAL_BUDGET_SECS=N`: a wall-clock budget for `--linux` and `--db`
/// (eval::budget): they stop starting work when it runs out and report
/// what they did not run, instead of being killed with nothing written.
pub fn budget_override() -> Result<Option<std::time::Duration>> {
    match std::env::var("EVAL_BUDGET_SECS") {
        Err(_) => Ok(None),
        Ok(v) => eval::budget::parse_budget(&v).map(Some).map_err(anyhow::Error::msg),
    }
}

/// The host's load averages (1, 5, 15 min) for a report's environment:
/// TCG times mean little without them.
pub(super) fn host_load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// `git describe --always --dirty` of the checkout: which code a report measured.
pub(super) fn git_describe(root: &std::path::Path) -> String {
    crate::cmd::output(std::process::Command::new("git").args([
        "-C",
        &root.to_string_lossy(),
        "describe",
        "--always",
        "--dirty",
    ]))
    .map(|s| s.trim().to_string())
    .unwrap_or_else(|e| format!("unknown ({e:#})"))
}

/// An exokernel boot's command line: under `-icount` with `idlespin`, so
/// that no CPU halts and the TSC ticks over a phase are exactly the
/// instructions executed (eval/DB.md, "the icount claim": a halted CPU
/// lets QEMU warp the clock by the time it waits).
pub(super) fn exo_cmdline(base: String, icount: bool) -> String {
    if icount {
        base + " idlespin"
    } else {
        base
    }
}

/// The most CPUs `--smp` gives a machine: the largest the machine
/// variants test the kernel on (`smp-4`).
const MAX_EVAL_CPUS: u32 = 4;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EvalOpts {
    pub host: bool,
    pub linux: bool,
    pub drivers: bool,
    pub kernel: bool,
    pub db: bool,
    pub fs: bool,
    pub recovery: bool,
    pub readscale: bool,
    pub quick: bool,
    /// `--resume`, with `--linux` alone: measure the full matrix's rows no
    /// stored segment has yet, as one more segment (`linux::run_resumed`).
    pub resume: bool,
    /// `--smp N`, with `--db`: both machines of `eval --db` get N CPUs
    /// (round-robin TCG); with `--drivers` (N = 2): the QD1 comparison with
    /// the block driver polling on a core of its own (`drivers_smp`).
    /// `None` = the standard machine's one CPU.
    pub smp: Option<u32>,
}

/// Parse the flags after `eval`. With none of --host/--linux/--drivers/
/// --kernel/--db/--fs/--recovery, run host and linux (the others are opt-in).
pub fn parse(args: &[String]) -> Result<EvalOpts> {
    let mut o = EvalOpts::default();
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smp" => {
                let v = args.next().map(String::as_str).unwrap_or("");
                match v.parse::<u32>() {
                    Ok(n) if (1..=MAX_EVAL_CPUS).contains(&n) => o.smp = Some(n),
                    _ => bail!("`--smp {v}`: expected a number of CPUs from 1 to {}", MAX_EVAL_CPUS),
                }
            }
            "--host" => o.host = true,
            "--linux" => o.linux = true,
            "--drivers" => o.drivers = true,
            "--kernel" => o.kernel = true,
            "--db" => o.db = true,
            "--fs" => o.fs = true,
            "--recovery" => o.recovery = true,
            "--readscale" => o.readscale = true,
            "--quick" => o.quick = true,
            "--resume" => o.resume = true,
            other => {
                bail!("`eval` does not take `{other}` (flags: --host --linux --drivers --kernel --db --fs --recovery --readscale --quick --resume --smp N)")
            }
        }
    }
    if let Some(n) = o.smp {
        let others = o.host || o.linux || o.kernel || o.fs || o.recovery || o.readscale;
        if others || o.db == o.drivers {
            bail!("`--smp N` goes with `--db` alone or `--drivers` alone (only those boot both systems on N CPUs)");
        }
        if o.drivers && n < 2 {
            bail!("`--drivers --smp {n}`: the driver needs a core of its own, so at least 2");
        }
    }
    if o.resume {
        let others = o.host || o.drivers || o.kernel || o.db || o.fs || o.recovery || o.readscale;
        if !o.linux || others || o.quick {
            bail!("`--resume` goes with `--linux` alone, without `--quick` (it continues the full matrix)");
        }
    }
    if !(o.host || o.linux || o.drivers || o.kernel || o.db || o.fs || o.recovery || o.readscale) {
        o.host = true;
        o.linux = true;
    }
    Ok(o)
}

pub fn main(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    match (o.drivers, o.smp) {
        (true, Some(cpus)) => drivers_smp::run(o.quick, cpus)?,
        (true, None) => drivers::run(o.quick)?,
        _ => {}
    }
    if o.kernel {
        kernel::run()?;
    }
    if o.db {
        db::run(o.quick, o.smp.unwrap_or(1))?;
    }
    if o.fs {
        fs::run(o.quick)?;
    }
    if o.recovery {
        recovery::run(o.quick)?;
    }
    if o.readscale {
        readscale::run(o.quick)?;
    }
    if o.host {
        host::run(o.quick)?;
    }
    if o.linux {
        linux::run(o.quick, o.resume)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<EvalOpts> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags() {
        assert_eq!(p(&[]).unwrap(), EvalOpts { host: true, linux: true, ..EvalOpts::default() });
        assert_eq!(p(&["--linux", "--quick"]).unwrap(), EvalOpts { linux: true, quick: true, ..EvalOpts::default() });
        assert!(p(&["--drivers"]).unwrap().drivers);
        assert_eq!(
            p(&["--db", "--quick"]).unwrap(),
            EvalOpts { db: true, quick: true, ..EvalOpts::default() },
            "--db alone runs only the db comparison"
        );
        assert_eq!(p(&["--fs", "--quick"]).unwrap(), EvalOpts { fs: true, quick: true, ..EvalOpts::default() });
        assert_eq!(
            p(&["--recovery", "--quick"]).unwrap(),
            EvalOpts { recovery: true, quick: true, ..EvalOpts::default() }
        );
        assert_eq!(
            p(&["--readscale"]).unwrap(),
            EvalOpts { readscale: true, ..EvalOpts::default() },
            "--readscale alone runs only readrandom on 1 and 2 cores"
        );
        assert!(p(&["--fast"]).is_err());
        assert_eq!(p(&["--drivers", "--smp", "2"]).unwrap().smp, Some(2));
        assert!(p(&["--drivers", "--smp"]).is_err());
        assert!(p(&["--drivers", "--smp", "1"]).is_err());
        assert!(p(&["--db", "--drivers", "--smp", "2"]).is_err(), "--smp with one of the two");
        assert_eq!(p(&["--db", "--quick", "--smp", "2"]).unwrap().smp, Some(2));
        assert_eq!(p(&["--smp", "2", "--db"]).unwrap().smp, Some(2));
        assert!(p(&["--db", "--smp"]).is_err(), "a number must follow --smp");
        assert!(p(&["--db", "--smp", "0"]).is_err());
        assert!(p(&["--db", "--smp", "two"]).is_err());
        assert!(p(&["--linux", "--smp", "2"]).is_err(), "--smp only with --db or --drivers");
        assert!(p(&["--linux", "--resume"]).unwrap().resume);
        assert!(p(&["--resume"]).is_err(), "--resume needs --linux");
        assert!(p(&["--linux", "--quick", "--resume"]).is_err(), "the quick plan is one short run");
        assert!(p(&["--linux", "--db", "--resume"]).is_err());
        assert!(p(&["--smp", "2"]).is_err(), "--smp alone would mean host + linux");
    }
}
