//! A simulated persistent memory that can crash.
//!
//! The model follows x86 with ADR: a store first lands in the CPU cache
//! ("current" contents); `flush` snapshots the line and starts its
//! write-back; `fence` guarantees that every line flushed before it reached
//! the persistence domain with the contents it had when it was flushed.
//! Any dirty line may also be written back early by cache eviction, so a
//! crash image may contain any dirty line — whole, or torn at 8-byte
//! granularity (aligned 8-byte stores are atomic, nothing larger).
//!
//! With [`SimPmem::enable_trace`] every `flush` and `fence` becomes a crash
//! point; [`CrashTrace::for_each_point`] rebuilds the image at each one
//! cheaply (incrementally), so a test can reopen a database at every point.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::{Persist, CACHE_LINE};

type Line = [u8; CACHE_LINE];

/// Counters of what the program asked of the memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub stores: u64,
    pub bytes_stored: u64,
    pub flush_calls: u64,
    pub lines_flushed: u64,
    pub fences: u64,
}

/// A line that is not known to be durable at a crash point.
#[derive(Clone, Debug)]
pub struct PendingLine {
    pub line: usize,
    /// What loads returned at the crash point.
    pub current: Line,
    /// Contents captured by a `flush` not yet fenced, if any.
    pub flushed: Option<Line>,
}

#[derive(Clone, Debug, Default)]
struct TracePoint {
    /// Lines that became durable at this point (by the fence it records).
    persisted: Vec<(usize, Line)>,
    pending: Vec<PendingLine>,
}

/// All crash points recorded since [`SimPmem::enable_trace`].
#[derive(Clone, Debug, Default)]
pub struct CrashTrace {
    base: Vec<u8>,
    points: Vec<TracePoint>,
}

/// The memory as it could be found after a crash at one point.
pub struct CrashPoint<'a> {
    durable: &'a [u8],
    pending: &'a [PendingLine],
}

/// Simulated persistent memory (see the module documentation).
pub struct SimPmem {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Lines whose current contents may differ from the durable ones.
    dirty: BTreeSet<usize>,
    /// Flushed, not yet fenced: contents at flush time.
    flushed: BTreeMap<usize, Line>,
    stats: SimStats,
    trace: Option<CrashTrace>,
    persisted_since_point: Vec<(usize, Line)>,
}

fn line_of(buf: &[u8], line: usize) -> Line {
    let mut l = [0u8; CACHE_LINE];
    l.copy_from_slice(&buf[line * CACHE_LINE..(line + 1) * CACHE_LINE]);
    l
}

impl SimPmem {
    /// A zero-filled memory of `size` bytes (rounded up to whole lines).
    pub fn new(size: usize) -> SimPmem {
        SimPmem::from_image(alloc::vec![0u8; size])
    }

