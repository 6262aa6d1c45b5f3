//! Every way into the kernel from userspace: the five system calls, the
//! timer, exceptions. Each ends by returning into *some* address space —
//! the caller, the root scheduler (init), or the target of a `yield`.

use crate::arch::{percpu, TrapFrame, MACHINE_CHECK_VECTOR, NMI_VECTOR, SPURIOUS_VECTOR, SYSCALL_VECTOR, TIMER_VECTOR};
use crate::mem::{KernelMem, KernelTlb};
use crate::phys::{phys_read, phys_write};
use crate::upcall::{control_page, enter, enter_at_fresh, entry_point_at, save, save_inlined};
use crate::{apic, fatal, kinfo};
use exo_abi::{control, kinfo as ki, Error, Reason, Syscall, CONTROL_VA, USER_END};

/// Kernel-half entries copied into every new address space.
pub static mut KERNEL_HALF: [u64; 256] = [0; 256];

/// Set by the entry stub of an error-code vector when the stack shows no
/// error code was pushed: a device-forged interrupt on that vector.
const FORGED: u64 = 0x1000;

/// Code for `Reason::Dead` when the space's control page is unusable.
pub const DEAD_NO_CONTROL_PAGE: u64 = 0xffff;

#[no_mangle]
extern "C" fn trap_handler(f: &mut TrapFrame) {
    if f.vector == NMI_VECTOR || f.vector == MACHINE_CHECK_VECTOR {
        // On their own IST stacks, from ring 0 or ring 3, and possibly
        // between SYSCALL and its `swapgs` (GS still the user's): handled
        // without touching per-CPU data, and returning to exactly the
        // interrupted state.
        return nmi_or_machine_check(f);
    }
    if f.vector == crate::smp::SHOOTDOWN_VECTOR as u64 {
        // Without the kernel lock: its holder is waiting for this.
        return crate::smp::on_shootdown_interrupt();
    }
    if f.vector == crate::park::PARK_VECTOR as u64 {
        // Without the kernel lock: a kernel upgrade's holder waits for this.
        return crate::park::on_park_interrupt(f);
    }
    if f.cs & 3 != 3 {
        if crate::smp::idle_interrupt(f) {
            return;
        }
        if crate::idle::interrupt_while_halted(f.vector & !FORGED, f.vector & FORGED != 0) {
            return;
        }
        kernel_trap(f);
    }
    // One CPU in the kernel at a time (crate::smp; released on return).
    let _kernel = crate::smp::lock_for(f);
    if f.vector & FORGED != 0 || (f.vector < 32 && apic::in_service(f.vector as u8)) {
        // An exception vector raised by a device (a real exception never
        // sets the LAPIC's in-service bit; the entry stub flags the ones
        // that lack the error code their vector implies). Acknowledge it
        // and carry on: it must not be mistaken for a fault.
        apic::eoi();
        kinfo::add(ki::W_FORGED_INTERRUPTS, 1);
        f.vector &= !FORGED;
        return;
    }
    match f.vector {
        // Not reached: the SYSCALL entry goes to `syscall_handler`.
        SYSCALL_VECTOR => {
            // (An idle halt asked for here returns 0 without halting: the
            // caller's loop asks again, through `syscall_handler`.)
            if syscall(f) == Exit::Fresh {
                f.clear_other_registers();
            }
        }
        v if v == TIMER_VECTOR as u64 => timer(f),
        v if v == SPURIOUS_VECTOR as u64 => {}
        14 => {
            let cr2 = x86_64::registers::control::Cr2::read_raw();
            fault(f, Reason::PageFault, cr2, f.error)
        }
        v @ 0..=31 => fault(f, Reason::Exception, v, f.error),
        v => {
            if v == crate::devices::DMA_FAULT_VECTOR as u64 {
                crate::devices::drain_faults();
            }
            // A device interrupt: the root scheduler dispatches it.
            apic::eoi();
            interrupt(f, v);
        }
    }
    sanitize_return(f);
}

