//! The I/O page-table builder checked by the independent table walker,
//! over emulated memory.

mod common;

use common::{EmulatedMemory, Frames};
use iommu::vtd::cap::{Cap, Levels};
use iommu::vtd::fault::FaultReason;
use iommu::vtd::tables::{ContextConfig, DeviceSpace, RootTable, TableError};
use iommu::vtd::walk::{translate, Cause, WalkLimits};
use iommu::vtd::{Access, Bdf, PhysMem, Rights};
use std::collections::HashMap;
use testrng::Rng;

/// QEMU 7.2 intel-iommu with caching-mode=on, aw-bits=39 (see registers.rs).
const QEMU_CAP: Cap = Cap(0x00d2_008c_2226_0286);
/// A unit with both 3- and 4-level tables and no caching mode.
const WIDE_CAP: Cap = Cap((0x6 << 8) | (47 << 16) | 2);
const HAW: u8 = 39;

fn limits(cap: Cap) -> WalkLimits {
    WalkLimits {
        sagaw: cap.sagaw(),
        host_address_width: HAW,
        large_pages: cap.second_level_large_pages(),
        pass_through: false,
        device_tlb: false,
        snoop_control: false,
    }
}

const NVME: Bdf = Bdf { bus: 0, device: 3, function: 0 };
const VIRTIO: Bdf = Bdf { bus: 0, device: 4, function: 0 };
const BEHIND_BRIDGE: Bdf = Bdf { bus: 1, device: 0, function: 0 };

struct World {
    mem: EmulatedMemory,
    frames: Frames,
    root: RootTable,
}

fn world() -> World {
    let mut mem = EmulatedMemory::default();
    let mut frames = Frames::new(0x100_0000, 4096);
    let root = RootTable::create(&mut mem, &mut frames).unwrap();
    World { mem, frames, root }
}

fn config(domain_id: u16, levels: Levels) -> ContextConfig {
    ContextConfig { domain_id, levels, host_address_width: HAW }
}

impl World {
    fn attach(&mut self, bdf: Bdf, did: u16) -> DeviceSpace {
        self.root.attach(&mut self.mem, &mut self.frames, bdf, config(did, Levels::Three), QEMU_CAP).unwrap()
    }
    fn walk(&self, bdf: Bdf, iova: u64, access: Access) -> Result<u64, (FaultReason, Cause)> {
        translate(&self.mem, self.root.pa(), bdf, iova, access, &limits(QEMU_CAP))
            .map(|t| t.pa)
            .map_err(|f| (f.reason, f.cause))
    }
}

#[test]
fn mapped_page_translates_with_its_rights() {
    let mut w = world();
    let space = w.attach(NVME, 1);
    space.map(&mut w.mem, &mut w.frames, 0x4000, 0x20_0000, Rights::READ_WRITE).unwrap();
    assert_eq!(w.walk(NVME, 0x4000, Access::Read), Ok(0x20_0000));
    assert_eq!(w.walk(NVME, 0x4abc, Access::Write), Ok(0x20_0abc));
    let t = translate(&w.mem, w.root.pa(), NVME, 0x4000, Access::Read, &limits(QEMU_CAP)).unwrap();
    assert_eq!((t.domain_id, t.page_size, t.rights), (1, 4096, Rights::READ_WRITE));
    // The neighbouring page is not mapped: a write there faults with the
    // write reason and the walker says the leaf was not present.
    assert_eq!(
        w.walk(NVME, 0x5000, Access::Write),
        Err((FaultReason::WriteNotPermitted, Cause::NotPresent { level: 1 }))
    );
    assert_eq!(
        w.walk(NVME, 0x5000, Access::Read),
        Err((FaultReason::ReadNotPermitted, Cause::NotPresent { level: 1 }))
    );
    // Far away: not present already at the top level.
    assert_eq!(
        w.walk(NVME, 1 << 38, Access::Read),
        Err((FaultReason::ReadNotPermitted, Cause::NotPresent { level: 3 }))
    );
}

