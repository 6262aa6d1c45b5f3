//! `virtio_drivers::Hal` over the driver process's own memory.
//!
//! The pool is a run of this process's frames that the process itself has
//! mapped into the device's I/O address space (`map(frame, 0, device,
//! iova, WRITE)`; nvmed does it in `hw::spare_dma`) and then handed to
//! [`install`]. Every address the device is given is an I/O virtual
//! address inside that pool; VT-d refuses the device everything else.
//!
//! - `dma_alloc` hands out contiguous runs of pool pages (queues).
//! - `share` returns the buffer's own IOVA when the buffer already lies in
//!   allocated pool pages (a [`DmaBuffer`]: zero copy, which is how data
//!   moves), and otherwise **bounces**: it copies the buffer into freshly
//!   allocated pool pages and gives the device those; `unshare` copies
//!   back (unless the device only read it) and frees them. Bouncing, not
//!   mapping the caller's pages on the fly, because those are heap and
//!   stack pages: `map` would expose whole pages of unrelated data to the
//!   device, mark them LENT for good, and cost two kernel calls and an
//!   IOTLB flush per request; what `VirtIOBlk` bounces is its 16-byte
//!   request header and 1-byte status. The bytes copied are counted
//!   ([`DmaStats`]).
//!
//! `Hal` functions are static, so the pool state is a static behind a
//! spin lock. The bookkeeping ([`DmaState`]) is plain code; only the
//! memory accesses below are `unsafe`.

use crate::pool::{PagePool, PoolError};
use alloc::vec::Vec;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use spin::Mutex;
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// Pool memory: `pages` pages at `va` in this address space, seen by the
/// device at `iova`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRegion {
    pub va: usize,
    pub iova: u64,
    pub pages: usize,
}

impl DmaRegion {
    fn page_va(&self, page: usize) -> usize {
        self.va + page * PAGE_SIZE
    }
    fn page_iova(&self, page: usize) -> u64 {
        self.iova + (page * PAGE_SIZE) as u64
    }
    /// The pool page holding `va`, if any.
    fn page_of_va(&self, va: usize) -> Option<usize> {
        let off = va.checked_sub(self.va)?;
        (off < self.pages * PAGE_SIZE).then_some(off / PAGE_SIZE)
    }
    fn page_of_iova(&self, iova: u64) -> Option<usize> {
        let off = iova.checked_sub(self.iova)?;
        (off < (self.pages * PAGE_SIZE) as u64).then_some((off / PAGE_SIZE as u64) as usize)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// [`install`] was not called.
    NoPool,
    /// [`install`] with pages still handed out from the current pool.
    PoolBusy {
        in_use: usize,
    },
    /// A region that is empty, not page aligned, at IOVA 0 (which `Hal`
    /// reserves for failure) or wrapping around.
    BadRegion(DmaRegion),
    Pool(PoolError),
    /// `dma_dealloc`/`unshare` with an address this pool never gave out.
    UnknownAddress {
        iova: u64,
    },
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::NoPool => write!(f, "no DMA pool installed"),
            DmaError::PoolBusy { in_use } => write!(f, "DMA pool still has {in_use} pages in use"),
            DmaError::BadRegion(r) => write!(f, "unusable DMA region {r:x?}"),
            DmaError::Pool(e) => write!(f, "{e}"),
            DmaError::UnknownAddress { iova } => write!(f, "I/O address {iova:#x} was not handed out by this DMA pool"),
        }
    }
}

impl From<PoolError> for DmaError {
    fn from(e: PoolError) -> DmaError {
        DmaError::Pool(e)
    }
}

/// What the Hal did, for the driver's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaStats {
    pub pool_pages: usize,
    pub pages_in_use: usize,
    pub peak_pages: usize,
    /// Buffers shared in place (already in allocated pool pages).
    pub direct_shares: u64,
    pub direct_bytes: u64,
    /// Buffers shared through a bounce copy.
    pub bounces: u64,
    /// Bytes copied into bounce pages (on `share`) and back (on `unshare`).
    pub bounce_bytes_in: u64,
    pub bounce_bytes_out: u64,
    /// Bounces dropped without copy-back after their device was reset.
    pub abandoned_bounces: u64,
    /// The last allocation the Hal could not satisfy.
    pub last_failure: Option<PoolError>,
}

