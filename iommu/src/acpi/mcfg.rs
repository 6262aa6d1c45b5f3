//! The PCI Express memory-mapped configuration table (PCI Firmware spec):
//! one allocation per (segment, bus range) giving the ECAM base.

use super::{check_header, AcpiError, Problem, SdtHeader, SDT_HEADER_LEN};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

const TABLE: &str = "MCFG";
/// Header plus eight reserved bytes.
const ALLOCATIONS_START: usize = SDT_HEADER_LEN + 8;
const ALLOCATION_LEN: usize = 16;

#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct RawAllocation {
    base: U64,
    segment: U16,
    start_bus: u8,
    end_bus: u8,
    reserved: U32,
}

/// One ECAM window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamRegion {
    /// ECAM base address. As Linux and the PCI Firmware spec read it, this
    /// is the address bus 0 would have, even when `start_bus` is above 0.
    pub base: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

impl EcamRegion {
    /// Physical address of the 4 KiB configuration space of (bus, dev, fn),
    /// or `None` when outside this window.
    pub fn config_address(&self, bus: u8, device: u8, function: u8) -> Option<u64> {
        if bus < self.start_bus || bus > self.end_bus || device > 31 || function > 7 {
            return None;
        }
        let offset = ((bus as u64) << 20) | ((device as u64) << 15) | ((function as u64) << 12);
        self.base.checked_add(offset)
    }

    /// First byte of the window (the start bus's configuration space).
    pub fn window_start(&self) -> u64 {
        self.base + ((self.start_bus as u64) << 20)
    }

    /// Bytes covered: 1 MiB per bus.
    pub fn window_len(&self) -> u64 {
        ((self.end_bus as u64) - (self.start_bus as u64) + 1) << 20
    }
}

/// A validated MCFG table.
#[derive(Clone, Copy, Debug)]
pub struct Mcfg<'a> {
    pub header: SdtHeader,
    allocations: &'a [u8],
}

impl<'a> Mcfg<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, AcpiError> {
        let (header, bytes) = check_header(bytes, TABLE, b"MCFG", ALLOCATIONS_START)?;
        let allocations = &bytes[ALLOCATIONS_START..];
        if allocations.len() % ALLOCATION_LEN != 0 {
            return Err(AcpiError {
                table: TABLE,
                offset: 4,
                field: "length",
                problem: Problem::LengthNotMultiple { length: allocations.len(), unit: ALLOCATION_LEN },
            });
        }
        let mcfg = Mcfg { header, allocations };
        for (i, chunk) in allocations.chunks_exact(ALLOCATION_LEN).enumerate() {
            let at = ALLOCATIONS_START + i * ALLOCATION_LEN;
            let Ok(raw) = RawAllocation::read_from_bytes(chunk) else {
                return Err(AcpiError {
                    table: TABLE,
                    offset: at,
                    field: "allocation",
                    problem: Problem::Truncated { needed: ALLOCATION_LEN, available: chunk.len() },
                });
            };
            if raw.start_bus > raw.end_bus {
                return Err(AcpiError {
                    table: TABLE,
                    offset: at + 11,
                    field: "allocation.end_bus",
                    problem: Problem::InvalidValue { value: raw.end_bus as u64, rule: "end bus must not be below start bus" },
                });
            }
            let base = raw.base.get();
            // ECAM gives each bus 1 MiB, so the base must be 1 MiB aligned,
            // and the window must not wrap the address space.
            if base & 0xf_ffff != 0 {
                return Err(AcpiError {
                    table: TABLE,
                    offset: at,
                    field: "allocation.base",
                    problem: Problem::InvalidValue { value: base, rule: "ECAM base must be 1 MiB aligned" },
                });
            }
            if base.checked_add(((raw.end_bus as u64) + 1) << 20).is_none() {
                return Err(AcpiError {
                    table: TABLE,
                    offset: at,
                    field: "allocation.base",
                    problem: Problem::InvalidValue { value: base, rule: "ECAM window must not wrap past 2^64" },
                });
            }
        }
        Ok(mcfg)
    }

    pub fn regions(&self) -> impl Iterator<Item = EcamRegion> + 'a {
        self.allocations.chunks_exact(ALLOCATION_LEN).filter_map(|c| {
            let raw = RawAllocation::read_from_bytes(c).ok()?;
            Some(EcamRegion {
                base: raw.base.get(),
                segment: raw.segment.get(),
                start_bus: raw.start_bus,
                end_bus: raw.end_bus,
            })
        })
    }

    /// The ECAM address of (segment, bus, dev, fn), if some region covers it.
    pub fn config_address(&self, segment: u16, bus: u8, device: u8, function: u8) -> Option<u64> {
        self.regions()
            .filter(|r| r.segment == segment)
            .find_map(|r| r.config_address(bus, device, function))
    }
}
