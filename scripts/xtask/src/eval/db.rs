//! `cargo xtask eval --db [--quick]`: the project's main comparison,
//! libdb on the exokernel (`kvdb`) beside Linux running SQLite, LMDB, redb
//! and libdb on the same emulated machine, in the same run. This file
//! boots the machines; what their output means is `eval::db`'s (and
//! eval/DB.md's).
//!
//! * exo: rounds of the `libdb_nvme_create`, `libdb_vf_create` (medium
//!   `nvme-vf`, on the SR-IOV machine variant), `libdb_on_libfs_create`
//!   (media `file-nvme` and `file-pmem`, booted once for each) and `libdb_pmem_create`
//!   boots (fresh images and nonce each boot), every timed boot tracing
//!   QEMU's NVMe command events; as many boots per medium under `-icount
//!   shift=0` for instructions.
//! * linux-guest: the `eval --linux` measuring code ([`super::linux::measure_with_raw`])
//!   over [`eval::db::linux_entries`], once per round, right after that
//!   round's exo boots.
//!
//! Writes eval/results/latest/db.{csv,md}.

use super::linux;
use crate::build;
use crate::machine::{self, Hardware, Machine};
use crate::outcome::Expect;
use crate::runner::{self, RunOptions};
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};
use eval::db::*;
use eval::linux::qtrace;
use eval::results::format_number;
use eval_lines::DbLine;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn nonce() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
}

/// One [`create_test`] boot of `medium` on fresh images: its lines, the
/// NVMe trace of the whole boot (timed boots) and its seconds. `nvme-vf`
/// boots the SR-IOV variant (the NVMe behind a root port, VFs enabled).
fn exo_boot(
    arts: &build::Artifacts,
    work: &Path,
    images: &Path,
    medium: &str,
    icount: bool,
    name: &str,
    cpus: u32,
) -> Result<(Vec<DbLine>, Option<qtrace::NvmeCounts>, f64)> {
    let _ = std::fs::remove_dir_all(images);
    machine::ensure_images(images)?;
    let test = create_test(medium);
    let trace = work.join(format!("{name}.qemu-trace.log"));
    let _ = std::fs::remove_file(&trace);
    let mut m = Machine::new(images)
        .kernel(&arts.kernel)
        .initrd(&arts.boot_image)
        .append(super::exo_cmdline(format!("test={test} nonce={:x}", nonce()), icount))
        .icount(icount)
        .hardware(Hardware { cpus, ..Hardware::STANDARD })
        .nvme_sriov(medium == "nvme-vf");
    if !icount {
        // The same NVMe command events the Linux counters pass traces, so
        // both systems pay the same tracing cost.
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
    let r = runner::run(m.command()?, &opts, Expect::PassLine(test))?;
    if !r.outcome.passed() {
        bail!("exokernel {test} failed: {} (log {})", r.outcome, r.log_path.display());
    }
    let lines =
        parse_boot(&r.serial, medium).with_context(|| format!("exokernel serial log {}", r.log_path.display()))?;
    let counts = if icount {
        None
    } else {
        Some(qtrace::count(&std::fs::read_to_string(&trace).with_context(|| format!("reading {}", trace.display()))?)?)
    };
    Ok((lines, counts, r.elapsed.as_secs_f64()))
}

/// Where the icount boots keep their images: in RAM (`/dev/shm`) when the
/// host has it. Under icount every instruction the CPU executes counts,
/// and nvmed polls while QEMU completes a write or flush, which for a
/// flush means the host's fdatasync of the image file: on a shared disk
/// that swung the NVMe sync count from 76,000 to 760,000 per commit
/// between runs, on tmpfs it stays near the work itself. The timed boots
/// keep their images on disk, as Linux's do.
fn icount_images_dir(work: &Path) -> std::path::PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join(format!("exo-db-eval-icount-{}", std::process::id()))
    } else {
        work.join("images-exo-icount")
    }
}

