//! One boot of the guest running a plan: QEMU on the standard machine, the
//! serial console piped both ways, and per-row counter snapshots taken
//! while the guest waits at each READY/DONE handshake.

use super::qmp::Qmp;
use crate::machine::{Hardware, Machine, Serial};
use crate::runner::KillOnDrop;
use anyhow::{bail, Context, Result};
use eval::linux::blockstats::BlockStats;
use eval::linux::hist;
use eval::linux::plan::Run;
use eval::linux::pmem::PmemWatch;
use eval::linux::qtrace::{self, NvmeCounts};
use eval::linux::serial::{self, Line};
use eval::linux::RunOutcome;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The Linux guest's kernel command line.
pub const LINUX_CMDLINE: &str = "console=ttyS0 loglevel=3 panic=-1 no_timer_check";

/// The `-drive id=` of the NVMe disk in the standard machine.
pub const NVME_DRIVE: &str = "nvm";

/// Commands that belong to the harness, not to the measured work, in the
/// runtime histogram (the init shell between handshakes, `cat` of the hist).
const HARNESS_COMMS: &[&str] = &["init", "cat"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// Wall-clock timing, device counters (trace + QMP), syscalls.
    Counters,
    /// `-icount shift=0`: task runtime in ns is an instruction count. Also
    /// NVMe submission doorbells: this pass times nothing, so it can turn
    /// the NVMe ioeventfd off to make doorbell writes traceable.
    Icount,
}

impl PassKind {
    pub fn name(self) -> &'static str {
        match self {
            PassKind::Counters => "counters",
            PassKind::Icount => "icount",
        }
    }
}

#[derive(Debug, Default)]
pub struct PassResult {
    pub rows: Vec<RunOutcome>,
    pub env: Vec<(String, String)>,
    pub fatal: Option<String>,
    pub serial_log: PathBuf,
    pub elapsed: Duration,
    /// The budget stopped the pass before this row (0-based): it and every
    /// later row were not run ([`eval::budget::NOT_RUN`]).
    pub stopped_at: Option<usize>,
}

/// When a pass stops starting rows (the time budget, `EVAL_BUDGET_SECS`):
/// at the first READY after `at`, or at row `max_rows` (0-based), whichever
/// comes first. The default stops nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassStop {
    pub at: Option<Instant>,
    pub max_rows: Option<usize>,
}

impl PassStop {
    fn stops_before(&self, row: usize, now: Instant) -> bool {
        self.at.is_some_and(|t| now >= t) || self.max_rows.is_some_and(|n| row >= n)
    }
}

/// Reads the QEMU trace log incrementally, up to the last complete line.
struct TraceTail {
    path: PathBuf,
    offset: u64,
}

impl TraceTail {
    fn take(&mut self) -> Result<NvmeCounts> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(NvmeCounts::default()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", self.path.display())),
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = vec![];
        f.read_to_end(&mut buf)?;
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.offset += complete as u64;
        qtrace::count(&String::from_utf8_lossy(&buf[..complete]))
    }
}

struct Snapshot {
    blk: Option<BlockStats>,
}

pub struct PassSetup<'a> {
    pub kind: PassKind,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub work_dir: &'a Path,
    pub rows: &'a [Run],
    pub timeout: Duration,
    /// The guest's CPUs (`-smp`; 1 = the standard machine).
    pub cpus: u32,
    /// With more than one CPU: the counters pass under multi-threaded TCG
    /// (`eval --drivers --smp 2`, truly parallel vCPUs) instead of
    /// round-robin TCG (`eval --db --smp N`, the exo side's machine). The
    /// icount pass is always round-robin: `-icount` allows nothing else.
    pub mttcg: bool,
}

pub fn run_pass(s: &PassSetup, progress: &mut dyn FnMut(usize, &RunOutcome)) -> Result<PassResult> {
    run_pass_until(s, PassStop::default(), progress)
}

