//! `readrandom` on several cores (issue #13): the database `kvdb pmem
//! rrload` builds, the key stream each reader draws, what a reader prints
//! (`EXO-READER`, one per reader: `kvdb pmem readrandom`) and what init
//! prints for the run (`EXO-READSCALE`, the readers taken together).
//! Defined once here: kvdb, init, the test root and `cargo xtask eval
//! --readscale` all use these.

use crate::{Fields, Fixed, LineError};
use core::fmt;

/// Bytes of every value (the eval's `commit` workload's size).
pub const VALUE_BYTES: usize = 100;
/// Keys per load commit.
pub const LOAD_BATCH: u64 = 500;

/// SplitMix64: each reader's key stream and every value.
#[derive(Clone, Debug)]
pub struct Mix(pub u64);

impl Mix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Key `i`: `r` and 15 ASCII digits (key order = numeric order; never one
/// of kvdb's other workloads' keys).
pub fn key(i: u64) -> [u8; 16] {
    let mut k = [b'0'; 16];
    k[0] = b'r';
    let mut n = i;
    for b in k[1..].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// The 8-byte words of key `i`'s value in the database made with `nonce`.
fn value_words(nonce: u64, i: u64) -> Mix {
    Mix(nonce ^ i.wrapping_mul(0x1000_0000_01b3) ^ 0x5ead_0000_0000_0000)
}

/// Key `i`'s value in the database made with `nonce`.
pub fn value(nonce: u64, i: u64) -> [u8; VALUE_BYTES] {
    let mut v = [0u8; VALUE_BYTES];
    let mut m = value_words(nonce, i);
    for chunk in v.chunks_mut(8) {
        let w = m.next_u64().to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
    v
}

/// `got` is key `i`'s value (compared word by word, without building it).
pub fn value_matches(nonce: u64, i: u64, got: &[u8]) -> bool {
    if got.len() != VALUE_BYTES {
        return false;
    }
    let mut m = value_words(nonce, i);
    got.chunks(8).all(|chunk| m.next_u64().to_le_bytes()[..chunk.len()] == *chunk)
}

/// Reader `reader`'s key stream over `keys` keys: its own seed.
pub fn stream(nonce: u64, reader: u64) -> Mix {
    Mix(nonce.rotate_left(23) ^ (reader + 1).wrapping_mul(0xd6e8_feb8_6659_fd93))
}

/// The next key index of a stream.
pub fn next_key(m: &mut Mix, keys: u64) -> u64 {
    m.next_u64() % keys.max(1)
}

/// One reader's measured loop: totals over it (not per op).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReaderLine {
    /// Readers in the run (1 or 2), and this one's index.
    pub readers: u64,
    pub reader: u64,
    /// The CPU init pinned it to.
    pub cpu: u64,
    /// CPUs online without a reader: 1 if they were running init's
    /// per-core scheduler (which spins when it has nothing to run: a
    /// busy vCPU under TCG), 0 if still halted in the kernel (no
    /// `sched::give_core` yet).
    pub idle_spin: u64,
    pub keys: u64,
    /// Gets made and checked in the loop.
    pub ops: u64,
    /// TSC at the loop's start and end.
    pub start_tsc: u64,
    pub end_tsc: u64,
    pub tsc_per_us: u64,
    /// The reader's own system calls, upcalls (entries into it: timer
    /// preemptions resumed) and faults handled, over the loop.
    pub syscalls: u64,
    pub upcalls: u64,
    pub faults: u64,
    /// libdb's reads of the medium over the loop (page-cache misses:
    /// 4 KiB copies out of persistent memory).
    pub storage_reads: u64,
}

impl ReaderLine {
    pub const PREFIX: &'static str = "EXO-READER";

    pub fn ops_per_sec(&self) -> f64 {
        rate(self.ops, self.end_tsc.saturating_sub(self.start_tsc), self.tsc_per_us)
    }

    pub fn parse(line: &str) -> Result<ReaderLine, LineError> {
        let mut f = Fields::new(line, Self::PREFIX)?;
        let l = ReaderLine {
            readers: f.int("readers")?,
            reader: f.int("reader")?,
            cpu: f.int("cpu")?,
            idle_spin: f.int("idle_spin")?,
            keys: f.int("keys")?,
            ops: f.int("ops")?,
            start_tsc: f.int("start_tsc")?,
            end_tsc: f.int("end_tsc")?,
            tsc_per_us: f.int("tsc_per_us")?,
            syscalls: f.int("syscalls")?,
            upcalls: f.int("upcalls")?,
            faults: f.int("faults")?,
            storage_reads: f.int("storage_reads")?,
        };
        // Derived: present for the reader of the log, checked on parse.
        f.num("ops_per_sec")?;
        f.done()?;
        Ok(l)
    }
}

impl fmt::Display for ReaderLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} readers={} reader={} cpu={} idle_spin={} keys={} ops={} start_tsc={} end_tsc={} tsc_per_us={} \
             syscalls={} upcalls={} faults={} storage_reads={} ops_per_sec={}",
            Self::PREFIX,
            self.readers,
            self.reader,
            self.cpu,
            self.idle_spin,
            self.keys,
            self.ops,
            self.start_tsc,
            self.end_tsc,
            self.tsc_per_us,
            self.syscalls,
            self.upcalls,
            self.faults,
            self.storage_reads,
            Fixed(self.ops_per_sec(), 1),
        )
    }
}

