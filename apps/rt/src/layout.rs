//! The userspace conventions every program of this system follows (not
//! kernel ABI: a different libOS could choose others).

pub use exo_abi::{CONTROL_VA, KINFO_VA, PAGE_SIZE};

/// A SWITCH handle to the parent, placed by the parent.
pub const PARENT_HANDLE_VA: u64 = 0x4000;
/// The console ring shared with the parent (see [`crate::console`]).
pub const CONSOLE_VA: u64 = 0x5000;
/// The argument page written by the parent: a NUL-terminated string, then
/// free-form words from [`ARGS_WORDS_OFFSET`].
pub const ARGS_VA: u64 = 0x6000;
pub const ARGS_WORDS_OFFSET: u64 = 2048;
/// Handles a program makes for itself start here (one page each).
pub const HANDLES_VA: u64 = 0x10_0000;
/// First address of program images.
pub const PROGRAM_VA: u64 = 0x20_0000;
/// The heap the parent gives a child (size in the args page word 0).
pub const HEAP_VA: u64 = 0x4000_0000;
/// Free for a program's own regions (tests build regions here).
pub const SCRATCH_VA: u64 = 0x10_0000_0000;

/// Messages a child sends its parent with `yield(parent, arg)`.
pub mod msg {
    /// The child has finished: low 32 bits = exit code.
    pub const EXIT: u64 = 1 << 32;
    /// The child gives up the CPU (the parent picks who runs next).
    pub const YIELD: u64 = 2 << 32;
    /// The child panicked: low 32 bits = 0.
    pub const PANIC: u64 = 3 << 32;
    /// The child's console ring is full: please drain it.
    pub const DRAIN: u64 = 4 << 32;
    /// The child has nothing to do until the interrupt init routed to it
    /// as its wake-up arrives (`initlib::devices::wake_on`); low 32 bits:
    /// how many events such interrupts announce it has consumed. Init does
    /// not schedule it until the next one — at once if more interrupts
    /// than that came already.
    pub const WAIT: u64 = 5 << 32;
    /// Parent → child: continue where you were.
    pub const RESUME: u64 = 0;
    pub const KIND_MASK: u64 = 0xffff_ffff << 32;
}

/// Spare frames a parent may give a child (count in args word 1).
pub const SPARE_VA: u64 = 0x8000_0000;
/// A page shared read-write between parent and child for small messages
/// (word 0: parent → child, word 1: child → parent, then data).
pub const MAILBOX_VA: u64 = 0x20_0000_0000;
/// Where a parent links a shared region into a child (tests, demo).
pub const SHARED_VA: u64 = 0x30_0000_0000;
/// Where init makes a shared region visible to the device of the driver
/// that serves it (the block service): page `i` of the region at
/// `SHARED_REGION_IOVA + i * PAGE_SIZE` of that device's I/O address space.
/// Init grants this DMA itself because only a frame's owner may (see
/// `map` into a device in docs/syscalls.md): the driver borrows the region,
/// and init, which owns it, can revoke the device's access as well as the
/// driver's link.
pub const SHARED_REGION_IOVA: u64 = 0x400_0000;
