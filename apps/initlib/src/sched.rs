//! The root scheduler. The kernel has no scheduler: every timer tick, every
//! fault it cannot deliver and every yield to init arrive here as upcalls,
//! and init decides who runs next by `yield`ing to it. Round robin over
//! init's own main context and every runnable child (the choice is
//! [`crate::logic::sched::next_slot`], host-tested).
//!
//! The table is shared between init's main context (which spawns and
//! waits) and this handler (which may interrupt main anywhere), so it is
//! made of atomics only: no lock that main could be holding.

use crate::logic::sched::next_slot;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use exo_abi::{kinfo as ki, Reason, INIT_SELF_HANDLE_VA};
use exo_rt::console::{serial_byte, Ring, SERIAL_BUSY};
use exo_rt::layout::msg;
use exo_rt::{kinfo, sys};

pub const MAX_PROCS: usize = 32;

pub const FREE: u64 = 0;
pub const RUNNABLE: u64 = 1;
pub const EXITED: u64 = 2;
pub const PANICKED: u64 = 3;
pub const KILLED: u64 = 4;
pub const STOPPED: u64 = 5;
/// Asleep until its wake-up interrupt (`msg::WAIT`, [`wake`]).
pub const WAITING: u64 = 6;

pub struct Slot {
    pub state: AtomicU64,
    pub handle: AtomicU64,
    pub id: AtomicU64,
    pub code: AtomicU64,
    pub addr: AtomicU64,
    pub ring: AtomicU64,
    pub mailbox: AtomicU64,
    pub preemptions: AtomicU64,
    pub runs: AtomicU64,
    /// The CPUs it has a control page for (`spawn::spawn_on`): the only
    /// ones whose scheduler runs it.
    pub cpus: AtomicU64,
    /// Bit `n`: a scheduler yielded to it on CPU `n`.
    pub ran_on: AtomicU64,
    /// Its wake-up interrupts so far. A `msg::WAIT` carries how many
    /// answers the sleeper has consumed (low 32 bits): if more interrupts
    /// came, one is for an answer it has not seen yet and the wait
    /// returns at once — no wake-up is lost to the window between its
    /// last look and its wait, and an interrupt that came after its answer
    /// was already found (late) does not end a later wait.
    pub wake_irqs: AtomicU64,
    /// `msg::WAIT`s that put it to sleep, and the ones its token ended.
    pub sleeps: AtomicU64,
    pub early_wakes: AtomicU64,
    /// Sleeps ended by CPU 0's tick rather than the wake-up interrupt.
    pub tick_wakes: AtomicU64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            state: AtomicU64::new(FREE),
            handle: AtomicU64::new(0),
            id: AtomicU64::new(0),
            code: AtomicU64::new(0),
            addr: AtomicU64::new(0),
            ring: AtomicU64::new(0),
            mailbox: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            cpus: AtomicU64::new(1),
            ran_on: AtomicU64::new(0),
            wake_irqs: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            early_wakes: AtomicU64::new(0),
            tick_wakes: AtomicU64::new(0),
        }
    }
}

pub static SLOTS: [Slot; MAX_PROCS] = [const { Slot::new() }; MAX_PROCS];
/// 0 = init's main context, k = slot k-1.
static CURSOR: AtomicUsize = AtomicUsize::new(0);

/// What init does with a device interrupt (`devices::note_interrupt`):
/// count it for its driver and name the driver's slot to switch to.
pub type InterruptHook = fn(u64) -> Option<usize>;
static INTERRUPTS: spin::Once<InterruptHook> = spin::Once::new();

/// Take over init's upcalls; device interrupts go to `on_interrupt`.
pub fn install(on_interrupt: InterruptHook) {
    INTERRUPTS.call_once(|| on_interrupt);
    exo_rt::set_upcall_handler(on_upcall);
}

fn note_interrupt(vector: u64) -> Option<usize> {
    INTERRUPTS.get().and_then(|hook| hook(vector))
}

pub fn slot(i: usize) -> &'static Slot {
    &SLOTS[i]
}

fn by_id(id: u64) -> Option<&'static Slot> {
    SLOTS.iter().find(|s| s.state.load(SeqCst) != FREE && s.id.load(SeqCst) == id)
}

