//! The Linux baseline's logic (`cargo xtask eval --linux` boots Debian's
//! kernel with a busybox initramfs on the standard machine and calls
//! these): the run plan ([`plan`]), the guest's serial protocol
//! ([`serial`]), the ftrace histograms ([`hist`]), QEMU's NVMe trace
//! ([`qtrace`]), NVDIMM page footprints ([`pmem`]), and the rows, checks,
//! tables and plots made from them ([`report`], [`summary`]). eval/LINUX.md
//! explains each counter and its limits.

pub mod blockstats;
pub mod hist;
pub mod plan;
pub mod pmem;
pub mod qtrace;
pub mod report;
pub mod resume;
pub mod serial;

use crate::results::Row;
use anyhow::Result;
use blockstats::BlockStats;
use qtrace::NvmeCounts;
use std::path::Path;

/// What one row produced in one pass.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub csv: Option<String>,
    pub exit_code: Option<i32>,
    pub fail: Option<String>,
    pub stderr: Vec<String>,
    /// raw_syscalls:sys_enter hits by eval-bench (all its threads).
    pub syscalls: Option<u64>,
    /// sched_stat_runtime ns summed over all tasks except the harness.
    pub runtime_ns: Option<u64>,
    /// sched_stat_runtime ns of eval-bench alone.
    pub bench_runtime_ns: Option<u64>,
    pub nvme: Option<NvmeCounts>,
    /// I/O-queue submission doorbells (icount pass, ioeventfd off).
    pub nvme_sq_doorbells: Option<u64>,
    /// Distinct 4 KiB NVDIMM pages whose contents changed (pmem runs).
    pub pmem_pages_changed: Option<u64>,
    pub blockstats: Option<BlockStats>,
    pub hist_sys: String,
    pub hist_run: String,
}

type Metric = (&'static str, &'static str, &'static str, fn(&Row) -> Option<f64>);

const PLOTS: &[Metric] = &[
    ("linux-ops-per-sec.svg", "Linux guest: operations per second (TCG wall clock)", "ops/s", |r| Some(r.ops_per_sec)),
    ("linux-device-flushes.svg", "Linux guest on NVMe: device flushes per operation", "flushes/op", |r| {
        r.device_flushes_per_op
    }),
    ("linux-device-bytes.svg", "Linux guest on NVMe: bytes written to the device per operation", "bytes/op", |r| {
        r.device_bytes_written_per_op
    }),
    ("linux-syscalls.svg", "Linux guest: system calls per operation", "syscalls/op", |r| r.syscalls_per_op),
    ("linux-instructions.svg", "Linux guest: guest instructions per operation (icount pass)", "instructions/op", |r| {
        r.guest_instructions_per_op
    }),
];

/// One SVG per metric, one panel per (workload, value size, medium).
pub fn write_plots(out: &Path, rows: &[Row]) -> Result<Vec<String>> {
    let mut written = vec![];
    for (file, title, unit, metric) in PLOTS {
        let mut panels = vec![];
        for medium in plan::MEDIA {
            let sub: Vec<Row> = rows.iter().filter(|r| r.medium == *medium).cloned().collect();
            for mut p in crate::plot::panels_by_workload(&sub, *metric) {
                p.title = format!("{}, {medium}", p.title);
                panels.push(p);
            }
        }
        if panels.is_empty() {
            continue;
        }
        crate::plot::write_bar_chart_svg(&out.join(file), title, unit, &panels, 4).map_err(anyhow::Error::msg)?;
        written.push(file.to_string());
    }
    Ok(written)
}

pub fn summary(
    table: &str,
    pmem_table: &str,
    env: &[(String, String)],
    checks: &[(bool, String)],
    failures: &[String],
    plots: &[String],
) -> String {
    let mut s = String::from("# Linux baseline guest\n\n");
    s.push_str(
        "Produced by `cargo xtask eval --linux` (see eval/LINUX.md for how each counter is taken). \
         Device and instruction counts are differential: `(run with N ops - run with 1 op) / (N - 1)`, \
         so start-up, preload and the final `sync` cancel out. pmem rows have no device command columns: \
         DAX stores reach the NVDIMM without any device command; pages written are in their own table below. \
         `doorbells/op` counts NVMe I/O-queue submission doorbell writes, taken in the icount pass (NVMe ioeventfd off there; \
         Linux's shadow doorbells make most submissions ring none).\n\n",
    );
    s.push_str(table);
    if !pmem_table.is_empty() {
        s.push_str(
            "\n## pmem pages written (footprint)\n\nDistinct 4 KiB pages of the NVDIMM backing file whose contents changed during a run, \
             found by comparing the file on the host before and after it. A footprint, not write traffic: a page written \
             many times counts once, so these are totals, not per-op figures. No counter of pmem write traffic exists \
             in QEMU (see eval/LINUX.md).\n\n",
        );
        s.push_str(pmem_table);
    }
    s.push_str("\n## Sanity checks\n\n");
    if checks.is_empty() {
        s.push_str("- (no nvme commit rows)\n");
    }
    for (ok, line) in checks {
        s.push_str(&format!("- {} {line}\n", if *ok { "PASS" } else { "FAIL" }));
    }
    if !failures.is_empty() {
        s.push_str("\n## Failed runs\n\n");
        for f in failures {
            s.push_str(&format!("- {f}\n"));
        }
    }
    if !plots.is_empty() {
        s.push_str("\n## Plots\n\n");
        for p in plots {
            s.push_str(&format!("![{p}]({p})\n"));
        }
    }
    s.push_str("\n## Environment\n\n");
    for (k, v) in env {
        s.push_str(&format!("- {k}: {v}\n"));
    }
    s
}
