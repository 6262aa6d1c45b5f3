//! The boot-information parser: what a loader may legitimately hand over
//! (anywhere in memory, above 1 GiB and 4 GiB too) is accepted; what lies
//! in a hole is a named error; garbage never panics.

use firmware::bootinfo::{
    efi_type_to_e820, parse, BootError, Firmware, PhysRead, Range, RsdpSource, MB2_MAGIC, PVH_MAGIC,
};
use firmware::window::Kind;
use std::collections::HashMap;
use testrng::Rng;

const GIB: u64 = 1 << 30;

/// Sparse physical memory; unwritten bytes read as 0xff (like a hole).
#[derive(Default, Clone)]
struct Mem(HashMap<u64, u8>);

impl Mem {
    fn put(&mut self, pa: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            self.0.insert(pa + i as u64, *b);
        }
    }
    fn put32(&mut self, pa: u64, v: u32) {
        self.put(pa, &v.to_le_bytes());
    }
    fn put64(&mut self, pa: u64, v: u64) {
        self.put(pa, &v.to_le_bytes());
    }
}

impl PhysRead for Mem {
    fn read(&self, pa: u64, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            *b = *self.0.get(&pa.wrapping_add(i as u64)).unwrap_or(&0xff);
        }
    }
}

/// QEMU q35's memory map with 8 GiB (as the kernel logs it).
const MAP: [(u64, u64, u32); 10] = [
    (0, 0x9fc00, 1),
    (0x9fc00, 0x400, 2),
    (0xf0000, 0x10000, 2),
    (0x10_0000, 0x7fede000, 1),
    (0x7ffde000, 0x22000, 2),
    (0xb000_0000, 0x1000_0000, 2),
    (0xfed1_c000, 0x4000, 2),
    (0xfffc_0000, 0x4_0000, 2),
    (0x1_0000_0000, 0x1_8000_0000, 1),
    (0xfd_0000_0000, 0x3_0000_0000, 2),
];

struct Pvh {
    info: u64,
    memmap: u64,
    modlist: u64,
    module: (u64, u64),
    cmdline: u64,
}

const QEMU: Pvh =
    Pvh { info: 0x6000, memmap: 0x6100, modlist: 0x6400, module: (0x7ed3_0000, 0x12a_7000), cmdline: 0x6800 };

fn pvh(p: &Pvh) -> Mem {
    let mut m = Mem::default();
    m.put32(p.info, PVH_MAGIC);
    m.put32(p.info + 4, 1);
    m.put32(p.info + 8, 0);
    m.put32(p.info + 12, 1);
    m.put64(p.info + 16, p.modlist);
    m.put64(p.info + 24, p.cmdline);
    m.put64(p.info + 32, 0xf5a00);
    m.put64(p.info + 40, p.memmap);
    m.put32(p.info + 48, MAP.len() as u32);
    for (i, (s, l, t)) in MAP.iter().enumerate() {
        let e = p.memmap + i as u64 * 24;
        m.put64(e, *s);
        m.put64(e + 8, *l);
        m.put32(e + 16, *t);
        m.put32(e + 20, 0);
    }
    m.put64(p.modlist, p.module.0);
    m.put64(p.modlist + 8, p.module.1);
    m.put64(p.modlist + 16, 0);
    m.put64(p.modlist + 24, 0);
    m.put(p.cmdline, b"test=boot_to_init ram_mib=8192\0");
    m
}

#[test]
fn qemu_pvh_is_read_whole() {
    let bi = parse(&pvh(&QEMU), QEMU.info, 0).unwrap();
    assert_eq!(bi.protocol, "PVH");
    assert_eq!(
        bi.ram(),
        [
            Range { start: 0, end: 0x9fc00 },
            Range { start: 0x10_0000, end: 0x7ffde000 },
            Range { start: 4 * GIB, end: 10 * GIB }
        ]
    );
    assert_eq!(bi.map().len(), MAP.len());
    assert_eq!(bi.module, Some(Range { start: 0x7ed3_0000, end: 0x7ed3_0000 + 0x12a_7000 }));
    assert_eq!(bi.cmdline(), b"test=boot_to_init ram_mib=8192");
    assert_eq!(bi.rsdp, 0xf5a00);
    assert_eq!(bi.info, Range { start: 0x6000, end: 0x7000 });
}

