//! Run one QEMU process: hard timeout, kill-on-drop, serial output teed to
//! `target/qemu-logs/<name>.log` (and optionally the terminal), and a
//! classification of how it ended.

use crate::cmd;
use crate::outcome::{classify, Expect, Outcome};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Owns the QEMU child: dropping it (early return, panic, Ctrl-C
/// unwinding) terminates QEMU, so no emulator outlives the harness.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// SIGTERM first (QEMU then restores the terminal it may have put in
    /// raw mode), SIGKILL if it has not gone after a grace period.
    pub fn terminate(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) only sends a signal; `pid` is our own child,
            // which has not been reaped (try_wait above returned None), so
            // the id cannot have been reused by another process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.terminate();
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Log file stem: `target/qemu-logs/<name>.log`.
    pub name: String,
    pub log_dir: PathBuf,
    pub timeout: Option<Duration>,
    /// Copy serial output (and QEMU's stderr) to the terminal live.
    pub echo: bool,
    /// Give QEMU our stdin (interactive `run`); otherwise /dev/null.
    pub interactive: bool,
}

#[derive(Debug)]
pub struct RunReport {
    pub outcome: Outcome,
    /// QEMU's exit status (None: killed by a signal or by the timeout).
    pub status: Option<i32>,
    pub serial: String,
    /// QEMU's own stderr (also appended to the log).
    #[allow(dead_code)] // API for the eval helpers
    pub stderr: String,
    pub log_path: PathBuf,
    pub elapsed: Duration,
}

impl RunReport {
    /// The last `n` lines of the serial log (for failure reports).
    pub fn tail(&self, n: usize) -> Vec<&str> {
        tail_lines(&self.serial, n)
    }
}

pub fn tail_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Copy a pipe to an optional file and an optional terminal stream,
/// returning everything read.
pub fn tee(
    mut from: impl Read + Send + 'static,
    mut log: Option<File>,
    mut echo: Option<Box<dyn Write + Send>>,
) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = vec![];
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if let Some(f) = log.as_mut() {
                        let _ = f.write_all(&buf[..n]);
                    }
                    if let Some(t) = echo.as_mut() {
                        let _ = t.write_all(&buf[..n]);
                        let _ = t.flush();
                    }
                }
            }
        }
        all
    })
}

/// Spawn `qemu` (already built by `Machine::command`), wait for it under
/// the timeout, and classify the end against `expect`.
pub fn run(mut qemu: Command, opts: &RunOptions, expect: Expect) -> Result<RunReport> {
    std::fs::create_dir_all(&opts.log_dir).with_context(|| format!("creating {}", opts.log_dir.display()))?;
    let log_path = opts.log_dir.join(format!("{}.log", opts.name));
    let log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    cmd::announce(&qemu);
    qemu.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(if opts.interactive {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    let start = Instant::now();
    let mut child =
        KillOnDrop(qemu.spawn().context("could not start QEMU (is it installed? try `cargo xtask setup`)")?);
    let stdout = child.0.stdout.take().context("QEMU stdout was not piped")?;
    let stderr = child.0.stderr.take().context("QEMU stderr was not piped")?;
    let echo_out: Option<Box<dyn Write + Send>> = opts.echo.then(|| Box::new(std::io::stdout()) as _);
    let echo_err: Option<Box<dyn Write + Send>> = opts.echo.then(|| Box::new(std::io::stderr()) as _);
    let serial_reader = tee(stdout, Some(log), echo_out);
    let stderr_reader = tee(stderr, None, echo_err);

    let mut timed_out = None;
    let status = loop {
        if let Some(status) = child.0.try_wait().context("waiting for QEMU")? {
            break Some(status);
        }
        if let Some(limit) = opts.timeout {
            if start.elapsed() >= limit {
                timed_out = Some(limit);
                child.terminate();
                break None;
            }
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    drop(child); // reaps if still needed; closes nothing we still read from
    let serial = String::from_utf8_lossy(&serial_reader.join().unwrap_or_default()).into_owned();
    let stderr_text = String::from_utf8_lossy(&stderr_reader.join().unwrap_or_default()).into_owned();
    append_stderr_to_log(&log_path, &stderr_text)?;
    let code = status.and_then(|s| s.code());
    let outcome = classify(code, timed_out, &serial, &stderr_text, expect);
    Ok(RunReport { outcome, status: code, serial, stderr: stderr_text, log_path, elapsed })
}

/// Keep QEMU's own complaints next to the serial output they explain.
fn append_stderr_to_log(log_path: &Path, stderr: &str) -> Result<()> {
    if stderr.trim().is_empty() {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(log_path)?;
    writeln!(f, "\n--- qemu stderr ---\n{}", stderr.trim_end())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(name: &str, timeout: Option<Duration>) -> RunOptions {
        RunOptions {
            name: name.into(),
            log_dir: std::env::temp_dir().join(format!("xtask-runner-{}", std::process::id())),
            timeout,
            echo: false,
            interactive: false,
        }
    }

    // The runner is generic over the child; a shell stands in for QEMU.
    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn tees_serial_and_classifies_exit_status() {
        let r = run(sh("echo 'EXO-TEST-PASS t1'; exit 33"), &opts("t1", None), Expect::PassLine("t1")).unwrap();
        assert_eq!(r.outcome, Outcome::Passed);
        assert_eq!(r.status, Some(33));
        let log = std::fs::read_to_string(&r.log_path).unwrap();
        assert_eq!(log, "EXO-TEST-PASS t1\n");
    }

    #[test]
    fn stderr_goes_to_the_log_and_the_error() {
        let r = run(sh("echo 'qemu: bad device' >&2; exit 1"), &opts("t2", None), Expect::ExitOnly).unwrap();
        assert_eq!(r.outcome, Outcome::QemuError("qemu: bad device".into()));
        let log = std::fs::read_to_string(&r.log_path).unwrap();
        assert!(log.contains("--- qemu stderr ---\nqemu: bad device"), "{log}");
    }

    #[test]
    fn hard_timeout_kills_the_child() {
        let t = Duration::from_millis(300);
        let start = Instant::now();
        let r = run(sh("echo started; exec sleep 30"), &opts("t3", Some(t)), Expect::ExitOnly).unwrap();
        assert_eq!(r.outcome, Outcome::Timeout(t));
        assert!(start.elapsed() < Duration::from_secs(5), "child was not killed");
        assert_eq!(r.serial, "started\n");
    }

    #[test]
    fn sigterm_ignoring_child_is_killed_anyway() {
        let t = Duration::from_millis(200);
        let start = Instant::now();
        let r = run(sh("trap '' TERM; while :; do sleep 0.1; done"), &opts("t4", Some(t)), Expect::ExitOnly).unwrap();
        assert_eq!(r.outcome, Outcome::Timeout(t));
        assert!(start.elapsed() < Duration::from_secs(6));
    }

    #[test]
    fn dropping_the_guard_ends_the_process() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        drop(KillOnDrop(child));
        // SAFETY: signal 0 only probes for existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "child {pid} survived its guard");
    }

    #[test]
    fn tail_returns_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), vec!["b", "c"]);
        assert_eq!(tail_lines("a", 30), vec!["a"]);
        assert!(tail_lines("", 3).is_empty());
    }
}
