//! libfs on NVMe through the block service, with files mapped by the
//! process's own pager (`paging.rs`): the boots of `libfs_nvme` and
//! `libfs_big` (see `main.rs`).

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use exo_rt::mmio::Window;
use exo_rt::{println, sys};
use libdb::BlockStorage;
use libfs::pager::{Pager, PagerStats};
use libfs::{Fs, Geometry, OpenMode, PAGE_SIZE};

use crate::blockdev::{BlockqCounters, BlockqDevice};
use crate::paging::{self, NvmeFs, Paged, SpareMmu, MAP_VA};
use crate::tree::{
    self, byte, fs_err, mismatch, Failure, FS_ERROR, MAPPED, MAPPED_AT, MAPPED_LEN, MAPPED_SEED, MAPPED_SIZE,
    MISSING_REGION, USAGE,
};

const PS: u64 = PAGE_SIZE as u64;
/// The pager's frame budget: 1 MiB.
pub const BUDGET: usize = 256;
/// `libfs_big`'s file: 8 × the budget.
const BIG: &str = "/big";
const BIG_BYTES: u64 = 8 << 20;
const BIG_SEED: u64 = 11;

pub fn run(args: &str) -> Result<(), Failure> {
    let phase = args.split_whitespace().nth(1).unwrap_or("");
    let (va, bytes, nonce) = (exo_rt::args_word(3), exo_rt::args_word(4), exo_rt::args_word(5));
    if va == 0 || bytes == 0 {
        return Err((MISSING_REGION, format!("no block-service region (args words 3/4 are {va:#x}/{bytes:#x})")));
    }
    if nonce == 0 {
        return Err((USAGE, "no nonce (args word 5)".into()));
    }
    let win = Window::new(va, bytes)
        .ok_or_else(|| (MISSING_REGION, format!("block-service region {va:#x}+{bytes:#x} is not a valid window")))?;
    let dev = BlockqDevice::attach(win).map_err(|e| (MISSING_REGION, format!("block service: {e}")))?;
    let geo = dev.geometry();
    println!(
        "fsapp: block service attached: {} MiB in {}-byte blocks, {} KiB data area",
        (geo.capacity_blocks * geo.block_size as u64) >> 20,
        geo.block_size,
        geo.data_len >> 10
    );
    let storage = BlockStorage::new(dev);
    match phase {
        "create" => create(Fs::mkfs(storage, Geometry::default()).map_err(fs_err("mkfs"))?, nonce),
        "check" => check(Fs::mount(storage).map_err(fs_err("mount"))?, nonce),
        "big" => big(Fs::mkfs(storage, Geometry::default()).map_err(fs_err("mkfs"))?, nonce),
        "pfload" => {
            let ops = args.split_whitespace().nth(2).and_then(|w| w.parse().ok());
            let ops = ops.ok_or_else(|| (USAGE, format!("pfload needs a number of operations: {args:?}")))?;
            crate::powerfail::load(storage, nonce, ops)
        }
        "pfcheck" => crate::powerfail::check(storage, nonce),
        _ => Err((USAGE, format!("phase {phase:?}: expected create, check, big, pfload or pfcheck"))),
    }
}

/// Install the pager over `fs` (which it then owns).
pub(crate) fn start_pager(fs: NvmeFs, map_bytes: u64) -> Result<(), Failure> {
    let mut mmu = SpareMmu::new(BUDGET).map_err(|e| (MISSING_REGION, e))?;
    mmu.prepare(MAP_VA, map_bytes).map_err(|e| (MISSING_REGION, e))?;
    paging::install(Paged { fs, pager: Pager::new(BUDGET), mmu, fault_syscalls: 0 });
    Ok(())
}

pub(crate) fn locked<T>(f: impl FnOnce(&mut Paged) -> Result<T, Failure>) -> Result<T, Failure> {
    paging::with(f).unwrap_or_else(|| Err((FS_ERROR, "the pager is not installed".into())))
}

/// Everything counted, at one moment.
#[derive(Clone, Copy)]
struct Counts {
    pager: PagerStats,
    blockq: BlockqCounters,
    syscalls: u64,
    fault_syscalls: u64,
    faults: u64,
}

fn counts() -> Counts {
    let syscalls = sys::calls();
    paging::with(|p| Counts {
        pager: p.pager.stats,
        blockq: p.fs.storage().device().counters,
        syscalls,
        fault_syscalls: p.fault_syscalls,
        faults: exo_rt::blocking_faults(),
    })
    .unwrap_or(Counts {
        pager: PagerStats::default(),
        blockq: BlockqCounters::default(),
        syscalls,
        fault_syscalls: 0,
        faults: 0,
    })
}

