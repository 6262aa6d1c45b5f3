//! The heap of every exo program (`exo_rt::heap` puts it behind a lock as
//! the `#[global_allocator]`): small blocks from per-size-class LIFO free
//! lists, everything else from `talc`.
//!
//! **Why.** A libdb commit makes about six allocations and three frees
//! (the overlay's `Arc` key and value, its version vector and tree nodes;
//! the transaction's key, value and map node: ~540 bytes), all under 1 KiB. In
//! talc, a binning allocator, each costs ~85 instructions (bin search,
//! splitting, boundary tags) — ~870 of a ~3,350-instruction pmem sync
//! commit (eval/DB.md). Here the common allocation is a pop of a list
//! head and a free a push: about a dozen instructions each.
//!
//! **Layout.** The heap `[start, end)` is shared from both ends. talc
//! claims the lower half at [`SizeClassHeap::claim`]; small blocks are
//! carved downwards from `end` (the *arena*, `[bump, end)`), each of its
//! class's size, never below half the heap nor into talc's part. When
//! talc runs out, it is extended upwards to the arena's current bottom,
//! so memory not yet carved is never lost to either side. A pointer is
//! the arena's exactly when it lies in `[bump, end)`: freeing needs no
//! header and no lookup.
//!
//! **Classes.** Sizes 1..=1024 bytes with alignment ≤ 16, in steps of 16
//! (64 classes; the block size is the class's, so ≤ 15 bytes are wasted
//! per block, and every block is 16-aligned because `end` is and every
//! class size is a multiple of 16). A freed arena block goes on its
//! class's list (its first word links the list) and is reused only for
//! that class; carved memory never returns to talc. That bounds the
//! memory the lists can hold to what was carved, at most half the heap:
//! when the arena is full (or meets talc), small allocations fall back
//! to talc, and their frees go back to talc (the address tells).
//! Larger sizes and alignments go to talc directly.
//!
//! **Not thread-safe by itself:** every method takes `&mut self`; the
//! runtime holds one spin lock around each call (one uncontended
//! `xchg`), which keeps it right for activations of one space on several
//! CPUs. Upcall handlers must not allocate: the interrupted context may
//! hold that lock.
#![cfg_attr(not(test), no_std)]

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use talc::base::Talc;
use talc::source::Manual;
use talc::DefaultBinning;

/// Class granularity and the arena blocks' alignment.
pub const GRANULE: usize = 16;
/// The largest size served from the classes.
pub const MAX_SMALL: usize = 1024;
/// Number of size classes: 16, 32, .., 1024 bytes.
pub const CLASSES: usize = MAX_SMALL / GRANULE;

/// The class of a small layout (`size` ≤ [`MAX_SMALL`], `align` ≤
/// [`GRANULE`]), `None` for talc's. Size 0 is class 0 (a 16-byte block:
/// a distinct, valid pointer).
#[inline(always)]
pub fn class_of(size: usize, align: usize) -> Option<usize> {
    if size <= MAX_SMALL && align <= GRANULE {
        Some(size.saturating_sub(1) / GRANULE)
    } else {
        None
    }
}

/// The block size of class `c`.
#[inline(always)]
pub const fn class_size(c: usize) -> usize {
    (c + 1) * GRANULE
}

/// The size-class front end and talc behind it, over one range of memory.
pub struct SizeClassHeap {
    talc: Talc<Manual, DefaultBinning>,
    /// talc's current heap end (0 before `claim` or if the claim failed).
    talc_end: usize,
    /// Per class, the first free block (its first word: the next), or null.
    free: [*mut u8; CLASSES],
    /// The arena is `[bump, top)`: everything ever carved.
    bump: usize,
    top: usize,
    /// Carving stops here: the higher of talc's end and the arena's
    /// farthest reach (half the heap).
    carve_limit: usize,
    /// The arena's farthest reach.
    reach: usize,
}

// SAFETY: the raw pointers are into the memory this heap was given at
// `claim` and owns; nothing in it is tied to a thread or CPU. Callers
// serialise access through `&mut self`.
unsafe impl Send for SizeClassHeap {}

impl Default for SizeClassHeap {
    fn default() -> Self {
        Self::new()
    }
}

impl SizeClassHeap {
    /// An empty heap: every allocation fails until [`Self::claim`].
    pub const fn new() -> Self {
        SizeClassHeap {
            talc: Talc::new(Manual),
            talc_end: 0,
            free: [ptr::null_mut(); CLASSES],
            bump: 0,
            top: 0,
            carve_limit: 0,
            reach: 0,
        }
    }

    /// Take `[start, start + size)` as the heap. Returns false (the heap
    /// stays empty) if it was already given memory, or the range is too
    /// small for talc's bookkeeping.
    ///
    /// # Safety
    /// The range must be mapped, writable, aligned to [`GRANULE`] at
    /// `start`, not wrap around, and used by nothing else while this heap
    /// lives.
    pub unsafe fn claim(&mut self, start: *mut u8, size: usize) -> bool {
        if self.top != 0 || size == 0 {
            return false;
        }
        let base = start as usize;
        let top = (base + size) & !(GRANULE - 1);
        let half = base + (top - base) / 2;
        // SAFETY: per this function's contract, `[start, half)` is ours.
        let Some(end) = (unsafe { self.talc.claim(start, half - base) }) else {
            return false;
        };
        self.talc_end = end.as_ptr() as usize;
        self.top = top;
        self.bump = top;
        self.reach = half.next_multiple_of(GRANULE).max(self.talc_end);
        self.carve_limit = self.reach;
        true
    }

