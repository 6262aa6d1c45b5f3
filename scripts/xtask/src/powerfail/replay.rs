//! Rebuilding the medium as a power cut would leave it, and judging what
//! the database recovered from it.
//!
//! A cut falls after the first `n` operations of the write log. Every
//! write before the last flush among them is on the medium. The writes
//! between that flush and the cut had completed but may still have been in
//! the drive's volatile cache: any subset of them may have reached the
//! medium (NVMe does not order them), and one of those that did may be
//! torn — only some of its blocks written (a drive writes a block
//! atomically, not a request).

use super::log::{Op, WriteLog};
use anyhow::{Context, Result};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// One simulated power cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// Operations of the log that happened before the cut.
    pub n: usize,
    /// Of the writes after the last flush before the cut: the indices (into
    /// the log's operations) of those that reached the medium, in order.
    pub survivors: Vec<usize>,
    /// One survivor written only in part: its index and which of its
    /// blocks reached the medium.
    pub torn: Option<(usize, Vec<bool>)>,
}

impl Cut {
    /// A cut right after a flush, or after everything: nothing volatile.
    pub fn clean(n: usize) -> Cut {
        Cut { n, survivors: vec![], torn: None }
    }

    pub fn describe(&self, log: &WriteLog) -> String {
        let torn = match &self.torn {
            Some((i, blocks)) => {
                format!(", op {i} torn ({} of {} blocks)", blocks.iter().filter(|b| **b).count(), blocks.len())
            }
            None => String::new(),
        };
        format!(
            "cut after op {} of {} ({} flushes done), {} unflushed writes survive{torn}",
            self.n,
            log.ops.len(),
            log.flushes_before(self.n),
            self.survivors.len()
        )
    }
}

/// Where the last flush among the first `n` operations is (its index + 1;
/// 0 if none): everything before it is durable.
pub fn durable_prefix(log: &WriteLog, n: usize) -> usize {
    log.ops[..n].iter().rposition(|o| *o == Op::Flush).map_or(0, |i| i + 1)
}

/// The writes after the last flush before the cut (candidates to survive).
pub fn volatile_writes(log: &WriteLog, n: usize) -> Vec<usize> {
    (durable_prefix(log, n)..n).filter(|&i| matches!(log.ops[i], Op::Write { .. })).collect()
}

/// Choose `count` cuts from operation `from` on (where the workload's
/// interesting part starts; one cut falls before it): every `k`-th flush
/// point (so they span the run), the end of the log, and the rest at
/// random operations with a random surviving subset of the volatile
/// writes, a third of them with one survivor torn at `block` granularity.
pub fn plan(log: &WriteLog, from: usize, count: usize, block: u64, rng: &mut testrng::Rng) -> Vec<Cut> {
    let from = from.min(log.ops.len().saturating_sub(1));
    let flush_points: Vec<usize> =
        log.ops.iter().enumerate().filter(|(i, o)| **o == Op::Flush && *i >= from).map(|(i, _)| i + 1).collect();
    let at_flushes = (count / 2).min(flush_points.len());
    let mut cuts: Vec<Cut> = Vec::new();
    if at_flushes > 0 {
        let step = flush_points.len() as f64 / at_flushes as f64;
        cuts.extend((0..at_flushes).map(|k| Cut::clean(flush_points[(k as f64 * step) as usize])));
    }
    cuts.push(Cut::clean(log.ops.len()));
    if from > 1 {
        cuts.push(Cut::clean(from / 2));
    }
    while cuts.len() < count {
        let n = rng.range(from as u64 + 1..=log.ops.len() as u64) as usize;
        let survivors: Vec<usize> = volatile_writes(log, n).into_iter().filter(|_| rng.chance(1, 2)).collect();
        let torn = if !survivors.is_empty() && rng.chance(1, 3) {
            let i = *rng.pick(&survivors);
            let Op::Write { len, .. } = log.ops[i] else { unreachable!("survivors are writes") };
            Some((i, (0..len / block).map(|_| rng.chance(1, 2)).collect()))
        } else {
            None
        };
        cuts.push(Cut { n, survivors, torn });
    }
    cuts.truncate(count.max(1));
    cuts
}