#[test]
fn a_module_running_into_the_reserved_top_of_low_ram_is_accepted() {
    // As QEMU does with an NVMe and a virtio disk attached.
    let p = Pvh { module: (0x7ed3_0000, 0x7ffe2000 - 0x7ed3_0000), ..QEMU };
    assert!(parse(&pvh(&p), p.info, 0).is_ok());
}

#[test]
fn everything_above_4_gib_is_accepted() {
    let p = Pvh {
        info: 5 * GIB + 0x123_4000,
        memmap: 6 * GIB + 0x10,
        modlist: 7 * GIB - 0x20,
        module: (9 * GIB, 64 << 20),
        cmdline: 2 * GIB - 0x30_0000,
    };
    let bi = parse(&pvh(&p), p.info, 0).unwrap();
    assert_eq!(bi.module, Some(Range { start: 9 * GIB, end: 9 * GIB + (64 << 20) }));
    assert_eq!(bi.cmdline(), b"test=boot_to_init ram_mib=8192");
    assert_eq!(bi.info.start, 5 * GIB + 0x123_4000);
}

#[test]
fn structures_in_a_hole_are_named_errors() {
    let hole = 3 * GIB; // the 32-bit PCI window
    let cases = [
        (Pvh { module: (hole, 0x1000), ..QEMU }, BootError::ModuleOutsideMemory),
        (Pvh { module: (10 * GIB - 0x1000, 0x2000), ..QEMU }, BootError::ModuleOutsideMemory),
        (Pvh { module: (0x10_0000, 0), ..QEMU }, BootError::ModuleOutsideMemory),
        (Pvh { cmdline: hole, ..QEMU }, BootError::CmdlineOutsideMemory),
        (Pvh { memmap: hole, ..QEMU }, BootError::MemoryMapOutsideMemory),
        (Pvh { modlist: hole + 0x100, ..QEMU }, BootError::ModuleListOutsideMemory),
        (Pvh { info: hole + 0x40, ..QEMU }, BootError::InfoOutsideMemory),
        (Pvh { info: 0xa_0000, ..QEMU }, BootError::InfoOutsideMemory),
    ];
    for (p, want) in cases {
        let r = parse(&pvh(&p), p.info, 0).map(|_| ());
        // The VGA hole is in the first MiB, where firmware keeps things.
        if p.info == 0xa_0000 {
            assert_eq!(r, Ok(()));
            continue;
        }
        assert_eq!(
            r,
            Err(want),
            "module {:#x?} cmdline {:#x} memmap {:#x} info {:#x}",
            p.module,
            p.cmdline,
            p.memmap,
            p.info
        );
    }
    // A command line that runs from RAM into a hole.
    let mut m = pvh(&Pvh { cmdline: 0x7ffff000 + 0xff0, ..QEMU });
    m.put(0x7ffff000 + 0xff0, &[b'x'; 0x20]);
    assert_eq!(parse(&m, QEMU.info, 0).map(|_| ()), Err(BootError::CmdlineOutsideMemory));
}

