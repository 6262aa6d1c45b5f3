//! Reading and writing this process's control page (see `exo_abi::ControlPage`):
//! the page of the CPU whose upcall is running (`smp::current_cpu`: each
//! CPU has its own page, `exo_abi::smp_control_va`). Outside an upcall
//! (on the main stack) that is CPU 0's page.

fn word(offset: u64) -> *mut u64 {
    assert!(offset < 4096 && offset.is_multiple_of(8));
    (exo_abi::smp_control_va(crate::smp::current_cpu()) + offset) as *mut u64
}

/// Read a word of the control page.
pub fn read(offset: u64) -> u64 {
    // SAFETY: the control page is mapped in every running process (the
    // kernel cannot enter a process without it); volatile because the
    // kernel writes it behind the compiler's back.
    unsafe { core::ptr::read_volatile(word(offset)) }
}

/// Write a word of the control page.
pub fn write(offset: u64, v: u64) {
    // SAFETY: as for `read`; the page is writable (the kernel requires it).
    unsafe { core::ptr::write_volatile(word(offset), v) }
}

/// Atomically read and clear a word of the control page (the kernel may set
/// bits in it between any two instructions of this process, never during
/// one).
pub fn take(offset: u64) -> u64 {
    // SAFETY: as for `read`; the word is 8-aligned inside the mapped page,
    // and AtomicU64 has u64's layout.
    let w = unsafe { &*(word(offset) as *const core::sync::atomic::AtomicU64) };
    w.swap(0, core::sync::atomic::Ordering::SeqCst)
}
