//! Discovery over well-formed images (ACPI 1.0 with an RSDT, 2.0 with an
//! XSDT) and over images with one thing wrong, each named in the error.

mod common;

use common::*;
use firmware::nfit::{self, RangeKind, Structure};
use firmware::{Cpus, EcamRegion, FirmwareError, PhysView, Platform, Table};
use iommu::acpi::dmar::{Dmar, ScopeKind};

fn discover(memory: &[u8]) -> Result<Platform<'_>, FirmwareError> {
    Platform::discover(PhysView::from_slice(memory), RSDP_AT)
}

fn qemu_cpus(enabled: u32) -> Cpus {
    Cpus { enabled, listed: enabled, local_apic_address: 0xfee0_0000, has_8259: true }
}

const QEMU_ECAM: EcamRegion = EcamRegion { base: 0xb000_0000, segment: 0, start_bus: 0, end_bus: 255 };

fn check_qemu(p: &Platform<'_>) {
    assert_eq!(p.cpus, Ok(qemu_cpus(2)));
    assert_eq!(p.apic_ids.as_slice(), &[0, 1]);
    let ecam = p.ecam.unwrap();
    assert_eq!(ecam.as_slice(), &[QEMU_ECAM]);
    assert_eq!(ecam.find(0, 3), Some(&QEMU_ECAM));
    assert_eq!(ecam.find(1, 0), None);
    assert_eq!(QEMU_ECAM.config_address(1, 2, 3), Some(0xb010_0000 | 2 << 15 | 3 << 12));
    assert_eq!((QEMU_ECAM.window_start(), QEMU_ECAM.window_len()), (0xb000_0000, 256 << 20));
    let dmar_bytes = p.dmar.unwrap();
    assert_eq!(dmar_bytes, &dmar()[..], "the DMAR's exact bytes, as long as its header says");
    let d = Dmar::parse(dmar_bytes).expect("the project's DMAR parser takes the bytes");
    assert_eq!(d.host_address_width, 39);
    let drhds: Vec<_> = d.drhds().collect();
    assert_eq!(drhds.len(), 2);
    assert!(drhds[0].include_pci_all());
    assert_eq!(drhds[0].register_base, 0xfed9_0000);
    assert_eq!(drhds[0].scopes().next().unwrap().kind, ScopeKind::IoApic);
    assert_eq!(drhds[1].register_base, 0xfed9_1000);
    let endpoint = drhds[1].scopes().next().unwrap();
    assert_eq!((endpoint.kind, endpoint.path().collect::<Vec<_>>()), (ScopeKind::PciEndpoint, vec![(0x1c, 0), (0, 0)]));
    let rmrrs: Vec<_> = d.rmrrs().collect();
    assert_eq!((rmrrs.len(), rmrrs[0].base, rmrrs[0].limit), (1, 0xe0000, 0xfffff));
    assert_eq!(rmrrs[0].scopes().next().unwrap().path().collect::<Vec<_>>(), vec![(0x1d, 0)]);
    let nfit_bytes = p.nfit.unwrap();
    assert_eq!(nfit_bytes, &qemu_nfit()[..], "the NFIT's exact bytes, as long as its header says");
    let all: Vec<Structure> = nfit::structures(nfit_bytes).expect("the NFIT parser takes the bytes").collect();
    let ranges: Vec<_> = all
        .iter()
        .filter_map(|s| match s {
            Structure::Spa(r) if r.kind == RangeKind::PersistentMemory => Some(*r),
            _ => None,
        })
        .collect();
    assert_eq!(ranges.len(), 1);
    assert_eq!((ranges[0].base, ranges[0].length, ranges[0].index), (NVDIMM_BASE, NVDIMM_BYTES, 2));
    let mappings: Vec<_> =
        all.iter().filter_map(|s| if let Structure::Mapping(m) = s { Some(*m) } else { None }).collect();
    let others = all.iter().filter(|s| matches!(s, Structure::Other { .. })).count();
    assert_eq!((mappings.len(), mappings[0].spa_index, others), (1, 2, 1));
}

