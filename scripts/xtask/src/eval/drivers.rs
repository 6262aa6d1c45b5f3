//! `cargo xtask eval --drivers [--quick]`: the userspace NVMe driver on the
//! exokernel against Linux's in-kernel NVMe driver, 4 KiB random reads and
//! writes at queue depth 1 and 32 on the raw namespace, both on the
//! standard machine (scripts/xtask/src/machine.rs) under TCG, in one run.
//! This file boots the machines; `eval::drivers` reads what they printed
//! and writes the report (eval/DRIVERS.md explains the method).
//!
//! * exo: one boot of `test=nvme_bench` (init hands the controller to
//!   `nvmed bench`, which prints one `EXO-BENCH` line per workload).
//! * linux-guest: Debian's kernel with a busybox initramfs
//!   (`drivers/guest-init`), `eval-bench raw` on /dev/nvme0n1 with
//!   O_DIRECT (QD1: pread/pwrite; QD32: io_uring), through the Linux
//!   session code of `eval --linux` (READY/DONE handshakes with host-side
//!   snapshots of the QEMU trace).
//!
//! Both systems trace the same QEMU events (NVMe I/O commands) and start
//! from an NVMe image whose first 128 MiB (the span both benchmarks use)
//! are allocated in the host file.

use super::linux::{guest, session};
use crate::build;
use crate::machine::{self, Machine};
use crate::outcome::Expect;
use crate::runner::{self, RunOptions};
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};
use eval::drivers::*;
use eval::linux::{plan::Run, qtrace, RunOutcome};
use eval_lines::BenchLine;
use session::{PassKind, PassSetup};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// A fresh images directory whose NVMe image has the benchmark span
/// allocated (written with zeros), so reads hit data, not holes.
pub(super) fn fresh_images(dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let path = dir.join(machine::NVME_IMAGE.file);
    let mut f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
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
) -> Result<(Vec<BenchLine>, qtrace::NvmeCounts, f64)> {
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
    for ev in if doorbells { qtrace::DOORBELL_EVENTS } else { qtrace::EVENTS } {
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
        bail!("exokernel nvme_bench failed: {} (log {})", r.outcome, r.log_path.display());
    }
    let lines = parse_exo(&r.serial).with_context(|| format!("exokernel serial log {}", r.log_path.display()))?;
    let counts =
        qtrace::count(&std::fs::read_to_string(&trace).with_context(|| format!("reading {}", trace.display()))?)?;
    Ok((lines, counts, r.elapsed.as_secs_f64()))
}

/// A Linux boot's rows, failures, guest environment and seconds.
pub(super) type LinuxOutcome = (Round, Vec<String>, Vec<(String, String)>, f64);

/// The Linux guest, ready to boot.
pub(super) struct LinuxGuest {
    /// vCPUs (`--smp`; 1 on the standard machine).
    pub cpus: u32,
    vmlinuz: std::path::PathBuf,
    initrd: std::path::PathBuf,
    columns: Vec<String>,
    runs: Vec<Run>,
    pairs: Vec<(usize, usize)>,
    pub versions: Vec<(String, String)>,
}

impl LinuxGuest {
    /// Measured runs (each with its `--ops 1` baseline).
    pub fn pairs_len(&self) -> usize {
        self.pairs.len()
    }
}

/// The guest with `runs` (`--drivers`': [`linux_runs`]) on `cpus` vCPUs.
pub(super) fn prepare_linux(
    ws: &Workspace,
    work: &Path,
    (runs, pairs): (Vec<Run>, Vec<(usize, usize)>),
    cpus: u32,
) -> Result<LinuxGuest> {
    let mut g = guest::prepare(&ws.root, &ws.target_dir)?;
    guest::add_fio(&mut g)?;
    let header = crate::cmd::output(std::process::Command::new(&g.bench).arg("header"))
        .context("`eval-bench header` on the host")?;
    let columns: Vec<String> = header.trim().split(',').map(|s| s.trim().to_string()).collect();
    let init = work.join("guest-init");
    std::fs::write(&init, include_str!("drivers/guest-init"))?;
    g.init_script = init;
    // The stripped bench goes to our run dir, not the shared guest cache,
    // so a concurrent `eval --linux` never reads a half-written copy.
    g.cache = work.to_path_buf();
    let plan: String = runs.iter().map(|r| plan_line(r) + "\n").collect();
    let initrd = work.join("initramfs-drivers.cpio");
    guest::build_initramfs(&g, &plan, &initrd)?;
    Ok(LinuxGuest { cpus, vmlinuz: g.vmlinuz, initrd, columns, runs, pairs, versions: g.versions })
}

