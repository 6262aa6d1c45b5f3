//! Physical memory as the kernel reaches it: the physical-memory window
//! (all RAM mapped at [`PHYS_OFFSET`]), the boot frame allocator (sealed
//! once init is built; every later request is counted as a bug), and the
//! [`exo_mm::PhysMem`] / [`exo_mm::Tlb`] implementations the system calls
//! run on.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// Highest physical address covered by the window (set at boot).
static WINDOW_END: AtomicU64 = AtomicU64::new(1 << 30);

/// Read a value from physical memory through the window.
pub fn phys_read<T: Copy>(pa: u64) -> T {
    assert!(pa + core::mem::size_of::<T>() as u64 <= WINDOW_END.load(Ordering::Relaxed));
    // SAFETY: the window maps all of [0, WINDOW_END) (checked above) as
    // ordinary kernel memory; unaligned reads are allowed by
    // `read_unaligned`.
    unsafe { core::ptr::read_unaligned((PHYS_OFFSET + pa) as *const T) }
}

/// Write a value to physical memory through the window.
pub fn phys_write<T: Copy>(pa: u64, v: T) {
    assert!(pa + core::mem::size_of::<T>() as u64 <= WINDOW_END.load(Ordering::Relaxed));
    // SAFETY: as for `phys_read`. Callers only write frames they have
    // checked are theirs to write (page tables built by the kernel, control
    // pages found by walking the owner's tables, boot frames).
    unsafe { core::ptr::write_unaligned((PHYS_OFFSET + pa) as *mut T, v) }
}

pub fn set_window_end(end: u64) {
    WINDOW_END.store(end, Ordering::Relaxed);
}

/// RAM as the boot memory map describes it, set once at boot: the frames
/// the kernel may treat as memory when userspace names them (tables,
/// control pages). Device registers and persistent memory are not in it.
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
    let frame = MemRange { start: pa & !0xfff, end: (pa & !0xfff).saturating_add(0x1000) };
    frame.end <= WINDOW_END.load(Ordering::Relaxed)
        && ranges[..*n].iter().any(|r| r.start <= frame.start && frame.end <= r.end)
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
        assert!(pa + 4096 <= WINDOW_END.load(Ordering::Relaxed));
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
        if SEALED.load(Ordering::Relaxed) {
            let n = FRAMES_AFTER_BOOT.fetch_add(1, Ordering::Relaxed) + 1;
            crate::kinfo::set(exo_abi::kinfo::W_FRAMES_AFTER_BOOT, n);
            return None;
        }
        for r in self.free[..self.count].iter_mut().rev() {
            if r.len() >= 4096 {
                r.end -= 4096;
                self.taken += 1;
                let f = r.end;
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