/// A bounce in flight: the device has `pages` pages at `iova`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounce {
    pub iova: u64,
    pub va: usize,
    pub first: usize,
    pub pages: usize,
}

/// How a buffer is given to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    Direct(u64),
    Bounce(Bounce),
}

/// The pool's bookkeeping (no memory access).
#[derive(Debug)]
pub struct DmaState {
    region: DmaRegion,
    pages: PagePool,
    bounces: Vec<Bounce>,
    stats: DmaStats,
}

impl DmaState {
    pub fn new(region: DmaRegion) -> Result<DmaState, DmaError> {
        let bytes = region.pages.checked_mul(PAGE_SIZE);
        let fits =
            bytes.is_some_and(|b| region.va.checked_add(b).is_some() && region.iova.checked_add(b as u64).is_some());
        if region.pages == 0
            || !fits
            || region.iova == 0
            || !region.va.is_multiple_of(PAGE_SIZE)
            || !region.iova.is_multiple_of(PAGE_SIZE as u64)
        {
            return Err(DmaError::BadRegion(region));
        }
        let stats = DmaStats { pool_pages: region.pages, ..DmaStats::default() };
        Ok(DmaState { region, pages: PagePool::new(region.pages), bounces: Vec::new(), stats })
    }

    pub fn region(&self) -> DmaRegion {
        self.region
    }

    pub fn stats(&self) -> DmaStats {
        DmaStats { pages_in_use: self.pages.in_use(), peak_pages: self.pages.peak(), ..self.stats }
    }

    /// `count` contiguous pages: (IOVA, VA).
    pub fn alloc(&mut self, count: usize) -> Result<(u64, usize), DmaError> {
        match self.pages.alloc(count) {
            Ok(first) => Ok((self.region.page_iova(first), self.region.page_va(first))),
            Err(e) => {
                self.stats.last_failure = Some(e);
                Err(e.into())
            }
        }
    }

    /// Free what [`alloc`](Self::alloc) returned; the two addresses must
    /// name the same pool page.
    pub fn free(&mut self, iova: u64, va: usize, count: usize) -> Result<(), DmaError> {
        let first = self.region.page_of_iova(iova).ok_or(DmaError::UnknownAddress { iova })?;
        if !iova.is_multiple_of(PAGE_SIZE as u64)
            || self.region.page_of_va(va) != Some(first)
            || !va.is_multiple_of(PAGE_SIZE)
        {
            return Err(DmaError::UnknownAddress { iova });
        }
        Ok(self.pages.free(first, count)?)
    }

    /// Decide how the `len` bytes at `va` reach the device. A bounce is
    /// recorded (and its pages allocated) until [`end_share`](Self::end_share).
    pub fn begin_share(&mut self, va: usize, len: usize) -> Result<Share, DmaError> {
        if len == 0 {
            return Err(PoolError::Empty.into());
        }
        if let (Some(first), Some(last)) =
            (self.region.page_of_va(va), va.checked_add(len - 1).and_then(|l| self.region.page_of_va(l)))
        {
            if self.pages.all_allocated(first, last - first + 1) {
                self.stats.direct_shares += 1;
                self.stats.direct_bytes += len as u64;
                return Ok(Share::Direct(self.region.iova + (va - self.region.va) as u64));
            }
        }
        let count = len.div_ceil(PAGE_SIZE);
        let (iova, bva) = self.alloc(count)?;
        let b = Bounce { iova, va: bva, first: self.region.page_of_va(bva).unwrap_or(0), pages: count };
        self.bounces.push(b);
        self.stats.bounces += 1;
        Ok(Share::Bounce(b))
    }

