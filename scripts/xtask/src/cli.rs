//! Command-line parsing for `cargo xtask` (hand-written: a handful of flags
//! does not justify a parser dependency).

use anyhow::{bail, Context, Result};
use std::time::Duration;

pub const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  setup                 install what is missing (Rust target, QEMU)
  build                 build kernel + userspace and pack the boot image
  run [options]         build and boot the standard machine, serial on stdio
      --batch           run the demo unattended; exit 0 iff the guest passes
      --accel tcg|kvm|auto   accelerator (default tcg; auto probes KVM)
      --gdb             wait for gdb on :1234 (adds -s -S)
      --timeout SECS    kill QEMU after SECS (default: none, 120 with --batch)
  test [options] [FILTER...]   host tests + QEMU integration tests
      --host-only       only `cargo test --workspace`
      --qemu-only       only the QEMU integration tests
      --accel tcg|kvm|auto   accelerator for QEMU tests (default tcg)
      --machine NAME    boot the QEMU tests on a machine variant (see machine.rs VARIANTS)
      --machine-matrix  run the QEMU tests on every machine variant; print a variant x test table
      FILTER            run only tests whose name contains FILTER
  selftest              boot generated dummy guests to check QEMU + harness
  eval [--host] [--linux] [--drivers] [--kernel] [--db] [--quick]   evaluation (see eval/README.md)
";

/// Which accelerator the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    Tcg,
    Kvm,
    /// Try KVM, fall back to TCG.
    Auto,
}

impl AccelChoice {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "tcg" => Ok(Self::Tcg),
            "kvm" => Ok(Self::Kvm),
            "auto" => Ok(Self::Auto),
            _ => bail!("--accel takes tcg, kvm or auto, not `{s}`"),
        }
    }
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
}

pub fn parse(args: &[String]) -> Result<Cmd> {
    let Some((sub, rest)) = args.split_first() else {
        return Ok(Cmd::Help);
    };
    match sub.as_str() {
        "help" | "-h" | "--help" => Ok(Cmd::Help),
        "setup" => no_args("setup", rest).map(|_| Cmd::Setup),
        "build" => no_args("build", rest).map(|_| Cmd::Build),
        "selftest" => no_args("selftest", rest).map(|_| Cmd::SelfTest),
        "run" => parse_run(rest).map(Cmd::Run),
        "test" => parse_test(rest).map(Cmd::Test),
        "eval" => Ok(Cmd::Eval(rest.to_vec())),
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

fn no_args(cmd: &str, rest: &[String]) -> Result<()> {
    if let Some(a) = rest.first() {
        bail!("`{cmd}` takes no arguments (got `{a}`)");
    }
    Ok(())
}

/// Pull the value following `flag`, with an error naming the flag.
fn value<'a>(flag: &str, it: &mut impl Iterator<Item = &'a String>) -> Result<&'a str> {
    it.next()
        .map(String::as_str)
        .with_context(|| format!("{flag} needs a value"))
}