/// Give up the rest of init main's time slice.
pub fn sched_yield() {
    let _ = sys::yield_to(INIT_SELF_HANDLE_VA, msg::YIELD);
}

/// Make a paused child runnable.
pub fn start(i: usize) {
    let _ = SLOTS[i].state.compare_exchange(STOPPED, RUNNABLE, SeqCst, SeqCst);
}

/// Stop scheduling a child (its memory stays, for inspection).
pub fn stop(i: usize) {
    let _ = SLOTS[i].state.compare_exchange(RUNNABLE, STOPPED, SeqCst, SeqCst);
}

/// Kill a child: it is never scheduled again (its memory stays, for
/// inspection and for its owner to take back), as if it had died.
pub fn kill(i: usize) {
    for from in [RUNNABLE, STOPPED, WAITING] {
        if SLOTS[i].state.compare_exchange(from, KILLED, SeqCst, SeqCst).is_ok() {
            return;
        }
    }
}

/// Init's upcall handler (public so that a measurement that takes over
/// upcalls for a moment can hand on what it does not handle, and put it back).
pub fn on_upcall(reason: Reason, a: u64, b: u64, c: u64) -> ! {
    if reason == Reason::Timer {
        wake_sleepers();
    }
    if let Some(driver) = note(reason, a, b, c) {
        let _ = sys::yield_to(SLOTS[driver].handle.load(SeqCst), msg::RESUME);
    }
    drain_consoles();
    next()
}

/// Book an upcall (on any CPU): preemptions, exits, deaths, interrupts.
/// Returns the slot of a driver to switch to for a routed interrupt.
fn note(reason: Reason, a: u64, b: u64, c: u64) -> Option<usize> {
    let me = kinfo::word(ki::W_INIT_AS);
    // Interrupts that arrived while this handler ran last time were latched
    // by the kernel in the control page (this CPU's): count them for their
    // drivers (who run in turn).
    for w in 0..4u64 {
        let mut bits = exo_rt::control::take(exo_abi::control::PENDING + 8 * w);
        while bits != 0 {
            let v = w * 64 + bits.trailing_zeros() as u64;
            bits &= bits - 1;
            note_interrupt(v);
        }
    }
    match reason {
        Reason::Timer => {
            if let Some(s) = by_id(a) {
                s.preemptions.fetch_add(1, SeqCst);
            }
        }
        Reason::Yield if c != me => {
            if let Some(s) = by_id(c) {
                match a & msg::KIND_MASK {
                    msg::EXIT => finish(s, EXITED, a & 0xffff_ffff, 0),
                    msg::PANIC => finish(s, PANICKED, 0, 0),
                    msg::WAIT => sleep(s, a & 0xffff_ffff),
                    _ => {}
                }
            }
        }
        Reason::Yield => {}
        Reason::Dead => {
            if let Some(s) = by_id(a) {
                finish(s, KILLED, b, c);
            }
        }
        Reason::PageFault | Reason::Exception => {
            let rip = exo_rt::control::read(exo_abi::control::SAVED + 16 * 8);
            exo_rt::fatal(format_args!("init main faulted: {reason:?} {a:#x} code {b:#x} rip {rip:#x}"));
        }
        // Routed device interrupts switch straight to their driver.
        Reason::Interrupt => return note_interrupt(a),
    }
    None
}

/// A child's `msg::WAIT` after `consumed` answers: asleep until [`wake`],
/// unless an interrupt for an answer it has not consumed came already
/// (then it stays runnable).
fn sleep(s: &Slot, consumed: u64) {
    let ahead = (s.wake_irqs.load(SeqCst) as u32).wrapping_sub(consumed as u32) as i32;
    if ahead > 0 {
        s.early_wakes.fetch_add(1, SeqCst);
    } else if s.state.compare_exchange(RUNNABLE, WAITING, SeqCst, SeqCst).is_ok() {
        s.sleeps.fetch_add(1, SeqCst);
    }
}

/// Slot `i`'s wake-up interrupt arrived (`devices::note_interrupt`):
/// count it, and make the slot runnable if it sleeps (true: switch to it
/// now).
pub fn wake(i: usize) -> bool {
    let s = &SLOTS[i];
    s.wake_irqs.fetch_add(1, SeqCst);
    s.state.compare_exchange(WAITING, RUNNABLE, SeqCst, SeqCst).is_ok()
}

