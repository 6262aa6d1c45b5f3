//! The heap: `exo_sizeclass::SizeClassHeap` (per-size-class LIFO free
//! lists for blocks up to 1 KiB, carved downwards from the top of the
//! heap, with `talc` — a binning allocator — for everything else and as
//! the fallback) under one spin lock, over memory the process owns. A
//! child gets its heap pages from its parent at `HEAP_VA` (size in args
//! word 0); init builds its own from the RAM window.
//!
//! History (issue 13): `linked_list_allocator` walked its hole list
//! (~5,000 instructions per libdb commit); `talc` made each call a few
//! dozen (~85) instructions; the size classes make the common small
//! allocation a list pop (or a bump of the arena) and a free a push, about
//! a dozen plus the lock — the ~870 allocator instructions of a libdb pmem
//! sync commit (eval/DB.md). The design, its bounds (the classes hold at
//! most what was carved, at most half the heap) and its host tests are in
//! the `exo-sizeclass` crate.
//!
//! Several activations of one space on several CPUs (`smp`) share this
//! heap: every call takes the one lock (uncontended, one atomic exchange
//! and a store). Upcall handlers must not allocate: the heap lock may be
//! held by the interrupted main context.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use exo_sizeclass::SizeClassHeap;

/// The heap under a test-and-test-and-set spin lock, inlined into every
/// call: uncontended, taking it is one `xchg` and releasing it a store
/// (a library spin lock behind a call cost ~10 instructions a pair).
struct Heap {
    locked: AtomicBool,
    heap: UnsafeCell<SizeClassHeap>,
}

// SAFETY: `heap` is only reached through `with`, which holds `locked`.
unsafe impl Sync for Heap {}

impl Heap {
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut SizeClassHeap) -> R) -> R {
        while self.locked.swap(true, Ordering::Acquire) {
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        // SAFETY: the lock is held: no other reference to the heap exists
        // until it is released below.
        let r = f(unsafe { &mut *self.heap.get() });
        self.locked.store(false, Ordering::Release);
        r
    }
}

#[global_allocator]
static HEAP: Heap = Heap { locked: AtomicBool::new(false), heap: UnsafeCell::new(SizeClassHeap::new()) };

// SAFETY: every call is forwarded under the lock to `SizeClassHeap`,
// whose methods have `GlobalAlloc`'s contracts (a block is freed or
// resized only with the layout it was allocated with; null on no room).
// A panic cannot leave the lock held: the programs abort on panic.
unsafe impl GlobalAlloc for Heap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        self.with(|h| unsafe { h.alloc(layout) })
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        self.with(|h| unsafe { h.dealloc(ptr, layout) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        self.with(|h| unsafe { h.realloc(ptr, layout, new_size) })
    }
}

/// Give the allocator `[start, start + size)`, which must be mapped,
/// writable, owned by this process and used for nothing else. Called
/// once per process; a range too small for the allocator's own
/// bookkeeping leaves the heap empty (every allocation then fails).
pub fn init(start: u64, size: u64) {
    if size == 0 {
        return;
    }
    // SAFETY: per this function's contract, the range is this process's
    // own memory with no other users (page-aligned, so GRANULE-aligned).
    let _ = HEAP.with(|h| unsafe { h.claim(start as *mut u8, size as usize) });
}

pub(crate) fn init_from_args() {
    let size = crate::args_word(0);
    if size != 0 && size < (1 << 40) {
        init(crate::layout::HEAP_VA, size);
    }
}
