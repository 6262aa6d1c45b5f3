//! `cargo xtask eval --linux [--quick]`: the Linux baseline. Boots Debian's
//! kernel with a busybox initramfs on the standard machine (TCG), runs the
//! benchmark rows on ext4 (NVMe) and ext4-DAX (NVDIMM), and writes
//! `eval/results/latest/linux.{csv,md}`, `linux-counters.csv`, SVG plots
//! and `linux-env.txt`.
//!
//! Two passes run the same plan: a counters pass (wall-clock timing,
//! syscalls, NVMe commands via QEMU trace events, QMP `query-blockstats`)
//! and an icount pass (`-icount shift=0`, where a task's runtime in
//! virtual ns is its instruction count; it also counts NVMe submission
//! doorbells, with the NVMe ioeventfd off). This file and its modules
//! build the guest and boot it; `eval::linux` turns what the passes
//! collected into rows, checks and the report. eval/LINUX.md explains each
//! counter and its limits.

mod cpio;
pub(super) mod guest;
mod modules;
mod qmp;
pub(super) mod session;

use crate::workspace::Workspace;
use anyhow::{Context, Result};
use eval::linux::{plan, report, resume, summary, write_plots, RunOutcome};
use eval::results::Row;
use session::{PassKind, PassResult, PassSetup, PassStop};
use std::time::{Duration, Instant};

pub fn run(quick: bool, resume: bool) -> Result<()> {
    let ws = Workspace::load()?;
    if resume {
        return run_resumed(&ws);
    }
    let mut entries = if quick { plan::quick_entries() } else { plan::full_entries() };
    // Development aid (documented in eval/LINUX.md): override every row's op count.
    if let Some(n) = std::env::var("EVAL_LINUX_OPS").ok().and_then(|v| v.parse::<u64>().ok()) {
        entries.iter_mut().for_each(|e| e.ops = n.max(2));
    }
    // EVAL_BUDGET_SECS: stop starting rows when the time is up (eval/README.md).
    let deadline = super::budget_override()?.map(|b| Instant::now() + b);
    let title = format!("eval --linux{}", if quick { " --quick" } else { "" });
    let (runs, pairs) = plan::runs(&entries);
    let m = measure_runs_until(&ws, runs, pairs, &title, "run", deadline, 1)?;
    let out = ws.root.join("eval/results/latest");
    write_outputs(&out, &m)?;
    m.print_checks();
    println!(
        "wrote {} ({} rows, {} failures), linux.md, linux-counters.csv, plots, linux-env.txt; raw logs in {}",
        out.join("linux.csv").display(),
        m.rows.len(),
        m.failures.len(),
        m.work.display()
    );
    Ok(())
}

/// `eval --linux --resume`: the full matrix's pairs that no stored
/// segment has a row for, as a new segment, then the combined report
/// (`eval::linux::resume`; eval/LINUX.md, "The full matrix in segments").
fn run_resumed(ws: &Workspace) -> Result<()> {
    anyhow::ensure!(
        std::env::var_os("EVAL_LINUX_OPS").is_none(),
        "EVAL_LINUX_OPS changes every row's configuration, so its rows would never match the full matrix: unset it for --resume"
    );
    let dir = ws.root.join("eval/results/linux-matrix");
    let (runs, pairs) = plan::runs(&plan::full_entries());
    let mut segments = load_segments(&dir.join("segments"))?;
    let have: Vec<Row> = segments.iter().flat_map(|s| s.rows.iter().cloned()).collect();
    let todo = resume::missing(&runs, &pairs, &have);
    if !todo.is_empty() {
        let deadline = super::budget_override()?.map(|b| Instant::now() + b);
        let (sub_runs, sub_pairs) = resume::subset(&runs, &todo);
        let title = format!("eval --linux --resume ({} of {} rows still to measure)", todo.len(), pairs.len());
        let m = measure_runs_until(ws, sub_runs, sub_pairs, &title, "matrix", deadline, 1)?;
        let name =
            crate::cmd::output(std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H%MZ"]))?.trim().to_string();
        let out = dir.join("segments").join(&name);
        write_outputs(&out, &m)?;
        m.print_checks();
        println!("segment {name}: {} rows, {} failures", m.rows.len(), m.failures.len());
        segments.push(resume::Segment { name, rows: m.rows, env: m.env });
    }
    let combined: Vec<Row> =
        resume::combined_rows(&runs, &pairs, &segments).into_iter().map(|(r, _)| r.clone()).collect();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("linux.csv"), eval::results::write_csv(&combined))?;
    let mut md = String::from(
        "# The full `eval --linux` matrix, in segments\n\n`cargo xtask eval --linux --resume` (eval/LINUX.md, \"The full matrix in segments\"). Each segment's own report, raw counters and environment are in `segments/<name>/`.\n\n",
    );
    md.push_str(&resume::status_markdown(&runs, &pairs, &segments));
    let still = resume::missing(&runs, &pairs, &combined);
    if !still.is_empty() {
        md.push_str(&format!("\n## Not measured yet ({} rows)\n\n", still.len()));
        for l in eval::budget::not_run_summary(&runs, &still) {
            md.push_str(&format!("- {l}\n"));
        }
    }
    md.push_str("\n## Rows\n\n");
    md.push_str(&eval::results::markdown_table(&combined));
    std::fs::write(dir.join("linux.md"), md)?;
    println!("wrote {} ({} of {} rows measured)", dir.join("linux.md").display(), combined.len(), pairs.len());
    Ok(())
}

