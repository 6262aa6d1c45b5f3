//! Building the legacy-mode translation structures (VT-d spec 9.1-9.8):
//!
//! ```text
//! RTADDR -> root table (256 x 128-bit, index = bus)
//!        -> context table (256 x 128-bit, index = devfn)
//!        -> second-level page table, 3 or 4 levels of 512 x 64-bit
//! ```
//!
//! All memory is reached through [`PhysMem`] and every new table frame
//! comes from a caller's [`FrameSource`]. Table pages are never freed here:
//! they belong to whoever supplied them and are reclaimed with the device.

use super::cap::{Cap, Levels};
use super::{Bdf, FrameSource, PhysMem, Rights, PAGE_SIZE};
use core::fmt;

/// Second-level entry bits.
pub mod sl {
    pub const READ: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    /// Page size: set in a level-2 or level-3 entry for a 2 MiB / 1 GiB page.
    pub const PAGE_SIZE: u64 = 1 << 7;
    /// Snoop behaviour override; left clear (needs ECAP.SC, and we want
    /// the default, the device's own snoop attribute).
    pub const SNOOP: u64 = 1 << 11;
    /// Bits 51:12 hold the address.
    pub const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
}

/// Root and context entry fields (low / high quadwords).
pub mod entry {
    pub const PRESENT: u64 = 1 << 0;
    pub const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
    /// Context entry, low quadword: translation type, bits 3:2.
    pub const CONTEXT_TT_SHIFT: u32 = 2;
    /// Context entry, high quadword: address width bits 2:0, domain id 23:8.
    pub const CONTEXT_AW_MASK: u64 = 0x7;
    pub const CONTEXT_DID_SHIFT: u32 = 8;
}

pub const ROOT_ENTRY_BYTES: u64 = 16;
pub const CONTEXT_ENTRY_BYTES: u64 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// The frame source ran dry. Tables linked before that stay valid.
    OutOfFrames,
    /// The frame source returned a frame not 4 KiB aligned.
    FrameMisaligned {
        pa: u64,
    },
    /// The IOVA or physical address is not 4 KiB aligned.
    Misaligned {
        address: u64,
    },
    /// The IOVA is not below 2^(address width) of the device's tables.
    IovaBeyondWidth {
        iova: u64,
        width: u32,
    },
    /// The physical address is not below 2^(host address width).
    PhysicalBeyondWidth {
        pa: u64,
        width: u8,
    },
    /// Mapping with no rights would look exactly like "not present".
    NoRights,
    /// The IOVA is already mapped; remapping must be an explicit unmap
    /// first, so a grant can never silently replace another.
    AlreadyMapped {
        iova: u64,
        existing: u64,
    },
    NotMapped {
        iova: u64,
    },
    /// A large page someone else installed covers the IOVA.
    LargePageInTheWay {
        iova: u64,
        level: u32,
    },
    /// The device already has a context entry.
    ContextPresent {
        bdf: Bdf,
    },
    ContextNotPresent {
        bdf: Bdf,
    },
    /// CAP.SAGAW does not offer this depth.
    LevelsUnsupported {
        levels: Levels,
    },
    /// Domain id out of CAP.ND's range, or 0 under caching mode.
    DomainIdUnusable {
        domain_id: u16,
    },
    /// An existing context entry holds a width this crate does not build.
    UnknownAddressWidth {
        bdf: Bdf,
        aw: u64,
    },
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TableError::OutOfFrames => write!(f, "no frame left for an I/O page table"),
            TableError::FrameMisaligned { pa } => write!(f, "table frame {pa:#x} is not 4 KiB aligned"),
            TableError::Misaligned { address } => write!(f, "address {address:#x} is not 4 KiB aligned"),
            TableError::IovaBeyondWidth { iova, width } => {
                write!(f, "IOVA {iova:#x} is beyond the {width}-bit I/O address space")
            }
            TableError::PhysicalBeyondWidth { pa, width } => {
                write!(f, "physical address {pa:#x} is beyond the {width}-bit host address width")
            }
            TableError::NoRights => write!(f, "a mapping needs read or write rights"),
            TableError::AlreadyMapped { iova, existing } => {
                write!(f, "IOVA {iova:#x} is already mapped (entry {existing:#x})")
            }
            TableError::NotMapped { iova } => write!(f, "IOVA {iova:#x} is not mapped"),
            TableError::LargePageInTheWay { iova, level } => {
                write!(f, "IOVA {iova:#x} lies in a large page at level {level}")
            }
            TableError::ContextPresent { bdf } => write!(f, "device {bdf} already has a context entry"),
            TableError::ContextNotPresent { bdf } => write!(f, "device {bdf} has no context entry"),
            TableError::LevelsUnsupported { levels } => {
                write!(f, "the unit does not support {}-level tables", levels.count())
            }
            TableError::DomainIdUnusable { domain_id } => write!(f, "domain id {domain_id} is not usable on this unit"),
            TableError::UnknownAddressWidth { bdf, aw } => {
                write!(f, "device {bdf} has context AW {aw}, not 3- or 4-level")
            }
        }
    }
}

