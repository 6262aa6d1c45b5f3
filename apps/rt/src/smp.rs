//! Running on several CPUs: an activation per CPU. The kernel enters a
//! space on CPU `n` > 0 only through that space's control page for CPU
//! `n` (`exo_abi::smp_control_va(n)`), at the entry point that page names,
//! with the CPU index in `r8`. Every control page of a program names the
//! same entry, `_start` (`entry.rs`); for CPU `n` > 0 it switches to this
//! runtime's upcall stack for CPU `n` ([`AP_STACK`] bytes each, one array,
//! so the CPU an upcall runs on is known from its stack pointer alone:
//! [`current_cpu`]), and then:
//!
//! - with a core handler installed ([`set_core_handler`]: init's per-core
//!   scheduler, or a program's own activations), calls it;
//! - otherwise does what CPU 0's dispatch does, on CPU `n`'s page: the
//!   first entry into a fresh space starts `main` here (a child given a
//!   control page only for CPU `n` — pinned there — runs entirely on it),
//!   a yield or tick resumes this CPU's saved context, a fault goes to the
//!   program's fault handling, and an activation with nothing to run on
//!   this CPU gives it back to the parent.
//!
//! [`crate::resume`] restores from the page of the CPU it runs on, so a
//! space interrupted on two CPUs resumes each context where it was saved.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use exo_abi::{control, smp_control_va, Reason};

/// CPUs this runtime can be entered on (the kernel's `arch::MAX_CPUS`).
pub const MAX_CPUS: u64 = 8;
/// Each upcall stack of CPUs 1.. (CPU 0's is `entry.rs`'s).
pub const AP_STACK: u64 = 16384;

/// What runs on CPU `cpu` when the kernel enters this space there: never
/// returns (it spins, yields elsewhere, or resumes a context itself).
pub type CoreHandler = fn(cpu: u64, reason: Reason, a: u64, b: u64, c: u64) -> !;

static CORE_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// Bit `n`: CPU `n`'s control page was prepared at its first entry.
static PREPARED: AtomicU64 = AtomicU64::new(0);

pub fn set_core_handler(h: CoreHandler) {
    CORE_HANDLER.store(h as usize, Ordering::SeqCst);
}

core::arch::global_asm!(
    r#"
    .section .bss.rt_ap_stacks, "aw", @nobits
    .align 4096
    .global rt_ap_stacks
rt_ap_stacks:
    .skip {stack} * ({max} - 1)
rt_ap_stacks_end:

    .section .text.rt_ap_entry, "ax"
    .global rt_ap_entry
rt_ap_entry:
    /* rdi = reason, rsi/rdx/rcx = arguments, r8 = CPU (> 0): already the
       System V argument registers of ap_dispatch. The stack the control
       page names is not used: CPU r8's stack is the r8-th of the array
       (its top at rt_ap_stacks + r8 * stack). */
    cmp r8, {max}
    jae 9f
    mov rax, r8
    imul rax, rax, {stack}
    lea rsp, [rip + rt_ap_stacks]
    add rsp, rax
    call {dispatch}
9:
    ud2
"#,
    stack = const AP_STACK,
    max = const MAX_CPUS,
    dispatch = sym ap_dispatch,
);

extern "C" {
    static rt_ap_stacks: u8;
    fn rt_resume_at(ctl: u64) -> !;
}

/// The CPU the running upcall was entered on: CPU `n` > 0 runs its
/// upcalls on the `n`-th upcall stack of the array, anything else (CPU
/// 0's upcall stack, the main stack) counts as CPU 0.
#[inline]
pub fn current_cpu() -> u64 {
    let sp: u64;
    // SAFETY: reads the stack pointer; no memory access.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    let base = core::ptr::addr_of!(rt_ap_stacks) as u64;
    let off = sp.wrapping_sub(base);
    if off < AP_STACK * (MAX_CPUS - 1) {
        1 + off / AP_STACK
    } else {
        0
    }
}

/// The address to write as the entry point of a control page for a CPU
/// other than 0 (the same as CPU 0's: `_start` tells them apart by `r8`).
pub fn core_entry() -> u64 {
    extern "C" {
        fn _start() -> !;
    }
    _start as *const () as u64
}

/// Let ticks and faults on this CPU enter this space afresh while the
/// handler keeps running (the kernel saves its context meanwhile; whoever
/// handles the next entry decides whether to resume it). From a core
/// handler only.
pub fn unmask() {
    crate::control::write(control::MASKED, 0);
}

