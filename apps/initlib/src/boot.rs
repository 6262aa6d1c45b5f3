//! What every root program does first: take the RAM, build its heap, and
//! take over the upcalls (the scheduler, device interrupts to their
//! drivers).

use crate::{devices, frames, sched, spawn};
use exo_abi::{kinfo as ki, Rights, PAGE_SIZE};
use exo_rt::{kinfo, println, sys};

/// Init's heap: 4 MiB at `HEAP_VA`, built from RAM-window frames.
const HEAP_PAGES: u64 = 1024;

pub fn init() {
    println!(
        "init: running in ring 3; {} MiB of RAM are mine, boot image {} bytes, tick {} us",
        kinfo::word(ki::W_RAM_BYTES) >> 20,
        kinfo::word(ki::W_BOOT_IMAGE_LEN),
        kinfo::word(ki::W_TICK_US)
    );
    frames::init();
    let heap = exo_rt::layout::HEAP_VA;
    let mut made = true;
    for i in 0..HEAP_PAGES {
        let va = heap + i * PAGE_SIZE;
        made &= spawn::ensure_tables(va).is_ok()
            && frames::alloc()
                .is_some_and(|f| sys::map(f, 0, 0, va, Rights::WRITE | Rights::OWN | Rights::GRANT).is_ok());
    }
    if !made {
        exo_rt::fatal(format_args!("could not build init's heap"));
    }
    exo_rt::heap::init(heap, HEAP_PAGES * PAGE_SIZE);
    sched::install(devices::note_interrupt);
}
