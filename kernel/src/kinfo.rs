//! The kernel info page: counters and boot facts, mapped read-only into
//! init (the only "kernel state" a process can see, and only as data).

use crate::phys::phys_write;
use core::sync::atomic::{AtomicU64, Ordering};

static KINFO_PA: AtomicU64 = AtomicU64::new(0);
/// The page's window address once `set_frame` has checked the whole page
/// against the window (0 before): the window only grows during boot and
/// is frozen after, so the check holds for the kernel's life, and the
/// counters bumped on every system call and upcall skip it.
static KINFO_VA: AtomicU64 = AtomicU64::new(0);

pub fn set_frame(pa: u64) {
    // Checked against the window once, here (see `KINFO_VA`).
    let page = crate::phys::Checked::<4096>::new(pa);
    KINFO_PA.store(pa, Ordering::Relaxed);
    KINFO_VA.store(page.va(0, 4096), Ordering::Relaxed);
    set(exo_abi::kinfo::W_MAGIC, exo_abi::kinfo::MAGIC);
}

pub fn frame() -> u64 {
    KINFO_PA.load(Ordering::Relaxed)
}

pub fn set(word: usize, v: u64) {
    let pa = frame();
    if pa != 0 && word < 512 {
        phys_write::<u64>(pa + 8 * word as u64, v);
    }
}

#[inline]
pub fn add(word: usize, d: u64) {
    let va = KINFO_VA.load(Ordering::Relaxed);
    if va != 0 && word < 512 {
        let p = (va + 8 * word as u64) as *mut u64;
        // SAFETY: a word of the kernel info page, which `set_frame` checked
        // lies in the window (whole page); the page is the kernel's own
        // (init maps it read-only), so this is its only writer.
        unsafe { p.write(p.read().wrapping_add(d)) };
    }
}

pub fn set_bytes(offset: usize, bytes: &[u8]) {
    let pa = frame();
    for (i, b) in bytes.iter().enumerate() {
        if offset + i < 4096 {
            phys_write::<u8>(pa + (offset + i) as u64, *b);
        }
    }
}