/// [`run_pass`] that stops starting rows at `stop` (the guest is answered
/// `stop` at that READY, prints END and powers off); the rows not run get
/// [`eval::budget::NOT_RUN`] as their failure.
pub fn run_pass_until(
    s: &PassSetup,
    stop: PassStop,
    progress: &mut dyn FnMut(usize, &RunOutcome),
) -> Result<PassResult> {
    let images = s.work_dir.join(format!("images-{}", s.kind.name()));
    // Fresh images every pass: a previous pass's fsdax info block on the
    // NVDIMM would change how the namespace comes up.
    let _ = std::fs::remove_dir_all(&images);
    let serial_log = s.work_dir.join(format!("{}.serial.log", s.kind.name()));
    let trace_path = s.work_dir.join(format!("{}.qemu-trace.log", s.kind.name()));
    let qmp_path = s.work_dir.join(format!("{}.qmp.sock", s.kind.name()));
    let _ = std::fs::remove_file(&trace_path);
    let _ = std::fs::remove_file(&qmp_path);

    let mut m = Machine::new(&images)
        .kernel(s.kernel)
        .initrd(s.initrd)
        // no_timer_check: on a loaded host TCG can be too slow for the
        // kernel's IO-APIC timer check, which then panics the boot ("timer
        // doesn't work through Interrupt-remapped IO-APIC"); the check
        // guards against broken hardware, not emulated timers.
        .append(LINUX_CMDLINE)
        .serial(Serial::Stdio);
    let counters = s.kind == PassKind::Counters;
    m = m.hardware(if counters && s.mttcg && s.cpus > 1 {
        Hardware::smp_mttcg(s.cpus)
    } else {
        Hardware { cpus: s.cpus, ..Hardware::STANDARD }
    });
    let events = if counters {
        m = m.qmp(&qmp_path);
        qtrace::EVENTS
    } else {
        // Doorbell writes reach a trace point only as MMIO (see qtrace.rs);
        // ioeventfd changes how QEMU is woken, not what the guest executes.
        m = m.icount(true).nvme_ioeventfd(false);
        qtrace::DOORBELL_EVENTS
    };
    for ev in events {
        m = m.trace(*ev);
    }
    m = m.trace_file(&trace_path);
    let mut cmd = m.command()?;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    crate::cmd::announce(&cmd);
    let started = Instant::now();
    let mut child = KillOnDrop(cmd.spawn().context("starting QEMU")?);
    let mut stdin = child.0.stdin.take().context("QEMU stdin")?;
    let stdout = child.0.stdout.take().context("QEMU stdout")?;
    let mut stderr = child.0.stderr.take().context("QEMU stderr")?;
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = vec![];
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let mut log = std::fs::File::create(&serial_log).with_context(|| format!("creating {}", serial_log.display()))?;
    let mut qmp = if counters { Some(Qmp::connect(&qmp_path, Duration::from_secs(20))?) } else { None };
    let mut trace = TraceTail { path: trace_path.clone(), offset: 0 };
    let mut pmem = PmemWatch::new(&images.join(crate::machine::NVDIMM_IMAGE.file));
    let mut res = PassResult {
        rows: vec![RunOutcome::default(); s.rows.len()],
        serial_log: serial_log.clone(),
        ..Default::default()
    };
    let mut before: Option<Snapshot> = None;
    let deadline = started + s.timeout;
    let mut ended = false;

    // Both passes trace (different events); each snapshot takes the trace
    // lines since the previous one, so READY..DONE covers exactly one run.
    let snapshot = |qmp: &mut Option<Qmp>, trace: &mut TraceTail| -> Result<(Snapshot, NvmeCounts)> {
        let blk = match qmp {
            Some(q) => Some(q.blockstats(NVME_DRIVE)?),
            None => None,
        };
        Ok((Snapshot { blk }, trace.take()?))
    };

    loop {
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "guest pass `{}` timed out after {:?}; serial log: {}",
                s.kind.name(),
                s.timeout,
                serial_log.display()
            );
        }
        let line = match rx.recv_timeout(deadline - now) {
            Ok(l) => l,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        log.write_all(line.as_bytes())?;
        let parsed = match serial::parse(&line) {
            Ok(p) => p,
            // Kernel messages can interleave with ours; keep going, it is logged.
            Err(_) => Line::Console(line.clone()),
        };
        let row_mut = |res: &mut PassResult, i: usize| -> Result<usize> {
            if i == 0 || i > res.rows.len() {
                bail!("guest reported row {i}, but the plan has {} rows", res.rows.len());
            }
            Ok(i - 1)
        };
        match parsed {
            Line::Ready(i) => {
                let k = row_mut(&mut res, i)?;
                if stop.stops_before(k, Instant::now()) {
                    for r in &mut res.rows[k..] {
                        r.fail = Some(eval::budget::NOT_RUN.into());
                    }
                    res.stopped_at = Some(k);
                    writeln!(stdin, "stop")?;
                    continue;
                }
                if counters && s.rows[k].medium.starts_with("pmem") {
                    pmem.mark()?;
                }
                let (snap, _) = snapshot(&mut qmp, &mut trace)?;
                before = Some(snap);
                writeln!(stdin, "go")?;
            }
            Line::Done { row, exit_code } => {
                let k = row_mut(&mut res, row)?;
                let (after, nvme) = snapshot(&mut qmp, &mut trace)?;
                let b = before.take().context("DONE without READY")?;
                let r = &mut res.rows[k];
                r.exit_code = Some(exit_code);
                if counters {
                    r.nvme = Some(nvme);
                } else {
                    r.nvme_sq_doorbells = Some(nvme.io_sq_doorbells);
                }
                if counters && s.rows[k].medium.starts_with("pmem") {
                    r.pmem_pages_changed = Some(pmem.changed_since_mark()?);
                }
                if let (Some(a), Some(b)) = (after.blk, b.blk) {
                    r.blockstats = Some(a.since(&b)?);
                }
                writeln!(stdin, "go")?;
            }
            Line::HistSys(i, t) => {
                let k = row_mut(&mut res, i)?;
                res.rows[k].hist_sys.push_str(&t);
                res.rows[k].hist_sys.push('\n');
            }
            Line::HistRun(i, t) => {
                let k = row_mut(&mut res, i)?;
                res.rows[k].hist_run.push_str(&t);
                res.rows[k].hist_run.push('\n');
            }
            Line::Row(i, csv) => {
                let k = row_mut(&mut res, i)?;
                res.rows[k].csv = Some(csv);
                finish_row(&mut res.rows[k])?;
                progress(k, &res.rows[k]);
            }
            Line::Err(i, t) => {
                let k = row_mut(&mut res, i)?;
                res.rows[k].stderr.push(t);
            }
            Line::Fail(i, why) => {
                let k = row_mut(&mut res, i)?;
                let last_err = res.rows[k].stderr.last().cloned().unwrap_or_default();
                res.rows[k].fail = Some(if last_err.is_empty() { why } else { format!("{why}: {last_err}") });
                progress(k, &res.rows[k]);
            }
            Line::Env(kv) => res.env.extend(kv),
            Line::Fatal(why) => res.fatal = Some(why),
            Line::End => ended = true,
            Line::Dmesg(_) | Line::Console(_) => {}
        }
    }
    let status = child.0.wait()?;
    res.elapsed = started.elapsed();
    let qemu_stderr = stderr_reader.join().unwrap_or_default();
    if !ended {
        let why = res.fatal.clone().unwrap_or_else(|| format!("QEMU exited ({status}) before the guest finished"));
        bail!(
            "guest pass `{}` failed: {why}\nQEMU stderr: {}\nserial log: {}",
            s.kind.name(),
            qemu_stderr.trim(),
            serial_log.display()
        );
    }
    // Rows whose bench failed (no ROW line) still get a reason.
    for r in &mut res.rows {
        if r.csv.is_none() && r.fail.is_none() {
            r.fail = Some(match r.exit_code {
                Some(c) => format!("eval-bench exited {c}: {}", r.stderr.last().cloned().unwrap_or_default()),
                None => "the guest never ran this row".into(),
            });
        }
    }
    Ok(res)
}

