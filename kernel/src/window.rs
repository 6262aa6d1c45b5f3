//! Building the physical-memory window at boot (the plan and the table
//! builder are `firmware::window`, host-tested).
//!
//! The entry code maps the first GiB as a bootstrap window. Here the kernel
//! builds the real one: a new PDPT for PML4 slot 256 mapping every RAM,
//! ACPI-reclaim and ACPI-NVS range of the memory map (1 GiB pages where the
//! CPU has them, 2 MiB pages otherwise, 4 KiB pages at unaligned edges),
//! and the boot image and information (which a loader may place in a
//! reserved range), from boot frames below 1 GiB (written through the
//! bootstrap window).
//! It then switches slot 256 over, and walks the ACPI tables from the
//! RSDP, adding the pages of each table the memory map lists (QEMU puts
//! them in a reserved range at the top of the low RAM) — never a hole.
//! Device registers are mapped afterwards by `mmio.rs`, uncached, in
//! 2 MiB pages that must not overlap the window.

use crate::boot::{self, BootInfo};
use crate::mem::BootAlloc;
use crate::phys::{self, phys_read, phys_write};
use firmware::window::{self as fw, TableMemory, Window};

/// The bootstrap window's extent: the window's own tables are allocated
/// below it until the new window is live.
const BOOTSTRAP: u64 = 1 << 30;

/// Frames and reads for the builder: through the physical accessors (which
/// check the current window), frames from the boot allocator.
struct Tables<'a> {
    alloc: &'a mut BootAlloc,
    below: u64,
}

impl TableMemory for Tables<'_> {
    fn read(&self, pa: u64) -> u64 {
        phys_read::<u64>(pa)
    }
    fn write(&mut self, pa: u64, value: u64) {
        phys_write::<u64>(pa, value)
    }
    fn alloc(&mut self) -> Option<u64> {
        self.alloc.alloc_below(self.below)
    }
}

/// What [`build`] did (for the boot log).
pub struct Report {
    pub bytes: u64,
    pub spans: usize,
    pub frames: u64,
    pub gib_pages: bool,
    pub ignored: u64,
    pub acpi_tables: usize,
}

/// A boot-time self-check of the two ways the kernel reads physical
/// memory above the first GiB: the boot-information reader's scratch page
/// (`boot::early_read`, which QEMU's PVH never needs: its information lies
/// in the first MiB) must see what a write through the new window put in
/// the highest free frame. Returns the frame checked, if any; an
/// `Err` is a kernel bug and stops the boot.
pub fn self_check(alloc: &BootAlloc) -> Result<Option<u64>, &'static str> {
    let Some(top) = alloc.free[..alloc.count].iter().filter(|r| r.len() >= 4096).map(|r| r.end - 4096).max() else {
        return Ok(None);
    };
    if top < BOOTSTRAP {
        return Ok(None);
    }
    let old = phys_read::<u64>(top + 4088);
    let pattern = 0x5c7a_7c40_0000_0000 ^ top;
    phys_write::<u64>(top + 4088, pattern);
    let mut b = [0u8; 8];
    boot::early_read(top + 4088, &mut b);
    boot::drop_scratch();
    phys_write::<u64>(top + 4088, old);
    if u64::from_le_bytes(b) != pattern {
        return Err("the boot-information reader and the physical window disagree about RAM above 1 GiB");
    }
    Ok(Some(top))
}

/// Whether the CPU has 1 GiB pages (CPUID 0x80000001 EDX bit 26).
fn gib_pages() -> bool {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0001 && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 26) != 0
}

/// Build the window, switch to it, and map the ACPI tables' pages. Errors
/// are fatal to boot (nothing else can run without the window).
pub fn build(bi: &BootInfo, alloc: &mut BootAlloc) -> Result<Report, fw::WindowError> {
    let plan = fw::plan(bi.map());
    let gib = gib_pages();
    let mut t = Tables { alloc, below: BOOTSTRAP };
    let mut w = Window::new(&mut t, gib)?;
    for &(s, e) in plan.spans.as_slice() {
        w.add(&mut t, s, e)?;
    }
    // The boot image and the boot information, which `boot::parse` found
    // in the memory map but not necessarily in RAM (see there).
    for r in [bi.module, Some(bi.info)].into_iter().flatten() {
        w.add(&mut t, r.start & !0xfff, r.end.saturating_add(0xfff) & !0xfff)?;
    }
    // Switch PML4 slot 256 (the window) over to the new PDPT. The kernel
    // image (slot 511) and the kernel stack are not in the window, so
    // nothing in use moves.
    let slot = boot::boot_pml4_phys() + 256 * 8;
    phys_write::<u64>(slot, w.pdpt | fw::PTE_P | fw::PTE_W);
    x86_64::instructions::tlb::flush_all();
    phys::set_window(w.spans);

    // The ACPI tables, wherever the memory map lists them. Frames now come
    // from anywhere (the new window maps all RAM).
    let mut t = Tables { alloc: t.alloc, below: u64::MAX };
    let map = bi.map();
    let acpi_tables = {
        let mut read = |pa: u64, buf: &mut [u8]| {
            if !phys::window_contains(pa, buf.len() as u64) {
                return false;
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = phys_read::<u8>(pa + i as u64);
            }
            true
        };
        let mut add = |pa: u64, len: u64| {
            if phys::window_contains(pa, len) {
                return true;
            }
            if !fw::listed(map, pa, len) {
                return false;
            }
            let start = pa & !0xfff;
            // `listed` checked that pa + len does not wrap.
            let end = (pa + len).saturating_add(0xfff) & !0xfff;
            match w.add(&mut t, start, end) {
                Ok(()) => {
                    phys::set_window(w.spans);
                    true
                }
                Err(e) => {
                    klog!("window: ACPI structure at {pa:#x} ({len} bytes) not mapped: {e}");
                    false
                }
            }
        };
        fw::acpi_spans(bi.rsdp, &mut read, &mut add)
    };
    x86_64::instructions::tlb::flush_all();
    Ok(Report {
        bytes: w.spans.bytes(),
        spans: w.spans.as_slice().len(),
        frames: w.frames,
        gib_pages: gib,
        ignored: plan.ignored,
        acpi_tables,
    })
}
