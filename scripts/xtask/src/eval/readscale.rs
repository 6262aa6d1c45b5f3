//! `cargo xtask eval --readscale [--quick]`: libdb readrandom on one and
//! two cores (issue #13; eval/DB.md, "readrandom on two cores"). Boots the
//! `smp_readrandom` scenario with a bigger size (`readrandom=<keys>,<ops>,
//! <rounds>`): per round a reader on CPU 0 alone, one on CPU 1 alone, then
//! both at once, on the 2-CPU machine under multi-threaded TCG (the CPUs
//! really run at once: the ratio); then one boot on the 2-CPU round-robin
//! machine under `-icount shift=0` with only the one-core runs (CPU 1
//! halted in the kernel; the round-robin machine counts every CPU's
//! instructions on one clock, and its two-reader runs did not finish in
//! 4 minutes on the loaded host: left for later). What the lines mean is
//! `eval_lines::readscale`'s. Writes eval/results/latest/readscale.{csv,md}.

use crate::build;
use crate::machine::{self, Hardware, Machine};
use crate::outcome::Expect;
use crate::runner::{self, RunOptions};
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};
use eval_lines::readscale::{layout, median, runs_of, ReadScaleLine};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// (keys, gets per reader, rounds) of the timed boot and of the icount boot.
fn sizes(quick: bool) -> ((u64, u64, u64), (u64, u64, u64)) {
    if quick {
        ((20_000, 50_000, 1), (20_000, 5_000, 1))
    } else {
        ((50_000, 100_000, 3), (50_000, 20_000, 1))
    }
}

fn boot(arts: &build::Artifacts, work: &Path, icount: bool, size: (u64, u64, u64)) -> Result<String> {
    let images = work.join(if icount { "images-icount" } else { "images" });
    let _ = std::fs::remove_dir_all(&images);
    machine::ensure_images(&images)?;
    let hw = if icount { Hardware { cpus: 2, ..Hardware::STANDARD } } else { Hardware::smp_mttcg(2) };
    let m = Machine::new(&images)
        .kernel(&arts.kernel)
        .initrd(&arts.boot_image)
        .append(format!(
            "test=smp_readrandom readrandom={},{},{}{}",
            size.0,
            size.1,
            size.2,
            if icount { " readrandom_one_core" } else { "" }
        ))
        .hardware(hw)
        .icount(icount);
    let name = if icount { "readscale-icount" } else { "readscale-mttcg" };
    let opts = RunOptions {
        name: name.into(),
        log_dir: work.to_path_buf(),
        timeout: Some(Duration::from_secs(1800)),
        echo: false,
        interactive: false,
    };
    let r = runner::run(m.command()?, &opts, Expect::PassLine("smp_readrandom"))?;
    if !r.outcome.passed() {
        bail!("smp_readrandom ({name}) failed: {} (log {})", r.outcome, r.log_path.display());
    }
    println!("-- {name}: {:.1} s (log {})", r.elapsed.as_secs_f64(), r.log_path.display());
    Ok(r.serial)
}

/// Guest instructions per get under `-icount shift=0` (1 instruction per
/// ns): the run's span in ns over its gets.
fn instructions_per_op(t: &ReadScaleLine) -> f64 {
    t.span_tsc as f64 * 1000.0 / t.tsc_per_us.max(1) as f64 / t.ops.max(1) as f64
}

