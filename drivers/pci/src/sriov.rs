//! The PCI Express extended-capability list (0x100..0x1000) and the SR-IOV
//! capability. pci_types 0.10.1 covers neither, so both are this crate's
//! own code.

use crate::bar::{memory_size, shape, writable_bits, Bar, BarKind, Shape};
use crate::capabilities::ListEnd;
use crate::{cap_id, Address, ConfigSpace};

/// One extended capability header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtendedCapability {
    pub id: u16,
    pub version: u8,
    pub offset: u16,
}

const EXTENDED_START: u16 = 0x100;
const SPACE_END: u16 = 0x1000;

/// Walks the extended capability list, calling `visit` for each entry until
/// it returns false. Every dword slot is visited at most once (960 at
/// most), so the walk ends whatever the next pointers say. A first header
/// of zero means "no extended capabilities" (PCIe 5.0 §7.6.3): `Complete`.
/// A conventional PCI function behind ECAM reads zero or all ones there.
pub fn walk_extended_capabilities(
    cfg: &impl ConfigSpace,
    at: Address,
    mut visit: impl FnMut(ExtendedCapability) -> bool,
) -> ListEnd {
    if at.device >= 32 || at.function >= 8 || cfg.read32(at, 0) as u16 == 0xffff {
        return ListEnd::NoFunction;
    }
    // One bit per dword of the 4 KiB space.
    let mut visited = [0u64; (SPACE_END / 4 / 64) as usize];
    let mut offset = EXTENDED_START;
    loop {
        let slot = (offset / 4) as usize;
        if visited[slot / 64] & (1 << (slot % 64)) != 0 {
            return ListEnd::Loop { offset };
        }
        visited[slot / 64] |= 1 << (slot % 64);
        let head = cfg.read32(at, offset);
        if head == u32::MAX {
            return ListEnd::AllOnes { offset };
        }
        if head == 0 {
            return ListEnd::Complete;
        }
        let entry = ExtendedCapability { id: head as u16, version: ((head >> 16) & 0xf) as u8, offset };
        if !visit(entry) {
            return ListEnd::Complete;
        }
        // Bits 20..31; the low two bits are reserved.
        let next = ((head >> 20) & 0xffc) as u16;
        if next == 0 {
            return ListEnd::Complete;
        }
        if next < EXTENDED_START {
            return ListEnd::PointsIntoHeader { pointer: next };
        }
        offset = next;
    }
}

/// Finds an extended capability (PCI Express configuration space, 0x100+).
pub fn find_extended_capability(cfg: &impl ConfigSpace, at: Address, id: u16) -> Option<u16> {
    let mut found = None;
    walk_extended_capabilities(cfg, at, |c| {
        if c.id == id {
            found = Some(c.offset);
        }
        found.is_none()
    });
    found
}

/// SR-IOV capability registers (offsets from the capability).
mod regs {
    pub const CONTROL: u16 = 0x08;
    pub const INITIAL_VFS: u16 = 0x0c;
    pub const TOTAL_VFS: u16 = 0x0e;
    pub const NUM_VFS: u16 = 0x10;
    pub const FIRST_VF_OFFSET: u16 = 0x14;
    pub const VF_STRIDE: u16 = 0x16;
    pub const VF_DEVICE_ID: u16 = 0x1a;
    pub const VF_BAR0: u16 = 0x24;

    pub const CONTROL_VF_ENABLE: u16 = 1 << 0;
    /// VF Memory Space Enable: VF BARs decode only while it is set.
    pub const CONTROL_VF_MSE: u16 = 1 << 3;
}

/// Why `SrIov::enable_vfs` refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnableError {
    /// VF Enable was already set (by firmware): left as it is.
    AlreadyEnabled,
    /// Zero VFs, or more than TotalVFs.
    BadCount { asked: u16, total: u16 },
    /// NumVFs did not read back as written.
    NumVfsNotLatched { wrote: u16, read: u16 },
    /// VF BAR `index` did not read back at the address written.
    BarNotLatched { index: u8, wrote: u64, read: u64 },
    /// VF Enable did not read back as set.
    EnableNotLatched,
}