fn rate(ops: u64, tsc: u64, tsc_per_us: u64) -> f64 {
    if tsc == 0 {
        return 0.0;
    }
    ops as f64 * tsc_per_us.max(1) as f64 * 1e6 / tsc as f64
}

/// A run: every reader together. `ops_per_sec` is all ops over the span
/// from the first reader's start to the last one's end (the system's
/// throughput); `sum_ops_per_sec` adds each reader's own rate (equal when
/// they ran side by side the whole time).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadScaleLine {
    pub readers: u64,
    pub keys: u64,
    pub ops: u64,
    pub span_tsc: u64,
    pub tsc_per_us: u64,
    pub ops_per_sec: f64,
    pub sum_ops_per_sec: f64,
    /// Readers' system calls, faults and medium reads per op, over their loops.
    pub syscalls_per_op: f64,
    pub faults_per_op: f64,
    pub storage_reads_per_op: f64,
    /// TSC ticks of the span per op per reader (under `-icount`: guest
    /// instructions per op, both CPUs' shared clock).
    pub tsc_per_op: f64,
}

impl ReadScaleLine {
    pub const PREFIX: &'static str = "EXO-READSCALE";

    /// The run of `lines` (one per reader), or why they are not one run.
    pub fn of(lines: &[ReaderLine]) -> Result<ReadScaleLine, &'static str> {
        let first = lines.first().ok_or("no reader lines")?;
        if lines.len() as u64 != first.readers
            || lines.iter().any(|l| l.readers != first.readers || l.keys != first.keys)
        {
            return Err("the reader lines disagree on the readers or keys of the run");
        }
        let start = lines.iter().map(|l| l.start_tsc).min().unwrap_or(0);
        let end = lines.iter().map(|l| l.end_tsc).max().unwrap_or(0);
        if lines.iter().any(|l| l.end_tsc < l.start_tsc) {
            return Err("a reader ended before it started");
        }
        let ops: u64 = lines.iter().map(|l| l.ops).sum();
        let per = |x: u64| x as f64 / ops.max(1) as f64;
        Ok(ReadScaleLine {
            readers: first.readers,
            keys: first.keys,
            ops,
            span_tsc: end - start,
            tsc_per_us: first.tsc_per_us,
            ops_per_sec: rate(ops, end - start, first.tsc_per_us),
            sum_ops_per_sec: lines.iter().map(ReaderLine::ops_per_sec).sum(),
            syscalls_per_op: per(lines.iter().map(|l| l.syscalls).sum()),
            faults_per_op: per(lines.iter().map(|l| l.faults).sum()),
            storage_reads_per_op: per(lines.iter().map(|l| l.storage_reads).sum()),
            tsc_per_op: (end - start) as f64 * first.readers as f64 / ops.max(1) as f64,
        })
    }

    pub fn parse(line: &str) -> Result<ReadScaleLine, LineError> {
        let mut f = Fields::new(line, Self::PREFIX)?;
        let l = ReadScaleLine {
            readers: f.int("readers")?,
            keys: f.int("keys")?,
            ops: f.int("ops")?,
            span_tsc: f.int("span_tsc")?,
            tsc_per_us: f.int("tsc_per_us")?,
            ops_per_sec: f.num("ops_per_sec")?,
            sum_ops_per_sec: f.num("sum_ops_per_sec")?,
            syscalls_per_op: f.num("syscalls_per_op")?,
            faults_per_op: f.num("faults_per_op")?,
            storage_reads_per_op: f.num("storage_reads_per_op")?,
            tsc_per_op: f.num("tsc_per_op")?,
        };
        f.done()?;
        Ok(l)
    }
}

