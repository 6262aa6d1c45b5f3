//! The `--drivers` comparison's logic (`cargo xtask eval --drivers` boots
//! the machines and calls these): the userspace NVMe driver on the
//! exokernel against Linux's in-kernel NVMe driver, 4 KiB random reads and
//! writes at queue depth 1 and 32 on the raw namespace. Reads `nvmed
//! bench`'s `EXO-BENCH` lines ([`eval_lines::BenchLine`]) and the Linux
//! guest's runs into rows (each Linux row differential against a `--ops 1`
//! baseline run), picks the median round, checks doorbells against QEMU's
//! trace, and writes drivers.md, drivers-counters.csv and drivers-iops.svg.
//! eval/DRIVERS.md explains the method.

use crate::linux::{hist, plan::Run, qtrace, RunOutcome};
use crate::results::{parse_row, Row};
use anyhow::{bail, Context, Result};
use eval_lines::BenchLine;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The workloads, in the order both systems run them: (name, QD32?).
pub const WORKLOADS: [(&str, bool); 4] =
    [("randread-qd1", false), ("randread-qd32", true), ("randwrite-qd1", false), ("randwrite-qd32", true)];

/// The span both benchmarks draw offsets from (nvmed's `SPAN_BYTES`).
pub const SPAN_BYTES: u64 = 128 << 20;

/// Ops per workload: (QD1, QD32), as nvmed's bench picks them.
pub fn op_counts(quick: bool) -> (u64, u64) {
    if quick {
        (500, 2000)
    } else {
        (4000, 16000)
    }
}

