//! MADT parsing against a table shaped like QEMU q35's and corruptions of it.

mod common;

use common::Rng;
use iommu::acpi::madt::{Controller, Madt};
use iommu::acpi::{fix_checksum, Problem};

/// QEMU q35 with one CPU (hw/i386/acpi-common.c, acpi_build_madt): local
/// APIC at 0xfee00000, PC-AT flag, one local APIC, one I/O APIC at
/// 0xfec00000, interrupt overrides for IRQ 0 and the PCI IRQs, and a local
/// APIC NMI structure (type 4, skipped as "other").
fn qemu_madt(cpus: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"APIC");
    t.extend_from_slice(&0u32.to_le_bytes()); // length, patched below
    t.push(1);
    t.push(0);
    t.extend_from_slice(b"BOCHS BXPC    ");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"BXPC");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    for id in 0..cpus {
        t.extend_from_slice(&[0, 8, id, id]);
        t.extend_from_slice(&1u32.to_le_bytes());
    }
    t.extend_from_slice(&[1, 12, 0, 0]);
    t.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    for (irq, gsi, flags) in [(0u8, 2u32, 0u16), (5, 5, 0xd), (9, 9, 0xd), (10, 10, 0xd), (11, 11, 0xd)] {
        t.extend_from_slice(&[2, 10, 0, irq]);
        t.extend_from_slice(&gsi.to_le_bytes());
        t.extend_from_slice(&flags.to_le_bytes());
    }
    t.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(&mut t);
    t
}

#[test]
fn qemu_table_parses() {
    let t = qemu_madt(2);
    let madt = Madt::parse(&t).unwrap();
    assert_eq!(madt.local_apic_address, 0xfee0_0000);
    assert_eq!(madt.flags & 1, 1);
    assert_eq!(madt.enabled_cpus().collect::<Vec<_>>(), vec![0, 1]);
    let all: Vec<_> = madt.controllers().collect();
    assert_eq!(all.len(), 2 + 1 + 5 + 1);
    assert_eq!(all[2], Controller::IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 });
    assert_eq!(all[3], Controller::InterruptOverride { source: 0, gsi: 2, flags: 0 });
    assert_eq!(all[8], Controller::Other { kind: 4, length: 6 });
}

#[test]
fn disabled_cpus_and_x2apic_entries() {
    let mut t = qemu_madt(1);
    // A disabled local APIC and an enabled x2APIC appended.
    t.extend_from_slice(&[0, 8, 1, 7]);
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&[9, 16, 0, 0]);
    t.extend_from_slice(&300u32.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&5u32.to_le_bytes());
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(&mut t);
    let madt = Madt::parse(&t).unwrap();
    assert_eq!(madt.enabled_cpus().collect::<Vec<_>>(), vec![0, 300]);
}

#[test]
fn every_truncation_is_an_error() {
    let t = qemu_madt(2);
    for len in 0..t.len() {
        assert!(Madt::parse(&t[..len]).is_err(), "truncated MADT ({len} bytes) accepted");
    }
}

#[test]
fn bad_structure_lengths_name_the_offset() {
    let t = qemu_madt(1);
    let first = 44; // header (36) + address + flags
    for (bad, expect_small) in [(0u8, true), (1, true), (7, true), (200, false)] {
        let mut u = t.clone();
        u[first + 1] = bad;
        fix_checksum(&mut u);
        let e = Madt::parse(&u).expect_err("bad structure length accepted");
        assert_eq!(e.table, "MADT");
        assert_eq!(e.offset, first + 1, "{e}");
        match e.problem {
            Problem::LengthTooSmall { .. } => assert!(expect_small, "{e}"),
            Problem::LengthOverrun { .. } => assert!(!expect_small, "{e}"),
            _ => panic!("unexpected problem: {e}"),
        }
    }
}

#[test]
fn random_corruption_never_panics() {
    let t = qemu_madt(4);
    let mut rng = Rng(0x5eed_4ad7);
    let (mut ok, mut refused) = (0, 0);
    for round in 0..20_000 {
        let mut u = t.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(u.len() as u64) as usize;
            u[i] ^= 1 << rng.below(8);
        }
        if round % 2 == 0 {
            fix_checksum(&mut u);
        }
        match Madt::parse(&u) {
            Ok(m) => {
                ok += 1;
                // Walking an accepted table must stay in bounds.
                let n = m.controllers().count();
                assert!(n <= u.len() / 2);
                let _ = m.enabled_cpus().count();
            }
            Err(e) => {
                refused += 1;
                let _ = e.to_string();
            }
        }
    }
    println!("MADT corruption: {ok} accepted, {refused} refused");
    assert!(ok > 0 && refused > 0);
}
