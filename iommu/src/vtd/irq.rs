//! Interrupt remapping (VT-d spec chapter 5 and 9.10): the interrupt
//! remapping table entry (IRTE), the remappable-format MSI address/data a
//! device is programmed with, the IRTA register value, and a model of the
//! hardware's remapping with its fault reasons.
//!
//! With remapping on, a device can only raise the interrupts whose table
//! entries the kernel wrote for it (source-id checked), which is what
//! makes handing MSI-X tables to a userspace driver safe.

use super::fault::FaultReason;
use super::{Bdf, PhysMem, PAGE_SIZE};

/// Source-id verification of an IRTE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceCheck {
    None,
    /// Only this requester (SVT = 01, SQ = 00: all 16 bits compared).
    Requester(Bdf),
    /// Any requester whose bus lies in `first..=last` (SVT = 10), for
    /// devices behind a PCIe-to-PCI bridge.
    BusRange {
        first: u8,
        last: u8,
    },
}

/// A remapped (not posted) interrupt: fixed delivery, edge triggered,
/// physical destination mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irte {
    pub vector: u8,
    /// Destination APIC id (xAPIC: 8 bits, placed in DST bits 15:8;
    /// x2APIC: all 32 bits).
    pub destination: u32,
    pub x2apic: bool,
    pub source: SourceCheck,
}

pub const IRTE_BYTES: u64 = 16;

impl Irte {
    /// The entry's two quadwords (low, high), P set.
    pub const fn encode(&self) -> [u64; 2] {
        let dst = if self.x2apic { self.destination as u64 } else { ((self.destination & 0xff) as u64) << 8 };
        // P | DM=0 | RH=0 | TM=0 (edge) | DLM=000 (fixed) | IM=0 | V | DST
        let lo = 1 | (self.vector as u64) << 16 | dst << 32;
        let hi = match self.source {
            SourceCheck::None => 0,
            SourceCheck::Requester(bdf) => 1 << 18 | bdf.source_id() as u64,
            SourceCheck::BusRange { first, last } => 2 << 18 | (first as u64) << 8 | last as u64,
        };
        [lo, hi]
    }

    /// Writes the entry at `index` of the table at `table`: high quadword
    /// first, then the low one carrying P. The caller then invalidates the
    /// interrupt entry cache for the index.
    pub fn write(&self, mem: &mut impl PhysMem, table: u64, index: u16) {
        let [lo, hi] = self.encode();
        let at = table + index as u64 * IRTE_BYTES;
        mem.write_u64(at + 8, hi);
        mem.write_u64(at, lo);
    }
}

/// Clears entry `index` (P = 0): its interrupts now fault.
pub fn clear_irte(mem: &mut impl PhysMem, table: u64, index: u16) {
    let at = table + index as u64 * IRTE_BYTES;
    mem.write_u64(at, 0);
    mem.write_u64(at + 8, 0);
}

/// IRTA value for a table of 2^(`size_log2` + 1) entries at `table`
/// (4 KiB aligned), xAPIC or x2APIC (EIME) destinations.
pub const fn irta_value(table: u64, size_log2: u8, x2apic: bool) -> u64 {
    (table & !(PAGE_SIZE - 1)) | (x2apic as u64) << 11 | (size_log2 & 0xf) as u64
}

/// The MSI address and data to program into a device so its interrupt
/// goes through IRTE `handle` (remappable format, no sub-handle).
pub const fn remappable_msi(handle: u16) -> (u32, u32) {
    let h = handle as u32;
    // 0xFEE | handle[14:0] << 5 | interrupt format (bit 4) | SHV = 0 | handle[15] << 2
    (0xfee0_0000 | (h & 0x7fff) << 5 | 1 << 4 | (h >> 15) << 2, 0)
}

/// A delivered interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub vector: u8,
    pub destination: u32,
}

/// Models how the unit treats an MSI write of (`address`, `data`) from
/// `source` with remapping enabled on the table described by `irta`.
/// `compatibility_allowed` is GSTS.CFIS.
pub fn remap_msi(
    mem: &impl PhysMem,
    irta: u64,
    source: Bdf,
    address: u32,
    data: u32,
    compatibility_allowed: bool,
) -> Result<Delivered, FaultReason> {
    if address & (1 << 4) == 0 {
        // Compatibility format: passes through only if CFIS allows it.
        if compatibility_allowed {
            return Ok(Delivered { vector: data as u8, destination: (address >> 12) & 0xff });
        }
        return Err(FaultReason::InterruptRemapping(0x25));
    }
    let mut handle = ((address >> 5) & 0x7fff) | ((address >> 2) & 1) << 15;
    if address & (1 << 3) != 0 {
        // SHV: the data's low 16 bits are a sub-handle added to the handle.
        handle = handle.wrapping_add(data & 0xffff) & 0xffff;
    }
    let entries = 2u32 << (irta & 0xf);
    if handle >= entries {
        return Err(FaultReason::InterruptRemapping(0x21));
    }
    let table = irta & !(PAGE_SIZE - 1);
    let at = table + handle as u64 * IRTE_BYTES;
    let (lo, hi) = (mem.read_u64(at), mem.read_u64(at + 8));
    if lo & 1 == 0 {
        return Err(FaultReason::InterruptRemapping(0x22));
    }
    // Reserved: low bits 14:12 and 31:24 (IM = 0), high bits 63:20.
    let x2apic = irta & (1 << 11) != 0;
    let dst_reserved = if x2apic { 0 } else { 0xffff_00ff_0000_0000 };
    if lo & 0x0000_0000_ff00_7000 != 0 || lo & dst_reserved != 0 || hi >> 20 != 0 {
        return Err(FaultReason::InterruptRemapping(0x24));
    }
    let sid = source.source_id();
    let ok = match (hi >> 18) & 3 {
        0 => true,
        1 => {
            // SQ selects which function bits are ignored; 00 compares all.
            let mask: u16 = match (hi >> 16) & 3 {
                0 => 0xffff,
                1 => 0xfffb,
                2 => 0xfff9,
                _ => 0xfff8,
            };
            sid & mask == (hi as u16) & mask
        }
        2 => {
            let (first, last) = (((hi >> 8) & 0xff) as u8, (hi & 0xff) as u8);
            (first..=last).contains(&source.bus)
        }
        _ => return Err(FaultReason::InterruptRemapping(0x24)),
    };
    if !ok {
        return Err(FaultReason::InterruptRemapping(0x26));
    }
    let destination = if x2apic { (lo >> 32) as u32 } else { ((lo >> 40) & 0xff) as u32 };
    Ok(Delivered { vector: (lo >> 16) as u8, destination })
}
