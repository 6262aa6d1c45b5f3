//! Command-line parsing for `cargo xtask`, with `clap` (derive): the
//! parser produces the option structs the commands take ([`RunOpts`],
//! [`TestOpts`]); rules clap cannot express (which flags exclude which,
//! variant names) are checked after it, with errors that name the flag.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::time::Duration;

/// Which accelerator the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccelChoice {
    Tcg,
    Kvm,
    /// Try KVM, fall back to TCG.
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOpts {
    pub batch: bool,
    pub accel: AccelChoice,
    pub gdb: bool,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOpts {
    pub host: bool,
    pub qemu: bool,
    pub accel: AccelChoice,
    pub filters: Vec<String>,
    /// A machine variant's name (`machine::VARIANTS`); the standard machine if `None`.
    pub machine: Option<String>,
    /// Every QEMU test on every variant (`--machine-matrix`).
    pub matrix: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Help,
    Setup,
    Build,
    Run(RunOpts),
    Test(TestOpts),
    SelfTest,
    /// Arguments after `eval`, parsed by `eval::main`.
    Eval(Vec<String>),
    /// `image [--cmdline C] [--timeout S]`: boot media (disk image, ISO).
    Image {
        cmdline: String,
        timeout_secs: u32,
    },
    /// `powerfail --images N --seed S [--modes TAG,...]`.
    Powerfail {
        images: usize,
        seed: Option<u64>,
        modes: Vec<String>,
    },
}

/// The build/run/test orchestrator of the exokernel (every command it runs
/// is printed first as `$ ...`).
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about, disable_version_flag = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Install what is missing (Rust target, QEMU, GRUB/xorriso/mtools/OVMF for the boot media).
    Setup,
    /// Build kernel + userspace and pack the boot image.
    Build,
    /// Build and boot the standard machine, serial on stdio.
    Run {
        /// Run the demo unattended; exit 0 iff the guest passes.
        #[arg(long)]
        batch: bool,
        /// Accelerator (auto probes KVM and falls back to TCG).
        #[arg(long, value_enum, default_value = "tcg")]
        accel: AccelChoice,
        /// Wait for gdb on :1234 (adds -s -S).
        #[arg(long)]
        gdb: bool,
        /// Kill QEMU after SECS (default: none, 120 with --batch).
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        timeout: Option<Duration>,
    },
    /// Host tests + QEMU integration tests; the last line is `N passed, M failed`.
    Test {
        /// Only `cargo test --workspace`.
        #[arg(long)]
        host_only: bool,
        /// Only the QEMU integration tests.
        #[arg(long)]
        qemu_only: bool,
        /// Accelerator for the QEMU tests.
        #[arg(long, value_enum, default_value = "tcg")]
        accel: AccelChoice,
        /// Boot the QEMU tests on a machine variant (machine.rs VARIANTS).
        #[arg(long, value_name = "NAME")]
        machine: Option<String>,
        /// Run the QEMU tests on every machine variant; print a variant x test table.
        #[arg(long)]
        machine_matrix: bool,
        /// Run only tests whose name contains FILTER.
        #[arg(value_name = "FILTER")]
        filters: Vec<String>,
    },
    /// Boot generated dummy guests to check QEMU + harness.
    Selftest,
    /// Boot media for real machines: a disk image (BIOS and UEFI, through
    /// GRUB) and an ISO; see docs/HARDWARE.md.
    Image {
        /// The kernel command line of the GRUB menu entry (editable there).
        #[arg(long, default_value = "demo")]
        cmdline: String,
        /// Seconds GRUB shows its menu before booting.
        #[arg(long, default_value_t = 5)]
        timeout: u32,
    },
    /// The long power-fail pass: the database commits behind a write log,
    /// then the medium is rebuilt at cut points, booted and recovered.
    Powerfail {
        /// How many rebuilt media to boot, spread over the modes.
        #[arg(long, default_value_t = 2000)]
        images: usize,
        /// Seed of the cut points (default: from the clock, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Only the modes whose tag contains one of these (e.g. `vf,fs`;
        /// default: all).
        #[arg(long, value_delimiter = ',')]
        modes: Vec<String>,
    },
    /// Evaluation (see eval/README.md): [--host] [--linux] [--drivers [--smp 2]] [--kernel] [--db [--smp N]] [--fs] [--recovery] [--readscale] [--quick].
    Eval {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<String>,
    },
}