fn parse_secs(s: &str) -> Result<Duration> {
    let secs: f64 = s
        .parse()
        .with_context(|| format!("--timeout takes seconds, not `{s}`"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        bail!("--timeout must be a positive number of seconds, not `{s}`");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_run(rest: &[String]) -> Result<RunOpts> {
    let mut opts = RunOpts {
        batch: false,
        accel: AccelChoice::Tcg,
        gdb: false,
        timeout: None,
    };
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--batch" => opts.batch = true,
            "--gdb" => opts.gdb = true,
            "--accel" => opts.accel = AccelChoice::parse(value("--accel", &mut it)?)?,
            "--timeout" => opts.timeout = Some(parse_secs(value("--timeout", &mut it)?)?),
            other => bail!("`run` does not take `{other}`\n\n{USAGE}"),
        }
    }
    if opts.batch && opts.gdb {
        bail!("--batch and --gdb do not mix: batch mode must not wait for a debugger");
    }
    Ok(opts)
}

fn parse_test(rest: &[String]) -> Result<TestOpts> {
    let mut opts = TestOpts {
        host: true,
        qemu: true,
        accel: AccelChoice::Tcg,
        filters: vec![],
        machine: None,
        matrix: false,
    };
    let (mut host_only, mut qemu_only) = (false, false);
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--host-only" => host_only = true,
            "--qemu-only" => qemu_only = true,
            "--accel" => opts.accel = AccelChoice::parse(value("--accel", &mut it)?)?,
            "--machine" => {
                let name = value("--machine", &mut it)?;
                if crate::machine::variant_named(name).is_none() {
                    let names: Vec<_> = crate::machine::VARIANTS.iter().map(|v| v.name).collect();
                    bail!(
                        "no machine variant `{name}`; there are: {}",
                        names.join(", ")
                    );
                }
                opts.machine = Some(name.to_string());
            }
            "--machine-matrix" => opts.matrix = true,
            flag if flag.starts_with('-') => bail!("`test` does not take `{flag}`\n\n{USAGE}"),
            filter => opts.filters.push(filter.to_string()),
        }
    }
    if host_only && qemu_only {
        bail!("--host-only and --qemu-only exclude each other");
    }
    if opts.matrix && (opts.machine.is_some() || host_only) {
        bail!(
            "--machine-matrix runs QEMU tests on every variant: not with --machine or --host-only"
        );
    }
    opts.host = !qemu_only;
    opts.qemu = !host_only;
    Ok(opts)
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
        let Cmd::Run(o) = p(&["run"]).unwrap() else {
            panic!()
        };
        assert_eq!(
            o,
            RunOpts {
                batch: false,
                accel: AccelChoice::Tcg,
                gdb: false,
                timeout: None
            }
        );
    }

    #[test]
    fn run_parses_every_flag() {
        let Cmd::Run(o) = p(&["run", "--batch", "--accel", "auto", "--timeout", "2.5"]).unwrap()
        else {
            panic!()
        };
        assert!(o.batch);
        assert_eq!(o.accel, AccelChoice::Auto);
        assert_eq!(o.timeout, Some(Duration::from_millis(2500)));
        let Cmd::Run(o) = p(&["run", "--gdb", "--accel", "kvm"]).unwrap() else {
            panic!()
        };
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
        let Cmd::Test(o) = p(&["test"]).unwrap() else {
            panic!()
        };
        assert!(o.host && o.qemu && o.filters.is_empty());
        let Cmd::Test(o) = p(&["test", "--qemu-only", "isolation", "bad_elf"]).unwrap() else {
            panic!()
        };
        assert!(!o.host && o.qemu);
        assert_eq!(o.filters, vec!["isolation", "bad_elf"]);
        let Cmd::Test(o) = p(&["test", "--host-only"]).unwrap() else {
            panic!()
        };
        assert!(o.host && !o.qemu);
        assert!(p(&["test", "--host-only", "--qemu-only"]).is_err());
        assert!(p(&["test", "--verbose"]).is_err());
        let Cmd::Test(o) = p(&["test", "--machine", "ram-2g"]).unwrap() else {
            panic!()
        };
        assert_eq!(o.machine.as_deref(), Some("ram-2g"));
        assert!(p(&["test", "--machine", "ram-3t"]).is_err());
        let Cmd::Test(o) = p(&["test", "--qemu-only", "--machine-matrix", "boot"]).unwrap() else {
            panic!()
        };
        assert!(o.matrix && o.machine.is_none() && o.filters == ["boot"]);
        assert!(p(&["test", "--machine-matrix", "--machine", "smp-2"]).is_err());
        assert!(p(&["test", "--machine-matrix", "--host-only"]).is_err());
        assert!(p(&["test", "--machine"]).is_err());
    }

    #[test]
    fn eval_passes_args_through_and_unknown_fails() {
        assert_eq!(
            p(&["eval", "--quick"]).unwrap(),
            Cmd::Eval(vec!["--quick".into()])
        );
        assert!(p(&["frobnicate"]).is_err());
        assert!(p(&["setup", "now"]).is_err());
    }
}
