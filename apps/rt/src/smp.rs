//! Running on several CPUs. The kernel enters a space on CPU `n` > 0 only
//! through that space's control page for CPU `n`
//! (`exo_abi::smp_control_va(n)`), at the entry point and on the stack
//! that page names, with the CPU index in `r8`. [`core_entry`] is such an
//! entry point: it calls the handler installed with [`set_core_handler`]
//! on the stack the kernel switched to (each CPU its own).

use core::sync::atomic::{AtomicUsize, Ordering};
use exo_abi::Reason;

/// What runs on CPU `cpu` when the kernel enters this space there: never
/// returns (it spins, yields elsewhere, or resumes a context itself).
pub type CoreHandler = fn(cpu: u64, reason: Reason, a: u64, b: u64, c: u64) -> !;

static CORE_HANDLER: AtomicUsize = AtomicUsize::new(0);

pub fn set_core_handler(h: CoreHandler) {
    CORE_HANDLER.store(h as usize, Ordering::SeqCst);
}

core::arch::global_asm!(
    r#"
    .section .text.rt_core_entry, "ax"
    .global rt_core_entry
rt_core_entry:
    /* rdi = reason, rsi/rdx/rcx = arguments, r8 = CPU: already the
       System V argument registers of core_dispatch. */
    and rsp, -16
    call {dispatch}
    ud2
"#,
    dispatch = sym core_dispatch,
);

extern "C" {
    fn rt_core_entry() -> !;
}

/// The address to write as the entry point of a control page for a CPU
/// other than 0.
pub fn core_entry() -> u64 {
    rt_core_entry as *const () as u64
}

extern "C" fn core_dispatch(reason: u64, a: u64, b: u64, c: u64, cpu: u64) -> ! {
    let reason = match Reason::try_from(reason) {
        Ok(r) => r,
        Err(n) => crate::fatal(format_args!("upcall on CPU {cpu} with unknown reason {n}")),
    };
    let h = CORE_HANDLER.load(Ordering::SeqCst);
    if h == 0 {
        crate::fatal(format_args!("entered on CPU {cpu} ({reason:?}) with no core handler installed"));
    }
    // SAFETY: stored by `set_core_handler` from a valid fn pointer.
    let h: CoreHandler = unsafe { core::mem::transmute::<usize, CoreHandler>(h) };
    h(cpu, reason, a, b, c)
}
