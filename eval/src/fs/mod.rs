//! `cargo xtask eval --fs [--quick]`: libfs on the exokernel (`fsbench`,
//! libfs linked into the application) beside Linux (ext4-DAX on the
//! NVDIMM, ext4 on NVMe) on the same emulated machine, in the same run,
//! over the five file-system workloads of eval/FS.md. This module plans
//! the Linux runs, reads the exokernel boot's `EXO-FS` lines, turns both
//! into [`Row`]s, checks the targets and writes the report;
//! `scripts/xtask/src/eval/fs.rs` boots the machines.

use crate::linux::plan::{Pair, Run};
use crate::results::{format_number, markdown_table, Row};
use eval_lines::fs as fsw;
use eval_lines::{FsLine, LineError};
use std::collections::BTreeMap;
use std::fmt;

/// Operations per workload (`seq-read`: [`SEQ_MIB`] MiB in 64 KiB reads).
/// fsbench's `fsbench_eval` scenario uses the same (apps/src/bin/testinit/fsbench.rs).
pub const OPS: u64 = 200;
/// The `seq-read` file's size.
pub const SEQ_MIB: u64 = 64;
/// The media, as both systems name them.
pub const MEDIA: [&str; 2] = ["pmem", "nvme"];
/// The exokernel scenario `eval --fs` boots (both media in one boot).
pub const EXO_SCENARIO: &str = "fsbench_eval";

/// Timed rounds (exo boot + Linux measurement each), and as many exo
/// icount boots: 1 with `--quick`, else 3 (median-ops/s round per row).
pub fn rounds(quick: bool) -> usize {
    if quick {
        1
    } else {
        3
    }
}

/// Operations of `workload` in the comparison.
pub fn ops_of(workload: &str) -> u64 {
    if workload == "seq-read" {
        SEQ_MIB * (1 << 20) / fsw::READ_CHUNK_BYTES
    } else {
        OPS
    }
}

/// How the Linux side makes one operation of `workload` durable on
/// `medium` (`eval-bench run --engine fs --durability`); `None` for an
/// unknown workload.
pub fn linux_method(workload: &str, medium: &str) -> Option<&'static str> {
    Some(match workload {
        "append-fsync" | "create-small" => "fsync",
        "mmap-overwrite" if medium == "pmem" => "persist",
        "mmap-overwrite" => "msync",
        "meta-mix" => "sync-at-end",
        "seq-read" => "none",
        _ => return None,
    })
}

/// The file system Linux runs on `medium`.
pub fn linux_fs(medium: &str) -> &'static str {
    if medium == "pmem" {
        "ext4-dax"
    } else {
        "ext4"
    }
}

/// The Linux guest's runs: every workload on both media (NVMe first, as
/// `eval --linux` orders them), each measured run after its `--ops 1`
/// baseline (`linux::plan`'s differential scheme).
pub fn linux_runs() -> (Vec<Run>, Vec<Pair>) {
    let (mut runs, mut pairs) = (vec![], vec![]);
    for medium in crate::linux::plan::MEDIA {
        for w in fsw::WORKLOADS {
            let measured = Run {
                engine: "fs".into(),
                medium: medium.to_string(),
                workload: w.into(),
                value_bytes: fsw::bytes_per_op(w).unwrap_or(0),
                durability: linux_method(w, medium).unwrap_or("?").into(),
                ops: ops_of(w),
                keys: SEQ_MIB,
            };
            runs.push(Run { ops: 1, ..measured.clone() });
            runs.push(measured);
            pairs.push(Pair { baseline: runs.len() - 2, measured: runs.len() - 1 });
        }
    }
    (runs, pairs)
}

/// What is wrong with a boot's `EXO-FS` lines.
#[derive(Debug, Clone, PartialEq)]
pub enum FsBootError {
    /// A line that does not parse, with why.
    BadLine { line: String, why: LineError },
    /// A workload of a medium reported twice or never.
    Count { medium: String, workload: String, found: usize },
    /// A line for a medium or workload the comparison does not have.
    Unknown { line: String },
}

impl fmt::Display for FsBootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLine { line, why } => write!(f, "EXO-FS line {why}: `{line}`"),
            Self::Count { medium, workload, found } => {
                write!(f, "fsbench reported {workload} on {medium} {found} times, expected once")
            }
            Self::Unknown { line } => write!(f, "EXO-FS line for an unknown medium or workload: `{line}`"),
        }
    }
}

impl std::error::Error for FsBootError {}