/// The SYSCALL entry's handler: the same as [`trap_handler`] for its
/// vector, without the checks only interrupts and exceptions need (a
/// system call always comes from ring 3, with no error code, and no
/// device can raise it).
///
/// Returns true if `f` is a fresh upcall entry, to leave through
/// `upcall_return` (which zeroes the registers it did not set); its
/// return frame is the kernel's own (an entry point checked to be below
/// `USER_END`, flags 0x202), so it needs no sanitizing.
#[no_mangle]
extern "C" fn syscall_handler(f: &mut TrapFrame) -> bool {
    // One CPU in the kernel at a time (crate::smp; released on return),
    // parking while it waits if a kernel upgrade asks.
    let kernel = crate::smp::lock_for(f);
    // `yield` first, straight to its own function: the one call on the
    // path of every message between two spaces.
    let exit = if f.rax == Syscall::Yield as u64 {
        kinfo::add(ki::W_SYSCALLS, 1);
        yield_call(f, percpu().current, f.rdi, f.rsi)
    } else {
        syscall(f)
    };
    match exit {
        Exit::Fresh => return true,
        Exit::Halt => {
            drop(kernel);
            idle_halt(f);
        }
        Exit::Frame => {}
    }
    sanitize_return(f);
    false
}

/// Init's idle halt, decided (`idle_request`; `f` returns Ok(0)): halt
/// without the kernel lock, take it again, and deliver what woke this CPU
/// as if it had interrupted init right after its `syscall` (crate::idle).
#[cold]
#[inline(never)]
fn idle_halt(f: &mut TrapFrame) {
    let woken_by = crate::idle::halt();
    let devices = woken_by.iter().any(|&w| w != 0) && woken_by != timer_only();
    // A device interrupt cannot be undone, so then this entry does not
    // park for a kernel upgrade (as `park::park_waiting` says for any
    // device interrupt); otherwise a park request replays the call.
    let _kernel = if devices { crate::smp::lock() } else { crate::smp::lock_for(f) };
    crate::idle::book(&woken_by);
    if crate::idle::has(&woken_by, TIMER_VECTOR as u64) {
        timer_tick(f);
    }
    for v in 32..256u64 {
        if v != TIMER_VECTOR as u64 && crate::idle::has(&woken_by, v) {
            if v == crate::devices::DMA_FAULT_VECTOR as u64 {
                crate::devices::drain_faults();
            }
            // The first enters init; init is masked after that, so the
            // rest are latched in its `pending` words.
            interrupt(f, v);
        }
    }
}

/// The set holding the timer's vector alone.
fn timer_only() -> [u64; 4] {
    let mut set = [0u64; 4];
    set[(TIMER_VECTOR / 64) as usize] = 1 << (TIMER_VECTOR % 64);
    set
}

/// What every return to userspace must hold, whatever the handler did.
#[inline(always)]
fn sanitize_return(f: &mut TrapFrame) {
    if f.rip >= USER_END {
        // Only a `syscall` in the last two bytes of the user half gets here
        // (its return address is the first non-canonical one). `iretq` to
        // it would fault in the kernel, so the process takes a #GP instead.
        fault(f, Reason::Exception, 13, 0);
    }
    // Only user-mode flags the kernel allows: IF on, IOPL 0, no NT/VM.
    f.rflags = (f.rflags & 0x0000_0000_0000_0cd5) | 0x202;
}

/// An NMI is counted (kernel info page) and returned from: nothing in
/// this system sends one on purpose (no watchdog, no IPIs yet), so it is
/// not a fault of whoever was running, and it must not stop the kernel.
/// A device can also raise vector 2 or 18 as an ordinary interrupt (a
/// compatibility-format MSI): the LAPIC then has it in service, and it is
/// dropped like every forged exception vector. A real machine check means
/// the hardware lost data: the kernel stops with a message.
fn nmi_or_machine_check(f: &mut TrapFrame) {
    let vector = f.vector as u8;
    if apic::ready() && apic::in_service(vector) {
        apic::eoi();
        kinfo::add(ki::W_FORGED_INTERRUPTS, 1);
        return;
    }
    if f.vector == NMI_VECTOR {
        kinfo::add(if f.cs & 3 == 3 { ki::W_NMI_USER } else { ki::W_NMI_KERNEL }, 1);
        return;
    }
    let status = x86_64::registers::model_specific::Msr::new(0x17a);
    // SAFETY: IA32_MCG_STATUS exists on every CPU that raises #MC (the
    // machine-check architecture); reading it has no side effect.
    let status = unsafe { status.read() };
    fatal(format_args!("machine check (MCG_STATUS {status:#x}) at rip {:#x} in ring {}: stopping", f.rip, f.cs & 3));
}