    /// Allocate `layout`; null if there is no room.
    ///
    /// # Safety
    /// Only `&mut` access is needed; unsafe because the block is raw memory.
    #[inline]
    pub unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        if let Some(c) = class_of(layout.size(), layout.align()) {
            let head = self.free[c];
            if !head.is_null() {
                // SAFETY: a free block on class c's list: its first word
                // is the list's next link, written by `dealloc`.
                self.free[c] = unsafe { head.cast::<*mut u8>().read() };
                return head;
            }
            let bsize = class_size(c);
            if self.bump - self.carve_limit >= bsize {
                self.bump -= bsize;
                return self.bump as *mut u8;
            }
        }
        // SAFETY: forwarded contract.
        unsafe { self.alloc_talc(layout) }
    }

    /// talc's allocation, extending talc up to the arena when it is full.
    #[cold]
    unsafe fn alloc_talc(&mut self, layout: Layout) -> *mut u8 {
        if self.talc_end == 0 {
            return ptr::null_mut();
        }
        let layout = nonzero(layout);
        // SAFETY: `layout` has a nonzero size.
        if let Some(p) = unsafe { self.talc.allocate(layout) } {
            return p.as_ptr();
        }
        if self.bump <= self.talc_end {
            return ptr::null_mut();
        }
        // SAFETY: `[talc_end, bump)` is in the heap, above talc's part and
        // below every carved block: memory nothing uses. `talc_end` is
        // nonzero (checked above) and talc's end as `claim`/`extend` gave it.
        let end = unsafe { self.talc.extend(NonNull::new_unchecked(self.talc_end as *mut u8), self.bump as *mut u8) };
        self.talc_end = end.as_ptr() as usize;
        self.carve_limit = self.reach.max(self.talc_end);
        // SAFETY: as above.
        unsafe { self.talc.allocate(layout) }.map_or(ptr::null_mut(), |p| p.as_ptr())
    }

    /// Whether `p` is an arena block.
    #[inline(always)]
    fn in_arena(&self, p: *mut u8) -> bool {
        (p as usize).wrapping_sub(self.bump) < self.top - self.bump
    }

    /// Free a block.
    ///
    /// # Safety
    /// `p` was returned by this heap for `layout` (or by `realloc` with
    /// `layout`'s size) and is not used again.
    #[inline]
    pub unsafe fn dealloc(&mut self, p: *mut u8, layout: Layout) {
        if self.in_arena(p) {
            // Arena blocks are only ever handed out for small layouts, and
            // a block keeps its class through `realloc`.
            // (The mask only spares a bounds check: `c` < CLASSES already.)
            let c = (layout.size().saturating_sub(1) / GRANULE) & (CLASSES - 1);
            debug_assert!(layout.size() <= MAX_SMALL);
            // SAFETY: the block is ours again and at least a word long,
            // 16-aligned: its first word becomes the list link.
            unsafe { p.cast::<*mut u8>().write(self.free[c]) };
            self.free[c] = p;
        } else {
            // SAFETY: not an arena block, so talc's, for this layout.
            unsafe { self.talc.deallocate(p, nonzero(layout)) }
        }
    }

    /// Resize a block to `new_size` bytes (alignment kept), moving it if
    /// needed; null (the old block untouched) if there is no room.
    ///
    /// # Safety
    /// As [`Self::dealloc`] for `p` and `layout`; `new_size` rounded up to
    /// `layout.align()` does not overflow `isize`.
    pub unsafe fn realloc(&mut self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_class = class_of(new_size, layout.align());
        if self.in_arena(p) {
            if new_class == class_of(layout.size(), layout.align()) {
                return p;
            }
        } else if new_class.is_none() {
            // SAFETY: talc's block for `layout` (not an arena block); a
            // large size stays with talc, in place if it can.
            if unsafe { self.talc.try_realloc_in_place(p, nonzero(layout), new_size.max(1)) } {
                return p;
            }
        }
        // SAFETY: the caller guarantees the size and alignment are valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: forwarded contract.
        let q = unsafe { self.alloc(new_layout) };
        if !q.is_null() {
            // SAFETY: two distinct live blocks, each at least this long.
            unsafe { ptr::copy_nonoverlapping(p, q, layout.size().min(new_size)) };
            // SAFETY: forwarded contract; `p` is not used again.
            unsafe { self.dealloc(p, layout) };
        }
        q
    }

    /// Bytes carved into the arena so far (the most the class lists can
    /// hold).
    pub fn arena_bytes(&self) -> usize {
        self.top - self.bump
    }

    /// Free blocks on class `c`'s list (walks it: for tests and reports).
    pub fn free_blocks(&self, c: usize) -> usize {
        let mut n = 0;
        let mut p = self.free[c];
        while !p.is_null() {
            n += 1;
            // SAFETY: a free block's first word is the list's next link.
            p = unsafe { p.cast::<*mut u8>().read() };
        }
        n
    }
}

/// talc needs a nonzero size; a zero-size layout gets one byte.
#[inline(always)]
fn nonzero(layout: Layout) -> Layout {
    if layout.size() == 0 {
        // SAFETY: size 1 with a valid layout's alignment is valid.
        unsafe { Layout::from_size_align_unchecked(1, layout.align()) }
    } else {
        layout
    }
}

#[cfg(test)]
mod tests;
