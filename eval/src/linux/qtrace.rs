//! Counting NVMe commands in QEMU's trace log (the `log` trace backend,
//! one event per line, optionally prefixed `pid@sec.usec:`).
//!
//! Events used (QEMU 7.2 `hw/nvme/trace-events`):
//! * `pci_nvme_io_cmd cid C nsid N sqid Q opc 0xO opname 'NAME'`: one per
//!   I/O command the controller fetched; opc 0x0 = flush, 0x1 = write.
//! * `pci_nvme_write cid C opname 'NAME' nsid N nlb B count BYTES lba L`:
//!   data bytes of writes (`NVME_NVM_CMD_WRITE`; write-zeroes moves no data
//!   and is counted separately).
//!
//! * `pci_nvme_mmio_doorbell_sq sqid Q new_tail T`: one per submission
//!   doorbell write the controller handled as MMIO; sqid 0 is the admin
//!   queue, others are I/O queues. With the standard machine's
//!   `ioeventfd=on` doorbell writes become eventfd kicks that pass no trace
//!   point, so the icount pass (which times nothing) turns ioeventfd off
//!   and enables only `DOORBELL_EVENTS`.

use anyhow::{Context, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NvmeCounts {
    pub write_cmds: u64,
    pub flush_cmds: u64,
    pub read_cmds: u64,
    pub write_zeroes_cmds: u64,
    pub bytes_written: u64,
    /// Submission doorbell writes to I/O queues (sqid != 0).
    pub io_sq_doorbells: u64,
}

/// The value after `key ` in a space-separated `key value` event line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut w = line.split_whitespace();
    while let Some(k) = w.next() {
        if k == key {
            return w.next();
        }
    }
    None
}

fn event_name(line: &str) -> &str {
    let first = line.split_whitespace().next().unwrap_or("");
    // Strip an optional "pid@sec.usec:" timestamp prefix.
    first.rsplit_once(':').map_or(first, |(_, e)| e)
}

/// Count the NVMe commands in a chunk of trace log; other lines are ignored.
pub fn count(text: &str) -> Result<NvmeCounts> {
    let mut c = NvmeCounts::default();
    for (n, line) in text.lines().enumerate() {
        let ctx = || format!("trace line {}: `{line}`", n + 1);
        match event_name(line) {
            "pci_nvme_io_cmd" => {
                let opc = field(line, "opc").with_context(ctx)?;
                let opc = u8::from_str_radix(opc.trim_start_matches("0x"), 16).with_context(ctx)?;
                match opc {
                    0x00 => c.flush_cmds += 1,
                    0x01 => c.write_cmds += 1,
                    0x02 => c.read_cmds += 1,
                    0x08 => c.write_zeroes_cmds += 1,
                    _ => {}
                }
            }
            "pci_nvme_write" if field(line, "opname") == Some("'NVME_NVM_CMD_WRITE'") => {
                let bytes: u64 = field(line, "count").with_context(ctx)?.parse().with_context(ctx)?;
                c.bytes_written += bytes;
            }
            "pci_nvme_mmio_doorbell_sq" => {
                let sqid: u32 = field(line, "sqid").with_context(ctx)?.parse().with_context(ctx)?;
                if sqid != 0 {
                    c.io_sq_doorbells += 1;
                }
            }
            _ => {}
        }
    }
    Ok(c)
}

/// The trace events to enable for `count`'s command counts (counters pass).
pub const EVENTS: &[&str] = &["pci_nvme_io_cmd", "pci_nvme_write"];

/// The trace event to enable for `count`'s doorbell counts (icount pass,
/// NVMe ioeventfd off).
pub const DOORBELL_EVENTS: &[&str] = &["pci_nvme_mmio_doorbell_sq"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_commands_by_opcode_and_write_bytes() {
        let log = "\
pci_nvme_io_cmd cid 8481 nsid 0x1 sqid 1 opc 0x1 opname 'NVME_NVM_CMD_WRITE'
pci_nvme_write cid 8481 opname 'NVME_NVM_CMD_WRITE' nsid 1 nlb 8 count 4096 lba 0x100
4242@1700000000.123456:pci_nvme_io_cmd cid 8482 nsid 0x1 sqid 1 opc 0x0 opname 'NVME_NVM_CMD_FLUSH'
pci_nvme_io_cmd cid 1 nsid 0x1 sqid 1 opc 0x8 opname 'NVME_NVM_CMD_WRITE_ZEROES'
pci_nvme_write cid 1 opname 'NVME_NVM_CMD_WRITE_ZEROES' nsid 1 nlb 128 count 65536 lba 0x7ff80
pci_nvme_io_cmd cid 2 nsid 0x1 sqid 1 opc 0x2 opname 'NVME_NVM_CMD_READ'
pci_nvme_mmio_doorbell_sq sqid 1 new_tail 3
";
        let c = count(log).unwrap();
        assert_eq!(
            c,
            NvmeCounts {
                write_cmds: 1,
                flush_cmds: 1,
                read_cmds: 1,
                write_zeroes_cmds: 1,
                bytes_written: 4096,
                io_sq_doorbells: 1
            }
        );
    }

    #[test]
    fn counts_io_queue_doorbells_but_not_the_admin_queue() {
        let log = "\
pci_nvme_mmio_doorbell_sq sqid 0 new_tail 5
pci_nvme_mmio_doorbell_sq sqid 1 new_tail 17
4242@1700000000.123456:pci_nvme_mmio_doorbell_sq sqid 2 new_tail 0
pci_nvme_mmio_doorbell_cq cqid 1 new_head 17
pci_nvme_mmio_doorbell_sq sqid 1 new_tail 18
";
        let c = count(log).unwrap();
        assert_eq!(c, NvmeCounts { io_sq_doorbells: 3, ..Default::default() });
        let e = count("pci_nvme_mmio_doorbell_sq sqid x new_tail 1\n").unwrap_err();
        assert!(format!("{e:#}").contains("trace line 1"), "{e:#}");
        assert!(count("pci_nvme_mmio_doorbell_sq new_tail 1\n").is_err(), "a doorbell without sqid is malformed");
    }

    #[test]
    fn malformed_event_names_the_line() {
        let e = count("pci_nvme_io_cmd cid 1 nsid 0x1 sqid 1 opc zz\n").unwrap_err();
        assert!(format!("{e:#}").contains("trace line 1"), "{e:#}");
        let e = count("pci_nvme_write cid 1 opname 'NVME_NVM_CMD_WRITE' count\n").unwrap_err();
        assert!(format!("{e:#}").contains("trace line 1"), "{e:#}");
    }
}
