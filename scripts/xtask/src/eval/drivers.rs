//! `cargo xtask eval --drivers [--quick]`: the userspace NVMe driver on the
//! exokernel against Linux's in-kernel NVMe driver, 4 KiB random reads and
//! writes at queue depth 1 and 32 on the raw namespace, both on the
//! standard machine (scripts/xtask/src/machine.rs) under TCG, in one run.
//!
//! * exo: one boot of `test=nvme_bench` (init hands the controller to
//!   `nvmed bench`, which prints one `EXO-BENCH` line per workload with its
//!   own timing, doorbell count and the kernel's crossing counters over the
//!   measured loop).
//! * linux-guest: Debian's kernel with a busybox initramfs
//!   (`drivers/guest-init`), `eval-bench raw` on /dev/nvme0n1 with
//!   O_DIRECT (QD1: pread/pwrite; QD32: io_uring), through the Linux
//!   session code of `eval --linux` (READY/DONE handshakes with host-side
//!   snapshots of the QEMU trace). Each measured row has a `--ops 1`
//!   baseline run, so start-up costs cancel out of the per-op counts.
//!
//! Both systems trace the same QEMU events (NVMe I/O commands) and start
//! from an NVMe image whose first 128 MiB (the span both benchmarks use)
//! are allocated in the host file. Writes eval/results/latest/
//! drivers.{csv,md}, drivers-counters.csv and drivers-iops.svg;
//! eval/DRIVERS.md explains the method.

use super::linux::{guest, hist, plan::Run, qtrace, session};
use crate::build;
use crate::machine::{self, Machine};
use crate::outcome::Expect;
use crate::runner::{self, RunOptions};
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};
use eval::results::{parse_row, Row};
use session::{PassKind, PassSetup, RunOutcome};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The workloads, in the order both systems run them: (name, QD32?).
pub const WORKLOADS: [(&str, bool); 4] = [
    ("randread-qd1", false),
    ("randread-qd32", true),
    ("randwrite-qd1", false),
    ("randwrite-qd32", true),
];

/// The span both benchmarks draw offsets from (nvmed's `SPAN_BYTES`).
const SPAN_BYTES: u64 = 128 << 20;

/// Ops per workload: (QD1, QD32), as nvmed's bench picks them.
pub fn op_counts(quick: bool) -> (u64, u64) {
    if quick {
        (500, 2000)
    } else {
        (4000, 16000)
    }
}

/// One `EXO-BENCH` line.
#[derive(Debug, Clone, PartialEq)]
pub struct ExoLine {
    pub workload: String,
    pub ops: u64,
    pub secs: f64,
    pub iops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub doorbells_per_io: f64,
    /// Submission-queue doorbells over the loop (the driver's own count).
    pub sq_doorbells: u64,
    pub cq_doorbells: u64,
    pub syscalls: u64,
    pub upcalls: u64,
    pub timer_ticks: u64,
}

/// Parse every `EXO-BENCH key=value ...` line of the exokernel's serial log.
pub fn parse_exo(serial: &str) -> Result<Vec<ExoLine>> {
    let mut out = vec![];
    for line in serial
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("EXO-BENCH "))
    {
        let kv: BTreeMap<&str, &str> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.split_once('='))
            .collect();
        let get = |k: &str| {
            kv.get(k)
                .copied()
                .with_context(|| format!("no `{k}=` in {line:?}"))
        };
        let num = |k: &str| -> Result<f64> {
            let v = get(k)?;
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .with_context(|| format!("`{k}={v}` is not a number in {line:?}"))
        };
        let int = |k: &str| -> Result<u64> {
            let v = get(k)?;
            v.parse::<u64>()
                .with_context(|| format!("`{k}={v}` is not an integer in {line:?}"))
        };
        if get("system")? != "exo" || get("engine")? != "nvme-raw" {
            bail!("unexpected system/engine in {line:?}");
        }
        out.push(ExoLine {
            workload: get("workload")?.to_string(),
            ops: int("ops")?,
            secs: num("secs")?,
            iops: num("iops")?,
            p50_us: num("p50_us")?,
            p99_us: num("p99_us")?,
            doorbells_per_io: num("doorbells_per_io")?,
            sq_doorbells: int("sq_doorbells")?,
            cq_doorbells: int("cq_doorbells")?,
            syscalls: int("syscalls")?,
            upcalls: int("upcalls")?,
            timer_ticks: int("timer_ticks")?,
        });
    }
    for (w, _) in WORKLOADS {
        if !out.iter().any(|l| l.workload == w) {
            bail!("no EXO-BENCH line for {w}");
        }
    }
    Ok(out)
}

/// The guest's `@@<tag> <row> <n>` lines: `DRV-IRQ` (NVMe I/O-queue
/// interrupts per row) and `DRV-PID` (the bench's pid per row).
pub fn parse_row_numbers(serial: &str, tag: &str) -> Result<BTreeMap<usize, u64>> {
    let prefix = format!("@@{tag} ");
    let mut m = BTreeMap::new();
    for line in serial.lines().map(|l| l.trim_end_matches(['\r', '\n'])) {
        let Some(rest) = line.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let mut w = rest.split_whitespace();
        let (Some(row), Some(n), None) = (w.next(), w.next(), w.next()) else {
            bail!("malformed {line:?}")
        };
        let row = row
            .parse()
            .with_context(|| format!("bad row in {line:?}"))?;
        let n = n
            .parse()
            .with_context(|| format!("bad number in {line:?}"))?;
        m.insert(row, n);
    }
    Ok(m)
}

/// System calls of process `pid` in a `raw_syscalls:sys_enter` histogram
/// keyed by `common_pid.execname` (the name is unreliable for short-lived
/// processes; the pid is not).
pub fn syscalls_of_pid(hist_text: &str, pid: u64) -> Result<u64> {
    let h = hist::parse(hist_text)?;
    if h.dropped > 0 {
        bail!("the syscall histogram dropped {} events", h.dropped);
    }
    Ok(h.entries
        .iter()
        .filter(|e| e.pid.map(u64::from) == Some(pid))
        .filter_map(|e| e.value("hitcount"))
        .sum())
}

