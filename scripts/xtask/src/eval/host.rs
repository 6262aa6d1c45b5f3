//! `cargo xtask eval --host [--quick]`: libdb against SQLite (WAL, FULL and
//! NORMAL), LMDB and redb on the host's own file system, in one run.
//!
//! Builds `eval-bench` (release), runs every entry of
//! `eval::matrix::Plan::host` as its own process in a scratch directory
//! under the target dir, and writes `eval/results/latest/host.csv`,
//! `host.md` and SVG plots beside them. How each number is measured:
//! eval/README.md.

use crate::cmd;
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};
use eval::matrix::{Entry, Plan};
use eval::plot::{panels_by_durability, panels_by_workload, write_bar_chart_svg};
use eval::results::{markdown_comparison, markdown_table, parse_row, write_csv, Row, COLUMNS};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub fn run(quick: bool) -> Result<()> {
    let ws = Workspace::load()?;
    let mut build = Command::new("cargo");
    build
        .current_dir(&ws.root)
        .args(["build", "--release", "-p", "eval", "--bin", "eval-bench"]);
    cmd::run(&mut build).context("building eval-bench")?;
    let bench = ws.target_dir.join("release/eval-bench");
    if !bench.exists() {
        bail!(
            "cargo built eval-bench but {} does not exist",
            bench.display()
        );
    }

    // A fresh ext4 on a loop device that only this benchmark uses, so the
    // device's own counters (/sys/block/loopN/stat) belong to our runs.
    let image_bytes: u64 = if quick { 2 << 30 } else { 8 << 30 };
    let (loopfs, device_note) = match LoopFs::setup(&ws.target_dir, image_bytes) {
        Ok(l) => {
            let note = format!(
                "ext4 on {} (a sparse {} GiB image in the target dir)",
                l.dev,
                image_bytes >> 30
            );
            (Some(l), note)
        }
        Err(e) => {
            println!("eval --host: no loop device ({e:#}); running in a plain directory, device columns stay empty");
            (None, format!("a plain directory in the target dir; device columns empty (loop device setup failed: {e:#})"))
        }
    };
    let scratch = match &loopfs {
        Some(l) => l.mnt.clone(),
        None => {
            let dir = ws.target_dir.join("eval-host");
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("clearing {}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir)?;
            dir
        }
    };
    let block_stat = loopfs.as_ref().map(|l| l.stat_path());

    let entries = Plan::host(quick).entries();
    let schedule = schedule(&entries);
    println!(
        "eval --host{}: {} entries, {} runs (commit entries {COMMIT_ROUNDS} interleaved rounds) in {} ({})",
        if quick { " --quick" } else { "" },
        entries.len(),
        schedule.len(),
        scratch.display(),
        device_note
    );
    let started = Instant::now();
    let mut progress = Progress::new(schedule.len());
    let columns: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let mut results: Vec<Vec<Row>> = vec![Vec::new(); entries.len()];
    let mut failures = Vec::new();
    for (k, &index) in schedule.iter().enumerate() {
        let entry = &entries[index];
        progress.show(k, entry, started);
        match run_one(&bench, &scratch, block_stat.as_deref(), entry)
            .and_then(|line| parse_row(&columns, &line).map_err(anyhow::Error::msg))
        {
            Ok(row) => results[index].push(row),
            Err(e) => {
                progress.interrupt();
                println!("FAILED {}: {e:#}", entry.label());
                failures.push(format!("{}: {e:#}", entry.label()));
            }
        }
    }
    progress.done(started);
    let rows: Vec<Row> = results.into_iter().filter_map(median_row).collect();

    let out = ws.root.join("eval/results/latest");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("host.csv"), write_csv(&rows))?;
    let plots = write_plots(&out, &rows)?;
    let md = summary(
        &rows,
        &failures,
        &plots,
        quick,
        &device_note,
        started.elapsed().as_secs_f64(),
    );
    std::fs::write(out.join("host.md"), &md)?;
    match loopfs {
        Some(l) => l.teardown()?,
        None => {
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    println!("{}", headline(&rows));
    println!(
        "wrote {} ({} rows), host.md, {} plots in {:.0}s",
        out.join("host.csv").display(),
        rows.len(),
        plots.len(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        bail!(
            "{} of {} runs failed (listed in host.md)",
            failures.len(),
            schedule.len()
        );
    }
    Ok(())
}

/// Durable-commit runs are short and their times swing with the shared
/// disk's load: they run this many times, interleaved, and the median run
/// (by ops/s) is reported.
const COMMIT_ROUNDS: usize = 3;

/// Entry indices in run order: every entry once, then the `commit` entries
/// again for the further rounds.
fn schedule(entries: &[Entry]) -> Vec<usize> {
    let commits: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].workload.name() == "commit")
        .collect();
    let mut order: Vec<usize> = (0..entries.len()).collect();
    for _ in 1..COMMIT_ROUNDS {
        order.extend(&commits);
    }
    order
}

/// The run with the median ops/s (the lower middle for an even count);
/// its counts come with it, so a row stays one real run.
fn median_row(mut runs: Vec<Row>) -> Option<Row> {
    if runs.is_empty() {
        return None;
    }
    runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    let mid = (runs.len() - 1) / 2;
    Some(runs.swap_remove(mid))
}

/// Runs one entry; returns its CSV row.
fn run_one(
    bench: &Path,
    scratch: &Path,
    block_stat: Option<&Path>,
    entry: &Entry,
) -> Result<String> {
    let mut c = Command::new(bench);
    c.arg("run")
        .args(entry.args())
        .arg("--dir")
        .arg(scratch)
        .args(["--medium", "host-fs", "--system", "host-linux"]);
    if let Some(stat) = block_stat {
        c.arg("--block-stat").arg(stat);
    }
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", bench.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} ({}): {}",
            out.status,
            entry.label(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut lines = stdout.lines();
    match (lines.next(), lines.next()) {
        (Some(line), None) => Ok(line.to_string()),
        _ => bail!("expected one CSV row, got {stdout:?}"),
    }
}

/// One status line, rewritten in place on a terminal, one line per run
/// otherwise (logs, CI).
struct Progress {
    total: usize,
    tty: bool,
    dirty: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            tty: std::io::stdout().is_terminal(),
            dirty: false,
        }
    }

    fn show(&mut self, k: usize, entry: &Entry, started: Instant) {
        let line = format!(
            "[{:>3}/{}] {:>5.0}s  {:<14} {:<11} {:>5} B  {}",
            k + 1,
            self.total,
            started.elapsed().as_secs_f64(),
            entry.engine,
            entry.workload.name(),
            entry.value_bytes,
            entry.durability
        );
        if self.tty {
            print!("\r{line:<78}");
            let _ = std::io::stdout().flush();
            self.dirty = true;
        } else {
            println!("{line}");
        }
    }

    fn interrupt(&mut self) {
        if self.dirty {
            println!();
            self.dirty = false;
        }
    }

    fn done(&mut self, started: Instant) {
        self.interrupt();
        println!(
            "{} runs in {:.0}s",
            self.total,
            started.elapsed().as_secs_f64()
        );
    }
}