#[test]
fn acpi_1_rsdt_image() {
    let m = Image::qemu(0).memory();
    let p = discover(&m).unwrap();
    assert_eq!((p.revision, p.root, p.root_address, p.entries), (0, Table::Rsdt, ROOT_AT, 4));
    assert_eq!(p.unreadable.count, 0);
    check_qemu(&p);
}

#[test]
fn acpi_2_xsdt_image() {
    let m = Image::qemu(2).memory();
    let p = discover(&m).unwrap();
    assert_eq!((p.revision, p.root, p.entries), (2, Table::Xsdt, 4));
    check_qemu(&p);
}

#[test]
fn madt_variants_through_the_crate() {
    // A disabled local APIC, an enabled and a disabled x2APIC, and the
    // 64-bit address override.
    let mut b = Vec::new();
    b.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]);
    b.extend_from_slice(&[0, 8, 1, 1, 0, 0, 0, 0]);
    for (id, flags) in [(300u32, 1u32), (301, 0)] {
        b.extend_from_slice(&[9, 16, 0, 0]);
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&id.to_le_bytes());
    }
    b.extend_from_slice(&[5, 12, 0, 0]);
    b.extend_from_slice(&0x1_fee0_0000u64.to_le_bytes());
    b.extend_from_slice(&[0x80, 5, 1, 2, 3]); // OEM entry: stepped over
    let m = Image::with(2, vec![sdt(b"APIC", 4, &b)], &[]).memory();
    let p = discover(&m).unwrap();
    assert_eq!(p.cpus, Ok(Cpus { enabled: 2, listed: 4, local_apic_address: 0x1_fee0_0000, has_8259: false }));
    // Only the enabled ones, in MADT order; the x2APIC ID 300 cannot be
    // started through an xAPIC, so it stays parked.
    assert_eq!(p.apic_ids.as_slice(), &[0, 300]);
    let (list, parked) = p.apic_ids.to_start(0, 16);
    assert!(list.as_slice().is_empty());
    assert_eq!(parked, 1);
    assert_eq!(p.ecam, Err(FirmwareError::Missing(Table::Mcfg)));
    assert_eq!(p.dmar, Err(FirmwareError::Missing(Table::Dmar)));
    assert_eq!(p.nfit, Err(FirmwareError::Missing(Table::Nfit)));
}

#[test]
fn many_ecam_regions_and_a_padded_mcfg() {
    let mut b = vec![0u8; 8];
    for seg in 0..20u16 {
        b.extend_from_slice(&(0x1_0000_0000u64 * (seg as u64 + 1)).to_le_bytes());
        b.extend_from_slice(&seg.to_le_bytes());
        b.extend_from_slice(&[0, 15, 0, 0, 0, 0]);
    }
    b.extend_from_slice(&[0; 4]); // padding the crate rounds away
    let m = Image::with(2, vec![sdt(b"MCFG", 1, &b)], &[]).memory();
    let ecam = discover(&m).unwrap().ecam.unwrap();
    assert_eq!((ecam.as_slice().len(), ecam.omitted), (16, 4));
    assert_eq!(ecam.find(3, 15).unwrap().base, 0x4_0000_0000);
    assert_eq!(ecam.find(3, 16), None);
}