/// Replace the session's by-name syscall counts with by-pid ones.
fn count_syscalls_by_pid(outs: &mut [RunOutcome], pids: &BTreeMap<usize, u64>) -> Result<()> {
    for (k, o) in outs.iter_mut().enumerate() {
        o.syscalls = match pids.get(&(k + 1)) {
            Some(&pid) if o.fail.is_none() => {
                Some(syscalls_of_pid(&o.hist_sys, pid).with_context(|| format!("row {}", k + 1))?)
            }
            _ => None,
        };
    }
    Ok(())
}

/// The guest's run list: per workload a `--ops 1` baseline, then the
/// measured run. Returns (runs, pairs as (baseline, measured) indices).
pub fn linux_runs(quick: bool) -> (Vec<Run>, Vec<(usize, usize)>) {
    let (qd1, qd32) = op_counts(quick);
    let mut runs = vec![];
    let mut pairs = vec![];
    for (w, deep) in WORKLOADS {
        let ops = if deep { qd32 } else { qd1 };
        let run = |ops| Run {
            engine: "nvme-raw".into(),
            medium: "nvme".into(),
            workload: w.into(),
            value_bytes: 4096,
            durability: "none".into(),
            ops,
            keys: 0,
        };
        runs.push(run(1));
        runs.push(run(ops));
        pairs.push((runs.len() - 2, runs.len() - 1));
    }
    (runs, pairs)
}

/// The /etc/plan line of a run (`eval-bench raw` arguments; init adds
/// `--dev` and `--system`).
pub fn plan_line(r: &Run) -> String {
    format!(
        "--workload {} --ops {} --block {} --span-mib {}",
        r.workload,
        r.ops,
        r.value_bytes,
        SPAN_BYTES >> 20
    )
}

/// `(measured - baseline) / (ops - 1)`: the per-op cost of the measured
/// loop alone (start-up and exit cancel out).
pub fn per_op(measured: u64, baseline: u64, ops: u64) -> Option<f64> {
    (ops > 1).then(|| (measured as f64 - baseline as f64) / (ops - 1) as f64)
}

/// Counters beyond the CSV's columns, one line per row (drivers-counters.csv).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    pub system: String,
    pub workload: String,
    /// Kernel crossings per I/O: exo = (syscalls + upcalls) / ops over the
    /// loop (machine-wide); linux = syscalls/op + NVMe interrupts/op.
    pub crossings_per_op: Option<f64>,
    pub syscalls_per_op: Option<f64>,
    /// exo: upcalls/op; linux: NVMe I/O-queue interrupts/op.
    pub interrupts_or_upcalls_per_op: Option<f64>,
    pub timer_ticks: Option<u64>,
    /// exo: crossings over the loop / timer ticks in it (constant if every
    /// crossing is the timer's preemption round trip, not the I/O path's).
    pub crossings_per_tick: Option<f64>,
    pub doorbells_per_op: Option<f64>,
    /// Submission-queue doorbells per op: exo's own count; Linux's from
    /// the doorbell counting pass (ioeventfd off, QEMU trace).
    pub sq_doorbells_per_op: Option<f64>,
    pub device_read_cmds_per_op: Option<f64>,
    pub device_write_cmds_per_op: Option<f64>,
}

const EXTRA_HEADER: &str = "system,workload,crossings_per_op,syscalls_per_op,interrupts_or_upcalls_per_op,timer_ticks,crossings_per_tick,doorbells_per_op,sq_doorbells_per_op,device_read_cmds_per_op,device_write_cmds_per_op";

fn cell(v: Option<f64>) -> String {
    v.map(eval::results::format_number).unwrap_or_default()
}

fn extra_csv(extras: &[Extra]) -> String {
    let mut s = format!("{EXTRA_HEADER}\n");
    for e in extras {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{}",
            e.system,
            e.workload,
            cell(e.crossings_per_op),
            cell(e.syscalls_per_op),
            cell(e.interrupts_or_upcalls_per_op),
            e.timer_ticks.map(|t| t.to_string()).unwrap_or_default(),
            cell(e.crossings_per_tick),
            cell(e.doorbells_per_op),
            cell(e.sq_doorbells_per_op),
            cell(e.device_read_cmds_per_op),
            cell(e.device_write_cmds_per_op)
        );
    }
    s
}

/// The exokernel's rows. Device commands come from the trace of the whole
/// boot: nvmed runs reads first, then writes, so reads/read op and
/// writes/write op are averages over both depths of that direction.
pub fn exo_rows(lines: &[ExoLine], trace: &qtrace::NvmeCounts) -> (Vec<Row>, Vec<Extra>) {
    let read_ops: u64 = lines
        .iter()
        .filter(|l| l.workload.starts_with("randread"))
        .map(|l| l.ops)
        .sum();
    let write_ops: u64 = lines
        .iter()
        .filter(|l| l.workload.starts_with("randwrite"))
        .map(|l| l.ops)
        .sum();
    let (mut rows, mut extras) = (vec![], vec![]);
    for l in lines {
        let write = l.workload.starts_with("randwrite");
        let ops = l.ops.max(1) as f64;
        let writes = (write && write_ops > 0).then(|| trace.write_cmds as f64 / write_ops as f64);
        let reads = (!write && read_ops > 0).then(|| trace.read_cmds as f64 / read_ops as f64);
        rows.push(Row {
            system: "exo".into(),
            engine: "nvme-raw".into(),
            medium: "nvme".into(),
            workload: l.workload.clone(),
            value_bytes: 4096,
            durability: "none".into(),
            ops: l.ops,
            ops_per_sec: l.iops,
            p50_us: l.p50_us,
            p99_us: l.p99_us,
            syscalls_per_op: Some(l.syscalls as f64 / ops),
            device_write_cmds_per_op: writes,
            device_bytes_written_per_op: write
                .then(|| trace.bytes_written as f64 / write_ops.max(1) as f64),
            ..Row::default()
        });
        extras.push(Extra {
            system: "exo".into(),
            workload: l.workload.clone(),
            crossings_per_op: Some((l.syscalls + l.upcalls) as f64 / ops),
            syscalls_per_op: Some(l.syscalls as f64 / ops),
            interrupts_or_upcalls_per_op: Some(l.upcalls as f64 / ops),
            timer_ticks: Some(l.timer_ticks),
            crossings_per_tick: (l.timer_ticks > 0)
                .then(|| (l.syscalls + l.upcalls) as f64 / l.timer_ticks as f64),
            doorbells_per_op: Some(l.doorbells_per_io),
            sq_doorbells_per_op: Some(l.sq_doorbells as f64 / ops),
            device_read_cmds_per_op: reads,
            device_write_cmds_per_op: writes,
        });
    }
    (rows, extras)
}

