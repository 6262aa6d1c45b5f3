//! Host tests of the page-table calls over emulated physical memory.

use super::*;
use std::collections::{BTreeMap, HashMap};

/// Emulated physical memory: frames allocated on demand, all zero.
#[derive(Default)]
struct Mem {
    words: HashMap<u64, u64>,
    next_frame: u64,
}

impl PhysMem for Mem {
    fn read(&self, pa: u64) -> u64 {
        assert_eq!(pa % 8, 0);
        *self.words.get(&pa).unwrap_or(&0)
    }
    fn write(&mut self, pa: u64, v: u64) {
        assert_eq!(pa % 8, 0);
        self.words.insert(pa, v);
    }
    /// RAM is what the world handed out; [`NOT_RAM`] stands for device
    /// registers or persistent memory.
    fn is_ram(&self, pa: u64) -> bool {
        (RAM_START..self.next_frame).contains(&pa)
    }
}

const RAM_START: u64 = 0x10_0000;
/// A frame outside RAM (device registers, persistent memory).
const NOT_RAM: u64 = 0xfed0_0000;

/// A TLB as the hardware may behave: it remembers every translation ever
/// used, in every address space, until the kernel asks for a flush. (A real
/// CPU forgets a switched-out space's entries when CR3 is reloaded; keeping
/// them here makes the model stricter, as several CPUs would be.)
#[derive(Default)]
struct TlbModel {
    /// (space, page address) -> (frame, writable)
    cached: BTreeMap<(u64, u64), (u64, bool)>,
    flushes: u64,
}

impl Tlb for TlbModel {
    fn flush_everywhere(&mut self) {
        self.cached.clear();
        self.flushes += 1;
    }
}

/// What the MMU finds for `va` in `root`: the frame and whether every level
/// allows writing (present and user at every level, a page at the end).
fn hw_walk(mem: &Mem, root: u64, va: u64) -> Option<(u64, bool)> {
    if va >= USER_END {
        return None;
    }
    let mut table = root;
    let mut writable = true;
    for l in (0..=3u8).rev() {
        let e = mem.read(table + index(va, l) * 8);
        writable &= e & RW != 0;
        match decode(e, l) {
            Kind::Table { frame, .. } if l > 0 => table = frame,
            Kind::Page { frame, .. } if l == 0 => return Some((frame, writable)),
            _ => return None,
        }
    }
    None
}

const KERNEL_MARK: u64 = 0xdead_0000_0000_0003;

/// A fake I/O-MMU: device index -> (iova -> (frame, writable)), with a
/// DMA window of 16 pages per device.
#[derive(Default)]
struct FakeDevices {
    maps: BTreeMap<(u64, u64), (u64, bool)>,
    invalidations: u64,
}

impl DeviceTables for FakeDevices {
    fn map(&mut self, index: u64, iova: u64, pa: u64, write: bool) -> Result<(), Error> {
        if index > 1 {
            return Err(Error::NotMapped);
        }
        if iova >= 16 * PAGE_SIZE {
            return Err(Error::BadAddress);
        }
        if self.maps.contains_key(&(index, iova)) {
            return Err(Error::Occupied);
        }
        self.maps.insert((index, iova), (pa, write));
        self.invalidations += 1;
        Ok(())
    }
    fn unmap(&mut self, index: u64, iova: u64) -> Result<(), Error> {
        self.maps.remove(&(index, iova)).map(|_| ()).ok_or(Error::NotMapped)?;
        self.invalidations += 1;
        Ok(())
    }
}

struct World {
    mem: Mem,
    tlb: TlbModel,
    dev: FakeDevices,
    kernel_half: [u64; 256],
    init: u64,
}

const FRAMES_VA: u64 = 0x4000_0000; // where init holds spare frames

