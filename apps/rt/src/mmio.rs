//! Volatile access to memory that lies outside the Rust program: device
//! registers (a BAR or configuration page mapped uncached), DMA memory a
//! driver shares with its device, and regions shared with other processes.
//!
//! All of these can change behind the compiler's back (the device or the
//! peer writes them), so every access is volatile, and the two atomic
//! accessors give the acquire/release ordering that ring protocols need.
//!
//! A [`Window`] is checked once, when made: it must lie at or above
//! [`WINDOW_FLOOR`] (below it live this program's code, stacks and heap,
//! which Rust owns) and inside the user half. Every access is then checked
//! against the window's bounds and alignment. An address inside a window
//! that is not mapped raises a page-fault upcall like any access.

use core::sync::atomic::{fence, AtomicU32, Ordering};

/// Lowest address a window may cover: the runtime places program images,
/// stacks and the heap below `SPARE_VA` (the heap a parent gives is far
/// smaller than the gap up to it), so memory from here up is never Rust's.
pub const WINDOW_FLOOR: u64 = crate::layout::SPARE_VA;

/// A range of this address space reached only through volatile accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    base: u64,
    len: u64,
}

impl Window {
    /// `[base, base + len)`, or `None` if it is empty, not page aligned,
    /// below [`WINDOW_FLOOR`] or not inside the user half.
    pub fn new(base: u64, len: u64) -> Option<Window> {
        let end = base.checked_add(len)?;
        let aligned = base.is_multiple_of(exo_abi::PAGE_SIZE);
        if len == 0 || !aligned || base < WINDOW_FLOOR || end > exo_abi::USER_END {
            return None;
        }
        Some(Window { base, len })
    }

    pub const fn base(&self) -> u64 {
        self.base
    }

