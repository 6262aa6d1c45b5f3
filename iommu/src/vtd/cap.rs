//! Capability (CAP, offset 0x08) and extended capability (ECAP, 0x10)
//! register decoding (VT-d spec 11.4.2 and 11.4.3).

const fn bits(v: u64, lo: u32, width: u32) -> u64 {
    (v >> lo) & ((1u64 << width) - 1)
}

/// Page-table depth of a second-level table, as selected by the context
/// entry's AW field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Levels {
    /// 39-bit input addresses, AW = 001.
    Three,
    /// 48-bit input addresses, AW = 010.
    Four,
}

impl Levels {
    pub const fn count(self) -> u32 {
        match self {
            Levels::Three => 3,
            Levels::Four => 4,
        }
    }
    /// Adjusted guest address width in bits.
    pub const fn address_width(self) -> u32 {
        12 + 9 * self.count()
    }
    /// The context entry's AW encoding.
    pub const fn aw_field(self) -> u64 {
        match self {
            Levels::Three => 1,
            Levels::Four => 2,
        }
    }
    pub const fn from_aw_field(aw: u64) -> Option<Levels> {
        match aw {
            1 => Some(Levels::Three),
            2 => Some(Levels::Four),
            _ => None,
        }
    }
    /// The SAGAW bit that must be set for the unit to accept this depth.
    const fn sagaw_bit(self) -> u64 {
        match self {
            Levels::Three => 1 << 1,
            Levels::Four => 1 << 2,
        }
    }
}

/// The capability register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// Number of domain ids supported: 2^(4 + 2 * ND).
    pub const fn domain_count(self) -> u32 {
        1 << (4 + 2 * bits(self.0, 0, 3) as u32)
    }
    pub const fn advanced_fault_logging(self) -> bool {
        bits(self.0, 3, 1) != 0
    }
    /// Software must flush the write buffer (GCMD.WBF) after table updates.
    pub const fn required_write_buffer_flushing(self) -> bool {
        bits(self.0, 4, 1) != 0
    }
    pub const fn protected_low_memory_region(self) -> bool {
        bits(self.0, 5, 1) != 0
    }
    pub const fn protected_high_memory_region(self) -> bool {
        bits(self.0, 6, 1) != 0
    }
    /// Caching mode: the unit may cache not-present and faulting entries,
    /// so software must invalidate after *every* table change, including
    /// not-present -> present (this is how QEMU's `caching-mode=on` lets a
    /// hypervisor shadow the tables). Domain id 0 is then reserved.
    pub const fn caching_mode(self) -> bool {
        bits(self.0, 7, 1) != 0
    }
    /// Supported adjusted guest address widths: bit 1 = 39-bit (3-level),
    /// bit 2 = 48-bit (4-level), bit 3 = 57-bit (5-level).
    pub const fn sagaw(self) -> u8 {
        bits(self.0, 8, 5) as u8
    }
    pub const fn supports(self, levels: Levels) -> bool {
        self.sagaw() as u64 & levels.sagaw_bit() != 0
    }
    /// The smallest supported depth that covers `iova_bits` of address,
    /// so tables stay shallow (fewer frames, shorter walks).
    pub fn levels_for(self, iova_bits: u32) -> Option<Levels> {
        [Levels::Three, Levels::Four].into_iter().find(|l| self.supports(*l) && l.address_width() >= iova_bits)
    }
    /// Maximum guest address width in bits (the field holds width - 1).
    pub const fn max_guest_address_width(self) -> u32 {
        bits(self.0, 16, 6) as u32 + 1
    }
    pub const fn zero_length_read(self) -> bool {
        bits(self.0, 22, 1) != 0
    }
    /// Byte offset of the first fault recording register from the register
    /// base (the field counts 16-byte units).
    pub const fn fault_recording_offset(self) -> u64 {
        bits(self.0, 24, 10) * 16
    }
    /// Second-level large page support: bit 0 = 2 MiB, bit 1 = 1 GiB.
    pub const fn second_level_large_pages(self) -> u8 {
        bits(self.0, 34, 4) as u8
    }
    pub const fn page_selective_invalidation(self) -> bool {
        bits(self.0, 39, 1) != 0
    }
    /// Number of fault recording registers (the field holds count - 1).
    pub const fn fault_recording_count(self) -> u32 {
        bits(self.0, 40, 8) as u32 + 1
    }
    /// Largest address mask for page-selective invalidation (2^MAMV pages).
    pub const fn max_address_mask(self) -> u8 {
        bits(self.0, 48, 6) as u8
    }
    pub const fn write_draining(self) -> bool {
        bits(self.0, 54, 1) != 0
    }
    pub const fn read_draining(self) -> bool {
        bits(self.0, 55, 1) != 0
    }
    pub const fn posted_interrupts(self) -> bool {
        bits(self.0, 59, 1) != 0
    }
    /// Byte offset of fault recording register `i` (each is 16 bytes).
    pub const fn fault_record_offset(self, i: u32) -> u64 {
        self.fault_recording_offset() + 16 * i as u64
    }
    /// Whether `domain_id` may be used in a context entry.
    pub const fn domain_id_usable(self, domain_id: u16) -> bool {
        (domain_id as u32) < self.domain_count() && !(self.caching_mode() && domain_id == 0)
    }
}

/// The extended capability register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ecap(pub u64);

impl Ecap {
    /// Page-walk coherency: the unit snoops table reads, no clflush needed.
    pub const fn coherent(self) -> bool {
        bits(self.0, 0, 1) != 0
    }
    pub const fn queued_invalidation(self) -> bool {
        bits(self.0, 1, 1) != 0
    }
    pub const fn device_tlb(self) -> bool {
        bits(self.0, 2, 1) != 0
    }
    pub const fn interrupt_remapping(self) -> bool {
        bits(self.0, 3, 1) != 0
    }
    pub const fn extended_interrupt_mode(self) -> bool {
        bits(self.0, 4, 1) != 0
    }
    pub const fn pass_through(self) -> bool {
        bits(self.0, 6, 1) != 0
    }
    pub const fn snoop_control(self) -> bool {
        bits(self.0, 7, 1) != 0
    }
    /// Byte offset of the IOTLB register block (IVA at +0, IOTLB at +8)
    /// from the register base; the field counts 16-byte units.
    pub const fn iotlb_register_offset(self) -> u64 {
        bits(self.0, 8, 10) * 16
    }
    pub const fn max_handle_mask(self) -> u8 {
        bits(self.0, 20, 4) as u8
    }
    pub const fn scalable_mode(self) -> bool {
        bits(self.0, 43, 1) != 0
    }
}
