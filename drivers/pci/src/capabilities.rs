//! The legacy capability list (MSI, MSI-X, PCI Express, ...), walked by
//! pci_types' `CapabilityIterator` behind a guard.
//!
//! pci_types 0.10.1 follows next pointers as it finds them: a list that
//! loops never ends (a loop of null-id entries never even returns from one
//! `next()` call), and a pointer into the 64-byte header reads BARs and ids
//! as capabilities. The `Guard` view sees every read the iterator makes
//! and, when a capability header read would revisit an entry, land in the
//! header, or read all ones, answers zero instead: to pci_types a zero
//! header is a null entry with no successor, so its walk ends, and the
//! guard remembers why ([`ListEnd`]).

use crate::access::{read_dword, to_pci, Access, View};
use crate::{cap_id, Address, ConfigSpace};
use core::cell::Cell;
use pci_types::capability::PciCapability;
use pci_types::{EndpointHeader, PciHeader};

/// Why a capability walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListEnd {
    /// A zero next pointer, or no list at all (status bit clear).
    Complete,
    /// Nothing answers at the address (vendor id all ones), or it is not
    /// a PCI address (device >= 32 or function >= 8).
    NoFunction,
    /// A header layout without a walkable list here (CardBus, whose
    /// pointer lives elsewhere, or an unknown header type).
    UnsupportedHeader { header_type: u8 },
    /// A next pointer into the header (legacy list: below 0x40; extended
    /// list: below 0x100).
    PointsIntoHeader { pointer: u16 },
    /// An entry was reached a second time.
    Loop { offset: u16 },
    /// An entry read all ones (the function vanished, or the space past
    /// this point is not implemented).
    AllOnes { offset: u16 },
}

impl ListEnd {
    /// True if the list ended the way a well-formed one does.
    pub const fn is_clean(&self) -> bool {
        matches!(self, ListEnd::Complete)
    }
}

/// One capability: its id, where it is, and pci_types' parse of it.
#[derive(Clone, Copy, Debug)]
pub struct Capability {
    pub id: u8,
    /// Offset of the capability header (low two bits cleared).
    pub offset: u16,
    pub parsed: PciCapability,
}

/// Capability headers live in 0x40..0x100, dword aligned: 48 slots.
const FIRST: u16 = 0x40;
const MAX_ENTRIES: usize = 48;

#[derive(Clone, Copy)]
enum Phase {
    /// pci_types is reading the header (type, status, pointer).
    Header,
    /// pci_types is following the list; the next capability header it
    /// reads is at `expected`.
    List { expected: u16 },
}

#[derive(Clone, Copy)]
struct State {
    phase: Phase,
    /// One bit per dword slot in 0x40..0x100 already read as a header.
    visited: u64,
    /// An MSI-X header was just read at this offset: pci_types reads its
    /// table and PBA dwords (+4, +8) next, which are not list entries.
    msix_body: Option<u16>,
    end: Option<ListEnd>,
}

/// The view pci_types walks the list through (see the module comment).
struct Guard<'a, C> {
    cfg: &'a C,
    state: Cell<State>,
}

impl<C: ConfigSpace> Guard<'_, C> {
    fn stop(&self, mut state: State, why: ListEnd) -> u32 {
        state.end = Some(why);
        self.state.set(state);
        0
    }
}

impl<C: ConfigSpace> View for Guard<'_, C> {
    fn read(&self, at: Address, offset: u16) -> u32 {
        let mut state = self.state.get();
        if state.end.is_some() {
            return 0;
        }
        match state.phase {
            Phase::Header => {
                let mut value = read_dword(self.cfg, at, offset);
                if offset & !3 == 0x0c && (value >> 16) & 0x7f == 1 {
                    // A PCI-to-PCI bridge keeps its capability pointer at
                    // 0x34 like an endpoint (PCI-to-PCI Bridge 1.2 §3.2),
                    // but pci_types 0.10.1 only walks lists through
                    // `EndpointHeader`: present the bridge as type 0 to the
                    // one call that checks the type.
                    value &= !(0x7f << 16);
                }
                if offset & !3 == 0x34 {
                    state.phase = Phase::List { expected: value as u8 as u16 };
                    self.state.set(state);
                }
                value
            }
            Phase::List { expected } => {
                if let Some(header) = state.msix_body {
                    if offset == header + 4 || offset == header + 8 {
                        if offset == header + 8 {
                            state.msix_body = None;
                            self.state.set(state);
                        }
                        return read_dword(self.cfg, at, offset);
                    }
                }
                if offset != expected {
                    // Not a list step (pci_types 0.10.1 makes none other
                    // than MSI-X's): read as asked.
                    return read_dword(self.cfg, at, offset);
                }
                let slot = offset & !3;
                if slot < FIRST {
                    return self.stop(state, ListEnd::PointsIntoHeader { pointer: offset });
                }
                let bit = 1u64 << ((slot - FIRST) / 4);
                if state.visited & bit != 0 {
                    return self.stop(state, ListEnd::Loop { offset: slot });
                }
                state.visited |= bit;
                let value = read_dword(self.cfg, at, slot);
                if value == u32::MAX {
                    return self.stop(state, ListEnd::AllOnes { offset: slot });
                }
                state.phase = Phase::List { expected: (value >> 8) as u8 as u16 };
                state.msix_body = (value as u8 == cap_id::MSIX).then_some(offset);
                self.state.set(state);
                value
            }
        }
    }

    fn write(&self, _at: Address, _offset: u16, _value: u32) {
        // Walking a list never writes (pci_types' iterator does not).
    }
}

