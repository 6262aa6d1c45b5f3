//! Physical memory as the kernel reaches it: the physical-memory window
//! (all RAM, ACPI memory and the ACPI tables mapped at [`PHYS_OFFSET`] +
//! physical address, holes left out: `window.rs`; every access checked
//! against what it maps), the boot frame allocator (sealed
//! once init is built; every later request is counted as a bug), and the
//! [`exo_mm::PhysMem`] / [`exo_mm::Tlb`] implementations the system calls
//! run on.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use firmware::window::Spans;

/// Virtual address of physical address 0 (PML4 slot 256).
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRange {
    pub start: u64,
    pub end: u64,
}

impl MemRange {
    pub const EMPTY: MemRange = MemRange { start: 0, end: 0 };
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    pub fn overlaps(&self, o: &MemRange) -> bool {
        self.start < o.end && o.start < self.end
    }
}

/// What the physical window maps: the first GiB (the entry code's
/// bootstrap window) until `window::build` replaces it with the memory
/// map's RAM, ACPI memory and ACPI tables (`firmware::window`). Written
/// only during single-threaded boot, before `freeze_window`.
static mut WINDOW: Spans = Spans::one(0, 1 << 30);
static WINDOW_FROZEN: AtomicBool = AtomicBool::new(false);

fn window() -> &'static Spans {
    // SAFETY: WINDOW is written only by `set_window` during single-threaded
    // boot, never while a reference from here is alive (callers use the
    // reference for the length of one check), and never after
    // `freeze_window`.
    unsafe { &*core::ptr::addr_of!(WINDOW) }
}

/// Whether all of `[pa, pa + len)` is mapped by the physical window (and
/// so may be read and written as write-back memory).
pub fn window_contains(pa: u64, len: u64) -> bool {
    window().contains(pa, len)
}

/// Whether any of `[start, end)` is mapped by the physical window.
pub fn window_overlaps(start: u64, end: u64) -> bool {
    window().overlaps(start, end)
}

/// Record what the window maps (boot only: `window.rs`, after changing the
/// tables). Ignored once the window is frozen.
pub fn set_window(spans: Spans) {
    if WINDOW_FROZEN.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: single-threaded boot, before `freeze_window`; no reference
    // from `window()` is alive across this call.
    unsafe { *core::ptr::addr_of_mut!(WINDOW) = spans };
}

/// From now on the window never changes; its spans can be lent out for
/// the kernel's lifetime (the ACPI view holds them).
pub fn freeze_window() -> &'static [(u64, u64)] {
    WINDOW_FROZEN.store(true, Ordering::Relaxed);
    window().as_slice()
}

/// Read a value from physical memory through the window.
pub fn phys_read<T: Copy>(pa: u64) -> T {
    assert!(
        window_contains(pa, core::mem::size_of::<T>() as u64),
        "physical read outside the window at {pa:#x}"
    );
    // SAFETY: the window maps all of its spans (checked above) as
    // ordinary kernel memory; unaligned reads are allowed by
    // `read_unaligned`.
    unsafe { core::ptr::read_unaligned((PHYS_OFFSET + pa) as *const T) }
}

/// Write a value to physical memory through the window.
pub fn phys_write<T: Copy>(pa: u64, v: T) {
    assert!(
        window_contains(pa, core::mem::size_of::<T>() as u64),
        "physical write outside the window at {pa:#x}"
    );
    // SAFETY: as for `phys_read`. Callers only write frames they have
    // checked are theirs to write (page tables built by the kernel, control
    // pages found by walking the owner's tables, boot frames).
    unsafe { core::ptr::write_unaligned((PHYS_OFFSET + pa) as *mut T, v) }
}

/// RAM as the boot memory map describes it, set once at boot: the frames
/// the kernel may treat as memory when userspace names them (tables,
/// control pages). Device registers, persistent memory and ACPI memory
/// are not in it.
static RAM: spin::Once<([MemRange; crate::boot::MAX_RANGES], usize)> = spin::Once::new();

