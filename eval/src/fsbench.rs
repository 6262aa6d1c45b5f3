//! `eval-bench run --engine fs`: the five file-system workloads of
//! `cargo xtask eval --fs` (eval/FS.md) with ordinary system calls, on
//! whatever file system holds `--dir` (in the Linux guest: ext4 on NVMe,
//! ext4-DAX on the NVDIMM). The exokernel's side is `fsbench`
//! (apps/src/bin/fsbench), which makes the same operations with libfs
//! linked in; the workload constants are `eval_lines::fs`'s, shared by both.
//!
//! One operation of each, and how it is made durable (`method`):
//! * `append-fsync`: `write` 4 KiB at the end of one file, `fsync`;
//! * `create-small`: `open(O_CREAT|O_EXCL)`, `write` 4 KiB, `fsync`, `close`;
//! * `mmap-overwrite`: a 64-byte store into a shared mapping of a 1 MiB
//!   file, then on `pmem` (`persist`) `clwb` of the line and `sfence`
//!   (`MAP_SYNC`: the file system keeps the mapping's blocks durable), else
//!   (`msync`) `msync(MS_SYNC)` of the page;
//! * `meta-mix`: in turn `mkdir d`, create `d/a` (`open` + `close`),
//!   `rename d/a d/b`, `unlink d/b`; one `syncfs` at the end (`sync-at-end`,
//!   timed and counted, no operation's latency);
//! * `seq-read`: `read` 64 KiB of a `--keys` MiB file in order, the page
//!   cache dropped first (`none`).
//!
//! Setup (files, the big file's contents) is untimed and outside the
//! counters; every workload verifies what it did after its last sample.

use crate::counters::BlockStat;
use crate::fs::linux_method;
use crate::results::Row;
use crate::runner::{delta, Counters, Latencies, Snapshot};
use eval_lines::fs as fsw;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What one `eval-bench run --engine fs` does.
#[derive(Clone, Debug)]
pub struct FsConfig {
    pub dir: PathBuf,
    pub workload: String,
    /// How operations are made durable; must be [`linux_method`]'s.
    pub durability: String,
    pub ops: u64,
    /// `seq-read`: the file's size in MiB (other workloads: ignored).
    pub keys: u64,
    pub medium: String,
    pub system: String,
    pub block_stat: Option<PathBuf>,
}

const BLOCK: usize = fsw::BLOCK_BYTES as usize;
const SMALL: usize = fsw::SMALL_WRITE_BYTES as usize;
const MAPPED: usize = fsw::MAPPED_FILE_BYTES as usize;
const CHUNK: usize = fsw::READ_CHUNK_BYTES as usize;

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// `len` bytes stamped with `seq` in every 8-byte word (as fsbench's).
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (k, w) in v.chunks_mut(8).enumerate() {
        let x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k as u64;
        w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
    }
    v
}

/// Runs the workload in a fresh directory under `--dir` (removed after).
pub fn run(cfg: &FsConfig) -> Result<Row, String> {
    if cfg.ops == 0 {
        return Err("--ops must be at least 1".into());
    }
    let want = linux_method(&cfg.workload, &cfg.medium)
        .ok_or_else(|| format!("unknown fs workload {:?} (known: {})", cfg.workload, fsw::WORKLOADS.join(", ")))?;
    if cfg.durability != want {
        return Err(format!(
            "--durability {:?}: {} on {} is made durable by {want}",
            cfg.durability, cfg.workload, cfg.medium
        ));
    }
    if cfg.workload == "seq-read" && cfg.keys.saturating_mul(1 << 20) < cfg.ops * fsw::READ_CHUNK_BYTES {
        return Err(format!("seq-read: --keys {} MiB is shorter than {} reads of 64 KiB", cfg.keys, cfg.ops));
    }
    let store = cfg.dir.join(format!("eval-fs-{}", std::process::id()));
    if store.exists() {
        std::fs::remove_dir_all(&store).map_err(io_err(format!("clearing {}", store.display())))?;
    }
    std::fs::create_dir_all(&store).map_err(io_err(format!("creating {}", store.display())))?;
    let result = run_in(cfg, &store);
    let cleanup = std::fs::remove_dir_all(&store).map_err(io_err(format!("removing {}", store.display())));
    let row = result?;
    cleanup?;
    Ok(row)
}

/// The measured phase's clock, samples and counters.
struct Phase {
    counters: Counters,
    block_stat: Option<PathBuf>,
    lat: Latencies,
    before: Option<(Snapshot, Option<BlockStat>, Instant)>,
}