/// Turn a row's histogram dumps into counts.
fn finish_row(r: &mut RunOutcome) -> Result<()> {
    let sys = hist::parse(&r.hist_sys).context("syscall histogram")?;
    let run = hist::parse(&r.hist_run).context("runtime histogram")?;
    if sys.dropped > 0 || run.dropped > 0 {
        bail!("ftrace histogram dropped events (table full); counts would be low");
    }
    r.syscalls = Some(sys.sum("hitcount", |n| n == "eval-bench"));
    r.runtime_ns = Some(run.sum("runtime", |n| !HARNESS_COMMS.contains(&n)));
    r.bench_runtime_ns = Some(run.sum("runtime", |n| n == "eval-bench"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_tail_counts_each_complete_line_once() {
        let dir = std::env::temp_dir().join(format!("linux-trace-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.log");
        let mut t = TraceTail { path: path.clone(), offset: 0 };
        assert_eq!(t.take().unwrap(), NvmeCounts::default(), "a missing file is no events yet");
        let flush = "pci_nvme_io_cmd cid 1 nsid 0x1 sqid 1 opc 0x0 opname 'NVME_NVM_CMD_FLUSH'\n";
        std::fs::write(&path, format!("{flush}{flush}pci_nvme_io_cmd cid 2 nsid 0x1 sqid 1 op")).unwrap();
        assert_eq!(t.take().unwrap().flush_cmds, 2);
        // The partial line is completed later and counted then, once.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"c 0x0 opname 'NVME_NVM_CMD_FLUSH'\n").unwrap();
        assert_eq!(t.take().unwrap().flush_cmds, 1);
        assert_eq!(t.take().unwrap().flush_cmds, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn runtime_sums_exclude_the_harness() {
        let mut r = RunOutcome {
            hist_sys: "{ common_pid: eval-bench [ 9] } hitcount: 5\n{ common_pid: init [ 1] } hitcount: 50\nTotals:\n Dropped: 0\n".into(),
            hist_run: "{ comm: eval-bench } hitcount: 1 runtime: 100\n{ comm: init } hitcount: 1 runtime: 1000\n{ comm: jbd2/nvme0n1-8 } hitcount: 1 runtime: 10\n{ comm: cat } hitcount: 1 runtime: 7\nTotals:\n Dropped: 0\n".into(),
            ..Default::default()
        };
        finish_row(&mut r).unwrap();
        assert_eq!((r.syscalls, r.runtime_ns, r.bench_runtime_ns), (Some(5), Some(110), Some(100)));
        r.hist_run = r.hist_run.replace("Dropped: 0", "Dropped: 3");
        assert!(finish_row(&mut r).is_err(), "dropped events must not give silently low counts");
    }
}
