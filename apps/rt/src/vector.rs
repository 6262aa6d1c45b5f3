//! The vector registers (XMM, and YMM where AVX is on) as a program sees
//! them: which are enabled, holding a pattern in all of them across a
//! stretch of work the kernel may preempt, and a snapshot of what they
//! held when the kernel last entered this process (taken in `_start`,
//! before anything else runs, only once a program asks for it). The
//! kernel saves them with the interrupted context and clears them on every
//! switch of address space; `rt_resume` restores them (see `entry`).

use core::sync::atomic::{AtomicU64, Ordering};

/// Registers covered: XMM0–15 (the low halves of YMM0–15).
pub const REGS: usize = 16;
/// Bytes kept per register (a YMM register; the upper 16 unused without AVX).
pub const REG_BYTES: usize = 32;

/// Every vector register, 32 bytes each (YMM; the upper halves stay zero
/// when AVX is off).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Regs(pub [[u8; REG_BYTES]; REGS]);

impl Regs {
    pub const ZERO: Regs = Regs([[0; REG_BYTES]; REGS]);
}

/// What the vector registers are here: 0 none usable, 1 SSE (XMM), 2 AVX (YMM).
pub fn width() -> u64 {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    // CPUID.1:ECX.OSXSAVE reflects CR4.OSXSAVE: XGETBV is usable.
    if leaf1.ecx & (1 << 27) != 0 {
        let (lo, _hi): (u32, u32);
        // SAFETY: XGETBV with ECX = 0 reads XCR0; allowed at CPL 3 when
        // CR4.OSXSAVE is set (checked above).
        unsafe { core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _hi, options(nomem, nostack)) };
        if lo & 0b110 == 0b110 && leaf1.ecx & (1 << 28) != 0 {
            return 2;
        }
        if lo & 0b10 != 0 {
            return 1;
        }
        return 0;
    }
    // Without XSAVE, SSE works once the kernel set CR4.OSFXSR; the CPU
    // reports SSE2 either way, so trust the kernel's FXSR setup.
    if leaf1.edx & (1 << 26) != 0 {
        1
    } else {
        0
    }
}

/// Snapshot mode for `_start`: 0 off, else [`width`]. Read by the entry
/// stub on every upcall (two instructions when off).
#[no_mangle]
static RT_VEC_SNAPSHOT: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static mut RT_VEC_AT_ENTRY: Regs = Regs::ZERO;

/// From now on, record the vector registers as each upcall finds them.
pub fn watch_entries() {
    RT_VEC_SNAPSHOT.store(width(), Ordering::SeqCst);
}

/// The vector registers as the kernel left them at the last upcall entry
/// (after [`watch_entries`]).
pub fn at_last_entry() -> Regs {
    // SAFETY: written only by the entry stub, which runs masked before
    // any code of this process; this process has one thread, so no write
    // overlaps this read (an upcall in between rewrites it whole before
    // this read resumes, and a torn view would only fail the check).
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(RT_VEC_AT_ENTRY)) }
}

/// Load `pattern` into every vector register (the YMM halves only when
/// `width` is 2), spin `spins` iterations using general registers only,
/// then return what the vector registers hold. The kernel may preempt
/// the spin any number of times: the result must equal `pattern`.
pub fn hold(pattern: &Regs, spins: u64, width: u64) -> Regs {
    let mut out = Regs::ZERO;
    if width == 0 {
        return out;
    }
    // SAFETY: `rt_vec_hold` reads 512 bytes at `pattern` and writes 512 at
    // `out` (both live, 32-aligned); it clobbers only caller-saved
    // registers of the C ABI (every vector register is one).
    unsafe { rt_vec_hold(pattern, &mut out, spins, width) };
    out
}

extern "C" {
    fn rt_vec_hold(pattern: *const Regs, out: *mut Regs, spins: u64, width: u64);
}

macro_rules! each_reg {
    ($op:literal) => {
        concat!(
            $op, " 0\n", $op, " 1\n", $op, " 2\n", $op, " 3\n", $op, " 4\n", $op, " 5\n", $op, " 6\n", $op, " 7\n",
            $op, " 8\n", $op, " 9\n", $op, " 10\n", $op, " 11\n", $op, " 12\n", $op, " 13\n", $op, " 14\n", $op,
            " 15\n"
        )
    };
}

// Macros in assembly: `loadx N` / `storex N` move XMMN from/to
// [base + N*32]; the `y` forms move YMMN. Base is rdi (load) or rsi
// (store). The snapshot routine runs on the upcall stack before
// `dispatch`, saving nothing (every register it touches is dead there:
// the kernel entered with only rdi..rcx meaningful, which it keeps).
core::arch::global_asm!(
    r#"
    .macro loadx n
    movdqu xmm\n, [rdi + \n*32]
    .endm
    .macro loady n
    vmovdqu ymm\n, [rdi + \n*32]
    .endm
    .macro storex n
    movdqu [rsi + \n*32], xmm\n
    .endm
    .macro storey n
    vmovdqu [rsi + \n*32], ymm\n
    .endm
    .macro snapx n
    movdqu [rax + \n*32], xmm\n
    .endm
    .macro snapy n
    vmovdqu [rax + \n*32], ymm\n
    .endm

    .section .text.rt_vec_hold, "ax"
    .global rt_vec_hold
rt_vec_hold:
    cmp rcx, 2
    je 3f
"#,
    each_reg!("loadx"),
    r#"
    jmp 4f
3:
"#,
    each_reg!("loady"),
    r#"
4:
    test rdx, rdx
    jz 5f
6:
    dec rdx
    jnz 6b
5:
    cmp rcx, 2
    je 7f
"#,
    each_reg!("storex"),
    r#"
    ret
7:
"#,
    each_reg!("storey"),
    r#"
    vzeroupper
    ret

    .section .text.rt_vec_snapshot, "ax"
    .global rt_vec_snapshot
rt_vec_snapshot:
    lea rax, [rip + RT_VEC_AT_ENTRY]
    cmp r11, 2
    je 8f
"#,
    each_reg!("snapx"),
    r#"
    ret
8:
"#,
    each_reg!("snapy"),
    r#"
    ret
"#
);
