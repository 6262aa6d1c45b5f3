//! `probe twocores <n>`: one space running on two CPUs at once, one
//! activation per CPU. Main (on CPU 0) installs a core handler and says
//! it is ready; init then gives this space a control page for CPU 1 too,
//! and CPU 1's scheduler enters it there: the handler starts a second
//! activation on a stack of its own (`exo_rt::smp::start_activation`) or,
//! when it was preempted, resumes it from CPU 1's control page. Main and
//! the second activation then hand a token back and forth `n` times
//! through memory: each hand-over needs both running, so `n` far above
//! the number of times init switched this space in shows that they ran at
//! the same time. Mailbox words: 16 = hand-overs, 24 = activation starts,
//! 32 = activation resumes.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use exo_abi::{control, Reason};
use exo_rt::layout::MAILBOX_VA;
use exo_rt::{mem, println};

/// Odd: the second activation's turn; even: main's.
static TURN: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicU64 = AtomicU64::new(0);
static STARTS: AtomicU64 = AtomicU64::new(0);
static RESUMES: AtomicU64 = AtomicU64::new(0);

fn on_core(cpu: u64, reason: Reason, a: u64, b: u64, _c: u64) -> ! {
    if reason != Reason::Yield {
        exo_rt::fatal(format_args!("twocores: {reason:?} {a:#x} {b:#x} on CPU {cpu}"));
    }
    if exo_rt::control::read(control::SAVED_VALID) != 0 {
        // Preempted (or it yielded) on this CPU: continue it from this
        // CPU's control page.
        RESUMES.fetch_add(1, SeqCst);
        exo_rt::resume()
    }
    STARTS.fetch_add(1, SeqCst);
    let stack: &'static mut [u64] = Box::leak(alloc::vec![0u64; 2048].into_boxed_slice());
    exo_rt::smp::start_activation(cpu, stack, second)
}

extern "C" fn second() -> ! {
    while STOP.load(SeqCst) == 0 {
        let t = TURN.load(SeqCst);
        if t % 2 == 1 {
            TURN.store(t + 1, SeqCst);
        }
        core::hint::spin_loop();
    }
    loop {
        exo_rt::yield_now();
    }
}

pub fn run(n: u64) -> u32 {
    exo_rt::smp::set_core_handler(on_core);
    mem::write(MAILBOX_VA + 8, 1);
    for i in 0..n {
        TURN.store(2 * i + 1, SeqCst);
        while TURN.load(SeqCst) != 2 * i + 2 {
            core::hint::spin_loop();
        }
    }
    STOP.store(1, SeqCst);
    let (starts, resumes) = (STARTS.load(SeqCst), RESUMES.load(SeqCst));
    mem::write(MAILBOX_VA + 16, n);
    mem::write(MAILBOX_VA + 24, starts);
    mem::write(MAILBOX_VA + 32, resumes);
    println!(
        "twocores: {n} hand-overs between two activations; the second started {starts} time(s), resumed {resumes}"
    );
    0
}
