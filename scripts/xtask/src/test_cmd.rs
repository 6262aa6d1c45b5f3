//! `cargo xtask test`: host tests (`cargo test --workspace`) and then the
//! QEMU integration tests, one at a time (the machine has 2 cores). The
//! last line printed is always `N passed, M failed`.

use crate::build::{self, Artifacts};
use crate::cli::TestOpts;
use crate::machine::{self, Accel, Machine};
use crate::outcome::Expect;
use crate::qemu_tests::{self, Boot, QemuTest};
use crate::runner::{self, RunOptions, RunReport};
use crate::workspace::Workspace;

use crate::{accel, cargo_output, cmd, setup};
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
        if opts.filters.is_empty() {
            conventions(&mut tally);
        }
    }
    if opts.qemu {
        qemu_phase(opts, &mut tally);
    }
    tally
}

/// The conventions, checked by tools rather than memory: the tree is
/// formatted (rustfmt.toml), and clippy finds nothing, with warnings as
/// errors, on the host workspace and on the bare-metal crates. Each is one
/// test in the tally.
fn conventions(tally: &mut Tally) {
    // The bare-metal clippy needs the target too: on a fresh machine the
    // QEMU phase (which installs it) has not run yet.
    if let Err(e) = setup::ensure_rust_components().and_then(|()| setup::ensure_rust_target()) {
        println!("test conventions ... FAILED ({e:#})");
        tally.failed += 1;
        return;
    }
    let cargo = |args: &[&str]| {
        let mut c = Command::new("cargo");
        c.args(args);
        c
    };
    let mut checks: Vec<(&str, Command)> = vec![
        ("fmt", cargo(&["fmt", "--all", "--", "--check"])),
        ("clippy (host)", cargo(&["clippy", "--workspace", "--all-targets", "--quiet", "--", "-D", "warnings"])),
        (
            "clippy (bare metal)",
            cargo(&["clippy", "--release", "--quiet", "--target", BARE_METAL, "-p", "kernel", "--", "-D", "warnings"]),
        ),
    ];
    // The programs and the crates they link, as `build` compiles them (their
    // Linux target, `exo_user`; see `build::PROGRAM_RUSTFLAGS`).
    match Workspace::load() {
        Ok(ws) => {
            let mut c = build::program_cargo(&ws, "clippy");
            c.args(["--quiet", "-p", "exo-apps", "-p", "initlib", "-p", "exo-rt", "--", "-D", "warnings"]);
            checks.push(("clippy (programs)", c));
        }
        Err(e) => {
            println!("test clippy (programs) ... FAILED (cannot load the workspace: {e:#})");
            tally.failed += 1;
        }
    }
    for (name, mut c) in checks {
        let start = Instant::now();
        println!("$ {}", cmd::display(&c));
        let out = c.output();
        let secs = start.elapsed().as_secs_f64();
        match out {
            Ok(o) if o.status.success() => {
                println!("test {name} ... ok [{secs:.2} s]");
                tally.passed += 1;
            }
            Ok(o) => {
                println!("test {name} ... FAILED [{secs:.2} s]");
                let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
                for line in text.lines().take(40) {
                    println!("  | {line}");
                }
                tally.failed += 1;
            }
            Err(e) => {
                println!("test {name} ... FAILED (cannot run cargo: {e})");
                tally.failed += 1;
            }
        }
    }
}

const BARE_METAL: &str = setup::BARE_METAL_TARGET;

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
    println!("host tests: the workspace does not build as a whole; testing each package on its own");
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
    summary: cargo_output::Summary,
    stdout: String,
    /// From cargo's stderr: targets that failed outside libtest's lines.
    targets: Vec<String>,
    /// `SKIPPED ...` reasons printed by tests (either stream).
    skipped: Vec<String>,
    status: std::process::ExitStatus,
}

impl CargoTest {
    fn compile_errors(&self) -> usize {
        self.targets.iter().filter(|t| t.ends_with("(compile error)")).count()
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
    let err_reader =
        runner::tee(child.stderr.take().context("stderr not piped")?, None, Some(Box::new(std::io::stderr())));
    let status = child.wait().context("waiting for cargo test")?;
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Ok(CargoTest {
        summary: cargo_output::parse(&stdout),
        skipped: [cargo_output::skipped(&stdout), cargo_output::skipped(&stderr)].concat(),
        targets: cargo_output::failed_targets(&stderr),
        stdout,
        status,
    })
}

/// Print one run's results and add them to the tally.
fn account(label: &str, r: &CargoTest, tally: &mut Tally) {
    let s = &r.summary;
    if s.failed > 0 {
        print!("{}", cargo_output::failure_details(&r.stdout));
    }
    for name in &s.failing {
        println!("host test {name} ... FAILED");
    }
    for why in &r.skipped {
        println!("host test {why}");
    }
    println!("{label}: {} passed, {} failed, {} ignored ({} test binaries)", s.passed, s.failed, s.ignored, s.binaries);
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
        println!("{label} ... FAILED (`cargo test` {} without a failing test)", r.status);
        tally.failed += 1;
    }
}

