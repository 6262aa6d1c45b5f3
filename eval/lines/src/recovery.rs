//! Recovery time (`cargo xtask eval --recovery`, eval/RECOVERY.md): the
//! database the host builds on an image of the medium, what its log tail
//! holds, and the `EXO-RECOVERY` line `kvdb <medium> recover` prints after
//! timing `Db::open` on it. Defined once: the host builder
//! (`eval-recovery`), kvdb's check and the report all read this module.
//!
//! The database: `base_keys(size)` keys `key(i)` with 4,000-byte values
//! `base_value(i)` (one overflow page each, so the tree is about `size`
//! MiB), checkpointed; then `tail` sync commits, commit `j` putting a
//! 100-byte `tail_value(j)` under `key(tail_key_index(j))` (they cycle over
//! up to [`TAIL_KEYS`] existing keys, so the key count stays
//! `base_keys`); then the power cut (no close, no checkpoint).

use super::{Fields, LineError, Maybe};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// libdb's default log (8 MiB): what an application gets.
pub const LOG_PAGES: u64 = 2048;
pub const PAGE_BYTES: u64 = 4096;
/// kvdb's page cache (4 MiB), as in its other workloads.
pub const CACHE_PAGES: usize = 1024;
/// Checkpoint policy while the base is loaded (libdb's default, 4 MiB of log).
pub const LOAD_CHECKPOINT_LOG_BYTES: u64 = 4 << 20;
pub const BASE_VALUE_BYTES: usize = 4000;
pub const TAIL_VALUE_BYTES: usize = 100;
/// Distinct keys the tail overwrites (fewer if the base has fewer).
pub const TAIL_KEYS: u64 = 1024;
/// Base keys looked up after the open (spread over the key space).
pub const SAMPLE_KEYS: u64 = 64;
/// Tail keys looked up after the open.
pub const SAMPLE_TAIL_KEYS: u64 = 64;
/// One log record of a tail commit: 24-byte header, one put (7 bytes of
/// op header, 16-byte key, the value), padded to 8 (libdb's `log.rs`).
pub const TAIL_RECORD_BYTES: u64 = (24 + 7 + 16 + TAIL_VALUE_BYTES as u64).div_ceil(8) * 8;

/// The end of the log libdb keeps for commits that only delete (an
/// eighth of the log, at most 64 KiB: `engine.rs`); a put that would reach
/// into it checkpoints first.
pub const LOG_DELETE_RESERVE: u64 = 64 << 10;

/// How far each of libdb's reach records moves the log's reach in the
/// default log (`libdb::log::reach_step`: an eighth of the log, at most
/// 256 KiB). A reach record (a 32-byte record, its own write) takes log
/// room too: a full log holds at most `LOG / REACH_STEP` of them.
pub const REACH_STEP: u64 = 256 << 10;
/// A reach record: 24-byte header and an 8-byte offset (libdb's `log.rs`).
pub const REACH_RECORD_BYTES: u64 = 32;

/// How much of the log the tail fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tail {
    /// A checkpoint, then nothing.
    Empty,
    /// Half of [`Tail::Full`]: about 4 MiB of the log, where libdb's default
    /// policy (`checkpoint_log_bytes` = 4 MiB) checkpoints.
    Half,
    /// As many sync commits as the 8 MiB log holds without a checkpoint
    /// (the most any policy can leave to replay).
    Full,
}

impl Tail {
    pub const ALL: [Tail; 3] = [Tail::Empty, Tail::Half, Tail::Full];

