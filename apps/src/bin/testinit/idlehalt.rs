//! Idle CPUs halt (`idlehalt_smp`, 2 CPUs): init's scheduler on a CPU
//! with nothing to run asks the kernel to halt it
//! (`yield(IDLE_HALT_HANDLE_VA, 0)`, `initlib::sched::on_core`) instead of
//! spinning. Shown by the kernel's counts: CPU 1 halts, every tick wakes
//! it (and its scheduler runs), a TLB shootdown from CPU 0 is answered by
//! the halted CPU (and ends its halt), and a child pinned to CPU 1 later
//! runs there and exits.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{kinfo as ki, Rights};
use exo_rt::{kinfo, println, sys};
use initlib::sched::{self, state_name, EXITED, RUNNABLE};
use initlib::spawn::{spawn_on, Options};

type Outcome = Result<(), String>;

const CPU: u64 = 1;
/// A page init maps and unmaps to make the kernel shoot CPU 1's TLB down.
const SHOOT_VA: u64 = exo_rt::layout::SCRATCH_VA + 0x7100_0000;
const SHOOTDOWNS: u64 = 50;

fn w(word: usize) -> u64 {
    kinfo::word(word)
}

/// Wait (init main yields meanwhile) until `done`, at most `secs`.
fn wait_until(what: &str, secs: u64, done: &dyn Fn() -> bool) -> Outcome {
    let per_s = kinfo::word(ki::W_TSC_PER_US).max(1) * 1_000_000;
    let t0 = exo_rt::time::rdtsc();
    while !done() {
        if exo_rt::time::rdtsc() - t0 > secs * per_s {
            return Err(format!("timed out after {secs} s waiting for {what}"));
        }
        sched::sched_yield();
    }
    Ok(())
}

pub fn idlehalt_smp() -> Outcome {
    let mask = w(ki::W_SMP_ONLINE_MASK);
    if mask & (1 << CPU) == 0 {
        return Err(format!("needs CPU {CPU} online (mask {mask:#x})"));
    }
    sched::give_core(CPU)?;

    // 1. Nothing to run on CPU 1: it halts, and its ticks wake it (each
    // tick enters init's scheduler there, which halts again).
    let (halts0, timer0) = (w(ki::W_IDLE_HALTS), w(ki::W_IDLE_WAKE_TIMER));
    wait_until("CPU 1 to halt 20 times, woken by its timer", 30, &|| {
        w(ki::W_IDLE_HALT_CPUS) & (1 << CPU) != 0
            && w(ki::W_IDLE_HALTS) - halts0 >= 20
            && w(ki::W_IDLE_WAKE_TIMER) - timer0 >= 20
    })?;

    // 2. Shootdowns reach a halted CPU: each unmap waits until CPU 1 has
    // flushed, so a lost one would hang here; some of them end a halt.
    let frame = initlib::frames::alloc().ok_or("out of frames")?;
    initlib::spawn::ensure_tables(SHOOT_VA).map_err(|e| format!("tables for the shootdown page: {e:?}"))?;
    let (shots0, acks0, other0) = (w(ki::W_SMP_SHOOTDOWNS), w(ki::W_SMP_SHOOTDOWN_ACKS), w(ki::W_IDLE_WAKE_OTHER));
    for t in 0..SHOOTDOWNS {
        sys::map(frame, 0, 0, SHOOT_VA, Rights::WRITE).map_err(|e| format!("shootdown {t}: map: {}", e.name()))?;
        sys::unmap(0, SHOOT_VA, 0).map_err(|e| format!("shootdown {t}: unmap: {}", e.name()))?;
        // Let CPU 1 halt again before the next one.
        let h = w(ki::W_IDLE_HALTS);
        wait_until("CPU 1 to halt again", 10, &|| w(ki::W_IDLE_HALTS) > h)?;
    }
    let (shots, acks, other) =
        (w(ki::W_SMP_SHOOTDOWNS) - shots0, w(ki::W_SMP_SHOOTDOWN_ACKS) - acks0, w(ki::W_IDLE_WAKE_OTHER) - other0);
    if shots < SHOOTDOWNS || acks < shots {
        return Err(format!("{SHOOTDOWNS} unmaps made {shots} shootdowns with {acks} acknowledgements"));
    }
    if other == 0 {
        return Err(format!("none of {shots} shootdowns ended a halt of CPU 1"));
    }

    // 3. Work for the halted CPU: a child pinned to it runs there (its
    // scheduler finds it at the next tick) and exits.
    let c = spawn_on("hello", &Options::default(), 1 << CPU)?;
    wait_until("hello on CPU 1 to end", 30, &|| sched::slot(c.slot).state.load(SeqCst) != RUNNABLE)?;
    let s = sched::slot(c.slot);
    let (st, code, ran) = (s.state.load(SeqCst), s.code.load(SeqCst), s.ran_on.load(SeqCst));
    if st != EXITED || code != 0 || ran != 1 << CPU {
        return Err(format!("hello on CPU {CPU} ended {} code {code:#x}, ran on CPUs mask {ran:#x}", state_name(st)));
    }
    let h = w(ki::W_IDLE_HALTS);
    wait_until("CPU 1 to halt after the child", 10, &|| w(ki::W_IDLE_HALTS) > h)?;

    let per_us = w(ki::W_TSC_PER_US).max(1);
    println!(
        "init: idlehalt_smp: {} halts ({} ms halted), woken by the timer {} times, by a device {}, by something \
         else {} (of them {other} during {shots} shootdowns, {acks} acks); {} refused (interrupt pending); halted \
         CPUs mask {:#x}; hello ran on CPU {CPU} and exited",
        w(ki::W_IDLE_HALTS),
        w(ki::W_IDLE_HALT_TSC) / per_us / 1000,
        w(ki::W_IDLE_WAKE_TIMER),
        w(ki::W_IDLE_WAKE_DEVICE),
        w(ki::W_IDLE_WAKE_OTHER),
        w(ki::W_IDLE_HALT_PENDING),
        w(ki::W_IDLE_HALT_CPUS),
    );
    Ok(())
}
