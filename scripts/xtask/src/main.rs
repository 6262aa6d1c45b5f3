//! `cargo xtask`: the project's single entry point. Builds the kernel and
//! userspace, boots them on the standard QEMU machine, runs the tests and
//! the evaluation. Every external command is printed (`$ ...`) before it
//! runs. See README.md for usage.

mod accel;
mod bad_elf;
mod blkdebug;
mod build;
mod cargo_output;
mod cli;
mod cmd;
mod dummy_guest;
mod eval;
mod image;
mod kernel_b;
mod machine;
mod outcome;
mod powerfail;
mod qemu_tests;
mod run_cmd;
mod runner;
mod selftest;
mod setup;
mod test_cmd;
#[cfg(test)]
mod tiers;
mod workspace;

use anyhow::{bail, Result};
use cli::Cmd;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match real_main(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn real_main(args: &[String]) -> Result<i32> {
    match cli::parse(args)? {
        Cmd::Help => print!("{}", cli::usage()),
        Cmd::Setup => {
            setup::ensure_all()?;
            setup::ensure_boot_media_tools()?;
            println!("setup: everything is installed");
        }
        Cmd::Build => {
            let ws = workspace::Workspace::load()?;
            setup::ensure_rust_target()?;
            let arts = build::build_all(&ws)?;
            println!("kernel:     {}", arts.kernel.display());
            println!("boot image: {} ({} programs, init first)", arts.system_image.display(), arts.programs.len());
            println!("test image: {} (the test root, testinit, as init)", arts.boot_image.display());
        }
        Cmd::Run(opts) => run_cmd::main(&opts)?,
        Cmd::Test(opts) => {
            let tally = test_cmd::main(&opts);
            // Nothing may follow the summary line.
            println!("{}", tally.summary_line());
            return Ok(if tally.failed == 0 { 0 } else { 1 });
        }
        Cmd::SelfTest => {
            setup::ensure_qemu()?;
            let ws = workspace::Workspace::load()?;
            let results = selftest::run_all(&ws.images_dir(), &ws.qemu_log_dir().join("selftest"))?;
            let bad = results.iter().filter(|r| !r.2).count();
            if bad > 0 {
                bail!("{bad} of {} selftest cases ended unexpectedly", results.len());
            }
            println!("selftest: all {} cases ended as expected", results.len());
        }
        Cmd::Eval(args) => eval::main(&args)?,
        Cmd::Image { cmdline, timeout_secs } => {
            let (disk, iso) = image::main(&cmdline, timeout_secs)?;
            println!("disk image: {} (BIOS and UEFI; write it to a USB stick, see docs/HARDWARE.md)", disk.display());
            println!("ISO:        {} (BIOS and UEFI, CD or USB stick)", iso.display());
            println!("kernel command line: `{cmdline}` (press `e` in the GRUB menu to edit it)");
        }
        Cmd::Powerfail { images, seed, modes } => {
            let seed = seed.unwrap_or_else(powerfail::clock_seed);
            let failed = powerfail::main(images, seed, &modes)?;
            return Ok(i32::from(failed > 0));
        }
    }
    Ok(0)
}