#[test]
fn entries_have_the_spec_layout() {
    let mut w = world();
    let space = w.attach(NVME, 0x2a);
    let root_lo = w.mem.read_u64(w.root.pa());
    assert_eq!(root_lo & 1, 1, "root entry for bus 0 present");
    assert_eq!(w.mem.read_u64(w.root.pa() + 8), 0, "root entry high quadword reserved");
    let ctx = (root_lo & !0xfff) + 16 * (3 << 3);
    // Context low: SLPTPTR | TT=00 | P; high: DID << 8 | AW=001 (3-level).
    assert_eq!(w.mem.read_u64(ctx), space.root() | 1);
    assert_eq!(w.mem.read_u64(ctx + 8), (0x2a << 8) | 1);
    space.map(&mut w.mem, &mut w.frames, 0x1000, 0x7000, Rights::READ).unwrap();
    // Level 3 index 0 -> level 2 index 0 -> level 1 index 1: R only, no SNP.
    let l3 = w.mem.read_u64(space.root());
    assert_eq!(l3 & 3, 3, "non-leaf entries grant R|W, the leaf decides");
    let l2 = w.mem.read_u64(l3 & !0xfff);
    let leaf = w.mem.read_u64((l2 & !0xfff) + 8);
    assert_eq!(leaf, 0x7000 | 1);
}

#[test]
fn refuses_to_map_over_an_existing_entry() {
    let mut w = world();
    let space = w.attach(NVME, 1);
    space.map(&mut w.mem, &mut w.frames, 0x8000, 0x30_0000, Rights::READ).unwrap();
    let e = space.map(&mut w.mem, &mut w.frames, 0x8000, 0x40_0000, Rights::READ_WRITE).unwrap_err();
    assert_eq!(e, TableError::AlreadyMapped { iova: 0x8000, existing: 0x30_0000 | 1 });
    assert_eq!(w.walk(NVME, 0x8000, Access::Read), Ok(0x30_0000), "old mapping intact");
    assert!(w.walk(NVME, 0x8000, Access::Write).is_err(), "old rights intact");
}

#[test]
fn unmap_removes_translation_and_reports_what_was_there() {
    let mut w = world();
    let space = w.attach(NVME, 1);
    space.map(&mut w.mem, &mut w.frames, 0x8000, 0x30_0000, Rights::WRITE).unwrap();
    let gone = space.unmap(&mut w.mem, 0x8000).unwrap();
    assert_eq!((gone.pa, gone.rights), (0x30_0000, Rights::WRITE));
    assert_eq!(
        w.walk(NVME, 0x8000, Access::Write),
        Err((FaultReason::WriteNotPermitted, Cause::NotPresent { level: 1 }))
    );
    assert_eq!(space.unmap(&mut w.mem, 0x8000), Err(TableError::NotMapped { iova: 0x8000 }));
    assert_eq!(space.unmap(&mut w.mem, 1 << 30), Err(TableError::NotMapped { iova: 1 << 30 }), "no table on the way");
    // The slot can be reused.
    space.map(&mut w.mem, &mut w.frames, 0x8000, 0x50_0000, Rights::READ).unwrap();
    assert_eq!(w.walk(NVME, 0x8000, Access::Read), Ok(0x50_0000));
}

#[test]
fn rights_are_enforced_like_the_hardware() {
    let mut w = world();
    let space = w.attach(NVME, 1);
    space.map(&mut w.mem, &mut w.frames, 0x1000, 0x10_0000, Rights::READ).unwrap();
    space.map(&mut w.mem, &mut w.frames, 0x2000, 0x11_0000, Rights::WRITE).unwrap();
    assert_eq!(w.walk(NVME, 0x1000, Access::Read), Ok(0x10_0000));
    assert_eq!(
        w.walk(NVME, 0x1000, Access::Write),
        Err((FaultReason::WriteNotPermitted, Cause::NoPermission { level: 1, held: Rights::READ }))
    );
    assert_eq!(w.walk(NVME, 0x2000, Access::Write), Ok(0x11_0000));
    assert_eq!(
        w.walk(NVME, 0x2000, Access::Read),
        Err((FaultReason::ReadNotPermitted, Cause::NoPermission { level: 1, held: Rights::WRITE }))
    );
    assert_eq!(
        space.map(&mut w.mem, &mut w.frames, 0x3000, 0x12_0000, Rights { read: false, write: false }),
        Err(TableError::NoRights)
    );
    // Rights AND across levels: drop W from the top-level entry by hand.
    let top = w.mem.read_u64(space.root());
    w.mem.write_u64(space.root(), top & !2);
    assert_eq!(
        w.walk(NVME, 0x2000, Access::Write),
        Err((FaultReason::WriteNotPermitted, Cause::NoPermission { level: 3, held: Rights::READ }))
    );
}