fn qemu_phase(opts: &TestOpts, tally: &mut Tally) {
    let all_tests = qemu_tests::tests();
    let selected = qemu_tests::select(&all_tests, &opts.filters);
    // The bounded power-fail pass runs with the standard machine's tests
    // (and alone with the filter `powerfail`).
    let powerfail = opts.machine.is_none()
        && !opts.matrix
        && (opts.filters.is_empty() || opts.filters.iter().any(|f| "powerfail".contains(f.as_str())));
    if selected.is_empty() && !powerfail {
        println!("no QEMU test matches {:?}", opts.filters);
        return;
    }
    let prepared = (|| -> Result<(Workspace, Artifacts, Accel)> {
        setup::ensure_all()?;
        if selected.iter().any(|t| t.details.boot != Boot::Direct) {
            setup::ensure_boot_media_tools()?;
        }
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
    if opts.matrix {
        return matrix(&selected, &ws, &arts, accel, tally);
    }
    let hardware = match &opts.machine {
        None => machine::Hardware::STANDARD,
        Some(name) => machine::variant_named(name).expect("the parser checked the name").hardware,
    };
    let on = opts.machine.as_deref().map(|n| format!(", machine variant {n}")).unwrap_or_default();
    println!("running {} QEMU tests sequentially (accel {accel}{on})", selected.len());
    let variant = opts.machine.as_deref();
    for t in &selected {
        run_counted(t, &ws, &arts, accel, hardware, variant, tally);
    }
    if opts.machine.is_some() {
        return;
    }
    if powerfail {
        powerfail_pass(&ws, &arts, accel, tally);
    }
    // A representative subset on a few variants (`--machine-matrix` runs
    // everything everywhere).
    for (name, tests) in qemu_tests::VARIANT_SUBSET {
        let hw = machine::variant_named(name).expect("VARIANT_SUBSET names real variants").hardware;
        let chosen: Vec<_> = selected.iter().filter(|t| tests.contains(&t.name)).collect();
        if chosen.is_empty() {
            continue;
        }
        println!("running {} QEMU tests on machine variant {name}", chosen.len());
        for t in chosen {
            run_counted(t, &ws, &arts, accel, hw, Some(name), tally);
        }
    }
}

/// Media the bounded power-fail pass boots (`cargo xtask powerfail` runs
/// the long one).
const POWERFAIL_MEDIA: usize = 100;

/// The bounded power-fail pass: each mode is one test in the tally, passed
/// if no rebuilt medium lost an acknowledged commit or failed to recover.
fn powerfail_pass(ws: &Workspace, arts: &Artifacts, accel: Accel, tally: &mut Tally) {
    let seed = crate::powerfail::clock_seed();
    let modes = crate::powerfail::MODES;
    println!("power-fail pass: {POWERFAIL_MEDIA} rebuilt media over {} modes (seed {seed:#x})", modes.len());
    for (i, (mode, n)) in modes.iter().zip(crate::powerfail::split(POWERFAIL_MEDIA, modes.len())).enumerate() {
        let name = format!("powerfail {}", mode.name());
        let start = Instant::now();
        match crate::powerfail::run_mode(ws, arts, accel, *mode, n, crate::powerfail::mode_seed(seed, i)) {
            Ok(r) if r.failures.is_empty() => {
                println!("test {name} ({} media, 0 lost) ... ok [{:.2} s]", r.images, start.elapsed().as_secs_f64());
                tally.passed += 1;
            }
            Ok(r) => {
                println!(
                    "test {name} ... FAILED ({} of {} media) [{:.2} s]",
                    r.failures.len(),
                    r.images,
                    start.elapsed().as_secs_f64()
                );
                for f in r.failures.iter().take(TAIL_LINES) {
                    println!("  | {f}");
                }
                tally.failed += 1;
            }
            Err(e) => {
                println!("test {name} ... FAILED ({e:#})");
                tally.failed += 1;
            }
        }
    }
}

/// Run one test (on a variant if named), print its line, count it; true if it passed.
fn run_counted(
    t: &QemuTest,
    ws: &Workspace,
    arts: &Artifacts,
    accel: Accel,
    hardware: machine::Hardware,
    variant: Option<&str>,
    tally: &mut Tally,
) -> bool {
    let start = Instant::now();
    let result = run_one(t, ws, arts, accel, hardware, variant);
    let secs = start.elapsed().as_secs_f64();
    let name = match variant {
        Some(v) => format!("{}@{v}", t.name),
        None => t.name.to_string(),
    };
    match result {
        Ok(r) if r.outcome.passed() => {
            println!("test {name} ... ok [{secs:.2} s]");
            tally.passed += 1;
            true
        }
        Ok(r) => {
            println!("test {name} ... FAILED ({}) [{secs:.2} s]", r.outcome);
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
            false
        }
        Err(e) => {
            println!("test {name} ... FAILED ({e:#}) [{secs:.2} s]");
            tally.failed += 1;
            false
        }
    }
}

/// Every selected test on every variant, then the table variant x test.
fn matrix(selected: &[&QemuTest], ws: &Workspace, arts: &Artifacts, accel: Accel, tally: &mut Tally) {
    println!("machine matrix: {} QEMU tests on {} variants (accel {accel})", selected.len(), machine::VARIANTS.len());
    let mut rows = vec![];
    for v in machine::VARIANTS {
        println!("== machine variant {} ({})", v.name, v.what);
        let start = Instant::now();
        let row: Vec<bool> =
            selected.iter().map(|t| run_counted(t, ws, arts, accel, v.hardware, Some(v.name), tally)).collect();
        rows.push((v.name, row, start.elapsed().as_secs_f64()));
    }
    print!("{}", matrix_table(selected.iter().map(|t| t.name), &rows));
}

/// The matrix as text: one row per variant, one column per test (`ok` or
/// `FAIL`), and the variant's total time.
fn matrix_table<'a>(tests: impl Iterator<Item = &'a str>, rows: &[(&str, Vec<bool>, f64)]) -> String {
    let tests: Vec<&str> = tests.collect();
    let first = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max("variant".len());
    let mut out = format!("{:first$}", "variant");
    for t in &tests {
        out += &format!(" {t:4}");
    }
    out += " time\n";
    for (name, row, secs) in rows {
        out += &format!("{name:first$}");
        for (t, ok) in tests.iter().zip(row) {
            let cell = if *ok { "ok" } else { "FAIL" };
            out += &format!(" {cell:w$}", w = t.len().max(4));
        }
        out += &format!(" {secs:.0}s\n");
    }
    out
}

fn run_one(
    t: &QemuTest,
    ws: &Workspace,
    arts: &Artifacts,
    accel: Accel,
    hardware: machine::Hardware,
    variant: Option<&str>,
) -> Result<RunReport> {
    let suffix = variant.map(|v| format!("@{v}")).unwrap_or_default();
    // Held across both boots of a two-boot test, so no other run touches
    // the disk images in between.
    let _images = machine::lock_images(&ws.images_dir())?;
    let image = match t.details.extra {
        None => arts.boot_image.clone(),
        Some(extra) => {
            let entries = extra(arts)?;
            let path = ws.bare_metal_out().join(format!("bootimage-{}.bin", t.name));
            build::write(&path, &build::pack(arts, &entries)?)?;
            path
        }
    };
    let acpi_table = match t.details.acpi_table {
        None => None,
        Some(table) => {
            let path = ws.bare_metal_out().join(format!("acpi-{}.bin", t.name));
            build::write(&path, &table())?;
            Some(path)
        }
    };
    let boot = |append: String, name: &str, pass: &str, index: usize| -> Result<RunReport> {
        // Init checks the RAM it got against the machine's (boot_to_init).
        let append = format!("{append} ram_mib={}", hardware.ram_mib);
        let name = format!("{name}{suffix}");
        let mut machine = Machine::new(ws.images_dir()).accel(accel).hardware(hardware);
        machine = match t.details.boot {
            Boot::Direct => machine.kernel(&arts.kernel).initrd(&image).append(append),
            Boot::Grub(firmware) => {
                // The disk image `cargo xtask image` makes, with this
                // boot's command line in GRUB's menu entry.
                let disk = ws.bare_metal_out().join(format!("grub-{name}.img"));
                let work = ws.bare_metal_out().join(format!("image-work-{name}"));
                let media =
                    crate::image::Media { kernel: &arts.kernel, boot_image: &image, cmdline: &append, timeout_secs: 0 };
                crate::image::build_disk(&media, &disk, &work)?;
                machine.firmware(firmware).boot_disk(disk)
            }
        };
        machine = (t.details.machine)(machine);
        if let Some(path) = &acpi_table {
            machine = machine.arg("-acpitable").arg(format!("file={}", machine::qemu_escape(path)));
        }
        if let Some(faults) = t.details.nvme_faults {
            let config = ws.images_dir().join(format!("blkdebug-{name}.conf"));
            std::fs::write(&config, crate::blkdebug::config(&faults(index)))
                .with_context(|| format!("writing {}", config.display()))?;
            let image = ws.images_dir().join(machine::NVME_IMAGE.file);
            machine = machine.nvme_drive(crate::blkdebug::drive(&image, &config));
        }
        let injector = if t.details.inject_nmi {
            // In the temporary directory: a unix socket's path is limited
            // to 107 bytes, and a checkout's may be longer.
            let socket = std::env::temp_dir().join(format!("exo-{}-{name}.qmp", std::process::id()));
            let _ = std::fs::remove_file(&socket);
            machine = machine.qmp(&socket);
            let log = ws.qemu_log_dir().join(format!("{name}.log"));
            let _ = std::fs::remove_file(&log);
            Some(NmiInjector::start(socket, log))
        } else {
            None
        };
        let opts = RunOptions {
            name: name.to_string(),
            log_dir: ws.qemu_log_dir(),
            timeout: Some(t.details.timeout),
            echo: false,
            interactive: false,
        };
        let report =
            runner::run(machine.command()?, &opts, Expect::PassLine(pass)).with_context(|| format!("running {name}"));
        if let Some(i) = injector {
            let sent = i.stop();
            let _ = std::fs::remove_file(std::env::temp_dir().join(format!("exo-{}-{name}.qmp", std::process::id())));
            if let Ok(r) = &report {
                if r.outcome.passed() {
                    println!("  ({sent} NMIs injected through QMP)");
                }
            }
        }
        report
    };
    if t.then.is_none() {
        return boot(t.append(t.first), t.name, t.first, 0);
    }
    // Two boots of the same machine and disk images (a reboot), sharing a
    // fresh nonce so that the second can tell this run's data from stale.
    let nonce =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
    for (i, pass) in t.boots().enumerate() {
        let report =
            boot(format!("{} nonce={nonce:x}", t.append(pass)), &format!("{}-boot{}", t.name, i + 1), pass, i)?;
        if i == 1 || !report.outcome.passed() {
            return Ok(report);
        }
    }
    unreachable!("the loop returns on its second boot")
}

/// Sends `inject-nmi` through QEMU's QMP socket every 50 ms from a thread
/// until stopped, once the guest's serial log shows [`NMI_READY`] (an NMI
/// before the kernel has loaded its IDT would reset the machine, as on
/// real hardware).
const NMI_READY: &str = "init: NMIs welcome";
struct NmiInjector {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl NmiInjector {
    fn start(socket: std::path::PathBuf, log: std::path::PathBuf) -> NmiInjector {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut sent = 0;
            while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains(NMI_READY)) {
                if flag.load(Ordering::Relaxed) {
                    return sent;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let stream = loop {
                if flag.load(Ordering::Relaxed) {
                    return sent;
                }
                match std::os::unix::net::UnixStream::connect(&socket) {
                    Ok(s) => break s,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let Ok(mut writer) = stream.try_clone() else {
                return sent;
            };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            // The greeting, then leave capability negotiation.
            if reader.read_line(&mut line).is_err() || writeln!(writer, r#"{{"execute":"qmp_capabilities"}}"#).is_err()
            {
                return sent;
            }
            // Replies are drained by a thread of their own (QMP answers
            // every command; nothing here needs the answers).
            std::thread::spawn(move || {
                let mut l = String::new();
                while reader.read_line(&mut l).map(|n| n > 0).unwrap_or(false) {
                    l.clear();
                }
            });
            while !flag.load(Ordering::Relaxed) {
                if writeln!(writer, r#"{{"execute":"inject-nmi"}}"#).is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            sent
        });
        NmiInjector { stop, thread }
    }

    /// Stop injecting; how many were sent.
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_table_has_a_row_per_variant_and_a_cell_per_test() {
        let rows = vec![("standard", vec![true, false], 3.2), ("ram-8g", vec![true, true], 10.0)];
        let t = matrix_table(["boot_to_init", "nmi"].into_iter(), &rows);
        assert_eq!(
            t,
            "variant  boot_to_init nmi  time\n\
             standard ok           FAIL 3s\n\
             ram-8g   ok           ok   10s\n"
        );
    }

    #[test]
    fn summary_line_format() {
        assert_eq!(Tally { passed: 12, failed: 3 }.summary_line(), "12 passed, 3 failed");
    }
}
