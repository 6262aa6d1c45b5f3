//! `cargo xtask test`: host tests (`cargo test --workspace`) and then the
//! QEMU integration tests, one at a time (the machine has 2 cores). The
//! last line printed is always `N passed, M failed`.

use crate::build::{self, Artifacts};
use crate::cli::TestOpts;
use crate::machine::{self, Accel, Machine};
use crate::outcome::Expect;
use crate::qemu_tests::{self, QemuTest};
use crate::runner::{self, RunOptions, RunReport};
use crate::workspace::Workspace;
use crate::{accel, cmd, libtest, setup};
use anyhow::{Context, Result};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Serial lines shown for a failing QEMU test.
const TAIL_LINES: usize = 30;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
}

impl Tally {
    pub fn summary_line(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }
}

/// Runs the selected tests; returns the tally (the caller prints the
/// summary line last and sets the exit status).
pub fn main(opts: &TestOpts) -> Tally {
    let mut tally = Tally::default();
    if opts.host {
        host_tests(&opts.filters, &mut tally);
    }
    if opts.qemu {
        qemu_phase(opts, &mut tally);
    }
    tally
}

fn host_tests(filters: &[String], tally: &mut Tally) {
    let whole = match cargo_test(&["--workspace"], filters) {
        Ok(r) => r,
        Err(e) => {
            println!("host tests ... FAILED ({e:#})");
            tally.failed += 1;
            return;
        }
    };
    if !(whole.compile_errors() > 0 && whole.summary.binaries == 0) {
        account("host tests", &whole, tally);
        return;
    }
    // cargo runs nothing when any test target fails to compile; one broken
    // crate must not hide every other crate's results.
    println!(
        "host tests: the workspace does not build as a whole; testing each package on its own"
    );
    let members = match Workspace::load() {
        Ok(ws) => ws.members,
        Err(e) => {
            println!("host tests ... FAILED (listing packages: {e:#})");
            tally.failed += 1;
            return;
        }
    };
    for package in &members {
        match cargo_test(&["-p", package], filters) {
            Ok(r) => account(&format!("host tests of {package}"), &r, tally),
            Err(e) => {
                println!("host tests of {package} ... FAILED ({e:#})");
                tally.failed += 1;
            }
        }
    }
}

/// One `cargo test` run, parsed.
struct CargoTest {
    summary: libtest::Summary,
    stdout: String,
    /// From cargo's stderr: targets that failed outside libtest's lines.
    targets: Vec<String>,
    status: std::process::ExitStatus,
}

impl CargoTest {
    fn compile_errors(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.ends_with("(compile error)"))
            .count()
    }
}

fn cargo_test(selection: &[&str], filters: &[String]) -> Result<CargoTest> {
    let mut c = Command::new("cargo");
    c.arg("test").args(selection).arg("--no-fail-fast");
    if !filters.is_empty() {
        c.arg("--").args(filters);
    }
    cmd::announce(&c);
    // stdout is parsed (libtest's lines); stderr is shown live and kept for
    // cargo's compile errors and its `error: N targets failed:` list.
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not start cargo")?;
    let out_reader = runner::tee(child.stdout.take().context("stdout not piped")?, None, None);
    let err_reader = runner::tee(
        child.stderr.take().context("stderr not piped")?,
        None,
        Some(Box::new(std::io::stderr())),
    );
    let status = child.wait().context("waiting for cargo test")?;
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Ok(CargoTest {
        summary: libtest::parse(&stdout),
        stdout,
        targets: libtest::failed_targets(&stderr),
        status,
    })
}

/// Print one run's results and add them to the tally.
fn account(label: &str, r: &CargoTest, tally: &mut Tally) {
    let s = &r.summary;
    if s.failed > 0 {
        print!("{}", libtest::failure_details(&r.stdout));
    }
    for name in &s.failing {
        println!("host test {name} ... FAILED");
    }
    println!(
        "{label}: {} passed, {} failed, {} ignored ({} test binaries)",
        s.passed, s.failed, s.ignored, s.binaries
    );
    tally.passed += s.passed;
    tally.failed += s.failed;
    if r.status.success() {
        return;
    }
    // Failures libtest did not report: crates that did not compile, and
    // targets in cargo's `N targets failed` list beyond the binaries whose
    // failing tests were already counted (doctest build errors, crashed
    // test binaries).
    let compile_errors = r.compile_errors();
    let listed = r.targets.len() - compile_errors;
    let unexplained = compile_errors + listed.saturating_sub(s.failed_binaries);
    for t in &r.targets {
        println!("host target {t} ... FAILED");
    }
    if unexplained > 0 {
        println!("{label}: {unexplained} target(s) failed without a test result (build error or crash; see above)");
        tally.failed += unexplained;
    } else if s.failed == 0 {
        println!(
            "{label} ... FAILED (`cargo test` {} without a failing test)",
            r.status
        );
        tally.failed += 1;
    }
}