impl fmt::Display for ReadScaleLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} readers={} keys={} ops={} span_tsc={} tsc_per_us={} ops_per_sec={} sum_ops_per_sec={} \
             syscalls_per_op={} faults_per_op={} storage_reads_per_op={} tsc_per_op={}",
            Self::PREFIX,
            self.readers,
            self.keys,
            self.ops,
            self.span_tsc,
            self.tsc_per_us,
            Fixed(self.ops_per_sec, 1),
            Fixed(self.sum_ops_per_sec, 1),
            Fixed(self.syscalls_per_op, 4),
            Fixed(self.faults_per_op, 4),
            Fixed(self.storage_reads_per_op, 4),
            Fixed(self.tsc_per_op, 1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(readers: u64, reader: u64, start: u64, end: u64) -> ReaderLine {
        ReaderLine {
            readers,
            reader,
            cpu: reader,
            idle_spin: 0,
            keys: 20_000,
            ops: 1000,
            start_tsc: start,
            end_tsc: end,
            tsc_per_us: 1000,
            syscalls: 0,
            upcalls: 3,
            faults: 0,
            storage_reads: 250,
        }
    }

    #[test]
    fn keys_values_and_streams() {
        assert_eq!(&key(42), b"r000000000000042");
        assert!(key(9) < key(10));
        let v = value(7, 3);
        assert!(value_matches(7, 3, &v));
        assert!(!value_matches(7, 4, &v), "another key's value");
        assert!(!value_matches(8, 3, &v), "another run's value");
        assert!(!value_matches(7, 3, &v[..99]), "a short value");
        let mut flipped = v;
        flipped[99] ^= 1;
        assert!(!value_matches(7, 3, &flipped), "the last byte counts");
        let (mut a, mut b) = (stream(5, 0), stream(5, 1));
        let sa: Vec<u64> = (0..50).map(|_| next_key(&mut a, 1000)).collect();
        let sb: Vec<u64> = (0..50).map(|_| next_key(&mut b, 1000)).collect();
        assert_ne!(sa, sb, "each reader its own seed");
        assert!(sa.iter().all(|&k| k < 1000));
        let mut again = stream(5, 0);
        assert_eq!(sa, (0..50).map(|_| next_key(&mut again, 1000)).collect::<Vec<_>>(), "deterministic");
    }

    #[test]
    fn lines_round_trip_and_aggregate() {
        let r = reader(2, 1, 1_000, 2_000_000);
        let text = r.to_string();
        assert!(text.contains("ops_per_sec=500250.1"), "{text}");
        assert_eq!(ReaderLine::parse(&text).unwrap(), r);
        // Two readers side by side: the span is from the first start to the last end.
        let run = ReadScaleLine::of(&[reader(2, 0, 0, 1_000_000), reader(2, 1, 500_000, 1_500_000)]).unwrap();
        assert_eq!((run.ops, run.span_tsc), (2000, 1_500_000));
        assert!((run.ops_per_sec - 2000.0 / 1.5e-3).abs() < 1e-3);
        assert!((run.sum_ops_per_sec - 2.0e6).abs() < 1e-3);
        assert!((run.storage_reads_per_op - 0.25).abs() < 1e-9);
        assert!((run.tsc_per_op - 1500.0).abs() < 1e-9);
        let parsed = ReadScaleLine::parse(&run.to_string()).unwrap();
        assert_eq!((parsed.readers, parsed.ops, parsed.span_tsc), (2, 2000, 1_500_000));
        assert!(ReadScaleLine::of(&[]).is_err());
        assert!(ReadScaleLine::of(&[reader(2, 0, 0, 10)]).is_err(), "a reader missing");
        assert!(ReadScaleLine::of(&[reader(1, 0, 10, 5)]).is_err(), "ended before it started");
        assert!(ReaderLine::parse("EXO-READER readers=1").is_err());
        assert!(ReaderLine::parse(&text.replace("faults=0", "faults=x")).is_err());
    }
}