    /// The device is done with `iova`: a bounce is forgotten and returned
    /// (its pages stay allocated until [`release`](Self::release), after
    /// the copy back); a direct share must lie in allocated pool pages.
    pub fn end_share(&mut self, iova: u64, len: usize) -> Result<Option<Bounce>, DmaError> {
        if let Some(i) = self.bounces.iter().position(|b| b.iova == iova) {
            return Ok(Some(self.bounces.swap_remove(i)));
        }
        let first = self.region.page_of_iova(iova).ok_or(DmaError::UnknownAddress { iova })?;
        let last = iova
            .checked_add(len.max(1) as u64 - 1)
            .and_then(|l| self.region.page_of_iova(l))
            .ok_or(DmaError::UnknownAddress { iova })?;
        if !self.pages.all_allocated(first, last - first + 1) {
            return Err(DmaError::UnknownAddress { iova });
        }
        Ok(None)
    }

    /// Free a finished bounce's pages.
    pub fn release(&mut self, b: Bounce) -> Result<(), DmaError> {
        Ok(self.pages.free(b.first, b.pages)?)
    }

    /// Free every bounce in flight without copying back: for after the
    /// device was reset (it can no longer DMA into them) with requests
    /// that will never complete. Returns how many there were.
    pub fn abandon_bounces(&mut self) -> usize {
        let n = self.bounces.len();
        for b in core::mem::take(&mut self.bounces) {
            // Bounce pages are allocated until released: cannot fail.
            let _ = self.pages.free(b.first, b.pages);
        }
        self.stats.abandoned_bounces += n as u64;
        n
    }

    pub fn count_copy(&mut self, to_device: bool, bytes: usize) {
        if to_device {
            self.stats.bounce_bytes_in += bytes as u64;
        } else {
            self.stats.bounce_bytes_out += bytes as u64;
        }
    }
}

static DMA: Mutex<Option<DmaState>> = Mutex::new(None);

/// Make `region` the pool every [`ExoHal`] call draws from. Refused while
/// the current pool still has pages handed out.
///
/// # Safety
///
/// For as long as it is installed, `region` must be memory of this
/// address space that nothing else in the program uses (not the heap,
/// not a stack, not a Rust object), readable and writable, and mapped
/// into the device's I/O address space at `region.iova` page for page.
pub unsafe fn install(region: DmaRegion) -> Result<(), DmaError> {
    let state = DmaState::new(region)?;
    let mut dma = DMA.lock();
    if let Some(old) = dma.as_ref() {
        if old.pages.in_use() != 0 {
            return Err(DmaError::PoolBusy { in_use: old.pages.in_use() });
        }
    }
    *dma = Some(state);
    Ok(())
}

/// The Hal's counters (zero if no pool is installed).
pub fn stats() -> DmaStats {
    DMA.lock().as_ref().map(DmaState::stats).unwrap_or_default()
}

/// After resetting the device this pool serves: free the bounce pages
/// of requests that will never complete (see [`DmaState::abandon_bounces`]).
/// The pool must serve that one device only: another device's requests in
/// flight would lose their bounces.
pub fn abandon_bounces() -> usize {
    with_pool(DmaState::abandon_bounces).unwrap_or(0)
}

fn with_pool<T>(f: impl FnOnce(&mut DmaState) -> T) -> Result<T, DmaError> {
    DMA.lock().as_mut().map(f).ok_or(DmaError::NoPool)
}

/// The `virtio_drivers::Hal` of this system (see the module docs).
pub struct ExoHal;

