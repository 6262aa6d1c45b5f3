//! `cargo xtask eval --fs [--quick]`: libfs linked into an application on
//! the exokernel (`fsbench`, scenario `fsbench_eval`: NVDIMM pages and NVMe
//! through the block service) beside Linux (ext4-DAX on the NVDIMM, ext4
//! on NVMe, `eval-bench run --engine fs`) on the same emulated machine, in
//! the same run. This file boots the machines; what their output means is
//! `eval::fs`'s (and eval/FS.md's).
//!
//! Per round (1 with `--quick`, else 3): one timed exo boot on fresh
//! images, tracing QEMU's NVMe command events (the same events the Linux
//! counters pass traces), then the `eval --linux` measuring code over
//! [`eval::fs::linux_runs`]. Then as many exo boots under `-icount
//! shift=0` for instructions (images in /dev/shm, as `eval --db`'s).
//! Writes eval/results/latest/fs.{csv,md} and fs-*.svg.

use super::linux;
use crate::build;
use crate::machine::{self, Machine};
use crate::outcome::Expect;
use crate::runner::{self, RunOptions};
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};
use eval::fs::*;
use eval::linux::qtrace;
use eval::results::{format_number, Row};
use eval_lines::FsLine;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// One `fsbench_eval` boot on fresh images: its lines, the NVMe trace of
/// the whole boot (timed boots) and its seconds.
fn exo_boot(
    arts: &build::Artifacts,
    work: &Path,
    images: &Path,
    icount: bool,
    name: &str,
) -> Result<(Vec<FsLine>, Option<qtrace::NvmeCounts>, f64)> {
    let _ = std::fs::remove_dir_all(images);
    machine::ensure_images(images)?;
    let trace = work.join(format!("{name}.qemu-trace.log"));
    let _ = std::fs::remove_file(&trace);
    let mut m = Machine::new(images)
        .kernel(&arts.kernel)
        .initrd(&arts.boot_image)
        .append(super::exo_cmdline(format!("test={EXO_SCENARIO}"), icount))
        .icount(icount);
    if !icount {
        m = m.trace_file(&trace);
        for ev in qtrace::EVENTS {
            m = m.trace(*ev);
        }
    }
    let opts = RunOptions {
        name: name.into(),
        log_dir: work.to_path_buf(),
        timeout: Some(Duration::from_secs(900)),
        echo: false,
        interactive: false,
    };
    let r = runner::run(m.command()?, &opts, Expect::PassLine(EXO_SCENARIO))?;
    if !r.outcome.passed() {
        bail!("exokernel {EXO_SCENARIO} failed: {} (log {})", r.outcome, r.log_path.display());
    }
    let lines = parse_boot(&r.serial).with_context(|| format!("exokernel serial log {}", r.log_path.display()))?;
    let counts = if icount {
        None
    } else {
        Some(qtrace::count(&std::fs::read_to_string(&trace).with_context(|| format!("reading {}", trace.display()))?)?)
    };
    Ok((lines, counts, r.elapsed.as_secs_f64()))
}

/// A directory removed when this goes out of scope.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type RateKey = (String, String, String);

