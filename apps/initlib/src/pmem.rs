//! Persistent memory (NVDIMMs). The kernel maps the ACPI NFIT's
//! persistent-memory ranges into init back to back from `PMEM_VA` as
//! owned, write-back, LENT pages and describes them in the kernel info
//! page; init hands page ranges of that span to children by *moving* the
//! pages (`map` with OWN), exactly as it moves a device's BAR pages to a
//! driver. A moved page keeps its cache attributes and its LENT mark, so
//! no process can ever turn it into a page table.
//!
//! Offsets below are into init's span `[PMEM_VA, PMEM_VA + total())`.
//! Who uses which part of the standard machine's 128 MiB NVDIMM:
//!
//! | MiB | user |
//! |---|---|
//! | 0..8 | the `pmem_persist` test ([`TEST_AREA`]) |
//! | 8..24 | kvdb (`libdb_pmem`, the demo) |
//! | 24..32 | fsapp (`libfs_pmem`) |
//! | 32..64 | the file service `fsd` (`libfs_share`, the system's files) |
//! | 64..96 | libdb on a libfs file (`libdb_on_libfs`) |
//! | 96..128 | free |

use crate::spawn::{self, Child};
use alloc::format;
use alloc::string::String;
use exo_abi::{kinfo as ki, Rights, PAGE_SIZE, PMEM_VA};
use exo_rt::{kinfo, sys};

/// `[0, TEST_AREA)` of the span belongs to the `pmem_persist` test.
pub const TEST_AREA: u64 = 8 << 20;

/// One range as the kernel info page describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmemRange {
    pub phys: u64,
    pub bytes: u64,
    /// Init's address of its first byte.
    pub va: u64,
}

/// The ranges the kernel mapped (none on a machine without an NFIT).
pub fn ranges() -> impl Iterator<Item = PmemRange> {
    let n = (kinfo::word(ki::W_PMEM_RANGES) as usize).min(ki::MAX_PMEM_RANGES);
    (0..n).map(|i| PmemRange {
        phys: kinfo::word(ki::pmem_word(i, ki::PMEM_PHYS)),
        bytes: kinfo::word(ki::pmem_word(i, ki::PMEM_BYTES)),
        va: kinfo::word(ki::pmem_word(i, ki::PMEM_VA)),
    })
}

/// Bytes of persistent memory at `PMEM_VA` (the ranges lie back to back).
pub fn total() -> u64 {
    ranges().map(|r| r.bytes).sum()
}

/// The page-aligned byte range `[offset, offset + bytes)` of the span, or
/// why not.
fn check_span(offset: u64, bytes: u64) -> Result<(), String> {
    let total = total();
    if bytes == 0 || !offset.is_multiple_of(PAGE_SIZE) || !bytes.is_multiple_of(PAGE_SIZE) {
        return Err(format!("pmem {offset:#x}+{bytes:#x}: empty or not page aligned"));
    }
    if offset.checked_add(bytes).is_none_or(|end| end > total) {
        return Err(format!("pmem {offset:#x}+{bytes:#x}: outside the {total:#x} bytes the kernel mapped"));
    }
    Ok(())
}

/// Move `bytes` of persistent memory from `offset` of init's span into
/// `child` at `child_va` (owned, writable; the child may pass it on). A
/// failure moves back what was already moved: a failed grant changes
/// nothing.
pub fn grant(child: &Child, child_va: u64, offset: u64, bytes: u64) -> Result<(), String> {
    check_span(offset, bytes)?;
    if !child_va.is_multiple_of(PAGE_SIZE) || child_va.checked_add(bytes).is_none_or(|e| e > 1 << 39) {
        return Err(format!(
            "child address {child_va:#x}+{bytes:#x}: not page aligned or past the child's first 512 GiB"
        ));
    }
    let mut off = 0;
    while off < bytes {
        if let Err(why) = move_page(child, child_va + off, offset + off, off == 0) {
            let back = move_back(child, child_va, offset, off);
            return Err(match back {
                Ok(()) => why,
                Err(b) => format!("{why}; and undoing: {b}"),
            });
        }
        off += PAGE_SIZE;
    }
    Ok(())
}

/// Move one page (tables for the child's address made first when the page
/// starts a 2 MiB span, or is the `first` of a grant).
fn move_page(child: &Child, child_va: u64, offset: u64, first: bool) -> Result<(), String> {
    let dst = child.at(child_va);
    if first || dst.is_multiple_of(1 << 21) {
        spawn::ensure_tables(dst).map_err(|e| format!("tables at child {child_va:#x}: {e}"))?;
    }
    sys::map(PMEM_VA + offset, 0, 0, dst, Rights::OWN | Rights::WRITE | Rights::GRANT)
        .map_err(|e| format!("moving pmem page {offset:#x} to child {child_va:#x}: {}", e.name()))
}

/// Move `bytes` at `child_va` in `child` back to `offset` of init's span
/// (the child must not be running: it would fault on them).
pub fn reclaim(child: &Child, child_va: u64, offset: u64, bytes: u64) -> Result<(), String> {
    check_span(offset, bytes)?;
    move_back(child, child_va, offset, bytes)
}

fn move_back(child: &Child, child_va: u64, offset: u64, bytes: u64) -> Result<(), String> {
    let mut off = 0;
    while off < bytes {
        sys::map(child.at(child_va + off), 0, 0, PMEM_VA + offset + off, Rights::OWN | Rights::WRITE | Rights::GRANT)
            .map_err(|e| {
            format!("moving pmem page {:#x} back from child {:#x}: {}", offset + off, child_va + off, e.name())
        })?;
        off += PAGE_SIZE;
    }
    Ok(())
}
