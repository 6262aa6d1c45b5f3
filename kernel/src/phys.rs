//! Physical memory as the kernel reaches it: the physical-memory window
//! (all RAM, ACPI memory and the ACPI tables mapped at [`PHYS_OFFSET`] +
//! physical address, holes left out: `window.rs`), and every read and
//! write through it, checked against what it maps. The lowest layer of
//! the kernel's memory code: it imports no other kernel module.

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

/// The window's largest span, `[HOT_START, HOT_END)`: nearly every access
/// (page tables, control pages, the kernel info page) lands in it, and two
/// compares against it keep the check on every physical access as cheap as
/// the access (a span search on each word doubled the instructions of a
/// system call).
static HOT_START: AtomicU64 = AtomicU64::new(0);
static HOT_END: AtomicU64 = AtomicU64::new(1 << 30);
/// How many addresses from `HOT_START` on a word and a whole page can
/// start at and still fit in the hot span (`HOT_END - 8 - HOT_START + 1`,
/// likewise for 4096): the two sizes of nearly every check (page-table
/// entries, control pages) then take one subtraction and one compare
/// (`pa - HOT_START < count`, wrapping, so an address below the span
/// fails too) and no overflow test. With no hot span of at least a page
/// both are 0, so nothing passes the short test.
static HOT_WORDS: AtomicU64 = AtomicU64::new((1 << 30) - 8 + 1);
static HOT_PAGES: AtomicU64 = AtomicU64::new((1 << 30) - 4096 + 1);

/// Whether all of `[pa, pa + len)` is mapped by the physical window (and
/// so may be read and written as write-back memory).
#[inline]
pub fn window_contains(pa: u64, len: u64) -> bool {
    // `len` is a constant at nearly every call: only one arm remains.
    let starts = match len {
        0..=8 => Some(HOT_WORDS.load(Ordering::Relaxed)),
        4096 => Some(HOT_PAGES.load(Ordering::Relaxed)),
        _ => None,
    };
    if let Some(starts) = starts {
        if pa.wrapping_sub(HOT_START.load(Ordering::Relaxed)) < starts {
            return true;
        }
        return window().contains(pa, len);
    }
    let end = pa.wrapping_add(len);
    if pa >= HOT_START.load(Ordering::Relaxed) && end >= pa && end <= HOT_END.load(Ordering::Relaxed) {
        return true;
    }
    window().contains(pa, len)
}

/// The window's hot span read once for a run of checks (a page-table
/// walk): each check is then two compares against values the compiler
/// keeps in registers, instead of two loads and two compares. Valid while
/// the window does not change — always once it is frozen, and within any
/// one kernel entry before that (only boot code calls `set_window`).
///
/// Each test is one subtraction and one compare (see `HOT_WORDS`).
#[derive(Clone, Copy)]
pub struct HotSpan {
    start: u64,
    words: u64,
    pages: u64,
}

impl HotSpan {
    #[inline(always)]
    pub fn now() -> Self {
        HotSpan {
            start: HOT_START.load(Ordering::Relaxed),
            words: HOT_WORDS.load(Ordering::Relaxed),
            pages: HOT_PAGES.load(Ordering::Relaxed),
        }
    }

    /// [`phys_read`] of a word, checked against the span in registers
    /// first.
    #[inline(always)]
    pub fn read(self, pa: u64) -> u64 {
        if pa.wrapping_sub(self.start) < self.words {
            // SAFETY: the word lies in the window's hot span (checked just
            // above), which the window maps as ordinary kernel memory.
            return unsafe { core::ptr::read_unaligned((PHYS_OFFSET + pa) as *const u64) };
        }
        phys_read::<u64>(pa)
    }

    /// [`window_contains`] of a whole page at `pa`.
    #[inline(always)]
    pub fn contains_page(self, pa: u64) -> bool {
        pa.wrapping_sub(self.start) < self.pages || window_contains(pa, 4096)
    }
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
    let hot = spans.as_slice().iter().copied().max_by_key(|&(s, e)| e - s).unwrap_or((0, 0));
    // SAFETY: single-threaded boot, before `freeze_window`; no reference
    // from `window()` is alive across this call.
    unsafe { *core::ptr::addr_of_mut!(WINDOW) = spans };
    let (start, words, pages) =
        if hot.1 - hot.0 >= 4096 { (hot.0, hot.1 - hot.0 - 8 + 1, hot.1 - hot.0 - 4096 + 1) } else { (u64::MAX, 0, 0) };
    HOT_START.store(start, Ordering::Relaxed);
    HOT_END.store(hot.1, Ordering::Relaxed);
    HOT_WORDS.store(words, Ordering::Relaxed);
    HOT_PAGES.store(pages, Ordering::Relaxed);
}

