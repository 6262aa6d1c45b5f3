//! Spawn planning: where a child's handle and window go in init, what
//! rights its program pages get, and the words of its argument page.

use exo_abi::{Rights, PAGE_SIZE};

/// First PML4 slot of init used for child windows (slot k → child k).
pub const WINDOW_SLOT0: u64 = 64;

/// Init's addresses for process slot `slot`: (its SWITCH handle under
/// `handles_va`, its window — the child's address 0 seen from init).
pub fn slot_layout(handles_va: u64, slot: usize) -> (u64, u64) {
    (
        handles_va + slot as u64 * PAGE_SIZE,
        (WINDOW_SLOT0 + slot as u64) << 39,
    )
}

/// The rights of a program page: W and X as its segment says, never both
/// from a validated plan (the loader refuses W+X segments).
pub fn page_rights(writable: bool, executable: bool) -> Rights {
    let mut rights = Rights::NONE;
    if writable {
        rights = rights | Rights::WRITE;
    }
    if executable {
        rights = rights | Rights::EXEC;
    }
    rights
}

/// The eight words of a child's argument page: heap bytes, spare-frame
/// count, the spare frames' address, then up to five caller's words
/// (more are dropped).
pub fn args_words(heap_pages: u64, spare_pages: u64, spare_va: u64, words: &[u64]) -> [u64; 8] {
    let mut out = [0u64; 8];
    out[0] = heap_pages * PAGE_SIZE;
    out[1] = spare_pages;
    out[2] = spare_va;
    for (i, w) in words.iter().take(5).enumerate() {
        out[3 + i] = *w;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_get_disjoint_handles_and_windows() {
        let h = 0x7000_0000;
        assert_eq!(slot_layout(h, 0), (h, 64 << 39));
        assert_eq!(slot_layout(h, 31), (h + 31 * PAGE_SIZE, 95 << 39));
        // A window is one PML4 slot: 512 GiB, never shared.
        let (_, w0) = slot_layout(h, 3);
        let (_, w1) = slot_layout(h, 4);
        assert_eq!(w1 - w0, 1 << 39);
    }

    #[test]
    fn program_pages_get_their_segment_rights() {
        assert_eq!(page_rights(false, false), Rights::NONE);
        assert_eq!(page_rights(true, false), Rights::WRITE);
        assert_eq!(page_rights(false, true), Rights::EXEC);
    }

    #[test]
    fn argument_words_carry_heap_spares_and_five_words() {
        let w = args_words(16, 3, 0x5000_0000, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(w, [16 * PAGE_SIZE, 3, 0x5000_0000, 1, 2, 3, 4, 5]);
        assert_eq!(args_words(0, 0, 9, &[]), [0, 0, 9, 0, 0, 0, 0, 0]);
    }
}