/// Index of `iova` in a table at `level` (1 = leaf table).
pub(crate) const fn level_index(iova: u64, level: u32) -> u64 {
    (iova >> (12 + 9 * (level - 1))) & 0x1ff
}

fn take_zeroed_frame(mem: &mut impl PhysMem, frames: &mut impl FrameSource) -> Result<u64, TableError> {
    let pa = frames.take_frame().ok_or(TableError::OutOfFrames)?;
    if pa % PAGE_SIZE != 0 {
        return Err(TableError::FrameMisaligned { pa });
    }
    for i in 0..PAGE_SIZE / 8 {
        mem.write_u64(pa + i * 8, 0);
    }
    Ok(pa)
}

/// How a device's context entry is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextConfig {
    /// Tags the device's IOTLB entries; invalidations name it.
    pub domain_id: u16,
    pub levels: Levels,
    /// DMAR host address width: physical addresses must be below 2^this.
    pub host_address_width: u8,
}

/// The root table of one remapping unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootTable {
    pa: u64,
}

impl RootTable {
    /// Makes an empty root table in a frame from `frames`. Load its address
    /// with [`super::regs::rtaddr_legacy`] and GCMD.SRTP.
    pub fn create(mem: &mut impl PhysMem, frames: &mut impl FrameSource) -> Result<RootTable, TableError> {
        Ok(RootTable { pa: take_zeroed_frame(mem, frames)? })
    }

    /// An existing root table.
    pub const fn at(pa: u64) -> RootTable {
        RootTable { pa: pa & !(PAGE_SIZE - 1) }
    }

    pub const fn pa(&self) -> u64 {
        self.pa
    }

    const fn context_entry_pa(context_table: u64, bdf: Bdf) -> u64 {
        context_table + bdf.devfn() as u64 * CONTEXT_ENTRY_BYTES
    }

    /// The context table for `bus`, creating (and linking) it if absent.
    fn context_table(&self, mem: &mut impl PhysMem, frames: &mut impl FrameSource, bus: u8) -> Result<u64, TableError> {
        let root_entry = self.pa + bus as u64 * ROOT_ENTRY_BYTES;
        let lo = mem.read_u64(root_entry);
        if lo & entry::PRESENT != 0 {
            return Ok(lo & entry::ADDRESS);
        }
        let table = take_zeroed_frame(mem, frames)?;
        // High quadword first, then the low one with P: the unit must never
        // see P = 1 next to a stale high half.
        mem.write_u64(root_entry + 8, 0);
        mem.write_u64(root_entry, table | entry::PRESENT);
        Ok(table)
    }

    /// Gives `bdf` a fresh, empty I/O address space: a second-level table
    /// and a context entry pointing at it (legacy mode, TT = 00: only
    /// translated DMA, no pass-through). Refuses if `bdf` already has one.
    ///
    /// Under caching mode the caller must then invalidate the context
    /// cache for the device (and the IOTLB for the domain); otherwise only
    /// a write-buffer flush is needed if CAP.RWBF says so.
    pub fn attach(
        &self,
        mem: &mut impl PhysMem,
        frames: &mut impl FrameSource,
        bdf: Bdf,
        config: ContextConfig,
        cap: Cap,
    ) -> Result<DeviceSpace, TableError> {
        self.check_config(mem, bdf, config, cap)?;
        // Context table first: if frames run out there, no frame has been
        // spent on a second-level table nothing points at.
        self.context_table(mem, frames, bdf.bus)?;
        let space_root = take_zeroed_frame(mem, frames)?;
        let space = DeviceSpace {
            root: space_root,
            levels: config.levels,
            domain_id: config.domain_id,
            host_address_width: config.host_address_width,
        };
        self.write_context(mem, frames, bdf, &space)?;
        Ok(space)
    }

    /// Points `bdf`'s context entry at an existing I/O address space (the
    /// same domain), e.g. for functions of one device that must share
    /// DMA mappings.
    pub fn attach_shared(
        &self,
        mem: &mut impl PhysMem,
        frames: &mut impl FrameSource,
        bdf: Bdf,
        space: &DeviceSpace,
        cap: Cap,
    ) -> Result<(), TableError> {
        let config = ContextConfig {
            domain_id: space.domain_id,
            levels: space.levels,
            host_address_width: space.host_address_width,
        };
        self.check_config(mem, bdf, config, cap)?;
        self.write_context(mem, frames, bdf, space)
    }

