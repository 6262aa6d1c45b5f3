//! `cargo xtask eval --drivers --smp 2 [--quick]`: QD1 through the block
//! service with the driver polling on a core of its own, against Linux's
//! QD1 rows, both systems on 2 vCPUs under multi-threaded TCG, in one run
//! (`eval::drivers_smp` makes the rows; eval/DRIVERS.md explains).
//!
//! Per round: two exokernel boots on the `smp-2-mttcg` machine,
//! `test=qd1poll_own_core` (client on CPU 0, `nvmed serve poll` pinned to
//! CPU 1) and `test=qd1poll_shared_core` (both on CPU 0, yielding), then
//! one boot of `--drivers`' Linux guest with `-smp 2` running its QD1
//! rows (`eval-bench raw`, fio io_uring / io_uring hipri / libaio).
//! `EVAL_ROUNDS=N` sets the rounds (default `eval::drivers::ROUNDS`).

use super::drivers::{fresh_images, linux_pass, prepare_linux};
use crate::build;
use crate::machine::{Hardware, Machine};
use crate::outcome::Expect;
use crate::runner::{self, RunOptions};
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};
use eval::drivers::{op_counts, ROUNDS};
use eval::drivers_smp::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// One exokernel boot of `scenario` on the 2-CPU machine: its rows.
fn exo_pass(
    arts: &build::Artifacts,
    work: &Path,
    cpus: u32,
    (scenario, placement): (&str, &str),
    ops: u64,
) -> Result<(eval::drivers::Round, f64)> {
    let images = work.join("images-exo");
    fresh_images(&images)?;
    let m = Machine::new(&images)
        .kernel(&arts.kernel)
        .initrd(&arts.boot_image)
        .append(format!("test={scenario} qd1poll_ops={ops}"))
        .hardware(Hardware::smp_mttcg(cpus));
    let opts = RunOptions {
        name: format!("drivers-smp-{scenario}"),
        log_dir: work.to_path_buf(),
        timeout: Some(Duration::from_secs(1200)),
        echo: false,
        interactive: false,
    };
    let r = runner::run(m.command()?, &opts, Expect::PassLine(scenario))?;
    if !r.outcome.passed() {
        bail!("exokernel {scenario} failed: {} (log {})", r.outcome, r.log_path.display());
    }
    let (lines, driver) =
        parse_exo(&r.serial, placement).with_context(|| format!("exokernel serial log {}", r.log_path.display()))?;
    Ok((exo_rows(&lines, &driver), r.elapsed.as_secs_f64()))
}

pub fn run(quick: bool, cpus: u32) -> Result<()> {
    if cpus != 2 {
        bail!("--smp {cpus}: only --smp 2 is built (the client on CPU 0, the driver on CPU 1)");
    }
    crate::setup::ensure_all()?;
    let ws = Workspace::load()?;
    let started = Instant::now();
    let work = ws.root.join(".cache/drivers-smp-run");
    std::fs::create_dir_all(&work)?;
    let _lock = crate::machine::lock_images(&work)?;
    let (qd1, _) = op_counts(quick);
    let n_rounds = super::rounds_override()?.unwrap_or(ROUNDS);
    let load = super::host_load();
    println!(
        "eval --drivers --smp {cpus}{}: {qd1} ops per QD1 workload; {n_rounds} rounds of (exo own-core, exo shared-core, exo own-sleep, linux-guest); host load {}",
        if quick { " --quick" } else { "" },
        load
    );
    let arts = build::build_all(&ws)?;
    let lg = prepare_linux(&ws, &work, linux_runs_qd1(quick), cpus)?;
    let (mut rounds, mut failures, mut guest_env, mut secs) = (vec![], vec![], vec![], vec![]);
    for round in 1..=n_rounds {
        for sc in SCENARIOS {
            println!("-- round {round}/{n_rounds}: exo (test={})", sc.0);
            let (r, s) = exo_pass(&arts, &work, cpus, sc, qd1)?;
            for row in &r.0 {
                println!(
                    "  exo   {:<19} {:<14} {:>8.0} IOPS  p50 {:>8} us  p99 {:>8} us  client syscalls/op {}",
                    row.engine,
                    row.workload,
                    row.ops_per_sec,
                    row.p50_us,
                    row.p99_us,
                    row.syscalls_per_op.unwrap_or(f64::NAN)
                );
            }
            secs.push(format!("{}: {s:.0} s", sc.0));
            rounds.push(r);
        }
        println!(
            "-- round {round}/{n_rounds}: linux-guest, -smp {cpus} ({} runs incl. --ops 1 baselines)",
            lg.pairs_len()
        );
        let (r, f, env, s) = linux_pass(&lg, &work)?;
        for row in &r.0 {
            println!(
                "  linux {:<19} {:<14} {:>8.0} IOPS  p50 {:>8} us  p99 {:>8} us",
                row.engine, row.workload, row.ops_per_sec, row.p50_us, row.p99_us
            );
        }
        failures.extend(f.into_iter().map(|f| format!("round {round}: {f}")));
        guest_env = env;
        secs.push(format!("linux: {s:.0} s"));
        rounds.push(r);
    }
    let mut env = vec![
        (
            "qemu".to_string(),
            crate::cmd::output(std::process::Command::new(crate::machine::QEMU).arg("--version"))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        ("machine".into(), format!("the standard machine with -smp {cpus} under multi-threaded TCG (smp-{cpus}-mttcg), both systems; NVMe ioeventfd=on")),
        ("ops".into(), format!("{qd1} per QD1 workload (both systems); {n_rounds} rounds")),
        ("host cpus".into(), std::thread::available_parallelism().map_or(0, |n| n.get()).to_string()),
        ("host load at start (1/5/15 min)".into(), load.clone()),
        ("boots".into(), secs.join(", ")),
    ];
    for (k, v) in &lg.versions {
        env.push((format!("package {k}"), v.clone()));
    }
    for (k, v) in &guest_env {
        env.push((format!("guest {k}"), v.clone()));
    }
    env.push(("total run time".into(), format!("{:.0} s", started.elapsed().as_secs_f64())));
    let md = summary(&rounds, &failures, &env);
    let out = ws.root.join("eval/results/latest");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("drivers-smp2.md"), &md)?;
    let ((rows, _), _) = eval::drivers::pick_median(&rounds);
    std::fs::write(out.join("drivers-smp2.csv"), eval::results::write_csv(&rows))?;
    println!("\n{}", verdicts(&rows).join("\n"));
    for f in &failures {
        println!("  FAILED {f}");
    }
    println!("wrote {} and drivers-smp2.csv; logs in {}", out.join("drivers-smp2.md").display(), work.display());
    if !failures.is_empty() {
        bail!("{} Linux rows failed", failures.len());
    }
    Ok(())
}