/// One Linux row from its measured and baseline outcomes.
pub fn linux_row(
    columns: &[String],
    runs: &[Run],
    pair: (usize, usize),
    outs: &[RunOutcome],
    irqs: &BTreeMap<usize, u64>,
) -> Result<(Row, Extra)> {
    let (b, m) = pair;
    let (ob, om) = (&outs[b], &outs[m]);
    for (o, what) in [(ob, "baseline"), (om, "measured")] {
        if let Some(f) = &o.fail {
            bail!("{what} run failed: {f}");
        }
    }
    let csv = om.csv.as_deref().context("measured run printed no row")?;
    let mut row = parse_row(columns, csv)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("row {csv:?}"))?;
    let ops = runs[m].ops;
    let d = |f: fn(&RunOutcome) -> Option<u64>| match (f(om), f(ob)) {
        (Some(x), Some(y)) => per_op(x, y, ops),
        _ => None,
    };
    row.syscalls_per_op = d(|o| o.syscalls);
    row.device_write_cmds_per_op = d(|o| o.nvme.map(|n| n.write_cmds));
    row.device_flushes_per_op = d(|o| o.nvme.map(|n| n.flush_cmds));
    row.device_bytes_written_per_op = d(|o| o.nvme.map(|n| n.bytes_written));
    // Row numbers on the console are 1-based.
    let irq = match (irqs.get(&(m + 1)), irqs.get(&(b + 1))) {
        (Some(x), Some(y)) => per_op(*x, *y, ops),
        _ => None,
    };
    let extra = Extra {
        system: "linux-guest".into(),
        workload: row.workload.clone(),
        crossings_per_op: row.syscalls_per_op.zip(irq).map(|(s, i)| s + i),
        syscalls_per_op: row.syscalls_per_op,
        interrupts_or_upcalls_per_op: irq,
        timer_ticks: None,
        crossings_per_tick: None,
        doorbells_per_op: None,
        sq_doorbells_per_op: None,
        device_read_cmds_per_op: d(|o| o.nvme.map(|n| n.read_cmds)),
        device_write_cmds_per_op: row.device_write_cmds_per_op,
    };
    Ok((row, extra))
}

/// A fresh images directory whose NVMe image has the benchmark span
/// allocated (written with zeros), so reads hit data, not holes.
fn fresh_images(dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let path = dir.join(machine::NVME_IMAGE.file);
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..SPAN_BYTES >> 20 {
        f.write_all(&zeros)?;
    }
    f.set_len(machine::NVME_IMAGE.bytes)?;
    f.sync_all()?;
    Ok(())
}

/// One boot of `test=nvme_bench`. `doorbells`: the counting boot (NVMe
/// ioeventfd off, doorbell trace instead of command trace; times nothing).
fn exo_pass(
    arts: &build::Artifacts,
    work: &Path,
    append: &str,
    doorbells: bool,
    name: &str,
) -> Result<(Vec<ExoLine>, qtrace::NvmeCounts, f64)> {
    let images = work.join("images-exo");
    fresh_images(&images)?;
    let trace = work.join(format!("{name}.qemu-trace.log"));
    let _ = std::fs::remove_file(&trace);
    let mut m = Machine::new(&images)
        .kernel(&arts.kernel)
        .initrd(&arts.boot_image)
        .append(append)
        .nvme_ioeventfd(!doorbells)
        .trace_file(&trace);
    for ev in if doorbells {
        qtrace::DOORBELL_EVENTS
    } else {
        qtrace::EVENTS
    } {
        m = m.trace(*ev);
    }
    let opts = RunOptions {
        name: name.into(),
        log_dir: work.to_path_buf(),
        timeout: Some(Duration::from_secs(1200)),
        echo: false,
        interactive: false,
    };
    let r = runner::run(m.command()?, &opts, Expect::PassLine("nvme_bench"))?;
    if !r.outcome.passed() {
        bail!(
            "exokernel nvme_bench failed: {} (log {})",
            r.outcome,
            r.log_path.display()
        );
    }
    let lines = parse_exo(&r.serial)
        .with_context(|| format!("exokernel serial log {}", r.log_path.display()))?;
    let counts = qtrace::count(
        &std::fs::read_to_string(&trace).with_context(|| format!("reading {}", trace.display()))?,
    )?;
    Ok((lines, counts, r.elapsed.as_secs_f64()))
}

/// Rounds of (exo boot, Linux boot), interleaved so that load from other
/// users of the machine hits both systems alike; each reported row is the
/// round with the median IOPS for that system and workload.
pub const ROUNDS: usize = 5;

/// One round's rows of one system.
type Round = (Vec<Row>, Vec<Extra>);

/// A Linux boot's rows, failures, guest environment and seconds.
type LinuxOutcome = (Round, Vec<String>, Vec<(String, String)>, f64);

/// The round with the median IOPS for each (system, workload), whole (so
/// its latencies and counts stay together), plus every round's IOPS.
pub fn pick_median(rounds: &[Round]) -> (Round, BTreeMap<(String, String), Vec<f64>>) {
    super::rounds::pick_median(rounds, |r| (r.system.clone(), r.workload.clone()))
}

/// The Linux guest, ready to boot.
struct LinuxGuest {
    vmlinuz: std::path::PathBuf,
    initrd: std::path::PathBuf,
    columns: Vec<String>,
    runs: Vec<Run>,
    pairs: Vec<(usize, usize)>,
    versions: Vec<(String, String)>,
}

