//! `cargo xtask eval --recovery [--quick]`: how long libdb's `open` takes
//! after a power cut, by database size and log tail, on NVMe and on
//! persistent memory (eval/RECOVERY.md). This file builds the media (with
//! `eval-recovery-image`, libdb's host build) and boots the recovery
//! machine (`machine::recovery_machine`: the standard machine with a
//! 1.125 GiB NVMe image and a 1.125 GiB NVDIMM of its own); what the boots
//! printed is read and reported by `eval::recovery`.
//!
//! Per size and medium: the base database is built once; per tail, a
//! copy of it gets the tail and is booted twice (`-icount shift=0`, then
//! plain TCG), each boot opening it with `test=recovery_<medium>`. kvdb's
//! open writes nothing on these media (nothing to erase, one barrier), so
//! both boots see the same bytes. Writes eval/results/latest/recovery.{csv,md,svg}.

use crate::build;
use crate::machine::{self, RECOVERY_MEDIUM_BYTES};
use crate::outcome::Expect;
use crate::runner::{self, RunOptions};
use crate::workspace::Workspace;
use crate::{cmd, setup};
use anyhow::{bail, Context, Result};
use eval::recovery::{self as report, Point, MEDIA};
use eval_lines::recovery::{write_align, RecoveryLine, Tail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Where the media live while the run lasts: RAM (`/dev/shm`) when there
/// is one (a 1.125 GiB image is copied per tail; the host's disk is shared).
fn work_dir(ws: &Workspace) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join(format!("exo-recovery-{}", std::process::id()))
    } else {
        ws.root.join(".cache/recovery-run")
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `eval-recovery-image ARGS`, and its `keys= tail_records= db_pages=` line.
fn image(tool: &Path, args: &[String]) -> Result<(u64, u64, u64)> {
    let out = cmd::output(Command::new(tool).args(args))?;
    let field = |k: &str| -> Result<u64> {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("eval-recovery-image printed no {k}N: {out:?}"))
    };
    Ok((field("keys=")?, field("tail_records=")?, field("db_pages=")?))
}

#[allow(clippy::too_many_arguments)]
fn boot(
    arts: &build::Artifacts,
    images: &Path,
    nvme: &Path,
    nvdimm: &Path,
    log_dir: &Path,
    medium: &str,
    recovery_arg: &str,
    icount: bool,
) -> Result<(String, f64)> {
    let test = format!("recovery_{medium}");
    let m = machine::recovery_machine(images, nvme, nvdimm)
        .kernel(&arts.kernel)
        .initrd(&arts.boot_image)
        .append(super::exo_cmdline(format!("test={test} recovery={recovery_arg}"), icount))
        .icount(icount);
    let opts = RunOptions {
        name: format!("{test}{}", if icount { "-icount" } else { "" }),
        log_dir: log_dir.to_path_buf(),
        timeout: Some(Duration::from_secs(1200)),
        echo: false,
        interactive: false,
    };
    let r = runner::run(m.command()?, &opts, Expect::PassLine(&test))?;
    if !r.outcome.passed() {
        bail!("recovery boot {test} recovery={recovery_arg} failed: {} (log {})", r.outcome, r.log_path.display());
    }
    Ok((r.serial, r.elapsed.as_secs_f64()))
}