    pub fn name(self) -> &'static str {
        match self {
            Tail::Empty => "empty",
            Tail::Half => "half",
            Tail::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Option<Tail> {
        Tail::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Sync commits in this tail on a medium with writes aligned to
    /// `write_align` bytes (each sync commit is its own write: 512 B on a
    /// 512-byte-block NVMe namespace, 152 B on pmem): all that fits below
    /// [`LOG_DELETE_RESERVE`] without libdb checkpointing, less the room
    /// the reach records may take (at most one record less than libdb
    /// would fit).
    pub fn records(self, write_align: u64) -> u64 {
        let per = TAIL_RECORD_BYTES.div_ceil(write_align) * write_align;
        let log = LOG_PAGES * PAGE_BYTES;
        let reach_room = log.div_ceil(REACH_STEP) * REACH_RECORD_BYTES.div_ceil(write_align) * write_align;
        let full = (log - LOG_DELETE_RESERVE - reach_room) / per;
        match self {
            Tail::Empty => 0,
            Tail::Half => full / 2,
            Tail::Full => full,
        }
    }
}

/// Write alignment of each medium as the eval machine has it.
pub fn write_align(medium: &str) -> Option<u64> {
    match medium {
        "nvme" => Some(512),
        "pmem" => Some(8),
        _ => None,
    }
}

/// Base keys of a database of about `size_mib` MiB of tree (one 4 KiB
/// overflow page per key, ~1.6 % more for leaves and branches).
pub fn base_keys(size_mib: u64) -> u64 {
    size_mib * 252
}

/// Key `i`: 16 ASCII digits (key order = numeric order).
pub fn key(i: u64) -> [u8; 16] {
    let mut k = [b'0'; 16];
    let mut n = i;
    for b in k.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// SplitMix64 bytes: a value is a pure function of its seed.
fn fill(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn base_value(i: u64) -> Vec<u8> {
    fill(i, BASE_VALUE_BYTES)
}

pub fn tail_value(j: u64) -> Vec<u8> {
    fill(j ^ 0x7a11_0000_0000_0000, TAIL_VALUE_BYTES)
}

/// Distinct keys the tail cycles over for `keys` base keys.
pub fn tail_keys(keys: u64) -> u64 {
    TAIL_KEYS.min(keys)
}

/// The base key tail commit `j` overwrites.
pub fn tail_key_index(keys: u64, j: u64) -> u64 {
    let d = tail_keys(keys);
    (j % d) * (keys / d)
}

/// The value key `i` must hold after `tail` tail commits.
pub fn expected_value(keys: u64, tail: u64, i: u64) -> Vec<u8> {
    let d = tail_keys(keys);
    let stride = keys / d;
    if i.is_multiple_of(stride) && i / stride < d && i / stride < tail {
        let m = i / stride;
        // The last commit j < tail with j % d == m.
        tail_value(m + d * ((tail - 1 - m) / d))
    } else {
        base_value(i)
    }
}

/// The keys kvdb looks up after the open: [`SAMPLE_KEYS`] spread over the
/// base (the last key included) and [`SAMPLE_TAIL_KEYS`] of those the tail
/// overwrote.
pub fn sample_keys(keys: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..SAMPLE_KEYS).map(|s| s * keys / SAMPLE_KEYS).collect();
    v.push(keys - 1);
    let d = tail_keys(keys);
    v.extend((0..SAMPLE_TAIL_KEYS.min(d)).map(|s| tail_key_index(keys, s * d / SAMPLE_TAIL_KEYS.min(d))));
    v.sort_unstable();
    v.dedup();
    v
}

/// What `kvdb <medium> recover` measured: `Db::open` on the medium the
/// host built, after a power cut. Counts are totals over the open.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecoveryLine {
    pub medium: String,
    pub keys: u64,
    pub tail_records: u64,
    /// Pages of the database (libdb's high-water mark, log included).
    pub db_pages: u64,
    /// TSC ticks over `Db::open` (machine-wide; under `-icount shift=0`
    /// guest instructions at 1,000 ticks per µs).
    pub open_tsc: u64,
    pub tsc_per_us: u64,
    pub replayed_records: u64,
    pub erased_records: u64,
    /// libdb's reads of its storage, and their bytes.
    pub storage_reads: u64,
    pub storage_bytes_read: u64,
    pub storage_writes: u64,
    pub storage_barriers: u64,
    /// Block-service requests over the open (`None` on pmem).
    pub device_read_cmds: Option<u64>,
    pub device_bytes_read: Option<u64>,
    pub device_write_cmds: Option<u64>,
    pub device_flushes: Option<u64>,
    /// kvdb's own system calls over the open.
    pub kvdb_syscalls: u64,
    /// Keys looked up and found equal to the expected value after the open.
    pub checked_keys: u64,
}

impl RecoveryLine {
    pub const PREFIX: &'static str = "EXO-RECOVERY";

    /// `Db::open` in µs of the machine's time stamp counter.
    pub fn open_us(&self) -> f64 {
        self.open_tsc as f64 / self.tsc_per_us.max(1) as f64
    }

    pub fn parse(line: &str) -> Result<RecoveryLine, LineError> {
        let mut f = Fields::new(line, Self::PREFIX)?;
        let int = |f: &mut Fields, k| -> Result<Option<u64>, LineError> {
            match f.str(k)? {
                "-" => Ok(None),
                v => v.parse().map(Some).map_err(|_| LineError::BadNumber { field: k, value: v.into() }),
            }
        };
        let l = RecoveryLine {
            medium: f.string("medium")?,
            keys: f.int("keys")?,
            tail_records: f.int("tail_records")?,
            db_pages: f.int("db_pages")?,
            open_tsc: f.int("open_tsc")?,
            tsc_per_us: f.int("tsc_per_us")?,
            replayed_records: f.int("replayed_records")?,
            erased_records: f.int("erased_records")?,
            storage_reads: f.int("storage_reads")?,
            storage_bytes_read: f.int("storage_bytes_read")?,
            storage_writes: f.int("storage_writes")?,
            storage_barriers: f.int("storage_barriers")?,
            device_read_cmds: int(&mut f, "device_read_cmds")?,
            device_bytes_read: int(&mut f, "device_bytes_read")?,
            device_write_cmds: int(&mut f, "device_write_cmds")?,
            device_flushes: int(&mut f, "device_flushes")?,
            kvdb_syscalls: f.int("kvdb_syscalls")?,
            checked_keys: f.int("checked_keys")?,
        };
        f.done()?;
        Ok(l)
    }
}

impl fmt::Display for RecoveryLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = |v: Option<u64>| Maybe(v.map(|x| x as f64), 0);
        write!(
            f,
            "{} medium={} keys={} tail_records={} db_pages={} open_tsc={} tsc_per_us={} replayed_records={} \
             erased_records={} storage_reads={} storage_bytes_read={} storage_writes={} storage_barriers={} \
             device_read_cmds={} device_bytes_read={} device_write_cmds={} device_flushes={} kvdb_syscalls={} \
             checked_keys={}",
            Self::PREFIX,
            self.medium,
            self.keys,
            self.tail_records,
            self.db_pages,
            self.open_tsc,
            self.tsc_per_us,
            self.replayed_records,
            self.erased_records,
            self.storage_reads,
            self.storage_bytes_read,
            self.storage_writes,
            self.storage_barriers,
            m(self.device_read_cmds),
            m(self.device_bytes_read),
            m(self.device_write_cmds),
            m(self.device_flushes),
            self.kvdb_syscalls,
            self.checked_keys,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trip_and_errors() {
        let l = RecoveryLine {
            medium: "nvme".into(),
            keys: 258048,
            tail_records: 16383,
            db_pages: 262000,
            open_tsc: 123456789,
            tsc_per_us: 2600,
            replayed_records: 16383,
            erased_records: 1,
            storage_reads: 40000,
            storage_bytes_read: 9_000_000,
            storage_writes: 2,
            storage_barriers: 3,
            device_read_cmds: Some(33000),
            device_bytes_read: None,
            device_write_cmds: Some(4),
            device_flushes: Some(5),
            kvdb_syscalls: 6,
            checked_keys: 129,
        };
        let s = l.to_string();
        assert!(s.contains(" device_bytes_read=- "), "{s}");
        assert_eq!(RecoveryLine::parse(&s).unwrap(), l);
        assert!((l.open_us() - 123456789.0 / 2600.0).abs() < 1e-9);
        assert!(matches!(
            RecoveryLine::parse(&s.replace("keys=258048", "keys=x")),
            Err(LineError::BadNumber { field: "keys", .. })
        ));
        assert!(matches!(
            RecoveryLine::parse(&s.replace(" checked_keys=129", "")),
            Err(LineError::MissingField { field: "checked_keys" })
        ));
        assert!(RecoveryLine::parse(&format!("{s} extra=1")).is_err());
        assert!(RecoveryLine::parse("EXO-DB medium=nvme").is_err());
    }

    #[test]
    fn tails_fill_the_log_without_a_checkpoint() {
        assert_eq!(TAIL_RECORD_BYTES, 152);
        // NVMe: one 512-byte block per sync commit; 8 MiB less 64 KiB
        // and 32 reach records of a block each holds 16,224.
        assert_eq!(Tail::Full.records(512), 16224);
        assert_eq!(Tail::Half.records(512), 8112);
        // pmem: 152 bytes per commit, 32 bytes per reach record.
        assert_eq!(Tail::Full.records(8), (8 * 1024 * 1024 - 65536 - 32 * 32) / 152);
        assert_eq!(Tail::Empty.records(8), 0);
        assert_eq!(Tail::parse("half"), Some(Tail::Half));
        assert_eq!(Tail::parse("most"), None);
        assert_eq!(write_align("pmem"), Some(8));
    }

    #[test]
    fn keys_values_and_the_expected_state_after_the_tail() {
        assert_eq!(&key(1234), b"0000000000001234");
        assert_eq!(base_value(7).len(), BASE_VALUE_BYTES);
        assert_eq!(base_value(7), base_value(7));
        assert_ne!(base_value(7), base_value(8));
        assert_ne!(tail_value(7)[..], base_value(7)[..TAIL_VALUE_BYTES]);
        let keys = base_keys(16);
        assert_eq!(tail_keys(keys), 1024);
        let stride = keys / 1024;
        // Tail of 2,050 commits: key index 0 (m = 0) was written by j = 0,
        // 1024, 2048; m = 2 by 2 and 1026 (2050 is past the end).
        assert_eq!(expected_value(keys, 2050, 0), tail_value(2048));
        assert_eq!(expected_value(keys, 2050, 2 * stride), tail_value(1026));
        assert_eq!(expected_value(keys, 2050, 1), base_value(1));
        assert_eq!(expected_value(keys, 0, 0), base_value(0));
        // A tiny base: fewer tail keys than TAIL_KEYS.
        assert_eq!(tail_keys(10), 10);
        assert_eq!(tail_key_index(10, 13), 3);
        assert_eq!(expected_value(10, 14, 3), tail_value(13));
        let s = sample_keys(keys);
        assert!(s.contains(&(keys - 1)) && s.contains(&0) && s.contains(&(16 * stride)));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert!(s.iter().all(|&i| i < keys));
    }
}