fn prepare_linux(ws: &Workspace, work: &Path, quick: bool) -> Result<LinuxGuest> {
    let mut g = guest::prepare(&ws.root, &ws.target_dir)?;
    let header = crate::cmd::output(std::process::Command::new(&g.bench).arg("header"))
        .context("`eval-bench header` on the host")?;
    let columns: Vec<String> = header
        .trim()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let init = work.join("guest-init");
    std::fs::write(&init, include_str!("drivers/guest-init"))?;
    g.init_script = init;
    // The stripped bench goes to our run dir, not the shared guest cache,
    // so a concurrent `eval --linux` never reads a half-written copy.
    g.cache = work.to_path_buf();
    let (runs, pairs) = linux_runs(quick);
    let plan: String = runs.iter().map(|r| plan_line(r) + "\n").collect();
    let initrd = work.join("initramfs-drivers.cpio");
    guest::build_initramfs(&g, &plan, &initrd)?;
    Ok(LinuxGuest {
        vmlinuz: g.vmlinuz,
        initrd,
        columns,
        runs,
        pairs,
        versions: g.versions,
    })
}

/// One boot of the Linux guest: its rows, failures, env and boot time.
/// The Linux doorbell counting pass (the session's `icount` pass: NVMe
/// ioeventfd off, `pci_nvme_mmio_doorbell_sq` traced; times nothing):
/// I/O-queue SQ doorbells per op for each workload.
fn linux_doorbells(lg: &LinuxGuest, work: &Path) -> Result<BTreeMap<String, f64>> {
    let setup = PassSetup {
        kind: PassKind::Icount,
        kernel: &lg.vmlinuz,
        initrd: &lg.initrd,
        work_dir: work,
        rows: &lg.runs,
        timeout: Duration::from_secs(300 + 60 * lg.runs.len() as u64),
    };
    let pass = session::run_pass(&setup, &mut |_, _| {}).context("Linux doorbell counting pass")?;
    let mut out = BTreeMap::new();
    for &(b, m) in &lg.pairs {
        let (ob, om) = (&pass.rows[b], &pass.rows[m]);
        if let (None, None, Some(x), Some(y)) = (
            &ob.fail,
            &om.fail,
            om.nvme_sq_doorbells,
            ob.nvme_sq_doorbells,
        ) {
            if let Some(v) = per_op(x, y, lg.runs[m].ops) {
                out.insert(lg.runs[m].workload.clone(), v);
            }
        }
    }
    Ok(out)
}

/// Does the driver's own SQ doorbell count match QEMU's trace of the same
/// boot? (The trace also sees the doorbells of the final flush and of any
/// I/O outside the loops, so it may exceed the loops' sum by a few.)
pub fn doorbell_check(lines: &[ExoLine], traced_io_sq: u64) -> (bool, String) {
    let driver: u64 = lines.iter().map(|l| l.sq_doorbells).sum();
    let ok = traced_io_sq >= driver && traced_io_sq - driver <= 4;
    (ok, format!("exo I/O-queue SQ doorbells: driver counted {driver} over its loops, QEMU traced {traced_io_sq} over the whole boot (ioeventfd off)"))
}

fn linux_pass(lg: &LinuxGuest, work: &Path) -> Result<LinuxOutcome> {
    let runs = &lg.runs;
    let setup = PassSetup {
        kind: PassKind::Counters,
        kernel: &lg.vmlinuz,
        initrd: &lg.initrd,
        work_dir: work,
        rows: runs,
        timeout: Duration::from_secs(300 + 60 * runs.len() as u64),
    };
    let mut progress = |k: usize, r: &RunOutcome| {
        if let (None, Some(f)) = (&r.csv, &r.fail) {
            println!("  linux {} x{}: FAILED: {f}", runs[k].workload, runs[k].ops);
        }
    };
    let mut pass = session::run_pass(&setup, &mut progress).context("Linux guest pass")?;
    let serial = std::fs::read_to_string(&pass.serial_log)?;
    let irqs = parse_row_numbers(&serial, "DRV-IRQ")?;
    count_syscalls_by_pid(&mut pass.rows, &parse_row_numbers(&serial, "DRV-PID")?)?;
    let (mut rows, mut extras, mut failures) = (vec![], vec![], vec![]);
    for &p in &lg.pairs {
        match linux_row(&lg.columns, runs, p, &pass.rows, &irqs) {
            Ok((r, e)) => {
                rows.push(r);
                extras.push(e);
            }
            Err(e) => failures.push(format!("linux-guest {}: {e:#}", runs[p.1].workload)),
        }
    }
    Ok((
        (rows, extras),
        failures,
        pass.env,
        pass.elapsed.as_secs_f64(),
    ))
}

