//! Register offsets and single-register encodings (VT-d spec chapter 11).

/// Offsets from the unit's register base (DRHD.register_base).
pub mod offset {
    pub const VER: u64 = 0x00;
    pub const CAP: u64 = 0x08;
    pub const ECAP: u64 = 0x10;
    pub const GCMD: u64 = 0x18;
    pub const GSTS: u64 = 0x1c;
    pub const RTADDR: u64 = 0x20;
    pub const CCMD: u64 = 0x28;
    pub const FSTS: u64 = 0x34;
    pub const FECTL: u64 = 0x38;
    pub const FEDATA: u64 = 0x3c;
    pub const FEADDR: u64 = 0x40;
    pub const FEUADDR: u64 = 0x44;
    pub const IQH: u64 = 0x80;
    pub const IQT: u64 = 0x88;
    pub const IQA: u64 = 0x90;
    pub const ICS: u64 = 0x9c;
    pub const IRTA: u64 = 0xb8;
}

/// Global command / global status bits (same positions in both registers).
pub mod gcmd {
    pub const TE: u32 = 1 << 31;
    pub const SRTP: u32 = 1 << 30;
    pub const SFL: u32 = 1 << 29;
    pub const EAFL: u32 = 1 << 28;
    pub const WBF: u32 = 1 << 27;
    pub const QIE: u32 = 1 << 26;
    pub const IRE: u32 = 1 << 25;
    pub const SIRTP: u32 = 1 << 24;
    pub const CFI: u32 = 1 << 23;
    /// Bits that are one-shot commands: they read back as 0 in GSTS
    /// terms and must not be re-written when toggling a persistent bit.
    pub const ONE_SHOT: u32 = SRTP | SFL | WBF | SIRTP;
    /// Persistent enables the status register mirrors.
    pub const PERSISTENT: u32 = TE | EAFL | QIE | IRE | CFI;
}

/// The value to write to GCMD to change one command bit, given the current
/// GSTS. GCMD is write-only; software must carry the other persistent
/// enables over from GSTS or it would switch them off (spec 11.4.4).
pub const fn gcmd_value(gsts: u32, command: u32, set: bool) -> u32 {
    let keep = gsts & gcmd::PERSISTENT;
    if set {
        keep | command
    } else {
        keep & !command
    }
}

/// RTADDR value for a root table at `pa` in legacy mode (TTM = 00).
pub const fn rtaddr_legacy(root_table_pa: u64) -> u64 {
    root_table_pa & !0xfff
}

/// Fault status register bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultStatus(pub u32);

impl FaultStatus {
    /// Primary fault overflow: a fault arrived with every record full.
    pub const PFO: u32 = 1 << 0;
    /// Primary pending fault: at least one fault record holds F = 1.
    pub const PPF: u32 = 1 << 1;
    pub const IQE: u32 = 1 << 4;
    pub const ICE: u32 = 1 << 5;
    pub const ITE: u32 = 1 << 6;

    pub const fn overflow(self) -> bool {
        self.0 & Self::PFO != 0
    }
    pub const fn pending(self) -> bool {
        self.0 & Self::PPF != 0
    }
    pub const fn invalidation_queue_error(self) -> bool {
        self.0 & Self::IQE != 0
    }
    /// Index of the first fault record to read when `pending()`.
    pub const fn fault_record_index(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Value to write back to clear the write-1-to-clear error bits
    /// (PFO, IQE, ICE, ITE); PPF clears itself when records are cleared.
    pub const fn clear_value(self) -> u32 {
        self.0 & (Self::PFO | Self::IQE | Self::ICE | Self::ITE)
    }
}
