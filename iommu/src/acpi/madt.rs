//! The Multiple APIC Description Table (ACPI 6.x, 5.2.12): the local APIC
//! address and the interrupt controller structures — which CPUs exist
//! (local APIC / x2APIC entries), the I/O APICs, and legacy IRQ overrides.
//!
//! Like DMAR and MCFG, the whole table is validated before anything is
//! returned: every structure's length must be at least its header and at
//! least the size its type defines, and must fit the table (a zero length
//! would otherwise loop forever). Unknown structure types are skipped by
//! their length, as the spec requires.

use super::{check_header, AcpiError, Problem, SdtHeader, SDT_HEADER_LEN};

const TABLE: &str = "MADT";
/// Header, local APIC address (u32), flags (u32).
const STRUCTURES_START: usize = SDT_HEADER_LEN + 8;

/// One interrupt controller structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Controller {
    /// Type 0: a processor's local APIC.
    LocalApic { processor_uid: u8, apic_id: u8, enabled: bool, online_capable: bool },
    /// Type 1: an I/O APIC.
    IoApic { id: u8, address: u32, gsi_base: u32 },
    /// Type 2: an ISA IRQ routed to another global system interrupt.
    InterruptOverride { source: u8, gsi: u32, flags: u16 },
    /// Type 9: a processor's local x2APIC.
    LocalX2Apic { apic_id: u32, enabled: bool, online_capable: bool, processor_uid: u32 },
    /// Any other type, skipped by its length.
    Other { kind: u8, length: u8 },
}

impl Controller {
    /// The CPU's APIC id if this is an enabled processor.
    pub fn enabled_cpu(&self) -> Option<u32> {
        match *self {
            Controller::LocalApic { apic_id, enabled: true, .. } => Some(apic_id as u32),
            Controller::LocalX2Apic { apic_id, enabled: true, .. } => Some(apic_id),
            _ => None,
        }
    }
}

/// A validated MADT.
#[derive(Clone, Copy, Debug)]
pub struct Madt<'a> {
    pub header: SdtHeader,
    pub local_apic_address: u32,
    /// Bit 0: PC-AT compatible (dual 8259s present).
    pub flags: u32,
    structures: &'a [u8],
}

fn err(offset: usize, field: &'static str, problem: Problem) -> AcpiError {
    AcpiError { table: TABLE, offset, field, problem }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The least length a structure of `kind` may have.
fn minimum_length(kind: u8) -> usize {
    match kind {
        0 => 8,
        1 => 12,
        2 => 10,
        9 => 16,
        _ => 2,
    }
}

/// Decode one structure whose length was already checked.
fn decode(s: &[u8]) -> Controller {
    match s[0] {
        0 => Controller::LocalApic {
            processor_uid: s[2],
            apic_id: s[3],
            enabled: u32_at(s, 4) & 1 != 0,
            online_capable: u32_at(s, 4) & 2 != 0,
        },
        1 => Controller::IoApic { id: s[2], address: u32_at(s, 4), gsi_base: u32_at(s, 8) },
        2 => Controller::InterruptOverride { source: s[3], gsi: u32_at(s, 4), flags: u16_at(s, 8) },
        9 => Controller::LocalX2Apic {
            apic_id: u32_at(s, 4),
            enabled: u32_at(s, 8) & 1 != 0,
            online_capable: u32_at(s, 8) & 2 != 0,
            processor_uid: u32_at(s, 12),
        },
        kind => Controller::Other { kind, length: s[1] },
    }
}

impl<'a> Madt<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, AcpiError> {
        let (header, bytes) = check_header(bytes, TABLE, b"APIC", STRUCTURES_START)?;
        let madt = Madt {
            header,
            local_apic_address: u32_at(bytes, SDT_HEADER_LEN),
            flags: u32_at(bytes, SDT_HEADER_LEN + 4),
            structures: &bytes[STRUCTURES_START..],
        };
        let s = madt.structures;
        let mut at = 0;
        while at < s.len() {
            let offset = STRUCTURES_START + at;
            if s.len() - at < 2 {
                return Err(err(offset, "structure header", Problem::Truncated { needed: 2, available: s.len() - at }));
            }
            let (kind, length) = (s[at], s[at + 1] as usize);
            let minimum = minimum_length(kind);
            if length < minimum {
                return Err(err(offset + 1, "structure length", Problem::LengthTooSmall { length, minimum }));
            }
            if length > s.len() - at {
                return Err(err(offset + 1, "structure length", Problem::LengthOverrun { length, remaining: s.len() - at }));
            }
            at += length;
        }
        Ok(madt)
    }

    /// Every structure, in table order.
    pub fn controllers(&self) -> impl Iterator<Item = Controller> + 'a {
        let s = self.structures;
        let mut at = 0;
        core::iter::from_fn(move || {
            // `parse` proved every length is in bounds and non-zero.
            if at + 2 > s.len() {
                return None;
            }
            let length = (s[at + 1] as usize).max(2).min(s.len() - at);
            let c = decode(&s[at..at + length]);
            at += length;
            Some(c)
        })
    }

    /// APIC ids of the enabled processors.
    pub fn enabled_cpus(&self) -> impl Iterator<Item = u32> + 'a {
        self.controllers().filter_map(|c| c.enabled_cpu())
    }
}