/// Record the boot memory map's RAM ranges (once, before userspace runs).
pub fn set_ram(ranges: &[MemRange]) {
    RAM.call_once(|| {
        let mut r = [MemRange::EMPTY; crate::boot::MAX_RANGES];
        let n = ranges.len().min(r.len());
        r[..n].copy_from_slice(&ranges[..n]);
        (r, n)
    });
}

/// Is the 4 KiB frame at `pa` RAM that the window maps?
pub fn is_ram_frame(pa: u64) -> bool {
    let Some((ranges, n)) = RAM.get() else {
        return false;
    };
    let start = pa & !0xfff;
    window_contains(start, 0x1000)
        && ranges[..*n].iter().any(|r| r.start <= start && start.saturating_add(0x1000) <= r.end)
}

/// The page-table code's view of memory: the window.
pub struct KernelMem;

impl exo_mm::PhysMem for KernelMem {
    fn is_ram(&self, pa: u64) -> bool {
        is_ram_frame(pa)
    }
    fn read(&self, pa: u64) -> u64 {
        phys_read::<u64>(pa)
    }
    fn write(&mut self, pa: u64, value: u64) {
        phys_write::<u64>(pa, value)
    }
    fn zero_frame(&mut self, pa: u64) {
        assert!(
            window_contains(pa, 4096),
            "zeroing a frame outside the window at {pa:#x}"
        );
        // SAFETY: a whole frame inside the window (checked); see phys_write.
        unsafe { core::ptr::write_bytes((PHYS_OFFSET + pa) as *mut u8, 0, 4096) }
    }
}

/// TLB maintenance (see `exo_mm::Tlb` for why every removal flushes
/// everything). The kernel runs on one CPU and reloads CR3 on every switch
/// of address space (no PCIDs, user pages never global), so only the
/// running space can hold translations, through any alias it has: reloading
/// CR3 drops them all, with the paging-structure caches.
pub struct KernelTlb;

impl exo_mm::Tlb for KernelTlb {
    fn flush_everywhere(&mut self) {
        x86_64::instructions::tlb::flush_all();
    }
}

/// The boot frame allocator: takes frames from the top of the free ranges.
pub struct BootAlloc {
    pub free: [MemRange; crate::boot::MAX_RANGES],
    pub count: usize,
    pub taken: u64,
}

static SEALED: AtomicBool = AtomicBool::new(false);
/// Frames requested after boot was sealed: the kernel has no allocator
/// after boot, so this must stay 0 (reported in the kernel info page).
pub static FRAMES_AFTER_BOOT: AtomicU64 = AtomicU64::new(0);

impl BootAlloc {
    pub fn alloc(&mut self) -> Option<u64> {
        self.alloc_below(u64::MAX)
    }

    /// A zeroed frame that lies entirely below `limit` (the window's own
    /// tables are built through the bootstrap window, which covers the
    /// first GiB).
    pub fn alloc_below(&mut self, limit: u64) -> Option<u64> {
        if SEALED.load(Ordering::Relaxed) {
            let n = FRAMES_AFTER_BOOT.fetch_add(1, Ordering::Relaxed) + 1;
            crate::kinfo::set(exo_abi::kinfo::W_FRAMES_AFTER_BOOT, n);
            return None;
        }
        for r in self.free[..self.count].iter_mut().rev() {
            if r.len() >= 4096 && r.start + 4096 <= limit {
                // From the top, or from the bottom when the top lies above
                // the limit (the range stays one range either way).
                let f = if r.end <= limit {
                    r.end -= 4096;
                    r.end
                } else {
                    r.start += 4096;
                    r.start - 4096
                };
                self.taken += 1;
                phys_write_zero_frame(f);
                return Some(f);
            }
        }
        None
    }

    /// From now on the kernel allocates nothing.
    pub fn seal(&self) {
        SEALED.store(true, Ordering::Relaxed);
    }
}

fn phys_write_zero_frame(f: u64) {
    use exo_mm::PhysMem;
    KernelMem.zero_frame(f);
}
