//! MCFG parsing against QEMU q35's table and corruptions of it.

mod common;

use common::Rng;
use iommu::acpi::mcfg::{EcamRegion, Mcfg};
use iommu::acpi::{fix_checksum, Problem};

/// QEMU q35 (hw/i386/acpi-build.c, build_mcfg): one allocation, ECAM at
/// 0xb0000000 (the default PCIEXBAR), segment 0, buses 0..=255.
fn qemu_mcfg() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"MCFG");
    t.extend_from_slice(&60u32.to_le_bytes());
    t.push(1);
    t.push(0);
    t.extend_from_slice(b"BOCHS BXPC    ");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"BXPC");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&[0; 8]);
    t.extend_from_slice(&0xb000_0000u64.to_le_bytes());
    t.extend_from_slice(&0u16.to_le_bytes());
    t.push(0);
    t.push(255);
    t.extend_from_slice(&[0; 4]);
    fix_checksum(&mut t);
    t
}

#[test]
fn qemu_table_parses() {
    let t = qemu_mcfg();
    let mcfg = Mcfg::parse(&t).unwrap();
    let regions: Vec<_> = mcfg.regions().collect();
    assert_eq!(regions, vec![EcamRegion { base: 0xb000_0000, segment: 0, start_bus: 0, end_bus: 255 }]);
    // 00:03.0 -> base + (3 << 15).
    assert_eq!(mcfg.config_address(0, 0, 3, 0), Some(0xb001_8000));
    // 01:00.1 -> base + (1 << 20) + (1 << 12).
    assert_eq!(mcfg.config_address(0, 1, 0, 1), Some(0xb010_1000));
    assert_eq!(mcfg.config_address(1, 0, 0, 0), None, "no segment 1");
    assert_eq!(mcfg.config_address(0, 0, 32, 0), None, "device 32");
    assert_eq!(regions[0].window_len(), 256 << 20);
}

#[test]
fn bus_range_limits_addresses() {
    let r = EcamRegion { base: 0xe000_0000, segment: 0, start_bus: 0x10, end_bus: 0x1f };
    assert_eq!(r.config_address(0x0f, 0, 0), None);
    assert_eq!(r.config_address(0x10, 0, 0), Some(0xe100_0000));
    assert_eq!(r.config_address(0x20, 0, 0), None);
    assert_eq!(r.window_start(), 0xe100_0000);
    assert_eq!(r.window_len(), 16 << 20);
}

#[test]
fn every_truncation_is_an_error() {
    let t = qemu_mcfg();
    for len in 0..t.len() {
        let e = Mcfg::parse(&t[..len]).expect_err("truncated MCFG accepted");
        assert_eq!(e.table, "MCFG");
    }
}

#[test]
fn corruptions_name_the_field() {
    // Allocation area not a multiple of 16.
    let mut t = qemu_mcfg();
    t.truncate(59);
    t[4..8].copy_from_slice(&59u32.to_le_bytes());
    fix_checksum(&mut t);
    let e = Mcfg::parse(&t).unwrap_err();
    assert_eq!((e.offset, e.field, e.problem), (4, "length", Problem::LengthNotMultiple { length: 15, unit: 16 }));
    // No allocations at all is valid (and useless).
    let mut t = qemu_mcfg();
    t.truncate(44);
    t[4..8].copy_from_slice(&44u32.to_le_bytes());
    fix_checksum(&mut t);
    assert_eq!(Mcfg::parse(&t).unwrap().regions().count(), 0);
    // End bus below start bus.
    let mut t = qemu_mcfg();
    t[54] = 5;
    t[55] = 4;
    fix_checksum(&mut t);
    let e = Mcfg::parse(&t).unwrap_err();
    assert_eq!((e.offset, e.field), (55, "allocation.end_bus"));
    // Unaligned base.
    let mut t = qemu_mcfg();
    t[44] = 0x10;
    fix_checksum(&mut t);
    assert_eq!(Mcfg::parse(&t).unwrap_err().field, "allocation.base");
    // Window wrapping past 2^64.
    let mut t = qemu_mcfg();
    t[44..52].copy_from_slice(&0xffff_ffff_fff0_0000u64.to_le_bytes());
    fix_checksum(&mut t);
    assert_eq!(Mcfg::parse(&t).unwrap_err().field, "allocation.base");
    // Wrong signature.
    let mut t = qemu_mcfg();
    t[..4].copy_from_slice(b"DMAR");
    assert!(matches!(Mcfg::parse(&t).unwrap_err().problem, Problem::WrongSignature { .. }));
}

#[test]
fn random_bit_flips_never_panic() {
    let mut rng = Rng(7);
    let original = qemu_mcfg();
    let (mut ok, mut err) = (0, 0);
    for round in 0..10_000 {
        let mut t = original.clone();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(t.len() as u64) as usize;
            t[i] ^= 1 << rng.below(8);
        }
        if round % 2 == 0 {
            fix_checksum(&mut t);
        }
        match Mcfg::parse(&t) {
            Ok(m) => {
                for r in m.regions() {
                    assert!(r.start_bus <= r.end_bus);
                    let _ = r.config_address(r.end_bus, 31, 7);
                }
                ok += 1;
            }
            Err(e) => {
                let _ = e.to_string();
                err += 1;
            }
        }
    }
    assert!(ok > 100 && err > 100, "ok {ok}, err {err}");
}
