//! `cargo xtask run`: build and boot the standard machine with the demo.

use crate::cli::RunOpts;
use crate::machine::Machine;
use crate::outcome::Expect;
use crate::runner::{self, RunOptions};
use crate::workspace::Workspace;
use crate::{accel, build, cmd, setup};
use anyhow::{bail, Result};
use std::process::Command;
use std::time::Duration;

/// Batch runs must end on their own; this bounds a hung one.
const BATCH_DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub fn kernel_cmdline(batch: bool) -> &'static str {
    if batch {
        "demo batch"
    } else {
        "demo"
    }
}

/// The gdb command that attaches to `-s` (port 1234) with symbols.
pub fn gdb_command(kernel: &std::path::Path) -> Command {
    let mut c = Command::new("gdb");
    c.arg(kernel).args(["-ex", "target remote :1234"]);
    c
}

pub fn main(opts: &RunOpts) -> Result<()> {
    setup::ensure_all()?;
    let ws = Workspace::load()?;
    let arts = build::build_all(&ws)?;
    let accel = accel::resolve(opts.accel, &ws.images_dir(), &ws.qemu_log_dir())?;
    println!("accelerator: {accel}");
    let machine = Machine::new(ws.images_dir())
        .accel(accel)
        .kernel(&arts.kernel)
        .initrd(&arts.boot_image)
        .append(kernel_cmdline(opts.batch))
        .gdb(opts.gdb);
    if opts.gdb {
        // Relative to the current directory when possible: shorter to type.
        let cwd = std::env::current_dir().unwrap_or_default();
        let kernel = arts.kernel.strip_prefix(&cwd).unwrap_or(&arts.kernel);
        println!("QEMU waits for gdb; in another terminal run:\n  {}", cmd::display(&gdb_command(kernel)));
    }
    let timeout = opts.timeout.or(opts.batch.then_some(BATCH_DEFAULT_TIMEOUT));
    let run_opts = RunOptions {
        name: if opts.batch { "run-batch".into() } else { "run".into() },
        log_dir: ws.qemu_log_dir(),
        timeout,
        echo: true,
        interactive: !opts.batch,
    };
    let report = runner::run(machine.command()?, &run_opts, Expect::ExitOnly)?;
    println!("\nQEMU ended after {:.2} s: {} (serial log: {})", report.elapsed.as_secs_f64(), report.outcome, report.log_path.display());
    // Both modes succeed only when the guest powered off through
    // isa-debug-exit with the success code; a panic, reset or QEMU error is
    // reported as a failure (Ctrl-C ends xtask together with QEMU).
    if !report.outcome.passed() {
        bail!("{} run did not end in success: {}", if opts.batch { "batch" } else { "interactive" }, report.outcome);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_and_gdb_hint() {
        assert_eq!(kernel_cmdline(false), "demo");
        assert_eq!(kernel_cmdline(true), "demo batch");
        let k = std::path::Path::new("target/x86_64-unknown-none/release/kernel");
        assert_eq!(
            cmd::display(&gdb_command(k)),
            "gdb target/x86_64-unknown-none/release/kernel -ex 'target remote :1234'"
        );
    }
}
