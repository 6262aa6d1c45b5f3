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
        Op::MapUnmapPage => "map (share) and unmap one 4 KiB page",
        Op::DirectYieldRoundtrip => {
            "direct yield round trip A→B→A (2 yields, 2 upcalls, 2 user-level resumes, no scheduler)"
        }
        Op::FaultUpcall => "page fault upcall to the process's own pager (unmap, touch, fault, map back, resume)",
    }
}

/// Linux's counterparts, measured by `eval-bench kernel` in the Debian
/// guest on the same machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinuxOp {
    Getpid,
    MmapMunmap,
    MmapTouchMunmap,
    PipePingpong,
    FutexPingpong,
    UffdFault,
}

impl LinuxOp {
    pub const ALL: [LinuxOp; 6] = [
        LinuxOp::Getpid,
        LinuxOp::MmapMunmap,
        LinuxOp::MmapTouchMunmap,
        LinuxOp::PipePingpong,
        LinuxOp::FutexPingpong,
        LinuxOp::UffdFault,
    ];

    /// The `workload` column of kernel.csv.
    pub fn workload(self) -> &'static str {
        match self {
            LinuxOp::Getpid => "getpid",
            LinuxOp::MmapMunmap => "mmap-munmap",
            LinuxOp::MmapTouchMunmap => "mmap-touch-munmap",
            LinuxOp::PipePingpong => "pipe-pingpong",
            LinuxOp::FutexPingpong => "futex-pingpong",
            LinuxOp::UffdFault => "userfaultfd-fault",
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            LinuxOp::Getpid => "`syscall(SYS_getpid)`",
            LinuxOp::MmapMunmap => "`mmap` + `munmap` of one anonymous page, untouched",
            LinuxOp::MmapTouchMunmap => "`mmap`, one write (fault, zeroed page), `munmap`",
            LinuxOp::PipePingpong => "one byte over a pipe to a forked process and back over another",
            LinuxOp::FutexPingpong => "a shared futex word flipped and woken, to a forked process and back",
            LinuxOp::UffdFault => {
                "`madvise(MADV_DONTNEED)`, touch; a `userfaultfd` thread reads the fault and `UFFDIO_COPY`s the page"
            }
        }
    }

    /// The exokernel operation this one is the counterpart of.
    pub fn exo(self) -> Op {
        match self {
            LinuxOp::Getpid => Op::NullSyscall,
            LinuxOp::MmapMunmap | LinuxOp::MmapTouchMunmap => Op::MapUnmapPage,
            LinuxOp::PipePingpong | LinuxOp::FutexPingpong => Op::DirectYieldRoundtrip,
            LinuxOp::UffdFault => Op::FaultUpcall,
        }
    }

    fn parse(name: &str) -> Option<LinuxOp> {
        LinuxOp::ALL.into_iter().find(|o| o.workload() == name)
    }
}

/// `linux-kernel: <workload> ticks <n> ns <n>`: one operation, best batch,
/// per op. Printed by `eval-bench kernel`, read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinuxLine {
    pub op: LinuxOp,
    /// TSC ticks per op: guest instructions under `-icount shift=0`.
    pub ticks: u64,
    /// `CLOCK_MONOTONIC` ns per op.
    pub ns: u64,
}

pub const LINUX_PREFIX: &str = "linux-kernel: ";

impl std::fmt::Display for LinuxLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{LINUX_PREFIX}{} ticks {} ns {}", self.op.workload(), self.ticks, self.ns)
    }
}

impl LinuxLine {
    /// `Ok(None)`: not such a line; an error names what is garbled.
    pub fn parse(line: &str) -> Result<Option<LinuxLine>> {
        let Some(rest) = line.trim().strip_prefix(LINUX_PREFIX) else { return Ok(None) };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let [name, "ticks", t, "ns", n] = f[..] else {
            bail!("`{line}`: expected `{LINUX_PREFIX}<op> ticks <n> ns <n>`")
        };
        let op = LinuxOp::parse(name).ok_or_else(|| anyhow!("`{line}`: unknown operation {name:?}"))?;
        let num = |v: &str, what: &str| v.parse::<u64>().map_err(|_| anyhow!("`{line}`: {what} {v:?} is not a number"));
        Ok(Some(LinuxLine { op, ticks: num(t, "ticks")?, ns: num(n, "ns")? }))
    }
}

