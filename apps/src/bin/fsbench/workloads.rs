//! The five workloads of `cargo xtask eval --fs`, the same operations the
//! Linux side (`eval::fsbench`, in `eval-bench`) makes with system calls:
//!
//! | workload | one operation | Linux |
//! |---|---|---|
//! | `append-fsync` | append 4 KiB to one file, `fsync` | `write` + `fsync` |
//! | `create-small` | create a file, write 4 KiB, `fsync`, close | `open(O_CREAT)` + `write` + `fsync` + `close` |
//! | `mmap-overwrite` | store 64 B into the file's mapped pages, write back exactly what `persist_ranges` names, fence (pmem); NVMe: store into the file mapped by libfs's pager, `msync` of the 64 B (`mapped.rs`) | store into a shared mapping + `clwb`/`sfence` (ext4-DAX, `MAP_SYNC`) or `msync` (ext4) |
//! | `meta-mix` | in turn `mkdir d`, create `d/a`, rename `d/a` to `d/b`, unlink `d/b`; one `sync` at the end (timed, counted) | the same calls, `syncfs` at the end |
//! | `seq-read` | `pread` 64 KiB of a `seq MiB` file, in order | `read` 64 KiB |
//!
//! Everything untimed (file creation, the big file's contents) happens
//! before a phase's first sample; each phase's results are verified after
//! its last (the counts cover the measured operations only).

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use eval_lines::fs as fsw;
use eval_lines::FsLine;
use exo_rt::println;
use exo_rt::time::rdtsc;
use libdb::{IoStats, PmemRegion, PmemStorage, Storage};
use libfs::{Error, Fs, Geometry, Handle, OpenMode};

use crate::pmemdev::MappedPmem;

/// An exit code and what went wrong.
pub type Failure = (u32, String);

pub const FS_ERROR: u32 = 1;
pub const MISSING_REGION: u32 = 2;
pub const MISMATCH: u32 = 5;
pub const SERVICE: u32 = 6;
pub const USAGE: u32 = 7;

const BLOCK: usize = fsw::BLOCK_BYTES as usize;
const SMALL_WRITE: usize = fsw::SMALL_WRITE_BYTES as usize;
pub const MAPPED_BYTES: u64 = fsw::MAPPED_FILE_BYTES;
const READ_CHUNK: usize = fsw::READ_CHUNK_BYTES as usize;

/// How many operations each workload runs (`seq-read`: the file's size).
pub struct Plan {
    pub ops: u64,
    pub seq_mib: u64,
}

/// What the medium below libfs did, for the per-op counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub device_writes: u64,
    pub device_reads: u64,
    pub device_flushes: u64,
    pub device_bytes: u64,
    pub bytes_copied: u64,
    pub lines: u64,
    pub fences: u64,
}

pub fn fs_err(what: &str) -> impl FnOnce(Error) -> Failure + '_ {
    move |e| (FS_ERROR, format!("{what}: {e}"))
}

pub fn mismatch(why: String) -> Failure {
    (MISMATCH, why)
}

/// `len` bytes stamped with `seq` in every 8-byte word (distinct per op,
/// so no write stores what is already there).
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (k, w) in v.chunks_mut(8).enumerate() {
        let x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k as u64;
        w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
    }
    v
}

/// One reading of every counter.
pub struct Sample {
    tsc: u64,
    calls: u64,
    upcalls: u64,
    /// The kernel's own counts (system calls, upcalls, timer ticks), all
    /// processes, if init shared its info page.
    kernel: Option<(u64, u64, u64)>,
    io: IoStats,
    medium: Counts,
    commits: u64,
    checkpoints: u64,
}

