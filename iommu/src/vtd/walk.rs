//! An independent model of the hardware's translation of a DMA request
//! (VT-d spec 3.4 and 3.6, legacy mode), written from the spec rather than
//! from the builder, so tests can check the one against the other. It
//! reports faults with the reason code the hardware would record.

use super::cap::{Cap, Ecap, Levels};
use super::fault::FaultReason;
use super::tables::{entry, level_index, sl, CONTEXT_ENTRY_BYTES, ROOT_ENTRY_BYTES};
use super::{Access, Bdf, PhysMem, Rights};

/// What the modelled unit supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkLimits {
    /// CAP.SAGAW.
    pub sagaw: u8,
    /// Host address width: entry address bits at or above it are reserved.
    pub host_address_width: u8,
    /// CAP.SLLPS: bit 0 = 2 MiB pages, bit 1 = 1 GiB pages.
    pub large_pages: u8,
    /// ECAP.PT: context entries may select pass-through.
    pub pass_through: bool,
    /// ECAP.DT: context entries may allow device-TLB requests (TT = 01).
    pub device_tlb: bool,
    /// ECAP.SC: second-level entries may set SNP.
    pub snoop_control: bool,
}

impl WalkLimits {
    pub fn from_registers(cap: Cap, ecap: Ecap, host_address_width: u8) -> WalkLimits {
        WalkLimits {
            sagaw: cap.sagaw(),
            host_address_width,
            large_pages: cap.second_level_large_pages(),
            pass_through: ecap.pass_through(),
            device_tlb: ecap.device_tlb(),
            snoop_control: ecap.snoop_control(),
        }
    }
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub pa: u64,
    /// Rights over the whole walk (the AND of every level).
    pub rights: Rights,
    pub domain_id: u16,
    /// 4 KiB, 2 MiB or 1 GiB; for pass-through, 4 KiB.
    pub page_size: u64,
}