/// Every `EXO-FS` line of one `fsbench_eval` boot: exactly one per medium
/// and workload, in the boot's order.
pub fn parse_boot(serial: &str) -> Result<Vec<FsLine>, FsBootError> {
    let mut out = vec![];
    for raw in serial.lines() {
        // Serial output may carry a prefix (e.g. a carriage return).
        let Some(at) = raw.find(FsLine::PREFIX) else { continue };
        let line = raw[at..].trim();
        let l = FsLine::parse(line).map_err(|why| FsBootError::BadLine { line: line.into(), why })?;
        if !MEDIA.contains(&l.medium.as_str()) || !fsw::WORKLOADS.contains(&l.workload.as_str()) {
            return Err(FsBootError::Unknown { line: line.into() });
        }
        out.push(l);
    }
    for m in MEDIA {
        for w in fsw::WORKLOADS {
            let found = out.iter().filter(|l| l.medium == m && l.workload == w).count();
            if found != 1 {
                return Err(FsBootError::Count { medium: m.into(), workload: w.into(), found });
            }
        }
    }
    Ok(out)
}

/// An `EXO-FS` line as a result row. `syscalls_per_op` is the kernel's
/// machine-wide count (as `eval --db`'s exo rows); fsbench's own crossings
/// are in the line (and in `fs.md`). `bytes_written_per_op` and
/// `flushes_per_op` are what libfs asked of its storage (barriers: a
/// flush on NVMe, an `sfence` on pmem).
pub fn exo_row(l: &FsLine, instructions_per_op: Option<f64>) -> Row {
    Row {
        system: "exo".into(),
        engine: FsLine::ENGINE.into(),
        medium: l.medium.clone(),
        workload: l.workload.clone(),
        value_bytes: l.bytes_per_op,
        durability: l.method.clone(),
        ops: l.ops,
        ops_per_sec: l.ops_per_sec,
        p50_us: l.p50_us,
        p99_us: l.p99_us,
        syscalls_per_op: l.syscalls_per_op,
        bytes_copied_per_op: Some(l.bytes_copied_per_op),
        bytes_written_per_op: Some(l.bytes_written_per_op),
        flushes_per_op: Some(l.flushes_per_op),
        device_write_cmds_per_op: l.device_write_cmds_per_op,
        device_flushes_per_op: l.device_flushes_per_op,
        device_bytes_written_per_op: l.device_bytes_written_per_op,
        guest_instructions_per_op: instructions_per_op,
    }
}

/// A Linux row from `eval-bench --engine fs`, named by its file system.
pub fn linux_row(mut r: Row) -> Row {
    r.engine = linux_fs(&r.medium).into();
    r
}

/// Instructions per op of an icount boot: the TSC ticks per op of each
/// line (under `-icount shift=0` one tick per guest instruction),
/// keyed by (medium, workload).
pub fn instructions(lines: &[FsLine]) -> BTreeMap<(String, String), f64> {
    lines.iter().map(|l| ((l.medium.clone(), l.workload.clone()), l.tsc_per_op)).collect()
}

/// Does QEMU's trace of the whole exo boot show at least the NVMe
/// commands fsbench counted over its measured phases? (The trace also
/// sees mkfs, the untimed setup and the 64 MiB file's writes, so only
/// `>=` is checked.)
pub fn device_check(lines: &[FsLine], trace: &crate::linux::qtrace::NvmeCounts) -> (bool, String) {
    let total = |f: fn(&FsLine) -> Option<f64>| {
        lines.iter().map(|l| (f(l).unwrap_or(0.0) * l.ops as f64).round() as u64).sum::<u64>()
    };
    let (w, r, fl, b) = (
        total(|l| l.device_write_cmds_per_op),
        total(|l| l.device_read_cmds_per_op),
        total(|l| l.device_flushes_per_op),
        total(|l| l.device_bytes_written_per_op),
    );
    let ok = trace.write_cmds >= w && trace.read_cmds >= r && trace.flush_cmds >= fl && trace.bytes_written >= b;
    (
        ok,
        format!(
            "fsbench counted {w} NVMe writes, {r} reads, {fl} flushes, {b} bytes written over its measured phases; QEMU traced {} writes, {} reads, {} flushes, {} bytes over the whole boot (must be >=)",
            trace.write_cmds, trace.read_cmds, trace.flush_cmds, trace.bytes_written
        ),
    )
}

/// One target of the issue, checked on the run's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    /// `None`: a number the check needs is missing.
    pub met: Option<bool>,
}

fn find<'a>(rows: &'a [Row], system: &str, medium: &str, workload: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.system == system && r.medium == medium && r.workload == workload)
}

fn line<'a>(lines: &'a [FsLine], medium: &str, workload: &str) -> Option<&'a FsLine> {
    lines.iter().find(|l| l.medium == medium && l.workload == workload)
}

fn ratio_verdict(target: &str, exo: Option<&Row>, linux: Option<&Row>, at_least: f64) -> Verdict {
    match (exo, linux) {
        (Some(e), Some(l)) if l.ops_per_sec > 0.0 => {
            let r = e.ops_per_sec / l.ops_per_sec;
            Verdict {
                target: target.into(),
                measured: format!(
                    "{:.2}x ({} vs {} ops/s)",
                    r,
                    format_number(e.ops_per_sec.round()),
                    format_number(l.ops_per_sec.round())
                ),
                met: Some(r >= at_least),
            }
        }
        _ => Verdict { target: target.into(), measured: "missing row".into(), met: None },
    }
}