/// (system calls, upcalls, timer ticks) the kernel counted so far, from its
/// info page, which init shares read-only at `SCRATCH_VA`; `None` if not.
fn kernel_counts() -> Option<(u64, u64, u64)> {
    use exo_abi::kinfo as ki;
    let page = exo_rt::mmio::Window::new(exo_rt::layout::SCRATCH_VA, exo_abi::PAGE_SIZE)?;
    if page.read64(8 * ki::W_MAGIC as u64) != ki::MAGIC {
        return None;
    }
    let w = |i: usize| page.read64(8 * i as u64);
    Some((w(ki::W_SYSCALLS), w(ki::W_UPCALLS), w(ki::W_TICKS)))
}

/// One reading of every counter, with `fs` wherever it is (the pager
/// holds it while a file is mapped on NVMe).
pub fn sample_of<S: Storage>(fs: &Fs<S>, counts: &dyn Fn(&S) -> Counts) -> Sample {
    Sample {
        tsc: rdtsc(),
        calls: exo_rt::sys::calls(),
        upcalls: exo_rt::upcalls(),
        kernel: kernel_counts(),
        io: fs.storage().io_stats(),
        medium: counts(fs.storage()),
        commits: fs.commits,
        checkpoints: fs.checkpoints,
    }
}

/// The mounted file system and how to read its medium's counters.
pub struct Bench<'a, S: Storage> {
    pub fs: Fs<S>,
    pub medium: &'static str,
    pub tsc_per_us: u64,
    pub counts: &'a dyn Fn(&S) -> Counts,
}

impl<S: Storage> Bench<'_, S> {
    fn sample(&self) -> Sample {
        sample_of(&self.fs, self.counts)
    }

    /// Print the `EXO-FS` line of a phase from its two samples.
    fn report(&self, workload: &str, method: &str, bytes_per_op: u64, a: &Sample, b: &Sample, lat: &mut [u64]) {
        let ops = lat.len().max(1) as f64;
        let per = |x: u64| x as f64 / ops;
        lat.sort_unstable();
        let pct = |p: usize| lat.get((lat.len() * p / 100).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
        let tpu = self.tsc_per_us.max(1) as f64;
        let total_us = (b.tsc - a.tsc) as f64 / tpu;
        let (m, n) = (a.medium, b.medium);
        let block = self.medium == "nvme";
        let dev = |x: u64, y: u64| block.then(|| per(x - y));
        let pm = |x: u64, y: u64| (!block).then(|| per(x - y));
        let (sys_all, up_all, ticks) = match (a.kernel, b.kernel) {
            (Some(ka), Some(kb)) => (Some(per(kb.0 - ka.0)), Some(per(kb.1 - ka.1)), Some(kb.2 - ka.2)),
            _ => (None, None, None),
        };
        let line = FsLine {
            medium: self.medium.into(),
            workload: workload.into(),
            method: method.into(),
            ops: lat.len() as u64,
            bytes_per_op,
            ops_per_sec: ops / (total_us / 1e6).max(1e-9),
            p50_us: pct(50) as f64 / tpu,
            p99_us: pct(99) as f64 / tpu,
            tsc_per_op: per(b.tsc - a.tsc),
            syscalls_per_op: sys_all,
            upcalls_per_op: up_all,
            app_syscalls_per_op: per(b.calls - a.calls),
            app_upcalls_per_op: per(b.upcalls - a.upcalls),
            bytes_copied_per_op: per(n.bytes_copied - m.bytes_copied),
            writes_per_op: per(b.io.writes - a.io.writes),
            bytes_written_per_op: per(b.io.bytes_written - a.io.bytes_written),
            flushes_per_op: per(b.io.barriers - a.io.barriers),
            device_write_cmds_per_op: dev(n.device_writes, m.device_writes),
            device_read_cmds_per_op: dev(n.device_reads, m.device_reads),
            device_flushes_per_op: dev(n.device_flushes, m.device_flushes),
            device_bytes_written_per_op: dev(n.device_bytes, m.device_bytes),
            lines_flushed_per_op: pm(n.lines, m.lines),
            fences_per_op: pm(n.fences, m.fences),
            commits: b.commits - a.commits,
            checkpoints: b.checkpoints - a.checkpoints,
            timer_ticks: ticks,
            tsc_per_us: self.tsc_per_us,
        };
        println!("{line}");
    }
}