/// A directory removed when this goes out of scope.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `cpus`: the CPUs of both machines (`--smp N`; 1 = the standard
/// machine). With more, both boot under round-robin TCG (the kind
/// `-icount` allows); exo's kvdb still runs on CPU 0 and the other CPUs
/// stay idle in the kernel (`sti; hlt`), Linux schedules as it likes.
pub fn run(quick: bool, cpus: u32) -> Result<()> {
    crate::setup::ensure_all()?;
    let ws = Workspace::load()?;
    let started = Instant::now();
    // Other jobs share the two cores: say how busy the host was.
    let load_at_start = super::host_load();
    let work = ws.root.join(".cache/db-run");
    std::fs::create_dir_all(&work)?;
    let n_rounds = super::rounds_override()?.unwrap_or(rounds(quick));
    // EVAL_BUDGET_SECS: no round starts that would not finish, with its
    // icount boots, inside the budget (eval::budget).
    let budget = super::budget_override()?;
    println!(
        "eval --db{}{}: {n_rounds} rounds of (exo: the libdb nvme, nvme-vf, pmem, file-nvme and file-pmem create boots; linux-guest: commit x 3 durabilities x {} engines x 2 media), then {n_rounds} exo icount boots per medium",
        if quick { " --quick" } else { "" },
        if cpus == 1 { String::new() } else { format!(" --smp {cpus}") },
        LINUX_ENGINES.len()
    );
    let arts = build::build_all(&ws)?;

    // Rounds of (exo boots, Linux measurement), interleaved so that load
    // from other users of the host hits both systems alike.
    let (mut rounds, mut checks, mut exo_secs) = (vec![], vec![], vec![]);
    let (mut linux_checks, mut linux_failures, mut linux_env, mut linux_secs) = (vec![], vec![], vec![], vec![]);
    let mut linux_work = work.clone();
    let mut linux_phase_timed_rounds: Vec<Vec<PhaseTimed>> = vec![];
    let (mut done_rounds, mut longest_round, mut exo_round_secs) = (0usize, Duration::ZERO, 0f64);
    for round in 1..=n_rounds {
        if let Some(b) = budget.filter(|_| round > 1) {
            // This round, then one icount boot per medium per round done.
            let after = Duration::from_secs_f64(exo_round_secs * round as f64 + 60.0);
            if !eval::budget::room_for_round(started.elapsed(), longest_round, after, b) {
                println!(
                    "-- time budget: {done_rounds} of {n_rounds} rounds run (the next would end after EVAL_BUDGET_SECS={})",
                    b.as_secs()
                );
                break;
            }
        }
        let round_started = Instant::now();
        let exo_before: f64 = exo_secs.iter().sum();
        {
            // Two runs in one checkout would share images and logs: wait instead.
            let _lock = machine::lock_images(&work)?;
            for medium in MEDIA {
                println!("-- round {round}/{n_rounds}: exo {medium} (test={})", create_test(medium));
                let (lines, trace, secs) =
                    exo_boot(&arts, &work, &work.join("images-exo"), medium, false, &format!("db-exo-{medium}"), cpus)?;
                exo_secs.push(secs);
                for l in &lines {
                    println!(
                        "  exo {medium} {:<8} {:<7} {:>9.0} ops/s  p50 {:>9} us  syscalls/op {:>7}",
                        l.workload,
                        l.durability,
                        l.ops_per_sec,
                        format_number(l.p50_us),
                        l.syscalls_per_op.map_or("-".into(), format_number)
                    );
                }
                if linux_medium(medium) == "nvme" {
                    if let Some(t) = &trace {
                        let c = device_check(&lines, t);
                        println!("  {} {}", if c.0 { "PASS" } else { "FAIL" }, c.1);
                        checks.push((c.0, format!("round {round}, {medium}: {}", c.1)));
                    }
                }
                rounds.push((
                    lines.iter().map(|l| exo_row(l, None)).collect::<Vec<_>>(),
                    lines.into_iter().map(Some).collect::<Vec<_>>(),
                ));
            }
        }
        let title = format!("-- round {round}/{n_rounds}: linux-guest");
        let lm = linux::measure_with_raw(&ws, &linux_entries(), &title, "run-db", cpus)?;
        lm.print_checks();
        linux_checks.extend(lm.checks.iter().map(|(ok, c)| (*ok, format!("round {round}: {c}"))));
        linux_failures.extend(lm.failures.iter().map(|f| format!("round {round}: {f}")));
        linux_secs.push(lm.counters.elapsed.as_secs_f64() + lm.icount.elapsed.as_secs_f64());
        linux_env = lm.env.clone();
        linux_work = lm.work.clone();
        linux_phase_timed_rounds.push(linux_phase_timed(&lm));
        let n = lm.rows.len();
        rounds.push((lm.rows, vec![None; n]));
        done_rounds = round;
        longest_round = longest_round.max(round_started.elapsed());
        exo_round_secs = exo_round_secs.max(exo_secs.iter().sum::<f64>() - exo_before);
    }
    let planned_rounds = n_rounds;
    let n_rounds = done_rounds;
    let (mut exo, exo_lines, linux_rows, rates) = median_rows(&rounds);
    // Instructions: as many icount boots per medium as timed rounds, the
    // median per row (on NVMe the count includes the driver's polling
    // while QEMU completes the I/O, which varies; every value is listed).
    let (mut icount_env, mut icount_all) = (vec![], BTreeMap::new());
    let icount_images = icount_images_dir(&work);
    icount_env.push(("exo icount boots' images".to_string(), icount_images.display().to_string()));
    // Removed however the boots end (they may be in RAM).
    let _cleanup = RemoveOnDrop(icount_images.clone());
    {
        let _lock = machine::lock_images(&work)?;
        for medium in MEDIA {
            let mut boots = vec![];
            let (mut secs, mut rates) = (vec![], vec![]);
            for boot in 1..=n_rounds {
                println!("-- exo {medium}: boot {boot}/{n_rounds} under -icount shift=0 (instructions)");
                let (lines, _, t) =
                    exo_boot(&arts, &work, &icount_images, medium, true, &format!("db-exo-{medium}-icount"), cpus)?;
                secs.push(format!("{t:.0}"));
                rates.push(lines.first().map_or("?".into(), |l| format_number(l.tsc_per_us as f64)));
                boots.push(instructions(&lines));
            }
            for ((w, d), (median, all)) in median_instructions(&boots) {
                if let Some(r) = exo.iter_mut().find(|r| r.medium == medium && r.workload == w && r.durability == d) {
                    r.guest_instructions_per_op = Some(median);
                }
                icount_all.insert((medium.to_string(), w, d), all);
            }
            icount_env.push((
                format!("exo icount boots {medium}"),
                format!(
                    "{} s; kernel-calibrated TSC {} ticks/us (1000 = one tick per virtual ns)",
                    secs.join(", "),
                    rates.join(", ")
                ),
            ));
        }
    }

    let mut rows = exo.clone();
    rows.extend(linux_rows.iter().cloned());
    let mut env = vec![
        ("host load at start".to_string(), load_at_start),
        ("host load at end".to_string(), super::host_load()),
        (
            "rounds".to_string(),
            if n_rounds < planned_rounds {
                format!("{n_rounds} of {planned_rounds} (the time budget EVAL_BUDGET_SECS stopped the rest)")
            } else {
                format!("{n_rounds}")
            },
        ),
        ("commit".to_string(), super::git_describe(&ws.root)),
    ];
    env.push((
        "qemu".to_string(),
        crate::cmd::output(std::process::Command::new(machine::QEMU).arg("--version"))?
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
    ));
    env.push((
        "exo".into(),
        format!("{n_rounds} rounds x {} media of test=libdb_<nvme|vf|pmem>_create and (file-nvme, file-pmem: once each) libdb_on_libfs_create on the standard machine (nvme-vf: its SR-IOV variant, the NVMe behind a PCIe root port with 4 VFs) (TCG, {cpus} vCPU{}, NVMe ioeventfd=on, QEMU tracing pci_nvme_io_cmd and pci_nvme_write); median-ops/s round per row; boots {} s", MEDIA.len(), if cpus == 1 { "" } else { "s, round-robin TCG; kvdb on CPU 0, the others idle in the kernel" }, exo_secs.iter().map(|s| format!("{s:.0}")).collect::<Vec<_>>().join(", ")),
    ));
    env.extend(icount_env);
    env.push((
        "linux-guest".into(),
        format!(
            "{n_rounds} rounds of the `eval --linux` measurement (counters pass + icount pass, {} runs each) over the commit rows, each after that round's exo boots; median-ops/s round per row; {} s per round",
            eval::linux::plan::runs_with_raw(&linux_entries()).0.len(),
            linux_secs.iter().map(|s| format!("{s:.0}")).collect::<Vec<_>>().join(", ")
        ),
    ));
    env.extend(linux_env.iter().map(|(k, v)| (format!("linux (last round): {k}"), v.clone())));
    for (i, round) in linux_phase_timed_rounds.iter().enumerate() {
        let v = phase_timed_verdict(&exo, round);
        println!("linux pmem, phase-timed (round {}): {v}", i + 1);
        env.push((
            format!(
                "linux libdb pmem instructions/op timed by eval-bench's clock in the icount pass (round {})",
                i + 1
            ),
            v,
        ));
    }
    env.push(("total run time".into(), format!("{:.0} s", started.elapsed().as_secs_f64())));

    let out = ws.root.join("eval/results/latest");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("db.csv"), eval::results::write_csv(&rows))?;
    let md = summary(&exo, &exo_lines, &linux_rows, &rates, &icount_all, &checks, &linux_checks, &linux_failures, &env);
    std::fs::write(out.join("db.md"), md)?;
    for medium in MEDIA {
        for l in headline(&exo, &linux_rows, medium).into_iter().chain(headline_best(&exo, &linux_rows, medium)) {
            println!("{l}");
        }
    }
    println!(
        "wrote {} ({} rows), db.md; exo logs in {}, linux logs in {}",
        out.join("db.csv").display(),
        rows.len(),
        work.display(),
        linux_work.display()
    );
    if checks.iter().any(|c| !c.0) {
        bail!("the exo device cross-check failed (see db.md)");
    }
    Ok(())
}