/// A sparse image file, attached to a loop device, formatted ext4 and
/// mounted; undone by `teardown` (or, on an early error, by `Drop`).
struct LoopFs {
    image: PathBuf,
    dev: String,
    mnt: PathBuf,
    mounted: bool,
    attached: bool,
}

impl LoopFs {
    fn setup(target: &Path, bytes: u64) -> Result<LoopFs> {
        let image = target.join("eval-host.img");
        let mnt = target.join("eval-host-mnt");
        // A previous run that was killed may have left these behind.
        if mnt.exists() {
            let _ = Command::new("umount")
                .arg(&mnt)
                .stderr(Stdio::null())
                .status();
        }
        if image.exists() {
            // ...and a loop device still attached to the old image.
            if let Ok(o) = Command::new("losetup").arg("-j").arg(&image).output() {
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    if let Some((dev, _)) = line.split_once(':') {
                        let _ = Command::new("losetup").args(["-d", dev]).status();
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&image);
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(bytes))
            .with_context(|| format!("creating {}", image.display()))?;
        let dev = cmd::output(Command::new("losetup").args(["-f", "--show"]).arg(&image))?
            .trim()
            .to_string();
        let mut l = LoopFs {
            image,
            dev,
            mnt,
            mounted: false,
            attached: true,
        };
        // Initialise inode tables and journal now: the lazy-init thread
        // would otherwise write in the background during the runs.
        cmd::run(
            Command::new("mkfs.ext4")
                .args([
                    "-q",
                    "-F",
                    "-N",
                    "8192",
                    "-E",
                    "lazy_itable_init=0,lazy_journal_init=0",
                ])
                .arg(&l.dev),
        )?;
        std::fs::create_dir_all(&l.mnt)?;
        cmd::run(Command::new("mount").arg(&l.dev).arg(&l.mnt))?;
        l.mounted = true;
        let stat = l.stat_path();
        eval::counters::BlockStat::read(&stat).map_err(anyhow::Error::msg)?;
        Ok(l)
    }

    fn stat_path(&self) -> PathBuf {
        let name = Path::new(&self.dev)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        PathBuf::from(format!("/sys/block/{name}/stat"))
    }

    fn teardown(mut self) -> Result<()> {
        self.undo()
    }

    fn undo(&mut self) -> Result<()> {
        if self.mounted {
            cmd::run(Command::new("umount").arg(&self.mnt))?;
            self.mounted = false;
        }
        if self.attached {
            cmd::run(Command::new("losetup").arg("-d").arg(&self.dev))?;
            self.attached = false;
        }
        let _ = std::fs::remove_file(&self.image);
        let _ = std::fs::remove_dir(&self.mnt);
        Ok(())
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if let Err(e) = self.undo() {
            eprintln!("eval --host: cleaning up {}: {e:#}", self.dev);
        }
    }
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn write_plots(out: &Path, rows: &[Row]) -> Result<Vec<PathBuf>> {
    let bulk: Vec<Row> = rows
        .iter()
        .filter(|r| r.workload != "commit")
        .cloned()
        .collect();
    let commit: Vec<Row> = rows
        .iter()
        .filter(|r| r.workload == "commit")
        .cloned()
        .collect();
    type Metric = fn(&Row) -> Option<f64>;
    let charts: [(&str, &str, &str, &[Row], Metric); 5] = [
        (
            "host-ops.svg",
            "Host: operations per second (bulk and read workloads)",
            "ops/s",
            &bulk,
            |r| Some(r.ops_per_sec),
        ),
        (
            "host-commit-ops.svg",
            "Host: durable small transactions (commit), ops/s",
            "commits/s",
            &commit,
            |r| Some(r.ops_per_sec),
        ),
        (
            "host-commit-flushes.svg",
            "Host: commit, flushes per commit (fsync family + O_DSYNC writes)",
            "flushes/commit",
            &commit,
            |r| r.flushes_per_op,
        ),
        (
            "host-commit-device-flushes.svg",
            "Host: commit, device flush commands per commit (loop device)",
            "flushes/commit",
            &commit,
            |r| r.device_flushes_per_op,
        ),
        (
            "host-commit-bytes.svg",
            "Host: commit, bytes written to the device per commit (loop device)",
            "bytes/commit",
            &commit,
            |r| r.device_bytes_written_per_op,
        ),
    ];
    let mut written = Vec::new();
    for (name, title, y, subset, metric) in charts {
        let panels = if name.starts_with("host-commit") {
            panels_by_durability(subset, metric)
        } else {
            panels_by_workload(subset, metric)
        };
        if panels.is_empty() {
            continue;
        }
        let path = out.join(name);
        write_bar_chart_svg(&path, title, y, &panels, 3).map_err(anyhow::Error::msg)?;
        written.push(path);
    }
    Ok(written)
}

fn find<'a>(rows: &'a [Row], engine: &str, workload: &str, durability: &str) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.engine == engine
            && r.workload == workload
            && r.value_bytes == 100
            && r.durability == durability
    })
}

