//! `cargo xtask eval --kernel`: what crossing the exokernel costs, beside
//! what Linux's counterparts cost on the same machine. Two boots of init's
//! `microbench` on the standard machine, one under `-icount shift=0`
//! (instructions), one plain TCG (time); then two boots of the Debian
//! guest of `eval --linux` running `eval-bench kernel` the same two ways.
//! `eval::kernel` reads their lines and writes kernel.{md,csv}.

use super::linux::{guest, session};
use crate::build;
use crate::machine::{self, Machine, Serial};
use crate::outcome::Expect;
use crate::runner::{self, KillOnDrop, RunOptions};
use crate::setup;
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};
use eval::kernel::{parse, parse_linux, report, Linux};
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn boot(ws: &Workspace, arts: &build::Artifacts, icount: bool) -> Result<String> {
    let _images = machine::lock_images(&ws.images_dir())?;
    let m = Machine::new(ws.images_dir())
        .kernel(&arts.kernel)
        .initrd(&arts.boot_image)
        .append(super::exo_cmdline("test=microbench".into(), icount))
        .icount(icount);
    let opts = RunOptions {
        name: if icount { "microbench-icount".into() } else { "microbench".into() },
        log_dir: ws.qemu_log_dir(),
        timeout: Some(Duration::from_secs(300)),
        echo: false,
        interactive: false,
    };
    let r = runner::run(m.command()?, &opts, Expect::PassLine("microbench"))?;
    if !r.outcome.passed() {
        bail!("microbench run failed: {} (log {})", r.outcome, r.log_path.display());
    }
    Ok(r.serial)
}

/// One boot of the Linux guest running `eval-bench kernel`: its serial
/// output (the guest powers off when done).
fn linux_boot(
    vmlinuz: &std::path::Path,
    initrd: &std::path::Path,
    work: &std::path::Path,
    icount: bool,
) -> Result<String> {
    let name = if icount { "linux-icount" } else { "linux-tcg" };
    let images = work.join(format!("images-{name}"));
    let _ = std::fs::remove_dir_all(&images);
    let mut cmd = Machine::new(&images)
        .kernel(vmlinuz)
        .initrd(initrd)
        .append(session::LINUX_CMDLINE)
        .serial(Serial::Stdio)
        .icount(icount)
        .command()?;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    crate::cmd::announce(&cmd);
    let mut child = KillOnDrop(cmd.spawn().context("starting QEMU")?);
    let mut stdout = child.0.stdout.take().context("QEMU stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    while child.0.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.terminate();
            bail!("the Linux guest ({name}) did not power off within 600 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let serial = reader.join().unwrap_or_default();
    let log = work.join(format!("{name}.serial.log"));
    std::fs::write(&log, &serial)?;
    if let Some(l) = serial.lines().find(|l| l.contains("eval-bench kernel failed")) {
        bail!("{} (log {})", l.trim(), log.display());
    }
    Ok(serial)
}

pub fn run() -> Result<()> {
    setup::ensure_all()?;
    let ws = Workspace::load()?;
    let started = Instant::now();
    let arts = build::build_all(&ws)?;
    println!("eval --kernel: 1/4 exokernel boot under -icount shift=0 (instructions)");
    let (instr, _) = parse(&boot(&ws, &arts, true)?)?;
    println!("eval --kernel: 2/4 exokernel boot under plain TCG (time)");
    let (time, tsc) = parse(&boot(&ws, &arts, false)?)?;

    let work = ws.root.join(".cache/kernel-run");
    std::fs::create_dir_all(&work)?;
    let mut g = guest::prepare(&ws.root, &ws.target_dir)?;
    let init = work.join("guest-init");
    std::fs::write(&init, include_str!("kernel/guest-init"))?;
    g.init_script = init;
    // The stripped bench goes to our run dir, not the shared guest cache.
    g.cache = work.clone();
    let initrd = work.join("initramfs-kernel.cpio");
    guest::build_initramfs(&g, "", &initrd)?;
    let linux = {
        let _lock = machine::lock_images(&work)?;
        println!("eval --kernel: 3/4 Linux guest boot under -icount shift=0 (instructions)");
        let icount = parse_linux(&linux_boot(&g.vmlinuz, &initrd, &work, true)?)?;
        println!("eval --kernel: 4/4 Linux guest boot under plain TCG (time)");
        let tcg = parse_linux(&linux_boot(&g.vmlinuz, &initrd, &work, false)?)?;
        Linux { icount, tcg }
    };
    let (mut md, csv, console) = report(&instr, &time, tsc, Some(&linux));
    md.push_str(&format!(
        "\nLinux guest: {}; run took {:.0} s (host load {}).\n",
        g.versions.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        started.elapsed().as_secs_f64(),
        super::host_load()
    ));
    for l in console {
        println!("{l}");
    }
    let dir = ws.root.join("eval/results/latest");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("kernel.md"), md)?;
    std::fs::write(dir.join("kernel.csv"), csv)?;
    println!("wrote {}", dir.join("kernel.md").display());
    Ok(())
}