    pub const fn len(&self) -> u64 {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sub-window `[offset, offset + len)`.
    pub fn slice(&self, offset: u64, len: u64) -> Option<Window> {
        if offset.checked_add(len)? > self.len {
            return None;
        }
        Window::new(self.base + offset, len)
    }

    /// The address of `size` bytes at `offset`, after the bounds and
    /// alignment checks every access makes.
    fn at(&self, offset: u64, size: u64) -> u64 {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len) && offset.is_multiple_of(size),
            "access of {size} bytes at offset {offset:#x} outside or misaligned in a {:#x}-byte window",
            self.len
        );
        self.base + offset
    }

    pub fn read8(&self, offset: u64) -> u8 {
        let p = self.at(offset, 1) as *const u8;
        // SAFETY: `p` lies inside this window: at or above WINDOW_FLOOR in
        // the user half, so never memory the Rust program owns; volatile
        // because a device or another process may change it. An unmapped
        // address faults into this process's upcall handler.
        unsafe { core::ptr::read_volatile(p) }
    }

    pub fn write8(&self, offset: u64, v: u8) {
        let p = self.at(offset, 1) as *mut u8;
        // SAFETY: as for `read8`; a read-only mapping faults instead.
        unsafe { core::ptr::write_volatile(p, v) }
    }

    pub fn read16(&self, offset: u64) -> u16 {
        let p = self.at(offset, 2) as *const u16;
        // SAFETY: as for `read8`; `at` checked the alignment.
        unsafe { core::ptr::read_volatile(p) }
    }

    pub fn write16(&self, offset: u64, v: u16) {
        let p = self.at(offset, 2) as *mut u16;
        // SAFETY: as for `write8`; `at` checked the alignment.
        unsafe { core::ptr::write_volatile(p, v) }
    }

    pub fn read32(&self, offset: u64) -> u32 {
        let p = self.at(offset, 4) as *const u32;
        // SAFETY: as for `read8`; `at` checked the alignment.
        unsafe { core::ptr::read_volatile(p) }
    }

    pub fn write32(&self, offset: u64, v: u32) {
        let p = self.at(offset, 4) as *mut u32;
        // SAFETY: as for `write8`; `at` checked the alignment.
        unsafe { core::ptr::write_volatile(p, v) }
    }

    pub fn read64(&self, offset: u64) -> u64 {
        let p = self.at(offset, 8) as *const u64;
        // SAFETY: as for `read8`; `at` checked the alignment.
        unsafe { core::ptr::read_volatile(p) }
    }

    pub fn write64(&self, offset: u64, v: u64) {
        let p = self.at(offset, 8) as *mut u64;
        // SAFETY: as for `write8`; `at` checked the alignment.
        unsafe { core::ptr::write_volatile(p, v) }
    }

    /// Acquire load of a 32-bit word (a ring index another party stores).
    pub fn load_acquire32(&self, offset: u64) -> u32 {
        let p = self.at(offset, 4) as *const AtomicU32;
        // SAFETY: as for `read8`; AtomicU32 has u32's layout and `at`
        // checked the 4-byte alignment. Only this accessor pair and the
        // volatile ones touch the word from this process.
        unsafe { (*p).load(Ordering::Acquire) }
    }

    /// Release store of a 32-bit word: everything written before it is
    /// visible to whoever acquires the word.
    pub fn store_release32(&self, offset: u64, v: u32) {
        let p = self.at(offset, 4) as *const AtomicU32;
        // SAFETY: as for `load_acquire32`.
        unsafe { (*p).store(v, Ordering::Release) }
    }

    /// The address of `[offset, offset + len)` after one bounds check for
    /// the whole range (a bulk copy checks once, not per word).
    fn range(&self, offset: u64, len: usize) -> u64 {
        assert!(
            offset.checked_add(len as u64).is_some_and(|end| end <= self.len),
            "copy of {len} bytes at offset {offset:#x} outside a {:#x}-byte window",
            self.len
        );
        self.base + offset
    }

    /// Copy `buf.len()` bytes from `offset` (8 bytes at a time from the
    /// first 8-aligned address on, volatile). Preceded by an acquire fence
    /// so that it is not read before an earlier read that said the data was
    /// ready. The range is checked once: a per-word check made this copy
    /// ~3 guest instructions per byte, most of reading a full libdb log
    /// through the block service (eval/RECOVERY.md); now ~0.7.
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        fence(Ordering::Acquire);
        let addr = self.range(offset, buf.len());
        let head = (addr.next_multiple_of(8) - addr).min(buf.len() as u64) as usize;
        let (bytes, rest) = buf.split_at_mut(head);
        let mut a = addr;
        for b in bytes.iter_mut() {
            // SAFETY: `a` lies inside this window (`range` checked the whole
            // copy): memory Rust does not own, volatile as in `read8`.
            *b = unsafe { core::ptr::read_volatile(a as *const u8) };
            a += 1;
        }
        let mut words = rest.chunks_exact_mut(8);
        for w in words.by_ref() {
            // SAFETY: as above; `a` is 8-byte aligned from here on.
            w.copy_from_slice(&unsafe { core::ptr::read_volatile(a as *const u64) }.to_le_bytes());
            a += 8;
        }
        for b in words.into_remainder() {
            // SAFETY: as above.
            *b = unsafe { core::ptr::read_volatile(a as *const u8) };
            a += 1;
        }
    }

    /// Copy `data` to `offset` (8 bytes at a time from the first 8-aligned
    /// address on, volatile, the range checked once as in [`Window::read`]),
    /// then a release fence so that a later doorbell or index store is not
    /// seen before the data.
    pub fn write(&self, offset: u64, data: &[u8]) {
        let addr = self.range(offset, data.len());
        let head = (addr.next_multiple_of(8) - addr).min(data.len() as u64) as usize;
        let (bytes, rest) = data.split_at(head);
        let mut a = addr;
        for &b in bytes {
            // SAFETY: `a` lies inside this window (`range` checked the whole
            // copy): memory Rust does not own, volatile as in `write8`; a
            // read-only mapping faults instead.
            unsafe { core::ptr::write_volatile(a as *mut u8, b) };
            a += 1;
        }
        let mut words = rest.chunks_exact(8);
        for w in words.by_ref() {
            let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            // SAFETY: as above; `a` is 8-byte aligned from here on.
            unsafe { core::ptr::write_volatile(a as *mut u64, v) };
            a += 8;
        }
        for &b in words.remainder() {
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(a as *mut u8, b) };
            a += 1;
        }
        fence(Ordering::Release);
    }

    /// Set `len` bytes at `offset` to `byte`.
    pub fn fill(&self, offset: u64, len: u64, byte: u8) {
        let word = u64::from_ne_bytes([byte; 8]);
        let mut off = offset;
        let end = offset + len;
        while off < end {
            if off.is_multiple_of(8) && end - off >= 8 {
                self.write64(off, word);
                off += 8;
            } else {
                self.write8(off, byte);
                off += 1;
            }
        }
        fence(Ordering::Release);
    }

    /// Start writing back the cache lines of `[offset, offset + len)`
    /// (persistent memory shared with a peer, such as a file's NVDIMM pages
    /// the file service mapped here); durable after `pmem::cpu::sfence`.
    /// No system call: `clwb`, else `clflushopt`, else `clflush`.
    pub fn persist(&self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let at = self.at(offset, 1);
        assert!(
            offset + len <= self.len,
            "persist of {len} bytes at {offset:#x} outside a {:#x}-byte window",
            self.len
        );
        // SAFETY: the range lies inside this window (checked above), which
        // is never memory the Rust program owns; the flush instructions
        // write cache lines back and change no byte (an unmapped page
        // faults like any access).
        unsafe { pmem::cpu::flush_range(flush_method(), at as *const u8, len as usize) }
    }
}

/// The CPU's cache-line write-back instruction, asked of CPUID once.
fn flush_method() -> pmem::cpu::FlushMethod {
    static METHOD: spin::Once<pmem::cpu::FlushMethod> = spin::Once::new();
    *METHOD.call_once(pmem::cpu::FlushMethod::detect)
}