#[test]
fn bad_headers_are_named_errors() {
    let m = pvh(&QEMU);
    assert_eq!(parse(&m, 0, 0).map(|_| ()), Err(BootError::NullInfo));
    assert_eq!(parse(&m, u64::MAX - 8, 0).map(|_| ()), Err(BootError::NullInfo));
    assert_eq!(parse(&m, 0x9000, 0).map(|_| ()), Err(BootError::UnknownFormat));
    let mut v0 = m.clone();
    v0.put32(QEMU.info + 4, 0);
    assert_eq!(parse(&v0, QEMU.info, 0).map(|_| ()), Err(BootError::PvhVersion0));
    for n in [0u32, 129, u32::MAX] {
        let mut e = m.clone();
        e.put32(QEMU.info + 48, n);
        assert_eq!(parse(&e, QEMU.info, 0).map(|_| ()), Err(BootError::PvhMemoryMapImplausible));
    }
    let mut top = m.clone();
    top.put64(QEMU.info + 40, u64::MAX - 100);
    assert_eq!(parse(&top, QEMU.info, 0).map(|_| ()), Err(BootError::PvhMemoryMapImplausible));
    let mut noram = m.clone();
    for i in 0..MAP.len() as u64 {
        noram.put32(QEMU.memmap + i * 24 + 16, 2);
    }
    assert_eq!(parse(&noram, QEMU.info, 0).map(|_| ()), Err(BootError::NoRam));
}

fn mb2(at: u64, tags: &[(u32, Vec<u8>)]) -> Mem {
    let mut body = vec![];
    for (ty, payload) in tags {
        let size = 8 + payload.len() as u32;
        body.extend_from_slice(&ty.to_le_bytes());
        body.extend_from_slice(&size.to_le_bytes());
        body.extend_from_slice(payload);
        while body.len() % 8 != 0 {
            body.push(0);
        }
    }
    body.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
    let total = 8 + body.len() as u32;
    let mut m = Mem::default();
    m.put32(at, total);
    m.put32(at + 4, 0);
    m.put(at + 8, &body);
    m
}