/// The timed part of `mmap-overwrite` on one medium: every `(file offset,
/// data)` stored into the mapped file `h` and made durable, one operation
/// each. Returns the bench (the pager lends the file system back) and the
/// phase's samples, latencies and durability method.
pub type Mapped<S> = for<'a> fn(Bench<'a, S>, &Handle, &[(u64, Vec<u8>)]) -> Result<(Bench<'a, S>, Phase), Failure>;

/// What a timed phase measured.
pub struct Phase {
    pub method: &'static str,
    pub s0: Sample,
    pub s1: Sample,
    pub lat: Vec<u64>,
}

/// pmem: the file's pages are NVDIMM pages mapped in this process (the
/// whole medium is, at its offset), so the operation is a plain store
/// into them, then the cache-line write-back of exactly the ranges libfs
/// names and one fence. No libfs data call, no kernel call.
pub fn pmem_mapped<'a>(
    mut b: Bench<'a, PmemStorage<MappedPmem>>,
    h: &Handle,
    data: &[(u64, Vec<u8>)],
) -> Result<(Bench<'a, PmemStorage<MappedPmem>>, Phase), Failure> {
    // The mapping: where each file page is on the medium (the page
    // tables' view on pmem, where the whole medium is mapped here).
    let mut pages = vec![u64::MAX; (MAPPED_BYTES / BLOCK as u64) as usize];
    for e in b.fs.extents(h.ino).map_err(fs_err("extents"))? {
        for k in 0..e.pages {
            if let Some(p) = pages.get_mut((e.file_page + k) as usize) {
                *p = e.medium_offset + k * BLOCK as u64;
            }
        }
    }
    let mut lat = Vec::with_capacity(data.len());
    let s0 = b.sample();
    for (off, d) in data {
        let t = rdtsc();
        pmem_overwrite(&mut b.fs, h, &pages, *off, d)?;
        lat.push(rdtsc() - t);
    }
    let s1 = b.sample();
    Ok((b, Phase { method: "persist", s0, s1, lat }))
}

fn pmem_overwrite(
    fs: &mut Fs<PmemStorage<MappedPmem>>,
    h: &Handle,
    pages: &[u64],
    off: u64,
    data: &[u8],
) -> Result<(), Failure> {
    let ps = BLOCK as u64;
    let at = pages.get((off / ps) as usize).ok_or_else(|| mismatch(format!("offset {off} is not mapped")))?;
    let r = fs.storage_mut().region_mut();
    r.write((at + off % ps) as usize, data);
    let ranges = fs.persist_ranges(h.ino, off, data.len() as u64).map_err(fs_err("persist_ranges"))?;
    let r = fs.storage_mut().region_mut();
    for (start, len) in ranges {
        r.persist(start as usize, len as usize);
    }
    r.fence().map_err(|e| (FS_ERROR, format!("fence: {e:?}")))
}

/// mkfs on `storage`, then every workload in turn.
pub fn run_all<S: Storage>(
    storage: S,
    medium: &'static str,
    plan: &Plan,
    tsc_per_us: u64,
    counts: &dyn Fn(&S) -> Counts,
    mapped: Mapped<S>,
) -> Result<(), Failure> {
    let fs = Fs::mkfs(storage, Geometry::default()).map_err(fs_err("mkfs"))?;
    let sb = fs.superblock();
    println!(
        "fsbench: mkfs on {medium}: {} pages, {} checkpoint pages per slot, {} log pages, {} data pages free",
        sb.total_pages,
        sb.ckpt_pages,
        sb.log_pages,
        fs.free_pages()
    );
    let mut b = Bench { fs, medium, tsc_per_us, counts };
    append_fsync(&mut b, plan.ops)?;
    create_small(&mut b, plan.ops)?;
    let mut b = mmap_overwrite(b, plan.ops, mapped)?;
    meta_mix(&mut b, plan.ops.div_ceil(4) * 4)?;
    seq_read(&mut b, plan.seq_mib)?;
    println!("fsbench: {medium}: all five workloads ran and verified");
    Ok(())
}