/// Every sleeper becomes runnable at CPU 0's ticks: a wake-up that never
/// comes (a driver that stopped) costs a sleeper at most a tick, and its
/// own checks (the block service's driver epoch, its wait bound) then run.
fn wake_sleepers() {
    for s in SLOTS.iter() {
        if s.state.compare_exchange(WAITING, RUNNABLE, SeqCst, SeqCst).is_ok() {
            s.tick_wakes.fetch_add(1, SeqCst);
        }
    }
}

fn finish(s: &Slot, state: u64, code: u64, addr: u64) {
    s.code.store(code, SeqCst);
    s.addr.store(addr, SeqCst);
    s.state.store(state, SeqCst);
}

/// Copy every child's console ring to COM1 (unless init main is in the
/// middle of printing a line itself).
pub fn drain_consoles() {
    if SERIAL_BUSY.load(SeqCst) {
        return;
    }
    for s in SLOTS.iter() {
        let ring = s.ring.load(SeqCst);
        if s.state.load(SeqCst) != FREE && ring != 0 {
            Ring { va: ring }.drain(|b| {
                if b == b'\n' {
                    serial_byte(b'\r');
                }
                serial_byte(b)
            });
        }
    }
}

/// Slot `i` is runnable on CPU `cpu` (it has a control page there).
fn runnable_on(i: usize, cpu: u64) -> bool {
    SLOTS[i].state.load(SeqCst) == RUNNABLE && SLOTS[i].cpus.load(SeqCst) & (1 << cpu) != 0
}

/// Switch to slot `s` on CPU `cpu`; returns if the switch failed (the
/// child is then dead) or, never: the child's next upcall to init is a
/// fresh entry.
fn run(s: &Slot, cpu: u64) {
    s.runs.fetch_add(1, SeqCst);
    s.ran_on.fetch_or(1 << cpu, SeqCst);
    if let Err(e) = sys::yield_to(s.handle.load(SeqCst), msg::RESUME) {
        finish(s, KILLED, e as u64, 0);
    }
}

fn next() -> ! {
    let mut from = CURSOR.load(SeqCst);
    while let Some(i) = next_slot(from, MAX_PROCS, |i| runnable_on(i, 0)) {
        CURSOR.store(i + 1, SeqCst);
        run(&SLOTS[i], 0);
        from = i + 1;
    }
    CURSOR.store(0, SeqCst);
    exo_rt::resume()
}

/// Where each other CPU's round robin stands (as `CURSOR`, without init's
/// main context: init has none on those CPUs).
static CORE_CURSOR: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];
/// Yields to children per CPU made by [`on_core`].
pub static CORE_RUNS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Let init's scheduler run children on CPU `cpu` (> 0): init gets a
/// control page for that CPU, entered at the runtime's core entry, and
/// [`on_core`] is its core handler. The CPU's next tick enters it.
pub fn give_core(cpu: u64) -> Result<(), alloc::string::String> {
    use alloc::format;
    exo_rt::smp::set_core_handler(on_core);
    if kinfo::cmdline().split_whitespace().any(|w| w == "idlespin") {
        IDLE_SPIN.store(true, SeqCst);
    }
    let ctl = crate::frames::alloc().ok_or("out of frames for a control page")?;
    exo_rt::mem::write(ctl + exo_abi::control::ENTRY, exo_rt::smp::core_entry());
    exo_rt::mem::write(ctl + exo_abi::control::STACK, 0);
    sys::map(ctl, 0, 0, exo_abi::smp_control_va(cpu), exo_abi::Rights::WRITE)
        .map_err(|e| format!("mapping init's control page for CPU {cpu}: {}", e.name()))
}