core::arch::global_asm!(
    r#"
    .section .text.rt_resume_at, "ax"
    .global rt_resume_at
rt_resume_at:
    /* rdi = the control page whose saved context to continue. */
    mov rax, qword ptr [rdi + {vkind}]
    cmp rax, {kind_xsave}
    jne 1f
    mov eax, dword ptr [rdi + {vmask}]
    mov edx, dword ptr [rdi + {vmask} + 4]
    xrstor64 [rdi + {varea}]
    jmp 2f
1:
    cmp rax, {kind_fxsave}
    jne 2f
    fxrstor64 [rdi + {varea}]
2:
    /* rip, rflags and rdi go on the interrupted stack, below its red zone
       (`crate::entry::RED_ZONE`: the 128 bytes under rsp that System V
       code may use without moving rsp), and `ret {red_zone}` drops the
       zone: once `masked` is clear the kernel may overwrite the saved
       context. */
    mov rax, qword ptr [rdi + {saved} + 7*8]
    sub rax, {red_zone} + 24
    mov rbx, qword ptr [rdi + {saved} + 16*8]
    mov qword ptr [rax + 16], rbx
    mov rbx, qword ptr [rdi + {saved} + 17*8]
    mov qword ptr [rax + 8], rbx
    mov rbx, qword ptr [rdi + {saved} + 5*8]
    mov qword ptr [rax], rbx
    mov rsp, rax
    mov rbx, qword ptr [rdi + {saved} + 1*8]
    mov rcx, qword ptr [rdi + {saved} + 2*8]
    mov rdx, qword ptr [rdi + {saved} + 3*8]
    mov rsi, qword ptr [rdi + {saved} + 4*8]
    mov rbp, qword ptr [rdi + {saved} + 6*8]
    mov r8, qword ptr [rdi + {saved} + 8*8]
    mov r9, qword ptr [rdi + {saved} + 9*8]
    mov r10, qword ptr [rdi + {saved} + 10*8]
    mov r11, qword ptr [rdi + {saved} + 11*8]
    mov r12, qword ptr [rdi + {saved} + 12*8]
    mov r13, qword ptr [rdi + {saved} + 13*8]
    mov r14, qword ptr [rdi + {saved} + 14*8]
    mov r15, qword ptr [rdi + {saved} + 15*8]
    mov rax, qword ptr [rdi + {saved} + 0*8]
    mov qword ptr [rdi + {masked}], 0
    pop rdi
    popfq
    ret {red_zone}
"#,
    red_zone = const crate::entry::RED_ZONE,
    masked = const control::MASKED,
    saved = const control::SAVED,
    vkind = const control::VECTOR_KIND,
    vmask = const control::VECTOR_MASK,
    varea = const control::VECTOR_AREA,
    kind_xsave = const exo_abi::VectorKind::Xsave as u64,
    kind_fxsave = const exo_abi::VectorKind::Fxsave as u64,
);

core::arch::global_asm!(
    r#"
    .section .text.rt_start_activation, "ax"
    .global rt_start_activation
rt_start_activation:
    /* rdi = this CPU's control page, rsi = stack top, rdx = body. */
    mov rsp, rsi
    mov qword ptr [rdi + {masked}], 0
    call rdx
    ud2
"#,
    masked = const control::MASKED,
);

extern "C" {
    fn rt_start_activation(ctl: u64, stack_top: u64, body: extern "C" fn() -> !) -> !;
}

/// From a core handler on CPU `cpu` > 0: run `body` as this space's
/// activation on that CPU, on `stack` (its own: the upcall stack is
/// reused by every entry), unmasked — a tick or fault on this CPU then
/// saves its context in this CPU's control page, and a later entry's
/// handler continues it with [`crate::resume`] (which restores from this
/// CPU's page). A thread, in a libOS's terms.
pub fn start_activation(cpu: u64, stack: &'static mut [u64], body: extern "C" fn() -> !) -> ! {
    if cpu == 0 || cpu >= MAX_CPUS || cpu != current_cpu() {
        crate::fatal(format_args!("start_activation for CPU {cpu} from CPU {}", current_cpu()));
    }
    // 16-byte aligned top, as the System V ABI wants before the `call`.
    let top = (stack.as_mut_ptr_range().end as u64) & !15;
    // SAFETY: `stack` is this activation's own for ever ('static, unique),
    // CPU `cpu`'s control page is mapped (we run on that CPU's upcall), and
    // `body` never returns.
    unsafe { rt_start_activation(smp_control_va(cpu), top, body) }
}

/// [`crate::resume`] on CPU `cpu` > 0.
pub(crate) fn resume_on(cpu: u64) -> ! {
    // SAFETY: as `entry::resume`: CPU `cpu`'s control page is mapped (the
    // kernel entered us through it on this CPU) and holds a context the
    // kernel saved there; `rt_resume_at` restores it and clears that
    // page's `masked` only once nothing is read from the page any more.
    unsafe { rt_resume_at(smp_control_va(cpu)) }
}

extern "C" fn ap_dispatch(reason: u64, a: u64, b: u64, c: u64, cpu: u64) -> ! {
    crate::entry::count_upcall();
    if PREPARED.load(Ordering::Relaxed) & (1 << cpu) == 0 {
        // This page's XSAVE header (see `entry::main_trampoline`): whoever
        // mapped it may have left anything there.
        crate::entry::clear_xsave_header(smp_control_va(cpu));
        PREPARED.fetch_or(1 << cpu, Ordering::SeqCst);
    }
    let reason = match Reason::try_from(reason) {
        Ok(r) => r,
        Err(n) => crate::fatal(format_args!("upcall on CPU {cpu} with unknown reason {n}")),
    };
    let h = CORE_HANDLER.load(Ordering::SeqCst);
    if h != 0 {
        // SAFETY: stored by `set_core_handler` from a valid fn pointer.
        let h: CoreHandler = unsafe { core::mem::transmute::<usize, CoreHandler>(h) };
        h(cpu, reason, a, b, c)
    }
    if reason == Reason::Yield {
        // A fresh space first entered here runs main here (returns if
        // main is already running or starting on another CPU).
        crate::entry::start_main_on(cpu, a, c);
    }
    crate::entry::handle(cpu, reason, a, b, c)
}