fn qemu_phase(opts: &TestOpts, tally: &mut Tally) {
    let selected = qemu_tests::select(qemu_tests::TESTS, &opts.filters);
    if selected.is_empty() {
        println!("no QEMU test matches {:?}", opts.filters);
        return;
    }
    let prepared = (|| -> Result<(Workspace, Artifacts, Accel)> {
        setup::ensure_all()?;
        let ws = Workspace::load()?;
        let arts = build::build_all(&ws)?;
        let accel = accel::resolve(opts.accel, &ws.images_dir(), &ws.qemu_log_dir())?;
        Ok((ws, arts, accel))
    })();
    let (ws, arts, accel) = match prepared {
        Ok(p) => p,
        Err(e) => {
            // Every selected test counts as failed: nothing was shown to work.
            println!("QEMU tests cannot run: {e:#}");
            for t in &selected {
                println!("test {} ... FAILED (setup or build failed)", t.name);
                tally.failed += 1;
            }
            return;
        }
    };
    let hardware = match &opts.machine {
        None => machine::Hardware::STANDARD,
        Some(name) => {
            machine::variant_named(name)
                .expect("the parser checked the name")
                .hardware
        }
    };
    let on = opts
        .machine
        .as_deref()
        .map(|n| format!(", machine variant {n}"))
        .unwrap_or_default();
    println!(
        "running {} QEMU tests sequentially (accel {accel}{on})",
        selected.len()
    );
    for t in selected {
        let start = Instant::now();
        let result = run_one(t, &ws, &arts, accel, hardware);
        let secs = start.elapsed().as_secs_f64();
        match result {
            Ok(r) if r.outcome.passed() => {
                println!("test {} ... ok [{secs:.2} s]", t.name);
                tally.passed += 1;
            }
            Ok(r) => {
                println!("test {} ... FAILED ({}) [{secs:.2} s]", t.name, r.outcome);
                let tail = r.tail(TAIL_LINES);
                if tail.is_empty() {
                    println!("  (no serial output; log: {})", r.log_path.display());
                } else {
                    println!("  last {} lines of {}:", tail.len(), r.log_path.display());
                }
                for line in tail {
                    println!("  | {line}");
                }
                tally.failed += 1;
            }
            Err(e) => {
                println!("test {} ... FAILED ({e:#}) [{secs:.2} s]", t.name);
                tally.failed += 1;
            }
        }
    }
}

fn run_one(
    t: &QemuTest,
    ws: &Workspace,
    arts: &Artifacts,
    accel: Accel,
    hardware: machine::Hardware,
) -> Result<RunReport> {
    // Held across both boots of a two-boot test, so no other run touches
    // the disk images in between.
    let _images = machine::lock_images(&ws.images_dir())?;
    let image = match t.extra {
        None => arts.boot_image.clone(),
        Some(extra) => {
            let entries = extra(arts)?;
            let path = ws
                .bare_metal_out()
                .join(format!("bootimage-{}.bin", t.name));
            build::write(&path, &build::pack(arts, &entries)?)?;
            path
        }
    };
    let acpi_table = match t.acpi_table {
        None => None,
        Some(table) => {
            let path = ws.bare_metal_out().join(format!("acpi-{}.bin", t.name));
            build::write(&path, &table())?;
            Some(path)
        }
    };
    let boot = |append: String, name: &str, pass: &str| -> Result<RunReport> {
        let mut machine = Machine::new(ws.images_dir())
            .accel(accel)
            .hardware(hardware)
            .kernel(&arts.kernel)
            .initrd(&image)
            .append(append);
        machine = (t.machine)(machine);
        if let Some(path) = &acpi_table {
            machine = machine
                .arg("-acpitable")
                .arg(format!("file={}", machine::qemu_escape(path)));
        }
        let opts = RunOptions {
            name: name.to_string(),
            log_dir: ws.qemu_log_dir(),
            timeout: Some(t.timeout),
            echo: false,
            interactive: false,
        };
        runner::run(machine.command()?, &opts, Expect::PassLine(pass))
            .with_context(|| format!("running {name}"))
    };
    let Some(then) = t.then else {
        return boot(t.append.to_string(), t.name, t.name);
    };
    // Two boots of the same machine and disk images (a reboot), sharing a
    // fresh nonce so that the second can tell this run's data from stale.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    for (i, append) in [t.append, then].into_iter().enumerate() {
        let pass =
            qemu_tests::pass_name(append).context("a boot of a two-boot test has no test= name")?;
        let report = boot(
            format!("{append} nonce={nonce:x}"),
            &format!("{}-boot{}", t.name, i + 1),
            pass,
        )?;
        if i == 1 || !report.outcome.passed() {
            return Ok(report);
        }
    }
    unreachable!("the loop returns on its second boot")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_format() {
        assert_eq!(
            Tally {
                passed: 12,
                failed: 3
            }
            .summary_line(),
            "12 passed, 3 failed"
        );
    }
}