#[test]
fn devices_are_isolated_from_each_other() {
    let mut w = world();
    let nvme = w.attach(NVME, 1);
    let virtio = w.attach(VIRTIO, 2);
    nvme.map(&mut w.mem, &mut w.frames, 0x1000, 0x10_0000, Rights::READ_WRITE).unwrap();
    virtio.map(&mut w.mem, &mut w.frames, 0x1000, 0x20_0000, Rights::READ_WRITE).unwrap();
    assert_eq!(w.walk(NVME, 0x1000, Access::Read), Ok(0x10_0000));
    assert_eq!(w.walk(VIRTIO, 0x1000, Access::Read), Ok(0x20_0000));
    // Function 1 of the NVMe device has no context entry.
    let other_fn = Bdf { function: 1, ..NVME };
    assert_eq!(
        w.walk(other_fn, 0x1000, Access::Read),
        Err((FaultReason::ContextEntryNotPresent, Cause::ContextNotPresent))
    );
    // Bus 1 has no context table at all.
    assert_eq!(
        w.walk(BEHIND_BRIDGE, 0x1000, Access::Read),
        Err((FaultReason::RootEntryNotPresent, Cause::RootNotPresent))
    );
    let b = w.attach(BEHIND_BRIDGE, 3);
    b.map(&mut w.mem, &mut w.frames, 0x1000, 0x30_0000, Rights::READ).unwrap();
    assert_eq!(w.walk(BEHIND_BRIDGE, 0x1000, Access::Read), Ok(0x30_0000));
}

#[test]
fn shared_space_and_detach() {
    let mut w = world();
    let space = w.attach(NVME, 1);
    let fn1 = Bdf { function: 1, ..NVME };
    w.root.attach_shared(&mut w.mem, &mut w.frames, fn1, &space, QEMU_CAP).unwrap();
    space.map(&mut w.mem, &mut w.frames, 0x1000, 0x10_0000, Rights::READ).unwrap();
    assert_eq!(w.walk(fn1, 0x1000, Access::Read), Ok(0x10_0000));
    assert_eq!(w.root.device_space(&w.mem, fn1, HAW), Ok(space));
    let removed = w.root.detach(&mut w.mem, NVME, HAW).unwrap();
    assert_eq!(removed, space);
    assert_eq!(
        w.walk(NVME, 0x1000, Access::Read),
        Err((FaultReason::ContextEntryNotPresent, Cause::ContextNotPresent))
    );
    assert_eq!(w.walk(fn1, 0x1000, Access::Read), Ok(0x10_0000), "the other function keeps its entry");
    assert_eq!(w.root.detach(&mut w.mem, NVME, HAW), Err(TableError::ContextNotPresent { bdf: NVME }));
}

#[test]
fn attach_checks_the_unit_and_refuses_a_second_context() {
    let mut w = world();
    w.attach(NVME, 1);
    let again = w.root.attach(&mut w.mem, &mut w.frames, NVME, config(9, Levels::Three), QEMU_CAP);
    assert_eq!(again, Err(TableError::ContextPresent { bdf: NVME }));
    // QEMU with aw-bits=39 has no 4-level tables.
    let four = w.root.attach(&mut w.mem, &mut w.frames, VIRTIO, config(2, Levels::Four), QEMU_CAP);
    assert_eq!(four, Err(TableError::LevelsUnsupported { levels: Levels::Four }));
    // Caching mode reserves domain id 0.
    let zero = w.root.attach(&mut w.mem, &mut w.frames, VIRTIO, config(0, Levels::Three), QEMU_CAP);
    assert_eq!(zero, Err(TableError::DomainIdUnusable { domain_id: 0 }));
    // WIDE_CAP has ND = 2: 2^(4+4) = 256 domains.
    assert!(w.root.attach(&mut w.mem, &mut w.frames, VIRTIO, config(256, Levels::Three), WIDE_CAP).is_err());
    assert!(w.root.attach(&mut w.mem, &mut w.frames, VIRTIO, config(0, Levels::Three), WIDE_CAP).is_ok());
}