pub(crate) fn msync(va: u64, len: u64) -> Result<(), Failure> {
    locked(|p| p.pager.msync(&mut p.fs, &mut p.mmu, va, len).map_err(|e| (FS_ERROR, format!("msync: {e}"))))
}

pub(crate) fn window(len: u64) -> Result<Window, Failure> {
    Window::new(MAP_VA, len).ok_or_else(|| (USAGE, format!("no window of {len} bytes at {MAP_VA:#x}")))
}

/// `libfs_nvme` boot 1: the tree, then `MAPPED` stored into through the
/// pager and `msync`ed; exit without unmount.
fn create(mut fs: NvmeFs, nonce: u64) -> Result<(), Failure> {
    let h = tree::build(&mut fs, nonce)?;
    start_pager(fs, MAPPED_SIZE)?;
    locked(|p| p.pager.map_file(h, MAP_VA, MAPPED_SIZE).map_err(|e| (FS_ERROR, format!("{e}"))))?;
    let w = window(MAPPED_SIZE)?;
    let c0 = counts();
    let data: Vec<u8> = (0..MAPPED_LEN).map(|i| byte(nonce, MAPPED_SEED, i)).collect();
    w.write(MAPPED_AT, &data);
    let c1 = counts();
    let pages = (MAPPED_AT + MAPPED_LEN).div_ceil(PS) - MAPPED_AT / PS;
    let d = c1.pager;
    println!(
        "fsapp: stored {MAPPED_LEN} bytes into {MAPPED} through its mapping: {} write faults, {} page reads, {} maps; {} syscalls in the handler",
        d.write_faults, d.reads, d.maps, c1.fault_syscalls - c0.fault_syscalls
    );
    if (d.write_faults, d.reads, d.read_faults) != (pages, pages, 0) || c1.faults - c0.faults != pages {
        return Err(mismatch(format!("expected {pages} write faults each reading its page once, got {d:?}")));
    }
    msync(MAP_VA + MAPPED_AT, MAPPED_LEN)?;
    let c2 = counts();
    let (q, s) = (delta_q(&c2.blockq, &c1.blockq), c2.pager);
    println!(
        "fsapp: msync: {} pages written back, {} device writes ({} bytes), {} flush(es), {} metadata commit(s), {} syscalls",
        s.writebacks,
        q.write_requests,
        q.bytes_written,
        q.flushes,
        s.metadata_commits,
        c2.syscalls - c1.syscalls
    );
    if s.writebacks != pages || q.write_requests != pages || q.bytes_written != pages * PS || q.flushes != 1 {
        return Err(mismatch(format!("msync of {pages} dirty pages: {s:?}, {q:?}")));
    }
    println!("fsapp: create passed: exiting without unmount (a crash after the msync)");
    Ok(())
}

fn delta_q(a: &BlockqCounters, b: &BlockqCounters) -> BlockqCounters {
    BlockqCounters {
        write_requests: a.write_requests - b.write_requests,
        read_requests: a.read_requests - b.read_requests,
        flushes: a.flushes - b.flushes,
        bytes_written: a.bytes_written - b.bytes_written,
        bytes_read: a.bytes_read - b.bytes_read,
        bytes_copied: a.bytes_copied - b.bytes_copied,
        yields: a.yields - b.yields,
    }
}

/// `libfs_nvme` boot 2: recovery, every byte and name, fsck; then the
/// mapped file once more, read through a read-only mapping.
fn check(fs: NvmeFs, nonce: u64) -> Result<(), Failure> {
    let mut fs = fs;
    let h = fs.open(MAPPED, OpenMode::READ).map_err(fs_err(MAPPED))?;
    let want = tree::expected(nonce).remove(MAPPED).map(|(_, d)| d).unwrap_or_default();
    // Through the pager (read-only mapping), before the full check.
    start_pager(fs, MAPPED_SIZE)?;
    locked(|p| p.pager.map_file(h, MAP_VA, MAPPED_SIZE).map_err(|e| (FS_ERROR, format!("{e}"))))?;
    let mut got = vec![0u8; MAPPED_SIZE as usize];
    window(MAPPED_SIZE)?.read(0, &mut got);
    if let Some(at) = got.iter().zip(&want).position(|(a, b)| a != b) {
        return Err(mismatch(format!(
            "{MAPPED} through the mapping: byte {at} is {:#04x}, expected {:#04x}",
            got[at], want[at]
        )));
    }
    let s = counts().pager;
    println!(
        "fsapp: {MAPPED} read through a read-only mapping: {} bytes as stored, {} read faults, {} page reads",
        MAPPED_SIZE, s.read_faults, s.reads
    );
    if s.read_faults != MAPPED_SIZE / PS || s.write_faults != 0 {
        return Err(mismatch(format!("expected {} read faults: {s:?}", MAPPED_SIZE / PS)));
    }
    let fs = paging::PAGED.lock().take().map(|p| p.fs).ok_or((FS_ERROR, "pager state gone".into()))?;
    tree::verify(fs, nonce)
}