/// The id of a capability pci_types parsed (it keeps the id only for ones
/// it does not know).
fn id_of(c: &PciCapability) -> u8 {
    match c {
        PciCapability::PowerManagement(_) => 0x01,
        PciCapability::AcceleratedGraphicsPort(_) => 0x02,
        PciCapability::VitalProductData(_) => 0x03,
        PciCapability::SlotIdentification(_) => 0x04,
        PciCapability::Msi(_) => cap_id::MSI,
        PciCapability::CompactPCIHotswap(_) => 0x06,
        PciCapability::PciX(_) => 0x07,
        PciCapability::HyperTransport(_) => 0x08,
        PciCapability::Vendor(_) => 0x09,
        PciCapability::DebugPort(_) => 0x0a,
        PciCapability::CompactPCICentralResourceControl(_) => 0x0b,
        PciCapability::PciHotPlugControl(_) => 0x0c,
        PciCapability::BridgeSubsystemVendorId(_) => 0x0d,
        PciCapability::AGP3(_) => 0x0e,
        PciCapability::PciExpress(_) => cap_id::PCI_EXPRESS,
        PciCapability::MsiX(_) => cap_id::MSIX,
        PciCapability::Unknown { id, .. } => *id,
    }
}

/// Walks the capability list of the function at `at` (endpoint or
/// PCI-to-PCI bridge), calling `visit` for each entry until it returns
/// false. Null entries (id 0) are skipped, as pci_types does. Returns why
/// the walk ended; a walk `visit` stopped early reports `Complete`. At most
/// 48 entries are visited.
pub fn walk_capabilities<C: ConfigSpace>(cfg: &C, at: Address, visit: impl FnMut(Capability) -> bool) -> ListEnd {
    if cfg.read32(at, 0) as u16 == 0xffff {
        return ListEnd::NoFunction;
    }
    walk_capabilities_of_present(cfg, at, visit)
}

/// [`walk_capabilities`] for a function the caller knows exists, whatever
/// its vendor id reads: an SR-IOV virtual function's ID registers read
/// 0xffff (the PF's VF Device ID names it), which would otherwise end the
/// walk as "no function". Everything else is checked the same way.
pub fn walk_capabilities_of_present<C: ConfigSpace>(
    cfg: &C,
    at: Address,
    mut visit: impl FnMut(Capability) -> bool,
) -> ListEnd {
    let Some(pci) = to_pci(at) else { return ListEnd::NoFunction };
    let state = State { phase: Phase::Header, visited: 0, msix_body: None, end: None };
    let view = Access(Guard { cfg, state: Cell::new(state) });
    let Some(endpoint) = EndpointHeader::from_header(PciHeader::new(pci), &view) else {
        let header_type = (cfg.read32(at, 0x0c) >> 16) as u8 & 0x7f;
        return ListEnd::UnsupportedHeader { header_type };
    };
    for parsed in endpoint.capabilities(&view) {
        let offset = parsed.address().offset & !3;
        if !visit(Capability { id: id_of(&parsed), offset, parsed }) {
            return ListEnd::Complete;
        }
    }
    view.0.state.get().end.unwrap_or(ListEnd::Complete)
}

/// A function's capabilities as (id, offset) pairs, and how the list ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapabilityList {
    entries: [(u8, u16); MAX_ENTRIES],
    len: usize,
    pub end: ListEnd,
}

impl CapabilityList {
    pub fn iter(&self) -> impl Iterator<Item = (u8, u16)> + '_ {
        self.entries[..self.len].iter().copied()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Reads the whole capability list of the function at `at`.
pub fn capabilities<C: ConfigSpace>(cfg: &C, at: Address) -> CapabilityList {
    let mut list = CapabilityList { entries: [(0, 0); MAX_ENTRIES], len: 0, end: ListEnd::Complete };
    list.end = walk_capabilities(cfg, at, |c| {
        // The guard admits each of the 48 slots once, so this always fits.
        if let Some(slot) = list.entries.get_mut(list.len) {
            *slot = (c.id, c.offset);
            list.len += 1;
        }
        true
    });
    list
}

/// The first capability with `id`.
pub fn find(cfg: &impl ConfigSpace, at: Address, id: u8) -> Option<Capability> {
    let mut found = None;
    walk_capabilities(cfg, at, |c| {
        if c.id == id {
            found = Some(c);
        }
        found.is_none()
    });
    found
}

/// The offset of the first capability with `id`.
pub fn find_capability(cfg: &impl ConfigSpace, at: Address, id: u8) -> Option<u16> {
    find(cfg, at, id).map(|c| c.offset)
}

/// [`find_capability`] for a function known to exist, VFs included (see
/// [`walk_capabilities_of_present`]).
pub fn find_capability_of_present(cfg: &impl ConfigSpace, at: Address, id: u8) -> Option<u16> {
    let mut found = None;
    walk_capabilities_of_present(cfg, at, |c| {
        if c.id == id {
            found = Some(c.offset);
        }
        found.is_none()
    });
    found
}

/// The MSI-X capability (pci_types' `MsixCapability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiX {
    pub offset: u16,
    pub table_size: u16,
    pub table_bar: u8,
    pub table_offset: u32,
    pub pba_bar: u8,
    pub pba_offset: u32,
    pub enabled: bool,
    pub function_masked: bool,
}