#[test]
fn address_width_is_enforced() {
    let mut w = world();
    let space = w.attach(NVME, 1);
    let e = space.map(&mut w.mem, &mut w.frames, 1 << 39, 0x1000, Rights::READ);
    assert_eq!(e, Err(TableError::IovaBeyondWidth { iova: 1 << 39, width: 39 }));
    assert_eq!(
        w.walk(NVME, 1 << 39, Access::Read),
        Err((FaultReason::AddressBeyondWidth, Cause::AddressBeyondWidth { width: 39 }))
    );
    assert_eq!(
        space.map(&mut w.mem, &mut w.frames, 0x1001, 0x1000, Rights::READ),
        Err(TableError::Misaligned { address: 0x1001 })
    );
    assert_eq!(
        space.map(&mut w.mem, &mut w.frames, 0x1000, 0x1800, Rights::READ),
        Err(TableError::Misaligned { address: 0x1800 })
    );
    let e = space.map(&mut w.mem, &mut w.frames, 0x1000, 1 << 39, Rights::READ);
    assert_eq!(e, Err(TableError::PhysicalBeyondWidth { pa: 1 << 39, width: HAW }));
    // The top of the 39-bit space works.
    let top = (1u64 << 39) - 4096;
    space.map(&mut w.mem, &mut w.frames, top, 0x1000, Rights::READ).unwrap();
    assert_eq!(w.walk(NVME, top + 5, Access::Read), Ok(0x1005));
}

#[test]
fn four_level_tables_reach_48_bits() {
    let mut mem = EmulatedMemory::default();
    let mut frames = Frames::new(0x100_0000, 64);
    let root = RootTable::create(&mut mem, &mut frames).unwrap();
    let space = root.attach(&mut mem, &mut frames, NVME, config(5, Levels::Four), WIDE_CAP).unwrap();
    let iova = (1u64 << 47) | 0x3000;
    space.map(&mut mem, &mut frames, iova, 0x9000, Rights::READ_WRITE).unwrap();
    let l = limits(WIDE_CAP);
    assert_eq!(translate(&mem, root.pa(), NVME, iova, Access::Write, &l).unwrap().pa, 0x9000);
    assert_eq!(mem.read_u64(root.pa()) & 1, 1);
    // A context entry asking for 4 levels on a unit with only 3 is invalid.
    assert_eq!(
        translate(&mem, root.pa(), NVME, iova, Access::Write, &limits(QEMU_CAP)).unwrap_err().reason,
        FaultReason::InvalidContextEntry
    );
    assert_eq!(WIDE_CAP.levels_for(39), Some(Levels::Three));
    assert_eq!(WIDE_CAP.levels_for(40), Some(Levels::Four));
    assert_eq!(QEMU_CAP.levels_for(40), None);
}

#[test]
fn frame_exhaustion_and_bad_frames_are_errors() {
    let mut mem = EmulatedMemory::default();
    let mut frames = Frames::new(0x100_0000, 3);
    let root = RootTable::create(&mut mem, &mut frames).unwrap();
    // Context table + second-level root use the other two frames.
    let space = root.attach(&mut mem, &mut frames, NVME, config(1, Levels::Three), QEMU_CAP).unwrap();
    assert_eq!(space.map(&mut mem, &mut frames, 0x1000, 0x1000, Rights::READ), Err(TableError::OutOfFrames));
    assert!(translate(&mem, root.pa(), NVME, 0x1000, Access::Read, &limits(QEMU_CAP)).is_err());
    // With two more frames the same map succeeds.
    frames.free = vec![0x200_1000, 0x200_0000];
    space.map(&mut mem, &mut frames, 0x1000, 0x1000, Rights::READ).unwrap();
    assert_eq!(translate(&mem, root.pa(), NVME, 0x1000, Access::Read, &limits(QEMU_CAP)).unwrap().pa, 0x1000);
    frames.free = vec![0x300_0800];
    assert_eq!(
        space.map(&mut mem, &mut frames, 1 << 30, 0x1000, Rights::READ),
        Err(TableError::FrameMisaligned { pa: 0x300_0800 })
    );
}