/// Write the medium after `cut` to `out` (a fresh sparse file of
/// `medium_bytes`; the run started from zeros). `log_bytes` is the log file.
pub fn build_image(
    log: &WriteLog,
    log_bytes: &[u8],
    cut: &Cut,
    block: u64,
    medium_bytes: u64,
    out: &Path,
) -> Result<()> {
    let mut f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    f.set_len(medium_bytes)?;
    let zeros = vec![0u8; 1 << 16];
    let mut put = |offset: u64, bytes: Option<&[u8]>, len: u64| -> Result<()> {
        f.seek(SeekFrom::Start(offset))?;
        match bytes {
            Some(b) => f.write_all(b)?,
            None => {
                let mut left = len;
                while left > 0 {
                    let n = left.min(zeros.len() as u64);
                    f.write_all(&zeros[..n as usize])?;
                    left -= n;
                }
            }
        }
        Ok(())
    };
    let durable = durable_prefix(log, cut.n);
    let applied = (0..durable).chain(cut.survivors.iter().copied());
    for i in applied {
        match &log.ops[i] {
            Op::Write { offset, len, data } => {
                let bytes = &log_bytes[*data..*data + *len as usize];
                match &cut.torn {
                    Some((t, blocks)) if *t == i => {
                        for (k, _) in blocks.iter().enumerate().filter(|(_, kept)| **kept) {
                            let at = k as u64 * block;
                            put(offset + at, Some(&bytes[at as usize..(at + block) as usize]), block)?;
                        }
                    }
                    _ => put(*offset, Some(bytes), *len)?,
                }
            }
            Op::Discard { offset, len } => put(*offset, None, *len)?,
            Op::Flush => {}
        }
    }
    f.flush()?;
    Ok(())
}

/// What the workload acknowledged (from its `EXO-PF` lines), in bytes it
/// had written at the time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acks {
    /// The empty database was durable once these bytes were.
    pub created: Option<u64>,
    /// (commits 1..=seq durable, once the first `written` bytes were).
    pub durable: Vec<(u64, u64)>,
    /// Commits the workload issued.
    pub commits: u64,
    /// Bytes it wrote in all (when it got to the end).
    pub total_written: Option<u64>,
}

impl Acks {
    pub fn parse(serial: &str) -> Acks {
        let mut a = Acks::default();
        let field = |line: &str, name: &str| -> Option<u64> {
            line.split_whitespace().find_map(|w| w.strip_prefix(name)).and_then(|v| v.parse().ok())
        };
        for line in serial.lines() {
            let Some(rest) = line.find("EXO-PF ").map(|i| &line[i + 7..]) else { continue };
            if rest.starts_with("created") {
                a.created = field(rest, "written=");
            } else if rest.starts_with("durable") {
                if let (Some(s), Some(b)) = (field(rest, "seq="), field(rest, "written=")) {
                    a.durable.push((s, b));
                }
            } else if rest.starts_with("start") {
                a.commits = field(rest, "commits=").unwrap_or(0);
            } else if rest.starts_with("done") {
                a.total_written = field(rest, "written=");
            }
        }
        a
    }
}

/// The acknowledgements placed in the write log: for each, the index of
/// the flush that made it durable — the first flush after the write that
/// completed its `written` bytes (the workload is the only writer in its
/// window of the medium, so the log's write bytes there are its own, in
/// completion order; writes elsewhere, e.g. the SR-IOV PF driver's check
/// area, are someone else's and not counted).
#[derive(Debug)]
pub struct Placed {
    /// Index of the flush making the empty database durable.
    pub created: Option<usize>,
    /// (seq, index of its flush), for acknowledgements a logged flush covers.
    pub durable: Vec<(u64, usize)>,
    pub commits: u64,
}

impl Placed {
    pub fn new(acks: &Acks, log: &WriteLog, window: std::ops::Range<u64>) -> Result<Placed> {
        let mut cumulative = Vec::with_capacity(log.ops.len());
        let mut bytes = 0u64;
        for op in &log.ops {
            if let Op::Write { offset, len, .. } = *op {
                let inside = offset >= window.start && offset + len <= window.end;
                let outside = offset + len <= window.start || offset >= window.end;
                if !inside && !outside {
                    anyhow::bail!(
                        "a write of {len} bytes at {offset:#x} straddles the workload's window {:#x}..{:#x}",
                        window.start,
                        window.end
                    );
                }
                if inside {
                    bytes += len;
                }
            }
            cumulative.push(bytes);
        }
        if let Some(total) = acks.total_written {
            if total != bytes {
                anyhow::bail!(
                    "the workload wrote {total} bytes, the device log holds {bytes} in its window: another writer?"
                );
            }
        }
        // The first flush at or after the op where `b` bytes were complete.
        let place = |b: u64| -> Option<usize> {
            let done = cumulative.iter().position(|c| *c >= b)?;
            (done..log.ops.len()).find(|&i| log.ops[i] == Op::Flush)
        };
        Ok(Placed {
            created: acks.created.and_then(place),
            durable: acks.durable.iter().filter_map(|(s, b)| place(*b).map(|i| (*s, i))).collect(),
            commits: acks.commits,
        })
    }

