//! The C memory functions the compiler calls (`memcpy`, `memmove`,
//! `memset`, `memcmp`, `bcmp`) and the unwinder symbols prebuilt `alloc`
//! refers to.
//!
//! The programs are built for `x86_64-unknown-linux-gnu` (hard float, SSE2;
//! see `scripts/xtask/src/build.rs`), whose prebuilt `compiler_builtins`
//! leaves these functions to the C library, and there is none here. On
//! `x86_64-unknown-none` `compiler_builtins` supplied them with `rep
//! movsq`/`rep stosq` and then bytes, and an 8-bytes-then-bytes `memcmp`.
//! Now short copies and fills (up to 64 bytes) are a few overlapping
//! loads and stores (SSE2 from 16 bytes), longer ones `rep movsq`/`rep
//! stosq` with an overlapping last word instead of a byte tail, and
//! `memcmp` compares 16 bytes a step with SSE2 and finds the first unequal
//! byte from the mask, then at most two (overlapping) words: a pmem sync
//! commit of libdb compares 16-byte keys about 16 times, which cost 1,119
//! of its 4,363 instructions with the byte-by-byte tail (eval/DB.md).
//! Written with string instructions, intrinsics or plain loads, never a
//! loop the compiler could turn back into a call to itself.

use core::arch::asm;
use core::arch::x86_64::{
    __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8, _mm_storeu_si128,
};
use core::ffi::c_int;

/// Up to this many bytes a copy or fill is a few possibly overlapping
/// loads and stores (every load before any store); above it the string
/// instructions take over. Most of a database commit's copies and fills
/// are short (keys, 100-byte values, headers): under TCG's `-icount`
/// each iteration of a `rep` counts as an instruction, and glibc's
/// versions, which Linux's programs use, are also branchy straight-line
/// code at these sizes.
const SHORT: usize = 64;

/// # Safety
/// `dest` and `src` are valid for `n` bytes and do not overlap (C's contract).
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; the direction flag is clear (ABI).
    unsafe { copy_forward(dest, src, n) };
    dest
}

/// # Safety
/// `dest` and `src` are valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // A forward copy is right unless `dest` starts inside the source: each
    // word is read before anything at or after it is written. A short
    // copy reads everything before it writes, so any overlap is fine.
    if n <= SHORT || (dest as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: the caller's contract; see above for the overlap.
        unsafe { copy_forward(dest, src, n) };
    } else {
        // SAFETY: the caller's contract; copied from the end backwards
        // (bytes above the last whole word first, then the words), with
        // the direction flag set only for these two instructions.
        unsafe {
            asm!(
                "std",
                "rep movsb",
                "sub rdi, 7",
                "sub rsi, 7",
                "mov rcx, {words}",
                "rep movsq",
                "cld",
                words = in(reg) n / 8,
                inout("rcx") n % 8 => _,
                inout("rdi") dest.add(n).wrapping_sub(1) => _,
                inout("rsi") src.add(n).wrapping_sub(1) => _,
                options(nostack)
            )
        };
    }
    dest
}

/// # Safety
/// `dest` is valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, c: c_int, n: usize) -> *mut u8 {
    let word = (c as u8 as u64) * 0x0101_0101_0101_0101;
    // SAFETY: every store below is inside `dest[..n]` (the caller's
    // contract): the short cases store a head and a tail that overlap
    // in the middle; the long case `rep stosq` (the direction flag is
    // clear, ABI) and then the last 8 bytes again.
    unsafe {
        if n <= SHORT {
            if n >= 16 {
                let v = _mm_set1_epi8(c as i8);
                let s = |at: usize| _mm_storeu_si128(dest.add(at).cast::<__m128i>(), v);
                s(0);
                s(n - 16);
                if n > 32 {
                    s(16);
                    s(n - 32);
                }
            } else if n >= 8 {
                dest.cast::<u64>().write_unaligned(word);
                dest.add(n - 8).cast::<u64>().write_unaligned(word);
            } else if n >= 4 {
                dest.cast::<u32>().write_unaligned(word as u32);
                dest.add(n - 4).cast::<u32>().write_unaligned(word as u32);
            } else if n > 0 {
                *dest = word as u8;
                *dest.add(n / 2) = word as u8;
                *dest.add(n - 1) = word as u8;
            }
        } else {
            asm!(
                "rep stosq",
                inout("rcx") n / 8 => _,
                inout("rdi") dest => _,
                in("rax") word,
                options(nostack, preserves_flags)
            );
            dest.add(n - 8).cast::<u64>().write_unaligned(word);
        }
    }
    dest
}

/// `x` and `y` are 8 unequal bytes read in memory order: their order as
/// byte strings (the first differing byte decides).
fn order_of_words(x: u64, y: u64) -> c_int {
    if x.swap_bytes() < y.swap_bytes() {
        -1
    } else {
        1
    }
}