#[test]
fn walker_reports_reserved_and_invalid_entries() {
    let mut w = world();
    let space = w.attach(NVME, 1);
    space.map(&mut w.mem, &mut w.frames, 0x1000, 0x10_0000, Rights::READ_WRITE).unwrap();
    let l3 = w.mem.read_u64(space.root()) & !0xfff;
    let l1 = w.mem.read_u64(l3) & !0xfff;
    let leaf_at = l1 + 8;
    let leaf = w.mem.read_u64(leaf_at);
    // Address bit above the 39-bit host width.
    w.mem.write_u64(leaf_at, leaf | 1 << 45);
    assert_eq!(
        w.walk(NVME, 0x1000, Access::Read),
        Err((FaultReason::PagingEntryReserved, Cause::PagingEntryReservedBits { level: 1 }))
    );
    // SNP without ECAP.SC.
    w.mem.write_u64(leaf_at, leaf | 1 << 11);
    assert_eq!(w.walk(NVME, 0x1000, Access::Read).unwrap_err().0, FaultReason::PagingEntryReserved);
    w.mem.write_u64(leaf_at, leaf);
    // Context: TT = 11 is reserved; TT = 10 needs ECAP.PT.
    let ctx = (w.mem.read_u64(w.root.pa()) & !0xfff) + 16 * NVME.devfn() as u64;
    let ctx_lo = w.mem.read_u64(ctx);
    for tt in [3u64, 2] {
        w.mem.write_u64(ctx, ctx_lo | tt << 2);
        assert_eq!(
            w.walk(NVME, 0x1000, Access::Read),
            Err((FaultReason::InvalidContextEntry, Cause::UnsupportedTranslationType { tt }))
        );
    }
    // Pass-through, when the unit has it, is the identity.
    w.mem.write_u64(ctx, ctx_lo | 2 << 2);
    let pt = WalkLimits { pass_through: true, ..limits(QEMU_CAP) };
    assert_eq!(translate(&w.mem, w.root.pa(), NVME, 0x1234_5000, Access::Write, &pt).unwrap().pa, 0x1234_5000);
    w.mem.write_u64(ctx, ctx_lo | 1 << 5);
    assert_eq!(
        w.walk(NVME, 0x1000, Access::Read),
        Err((FaultReason::ContextEntryReserved, Cause::ContextReservedBits))
    );
    w.mem.write_u64(ctx, ctx_lo);
    // AW = 011 (5-level) is not offered by the unit.
    let ctx_hi = w.mem.read_u64(ctx + 8);
    w.mem.write_u64(ctx + 8, (ctx_hi & !7) | 3);
    assert_eq!(
        w.walk(NVME, 0x1000, Access::Read),
        Err((FaultReason::InvalidContextEntry, Cause::UnsupportedAddressWidth { aw: 3 }))
    );
    w.mem.write_u64(ctx + 8, ctx_hi);
    // Root entry with the reserved high quadword set.
    w.mem.write_u64(w.root.pa() + 8, 1);
    assert_eq!(w.walk(NVME, 0x1000, Access::Read), Err((FaultReason::RootEntryReserved, Cause::RootReservedBits)));
    w.mem.write_u64(w.root.pa() + 8, 0);
    assert_eq!(w.walk(NVME, 0x1000, Access::Read), Ok(0x10_0000));
}

#[test]
fn large_pages_are_walked_and_never_overwritten() {
    let mut w = world();
    let space = w.attach(NVME, 1);
    space.map(&mut w.mem, &mut w.frames, 0x1000, 0x10_0000, Rights::READ).unwrap();
    // Install a 2 MiB page by hand at level 2, index 1 (IOVA 2 MiB).
    let l2 = w.mem.read_u64(space.root()) & !0xfff;
    w.mem.write_u64(l2 + 8, 0x4000_0000 | 1 << 7 | 3);
    let with_2m = WalkLimits { large_pages: 1, ..limits(QEMU_CAP) };
    let t = translate(&w.mem, w.root.pa(), NVME, 0x20_1234, Access::Write, &with_2m).unwrap();
    assert_eq!((t.pa, t.page_size), (0x4000_1234, 2 << 20));
    let no_large = WalkLimits { large_pages: 0, ..limits(QEMU_CAP) };
    assert_eq!(
        translate(&w.mem, w.root.pa(), NVME, 0x20_1234, Access::Write, &no_large).unwrap_err().reason,
        FaultReason::PagingEntryReserved
    );
    assert_eq!(
        space.map(&mut w.mem, &mut w.frames, 0x20_3000, 0x5000, Rights::READ),
        Err(TableError::LargePageInTheWay { iova: 0x20_3000, level: 2 })
    );
    assert_eq!(space.unmap(&mut w.mem, 0x20_3000), Err(TableError::LargePageInTheWay { iova: 0x20_3000, level: 2 }));
    // A misaligned large-page address is reserved-bit damage.
    w.mem.write_u64(l2 + 8, 0x4000_1000 | 1 << 7 | 3);
    assert_eq!(
        translate(&w.mem, w.root.pa(), NVME, 0x20_0000, Access::Read, &with_2m).unwrap_err().reason,
        FaultReason::PagingEntryReserved
    );
}

