//! Base address registers: decoded and sized by pci_types'
//! `EndpointHeader::bar`, behind the checks that keep it from panicking.
//!
//! pci_types 0.10.1 sizes a memory BAR by writing all ones and taking the
//! lowest address bit that stuck. It assumes there is one: a BAR that
//! implements no address bits makes it shift by 32 (or 64), and a reserved
//! memory type makes it `panic!`. It also sign-extends the size of a 64-bit
//! BAR of exactly 2 GiB (`(1 << 31) as u64` on an `i32`). So before handing
//! it a BAR this module reads the type and probes the writable bits itself
//! (with decoding off), and trusts that probe where the two disagree. I/O
//! BARs are sized here as well: pci_types reports only their port.

use crate::access::{to_pci, Access, ReadOnly, ReadWrite};
use crate::{reg, Address, ConfigSpace};
use pci_types::{CommandRegister, EndpointHeader, HeaderType, PciHeader};

/// A decoded base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub index: u8,
    pub kind: BarKind,
    pub prefetchable: bool,
    pub address: u64,
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Memory32,
    Memory64,
}

/// What a BAR's read-only low bits say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Io,
    Memory {
        wide: bool,
        prefetchable: bool,
    },
    /// Memory type 01 (below 1 MiB, obsolete) or 11 (reserved).
    Unusable,
}

pub(crate) fn shape(raw: u32) -> Shape {
    if raw & 1 == 1 {
        return Shape::Io;
    }
    let prefetchable = raw & 8 != 0;
    match (raw >> 1) & 3 {
        0 => Shape::Memory { wide: false, prefetchable },
        2 => Shape::Memory { wide: true, prefetchable },
        _ => Shape::Unusable,
    }
}

/// Writes all ones to the register at `offset`, reads back which bits
/// stuck, and puts the original value back. The caller has turned the
/// register's decoding off.
pub(crate) fn writable_bits(cfg: &mut impl ConfigSpace, at: Address, offset: u16) -> u32 {
    let original = cfg.read32(at, offset);
    cfg.write32(at, offset, u32::MAX);
    let stuck = cfg.read32(at, offset);
    cfg.write32(at, offset, original);
    stuck
}

/// The size of a memory BAR from the address bits that stuck (low, high):
/// its lowest writable address bit, or `None` if it implements none (an
/// unimplemented BAR).
pub(crate) fn memory_size(stuck_low: u32, stuck_high: u32) -> Option<u64> {
    let mask = (stuck_high as u64) << 32 | (stuck_low & !0xf) as u64;
    (mask != 0).then(|| mask & mask.wrapping_neg())
}

/// The command register with I/O and memory decoding as given. Written as
/// a dword whose upper half (status) is zero: status bits are
/// write-one-to-clear, and writing back what we read would clear them.
/// (pci_types' `update_command` writes them back, so it is not used here.)
fn write_command(cfg: &mut impl ConfigSpace, at: Address, command: CommandRegister) {
    cfg.write32(at, reg::COMMAND_STATUS, command.bits() as u32);
}

/// Sizes BAR `index` of an endpoint (header type 0) the standard way: with
/// decoding disabled, write all ones, read back the mask, restore. Returns
/// `None` for an unimplemented or unusable BAR, an index past 5, a function
/// that is not an endpoint (pci_types exposes BARs for type-0 headers only;
/// the kernel hands drivers endpoints only), or the upper half of a 64-bit
/// BAR (use [`bars`], which skips those). The caller must hold the device:
/// nothing may use it while its decoding is off.
pub fn size_bar(cfg: &mut impl ConfigSpace, at: Address, index: u8, header_type: u8) -> Option<Bar> {
    if header_type != 0 || index >= 6 {
        return None;
    }
    let pci = to_pci(at)?;
    // Before the first write: something must answer, and be an endpoint
    // (an all-ones function would otherwise look like an I/O BAR).
    let header = PciHeader::new(pci);
    let view = Access(ReadOnly(&*cfg));
    if header.id(&view).0 == 0xffff || header.header_type(&view) != HeaderType::Endpoint {
        return None;
    }
    let offset = reg::BAR0 + 4 * index as u16;
    let raw = cfg.read32(at, offset);
    let shape = shape(raw);
    match shape {
        Shape::Unusable => return None,
        Shape::Memory { wide: true, .. } if index == 5 => return None,
        _ => {}
    }
    let command = CommandRegister::from_bits_retain(cfg.read32(at, reg::COMMAND_STATUS) as u16);
    write_command(cfg, at, command - (CommandRegister::IO_ENABLE | CommandRegister::MEMORY_ENABLE));
    let bar = size_with_decoding_off(cfg, at, pci, index, offset, raw, shape);
    write_command(cfg, at, command);
    bar
}

fn size_with_decoding_off(
    cfg: &mut impl ConfigSpace,
    at: Address,
    pci: pci_types::PciAddress,
    index: u8,
    offset: u16,
    raw: u32,
    shape: Shape,
) -> Option<Bar> {
    let stuck_low = writable_bits(cfg, at, offset);
    let (wide, prefetchable) = match shape {
        Shape::Io => (false, false),
        Shape::Memory { wide, prefetchable } => (wide, prefetchable),
        Shape::Unusable => return None,
    };
    let stuck_high = if wide { writable_bits(cfg, at, offset + 4) } else { 0 };
    let probed = match shape {
        // I/O decoders implement at most 32 bits, often only 16; bits 0..1
        // are flags.
        Shape::Io => {
            let mask = stuck_low & !3;
            (mask != 0).then(|| (mask & mask.wrapping_neg()) as u64)
        }
        _ => memory_size(stuck_low, stuck_high),
    }?;

    let mut rw = ReadWrite::new(cfg);
    rw.pin_flags(at, offset, raw);
    let view = Access(rw);
    // pci_types checks the header type itself: not an endpoint, no BARs.
    let endpoint = EndpointHeader::from_header(PciHeader::new(pci), &view)?;
    let decoded = endpoint.bar(index, &view)?;
    // pci_types' size equals the probe's for every well-formed BAR except
    // a 64-bit one of exactly 2 GiB, which it sign-extends (tested); a
    // register changing between the two reads could also make them
    // differ. The mask we read with decoding off is the one we trust.
    let (kind, address) = match decoded {
        pci_types::Bar::Io { port } => (BarKind::Io, port as u64),
        pci_types::Bar::Memory32 { address, .. } => (BarKind::Memory32, address as u64),
        pci_types::Bar::Memory64 { address, .. } => (BarKind::Memory64, address),
    };
    let expected = match shape {
        Shape::Io => BarKind::Io,
        _ if wide => BarKind::Memory64,
        _ => BarKind::Memory32,
    };
    if kind != expected {
        // The register changed between our read and pci_types'.
        return None;
    }
    Some(Bar { index, kind, prefetchable, address, size: probed })
}

/// Sizes every BAR of an endpoint, skipping the upper halves of 64-bit
/// ones. All `None` for other header types.
pub fn bars(cfg: &mut impl ConfigSpace, at: Address, header_type: u8) -> [Option<Bar>; 6] {
    let mut out = [None; 6];
    if header_type != 0 {
        return out;
    }
    let mut i = 0;
    while i < 6 {
        let bar = size_bar(cfg, at, i, header_type);
        // A 64-bit BAR uses the next register too, even when unimplemented.
        let wide = matches!(shape(cfg.read32(at, reg::BAR0 + 4 * i as u16)), Shape::Memory { wide: true, .. });
        out[i as usize] = bar;
        i += if wide { 2 } else { 1 };
    }
    out
}