/// The stored segments, in name (= time) order.
fn load_segments(dir: &std::path::Path) -> Result<Vec<resume::Segment>> {
    let mut out = vec![];
    let Ok(list) = std::fs::read_dir(dir) else { return Ok(out) };
    let mut names: Vec<String> =
        list.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for name in names {
        let seg = dir.join(&name);
        let csv =
            std::fs::read_to_string(seg.join("linux.csv")).with_context(|| format!("segment {}", seg.display()))?;
        let rows =
            eval::results::read_csv(&csv).map_err(|e| anyhow::anyhow!("{}: {e}", seg.join("linux.csv").display()))?;
        let env = resume::parse_env(&std::fs::read_to_string(seg.join("linux-env.txt")).unwrap_or_default());
        out.push(resume::Segment { name, rows, env });
    }
    Ok(out)
}

/// The usual `linux.*` files of a measurement into `out`.
fn write_outputs(out: &std::path::Path, m: &Measured) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("linux.csv"), eval::results::write_csv(&m.rows))?;
    std::fs::write(out.join("linux-counters.csv"), report::counters_csv(&m.runs, &m.counters.rows, &m.icount.rows))?;
    let plots = write_plots(out, &m.rows)?;
    let pmem_table = report::pmem_pages_table(&m.pairs, &m.runs, &m.counters.rows);
    let table = report::append_column(&eval::results::markdown_table(&m.rows), "doorbells/op", &m.doorbells)?;
    let mut md = summary(&table, &pmem_table, &m.env, &m.checks, &m.failures, &plots);
    if !m.not_run.is_empty() {
        md.push_str(&format!(
            "\n## Not run: the time budget ran out (EVAL_BUDGET_SECS)\n\n{} of {} rows were not run (measured and baseline), by medium, value size, workload and durability:\n\n",
            m.not_run_pairs,
            m.pairs.len()
        ));
        for l in &m.not_run {
            md.push_str(&format!("- {l}\n"));
        }
    }
    std::fs::write(out.join("linux.md"), md)?;
    let env_txt: String = m.env.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    std::fs::write(out.join("linux-env.txt"), env_txt)?;
    Ok(())
}

/// What [`measure`] found: the result rows and everything behind them.
pub struct Measured {
    pub runs: Vec<plan::Run>,
    pub pairs: Vec<plan::Pair>,
    pub counters: PassResult,
    pub icount: PassResult,
    /// One row per pair that produced one (failed pairs are in `failures`).
    pub rows: Vec<Row>,
    /// Beside `rows` (same index): doorbells are not a `Row` column.
    pub doorbells: Vec<Option<f64>>,
    pub failures: Vec<String>,
    /// Rows the time budget left out ([`eval::budget::not_run_summary`]),
    /// and how many pairs that is.
    pub not_run: Vec<String>,
    pub not_run_pairs: usize,
    /// The sanity checks, as (passed, description).
    pub checks: Vec<(bool, String)>,
    pub env: Vec<(String, String)>,
    /// Where the raw serial and trace logs are.
    pub work: std::path::PathBuf,
}

impl Measured {
    pub fn print_checks(&self) {
        println!("\nSanity checks:");
        for (ok, line) in &self.checks {
            println!("  {} {line}", if *ok { "PASS" } else { "FAIL" });
        }
        for f in &self.failures {
            println!("  FAILED {f}");
        }
    }
}

/// Boot the Linux guest twice (counters pass, icount pass) over `entries`
/// on both media, with libdb also on the raw media (`eval --db`), and turn
/// the runs into rows. `title` starts the progress line; `work_name` names
/// the run directory under the guest cache (raw logs and images; runs
/// sharing one wait for each other).
pub fn measure_with_raw(
    ws: &Workspace,
    entries: &[eval::matrix::Entry],
    title: &str,
    work_name: &str,
    cpus: u32,
) -> Result<Measured> {
    let (runs, pairs) = plan::runs_with_raw(entries);
    measure_runs_until(ws, runs, pairs, title, work_name, None, cpus)
}

