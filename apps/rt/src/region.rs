//! Ordinary Rust views (`&[u8]`, `&mut [u8]`) of memory this process has
//! mapped outside the Rust program: persistent memory (an NVDIMM range),
//! or RAM frames its parent gave it as a private region. A libOS that
//! manages its own layout there (libdb's `PmemRegion`) wants slices, not
//! volatile word accesses; [`Region`] is the one place that makes them.
//!
//! What makes the slices sound, and what the program must keep:
//! 1. the range lies at or above [`crate::mmio::WINDOW_FLOOR`] and inside
//!    the user half, so it is never memory the Rust program (code, stacks,
//!    heap) owns;
//! 2. claims are registered, so two `Region`s of this process never
//!    overlap (a `&mut [u8]` of one cannot alias another);
//! 3. every page is touched when the region is claimed, so an unmapped
//!    page faults there (an upcall naming the address), not later inside
//!    libOS code;
//! 4. the program must not `unmap` the range while the `Region` lives, and
//!    must not hand it to another process with write rights: then nothing
//!    but this `Region` changes it. (Regions are for private memory; memory
//!    shared with a live peer is [`crate::mmio::Window`]'s job.)
//!
//! Durability goes through the `pmem` crate's CPU module: `clwb`, else
//! `clflushopt`, else `clflush`, chosen by CPUID once per region, and
//! `sfence`.

use core::sync::atomic::{AtomicU64, Ordering};
use exo_abi::{PAGE_SIZE, USER_END};
use pmem::cpu::{self, FlushMethod};

/// Why a range could not be claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// Empty, not page aligned, below the window floor or past the user half.
    BadRange { base: u64, len: u64 },
    /// Overlaps a region this process already claimed.
    Overlaps { base: u64, len: u64 },
    /// More live regions than the registry holds.
    TooMany,
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RegionError::BadRange { base, len } => write!(
                f,
                "range {base:#x}+{len:#x} is empty, unaligned or outside [{:#x}, {USER_END:#x})",
                crate::mmio::WINDOW_FLOOR
            ),
            RegionError::Overlaps { base, len } => {
                write!(f, "range {base:#x}+{len:#x} overlaps a region already claimed")
            }
            RegionError::TooMany => write!(f, "too many regions claimed at once ({MAX_REGIONS})"),
        }
    }
}

const MAX_REGIONS: usize = 8;
/// Live claims: base (0 = free slot) and length, read and changed only
/// under `CLAIM_LOCK` (never from an upcall handler).
static CLAIMS: [(AtomicU64, AtomicU64); MAX_REGIONS] = [const { (AtomicU64::new(0), AtomicU64::new(0)) }; MAX_REGIONS];
static CLAIM_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// A private range of this address space, viewed as bytes.
#[derive(Debug)]
pub struct Region {
    base: u64,
    len: usize,
    slot: usize,
    flush: FlushMethod,
}

impl Region {
    /// Claim `[base, base + len)` (see the module's rules). Every page is
    /// read once: an unmapped page faults here.
    pub fn claim(base: u64, len: u64) -> Result<Region, RegionError> {
        let end = base.checked_add(len);
        if len == 0
            || !base.is_multiple_of(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
            || base < crate::mmio::WINDOW_FLOOR
            || end.is_none_or(|e| e > USER_END)
            || len > isize::MAX as u64
        {
            return Err(RegionError::BadRange { base, len });
        }
        let _g = CLAIM_LOCK.lock();
        let mut free = None;
        for (i, (b, l)) in CLAIMS.iter().enumerate() {
            let (cb, cl) = (b.load(Ordering::SeqCst), l.load(Ordering::SeqCst));
            if cb == 0 {
                free.get_or_insert(i);
            } else if base < cb + cl && cb < base + len {
                return Err(RegionError::Overlaps { base, len });
            }
        }
        let slot = free.ok_or(RegionError::TooMany)?;
        CLAIMS[slot].1.store(len, Ordering::SeqCst);
        CLAIMS[slot].0.store(base, Ordering::SeqCst);
        // Checked above: a window over the same range always exists.
        if let Some(w) = crate::mmio::Window::new(base, len) {
            let mut off = 0;
            while off < len {
                w.read8(off);
                off += PAGE_SIZE;
            }
        }
        Ok(Region { base, len: len as usize, slot, flush: FlushMethod::detect() })
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cache-line write-back instruction this CPU offers.
    pub fn flush_method(&self) -> FlushMethod {
        self.flush
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the range is mapped (touched at claim; rule 4 keeps it
        // mapped), lies outside every Rust allocation and stack (rule 1),
        // overlaps no other Region (rule 2) and is changed by nobody else
        // (rule 4); the shared borrow of `self` keeps `as_mut_slice` away
        // for the slice's lifetime. `len <= isize::MAX` was checked.
        unsafe { core::slice::from_raw_parts(self.base as *const u8, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; the exclusive borrow of `self` makes
        // this the only reference into the range while it lives.
        unsafe { core::slice::from_raw_parts_mut(self.base as *mut u8, self.len) }
    }

    /// Start writing back the cache lines of `[offset, offset + len)`
    /// (clipped to the region); durable after [`Region::fence`].
    pub fn persist(&self, offset: usize, len: usize) {
        let start = offset.min(self.len);
        let len = len.min(self.len - start);
        // SAFETY: `[base + start, base + start + len)` lies inside the
        // region, which is mapped (see `as_slice`); the flush instructions
        // only write lines back, they change no byte of memory.
        unsafe { cpu::flush_range(self.flush, (self.base as usize + start) as *const u8, len) }
    }

    /// Every write-back started before it is durable when it returns.
    pub fn fence(&self) {
        cpu::sfence()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let _g = CLAIM_LOCK.lock();
        CLAIMS[self.slot].0.store(0, Ordering::SeqCst);
        CLAIMS[self.slot].1.store(0, Ordering::SeqCst);
    }
}
