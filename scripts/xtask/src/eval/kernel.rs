//! `cargo xtask eval --kernel`: what crossing the exokernel costs. Two
//! boots of init's `microbench` on the standard machine, one under
//! `-icount shift=0` (instructions), one plain TCG (time); `eval::kernel`
//! reads their lines and writes kernel.{md,csv}.

use crate::build;
use crate::machine::{self, Machine};
use crate::outcome::Expect;
use crate::runner::{self, RunOptions};
use crate::setup;
use crate::workspace::Workspace;
use anyhow::{bail, Result};
use eval::kernel::{parse, report};
use std::time::Duration;

fn boot(ws: &Workspace, arts: &build::Artifacts, icount: bool) -> Result<String> {
    let _images = machine::lock_images(&ws.images_dir())?;
    let m = Machine::new(ws.images_dir())
        .kernel(&arts.kernel)
        .initrd(&arts.boot_image)
        .append("test=microbench")
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

pub fn run() -> Result<()> {
    setup::ensure_all()?;
    let ws = Workspace::load()?;
    let arts = build::build_all(&ws)?;
    println!("eval --kernel: 1/2 boot under -icount shift=0 (instructions)");
    let (instr, _) = parse(&boot(&ws, &arts, true)?)?;
    println!("eval --kernel: 2/2 boot under plain TCG (time)");
    let (time, tsc) = parse(&boot(&ws, &arts, false)?)?;
    let (md, csv, console) = report(&instr, &time, tsc);
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