impl World {
    /// An init with `n` owned frames at FRAMES_VA.. and tables for the
    /// low 2 MiB (handles live there).
    fn new(n: u64) -> World {
        let mut mem = Mem { words: HashMap::new(), next_frame: RAM_START };
        let mut kernel_half = [0u64; 256];
        for (i, e) in kernel_half.iter_mut().enumerate() {
            *e = KERNEL_MARK + ((i as u64) << 12);
        }
        let root = mem.next_frame;
        mem.next_frame += PAGE_SIZE;
        for (i, e) in kernel_half.iter().enumerate() {
            mem.write(root + (256 + i as u64) * 8, *e);
        }
        let mut frames = Vec::new();
        for _ in 0..n + 16 {
            frames.push(mem.next_frame);
            mem.next_frame += PAGE_SIZE;
        }
        let mut pool = frames.split_off(n as usize);
        {
            let mut bm = BootMapper { mem: &mut mem, alloc: || pool.pop(), root };
            for (i, f) in frames.iter().enumerate() {
                bm.map_leaf(
                    FRAMES_VA + i as u64 * PAGE_SIZE,
                    *f,
                    present_bits(Rights::WRITE | Rights::OWN | Rights::GRANT),
                )
                .unwrap();
            }
            bm.leaf_slot(0x1000).unwrap();
        }
        World { mem, tlb: TlbModel::default(), dev: FakeDevices::default(), kernel_half, init: root }
    }
    fn frame_va(i: u64) -> u64 {
        FRAMES_VA + i * PAGE_SIZE
    }
    fn create(&mut self, caller: u64, va: u64, level: u64, frame_va: u64) -> Result<(), Error> {
        create(&mut self.mem, &mut self.tlb, caller, va, level, frame_va)
    }
    fn create_as(&mut self, caller: u64, handle_va: u64, frame_va: u64) -> Result<u64, Error> {
        let kh = self.kernel_half;
        create_as(&mut self.mem, &mut self.tlb, caller, handle_va, frame_va, &kh)
    }
    fn map(&mut self, caller: u64, src: u64, level: u64, dst_as: u64, dst: u64, r: Rights) -> Result<(), Error> {
        map(&mut self.mem, &mut self.tlb, &mut self.dev, caller, src, level, dst_as, dst, r.bits())
    }
    fn unmap(&mut self, caller: u64, as_: u64, va: u64, level: u64) -> Result<(), Error> {
        unmap(&mut self.mem, &mut self.tlb, &mut self.dev, caller, as_, va, level)
    }
    /// Build tables down to level 1 for `va` in `caller` from its frames
    /// `fi..fi+3`.
    fn tables_for(&mut self, caller: u64, va: u64, fi: u64) {
        let va3 = va & !(span(3) - 1);
        let va2 = va & !(span(2) - 1);
        let va1 = va & !(span(1) - 1);
        for (k, (v, l)) in [(va3, 3), (va2, 2), (va1, 1)].into_iter().enumerate() {
            match self.create(caller, v, l, Self::frame_va(fi + k as u64)) {
                Ok(()) | Err(Error::Occupied) => {}
                Err(e) => panic!("tables_for {v:#x} level {l}: {e:?}"),
            }
        }
    }
    fn write_user(&mut self, root: u64, va: u64, v: u64) -> bool {
        match translate(&self.mem, root, va, true) {
            Some(pa) => {
                self.mem.write(pa, v);
                true
            }
            None => false,
        }
    }
    fn read_user(&self, root: u64, va: u64) -> Option<u64> {
        translate(&self.mem, root, va, false).map(|pa| self.mem.read(pa))
    }
    /// A user access through the TLB model: a cached translation is used
    /// as it is (stale or not); a miss walks the tables and fills the TLB.
    /// Returns the frame reached, or None for a fault.
    fn access(&mut self, root: u64, va: u64, write: bool) -> Option<u64> {
        let page = va & !(PAGE_SIZE - 1);
        if let Some((frame, w)) = self.tlb.cached.get(&(root, page)) {
            if *w || !write {
                return Some(*frame);
            }
        }
        let (frame, w) = hw_walk(&self.mem, root, page)?;
        self.tlb.cached.insert((root, page), (frame, w));
        (w || !write).then_some(frame)
    }
    /// Every cached translation is still allowed by the page tables: same
    /// frame, and writable only if the tables still say so.
    fn tlb_is_coherent(&self) -> Result<(), String> {
        for ((root, va), (frame, w)) in &self.tlb.cached {
            match hw_walk(&self.mem, *root, *va) {
                Some((f, now_w)) if f == *frame && (now_w || !*w) => {}
                now => {
                    return Err(format!(
                        "stale TLB entry: space {root:#x} va {va:#x} -> frame {frame:#x} writable {w}, tables now say {now:x?}"
                    ))
                }
            }
        }
        Ok(())
    }
}

#[test]
fn create_builds_tables_from_owned_frames_and_takes_them_away() {
    let mut w = World::new(8);
    let va = 0x100_0000_0000;
    w.create(w.init, va & !(span(3) - 1), 3, World::frame_va(0)).unwrap();
    // The frame is gone from the caller.
    assert_eq!(walk(&w.mem, w.init, World::frame_va(0), 0).unwrap().entry, 0);
    assert_eq!(w.tlb.flushes, 1);
    w.create(w.init, va & !(span(2) - 1), 2, World::frame_va(1)).unwrap();
    w.create(w.init, va, 1, World::frame_va(2)).unwrap();
    // Errors: occupied, bad level, bad alignment, no table, not mapped.
    assert_eq!(w.create(w.init, va, 1, World::frame_va(3)), Err(Error::Occupied));
    assert_eq!(w.create(w.init, va, 0, World::frame_va(3)), Err(Error::BadLevel));
    assert_eq!(w.create(w.init, va, 4, World::frame_va(3)), Err(Error::BadLevel));
    assert_eq!(w.create(w.init, va + 0x1000, 1, World::frame_va(3)), Err(Error::BadAddress));
    assert_eq!(w.create(w.init, 0x7000_0000_0000, 1, World::frame_va(3)), Err(Error::NoTable));
    assert_eq!(w.create(w.init, va + span(1), 1, World::frame_va(0)), Err(Error::NotMapped));
    assert_eq!(w.create(w.init, USER_END, 3, World::frame_va(3)), Err(Error::BadAddress));
    assert_eq!(w.create(w.init, 0xffff_8000_0000_0000, 3, World::frame_va(3)), Err(Error::BadAddress));
}