/// [`measure`] over a run list made elsewhere (`eval --fs`'s file-system
/// runs, `eval::fs::linux_runs`): the same passes, rows and checks.
pub fn measure_runs(
    ws: &Workspace,
    runs: Vec<plan::Run>,
    pairs: Vec<plan::Pair>,
    title: &str,
    work_name: &str,
) -> Result<Measured> {
    measure_runs_until(ws, runs, pairs, title, work_name, None, 1)
}

/// [`measure_runs`] with a deadline: the counters pass stops starting rows
/// when its share of the time left is gone, the icount pass runs no further
/// than the counters pass got (and stops at the deadline too); the pairs
/// not run are reported in `not_run`, not as failures.
pub fn measure_runs_until(
    ws: &Workspace,
    runs: Vec<plan::Run>,
    pairs: Vec<plan::Pair>,
    title: &str,
    work_name: &str,
    deadline: Option<Instant>,
    cpus: u32,
) -> Result<Measured> {
    crate::setup::ensure_qemu()?;
    println!(
        "{title}: {} rows ({} guest runs with their --ops 1 baselines), two passes (counters, icount)",
        pairs.len(),
        runs.len()
    );
    let g = guest::prepare(&ws.root, &ws.target_dir)?;
    let header = crate::cmd::output(std::process::Command::new(&g.bench).arg("header"))
        .context("`eval-bench header` on the host")?;
    let columns: Vec<String> = header.trim().split(',').map(|s| s.trim().to_string()).collect();
    let work = g.cache.join(work_name);
    // Two `eval --linux` in one checkout would share images and logs: wait instead.
    let _lock = crate::machine::lock_images(&work)?;
    let plan_text: String = runs.iter().map(|r| r.plan_line() + "\n").collect();
    let initrd = work.join("initramfs.cpio");
    guest::build_initramfs(&g, &plan_text, &initrd)?;

    // A generous bound per run under TCG, plus boot and mkfs.
    let timeout = Duration::from_secs(180 + 120 * runs.len() as u64);
    let started = Instant::now();
    let load_at_start = super::host_load();
    let mut passes: Vec<PassResult> = vec![];
    // Kept for writing the report after the icount pass.
    let margin = Duration::from_secs(120);
    for kind in [PassKind::Counters, PassKind::Icount] {
        let stop = match (deadline, kind) {
            (None, _) => PassStop::default(),
            (Some(d), PassKind::Counters) => PassStop {
                at: Some(
                    Instant::now() + eval::budget::counters_share(d.saturating_duration_since(Instant::now()), margin),
                ),
                max_rows: None,
            },
            (Some(d), PassKind::Icount) => PassStop {
                at: Some(d.checked_sub(margin).unwrap_or(d)),
                max_rows: passes.first().and_then(|p| p.stopped_at),
            },
        };
        // The icount pass stays on one CPU: Linux on 2 CPUs under
        // `-icount` (round-robin TCG, QEMU 7.2) stops at its first NVMe
        // I/O command (the submission is traced, no completion follows;
        // checked with and without `sleep=off`), so only the counters
        // pass (times, device counts) runs on `cpus` (eval/DB.md).
        let pass_cpus = if kind == PassKind::Icount { 1 } else { cpus };
        let setup = PassSetup {
            kind,
            kernel: &g.vmlinuz,
            initrd: &initrd,
            work_dir: &work,
            rows: &runs,
            timeout,
            cpus: pass_cpus,
            mttcg: false,
        };
        let n = runs.len();
        let t0 = Instant::now();
        println!("-- pass `{}`: booting {}", kind.name(), g.vmlinuz.display());
        let mut progress = |k: usize, r: &RunOutcome| {
            let done = k + 1;
            let el = t0.elapsed().as_secs_f64();
            let eta = el / done as f64 * (n - done) as f64;
            let what = match (&r.csv, &r.fail) {
                (Some(_), _) => match r.nvme {
                    Some(nv) => format!("ok: {} NVMe writes, {} flushes", nv.write_cmds, nv.flush_cmds),
                    None => format!(
                        "ok: {:.1} ms task time, {} SQ doorbells",
                        r.runtime_ns.unwrap_or(0) as f64 / 1e6,
                        r.nvme_sq_doorbells.map_or("?".into(), |d| d.to_string())
                    ),
                },
                (None, Some(f)) => format!("FAILED: {f}"),
                _ => "?".into(),
            };
            println!("[{:<8}] {done:>3}/{n} {:<46} {what}  ({el:.0}s, ~{eta:.0}s left)", kind.name(), runs[k].label());
        };
        let res =
            session::run_pass_until(&setup, stop, &mut progress).with_context(|| format!("pass `{}`", kind.name()))?;
        println!(
            "-- pass `{}` done in {:.0}s (serial log {})",
            kind.name(),
            res.elapsed.as_secs_f64(),
            res.serial_log.display()
        );
        passes.push(res);
    }
    let icount = passes.pop().context("the icount pass is missing")?;
    let counters = passes.pop().context("the counters pass is missing")?;
    let mut rows: Vec<Row> = vec![];
    let mut doorbells: Vec<Option<f64>> = vec![];
    let mut failures: Vec<String> = vec![];
    let budget_cut = |o: &RunOutcome| o.fail.as_deref() == Some(eval::budget::NOT_RUN);
    let (not_run, pairs_run): (Vec<plan::Pair>, Vec<plan::Pair>) = pairs.iter().copied().partition(|p| {
        [p.measured, p.baseline]
            .iter()
            .any(|&i| counters.rows.get(i).is_some_and(budget_cut) || icount.rows.get(i).is_some_and(budget_cut))
    });
    for &p in &pairs_run {
        match report::make_row(p, &runs, &columns, &counters.rows, &icount.rows) {
            Ok(r) => {
                rows.push(r);
                doorbells.push(report::doorbells_per_op(p, &runs, &icount.rows));
            }
            Err(e) => failures.push(format!("{}: {e:#}", runs[p.measured].label())),
        }
    }
    for (i, r) in icount.rows.iter().enumerate() {
        if let Some(f) = r.fail.as_ref().filter(|_| !budget_cut(r)) {
            failures.push(format!("icount pass, {}: {f}", runs[i].label()));
        }
    }
    let mut checks = report::sanity(&rows);
    checks.push(report::cross_check(&runs, &counters.rows));
    checks.push(report::doorbell_check(&runs, &icount.rows));
    let mut env = environment(&g, &counters, &icount, started.elapsed(), cpus)?;
    env.push(("commit".into(), super::git_describe(&ws.root)));
    env.push(("host load at start".into(), load_at_start));
    env.push(("host load at end".into(), super::host_load()));
    if deadline.is_some() {
        env.push((
            "time budget (EVAL_BUDGET_SECS)".into(),
            format!("{} of {} rows run, {} not run", pairs_run.len(), pairs.len(), not_run.len()),
        ));
    }
    let not_run_pairs = not_run.len();
    let not_run = eval::budget::not_run_summary(&runs, &not_run);
    Ok(Measured { runs, pairs, counters, icount, rows, doorbells, failures, not_run, not_run_pairs, checks, env, work })
}