impl Phase {
    fn begin(&mut self) -> Result<(), String> {
        if self.block_stat.is_some() {
            // Earlier dirt is not this phase's (see runner.rs).
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() };
        }
        let block = self.block_stat.as_deref().map(BlockStat::read).transpose()?;
        self.before = Some((self.counters.snapshot(), block, Instant::now()));
        Ok(())
    }

    fn timed<T>(&mut self, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        let t = Instant::now();
        let r = f()?;
        self.lat.0.push(t.elapsed().as_nanos() as u64);
        Ok(r)
    }

    fn end(mut self, cfg: &FsConfig) -> Result<Row, String> {
        let after = self.counters.snapshot();
        let (before, block_before, started) = self.before.ok_or("internal: the phase never began")?;
        let elapsed = started.elapsed().as_secs_f64();
        let block_after = match self.block_stat.as_deref() {
            Some(p) => {
                // SAFETY: as above; deferred writeback of the phase counts.
                unsafe { libc::sync() };
                Some(BlockStat::read(p)?)
            }
            None => None,
        };
        let ops = cfg.ops as f64;
        let device = |f: fn(&BlockStat) -> u64| -> Option<f64> {
            let (a, b) = (block_before?, block_after?);
            Some(f(&b).saturating_sub(f(&a)) as f64 / ops)
        };
        let (o1, o2) = self.counters.overhead.ok_or("internal: counters not calibrated")?;
        let net = |f: fn(&Snapshot) -> Option<u64>| -> Option<f64> {
            let measured = delta(f(&before), f(&after))?;
            let cost = delta(f(&o1), f(&o2)).unwrap_or(0);
            Some(measured.saturating_sub(cost) as f64 / ops)
        };
        Ok(Row {
            system: cfg.system.clone(),
            engine: "fs".into(),
            medium: cfg.medium.clone(),
            workload: cfg.workload.clone(),
            value_bytes: fsw::bytes_per_op(&cfg.workload).unwrap_or(0),
            durability: cfg.durability.clone(),
            ops: cfg.ops,
            ops_per_sec: ops / elapsed.max(1e-9),
            p50_us: self.lat.percentile_us(0.50),
            p99_us: self.lat.percentile_us(0.99),
            syscalls_per_op: net(|s| s.syscalls),
            bytes_copied_per_op: net(|s| s.io.map(|io| io.rchar + io.wchar)),
            bytes_written_per_op: net(|s| s.io.map(|io| io.write_bytes)),
            flushes_per_op: net(|s| s.flushes),
            device_write_cmds_per_op: device(|s| s.write_ios),
            device_flushes_per_op: device(|s| s.flush_ios),
            device_bytes_written_per_op: device(|s| s.write_sectors * 512),
            ..Row::default()
        })
    }
}

fn run_in(cfg: &FsConfig, dir: &Path) -> Result<Row, String> {
    let p = Phase {
        counters: Counters::open(),
        block_stat: cfg.block_stat.clone(),
        lat: Latencies(Vec::with_capacity(cfg.ops as usize)),
        before: None,
    };
    match cfg.workload.as_str() {
        "append-fsync" => append_fsync(cfg, dir, p),
        "create-small" => create_small(cfg, dir, p),
        "mmap-overwrite" => mmap_overwrite(cfg, dir, p),
        "meta-mix" => meta_mix(cfg, dir, p),
        "seq-read" => {
            let file = seq_file(cfg, dir)?;
            seq_read(cfg, &file, p)
        }
        other => Err(format!("unknown fs workload {other:?}")),
    }
}

fn append_fsync(cfg: &FsConfig, dir: &Path, mut p: Phase) -> Result<Row, String> {
    let path = dir.join("append");
    let mut f = OpenOptions::new().create(true).append(true).read(true).open(&path).map_err(io_err("append"))?;
    f.sync_all().map_err(io_err("fsync"))?;
    let data: Vec<Vec<u8>> = (0..cfg.ops).map(|i| payload(i, BLOCK)).collect();
    p.begin()?;
    for d in &data {
        p.timed(|| {
            f.write_all(d).map_err(io_err("write"))?;
            f.sync_all().map_err(io_err("fsync"))
        })?;
    }
    let row = p.end(cfg)?;
    let back = std::fs::read(&path).map_err(io_err("reading back"))?;
    if back != data.concat() {
        return Err("append: the file does not hold what was appended".into());
    }
    Ok(row)
}

fn create_small(cfg: &FsConfig, dir: &Path, mut p: Phase) -> Result<Row, String> {
    let sub = dir.join("small");
    std::fs::create_dir(&sub).map_err(io_err("mkdir small"))?;
    let names: Vec<PathBuf> = (0..cfg.ops).map(|i| sub.join(format!("f{i}"))).collect();
    let data = payload(0x5a11, BLOCK);
    p.begin()?;
    for name in &names {
        p.timed(|| {
            let mut f = File::create_new(name).map_err(io_err(name.display()))?;
            f.write_all(&data).map_err(io_err("write"))?;
            f.sync_all().map_err(io_err("fsync"))
            // `f` closes here, inside the timing.
        })?;
    }
    let row = p.end(cfg)?;
    for name in &names {
        let len = std::fs::metadata(name).map_err(io_err(name.display()))?.len();
        if len != BLOCK as u64 {
            return Err(format!("{}: {len} bytes, expected {BLOCK}", name.display()));
        }
    }
    Ok(row)
}

