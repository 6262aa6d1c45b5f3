//! The NVMe pager (`libfs::pager`) driven by a fake address space: a
//! "CPU" whose loads and stores go through translations the pager made,
//! faulting (and asking the pager) when there is none or it is read-only.
//! Checks the counted contract (first touch reads once, write faults,
//! msync writes exactly the dirty pages then flushes once, clean pages are
//! evicted first), a file many times the budget, growth past the end of
//! the file with its metadata committed after the data, and a random
//! operation sequence against a reference byte array.

mod common;

use std::collections::BTreeMap;

use common::*;
use libdb::sim::SimBlockDevice;
use libfs::pager::{Mmu, MmuError, PageState, Pager, PagerStats};
use libfs::{BlockStorage, Fs, Geometry, Handle, OpenMode, Storage, PAGE_SIZE};

const PS: u64 = PAGE_SIZE as u64;
const VA: u64 = 0x10_0000_0000;

/// Frames and a page table: va → (frame, writable).
struct FakeMmu {
    frames: Vec<Vec<u8>>,
    table: BTreeMap<u64, (usize, bool)>,
    maps: u64,
    unmaps: u64,
}

impl FakeMmu {
    fn new(frames: usize) -> FakeMmu {
        FakeMmu { frames: vec![vec![0xAA; PAGE_SIZE]; frames], table: BTreeMap::new(), maps: 0, unmaps: 0 }
    }
}

impl Mmu for FakeMmu {
    fn frame(&mut self, f: usize) -> &mut [u8] {
        &mut self.frames[f]
    }
    fn map(&mut self, f: usize, va: u64, writable: bool) -> Result<(), MmuError> {
        assert_eq!(va % PS, 0);
        if self.table.contains_key(&va) {
            return Err(MmuError { op: "map", va, why: "occupied" });
        }
        // A frame is mapped at one address at most.
        assert!(self.table.values().all(|&(g, _)| g != f), "frame {f} mapped twice");
        self.table.insert(va, (f, writable));
        self.maps += 1;
        Ok(())
    }
    fn unmap(&mut self, va: u64) -> Result<(), MmuError> {
        self.table.remove(&va).ok_or(MmuError { op: "unmap", va, why: "not mapped" })?;
        self.unmaps += 1;
        Ok(())
    }
}

type BFs = Fs<BlockStorage<SimBlockDevice>>;

/// The process: file system, address space and pager.
struct Proc {
    fs: BFs,
    mmu: FakeMmu,
    pager: Pager,
}

impl Proc {
    fn new(fs: BFs, frames: usize) -> Proc {
        Proc { fs, mmu: FakeMmu::new(frames), pager: Pager::new(frames) }
    }

    /// The translation for an access, faulting until there is one.
    fn translate(&mut self, va: u64, write: bool) -> (usize, usize) {
        let page = va & !(PS - 1);
        for _ in 0..3 {
            match self.mmu.table.get(&page) {
                Some(&(f, w)) if w || !write => return (f, (va - page) as usize),
                _ => {
                    let ok = self.pager.fault(&mut self.fs, &mut self.mmu, va, write).expect("fault");
                    assert!(ok, "fault at {va:#x} (write {write}) not resolved");
                }
            }
        }
        panic!("no translation at {va:#x} after faults");
    }
    fn load(&mut self, va: u64) -> u8 {
        let (f, o) = self.translate(va, false);
        self.mmu.frames[f][o]
    }
    fn store(&mut self, va: u64, b: u8) {
        let (f, o) = self.translate(va, true);
        self.mmu.frames[f][o] = b;
    }
    fn msync(&mut self, va: u64, len: u64) {
        self.pager.msync(&mut self.fs, &mut self.mmu, va, len).expect("msync");
    }
    fn io(&self) -> libdb::IoStats {
        self.fs.storage().io_stats()
    }
}

fn fresh_fs(pages: u64) -> BFs {
    block_fs(pages, Geometry::default())
}

fn pattern(seed: u64, i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(seed * 7) ^ (i >> 12)) as u8
}

/// A file of `len` bytes written through libfs with `pattern(seed, _)`.
fn file_with(fs: &mut BFs, path: &str, len: u64, seed: u64) -> Handle {
    let mut h = fs.open(path, OpenMode::CREATE).unwrap();
    let data: Vec<u8> = (0..len).map(|i| pattern(seed, i)).collect();
    fs.write(&mut h, &data).unwrap();
    fs.sync().unwrap();
    h
}

