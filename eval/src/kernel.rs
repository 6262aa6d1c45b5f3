//! The `--kernel` measurement's logic (`cargo xtask eval --kernel` boots
//! the machine twice and calls these): what crossing the exokernel costs,
//! from init's `microbench` lines ([`eval_lines::microbench`]: null system
//! call, mapping one 4 KiB page, a null `yield` round trip between two
//! address spaces).
//!
//! One boot runs under `-icount shift=0`, where the guest's TSC advances
//! one tick per guest instruction (the run prints a calibration loop of
//! known length to show it), giving **guest instructions per operation**;
//! one plain TCG run's TSC ticks are converted to time with the TSC rate
//! the kernel calibrated at boot (TCG time: only comparable to other runs
//! under TCG).

use anyhow::{anyhow, bail, Result};
use eval_lines::microbench::{Op, OpLine, TscLine};
use std::fmt::Write as _;

/// One measured operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub workload: &'static str,
    pub what: &'static str,
    pub ticks: u64,
}

/// What kernel.md calls each operation.
fn what(op: Op) -> &'static str {
    match op {
        Op::NullSyscall => "null system call (an invalid number, returns BadSyscall)",
        Op::MapPage => "map (move) one 4 KiB page",
        Op::YieldRoundtrip => {
            "null yield round trip between two address spaces (2 yields, 2 upcalls, 2 user-level resumes, init's scheduler)"
        }
    }
}

/// Parse the microbench's serial output: a row per operation (every one
/// must be there) and the kernel's TSC rate, if printed.
pub fn parse(serial: &str) -> Result<(Vec<Row>, Option<u64>)> {
    let mut rows = Vec::new();
    for op in Op::ALL {
        let mut found = None;
        for l in serial.lines() {
            if let Some(line) = OpLine::parse(l, op).map_err(|e| anyhow!("{l:?} {e}"))? {
                found = Some(line);
                break;
            }
        }
        let Some(line) = found else { bail!("no `microbench: {}: N ticks` line", op.label()) };
        rows.push(Row { workload: op.workload(), what: what(op), ticks: line.ticks });
    }
    let mut tsc = None;
    for l in serial.lines() {
        if let Some(t) = TscLine::parse(l).map_err(|e| anyhow!("{l:?} {e}"))? {
            tsc = Some(t.0);
            break;
        }
    }
    Ok((rows, tsc))
}

/// kernel.md, kernel.csv and the console lines, from the icount boot's
/// rows (instructions), the TCG boot's (ticks) and its TSC rate.
pub fn report(instr: &[Row], time: &[Row], tsc: Option<u64>) -> (String, String, Vec<String>) {
    let tsc = tsc.filter(|t| *t > 0);
    let mut md = String::from(
        "# Kernel crossings (exokernel, standard machine, TCG)\n\n\
         Produced by `cargo xtask eval --kernel` (init's `microbench`: best of 5 batches of 2000).\n\
         Instructions: `-icount shift=0`, where one TSC tick is one guest instruction.\n\
         Time: plain TCG, TSC ticks converted with the rate the kernel calibrated against the PIT.\n\n\
         | operation | guest instructions | TCG time (ns) |\n|---|---:|---:|\n",
    );
    let mut records = vec![];
    let mut console = vec![];
    for (i, t) in instr.iter().zip(time) {
        let ns = tsc.map(|r| t.ticks * 1000 / r);
        let ns_s = ns.map_or(String::new(), |n| n.to_string());
        let _ = writeln!(md, "| {} | {} | {} |", i.what, i.ticks, if ns_s.is_empty() { "n/a" } else { &ns_s });
        records.push(["exo".into(), "kernel".into(), i.workload.to_string(), i.ticks.to_string(), ns_s.clone()]);
        console.push(format!("  {:<16} {:>6} instructions  {:>8} ns (TCG)", i.workload, i.ticks, ns_s));
    }
    let header = ["system", "engine", "workload", "guest_instructions_per_op", "tcg_ns_per_op"];
    (md, crate::results::csv_text(Some(&header), records), console)
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
        assert_eq!(rows.iter().map(|r| r.ticks).collect::<Vec<_>>(), vec![121, 755, 3861]);
        assert_eq!(tsc, Some(2500));
    }

    #[test]
    fn a_missing_line_is_an_error() {
        assert!(parse("microbench: null system call (BadSyscall): 121 ticks\n").is_err());
        assert!(parse("microbench: null system call (BadSyscall): x ticks\nmicrobench: map (move) one 4 KiB page: 1 ticks\nmicrobench: null yield round trip: 2 ticks\n").is_err());
    }

    #[test]
    fn the_report_converts_ticks_with_the_tsc_rate() {
        let row = |workload, ticks| Row { workload, what: "op", ticks };
        let (md, csv, console) = report(&[row("null-syscall", 300)], &[row("null-syscall", 5000)], Some(2500));
        assert!(md.ends_with("| op | 300 | 2000 |\n"), "{md}");
        assert_eq!(
            csv,
            "system,engine,workload,guest_instructions_per_op,tcg_ns_per_op\nexo,kernel,null-syscall,300,2000\n"
        );
        assert_eq!(console.len(), 1);
        let (md, csv, _) = report(&[row("map-page", 1)], &[row("map-page", 2)], None);
        assert!(md.ends_with("| op | 1 | n/a |\n") && csv.ends_with("map-page,1,\n"), "{md}{csv}");
    }
}