#[test]
fn a_failed_call_changes_nothing() {
    let mut w = World::new(8);
    let before = w.mem.words.clone();
    let _ = w.create(w.init, 0x10_0000_0000, 1, World::frame_va(0)); // NoTable
    let _ = w.map(w.init, World::frame_va(0), 0, 0, World::frame_va(1), Rights::OWN); // Occupied
    let _ = w.unmap(w.init, 0, World::frame_va(0), 0); // Owned
    assert_eq!(w.mem.words, before);
}

#[test]
fn move_share_and_rights_only_go_down() {
    let mut w = World::new(16);
    let child = w.create_as(w.init, 0x3000, World::frame_va(0)).unwrap();
    // Kernel half copied.
    assert_eq!(w.mem.read(child + 256 * 8), KERNEL_MARK);
    // Child tables at 0x20_0000 built by init into the child: init must
    // hand frames over (move) and then the child creates... here init maps
    // tables into the child by creating them in itself and linking.
    let region = 0x8000_0000u64;
    w.tables_for(w.init, region, 1); // uses frames 1,2,3
                                     // Move frame 4 to region page 0 in init, write a value.
    w.map(w.init, World::frame_va(4), 0, 0, region, Rights::WRITE | Rights::OWN | Rights::GRANT).unwrap();
    assert!(w.write_user(w.init, region, 77));
    // Give the child a level-3 table of its own to hold the link: first
    // the child needs a level-3 table: create it in init at an unused slot and link.
    let cva = 0x40_0000_0000u64; // child's region address, 1 GiB-aligned? use level-1 link at 2 MiB
                                 // Build child tables: init creates tables in its own space at a scratch
                                 // place and links the level-3 table into the child with OWN.
    let scratch = 0x100_0000_0000u64;
    w.create(w.init, scratch, 3, World::frame_va(5)).unwrap();
    w.map(w.init, scratch, 3, 0x3000, cva & !(span(3) - 1), Rights::ALL.intersect(Rights(0xf))).unwrap();
    // Child's view: link level-2 in child's PDPT through init's scratch table.
    w.create(w.init, scratch + (cva & (span(3) - 1) & !(span(2) - 1)), 2, World::frame_va(6)).unwrap();
    // Now share init's level-1 region read-only into the child.
    w.map(w.init, region & !(span(1) - 1), 1, 0x3000, cva, Rights::NONE).unwrap();
    assert_eq!(w.read_user(child, cva), Some(77));
    assert!(!w.write_user(child, cva, 5), "read-only share must refuse writes");
    // Rights cannot go up: child holds read-only; asking for WRITE fails.
    // (Child has no handle to itself; it maps within itself with dst 0.)
    assert_eq!(w.map(child, cva, 1, 0, cva + span(1), Rights::WRITE), Err(Error::RightsExceeded));
    assert_eq!(w.map(child, cva, 1, 0, cva + span(1), Rights::NONE), Err(Error::NoRight)); // no GRANT
                                                                                           // Child cannot move the page out of a table it does not manage.
    assert_eq!(w.map(child, cva, 0, 0, cva + span(1), Rights::OWN), Err(Error::RightsExceeded));
    // Revocation: init unmaps the child's link.
    w.unmap(w.init, 0x3000, cva, 1).unwrap();
    assert_eq!(w.read_user(child, cva), None);
    assert!(w.tlb.flushes > 0);
    // Unmapping an owned page is refused.
    assert_eq!(w.unmap(w.init, 0, region, 0), Err(Error::Owned));
}

#[test]
fn lent_frames_never_become_tables() {
    let mut w = World::new(16);
    let region = 0x8000_0000u64;
    w.tables_for(w.init, region, 0);
    w.map(w.init, World::frame_va(4), 0, 0, region, Rights::WRITE | Rights::OWN | Rights::GRANT).unwrap();
    // Share page-level into another slot (non-owning alias).
    w.map(w.init, region, 0, 0, region + 0x1000, Rights::WRITE).unwrap();
    assert_eq!(w.create(w.init, 0x100_0000_0000, 3, region), Err(Error::Lent));
    assert_eq!(w.create_as(w.init, 0x5000, region), Err(Error::Lent));
    // The alias is not owned: it cannot be retyped either.
    assert_eq!(w.create(w.init, 0x100_0000_0000, 3, region + 0x1000), Err(Error::NoRight));
    // Moving a lent page keeps it lent.
    w.map(w.init, region, 0, 0, region + 0x2000, Rights::OWN | Rights::WRITE).unwrap();
    assert_eq!(w.create(w.init, 0x100_0000_0000, 3, region + 0x2000), Err(Error::Lent));
    // The alias can be unmapped.
    w.unmap(w.init, 0, region + 0x1000, 0).unwrap();
}