/// Why the walk stopped, in more detail than the reason code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    RootNotPresent,
    RootReservedBits,
    ContextNotPresent,
    ContextReservedBits,
    UnsupportedAddressWidth {
        aw: u64,
    },
    UnsupportedTranslationType {
        tt: u64,
    },
    AddressBeyondWidth {
        width: u32,
    },
    /// R = W = 0 at this level: nothing mapped.
    NotPresent {
        level: u32,
    },
    /// Present, but without the right the request needs.
    NoPermission {
        level: u32,
        held: Rights,
    },
    PagingEntryReservedBits {
        level: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkFault {
    pub reason: FaultReason,
    pub cause: Cause,
}

fn fault(reason: FaultReason, cause: Cause) -> WalkFault {
    WalkFault { reason, cause }
}

/// Bits of an address field at or above the host address width.
fn above_width(limits: &WalkLimits) -> u64 {
    let haw = limits.host_address_width.min(52) as u32;
    entry::ADDRESS & !((1u64 << haw) - 1)
}

/// Translates one DMA request of `bdf` to `iova` through the structures
/// under the root table at `root_table`.
pub fn translate(
    mem: &impl PhysMem,
    root_table: u64,
    bdf: Bdf,
    iova: u64,
    access: Access,
    limits: &WalkLimits,
) -> Result<Translation, WalkFault> {
    let high_bits = above_width(limits);

    // Root entry: low = P | context-table pointer; high reserved (legacy).
    let root_at = root_table + bdf.bus as u64 * ROOT_ENTRY_BYTES;
    let (root_lo, root_hi) = (mem.read_u64(root_at), mem.read_u64(root_at + 8));
    if root_lo & entry::PRESENT == 0 {
        return Err(fault(FaultReason::RootEntryNotPresent, Cause::RootNotPresent));
    }
    if root_hi != 0 || root_lo & 0xffe != 0 || root_lo & high_bits != 0 || root_lo >> 52 != 0 {
        return Err(fault(FaultReason::RootEntryReserved, Cause::RootReservedBits));
    }

    // Context entry.
    let ctx_at = (root_lo & entry::ADDRESS) + bdf.devfn() as u64 * CONTEXT_ENTRY_BYTES;
    let (ctx_lo, ctx_hi) = (mem.read_u64(ctx_at), mem.read_u64(ctx_at + 8));
    if ctx_lo & entry::PRESENT == 0 {
        return Err(fault(FaultReason::ContextEntryNotPresent, Cause::ContextNotPresent));
    }
    // Low: bits 11:4 reserved; high: bit 7 and bits 63:24 reserved
    // (bits 6:3 are available to software and ignored).
    if ctx_lo & 0xff0 != 0 || ctx_lo & high_bits != 0 || ctx_lo >> 52 != 0 || ctx_hi & 0x80 != 0 || ctx_hi >> 24 != 0 {
        return Err(fault(FaultReason::ContextEntryReserved, Cause::ContextReservedBits));
    }
    let domain_id = (ctx_hi >> entry::CONTEXT_DID_SHIFT) as u16;
    let tt = (ctx_lo >> entry::CONTEXT_TT_SHIFT) & 3;
    match tt {
        0 => {}
        1 if limits.device_tlb => {}
        2 if limits.pass_through => {
            return Ok(Translation { pa: iova, rights: Rights::READ_WRITE, domain_id, page_size: 4096 });
        }
        _ => return Err(fault(FaultReason::InvalidContextEntry, Cause::UnsupportedTranslationType { tt })),
    }
    let aw = ctx_hi & entry::CONTEXT_AW_MASK;
    let levels = match Levels::from_aw_field(aw) {
        Some(l) if limits.sagaw as u64 & (1 << aw) != 0 => l,
        _ => return Err(fault(FaultReason::InvalidContextEntry, Cause::UnsupportedAddressWidth { aw })),
    };
    let width = levels.address_width();
    if iova >> width != 0 {
        return Err(fault(FaultReason::AddressBeyondWidth, Cause::AddressBeyondWidth { width }));
    }

    let denied = match access {
        Access::Read => FaultReason::ReadNotPermitted,
        Access::Write => FaultReason::WriteNotPermitted,
    };
    let mut rights = Rights::READ_WRITE;
    let mut table = ctx_lo & entry::ADDRESS;
    for level in (1..=levels.count()).rev() {
        let e = mem.read_u64(table + level_index(iova, level) * 8);
        let here = Rights { read: e & sl::READ != 0, write: e & sl::WRITE != 0 };
        rights = Rights { read: rights.read && here.read, write: rights.write && here.write };
        // The hardware checks the right before the reserved bits.
        if !here.read && !here.write {
            return Err(fault(denied, Cause::NotPresent { level }));
        }
        if !rights.allows(access) {
            return Err(fault(denied, Cause::NoPermission { level, held: rights }));
        }
        let large = e & sl::PAGE_SIZE != 0;
        let large_ok = match level {
            2 => limits.large_pages & 1 != 0,
            3 => limits.large_pages & 2 != 0,
            _ => false,
        };
        let snoop_reserved = !limits.snoop_control && e & sl::SNOOP != 0;
        if e & high_bits != 0 || snoop_reserved || (large && !large_ok) {
            return Err(fault(FaultReason::PagingEntryReserved, Cause::PagingEntryReservedBits { level }));
        }
        if level == 1 || large {
            let page_size = 1u64 << (12 + 9 * (level - 1));
            let frame = e & sl::ADDRESS;
            // A large page's address must be aligned to its size: the low
            // address bits of such an entry are reserved.
            if frame & (page_size - 1) != 0 {
                return Err(fault(FaultReason::PagingEntryReserved, Cause::PagingEntryReservedBits { level }));
            }
            return Ok(Translation { pa: frame | (iova & (page_size - 1)), rights, domain_id, page_size });
        }
        table = e & sl::ADDRESS;
    }
    // Unreachable: the loop returns at level 1. Kept as a fault, not a panic.
    Err(fault(FaultReason::PagingEntryAccessError, Cause::NotPresent { level: 0 }))
}