#[test]
fn bad_mcfg_allocations_are_named() {
    for (entry, why) in [
        ([0xb000_0000u64, 0x0a0b], "start bus above end bus"),
        ([0xb000_1000, 0xff00], "ECAM base not 1 MiB aligned"),
        ([0xffff_ffff_fff0_0000, 0xff00], "ECAM window runs past the top of the address space"),
    ] {
        let mut b = vec![0u8; 8];
        b.extend_from_slice(&entry[0].to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(entry[1] as u16).to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        let m = Image::with(2, vec![qemu_madt(1), sdt(b"MCFG", 1, &b)], &[]).memory();
        let p = discover(&m).unwrap();
        assert_eq!(p.ecam, Err(FirmwareError::McfgAllocation { index: 0, why }));
        assert_eq!(p.cpus, Ok(qemu_cpus(1)), "the MADT is unaffected");
    }
}

#[test]
fn no_rsdp_and_rsdp_outside_memory() {
    let m = Image::qemu(2).memory();
    let view = PhysView::from_slice(&m);
    assert_eq!(Platform::discover(view, 0).unwrap_err(), FirmwareError::NoRsdp);
    for at in [MEMORY as u64 - 35, MEMORY as u64, u64::MAX - 3] {
        assert_eq!(
            Platform::discover(view, at).unwrap_err(),
            FirmwareError::OutsideView { table: Table::Rsdp, pa: at, len: 36 }
        );
    }
}

#[test]
fn rsdp_signature_and_checksums() {
    let mut img = Image::qemu(2);
    img.rsdp[0] = b'X';
    fix_rsdp(&mut img.rsdp);
    let err = discover(&img.memory()).unwrap_err();
    assert!(matches!(err, FirmwareError::WrongSignature { table: Table::Rsdp, .. }), "{err:?}");
    assert!(err.to_string().contains("XSD PTR "), "{err}");

    for at in [8, 32] {
        // 8 breaks the 1.0 checksum, 32 the 2.0 extended one.
        let mut img = Image::qemu(2);
        img.rsdp[at] ^= 1;
        let err = discover(&img.memory()).unwrap_err();
        assert!(matches!(err, FirmwareError::BadChecksum { table: Table::Rsdp, pa: RSDP_AT, .. }), "{err:?}");
    }
}

#[test]
fn rsdp_2_length_is_checked_before_the_crate_checksums_it() {
    // The crate checksums `length` bytes through a 36-byte mapping.
    for (length, ok) in [(0u32, false), (35, false), (36, true), (1024, true), (1025, false), (u32::MAX, false)] {
        let mut img = Image::qemu(2);
        img.rsdp[20..24].copy_from_slice(&length.to_le_bytes());
        fix_rsdp(&mut img.rsdp);
        let m = img.memory();
        let r = discover(&m);
        if ok {
            // Bytes past 36 are zero in the fake memory, so the sum holds.
            assert!(r.is_ok(), "length {length}: {r:?}");
        } else {
            assert!(matches!(r, Err(FirmwareError::BadLength { table: Table::Rsdp, .. })), "length {length}: {r:?}");
        }
    }
}

#[test]
fn root_table_problems_fail_discovery() {
    type Corruption = Box<dyn Fn(&mut Image)>;
    let cases: Vec<(Corruption, &str)> = vec![
        (Box::new(|i| i.root[0] = b'R'), "wrong signature"),
        (Box::new(|i| i.root[20] ^= 1), "checksum"),
        (Box::new(|i| i.root[4..8].copy_from_slice(&20u32.to_le_bytes())), "shorter than the 36-byte header"),
        (Box::new(|i| i.root[4..8].copy_from_slice(&45u32.to_le_bytes())), "partial 8-byte entry"),
        (Box::new(|i| i.root[4..8].copy_from_slice(&0x10_0000u32.to_le_bytes())), "implausibly large"),
        (Box::new(|i| i.root[4..8].copy_from_slice(&0xf000u32.to_le_bytes())), "not all inside"),
        (Box::new(|i| i.root[10] = 0xff), "OEM id is not UTF-8"),
        (Box::new(|i| i.rsdp = rsdp(2, MEMORY as u64 - 10)), "not all inside"),
        (Box::new(|i| i.rsdp = rsdp(0, ROOT_AT)), "wrong signature XSDT"),
    ];
    for (corrupt, expect) in cases {
        let mut img = Image::qemu(2);
        corrupt(&mut img);
        if expect != "checksum" && !expect.starts_with("wrong") {
            fix_checksum(&mut img.root);
        }
        let err = discover(&img.memory()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(expect), "{expect}: got {text}");
        assert!(text.contains("XSDT") || text.contains("RSDT"), "names the table: {text}");
    }
}

#[test]
fn entries_pointing_outside_memory_are_skipped() {
    let far = [MEMORY as u64 - 20, MEMORY as u64, 0xdead_beef_0000, u64::MAX];
    let m = Image::with(2, vec![qemu_madt(2), qemu_mcfg(), dmar(), qemu_nfit()], &far).memory();
    let p = discover(&m).unwrap();
    assert_eq!(p.entries, 8);
    assert_eq!(p.unreadable.count, 4);
    assert_eq!(
        p.unreadable.iter().copied().collect::<Vec<_>>(),
        vec![(4, far[0]), (5, far[1]), (6, far[2]), (7, far[3])]
    );
    check_qemu(&p);
    // Also before the tables, so the crate meets them first.
    let mut img = Image::with(2, vec![], &far);
    let mut entries: Vec<u64> = far.to_vec();
    img.tables = vec![qemu_madt(2), qemu_mcfg(), dmar(), qemu_nfit()];
    entries.extend((0..4).map(table_at));
    img.root = root(2, &entries);
    check_qemu(&discover(&img.memory()).unwrap());
}

/// One table broken; the other three must still be found.
fn broken(which: usize, corrupt: impl Fn(&mut Vec<u8>), fix: bool) -> Vec<u8> {
    let mut img = Image::qemu(2);
    corrupt(&mut img.tables[which]);
    if fix {
        fix_checksum(&mut img.tables[which]);
    }
    img.memory()
}

fn others_fine(p: &Platform<'_>, broken: usize) {
    if broken != 0 {
        assert_eq!(p.cpus, Ok(qemu_cpus(2)));
    }
    if broken != 1 {
        assert_eq!(p.ecam.unwrap().as_slice(), &[QEMU_ECAM]);
    }
    if broken != 2 {
        assert_eq!(p.dmar.unwrap(), &dmar()[..]);
    }
    if broken != 3 {
        assert_eq!(p.nfit.unwrap(), &qemu_nfit()[..]);
    }
}

fn field(p: &Platform<'_>, which: usize) -> FirmwareError {
    match which {
        0 => p.cpus.unwrap_err(),
        1 => p.ecam.unwrap_err(),
        2 => p.dmar.unwrap_err(),
        _ => p.nfit.unwrap_err(),
    }
}

#[test]
fn a_bad_checksum_costs_only_its_table() {
    for which in 0..4 {
        let m = broken(which, |t| t[40] ^= 0x10, false);
        let p = discover(&m).unwrap();
        let table = [Table::Madt, Table::Mcfg, Table::Dmar, Table::Nfit][which];
        assert_eq!(field(&p, which), FirmwareError::BadChecksum { table, pa: table_at(which), sum: 0x10 });
        others_fine(&p, which);
    }
}

#[test]
fn short_tables_are_refused_before_the_crate_subtracts() {
    // The crate computes `length - 44` for MADT and MCFG; the DMAR's fixed
    // part is 48 bytes, the NFIT's 40.
    for which in 0..4 {
        // (From 10 on the repaired checksum byte lies inside the declared
        // length; a length of 0 sums to 0 trivially.)
        for length in [0u32, 10, 35, 36, 39, 43, 47] {
            if length >= [44, 44, 48, 40][which] {
                continue;
            }
            let m = broken(which, |t| t[4..8].copy_from_slice(&length.to_le_bytes()), true);
            let p = discover(&m).unwrap();
            let e = field(&p, which);
            assert!(
                matches!(e, FirmwareError::BadLength { length: l, .. } if l == length as u64),
                "{which} {length}: {e:?}"
            );
            assert!(e.to_string().contains("shorter than"), "{e}");
            others_fine(&p, which);
        }
    }
}

#[test]
fn tables_running_out_of_memory_are_refused() {
    // The DMAR is the last table: claim it runs past the end of memory.
    let mut img = Image::qemu(2);
    img.tables[2][4..8].copy_from_slice(&0xe000u32.to_le_bytes());
    let m = img.memory();
    let p = discover(&m).unwrap();
    assert_eq!(p.dmar, Err(FirmwareError::OutsideView { table: Table::Dmar, pa: table_at(2), len: 0xe000 }));
    others_fine(&p, 2);
    // A table whose header straddles the end of memory.
    let mut img = Image::qemu(2);
    let mut entries: Vec<u64> = (0..3).map(table_at).collect();
    entries[0] = MEMORY as u64 - 8;
    img.root = root(2, &entries);
    let mut m = img.memory();
    m[MEMORY - 8..].copy_from_slice(b"APIC\xff\0\0\0");
    let p = discover(&m).unwrap();
    assert_eq!(p.cpus, Err(FirmwareError::Missing(Table::Madt)));
    assert_eq!(p.unreadable.count, 1);
}

#[test]
fn oem_ids_the_crate_rejects_are_named() {
    let m = broken(1, |t| t[16] = 0xc3, true);
    let p = discover(&m).unwrap();
    assert_eq!(p.ecam, Err(FirmwareError::NotUtf8 { table: Table::Mcfg, pa: table_at(1), field: "OEM table id" }));
    others_fine(&p, 1);
}

fn madt_with(entry: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]);
    b.extend_from_slice(entry);
    sdt(b"APIC", 1, &b)
}