/// One boot of the Linux guest: its rows, failures, env and boot time.
/// The Linux doorbell counting pass (the session's `icount` pass: NVMe
/// ioeventfd off, `pci_nvme_mmio_doorbell_sq` traced; times nothing):
/// I/O-queue SQ doorbells per op for each workload.
fn linux_doorbells(lg: &LinuxGuest, work: &Path) -> Result<BTreeMap<(String, String), f64>> {
    let setup = PassSetup {
        kind: PassKind::Icount,
        kernel: &lg.vmlinuz,
        initrd: &lg.initrd,
        work_dir: work,
        rows: &lg.runs,
        timeout: Duration::from_secs(300 + 60 * lg.runs.len() as u64),
        cpus: lg.cpus,
        mttcg: true,
    };
    let pass = session::run_pass(&setup, &mut |_, _| {}).context("Linux doorbell counting pass")?;
    let mut out = BTreeMap::new();
    for &(b, m) in &lg.pairs {
        let (ob, om) = (&pass.rows[b], &pass.rows[m]);
        if let (None, None, Some(x), Some(y)) = (&ob.fail, &om.fail, om.nvme_sq_doorbells, ob.nvme_sq_doorbells) {
            if let Some(v) = per_op(x, y, lg.runs[m].ops) {
                out.insert((lg.runs[m].engine.clone(), lg.runs[m].workload.clone()), v);
            }
        }
    }
    Ok(out)
}

pub(super) fn linux_pass(lg: &LinuxGuest, work: &Path) -> Result<LinuxOutcome> {
    let runs = &lg.runs;
    let setup = PassSetup {
        kind: PassKind::Counters,
        kernel: &lg.vmlinuz,
        initrd: &lg.initrd,
        work_dir: work,
        rows: runs,
        timeout: Duration::from_secs(300 + 60 * runs.len() as u64),
        cpus: lg.cpus,
        mttcg: true,
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
    Ok(((rows, extras), failures, pass.env, pass.elapsed.as_secs_f64()))
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
    let n_rounds = super::rounds_override()?.unwrap_or(ROUNDS);
    println!(
        "eval --drivers{}: {qd1} ops at QD1, {qd32} at QD32; {n_rounds} rounds of (exo boot, linux-guest boot)",
        if quick { " --quick" } else { "" }
    );
    let arts = build::build_all(&ws)?;
    let lg = prepare_linux(&ws, &work, linux_runs(quick), 1)?;
    let exo_append = if quick { "test=nvme_bench quick" } else { "test=nvme_bench" };

    let (mut rounds, mut failures, mut guest_env) = (vec![], vec![], vec![]);
    let (mut exo_secs, mut linux_secs) = (vec![], vec![]);
    let mut exo_trace = qtrace::NvmeCounts::default();
    for round in 1..=n_rounds {
        println!("-- round {round}/{n_rounds}: exo (test=nvme_bench)");
        let (lines, trace, secs) = exo_pass(&arts, &work, exo_append, false, "drivers-exo")?;
        for l in &lines {
            println!("  exo   {:<15} {:>8.0} IOPS  p50 {:>8} us  p99 {:>8} us", l.workload, l.iops, l.p50_us, l.p99_us);
        }
        exo_trace = trace;
        exo_secs.push(secs);
        rounds.push(exo_rows(&lines, &trace));
        println!("-- round {round}/{n_rounds}: linux-guest ({} runs incl. --ops 1 baselines)", lg.runs.len());
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
    let (db_lines, db_trace, _) = exo_pass(&arts, &work, exo_append, true, "drivers-exo-doorbells")?;
    let check = doorbell_check(&db_lines, db_trace.io_sq_doorbells);
    println!("  {} {}", if check.0 { "PASS" } else { "FAIL" }, check.1);
    let linux_db = linux_doorbells(&lg, &work)?;
    println!("-- exo: short loops (bench_ops={SHORT_LOOP_OPS}), to catch loops no timer tick falls into");
    let mut short = vec![];
    for boot in 1..=SHORT_LOOP_BOOTS {
        let (short_lines, _, _) =
            exo_pass(&arts, &work, &format!("test=nvme_bench bench_ops={SHORT_LOOP_OPS}"), false, "drivers-exo-short")?;
        short.extend(tickless(&short_lines).into_iter().map(|l| format!("boot {boot}: {l}")));
    }
    for l in &short {
        println!("  {l}");
    }
    for x in extras.iter_mut().filter(|x| x.system == "linux-guest") {
        x.sq_doorbells_per_op = linux_db.get(&(x.engine.clone(), x.workload.clone())).copied();
    }

    let out = ws.root.join("eval/results/latest");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("drivers.csv"), eval::results::write_csv(&rows))?;
    std::fs::write(out.join("drivers-counters.csv"), extra_csv(&extras))?;
    let plot = write_plot(&out, &rows).map_err(|e| println!("plot not written: {e}")).ok();
    let secs = |v: &[f64]| v.iter().map(|s| format!("{s:.0}")).collect::<Vec<_>>().join(", ");
    let mut env = vec![
        ("qemu".to_string(), crate::cmd::output(std::process::Command::new(machine::QEMU).arg("--version"))?.lines().next().unwrap_or("").to_string()),
        ("machine".into(), "the standard machine (scripts/xtask/src/machine.rs), TCG, 1 vCPU, NVMe ioeventfd=on; QEMU traces pci_nvme_io_cmd and pci_nvme_write in both boots".into()),
        ("ops".into(), format!("{qd1} per QD1 workload, {qd32} per QD32 workload (both systems); {n_rounds} rounds, median-IOPS round reported")),
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
    env.push(("total run time".into(), format!("{:.0} s", started.elapsed().as_secs_f64())));
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
    let md = summary(&rows, &extras, &all_iops, &notes, &failures, plot.as_deref(), &env);
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
