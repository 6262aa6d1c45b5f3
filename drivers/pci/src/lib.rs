//! PCI discovery without hardware access: enumeration across buses and
//! bridges, BAR sizing and capability walks, over a [`ConfigSpace`] the
//! caller implements (the kernel or init, over the ECAM window MCFG gives).
//!
//! Every walk is bounded: a capability list that loops, or a bridge whose
//! secondary bus points back up the tree, ends the walk instead of hanging
//! it (configuration space is device-controlled input).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// A PCI function's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub segment: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Address {
    pub const fn new(segment: u16, bus: u8, device: u8, function: u8) -> Address {
        Address { segment, bus, device, function }
    }
    /// Offset of this function's 4 KiB configuration space in an ECAM
    /// window whose base corresponds to bus 0.
    pub const fn ecam_offset(&self) -> u64 {
        (self.bus as u64) << 20 | (self.device as u64) << 15 | (self.function as u64) << 12
    }
    /// The requester id (bus << 8 | device << 3 | function).
    pub const fn requester_id(&self) -> u16 {
        (self.bus as u16) << 8 | (self.device as u16) << 3 | self.function as u16
    }
}

/// Configuration space access (dword granular, offsets 0..4096).
pub trait ConfigSpace {
    fn read32(&self, at: Address, offset: u16) -> u32;
    fn write32(&mut self, at: Address, offset: u16, value: u32);

    fn read16(&self, at: Address, offset: u16) -> u16 {
        (self.read32(at, offset & !3) >> ((offset & 2) * 8)) as u16
    }
    fn read8(&self, at: Address, offset: u16) -> u8 {
        (self.read32(at, offset & !3) >> ((offset & 3) * 8)) as u8
    }
}

pub mod reg {
    pub const VENDOR_DEVICE: u16 = 0x00;
    pub const COMMAND_STATUS: u16 = 0x04;
    pub const CLASS: u16 = 0x08;
    pub const HEADER_TYPE: u16 = 0x0e;
    pub const BAR0: u16 = 0x10;
    pub const BUS_NUMBERS: u16 = 0x18;
    pub const CAPABILITIES: u16 = 0x34;

    pub const COMMAND_IO: u16 = 1 << 0;
    pub const COMMAND_MEMORY: u16 = 1 << 1;
    pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
    pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
    pub const STATUS_CAPABILITIES: u16 = 1 << 4;
}

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
    /// Header type without the multi-function bit: 0 endpoint, 1 bridge.
    pub header_type: u8,
    /// For bridges: (secondary, subordinate) bus numbers.
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

fn probe(cfg: &impl ConfigSpace, at: Address) -> Option<Function> {
    let id = cfg.read32(at, reg::VENDOR_DEVICE);
    let vendor_id = id as u16;
    if vendor_id == 0xffff || vendor_id == 0 {
        return None;
    }
    let class = cfg.read32(at, reg::CLASS);
    let header_type = cfg.read8(at, reg::HEADER_TYPE) & 0x7f;
    let bridge_buses = if header_type == 1 {
        let b = cfg.read32(at, reg::BUS_NUMBERS);
        Some(((b >> 8) as u8, (b >> 16) as u8))
    } else {
        None
    };
    Some(Function {
        address: at,
        vendor_id,
        device_id: (id >> 16) as u16,
        class: (class >> 24) as u8,
        subclass: (class >> 16) as u8,
        prog_if: (class >> 8) as u8,
        revision: class as u8,
        header_type,
        bridge_buses,
    })
}

/// Bus numbers already visited, so a bridge pointing back up cannot loop.
struct BusSet([u64; 4]);

impl BusSet {
    fn insert(&mut self, bus: u8) -> bool {
        let (w, b) = (bus as usize / 64, bus % 64);
        let fresh = self.0[w] & (1 << b) == 0;
        self.0[w] |= 1 << b;
        fresh
    }
}