/// The byte at `i` of the big file.
fn big_byte(i: u64) -> u8 {
    byte(0x5eed, BIG_SEED, i)
}

/// `libfs_big`: a file 8 × the pager's budget written and read back
/// through its mapping, the counts checked against what the design says.
fn big(mut fs: NvmeFs, nonce: u64) -> Result<(), Failure> {
    let n = BIG_BYTES / PS;
    let b = BUDGET as u64;
    let h = fs.open(BIG, OpenMode::CREATE).map_err(fs_err(BIG))?;
    fs.sync().map_err(fs_err("sync"))?;
    start_pager(fs, BIG_BYTES)?;
    locked(|p| p.pager.map_file(h, MAP_VA, BIG_BYTES).map_err(|e| (FS_ERROR, format!("{e}"))))?;
    let w = window(BIG_BYTES)?;
    println!(
        "fsapp: {BIG}: empty file mapped for {} MiB with a budget of {b} frames ({} KiB); writing every page",
        BIG_BYTES >> 20,
        (b * PS) >> 10
    );
    // Phase 1: stores into every page, in order (the file grows by faults).
    let c0 = counts();
    let mut page = vec![0u8; PS as usize];
    for p in 0..n {
        for (k, x) in page.iter_mut().enumerate() {
            *x = big_byte(p * PS + k as u64);
        }
        w.write(p * PS, &page);
    }
    let c1 = counts();
    let s = c1.pager;
    report("write", &c0, &c1);
    let want = (n, 0, n, n, n - b, n - b);
    let got = (s.write_faults, s.reads, s.zero_fills, s.grows, s.evictions, s.evict_writebacks);
    if got != want {
        return Err(mismatch(format!(
            "writing: (write faults, reads, zero fills, grows, evictions, dirty evictions) = {got:?}, expected {want:?}"
        )));
    }
    // Phase 2: msync: exactly the still-dirty (resident) pages, one commit.
    msync(MAP_VA, BIG_BYTES)?;
    let c2 = counts();
    report("msync", &c1, &c2);
    let (s, q) = (c2.pager, delta_q(&c2.blockq, &c1.blockq));
    if s.writebacks != n || s.writebacks - c1.pager.writebacks != b || s.metadata_commits != 1 || q.flushes != 2 {
        return Err(mismatch(format!(
            "msync: {} pages written back in all ({} by msync), {} metadata commits, {} flushes; expected {n}, {b}, 1, 2",
            s.writebacks,
            s.writebacks - c1.pager.writebacks,
            s.metadata_commits,
            q.flushes
        )));
    }
    let size = locked(|p| p.fs.stat(BIG).map(|st| st.size).map_err(fs_err(BIG)))?;
    if size != BIG_BYTES {
        return Err(mismatch(format!("{BIG} is {size} bytes after msync, expected {BIG_BYTES}")));
    }
    // Phase 3: read it all back through the mapping (refaults, evictions).
    for p in 0..n {
        w.read(p * PS, &mut page);
        if let Some(k) = (0..PS as usize).find(|&k| page[k] != big_byte(p * PS + k as u64)) {
            return Err(mismatch(format!("{BIG} through the mapping: byte {} differs", p * PS + k as u64)));
        }
    }
    let c3 = counts();
    report("read back", &c2, &c3);
    let s = c3.pager;
    let got = (s.read_faults, s.reads, s.evictions - c2.pager.evictions, s.writebacks);
    if got != (n, n, n, n) {
        return Err(mismatch(format!(
            "reading back: (read faults, reads, evictions, writebacks) = {got:?}, expected ({n}, {n}, {n}, {n})"
        )));
    }
    // Phase 4: and by pread, through libfs.
    locked(|p| {
        let mut buf = vec![0u8; 64 * 1024];
        let mut off = 0;
        while off < BIG_BYTES {
            let got = p.fs.pread(&h, off, &mut buf).map_err(fs_err(BIG))?;
            if let Some(k) = (0..got).find(|&k| buf[k] != big_byte(off + k as u64)) {
                return Err(mismatch(format!("{BIG} by pread: byte {} differs", off + k as u64)));
            }
            off += buf.len() as u64;
        }
        Ok(())
    })?;
    println!("fsapp: {BIG}: all {BIG_BYTES} bytes verified through the mapping and by pread");
    // Phase 5: the cost of persisting one store: a store into a clean
    // resident page (the last one read), then msync of that page.
    let last = MAP_VA + (n - 1) * PS;
    let c4 = counts();
    w.write8((n - 1) * PS + 5, 0xA5);
    let c5 = counts();
    msync(last, PS)?;
    let c6 = counts();
    let q = delta_q(&c6.blockq, &c5.blockq);
    println!(
        "fsapp: one store into a clean page: {} write fault, {} syscalls (unmap + map), {} device I/O",
        c5.pager.write_faults - c4.pager.write_faults,
        c5.syscalls - c4.syscalls,
        delta_q(&c5.blockq, &c4.blockq).requests()
    );
    println!(
        "EXO-FS pager_msync_one_page device_writes={} bytes={} flushes={} syscalls={} yields={} metadata_commits={}",
        q.write_requests,
        q.bytes_written,
        q.flushes,
        c6.syscalls - c5.syscalls,
        q.yields,
        c6.pager.metadata_commits - c5.pager.metadata_commits
    );
    if (q.write_requests, q.bytes_written, q.flushes) != (1, PS, 1) {
        return Err(mismatch(format!("msync of one dirty page: {q:?}")));
    }
    let mut b1 = [0u8; 1];
    locked(|p| p.fs.pread(&h, (n - 1) * PS + 5, &mut b1).map_err(fs_err(BIG)))?;
    if b1[0] != 0xA5 {
        return Err(mismatch(format!("the msynced store reads back as {:#04x}", b1[0])));
    }
    println!("fsapp: big passed");
    store_through_read_only(h.ino, nonce)
}