/// The targets for `eval --fs`, from the exo lines (fsbench's own
/// crossings) and the rows of both systems.
pub fn verdicts(lines: &[FsLine], rows: &[Row]) -> Vec<Verdict> {
    let mut out = vec![];
    // Kernel crossings of the application per data operation and fsync:
    // no system call, and no upcall beyond the timer ticks of the phase
    // (preemption; a fault would be one more).
    let data_ops = ["append-fsync", "mmap-overwrite", "seq-read"];
    let mut measured = vec![];
    let mut met = Some(true);
    for w in data_ops {
        let Some(l) = line(lines, "pmem", w) else {
            met = None;
            continue;
        };
        let (sys, up) = ((l.app_syscalls_per_op * l.ops as f64).round(), (l.app_upcalls_per_op * l.ops as f64).round());
        measured.push(format!(
            "{w}: {} system calls, {} upcalls, {} timer ticks in {} ops",
            format_number(sys),
            format_number(up),
            l.timer_ticks.map_or("?".into(), |t| t.to_string()),
            l.ops
        ));
        let ok = l.timer_ticks.map(|t| sys == 0.0 && up <= t as f64);
        met = match (met, ok) {
            (Some(a), Some(b)) => Some(a && b),
            _ => None,
        };
    }
    out.push(Verdict {
        target: "pmem: 0 kernel crossings per data operation and per fsync (fsbench's system calls; upcalls beyond the timer ticks)".into(),
        measured: measured.join("; "),
        met,
    });
    out.push(ratio_verdict(
        "pmem: append + fsync >= 5x ext4-DAX ops/s",
        find(rows, "exo", "pmem", "append-fsync"),
        find(rows, "linux-guest", "pmem", "append-fsync"),
        5.0,
    ));
    out.push(ratio_verdict(
        "pmem: small-file create >= 3x ext4-DAX ops/s",
        find(rows, "exo", "pmem", "create-small"),
        find(rows, "linux-guest", "pmem", "create-small"),
        3.0,
    ));
    let bytes = find(rows, "exo", "nvme", "append-fsync").and_then(|r| r.device_bytes_written_per_op);
    let linux_bytes = find(rows, "linux-guest", "nvme", "append-fsync").and_then(|r| r.device_bytes_written_per_op);
    out.push(Verdict {
        target: "NVMe: device bytes per 4 KiB append + fsync <= 8 KiB".into(),
        measured: match bytes {
            Some(b) => format!(
                "{} B (ext4: {})",
                format_number(b.round()),
                linux_bytes.map_or("-".into(), |l| format!("{} B", format_number(l.round())))
            ),
            None => "missing".into(),
        },
        met: bytes.map(|b| b <= 8192.0),
    });
    out.push(ratio_verdict(
        "NVMe: append + fsync >= 2x ext4 ops/s",
        find(rows, "exo", "nvme", "append-fsync"),
        find(rows, "linux-guest", "nvme", "append-fsync"),
        2.0,
    ));
    out
}

fn cell(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format_number((v * 100.0).round() / 100.0))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "–".into(),
    }
}

/// The headline table: per medium and workload, libfs on the exokernel
/// beside Linux, counts first, then times, then exo/Linux.
pub fn headline_table(lines: &[FsLine], rows: &[Row]) -> String {
    let mut s = String::from(
        "| medium | workload | system | durability | syscalls/op (exo: fsbench's own / machine-wide) | device writes/op | device flushes/op | device bytes/op | pmem lines + fences/op | instructions/op | ops/s | p50 µs | exo/linux ops/s | exo/linux instr. |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for m in MEDIA {
        for w in fsw::WORKLOADS {
            let (e, l) = (find(rows, "exo", m, w), find(rows, "linux-guest", m, w));
            for r in [e, l].into_iter().flatten() {
                let exo = r.system == "exo";
                let fl = if exo { line(lines, m, w) } else { None };
                let sys = match fl {
                    Some(fl) => format!(
                        "{} / {}",
                        cell(Some(fl.app_syscalls_per_op + fl.app_upcalls_per_op)),
                        cell(r.syscalls_per_op)
                    ),
                    None => cell(r.syscalls_per_op),
                };
                let pm = fl.map_or("–".into(), |fl| match (fl.lines_flushed_per_op, fl.fences_per_op) {
                    (Some(a), Some(b)) => format!("{} + {}", cell(Some(a)), cell(Some(b))),
                    _ => "–".into(),
                });
                let (ro, ri) = if exo {
                    (
                        ratio(Some(r.ops_per_sec), l.map(|l| l.ops_per_sec)),
                        ratio(r.guest_instructions_per_op, l.and_then(|l| l.guest_instructions_per_op)),
                    )
                } else {
                    (String::new(), String::new())
                };
                s.push_str(&format!(
                    "| {m} | {w} | {} {} | {} | {sys} | {} | {} | {} | {pm} | {} | {} | {} | {ro} | {ri} |\n",
                    r.system,
                    r.engine,
                    r.durability,
                    cell(r.device_write_cmds_per_op),
                    cell(r.device_flushes_per_op),
                    cell(r.device_bytes_written_per_op),
                    cell(r.guest_instructions_per_op),
                    format_number(r.ops_per_sec.round()),
                    cell(Some(r.p50_us)),
                ));
            }
        }
    }
    s
}

