//! Corrupt images: every truncation, tens of thousands of random
//! corruptions, random MADT bodies. Every case runs on a worker thread
//! under a time bound (`run_bounded`): a panic or a hang fails the test and
//! names the case. Beyond "no panic, no hang", a corruption confined to one
//! table must never change what is read from the others.

mod common;

use common::*;
use firmware::{Cpus, EcamRegion, FirmwareError, PhysView, Platform};
use testrng::Rng;

const TABLES: usize = 4; // MADT, MCFG, DMAR, NFIT, as Image::qemu lays them out

fn discover(memory: &[u8]) -> Result<Platform<'_>, FirmwareError> {
    Platform::discover(PhysView::from_slice(memory), RSDP_AT)
}

/// Checks the tables that were left alone read as in the intact image (a
/// corrupt RSDP or root table may lose any of them: pass all four), and
/// that DMAR and NFIT bytes, when returned, survive the project's parsers.
fn others_intact(p: &Platform<'_>, touched: &[usize]) {
    if !touched.contains(&0) {
        assert_eq!(p.cpus, Ok(Cpus { enabled: 2, listed: 2, local_apic_address: 0xfee0_0000, has_8259: true }));
    }
    if !touched.contains(&1) {
        let ecam = p.ecam.expect("MCFG untouched");
        assert_eq!(ecam.as_slice(), &[EcamRegion { base: 0xb000_0000, segment: 0, start_bus: 0, end_bus: 255 }]);
    }
    if !touched.contains(&2) {
        assert_eq!(p.dmar, Ok(&dmar()[..]));
    }
    if !touched.contains(&3) {
        assert_eq!(p.nfit, Ok(&qemu_nfit()[..]));
    }
    if let Ok(bytes) = p.dmar {
        // Either verdict is fine; a panic is not.
        let _ = iommu::acpi::dmar::Dmar::parse(bytes);
    }
    if let Ok(bytes) = p.nfit {
        let _ = firmware::nfit::structures(bytes).map(|s| s.count());
    }
    // Every error renders.
    for e in [p.cpus.err(), p.ecam.err(), p.dmar.err(), p.nfit.err()].into_iter().flatten() {
        assert!(!e.to_string().is_empty());
    }
}

/// Cases: (table, declared length, repaired checksum?) for lengths 0 to
/// 16 past the real one.
fn truncation_case(i: usize) -> (usize, u32, bool) {
    let per_table = 2 * 0x120;
    let table = i / per_table;
    let length = ((i % per_table) / 2) as u32;
    (table, length, i.is_multiple_of(2))
}

#[test]
fn every_declared_length_of_every_table() {
    run_bounded("truncation", TABLES * 2 * 0x120, |i| {
        let (table, length, fix) = truncation_case(i);
        let mut img = Image::qemu(2);
        img.tables[table][4..8].copy_from_slice(&length.to_le_bytes());
        if fix {
            fix_checksum(&mut img.tables[table]);
        }
        let m = img.memory();
        let p = discover(&m).expect("the RSDP and root are intact");
        others_intact(&p, &[table]);
        let real = Image::qemu(2).tables[table].len() as u32;
        let verdict = [p.cpus.err(), p.ecam.err(), p.dmar.err(), p.nfit.err()][table];
        if length == real {
            assert_eq!(verdict, None, "the real length with a repaired checksum is the intact table");
        }
        if !fix && length != real {
            assert!(verdict.is_some(), "case {i}: a wrong length without a repaired checksum is caught");
        }
    });
}

#[test]
fn every_truncation_in_memory() {
    // The table's bytes end early (zeros after), its header unchanged; and
    // the root table and RSDP cut the same way.
    run_bounded("cut", 0x120 * (TABLES + 2), |i| {
        let (which, keep) = (i / 0x120, i % 0x120);
        let mut img = Image::qemu(2);
        let target = match which {
            0..=3 => &mut img.tables[which],
            4 => &mut img.root,
            _ => &mut img.rsdp,
        };
        if keep < target.len() {
            target.truncate(keep);
        }
        let m = img.memory();
        match discover(&m) {
            Ok(p) => others_intact(&p, if which < TABLES { std::slice::from_ref(&which) } else { &[0, 1, 2, 3] }),
            Err(e) => {
                assert!(which >= TABLES, "case {i}: only a cut RSDP or root fails discovery: {e}");
            }
        }
    });
}

/// One random corruption of the image: a few bytes of one structure set at
/// random (often in the header and length fields), checksums repaired half
/// of the time so the corruption reaches past them.
fn random_case(i: usize) {
    let mut rng = Rng::new(i as u64 + 1);
    let mut img = Image::qemu(if i.is_multiple_of(3) { 0 } else { 2 });
    let which = rng.below(TABLES as u64 + 2) as usize;
    let fix = rng.below(2) == 0;
    let target = match which {
        0..=3 => &mut img.tables[which],
        4 => &mut img.root,
        _ => &mut img.rsdp,
    };
    let flips = 1 + rng.below(6);
    for _ in 0..flips {
        let span = if rng.below(2) == 0 { 48.min(target.len()) } else { target.len() };
        let at = rng.below(span as u64) as usize;
        target[at] = match rng.below(4) {
            0 => target[at] ^ (1 << rng.below(8)),
            1 => 0,
            2 => 0xff,
            _ => rng.next_u64() as u8,
        };
    }
    if fix {
        if which == 5 {
            fix_rsdp(target);
        } else {
            fix_checksum(target);
        }
    }
    let m = img.memory();
    match discover(&m) {
        Ok(p) => others_intact(&p, if which < TABLES { std::slice::from_ref(&which) } else { &[0, 1, 2, 3] }),
        Err(e) => {
            assert!(which >= TABLES, "case {i}: a corrupt table must not fail discovery: {e}");
        }
    }
}