#[test]
fn handles_gate_map_unmap_and_yield() {
    let mut w = World::new(16);
    let child = w.create_as(w.init, 0x3000, World::frame_va(0)).unwrap();
    assert_eq!(yield_target(&w.mem, w.init, 0x3000), Ok(child));
    assert_eq!(yield_target(&w.mem, w.init, 0x4000), Err(Error::NotMapped));
    assert_eq!(yield_target(&w.mem, w.init, 0), Err(Error::BadAddress));
    assert_eq!(yield_target(&w.mem, w.init, World::frame_va(1)), Err(Error::WrongKind));
    // A switch-only copy of the handle cannot be used to map.
    w.map(w.init, 0x3000, 0, 0, 0x5000, Rights::SWITCH).unwrap();
    assert_eq!(yield_target(&w.mem, w.init, 0x5000), Ok(child));
    assert_eq!(w.map(w.init, World::frame_va(1), 0, 0x5000, 0x20_0000, Rights::OWN), Err(Error::NoRight));
    // Handle rights cannot grow.
    assert_eq!(w.map(w.init, 0x5000, 0, 0, 0x6000, Rights::OWN), Err(Error::RightsExceeded));
    // Handles carry no WRITE/EXEC.
    assert_eq!(w.map(w.init, 0x3000, 0, 0, 0x6000, Rights::WRITE), Err(Error::RightsExceeded));
    // Unmap the copy; yield through it now fails.
    w.unmap(w.init, 0, 0x5000, 0).unwrap();
    assert_eq!(yield_target(&w.mem, w.init, 0x5000), Err(Error::NotMapped));
    // The child has no tables: mapping into it needs them.
    assert_eq!(w.map(w.init, World::frame_va(1), 0, 0x3000, 0x20_0000, Rights::OWN), Err(Error::NoTable));
    // Undefined rights bits.
    assert_eq!(w.map(w.init, World::frame_va(1), 0, 0, 0x20_0000, Rights(1 << 9)), Err(Error::BadArgument));
}