#[test]
fn first_touch_reads_once_and_maps_read_only() {
    let mut fs = fresh_fs(256);
    let h = file_with(&mut fs, "/f", 3 * PS, 1);
    let mut p = Proc::new(fs, 4);
    p.pager.map_file(h, VA, 3 * PS).unwrap();
    let reads0 = p.io().reads;
    assert_eq!(p.pager.state(VA + 5), Some(PageState::Absent));
    assert_eq!(p.load(VA + 5), pattern(1, 5));
    assert_eq!(p.load(VA + 4000), pattern(1, 4000));
    assert_eq!(p.load(VA + 17), pattern(1, 17));
    let s = p.pager.stats;
    assert_eq!((s.faults, s.read_faults, s.reads, s.maps, s.unmaps), (1, 1, 1, 1, 0));
    assert_eq!(p.io().reads - reads0, 1, "one medium read for the page");
    assert_eq!(p.mmu.table.get(&VA).map(|e| e.1), Some(false), "mapped read-only");
    assert_eq!(p.pager.state(VA), Some(PageState::Clean));
    // Another page: its own fault and read.
    assert_eq!(p.load(VA + 2 * PS + 9), pattern(1, 2 * PS + 9));
    assert_eq!((p.pager.stats.faults, p.pager.stats.reads), (2, 2));
}

#[test]
fn write_faults_mark_dirty_and_map_writable() {
    let mut fs = fresh_fs(256);
    let h = file_with(&mut fs, "/f", 4 * PS, 2);
    let mut p = Proc::new(fs, 4);
    p.pager.map_file(h, VA, 4 * PS).unwrap();
    // Clean first, then a store: unmap + map writable, no second read.
    p.load(VA);
    p.store(VA + 1, 0x11);
    let s = p.pager.stats;
    assert_eq!((s.faults, s.read_faults, s.write_faults, s.reads, s.maps, s.unmaps), (2, 1, 1, 1, 2, 1));
    assert_eq!(p.pager.state(VA), Some(PageState::Dirty));
    assert!(p.mmu.table[&VA].1);
    // Stores on a dirty page do not fault.
    p.store(VA + 2, 0x22);
    assert_eq!(p.pager.stats.faults, 2);
    // A store on an absent page: read, then map writable at once.
    p.store(VA + PS + 3, 0x33);
    let s = p.pager.stats;
    assert_eq!((s.faults, s.write_faults, s.reads, s.maps, s.unmaps), (3, 2, 2, 3, 1));
    assert_eq!(p.pager.state(VA + PS), Some(PageState::Dirty));
    // The rest of that page came from the file.
    assert_eq!(p.load(VA + PS + 4), pattern(2, PS + 4));
    // A spurious fault (the translation already allows it) changes nothing.
    assert!(p.pager.fault(&mut p.fs, &mut p.mmu, VA + 5, true).unwrap());
    assert_eq!(p.pager.stats.spurious, 1);
    assert_eq!(p.pager.stats.maps, 3);
}

#[test]
fn faults_outside_mappings_or_against_rights_are_not_resolved() {
    let mut fs = fresh_fs(256);
    let h = file_with(&mut fs, "/f", 2 * PS, 3);
    let ro = fs.open("/f", OpenMode::READ).unwrap();
    let mut p = Proc::new(fs, 4);
    p.pager.map_file(h, VA, 2 * PS).unwrap();
    p.pager.map_file(ro, VA + 16 * PS, 2 * PS).unwrap();
    for addr in [0, VA - 1, VA + 2 * PS, VA + 15 * PS + 4095, VA + 18 * PS] {
        assert!(!p.pager.fault(&mut p.fs, &mut p.mmu, addr, false).unwrap(), "{addr:#x}");
    }
    // Reading through the read-only mapping works; storing does not.
    assert_eq!(p.load(VA + 16 * PS + 7), pattern(3, 7));
    assert!(!p.pager.fault(&mut p.fs, &mut p.mmu, VA + 16 * PS + 7, true).unwrap());
    assert_eq!(p.pager.state(VA + 16 * PS), Some(PageState::Clean));
    // Overlapping, unaligned and empty mappings are refused.
    assert!(p.pager.map_file(h, VA + PS, PS).is_err());
    assert!(p.pager.map_file(h, VA + 100 * PS + 1, PS).is_err());
    assert!(p.pager.map_file(h, VA + 100 * PS, 0).is_err());
    assert!(p.pager.map_file(h, !(PS - 1), 2 * PS).is_err());
}