    fn check_config(&self, mem: &impl PhysMem, bdf: Bdf, config: ContextConfig, cap: Cap) -> Result<(), TableError> {
        if !cap.supports(config.levels) {
            return Err(TableError::LevelsUnsupported { levels: config.levels });
        }
        if !cap.domain_id_usable(config.domain_id) {
            return Err(TableError::DomainIdUnusable { domain_id: config.domain_id });
        }
        if self.context_lo(mem, bdf) & entry::PRESENT != 0 {
            return Err(TableError::ContextPresent { bdf });
        }
        Ok(())
    }

    fn write_context(
        &self,
        mem: &mut impl PhysMem,
        frames: &mut impl FrameSource,
        bdf: Bdf,
        space: &DeviceSpace,
    ) -> Result<(), TableError> {
        let table = self.context_table(mem, frames, bdf.bus)?;
        let at = Self::context_entry_pa(table, bdf);
        let hi = space.levels.aw_field() | (space.domain_id as u64) << entry::CONTEXT_DID_SHIFT;
        // TT = 00 (bits 3:2 clear), FPD clear: faults are recorded.
        let lo = space.root | entry::PRESENT;
        mem.write_u64(at + 8, hi);
        mem.write_u64(at, lo);
        Ok(())
    }

    fn context_lo(&self, mem: &impl PhysMem, bdf: Bdf) -> u64 {
        self.context_entry(mem, bdf).map(|(lo, _)| lo).unwrap_or(0)
    }

    /// Both quadwords of `bdf`'s context entry, if its bus has a context table.
    fn context_entry(&self, mem: &impl PhysMem, bdf: Bdf) -> Option<(u64, u64)> {
        let root_lo = mem.read_u64(self.pa + bdf.bus as u64 * ROOT_ENTRY_BYTES);
        if root_lo & entry::PRESENT == 0 {
            return None;
        }
        let at = Self::context_entry_pa(root_lo & entry::ADDRESS, bdf);
        Some((mem.read_u64(at), mem.read_u64(at + 8)))
    }

    /// The address space `bdf` translates through, read back from its
    /// context entry (the kernel keeps no copy: the tables are the state).
    pub fn device_space(
        &self,
        mem: &impl PhysMem,
        bdf: Bdf,
        host_address_width: u8,
    ) -> Result<DeviceSpace, TableError> {
        let (lo, hi) = self.context_entry(mem, bdf).ok_or(TableError::ContextNotPresent { bdf })?;
        if lo & entry::PRESENT == 0 {
            return Err(TableError::ContextNotPresent { bdf });
        }
        let aw = hi & entry::CONTEXT_AW_MASK;
        let levels = Levels::from_aw_field(aw).ok_or(TableError::UnknownAddressWidth { bdf, aw })?;
        Ok(DeviceSpace {
            root: lo & entry::ADDRESS,
            levels,
            domain_id: (hi >> entry::CONTEXT_DID_SHIFT) as u16,
            host_address_width,
        })
    }

    /// Clears `bdf`'s context entry: the device loses all DMA. Returns the
    /// space it had so the caller can invalidate the context cache
    /// (device-selective) and the IOTLB (the space's domain) and reclaim
    /// the table frames.
    pub fn detach(&self, mem: &mut impl PhysMem, bdf: Bdf, host_address_width: u8) -> Result<DeviceSpace, TableError> {
        let space = self.device_space(mem, bdf, host_address_width)?;
        let root_lo = mem.read_u64(self.pa + bdf.bus as u64 * ROOT_ENTRY_BYTES);
        let at = Self::context_entry_pa(root_lo & entry::ADDRESS, bdf);
        // Low quadword (with P) first, so the entry is never present with
        // a half-cleared high quadword.
        mem.write_u64(at, 0);
        mem.write_u64(at + 8, 0);
        Ok(space)
    }
}

/// A device's I/O address space: one second-level page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSpace {
    root: u64,
    levels: Levels,
    domain_id: u16,
    host_address_width: u8,
}

/// What `unmap` removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmapped {
    pub pa: u64,
    pub rights: Rights,
}

impl DeviceSpace {
    pub const fn root(&self) -> u64 {
        self.root
    }
    pub const fn levels(&self) -> Levels {
        self.levels
    }
    pub const fn domain_id(&self) -> u16 {
        self.domain_id
    }

    fn check_iova(&self, iova: u64) -> Result<(), TableError> {
        if !iova.is_multiple_of(PAGE_SIZE) {
            return Err(TableError::Misaligned { address: iova });
        }
        let width = self.levels.address_width();
        if iova >> width != 0 {
            return Err(TableError::IovaBeyondWidth { iova, width });
        }
        Ok(())
    }