fn kernel_trap(f: &TrapFrame) -> ! {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    fatal(format_args!(
        "PANIC: trap {} in kernel mode, error {:#x}, rip {:#x}, rsp {:#x}, cr2 {:#x}",
        f.vector, f.error, f.rip, f.rsp, cr2
    ));
}

fn result(f: &mut TrapFrame, r: Result<u64, Error>) {
    match r {
        Ok(v) => {
            f.rax = 0;
            f.rdx = v;
        }
        Err(e) => {
            f.rax = e as u64;
            f.rdx = 0;
        }
    }
}

/// How a system call's frame leaves the kernel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Through `trap_return`: every register comes from the frame.
    Frame,
    /// A fresh upcall entry ([`crate::upcall::enter_at_fresh`]): only its
    /// return frame and argument registers were written; the exit
    /// (`upcall_return`) zeroes every other register.
    Fresh,
    /// Init's idle halt was granted (the frame returns Ok(0)): halt this
    /// CPU without the kernel lock, then leave through the frame.
    Halt,
}

fn syscall(f: &mut TrapFrame) -> Exit {
    kinfo::add(ki::W_SYSCALLS, 1);
    let caller = percpu().current;
    let mut mem = KernelMem;
    let mut tlb = KernelTlb;
    let mut dev = crate::devices::KernelDevices;
    let (a0, a1, a2, a3, a4) = (f.rdi, f.rsi, f.rdx, f.r10, f.r8);
    match Syscall::try_from(f.rax) {
        Err(e) => result(f, Err(e)),
        Ok(Syscall::Create) => result(f, exo_mm::create(&mut mem, &mut tlb, caller, a0, a1, a2).map(|_| 0)),
        Ok(Syscall::Map) => result(f, exo_mm::map(&mut mem, &mut tlb, &mut dev, caller, a0, a1, a2, a3, a4).map(|_| 0)),
        Ok(Syscall::Unmap) => result(f, exo_mm::unmap(&mut mem, &mut tlb, &mut dev, caller, a0, a1, a2).map(|_| 0)),
        Ok(Syscall::CreateAs) => {
            // SAFETY: KERNEL_HALF is written once at boot, before userspace.
            let half = unsafe { &*core::ptr::addr_of!(KERNEL_HALF) };
            result(f, exo_mm::create_as(&mut mem, &mut tlb, caller, a0, a1, half))
        }
        Ok(Syscall::Yield) => return yield_call(f, caller, a0, a1),
    }
    Exit::Frame
}

/// `yield`: to the space whose handle is at `handle_va` in `caller`, with
/// `arg`. Out of line with its own few live values (the other calls'
/// state would cost it register saves).
#[inline(never)]
fn yield_call(f: &mut TrapFrame, caller: u64, handle_va: u64, arg: u64) -> Exit {
    // The handle and both control pages in one pass over the tables.
    let walk = crate::mem::WalkMem::now();
    let plan = match exo_mm::yield_plan(&walk, caller, handle_va, percpu().control_va) {
        Ok(p) => p,
        Err(e) => return yield_refused(f, caller, handle_va, arg, e),
    };
    let Some(entry) = entry_point_at(plan.target_ctl) else {
        return failed(f, Error::BadTarget);
    };
    // The caller resumes (when someone yields back and its runtime
    // chooses to) as if the call returned Ok(0).
    result(f, Ok(0));
    if let Some(ctl) = plan.caller_ctl {
        save_inlined(ctl, f);
    }
    enter_at_fresh(f, plan.target, entry, Reason::Yield, arg, 0, caller);
    Exit::Fresh
}

/// A `yield` `yield_plan` refused with `e`. The upgrade space has no
/// control page: a yield to it is an upgrade request (only init holds its
/// handle). Looked at only on this error path, so other yields pay
/// nothing.
#[cold]
#[inline(never)]
fn yield_refused(f: &mut TrapFrame, caller: u64, handle_va: u64, arg: u64, e: Error) -> Exit {
    if e == Error::BadAddress && handle_va == exo_abi::IDLE_HALT_HANDLE_VA && caller == percpu().init {
        return idle_request(f);
    }
    if e == Error::BadTarget {
        if let Ok(target) = exo_mm::yield_target(&KernelMem, caller, handle_va) {
            if crate::upgrade::is_upgrade_space(target) {
                crate::upgrade::request(f, arg);
                return Exit::Frame;
            }
        }
    }
    failed(f, e)
}