#[test]
fn msync_writes_back_exactly_the_dirty_pages_in_range_then_flushes_once() {
    let mut fs = fresh_fs(256);
    let h = file_with(&mut fs, "/f", 8 * PS, 4);
    let mut p = Proc::new(fs, 8);
    p.pager.map_file(h, VA, 8 * PS).unwrap();
    for pg in 0..8 {
        p.load(VA + pg * PS);
    }
    for pg in [0u64, 2, 5] {
        p.store(VA + pg * PS + 10, 0xE0 + pg as u8);
    }
    let (io0, s0, commits0) = (p.io(), p.pager.stats, p.fs.commits + p.fs.checkpoints);
    // Pages 0..4: dirty 0 and 2 are written, 5 is not.
    p.msync(VA, 4 * PS);
    let (io1, s1) = (p.io(), p.pager.stats);
    assert_eq!(s1.writebacks - s0.writebacks, 2);
    assert_eq!(io1.writes - io0.writes, 2, "one device write per dirty page");
    assert_eq!(io1.bytes_written - io0.bytes_written, 2 * PS);
    assert_eq!(io1.barriers - io0.barriers, 1, "one flush");
    assert_eq!(p.fs.commits + p.fs.checkpoints, commits0, "in-place data: no metadata commit");
    assert_eq!(s1.metadata_commits, 0);
    assert_eq!((s1.unmaps - s0.unmaps, s1.maps - s0.maps), (2, 2), "remapped read-only");
    assert_eq!(p.pager.state(VA), Some(PageState::Clean));
    assert_eq!(p.pager.state(VA + 2 * PS), Some(PageState::Clean));
    assert_eq!(p.pager.state(VA + 5 * PS), Some(PageState::Dirty));
    assert!(!p.mmu.table[&VA].1);
    // Durable: a crash now keeps pages 0 and 2, page 5 as it was.
    let img = p.fs.storage().device().crash_image_strict();
    let mut back = mount_block(img).unwrap();
    let h2 = back.open("/f", OpenMode::READ).unwrap();
    let mut b = [0u8; 1];
    for (pg, want) in [(0u64, 0xE0), (2, 0xE2), (5, pattern(4, 5 * PS + 10))] {
        back.pread(&h2, pg * PS + 10, &mut b).unwrap();
        assert_eq!(b[0], want, "page {pg}");
    }
    // A store to a page msync cleaned faults again and makes it dirty.
    let f0 = p.pager.stats.write_faults;
    p.store(VA + 11, 1);
    assert_eq!(p.pager.stats.write_faults, f0 + 1);
    // msync with nothing dirty in range: no write, still one flush.
    let io2 = p.io();
    p.msync(VA + 6 * PS, 2 * PS);
    assert_eq!((p.io().writes - io2.writes, p.io().barriers - io2.barriers), (0, 1));
}

#[test]
fn eviction_takes_clean_pages_first_then_writes_back_a_dirty_one() {
    let mut fs = fresh_fs(256);
    let h = file_with(&mut fs, "/f", 10 * PS, 5);
    let mut p = Proc::new(fs, 4);
    p.pager.map_file(h, VA, 10 * PS).unwrap();
    // Loaded in order: 0 dirty, 1 clean, 2 dirty, 3 clean.
    p.store(VA, 1);
    p.load(VA + PS);
    p.store(VA + 2 * PS, 2);
    p.load(VA + 3 * PS);
    assert_eq!(p.pager.resident(), 4);
    p.load(VA + 4 * PS);
    let s = p.pager.stats;
    assert_eq!((s.evictions, s.writebacks), (1, 0));
    assert_eq!(p.pager.state(VA + PS), Some(PageState::Absent), "the oldest clean page went");
    assert_eq!(p.pager.state(VA), Some(PageState::Dirty));
    p.load(VA + 5 * PS);
    assert_eq!(p.pager.state(VA + 3 * PS), Some(PageState::Absent));
    assert_eq!(p.pager.stats.writebacks, 0);
    // Make every resident page dirty: the next load writes back the oldest.
    p.store(VA + 4 * PS, 4);
    p.store(VA + 5 * PS, 5);
    let w0 = p.io().writes;
    p.load(VA + 6 * PS);
    let s = p.pager.stats;
    assert_eq!((s.evictions, s.writebacks, s.evict_writebacks), (3, 1, 1));
    assert_eq!(p.io().writes - w0, 1);
    assert_eq!(p.pager.state(VA), Some(PageState::Absent));
    // Its store survived the round trip through the medium.
    assert_eq!(p.load(VA), 1);
    assert_eq!(p.load(VA + 1), pattern(5, 1));
}