fn environment(
    g: &guest::GuestFiles,
    counters: &PassResult,
    icount: &PassResult,
    elapsed: Duration,
    cpus: u32,
) -> Result<Vec<(String, String)>> {
    let qemu = crate::cmd::output(std::process::Command::new(crate::machine::QEMU).arg("--version"))?;
    let mut env = vec![
        ("qemu".to_string(), qemu.lines().next().unwrap_or("").to_string()),
        (
            "accelerator".into(),
            format!(
                "tcg, -cpu max, {cpus} vCPU{} (round-robin TCG), 512 MiB (counters pass); tcg -icount shift=0, 1 vCPU (icount pass)",
                if cpus == 1 { "" } else { "s" }
            ),
        ),
        (
            "machine".into(),
            "the standard machine, scripts/xtask/src/machine.rs (NVMe ioeventfd=on; off in the icount pass, to trace doorbells; NVDIMM 128 MiB)".into(),
        ),
    ];
    for (k, v) in &g.versions {
        env.push((format!("package {k}"), v.clone()));
    }
    for (k, v) in &counters.env {
        env.push((format!("guest {k}"), v.clone()));
    }
    for (k, v) in icount.env.iter().filter(|(k, _)| k == "tsc_mhz") {
        env.push((format!("guest (icount pass) {k}"), v.clone()));
    }
    env.push(("host cpus".into(), std::thread::available_parallelism().map_or(0, |n| n.get()).to_string()));
    env.push((
        "run time".into(),
        format!(
            "{:.0} s (counters {:.0} s, icount {:.0} s)",
            elapsed.as_secs_f64(),
            counters.elapsed.as_secs_f64(),
            icount.elapsed.as_secs_f64()
        ),
    ));
    Ok(env)
}