#[test]
fn random_map_unmap_agrees_with_a_model() {
    let mut w = world();
    let spaces = [w.attach(NVME, 1), w.attach(VIRTIO, 2)];
    let devices = [NVME, VIRTIO];
    let mut model: [HashMap<u64, (u64, Rights)>; 2] = [HashMap::new(), HashMap::new()];
    let mut rng = Rng::new(0xfeed);
    let rights = [Rights::READ, Rights::WRITE, Rights::READ_WRITE];
    for _ in 0..3000 {
        let d = rng.below(2) as usize;
        // A few clustered regions, so tables are shared and slots collide.
        let iova = (rng.below(4) << 30 | rng.below(3) << 21 | rng.below(64) << 12) & ((1 << 39) - 1);
        if rng.below(3) == 0 {
            let expected = model[d].remove(&iova);
            let got = spaces[d].unmap(&mut w.mem, iova);
            match expected {
                Some((pa, r)) => assert_eq!(got.map(|u| (u.pa, u.rights)), Ok((pa, r))),
                None => assert_eq!(got, Err(TableError::NotMapped { iova })),
            }
        } else {
            let pa = rng.below(1 << 20) << 12;
            let r = rights[rng.below(3) as usize];
            let got = spaces[d].map(&mut w.mem, &mut w.frames, iova, pa, r);
            if let std::collections::hash_map::Entry::Vacant(e) = model[d].entry(iova) {
                got.unwrap();
                e.insert((pa, r));
            } else {
                assert!(matches!(got, Err(TableError::AlreadyMapped { .. })));
            }
        }
    }
    let l = limits(QEMU_CAP);
    for d in 0..2 {
        assert!(model[d].len() > 100, "the model should hold a good number of mappings");
        for (&iova, &(pa, r)) in &model[d] {
            for access in [Access::Read, Access::Write] {
                let t = translate(&w.mem, w.root.pa(), devices[d], iova | 0x7f8, access, &l);
                if r.allows(access) {
                    assert_eq!(t.map(|t| t.pa), Ok(pa | 0x7f8));
                } else {
                    assert!(t.is_err());
                }
            }
            assert_eq!(spaces[d].lookup(&w.mem, iova).unwrap().map(|u| (u.pa, u.rights)), Some((pa, r)));
        }
        // Unmapped addresses in the same regions fault.
        for _ in 0..500 {
            let iova = rng.below(4) << 30 | rng.below(3) << 21 | rng.below(512) << 12;
            if !model[d].contains_key(&iova) {
                assert!(translate(&w.mem, w.root.pa(), devices[d], iova, Access::Read, &l).is_err());
            }
        }
    }
}

#[test]
fn walker_survives_corrupted_tables() {
    // Build real tables, then flip random bits in random words of the
    // table frames: every walk must end in a translation or a fault with a
    // spec reason code, never a panic.
    let mut w = world();
    let space = w.attach(NVME, 1);
    let mut rng = Rng::new(4242);
    let mut iovas = Vec::new();
    for _ in 0..200 {
        let iova = (rng.below(1 << 27)) << 12;
        if space.map(&mut w.mem, &mut w.frames, iova, rng.below(1 << 20) << 12, Rights::READ_WRITE).is_ok() {
            iovas.push(iova);
        }
    }
    // The words in use: non-zero entries of the (zeroed) table frames.
    let used: Vec<u64> = w
        .frames
        .taken
        .iter()
        .flat_map(|f| (0..512).map(move |i| f + i * 8))
        .filter(|&a| w.mem.read_u64(a) != 0)
        .collect();
    let limits = WalkLimits { large_pages: 3, pass_through: true, device_tlb: true, ..limits(QEMU_CAP) };
    let (mut ok, mut faults) = (0, 0);
    for _ in 0..300 {
        for _ in 0..3 {
            let at = used[rng.below(used.len() as u64) as usize];
            let v = w.mem.read_u64(at);
            w.mem.write_u64(at, v ^ 1 << rng.below(64));
        }
        for &iova in iovas.iter().step_by(7) {
            let access = if rng.next_u64() & 1 == 0 { Access::Read } else { Access::Write };
            match translate(&w.mem, w.root.pa(), NVME, iova | rng.below(4096), access, &limits) {
                Ok(t) => {
                    assert!([4096, 2 << 20, 1 << 30].contains(&t.page_size));
                    ok += 1;
                }
                Err(f) => {
                    assert!((1..=0xd).contains(&f.reason.code()), "{f:?}");
                    faults += 1;
                }
            }
        }
    }
    assert!(ok > 100 && faults > 100, "ok {ok}, faults {faults}");
}

