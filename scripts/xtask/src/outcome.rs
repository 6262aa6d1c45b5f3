//! How a QEMU run ended. The guest reports through isa-debug-exit (QEMU
//! exits with `(code << 1) | 1`) and through marker lines on COM1; a pass
//! needs both, so a guest that merely stops, resets or crashes QEMU can
//! never look like a pass. Status 0 is never a pass: with `-no-reboot` a
//! triple fault ends QEMU with status 0.

use std::fmt;
use std::time::Duration;

/// isa-debug-exit codes the guest writes to port 0xf4 (kernel and init
/// must use these).
pub const EXIT_SUCCESS_CODE: i32 = 0x10;
pub const EXIT_TEST_FAILED_CODE: i32 = 0x11;
pub const EXIT_PANIC_CODE: i32 = 0x12;

/// The process status QEMU exits with for a guest exit code.
pub const fn qemu_status(code: i32) -> i32 {
    (code << 1) | 1
}
pub const STATUS_PASS: i32 = qemu_status(EXIT_SUCCESS_CODE); // 33
pub const STATUS_TEST_FAILED: i32 = qemu_status(EXIT_TEST_FAILED_CODE); // 35
pub const STATUS_PANIC: i32 = qemu_status(EXIT_PANIC_CODE); // 37

pub const PASS_MARKER: &str = "EXO-TEST-PASS";
pub const FAIL_MARKER: &str = "EXO-TEST-FAIL";
pub const PANIC_MARKER: &str = "[kernel] PANIC";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// The guest reported failure: QEMU's exit status and why.
    Failed(i32, String),
    /// QEMU itself failed or ended without a guest verdict.
    QemuError(String),
    Timeout(Duration),
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Passed => write!(f, "passed"),
            Outcome::Failed(code, why) => write!(f, "exit status {code}: {why}"),
            Outcome::QemuError(why) => write!(f, "QEMU error: {why}"),
            Outcome::Timeout(d) => write!(f, "timeout after {} s", d.as_secs_f64()),
        }
    }
}

/// What counts as success for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// An integration test: status 33 and the line `EXO-TEST-PASS <name>`.
    PassLine(&'a str),
    /// A batch demo: status 33 alone.
    ExitOnly,
}

/// The first serial line starting with `marker` (trimmed).
pub fn find_marker<'s>(serial: &'s str, marker: &str) -> Option<&'s str> {
    serial.lines().map(str::trim).find(|l| l.starts_with(marker))
}

fn has_pass_line(serial: &str, name: &str) -> bool {
    serial.lines().any(|l| {
        l.trim().strip_prefix(PASS_MARKER).is_some_and(|rest| rest.starts_with([' ', '\t']) && rest.trim() == name)
    })
}

/// The last non-empty line of QEMU's stderr, which is where it explains
/// what it refused.
fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

