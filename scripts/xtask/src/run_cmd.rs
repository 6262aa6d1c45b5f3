//! `cargo xtask run`: build and boot the standard machine with the demo.

use crate::cli::RunOpts;
use crate::machine::{self, Machine, Serial};
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
        .initrd(&arts.system_image)
        .append(kernel_cmdline(opts.batch))
        .serial(if opts.batch { Serial::Stdio } else { Serial::StdioWithMonitor })
        .gdb(opts.gdb);
    if !opts.batch {
        println!("serial console below; quit QEMU with Ctrl-A X (Ctrl-A C: QEMU monitor)");
    }
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
    let _images = machine::lock_images(&ws.images_dir())?;
    let report = runner::run(machine.command()?, &run_opts, Expect::ExitOnly)?;
    // Both modes succeed when the guest powered off through isa-debug-exit
    // with the success code. Interactively, quitting with Ctrl-A X (QEMU
    // status 0) is also fine; in batch mode status 0 means a reset or
    // triple fault and is a failure.
    let secs = report.elapsed.as_secs_f64();
    if !opts.batch && report.status == Some(0) {
        println!(
            "\nQEMU quit after {secs:.2} s with status 0 (Ctrl-A X, or a guest reset) (serial log: {})",
            report.log_path.display()
        );
        return Ok(());
    }
    println!("\nQEMU ended after {secs:.2} s: {} (serial log: {})", report.outcome, report.log_path.display());
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
