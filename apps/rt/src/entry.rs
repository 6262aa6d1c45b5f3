//! Process entry, upcall dispatch and resumption.
//!
//! The kernel enters a process only at its upcall entry (`_start`, whose
//! address the parent wrote into the control page), with the reason in
//! `rdi`. The first entry starts `main` on the main stack; later entries
//! are dispatched here: page faults to the program's pager, messages to
//! its handler, and then the interrupted context saved in the control page
//! is resumed by [`resume`] — all in userspace, so scheduling and paging
//! policy belong to the program, not the kernel.

use crate::layout::msg;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use exo_abi::{control, Reason, CONTROL_VA};

/// A page-fault handler: returns true if it resolved the fault (the
/// faulting instruction is then retried).
pub type FaultHandler = fn(addr: u64, code: u64) -> bool;
/// A full upcall handler (init's root scheduler): never returns; it ends
/// by yielding elsewhere or calling [`resume`].
pub type UpcallHandler = fn(reason: Reason, a: u64, b: u64, c: u64) -> !;

static STARTED: AtomicBool = AtomicBool::new(false);
static FAULT_HANDLER: AtomicUsize = AtomicUsize::new(0);
static UPCALL_HANDLER: AtomicUsize = AtomicUsize::new(0);
static WAKE_ARG: AtomicU64 = AtomicU64::new(0);
static WAKE_FROM: AtomicU64 = AtomicU64::new(0);
static FAULTS_HANDLED: AtomicU64 = AtomicU64::new(0);
static UPCALLS: AtomicU64 = AtomicU64::new(0);

pub fn set_fault_handler(h: FaultHandler) {
    FAULT_HANDLER.store(h as usize, Ordering::SeqCst);
}

pub fn set_upcall_handler(h: UpcallHandler) {
    UPCALL_HANDLER.store(h as usize, Ordering::SeqCst);
}

/// The argument and sender of the last `yield` that woke this process.
pub fn last_wake() -> (u64, u64) {
    (WAKE_ARG.load(Ordering::SeqCst), WAKE_FROM.load(Ordering::SeqCst))
}

/// Upcalls (kernel entries into this process: faults, ticks, yields to
/// it) so far, the first included: with [`crate::sys::calls`], this
/// process's kernel crossings.
pub fn upcalls() -> u64 {
    UPCALLS.load(Ordering::Relaxed)
}

/// Page faults resolved by the program's handler so far.
pub fn faults_handled() -> u64 {
    FAULTS_HANDLED.load(Ordering::SeqCst)
}

extern "Rust" {
    fn exo_main();
}

core::arch::global_asm!(
    r#"
    .section .bss.rt_stacks, "aw", @nobits
    .align 16
rt_upcall_stack:
    .skip 32768
rt_upcall_stack_top:
    .align 16
rt_main_stack:
    .skip 131072
rt_main_stack_top:

    .section .text._start, "ax"
    .global _start
_start:
    /* r8 = the CPU: every CPU but 0 takes the per-CPU path (smp.rs). */
    test r8, r8
    jnz rt_ap_entry
    lea rsp, [rip + rt_upcall_stack_top]
    mov r11, qword ptr [rip + RT_VEC_SNAPSHOT]
    test r11, r11
    jz 1f
    call rt_vec_snapshot
1:
    call {dispatch}
    ud2

    /* rdi = the control page of the CPU main starts on. */
    .global rt_start_main
rt_start_main:
    lea rsp, [rip + rt_main_stack_top]
    mov qword ptr [rdi + {masked_off}], 0
    call {main}
    ud2

    .global rt_resume
rt_resume:
    mov rax, qword ptr [{vkind}]
    cmp rax, {kind_xsave}
    jne 1f
    mov eax, dword ptr [{vmask}]
    mov edx, dword ptr [{vmask} + 4]
    xrstor64 [{varea}]
    jmp 2f
1:
    cmp rax, {kind_fxsave}
    jne 2f
    fxrstor64 [{varea}]
2:
    /* The return rip and rflags go below the interrupted code's red zone
       (the 128 bytes under its rsp that System V code may use without
       moving rsp: the programs are built for a Linux target, and its
       prebuilt core uses it); `ret {red_zone}` then drops the zone. */
    mov rax, qword ptr [{saved} + 7*8]
    sub rax, {red_zone} + 16
    mov rbx, qword ptr [{saved} + 16*8]
    mov qword ptr [rax + 8], rbx
    mov rbx, qword ptr [{saved} + 17*8]
    mov qword ptr [rax], rbx
    mov rsp, rax
    mov rbx, qword ptr [{saved} + 1*8]
    mov rcx, qword ptr [{saved} + 2*8]
    mov rdx, qword ptr [{saved} + 3*8]
    mov rsi, qword ptr [{saved} + 4*8]
    mov rdi, qword ptr [{saved} + 5*8]
    mov rbp, qword ptr [{saved} + 6*8]
    mov r8, qword ptr [{saved} + 8*8]
    mov r9, qword ptr [{saved} + 9*8]
    mov r10, qword ptr [{saved} + 10*8]
    mov r11, qword ptr [{saved} + 11*8]
    mov r12, qword ptr [{saved} + 12*8]
    mov r13, qword ptr [{saved} + 13*8]
    mov r14, qword ptr [{saved} + 14*8]
    mov r15, qword ptr [{saved} + 15*8]
    mov rax, qword ptr [{saved} + 0*8]
    mov qword ptr [{masked}], 0
    popfq
    ret {red_zone}
"#,
    dispatch = sym dispatch,
    main = sym main_trampoline,
    masked = const CONTROL_VA + control::MASKED,
    masked_off = const control::MASKED,
    saved = const CONTROL_VA + control::SAVED,
    vkind = const CONTROL_VA + control::VECTOR_KIND,
    vmask = const CONTROL_VA + control::VECTOR_MASK,
    varea = const CONTROL_VA + control::VECTOR_AREA,
    kind_xsave = const exo_abi::VectorKind::Xsave as u64,
    kind_fxsave = const exo_abi::VectorKind::Fxsave as u64,
    red_zone = const RED_ZONE,
);

