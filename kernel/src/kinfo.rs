//! The kernel info page: counters and boot facts, mapped read-only into
//! init (the only "kernel state" a process can see, and only as data).

use crate::phys::phys_write;
use core::sync::atomic::{AtomicU64, Ordering};

static KINFO_PA: AtomicU64 = AtomicU64::new(0);

pub fn set_frame(pa: u64) {
    KINFO_PA.store(pa, Ordering::Relaxed);
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

pub fn add(word: usize, d: u64) {
    let pa = frame();
    if pa != 0 && word < 512 {
        // One window check for the read and the write (a counter bumped
        // on every system call and upcall).
        let w = crate::phys::Checked::<8>::new(pa + 8 * word as u64);
        w.write(0, w.read(0).wrapping_add(d));
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