fn mb2_mmap() -> Vec<u8> {
    let mut p = vec![];
    p.extend_from_slice(&24u32.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    for (s, l, t) in MAP {
        p.extend_from_slice(&s.to_le_bytes());
        p.extend_from_slice(&l.to_le_bytes());
        p.extend_from_slice(&t.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
    }
    p
}

#[test]
fn multiboot2_is_read_and_checked() {
    let module = |s: u32, e: u32| [s.to_le_bytes(), e.to_le_bytes()].concat();
    let tags = vec![(1, b"demo\0".to_vec()), (3, module(0x20_0000, 0x30_0000)), (6, mb2_mmap()), (14, vec![0; 20])];
    let at = 0x1_2000_0000; // above 4 GiB: a loader may
    let bi = parse(&mb2(at, &tags), at, MB2_MAGIC).unwrap();
    assert_eq!(bi.protocol, "multiboot2");
    assert_eq!(bi.cmdline(), b"demo");
    assert_eq!(bi.module, Some(Range { start: 0x20_0000, end: 0x30_0000 }));
    assert_eq!(bi.ram().len(), 3);
    assert!(bi.rsdp > at);
    // Without the magic in eax it is not multiboot2.
    assert_eq!(parse(&mb2(at, &tags), at, 0).map(|_| ()), Err(BootError::UnknownFormat));
    // The information itself in a hole.
    let hole = 0xc000_0000;
    assert_eq!(parse(&mb2(hole, &tags), hole, MB2_MAGIC).map(|_| ()), Err(BootError::InfoOutsideMemory));
    // A module in a hole.
    let bad = vec![(3, module(0xc000_0000, 0xc010_0000)), (6, mb2_mmap())];
    assert_eq!(parse(&mb2(at, &bad), at, MB2_MAGIC).map(|_| ()), Err(BootError::ModuleOutsideMemory));
    // No memory map.
    assert_eq!(parse(&mb2(at, &[(1, b"x\0".to_vec())]), at, MB2_MAGIC).map(|_| ()), Err(BootError::NoRam));
    // A tag running past the end.
    let mut m = mb2(at, &tags);
    m.put32(at + 12, 0x10_0000);
    assert_eq!(parse(&m, at, MB2_MAGIC).map(|_| ()), Err(BootError::Mb2TagOverrun));
    let mut m = mb2(at, &tags);
    m.put32(at, 8);
    assert_eq!(parse(&m, at, MB2_MAGIC).map(|_| ()), Err(BootError::Mb2Size));
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
    let mut rnd = move || rng.next_u64();
    let base_pvh = pvh(&QEMU);
    let tags = vec![(1, b"demo\0".to_vec()), (6, mb2_mmap())];
    let base_mb2 = mb2(0x9000, &tags);
    for round in 0..3000 {
        let (mut m, at, magic) =
            if round % 2 == 0 { (base_pvh.clone(), QEMU.info, 0) } else { (base_mb2.clone(), 0x9000, MB2_MAGIC) };
        let keys: Vec<u64> = m.0.keys().copied().collect();
        for _ in 0..(rnd() % 6 + 1) {
            let k = keys[(rnd() % keys.len() as u64) as usize];
            m.0.insert(k, rnd() as u8);
        }
        if let Ok(bi) = parse(&m, at, magic) {
            // Whatever was accepted lies in memory.
            if let Some(r) = bi.module {
                assert!(bi.in_memory(r.start, r.len()));
            }
            assert!(bi.cmdline_len < 1024);
        }
    }
}

/// An RSDP (revision 0 or 2) with valid checksums.
fn rsdp(revision: u8) -> Vec<u8> {
    let mut r = vec![0u8; 36];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(b"EXOTST");
    r[15] = revision;
    r[16..20].copy_from_slice(&0x7fe1_0000u32.to_le_bytes());
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&0x7fe2_0000u64.to_le_bytes());
    let sum = |s: &[u8]| s.iter().fold(0u8, |a, x| a.wrapping_add(*x));
    r[8] = 0u8.wrapping_sub(sum(&r[..20]));
    r[32] = 0u8.wrapping_sub(sum(&r));
    if revision < 2 {
        r.truncate(20);
    }
    r
}

/// An EFI memory map tag's payload: (EFI type, start, pages) descriptors
/// of `dsize` bytes.
fn efi_map(dsize: u32, descs: &[(u32, u64, u64)]) -> Vec<u8> {
    let mut p = vec![];
    p.extend_from_slice(&dsize.to_le_bytes());
    p.extend_from_slice(&1u32.to_le_bytes());
    for (ty, start, pages) in descs {
        let mut d = vec![0u8; dsize as usize];
        d[..4].copy_from_slice(&ty.to_le_bytes());
        d[8..16].copy_from_slice(&start.to_le_bytes());
        d[16..24].copy_from_slice(&start.to_le_bytes());
        d[24..32].copy_from_slice(&pages.to_le_bytes());
        p.extend_from_slice(&d);
    }
    p
}

/// OVMF-like: conventional memory in adjacent pieces, boot services and
/// loader memory, runtime services, ACPI, MMIO and persistent memory.
const OVMF: [(u32, u64, u64); 11] = [
    (3, 0, 1),         // boot services code
    (7, 0x1000, 0x9f), // conventional
    (7, 0x10_0000, 0x700),
    (2, 0x80_0000, 0x10),  // loader data
    (4, 0x81_0000, 0x100), // boot services data
    (7, 0x91_0000, 0x1000),
    (9, 0x1f0_0000, 0x10),       // ACPI reclaim
    (10, 0x1f1_0000, 0x10),      // ACPI NVS
    (6, 0x1f2_0000, 0x20),       // runtime services data
    (11, 0xb000_0000, 0x10000),  // MMIO (ECAM)
    (14, 0x1_0000_0000, 0x8000), // persistent memory
];

#[test]
fn efi_types_never_make_firmware_memory_ram() {
    for ty in [0, 5, 6, 11, 12, 13, 15, 16, 0x7000_0000, 0x8000_0000, u32::MAX] {
        assert_eq!(efi_type_to_e820(ty, false), 2, "EFI type {ty}");
    }
    for ty in [1, 2, 3, 4, 7] {
        assert_eq!(efi_type_to_e820(ty, false), 1, "EFI type {ty}");
    }
    assert_eq!(efi_type_to_e820(3, true), 2, "boot services code while they run");
    assert_eq!(efi_type_to_e820(4, true), 2);
    assert_eq!((efi_type_to_e820(9, false), efi_type_to_e820(10, false)), (3, 4));
    assert_eq!((efi_type_to_e820(8, false), efi_type_to_e820(14, false)), (5, 7));
}

#[test]
fn uefi_multiboot2_with_only_the_efi_map_is_read() {
    let at = 0x90_0000;
    let module = [0x20_0000u32.to_le_bytes(), 0x30_0000u32.to_le_bytes()].concat();
    let tags = vec![
        (1, b"test=image_uefi\0".to_vec()),
        (3, module),
        (8, vec![0; 24]),                            // a framebuffer: skipped
        (12, 0x7f00_0000u64.to_le_bytes().to_vec()), // EFI64 system table
        (17, efi_map(48, &OVMF)),                    // descriptors larger than 40: stepped by size
        (15, rsdp(2)),
    ];
    let bi = parse(&mb2(at, &tags), at, MB2_MAGIC).unwrap();
    assert_eq!(bi.firmware, Firmware::Uefi);
    assert_eq!(bi.cmdline(), b"test=image_uefi");
    assert_eq!(bi.rsdp_source, RsdpSource::Loader);
    // Adjacent RAM pieces merge: 0..0xa0000, then 1 MiB..0x191_0000.
    assert_eq!(bi.ram(), &[Range { start: 0, end: 0xa_0000 }, Range { start: 0x10_0000, end: 0x191_0000 }]);
    let kind_at = |pa: u64| bi.map().iter().find(|r| r.start <= pa && pa < r.end).map(|r| r.kind);
    assert_eq!(kind_at(0x1f0_0000), Some(Kind::AcpiReclaim));
    assert_eq!(kind_at(0x1f1_0000), Some(Kind::AcpiNvs));
    assert_eq!(kind_at(0x1f2_0000), Some(Kind::Reserved));
    assert_eq!(kind_at(0xb000_0000), Some(Kind::Reserved));
    assert_eq!(kind_at(0x1_0000_0000), Some(Kind::Other(7)));
    // Boot services kept running (tag 18): their memory is not RAM.
    let mut kept = tags.clone();
    kept.push((18, vec![]));
    let bi = parse(&mb2(at, &kept), at, MB2_MAGIC).unwrap();
    assert_eq!(bi.ram()[0], Range { start: 0x1000, end: 0xa_0000 });
    assert!(!bi.ram().iter().any(|r| r.start <= 0x81_0000 && 0x81_0000 < r.end));
    // The e820-style map wins when both are there.
    let mut both = tags.clone();
    both.push((6, mb2_mmap()));
    let bi = parse(&mb2(at, &both), at, MB2_MAGIC).unwrap();
    assert_eq!(bi.ram().len(), 3);
}

#[test]
fn bios_multiboot2_prefers_the_acpi2_rsdp() {
    let at = 0x90_0000;
    let tags = vec![(6, mb2_mmap()), (14, rsdp(0)), (15, rsdp(2))];
    let bi = parse(&mb2(at, &tags), at, MB2_MAGIC).unwrap();
    assert_eq!(bi.firmware, Firmware::Bios);
    assert_eq!(bi.rsdp_source, RsdpSource::Loader);
    // tag 14 at +8 holds 20 bytes (padded to 24); tag 15 follows it.
    let tag6 = 8 + ((8 + mb2_mmap().len() as u64 + 7) & !7);
    assert_eq!(bi.rsdp, at + tag6 + 32 + 8);
    let only_v1 = parse(&mb2(at, &tags[..2]), at, MB2_MAGIC).unwrap();
    assert_eq!(only_v1.rsdp, at + tag6 + 8);
}

#[test]
fn without_an_rsdp_tag_the_legacy_areas_are_scanned() {
    let at = 0x90_0000;
    let tags = vec![(6, mb2_mmap())];
    // Nothing anywhere: no RSDP, said so.
    let bi = parse(&mb2(at, &tags), at, MB2_MAGIC).unwrap();
    assert_eq!((bi.rsdp, bi.rsdp_source), (0, RsdpSource::None));
    // In the BIOS area, after a bad-checksum decoy.
    let mut m = mb2(at, &tags);
    let mut decoy = rsdp(0);
    decoy[8] ^= 1;
    m.put(0xe_0010, &decoy);
    m.put(0xf_5a40, &rsdp(2));
    let bi = parse(&m, at, MB2_MAGIC).unwrap();
    assert_eq!((bi.rsdp, bi.rsdp_source), (0xf_5a40, RsdpSource::Scan));
    // A revision-2 RSDP whose extended checksum is wrong is no RSDP.
    let mut m2 = mb2(at, &tags);
    let mut bad_ext = rsdp(2);
    bad_ext[32] ^= 1;
    m2.put(0xf_5a40, &bad_ext);
    assert_eq!(parse(&m2, at, MB2_MAGIC).unwrap().rsdp_source, RsdpSource::None);
    // The EBDA's first KiB is looked at first.
    m.put(0x40e, &0x9fc0u16.to_le_bytes());
    m.put(0x9_fc00 + 0x80, &rsdp(0));
    assert_eq!(parse(&m, at, MB2_MAGIC).unwrap().rsdp, 0x9_fc80);
    // An EBDA pointer outside 512..640 KiB is not followed.
    let mut m3 = mb2(at, &tags);
    m3.put(0x40e, &0x0100u16.to_le_bytes());
    m3.put(0x1000, &rsdp(0));
    assert_eq!(parse(&m3, at, MB2_MAGIC).unwrap().rsdp_source, RsdpSource::None);
}

#[test]
fn short_multiboot2_tags_are_named_errors() {
    let at = 0x90_0000;
    for (ty, payload) in
        [(3, vec![0; 4]), (6, vec![24, 0, 0, 0]), (14, vec![0; 12]), (15, rsdp(0)), (17, vec![0; 4]), (12, vec![])]
    {
        let tags = vec![(6, mb2_mmap()), (ty, payload)];
        let e = parse(&mb2(at, &tags), at, MB2_MAGIC).map(|_| ());
        assert_eq!(e, Err(BootError::Mb2TagTooSmall(ty)), "tag {ty}");
        assert!(e.unwrap_err().to_string().contains(&format!("type {ty}")));
    }
    let tags = vec![(12, vec![0; 8]), (17, efi_map(32, &OVMF[..2]))];
    assert_eq!(parse(&mb2(at, &tags), at, MB2_MAGIC).map(|_| ()), Err(BootError::Mb2EfiEntrySize));
    // A huge page count does not wrap.
    let tags = vec![(17, efi_map(40, &[(7, 0x10_0000, 0x1000), (7, 0x2000_0000, u64::MAX)]))];
    let bi = parse(&mb2(at, &tags), at, MB2_MAGIC).unwrap();
    assert_eq!(bi.ram()[1].end, u64::MAX);
}

#[test]
fn efi_garbage_never_panics() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let tags = vec![(1, b"x\0".to_vec()), (12, vec![0; 8]), (17, efi_map(48, &OVMF)), (15, rsdp(2))];
    let base = mb2(0x9000, &tags);
    let keys: Vec<u64> = base.0.keys().copied().collect();
    for _ in 0..3000 {
        let mut m = base.clone();
        for _ in 0..(rng.next_u64() % 6 + 1) {
            let k = keys[(rng.next_u64() % keys.len() as u64) as usize];
            m.0.insert(k, rng.next_u64() as u8);
        }
        if let Ok(bi) = parse(&m, 0x9000, MB2_MAGIC) {
            assert!(bi.ram().iter().all(|r| r.start <= r.end));
        }
    }
}