pub fn run(quick: bool) -> Result<()> {
    crate::setup::ensure_all()?;
    let ws = Workspace::load()?;
    let started = Instant::now();
    let work = ws.root.join(".cache/drivers-run");
    std::fs::create_dir_all(&work)?;
    // Two runs in one checkout would share images and logs: wait instead.
    let _lock = machine::lock_images(&work)?;
    let (qd1, qd32) = op_counts(quick);
    println!(
        "eval --drivers{}: {qd1} ops at QD1, {qd32} at QD32; {ROUNDS} rounds of (exo boot, linux-guest boot)",
        if quick { " --quick" } else { "" }
    );
    let arts = build::build_all(&ws)?;
    let lg = prepare_linux(&ws, &work, quick)?;
    let exo_append = if quick {
        "test=nvme_bench quick"
    } else {
        "test=nvme_bench"
    };

    let (mut rounds, mut failures, mut guest_env) = (vec![], vec![], vec![]);
    let (mut exo_secs, mut linux_secs) = (vec![], vec![]);
    let mut exo_trace = qtrace::NvmeCounts::default();
    for round in 1..=ROUNDS {
        println!("-- round {round}/{ROUNDS}: exo (test=nvme_bench)");
        let (lines, trace, secs) = exo_pass(&arts, &work, exo_append, false, "drivers-exo")?;
        for l in &lines {
            println!(
                "  exo   {:<15} {:>8.0} IOPS  p50 {:>8} us  p99 {:>8} us",
                l.workload, l.iops, l.p50_us, l.p99_us
            );
        }
        exo_trace = trace;
        exo_secs.push(secs);
        rounds.push(exo_rows(&lines, &trace));
        println!(
            "-- round {round}/{ROUNDS}: linux-guest ({} runs incl. --ops 1 baselines)",
            lg.runs.len()
        );
        let (r, f, env, secs) = linux_pass(&lg, &work)?;
        for row in &r.0 {
            println!(
                "  linux {:<15} {:>8.0} IOPS  p50 {:>8} us  p99 {:>8} us",
                row.workload, row.ops_per_sec, row.p50_us, row.p99_us
            );
        }
        failures.extend(f.into_iter().map(|f| format!("round {round}: {f}")));
        guest_env = env;
        linux_secs.push(secs);
        rounds.push(r);
    }
    let ((rows, mut extras), all_iops) = pick_median(&rounds);

    println!("-- doorbell counting boots (NVMe ioeventfd off; not timed)");
    let (db_lines, db_trace, _) =
        exo_pass(&arts, &work, exo_append, true, "drivers-exo-doorbells")?;
    let check = doorbell_check(&db_lines, db_trace.io_sq_doorbells);
    println!("  {} {}", if check.0 { "PASS" } else { "FAIL" }, check.1);
    let linux_db = linux_doorbells(&lg, &work)?;
    println!(
        "-- exo: short loops (bench_ops={SHORT_LOOP_OPS}), to catch loops no timer tick falls into"
    );
    let mut short = vec![];
    for boot in 1..=SHORT_LOOP_BOOTS {
        let (short_lines, _, _) = exo_pass(
            &arts,
            &work,
            &format!("test=nvme_bench bench_ops={SHORT_LOOP_OPS}"),
            false,
            "drivers-exo-short",
        )?;
        short.extend(
            tickless(&short_lines)
                .into_iter()
                .map(|l| format!("boot {boot}: {l}")),
        );
    }
    for l in &short {
        println!("  {l}");
    }
    for x in extras.iter_mut().filter(|x| x.system == "linux-guest") {
        x.sq_doorbells_per_op = linux_db.get(&x.workload).copied();
    }

    let out = ws.root.join("eval/results/latest");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("drivers.csv"), eval::results::write_csv(&rows))?;
    std::fs::write(out.join("drivers-counters.csv"), extra_csv(&extras))?;
    let plot = write_plot(&out, &rows)
        .map_err(|e| println!("plot not written: {e}"))
        .ok();
    let secs = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut env = vec![
        ("qemu".to_string(), crate::cmd::output(std::process::Command::new(machine::QEMU).arg("--version"))?.lines().next().unwrap_or("").to_string()),
        ("machine".into(), "the standard machine (scripts/xtask/src/machine.rs), TCG, 1 vCPU, NVMe ioeventfd=on; QEMU traces pci_nvme_io_cmd and pci_nvme_write in both boots".into()),
        ("ops".into(), format!("{qd1} per QD1 workload, {qd32} per QD32 workload (both systems); {ROUNDS} rounds, median-IOPS round reported")),
        ("exo boots".into(), format!("{} s", secs(&exo_secs))),
        ("linux guest boots".into(), format!("{} s", secs(&linux_secs))),
        ("host cpus".into(), std::thread::available_parallelism().map_or(0, |n| n.get()).to_string()),
    ];
    for (k, v) in &lg.versions {
        env.push((format!("package {k}"), v.clone()));
    }
    for (k, v) in &guest_env {
        env.push((format!("guest {k}"), v.clone()));
    }
    env.push((
        "total run time".into(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));
    let notes = [
        format!(
            "exo boot, whole trace: {} read, {} write, {} flush commands (device reads/writes per op above are these over all read or write ops).",
            exo_trace.read_cmds, exo_trace.write_cmds, exo_trace.flush_cmds
        ),
        format!("Doorbell cross-check: {} {}.", if check.0 { "PASS" } else { "FAIL" }, check.1),
        format!(
            "Crossings of the I/O path alone: {SHORT_LOOP_BOOTS} separate exo boots with `bench_ops={SHORT_LOOP_OPS}`, whose loops mostly fit between two 10 ms timer ticks:\n\n{}",
            short.iter().map(|l| format!("- {l}\n")).collect::<String>()
        ),
    ];
    let md = summary(
        &rows,
        &extras,
        &all_iops,
        &notes,
        &failures,
        plot.as_deref(),
        &env,
    );
    std::fs::write(out.join("drivers.md"), &md)?;
    println!("\n{}", targets(&rows, &extras).join("\n"));
    for f in &failures {
        println!("  FAILED {f}");
    }
    println!(
        "wrote {} ({} rows), drivers.md, drivers-counters.csv; logs in {}",
        out.join("drivers.csv").display(),
        rows.len(),
        work.display()
    );
    if !failures.is_empty() {
        bail!("{} Linux rows failed", failures.len());
    }
    Ok(())
}

fn find<'a>(rows: &'a [Row], system: &str, workload: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.system == system && r.workload == workload)
}

/// Ops per workload in the short-loop boot (see [`tickless`]).
/// Short enough (about 1-3 ms under TCG) that most loops see no 10 ms
/// tick; a few boots so that some surely do not.
pub const SHORT_LOOP_OPS: u64 = 16;
pub const SHORT_LOOP_BOOTS: usize = 3;

/// For loops no timer tick fell into, the crossings are the I/O path's
/// alone: one MET/SHORT line per such loop (target 0), an `n/a` line for
/// loops a tick did fall into.
pub fn tickless(lines: &[ExoLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let c = l.syscalls + l.upcalls;
            if l.timer_ticks == 0 {
                format!(
                    "{} {}: {c} kernel crossings ({} syscalls, {} upcalls) over {} I/Os, no timer tick during the loop (target 0)",
                    if c == 0 { "MET  " } else { "SHORT" },
                    l.workload,
                    l.syscalls,
                    l.upcalls,
                    l.ops
                )
            } else {
                format!("n/a   {}: {} timer ticks fell into the loop ({c} crossings over {} I/Os)", l.workload, l.timer_ticks, l.ops)
            }
        })
        .collect()
}