/// One Linux libdb pmem row timed by eval-bench's own clock in the icount
/// pass: (medium, durability, mean, p50, p99) instructions per op.
type PhaseTimed = (String, String, f64, f64, f64);

/// Linux libdb's pmem rows timed by eval-bench itself in the icount pass:
/// under `-icount shift=0` its `CLOCK_MONOTONIC` is the TSC at 1000 MHz
/// (one tick per instruction), and on pmem nothing halts during the
/// measured phase, so 1e9 / ops/s is the guest's instructions per op over
/// the phase alone — exo's method (TSC over the phase) — and p50/p99 are
/// per commit. The differential column (200-op minus 1-op totals) stays
/// as it was; on these rows its start-up noise (±1 M instructions) can
/// exceed the signal (eval/DB.md, "the size-class heap").
fn linux_phase_timed(lm: &linux::Measured) -> Vec<PhaseTimed> {
    let cols = bench_columns();
    let mut out = vec![];
    for p in &lm.pairs {
        let run = &lm.runs[p.measured];
        if run.engine != "libdb" || !(run.medium == "pmem" || run.medium == "pmem-raw") {
            continue;
        }
        let Some(csv) = lm.icount.rows.get(p.measured).and_then(|o| o.csv.as_ref()) else {
            continue;
        };
        out.extend(phase_timed_of(&cols, csv));
    }
    out
}

