//! `cargo xtask eval --linux [--quick]`: the Linux baseline. Boots Debian's
//! kernel with a busybox initramfs on the standard machine (TCG), runs the
//! benchmark rows on ext4 (NVMe) and ext4-DAX (NVDIMM), and writes
//! `eval/results/latest/linux.{csv,md}` and `linux-env.txt`.
//!
//! Two passes run the same plan: a counters pass (wall-clock timing,
//! syscalls via ftrace, NVMe commands via QEMU trace events and QMP
//! `query-blockstats`) and an icount pass (`-icount shift=0`, where a
//! task's runtime in virtual ns is its instruction count). eval/LINUX.md
//! explains each counter and its limits.

mod cpio;
mod guest;
mod hist;
mod modules;
mod plan;
mod qmp;
mod qtrace;
mod report;
mod serial;
mod session;

use crate::workspace::Workspace;
use anyhow::{Context, Result};
use session::{PassKind, PassResult, PassSetup, RowOutcome};
use std::time::{Duration, Instant};

pub fn run(quick: bool) -> Result<()> {
    crate::setup::ensure_qemu()?;
    let ws = Workspace::load()?;
    let rows = if quick { plan::quick() } else { plan::full() };
    println!("eval --linux: {} rows{}, two passes (counters, icount)", rows.len(), if quick { " (--quick)" } else { "" });
    let g = guest::prepare(&ws.root, &ws.target_dir)?;
    let header = crate::cmd::output(std::process::Command::new(&g.bench).arg("header"))
        .context("`eval-bench header` on the host")?;
    let work = g.cache.join("run");
    std::fs::create_dir_all(&work)?;
    let plan_text: String = rows.iter().map(|r| r.plan_line() + "\n").collect();
    let initrd = work.join("initramfs.cpio");
    guest::build_initramfs(&g, &plan_text, &initrd)?;

    // Per row: a generous bound for TCG, plus boot and mkfs.
    let timeout = Duration::from_secs(120 + 60 * rows.len() as u64);
    let started = Instant::now();
    let mut passes: Vec<PassResult> = vec![];
    for kind in [PassKind::Counters, PassKind::Icount] {
        let setup = PassSetup { kind, kernel: &g.vmlinuz, initrd: &initrd, work_dir: &work, rows: &rows, timeout };
        let n = rows.len();
        let t0 = Instant::now();
        println!("-- pass `{}`: booting {}", kind.name(), g.vmlinuz.display());
        let mut progress = |k: usize, r: &RowOutcome| {
            let done = k + 1;
            let el = t0.elapsed().as_secs_f64();
            let eta = el / done as f64 * (n - done) as f64;
            let what = match (&r.csv, &r.fail) {
                (Some(_), _) => format!("ok, {} syscalls", r.syscalls.unwrap_or(0)),
                (None, Some(f)) => format!("FAILED: {f}"),
                _ => "?".into(),
            };
            println!("[{}] {done:>3}/{n} {:<48} {what}  ({el:.0}s, ~{eta:.0}s left)", kind.name(), rows[k].label());
        };
        let res = session::run_pass(&setup, &mut progress)
            .with_context(|| format!("pass `{}`", kind.name()))?;
        println!("-- pass `{}` done in {:.0}s (serial log {})", kind.name(), res.elapsed.as_secs_f64(), res.serial_log.display());
        passes.push(res);
    }
    let (counters, icount) = (&passes[0], &passes[1]);
    let mut out_rows = vec![];
    for (i, p) in rows.iter().enumerate() {
        out_rows.push(report::make_row(p, &header, &counters.rows[i], icount.rows.get(i))?);
    }
    let checks = report::sanity(&out_rows);
    let env = environment(&g, counters, started.elapsed())?;

    let out = ws.root.join("eval/results/latest");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("linux.csv"), report::to_csv(&out_rows))?;
    std::fs::write(out.join("linux.md"), report::markdown(&out_rows, &env, &checks))?;
    let env_txt: String = env.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    std::fs::write(out.join("linux-env.txt"), env_txt)?;
    println!("\nSanity checks:");
    for (ok, line) in &checks {
        println!("  {} {line}", if *ok { "PASS" } else { "FAIL" });
    }
    let failed = out_rows.iter().filter(|r| r[report::COLUMNS.len() - 1].starts_with("FAILED")).count();
    println!(
        "wrote {} ({} rows, {failed} failed), linux.md, linux-env.txt; raw logs in {}",
        out.join("linux.csv").display(),
        out_rows.len(),
        work.display()
    );
    Ok(())
}

fn environment(g: &guest::GuestFiles, counters: &PassResult, elapsed: Duration) -> Result<Vec<(String, String)>> {
    let qemu = crate::cmd::output(std::process::Command::new(crate::machine::QEMU).arg("--version"))?;
    let mut env = vec![
        ("qemu".to_string(), qemu.lines().next().unwrap_or("").to_string()),
        ("accelerator".into(), "tcg (-cpu max), 1 vCPU, 512 MiB; icount pass: -icount shift=0".into()),
        ("machine".into(), "the standard machine (scripts/xtask/src/machine.rs)".into()),
    ];
    for (k, v) in &g.versions {
        env.push((format!("package {k}"), v.clone()));
    }
    for (k, v) in &counters.env {
        env.push((format!("guest {k}"), v.clone()));
    }
    env.push(("host cpus".into(), std::thread::available_parallelism().map_or(0, |n| n.get()).to_string()));
    env.push(("run time".into(), format!("{:.0} s for both passes", elapsed.as_secs_f64())));
    Ok(env)
}