/// Init's scheduler on CPU `cpu` > 0 (its core handler): book the upcall
/// as [`on_upcall`] does, then round robin over the children that have a
/// control page for this CPU; with none runnable, idle unmasked (the next
/// tick enters here afresh). Consoles are drained by CPU 0's scheduler.
pub fn on_core(cpu: u64, reason: Reason, a: u64, b: u64, c: u64) -> ! {
    if let Some(driver) = note(reason, a, b, c) {
        if runnable_on(driver, cpu) {
            run(&SLOTS[driver], cpu);
        }
    }
    let k = cpu as usize % CORE_CURSOR.len();
    // Two passes: from the cursor to the end, then from the start.
    for _ in 0..2 {
        let mut from = CORE_CURSOR[k].load(SeqCst);
        while let Some(i) = next_slot(from, MAX_PROCS, |i| runnable_on(i, cpu)) {
            CORE_CURSOR[k].store(i + 1, SeqCst);
            CORE_RUNS[k].fetch_add(1, SeqCst);
            run(&SLOTS[i], cpu);
            from = i + 1;
        }
        CORE_CURSOR[k].store(0, SeqCst);
    }
    exo_rt::smp::unmask();
    idle()
}

/// Nothing to run on this CPU: halt it until its next interrupt (unmasked,
/// so a tick or a device interrupt enters the scheduler afresh). A halt
/// the kernel refuses because an interrupt is latched in `pending` goes
/// through the scheduler at once (a yield to init itself books it).
/// `IDLE_SPIN` (the `idlespin` boot flag) keeps the old busy loop, for
/// comparison.
fn idle() -> ! {
    loop {
        if idle_spins() {
            core::hint::spin_loop();
            continue;
        }
        match sys::idle_halt() {
            Ok(true) => {}
            Ok(false) => sched_yield(),
            // Not init's scheduler after all (cannot happen: only init has
            // core handlers): spin as before.
            Err(_) => IDLE_SPIN.store(true, SeqCst),
        }
    }
}

/// Idle CPUs spin instead of halting (`idlespin` on the command line).
pub static IDLE_SPIN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether idle CPUs spin: [`IDLE_SPIN`], or `idlespin` on the command
/// line (read once; CPU 0 may idle before any core is given away). The
/// evals' `-icount` boots pass it, so that the TSC counts only executed
/// instructions (a halt lets QEMU warp the clock by the wait).
fn idle_spins() -> bool {
    static READ: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if !READ.swap(true, SeqCst) && kinfo::cmdline().split_whitespace().any(|w| w == "idlespin") {
        IDLE_SPIN.store(true, SeqCst);
    }
    IDLE_SPIN.load(SeqCst)
}

/// Wait until slot `i` is no longer runnable (nor asleep); returns its
/// final state. With no child runnable on CPU 0 meanwhile (all asleep
/// or running elsewhere), CPU 0 halts until its next interrupt.
pub fn wait(i: usize) -> u64 {
    loop {
        let st = SLOTS[i].state.load(SeqCst);
        if st != RUNNABLE && st != WAITING {
            // One more pass through the scheduler drains its console.
            sched_yield();
            return st;
        }
        main_idle();
    }
}

/// Init main has nothing to do but wait: if no child is runnable on CPU
/// 0, halt the CPU until an interrupt, then run the scheduler. Masked
/// from the look to the halt, so no upcall can make a child runnable in
/// between: a device interrupt meanwhile is latched in `pending` (and the
/// kernel then refuses the halt), a tick is dropped (it would only have
/// run the scheduler, which runs next anyway).
pub fn main_idle() {
    exo_rt::control::write(exo_abi::control::MASKED, 1);
    let idle = !idle_spins() && !(0..MAX_PROCS).any(|i| runnable_on(i, 0));
    let ticks = kinfo::word(ki::W_TICKS);
    if idle {
        MAIN_HALTS.fetch_add(1, SeqCst);
        let _ = sys::idle_halt();
    }
    exo_rt::control::write(exo_abi::control::MASKED, 0);
    // A tick that ended the halt was dropped (init was masked): do what
    // CPU 0's tick does for sleepers.
    if kinfo::word(ki::W_TICKS) != ticks {
        wake_sleepers();
    }
    sched_yield();
}

/// Halts asked for by init main ([`main_idle`]).
pub static MAIN_HALTS: AtomicU64 = AtomicU64::new(0);

pub fn state_name(st: u64) -> &'static str {
    match st {
        FREE => "free",
        RUNNABLE => "runnable",
        EXITED => "exited",
        PANICKED => "panicked",
        KILLED => "killed",
        STOPPED => "stopped",
        WAITING => "waiting",
        _ => "?",
    }
}
