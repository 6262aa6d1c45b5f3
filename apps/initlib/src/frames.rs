//! Init's frame allocator: the kernel handed init all free RAM, mapped and
//! owned at `RAM_WINDOW_VA + physical address`. A frame is named by that
//! window address; giving it away is a `map` with the OWN right (a move).
//! The accounting is [`crate::logic::frames::Frames`] (host-tested); this
//! is the one instance, filled from the kernel info page.

use crate::logic::frames::Frames;
use exo_abi::{kinfo as ki, RAM_WINDOW_VA};
use exo_rt::kinfo;
use spin::Mutex;

static FRAMES: Mutex<Frames> = Mutex::new(Frames::empty(RAM_WINDOW_VA));

/// Read the free RAM ranges from the kernel info page.
pub fn init() {
    let n = (kinfo::word(ki::W_RAM_RANGES) as usize).min(ki::MAX_RAM_RANGES);
    FRAMES
        .lock()
        .set_ranges((0..n).map(|i| (kinfo::word(ki::W_RAM_RANGE0 + 2 * i), kinfo::word(ki::W_RAM_RANGE0 + 2 * i + 1))));
}

/// Take a frame, zeroed; returns its address in init's RAM window.
/// The RAM the kernel hands over holds whatever the firmware and the boot
/// loader left there (UEFI and GRUB leave plenty; only QEMU's `-kernel`
/// path happens to start with zeroed RAM), and a child's argument and
/// control pages, stacks and heaps must start as zero.
pub fn alloc() -> Option<u64> {
    let f = FRAMES.lock().alloc()?;
    exo_rt::mem::zero_page(f);
    Some(f)
}

/// Put back a frame that is still in the window (e.g. a `create` that
/// found its slot occupied changed nothing).
pub fn give_back(va: u64) {
    FRAMES.lock().give_back(va)
}

/// Put back a frame a device could reach (its entry is LENT: it can never
/// become a table); only [`alloc_lent`] hands it out again.
pub fn give_back_lent(va: u64) {
    FRAMES.lock().give_back_lent(va)
}

/// A frame given back with [`give_back_lent`], for a data page only.
pub fn alloc_lent() -> Option<u64> {
    FRAMES.lock().alloc_lent()
}

/// Whether the frame at physical `pa` is still in init's RAM window, never
/// handed out by [`alloc`] (a frame given away is moved or retyped, and
/// leaves the window).
pub fn never_handed_out(pa: u64) -> bool {
    FRAMES.lock().never_handed_out(pa)
}

/// (frames handed out, frames left).
pub fn stats() -> (u64, u64) {
    FRAMES.lock().stats()
}
