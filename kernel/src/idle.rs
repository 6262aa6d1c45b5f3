//! Idle halts: `yield(IDLE_HALT_HANDLE_VA, 0)` by the root scheduler
//! (init) halts this CPU until its next interrupt, instead of init
//! spinning in userspace with nothing to run (docs/syscalls.md, "Idle: a
//! yield to no space"). Under QEMU's multi-threaded TCG `hlt` is what puts
//! a vCPU's host thread to sleep (`pause` does not), which gives the host
//! core to the other vCPU or to QEMU's device emulation.
//!
//! The request is decided under the kernel lock with interrupts off: it
//! halts only if init's `pending` words on this CPU are empty (an
//! interrupt latched while init's handler ran would otherwise wait for the
//! next tick). Then the lock is released (a halted CPU must not block the
//! others) and `sti; hlt` waits: STI's one-instruction shadow means an
//! interrupt that became pending after the decision still wakes the
//! `hlt`. The interrupt arrives in ring 0; [`interrupt_while_halted`]
//! acknowledges it and records its vector, and [`wake`] delivers it, with
//! the lock taken again, exactly as if it had interrupted init at the
//! instruction after its `syscall`: a tick enters init with
//! `Reason::Timer`, a device interrupt with `Reason::Interrupt` (more than
//! one: the rest are latched in `pending`, as for any interrupt while init
//! is masked). Shootdowns and park requests are answered by their own
//! lock-free handlers as anywhere else; such a wake-up returns from the
//! call with 0.

use crate::arch::{percpu, MAX_CPUS, SPURIOUS_VECTOR, TIMER_VECTOR};
use crate::{apic, kinfo};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use exo_abi::kinfo as ki;

/// CPU `n` is between its `sti; hlt` and the `cli` after it.
static HALTING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The vectors that woke CPU `n` (bit `v % 64` of word `v / 64`).
static WOKEN_BY: [[AtomicU64; 4]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 4] }; MAX_CPUS];
/// Bit `n`: CPU `n` has halted (mirrored into `W_IDLE_HALT_CPUS`).
static HALTED_CPUS: AtomicU64 = AtomicU64::new(0);

/// Whether init may halt now: none of its `pending` words on this CPU
/// (its control page `ctl`, physical) has a bit set. Under the lock.
pub fn may_halt(ctl: u64) -> bool {
    let clear = (0..4).all(|w| crate::phys::phys_read::<u64>(ctl + exo_abi::control::PENDING + 8 * w) == 0);
    if !clear {
        kinfo::add(ki::W_IDLE_HALT_PENDING, 1);
    }
    clear
}

/// Halt this CPU until an interrupt, without the kernel lock (the caller
/// dropped it; interrupts are off). Returns the vectors to deliver: a
/// 256-bit set.
pub fn halt() -> [u64; 4] {
    let cpu = percpu().index as usize;
    for w in &WOKEN_BY[cpu] {
        w.store(0, SeqCst);
    }
    HALTING[cpu].store(true, SeqCst);
    let t0 = tsc();
    // SAFETY: `sti; hlt` waits for the next interrupt: STI takes effect
    // after the following instruction, so an interrupt already pending is
    // taken at the `hlt` and wakes it (none is lost between the decision
    // and the halt). The handler (`interrupt_while_halted`, or the
    // shootdown / park handlers) returns here; `cli` closes the window
    // again before this CPU touches anything shared.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    HALTING[cpu].store(false, SeqCst);
    let halted = tsc() - t0;
    HALT_TSC[cpu].store(halted, SeqCst);
    core::array::from_fn(|w| WOKEN_BY[cpu][w].swap(0, SeqCst))
}

/// The TSC ticks of this CPU's last halt (booked by [`book`] under the lock).
static HALT_TSC: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Count a finished halt in the kernel info page (under the lock).
pub fn book(woken_by: &[u64; 4]) {
    let cpu = percpu().index as usize;
    kinfo::add(ki::W_IDLE_HALTS, 1);
    kinfo::add(ki::W_IDLE_HALT_TSC, HALT_TSC[cpu].load(SeqCst));
    kinfo::set(ki::W_IDLE_HALT_CPUS, HALTED_CPUS.fetch_or(1 << cpu, SeqCst) | 1 << cpu);
    let timer = has(woken_by, TIMER_VECTOR as u64);
    let devices = woken_by.iter().map(|w| w.count_ones() as u64).sum::<u64>() - timer as u64;
    let word = match (timer, devices) {
        (true, _) => ki::W_IDLE_WAKE_TIMER,
        (false, 0) => ki::W_IDLE_WAKE_OTHER,
        _ => ki::W_IDLE_WAKE_DEVICE,
    };
    kinfo::add(word, 1);
}

/// Vector `v` is in the set.
pub fn has(set: &[u64; 4], v: u64) -> bool {
    set[(v / 64) as usize] & (1 << (v % 64)) != 0
}

/// An interrupt that arrived in ring 0. If this CPU is halted for init
/// (its own `sti; hlt`), a tick or a device interrupt is acknowledged and
/// recorded for [`halt`]'s caller to deliver; true if so. `vector` is the
/// vector without the entry stub's forged-vector flag; `forged` is that
/// flag (exception vectors raised by a device are dropped, as anywhere).
pub fn interrupt_while_halted(vector: u64, forged: bool) -> bool {
    let cpu = percpu().index as usize;
    if !HALTING[cpu].load(SeqCst) {
        return false;
    }
    match vector {
        v if v < 32 && (forged || apic::in_service(v as u8)) => {
            // Not counted (`W_FORGED_INTERRUPTS` is written under the
            // lock): dropped, and the halt simply ends.
            apic::eoi();
            true
        }
        v if v < 32 => false,
        v if v == SPURIOUS_VECTOR as u64 => true,
        v => {
            apic::eoi();
            WOKEN_BY[cpu][(v / 64) as usize].fetch_or(1 << (v % 64), SeqCst);
            true
        }
    }
}

fn tsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}
