//! LBA windows: the part of a namespace a job, a test or a client may
//! use, derived from what the controller says — the namespace's size
//! (Identify Namespace NSZE) and block size (FLBAS → LBA format → LBADS) —
//! and never written down as LBA numbers, which mean different bytes on a
//! 512-byte and a 4 KiB-block namespace.
//!
//! Windows are given in bytes (or MiB) of the namespace; a window whose
//! start or length is not a whole number of blocks is refused with the
//! block size named, never rounded into a different range.

use core::fmt;

pub const MIB: u64 = 1 << 20;

/// `blocks` blocks of a namespace from LBA `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbaWindow {
    pub first: u64,
    pub blocks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowError {
    /// Not a block size a namespace can have (a power of two, 512 B..=64 KiB).
    BadBlockSize { block_size: u32 },
    /// `bytes` (the window's `what`) is not a multiple of the block size.
    NotBlockMultiple { what: &'static str, bytes: u64, block_size: u32 },
    /// A window of no blocks.
    Empty,
    /// The window (bytes `offset..offset + len`) ends past the namespace.
    OutsideNamespace { offset: u64, len: u64, namespace_bytes: u64 },
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowError::BadBlockSize { block_size } => write!(f, "{block_size} is not a namespace block size"),
            WindowError::NotBlockMultiple { what, bytes, block_size } => {
                write!(f, "the window's {what} ({bytes} bytes) is not a whole number of the namespace's {block_size}-byte blocks")
            }
            WindowError::Empty => write!(f, "the window holds no block"),
            WindowError::OutsideNamespace { offset, len, namespace_bytes } => write!(
                f,
                "a window of {len} bytes at byte {offset} does not fit the namespace ({namespace_bytes} bytes)"
            ),
        }
    }
}

/// `bytes` as a number of `block_size` blocks; refused unless exact.
pub fn blocks_in(what: &'static str, bytes: u64, block_size: u32) -> Result<u64, WindowError> {
    check_block_size(block_size)?;
    if !bytes.is_multiple_of(block_size as u64) {
        return Err(WindowError::NotBlockMultiple { what, bytes, block_size });
    }
    Ok(bytes / block_size as u64)
}

fn check_block_size(block_size: u32) -> Result<(), WindowError> {
    if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
        return Err(WindowError::BadBlockSize { block_size });
    }
    Ok(())
}

impl LbaWindow {
    /// The whole namespace.
    pub fn whole(ns_blocks: u64) -> LbaWindow {
        LbaWindow { first: 0, blocks: ns_blocks }
    }

    /// Bytes `offset..offset + len` of a namespace of `ns_blocks` blocks of
    /// `block_size` bytes.
    pub fn from_bytes(offset: u64, len: u64, block_size: u32, ns_blocks: u64) -> Result<LbaWindow, WindowError> {
        let first = blocks_in("start", offset, block_size)?;
        let blocks = blocks_in("length", len, block_size)?;
        if blocks == 0 {
            return Err(WindowError::Empty);
        }
        let namespace_bytes = ns_blocks.saturating_mul(block_size as u64);
        if first.checked_add(blocks).is_none_or(|end| end > ns_blocks) {
            return Err(WindowError::OutsideNamespace { offset, len, namespace_bytes });
        }
        Ok(LbaWindow { first, blocks })
    }

    /// MiB `first_mib..first_mib + mib` of the namespace.
    pub fn from_mib(first_mib: u64, mib: u64, block_size: u32, ns_blocks: u64) -> Result<LbaWindow, WindowError> {
        let (offset, len) = (first_mib.saturating_mul(MIB), mib.saturating_mul(MIB));
        if first_mib.checked_mul(MIB).is_none() || mib.checked_mul(MIB).is_none() {
            return Err(WindowError::OutsideNamespace {
                offset,
                len,
                namespace_bytes: ns_blocks.saturating_mul(block_size as u64),
            });
        }
        LbaWindow::from_bytes(offset, len, block_size, ns_blocks)
    }

    /// A window packed in one word, as init passes it to a driver: 0 = the
    /// whole namespace; else the low 32 bits are the first MiB and the
    /// high 32 bits the length in MiB.
    pub fn from_mib_word(word: u64, block_size: u32, ns_blocks: u64) -> Result<LbaWindow, WindowError> {
        if word == 0 {
            check_block_size(block_size)?;
            return Ok(LbaWindow::whole(ns_blocks));
        }
        LbaWindow::from_mib(word & 0xffff_ffff, word >> 32, block_size, ns_blocks)
    }

    /// One past the last LBA.
    pub fn end(&self) -> u64 {
        self.first + self.blocks
    }

    /// The namespace LBA of window LBA `lba` for a transfer of `blocks`,
    /// or `None` if any of it falls outside the window.
    pub fn translate(&self, lba: u64, blocks: u64) -> Option<u64> {
        let end = lba.checked_add(blocks)?;
        if end > self.blocks {
            return None;
        }
        Some(self.first + lba)
    }

    /// The part of this window from byte `offset` (relative to the
    /// window) for `len` bytes: for carving a job's window into areas.
    pub fn sub_bytes(&self, offset: u64, len: u64, block_size: u32) -> Result<LbaWindow, WindowError> {
        let w = LbaWindow::from_bytes(offset, len, block_size, self.blocks)?;
        Ok(LbaWindow { first: self.first + w.first, blocks: w.blocks })
    }
}