#[test]
fn madt_entries_that_would_hang_or_overrun_the_crate() {
    let cases: [(&[u8], &str); 6] = [
        (&[0x80, 0], "a zero length would make the walk loop forever"),
        (&[0x01, 1], "length below 2"),
        (&[0x01, 12, 0, 0, 0], "runs past the end"),
        (&[0x00, 6, 0, 0, 0, 0], "shorter than the structure for its type"),
        (&[0x09, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "shorter than the structure for its type"),
        (&[0x04], "cut off"),
    ];
    for (entry, why) in cases {
        let m = Image::with(2, vec![madt_with(entry), qemu_mcfg(), dmar(), qemu_nfit()], &[]).memory();
        let p = discover(&m).unwrap();
        let e = p.cpus.unwrap_err();
        assert!(matches!(e, FirmwareError::MadtEntry { offset: 52, .. }), "{entry:?}: {e:?}");
        assert!(e.to_string().contains(why), "{entry:?}: {e}");
        others_fine(&p, 0);
    }
    // Reserved and OEM types the crate skips need only a sane length.
    let m = Image::with(2, vec![madt_with(&[0x7f, 2, 0x90, 3, 0])], &[]).memory();
    assert_eq!(discover(&m).unwrap().cpus.unwrap().enabled, 1);
}

#[test]
fn a_good_table_after_a_bad_one_is_used_and_a_missing_one_is_named() {
    let mut bad = qemu_madt(1);
    bad[40] ^= 1;
    let m = Image::with(2, vec![bad, qemu_madt(3)], &[]).memory();
    let p = discover(&m).unwrap();
    assert_eq!(p.cpus, Ok(qemu_cpus(3)), "the crate skips the bad copy");
    // A short duplicate after the good table is never reached by the
    // crate, so it costs nothing; before it, the crate would return it.
    let mut short = qemu_madt(1);
    short[4..8].copy_from_slice(&40u32.to_le_bytes());
    fix_checksum(&mut short);
    let m = Image::with(2, vec![qemu_madt(3), short.clone()], &[]).memory();
    assert_eq!(discover(&m).unwrap().cpus, Ok(qemu_cpus(3)));
    let m = Image::with(2, vec![short, qemu_madt(3)], &[]).memory();
    let e = discover(&m).unwrap().cpus.unwrap_err();
    assert!(matches!(e, FirmwareError::BadLength { length: 40, .. }), "{e:?}");
    let m = Image::with(0, vec![], &[]).memory();
    let p = discover(&m).unwrap();
    assert_eq!((p.entries, p.cpus.unwrap_err()), (0, FirmwareError::Missing(Table::Madt)));
}

#[test]
fn nfit_found_absent_and_corrupt() {
    // Found: QEMU's NFIT, after the other tables (checked by `check_qemu`),
    // and also as the only table.
    let m = Image::with(0, vec![qemu_nfit()], &[]).memory();
    let p = discover(&m).unwrap();
    assert_eq!(p.nfit, Ok(&qemu_nfit()[..]));
    assert_eq!(p.cpus, Err(FirmwareError::Missing(Table::Madt)));

    // Absent: a machine without persistent memory boots with everything else.
    let m = Image::with(2, vec![qemu_madt(2), qemu_mcfg(), dmar()], &[]).memory();
    let p = discover(&m).unwrap();
    assert_eq!(p.nfit, Err(FirmwareError::Missing(Table::Nfit)));
    assert_eq!(p.nfit.unwrap_err().to_string(), "no NFIT table");
    others_fine(&p, 3);

    // Corrupt: each named; the other tables unaffected.
    let m = broken(3, |t| t[110] ^= 0x20, false);
    let p = discover(&m).unwrap();
    let e = p.nfit.unwrap_err();
    assert_eq!(e, FirmwareError::BadChecksum { table: Table::Nfit, pa: table_at(3), sum: 0x20 });
    assert_eq!(e.to_string(), format!("NFIT at {:#x}: checksum fails (bytes sum to 0x20, not 0)", table_at(3)));
    others_fine(&p, 3);
    let m = broken(3, |t| t[4..8].copy_from_slice(&0xf000u32.to_le_bytes()), true);
    let e = discover(&m).unwrap().nfit.unwrap_err();
    assert_eq!(e, FirmwareError::OutsideView { table: Table::Nfit, pa: table_at(3), len: 0xf000 });
    let m = broken(3, |t| t[10] = 0xff, true);
    let e = discover(&m).unwrap().nfit.unwrap_err();
    assert_eq!(e, FirmwareError::NotUtf8 { table: Table::Nfit, pa: table_at(3), field: "OEM id" });
    let m = broken(3, |t| t[4..8].copy_from_slice(&38u32.to_le_bytes()), true);
    let e = discover(&m).unwrap().nfit.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("NFIT at {:#x}: length 38 is shorter than the NFIT's 40-byte fixed part", table_at(3))
    );

    // Framing inside the table is the parser's job: a SPA range structure
    // claiming 20 bytes passes the checksum here and is refused, named, by
    // `firmware::nfit`.
    let m = broken(3, |t| t[42] = 20, true);
    let p = discover(&m).unwrap();
    let bytes = p.nfit.expect("header, length and checksum are fine");
    let e = nfit::structures(bytes).unwrap_err();
    assert_eq!(e, nfit::NfitError::BadStructure { offset: 40, kind: 0, len: 20 });
}