    /// A memory whose durable and current contents are `image` (e.g. a crash
    /// image being reopened).
    pub fn from_image(mut image: Vec<u8>) -> SimPmem {
        let rounded = image.len().div_ceil(CACHE_LINE) * CACHE_LINE;
        image.resize(rounded, 0);
        SimPmem {
            durable: image.clone(),
            current: image,
            dirty: BTreeSet::new(),
            flushed: BTreeMap::new(),
            stats: SimStats::default(),
            trace: None,
            persisted_since_point: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// What loads see.
    pub fn as_slice(&self) -> &[u8] {
        &self.current
    }

    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Stores `data` at `offset` (into the cache: not durable yet).
    ///
    /// # Panics
    /// If the range is outside the memory (a bug in the caller, as a wild
    /// store would be).
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        self.current[offset..offset + data.len()].copy_from_slice(data);
        if !data.is_empty() {
            for line in offset / CACHE_LINE..=(offset + data.len() - 1) / CACHE_LINE {
                self.dirty.insert(line);
            }
        }
        self.stats.stores += 1;
        self.stats.bytes_stored += data.len() as u64;
    }

    /// Starts recording a crash point at every later flush and fence.
    pub fn enable_trace(&mut self) {
        self.trace = Some(CrashTrace { base: self.durable.clone(), points: Vec::new() });
        self.persisted_since_point.clear();
    }

    /// Number of crash points recorded so far.
    pub fn trace_len(&self) -> usize {
        self.trace.as_ref().map_or(0, |t| t.points.len())
    }

    pub fn take_trace(&mut self) -> Option<CrashTrace> {
        self.trace.take()
    }

    /// Image after a crash now in which only fenced data survived.
    pub fn crash_image_strict(&self) -> Vec<u8> {
        self.durable.clone()
    }

    /// Image after a crash now in which a random subset of the not yet
    /// durable lines survived, some of them torn at 8-byte granularity.
    pub fn crash_image_random(&self, seed: u64) -> Vec<u8> {
        let pending = self.pending_lines();
        CrashPoint { durable: &self.durable, pending: &pending }.random(seed)
    }

    fn pending_lines(&self) -> Vec<PendingLine> {
        self.dirty
            .iter()
            .map(|&line| PendingLine {
                line,
                current: line_of(&self.current, line),
                flushed: self.flushed.get(&line).copied(),
            })
            .collect()
    }

    fn record_point(&mut self) {
        if self.trace.is_none() {
            return;
        }
        let pending = self.pending_lines();
        let persisted = core::mem::take(&mut self.persisted_since_point);
        if let Some(t) = self.trace.as_mut() {
            t.points.push(TracePoint { persisted, pending });
        }
    }
}

impl Persist for SimPmem {
    fn flush(&mut self, offset: usize, len: usize) {
        self.stats.flush_calls += 1;
        if len > 0 {
            let last = ((offset + len - 1) / CACHE_LINE).min(self.current.len() / CACHE_LINE - 1);
            for line in offset / CACHE_LINE..=last {
                self.flushed.insert(line, line_of(&self.current, line));
                self.stats.lines_flushed += 1;
            }
        }
        self.record_point();
    }

    fn fence(&mut self) {
        self.stats.fences += 1;
        let flushed = core::mem::take(&mut self.flushed);
        for (line, contents) in flushed {
            self.durable[line * CACHE_LINE..(line + 1) * CACHE_LINE].copy_from_slice(&contents);
            if line_of(&self.current, line) == contents {
                self.dirty.remove(&line);
            }
            if self.trace.is_some() {
                self.persisted_since_point.push((line, contents));
            }
        }
        self.record_point();
    }
}

impl CrashTrace {
    /// Number of crash points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Calls `f(index, point)` for every crash point in order, rebuilding
    /// the durable image incrementally.
    pub fn for_each_point(&self, mut f: impl FnMut(usize, &CrashPoint<'_>)) {
        let mut durable = self.base.clone();
        for (i, p) in self.points.iter().enumerate() {
            for (line, contents) in &p.persisted {
                durable[line * CACHE_LINE..(line + 1) * CACHE_LINE].copy_from_slice(contents);
            }
            f(i, &CrashPoint { durable: &durable, pending: &p.pending });
        }
    }
}

/// The crash images' deterministic generator: the tree's shared test
/// generator (xorshift64*, every seed through SplitMix64's finaliser, so
/// every seed is its own sequence), under the name libdb and libfs use.
pub use testrng::Rng as XorShift;

impl CrashPoint<'_> {
    /// Only what was fenced survives.
    pub fn strict(&self) -> Vec<u8> {
        self.durable.to_vec()
    }

    /// Every pending line survives with its current contents.
    pub fn all_survive(&self) -> Vec<u8> {
        let mut img = self.durable.to_vec();
        for p in self.pending {
            img[p.line * CACHE_LINE..(p.line + 1) * CACHE_LINE].copy_from_slice(&p.current);
        }
        img
    }

