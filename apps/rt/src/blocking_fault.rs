//! Fault handlers that may block (a pager that waits for the disk).
//!
//! A handler installed with [`crate::set_fault_handler`] runs in the upcall
//! itself: `masked` is set, so a timer tick discards its progress and it
//! starts again from the top, and it must not `yield` (nothing would be
//! saved to come back to). That suits a pager that only maps a frame, not
//! one that reads a page through the block service, which means yielding
//! to the driver and waiting for its answer.
//!
//! A *blocking* handler runs instead as the interrupted program's own code,
//! the way a POSIX signal handler does: the upcall only pushes the fault's
//! return address, address and error code below the interrupted stack
//! pointer's red zone (the 128 bytes System V code may use below its
//! stack pointer; the trampoline's `ret` drops them again) and resumes
//! the program at
//! [`rt_fault_trampoline`], which saves every register (the vector
//! registers, x87 and MXCSR too, with `FXSAVE`: the handler is compiled
//! Rust using SSE, the interrupted code's XMM values are live, and the
//! programs are built without AVX, whose legacy-SSE code leaves the YMM
//! upper halves alone), calls the handler
//! on that stack with `masked` clear, restores the registers and returns to
//! the faulting instruction, which runs again. While the handler runs the
//! program is an ordinary, preemptible context: the kernel saves it on a
//! tick, and it may `yield` and wait. Cost: no extra system call (the
//! trampoline returns with `ret`), one upcall per fault as before.
//!
//! Only faults the `claims` predicate accepts are redirected (cheap, in
//! the upcall), so a stray fault is still reported from the upcall with
//! its own address and instruction. A fault inside the blocking handler at
//! an address it claims runs the handler again, nested; the handler must
//! notice (a busy pager) and refuse, which ends in the fatal report.

use crate::control;
use crate::entry::RED_ZONE;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use exo_abi::control::SAVED;

/// Resolves a fault at `addr` with hardware error `code`; may block.
/// Returns false if it cannot (the program then ends with a report).
pub type BlockingFaultHandler = fn(addr: u64, code: u64) -> bool;

static HANDLER: AtomicUsize = AtomicUsize::new(0);
static CLAIMS: AtomicUsize = AtomicUsize::new(0);
static REDIRECTED: AtomicU64 = AtomicU64::new(0);

/// Install `handler` for faults at addresses `claims` accepts.
pub fn set_blocking_fault_handler(claims: fn(u64) -> bool, handler: BlockingFaultHandler) {
    CLAIMS.store(claims as usize, Ordering::SeqCst);
    HANDLER.store(handler as usize, Ordering::SeqCst);
}

/// Faults handed to the blocking handler so far.
pub fn blocking_faults() -> u64 {
    REDIRECTED.load(Ordering::Relaxed)
}

const RSP: u64 = SAVED + 7 * 8;
const RIP: u64 = SAVED + 16 * 8;

/// Called by the upcall dispatcher (masked, the faulting context saved) for
/// a page fault nothing else resolved: if the blocking handler claims the
/// address, make the saved context enter the trampoline and return true.
pub(crate) fn redirect(addr: u64, code: u64) -> bool {
    let (claims, handler) = (CLAIMS.load(Ordering::SeqCst), HANDLER.load(Ordering::SeqCst));
    if claims == 0 || handler == 0 {
        return false;
    }
    // SAFETY: stored by `set_blocking_fault_handler` from a valid fn pointer.
    let claims: fn(u64) -> bool = unsafe { core::mem::transmute::<usize, fn(u64) -> bool>(claims) };
    if !claims(addr) {
        return false;
    }
    let (rsp, rip) = (control::read(RSP), control::read(RIP));
    if rsp < 4096 || !rsp.is_multiple_of(8) {
        return false; // no stack to run the handler on
    }
    let below = rsp - RED_ZONE;
    let frame = below - 24;
    // SAFETY: the three words just below the interrupted code's red zone
    // are free (System V code uses at most the 128 bytes under its rsp;
    // `rt_resume` writes its frame below the zone too), and the
    // interrupted context was running on that stack, so it is mapped and
    // writable (a stack that ends inside the next 152 bytes faults here,
    // in the upcall, and the fault is reported).
    unsafe {
        core::ptr::write_volatile((below - 8) as *mut u64, rip);
        core::ptr::write_volatile((below - 16) as *mut u64, addr);
        core::ptr::write_volatile((below - 24) as *mut u64, code);
    }
    control::write(RSP, frame);
    control::write(RIP, rt_fault_trampoline as *const () as u64);
    REDIRECTED.fetch_add(1, Ordering::Relaxed);
    true
}

/// The frame the trampoline builds: rflags, then the 15 registers it
/// pushed (rax first, so the last pushed, r15, is at index 1), then what
/// `redirect` pushed: error code, address, return address.
const F_CODE: usize = 16;
const F_ADDR: usize = 17;
const F_RIP: usize = 18;

extern "C" fn blocking_fault(frame: *const u64) {
    // SAFETY: `frame` points at the 19 words the trampoline and `redirect`
    // wrote on this stack, live until this function returns.
    let word = |i: usize| unsafe { core::ptr::read_volatile(frame.add(i)) };
    let (code, addr, rip) = (word(F_CODE), word(F_ADDR), word(F_RIP));
    let h = HANDLER.load(Ordering::SeqCst);
    // SAFETY: stored by `set_blocking_fault_handler` from a valid fn pointer.
    let h: BlockingFaultHandler = unsafe { core::mem::transmute::<usize, BlockingFaultHandler>(h) };
    if !h(addr, code) {
        crate::fatal(format_args!(
            "unhandled page fault at {addr:#x} (error {code:#x}, rip {rip:#x}; the pager refused it)"
        ))
    }
}

extern "C" {
    fn rt_fault_trampoline();
}

core::arch::global_asm!(
    r#"
    .section .text.rt_fault_trampoline, "ax"
    .global rt_fault_trampoline
rt_fault_trampoline:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    pushfq
    cld
    mov rbx, rsp
    and rsp, -16
    sub rsp, 512
    fxsave64 [rsp]
    mov rdi, rbx
    call {handler}
    fxrstor64 [rsp]
    mov rsp, rbx
    popfq
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    ret {red_zone}
"#,
    handler = sym blocking_fault,
    red_zone = const RED_ZONE,
);
