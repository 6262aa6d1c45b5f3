//! The kernel's memory services over the physical window (`phys.rs`): the
//! RAM the boot memory map describes (the frames userspace may name as
//! tables or control pages), the boot frame allocator (sealed once init is
//! built; every later request is counted as a bug), and the
//! [`exo_mm::PhysMem`] / [`exo_mm::Tlb`] implementations the system calls
//! run on.

use crate::phys::{phys_read, phys_write_word, window_contains, HotSpan, MemRange, PHYS_OFFSET};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use firmware::bootinfo::MAX_RAM;

/// RAM as the boot memory map describes it, set once at boot: the frames
/// the kernel may treat as memory when userspace names them (tables,
/// control pages). Device registers, persistent memory and ACPI memory
/// are not in it.
static RAM: spin::Once<Ram> = spin::Once::new();

struct Ram {
    ranges: [MemRange; MAX_RAM],
    count: usize,
    /// The largest range, looked at first: almost every frame a process
    /// names (tables, control pages) lies in it.
    hot: MemRange,
}

/// The largest RAM range as the first frame address in it and how many
/// frame addresses from there on still fit in it (0 before `set_ram`, or
/// if it is shorter than a frame): `is_ram_frame`'s first test is then
/// one subtraction and one compare (`start - HOT_RAM_START < count`,
/// wrapping, so a frame below the range fails too).
static HOT_RAM_START: AtomicU64 = AtomicU64::new(0);
static HOT_RAM_FRAMES: AtomicU64 = AtomicU64::new(0);

/// Record the boot memory map's RAM ranges (once, before userspace runs).
pub fn set_ram(list: &[MemRange]) {
    let ram = RAM.call_once(|| {
        let mut ranges = [MemRange::EMPTY; MAX_RAM];
        let count = list.len().min(ranges.len());
        ranges[..count].copy_from_slice(&list[..count]);
        let hot = ranges[..count].iter().copied().max_by_key(|r| r.len()).unwrap_or(MemRange::EMPTY);
        Ram { ranges, count, hot }
    });
    HOT_RAM_START.store(ram.hot.start, Ordering::Relaxed);
    let frames = if ram.hot.len() >= 0x1000 { ram.hot.len() - 0x1000 + 1 } else { 0 };
    HOT_RAM_FRAMES.store(frames, Ordering::Relaxed);
}

/// The RAM ranges recorded at boot (for the upgrade's handover).
pub fn ram_ranges() -> &'static [MemRange] {
    RAM.get().map_or(&[], |r| &r.ranges[..r.count])
}

/// Is the 4 KiB frame at `pa` RAM that the window maps?
#[inline]
pub fn is_ram_frame(pa: u64) -> bool {
    let start = pa & !0xfff;
    if start.wrapping_sub(HOT_RAM_START.load(Ordering::Relaxed)) < HOT_RAM_FRAMES.load(Ordering::Relaxed) {
        return window_contains(start, 0x1000);
    }
    is_ram_frame_slow(start)
}

/// [`is_ram_frame`] outside the largest RAM range.
#[inline(never)]
fn is_ram_frame_slow(pa: u64) -> bool {
    let Some(ram) = RAM.get() else {
        return false;
    };
    let start = pa & !0xfff;
    let inside = |r: &MemRange| r.start <= start && start.saturating_add(0x1000) <= r.end;
    (inside(&ram.hot) || ram.ranges[..ram.count].iter().any(inside)) && window_contains(start, 0x1000)
}

/// [`KernelMem`] for one walk on the hot path (`yield`): the window's
/// hot span and the largest RAM range read once, so each table read and
/// RAM test compares against registers. The same checks, in the same
/// order of preference, as `KernelMem`'s; anything outside the hot
/// ranges takes `KernelMem`'s full path.
pub struct WalkMem {
    hot: HotSpan,
    ram_start: u64,
    ram_frames: u64,
}

impl WalkMem {
    #[inline(always)]
    pub fn now() -> Self {
        WalkMem {
            hot: HotSpan::now(),
            ram_start: HOT_RAM_START.load(Ordering::Relaxed),
            ram_frames: HOT_RAM_FRAMES.load(Ordering::Relaxed),
        }
    }
}

impl exo_mm::PhysMem for WalkMem {
    #[inline(always)]
    fn is_ram(&self, pa: u64) -> bool {
        let start = pa & !0xfff;
        if start.wrapping_sub(self.ram_start) < self.ram_frames {
            return self.hot.contains_page(start);
        }
        is_ram_frame_slow(start)
    }
    #[inline(always)]
    fn read(&self, pa: u64) -> u64 {
        self.hot.read(pa)
    }
    fn write(&mut self, pa: u64, value: u64) {
        phys_write_word(pa, value)
    }
}

/// The page-table code's view of memory: the window.
pub struct KernelMem;

impl exo_mm::PhysMem for KernelMem {
    #[inline(always)]
    fn is_ram(&self, pa: u64) -> bool {
        is_ram_frame(pa)
    }
    #[inline(always)]
    fn read(&self, pa: u64) -> u64 {
        phys_read::<u64>(pa)
    }
    fn write(&mut self, pa: u64, value: u64) {
        phys_write_word(pa, value)
    }
    fn zero_frame(&mut self, pa: u64) {
        assert!(window_contains(pa, 4096), "zeroing a frame outside the window at {pa:#x}");
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
        crate::smp::shootdown();
    }
}

/// The boot frame allocator: takes frames from the top of the free ranges.
pub struct BootAlloc {
    pub free: [MemRange; MAX_RAM],
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

/// A kernel that took over from another (a rebootless upgrade) starts
/// sealed: boot frames were handed out by the first kernel.
pub fn seal_after_upgrade() {
    SEALED.store(true, Ordering::Relaxed);
}

fn phys_write_zero_frame(f: u64) {
    use exo_mm::PhysMem;
    KernelMem.zero_frame(f);
}