#[test]
fn a_file_many_times_the_budget_round_trips_byte_exact() {
    const BUDGET: usize = 8;
    const PAGES: u64 = 5 * BUDGET as u64;
    let mut fs = fresh_fs(512);
    let h = fs.open("/big", OpenMode::CREATE).unwrap();
    fs.allocate(&h, PAGES * PS).unwrap();
    fs.sync().unwrap();
    let mut p = Proc::new(fs, BUDGET);
    p.pager.map_file(h, VA, PAGES * PS).unwrap();
    for i in (0..PAGES * PS).step_by(61) {
        p.store(VA + i, pattern(9, i));
    }
    let s = p.pager.stats;
    assert_eq!(s.write_faults, PAGES, "one write fault per page");
    assert_eq!(s.evictions, PAGES - BUDGET as u64);
    assert_eq!(s.evict_writebacks, PAGES - BUDGET as u64, "every evicted page was dirty");
    p.msync(VA, PAGES * PS);
    assert_eq!(p.pager.stats.writebacks, PAGES, "every page written exactly once");
    for i in (0..PAGES * PS).step_by(61) {
        assert_eq!(p.load(VA + i), pattern(9, i), "byte {i} through the mapping");
    }
    let mut buf = vec![0u8; (PAGES * PS) as usize];
    p.fs.pread(&h, 0, &mut buf).unwrap();
    for i in (0..PAGES * PS).step_by(61) {
        assert_eq!(buf[i as usize], pattern(9, i), "byte {i} by pread");
    }
    // Reading it all back faulted every page in again, evicting clean ones.
    assert_eq!(p.pager.stats.writebacks, PAGES, "reading writes nothing");
}

#[test]
fn stores_past_the_end_grow_the_file_and_msync_commits_it_after_the_data() {
    let mut fs = fresh_fs(256);
    let mut h = fs.open("/g", OpenMode::CREATE).unwrap();
    fs.write(&mut h, b"0123456789").unwrap();
    fs.sync().unwrap();
    let mut p = Proc::new(fs, 4);
    p.pager.map_file(h, VA, 16 * PS).unwrap();
    // Loads past the end read zeros, without I/O and without growing.
    assert_eq!(p.load(VA + 9), b'9');
    assert_eq!(p.load(VA + 5 * PS), 0);
    assert_eq!(p.pager.stats.zero_fills, 1);
    assert_eq!(p.fs.stat("/g").unwrap().size, 10);
    // A store in the last (partial) page grows the file to its end, one in
    // page 3 to the end of page 3.
    p.store(VA + 20, b'x');
    assert_eq!(p.fs.stat("/g").unwrap().size, PS);
    p.store(VA + 3 * PS + 1, b'y');
    assert_eq!(p.fs.stat("/g").unwrap().size, 4 * PS);
    assert_eq!(p.pager.stats.grows, 2);
    // Trace msync: data writes, then barrier, then the commit, then barrier.
    p.fs.storage_mut().device_mut().enable_trace();
    let (w0, b0) = (p.fs.storage().device().writes, p.fs.storage().device().flushes);
    p.msync(VA, 16 * PS);
    assert_eq!(p.pager.stats.metadata_commits, 1);
    let dev = p.fs.storage().device();
    assert_eq!(dev.flushes - b0, 2, "data barrier + commit point");
    assert_eq!(dev.writes - w0, 3, "page 0, page 3, one log chunk");
    // Crash at every point of it: the old file, or the whole new one.
    let trace = p.fs.storage_mut().device_mut().take_trace().unwrap();
    let mut outcomes = std::collections::BTreeSet::new();
    trace.for_each_point(|_, pt| {
        for img in [pt.strict(), pt.all_survive()] {
            let mut fs = mount_block(img).unwrap();
            let size = fs.stat("/g").unwrap().size;
            let h = fs.open("/g", OpenMode::READ).unwrap();
            let mut buf = vec![0u8; size as usize];
            fs.pread(&h, 0, &mut buf).unwrap();
            if size == 10 {
                assert_eq!(&buf, b"0123456789");
            } else {
                assert_eq!(size, 4 * PS);
                assert_eq!(&buf[..10], b"0123456789");
                assert_eq!((buf[20], buf[3 * PS as usize + 1]), (b'x', b'y'), "metadata durable before its data");
                assert!(buf[21..3 * PS as usize].iter().all(|&b| b == 0));
            }
            outcomes.insert(size);
        }
    });
    assert_eq!(outcomes.into_iter().collect::<Vec<_>>(), vec![10, 4 * PS]);
}