    /// What must survive a cut after the first `n` operations: whether the
    /// database must exist, and the commit it must at least hold.
    pub fn required(&self, n: usize) -> (bool, u64) {
        let db = self.created.is_some_and(|i| i < n);
        let seq = self.durable.iter().filter(|(_, i)| *i < n).map(|(s, _)| *s).max().unwrap_or(0);
        (db, seq)
    }
}

/// What the check boot reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovered {
    Seq(u64),
    /// No database on the medium (with the error the open gave).
    Nothing(String),
}

impl Recovered {
    pub fn parse(serial: &str) -> Option<Recovered> {
        let line = serial.lines().find_map(|l| l.find("EXO-PF recovered ").map(|i| &l[i + 17..]))?;
        if let Some(v) = line.strip_prefix("seq=") {
            return v.trim().parse().ok().map(Recovered::Seq);
        }
        line.strip_prefix("none").map(|why| Recovered::Nothing(why.trim_start_matches(':').trim().to_string()))
    }
}

/// The oracle: `Ok` if what was recovered from a cut after `n` operations
/// keeps every acknowledgement the flushes before the cut cover, else what
/// was lost.
pub fn judge(placed: &Placed, n: usize, got: &Recovered) -> std::result::Result<(), String> {
    let (need_db, need_seq) = placed.required(n);
    match got {
        Recovered::Nothing(why) if need_db => Err(format!("the database (durable before the cut) is gone: {why}")),
        Recovered::Nothing(_) => Ok(()),
        Recovered::Seq(m) if *m < need_seq => {
            Err(format!("recovered commit {m}, but commit {need_seq} was acknowledged durable"))
        }
        Recovered::Seq(m) if *m > placed.commits => {
            Err(format!("recovered commit {m}, only {} issued", placed.commits))
        }
        Recovered::Seq(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::log::LogWriter;
    use super::*;

    /// A log of three "commits": each a write then a flush, then two
    /// writes that were never flushed.
    fn sample() -> (Vec<u8>, WriteLog) {
        let mut w = LogWriter::new(512);
        for c in 1..=3u8 {
            w.write(c as u64 * 4096, &[c; 1024]);
            w.flush();
        }
        w.write(0, &[7; 1024]);
        w.write(8192, &[8; 512]);
        let log = WriteLog::parse(&w.bytes, 1 << 16).unwrap();
        (w.bytes, log)
    }

    fn image(log: &WriteLog, bytes: &[u8], cut: &Cut) -> Vec<u8> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("xtask-replay-{}-{k}.img", std::process::id()));
        build_image(log, bytes, cut, 512, 1 << 16, &p).unwrap();
        let img = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        img
    }

    #[test]
    fn a_clean_cut_holds_exactly_the_flushed_writes() {
        let (bytes, log) = sample();
        // After the second flush (ops: w f w f w f w w).
        let img = image(&log, &bytes, &Cut::clean(4));
        assert!(img[4096..5120].iter().all(|b| *b == 1));
        assert!(img[8192..9216].iter().all(|b| *b == 2));
        assert!(img[12288..13312].iter().all(|b| *b == 0));
        assert_eq!(log.flushes_before(4), 2);
        // Mid-way between a write and its flush: the write is volatile, lost.
        let img = image(&log, &bytes, &Cut::clean(5));
        assert!(img[12288..13312].iter().all(|b| *b == 0));
    }

    #[test]
    fn survivors_and_torn_writes_are_applied_in_order_and_in_part() {
        let (bytes, log) = sample();
        assert_eq!(volatile_writes(&log, 8), vec![6, 7]);
        let cut = Cut { n: 8, survivors: vec![7], torn: None };
        let img = image(&log, &bytes, &cut);
        assert!(img[0..1024].iter().all(|b| *b == 0), "op 6 did not survive");
        assert!(img[8192..8704].iter().all(|b| *b == 8), "op 7 overwrote commit 2's first block");
        assert!(img[8704..9216].iter().all(|b| *b == 2));
        let cut = Cut { n: 8, survivors: vec![6], torn: Some((6, vec![false, true])) };
        let img = image(&log, &bytes, &cut);
        assert!(img[0..512].iter().all(|b| *b == 0) && img[512..1024].iter().all(|b| *b == 7));
    }

    #[test]
    fn the_plan_spans_the_flushes_and_stays_inside_the_log() {
        let (_, log) = sample();
        let mut rng = testrng::Rng::new(7);
        let cuts = plan(&log, 0, 12, 512, &mut rng);
        assert_eq!(cuts.len(), 12);
        assert!(cuts.iter().any(|c| *c == Cut::clean(log.ops.len())));
        for c in &cuts {
            assert!(c.n <= log.ops.len());
            assert!(c.survivors.iter().all(|i| volatile_writes(&log, c.n).contains(i)), "{c:?}");
            if let Some((i, blocks)) = &c.torn {
                assert!(c.survivors.contains(i));
                assert_eq!(blocks.len(), if *i == 7 { 1 } else { 2 });
            }
        }
        assert!(cuts.iter().filter(|c| c.survivors.is_empty() && log.flushes_before(c.n) > 0).count() >= 3);
        // From operation 4 on: random cuts after it, one cut before it.
        let cuts = plan(&log, 4, 12, 512, &mut rng);
        assert_eq!(cuts.iter().filter(|c| c.n < 4).count(), 1);
    }

    #[test]
    fn writes_outside_the_workloads_window_are_someone_elses() {
        // Another writer (the SR-IOV PF's check area) at 60 KiB before,
        // between and after the workload's writes in 4096..16384.
        let mut w = LogWriter::new(512);
        w.write(60 << 10, &[9; 1024]);
        w.flush();
        w.write(4096, &[1; 1024]);
        w.write(60 << 10, &[9; 512]);
        w.flush();
        w.write(8192, &[2; 1024]);
        w.flush();
        w.write(60 << 10, &[9; 2048]);
        w.flush();
        let log = WriteLog::parse(&w.bytes, 1 << 16).unwrap();
        let acks = Acks { created: Some(1024), durable: vec![(1, 2048)], commits: 1, total_written: Some(2048) };
        let placed = Placed::new(&acks, &log, 4096..16384).unwrap();
        // ops: 0 w(other) 1 f 2 w 3 w(other) 4 f 5 w 6 f 7 w(other) 8 f
        assert_eq!(placed.created, Some(4));
        assert_eq!(placed.durable, vec![(1, 6)]);
        // Counted over the whole medium, the other writer's bytes would
        // place the acknowledgements too early and fail the total.
        assert!(Placed::new(&acks, &log, 0..u64::MAX).unwrap_err().to_string().contains("another writer"));
        // A write across the window's edge is neither: refused by name.
        let mut w = LogWriter::new(512);
        w.write(3584, &[1; 1024]);
        let log = WriteLog::parse(&w.bytes, 1 << 16).unwrap();
        assert!(Placed::new(&acks, &log, 4096..16384).unwrap_err().to_string().contains("straddles"));
    }

    #[test]
    fn the_oracle_requires_what_the_flushes_before_the_cut_acknowledged() {
        // ops: 0 w(1024) 1 f 2 w(1024) 3 f 4 w(1024) 5 f 6 w 7 w — 3072 bytes
        // flushed, then 1536 more.
        let (_, log) = sample();
        let serial = "noise\nkvdb: EXO-PF created written=1024\nEXO-PF start mode=sync commits=5\n\
                      EXO-PF durable seq=1 written=2048\nEXO-PF durable seq=2 written=3072\n\
                      EXO-PF durable seq=3 written=4608\n";
        let acks = Acks::parse(serial);
        assert_eq!(
            acks,
            Acks {
                created: Some(1024),
                durable: vec![(1, 2048), (2, 3072), (3, 4608)],
                commits: 5,
                total_written: None
            }
        );
        let placed = Placed::new(&acks, &log, 0..u64::MAX).unwrap();
        assert_eq!(placed.created, Some(1));
        // The third acknowledgement's bytes were never followed by a flush.
        assert_eq!(placed.durable, vec![(1, 3), (2, 5)]);
        assert_eq!(placed.required(1), (false, 0));
        assert_eq!(placed.required(2), (true, 0));
        assert_eq!(placed.required(4), (true, 1));
        assert_eq!(placed.required(8), (true, 2));
        assert!(judge(&placed, 1, &Recovered::Nothing("no meta".into())).is_ok());
        assert!(judge(&placed, 2, &Recovered::Nothing("no meta".into())).unwrap_err().contains("gone"));
        assert!(judge(&placed, 8, &Recovered::Seq(1)).unwrap_err().contains("commit 2 was acknowledged"));
        assert!(judge(&placed, 8, &Recovered::Seq(3)).is_ok());
        assert!(judge(&placed, 8, &Recovered::Seq(6)).unwrap_err().contains("only 5"));
        let mut wrong = acks.clone();
        wrong.total_written = Some(999);
        assert!(Placed::new(&wrong, &log, 0..u64::MAX).unwrap_err().to_string().contains("another writer"));
        assert_eq!(Recovered::parse("x\nkvdb: EXO-PF recovered seq=17\n"), Some(Recovered::Seq(17)));
        assert_eq!(
            Recovered::parse("EXO-PF recovered none: no valid meta page\n"),
            Some(Recovered::Nothing("no valid meta page".into()))
        );
        assert_eq!(Recovered::parse("kvdb: FAILED\n"), None);
    }
}