/// The usage text (`cargo xtask help`).
pub fn usage() -> String {
    use clap::CommandFactory;
    Cli::command().render_long_help().to_string()
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("takes seconds, not `{s}`"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("must be a positive number of seconds, not `{s}`"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn parse(args: &[String]) -> Result<Cmd> {
    if args.is_empty() || matches!(args[0].as_str(), "help" | "-h" | "--help") {
        return Ok(Cmd::Help);
    }
    let argv = std::iter::once("cargo xtask".to_string()).chain(args.iter().cloned());
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            // `cargo xtask test --help` and the like: help is not an error.
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            let text = e.render().to_string();
            bail!("{}", text.trim_end().trim_start_matches("error: "))
        }
    };
    Ok(match cli.command {
        None => Cmd::Help,
        Some(Command::Setup) => Cmd::Setup,
        Some(Command::Build) => Cmd::Build,
        Some(Command::Selftest) => Cmd::SelfTest,
        Some(Command::Image { cmdline, timeout }) => Cmd::Image { cmdline, timeout_secs: timeout },
        Some(Command::Powerfail { images, seed, modes }) => {
            if images == 0 {
                bail!("--images must be at least 1");
            }
            Cmd::Powerfail { images, seed, modes }
        }
        Some(Command::Eval { args }) => Cmd::Eval(args),
        Some(Command::Run { batch, accel, gdb, timeout }) => {
            if batch && gdb {
                bail!("--batch and --gdb do not mix: batch mode must not wait for a debugger");
            }
            Cmd::Run(RunOpts { batch, accel, gdb, timeout })
        }
        Some(Command::Test { host_only, qemu_only, accel, machine, machine_matrix, filters }) => {
            if host_only && qemu_only {
                bail!("--host-only and --qemu-only exclude each other");
            }
            if let Some(name) = &machine {
                if crate::machine::variant_named(name).is_none() {
                    let names: Vec<_> = crate::machine::VARIANTS.iter().map(|v| v.name).collect();
                    bail!("no machine variant `{name}`; there are: {}", names.join(", "));
                }
            }
            if machine_matrix && (machine.is_some() || host_only) {
                bail!("--machine-matrix runs QEMU tests on every variant: not with --machine or --host-only");
            }
            Cmd::Test(TestOpts { host: !qemu_only, qemu: !host_only, accel, filters, machine, matrix: machine_matrix })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cmd> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn no_args_is_help() {
        assert_eq!(p(&[]).unwrap(), Cmd::Help);
        assert_eq!(p(&["--help"]).unwrap(), Cmd::Help);
    }

    #[test]
    fn run_defaults_to_interactive_tcg() {
        let Cmd::Run(o) = p(&["run"]).unwrap() else { panic!() };
        assert_eq!(o, RunOpts { batch: false, accel: AccelChoice::Tcg, gdb: false, timeout: None });
    }

    #[test]
    fn run_parses_every_flag() {
        let Cmd::Run(o) = p(&["run", "--batch", "--accel", "auto", "--timeout", "2.5"]).unwrap() else { panic!() };
        assert!(o.batch);
        assert_eq!(o.accel, AccelChoice::Auto);
        assert_eq!(o.timeout, Some(Duration::from_millis(2500)));
        let Cmd::Run(o) = p(&["run", "--gdb", "--accel", "kvm"]).unwrap() else { panic!() };
        assert!(o.gdb && o.accel == AccelChoice::Kvm);
    }

    #[test]
    fn run_rejects_bad_input() {
        assert!(p(&["run", "--accel"]).is_err());
        assert!(p(&["run", "--accel", "hvf"]).is_err());
        assert!(p(&["run", "--timeout", "0"]).is_err());
        assert!(p(&["run", "--timeout", "soon"]).is_err());
        assert!(p(&["run", "--batch", "--gdb"]).is_err());
        assert!(p(&["run", "extra"]).is_err());
    }

    #[test]
    fn test_filters_and_subsets() {
        let Cmd::Test(o) = p(&["test"]).unwrap() else { panic!() };
        assert!(o.host && o.qemu && o.filters.is_empty());
        let Cmd::Test(o) = p(&["test", "--qemu-only", "isolation", "bad_elf"]).unwrap() else { panic!() };
        assert!(!o.host && o.qemu);
        assert_eq!(o.filters, vec!["isolation", "bad_elf"]);
        let Cmd::Test(o) = p(&["test", "--host-only"]).unwrap() else { panic!() };
        assert!(o.host && !o.qemu);
        assert!(p(&["test", "--host-only", "--qemu-only"]).is_err());
        assert!(p(&["test", "--verbose"]).is_err());
        let Cmd::Test(o) = p(&["test", "--machine", "ram-2g"]).unwrap() else { panic!() };
        assert_eq!(o.machine.as_deref(), Some("ram-2g"));
        assert!(p(&["test", "--machine", "ram-3t"]).is_err());
        let Cmd::Test(o) = p(&["test", "--qemu-only", "--machine-matrix", "boot"]).unwrap() else { panic!() };
        assert!(o.matrix && o.machine.is_none() && o.filters == ["boot"]);
        assert!(p(&["test", "--machine-matrix", "--machine", "smp-2"]).is_err());
        assert!(p(&["test", "--machine-matrix", "--host-only"]).is_err());
        assert!(p(&["test", "--machine"]).is_err());
    }

    #[test]
    fn eval_passes_args_through_and_unknown_fails() {
        assert_eq!(p(&["eval", "--quick"]).unwrap(), Cmd::Eval(vec!["--quick".into()]));
        assert!(p(&["frobnicate"]).is_err());
        assert!(p(&["setup", "now"]).is_err());
    }

    #[test]
    fn image_takes_a_command_line_and_a_menu_timeout() {
        assert_eq!(p(&["image"]).unwrap(), Cmd::Image { cmdline: "demo".into(), timeout_secs: 5 });
        let c = p(&["image", "--cmdline", "test=boot_to_init", "--timeout", "0"]).unwrap();
        assert_eq!(c, Cmd::Image { cmdline: "test=boot_to_init".into(), timeout_secs: 0 });
        assert!(p(&["image", "--timeout", "soon"]).is_err());
    }
}