/// Random calls from several address spaces; after each, the invariants
/// that make the kernel safe must hold.
#[test]
fn random_calls_keep_the_invariants() {
    let mut calls = 0u64;
    let mut ok = [0u64; 4];
    for seed in 1..=8u64 {
        let mut rng = testrng::Rng::new(seed);
        let mut next = move || rng.next_u64();
        let mut w = World::new(64);
        let mut spaces = vec![w.init];
        let vas = |r: u64| -> u64 {
            // Addresses concentrated where tables exist, plus hostile ones.
            match r % 8 {
                0 => FRAMES_VA + (r >> 8) % 80 * PAGE_SIZE,
                1 => 0x3000 + (r >> 8) % 8 * PAGE_SIZE,
                2 => (r >> 8) % 4 * span(1),
                3 => (r >> 8) % 4 * span(2),
                4 => (r >> 8) % 4 * span(3),
                5 => r,
                6 => 0xffff_8000_0000_0000 | r,
                _ => FRAMES_VA + ((r >> 8) % 4) * span(1),
            }
        };
        for _ in 0..1500 {
            let caller = spaces[(next() % spaces.len() as u64) as usize];
            let op = next() % 4;
            let (a, b, c, d) = (vas(next()), next() % 5, vas(next()), next() % 0x40);
            let hs = [0, 0x3000, 0x4000, 0x5000][(next() % 4) as usize];
            let r = match op {
                0 => w.create(caller, a, b, c).map(|_| ()),
                1 if next() % 4 != 0 => {
                    // Plausible: page-level moves and shares inside the frame window.
                    let rights = [Rights::OWN | Rights::WRITE, Rights::WRITE, Rights::NONE, Rights::ALL, Rights::GRANT];
                    let src = FRAMES_VA + next() % 80 * PAGE_SIZE;
                    let dst = FRAMES_VA + next() % 80 * PAGE_SIZE;
                    w.map(caller, src, 0, if next() % 2 == 0 { 0 } else { hs }, dst, rights[(next() % 5) as usize])
                }
                1 => w.map(caller, a, b % 4, hs, c, Rights(d)),
                2 => w.unmap(caller, hs, a, b),
                _ => match w.create_as(caller, 0x3000 + (next() % 4) * PAGE_SIZE, c) {
                    Ok(root) => {
                        spaces.push(root);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            };
            if r.is_ok() {
                ok[op as usize] += 1;
            }
            calls += 1;
            check_invariants(&w, &spaces);
            if let Err(e) = w.tlb_is_coherent() {
                panic!("seed {seed}: {e}");
            }
            // User accesses at the same addresses fill the TLB model.
            for _ in 0..4 {
                let sp = spaces[(next() % spaces.len() as u64) as usize];
                let _ = w.access(sp, vas(next()), next() % 2 == 0);
            }
        }
    }
    println!("{calls} random calls checked; successes per call (create, map, unmap, create_as): {ok:?}");
    assert!(ok.iter().all(|n| *n > 0), "every call must succeed sometimes: {ok:?}");
}

fn check_invariants(w: &World, spaces: &[u64]) {
    let entries = |t: u64, range: std::ops::Range<u64>| range.map(|i| (i, w.mem.read(t + i * 8))).collect();
    if let Err(e) = crate::interleave::sequential_invariants(entries, |f| w.mem.is_ram(f), &w.kernel_half, spaces) {
        panic!("{e}");
    }
}

#[test]
fn an_owner_may_reprotect_its_frame_when_moving_it() {
    let mut w = World::new(8);
    let region = 0x8000_0000u64;
    w.tables_for(w.init, region, 0);
    // RAM-window frames are not executable; moving one as code is allowed
    // because the mover owns it...
    w.map(w.init, World::frame_va(4), 0, 0, region, Rights::EXEC | Rights::OWN).unwrap();
    let slot = walk(&w.mem, w.init, region, 0).unwrap();
    assert_eq!(present_rights(slot.entry), Rights::EXEC | Rights::OWN);
    // ...but a share (no OWN) of a non-writable page cannot add WRITE.
    assert_eq!(w.map(w.init, region, 0, 0, region + 0x1000, Rights::WRITE), Err(Error::RightsExceeded));
}

#[test]
fn devices_get_dma_only_by_grant_and_their_frames_are_lent() {
    let mut w = World::new(16);
    let region = 0x8000_0000u64;
    w.tables_for(w.init, region, 0);
    // A device handle (index 0) at 0x7000, placed as the boot kernel would.
    let slot = walk(&w.mem, w.init, 0x7000, 0).unwrap();
    w.mem.write(slot.pa, device_handle_entry(0, Rights::OWN | Rights::GRANT));
    let f = World::frame_va(4);
    let pa = walk(&w.mem, w.init, f, 0).unwrap().entry & ADDR_MASK;
    // Map for DMA: device may write.
    w.map(w.init, f, 0, 0x7000, 0x3000, Rights::WRITE).unwrap();
    assert_eq!(w.dev.maps.get(&(0, 0x3000)), Some(&(pa, true)));
    // The frame is now lent: it can never become a page table.
    assert_eq!(w.create(w.init, 0x100_0000_0000, 3, f), Err(Error::Lent));
    // Errors: occupied, window, level, rights, kind.
    assert_eq!(w.map(w.init, f, 0, 0x7000, 0x3000, Rights::NONE), Err(Error::Occupied));
    assert_eq!(w.map(w.init, f, 0, 0x7000, 64 * PAGE_SIZE, Rights::NONE), Err(Error::BadAddress));
    assert_eq!(w.map(w.init, f, 0, 0x7000, 0x3008, Rights::NONE), Err(Error::BadAddress));
    assert_eq!(w.map(w.init, f, 1, 0x7000, 0, Rights::NONE), Err(Error::BadAddress));
    assert_eq!(w.map(w.init, f, 0, 0x7000, 0x4000, Rights::OWN), Err(Error::BadArgument));
    assert_eq!(w.map(w.init, 0x7000, 0, 0x7000, 0x4000, Rights::NONE), Err(Error::WrongKind));
    // A read-only alias cannot give the device write access, and a
    // borrowed page cannot be given to a device at all (only the owner
    // grants DMA: revoking the share could not reach the device).
    w.map(w.init, f, 0, 0, region, Rights::GRANT).unwrap();
    assert_eq!(w.map(w.init, region, 0, 0x7000, 0x5000, Rights::WRITE), Err(Error::RightsExceeded));
    assert_eq!(w.map(w.init, region, 0, 0x7000, 0x5000, Rights::NONE), Err(Error::NoRight));
    assert_eq!(w.dev.maps.get(&(0, 0x5000)), None);
    // The owner may grant read-only access too.
    w.map(w.init, f, 0, 0x7000, 0x5000, Rights::NONE).unwrap();
    assert_eq!(w.dev.maps.get(&(0, 0x5000)), Some(&(pa, false)));
    // Handle copies: without OWN they cannot map; devices are not switchable.
    w.map(w.init, 0x7000, 0, 0, 0x8000, Rights::GRANT).unwrap();
    assert_eq!(w.map(w.init, f, 0, 0x8000, 0x6000, Rights::NONE), Err(Error::NoRight));
    assert_eq!(yield_target(&w.mem, w.init, 0x7000), Err(Error::WrongKind));
    // Unmap from the device; twice is NotMapped; levels other than 0 refused.
    let before = w.dev.invalidations;
    w.unmap(w.init, 0x7000, 0x3000, 0).unwrap();
    assert!(w.dev.invalidations > before);
    assert_eq!(w.unmap(w.init, 0x7000, 0x3000, 0), Err(Error::NotMapped));
    assert_eq!(w.unmap(w.init, 0x7000, 0x3000, 1), Err(Error::BadLevel));
    assert_eq!(w.unmap(w.init, 0x8000, 0x5000, 0), Err(Error::NoRight));
}

#[test]
fn moved_frames_keep_their_cache_bits() {
    let mut w = World::new(8);
    let region = 0x8000_0000u64;
    w.tables_for(w.init, region, 0);
    let f = World::frame_va(4);
    let slot = walk(&w.mem, w.init, f, 0).unwrap();
    w.mem.write(slot.pa, slot.entry | CACHE_BITS | LENT);
    w.map(w.init, f, 0, 0, region, Rights::OWN | Rights::WRITE | Rights::GRANT).unwrap();
    let moved = walk(&w.mem, w.init, region, 0).unwrap().entry;
    assert_eq!(moved & CACHE_BITS, CACHE_BITS);
    assert_ne!(moved & LENT, 0);
    w.map(w.init, region, 0, 0, region + 0x1000, Rights::NONE).unwrap();
    assert_eq!(walk(&w.mem, w.init, region + 0x1000, 0).unwrap().entry & CACHE_BITS, CACHE_BITS);
}

/// The review's attack, and its siblings: a table linked at two addresses
/// of one space (A and B); a page touched through B; then a call changes
/// what the frame is or removes the translation through A. Every cached
/// translation through B must be gone when the call returns.
#[test]
fn no_translation_survives_through_an_alias() {
    type Attack = fn(&mut World, u64) -> Result<(), Error>;
    let region = 0x8000_0000u64; // A: the table's first link
    let alias = 0x8000_0000u64 + span(1); // B: the same level-1 table again
    let cases: [(&str, Attack); 5] = [
        ("create a page table from the frame", |w, a| w.create(w.init, 0x100_0000_0000, 3, a)),
        ("create an address-space root from the frame", |w, a| w.create_as(w.init, 0x5000, a).map(|_| ())),
        ("move the frame away", |w, a| w.map(w.init, a, 0, 0, a + 0x1000, Rights::OWN | Rights::WRITE)),
        ("unmap a shared-in page", |w, a| w.unmap(w.init, 0, a + 0x2000, 0)),
        ("unmap the alias link itself", |w, _| w.unmap(w.init, 0, 0x8000_0000 + span(1), 1)),
    ];
    for (what, attack) in cases {
        let mut w = World::new(16);
        w.tables_for(w.init, region, 0);
        w.map(w.init, World::frame_va(4), 0, 0, region, Rights::WRITE | Rights::OWN | Rights::GRANT).unwrap();
        w.map(w.init, World::frame_va(5), 0, 0, region + 0x3000, Rights::WRITE | Rights::OWN | Rights::GRANT).unwrap();
        w.map(w.init, region + 0x3000, 0, 0, region + 0x2000, Rights::WRITE).unwrap(); // a share
                                                                                       // Link the level-1 table a second time in the same space.
        w.map(w.init, region, 1, 0, alias, Rights::WRITE | Rights::OWN | Rights::GRANT).unwrap();
        let through_b = [alias, alias + 0x2000];
        for va in through_b {
            assert!(w.access(w.init, va, true).is_some(), "{what}: setup: {va:#x} not writable");
        }
        attack(&mut w, region).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        w.tlb_is_coherent().unwrap_or_else(|e| panic!("{what}: {e}"));
        // What the attacker tries next: write through B.
        if what.starts_with("create") {
            assert_eq!(w.access(w.init, alias, true), None, "{what}: the new table is writable through B");
        }
    }
}

/// The same property under random structure: tables at every level linked
/// at several addresses and into several spaces, shares, moves, retypes
/// and unmaps, with user accesses through every address in between. After
/// every call the TLB model must agree with the page tables.
#[test]
fn random_structures_leave_no_stale_translation() {
    let mut calls = 0u64;
    let mut flushes = 0u64;
    let mut accesses = 0u64;
    for seed in 1..=24u64 {
        let mut rng = testrng::Rng::new(seed);
        let mut next = move || rng.next_u64();
        let mut w = World::new(96);
        let base = 0x8000_0000u64; // 1 GiB-aligned: the region under test
        w.tables_for(w.init, base, 0); // frames 0..3
        let child = w.create_as(w.init, 0x3000, World::frame_va(3)).unwrap();
        let mut spaces = vec![w.init, child];
        // Addresses: 4 level-1 slots and 2 level-2 slots of the region, and
        // the same places in the child (through links init makes there).
        let l1 = |k: u64| base + (k % 4) * span(1);
        let pages = |r: u64| l1(r) + ((r >> 8) % 8) * PAGE_SIZE;
        let mut next_frame = 4u64;
        for step in 0..400 {
            let r = next();
            let res = match r % 9 {
                // Fresh owned data page into the region.
                0 if next_frame < 96 => {
                    next_frame += 1;
                    w.map(
                        w.init,
                        World::frame_va(next_frame - 1),
                        0,
                        0,
                        pages(next()),
                        Rights::WRITE | Rights::OWN | Rights::GRANT,
                    )
                }
                // A new level-1 table somewhere in the region.
                1 if next_frame < 96 => {
                    next_frame += 1;
                    w.create(w.init, l1(next()), 1, World::frame_va(next_frame - 1))
                }
                // Alias a level-1 table in the same space, or link it into the child.
                2 => w.map(w.init, l1(next()), 1, 0, l1(next()), Rights::WRITE | Rights::OWN | Rights::GRANT),
                3 => w.map(w.init, base, 2, 0x3000, base, Rights::WRITE | Rights::OWN | Rights::GRANT),
                // Share, move, retype, unmap pages; unmap links.
                4 => w.map(
                    w.init,
                    pages(next()),
                    0,
                    0,
                    pages(next()),
                    [Rights::WRITE, Rights::NONE, Rights::GRANT][(next() % 3) as usize],
                ),
                5 => w.map(w.init, pages(next()), 0, 0, pages(next()), Rights::OWN | Rights::WRITE | Rights::GRANT),
                6 => match next() % 3 {
                    0 => w.create(w.init, 0x100_0000_0000 + (next() % 4) * span(3), 3, pages(next())),
                    1 => w.create(w.init, l1(next()), 1, pages(next())),
                    _ => w
                        .create_as(w.init, 0x4000 + (next() % 4) * PAGE_SIZE, pages(next()))
                        .map(|root| spaces.push(root)),
                },
                7 => w.unmap(w.init, 0, pages(next()), 0),
                _ => w.unmap(w.init, if next() % 2 == 0 { 0 } else { 0x3000 }, l1(next()), 1),
            };
            calls += 1;
            let _ = res;
            if let Err(e) = w.tlb_is_coherent() {
                panic!("seed {seed} step {step}: {e}");
            }
            // Touch addresses in both spaces: fills the TLB model.
            for _ in 0..6 {
                let sp = spaces[(next() % spaces.len() as u64) as usize];
                let _ = w.access(sp, pages(next()), next() % 2 == 0);
                accesses += 1;
            }
        }
        check_invariants(&w, &spaces);
        flushes += w.tlb.flushes;
    }
    println!("{calls} calls, {accesses} accesses, {flushes} flushes: no stale translation");
    assert!(flushes > 0);
}

#[test]
fn frames_that_are_not_ram_never_become_tables_or_control_pages() {
    let mut w = World::new(8);
    // Forge what the boot kernel gives init for device registers or
    // persistent memory: an owned page outside RAM. (The kernel marks those
    // LENT too; this checks the RAM test alone.)
    let dev_va = World::frame_va(7);
    let slot = walk(&w.mem, w.init, dev_va, 0).unwrap();
    w.mem.write(slot.pa, NOT_RAM | present_bits(Rights::WRITE | Rights::OWN | Rights::GRANT));
    assert_eq!(w.create(w.init, 0x100_0000_0000, 3, dev_va), Err(Error::Lent));
    assert_eq!(w.create_as(w.init, 0x5000, dev_va), Err(Error::Lent));
    assert_eq!(translate(&w.mem, w.init, dev_va, true), None, "the kernel would write an upcall into it");
    assert_eq!(translate(&w.mem, w.init, dev_va, false), None);
    // A lent RAM page is refused as a control page too; an unlent one is fine.
    let f = World::frame_va(6);
    assert!(translate(&w.mem, w.init, f, true).is_some());
    w.map(w.init, f, 0, 0, 0x1000, Rights::NONE).unwrap(); // share it: owner becomes LENT
    assert_eq!(translate(&w.mem, w.init, f, true), None);
}

use exo_abi::CONTROL_VA;

/// What `yield` resolved before `yield_plan` existed: the handle, then the
/// target's control page, then the caller's.
fn yield_plan_by_the_slow_path(mem: &Mem, caller: u64, handle_va: u64, ctl_va: u64) -> Result<YieldPlan, Error> {
    let target = yield_target(mem, caller, handle_va)?;
    let target_ctl = translate(mem, target, ctl_va, true).ok_or(Error::BadTarget)?;
    Ok(YieldPlan { target, target_ctl, caller_ctl: translate(mem, caller, ctl_va, true) })
}

#[test]
fn yield_plan_agrees_with_the_slow_path_on_hostile_tables() {
    // Frames of RAM whose entries are random mixes of every bit a
    // table, a page or a handle can carry, pointing at each other, at a
    // frame that is not RAM, or anywhere; the walks must agree entry for
    // entry on what they accept and on the error they give.
    const FRAMES: u64 = 10;
    let frame = |k: u64| RAM_START + k * PAGE_SIZE;
    let vas = [
        0,
        CONTROL_VA,
        0x3000,
        0x4000,
        0x4008,
        span(1) + 0x4000,
        span(2) + 0x4000,
        span(3) + 0x4000,
        USER_END - PAGE_SIZE,
        USER_END,
        !0xfff,
    ];
    let flag_bits = [P, RW, US, PS, OWN, GRANT, LENT, NX, HANDLE_TAG, DEVICE_TAG, 1 << 5, 1 << 3, 1 << 12];
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for seed in 1..=3000u64 {
        let mut rng = testrng::Rng::new(seed);
        let mut mem = Mem { next_frame: frame(FRAMES), ..Mem::default() };
        // Two well-formed spaces that hold handles to each other: frames
        // 0..=3 and 4..=7 are their tables (levels 3, 2, 1, 0), 8 and 9
        // their control pages.
        let page = |k: u64| frame(k) | P | US | RW | OWN;
        for (base, ctl, other) in [(0, 8, 4), (4, 9, 0)] {
            for idx in [0u64, 1, 3, 4, 511] {
                for level in 0..3 {
                    mem.write(frame(base + level) + idx * 8, page(base + level + 1));
                }
                let leaf = match idx {
                    1 => page(ctl),
                    3 | 4 => handle_entry(frame(other), Rights(rng.below(32)) | Rights::SWITCH),
                    0 => 0,
                    _ => page(ctl),
                };
                mem.write(frame(base + 3) + idx * 8, leaf);
            }
        }
        // Then a few entries go bad: random words, single bits flipped,
        // handles without SWITCH or to devices, pages that are not RAM.
        for _ in 0..rng.below(4) {
            let at = frame(rng.below(FRAMES)) + *rng.pick(&[0u64, 1, 3, 4, 511]) * 8;
            let old = mem.read(at);
            let e = match rng.below(6) {
                0 => 0,
                1 => old ^ rng.pick(&flag_bits),
                2 => HANDLE_TAG | frame(rng.below(FRAMES)) | (rng.below(32) << 1) | (rng.below(2) * DEVICE_TAG),
                3 => NOT_RAM | P | US | RW,
                4 => rng.next_u64(),
                _ => {
                    let mut e = frame(rng.below(FRAMES));
                    for b in flag_bits {
                        if rng.chance(1, 2) {
                            e |= b;
                        }
                    }
                    e
                }
            };
            mem.write(at, e);
        }
        for _ in 0..4 {
            let any = rng.below(FRAMES);
            let caller = frame(*rng.pick(&[0, 4, any]));
            let va = *rng.pick(&vas);
            // CPU 0's control page, or another CPU's (SMP), or one above
            // the first 2 MiB (index 1 at every level: `yield_plan`'s
            // general copy, not the one specialised for low addresses).
            let high = span(3) + span(2) + span(1) + span(0);
            let ctl_va = *rng.pick(&[CONTROL_VA, CONTROL_VA, exo_abi::smp_control_va(1), high]);
            let slow = yield_plan_by_the_slow_path(&mem, caller, va, ctl_va);
            let fast = yield_plan(&mem, caller, va, ctl_va);
            assert_eq!(fast, slow, "seed {seed}: caller {caller:#x}, handle at {va:#x}");
            let key = match fast {
                Ok(p) => format!("ok, caller control page {}", p.caller_ctl.is_some()),
                Err(e) => format!("{e:?}"),
            };
            *outcomes.entry(key).or_default() += 1;
            if ctl_va == high && fast.is_ok() {
                *outcomes.entry("ok, control page above 2 MiB".into()).or_default() += 1;
            }
        }
    }
    // Every outcome was reached, so the comparison covered each branch.
    for want in [
        "ok, caller control page true",
        "ok, caller control page false",
        "ok, control page above 2 MiB",
        "BadAddress",
        "NoTable",
        "WrongKind",
        "NotMapped",
        "NoRight",
        "BadTarget",
    ] {
        assert!(outcomes.get(want).copied().unwrap_or(0) > 0, "never reached {want}: {outcomes:?}");
    }
}