// SAFETY: `dma_alloc` returns pages of the installed pool, which by
// `install`'s contract are this program's, used by nothing else, mapped
// and mapped into the device at the IOVA returned; the page allocator
// hands each page to one allocation at a time, the VA is page aligned
// (checked in `DmaState::new`) and the pages are zeroed before return.
// `share` returns IOVAs inside the same pool only.
unsafe impl Hal for ExoHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match with_pool(|s| s.alloc(pages)) {
            Ok(Ok((iova, va))) => {
                // SAFETY: `va..va + pages * PAGE_SIZE` was just allocated
                // from the pool: memory nothing else uses (install's
                // contract) and handed out to nobody else.
                unsafe { core::ptr::write_bytes(va as *mut u8, 0, pages * PAGE_SIZE) };
                (iova, NonNull::new(va as *mut u8).expect("pool VA is not null"))
            }
            // `Dma::new` turns IOVA 0 into `Error::DmaError`; the reason is
            // kept in `stats().last_failure`.
            _ => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        match with_pool(|s| s.free(paddr, vaddr.as_ptr() as usize, pages)) {
            Ok(Ok(())) => 0,
            _ => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // Only `PciTransport` calls this, which this system cannot use
        // (no configuration space for drivers; see `transport`). Device
        // memory reaches a driver as a BAR init moved into it.
        panic!("virtio-exo: no physical MMIO access on the exokernel (asked for {size:#x} bytes at {paddr:#x})")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let (va, len) = (buffer.as_ptr() as *mut u8 as usize, buffer.len());
        let mut guard = DMA.lock();
        let state = guard.as_mut().expect("virtio-exo: ExoHal used before install()");
        match state.begin_share(va, len) {
            Ok(Share::Direct(iova)) => iova,
            Ok(Share::Bounce(b)) => {
                // Copy in whatever the direction: if the device writes less
                // than `len`, `unshare` copies back the caller's own bytes,
                // not stale pool data.
                // SAFETY: the caller promises `buffer` is valid for `len`
                // bytes and not accessed elsewhere during this call; the
                // bounce pages were just allocated (nothing else uses them)
                // and hold at least `len` bytes; the two do not overlap
                // (the buffer is not in allocated bounce pages, or it would
                // have been shared directly).
                unsafe { core::ptr::copy_nonoverlapping(va as *const u8, b.va as *mut u8, len) };
                state.count_copy(true, len);
                b.iova
            }
            Err(e) => panic!("virtio-exo: cannot share a {len}-byte buffer with the device: {e}"),
        }
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let (va, len) = (buffer.as_ptr() as *mut u8 as usize, buffer.len());
        let mut guard = DMA.lock();
        let state = guard.as_mut().expect("virtio-exo: ExoHal used before install()");
        match state.end_share(paddr, len) {
            Ok(None) => {}
            Ok(Some(b)) => {
                if direction != BufferDirection::DriverToDevice {
                    // SAFETY: as in `share`: `buffer` is valid and ours for
                    // this call; the bounce pages hold `len` bytes written
                    // by `share` and then the device, which is done with
                    // them (the request completed).
                    unsafe { core::ptr::copy_nonoverlapping(b.va as *const u8, va as *mut u8, len) };
                    state.count_copy(false, len);
                }
                if let Err(e) = state.release(b) {
                    panic!("virtio-exo: bounce pages at {:#x}: {e}", b.iova);
                }
            }
            Err(e) => panic!("virtio-exo: unshare of a {len}-byte buffer: {e}"),
        }
    }
}

/// A buffer in pool pages: the device reaches it in place (zero copy when
/// given to a `virtio-drivers` request). Contiguous in I/O address space.
pub struct DmaBuffer {
    iova: u64,
    va: usize,
    len: usize,
}

impl DmaBuffer {
    /// `len` zeroed bytes (whole pages are taken from the pool).
    pub fn new(len: usize) -> Result<DmaBuffer, DmaError> {
        let pages = len.div_ceil(PAGE_SIZE);
        let (iova, va) = with_pool(|s| s.alloc(pages))??;
        // SAFETY: freshly allocated pool pages, used by nothing else.
        unsafe { core::ptr::write_bytes(va as *mut u8, 0, pages * PAGE_SIZE) };
        Ok(DmaBuffer { iova, va, len })
    }

    /// The device's address of byte 0.
    pub fn iova(&self) -> u64 {
        self.iova
    }
}

impl Deref for DmaBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `va..va + len` are pool pages allocated to this buffer
        // alone until it is dropped (install's contract: memory nothing
        // else uses); the device writes them only during a request that
        // borrows the buffer mutably.
        unsafe { core::slice::from_raw_parts(self.va as *const u8, self.len) }
    }
}