/// The three targets, each as a `MET`/`SHORT` line with the numbers.
pub fn targets(rows: &[Row], extras: &[Extra]) -> Vec<String> {
    let mut out = vec![];
    for w in ["randread-qd32", "randwrite-qd32"] {
        if let (Some(e), Some(l)) = (find(rows, "exo", w), find(rows, "linux-guest", w)) {
            let ratio = e.ops_per_sec / l.ops_per_sec.max(1e-9);
            out.push(format!(
                "{} {w}: exo/linux IOPS = {ratio:.2}x ({:.0} vs {:.0}; target >= 1.0x)",
                if ratio >= 1.0 { "MET  " } else { "SHORT" },
                e.ops_per_sec,
                l.ops_per_sec
            ));
        }
    }
    for w in ["randread-qd1", "randwrite-qd1"] {
        if let (Some(e), Some(l)) = (find(rows, "exo", w), find(rows, "linux-guest", w)) {
            out.push(format!(
                "{} {w}: p50 exo {} us vs linux {} us (target: at or below Linux)",
                if e.p50_us <= l.p50_us {
                    "MET  "
                } else {
                    "SHORT"
                },
                eval::results::format_number(e.p50_us),
                eval::results::format_number(l.p50_us)
            ));
        }
    }
    for x in extras.iter().filter(|x| x.system == "exo") {
        if let Some(c) = x.crossings_per_op {
            out.push(format!(
                "{} {}: exo kernel crossings/op {} (machine-wide: {} timer ticks during the loop, {} crossings per tick; target 0)",
                if c == 0.0 { "MET  " } else { "SHORT" },
                x.workload,
                eval::results::format_number(c),
                x.timer_ticks.unwrap_or(0),
                x.crossings_per_tick.map_or("n/a".into(), eval::results::format_number)
            ));
        }
    }
    out
}

fn write_plot(out: &Path, rows: &[Row]) -> Result<String, String> {
    use eval::plot::{Bar, Panel};
    let panels: Vec<Panel> = WORKLOADS
        .iter()
        .map(|(w, _)| Panel {
            title: (*w).to_string(),
            bars: ["exo", "linux-guest"]
                .iter()
                .filter_map(|s| {
                    find(rows, s, w).map(|r| Bar {
                        label: (*s).into(),
                        value: r.ops_per_sec,
                        engine: (*s).into(),
                    })
                })
                .collect(),
        })
        .collect();
    let file = "drivers-iops.svg";
    eval::plot::write_bar_chart_svg(
        &out.join(file),
        "4 KiB random I/O on the raw NVMe namespace (TCG), IOPS",
        "IOPS",
        &panels,
        4,
    )?;
    Ok(file.into())
}

