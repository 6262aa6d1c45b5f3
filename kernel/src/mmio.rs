//! Device registers: uncached 2 MiB mappings in the physical window, and
//! volatile accessors. Used for the LAPIC, the PCI configuration window
//! (ECAM) and the I/O-MMU's register page — the only MMIO the kernel does.

use crate::boot;
use crate::mem::BootAlloc;
use crate::phys::{phys_read, phys_write, MemRange, PHYS_OFFSET};

const PD_FLAGS: u64 = 0x3; // present, writable (supervisor)
const HUGE_UNCACHED: u64 = 0x83 | 0x18; // present, writable, 2 MiB, PWT, PCD

static mut RANGES: [(u64, u64); 8] = [(0, 0); 8];

/// Map `[pa, pa + len)` uncached at `PHYS_OFFSET + pa`. Boot only (takes
/// page-directory frames from the boot allocator). Refuses ranges that
/// overlap the RAM part of the window (they would change its cacheability).
pub fn map(pa: u64, len: u64, alloc: &mut BootAlloc, ram: &[MemRange]) -> Result<(), &'static str> {
    if len == 0 || pa.checked_add(len).is_none_or(|e| e > (1 << 39)) {
        return Err("MMIO range outside the first 512 GiB");
    }
    let start = pa & !0x1f_ffff;
    let end = (pa + len + 0x1f_ffff) & !0x1f_ffff;
    let span = MemRange { start, end };
    if ram.iter().any(|r| r.overlaps(&span)) {
        return Err("MMIO range overlaps RAM");
    }
    if crate::phys::window_overlaps(start, end) {
        // Its 2 MiB pages would replace write-back window mappings (RAM or
        // ACPI tables sharing the 2 MiB page).
        return Err("MMIO range shares a 2 MiB page with the physical window");
    }
    let pml4 = boot::boot_pml4_phys();
    let pdpt = phys_read::<u64>(pml4 + 256 * 8) & exo_mm::ADDR_MASK;
    let mut at = start;
    while at < end {
        let gib = at >> 30;
        let mut pd = phys_read::<u64>(pdpt + gib * 8);
        if pd & 1 == 0 {
            let f = alloc.alloc().ok_or("no memory for an MMIO page directory")?;
            pd = f | PD_FLAGS;
            phys_write::<u64>(pdpt + gib * 8, pd);
        } else if pd & 0x80 != 0 {
            return Err("MMIO range inside a 1 GiB page");
        }
        let pd = pd & exo_mm::ADDR_MASK;
        let slot = pd + ((at >> 21) & 511) * 8;
        let old = phys_read::<u64>(slot);
        if old & 1 != 0 && old != at | HUGE_UNCACHED {
            return Err("MMIO range's 2 MiB page is mapped as something else");
        }
        phys_write::<u64>(slot, at | HUGE_UNCACHED);
        at += 0x20_0000;
    }
    x86_64::instructions::tlb::flush_all();
    // SAFETY: boot is single-threaded; RANGES is only read afterwards.
    unsafe {
        let r = &mut *core::ptr::addr_of_mut!(RANGES);
        if let Some(slot) = r.iter_mut().find(|s| s.1 == 0) {
            *slot = (start, end);
        }
    }
    Ok(())
}

/// Every span mapped so far, `f(start, end)` (2 MiB rounded): persistent
/// memory must not overlap them.
pub fn mapped_spans(mut f: impl FnMut(u64, u64)) {
    // SAFETY: written only by `map` during single-threaded boot.
    let r = unsafe { &*core::ptr::addr_of!(RANGES) };
    for &(start, end) in r.iter().filter(|s| s.1 != 0) {
        f(start, end);
    }
}

/// Take over the spans a previous kernel mapped (a rebootless upgrade: the
/// mappings are in the shared kernel half already; only the list is new).
pub fn adopt(spans: &[(u64, u64)]) {
    // SAFETY: the upgrade entry is single-threaded and runs before any
    // MMIO access of the new kernel.
    unsafe {
        let r = &mut *core::ptr::addr_of_mut!(RANGES);
        for (slot, s) in r.iter_mut().zip(spans) {
            *slot = *s;
        }
    }
}

fn check(pa: u64, size: u64) {
    // SAFETY: read-only after boot.
    let r = unsafe { &*core::ptr::addr_of!(RANGES) };
    assert!(
        pa.is_multiple_of(size) && r.iter().any(|(s, e)| pa >= *s && pa + size <= *e),
        "MMIO access to an unmapped {pa:#x}"
    );
}

pub fn read32(pa: u64) -> u32 {
    check(pa, 4);
    // SAFETY: `check` proved the address is in an uncached MMIO mapping
    // made by `map`, and aligned.
    unsafe { core::ptr::read_volatile((PHYS_OFFSET + pa) as *const u32) }
}

pub fn write32(pa: u64, v: u32) {
    check(pa, 4);
    // SAFETY: as for `read32`.
    unsafe { core::ptr::write_volatile((PHYS_OFFSET + pa) as *mut u32, v) }
}

pub fn read64(pa: u64) -> u64 {
    check(pa, 8);
    // SAFETY: as for `read32`.
    unsafe { core::ptr::read_volatile((PHYS_OFFSET + pa) as *const u64) }
}

pub fn write64(pa: u64, v: u64) {
    check(pa, 8);
    // SAFETY: as for `read32`.
    unsafe { core::ptr::write_volatile((PHYS_OFFSET + pa) as *mut u64, v) }
}
