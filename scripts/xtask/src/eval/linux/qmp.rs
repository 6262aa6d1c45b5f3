//! A minimal QMP client (JSON lines over QEMU's unix socket) for
//! `query-blockstats`: the block layer's own counters of the NVMe drive,
//! a cross-check of the trace-event counts.

use anyhow::{bail, Context, Result};
use eval::linux::blockstats::{parse_blockstats, BlockStats};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A QMP connection to one QEMU.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connect (retrying while QEMU creates the socket) and leave
    /// capability-negotiation mode.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e).with_context(|| format!("connecting to QMP at {}", socket.display())),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut q = Qmp { reader: BufReader::new(stream.try_clone()?), writer: stream };
        let greeting = q.read_message()?;
        if greeting.get("QMP").is_none() {
            bail!("QMP greeting expected, got {greeting}");
        }
        q.execute("qmp_capabilities")?;
        Ok(q)
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).context("reading from QMP")? == 0 {
            bail!("QMP connection closed");
        }
        serde_json::from_str(&line).with_context(|| format!("QMP sent invalid JSON: {line}"))
    }

    /// Run a command and return its reply, skipping asynchronous events.
    pub fn execute(&mut self, command: &str) -> Result<Value> {
        writeln!(self.writer, "{}", serde_json::json!({ "execute": command }))?;
        loop {
            let m = self.read_message()?;
            if m.get("event").is_some() {
                continue;
            }
            if let Some(e) = m.get("error") {
                bail!("QMP `{command}` failed: {e}");
            }
            return Ok(m);
        }
    }

    pub fn blockstats(&mut self, device: &str) -> Result<BlockStats> {
        let r = self.execute("query-blockstats")?;
        parse_blockstats(&r, device)
    }
}