impl DerefMut for DmaBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.va as *mut u8, self.len) }
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        let pages = self.len.div_ceil(PAGE_SIZE);
        if let Ok(Err(e)) = with_pool(|s| s.free(self.iova, self.va, pages)) {
            panic!("virtio-exo: freeing a DMA buffer at {:#x}: {e}", self.iova);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pages: usize) -> DmaState {
        DmaState::new(DmaRegion { va: 0x8000_0000, iova: 0x100_0000, pages }).unwrap()
    }

    #[test]
    fn regions_are_checked() {
        let ok = DmaRegion { va: 0x8000_0000, iova: 0x100_0000, pages: 4 };
        for bad in [
            DmaRegion { pages: 0, ..ok },
            DmaRegion { iova: 0, ..ok },
            DmaRegion { va: 0x8000_0010, ..ok },
            DmaRegion { iova: 0x100_0800, ..ok },
            DmaRegion { iova: u64::MAX - 0xfff, ..ok },
            DmaRegion { pages: usize::MAX, ..ok },
        ] {
            assert_eq!(DmaState::new(bad).unwrap_err(), DmaError::BadRegion(bad));
        }
    }

    #[test]
    fn buffers_in_allocated_pool_pages_are_shared_in_place() {
        let mut s = state(8);
        let (iova, va) = s.alloc(3).unwrap();
        assert_eq!((iova, va), (0x100_0000, 0x8000_0000));
        // A range inside the allocation, crossing pages: its own IOVA.
        assert_eq!(s.begin_share(va + 100, 2 * PAGE_SIZE), Ok(Share::Direct(iova + 100)));
        assert_eq!(s.end_share(iova + 100, 2 * PAGE_SIZE), Ok(None));
        // Running past the allocation into a free page: bounced instead.
        let Share::Bounce(b) = s.begin_share(va + 2 * PAGE_SIZE, PAGE_SIZE + 1).unwrap() else { panic!("not bounced") };
        assert_eq!((b.pages, b.iova), (2, iova + 3 * PAGE_SIZE as u64));
        assert_eq!(s.end_share(b.iova, PAGE_SIZE + 1), Ok(Some(b)));
        s.release(b).unwrap();
        let st = s.stats();
        assert_eq!((st.direct_shares, st.direct_bytes, st.bounces, st.pages_in_use), (1, 2 * PAGE_SIZE as u64, 1, 3));
    }

    #[test]
    fn outside_buffers_bounce_and_their_pages_come_back() {
        let mut s = state(4);
        let heap = 0x4000_0000usize;
        let Share::Bounce(b1) = s.begin_share(heap, 16).unwrap() else { panic!() };
        let Share::Bounce(b2) = s.begin_share(heap + 16, 1).unwrap() else { panic!() };
        assert_ne!(b1.iova, b2.iova);
        assert_eq!(s.stats().pages_in_use, 2);
        // Out of order completion.
        let b = s.end_share(b2.iova, 1).unwrap().unwrap();
        s.release(b).unwrap();
        let b = s.end_share(b1.iova, 16).unwrap().unwrap();
        s.release(b).unwrap();
        assert_eq!(s.stats().pages_in_use, 0);
        // A full pool cannot bounce: a named error, recorded.
        let _all = s.alloc(4).unwrap();
        assert!(matches!(s.begin_share(heap, 1), Err(DmaError::Pool(PoolError::Exhausted { .. }))));
        assert!(s.stats().last_failure.is_some());
    }

    #[test]
    fn unknown_addresses_are_refused() {
        let mut s = state(4);
        let (iova, va) = s.alloc(1).unwrap();
        assert_eq!(s.end_share(0x5000, 1), Err(DmaError::UnknownAddress { iova: 0x5000 }));
        // Inside the pool but not allocated.
        let free = iova + 2 * PAGE_SIZE as u64;
        assert_eq!(s.end_share(free, 1), Err(DmaError::UnknownAddress { iova: free }));
        // Mismatched VA/IOVA pair.
        assert_eq!(s.free(iova, va + PAGE_SIZE, 1), Err(DmaError::UnknownAddress { iova }));
        assert_eq!(s.free(iova, va, 1), Ok(()));
        assert_eq!(s.free(iova, va, 1), Err(DmaError::Pool(PoolError::NotAllocated { page: 0 })));
    }
}
