//! `eval-bench raw`: 4 KiB random reads or writes straight to a block
//! device with `O_DIRECT` (no page cache, no file system), the Linux half
//! of the drivers benchmark (`cargo xtask eval --drivers`, eval/DRIVERS.md).
//!
//! * Queue depth 1: one thread, synchronous `pread`/`pwrite` (the lowest
//!   latency path Linux offers without polling).
//! * Queue depth N > 1: one thread, `io_uring` with N commands in flight;
//!   each completion is replaced by a new command, submitted together with
//!   the wait for the next completion (`io_uring_enter` with
//!   `min_complete` = 1).
//!
//! Offsets are uniformly random block-aligned positions in the first
//! `span` bytes of the device (the exokernel's driver uses the same 128
//! MiB). Latency is submit to completion as the benchmark process sees it.

use crate::results::Row;

/// The benchmark's workloads, as `randread-qd1` etc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawWorkload {
    pub write: bool,
    pub depth: usize,
}

/// The deepest queue the benchmark supports (the io_uring size).
pub const MAX_DEPTH: usize = 1024;

impl RawWorkload {
    /// `randread-qdN` or `randwrite-qdN` with 1 <= N <= MAX_DEPTH.
    pub fn parse(name: &str) -> Result<RawWorkload, String> {
        let bad = || format!("raw workload {name:?}: expected randread-qdN or randwrite-qdN (1 <= N <= {MAX_DEPTH})");
        let (kind, depth) = name.split_once("-qd").ok_or_else(bad)?;
        let write = match kind {
            "randread" => false,
            "randwrite" => true,
            _ => return Err(bad()),
        };
        let depth: usize = depth.parse().map_err(|_| bad())?;
        if depth == 0 || depth > MAX_DEPTH {
            return Err(bad());
        }
        Ok(RawWorkload { write, depth })
    }

    pub fn name(&self) -> String {
        format!("{}-qd{}", if self.write { "randwrite" } else { "randread" }, self.depth)
    }
}

/// The element at percentile `p` (0..=100) of a sorted slice (nearest
/// rank, rounding down, like the exokernel's driver); 0 for an empty one.
pub fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as u64 - 1) * p.min(100) / 100) as usize]
}

/// Block-aligned offsets drawn with the workloads' seeded generator
/// ([`crate::workload::Rng`], SplitMix64).
pub struct Offsets {
    rng: crate::workload::Rng,
    blocks: u64,
    block: u64,
}

impl Offsets {
    /// Block-aligned offsets in `[0, span)`; `span` must hold a block.
    pub fn new(seed: u64, span: u64, block: u64) -> Result<Offsets, String> {
        if block == 0 || span < block {
            return Err(format!("span {span} B holds no {block} B block"));
        }
        Ok(Offsets { rng: crate::workload::Rng::new(seed), blocks: span / block, block })
    }

    pub fn next_offset(&mut self) -> u64 {
        (self.rng.next_u64() % self.blocks) * self.block
    }
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub ops: u64,
    pub secs: f64,
    /// Per-op latencies in ns, sorted.
    pub latencies_ns: Vec<u64>,
}

/// The result row (the harness fills in the counters it takes outside).
pub fn to_row(system: &str, w: RawWorkload, block: u64, m: &Measured) -> Row {
    let us = |ns: u64| ns as f64 / 1000.0;
    Row {
        system: system.into(),
        engine: "nvme-raw".into(),
        medium: "nvme".into(),
        workload: w.name(),
        value_bytes: block,
        durability: "none".into(),
        ops: m.ops,
        ops_per_sec: if m.secs > 0.0 { (m.ops as f64 / m.secs).round() } else { 0.0 },
        p50_us: us(percentile(&m.latencies_ns, 50)),
        p99_us: us(percentile(&m.latencies_ns, 99)),
        ..Row::default()
    }
}

#[cfg(all(feature = "engines", target_os = "linux"))]
pub use io::run;