impl MsiX {
    pub fn read(cfg: &impl ConfigSpace, at: Address) -> Option<MsiX> {
        let found = find(cfg, at, cap_id::MSIX)?;
        let PciCapability::MsiX(m) = found.parsed else { return None };
        // The control word is in the header dword, which we already have
        // through `cfg`; pci_types' `enabled`/`function_mask` would read
        // the same dword.
        let control = (read_dword(cfg, at, found.offset) >> 16) as u16;
        Some(MsiX {
            offset: found.offset,
            table_size: m.table_size(),
            table_bar: m.table_bar(),
            table_offset: m.table_offset(),
            pba_bar: m.pba_bar(),
            pba_offset: m.pba_offset(),
            enabled: control & (1 << 15) != 0,
            function_masked: control & (1 << 14) != 0,
        })
    }

    /// The message-control dword value enabling MSI-X (function unmasked).
    pub fn enable_value(cfg: &impl ConfigSpace, at: Address, offset: u16) -> u32 {
        let dword = cfg.read32(at, offset);
        (dword & !(1 << 30)) | 1 << 31
    }
}

/// One MSI-X table entry (16 bytes in the table BAR): compatibility
/// format, fixed delivery, edge triggered, physical destination.
pub const fn msix_entry(apic_id: u8, vector: u8, masked: bool) -> [u32; 4] {
    [0xfee0_0000 | (apic_id as u32) << 12, 0, vector as u32, masked as u32]
}

/// The MSI capability (pci_types' `MsiCapability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    pub offset: u16,
    pub is_64bit: bool,
    pub per_vector_masking: bool,
    /// log2 of the vectors the function can request (pci_types reads the
    /// reserved encodings 6 and 7 as 0).
    pub multiple_message_capable: u8,
}

impl Msi {
    pub fn read(cfg: &impl ConfigSpace, at: Address) -> Option<Msi> {
        let found = find(cfg, at, cap_id::MSI)?;
        let PciCapability::Msi(m) = found.parsed else { return None };
        Some(Msi {
            offset: found.offset,
            is_64bit: m.is_64bit(),
            per_vector_masking: m.has_per_vector_masking(),
            multiple_message_capable: m.multiple_message_capable() as u8,
        })
    }
}

/// The PCI Express capability's device/port type (0 endpoint, 4 root
/// port, ...). pci_types locates the capability but has no accessors for
/// its registers: the field is read here.
pub fn express_port_type(cfg: &impl ConfigSpace, at: Address) -> Option<u8> {
    let offset = find_capability(cfg, at, cap_id::PCI_EXPRESS)?;
    Some(((read_dword(cfg, at, offset) >> 20) & 0xf) as u8)
}

/// Why a function-level reset could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlrError {
    /// No PCI Express capability: no FLR to ask for.
    NotExpress,
    /// Device Capabilities bit 28 (Function Level Reset Capability) clear.
    NotCapable,
}

/// Starts a function-level reset: PCI Express Device Control bit 15
/// ("Initiate Function Level Reset"), if Device Capabilities bit 28 says
/// the function has one. The caller waits 100 ms (PCIe 5.0 §6.6.2) before
/// touching the function again, and restores what the reset cleared (the
/// command register, the BARs, SR-IOV state). Works for a function known
/// to exist whatever its vendor id reads, VFs included.
pub fn start_function_level_reset(cfg: &mut impl ConfigSpace, at: Address) -> Result<(), FlrError> {
    const DEVICE_CAPABILITIES: u16 = 0x04;
    const DEVICE_CONTROL: u16 = 0x08;
    let exp = find_capability_of_present(cfg, at, cap_id::PCI_EXPRESS).ok_or(FlrError::NotExpress)?;
    if read_dword(cfg, at, exp + DEVICE_CAPABILITIES) & (1 << 28) == 0 {
        return Err(FlrError::NotCapable);
    }
    let control = read_dword(cfg, at, exp + DEVICE_CONTROL);
    // Device Status (the upper half) is write-1-to-clear: write zeros there.
    cfg.write32(at, exp + DEVICE_CONTROL, (control & 0xffff) | 1 << 15);
    Ok(())
}