pub fn run(quick: bool) -> Result<()> {
    crate::setup::ensure_all()?;
    let ws = Workspace::load()?;
    let load = super::host_load();
    let arts = build::build_all(&ws)?;
    let work = ws.root.join(".cache/readscale-run");
    std::fs::create_dir_all(&work)?;
    let (mut timed, counted) = sizes(quick);
    if let Some(n) = super::rounds_override()? {
        // testinit's `readrandom=` takes at most 4 rounds per boot.
        if n > 4 {
            anyhow::bail!("EVAL_ROUNDS={n}: `--readscale` runs at most 4 rounds in its one boot");
        }
        timed.2 = n as u64;
    }
    println!("eval --readscale: smp-2-mttcg readrandom={timed:?}, then smp-2 -icount readrandom={counted:?}; host load {load}");
    let serial = boot(&arts, &work, false, timed)?;
    let runs = runs_of(&serial).map_err(anyhow::Error::msg).context("the timed boot's lines")?;
    let serial_i = boot(&arts, &work, true, counted)?;
    let runs_i = runs_of(&serial_i).map_err(anyhow::Error::msg).context("the icount boot's lines")?;

    let mut csv = String::from(
        "machine,layout,readers,keys,ops,ops_per_sec,sum_ops_per_sec,syscalls_per_op,faults_per_op,storage_reads_per_op,tsc_per_op,instructions_per_op\n",
    );
    for (machine, rs) in [("smp-2-mttcg", &runs), ("smp-2-icount", &runs_i)] {
        for (readers, t) in rs.iter() {
            let instr = if machine == "smp-2-icount" { format!("{:.0}", instructions_per_op(t)) } else { "-".into() };
            writeln!(
                csv,
                "{machine},{},{},{},{},{:.1},{:.1},{:.4},{:.4},{:.4},{:.1},{instr}",
                layout(readers),
                t.readers,
                t.keys,
                t.ops,
                t.ops_per_sec,
                t.sum_ops_per_sec,
                t.syscalls_per_op,
                t.faults_per_op,
                t.storage_reads_per_op,
                t.tsc_per_op
            )?;
        }
    }
    let med =
        |rs: &[(Vec<eval_lines::readscale::ReaderLine>, ReadScaleLine)], l: &str, f: &dyn Fn(&ReadScaleLine) -> f64| {
            median(&rs.iter().filter(|(r, _)| layout(r) == l).map(|(_, t)| f(t)).collect::<Vec<_>>())
        };
    let rate = |t: &ReadScaleLine| t.ops_per_sec;
    let (one0, one1, two) = (med(&runs, "cpu0", &rate), med(&runs, "cpu1", &rate), med(&runs, "cpu0+cpu1", &rate));
    let ratio = match (one0, two) {
        (Some(a), Some(b)) if a > 0.0 => b / a,
        _ => bail!("the timed boot printed no cpu0 or no cpu0+cpu1 run"),
    };
    let instr = |l: &str| med(&runs_i, l, &instructions_per_op).map_or("-".into(), |v| format!("{v:.0}"));
    let syscalls: f64 = runs.iter().map(|(_, t)| t.syscalls_per_op).fold(0.0, f64::max);
    let faults: f64 = runs.iter().map(|(_, t)| t.faults_per_op).fold(0.0, f64::max);
    let mut md = String::new();
    writeln!(
        md,
        "# readrandom on one and two cores (`cargo xtask eval --readscale{}`)\n",
        if quick { " --quick" } else { "" }
    )?;
    writeln!(
        md,
        "libdb readrandom on the NVDIMM, one `kvdb` reader process per core on read-only shares of one database \
         ({} keys of 100 bytes, {} gets per reader per run, {} round(s); every value checked). Host load at start: {load}.\n",
        timed.0, timed.1, timed.2
    )?;
    writeln!(md, "| readers | gets/s (median, smp-2-mttcg) | machine instructions per get (smp-2 -icount) |")?;
    writeln!(md, "|---|---|---|")?;
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    writeln!(md, "| 1, on CPU 0 (CPU 1 halted in the kernel) | {} | {} |", f(one0), instr("cpu0"))?;
    writeln!(
        md,
        "| 1, on CPU 0 (CPU 1 spinning in init's idle scheduler loop) | {} | - |",
        f(med(&runs, "cpu0-cpu1-spinning", &rate))
    )?;
    writeln!(md, "| 1, on CPU 1 (CPU 0: init main waiting) | {} | - |", f(one1))?;
    writeln!(md, "| 2, on CPUs 0 and 1 at once | {} | - |", f(two))?;
    writeln!(
        md,
        "\n**Ratio 2 cores / 1 core (CPU 0, CPU 1 halted): {ratio:.2}** (target ≥ 1.8). Most system calls per get in any run: \
         {syscalls:.4}; faults per get: {faults:.4}.\n\nEvery run: `eval/results/latest/readscale.csv`. Times are \
         TCG times on a shared host: rerun on an idle one for the ratio that counts."
    )?;
    let out = ws.root.join("eval/results/latest");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("readscale.csv"), &csv)?;
    std::fs::write(out.join("readscale.md"), &md)?;
    print!("{md}");
    Ok(())
}
