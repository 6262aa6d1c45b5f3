//! `eval-bench`: runs one benchmark (or the standard matrix) and prints CSV.
//!
//! ```text
//! eval-bench header
//! eval-bench run --engine E --dir PATH --workload W --value-bytes N --durability D --ops N
//!                [--keys N] [--seed N] [--block-stat /sys/block/DEV/stat] --medium nvme|pmem|host-fs --system host-linux|linux-guest|exo
//! eval-bench suite --quick|--full --dir PATH --medium M --system S [--block-stat /sys/block/DEV/stat]
//! eval-bench raw --dev /dev/nvme0n1 --workload randread-qd1|randread-qd32|randwrite-qd1|randwrite-qd32 --ops N
//!                [--block 4096] [--span-mib 128] [--seed N] --system S
//! eval-bench kernel
//! ```
//! `kernel` prints one `linux-kernel:` line per classic crossing (getpid,
//! mmap+munmap, pipe/futex ping-pong, userfaultfd fault; `eval --kernel`).
//! `run --engine fs --workload append-fsync|create-small|mmap-overwrite|meta-mix|seq-read`
//! runs a file-system workload of `eval --fs` instead (eval/FS.md; `--keys`
//! is then the `seq-read` file's size in MiB).
//! `raw` (the drivers benchmark, eval/DRIVERS.md) does O_DIRECT random I/O
//! on a block device, overwriting it: never point it at a disk you need.
//! `run` prints exactly one CSV data row (no header) on stdout. `suite`
//! prints the header, then one row per run as it finishes (each run is a
//! child process, so counters and memory start clean); progress goes to
//! stderr. The CLI is relied on by the Linux-guest harness: keep it stable.

mod flushwrap;
mod kernel;

use eval::matrix::Plan;
use eval::results::{header, MEDIA, SYSTEMS};
use eval::runner::{run, RunConfig};
use eval::workload::{Durability, Workload};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

const USAGE: &str = "usage:
  eval-bench header
  eval-bench run --engine E --dir PATH --workload W --value-bytes N --durability D --ops N [--keys N] [--seed N] [--block-stat /sys/block/DEV/stat] --medium nvme|pmem|host-fs --system host-linux|linux-guest|exo
  eval-bench suite --quick|--full --dir PATH --medium M --system S [--block-stat /sys/block/DEV/stat]
  eval-bench raw --dev /dev/BLOCKDEV --workload randread-qdN|randwrite-qdN --ops N [--block 4096] [--span-mib 128] [--seed N] --system S
  eval-bench kernel
  eval-bench fio --dev /dev/BLOCKDEV --engine fio-io_uring|fio-io_uring-hipri|fio-libaio --workload randread-qdN|randwrite-qdN --ops N [--block 4096] [--span-mib 128] --system S";

/// `--name value` pairs and bare `--flag`s.
struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    fn parse(raw: &[String], flag_names: &[&str]) -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut flags = Vec::new();
        let mut it = raw.iter();
        while let Some(a) = it.next() {
            let name = a.strip_prefix("--").ok_or_else(|| format!("unexpected argument {a:?}"))?;
            if flag_names.contains(&name) {
                flags.push(name.to_string());
            } else {
                let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                if values.insert(name.to_string(), v.clone()).is_some() {
                    return Err(format!("--{name} given twice"));
                }
            }
        }
        Ok(Args { values, flags })
    }

    fn take(&mut self, name: &str) -> Result<String, String> {
        self.values.remove(name).ok_or_else(|| format!("missing --{name}"))
    }

    fn take_num(&mut self, name: &str) -> Result<u64, String> {
        let v = self.take(name)?;
        v.parse().map_err(|_| format!("--{name}: {v:?} is not a non-negative integer"))
    }

    fn take_opt_num(&mut self, name: &str) -> Result<Option<u64>, String> {
        if self.values.contains_key(name) {
            self.take_num(name).map(Some)
        } else {
            Ok(None)
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.values.keys().next() {
            Some(k) => Err(format!("unknown option --{k}")),
            None => Ok(()),
        }
    }
}

fn one_of(what: &str, value: String, allowed: &[&str]) -> Result<String, String> {
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(format!("--{what} {value:?}: expected one of {}", allowed.join(", ")))
    }
}

fn cmd_run(raw: &[String]) -> Result<(), String> {
    let mut a = Args::parse(raw, &[])?;
    if a.values.get("engine").map(String::as_str) == Some("fs") {
        return cmd_run_fs(a);
    }
    let ops = a.take_num("ops")?;
    let cfg = RunConfig {
        engine: a.take("engine")?,
        dir: PathBuf::from(a.take("dir")?),
        workload: Workload::parse(&a.take("workload")?)?,
        value_bytes: a.take_num("value-bytes")? as usize,
        durability: Durability::parse(&a.take("durability")?)?,
        keys: a.take_opt_num("keys")?.unwrap_or(ops),
        seed: a.take_opt_num("seed")?.unwrap_or(0x00C0_FFEE),
        ops,
        medium: one_of("medium", a.take("medium")?, &MEDIA)?,
        system: one_of("system", a.take("system")?, &SYSTEMS)?,
        block_stat: a.values.remove("block-stat").map(PathBuf::from),
    };
    a.finish()?;
    let row = run(&cfg)?;
    println!("{}", row.to_csv());
    Ok(())
}

