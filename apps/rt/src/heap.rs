//! The heap: `talc` (a binning allocator: segregated free lists found
//! through a bitfield, so an allocation or free is a few dozen
//! instructions whatever the heap holds) over memory the process owns. A
//! child gets its heap pages from its parent at `HEAP_VA` (size in args
//! word 0); init builds its own from the RAM window.
//!
//! It replaced `linked_list_allocator`, whose first-fit allocation and
//! address-ordered free walk the hole list: ~55 of them per libdb commit
//! cost ~5,000 instructions there (eval/VECTOR.md, issue 13).
//!
//! Upcall handlers must not allocate: the heap lock may be held by the
//! interrupted main context.

use spinning_top::RawSpinlock;
use talc::source::Manual;
use talc::TalcLock;

#[global_allocator]
static HEAP: TalcLock<RawSpinlock, Manual> = TalcLock::new(Manual);

/// Give the allocator `[start, start + size)`, which must be mapped,
/// writable, owned by this process and used for nothing else. Called
/// once per process; a range too small for the allocator's own
/// bookkeeping leaves the heap empty (every allocation then fails).
pub fn init(start: u64, size: u64) {
    if size == 0 {
        return;
    }
    // SAFETY: per this function's contract, the range is this process's
    // own memory with no other users.
    let _ = unsafe { HEAP.lock().claim(start as *mut u8, size as usize) };
}

pub(crate) fn init_from_args() {
    let size = crate::args_word(0);
    if size != 0 && size < (1 << 40) {
        init(crate::layout::HEAP_VA, size);
    }
}