/// Which readers a run had: one on CPU 0 (CPU 1 halted, or spinning in
/// init's idle scheduler loop), one on CPU 1, or both at once.
pub fn layout(readers: &[ReaderLine]) -> &'static str {
    let spin = readers.iter().any(|r| r.idle_spin != 0);
    let cpus: alloc::vec::Vec<u64> = readers.iter().map(|r| r.cpu).collect();
    match (&cpus[..], spin) {
        ([0], false) => "cpu0",
        ([0], true) => "cpu0-cpu1-spinning",
        ([1], _) => "cpu1",
        ([0, 1], _) => "cpu0+cpu1",
        _ => "other",
    }
}

/// Every run in a boot's serial log, in order: its `EXO-READER` lines and
/// the `EXO-READSCALE` line that closes it (checked against them).
#[allow(clippy::type_complexity)]
pub fn runs_of(
    serial: &str,
) -> Result<alloc::vec::Vec<(alloc::vec::Vec<ReaderLine>, ReadScaleLine)>, alloc::string::String> {
    use alloc::format;
    let mut runs = alloc::vec::Vec::new();
    let mut pending = alloc::vec::Vec::new();
    for line in serial.lines().map(str::trim) {
        if line.starts_with(ReaderLine::PREFIX) && line[ReaderLine::PREFIX.len()..].starts_with(' ') {
            pending.push(ReaderLine::parse(line).map_err(|e| format!("{line:?}: {e}"))?);
        } else if line.starts_with(ReadScaleLine::PREFIX) {
            let total = ReadScaleLine::parse(line).map_err(|e| format!("{line:?}: {e}"))?;
            let again = ReadScaleLine::of(&pending).map_err(|e| format!("{line:?}: {e}"))?;
            if (again.readers, again.ops, again.span_tsc) != (total.readers, total.ops, total.span_tsc) {
                return Err(format!("{line:?} does not sum its reader lines"));
            }
            runs.push((core::mem::take(&mut pending), total));
        }
    }
    if !pending.is_empty() {
        return Err(format!("{} reader line(s) without their EXO-READSCALE line", pending.len()));
    }
    Ok(runs)
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => None,
        n if n % 2 == 1 => Some(s[n / 2]),
        n => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn runs_are_found_and_checked_in_a_log() {
        let r = |readers, reader, cpu, s, e| ReaderLine {
            readers,
            reader,
            cpu,
            keys: 10,
            ops: 100,
            start_tsc: s,
            end_tsc: e,
            tsc_per_us: 1000,
            ..Default::default()
        };
        let one = [r(1, 0, 1, 0, 1000)];
        assert_eq!(layout(&[r(1, 0, 0, 0, 1)]), "cpu0");
        assert_eq!(layout(&[ReaderLine { idle_spin: 1, ..r(1, 0, 0, 0, 1) }]), "cpu0-cpu1-spinning");
        let two = [r(2, 0, 0, 0, 1000), r(2, 1, 1, 10, 900)];
        let mut log = alloc::string::String::from("init: noise\n");
        for run in [&one[..], &two[..]] {
            for l in run {
                log += &(l.to_string() + "\n");
            }
            log += &(ReadScaleLine::of(run).unwrap().to_string() + "\n");
        }
        let runs = runs_of(&log).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!((layout(&runs[0].0), layout(&runs[1].0)), ("cpu1", "cpu0+cpu1"));
        assert_eq!(runs[1].1.ops, 200);
        let forged = log.replace("span_tsc=1000 ", "span_tsc=5 ");
        assert!(runs_of(&forged).is_err(), "a total that does not sum its readers");
        assert!(runs_of(&(log.clone() + &one[0].to_string())).is_err(), "a reader without its total");
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