/// Classify a finished run. `status` is None when QEMU died of a signal.
pub fn classify(
    status: Option<i32>,
    timed_out: Option<Duration>,
    serial: &str,
    stderr: &str,
    expect: Expect,
) -> Outcome {
    if let Some(after) = timed_out {
        return Outcome::Timeout(after);
    }
    let Some(status) = status else {
        return Outcome::QemuError("QEMU was killed by a signal".into());
    };
    let fail_line = find_marker(serial, FAIL_MARKER);
    let panic_line = find_marker(serial, PANIC_MARKER);
    let guest_said = || panic_line.or(fail_line).map(|l| format!(": {l}")).unwrap_or_default();
    match status {
        STATUS_PASS => match (expect, fail_line.or(panic_line)) {
            (_, Some(bad)) => Outcome::Failed(status, format!("success exit code, but the guest printed `{bad}`")),
            (Expect::ExitOnly, None) => Outcome::Passed,
            (Expect::PassLine(name), None) if has_pass_line(serial, name) => Outcome::Passed,
            (Expect::PassLine(name), None) => Outcome::Failed(
                status,
                format!("success exit code, but no `{PASS_MARKER} {name}` line on the serial console"),
            ),
        },
        STATUS_TEST_FAILED => Outcome::Failed(
            status,
            fail_line.map_or_else(
                || format!("test failed (no `{FAIL_MARKER}` line; last line: {})", last_line(serial).unwrap_or("none")),
                str::to_string,
            ),
        ),
        STATUS_PANIC => Outcome::Failed(
            status,
            panic_line.map_or_else(
                || {
                    // The kernel's fatal path may stop with another message.
                    let last_kernel = serial.lines().rev().map(str::trim).find(|l| l.starts_with("[kernel]"));
                    format!(
                        "kernel stopped (no `{PANIC_MARKER}` line): {}",
                        last_kernel.or(last_line(serial)).unwrap_or("no output")
                    )
                },
                str::to_string,
            ),
        ),
        0 => Outcome::QemuError(format!(
            "QEMU exited with status 0: the guest reset (e.g. triple fault) or powered off without \
             isa-debug-exit{}",
            guest_said()
        )),
        1 => Outcome::QemuError(last_line(stderr).unwrap_or("QEMU failed (status 1)").to_string()),
        odd if odd > 0 && odd % 2 == 1 => {
            Outcome::Failed(odd, format!("unknown isa-debug-exit code {:#x}{}", (odd - 1) / 2, guest_said()))
        }
        other => Outcome::QemuError(format!(
            "QEMU exited with status {other}{}",
            last_line(stderr).map(|l| format!(": {l}")).unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Expect = Expect::PassLine("isolation");

    #[test]
    fn codes_match_isa_debug_exit() {
        assert_eq!((STATUS_PASS, STATUS_TEST_FAILED, STATUS_PANIC), (33, 35, 37));
    }

    #[test]
    fn pass_needs_status_33_and_the_named_line() {
        let serial = "[kernel] booting\r\nEXO-TEST-PASS isolation\r\n";
        assert_eq!(classify(Some(33), None, serial, "", T), Outcome::Passed);
        // The right line for another test does not count.
        let other = classify(Some(33), None, "EXO-TEST-PASS isolation_extra\n", "", T);
        assert!(matches!(other, Outcome::Failed(33, ref r) if r.contains("no `EXO-TEST-PASS isolation`")));
        assert!(!classify(Some(33), None, "", "", T).passed());
        // The line without the exit code is not a pass either.
        assert!(!classify(Some(0), None, serial, "", T).passed());
        assert!(!classify(Some(35), None, serial, "", T).passed());
    }

    #[test]
    fn batch_needs_only_status_33() {
        assert_eq!(classify(Some(33), None, "", "", Expect::ExitOnly), Outcome::Passed);
        assert!(!classify(Some(1), None, "", "", Expect::ExitOnly).passed());
    }

    #[test]
    fn fail_and_panic_lines_are_reported() {
        let s = "x\nEXO-TEST-FAIL isolation: read of foreign page succeeded\n";
        assert_eq!(
            classify(Some(35), None, s, "", T),
            Outcome::Failed(35, "EXO-TEST-FAIL isolation: read of foreign page succeeded".into())
        );
        let p = "[kernel] PANIC at kernel/src/trap.rs:10: double fault\n";
        assert_eq!(
            classify(Some(37), None, p, "", T),
            Outcome::Failed(37, "[kernel] PANIC at kernel/src/trap.rs:10: double fault".into())
        );
        assert!(matches!(classify(Some(37), None, "", "", T), Outcome::Failed(37, ref r) if r.contains("no output")));
        let fatal = "[kernel] booting\n[kernel] init ELF refused: bad magic\nother\n";
        assert!(
            matches!(classify(Some(37), None, fatal, "", T), Outcome::Failed(37, ref r) if r.ends_with("[kernel] init ELF refused: bad magic"))
        );
        assert!(
            matches!(classify(Some(35), None, "a\nlast words\n", "", T), Outcome::Failed(35, ref r) if r.contains("last line: last words"))
        );
        // A FAIL line overrides a success exit code.
        let both = "EXO-TEST-PASS isolation\nEXO-TEST-FAIL isolation: late\n";
        assert!(matches!(classify(Some(33), None, both, "", T), Outcome::Failed(33, _)));
    }

    #[test]
    fn zero_one_signal_and_timeout_are_never_passes() {
        assert!(
            matches!(classify(Some(0), None, "", "", Expect::ExitOnly), Outcome::QemuError(ref r) if r.contains("status 0"))
        );
        let e = classify(Some(1), None, "", "qemu: could not load kernel '/k'\n", T);
        assert_eq!(e, Outcome::QemuError("qemu: could not load kernel '/k'".into()));
        assert!(matches!(classify(None, None, "", "", T), Outcome::QemuError(_)));
        let d = Duration::from_secs(60);
        assert_eq!(classify(Some(33), Some(d), "EXO-TEST-PASS isolation", "", T), Outcome::Timeout(d));
        assert!(matches!(classify(Some(2), None, "", "", T), Outcome::QemuError(_)));
    }

    #[test]
    fn unknown_guest_codes_are_failures() {
        assert!(matches!(classify(Some(3), None, "", "", T), Outcome::Failed(3, ref r) if r.contains("0x1")));
    }
}