    /// Walks to the leaf table for `iova`, creating missing tables from
    /// `frames`. Returns the physical address of the leaf entry.
    fn make_leaf_entry(
        &self,
        mem: &mut impl PhysMem,
        frames: &mut impl FrameSource,
        iova: u64,
    ) -> Result<u64, TableError> {
        let mut table = self.root;
        for level in (2..=self.levels.count()).rev() {
            let at = table + level_index(iova, level) * 8;
            let e = mem.read_u64(at);
            if e & (sl::READ | sl::WRITE) == 0 {
                let next = take_zeroed_frame(mem, frames)?;
                // Non-leaf entries grant everything; the leaf decides
                // (hardware ANDs the rights of every level).
                mem.write_u64(at, next | sl::READ | sl::WRITE);
                table = next;
            } else if e & sl::PAGE_SIZE != 0 {
                return Err(TableError::LargePageInTheWay { iova, level });
            } else {
                table = e & sl::ADDRESS;
            }
        }
        Ok(table + level_index(iova, 1) * 8)
    }

    /// The leaf entry's address for `iova`, or `None` when a table on the
    /// way is missing. Never allocates.
    fn find_leaf_entry(&self, mem: &impl PhysMem, iova: u64) -> Result<Option<u64>, TableError> {
        let mut table = self.root;
        for level in (2..=self.levels.count()).rev() {
            let e = mem.read_u64(table + level_index(iova, level) * 8);
            if e & (sl::READ | sl::WRITE) == 0 {
                return Ok(None);
            }
            if e & sl::PAGE_SIZE != 0 {
                return Err(TableError::LargePageInTheWay { iova, level });
            }
            table = e & sl::ADDRESS;
        }
        Ok(Some(table + level_index(iova, 1) * 8))
    }

    /// Maps the 4 KiB page at `iova` to `pa` with `rights`. Refuses to
    /// replace an existing mapping. Under caching mode the caller must
    /// invalidate the IOTLB for the page afterwards; otherwise a new
    /// mapping needs no invalidation (not-present entries are not cached).
    pub fn map(
        &self,
        mem: &mut impl PhysMem,
        frames: &mut impl FrameSource,
        iova: u64,
        pa: u64,
        rights: Rights,
    ) -> Result<(), TableError> {
        self.check_iova(iova)?;
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(TableError::Misaligned { address: pa });
        }
        if (self.host_address_width < 64 && pa >> self.host_address_width != 0) || pa & !sl::ADDRESS != 0 {
            return Err(TableError::PhysicalBeyondWidth { pa, width: self.host_address_width });
        }
        if !rights.read && !rights.write {
            return Err(TableError::NoRights);
        }
        let leaf = self.make_leaf_entry(mem, frames, iova)?;
        let existing = mem.read_u64(leaf);
        if existing & (sl::READ | sl::WRITE) != 0 {
            return Err(TableError::AlreadyMapped { iova, existing });
        }
        let bits = if rights.read { sl::READ } else { 0 } | if rights.write { sl::WRITE } else { 0 };
        mem.write_u64(leaf, pa | bits);
        Ok(())
    }

    /// Removes the mapping of the page at `iova`. The caller must then
    /// invalidate the IOTLB (see `IotlbInvalidation::for_page`) and wait
    /// for it before reusing the frame: until then the device may still
    /// reach it through a cached translation.
    pub fn unmap(&self, mem: &mut impl PhysMem, iova: u64) -> Result<Unmapped, TableError> {
        self.check_iova(iova)?;
        let leaf = self.find_leaf_entry(mem, iova)?.ok_or(TableError::NotMapped { iova })?;
        let e = mem.read_u64(leaf);
        if e & (sl::READ | sl::WRITE) == 0 {
            return Err(TableError::NotMapped { iova });
        }
        mem.write_u64(leaf, 0);
        Ok(Unmapped { pa: e & sl::ADDRESS, rights: Rights { read: e & sl::READ != 0, write: e & sl::WRITE != 0 } })
    }

    /// The mapping of the page at `iova`, if any (software view; the walker
    /// in [`super::walk`] gives the hardware's view).
    pub fn lookup(&self, mem: &impl PhysMem, iova: u64) -> Result<Option<Unmapped>, TableError> {
        self.check_iova(iova & !(PAGE_SIZE - 1))?;
        let Some(leaf) = self.find_leaf_entry(mem, iova & !(PAGE_SIZE - 1))? else {
            return Ok(None);
        };
        let e = mem.read_u64(leaf);
        if e & (sl::READ | sl::WRITE) == 0 {
            return Ok(None);
        }
        Ok(Some(Unmapped {
            pa: e & sl::ADDRESS,
            rights: Rights { read: e & sl::READ != 0, write: e & sl::WRITE != 0 },
        }))
    }
}
