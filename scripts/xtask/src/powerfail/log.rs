//! The write log QEMU's `blklogwrites` block driver records (the format of
//! Linux's dm-log-writes, which it follows): what reached the emulated
//! medium, in the order it reached it. All fields little-endian.
//!
//! ```text
//! sector 0      super: magic u64, version u64 (1), entries u64, sector size u32
//! then, per request, one entry:
//!   1 sector    sector u64, sectors u64, flags u64 (FLUSH 1, FUA 2, DISCARD 4,
//!               MARK 8), data length u64 (0)
//!   n sectors   the data written (absent for a discard; zeros for a
//!               write-zeroes request; none for a flush)
//! ```
//!
//! "Sector" is the log's sector size (`log-sector-size`, which the guest's
//! requests must be aligned to). QEMU rewrites the superblock's entry count
//! only at a flush, so entries after the last flush are found by reading on
//! while headers stay valid: the log file is created empty for every run,
//! so there is nothing stale to misread.

use anyhow::{bail, Result};

pub const MAGIC: u64 = 0x006a_7366_7773_6872;
pub const VERSION: u64 = 1;
pub const FLUSH: u64 = 1;
pub const FUA: u64 = 2;
pub const DISCARD: u64 = 4;
pub const MARK: u64 = 8;
const KNOWN_FLAGS: u64 = FLUSH | FUA | DISCARD | MARK;

/// What one entry did to the medium.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Bytes written at `offset`; the data is `log[data..data + len]`.
    Write { offset: u64, len: u64, data: usize },
    /// A cache flush: every write before it is on the medium.
    Flush,
    /// Bytes deallocated (they read back as zeros on QEMU's NVMe).
    Discard { offset: u64, len: u64 },
}