/// The System V red zone: the bytes below an interrupted stack pointer
/// that its code may still be using. Whatever the runtime writes on an
/// interrupted stack (the resume frame, the blocking-fault frame) goes
/// below it.
pub(crate) const RED_ZONE: u64 = 128;

extern "C" {
    fn rt_start_main(ctl: u64) -> !;
    fn rt_resume() -> !;
}

/// Offset of the header in a standard-format XSAVE image.
const XSAVE_HEADER: u64 = 512;

extern "C" fn main_trampoline(ctl: u64) -> ! {
    STARTED.store(true, Ordering::SeqCst);
    // XRSTOR (in `rt_resume`) faults unless the XSAVE header's words after
    // XSTATE_BV are zero; the kernel writes only XSTATE_BV, and this
    // control page's frame may hold whatever its last owner left. Nothing
    // was saved there yet: this process has not run before. (`ctl` is the
    // page of the CPU main starts on; other CPUs' pages are prepared at
    // their first entry, `smp::first_entry`.)
    clear_xsave_header(ctl);
    crate::heap::init_from_args();
    // SAFETY: `exo_main` is defined by the program through `exo_rt::entry!`.
    unsafe { exo_main() };
    crate::exit(0)
}

/// Zero the XSAVE header's words after XSTATE_BV in the control page at
/// `ctl` (see `main_trampoline`).
pub(crate) fn clear_xsave_header(ctl: u64) {
    for w in 1..8 {
        let va = ctl + control::VECTOR_AREA + XSAVE_HEADER + 8 * w;
        // SAFETY: `ctl` is one of this space's control pages, mapped and
        // writable (the kernel entered us through it); volatile because
        // the kernel writes the page behind the compiler's back.
        unsafe { core::ptr::write_volatile(va as *mut u64, 0) };
    }
}

/// Continue the context the kernel saved in the control page of the CPU
/// this upcall runs on (the one interrupted by the fault, timer or yield
/// that led here). Only from an upcall handler (on its upcall stack: that
/// is how the CPU is known, `smp::current_cpu`).
pub fn resume() -> ! {
    resume_cpu(crate::smp::current_cpu())
}

/// [`resume`] on CPU `cpu` (the one this upcall runs on).
#[inline(always)]
fn resume_cpu(cpu: u64) -> ! {
    if cpu != 0 {
        crate::smp::resume_on(cpu)
    }
    // SAFETY: the control page is mapped (the kernel entered us through
    // it) and holds a context the kernel saved from this address space;
    // `rt_resume` restores its vector registers (XRSTOR/FXRSTOR from the
    // control page's vector area, as `vector_kind` says, still masked so
    // the kernel cannot overwrite the area meanwhile), then the rest, and
    // clears `masked` just before returning.
    unsafe { rt_resume() }
}

/// CPU `cpu`'s control page holds a saved context.
#[inline(always)]
fn saved_valid(cpu: u64) -> bool {
    let va = exo_abi::smp_control_va(cpu) + control::SAVED_VALID;
    // SAFETY: the page is mapped (the kernel entered us through it on
    // this CPU); volatile: the kernel writes it behind our back.
    unsafe { core::ptr::read_volatile(va as *const u64) != 0 }
}

extern "C" fn dispatch(reason: u64, a: u64, b: u64, c: u64) -> ! {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    let reason = match Reason::try_from(reason) {
        Ok(r) => r,
        Err(n) => crate::fatal(format_args!("upcall with unknown reason {n}")),
    };
    // STARTED is set by `main_trampoline` once `masked` is clear: a tick
    // before that discards this entry, and the next one starts again.
    if !STARTED.load(Ordering::SeqCst) {
        // The kernel enters the root process first with no sender; every
        // other process is first entered by its parent's yield.
        if c == 0 {
            crate::set_root();
        }
        if claim_main(0) {
            WAKE_ARG.store(a, Ordering::SeqCst);
            WAKE_FROM.store(c, Ordering::SeqCst);
            // SAFETY: first entry: switch to the main stack and run `main`.
            unsafe { rt_start_main(CONTROL_VA) }
        }
        // Main is starting on another CPU: nothing to run here yet.
        give_back()
    }
    let h = UPCALL_HANDLER.load(Ordering::SeqCst);
    if h != 0 {
        // SAFETY: stored by `set_upcall_handler` from a valid fn pointer.
        let h: UpcallHandler = unsafe { core::mem::transmute::<usize, UpcallHandler>(h) };
        h(reason, a, b, c);
    }
    handle(0, reason, a, b, c)
}