#[test]
fn attach_spends_no_frame_when_it_fails() {
    let mut mem = EmulatedMemory::default();
    let mut frames = Frames::new(0x100_0000, 1);
    let root = RootTable::create(&mut mem, &mut frames).unwrap();
    // No frame for the context table: refused before anything is taken.
    frames.free = vec![];
    assert_eq!(
        root.attach(&mut mem, &mut frames, NVME, config(1, Levels::Three), QEMU_CAP),
        Err(TableError::OutOfFrames)
    );
    // One frame: the context table gets it, the second-level root cannot.
    frames.free = vec![0x200_0000];
    assert_eq!(
        root.attach(&mut mem, &mut frames, NVME, config(1, Levels::Three), QEMU_CAP),
        Err(TableError::OutOfFrames)
    );
    // The device has no context entry, and a retry with frames succeeds
    // reusing the context table.
    assert_eq!(root.device_space(&mem, NVME, HAW), Err(TableError::ContextNotPresent { bdf: NVME }));
    frames.free = vec![0x300_0000];
    let space = root.attach(&mut mem, &mut frames, NVME, config(1, Levels::Three), QEMU_CAP).unwrap();
    assert_eq!(space.root(), 0x300_0000);
}

/// A unit that offers only 4-level tables (SAGAW bit 2 alone, as a VT-d
/// unit with 48-bit addresses may): the depth is chosen from the
/// capability register, so the kernel's 39-bit DMA window gets 4 levels
/// there, and 3 levels where they exist. A unit offering only 5 levels
/// (57 bits, which this crate does not build) gives no depth at all.
#[test]
fn depth_follows_the_units_sagaw() {
    let four_only = Cap((0x4 << 8) | (47 << 16) | 2);
    let five_only = Cap((0x8 << 8) | (56 << 16) | 2);
    assert_eq!(four_only.levels_for(39), Some(Levels::Four));
    assert_eq!(QEMU_CAP.levels_for(39), Some(Levels::Three));
    assert_eq!(WIDE_CAP.levels_for(39), Some(Levels::Three), "the shallower depth when both exist");
    assert_eq!(five_only.levels_for(39), None);
    let mut mem = EmulatedMemory::default();
    let mut frames = Frames::new(0x100_0000, 64);
    let root = RootTable::create(&mut mem, &mut frames).unwrap();
    let levels = four_only.levels_for(39).unwrap();
    let cfg = ContextConfig { domain_id: 3, levels, host_address_width: 48 };
    assert_eq!(
        root.attach(&mut mem, &mut frames, VIRTIO, config(4, Levels::Three), four_only),
        Err(TableError::LevelsUnsupported { levels: Levels::Three })
    );
    let space = root.attach(&mut mem, &mut frames, NVME, cfg, four_only).unwrap();
    // Frames above 4 GiB (RAM past the PCI hole on a big machine).
    for (iova, pa) in [(0x1000u64, 0x2_4000_0000u64), ((128 << 20) - 0x1000, 0x1_0000_0000)] {
        space.map(&mut mem, &mut frames, iova, pa, Rights::READ_WRITE).unwrap();
        let l = WalkLimits { host_address_width: 48, ..limits(four_only) };
        assert_eq!(translate(&mem, root.pa(), NVME, iova + 8, Access::Write, &l).unwrap().pa, pa + 8);
        // The same tables read as 3-level by a unit without 4 levels are
        // refused, not misread.
        assert_eq!(
            translate(&mem, root.pa(), NVME, iova, Access::Read, &limits(QEMU_CAP)).unwrap_err().reason,
            FaultReason::InvalidContextEntry
        );
    }
}