pub fn run(quick: bool) -> Result<()> {
    setup::ensure_all()?;
    let ws = Workspace::load()?;
    let started = Instant::now();
    let load_at_start = super::host_load();
    let arts = build::build_all(&ws)?;
    let mut b = Command::new("cargo");
    b.current_dir(&ws.root).args(["build", "--release", "-p", "eval-recovery", "--bin", "eval-recovery-image"]);
    cmd::run(&mut b).context("building eval-recovery-image")?;
    let tool = ws.target_dir.join("release/eval-recovery-image");

    let work = work_dir(&ws);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let _cleanup = RemoveOnDrop(work.clone());
    let images = work.join("images");
    let log_dir = ws.root.join(".cache/recovery-run");
    std::fs::create_dir_all(&log_dir)?;
    let (nvme, nvdimm) = (work.join("recovery-nvme.img"), work.join("recovery-pmem.img"));
    let medium_mib = RECOVERY_MEDIUM_BYTES / MIB;
    let sizes = report::sizes(quick);
    println!(
        "eval --recovery{}: sizes {sizes:?} MiB x tails empty/half/full x {MEDIA:?}, two boots each (icount, TCG); media in {}",
        if quick { " --quick" } else { "" },
        work.display()
    );
    let _lock = machine::lock_images(&images)?;
    let (mut points, mut boot_secs, mut build_secs) = (vec![], vec![], 0.0);
    for &size in sizes {
        for medium in MEDIA {
            let base = work.join(format!("base-{medium}.img"));
            let t = Instant::now();
            let (keys, _, base_pages) =
                image(&tool, &["base".into(), medium.into(), size.to_string(), medium_mib.to_string(), path(&base)])?;
            build_secs += t.elapsed().as_secs_f64();
            println!(
                "-- {medium} {size} MiB: base of {keys} keys, {base_pages} pages ({:.1} s)",
                t.elapsed().as_secs_f64()
            );
            let target = if medium == "nvme" { &nvme } else { &nvdimm };
            for tail in Tail::ALL {
                let t = Instant::now();
                std::fs::copy(&base, target).with_context(|| format!("copying {}", base.display()))?;
                let want = tail.records(write_align(medium).context("medium without a write alignment")?);
                let mut pages = base_pages;
                if want > 0 {
                    let (_, got, p) = image(
                        &tool,
                        &[
                            "tail".into(),
                            medium.into(),
                            keys.to_string(),
                            want.to_string(),
                            medium_mib.to_string(),
                            path(target),
                        ],
                    )?;
                    if got != want {
                        bail!("eval-recovery-image committed {got} tail records, asked for {want}");
                    }
                    pages = p;
                }
                build_secs += t.elapsed().as_secs_f64();
                // The guest gets what the database occupies, rounded up to
                // MiB, plus one (its grant or window; the rest stays unused).
                let guest_mib = (pages * 4096).div_ceil(MIB) + 1;
                if guest_mib > medium_mib {
                    bail!("a {size} MiB database takes {guest_mib} MiB, more than the {medium_mib} MiB medium");
                }
                let arg = format!("{keys},{want},{guest_mib}");
                let mut lines: Vec<RecoveryLine> = vec![];
                for icount in [true, false] {
                    let (serial, secs) = boot(&arts, &images, &nvme, &nvdimm, &log_dir, medium, &arg, icount)?;
                    boot_secs.push(secs);
                    let l = report::parse_boot(&serial, medium, keys, want).with_context(|| {
                        format!("recovery boot {medium} {size} MiB tail {} (icount {icount})", tail.name())
                    })?;
                    lines.push(l);
                }
                let timed = lines.pop().context("no timed boot")?;
                let counted = lines.pop().context("no icount boot")?;
                let p = Point { medium: medium.into(), size_mib: size, tail, timed, counted };
                println!(
                    "   {medium} {size:>5} MiB tail {:<5} ({want:>5} records): {:>9.2} ms TCG, {:>12} instructions, {} KiB read{}",
                    tail.name(),
                    p.tcg_ms(),
                    p.instructions(),
                    p.timed.storage_bytes_read / 1024,
                    p.timed.device_read_cmds.map(|c| format!(", {c} device reads")).unwrap_or_default()
                );
                points.push(p);
            }
            std::fs::remove_file(&base)?;
        }
    }
    let git =
        cmd::output(Command::new("git").args(["-C", &ws.root.to_string_lossy(), "describe", "--always", "--dirty"]))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("unknown ({e:#})"));
    let qemu = cmd::output(Command::new(machine::QEMU).arg("--version"))?.lines().next().unwrap_or("").to_string();
    let env = vec![
        ("commit".to_string(), git),
        ("qemu".to_string(), qemu),
        ("host load at start".to_string(), load_at_start),
        (
            "machine".to_string(),
            format!("the standard machine (TCG, 1 vCPU, 512 MiB) with its NVMe namespace and NVDIMM replaced by {medium_mib} MiB media of its own (`machine::recovery_machine`); NVMe 512-byte blocks through `nvmed serve`'s block service (1 MiB data area); the NVDIMM moved into kvdb page by page"),
        ),
        ("media built on the host in".to_string(), format!("{build_secs:.0} s (eval-recovery-image, release)")),
        (
            "boots".to_string(),
            format!(
                "{} boots, {:.0} s in all (longest {:.0} s)",
                boot_secs.len(),
                boot_secs.iter().sum::<f64>(),
                boot_secs.iter().cloned().fold(0.0, f64::max)
            ),
        ),
        ("total run time".to_string(), format!("{:.0} s", started.elapsed().as_secs_f64())),
    ];
    let out = ws.root.join("eval/results/latest");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("recovery.csv"), report::csv(&points))?;
    std::fs::write(out.join("recovery.md"), report::markdown(&points, &env))?;
    report::plot(&points, &out.join("recovery.svg")).map_err(anyhow::Error::msg)?;
    for m in MEDIA {
        if let Some((ms, ok)) = report::target(&points, m) {
            println!("{m}: 1 GiB, full log: {ms:.2} ms TCG ({})", if ok { "target met" } else { "target NOT met" });
        }
    }
    println!(
        "wrote {} and recovery.md, recovery.svg; boot logs in {}",
        out.join("recovery.csv").display(),
        log_dir.display()
    );
    Ok(())
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