/// The numbers the project's claims rest on, one line each.
fn headline(rows: &[Row]) -> String {
    let mut out = String::from("Headline (100 B values):\n");
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
    for engine in ["libdb", "sqlite", "lmdb", "redb"] {
        if let Some(r) = find(rows, engine, "commit", "sync") {
            out.push_str(&format!(
                "  commit sync  {engine:<7} {:>9.0} ops/s  {} flushes (fsync family)/commit  {} device flushes/commit  {} device bytes written/commit  {} syscalls/commit\n",
                r.ops_per_sec,
                opt(r.flushes_per_op),
                opt(r.device_flushes_per_op),
                opt(r.device_bytes_written_per_op),
                opt(r.syscalls_per_op)
            ));
        }
    }
    for engine in ["libdb", "sqlite", "lmdb", "redb"] {
        if let Some(r) = find(rows, engine, "readrandom", "sync") {
            out.push_str(&format!(
                "  readrandom   {engine:<7} {:>9.0} ops/s  p50 {:.2} µs\n",
                r.ops_per_sec, r.p50_us
            ));
        }
    }
    let ratio = |a: &str, b: &str, w: &str| -> String {
        match (find(rows, a, w, "sync"), find(rows, b, w, "sync")) {
            (Some(x), Some(y)) if y.ops_per_sec > 0.0 => {
                format!("{:.2}×", x.ops_per_sec / y.ops_per_sec)
            }
            _ => "–".into(),
        }
    };
    out.push_str(&format!(
        "  libdb/sqlite commit {}, libdb/lmdb commit {}, libdb/lmdb readrandom {}",
        ratio("libdb", "sqlite", "commit"),
        ratio("libdb", "lmdb", "commit"),
        ratio("libdb", "lmdb", "readrandom")
    ));
    out
}