/// Every `EXO-BENCH` line ([`BenchLine`]) of the exokernel's serial log;
/// one per workload of [`WORKLOADS`] at least.
pub fn parse_exo(serial: &str) -> Result<Vec<BenchLine>> {
    let mut out = vec![];
    for line in serial.lines().map(str::trim).filter(|l| l.starts_with("EXO-BENCH ")) {
        out.push(BenchLine::parse(line).map_err(|e| anyhow::anyhow!("EXO-BENCH line {e}: {line:?}"))?);
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
        let (Some(row), Some(n), None) = (w.next(), w.next(), w.next()) else { bail!("malformed {line:?}") };
        let row = row.parse().with_context(|| format!("bad row in {line:?}"))?;
        let n = n.parse().with_context(|| format!("bad number in {line:?}"))?;
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
    Ok(h.entries.iter().filter(|e| e.pid.map(u64::from) == Some(pid)).filter_map(|e| e.value("hitcount")).sum())
}

/// The guest's run list: per workload a `--ops 1` baseline, then the
/// measured run. Returns (runs, pairs as (baseline, measured) indices).
pub fn linux_runs(quick: bool) -> (Vec<Run>, Vec<(usize, usize)>) {
    let (qd1, qd32) = op_counts(quick);
    let mut runs = vec![];
    let mut pairs = vec![];
    let engines = std::iter::once("nvme-raw").chain(crate::fio::ENGINES.iter().map(|e| e.0));
    for (engine, (w, deep)) in engines.flat_map(|e| WORKLOADS.into_iter().map(move |w| (e, w))) {
        let ops = if deep { qd32 } else { qd1 };
        let run = |ops| Run {
            engine: engine.into(),
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

/// The /etc/plan line of a run: `raw` or `fio`, then the `eval-bench raw`
/// or `eval-bench fio` arguments (init adds `--dev` and `--system`).
pub fn plan_line(r: &Run) -> String {
    let args =
        format!("--workload {} --ops {} --block {} --span-mib {}", r.workload, r.ops, r.value_bytes, SPAN_BYTES >> 20);
    if r.engine.starts_with("fio-") {
        format!("fio --engine {} {args}", r.engine)
    } else {
        format!("raw {args}")
    }
}

/// The key a row's rounds are grouped by: system and workload, the fio
/// configuration's name in front of fio rows' workloads.
pub fn round_key(r: &Row) -> (String, String) {
    if r.engine == "nvme-raw" {
        (r.system.clone(), r.workload.clone())
    } else {
        (r.system.clone(), format!("{} {}", r.engine, r.workload))
    }
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
    /// The row's `engine`: `nvme-raw` (the project's own benchmarks) or a
    /// fio configuration ([`crate::fio::ENGINES`]).
    pub engine: String,
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

const EXTRA_HEADER: [&str; 12] = [
    "system",
    "workload",
    "crossings_per_op",
    "syscalls_per_op",
    "interrupts_or_upcalls_per_op",
    "timer_ticks",
    "crossings_per_tick",
    "doorbells_per_op",
    "sq_doorbells_per_op",
    "device_read_cmds_per_op",
    "device_write_cmds_per_op",
    "engine",
];

fn cell(v: Option<f64>) -> String {
    v.map(crate::results::format_number).unwrap_or_default()
}

pub fn extra_csv(extras: &[Extra]) -> String {
    crate::results::csv_text(
        Some(&EXTRA_HEADER),
        extras.iter().map(|e| {
            [
                e.system.clone(),
                e.workload.clone(),
                cell(e.crossings_per_op),
                cell(e.syscalls_per_op),
                cell(e.interrupts_or_upcalls_per_op),
                e.timer_ticks.map(|t| t.to_string()).unwrap_or_default(),
                cell(e.crossings_per_tick),
                cell(e.doorbells_per_op),
                cell(e.sq_doorbells_per_op),
                cell(e.device_read_cmds_per_op),
                cell(e.device_write_cmds_per_op),
                e.engine.clone(),
            ]
        }),
    )
}

/// The exokernel's rows. Device commands come from the trace of the whole
/// boot: nvmed runs reads first, then writes, so reads/read op and
/// writes/write op are averages over both depths of that direction.
pub fn exo_rows(lines: &[BenchLine], trace: &qtrace::NvmeCounts) -> (Vec<Row>, Vec<Extra>) {
    let read_ops: u64 = lines.iter().filter(|l| l.workload.starts_with("randread")).map(|l| l.ops).sum();
    let write_ops: u64 = lines.iter().filter(|l| l.workload.starts_with("randwrite")).map(|l| l.ops).sum();
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
            ops_per_sec: l.iops as f64,
            p50_us: l.p50_us as f64,
            p99_us: l.p99_us as f64,
            syscalls_per_op: Some(l.syscalls as f64 / ops),
            device_write_cmds_per_op: writes,
            device_bytes_written_per_op: write.then(|| trace.bytes_written as f64 / write_ops.max(1) as f64),
            ..Row::default()
        });
        extras.push(Extra {
            system: "exo".into(),
            workload: l.workload.clone(),
            engine: "nvme-raw".into(),
            crossings_per_op: Some((l.syscalls + l.upcalls) as f64 / ops),
            syscalls_per_op: Some(l.syscalls as f64 / ops),
            interrupts_or_upcalls_per_op: Some(l.upcalls as f64 / ops),
            timer_ticks: Some(l.timer_ticks),
            crossings_per_tick: (l.timer_ticks > 0).then(|| (l.syscalls + l.upcalls) as f64 / l.timer_ticks as f64),
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
    let mut row = parse_row(columns, csv).map_err(anyhow::Error::msg).with_context(|| format!("row {csv:?}"))?;
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
    if row.engine.starts_with("fio-") {
        // fio runs its job in a process of its own, so the histogram of
        // the pid the guest knows (eval-bench, which starts fio) does not
        // hold the I/O's system calls: no count rather than a wrong one.
        row.syscalls_per_op = None;
    }
    let extra = Extra {
        system: "linux-guest".into(),
        workload: row.workload.clone(),
        engine: row.engine.clone(),
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

/// Rounds of (exo boot, Linux boot), interleaved so that load from other
/// users of the machine hits both systems alike; each reported row is the
/// round with the median IOPS for that system and workload.
pub const ROUNDS: usize = 5;

/// One round's rows of one system.
pub type Round = (Vec<Row>, Vec<Extra>);

/// The round with the median IOPS for each (system, workload), whole (so
/// its latencies and counts stay together), plus every round's IOPS.
pub fn pick_median(rounds: &[Round]) -> (Round, BTreeMap<(String, String), Vec<f64>>) {
    crate::rounds::pick_median(rounds, round_key)
}

/// Does the driver's own SQ doorbell count match QEMU's trace of the same
/// boot? (The trace also sees the doorbells of the final flush and of any
/// I/O outside the loops, so it may exceed the loops' sum by a few.)
pub fn doorbell_check(lines: &[BenchLine], traced_io_sq: u64) -> (bool, String) {
    let driver: u64 = lines.iter().map(|l| l.sq_doorbells).sum();
    let ok = traced_io_sq >= driver && traced_io_sq - driver <= 4;
    (ok, format!("exo I/O-queue SQ doorbells: driver counted {driver} over its loops, QEMU traced {traced_io_sq} over the whole boot (ioeventfd off)"))
}

/// The project's own benchmark's row (engine `nvme-raw`) of `system`.
fn find<'a>(rows: &'a [Row], system: &str, workload: &str) -> Option<&'a Row> {
    find_engine(rows, system, "nvme-raw", workload)
}

fn find_engine<'a>(rows: &'a [Row], system: &str, engine: &str, workload: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.system == system && r.engine == engine && r.workload == workload)
}

/// Linux's fastest row of `workload`, over its own benchmark and every
/// fio configuration.
pub fn best_linux<'a>(rows: &'a [Row], workload: &str) -> Option<&'a Row> {
    rows.iter()
        .filter(|r| r.system == "linux-guest" && r.workload == workload)
        .max_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec))
}