#[cfg(all(feature = "engines", target_os = "linux"))]
mod io {
    use super::{Measured, Offsets, RawWorkload};
    use std::fs::{File, OpenOptions};
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;
    use std::path::Path;
    use std::time::Instant;

    /// A page-aligned buffer (O_DIRECT needs aligned memory).
    struct Aligned {
        ptr: *mut u8,
        layout: std::alloc::Layout,
    }

    impl Aligned {
        fn new(len: usize, fill: u8) -> Result<Aligned, String> {
            let layout =
                std::alloc::Layout::from_size_align(len.max(1), 4096).map_err(|e| format!("buffer layout: {e}"))?;
            // SAFETY: the layout has a non-zero size.
            let ptr = unsafe { std::alloc::alloc(layout) };
            if ptr.is_null() {
                return Err(format!("cannot allocate {len} aligned bytes"));
            }
            // SAFETY: `ptr` points to `layout.size()` bytes we own.
            unsafe { std::ptr::write_bytes(ptr, fill, layout.size()) };
            Ok(Aligned { ptr, layout })
        }
        fn slice(&mut self) -> &mut [u8] {
            // SAFETY: the allocation is ours, initialised, and lives as long as `self`.
            unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
        }
    }

    impl Drop for Aligned {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.ptr, self.layout) }
        }
    }

    fn open(dev: &Path, write: bool) -> Result<File, String> {
        OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_DIRECT)
            .open(dev)
            .map_err(|e| format!("opening {} with O_DIRECT: {e}", dev.display()))
    }

    /// Run `ops` commands of `w` on `dev`.
    pub fn run(dev: &Path, w: RawWorkload, ops: u64, block: usize, span: u64, seed: u64) -> Result<Measured, String> {
        if block == 0 || !block.is_multiple_of(512) {
            return Err(format!("--block {block}: must be a non-zero multiple of 512"));
        }
        let f = open(dev, w.write)?;
        // A block device's metadata says 0 bytes; its end offset is its size.
        let size = std::io::Seek::seek(&mut &f, std::io::SeekFrom::End(0))
            .map_err(|e| format!("size of {}: {e}", dev.display()))?;
        let span = span.min(size);
        let mut offs = Offsets::new(seed, span, block as u64)?;
        if w.depth == 1 {
            sync_loop(&f, w.write, ops, block, &mut offs)
        } else {
            uring_loop(&f, w, ops, block, &mut offs)
        }
    }

    fn sync_loop(f: &File, write: bool, ops: u64, block: usize, offs: &mut Offsets) -> Result<Measured, String> {
        let mut buf = Aligned::new(block, 0xa5)?;
        let mut lat = Vec::with_capacity(ops as usize);
        let t0 = Instant::now();
        for _ in 0..ops {
            let off = offs.next_offset();
            let s = Instant::now();
            let n = if write { f.write_at(buf.slice(), off) } else { f.read_at(buf.slice(), off) };
            let n = n.map_err(|e| format!("{} at {off}: {e}", if write { "pwrite" } else { "pread" }))?;
            if n != block {
                return Err(format!("short transfer at {off}: {n} of {block} bytes"));
            }
            lat.push(s.elapsed().as_nanos() as u64);
        }
        let secs = t0.elapsed().as_secs_f64();
        lat.sort_unstable();
        Ok(Measured { ops, secs, latencies_ns: lat })
    }

    fn uring_loop(f: &File, w: RawWorkload, ops: u64, block: usize, offs: &mut Offsets) -> Result<Measured, String> {
        use io_uring::{opcode, types, IoUring};
        let depth = w.depth;
        let mut ring = IoUring::new(depth as u32).map_err(|e| format!("io_uring_setup({depth}): {e}"))?;
        let mut bufs = Aligned::new(block * depth, 0xa5)?;
        let base = bufs.slice().as_mut_ptr();
        let fd = types::Fd(f.as_raw_fd());
        let mut started = vec![Instant::now(); depth];
        let mut lat = Vec::with_capacity(ops as usize);
        let (mut submitted, mut done) = (0u64, 0u64);
        let mut free: Vec<usize> = (0..depth).rev().collect();
        let t0 = Instant::now();
        while done < ops {
            while submitted < ops {
                let Some(slot) = free.pop() else { break };
                // SAFETY: slot < depth, so the block lies inside `bufs`.
                let ptr = unsafe { base.add(slot * block) };
                let off = offs.next_offset();
                let sqe = if w.write {
                    opcode::Write::new(fd, ptr, block as u32).offset(off).build()
                } else {
                    opcode::Read::new(fd, ptr, block as u32).offset(off).build()
                }
                .user_data(slot as u64);
                started[slot] = Instant::now();
                // SAFETY: the buffer stays alive and untouched until the
                // completion for `slot` is reaped below (it is only reused
                // after it returns to `free`).
                unsafe { ring.submission().push(&sqe) }.map_err(|_| "submission queue full".to_string())?;
                submitted += 1;
            }
            ring.submit_and_wait(1).map_err(|e| format!("io_uring_enter: {e}"))?;
            let now = Instant::now();
            for cqe in ring.completion() {
                let slot = cqe.user_data() as usize;
                if slot >= depth {
                    return Err(format!("completion for unknown slot {slot}"));
                }
                if cqe.result() < 0 {
                    let e = std::io::Error::from_raw_os_error(-cqe.result());
                    return Err(format!("{}: {e}", if w.write { "write" } else { "read" }));
                }
                if cqe.result() as usize != block {
                    return Err(format!("short transfer: {} of {block} bytes", cqe.result()));
                }
                lat.push(now.duration_since(started[slot]).as_nanos() as u64);
                free.push(slot);
                done += 1;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        lat.sort_unstable();
        Ok(Measured { ops, secs, latencies_ns: lat })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_workloads_and_rejects_others() {
        assert_eq!(RawWorkload::parse("randread-qd1").unwrap(), RawWorkload { write: false, depth: 1 });
        assert_eq!(RawWorkload::parse("randwrite-qd32").unwrap(), RawWorkload { write: true, depth: 32 });
        for w in ["randread-qd1", "randread-qd32", "randwrite-qd1", "randwrite-qd32"] {
            assert_eq!(RawWorkload::parse(w).unwrap().name(), w);
        }
        for bad in ["randread", "seqread-qd1", "randread-qd0", "randread-qd", "randwrite-qdx", "randread-qd5000"] {
            assert!(RawWorkload::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentiles_use_the_lower_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&v, 50), percentile(&v, 99), percentile(&v, 100)), (50, 99, 100));
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[7], 99), 7);
    }

    #[test]
    fn offsets_are_aligned_in_span_and_cover_it() {
        let mut o = Offsets::new(1, 64 * 4096, 4096).unwrap();
        // The sequence the bench drew before it shared workload::Rng.
        let first: Vec<u64> = (0..4).map(|_| o.next_offset()).collect();
        assert_eq!(first, vec![4096, 159744, 122880, 45056]);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let off = o.next_offset();
            assert!(off.is_multiple_of(4096) && off < 64 * 4096);
            seen.insert(off);
        }
        assert_eq!(seen.len(), 64);
        assert!(Offsets::new(1, 100, 4096).is_err());
        assert!(Offsets::new(1, 4096, 0).is_err());
    }

    #[test]
    fn rows_carry_iops_and_microseconds() {
        let m = Measured { ops: 4, secs: 0.002, latencies_ns: vec![1000, 2000, 3000, 40_000] };
        let r = to_row("linux-guest", RawWorkload { write: true, depth: 32 }, 4096, &m);
        assert_eq!((r.engine.as_str(), r.workload.as_str(), r.medium.as_str()), ("nvme-raw", "randwrite-qd32", "nvme"));
        assert_eq!((r.ops_per_sec, r.p50_us, r.p99_us), (2000.0, 2.0, 3.0));
        assert!(r.syscalls_per_op.is_none(), "counters are the harness's job");
    }
}