/// The whole `fs.md`.
pub fn summary(
    lines: &[FsLine],
    rows: &[Row],
    rates: &BTreeMap<(String, String, String), Vec<f64>>,
    checks: &[(bool, String)],
    failures: &[String],
    plots: &[String],
    env: &[(String, String)],
) -> String {
    let mut s = String::from("# libfs on the exokernel vs Linux (ext4-DAX, ext4)\n\n");
    s.push_str("Produced by `cargo xtask eval --fs` (method, definitions and caveats: eval/FS.md). Counts first, times second: times are TCG times on a shared host.\n\n## Targets (issue 11)\n\n| target | measured | met |\n|---|---|---|\n");
    for v in verdicts(lines, rows) {
        let met = match v.met {
            Some(true) => "**yes**",
            Some(false) => "**no**",
            None => "not measured",
        };
        s.push_str(&format!("| {} | {} | {met} |\n", v.target, v.measured));
    }
    s.push_str("\n## Per workload\n\n");
    s.push_str(&headline_table(lines, rows));
    s.push_str("\nexo `syscalls/op`: fsbench's own system calls + upcalls / the kernel's machine-wide system calls (nvmed's and init's too). `pmem lines + fences/op`: cache lines libfs and fsbench wrote back and `sfence`s. Linux device counts are QEMU-traced and differential; exo's are fsbench's own count of block-service commands (checked against QEMU's trace, below).\n");
    s.push_str("\n## Every round's ops/s\n\n| system | medium | workload | ops/s per round |\n|---|---|---|---|\n");
    for ((sys, m, w), v) in rates {
        let all: Vec<String> = v.iter().map(|x| format_number(x.round())).collect();
        s.push_str(&format!("| {sys} | {m} | {w} | {} |\n", all.join(", ")));
    }
    s.push_str("\n## Checks\n\n");
    for (ok, c) in checks {
        s.push_str(&format!("- {} {c}\n", if *ok { "PASS" } else { "FAIL" }));
    }
    for f in failures {
        s.push_str(&format!("- FAILED {f}\n"));
    }
    if !plots.is_empty() {
        s.push_str("\n## Plots\n\n");
        for p in plots {
            s.push_str(&format!("- [{p}]({p})\n"));
        }
    }
    s.push_str("\n## Every row\n\n");
    s.push_str(&markdown_table(rows));
    s.push_str("\n## Environment\n\n");
    for (k, v) in env {
        s.push_str(&format!("- {k}: {v}\n"));
    }
    s
}

/// One plot: file, title, unit, the metric.
pub type Plot = (&'static str, &'static str, &'static str, fn(&Row) -> Option<f64>);

/// The plots: one SVG per metric, a panel per (medium, workload), a bar
/// per system.
pub const PLOTS: &[Plot] = &[
    ("fs-ops.svg", "eval --fs: operations per second", "ops/s", |r| Some(r.ops_per_sec)),
    ("fs-instructions.svg", "eval --fs: guest instructions per operation", "instructions/op", |r| {
        r.guest_instructions_per_op
    }),
    ("fs-syscalls.svg", "eval --fs: system calls per operation (exo: machine-wide)", "syscalls/op", |r| {
        r.syscalls_per_op
    }),
    ("fs-device-bytes.svg", "eval --fs: NVMe bytes written per operation", "bytes/op", |r| {
        if r.medium == "nvme" {
            r.device_bytes_written_per_op
        } else {
            None
        }
    }),
];

/// The panels of one plot.
pub fn plot_panels(rows: &[Row], metric: fn(&Row) -> Option<f64>) -> Vec<crate::plot::Panel> {
    let mut panels = vec![];
    for m in MEDIA {
        let sub: Vec<Row> = rows.iter().filter(|r| r.medium == m).cloned().collect();
        for mut p in crate::plot::panels_by_workload(&sub, metric) {
            p.title = format!("{}, {m}", p.title);
            panels.push(p);
        }
    }
    panels
}

#[cfg(test)]
mod tests;