/// From now on the window never changes; its spans can be lent out for
/// the kernel's lifetime (the ACPI view holds them).
pub fn freeze_window() -> &'static [(u64, u64)] {
    WINDOW_FROZEN.store(true, Ordering::Relaxed);
    window().as_slice()
}

/// A physical access the window does not cover: a kernel bug. Out of
/// line and taking the address by value, so the check on the hot path
/// keeps nothing on the stack for the message.
#[cold]
#[inline(never)]
fn outside_window(what: &str, pa: u64) -> ! {
    panic!("physical {what} outside the window at {pa:#x}")
}

/// Read a value from physical memory through the window.
#[inline]
pub fn phys_read<T: Copy>(pa: u64) -> T {
    if !window_contains(pa, core::mem::size_of::<T>() as u64) {
        outside_window("read", pa);
    }
    // SAFETY: the window maps all of its spans (checked above) as
    // ordinary kernel memory; unaligned reads are allowed by
    // `read_unaligned`.
    unsafe { core::ptr::read_unaligned((PHYS_OFFSET + pa) as *const T) }
}

/// Write a value to physical memory through the window.
pub fn phys_write<T: Copy>(pa: u64, v: T) {
    if !window_contains(pa, core::mem::size_of::<T>() as u64) {
        outside_window("write", pa);
    }
    // SAFETY: as for `phys_read`. Callers only write frames they have
    // checked are theirs to write (page tables built by the kernel, control
    // pages found by walking the owner's tables, boot frames).
    unsafe { core::ptr::write_unaligned((PHYS_OFFSET + pa) as *mut T, v) }
}

/// Write one page-table entry (or any aligned 64-bit word another CPU's
/// page walker may read at the same moment) through the window as a single
/// store. A plain `write_unaligned` compiles to one `mov` on x86-64, but
/// Rust does not promise it; an atomic store does, so a concurrent walk sees
/// the old entry or the new one, never a torn mix (the interleaving checker
/// in `exo_mm::interleave` assumes exactly this). An unaligned `pa` (never
/// an entry) falls back to `phys_write`.
pub fn phys_write_word(pa: u64, v: u64) {
    if !pa.is_multiple_of(8) {
        return phys_write::<u64>(pa, v);
    }
    if !window_contains(pa, 8) {
        outside_window("write", pa);
    }
    // SAFETY: an 8-byte aligned word inside the window (checked above),
    // ordinary kernel memory; `AtomicU64` has the alignment and size of
    // `u64`. Who may be written: see `phys_write`.
    let word = unsafe { &*((PHYS_OFFSET + pa) as *const core::sync::atomic::AtomicU64) };
    word.store(v, core::sync::atomic::Ordering::Relaxed);
}

/// `LEN` bytes of physical memory checked against the window once, then
/// read and written word by word without checking the window again (a
/// control page while the kernel saves a context into it or enters
/// through it). Offsets are still checked against `LEN`, which costs
/// nothing when they are constants, as they are at every use.
#[derive(Clone, Copy)]
pub struct Checked<const LEN: u64> {
    va: u64,
}

impl<const LEN: u64> Checked<LEN> {
    /// `[pa, pa + LEN)`, which must lie in the window.
    #[inline]
    pub fn new(pa: u64) -> Self {
        if !window_contains(pa, LEN) {
            outside_window("access", pa);
        }
        Checked { va: PHYS_OFFSET + pa }
    }

    /// The window address of `off` bytes in, with `n` bytes after it inside.
    #[inline]
    pub fn va(self, off: u64, n: u64) -> u64 {
        assert!(off <= LEN && n <= LEN - off, "offset {off:#x}+{n} outside a checked range of {LEN} bytes");
        self.va + off
    }

    #[inline]
    pub fn read(self, off: u64) -> u64 {
        // SAFETY: inside the range, which lies in the window (checked by
        // `new` and `va`); unaligned reads are allowed.
        unsafe { core::ptr::read_unaligned(self.va(off, 8) as *const u64) }
    }

    #[inline]
    pub fn write(self, off: u64, v: u64) {
        // SAFETY: as for `read`; see `phys_write` for who may be written.
        unsafe { core::ptr::write_unaligned(self.va(off, 8) as *mut u64, v) }
    }
}
