//! The C memory functions the compiler calls (`memcpy`, `memmove`,
//! `memset`, `memcmp`, `bcmp`) and the unwinder symbols prebuilt `alloc`
//! refers to.
//!
//! The programs are built for `x86_64-unknown-linux-gnu` (hard float, SSE2;
//! see `scripts/xtask/src/build.rs`), whose prebuilt `compiler_builtins`
//! leaves these functions to the C library, and there is none here. On
//! `x86_64-unknown-none` `compiler_builtins` supplied them; these do the
//! same work the same way (`rep movsq`/`rep stosq` for the 8-byte words, then
//! bytes), so a copy costs what it cost before. Written with string
//! instructions or plain loads, never a loop the compiler could turn back
//! into a call to itself.

use core::arch::asm;
use core::ffi::c_int;

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
    // word is read before anything at or after it is written.
    if (dest as usize).wrapping_sub(src as usize) >= n {
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
    // SAFETY: the caller's contract; the direction flag is clear (ABI).
    unsafe {
        asm!(
            "rep stosq",
            "mov rcx, {tail}",
            "rep stosb",
            tail = in(reg) n % 8,
            inout("rcx") n / 8 => _,
            inout("rdi") dest => _,
            in("rax") word,
            options(nostack, preserves_flags)
        )
    };
    dest
}

/// # Safety
/// `a` and `b` are valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    let mut i = 0;
    // Whole words first: equal words are skipped eight bytes a step; the
    // first unequal one is then compared byte by byte below.
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`: inside both buffers.
        let (x, y) = unsafe { (a.add(i).cast::<u64>().read_unaligned(), b.add(i).cast::<u64>().read_unaligned()) };
        if x != y {
            break;
        }
        i += 8;
    }
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
/// `dest` and `src` are valid for `n` bytes; `src` is below or apart from `dest`.
unsafe fn copy_forward(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller's contract; the direction flag is clear (ABI).
    unsafe {
        asm!(
            "rep movsq",
            "mov rcx, {tail}",
            "rep movsb",
            tail = in(reg) n % 8,
            inout("rcx") n / 8 => _,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        )
    };
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