fn append_fsync<S: Storage>(b: &mut Bench<S>, ops: u64) -> Result<(), Failure> {
    let mut h = b.fs.open("/append", OpenMode::CREATE).map_err(fs_err("/append"))?;
    b.fs.sync().map_err(fs_err("sync"))?;
    let data: Vec<Vec<u8>> = (0..ops).map(|i| payload(i, BLOCK)).collect();
    let mut lat = Vec::with_capacity(ops as usize);
    let s0 = b.sample();
    for d in &data {
        let t = rdtsc();
        b.fs.append(&mut h, d).map_err(fs_err("append"))?;
        b.fs.fsync(&h).map_err(fs_err("fsync"))?;
        lat.push(rdtsc() - t);
    }
    let s1 = b.sample();
    b.report("append-fsync", "fsync", BLOCK as u64, &s0, &s1, &mut lat);
    let mut buf = vec![0u8; BLOCK];
    for (i, d) in data.iter().enumerate() {
        b.fs.pread(&h, (i * BLOCK) as u64, &mut buf).map_err(fs_err("/append"))?;
        if buf != *d {
            return Err(mismatch(format!("/append: block {i} does not hold what was appended")));
        }
    }
    Ok(())
}

fn create_small<S: Storage>(b: &mut Bench<S>, ops: u64) -> Result<(), Failure> {
    b.fs.mkdir("/small", 0o755).map_err(fs_err("/small"))?;
    b.fs.sync().map_err(fs_err("sync"))?;
    let names: Vec<String> = (0..ops).map(|i| format!("/small/f{i}")).collect();
    let data = payload(0x5a11, BLOCK);
    let mut lat = Vec::with_capacity(ops as usize);
    let s0 = b.sample();
    for name in &names {
        let t = rdtsc();
        // Closing is the end of `h`'s scope: a libfs handle is a plain
        // value, nothing is held open.
        let mut h = b.fs.open(name, OpenMode::CREATE).map_err(fs_err(name))?;
        b.fs.write(&mut h, &data).map_err(fs_err(name))?;
        b.fs.fsync(&h).map_err(fs_err(name))?;
        lat.push(rdtsc() - t);
    }
    let s1 = b.sample();
    b.report("create-small", "fsync", BLOCK as u64, &s0, &s1, &mut lat);
    for name in &names {
        let st = b.fs.stat(name).map_err(fs_err(name))?;
        if st.size != BLOCK as u64 {
            return Err(mismatch(format!("{name}: {} bytes, expected {BLOCK}", st.size)));
        }
    }
    Ok(())
}

fn mmap_overwrite<'a, S: Storage>(mut b: Bench<'a, S>, ops: u64, mapped: Mapped<S>) -> Result<Bench<'a, S>, Failure> {
    let h = b.fs.open("/mapped", OpenMode::CREATE).map_err(fs_err("/mapped"))?;
    b.fs.allocate(&h, MAPPED_BYTES).map_err(fs_err("/mapped"))?;
    b.fs.sync().map_err(fs_err("sync"))?;
    let data: Vec<(u64, Vec<u8>)> =
        (0..ops).map(|i| (fsw::overwrite_offset(i), payload(i ^ 0x0f0f, SMALL_WRITE))).collect();
    let (mut b, mut p) = mapped(b, &h, &data)?;
    b.report("mmap-overwrite", p.method, SMALL_WRITE as u64, &p.s0, &p.s1, &mut p.lat);
    let mut model = vec![0u8; MAPPED_BYTES as usize];
    for (off, d) in &data {
        model[*off as usize..*off as usize + d.len()].copy_from_slice(d);
    }
    let mut back = vec![0u8; MAPPED_BYTES as usize];
    b.fs.pread(&h, 0, &mut back).map_err(fs_err("/mapped"))?;
    if let Some(at) = back.iter().zip(&model).position(|(x, y)| x != y) {
        return Err(mismatch(format!("/mapped: byte {at} is {:#04x}, expected {:#04x}", back[at], model[at])));
    }
    Ok(b)
}