impl core::fmt::Display for EnableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            EnableError::AlreadyEnabled => write!(f, "VF Enable is already set"),
            EnableError::BadCount { asked, total } => write!(f, "{asked} VFs asked, TotalVFs is {total}"),
            EnableError::NumVfsNotLatched { wrote, read } => write!(f, "NumVFs reads {read} after writing {wrote}"),
            EnableError::BarNotLatched { index, wrote, read } => {
                write!(f, "VF BAR {index} reads {read:#x} after writing {wrote:#x}")
            }
            EnableError::EnableNotLatched => write!(f, "VF Enable does not read back as set"),
        }
    }
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
        let r16 = |reg: u16| cfg.read16(at, offset + reg);
        Some(SrIov {
            offset,
            initial_vfs: r16(regs::INITIAL_VFS),
            total_vfs: r16(regs::TOTAL_VFS),
            num_vfs: r16(regs::NUM_VFS),
            first_vf_offset: r16(regs::FIRST_VF_OFFSET),
            vf_stride: r16(regs::VF_STRIDE),
            vf_device_id: r16(regs::VF_DEVICE_ID),
            vf_enabled: r16(regs::CONTROL) & regs::CONTROL_VF_ENABLE != 0,
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

    /// Sizes the VF BARs (in the capability, at +0x24..+0x3c). Each size is
    /// one VF's; VF `n`'s BAR `i` is at `address + (n - 1) * size`. VF BARs
    /// are memory only: an I/O or reserved-type register reads as `None`.
    /// VF memory decoding is off while they are sized and restored after;
    /// the caller must hold the PF.
    pub fn vf_bars(&self, cfg: &mut impl ConfigSpace, pf: Address) -> [Option<Bar>; 6] {
        let mut out = [None; 6];
        let control_at = self.offset + regs::CONTROL;
        // Control is the low half of its dword; the status half above is
        // write-one-to-clear, so it is written as zero.
        let control = cfg.read16(pf, control_at);
        cfg.write32(pf, control_at, (control & !regs::CONTROL_VF_MSE) as u32);
        let mut i = 0u8;
        while i < 6 {
            let at = self.offset + regs::VF_BAR0 + 4 * i as u16;
            let raw = cfg.read32(pf, at);
            let (wide, prefetchable) = match shape(raw) {
                Shape::Memory { wide, prefetchable } => (wide, prefetchable),
                Shape::Io | Shape::Unusable => {
                    i += 1;
                    continue;
                }
            };
            if wide && i == 5 {
                break;
            }
            let stuck_low = writable_bits(cfg, pf, at);
            let (stuck_high, high) =
                if wide { (writable_bits(cfg, pf, at + 4), cfg.read32(pf, at + 4)) } else { (0, 0) };
            out[i as usize] = memory_size(stuck_low, stuck_high).map(|size| Bar {
                index: i,
                kind: if wide { BarKind::Memory64 } else { BarKind::Memory32 },
                prefetchable,
                address: (high as u64) << 32 | (raw & !0xf) as u64,
                size,
            });
            i += if wide { 2 } else { 1 };
        }
        cfg.write32(pf, control_at, control as u32);
        out
    }

    /// Turns on `num_vfs` virtual functions: NumVFs, then each VF BAR in
    /// `bars` (as `vf_bars` sized them) at `addresses[i]`, then VF Enable
    /// and VF Memory Space Enable together (as Linux does). Each write is
    /// read back. The caller must then wait 100 ms before it sends a
    /// configuration request to a VF (PCIe 5.0 §9.3.3.3.1) and must hold
    /// the PF. On an error after NumVFs was written, VF Enable stays clear.
    pub fn enable_vfs(
        &self,
        cfg: &mut impl ConfigSpace,
        pf: Address,
        num_vfs: u16,
        bars: &[Option<Bar>; 6],
        addresses: &[Option<u64>; 6],
    ) -> Result<(), EnableError> {
        let control_at = self.offset + regs::CONTROL;
        let control = cfg.read16(pf, control_at);
        if control & regs::CONTROL_VF_ENABLE != 0 {
            return Err(EnableError::AlreadyEnabled);
        }
        if num_vfs == 0 || num_vfs > self.total_vfs {
            return Err(EnableError::BadCount { asked: num_vfs, total: self.total_vfs });
        }
        // VF BARs are written with VF decoding off.
        cfg.write32(pf, control_at, (control & !regs::CONTROL_VF_MSE) as u32);
        // NumVFs is the low half of its dword; the high half (Function
        // Dependency Link) is read-only.
        cfg.write32(pf, self.offset + regs::NUM_VFS, num_vfs as u32);
        let read = cfg.read16(pf, self.offset + regs::NUM_VFS);
        if read != num_vfs {
            return Err(EnableError::NumVfsNotLatched { wrote: num_vfs, read });
        }
        for (bar, address) in bars.iter().zip(addresses) {
            let (Some(bar), Some(address)) = (bar, address) else { continue };
            let at = self.offset + regs::VF_BAR0 + 4 * bar.index as u16;
            let flags = cfg.read32(pf, at) & 0xf;
            cfg.write32(pf, at, (*address as u32 & !0xf) | flags);
            if bar.kind == BarKind::Memory64 {
                cfg.write32(pf, at + 4, (address >> 32) as u32);
            }
            let high = if bar.kind == BarKind::Memory64 { cfg.read32(pf, at + 4) as u64 } else { 0 };
            let read = high << 32 | (cfg.read32(pf, at) & !0xf) as u64;
            if read != *address {
                return Err(EnableError::BarNotLatched { index: bar.index, wrote: *address, read });
            }
        }
        let on = control | regs::CONTROL_VF_ENABLE | regs::CONTROL_VF_MSE;
        cfg.write32(pf, control_at, on as u32);
        if cfg.read16(pf, control_at) & regs::CONTROL_VF_ENABLE == 0 {
            return Err(EnableError::EnableNotLatched);
        }
        Ok(())
    }
}