#[test]
fn errors_read_well() {
    let e = FirmwareError::BadChecksum { table: Table::Dmar, pa: 0x7fe1_0000, sum: 3 };
    assert_eq!(e.to_string(), "DMAR at 0x7fe10000: checksum fails (bytes sum to 0x03, not 0)");
    let e = FirmwareError::MadtEntry { offset: 0x34, kind: 0, length: 0, why: "length below 2" };
    assert_eq!(e.to_string(), "MADT entry at offset 0x34 (type 0x0, length 0): length below 2");
}

#[test]
fn smp_start_list_skips_the_boot_cpu_and_respects_the_limit() {
    for cpus in [1u8, 2, 4, 9] {
        let m = Image::with(2, vec![qemu_madt(cpus)], &[]).memory();
        let ids = discover(&m).unwrap().apic_ids;
        let all: Vec<u32> = (0..cpus as u32).collect();
        assert_eq!(ids.as_slice(), &all[..]);
        // Started from CPU 0: every other one, in order.
        let (list, parked) = ids.to_start(0, 64);
        assert_eq!(list.as_slice(), &(1..cpus).collect::<Vec<u8>>()[..]);
        assert_eq!(parked, 0);
        // Started from the last CPU (a BSP need not be APIC ID 0).
        let (list, _) = ids.to_start(cpus as u32 - 1, 64);
        assert_eq!(list.as_slice(), &(0..cpus - 1).collect::<Vec<u8>>()[..]);
        // Per-CPU tables for 3 CPUs: the rest stay parked and are counted.
        let (list, parked) = ids.to_start(0, 2);
        assert_eq!(list.as_slice().len(), (cpus as usize - 1).min(2));
        assert_eq!(parked, (cpus as usize - 1).saturating_sub(2));
    }
}

#[test]
fn smp_duplicate_and_disabled_entries_are_not_started_twice() {
    let mut b = Vec::new();
    b.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    // IDs 0 (enabled), 2 (disabled), 3 (enabled, listed twice), 5 (enabled).
    for (id, flags) in [(0u8, 1u32), (2, 0), (3, 1), (3, 1), (5, 1)] {
        b.extend_from_slice(&[0, 8, id, id]);
        b.extend_from_slice(&flags.to_le_bytes());
    }
    let m = Image::with(2, vec![sdt(b"APIC", 1, &b)], &[]).memory();
    let p = discover(&m).unwrap();
    assert_eq!(p.apic_ids.as_slice(), &[0, 3, 5]);
    assert_eq!(p.apic_ids.to_start(0, 64).0.as_slice(), &[3, 5]);
}