/// # Safety
/// `a` and `b` are valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    // 16 bytes a step (SSE2): the mask of equal bytes finds the first
    // unequal one. The last step is the last 16 bytes, which may overlap
    // the ones already found equal (they cannot decide): no tail loop,
    // and a 16-byte compare (libdb's keys) is one step.
    if n >= 16 {
        // SAFETY: every block compared lies in `[0, n)` of both buffers.
        let first_unequal = |at: usize| unsafe {
            let x = _mm_loadu_si128(a.add(at).cast::<__m128i>());
            let y = _mm_loadu_si128(b.add(at).cast::<__m128i>());
            let equal = _mm_movemask_epi8(_mm_cmpeq_epi8(x, y)) as u32;
            (equal != 0xffff).then(|| at + (!equal).trailing_zeros() as usize)
        };
        let last = n - 16;
        let mut i = 0;
        let found = loop {
            if i >= last {
                break first_unequal(last);
            }
            if let Some(j) = first_unequal(i) {
                break Some(j);
            }
            i += 16;
        };
        return match found {
            // SAFETY: `j < n`.
            Some(j) => unsafe { c_int::from(*a.add(j)) - c_int::from(*b.add(j)) },
            None => 0,
        };
    }
    if n >= 8 {
        // 8 to 15 bytes: two words that may overlap each other (bytes
        // found equal cannot decide).
        for at in [0, n - 8] {
            // SAFETY: `at + 8 <= n`: inside both buffers.
            let (x, y) =
                unsafe { (a.add(at).cast::<u64>().read_unaligned(), b.add(at).cast::<u64>().read_unaligned()) };
            if x != y {
                return order_of_words(x, y);
            }
        }
        return 0;
    }
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n`: inside both buffers.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return c_int::from(x) - c_int::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// `a` and `b` are valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// `dest` and `src` are valid for `n` bytes; `src` is below or apart from
/// `dest`, or `n <= SHORT` (then every byte is read before any is written).
unsafe fn copy_forward(dest: *mut u8, src: *const u8, n: usize) {
    // Short copies: a head and a tail that overlap in the middle, all
    // loaded before anything is stored. Long ones: the last 8 source bytes
    // are loaded first, then `rep movsq` (the direction flag is clear, ABI)
    // copies the whole words forward, then those 8 bytes are stored at the
    // end (over bytes the words may have written already, with the same
    // values). Loading the tail first keeps this right for memmove's
    // overlapping forward case too.
    // SAFETY: the caller's contract, and the order above.
    unsafe {
        if n <= SHORT {
            if n >= 16 {
                let l = |at: usize| _mm_loadu_si128(src.add(at).cast::<__m128i>());
                let s = |at: usize, v: __m128i| _mm_storeu_si128(dest.add(at).cast::<__m128i>(), v);
                let (h, t) = (l(0), l(n - 16));
                if n > 32 {
                    let (h2, t2) = (l(16), l(n - 32));
                    s(16, h2);
                    s(n - 32, t2);
                }
                s(0, h);
                s(n - 16, t);
            } else if n >= 8 {
                let (h, t) = (src.cast::<u64>().read_unaligned(), src.add(n - 8).cast::<u64>().read_unaligned());
                dest.cast::<u64>().write_unaligned(h);
                dest.add(n - 8).cast::<u64>().write_unaligned(t);
            } else if n >= 4 {
                let (h, t) = (src.cast::<u32>().read_unaligned(), src.add(n - 4).cast::<u32>().read_unaligned());
                dest.cast::<u32>().write_unaligned(h);
                dest.add(n - 4).cast::<u32>().write_unaligned(t);
            } else if n > 0 {
                let (h, m, t) = (*src, *src.add(n / 2), *src.add(n - 1));
                *dest = h;
                *dest.add(n / 2) = m;
                *dest.add(n - 1) = t;
            }
        } else {
            let tail = src.add(n - 8).cast::<u64>().read_unaligned();
            asm!(
                "rep movsq",
                inout("rcx") n / 8 => _,
                inout("rdi") dest => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags)
            );
            dest.add(n - 8).cast::<u64>().write_unaligned(tail);
        }
    }
}

/// Named by the unwind tables of prebuilt `core` and `alloc` (built to
/// unwind). Programs abort on panic (`panic = "abort"`, the runtime's
/// panic handler never returns), so no unwinder ever calls it.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Called only from landing pads of prebuilt `core`/`alloc`, which no
/// panic reaches here (see [`rust_eh_personality`]).
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::fatal(format_args!("_Unwind_Resume called: nothing unwinds in an exo program"))
}