/// A parsed log: its sector size, its entries in order, and how many of
/// them the superblock counted (the rest followed the last flush).
#[derive(Debug)]
pub struct WriteLog {
    pub sector: u64,
    pub ops: Vec<Op>,
    pub counted: u64,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl WriteLog {
    /// Parse `log`, the whole log file, for a medium of `medium_bytes`.
    /// Every failure names the entry and what was wrong with it.
    pub fn parse(log: &[u8], medium_bytes: u64) -> Result<WriteLog> {
        if log.len() < 28 {
            bail!("write log of {} bytes has no superblock", log.len());
        }
        if u64_at(log, 0) != MAGIC {
            bail!("write log: bad magic {:#x}", u64_at(log, 0));
        }
        if u64_at(log, 8) != VERSION {
            bail!("write log: version {} (expected {VERSION})", u64_at(log, 8));
        }
        let counted = u64_at(log, 16);
        let sector = u32::from_le_bytes(log[24..28].try_into().expect("4 bytes")) as u64;
        if !sector.is_power_of_two() || !(512..=65536).contains(&sector) {
            bail!("write log: sector size {sector}");
        }
        let s = sector as usize;
        let mut ops = Vec::new();
        let mut at = s;
        loop {
            let index = ops.len() as u64;
            if at + 32 > log.len() {
                break;
            }
            let (first, count, flags) = (u64_at(log, at), u64_at(log, at + 8), u64_at(log, at + 16));
            let valid = flags & !KNOWN_FLAGS == 0 && (count > 0 || flags & FLUSH != 0);
            if !valid {
                if index < counted {
                    bail!("write log entry {index} (of {counted} counted): flags {flags:#x}, {count} sectors");
                }
                break; // past the last counted entry: the end of what QEMU wrote
            }
            let (offset, len) = (first.saturating_mul(sector), count.saturating_mul(sector));
            if offset.checked_add(len).is_none_or(|end| end > medium_bytes) {
                bail!("write log entry {index}: {len} bytes at {offset:#x} lie outside the {medium_bytes}-byte medium");
            }
            at += s;
            let op = if flags & DISCARD != 0 {
                Op::Discard { offset, len }
            } else if count == 0 {
                Op::Flush
            } else {
                if at as u64 + len > log.len() as u64 {
                    if index < counted {
                        bail!("write log entry {index}: its {len} data bytes run past the end of the log");
                    }
                    break; // a torn last entry of the log itself
                }
                let data = at;
                at += len as usize;
                Op::Write { offset, len, data }
            };
            // A write with the flush flag is a flush after the write (a
            // FUA write is durable by itself: both end up as a write + flush).
            let flush_after = flags & (FLUSH | FUA) != 0 && !matches!(op, Op::Flush);
            ops.push(op);
            if flush_after {
                ops.push(Op::Flush);
            }
        }
        if (ops.len() as u64) < counted {
            bail!("write log: the superblock counts {counted} entries, the log holds {}", ops.len());
        }
        Ok(WriteLog { sector, ops, counted })
    }

    /// Flushes among the first `n` operations.
    pub fn flushes_before(&self, n: usize) -> u64 {
        self.ops[..n].iter().filter(|o| **o == Op::Flush).count() as u64
    }
}

/// Writes a log as QEMU does (for tests of the reader and the replay).
#[cfg(test)]
pub struct LogWriter {
    pub bytes: Vec<u8>,
    sector: usize,
    entries: u64,
}

#[cfg(test)]
impl LogWriter {
    pub fn new(sector: usize) -> LogWriter {
        let mut w = LogWriter { bytes: vec![0; sector], sector, entries: 0 };
        w.update_super();
        w
    }
    fn update_super(&mut self) {
        self.bytes[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        self.bytes[8..16].copy_from_slice(&VERSION.to_le_bytes());
        self.bytes[16..24].copy_from_slice(&self.entries.to_le_bytes());
        self.bytes[24..28].copy_from_slice(&(self.sector as u32).to_le_bytes());
    }
    fn entry(&mut self, first: u64, count: u64, flags: u64, data: &[u8]) {
        let mut header = vec![0u8; self.sector];
        header[0..8].copy_from_slice(&first.to_le_bytes());
        header[8..16].copy_from_slice(&count.to_le_bytes());
        header[16..24].copy_from_slice(&flags.to_le_bytes());
        self.bytes.extend_from_slice(&header);
        self.bytes.extend_from_slice(data);
        self.entries += 1;
    }
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        assert_eq!(data.len() % self.sector, 0);
        let s = self.sector as u64;
        self.entry(offset / s, data.len() as u64 / s, 0, data);
    }
    /// A flush: QEMU then rewrites the superblock's count.
    pub fn flush(&mut self) {
        self.entry(0, 0, FLUSH, &[]);
        self.update_super();
    }
    pub fn discard(&mut self, offset: u64, len: u64) {
        let s = self.sector as u64;
        self.entry(offset / s, len / s, DISCARD, &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_logged_including_entries_after_the_last_flush() {
        let mut w = LogWriter::new(512);
        w.write(4096, &[1u8; 1024]);
        w.flush();
        w.discard(0, 512);
        w.write(512, &[2u8; 512]); // after the last flush: not counted
        let log = WriteLog::parse(&w.bytes, 1 << 20).unwrap();
        assert_eq!(log.counted, 2);
        assert_eq!(log.ops.len(), 4);
        assert!(matches!(log.ops[0], Op::Write { offset: 4096, len: 1024, .. }));
        assert_eq!(log.ops[1], Op::Flush);
        assert_eq!(log.ops[2], Op::Discard { offset: 0, len: 512 });
        let Op::Write { offset: 512, len: 512, data } = log.ops[3] else { panic!("{:?}", log.ops[3]) };
        assert!(w.bytes[data..data + 512].iter().all(|b| *b == 2));
        assert_eq!(log.flushes_before(1), 0);
        assert_eq!(log.flushes_before(2), 1);
    }

    #[test]
    fn damaged_logs_are_named_errors() {
        let mut w = LogWriter::new(512);
        w.write(0, &[1u8; 512]);
        w.flush();
        let good = w.bytes.clone();
        let err = |bytes: &[u8], medium: u64| WriteLog::parse(bytes, medium).unwrap_err().to_string();
        assert!(err(&good[..10], 1 << 20).contains("no superblock"));
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(err(&bad, 1 << 20).contains("magic"));
        let mut bad = good.clone();
        bad[512 + 16] = 0x40; // unknown flag in a counted entry
        assert!(err(&bad, 1 << 20).contains("entry 0"));
        assert!(err(&good, 256).contains("outside"));
        assert!(err(&good[..1024 + 100], 1 << 20).contains("past the end"));
    }
}