/// The mapping's rights: `/big` mapped again, read-only, elsewhere in the
/// window. A load works; a store is refused by the pager, and the runtime
/// ends this process with its report. The parent expects exactly that,
/// after the nonce in mailbox word 1 (everything before passed).
fn store_through_read_only(ino: u64, nonce: u64) -> Result<(), Failure> {
    let ro_va = MAP_VA + 2 * BIG_BYTES;
    locked(|p| {
        let ro = p.fs.open_ino(ino, OpenMode::READ, BIG).map_err(fs_err(BIG))?;
        p.mmu.prepare(ro_va, PS).map_err(|e| (MISSING_REGION, e))?;
        p.pager.map_file(ro, ro_va, PS).map_err(|e| (FS_ERROR, format!("{e}")))?;
        Ok(())
    })?;
    let w = Window::new(ro_va, PS).ok_or_else(|| (USAGE, format!("no window at {ro_va:#x}")))?;
    if w.read8(5) != big_byte(5) {
        return Err(mismatch("the read-only mapping shows other bytes".into()));
    }
    println!("fsapp: {BIG} mapped read-only at {ro_va:#x}: a load works; now a store, which the pager must refuse");
    exo_rt::mem::write(exo_rt::layout::MAILBOX_VA + 8, nonce);
    w.write8(5, 0);
    Err(mismatch(format!("a store through the read-only mapping at {ro_va:#x} was not refused")))
}

/// One phase's counts, and the per-fault system calls.
fn report(phase: &str, a: &Counts, b: &Counts) {
    let (s, q) = (&b.pager, delta_q(&b.blockq, &a.blockq));
    let faults = b.faults - a.faults;
    let calls = b.fault_syscalls - a.fault_syscalls;
    println!(
        "EXO-FS pager_{phase} faults={faults} read_faults={} write_faults={} reads={} zero_fills={} writebacks={} evictions={} dirty_evictions={} maps={} unmaps={} device_reads={} device_writes={} bytes_written={} flushes={} yields={} fault_syscalls={calls} syscalls_per_fault={}.{:02}",
        s.read_faults - a.pager.read_faults,
        s.write_faults - a.pager.write_faults,
        s.reads - a.pager.reads,
        s.zero_fills - a.pager.zero_fills,
        s.writebacks - a.pager.writebacks,
        s.evictions - a.pager.evictions,
        s.evict_writebacks - a.pager.evict_writebacks,
        s.maps - a.pager.maps,
        s.unmaps - a.pager.unmaps,
        q.read_requests,
        q.write_requests,
        q.bytes_written,
        q.flushes,
        q.yields,
        calls / faults.max(1),
        calls * 100 / faults.max(1) % 100
    );
}
