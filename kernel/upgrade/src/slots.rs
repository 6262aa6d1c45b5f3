//! Kernel slots: the physical places a kernel build is linked for.
//!
//! A kernel is linked at `SLOT_BASE + slot * SLOT_BYTES` physical and at
//! [`KERNEL_VIRT`] + that physical address virtual (the boot page tables
//! map the first GiB there). The first kernel reserves both slots at boot;
//! an upgrade always loads the image into the slot the running kernel does
//! not occupy, so the copy never overwrites the code doing it, and the
//! builds alternate (A in slot 0, B in slot 1, A again in slot 0, ...).

/// Physical base of slot 0 (where loaders put the kernel: 1 MiB).
pub const SLOT_BASE: u64 = 0x10_0000;
/// Bytes per slot (the kernel, its bss and stacks included, is ~0.4 MiB).
pub const SLOT_BYTES: u64 = 0x20_0000;
/// Number of slots.
pub const SLOTS: u64 = 2;
/// Virtual address of physical 0 in the kernel's image mapping.
pub const KERNEL_VIRT: u64 = 0xffff_ffff_8000_0000;

/// Physical range `[start, end)` of `slot`.
pub const fn range(slot: u64) -> (u64, u64) {
    let start = SLOT_BASE + slot * SLOT_BYTES;
    (start, start + SLOT_BYTES)
}

/// Every slot: what the first kernel keeps out of the free RAM.
pub const fn all() -> (u64, u64) {
    (SLOT_BASE, SLOT_BASE + SLOTS * SLOT_BYTES)
}

/// The slot `[start, end)` lies in wholly, if any.
pub fn slot_of(start: u64, end: u64) -> Option<u64> {
    (0..SLOTS).find(|&s| {
        let (a, b) = range(s);
        start >= a && end <= b && start <= end
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_and_found() {
        assert_eq!(range(0), (0x10_0000, 0x30_0000));
        assert_eq!(range(1), (0x30_0000, 0x50_0000));
        assert_eq!(all(), (0x10_0000, 0x50_0000));
        assert_eq!(slot_of(0x10_0000, 0x15_9000), Some(0));
        assert_eq!(slot_of(0x30_0000, 0x50_0000), Some(1));
        assert_eq!(slot_of(0x2f_f000, 0x30_1000), None, "straddles two slots");
        assert_eq!(slot_of(0x50_0000, 0x50_1000), None);
        assert_eq!(slot_of(0x20_0000, 0x10_0000), None, "inverted");
    }
}