#[test]
fn unmap_file_persists_and_returns_every_frame() {
    let mut fs = fresh_fs(256);
    let h = file_with(&mut fs, "/f", 6 * PS, 6);
    let mut p = Proc::new(fs, 3);
    let id = p.pager.map_file(h, VA, 6 * PS).unwrap();
    for pg in 0..6 {
        p.store(VA + pg * PS, pg as u8);
    }
    p.pager.unmap_file(&mut p.fs, &mut p.mmu, id).unwrap();
    assert!(p.mmu.table.is_empty());
    assert_eq!(p.pager.resident(), 0);
    assert!(!p.pager.fault(&mut p.fs, &mut p.mmu, VA, false).unwrap());
    let mut back = mount_block(p.fs.storage().device().crash_image_strict()).unwrap();
    let h = back.open("/f", OpenMode::READ).unwrap();
    for pg in 0..6 {
        let mut b = [0u8; 2];
        back.pread(&h, pg * PS, &mut b).unwrap();
        assert_eq!(b, [pg as u8, pattern(6, pg * PS + 1)]);
    }
    // The mapping's id and range can be used again.
    p.pager.map_file(h, VA, PS).unwrap();
}

/// Random loads, stores, msyncs and remounts against a reference array.
#[test]
fn random_operations_match_a_reference() {
    for seed in 0..8u64 {
        random_run(seed, 3000);
    }
}

fn random_run(seed: u64, ops: usize) {
    let mut rng = testrng::Rng::new(seed);
    let pages: u64 = 12 + rng.below(12);
    let budget = 2 + rng.below(5) as usize;
    let start = rng.below(3 * PS);
    let mut fs = fresh_fs(512);
    let mut h = fs.open("/r", OpenMode::CREATE).unwrap();
    let init: Vec<u8> = (0..start).map(|i| pattern(seed, i)).collect();
    fs.write(&mut h, &init).unwrap();
    fs.sync().unwrap();
    // What the file holds as seen through the mapping (its size grows in
    // whole pages with stores).
    let mut reference = init.clone();
    let mut durable = init;
    let mut p = Proc::new(fs, budget);
    let mut id = p.pager.map_file(h, VA, pages * PS).unwrap();
    for op in 0..ops {
        match rng.below(100) {
            0..=44 => {
                let at = rng.below(pages * PS);
                let len = 1 + rng.below(300).min(pages * PS - at - 1);
                for i in at..at + len {
                    let b = rng.next_u64() as u8;
                    p.store(VA + i, b);
                    let end = (i / PS + 1) * PS;
                    if reference.len() < end as usize {
                        reference.resize(end as usize, 0);
                    }
                    reference[i as usize] = b;
                }
            }
            45..=84 => {
                let at = rng.below(pages * PS);
                let got = p.load(VA + at);
                let want = reference.get(at as usize).copied().unwrap_or(0);
                assert_eq!(got, want, "seed {seed} op {op}: byte {at}");
            }
            85..=94 => {
                let at = rng.below(pages) * PS;
                let len = (1 + rng.below(pages)) * PS;
                let dirty = (at..(at + len).min(pages * PS))
                    .step_by(PS as usize)
                    .filter(|&o| p.pager.state(VA + o) == Some(PageState::Dirty))
                    .count() as u64;
                let (s0, io0) = (p.pager.stats, p.io());
                p.msync(VA + at, len);
                let (s1, io1) = (p.pager.stats, p.io());
                assert_eq!(s1.writebacks - s0.writebacks, dirty, "seed {seed} op {op}: exactly the dirty pages");
                assert!(io1.barriers - io0.barriers >= 1, "seed {seed} op {op}: msync flushed");
                assert_eq!(p.fs.stat("/r").unwrap().size, reference.len() as u64);
            }
            _ => {
                // Make everything durable, unmount, crash-image, remount.
                p.pager.unmap_file(&mut p.fs, &mut p.mmu, id).unwrap();
                durable.clone_from(&reference);
                let img = p.fs.storage().device().crash_image_strict();
                let fs = mount_block(img).unwrap();
                let h = {
                    let mut fs = fs;
                    let h = fs.open("/r", OpenMode::WRITE).unwrap();
                    let mut buf = vec![0u8; reference.len()];
                    assert_eq!(fs.stat("/r").unwrap().size, reference.len() as u64, "seed {seed} op {op}");
                    fs.pread(&h, 0, &mut buf).unwrap();
                    assert!(buf == durable, "seed {seed} op {op}: remounted file differs");
                    p = Proc::new(fs, budget);
                    h
                };
                id = p.pager.map_file(h, VA, pages * PS).unwrap();
            }
        }
        assert!(p.pager.resident() <= budget);
    }
    // Finally: msync everything, the file by pread equals the reference.
    p.msync(VA, pages * PS);
    let h = p.fs.open("/r", OpenMode::READ).unwrap();
    let mut buf = vec![0u8; reference.len()];
    p.fs.pread(&h, 0, &mut buf).unwrap();
    assert!(buf == reference, "seed {seed}: file differs from the reference after msync");
    let s: PagerStats = p.pager.stats;
    assert!(s.writebacks >= s.evict_writebacks && s.faults > 0, "seed {seed}: {s:?}");
}