/// Every Linux operation's line from a guest's serial output (all must be there).
pub fn parse_linux(serial: &str) -> Result<Vec<LinuxLine>> {
    let mut found = vec![];
    for l in serial.lines() {
        // Serial lines may carry a carriage return or console noise before the prefix.
        if let Some(at) = l.find(LINUX_PREFIX) {
            if let Some(line) = LinuxLine::parse(&l[at..])? {
                found.push(line);
            }
        }
    }
    for op in LinuxOp::ALL {
        if !found.iter().any(|l| l.op == op) {
            bail!("no `{LINUX_PREFIX}{} ...` line in the Linux guest's output", op.workload());
        }
    }
    Ok(found)
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

/// The Linux guest's two boots of `eval-bench kernel`: one under
/// `-icount shift=0` (its ticks are instructions), one plain TCG (its ns
/// are time).
#[derive(Debug, Clone, Default)]
pub struct Linux {
    pub icount: Vec<LinuxLine>,
    pub tcg: Vec<LinuxLine>,
}

impl Linux {
    fn instructions(&self, op: LinuxOp) -> Option<u64> {
        self.icount.iter().find(|l| l.op == op).map(|l| l.ticks)
    }
    fn ns(&self, op: LinuxOp) -> Option<u64> {
        self.tcg.iter().find(|l| l.op == op).map(|l| l.ns)
    }
}

fn ratio(a: Option<u64>, b: Option<u64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0 => format!("{:.2}x", a as f64 / b as f64),
        _ => "n/a".into(),
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("n/a".into(), |v| v.to_string())
}

/// The targets: the direct round trip under 1,000 instructions, and each
/// exokernel operation below the cheapest Linux counterpart, in
/// instructions and in time. MET/SHORT lines.
pub fn targets(instr: &[Row], time_ns: &[(&'static str, Option<u64>)], linux: &Linux) -> Vec<String> {
    let mut out = vec![];
    let exo_i = |op: Op| instr.iter().find(|r| r.workload == op.workload()).map(|r| r.ticks);
    let exo_t = |op: Op| time_ns.iter().find(|(w, _)| *w == op.workload()).and_then(|(_, n)| *n);
    if let Some(d) = exo_i(Op::DirectYieldRoundtrip) {
        out.push(format!(
            "{} direct yield round trip under 1,000 guest instructions: {d}",
            if d < 1000 { "MET" } else { "SHORT" }
        ));
    }
    for op in [Op::NullSyscall, Op::MapUnmapPage, Op::DirectYieldRoundtrip, Op::FaultUpcall] {
        let peers: Vec<LinuxOp> = LinuxOp::ALL.into_iter().filter(|l| l.exo() == op).collect();
        let best = |f: &dyn Fn(LinuxOp) -> Option<u64>| -> Option<(u64, LinuxOp)> {
            peers.iter().filter_map(|&l| f(l).map(|v| (v, l))).min()
        };
        for (what, e, l) in [
            ("instructions", exo_i(op), best(&|l| linux.instructions(l))),
            ("TCG time", exo_t(op), best(&|l| linux.ns(l))),
        ] {
            if let (Some(e), Some((lv, lop))) = (e, l) {
                out.push(format!(
                    "{} {} below Linux's cheapest counterpart in {what}: {e} vs {lv} ({}, {})",
                    if e < lv { "MET" } else { "SHORT" },
                    op.workload(),
                    lop.workload(),
                    ratio(Some(e), Some(lv))
                ));
            }
        }
    }
    out
}

/// kernel.md, kernel.csv and the console lines, from the icount boot's
/// rows (instructions), the TCG boot's (ticks) and its TSC rate, and the
/// Linux guest's counterparts (if it was run).
pub fn report(instr: &[Row], time: &[Row], tsc: Option<u64>, linux: Option<&Linux>) -> (String, String, Vec<String>) {
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
    let mut time_ns = vec![];
    for (i, t) in instr.iter().zip(time) {
        let ns = tsc.map(|r| t.ticks * 1000 / r);
        time_ns.push((i.workload, ns));
        let ns_s = ns.map_or(String::new(), |n| n.to_string());
        let _ = writeln!(md, "| {} | {} | {} |", i.what, i.ticks, if ns_s.is_empty() { "n/a" } else { &ns_s });
        records.push(["exo".into(), "kernel".into(), i.workload.to_string(), i.ticks.to_string(), ns_s.clone()]);
        console.push(format!("  {:<24} {:>6} instructions  {:>8} ns (TCG)", i.workload, i.ticks, ns_s));
    }
    if let Some(linux) = linux {
        md.push_str(
            "\n## Beside Linux (same machine)\n\n\
             Linux: Debian's kernel in the `eval --linux` guest (busybox initramfs, one vCPU), \
             `eval-bench kernel` timing each counterpart the same way (best of 5 batches of 2000, \
             an empty batch subtracted): TSC ticks under `-icount shift=0` (the guest's TSC runs at \
             1000 MHz there, one tick per instruction, user and kernel alike) and `CLOCK_MONOTONIC` \
             in a plain TCG boot. Ratios are exo / Linux (below 1: the exokernel is cheaper).\n\n\
             | exokernel operation | instructions | TCG ns | Linux counterpart | instructions | TCG ns | instructions exo/Linux | time exo/Linux |\n\
             |---|---:|---:|---|---:|---:|---:|---:|\n",
        );
        for l in LinuxOp::ALL {
            let op = l.exo();
            let ei = instr.iter().find(|r| r.workload == op.workload()).map(|r| r.ticks);
            let et = time_ns.iter().find(|(w, _)| *w == op.workload()).and_then(|(_, n)| *n);
            let (li, lt) = (linux.instructions(l), linux.ns(l));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                op.workload(),
                opt(ei),
                opt(et),
                l.what(),
                opt(li),
                opt(lt),
                ratio(ei, li),
                ratio(et, lt)
            );
            records.push(["linux-guest".into(), "kernel".into(), l.workload().into(), opt(li), opt(lt)]);
            console.push(format!(
                "  {:<24} {:>6} vs linux {:<18} {:>6} instructions ({}), {} vs {} ns ({})",
                op.workload(),
                opt(ei),
                l.workload(),
                opt(li),
                ratio(ei, li),
                opt(et),
                opt(lt),
                ratio(et, lt)
            ));
        }
        md.push_str("\n## Targets\n\n");
        for t in targets(instr, &time_ns, linux) {
            let _ = writeln!(md, "- {t}");
            console.push(format!("  {t}"));
        }
    }
    let header = ["system", "engine", "workload", "guest_instructions_per_op", "tcg_ns_per_op"];
    let records: Vec<[String; 5]> =
        records.into_iter().map(|r: [String; 5]| r.map(|v| if v == "n/a" { String::new() } else { v })).collect();
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
            microbench: null yield round trip (2 yields, 2 upcalls, 2 user-level resumes, init's scheduler): 3861 ticks\n\
            microbench: share and unmap one 4 KiB page: 700 ticks\n\
            microbench: direct yield round trip (2 yields, 2 upcalls, 2 user-level resumes, no scheduler): 900 ticks\n\
            microbench: page fault upcall to the own pager (unmap, fault, map, resume): 1500 ticks\n";
        let (rows, tsc) = parse(serial).unwrap();
        assert_eq!(rows.iter().map(|r| r.ticks).collect::<Vec<_>>(), vec![121, 755, 3861, 700, 900, 1500]);
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
        let (md, csv, console) = report(&[row("null-syscall", 300)], &[row("null-syscall", 5000)], Some(2500), None);
        assert!(md.ends_with("| op | 300 | 2000 |\n"), "{md}");
        assert_eq!(
            csv,
            "system,engine,workload,guest_instructions_per_op,tcg_ns_per_op\nexo,kernel,null-syscall,300,2000\n"
        );
        assert_eq!(console.len(), 1);
        let (md, csv, _) = report(&[row("map-page", 1)], &[row("map-page", 2)], None, None);
        assert!(md.ends_with("| op | 1 | n/a |\n") && csv.ends_with("map-page,1,\n"), "{md}{csv}");
    }

    fn linux_serial(ticks: u64) -> String {
        LinuxOp::ALL.into_iter().map(|op| format!("\r{}\n", LinuxLine { op, ticks, ns: ticks * 3 })).collect::<String>()
    }

    #[test]
    fn linux_lines_round_trip_and_all_are_required() {
        let lines = parse_linux(&linux_serial(500)).unwrap();
        assert_eq!(lines.len(), LinuxOp::ALL.len());
        assert_eq!(lines[0].to_string(), "linux-kernel: getpid ticks 500 ns 1500");
        assert!(parse_linux("linux-kernel: getpid ticks 5 ns 6\n").unwrap_err().to_string().contains("mmap-munmap"));
        assert!(LinuxLine::parse("linux-kernel: getpid ticks x ns 6").unwrap_err().to_string().contains("ticks"));
        assert!(LinuxLine::parse("linux-kernel: fork ticks 1 ns 6").unwrap_err().to_string().contains("fork"));
        assert_eq!(LinuxLine::parse("microbench: x").unwrap(), None);
    }

    #[test]
    fn targets_compare_with_the_cheapest_counterpart() {
        let row = |op: Op, ticks| Row { workload: op.workload(), what: "op", ticks };
        let instr = [row(Op::NullSyscall, 100), row(Op::DirectYieldRoundtrip, 1200)];
        let mut linux = Linux { icount: parse_linux(&linux_serial(1000)).unwrap(), tcg: vec![] };
        // The futex ping-pong is the cheaper Linux round trip: it is the one compared.
        linux.icount.iter_mut().find(|l| l.op == LinuxOp::FutexPingpong).unwrap().ticks = 900;
        let t = targets(&instr, &[], &linux);
        assert!(t.contains(&"SHORT direct yield round trip under 1,000 guest instructions: 1200".to_string()), "{t:?}");
        assert!(t.iter().any(|l| l.starts_with("MET null-syscall") && l.contains("0.10x")), "{t:?}");
        assert!(
            t.iter().any(|l| l.starts_with("SHORT direct-yield-roundtrip") && l.contains("futex-pingpong")),
            "{t:?}"
        );
        let (md, csv, _) = report(&instr, &instr, Some(1000), Some(&linux));
        assert!(md.contains("## Beside Linux") && md.contains("| null-syscall | 100 | 100 |"), "{md}");
        assert!(csv.contains("linux-guest,kernel,getpid,1000,\n"), "{csv}");
    }
}
