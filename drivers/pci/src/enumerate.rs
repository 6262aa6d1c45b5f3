//! Enumeration across buses and bridges, reading headers through
//! pci_types' `PciHeader` and `PciPciBridgeHeader`.

use crate::access::{to_pci, Access, ReadOnly};
use crate::{Address, ConfigSpace};
use pci_types::{HeaderType, PciHeader, PciPciBridgeHeader};

/// What enumeration found at one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    pub address: Address,
    pub vendor_id: u16,
    pub device_id: u16,
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub revision: u8,
    /// Header type without the multi-function bit: 0 endpoint, 1 bridge,
    /// 2 CardBus bridge, anything else as read.
    pub header_type: u8,
    /// For PCI-to-PCI bridges: (secondary, subordinate) bus numbers.
    pub bridge_buses: Option<(u8, u8)>,
}

impl Function {
    pub const fn is_nvme(&self) -> bool {
        self.class == 0x01 && self.subclass == 0x08 && self.prog_if == 0x02
    }
    pub const fn bar_count(&self) -> u8 {
        match self.header_type {
            0 => 6,
            1 => 2,
            _ => 0,
        }
    }
}

fn header_type_number(t: HeaderType) -> u8 {
    match t {
        HeaderType::Endpoint => 0,
        HeaderType::PciPciBridge => 1,
        HeaderType::CardBusBridge => 2,
        HeaderType::Unknown(t) => t,
        // `HeaderType` is non-exhaustive; 0.10.1 has no other variant.
        _ => 0x7f,
    }
}

type View<'a, C> = Access<ReadOnly<'a, C>>;

/// The function at `at`, or `None` if nothing answers there (vendor id
/// all ones, as an absent function reads, or zero, which no vendor has).
fn probe<C: ConfigSpace>(view: &View<'_, C>, at: Address) -> Option<Function> {
    let header = PciHeader::new(to_pci(at)?);
    let (vendor_id, device_id) = header.id(view);
    if vendor_id == 0xffff || vendor_id == 0 {
        return None;
    }
    let (revision, class, subclass, prog_if) = header.revision_and_class(view);
    let header_type = header_type_number(header.header_type(view));
    let bridge_buses = PciPciBridgeHeader::from_header(PciHeader::new(header.address()), view)
        .map(|bridge| (bridge.secondary_bus_number(view), bridge.subordinate_bus_number(view)));
    Some(Function { address: at, vendor_id, device_id, class, subclass, prog_if, revision, header_type, bridge_buses })
}

/// Bus numbers already visited, so a bridge pointing back up cannot loop.
struct BusSet([u64; 4]);

impl BusSet {
    /// Adds `bus`; false if it was already there.
    fn insert(&mut self, bus: u8) -> bool {
        let (word, bit) = (bus as usize / 64, bus % 64);
        let fresh = self.0[word] & (1 << bit) == 0;
        self.0[word] |= 1 << bit;
        fresh
    }
}

/// Calls `visit` for every function reachable from `root_bus` of
/// `segment`, following PCI-to-PCI bridges to their secondary buses (as
/// firmware numbered them). Returns the number of functions found. The bus
/// range `allowed` (e.g. the MCFG window) bounds the walk; every bus is
/// scanned at most once, so the walk ends whatever the bridges claim.
pub fn enumerate(
    cfg: &impl ConfigSpace,
    segment: u16,
    root_bus: u8,
    allowed: (u8, u8),
    mut visit: impl FnMut(&Function),
) -> usize {
    let view = Access(ReadOnly(cfg));
    if root_bus < allowed.0 || root_bus > allowed.1 {
        return 0;
    }
    let mut seen = BusSet([0; 4]);
    // An explicit stack of buses to scan (no recursion in a kernel). Each
    // bus is pushed at most once, so 256 entries always suffice.
    let mut stack = [0u8; 256];
    let mut depth = 0;
    let mut found = 0;
    stack[depth] = root_bus;
    depth += 1;
    seen.insert(root_bus);
    while depth > 0 {
        depth -= 1;
        let bus = stack[depth];
        for device in 0..32u8 {
            let f0 = Address::new(segment, bus, device, 0);
            let Some(first) = probe(&view, f0) else { continue };
            let multi = to_pci(f0).is_some_and(|a| PciHeader::new(a).has_multiple_functions(&view));
            let functions = if multi { 8 } else { 1 };
            for function in 0..functions {
                let at = Address::new(segment, bus, device, function);
                let f = if function == 0 { Some(first) } else { probe(&view, at) };
                let Some(f) = f else { continue };
                found += 1;
                visit(&f);
                if let Some((secondary, _)) = f.bridge_buses {
                    let in_window = secondary >= allowed.0 && secondary <= allowed.1;
                    // Secondary bus 0 means "not configured".
                    if secondary != 0 && in_window && seen.insert(secondary) && depth < stack.len() {
                        stack[depth] = secondary;
                        depth += 1;
                    }
                }
            }
        }
    }
    found
}