/// `yield(IDLE_HALT_HANDLE_VA, 0)` by init: halt this CPU until an
/// interrupt, unless one is latched in init's `pending` words here
/// (returns `IDLE_NOT_HALTED_PENDING` at once: init must take them first).
fn idle_request(f: &mut TrapFrame) -> Exit {
    let Some(ctl) = control_page(percpu().current) else {
        return failed(f, Error::BadTarget);
    };
    if !crate::idle::may_halt(ctl) {
        result(f, Ok(exo_abi::IDLE_NOT_HALTED_PENDING));
        return Exit::Frame;
    }
    result(f, Ok(0));
    Exit::Halt
}

/// A failed call: the error in the caller's frame, nothing else changed.
fn failed(f: &mut TrapFrame, e: Error) -> Exit {
    result(f, Err(e));
    Exit::Frame
}

fn timer(f: &mut TrapFrame) {
    apic::eoi();
    timer_tick(f);
}

/// A tick, acknowledged: preempt whoever runs (unless init's handler is
/// running) and enter init.
fn timer_tick(f: &mut TrapFrame) {
    kinfo::add(ki::W_TICKS, 1);
    let pc = percpu();
    let (cur, init) = (pc.current, pc.init);
    let Some(ctl) = control_page(cur) else {
        return dead(f, cur, DEAD_NO_CONTROL_PAGE, CONTROL_VA);
    };
    if cur == init && crate::upcall::masked(ctl) {
        // The root scheduler is running its handler: let it finish.
        return;
    }
    let discarded = !save(ctl, f);
    enter_init(f, Reason::Timer, cur, discarded as u64, 0);
}

fn interrupt(f: &mut TrapFrame, vector: u64) {
    let pc = percpu();
    let (cur, init) = (pc.current, pc.init);
    if let Some(ctl) = control_page(cur) {
        if cur == init && crate::upcall::masked(ctl) {
            // Init's handler is running: latch the vector in its control
            // page (the interrupt controller's pending state, kept where
            // init can see it), for the handler to pick up.
            let word = ctl + control::PENDING + (vector / 64) * 8;
            phys_write::<u64>(word, phys_read::<u64>(word) | 1 << (vector % 64));
            return;
        }
        save(ctl, f);
    }
    enter_init(f, Reason::Interrupt, vector, 0, cur);
}

fn fault(f: &mut TrapFrame, reason: Reason, a: u64, b: u64) {
    let cur = percpu().current;
    match control_page(cur) {
        Some(ctl) if save(ctl, f) => {
            if enter(f, cur, reason, a, b, 0).is_err() {
                dead(f, cur, vector_of(f, reason, a), a);
            }
        }
        // Masked (a fault inside its own fault handler) or no control page:
        // the space cannot handle this itself.
        Some(_) => dead(f, cur, vector_of(f, reason, a), a),
        None => dead(f, cur, DEAD_NO_CONTROL_PAGE, CONTROL_VA),
    }
}

fn vector_of(f: &TrapFrame, reason: Reason, a: u64) -> u64 {
    match reason {
        Reason::PageFault => 14,
        Reason::Exception => a,
        _ => f.vector,
    }
}

/// `cur` cannot continue: tell the root scheduler. If init itself is the
/// one that died, there is nobody left to tell.
fn dead(f: &mut TrapFrame, cur: u64, code: u64, addr: u64) {
    let init = percpu().init;
    if cur == init {
        fatal(format_args!(
            "init died: vector/code {code:#x} at address {addr:#x} (rip {:#x}, rsp {:#x})",
            f.rip, f.rsp
        ));
    }
    enter_init(f, Reason::Dead, cur, code, addr);
}

fn enter_init(f: &mut TrapFrame, reason: Reason, a: u64, b: u64, c: u64) {
    let init = percpu().init;
    if enter(f, init, reason, a, b, c).is_err() {
        fatal(format_args!("init's control page became unusable"));
    }
}