/// Where `eval-bench raw` and fio, measuring the same thing, disagree: the
/// QD32 rows (both io_uring, no polling) compared, and at QD1 fio's best
/// against `raw`'s `pread`/`pwrite`. AGREE within 25 %, else DIFFER.
pub fn fio_cross_check(rows: &[Row]) -> Vec<String> {
    let mut out = vec![];
    for (w, deep) in WORKLOADS {
        let Some(raw) = find(rows, "linux-guest", w) else { continue };
        let fio = if deep {
            find_engine(rows, "linux-guest", "fio-io_uring", w)
        } else {
            rows.iter()
                .filter(|r| r.system == "linux-guest" && r.engine.starts_with("fio-") && r.workload == w)
                .max_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec))
        };
        let Some(fio) = fio else { continue };
        let ratio = fio.ops_per_sec / raw.ops_per_sec.max(1e-9);
        out.push(format!(
            "{} {w}: {} {:.0} IOPS vs eval-bench raw ({}) {:.0} IOPS: {ratio:.2}x; p50 {} vs {} us",
            if (0.8..=1.25).contains(&ratio) { "AGREE " } else { "DIFFER" },
            fio.engine,
            fio.ops_per_sec,
            if deep { "io_uring" } else { "pread/pwrite" },
            raw.ops_per_sec,
            crate::results::format_number(fio.p50_us),
            crate::results::format_number(raw.p50_us)
        ));
    }
    out
}

/// Ops per workload in the short-loop boot (see [`tickless`]).
/// Short enough (about 1-3 ms under TCG) that most loops see no 10 ms
/// tick; a few boots so that some surely do not.
pub const SHORT_LOOP_OPS: u64 = 16;
pub const SHORT_LOOP_BOOTS: usize = 3;

/// For loops no timer tick fell into, the crossings are the I/O path's
/// alone: one MET/SHORT line per such loop (target 0), an `n/a` line for
/// loops a tick did fall into.
pub fn tickless(lines: &[BenchLine]) -> Vec<String> {
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
                if e.p50_us <= l.p50_us { "MET  " } else { "SHORT" },
                crate::results::format_number(e.p50_us),
                crate::results::format_number(l.p50_us)
            ));
        }
    }
    for x in extras.iter().filter(|x| x.system == "exo") {
        if let Some(c) = x.crossings_per_op {
            out.push(format!(
                "{} {}: exo kernel crossings/op {} (machine-wide: {} timer ticks during the loop, {} crossings per tick; target 0)",
                if c == 0.0 { "MET  " } else { "SHORT" },
                x.workload,
                crate::results::format_number(c),
                x.timer_ticks.unwrap_or(0),
                x.crossings_per_tick.map_or("n/a".into(), crate::results::format_number)
            ));
        }
    }
    out
}

pub fn write_plot(out: &Path, rows: &[Row]) -> Result<String, String> {
    use crate::plot::{Bar, Panel};
    let panels: Vec<Panel> = WORKLOADS
        .iter()
        .map(|(w, _)| Panel {
            title: (*w).to_string(),
            bars: ["exo", "linux-guest"]
                .iter()
                .filter_map(|s| {
                    find(rows, s, w).map(|r| Bar { label: (*s).into(), value: r.ops_per_sec, engine: (*s).into() })
                })
                .collect(),
        })
        .collect();
    let file = "drivers-iops.svg";
    crate::plot::write_bar_chart_svg(
        &out.join(file),
        "4 KiB random I/O on the raw NVMe namespace (TCG), IOPS",
        "IOPS",
        &panels,
        4,
    )?;
    Ok(file.into())
}