fn summary(
    rows: &[Row],
    failures: &[String],
    plots: &[PathBuf],
    quick: bool,
    storage: &str,
    secs: f64,
) -> String {
    let keys = Plan::host(quick).keys;
    let mut md = String::from("# Host benchmark: libdb vs SQLite, LMDB, redb\n\n");
    md.push_str(&format!(
        "Generated by `cargo xtask eval --host{}` ({} rows in {secs:.0} s). Every run is its own `eval-bench` \
         process on a fresh store; {keys} records, 16 B keys. How each column is measured and how durability \
         maps onto each engine: [`eval/README.md`](../../README.md).\n\n",
        if quick { " --quick" } else { "" },
        rows.len()
    ));
    md.push_str(&format!(
        "- kernel: {}\n- CPU: {} ({} cores)\n- storage: {}\n- date: {}\n\n",
        first_line("uname", &["-sr"]),
        cpu_model(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        storage,
        first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    ));
    md.push_str(&format!(
        "This machine is shared with other jobs (2 cores, one virtual disk): times are noisy; the per-op counts are not. \
         Each `commit` row is the median (by ops/s) of {COMMIT_ROUNDS} interleaved runs; the other rows are single runs.\n\n"
    ));
    md.push_str("## Durable small transactions (`commit`, 100 B values)\n\n");
    md.push_str(&markdown_comparison(rows, "commit", 100, "sqlite"));
    md.push_str("\n## Random reads (`readrandom`, 100 B values)\n\n");
    md.push_str(&markdown_comparison(rows, "readrandom", 100, "lmdb"));
    md.push_str("\n```\n");
    md.push_str(&headline(rows));
    md.push_str("\n```\n\n");
    if !plots.is_empty() {
        md.push_str("## Plots\n\n");
        for p in plots {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            md.push_str(&format!("![{name}]({name})\n\n"));
        }
    }
    if !failures.is_empty() {
        md.push_str("## Failed runs\n\n");
        for f in failures {
            md.push_str(&format!("- {f}\n"));
        }
        md.push('\n');
    }
    md.push_str("## All runs\n\n");
    md.push_str(&markdown_table(rows));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(engine: &str, workload: &str, ops: f64) -> Row {
        Row {
            system: "host-linux".into(),
            engine: engine.into(),
            medium: "host-fs".into(),
            workload: workload.into(),
            value_bytes: 100,
            durability: "sync".into(),
            ops: 10,
            ops_per_sec: ops,
            flushes_per_op: Some(1.0),
            ..Row::default()
        }
    }

    #[test]
    fn commit_entries_get_extra_rounds_and_the_median_wins() {
        let entries = Plan::host(true).entries();
        let order = schedule(&entries);
        let commits = entries
            .iter()
            .filter(|e| e.workload.name() == "commit")
            .count();
        assert_eq!(order.len(), entries.len() + (COMMIT_ROUNDS - 1) * commits);
        assert_eq!(
            &order[..entries.len()],
            &(0..entries.len()).collect::<Vec<_>>()[..]
        );
        let runs = vec![
            row("libdb", "commit", 5.0),
            row("libdb", "commit", 1.0),
            row("libdb", "commit", 3.0),
        ];
        assert_eq!(median_row(runs).unwrap().ops_per_sec, 3.0);
        assert_eq!(
            median_row(vec![row("a", "commit", 2.0), row("a", "commit", 4.0)])
                .unwrap()
                .ops_per_sec,
            2.0
        );
        assert!(median_row(vec![]).is_none());
    }

    #[test]
    fn headline_reports_ratios_and_missing_engines() {
        let rows = vec![
            row("libdb", "commit", 3000.0),
            row("sqlite", "commit", 1000.0),
            row("lmdb", "readrandom", 5.0),
        ];
        let h = headline(&rows);
        assert!(h.contains("libdb/sqlite commit 3.00×"), "{h}");
        assert!(h.contains("libdb/lmdb commit –"), "{h}");
        assert!(h.contains("1.00 flushes (fsync family)/commit"), "{h}");
    }

    #[test]
    fn summary_lists_failures_and_tables() {
        let rows = vec![
            row("libdb", "commit", 3000.0),
            row("sqlite", "commit", 1000.0),
        ];
        let md = summary(
            &rows,
            &["lmdb commit: boom".into()],
            &[],
            true,
            "ext4 on /dev/loop0",
            1.0,
        );
        assert!(md.contains("## Failed runs") && md.contains("lmdb commit: boom"));
        assert!(md.contains("| libdb | sync |") && md.contains("## All runs"));
    }
}