fn meta_mix<S: Storage>(b: &mut Bench<S>, ops: u64) -> Result<(), Failure> {
    b.fs.mkdir("/meta", 0o755).map_err(fs_err("/meta"))?;
    b.fs.sync().map_err(fs_err("sync"))?;
    let dirs: Vec<[String; 3]> =
        (0..ops / 4).map(|k| [format!("/meta/d{k}"), format!("/meta/d{k}/a"), format!("/meta/d{k}/b")]).collect();
    let mut lat = Vec::with_capacity(ops as usize);
    let s0 = b.sample();
    for [d, a, bb] in &dirs {
        let t = rdtsc();
        b.fs.mkdir(d, 0o755).map_err(fs_err(d))?;
        let t1 = rdtsc();
        b.fs.create(a, 0o644).map_err(fs_err(a))?;
        let t2 = rdtsc();
        b.fs.rename(a, bb).map_err(fs_err(a))?;
        let t3 = rdtsc();
        b.fs.unlink(bb).map_err(fs_err(bb))?;
        let t4 = rdtsc();
        lat.extend_from_slice(&[t1 - t, t2 - t1, t3 - t2, t4 - t3]);
    }
    // Durability is part of the work: timed and counted, no op's latency.
    b.fs.sync().map_err(fs_err("sync"))?;
    let s1 = b.sample();
    b.report("meta-mix", "sync-at-end", 0, &s0, &s1, &mut lat);
    let got: BTreeSet<String> = b.fs.readdir("/meta").map_err(fs_err("/meta"))?.into_iter().map(|e| e.name).collect();
    let want: BTreeSet<String> = (0..ops / 4).map(|k| format!("d{k}")).collect();
    if got != want {
        return Err(mismatch(format!("/meta holds {} names, expected the {} directories", got.len(), want.len())));
    }
    for [d, _, _] in &dirs {
        if !b.fs.readdir(d).map_err(fs_err(d))?.is_empty() {
            return Err(mismatch(format!("{d} is not empty after the unlink")));
        }
    }
    Ok(())
}

fn seq_read<S: Storage>(b: &mut Bench<S>, mib: u64) -> Result<(), Failure> {
    let mut h = b.fs.open("/big", OpenMode::CREATE).map_err(fs_err("/big"))?;
    let chunks = mib * (1 << 20) / READ_CHUNK as u64;
    // Every 64 KiB chunk starts with its index: the read checks it.
    let mut mb = payload(0xb16, 1 << 20);
    for c in 0..mib {
        for k in 0..(1 << 20) / READ_CHUNK {
            let idx = c * ((1 << 20) / READ_CHUNK as u64) + k as u64;
            mb[k * READ_CHUNK..k * READ_CHUNK + 8].copy_from_slice(&idx.to_le_bytes());
        }
        b.fs.write(&mut h, &mb).map_err(fs_err("/big"))?;
    }
    b.fs.sync().map_err(fs_err("sync"))?;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut lat = Vec::with_capacity(chunks as usize);
    let mut bad = None;
    let s0 = b.sample();
    for i in 0..chunks {
        let t = rdtsc();
        let n = b.fs.pread(&h, i * READ_CHUNK as u64, &mut buf).map_err(fs_err("/big"))?;
        lat.push(rdtsc() - t);
        if n != READ_CHUNK || buf[..8] != i.to_le_bytes() {
            bad.get_or_insert(i);
        }
    }
    let s1 = b.sample();
    b.report("seq-read", "none", READ_CHUNK as u64, &s0, &s1, &mut lat);
    match bad {
        Some(i) => Err(mismatch(format!("/big: chunk {i} read back wrong"))),
        None => Ok(()),
    }
}
