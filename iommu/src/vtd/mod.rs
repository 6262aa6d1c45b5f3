//! VT-d structures and register encodings (Intel VT-d specification,
//! legacy translation mode: root table -> context table -> second-level
//! page table).

pub mod cap;
pub mod fault;
pub mod invalidation;
pub mod irq;
pub mod regs;
pub mod tables;
pub mod unit;
pub mod walk;

use core::fmt;

pub const PAGE_SIZE: u64 = 4096;

/// Physical memory as the I/O-MMU sees it: the kernel implements this over
/// its direct map; tests implement it over a `Vec`.
///
/// `write_u64` must make the store visible to the remapping hardware: when
/// ECAP.C = 0 (the unit does not snoop) the implementation must `clflush`
/// the line after writing. QEMU's unit reports C = 0 but reads guest RAM
/// directly, so a plain store suffices there.
pub trait PhysMem {
    fn read_u64(&self, pa: u64) -> u64;
    fn write_u64(&mut self, pa: u64, v: u64);
}

/// Where table frames come from. The kernel keeps no allocator after boot,
/// so the caller (ultimately the process asking for the mapping) supplies
/// 4 KiB-aligned frames it owns. Contents need not be zero: the builder
/// clears each frame before linking it.
pub trait FrameSource {
    fn take_frame(&mut self) -> Option<u64>;
}

/// A PCI requester: bus, device (0..=31), function (0..=7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    /// `None` when the device or function number is out of range.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Bdf> {
        if device > 31 || function > 7 {
            return None;
        }
        Some(Bdf { bus, device, function })
    }

    /// The 16-bit source id (requester id) VT-d uses: bus << 8 | devfn.
    pub const fn source_id(self) -> u16 {
        ((self.bus as u16) << 8) | self.devfn() as u16
    }

    pub const fn from_source_id(sid: u16) -> Bdf {
        Bdf { bus: (sid >> 8) as u8, device: ((sid >> 3) & 0x1f) as u8, function: (sid & 7) as u8 }
    }

    /// Index into the context table.
    pub const fn devfn(self) -> u8 {
        (self.device << 3) | self.function
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// The kind of DMA request being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Rights a device holds on a page (second-level R and W bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    pub read: bool,
    pub write: bool,
}

impl Rights {
    pub const READ: Rights = Rights { read: true, write: false };
    pub const WRITE: Rights = Rights { read: false, write: true };
    pub const READ_WRITE: Rights = Rights { read: true, write: true };

    pub const fn allows(self, access: Access) -> bool {
        match access {
            Access::Read => self.read,
            Access::Write => self.write,
        }
    }

    /// True when `self` grants nothing that `limit` does not.
    pub const fn within(self, limit: Rights) -> bool {
        (!self.read || limit.read) && (!self.write || limit.write)
    }
}
