//! `cargo xtask eval --kernel`: what crossing the exokernel costs, from the
//! `microbench` run of init (null system call, mapping one 4 KiB page, a
//! null `yield` round trip between two address spaces).
//!
//! Two boots of the standard machine: one under `-icount shift=0`, where
//! the guest's TSC advances one tick per guest instruction (the run prints
//! a calibration loop of known length to show it), giving **guest
//! instructions per operation**; and one plain TCG run, whose TSC ticks are
//! converted to time with the TSC rate the kernel calibrated at boot
//! (TCG time: only comparable to other runs under TCG).

use crate::build;
use crate::machine::{self, Machine};
use crate::outcome::Expect;
use crate::runner::{self, RunOptions};
use crate::setup;
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::time::Duration;

/// One measured operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub workload: &'static str,
    pub what: &'static str,
    pub ticks: u64,
}

const OPS: [(&str, &str, &str); 3] = [
    ("null-syscall", "null system call (an invalid number, returns BadSyscall)", "microbench: null system call (BadSyscall): "),
    ("map-page", "map (move) one 4 KiB page", "microbench: map (move) one 4 KiB page: "),
    ("yield-roundtrip", "null yield round trip between two address spaces (2 yields, 2 upcalls, 2 user-level resumes, init's scheduler)", "microbench: null yield round trip"),
];

/// Parse the microbench's serial output.
pub fn parse(serial: &str) -> Result<(Vec<Row>, Option<u64>)> {
    let mut rows = Vec::new();
    for (workload, what, prefix) in OPS {
        let line = serial
            .lines()
            .find(|l| l.starts_with(prefix))
            .with_context(|| format!("no `{prefix}` line"))?;
        let num = line
            .rsplit(": ")
            .next()
            .and_then(|t| t.trim().strip_suffix(" ticks"))
            .and_then(|t| t.parse().ok());
        let Some(ticks) = num else {
            bail!("cannot read the ticks in {line:?}")
        };
        rows.push(Row {
            workload,
            what,
            ticks,
        });
    }
    let tsc = serial
        .lines()
        .find_map(|l| l.strip_prefix("microbench: tsc ticks per microsecond "))
        .and_then(|t| t.trim().parse().ok());
    Ok((rows, tsc))
}

fn boot(ws: &Workspace, arts: &build::Artifacts, icount: bool) -> Result<String> {
    let _images = machine::lock_images(&ws.images_dir())?;
    let m = Machine::new(ws.images_dir())
        .kernel(&arts.kernel)
        .initrd(&arts.boot_image)
        .append("test=microbench")
        .icount(icount);
    let opts = RunOptions {
        name: if icount {
            "microbench-icount".into()
        } else {
            "microbench".into()
        },
        log_dir: ws.qemu_log_dir(),
        timeout: Some(Duration::from_secs(300)),
        echo: false,
        interactive: false,
    };
    let r = runner::run(m.command()?, &opts, Expect::PassLine("microbench"))?;
    if !r.outcome.passed() {
        bail!(
            "microbench run failed: {} (log {})",
            r.outcome,
            r.log_path.display()
        );
    }
    Ok(r.serial)
}

pub fn run() -> Result<()> {
    setup::ensure_all()?;
    let ws = Workspace::load()?;
    let arts = build::build_all(&ws)?;
    println!("eval --kernel: 1/2 boot under -icount shift=0 (instructions)");
    let (instr, _) = parse(&boot(&ws, &arts, true)?)?;
    println!("eval --kernel: 2/2 boot under plain TCG (time)");
    let (time, tsc) = parse(&boot(&ws, &arts, false)?)?;
    let tsc = tsc.filter(|t| *t > 0);
    let mut md = String::from(
        "# Kernel crossings (exokernel, standard machine, TCG)\n\n\
         Produced by `cargo xtask eval --kernel` (init's `microbench`: best of 5 batches of 2000).\n\
         Instructions: `-icount shift=0`, where one TSC tick is one guest instruction.\n\
         Time: plain TCG, TSC ticks converted with the rate the kernel calibrated against the PIT.\n\n\
         | operation | guest instructions | TCG time (ns) |\n|---|---:|---:|\n",
    );
    let mut csv = String::from("system,engine,workload,guest_instructions_per_op,tcg_ns_per_op\n");
    for (i, t) in instr.iter().zip(&time) {
        let ns = tsc.map(|r| t.ticks * 1000 / r);
        let ns_s = ns.map_or(String::new(), |n| n.to_string());
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            i.what,
            i.ticks,
            if ns_s.is_empty() { "n/a" } else { &ns_s }
        );
        let _ = writeln!(csv, "exo,kernel,{},{},{}", i.workload, i.ticks, ns_s);
        println!(
            "  {:<16} {:>6} instructions  {:>8} ns (TCG)",
            i.workload, i.ticks, ns_s
        );
    }
    let dir = ws.root.join("eval/results/latest");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("kernel.md"), md)?;
    std::fs::write(dir.join("kernel.csv"), csv)?;
    println!("wrote {}", dir.join("kernel.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_microbench_lines() {
        let serial = "microbench: tsc ticks per microsecond 2500\n\
            microbench: calibration: 2003 ticks per 2000 instructions (1.002 per instruction)\n\
            microbench: null system call (BadSyscall): 121 ticks\n\
            microbench: map (move) one 4 KiB page: 755 ticks\n\
            microbench: null yield round trip (2 yields, 2 upcalls, 2 user-level resumes, init's scheduler): 3861 ticks\n";
        let (rows, tsc) = parse(serial).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.ticks).collect::<Vec<_>>(),
            vec![121, 755, 3861]
        );
        assert_eq!(tsc, Some(2500));
    }

    #[test]
    fn a_missing_line_is_an_error() {
        assert!(parse("microbench: null system call (BadSyscall): 121 ticks\n").is_err());
        assert!(parse("microbench: null system call (BadSyscall): x ticks\nmicrobench: map (move) one 4 KiB page: 1 ticks\nmicrobench: null yield round trip: 2 ticks\n").is_err());
    }
}