pub fn run(quick: bool) -> Result<()> {
    crate::setup::ensure_all()?;
    let ws = Workspace::load()?;
    let started = Instant::now();
    let load_at_start = super::host_load();
    let work = ws.root.join(".cache/fs-run");
    std::fs::create_dir_all(&work)?;
    let n_rounds = rounds(quick);
    println!(
        "eval --fs{}: {n_rounds} round(s) of (exo: one {EXO_SCENARIO} boot, both media; linux-guest: 5 workloads x 2 media), then {n_rounds} exo icount boot(s)",
        if quick { " --quick" } else { "" }
    );
    let arts = build::build_all(&ws)?;

    let mut rounds: Vec<(Vec<Row>, Vec<Option<FsLine>>)> = vec![];
    let (mut checks, mut failures, mut linux_env, mut secs) = (vec![], vec![], vec![], vec![]);
    for round in 1..=n_rounds {
        {
            let _lock = machine::lock_images(&work)?;
            println!("-- round {round}/{n_rounds}: exo (test={EXO_SCENARIO})");
            let (lines, trace, t) = exo_boot(&arts, &work, &work.join("images-exo"), false, "fs-exo")?;
            secs.push(format!("exo {t:.0} s"));
            for l in &lines {
                println!(
                    "  exo {:<4} {:<14} {:>9.0} ops/s  p50 {:>8} us  own crossings/op {}  device bytes/op {}",
                    l.medium,
                    l.workload,
                    l.ops_per_sec,
                    format_number(l.p50_us),
                    format_number(l.app_syscalls_per_op + l.app_upcalls_per_op),
                    l.device_bytes_written_per_op.map_or("-".into(), format_number)
                );
            }
            if let Some(t) = &trace {
                let c = device_check(&lines, t);
                println!("  {} {}", if c.0 { "PASS" } else { "FAIL" }, c.1);
                checks.push((c.0, format!("round {round}, exo NVMe: {}", c.1)));
            }
            rounds.push((lines.iter().map(|l| exo_row(l, None)).collect(), lines.into_iter().map(Some).collect()));
        }
        let (runs, pairs) = linux_runs();
        let lm = linux::measure_runs(&ws, runs, pairs, &format!("-- round {round}/{n_rounds}: linux-guest"), "run-fs")?;
        lm.print_checks();
        checks.extend(lm.checks.iter().map(|(ok, c)| (*ok, format!("round {round}, linux: {c}"))));
        failures.extend(lm.failures.iter().map(|f| format!("round {round}: {f}")));
        secs.push(format!("linux {:.0} s", lm.counters.elapsed.as_secs_f64() + lm.icount.elapsed.as_secs_f64()));
        linux_env = lm.env.clone();
        let n = lm.rows.len();
        rounds.push((lm.rows.into_iter().map(linux_row).collect(), vec![None; n]));
    }
    let ((mut rows, extras), rates) =
        eval::rounds::pick_median(&rounds, |r: &Row| (r.system.clone(), r.medium.clone(), r.workload.clone()));
    let lines: Vec<FsLine> = extras.into_iter().flatten().collect();
    let rates: BTreeMap<RateKey, Vec<f64>> = rates;

    // Instructions: icount boots, median per (medium, workload).
    let shm = Path::new("/dev/shm");
    let icount_images = if shm.is_dir() {
        shm.join(format!("exo-fs-eval-icount-{}", std::process::id()))
    } else {
        work.join("images-exo-icount")
    };
    let _cleanup = RemoveOnDrop(icount_images.clone());
    let mut per_key: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    {
        let _lock = machine::lock_images(&work)?;
        for boot in 1..=n_rounds {
            println!("-- exo: boot {boot}/{n_rounds} under -icount shift=0 (instructions)");
            let (lines, _, t) = exo_boot(&arts, &work, &icount_images, true, "fs-exo-icount")?;
            secs.push(format!("exo icount {t:.0} s"));
            for (k, v) in instructions(&lines) {
                per_key.entry(k).or_default().push(v);
            }
        }
    }
    let mut icount_all = vec![];
    for r in rows.iter_mut().filter(|r| r.system == "exo") {
        if let Some(v) = per_key.get_mut(&(r.medium.clone(), r.workload.clone())) {
            v.sort_by(f64::total_cmp);
            r.guest_instructions_per_op = Some(v[(v.len() - 1) / 2]);
            icount_all.push(format!(
                "{} {}: {}",
                r.medium,
                r.workload,
                v.iter().map(|x| format_number(x.round())).collect::<Vec<_>>().join(", ")
            ));
        }
    }

    let mut env = vec![
        ("host load at start".to_string(), load_at_start),
        ("commit".to_string(), super::git_describe(&ws.root)),
        (
            "qemu".to_string(),
            crate::cmd::output(std::process::Command::new(machine::QEMU).arg("--version"))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        (
            "exo".into(),
            format!("{n_rounds} timed boot(s) of test={EXO_SCENARIO} on the standard machine (TCG, 1 vCPU, NVMe ioeventfd=on, QEMU tracing the NVMe command events), fresh images each; libfs on NVDIMM MiB 32..128 and on NVMe MiB 256..512 through nvmed serve; {OPS} ops per workload, seq-read {SEQ_MIB} MiB"),
        ),
        ("exo icount boots (instructions/op per boot)".into(), icount_all.join("; ")),
        ("exo icount images".into(), icount_images.display().to_string()),
        ("boots".into(), secs.join(", ")),
    ];
    env.extend(linux_env.iter().map(|(k, v)| (format!("linux (last round): {k}"), v.clone())));
    env.push(("total run time".into(), format!("{:.0} s", started.elapsed().as_secs_f64())));

    let out = ws.root.join("eval/results/latest");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("fs.csv"), eval::results::write_csv(&rows))?;
    let mut plots = vec![];
    for (file, title, unit, metric) in PLOTS {
        let panels = plot_panels(&rows, *metric);
        if panels.is_empty() {
            continue;
        }
        eval::plot::write_bar_chart_svg(&out.join(file), title, unit, &panels, 5).map_err(anyhow::Error::msg)?;
        plots.push(file.to_string());
    }
    std::fs::write(out.join("fs.md"), summary(&lines, &rows, &rates, &checks, &failures, &plots, &env))?;
    println!("\nTargets:");
    for v in verdicts(&lines, &rows) {
        let met = match v.met {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "NOT MEASURED",
        };
        println!("  {met:<12} {}: {}", v.target, v.measured);
    }
    println!(
        "wrote {} ({} rows), fs.md, {} plots; logs in {}",
        out.join("fs.csv").display(),
        rows.len(),
        plots.len(),
        work.display()
    );
    if checks.iter().any(|c| !c.0) {
        bail!("a check failed (see fs.md)");
    }
    Ok(())
}