/// A shared read-write mapping of a whole file, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(f: &File, len: usize, sync: bool) -> Result<Mapping, String> {
        let flags = if sync { libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC } else { libc::MAP_SHARED };
        // SAFETY: a fresh mapping of `len` bytes of an open file; the
        // kernel picks the address. Checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, f.as_raw_fd(), 0)
        };
        if ptr == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(format!(
                "mmap{}: {e}",
                if sync { " MAP_SYNC (is the file system mounted -o dax?)" } else { "" }
            ));
        }
        Ok(Mapping { ptr: ptr.cast(), len })
    }

    fn slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` maps `len` bytes read-write for the life of self,
        // and only this process's `&mut self` reaches them.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped; no slice outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Whether the CPU has `clwb` (CPUID.(EAX=7,ECX=0):EBX bit 24).
fn has_clwb() -> bool {
    let leaf = core::arch::x86_64::__cpuid_count(7, 0);
    leaf.ebx & (1 << 24) != 0
}

/// Write the cache lines of `[p, p + len)` back and fence: `clwb` where
/// the CPU has it, else `clflush` (what fsbench's runtime picks too).
fn persist(p: *const u8, len: usize, clwb: bool) {
    let first = p as usize & !63;
    let mut line = first;
    while line < p as usize + len {
        if clwb {
            // SAFETY: `line` is in a mapping of this process; clwb only
            // writes a cache line back (no architectural effect on data).
            unsafe { core::arch::asm!("clwb [{0}]", in(reg) line, options(nostack, preserves_flags)) };
        } else {
            // SAFETY: as above, with clflush.
            unsafe { core::arch::x86_64::_mm_clflush(line as *const u8) };
        }
        line += 64;
    }
    // SAFETY: sfence has no operands and no preconditions.
    unsafe { core::arch::x86_64::_mm_sfence() };
}

fn mmap_overwrite(cfg: &FsConfig, dir: &Path, mut p: Phase) -> Result<Row, String> {
    let path = dir.join("mapped");
    let mut f =
        OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).map_err(io_err("mapped"))?;
    f.write_all(&vec![0u8; MAPPED]).map_err(io_err("write"))?;
    f.sync_all().map_err(io_err("fsync"))?;
    let dax = cfg.durability == "persist";
    let mut map = Mapping::new(&f, MAPPED, dax)?;
    // Fault every page in writable before the phase (the exokernel's
    // file is mapped up front too).
    for page in map.slice().chunks_mut(BLOCK) {
        page[0] = 0;
    }
    if !dax {
        let s = map.slice();
        // SAFETY: msync of the whole live mapping.
        if unsafe { libc::msync(s.as_mut_ptr().cast(), s.len(), libc::MS_SYNC) } != 0 {
            return Err(format!("msync: {}", std::io::Error::last_os_error()));
        }
    }
    let clwb = has_clwb();
    let data: Vec<(usize, Vec<u8>)> =
        (0..cfg.ops).map(|i| (fsw::overwrite_offset(i) as usize, payload(i ^ 0x0f0f, SMALL))).collect();
    p.begin()?;
    for (off, d) in &data {
        let s = map.slice();
        p.timed(|| {
            s[*off..*off + d.len()].copy_from_slice(d);
            if dax {
                persist(s[*off..].as_ptr(), d.len(), clwb);
                Ok(())
            } else {
                let page = *off / BLOCK * BLOCK;
                // SAFETY: msync of one page of the live mapping.
                match unsafe { libc::msync(s[page..].as_mut_ptr().cast(), BLOCK, libc::MS_SYNC) } {
                    0 => Ok(()),
                    _ => Err(format!("msync: {}", std::io::Error::last_os_error())),
                }
            }
        })?;
    }
    let row = p.end(cfg)?;
    drop(map);
    let mut model = vec![0u8; MAPPED];
    for (off, d) in &data {
        model[*off..*off + d.len()].copy_from_slice(d);
    }
    let back = std::fs::read(&path).map_err(io_err("reading back"))?;
    if let Some(at) = back.iter().zip(&model).position(|(x, y)| x != y) {
        return Err(format!("mapped: byte {at} is {:#04x}, expected {:#04x}", back[at], model[at]));
    }
    Ok(row)
}

fn meta_mix(cfg: &FsConfig, dir: &Path, mut p: Phase) -> Result<Row, String> {
    let meta = dir.join("meta");
    std::fs::create_dir(&meta).map_err(io_err("mkdir meta"))?;
    let top = File::open(&meta).map_err(io_err("open meta"))?;
    let names: Vec<[PathBuf; 3]> = (0..cfg.ops.div_ceil(4))
        .map(|k| {
            let d = meta.join(format!("d{k}"));
            [d.clone(), d.join("a"), d.join("b")]
        })
        .collect();
    p.begin()?;
    let mut done = 0;
    'all: for [d, a, b] in &names {
        for step in 0..4 {
            if done == cfg.ops {
                break 'all;
            }
            p.timed(|| match step {
                0 => std::fs::create_dir(d).map_err(io_err(d.display())),
                1 => File::create_new(a).map(drop).map_err(io_err(a.display())),
                2 => std::fs::rename(a, b).map_err(io_err(a.display())),
                _ => std::fs::remove_file(b).map_err(io_err(b.display())),
            })?;
            done += 1;
        }
    }
    // Durability is part of the work: timed and counted, no op's latency.
    // SAFETY: syncfs of an open descriptor.
    if unsafe { libc::syncfs(top.as_raw_fd()) } != 0 {
        return Err(format!("syncfs: {}", std::io::Error::last_os_error()));
    }
    let row = p.end(cfg)?;
    let dirs = std::fs::read_dir(&meta).map_err(io_err("readdir meta"))?.count() as u64;
    if dirs != cfg.ops.div_ceil(4) {
        return Err(format!("meta: {dirs} entries, expected {}", cfg.ops.div_ceil(4)));
    }
    Ok(row)
}

/// The `--keys` MiB file, every 64 KiB chunk starting with its index,
/// written and made durable, then dropped from the page cache.
fn seq_file(cfg: &FsConfig, dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("big");
    let mut f = File::create(&path).map_err(io_err("big"))?;
    let mut mb = payload(0xb16, 1 << 20);
    let per_mib = (1 << 20) / CHUNK;
    for c in 0..cfg.keys {
        for k in 0..per_mib {
            let idx = c * per_mib as u64 + k as u64;
            mb[k * CHUNK..k * CHUNK + 8].copy_from_slice(&idx.to_le_bytes());
        }
        f.write_all(&mb).map_err(io_err("write big"))?;
    }
    f.sync_all().map_err(io_err("fsync big"))?;
    drop(f);
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    // Reads must come from the device, not the page cache (DAX has none).
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
        eprintln!("eval-bench: seq-read: could not drop the page cache ({e}): reads may be cached");
    }
    Ok(path)
}

fn seq_read(cfg: &FsConfig, path: &Path, mut p: Phase) -> Result<Row, String> {
    let mut f = File::open(path).map_err(io_err("open big"))?;
    let mut buf = vec![0u8; CHUNK];
    let mut bad = None;
    p.begin()?;
    for i in 0..cfg.ops {
        p.timed(|| f.read_exact(&mut buf).map_err(io_err("read big")))?;
        if buf[..8] != i.to_le_bytes() {
            bad.get_or_insert(i);
        }
    }
    let row = p.end(cfg)?;
    match bad {
        Some(i) => Err(format!("big: chunk {i} read back wrong")),
        None => Ok(row),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, workload: &str, ops: u64) -> FsConfig {
        FsConfig {
            dir: dir.into(),
            workload: workload.into(),
            durability: linux_method(workload, "host-fs").unwrap().into(),
            ops,
            keys: 2,
            medium: "host-fs".into(),
            system: "host-linux".into(),
            block_stat: None,
        }
    }

    /// Every workload runs here (host file system, `msync` for the
    /// mapping) and verifies itself; the rows carry its name and counts.
    #[test]
    fn every_workload_runs_and_verifies_on_the_host() {
        let dir = std::env::temp_dir().join(format!("eval-fsbench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for w in fsw::WORKLOADS {
            let ops = if w == "seq-read" { 32 } else { 9 };
            let row = run(&cfg(&dir, w, ops)).unwrap_or_else(|e| panic!("{w}: {e}"));
            assert_eq!((row.engine.as_str(), row.workload.as_str(), row.ops), ("fs", w, ops));
            assert!(row.ops_per_sec > 0.0, "{row:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let dir = std::env::temp_dir();
        let mut c = cfg(&dir, "append-fsync", 3);
        c.durability = "async".into();
        assert!(run(&c).unwrap_err().contains("made durable by fsync"));
        c.workload = "fsck".into();
        assert!(run(&c).unwrap_err().contains("unknown fs workload"));
        let mut c = cfg(&dir, "seq-read", 100);
        c.keys = 1;
        assert!(run(&c).unwrap_err().contains("shorter than"));
    }
}