/// Calls `visit` for every function reachable from `root_bus` of
/// `segment`, following bridges to their secondary buses (as firmware
/// numbered them). Returns the number of functions found. Bus ranges of
/// `allowed` (e.g. the MCFG window) bound the walk.
pub fn enumerate(
    cfg: &impl ConfigSpace,
    segment: u16,
    root_bus: u8,
    allowed: (u8, u8),
    mut visit: impl FnMut(&Function),
) -> usize {
    let mut seen = BusSet([0; 4]);
    // An explicit stack of buses to scan: no recursion in a kernel/driver.
    let mut stack = [0u8; 256];
    let mut depth = 0;
    let mut found = 0;
    if root_bus < allowed.0 || root_bus > allowed.1 {
        return 0;
    }
    stack[0] = root_bus;
    depth += 1;
    seen.insert(root_bus);
    while depth > 0 {
        depth -= 1;
        let bus = stack[depth];
        for device in 0..32u8 {
            let f0 = Address::new(segment, bus, device, 0);
            let Some(first) = probe(cfg, f0) else { continue };
            let multi = cfg.read8(f0, reg::HEADER_TYPE) & 0x80 != 0;
            let functions = if multi { 8 } else { 1 };
            for function in 0..functions {
                let at = Address::new(segment, bus, device, function);
                let f = if function == 0 { Some(first) } else { probe(cfg, at) };
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

/// Sizes BAR `index` the standard way: with decoding disabled, write all
/// ones, read back the mask, restore. Returns `None` for an unimplemented
/// BAR. `index` must not be the upper half of a 64-bit BAR: use [`bars`],
/// which skips those. The caller must hold the device (nothing may be
/// using it while its decoding is off).
pub fn size_bar(cfg: &mut impl ConfigSpace, at: Address, index: u8, header_type: u8) -> Option<Bar> {
    let max = match header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    if index >= max {
        return None;
    }
    let off = reg::BAR0 + 4 * index as u16;
    let command = cfg.read32(at, reg::COMMAND_STATUS);
    // Disable I/O and memory decoding while the BAR holds a bogus value.
    let decode = (reg::COMMAND_IO | reg::COMMAND_MEMORY) as u32;
    cfg.write32(at, reg::COMMAND_STATUS, command & !decode & 0xffff);
    let original = cfg.read32(at, off);
    cfg.write32(at, off, 0xffff_ffff);
    let mask = cfg.read32(at, off);
    cfg.write32(at, off, original);
    let result = if original & 1 == 1 {
        let m = mask & !3 & 0xffff;
        (m != 0).then(|| Bar {
            index,
            kind: BarKind::Io,
            prefetchable: false,
            address: (original & !3) as u64,
            size: ((!m + 1) & 0xffff) as u64,
        })
    } else {
        let prefetchable = original & 8 != 0;
        match (original >> 1) & 3 {
            0 => {
                let m = mask & !0xf;
                (m != 0).then(|| Bar {
                    index,
                    kind: BarKind::Memory32,
                    prefetchable,
                    address: (original & !0xf) as u64,
                    size: (!m).wrapping_add(1) as u64,
                })
            }
            2 if index + 1 < max => {
                let hi_off = off + 4;
                let original_hi = cfg.read32(at, hi_off);
                cfg.write32(at, hi_off, 0xffff_ffff);
                let mask_hi = cfg.read32(at, hi_off);
                cfg.write32(at, hi_off, original_hi);
                let m = (mask_hi as u64) << 32 | (mask & !0xf) as u64;
                (m != 0).then(|| Bar {
                    index,
                    kind: BarKind::Memory64,
                    prefetchable,
                    address: (original_hi as u64) << 32 | (original & !0xf) as u64,
                    size: (!m).wrapping_add(1),
                })
            }
            // Type 01 (below 1 MiB, obsolete) and 11 (reserved).
            _ => None,
        }
    };
    cfg.write32(at, reg::COMMAND_STATUS, command & 0xffff);
    result
}

/// Sizes every BAR of a function, skipping the upper halves of 64-bit ones.
pub fn bars(cfg: &mut impl ConfigSpace, at: Address, header_type: u8) -> [Option<Bar>; 6] {
    let mut out = [None; 6];
    let max = match header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    let mut i = 0;
    while i < max {
        let bar = size_bar(cfg, at, i, header_type);
        let wide = matches!(bar, Some(Bar { kind: BarKind::Memory64, .. }));
        out[i as usize] = bar;
        i += if wide { 2 } else { 1 };
    }
    out
}

/// Capability ids.
pub mod cap_id {
    pub const MSI: u8 = 0x05;
    pub const PCI_EXPRESS: u8 = 0x10;
    pub const MSIX: u8 = 0x11;
    /// Extended capability ids (in the space from 0x100).
    pub const EXT_SRIOV: u16 = 0x0010;
}

/// Iterates the legacy capability list: (id, offset) pairs.
pub struct Capabilities<'a, C: ConfigSpace> {
    cfg: &'a C,
    at: Address,
    next: u8,
    /// At most 48 capabilities fit in 192 bytes: a bound for loops.
    budget: u8,
}

pub fn capabilities<C: ConfigSpace>(cfg: &C, at: Address) -> Capabilities<'_, C> {
    let status = (cfg.read32(at, reg::COMMAND_STATUS) >> 16) as u16;
    let first = if status & reg::STATUS_CAPABILITIES != 0 { cfg.read8(at, reg::CAPABILITIES) & !3 } else { 0 };
    Capabilities { cfg, at, next: first, budget: 48 }
}

impl<C: ConfigSpace> Iterator for Capabilities<'_, C> {
    type Item = (u8, u16);
    fn next(&mut self) -> Option<(u8, u16)> {
        // Capabilities live after the 64-byte header.
        if self.next < 0x40 || self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        let off = self.next as u16;
        let head = self.cfg.read16(self.at, off);
        self.next = (head >> 8) as u8 & !3;
        Some((head as u8, off))
    }
}

/// Finds a legacy capability.
pub fn find_capability(cfg: &impl ConfigSpace, at: Address, id: u8) -> Option<u16> {
    capabilities(cfg, at).find(|(i, _)| *i == id).map(|(_, off)| off)
}

/// Finds an extended capability (PCI Express configuration space, 0x100+).
pub fn find_extended_capability(cfg: &impl ConfigSpace, at: Address, id: u16) -> Option<u16> {
    let mut off = 0x100u16;
    // 4 KiB minus the legacy 256 bytes, 4 bytes minimum each: 960 at most.
    for _ in 0..960 {
        let head = cfg.read32(at, off);
        if head == 0 || head == 0xffff_ffff {
            return None;
        }
        if head as u16 == id {
            return Some(off);
        }
        let next = ((head >> 20) & 0xffc) as u16;
        if next < 0x100 {
            return None;
        }
        off = next;
    }
    None
}

/// The MSI-X capability.
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
        let offset = find_capability(cfg, at, cap_id::MSIX)?;
        let control = cfg.read16(at, offset + 2);
        let table = cfg.read32(at, offset + 4);
        let pba = cfg.read32(at, offset + 8);
        Some(MsiX {
            offset,
            table_size: (control & 0x7ff) + 1,
            table_bar: (table & 7) as u8,
            table_offset: table & !7,
            pba_bar: (pba & 7) as u8,
            pba_offset: pba & !7,
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

/// The MSI capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    pub offset: u16,
    pub is_64bit: bool,
    pub per_vector_masking: bool,
    /// log2 of the vectors the function can request.
    pub multiple_message_capable: u8,
}

impl Msi {
    pub fn read(cfg: &impl ConfigSpace, at: Address) -> Option<Msi> {
        let offset = find_capability(cfg, at, cap_id::MSI)?;
        let control = cfg.read16(at, offset + 2);
        Some(Msi {
            offset,
            is_64bit: control & (1 << 7) != 0,
            per_vector_masking: control & (1 << 8) != 0,
            multiple_message_capable: ((control >> 1) & 7) as u8,
        })
    }
}

/// The PCI Express capability's device/port type.
pub fn express_port_type(cfg: &impl ConfigSpace, at: Address) -> Option<u8> {
    let offset = find_capability(cfg, at, cap_id::PCI_EXPRESS)?;
    Some(((cfg.read16(at, offset + 2) >> 4) & 0xf) as u8)
}

/// The SR-IOV extended capability of a physical function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SrIov {
    pub offset: u16,
    pub initial_vfs: u16,
    pub total_vfs: u16,
    pub num_vfs: u16,
    pub first_vf_offset: u16,
    pub vf_stride: u16,
    pub vf_device_id: u16,
    pub vf_enabled: bool,
}

impl SrIov {
    pub fn read(cfg: &impl ConfigSpace, at: Address) -> Option<SrIov> {
        let offset = find_extended_capability(cfg, at, cap_id::EXT_SRIOV)?;
        let control = cfg.read16(at, offset + 0x08);
        Some(SrIov {
            offset,
            initial_vfs: cfg.read16(at, offset + 0x0c),
            total_vfs: cfg.read16(at, offset + 0x0e),
            num_vfs: cfg.read16(at, offset + 0x10),
            first_vf_offset: cfg.read16(at, offset + 0x14),
            vf_stride: cfg.read16(at, offset + 0x16),
            vf_device_id: cfg.read16(at, offset + 0x1a),
            vf_enabled: control & 1 != 0,
        })
    }

    /// The address of virtual function `n` (1-based) of the PF at `pf`:
    /// routing id = PF's + First VF Offset + (n - 1) * VF Stride.
    pub fn vf_address(&self, pf: Address, n: u16) -> Option<Address> {
        if n == 0 || n > self.total_vfs {
            return None;
        }
        let rid = (pf.requester_id() as u32)
            .checked_add(self.first_vf_offset as u32)?
            .checked_add((n as u32 - 1) * self.vf_stride as u32)?;
        if rid > 0xffff {
            return None;
        }
        Some(Address::new(pf.segment, (rid >> 8) as u8, ((rid >> 3) & 0x1f) as u8, (rid & 7) as u8))
    }
}

#[cfg(test)]
mod tests;
