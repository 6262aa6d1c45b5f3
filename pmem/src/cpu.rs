//! x86_64 cache-line write-back and store fences, chosen by CPUID.
//!
//! All functions that take raw addresses are `unsafe`; everything else in
//! the workspace reaches them through a safe region type ([`crate::linux`])
//! that owns the mapping.

use crate::CACHE_LINE;

/// The instruction used to write a cache line back to memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushMethod {
    /// `clwb`: writes back, keeps the line cached (best).
    Clwb,
    /// `clflushopt`: writes back and invalidates, weakly ordered.
    ClflushOpt,
    /// `clflush`: writes back and invalidates, serialising (slowest).
    Clflush,
    /// Not an x86 CPU with any of the above: flushing is a no-op, which is
    /// only correct where memory is not persistent (tests, msync backends).
    None,
}

impl FlushMethod {
    /// Picks the best instruction this CPU supports.
    pub fn detect() -> FlushMethod {
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::{__cpuid, __cpuid_count};
            // SAFETY: CPUID exists on every x86_64 CPU and has no side
            // effects; leaf 7 is read only when leaf 0 says it exists.
            #[allow(unused_unsafe)]
            let (max_leaf, leaf7_ebx, leaf1_edx) = unsafe {
                let max = __cpuid(0).eax;
                let l7 = if max >= 7 { __cpuid_count(7, 0).ebx } else { 0 };
                (max, l7, __cpuid(1).edx)
            };
            let _ = max_leaf;
            if leaf7_ebx & (1 << 24) != 0 {
                return FlushMethod::Clwb;
            }
            if leaf7_ebx & (1 << 23) != 0 {
                return FlushMethod::ClflushOpt;
            }
            if leaf1_edx & (1 << 19) != 0 {
                return FlushMethod::Clflush;
            }
        }
        FlushMethod::None
    }
}

/// Writes back every cache line overlapping `[addr, addr + len)`.
///
/// # Safety
/// The whole range must be mapped memory of this process (flushing an
/// unmapped address faults).
pub unsafe fn flush_range(method: FlushMethod, addr: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let start = (addr as usize) & !(CACHE_LINE - 1);
    let end = addr as usize + len;
    let mut line = start;
    while line < end {
        // SAFETY: the caller guarantees the range is mapped; `line` lies in
        // the same pages as the range (it is rounded down to a line only).
        unsafe { flush_line(method, line as *const u8) };
        line += CACHE_LINE;
    }
}

#[inline]
unsafe fn flush_line(method: FlushMethod, p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees `p` is mapped; the instructions only
    // write the line back and (for the clflush variants) invalidate it, and
    // the method was selected by CPUID so the opcode exists.
    unsafe {
        match method {
            FlushMethod::Clwb => {
                core::arch::asm!("clwb [{0}]", in(reg) p, options(nostack, preserves_flags))
            }
            FlushMethod::ClflushOpt => {
                core::arch::asm!("clflushopt [{0}]", in(reg) p, options(nostack, preserves_flags))
            }
            FlushMethod::Clflush => {
                core::arch::asm!("clflush [{0}]", in(reg) p, options(nostack, preserves_flags))
            }
            FlushMethod::None => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (method, p);
}

/// Store fence: every flush and non-temporal store issued before it is
/// complete (durable, for persistent memory) when it retires.
#[inline]
pub fn sfence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` only orders stores; it touches no memory or register.
    unsafe {
        core::arch::asm!("sfence", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "x86_64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Copies `src` to `dst` with non-temporal stores (`movnti`) for the
/// 8-byte-aligned middle, bypassing the cache; the unaligned head and tail
/// are stored normally and flushed with `method`. The copy is durable after
/// the next [`sfence`].
///
/// # Safety
/// `dst..dst + src.len()` must be mapped, writable memory of this process
/// that does not overlap `src` and that no live Rust reference aliases.
pub unsafe fn nt_copy(method: FlushMethod, dst: *mut u8, src: &[u8]) {
    let len = src.len();
    let head = ((8 - (dst as usize & 7)) & 7).min(len);
    // SAFETY: in bounds of both buffers by construction; caller guarantees
    // `dst` is writable and does not overlap `src`.
    unsafe {
        core::ptr::copy_nonoverlapping(src.as_ptr(), dst, head);
        let words = (len - head) / 8;
        let mut i = 0;
        while i < words {
            let off = head + i * 8;
            let v = u64::from_ne_bytes([
                src[off],
                src[off + 1],
                src[off + 2],
                src[off + 3],
                src[off + 4],
                src[off + 5],
                src[off + 6],
                src[off + 7],
            ]);
            store_nt(dst.add(off) as *mut u64, v);
            i += 1;
        }
        let tail_start = head + words * 8;
        core::ptr::copy_nonoverlapping(src.as_ptr().add(tail_start), dst.add(tail_start), len - tail_start);
        flush_range(method, dst, head);
        flush_range(method, dst.add(tail_start), len - tail_start);
    }
}

#[inline]
unsafe fn store_nt(p: *mut u64, v: u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `p` is 8-byte aligned and writable (guaranteed by `nt_copy`'s
    // caller and its alignment arithmetic).
    unsafe {
        core::arch::asm!("movnti [{0}], {1}", in(reg) p, in(reg) v, options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above.
    unsafe {
        p.write_volatile(v)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_and_flush_heap_memory() {
        let m = FlushMethod::detect();
        let mut buf = vec![0u8; 4096 + 13];
        let src: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
        // SAFETY: `buf` is a live allocation large enough for the copy at
        // offset 5, and it does not overlap `src`.
        unsafe {
            nt_copy(m, buf.as_mut_ptr().add(5), &src);
            flush_range(m, buf.as_ptr(), buf.len());
        }
        sfence();
        assert_eq!(&buf[5..4005], &src[..]);
        assert_eq!(buf[4], 0);
        assert_eq!(buf[4005], 0);
    }
}
