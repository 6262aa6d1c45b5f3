//! The heap: a linked-list allocator over memory the process owns. A child
//! gets its heap pages from its parent at `HEAP_VA` (size in args word 0);
//! init builds its own from the RAM window.
//!
//! Upcall handlers must not allocate: the heap lock may be held by the
//! interrupted main context.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Give the allocator `[start, start + size)`, which must be mapped,
/// writable, owned by this process and used for nothing else.
pub fn init(start: u64, size: u64) {
    if size == 0 {
        return;
    }
    // SAFETY: per this function's contract, the range is this process's
    // own memory with no other users.
    unsafe { HEAP.lock().init(start as *mut u8, size as usize) };
}

pub(crate) fn init_from_args() {
    let size = crate::args_word(0);
    if size != 0 && size < (1 << 40) {
        init(crate::layout::HEAP_VA, size);
    }
}

/// Bytes in use / free.
pub fn usage() -> (usize, usize) {
    let h = HEAP.lock();
    (h.used(), h.free())
}