/// A 64-bit EFI system table at `st` whose configuration table (at
/// `st + 0x100`) lists `entries` (GUID, table address).
fn efi_system_table(m: &mut Mem, st: u64, entries: &[([u8; 16], u64)]) {
    m.put(st, b"IBI SYST");
    m.put64(st + 104, entries.len() as u64);
    m.put64(st + 112, st + 0x100);
    for (i, (guid, pa)) in entries.iter().enumerate() {
        let e = st + 0x100 + 24 * i as u64;
        m.put(e, guid);
        m.put64(e + 16, *pa);
    }
}

const ACPI20_GUID: [u8; 16] =
    [0x71, 0xe8, 0x68, 0x88, 0xf1, 0xe4, 0xd3, 0x11, 0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81];
const ACPI10_GUID: [u8; 16] =
    [0x30, 0x2d, 0x9d, 0xeb, 0x88, 0x2d, 0xd3, 0x11, 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d];
const SMBIOS_GUID: [u8; 16] =
    [0x31, 0x2d, 0x9d, 0xeb, 0x88, 0x2d, 0xd3, 0x11, 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d];

#[test]
fn uefi_without_an_rsdp_tag_reads_the_configuration_table() {
    let at = 0x90_0000;
    let st: u64 = 0x1f2_0000; // runtime services data in the OVMF map
    let tags = vec![(12, st.to_le_bytes().to_vec()), (17, efi_map(48, &OVMF))];
    let mut m = mb2(at, &tags);
    // SMBIOS first, then ACPI 1.0, then 2.0: 2.0 wins.
    m.put(0x1f0_0000, &rsdp(0));
    m.put(0x1f0_0040, &rsdp(2));
    efi_system_table(&mut m, st, &[(SMBIOS_GUID, 0x1f0_0080), (ACPI10_GUID, 0x1f0_0000), (ACPI20_GUID, 0x1f0_0040)]);
    let bi = parse(&m, at, MB2_MAGIC).unwrap();
    assert_eq!(bi.efi_system_table, st);
    assert_eq!((bi.rsdp, bi.rsdp_source), (0x1f0_0040, RsdpSource::EfiSystemTable));
    // Only 1.0.
    efi_system_table(&mut m, st, &[(ACPI10_GUID, 0x1f0_0000)]);
    assert_eq!(parse(&m, at, MB2_MAGIC).unwrap().rsdp, 0x1f0_0000);
    // An entry pointing at a bad RSDP, or into a hole, or a table with an
    // absurd entry count, or a wrong signature: not used (then the legacy
    // scan, which finds nothing here).
    let none = |m: &Mem| parse(m, at, MB2_MAGIC).unwrap().rsdp_source;
    efi_system_table(&mut m, st, &[(ACPI20_GUID, 0x1f0_0080)]);
    assert_eq!(none(&m), RsdpSource::None);
    efi_system_table(&mut m, st, &[(ACPI20_GUID, 0xc000_0000)]);
    m.put(0xc000_0000, &rsdp(2));
    assert_eq!(none(&m), RsdpSource::None);
    efi_system_table(&mut m, st, &[(ACPI20_GUID, 0x1f0_0040)]);
    m.put64(st + 104, 1 << 40);
    assert_eq!(none(&m), RsdpSource::None);
    m.put64(st + 104, 1);
    assert_eq!(none(&m), RsdpSource::EfiSystemTable);
    m.put(st, b"IBI SYSX");
    assert_eq!(none(&m), RsdpSource::None);
    // A tag carrying the RSDP wins over the configuration table.
    let mut tagged = tags.clone();
    tagged.push((14, rsdp(0)));
    let mut m = mb2(at, &tagged);
    efi_system_table(&mut m, st, &[(ACPI20_GUID, 0x1f0_0040)]);
    m.put(0x1f0_0040, &rsdp(2));
    assert_eq!(parse(&m, at, MB2_MAGIC).unwrap().rsdp_source, RsdpSource::Loader);
}