/// The CPU main was first started on (`u64::MAX`: none yet). Two CPUs may
/// enter a fresh space at once; only one runs `main` (the same CPU may
/// start it again: an entry discarded before `STARTED` restarts it).
static MAIN_CPU: AtomicU64 = AtomicU64::new(u64::MAX);

fn claim_main(cpu: u64) -> bool {
    match MAIN_CPU.compare_exchange(u64::MAX, cpu, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => true,
        Err(owner) => owner == cpu,
    }
}

/// First entry on CPU `cpu` > 0 without a core handler (`smp.rs`): start
/// `main` here if no CPU has, else report whether main is running.
pub(crate) fn start_main_on(cpu: u64, a: u64, c: u64) {
    if !STARTED.load(Ordering::SeqCst) && claim_main(cpu) {
        WAKE_ARG.store(a, Ordering::SeqCst);
        WAKE_FROM.store(c, Ordering::SeqCst);
        // SAFETY: first entry of this space: switch to the main stack and
        // run `main` on this CPU; `masked` of this CPU's page is cleared.
        unsafe { rt_start_main(exo_abi::smp_control_va(cpu)) }
    }
}

/// Nothing to run on this CPU (no saved context for it, main runs or
/// starts elsewhere): give the CPU back to the parent. The upcall is
/// masked, so nothing is saved; the next entry here starts afresh.
fn give_back() -> ! {
    let _ = crate::sys::yield_to(crate::layout::PARENT_HANDLE_VA, msg::YIELD);
    crate::fatal(format_args!("could not give the CPU back to the parent"))
}

/// The runtime's default handling of an upcall on CPU `cpu`, the one it
/// runs on (inlined into each CPU's dispatch: CPU 0's pays no lookup).
#[inline(always)]
pub(crate) fn handle(cpu: u64, reason: Reason, a: u64, b: u64, c: u64) -> ! {
    match reason {
        Reason::Yield => {
            WAKE_ARG.store(a, Ordering::SeqCst);
            WAKE_FROM.store(c, Ordering::SeqCst);
            if saved_valid(cpu) {
                resume_cpu(cpu)
            }
            if cpu != 0 {
                // A second activation of a started space that has no work
                // for this CPU (no core handler): the parent gets it back.
                give_back()
            }
            crate::fatal(format_args!("woken with nothing to resume"))
        }
        Reason::PageFault => {
            // A fault on a recoverable probe (`crate::probe`) returns from it.
            if saved_valid(cpu) && crate::probe::fixup(b) {
                resume_cpu(cpu)
            }
            let h = FAULT_HANDLER.load(Ordering::SeqCst);
            if h != 0 {
                // SAFETY: stored by `set_fault_handler` from a valid fn pointer.
                let h: FaultHandler = unsafe { core::mem::transmute::<usize, FaultHandler>(h) };
                if h(a, b) {
                    FAULTS_HANDLED.fetch_add(1, Ordering::SeqCst);
                    resume_cpu(cpu)
                }
            }
            // A pager that must wait (see `blocking_fault`) runs as the
            // program's own code, after this upcall.
            if saved_valid(cpu) && crate::blocking_fault::redirect(a, b) {
                resume_cpu(cpu)
            }
            let rip = crate::control::read(control::SAVED + 16 * 8);
            crate::fatal(format_args!("unhandled page fault at {a:#x} (error {b:#x}, rip {rip:#x})"))
        }
        Reason::Exception => {
            let rip = crate::control::read(control::SAVED + 16 * 8);
            crate::fatal(format_args!("exception {a} (error {b:#x}) at rip {rip:#x}"))
        }
        // Without a scheduler installed (early in init), a tick or device
        // interrupt just lets the interrupted context continue.
        Reason::Timer | Reason::Interrupt => resume_cpu(cpu),
        Reason::Dead => {
            crate::println!("rt: address space {a:#x} died (code {b:#x}) and no handler is installed");
            resume_cpu(cpu)
        }
    }
}

pub(crate) fn count_upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
}

/// Give the CPU back to the parent (its scheduler picks who runs next).
pub fn yield_now() {
    let _ = crate::sys::yield_to(crate::layout::PARENT_HANDLE_VA, msg::YIELD);
}

/// Give up the CPU until the interrupt init routed to this process as its
/// wake-up (`msg::WAIT`), having consumed `consumed` events that such an
/// interrupt announces (wrapping at 2^32); returns at once if more
/// interrupts than that came already. A process with no such route waits
/// for nothing: init treats it as a plain yield.
pub fn wait_for_wake(consumed: u64) {
    let _ = crate::sys::yield_to(crate::layout::PARENT_HANDLE_VA, msg::WAIT | (consumed & 0xffff_ffff));
}