/// After `msync(range)`, a crash at a random point (any subset of the
/// writes issued since, torn at sectors: evictions of other dirty pages,
/// growth) keeps every page of the range that was not stored into again
/// exactly as it was msynced, and the file system mounts clean.
#[test]
fn a_crash_after_msync_keeps_the_msynced_pages() {
    let mut checked = 0;
    for seed in 0..24u64 {
        let mut rng = testrng::Rng::new(seed ^ 0xc0ffee);
        let pages = 16u64;
        let mut fs = fresh_fs(512);
        let h = file_with(&mut fs, "/c", (4 + rng.below(8)) * PS, seed);
        let mut p = Proc::new(fs, 2 + rng.below(4) as usize);
        p.pager.map_file(h, VA, pages * PS).unwrap();
        let storm = |p: &mut Proc, rng: &mut testrng::Rng, stores: usize, touched: &mut Vec<u64>| {
            for _ in 0..stores {
                let at = rng.below(pages * PS);
                p.store(VA + at, rng.next_u64() as u8);
                touched.push(at / PS);
            }
        };
        storm(&mut p, &mut rng, 40, &mut Vec::new());
        let first = rng.below(pages);
        let n = 1 + rng.below(pages - first);
        p.msync(VA + first * PS, n * PS);
        let size = p.fs.stat("/c").unwrap().size;
        let mut synced = BTreeMap::new();
        for pg in first..first + n {
            if pg * PS < size {
                let page: Vec<u8> = (0..PS).map(|i| p.load(VA + pg * PS + i)).collect();
                synced.insert(pg, page);
            }
        }
        let mut touched = Vec::new();
        storm(&mut p, &mut rng, 6, &mut touched);
        for k in 0..20 {
            let img = p.fs.storage().device().crash_image_random(seed * 100 + k);
            let mut back = mount_block(img).unwrap_or_else(|e| panic!("seed {seed}: mount after a crash: {e}"));
            assert!(back.check().is_empty(), "seed {seed}");
            assert!(back.stat("/c").unwrap().size >= size, "seed {seed}: the msynced size is durable");
            let hb = back.open("/c", OpenMode::READ).unwrap();
            for (pg, want) in &synced {
                if touched.contains(pg) {
                    continue;
                }
                let mut got = vec![0u8; PS as usize];
                back.pread(&hb, pg * PS, &mut got).unwrap();
                assert!(&got == want, "seed {seed} crash {k}: msynced page {pg} differs");
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "only {checked} msynced pages checked");
}