    /// Number of lines whose fate a crash here decides.
    pub fn pending_lines(&self) -> usize {
        self.pending.len()
    }

    /// Each pending line independently: lost, survives whole (current or
    /// flushed contents), or torn — every aligned 8-byte word taken from
    /// either the old durable or the newer contents.
    pub fn random(&self, seed: u64) -> Vec<u8> {
        let mut rng = XorShift::new(seed);
        let mut img = self.durable.to_vec();
        for p in self.pending {
            let base = p.line * CACHE_LINE;
            let newer = match (p.flushed, rng.below(2)) {
                (Some(f), 0) => f,
                _ => p.current,
            };
            match rng.below(4) {
                0 => {} // lost
                1 | 2 => img[base..base + CACHE_LINE].copy_from_slice(&newer),
                _ => {
                    for w in 0..CACHE_LINE / 8 {
                        if rng.below(2) == 1 {
                            img[base + w * 8..base + w * 8 + 8].copy_from_slice(&newer[w * 8..w * 8 + 8]);
                        }
                    }
                }
            }
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_has_its_own_sequence() {
        let firsts: std::collections::BTreeSet<u64> = (0..1000u64).map(|s| XorShift::new(s).next_u64()).collect();
        assert_eq!(firsts.len(), 1000, "two seeds share a generator");
    }

    #[test]
    fn unflushed_lost_fenced_kept() {
        let mut m = SimPmem::new(256);
        m.write(0, &[1; 8]);
        m.write(64, &[2; 8]);
        m.flush(0, 8);
        assert_eq!(m.crash_image_strict()[0], 0, "flushed but not fenced is not durable");
        m.fence();
        let img = m.crash_image_strict();
        assert_eq!(img[0], 1);
        assert_eq!(img[64], 0, "never flushed");
    }

    #[test]
    fn store_after_flush_not_covered_by_fence() {
        let mut m = SimPmem::new(128);
        m.write(0, &[1; 8]);
        m.flush(0, 8);
        m.write(0, &[9; 8]);
        m.fence();
        assert_eq!(m.crash_image_strict()[0], 1, "fence persists the flushed contents");
        assert_eq!(m.as_slice()[0], 9);
        // The line stays dirty: a random image may hold 1 or 9, never 0.
        for seed in 0..50 {
            let v = m.crash_image_random(seed)[0];
            assert!(v == 1 || v == 9, "{v}");
        }
    }

    #[test]
    fn random_images_tear_only_at_8_bytes() {
        let mut m = SimPmem::new(128);
        m.write(0, &[0xAB; 64]);
        let mut saw_torn = false;
        for seed in 0..200 {
            let img = m.crash_image_random(seed);
            for w in 0..8 {
                let word = &img[w * 8..w * 8 + 8];
                assert!(word == [0; 8] || word == [0xAB; 8], "8-byte words are atomic");
            }
            let n = img[..64].iter().filter(|&&b| b == 0xAB).count();
            saw_torn |= n > 0 && n < 64;
        }
        assert!(saw_torn, "some images must be torn");
    }

    #[test]
    fn trace_rebuilds_each_point() {
        let mut m = SimPmem::new(256);
        m.enable_trace();
        for i in 0..4u8 {
            m.write(i as usize * 64, &[i + 1; 64]);
            m.flush(i as usize * 64, 64);
            m.fence();
        }
        let t = m.take_trace().unwrap();
        assert_eq!(t.len(), 8);
        let mut seen = Vec::new();
        t.for_each_point(|i, p| {
            let img = p.strict();
            let durable_lines = img.chunks(64).filter(|l| l[0] != 0).count();
            seen.push((i, durable_lines, p.pending_lines()));
        });
        // After flush k (point 2k) k lines durable; after fence k, k+1.
        assert_eq!(seen[0], (0, 0, 1));
        assert_eq!(seen[1], (1, 1, 0));
        assert_eq!(seen[7], (7, 4, 0));
    }
}