/// `run --engine fs`: a file-system workload of `eval --fs` (eval/FS.md);
/// `--value-bytes` must be the workload's payload per operation and
/// `--durability` its method, so a plan line says what it measures.
fn cmd_run_fs(mut a: Args) -> Result<(), String> {
    a.take("engine")?;
    let workload = a.take("workload")?;
    let value_bytes = a.take_num("value-bytes")?;
    if eval_lines::fs::bytes_per_op(&workload).is_some_and(|b| b != value_bytes) {
        return Err(format!(
            "--value-bytes {value_bytes}: {workload} moves {:?} bytes per operation",
            eval_lines::fs::bytes_per_op(&workload)
        ));
    }
    let cfg = eval::fsbench::FsConfig {
        dir: PathBuf::from(a.take("dir")?),
        workload,
        durability: a.take("durability")?,
        ops: a.take_num("ops")?,
        keys: a.take_opt_num("keys")?.unwrap_or(0),
        medium: one_of("medium", a.take("medium")?, &MEDIA)?,
        system: one_of("system", a.take("system")?, &SYSTEMS)?,
        block_stat: a.values.remove("block-stat").map(PathBuf::from),
    };
    a.finish()?;
    println!("{}", eval::fsbench::run(&cfg)?.to_csv());
    Ok(())
}

fn cmd_suite(raw: &[String]) -> Result<(), String> {
    let mut a = Args::parse(raw, &["quick", "full"])?;
    let quick = match (a.flags.contains(&"quick".into()), a.flags.contains(&"full".into())) {
        (true, false) => true,
        (false, true) => false,
        _ => return Err("suite needs exactly one of --quick, --full".into()),
    };
    let dir = a.take("dir")?;
    let medium = one_of("medium", a.take("medium")?, &MEDIA)?;
    let system = one_of("system", a.take("system")?, &SYSTEMS)?;
    let block_stat = a.values.remove("block-stat");
    a.finish()?;
    let exe = std::env::current_exe().map_err(|e| format!("locating eval-bench: {e}"))?;
    let entries = Plan::suite(quick).entries();
    let started = Instant::now();
    println!("{}", header());
    let mut failures = 0;
    for (k, entry) in entries.iter().enumerate() {
        eprintln!("[{}/{}] {:>6.0}s {}", k + 1, entries.len(), started.elapsed().as_secs_f64(), entry.label());
        let mut child = Command::new(&exe);
        child.arg("run").args(entry.args()).args(["--dir", &dir, "--medium", &medium, "--system", &system]);
        if let Some(stat) = &block_stat {
            child.args(["--block-stat", stat]);
        }
        let out = child.stderr(Stdio::inherit()).output().map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.lines().count() == 1 {
            print!("{text}");
        } else {
            failures += 1;
            eprintln!("  FAILED ({}): {}", out.status, entry.label());
        }
    }
    eprintln!("suite: {} runs, {} failed, {:.0}s", entries.len(), failures, started.elapsed().as_secs_f64());
    if failures > 0 {
        return Err(format!("{failures} runs failed"));
    }
    Ok(())
}

/// `raw`: one CSV row of O_DIRECT random I/O on a block device.
fn cmd_raw(raw: &[String]) -> Result<(), String> {
    use eval::rawdev::{self, RawWorkload};
    let mut a = Args::parse(raw, &[])?;
    let dev = PathBuf::from(a.take("dev")?);
    let workload = RawWorkload::parse(&a.take("workload")?)?;
    let ops = a.take_num("ops")?;
    let block = a.take_opt_num("block")?.unwrap_or(4096);
    let span = a.take_opt_num("span-mib")?.unwrap_or(128) << 20;
    let seed = a.take_opt_num("seed")?.unwrap_or(0x00C0_FFEE);
    let system = one_of("system", a.take("system")?, &SYSTEMS)?;
    a.finish()?;
    if ops == 0 {
        return Err("--ops must be at least 1".into());
    }
    let m = rawdev::run(&dev, workload, ops, block as usize, span, seed)?;
    println!("{}", rawdev::to_row(&system, workload, block, &m).to_csv());
    Ok(())
}

/// `fio`: runs Debian's `fio` (on PATH) for one raw workload and prints
/// its result as one CSV row (eval::fio).
fn cmd_fio(raw: &[String]) -> Result<(), String> {
    use eval::rawdev::RawWorkload;
    let mut a = Args::parse(raw, &[])?;
    let dev = a.take("dev")?;
    let engine = a.take("engine")?;
    let workload = RawWorkload::parse(&a.take("workload")?)?;
    let ops = a.take_num("ops")?;
    let block = a.take_opt_num("block")?.unwrap_or(4096);
    let span = a.take_opt_num("span-mib")?.unwrap_or(128) << 20;
    let system = one_of("system", a.take("system")?, &SYSTEMS)?;
    a.finish()?;
    let args = eval::fio::args(&engine, workload, ops, block, span, &dev).map_err(|e| format!("{e:#}"))?;
    let out = Command::new("fio").args(&args).output().map_err(|e| format!("running fio: {e}"))?;
    if !out.status.success() {
        return Err(format!("fio {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    let row = eval::fio::row(&String::from_utf8_lossy(&out.stdout), &system, &engine, workload, block)
        .map_err(|e| format!("{e:#}"))?;
    println!("{}", row.to_csv());
    Ok(())
}

fn main() -> ExitCode {
    flushwrap::install();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("header") if args.len() == 1 => {
            println!("{}", header());
            Ok(())
        }
        Some("run") => cmd_run(&args[1..]),
        Some("suite") => cmd_suite(&args[1..]),
        Some("raw") => cmd_raw(&args[1..]),
        Some("kernel") if args.len() == 1 => kernel::run(),
        Some("fio") => cmd_fio(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("expected a command\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eval-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