#[test]
fn twenty_thousand_random_corruptions() {
    run_bounded("random", 20_000, random_case);
}

/// Root entries set to random addresses: in memory, at its edge, far away.
#[test]
fn ten_thousand_random_root_entries() {
    run_bounded("entries", 10_000, |i| {
        let mut rng = Rng::new(0x5eed_0000 + i as u64);
        let mut entries: Vec<u64> = (0..TABLES).map(table_at).collect();
        for _ in 0..1 + rng.below(4) {
            let e = match rng.below(4) {
                0 => rng.below(MEMORY as u64),
                1 => MEMORY as u64 - rng.below(64),
                2 => rng.next_u64(),
                _ => table_at(rng.below(TABLES as u64) as usize) + rng.below(64),
            };
            entries.insert(rng.below(entries.len() as u64 + 1) as usize, e);
        }
        let mut img = Image::qemu(2);
        img.root = root(2, &entries);
        let m = img.memory();
        let p = discover(&m).expect("the root is well-formed");
        assert_eq!(p.entries, entries.len());
        // A stray entry that lands on bytes reading "APIC", "MCFG", "DMAR"
        // or "NFIT" is a (bogus) table of that kind and may displace the
        // real one; any other stray entry must change nothing.
        let real: Vec<u64> = (0..TABLES).map(table_at).collect();
        let impostor = entries.iter().any(|&e| {
            !real.contains(&e)
                && e.checked_add(36).is_some_and(|end| end <= MEMORY as u64)
                && [&b"APIC"[..], b"MCFG", b"DMAR", b"NFIT"].contains(&&m[e as usize..e as usize + 4])
        });
        if !impostor {
            others_intact(&p, &[]);
        }
    });
}

/// MADTs with random entry streams (random types and lengths, checksum
/// always right, so only the entry framing stands between them and the
/// crate's walker).
#[test]
fn ten_thousand_random_madt_bodies() {
    run_bounded("madt bodies", 10_000, |i| {
        let mut rng = Rng::new(0xadd_0000 + i as u64);
        let mut body = Vec::new();
        body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        let mut enabled = 0;
        let mut well_formed = true;
        for _ in 0..rng.below(12) {
            match rng.below(3) {
                0 => {
                    let flags = rng.below(2) as u8;
                    enabled += flags as u32;
                    body.extend_from_slice(&[0, 8, 0, 0, flags, 0, 0, 0]);
                }
                1 => {
                    let len = rng.below(20) as u8;
                    let kind = rng.below(0x12) as u8;
                    body.push(kind);
                    body.push(len);
                    for _ in 0..len.saturating_sub(2) {
                        body.push(rng.next_u64() as u8);
                    }
                    well_formed = false;
                }
                _ => {
                    body.push(rng.next_u64() as u8);
                    well_formed = false;
                }
            }
        }
        let m = Image::with(2, vec![sdt(b"APIC", 1, &body), qemu_mcfg(), dmar(), qemu_nfit()], &[]).memory();
        let p = discover(&m).unwrap();
        if well_formed {
            assert_eq!(p.cpus.map(|c| c.enabled), Ok(enabled));
        }
        others_intact(&p, &[0]);
    });
}

/// Why the prechecks exist: handed the same short MADT directly, the acpi
/// crate (5.2.0) underflows `length - 44` and panics (in release builds it
/// would walk ~4 GiB of memory instead). If a new version of the crate
/// stops doing that, this test says so.
#[test]
fn the_crate_alone_panics_on_a_short_madt() {
    let mut madt = qemu_madt(1);
    madt.truncate(40);
    madt[4..8].copy_from_slice(&40u32.to_le_bytes());
    fix_checksum(&mut madt);
    let m = Image::with(2, vec![madt], &[]).memory();
    let p = discover(&m).unwrap();
    assert!(matches!(p.cpus, Err(FirmwareError::BadLength { length: 40, .. })));
    let crashed = std::panic::catch_unwind(|| {
        let view = PhysView::from_slice(&m);
        // SAFETY: (a test) the RSDP and XSDT are well-formed and in the
        // view; the view's handler keeps every mapping inside `m`.
        let tables = unsafe { acpi::AcpiTables::from_rsdp(view, RSDP_AT as usize) }.unwrap();
        let madt = tables.find_table::<acpi::madt::Madt>().unwrap();
        madt.get().entries().count()
    });
    assert!(crashed.is_err(), "acpi 5.2.0 no longer panics on a 40-byte MADT: revisit precheck");
}
