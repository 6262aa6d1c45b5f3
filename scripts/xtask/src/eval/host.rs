//! `cargo xtask eval --host [--quick]`: libdb against SQLite (WAL, FULL and
//! NORMAL), LMDB and redb on the host's own file system, in one run.
//!
//! Builds `eval-bench` (release), runs every entry of
//! `eval::matrix::Plan::host` as its own process on a loop-mounted ext4
//! under the target dir, and hands the rows to `eval::host`, which writes
//! `eval/results/latest/host.md` and the SVG plots (host.csv: the rows).
//! How each number is measured: eval/README.md.

use crate::cmd;
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};
use eval::host::*;
use eval::matrix::{Entry, Plan};
use eval::results::{parse_row, write_csv, Row, COLUMNS};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub fn run(quick: bool) -> Result<()> {
    let ws = Workspace::load()?;
    let mut build = Command::new("cargo");
    build.current_dir(&ws.root).args(["build", "--release", "-p", "eval", "--bin", "eval-bench"]);
    cmd::run(&mut build).context("building eval-bench")?;
    let bench = ws.target_dir.join("release/eval-bench");
    if !bench.exists() {
        bail!("cargo built eval-bench but {} does not exist", bench.display());
    }

    // A fresh ext4 on a loop device that only this benchmark uses, so the
    // device's own counters (/sys/block/loopN/stat) belong to our runs.
    let image_bytes: u64 = if quick { 2 << 30 } else { 8 << 30 };
    let (loopfs, device_note) = match LoopFs::setup(&ws.target_dir, image_bytes) {
        Ok(l) => {
            let note = format!("ext4 on {} (a sparse {} GiB image in the target dir)", l.dev, image_bytes >> 30);
            (Some(l), note)
        }
        Err(e) => {
            println!("eval --host: no loop device ({e:#}); running in a plain directory, device columns stay empty");
            (
                None,
                format!("a plain directory in the target dir; device columns empty (loop device setup failed: {e:#})"),
            )
        }
    };
    let scratch = match &loopfs {
        Some(l) => l.mnt.clone(),
        None => {
            let dir = ws.target_dir.join("eval-host");
            if dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
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
    let host = HostInfo {
        kernel: first_line("uname", &["-sr"]),
        cpu: cpu_model(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    };
    let md = summary(&host, &rows, &failures, &plots, quick, &device_note, started.elapsed().as_secs_f64());
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
        bail!("{} of {} runs failed (listed in host.md)", failures.len(), schedule.len());
    }
    Ok(())
}

/// Runs one entry; returns its CSV row.
fn run_one(bench: &Path, scratch: &Path, block_stat: Option<&Path>, entry: &Entry) -> Result<String> {
    let mut c = Command::new(bench);
    c.arg("run").args(entry.args()).arg("--dir").arg(scratch).args(["--medium", "host-fs", "--system", "host-linux"]);
    if let Some(stat) = block_stat {
        c.arg("--block-stat").arg(stat);
    }
    let out = c.stdin(Stdio::null()).output().with_context(|| format!("starting {}", bench.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{} ({}): {}", out.status, entry.label(), String::from_utf8_lossy(&out.stderr).trim());
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
        Progress { total, tty: std::io::stdout().is_terminal(), dirty: false }
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
        println!("{} runs in {:.0}s", self.total, started.elapsed().as_secs_f64());
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
            let _ = Command::new("umount").arg(&mnt).stderr(Stdio::null()).status();
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
        let dev = cmd::output(Command::new("losetup").args(["-f", "--show"]).arg(&image))?.trim().to_string();
        let mut l = LoopFs { image, dev, mnt, mounted: false, attached: true };
        // Initialise inode tables and journal now: the lazy-init thread
        // would otherwise write in the background during the runs.
        cmd::run(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-N", "8192", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
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
        let name = Path::new(&self.dev).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
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
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
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