pub fn summary(
    rows: &[Row],
    extras: &[Extra],
    all_iops: &BTreeMap<(String, String), Vec<f64>>,
    notes: &[String],
    failures: &[String],
    plot: Option<&str>,
    env: &[(String, String)],
) -> String {
    let n = |v: Option<f64>| v.map(crate::results::format_number).unwrap_or_else(|| "n/a".into());
    let mut s = String::from("# Drivers: userspace NVMe on the exokernel vs Linux's NVMe driver\n\n");
    s.push_str(
        "Produced by `cargo xtask eval --drivers` (method and discussion: eval/DRIVERS.md). 4 KiB random I/O on the raw \
         namespace, first 128 MiB, same QEMU machine, same run, TCG: times are emulated-machine times, counts are exact.\n\n",
    );
    s.push_str("## Side by side\n\n| workload | exo IOPS | linux IOPS | exo/linux | exo p50 µs | linux p50 µs | exo p99 µs | linux p99 µs |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (w, _) in WORKLOADS {
        let (e, l) = (find(rows, "exo", w), find(rows, "linux-guest", w));
        let g = |r: Option<&Row>, f: fn(&Row) -> f64| {
            r.map(|r| crate::results::format_number(f(r))).unwrap_or_else(|| "n/a".into())
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
    s.push_str(
        "\n## Linux's strongest configuration: fio (Debian's) beside the project's own benchmark\n\n\
         Median rounds. `nvme-raw` is `eval-bench raw` (QD1 `pread`/`pwrite`, QD32 io_uring); the fio rows run Debian's \
         fio on the same namespace, span and sizes: io_uring with interrupts, io_uring polled (`--hipri`, \
         `IORING_SETUP_IOPOLL` on the NVMe driver's poll queue, `nvme.poll_queues=1`), libaio. \
         `exo/best` divides exo's IOPS by the best Linux row's.\n\n\
         | workload | exo IOPS | linux nvme-raw | fio io_uring | fio io_uring hipri | fio libaio | best Linux | exo/best | fio p50 µs (io_uring / hipri / libaio) | IRQs/op (io_uring / hipri / libaio) |\n\
         |---|---:|---:|---:|---:|---:|---|---:|---|---|\n",
    );
    for (w, _) in WORKLOADS {
        let e = find(rows, "exo", w);
        let iops = |r: Option<&Row>| r.map_or("n/a".into(), |r| format!("{:.0}", r.ops_per_sec));
        let fio: Vec<Option<&Row>> =
            crate::fio::ENGINES.iter().map(|f| find_engine(rows, "linux-guest", f.0, w)).collect();
        let best = best_linux(rows, w);
        let irq = |r: Option<&Row>| {
            r.and_then(|r| {
                extras.iter().find(|x| x.system == r.system && x.engine == r.engine && x.workload == r.workload)
            })
            .and_then(|x| x.interrupts_or_upcalls_per_op)
        };
        let _ = writeln!(
            s,
            "| {w} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            iops(e),
            iops(find(rows, "linux-guest", w)),
            iops(fio[0]),
            iops(fio[1]),
            iops(fio[2]),
            best.map_or("n/a".into(), |b| format!("{} {:.0}", b.engine, b.ops_per_sec)),
            e.zip(best).map_or("n/a".into(), |(e, b)| format!("{:.2}×", e.ops_per_sec / b.ops_per_sec.max(1e-9))),
            fio.iter()
                .map(|r| r.map_or("n/a".into(), |r| crate::results::format_number(r.p50_us)))
                .collect::<Vec<_>>()
                .join(" / "),
            fio.iter().map(|r| n(irq(*r))).collect::<Vec<_>>().join(" / "),
        );
    }
    s.push_str("\nCross-check, fio against the project's own Linux benchmark:\n\n");
    for l in fio_cross_check(rows) {
        let _ = writeln!(s, "- {l}");
    }
    s.push_str("\nIOPS of every round (sorted; the rows above are the median round's):\n\n");
    for ((sys, w), v) in all_iops {
        let _ = writeln!(s, "- {sys} {w}: {}", v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", "));
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
            if x.engine.is_empty() || x.engine == "nvme-raw" {
                x.system.clone()
            } else {
                format!("{} {}", x.system, x.engine)
            },
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
    s.push_str(&crate::results::markdown_table(rows));
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
        assert_eq!((l[1].ops, l[1].iops, l[1].p50_us, l[1].doorbells_per_io), (2000, 12698, 1740, 0.21));
        assert_eq!((l[0].syscalls, l[0].upcalls, l[0].timer_ticks), (14, 21, 7));
        assert_eq!((l[1].sq_doorbells, l[1].cq_doorbells), (220, 200));
    }

    #[test]
    fn exo_lines_that_are_missing_or_garbled_are_errors() {
        let without_last: String =
            SERIAL.lines().filter(|l| !l.contains("randwrite-qd32")).map(|l| format!("{l}\n")).collect();
        assert!(parse_exo(&without_last).unwrap_err().to_string().contains("randwrite-qd32"));
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
        assert_eq!(parse_row_numbers(text, "DRV-PID").unwrap().into_iter().collect::<Vec<_>>(), vec![(1, 137)]);
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
        assert!(syscalls_of_pid("{ common_pid: x [ 1] } hitcount: 3\n", 1).is_err(), "a truncated hist is an error");
    }

    #[test]
    fn linux_runs_pair_each_workload_with_a_one_op_baseline() {
        let (runs, pairs) = linux_runs(true);
        // The project's own benchmark, then each fio configuration.
        assert_eq!((runs.len(), pairs.len()), (32, 16));
        for ((b, m), (w, deep)) in pairs.iter().zip(WORKLOADS.into_iter().cycle()) {
            assert_eq!(runs[*b].ops, 1);
            assert_eq!(runs[*m].ops, if deep { 2000 } else { 500 });
            assert_eq!((runs[*b].workload.as_str(), runs[*m].workload.as_str()), (w, w));
            assert_eq!(runs[*b].engine, runs[*m].engine);
        }
        assert_eq!(plan_line(&runs[1]), "raw --workload randread-qd1 --ops 500 --block 4096 --span-mib 128");
        assert_eq!(
            plan_line(&runs[11]),
            "fio --engine fio-io_uring --workload randread-qd32 --ops 2000 --block 4096 --span-mib 128"
        );
        assert_eq!(runs.iter().filter(|r| r.engine == "fio-io_uring-hipri").count(), 8);
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
        let columns: Vec<String> = crate::results::COLUMNS.iter().map(|s| s.to_string()).collect();
        let (runs, pairs) = linux_runs(true);
        let p = pairs[2]; // randwrite-qd1, 500 ops
        let mut outs = vec![RunOutcome::default(); runs.len()];
        outs[p.0] = outcome("linux-guest,nvme-raw,nvme,randwrite-qd1,4096,none,1,10,5,5,,,,,,,,", 40, 1, 0);
        outs[p.1] =
            outcome("linux-guest,nvme-raw,nvme,randwrite-qd1,4096,none,500,3000,300,900,,,,,,,,", 40 + 499 * 2, 500, 0);
        let irqs = BTreeMap::from([(p.0 + 1, 1), (p.1 + 1, 500)]);
        let (row, extra) = linux_row(&columns, &runs, p, &outs, &irqs).unwrap();
        assert_eq!((row.ops_per_sec, row.p50_us), (3000.0, 300.0));
        assert_eq!(row.syscalls_per_op, Some(2.0));
        assert_eq!(row.device_write_cmds_per_op, Some(1.0));
        assert_eq!(row.device_bytes_written_per_op, Some(4096.0));
        assert_eq!((extra.interrupts_or_upcalls_per_op, extra.crossings_per_op), (Some(1.0), Some(3.0)));
        outs[p.0].fail = Some("eval-bench exited 1".into());
        assert!(linux_row(&columns, &runs, p, &outs, &irqs).is_err(), "a failed baseline must not give a row");
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
        assert_eq!((extras[0].crossings_per_tick, extras[3].crossings_per_tick), (Some(5.0), None));
        let t = targets(&rows, &extras);
        assert!(
            t.iter().any(|l| l.starts_with("MET") && l.contains("randwrite-qd32: exo kernel crossings/op 0")),
            "{t:?}"
        );
        assert!(
            t.iter().any(|l| l.starts_with("SHORT") && l.contains("randread-qd1: exo kernel crossings/op")),
            "{t:?}"
        );
    }

    #[test]
    fn fio_is_cross_checked_against_the_own_benchmark() {
        let row = |engine: &str, w: &str, iops: f64| Row {
            system: "linux-guest".into(),
            engine: engine.into(),
            workload: w.into(),
            ops_per_sec: iops,
            ..Row::default()
        };
        let rows = vec![
            row("nvme-raw", "randread-qd32", 1000.0),
            row("fio-io_uring", "randread-qd32", 1100.0),
            row("fio-io_uring-hipri", "randread-qd32", 3000.0),
            row("nvme-raw", "randread-qd1", 1000.0),
            row("fio-libaio", "randread-qd1", 500.0),
        ];
        let c = fio_cross_check(&rows);
        assert!(c[0].starts_with("DIFFER randread-qd1: fio-libaio 500"), "{c:?}");
        assert!(c[1].starts_with("AGREE  randread-qd32: fio-io_uring 1100"), "{c:?}");
        assert_eq!(best_linux(&rows, "randread-qd32").unwrap().engine, "fio-io_uring-hipri");
    }

    #[test]
    fn the_median_round_is_reported_whole() {
        let row = |sys: &str, w: &str, iops: f64, p50: f64| Row {
            system: sys.into(),
            engine: "nvme-raw".into(),
            workload: w.into(),
            ops_per_sec: iops,
            p50_us: p50,
            ..Row::default()
        };
        let extra = |sys: &str, t: u64| Extra { system: sys.into(), timer_ticks: Some(t), ..Extra::default() };
        let rounds = vec![
            (vec![row("exo", "a", 300.0, 1.0)], vec![extra("exo", 1)]),
            (vec![row("linux-guest", "a", 50.0, 9.0)], vec![extra("linux-guest", 9)]),
            (vec![row("exo", "a", 100.0, 2.0)], vec![extra("exo", 2)]),
            (vec![row("linux-guest", "a", 70.0, 8.0)], vec![extra("linux-guest", 8)]),
            (vec![row("exo", "a", 200.0, 3.0)], vec![extra("exo", 3)]),
        ];
        let ((rows, extras), iops) = pick_median(&rounds);
        assert_eq!(
            rows.iter().map(|r| (r.system.as_str(), r.ops_per_sec, r.p50_us)).collect::<Vec<_>>(),
            vec![("exo", 200.0, 3.0), ("linux-guest", 50.0, 9.0)]
        );
        assert_eq!(
            extras.iter().map(|e| e.timer_ticks).collect::<Vec<_>>(),
            vec![Some(3), Some(9)],
            "counts come from the same round"
        );
        assert_eq!(iops[&("exo".to_string(), "a".to_string())], vec![100.0, 200.0, 300.0]);
    }

    #[test]
    fn doorbell_check_compares_driver_and_trace() {
        let lines = parse_exo(SERIAL).unwrap();
        let driver = 500 + 220 + 500 + 150;
        assert!(doorbell_check(&lines, driver).0);
        assert!(doorbell_check(&lines, driver + 1).0, "the final flush rings once more");
        assert!(!doorbell_check(&lines, driver - 1).0, "fewer traced than counted is a miscount");
        assert!(!doorbell_check(&lines, driver + 100).0);
        assert!(doorbell_check(&lines, driver).1.contains(&format!("driver counted {driver}")));
    }

    #[test]
    fn tickless_loops_report_the_io_paths_crossings() {
        let lines = parse_exo(SERIAL).unwrap();
        let t = tickless(&lines);
        assert_eq!(t.len(), 4);
        assert!(t[0].starts_with("n/a") && t[0].contains("7 timer ticks"), "{}", t[0]);
        assert!(t[3].starts_with("MET") && t[3].contains("0 kernel crossings"), "{}", t[3]);
        let mut odd = lines[3].clone();
        odd.syscalls = 1;
        assert!(tickless(&[odd])[0].starts_with("SHORT"), "a crossing without a tick is the I/O path's");
    }
}