fn summary(
    rows: &[Row],
    extras: &[Extra],
    all_iops: &BTreeMap<(String, String), Vec<f64>>,
    notes: &[String],
    failures: &[String],
    plot: Option<&str>,
    env: &[(String, String)],
) -> String {
    let n = |v: Option<f64>| {
        v.map(eval::results::format_number)
            .unwrap_or_else(|| "n/a".into())
    };
    let mut s =
        String::from("# Drivers: userspace NVMe on the exokernel vs Linux's NVMe driver\n\n");
    s.push_str(
        "Produced by `cargo xtask eval --drivers` (method and discussion: eval/DRIVERS.md). 4 KiB random I/O on the raw \
         namespace, first 128 MiB, same QEMU machine, same run, TCG: times are emulated-machine times, counts are exact.\n\n",
    );
    s.push_str("## Side by side\n\n| workload | exo IOPS | linux IOPS | exo/linux | exo p50 µs | linux p50 µs | exo p99 µs | linux p99 µs |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (w, _) in WORKLOADS {
        let (e, l) = (find(rows, "exo", w), find(rows, "linux-guest", w));
        let g = |r: Option<&Row>, f: fn(&Row) -> f64| {
            r.map(|r| eval::results::format_number(f(r)))
                .unwrap_or_else(|| "n/a".into())
        };
        let ratio = e
            .zip(l)
            .map(|(e, l)| format!("{:.2}×", e.ops_per_sec / l.ops_per_sec.max(1e-9)))
            .unwrap_or_else(|| "n/a".into());
        let _ = writeln!(
            s,
            "| {w} | {} | {} | {ratio} | {} | {} | {} | {} |",
            g(e, |r| r.ops_per_sec),
            g(l, |r| r.ops_per_sec),
            g(e, |r| r.p50_us),
            g(l, |r| r.p50_us),
            g(e, |r| r.p99_us),
            g(l, |r| r.p99_us)
        );
    }
    s.push_str("\nIOPS of every round (sorted; the rows above are the median round's):\n\n");
    for ((sys, w), v) in all_iops {
        let _ = writeln!(
            s,
            "- {sys} {w}: {}",
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    s.push_str(
        "\n## Counts per I/O\n\nexo: kernel crossings = system calls + upcalls over the measured loop, machine-wide (a timer \
         interrupt that preempts the driver counts, as do init's calls while it runs); doorbells counted by the driver. \
         linux-guest: system calls of eval-bench (ftrace) + NVMe I/O-queue interrupts (/proc/interrupts), both as \
         `(run - its --ops 1 baseline) / (ops - 1)`; Linux's doorbells (SQ only; it writes CQ heads to the shadow buffer) come from a separate counting boot with the NVMe ioeventfd off, where QEMU traces every doorbell write (eval/LINUX.md); that boot times nothing. Linux writes an MMIO doorbell only when the controller's shadow-buffer event index asks for it, so its count depends on QEMU's timing and differs between runs (eval/DRIVERS.md). \
         Device commands from QEMU's trace.\n\n\
         | system | workload | crossings/op | syscalls/op | upcalls or IRQs/op | timer ticks in loop | crossings/tick | doorbells/op (SQ+CQ) | SQ doorbells/op | device reads/op | device writes/op |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for x in extras {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            x.system,
            x.workload,
            n(x.crossings_per_op),
            n(x.syscalls_per_op),
            n(x.interrupts_or_upcalls_per_op),
            x.timer_ticks.map_or("n/a".into(), |t| t.to_string()),
            n(x.crossings_per_tick),
            n(x.doorbells_per_op),
            n(x.sq_doorbells_per_op),
            n(x.device_read_cmds_per_op),
            n(x.device_write_cmds_per_op)
        );
    }
    for note in notes {
        let _ = writeln!(s, "\n{note}");
    }
    s.push_str("\n## Targets\n\n");
    for t in targets(rows, extras) {
        let _ = writeln!(s, "- {t}");
    }
    s.push_str("\n## All columns\n\n");
    s.push_str(&eval::results::markdown_table(rows));
    if !failures.is_empty() {
        s.push_str("\n## Failed runs\n\n");
        for f in failures {
            let _ = writeln!(s, "- {f}");
        }
    }
    if let Some(p) = plot {
        let _ = writeln!(s, "\n![{p}]({p})");
    }
    s.push_str("\n## Environment\n\n");
    for (k, v) in env {
        let _ = writeln!(s, "- {k}: {v}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIAL: &str = "init: something\n\
        EXO-BENCH system=exo engine=nvme-raw workload=randread-qd1 ops=500 secs=0.074563 iops=6705 p50_us=95 p99_us=2153 doorbells_per_io=2.00 sq_doorbells=500 cq_doorbells=500 syscalls=14 upcalls=21 timer_ticks=7\n\
        EXO-BENCH system=exo engine=nvme-raw workload=randread-qd32 ops=2000 secs=0.157505 iops=12698 p50_us=1740 p99_us=8667 doorbells_per_io=0.21 sq_doorbells=220 cq_doorbells=200 syscalls=32 upcalls=48 timer_ticks=16\n\
        EXO-BENCH system=exo engine=nvme-raw workload=randwrite-qd1 ops=500 secs=0.093530 iops=5345 p50_us=71 p99_us=3439 doorbells_per_io=2.00 sq_doorbells=500 cq_doorbells=500 syscalls=18 upcalls=27 timer_ticks=9\n\
        EXO-BENCH system=exo engine=nvme-raw workload=randwrite-qd32 ops=2000 secs=0.059256 iops=33751 p50_us=504 p99_us=5569 doorbells_per_io=0.14 sq_doorbells=150 cq_doorbells=130 syscalls=0 upcalls=0 timer_ticks=0\n\
        EXO-TEST-PASS nvme_bench\n";

    #[test]
    fn parses_the_exo_bench_lines() {
        let l = parse_exo(SERIAL).unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l[1].workload, "randread-qd32");
        assert_eq!(
            (l[1].ops, l[1].iops, l[1].p50_us, l[1].doorbells_per_io),
            (2000, 12698.0, 1740.0, 0.21)
        );
        assert_eq!((l[0].syscalls, l[0].upcalls, l[0].timer_ticks), (14, 21, 7));
        assert_eq!((l[1].sq_doorbells, l[1].cq_doorbells), (220, 200));
    }

    #[test]
    fn exo_lines_that_are_missing_or_garbled_are_errors() {
        let without_last: String = SERIAL
            .lines()
            .filter(|l| !l.contains("randwrite-qd32"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_exo(&without_last)
            .unwrap_err()
            .to_string()
            .contains("randwrite-qd32"));
        assert!(parse_exo(&SERIAL.replace("iops=6705", "iops=lots")).is_err());
        assert!(parse_exo(&SERIAL.replace("iops=6705", "iops=-3")).is_err());
        assert!(parse_exo(&SERIAL.replace(" syscalls=14", "")).is_err());
        assert!(parse_exo(&SERIAL.replace(
            "system=exo engine=nvme-raw workload=randread-qd1 ",
            "system=linux engine=nvme-raw workload=randread-qd1 "
        ))
        .is_err());
    }

    #[test]
    fn reads_interrupt_lines_and_rejects_bad_ones() {
        let text = "@@READY 1\r\n@@DRV-IRQ 1 3\r\n@@DRV-PID 1 137\n[ 1.0] nvme\n@@DRV-IRQ 2 4011\n";
        let m = parse_row_numbers(text, "DRV-IRQ").unwrap();
        assert_eq!(m.into_iter().collect::<Vec<_>>(), vec![(1, 3), (2, 4011)]);
        assert_eq!(
            parse_row_numbers(text, "DRV-PID")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![(1, 137)]
        );
        assert!(parse_row_numbers("@@DRV-IRQ 1\n", "DRV-IRQ").is_err());
        assert!(parse_row_numbers("@@DRV-IRQ x 2\n", "DRV-IRQ").is_err());
        assert!(parse_row_numbers("@@DRV-IRQ 1 2 3\n", "DRV-IRQ").is_err());
    }

    #[test]
    fn syscalls_are_found_by_pid_not_by_name() {
        let h = "# event histogram\n{ common_pid: init            [       136] } hitcount:         12\n\
                 { common_pid: init            [       137] } hitcount:        543\n\nTotals:\n    Hits: 555\n    Dropped: 0\n";
        assert_eq!(syscalls_of_pid(h, 137).unwrap(), 543);
        assert_eq!(syscalls_of_pid(h, 999).unwrap(), 0);
        assert!(syscalls_of_pid(&h.replace("Dropped: 0", "Dropped: 2"), 137).is_err());
        assert!(
            syscalls_of_pid("{ common_pid: x [ 1] } hitcount: 3\n", 1).is_err(),
            "a truncated hist is an error"
        );
    }

    #[test]
    fn linux_runs_pair_each_workload_with_a_one_op_baseline() {
        let (runs, pairs) = linux_runs(true);
        assert_eq!((runs.len(), pairs.len()), (8, 4));
        for ((b, m), (w, deep)) in pairs.iter().zip(WORKLOADS) {
            assert_eq!(runs[*b].ops, 1);
            assert_eq!(runs[*m].ops, if deep { 2000 } else { 500 });
            assert_eq!(
                (runs[*b].workload.as_str(), runs[*m].workload.as_str()),
                (w, w)
            );
        }
        assert_eq!(
            plan_line(&runs[1]),
            "--workload randread-qd1 --ops 500 --block 4096 --span-mib 128"
        );
    }

    #[test]
    fn per_op_subtracts_the_baseline() {
        assert_eq!(per_op(1030, 30, 501), Some(2.0));
        assert_eq!(per_op(5, 5, 1), None);
    }

    fn outcome(csv: &str, syscalls: u64, writes: u64, reads: u64) -> RunOutcome {
        RunOutcome {
            csv: Some(csv.into()),
            syscalls: Some(syscalls),
            nvme: Some(qtrace::NvmeCounts {
                write_cmds: writes,
                read_cmds: reads,
                bytes_written: writes * 4096,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn linux_rows_are_differential() {
        let columns: Vec<String> = eval::results::COLUMNS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (runs, pairs) = linux_runs(true);
        let p = pairs[2]; // randwrite-qd1, 500 ops
        let mut outs = vec![RunOutcome::default(); runs.len()];
        outs[p.0] = outcome(
            "linux-guest,nvme-raw,nvme,randwrite-qd1,4096,none,1,10,5,5,,,,,,,,",
            40,
            1,
            0,
        );
        outs[p.1] = outcome(
            "linux-guest,nvme-raw,nvme,randwrite-qd1,4096,none,500,3000,300,900,,,,,,,,",
            40 + 499 * 2,
            500,
            0,
        );
        let irqs = BTreeMap::from([(p.0 + 1, 1), (p.1 + 1, 500)]);
        let (row, extra) = linux_row(&columns, &runs, p, &outs, &irqs).unwrap();
        assert_eq!((row.ops_per_sec, row.p50_us), (3000.0, 300.0));
        assert_eq!(row.syscalls_per_op, Some(2.0));
        assert_eq!(row.device_write_cmds_per_op, Some(1.0));
        assert_eq!(row.device_bytes_written_per_op, Some(4096.0));
        assert_eq!(
            (extra.interrupts_or_upcalls_per_op, extra.crossings_per_op),
            (Some(1.0), Some(3.0))
        );
        outs[p.0].fail = Some("eval-bench exited 1".into());
        assert!(
            linux_row(&columns, &runs, p, &outs, &irqs).is_err(),
            "a failed baseline must not give a row"
        );
    }

    #[test]
    fn exo_rows_spread_trace_counts_over_their_direction() {
        let lines = parse_exo(SERIAL).unwrap();
        let trace = qtrace::NvmeCounts {
            read_cmds: 2500,
            write_cmds: 2500,
            bytes_written: 2500 * 4096,
            flush_cmds: 1,
            ..Default::default()
        };
        let (rows, extras) = exo_rows(&lines, &trace);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].device_write_cmds_per_op, None);
        assert_eq!(extras[0].device_read_cmds_per_op, Some(1.0));
        assert_eq!(rows[3].device_write_cmds_per_op, Some(1.0));
        assert_eq!(extras[0].crossings_per_op, Some(35.0 / 500.0));
        assert_eq!(extras[3].crossings_per_op, Some(0.0));
        assert_eq!(
            (extras[0].crossings_per_tick, extras[3].crossings_per_tick),
            (Some(5.0), None)
        );
        let t = targets(&rows, &extras);
        assert!(
            t.iter()
                .any(|l| l.starts_with("MET")
                    && l.contains("randwrite-qd32: exo kernel crossings/op 0")),
            "{t:?}"
        );
        assert!(
            t.iter()
                .any(|l| l.starts_with("SHORT")
                    && l.contains("randread-qd1: exo kernel crossings/op")),
            "{t:?}"
        );
    }

    #[test]
    fn the_median_round_is_reported_whole() {
        let row = |sys: &str, w: &str, iops: f64, p50: f64| Row {
            system: sys.into(),
            workload: w.into(),
            ops_per_sec: iops,
            p50_us: p50,
            ..Row::default()
        };
        let extra = |sys: &str, t: u64| Extra {
            system: sys.into(),
            timer_ticks: Some(t),
            ..Extra::default()
        };
        let rounds = vec![
            (vec![row("exo", "a", 300.0, 1.0)], vec![extra("exo", 1)]),
            (
                vec![row("linux-guest", "a", 50.0, 9.0)],
                vec![extra("linux-guest", 9)],
            ),
            (vec![row("exo", "a", 100.0, 2.0)], vec![extra("exo", 2)]),
            (
                vec![row("linux-guest", "a", 70.0, 8.0)],
                vec![extra("linux-guest", 8)],
            ),
            (vec![row("exo", "a", 200.0, 3.0)], vec![extra("exo", 3)]),
        ];
        let ((rows, extras), iops) = pick_median(&rounds);
        assert_eq!(
            rows.iter()
                .map(|r| (r.system.as_str(), r.ops_per_sec, r.p50_us))
                .collect::<Vec<_>>(),
            vec![("exo", 200.0, 3.0), ("linux-guest", 50.0, 9.0)]
        );
        assert_eq!(
            extras.iter().map(|e| e.timer_ticks).collect::<Vec<_>>(),
            vec![Some(3), Some(9)],
            "counts come from the same round"
        );
        assert_eq!(
            iops[&("exo".to_string(), "a".to_string())],
            vec![100.0, 200.0, 300.0]
        );
    }

    #[test]
    fn doorbell_check_compares_driver_and_trace() {
        let lines = parse_exo(SERIAL).unwrap();
        let driver = 500 + 220 + 500 + 150;
        assert!(doorbell_check(&lines, driver).0);
        assert!(
            doorbell_check(&lines, driver + 1).0,
            "the final flush rings once more"
        );
        assert!(
            !doorbell_check(&lines, driver - 1).0,
            "fewer traced than counted is a miscount"
        );
        assert!(!doorbell_check(&lines, driver + 100).0);
        assert!(doorbell_check(&lines, driver)
            .1
            .contains(&format!("driver counted {driver}")));
    }

    #[test]
    fn tickless_loops_report_the_io_paths_crossings() {
        let lines = parse_exo(SERIAL).unwrap();
        let t = tickless(&lines);
        assert_eq!(t.len(), 4);
        assert!(
            t[0].starts_with("n/a") && t[0].contains("7 timer ticks"),
            "{}",
            t[0]
        );
        assert!(
            t[3].starts_with("MET") && t[3].contains("0 kernel crossings"),
            "{}",
            t[3]
        );
        let mut odd = lines[3].clone();
        odd.syscalls = 1;
        assert!(
            tickless(&[odd])[0].starts_with("SHORT"),
            "a crossing without a tick is the I/O path's"
        );
    }
}
