//! Fault reasons (VT-d spec chapter 7, legacy-mode and interrupt-remapping
//! codes) and the 128-bit primary fault recording register (spec 11.4.14).

use super::{Access, Bdf};
use core::fmt;

/// A fault reason code with the spec's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultReason {
    /// 0x1: the root entry for the request's bus has P = 0.
    RootEntryNotPresent,
    /// 0x2: the context entry for the request's devfn has P = 0.
    ContextEntryNotPresent,
    /// 0x3: the context entry is programmed wrongly (unsupported AW,
    /// reserved TT, ...).
    InvalidContextEntry,
    /// 0x4: the input address is above 2^AGAW of the context entry.
    AddressBeyondWidth,
    /// 0x5: write request to a page without write permission (or to a
    /// not-present page: second-level entries have no P bit besides R/W).
    WriteNotPermitted,
    /// 0x6: read request to a page without read permission.
    ReadNotPermitted,
    /// 0x7: the hardware could not read a paging entry.
    PagingEntryAccessError,
    /// 0x8: the hardware could not read the root entry.
    RootEntryAccessError,
    /// 0x9: the hardware could not read the context entry.
    ContextEntryAccessError,
    /// 0xA: a reserved field of the root entry is non-zero.
    RootEntryReserved,
    /// 0xB: a reserved field of the context entry is non-zero.
    ContextEntryReserved,
    /// 0xC: a reserved field of a paging entry is non-zero.
    PagingEntryReserved,
    /// 0xD: the request type is blocked by the context entry's TT field.
    BlockedByTranslationType,
    /// 0x20..=0x26: interrupt-remapping faults.
    InterruptRemapping(u8),
    /// A code this decoder does not name (scalable-mode codes and newer).
    Other(u8),
}

impl FaultReason {
    pub const fn from_code(code: u8) -> FaultReason {
        match code {
            0x1 => FaultReason::RootEntryNotPresent,
            0x2 => FaultReason::ContextEntryNotPresent,
            0x3 => FaultReason::InvalidContextEntry,
            0x4 => FaultReason::AddressBeyondWidth,
            0x5 => FaultReason::WriteNotPermitted,
            0x6 => FaultReason::ReadNotPermitted,
            0x7 => FaultReason::PagingEntryAccessError,
            0x8 => FaultReason::RootEntryAccessError,
            0x9 => FaultReason::ContextEntryAccessError,
            0xa => FaultReason::RootEntryReserved,
            0xb => FaultReason::ContextEntryReserved,
            0xc => FaultReason::PagingEntryReserved,
            0xd => FaultReason::BlockedByTranslationType,
            0x20..=0x26 => FaultReason::InterruptRemapping(code),
            other => FaultReason::Other(other),
        }
    }

    pub const fn code(self) -> u8 {
        match self {
            FaultReason::RootEntryNotPresent => 0x1,
            FaultReason::ContextEntryNotPresent => 0x2,
            FaultReason::InvalidContextEntry => 0x3,
            FaultReason::AddressBeyondWidth => 0x4,
            FaultReason::WriteNotPermitted => 0x5,
            FaultReason::ReadNotPermitted => 0x6,
            FaultReason::PagingEntryAccessError => 0x7,
            FaultReason::RootEntryAccessError => 0x8,
            FaultReason::ContextEntryAccessError => 0x9,
            FaultReason::RootEntryReserved => 0xa,
            FaultReason::ContextEntryReserved => 0xb,
            FaultReason::PagingEntryReserved => 0xc,
            FaultReason::BlockedByTranslationType => 0xd,
            FaultReason::InterruptRemapping(c) | FaultReason::Other(c) => c,
        }
    }

    /// The spec's description, for logs.
    pub const fn description(self) -> &'static str {
        match self {
            FaultReason::RootEntryNotPresent => "root entry not present",
            FaultReason::ContextEntryNotPresent => "context entry not present",
            FaultReason::InvalidContextEntry => "invalid programming of context entry",
            FaultReason::AddressBeyondWidth => "input address above the context's address width",
            FaultReason::WriteNotPermitted => "write to a page without write permission",
            FaultReason::ReadNotPermitted => "read from a page without read permission",
            FaultReason::PagingEntryAccessError => "error accessing a paging entry",
            FaultReason::RootEntryAccessError => "error accessing the root entry",
            FaultReason::ContextEntryAccessError => "error accessing the context entry",
            FaultReason::RootEntryReserved => "reserved field set in root entry",
            FaultReason::ContextEntryReserved => "reserved field set in context entry",
            FaultReason::PagingEntryReserved => "reserved field set in paging entry",
            FaultReason::BlockedByTranslationType => "request blocked by the context's translation type",
            FaultReason::InterruptRemapping(0x20) => "interrupt request with reserved field set",
            FaultReason::InterruptRemapping(0x21) => "interrupt index beyond the remapping table",
            FaultReason::InterruptRemapping(0x22) => "interrupt remapping entry not present",
            FaultReason::InterruptRemapping(0x23) => "error accessing the interrupt remapping table",
            FaultReason::InterruptRemapping(0x24) => "reserved field set in interrupt remapping entry",
            FaultReason::InterruptRemapping(0x25) => "compatibility-format interrupt blocked",
            FaultReason::InterruptRemapping(0x26) => "interrupt source id check failed",
            FaultReason::InterruptRemapping(_) => "interrupt remapping fault",
            FaultReason::Other(_) => "unknown fault reason",
        }
    }
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (reason {:#x})", self.description(), self.code())
    }
}

/// One decoded primary fault record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// The requester.
    pub source: Bdf,
    pub reason: FaultReason,
    /// The faulting page address (bits 63:12 of the record; the low 12
    /// bits are not recorded). For interrupt faults, the interrupt index
    /// sits in bits 63:48 instead.
    pub address: u64,
    pub access: Access,
    /// Address type field (0 = untranslated request).
    pub address_type: u8,
    /// PASID of the request, when the record carries one.
    pub pasid: Option<u32>,
    /// Privileged-mode request (PRIV) and execute request (EXE) flags.
    pub privileged: bool,
    pub execute: bool,
}

impl FaultRecord {
    /// Decodes the two quadwords of a fault recording register (`low` at
    /// FRO + 16 * i, `high` at + 8). Returns `None` when F (bit 127) is
    /// clear: the slot holds no fault.
    pub const fn decode(low: u64, high: u64) -> Option<FaultRecord> {
        if high & (1 << 63) == 0 {
            return None;
        }
        // T (bit 126, high bit 62): 1 = read request, 0 = write request.
        let access = if high & (1 << 62) != 0 { Access::Read } else { Access::Write };
        let pasid_present = high & (1 << 31) != 0;
        Some(FaultRecord {
            source: Bdf::from_source_id(high as u16),
            reason: FaultReason::from_code((high >> 32) as u8),
            address: low & !0xfff,
            access,
            address_type: ((high >> 60) & 3) as u8,
            pasid: if pasid_present { Some(((high >> 40) & 0xf_ffff) as u32) } else { None },
            privileged: high & (1 << 29) != 0,
            execute: high & (1 << 30) != 0,
        })
    }

    /// What to write to the record's high quadword to clear it: F is
    /// write-1-to-clear, every other bit is read-only.
    pub const CLEAR_HIGH: u64 = 1 << 63;
}

impl fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.access {
            Access::Read => "read",
            Access::Write => "write",
        };
        write!(f, "DMA {} by {} at {:#x}: {}", kind, self.source, self.address, self.reason)
    }
}