fn bench_columns() -> Vec<String> {
    eval::results::COLUMNS.iter().map(|c| c.to_string()).collect()
}

/// One eval-bench row (its CSV line) as instructions per op, if it parses
/// and has a rate.
fn phase_timed_of(cols: &[String], csv: &str) -> Option<PhaseTimed> {
    let r = eval::results::parse_row(cols, csv).ok()?;
    (r.ops_per_sec > 0.0).then(|| (r.medium, r.durability, 1e9 / r.ops_per_sec, r.p50_us * 1e3, r.p99_us * 1e3))
}

/// The rows of [`linux_phase_timed`] beside exo's `pmem` instructions per
/// commit of the same durability, with the ratio exo / Linux.
fn phase_timed_verdict(exo: &[eval::results::Row], linux: &[PhaseTimed]) -> String {
    let parts: Vec<String> = linux
        .iter()
        .map(|(medium, durability, mean, p50, p99)| {
            let e = exo
                .iter()
                .find(|r| r.medium == "pmem" && r.workload == "commit" && r.durability == *durability)
                .and_then(|r| r.guest_instructions_per_op);
            let vs = e.map_or(String::new(), |e| format!(", exo pmem {e:.0} = {:.2}x", e / mean));
            format!("{medium} {durability}: mean {mean:.0}, p50 {p50:.0}, p99 {p99:.0}{vs}")
        })
        .collect();
    if parts.is_empty() {
        "no libdb pmem rows in the icount pass".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod phase_timed_tests {
    use super::*;

    #[test]
    fn an_icount_pass_row_is_its_phase_time_per_op_and_sits_beside_exo() {
        // A real row of the icount pass (ext4-DAX, sync, 200 commits).
        let csv = "linux-guest,libdb,pmem,commit,100,sync,200,429063.933,2.098,2.108,0,0.005,0,1,,,,";
        let (medium, durability, mean, p50, p99) = phase_timed_of(&bench_columns(), csv).unwrap();
        assert_eq!((medium.as_str(), durability.as_str()), ("pmem", "sync"));
        assert_eq!((mean.round(), p50.round(), p99.round()), (2331.0, 2098.0, 2108.0));
        assert!(phase_timed_of(&bench_columns(), "not,a,row").is_none());
        let exo = eval::results::Row {
            system: "exo".into(),
            medium: "pmem".into(),
            workload: "commit".into(),
            durability: "sync".into(),
            guest_instructions_per_op: Some(1516.0),
            ..Default::default()
        };
        let v = phase_timed_verdict(&[exo], &[(medium, durability, mean, p50, p99)]);
        assert_eq!(v, "pmem sync: mean 2331, p50 2098, p99 2108, exo pmem 1516 = 0.65x");
        assert_eq!(phase_timed_verdict(&[], &[]), "no libdb pmem rows in the icount pass");
    }
}
