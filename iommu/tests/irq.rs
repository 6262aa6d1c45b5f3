//! Interrupt remapping entries and the remapping model, by hand from the
//! VT-d specification (9.10 IRTE format, 5.1.2 remappable MSI format).

mod common;

use common::EmulatedMemory;
use iommu::vtd::fault::FaultReason;
use iommu::vtd::irq::*;
use iommu::vtd::Bdf;

const NVME: Bdf = Bdf { bus: 0, device: 3, function: 0 };
const TABLE: u64 = 0x40_0000;

#[test]
fn irte_layout() {
    // Vector 0x30 to APIC 2, xAPIC: DST[15:8] = 2 -> bits 47:40.
    let e = Irte { vector: 0x30, destination: 2, x2apic: false, source: SourceCheck::Requester(NVME) };
    assert_eq!(e.encode(), [0x0000_0200_0030_0001, 0x0004_0018]);
    let x2 = Irte { vector: 0x31, destination: 0x1234, x2apic: true, source: SourceCheck::None };
    assert_eq!(x2.encode(), [0x0000_1234_0031_0001, 0]);
    let range =
        Irte { vector: 0x32, destination: 0, x2apic: false, source: SourceCheck::BusRange { first: 2, last: 4 } };
    assert_eq!(range.encode()[1], 0x0008_0204);
    // 256 entries (S = 7), xAPIC.
    assert_eq!(irta_value(TABLE, 7, false), 0x40_0007);
    assert_eq!(irta_value(TABLE, 7, true), 0x40_0807);
    // Handle 5: 0xFEE000A0 | interrupt format bit 4.
    assert_eq!(remappable_msi(5), (0xfee0_00b0, 0));
    // Handle 0x8001: bit 15 goes to address bit 2.
    assert_eq!(remappable_msi(0x8001), (0xfee0_0034, 0));
}

#[test]
fn remapping_model_delivers_only_what_was_granted() {
    let mut mem = EmulatedMemory::default();
    for i in 0..256 {
        clear_irte(&mut mem, TABLE, i);
    }
    let irta = irta_value(TABLE, 7, false);
    Irte { vector: 0x30, destination: 2, x2apic: false, source: SourceCheck::Requester(NVME) }
        .write(&mut mem, TABLE, 5);
    let (addr, data) = remappable_msi(5);
    assert_eq!(remap_msi(&mem, irta, NVME, addr, data, false), Ok(Delivered { vector: 0x30, destination: 2 }));
    // Another device using the NVMe's handle: source-id check fails.
    let other = Bdf { bus: 0, device: 4, function: 0 };
    assert_eq!(remap_msi(&mem, irta, other, addr, data, false), Err(FaultReason::InterruptRemapping(0x26)));
    // A handle with no entry, and one past the table.
    let (a6, _) = remappable_msi(6);
    assert_eq!(remap_msi(&mem, irta, NVME, a6, 0, false), Err(FaultReason::InterruptRemapping(0x22)));
    let (a300, _) = remappable_msi(300);
    assert_eq!(remap_msi(&mem, irta, NVME, a300, 0, false), Err(FaultReason::InterruptRemapping(0x21)));
    // A compatibility-format MSI (what a driver could write itself) is
    // blocked unless CFIS allows it.
    assert_eq!(remap_msi(&mem, irta, NVME, 0xfee0_1000, 0x40, false), Err(FaultReason::InterruptRemapping(0x25)));
    assert_eq!(remap_msi(&mem, irta, NVME, 0xfee0_1000, 0x40, true), Ok(Delivered { vector: 0x40, destination: 1 }));
    // Reserved bits in the entry.
    mem_or(&mut mem, TABLE + 5 * 16, 1 << 13);
    assert_eq!(remap_msi(&mem, irta, NVME, addr, data, false), Err(FaultReason::InterruptRemapping(0x24)));
    // Cleared entry: not present.
    clear_irte(&mut mem, TABLE, 5);
    assert_eq!(remap_msi(&mem, irta, NVME, addr, data, false), Err(FaultReason::InterruptRemapping(0x22)));
    // Bus-range verification.
    let bridge_side = Bdf { bus: 3, device: 0, function: 0 };
    Irte { vector: 0x33, destination: 0, x2apic: false, source: SourceCheck::BusRange { first: 2, last: 4 } }
        .write(&mut mem, TABLE, 9);
    let (a9, _) = remappable_msi(9);
    assert_eq!(remap_msi(&mem, irta, bridge_side, a9, 0, false).map(|d| d.vector), Ok(0x33));
    assert_eq!(remap_msi(&mem, irta, NVME, a9, 0, false), Err(FaultReason::InterruptRemapping(0x26)));
    assert_eq!(FaultReason::InterruptRemapping(0x26).description(), "interrupt source id check failed");
}

fn mem_or(mem: &mut EmulatedMemory, pa: u64, bits: u64) {
    use iommu::vtd::PhysMem;
    let v = mem.read_u64(pa);
    mem.write_u64(pa, v | bits);
}
