//! `qd1poll_own_core` (2 CPUs, multi-threaded TCG) and
//! `qd1poll_shared_core` (1 CPU): the block service at queue depth 1,
//! seen from its client (`nvmetest qd1`) on CPU 0. With its own core the
//! driver (`nvmed serve poll`, pinned to CPU 1) polls its rings and the
//! NVMe completion queue without yielding and the client spins for its
//! answers: neither makes a system call in the loop. Sharing CPU 0 (plain
//! `nvmed serve`) each yields to let the other run. Every pass writes a
//! pattern to random 4 KiB blocks, flushes, and reads every block back
//! and checks it. Counts are checked, times only printed. `eval --drivers
//! --smp 2` boots both on the 2-CPU machine for its rows (one pass per
//! boot: the first driver keeps the controller's BAR when it exits).
//!
//! Both stay in the first 128 MiB of the namespace, the span `nvme_bench`
//! and `eval --drivers` use (the eval's images have it allocated).
//! `qd1poll_ops=N` on the command line sets the ops per workload.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{kinfo as ki, PAGE_SIZE};
use exo_rt::{kinfo, mem, println};
use initlib::kvdb::BlockService;
use initlib::sched;
use initlib::spawn::{self, finish, Options};

type Outcome = Result<(), String>;

const WINDOW_MIB: (u64, u64) = (0, 128);
/// Header and rings (3 pages) and a data area of two 4 KiB slots.
const REGION_PAGES: u64 = 3 + 2;
/// The driver's CPU when it has its own.
const DRIVER_CPU: u64 = 1;
/// `nvmed serve`'s mailbox words (apps/src/bin/nvmed/serve.rs).
const DRIVER_SYSCALLS: u64 = 16;
const DRIVER_IDLE_YIELDS: u64 = 24;
/// `nvmetest qd1`'s mailbox words (apps/src/bin/nvmetest/qd1.rs).
const CLIENT_SYSCALLS: u64 = 8;
const CLIENT_YIELDS: u64 = 16;
const CLIENT_VERIFIED: u64 = 24;

/// Ops per workload: `qd1poll_ops=N` or `default`.
fn ops(default: u64) -> Result<u64, String> {
    match kinfo::cmdline().split_whitespace().find_map(|w| w.strip_prefix("qd1poll_ops=")) {
        None => Ok(default),
        Some(n) => {
            n.parse().ok().filter(|n| (2..=1 << 17).contains(n)).ok_or(format!("qd1poll_ops={n}: expected 2..=131072"))
        }
    }
}

/// What one pass counted.
struct Counts {
    client_syscalls: u64,
    client_yields: u64,
    driver_syscalls: u64,
    driver_idle_yields: u64,
    sleeping: Option<Sleeping>,
}

/// One pass: the service (polling on CPU 1 if `own_core`, else yielding
/// on CPU 0), the client on CPU 0, `ops` writes and `ops` checked reads;
/// with `sleep` (own core only) the client sleeps until the completion
/// interrupt wakes it.
fn pass(own_core: bool, sleep: bool, ops: u64) -> Result<Counts, String> {
    let placement = match (own_core, sleep) {
        (true, true) => "own-sleep",
        (true, false) => "own-core",
        _ => "shared-core",
    };
    let svc = BlockService::start_on(WINDOW_MIB, REGION_PAGES, own_core.then_some(DRIVER_CPU))?;
    let words = [svc.bytes(), kinfo::word(ki::W_TSC_PER_US), ops];
    let heap_pages = 64 + (3 * 8 * ops).div_ceil(PAGE_SIZE);
    let args = format!("qd1 {placement}");
    let opts = Options { args: &args, words: &words, heap_pages, spare_pages: 0, paused: true };
    let client = spawn::spawn_on("nvmetest", &opts, 1)?;
    svc.link(&client)?;
    let wake_vector = if sleep { Some(svc.wake_on_completions(&client)?) } else { None };
    let seen0 = wake_vector.map_or(0, initlib::devices::interrupts_seen);
    let (wakes0, halts0) = (initlib::devices::WAKES.load(SeqCst), kinfo::word(ki::W_IDLE_HALTS));
    sched::start(client.slot);
    let code = finish(&client, &format!("nvmetest {args}"));
    let driver_ran = sched::slot(svc.driver().slot).ran_on.load(SeqCst);
    let client_ran = sched::slot(client.slot).ran_on.load(SeqCst);
    let box_ = spawn::mailbox(&client);
    let (client_syscalls, client_yields, verified) =
        (mem::read(box_ + CLIENT_SYSCALLS), mem::read(box_ + CLIENT_YIELDS), mem::read(box_ + CLIENT_VERIFIED));
    let [driver_syscalls, driver_idle_yields] = svc.stop_reading([DRIVER_SYSCALLS, DRIVER_IDLE_YIELDS])?;
    let sleeping = wake_vector.map(|v| Sleeping {
        interrupts: initlib::devices::interrupts_seen(v) - seen0,
        wakes: initlib::devices::WAKES.load(SeqCst) - wakes0,
        sleeps: sched::slot(client.slot).sleeps.load(SeqCst),
        early: sched::slot(client.slot).early_wakes.load(SeqCst),
        tick_wakes: sched::slot(client.slot).tick_wakes.load(SeqCst),
        halts: kinfo::word(ki::W_IDLE_HALTS) - halts0,
    });
    match code? {
        0 => {}
        c => return Err(format!("nvmetest {args} exited with {c}")),
    }
    if verified != ops {
        return Err(format!("{placement}: the client checked {verified} reads of {ops}"));
    }
    let driver_cpus = if own_core { 1 << DRIVER_CPU } else { 1 };
    if driver_ran != driver_cpus || client_ran != 1 {
        return Err(format!(
            "{placement}: the driver ran on CPUs {driver_ran:#x} (pinned to {driver_cpus:#x}), the client on {client_ran:#x} (pinned to CPU 0)"
        ));
    }
    println!(
        "init: qd1poll {placement}: {ops} writes + {ops} verified reads; client {client_syscalls} system calls ({client_yields} yields) in its loops, driver {driver_syscalls} system calls ({driver_idle_yields} idle yields) while serving"
    );
    if let Some(z) = &sleeping {
        println!(
            "init: qd1poll {placement}: {} completion interrupts, {} woke the sleeping client; {} sleeps, {} waits ended by an \
             interrupt that came first, {} sleeps ended by a tick; {} CPU halts meanwhile (CPU 0 halted: {})",
            z.interrupts,
            z.wakes,
            z.sleeps,
            z.early,
            z.tick_wakes,
            z.halts,
            kinfo::word(ki::W_IDLE_HALT_CPUS) & 1 != 0
        );
    }
    Ok(Counts { client_syscalls, client_yields, driver_syscalls, driver_idle_yields, sleeping })
}

/// What a sleeping client's pass counted (init's and the kernel's view).
struct Sleeping {
    /// Interrupts of the asynchronous queue's vector.
    interrupts: u64,
    /// Interrupts that made the sleeping client runnable.
    wakes: u64,
    sleeps: u64,
    early: u64,
    tick_wakes: u64,
    /// Idle halts (any CPU) during the pass.
    halts: u64,
}

/// Sharing CPU 0, each side gives the other the CPU: the client's only
/// system calls are its yields, and it made some; the driver yielded.
fn check_shared(c: &Counts) -> Outcome {
    if c.client_yields == 0 || c.client_syscalls != c.client_yields || c.driver_idle_yields == 0 {
        return Err(format!(
            "shared core: client {} system calls / {} yields, driver {} idle yields: both should yield, and the client make no other call",
            c.client_syscalls, c.client_yields, c.driver_idle_yields
        ));
    }
    Ok(())
}

pub fn shared_core() -> Outcome {
    check_shared(&pass(false, false, ops(500)?)?)
}

pub fn own_core() -> Outcome {
    let mask = kinfo::word(ki::W_SMP_ONLINE_MASK);
    if mask & (1 | 1 << DRIVER_CPU) != 1 | 1 << DRIVER_CPU {
        return Err(format!("needs CPUs 0 and {DRIVER_CPU} online (mask {mask:#x})"));
    }
    sched::give_core(DRIVER_CPU)?;
    let own = pass(true, false, ops(2000)?)?;
    // Its own core: the driver polls, the client spins; no side crosses
    // into the kernel per request (nor at all, in the loops).
    if own.client_syscalls != 0 || own.driver_syscalls != 0 {
        return Err(format!(
            "own core: client {} system calls ({} yields), driver {} in the loops: expected none",
            own.client_syscalls, own.client_yields, own.driver_syscalls
        ));
    }
    Ok(())
}

/// `qd1poll_own_sleep`: the driver polling on CPU 1 as in
/// `qd1poll_own_core`, the client sleeping between its answers: each wait
/// is one `yield` (`msg::WAIT`) at most, the completion interrupt wakes
/// it, and CPU 0 halts while it sleeps. The driver still makes no system
/// call.
pub fn own_sleep() -> Outcome {
    let mask = kinfo::word(ki::W_SMP_ONLINE_MASK);
    if mask & (1 | 1 << DRIVER_CPU) != 1 | 1 << DRIVER_CPU {
        return Err(format!("needs CPUs 0 and {DRIVER_CPU} online (mask {mask:#x})"));
    }
    sched::give_core(DRIVER_CPU)?;
    let ops = ops(2000)?;
    let c = pass(true, true, ops)?;
    let z = c.sleeping.as_ref().ok_or("no sleeping counts")?;
    // Its only system calls are its waits, at most one per poll round;
    // every I/O (2 * ops + a flush) completes with an interrupt.
    if c.driver_syscalls != 0 || c.client_syscalls != c.client_yields {
        return Err(format!(
            "own core, sleeping client: client {} system calls ({} waits), driver {}: expected the client's waits only",
            c.client_syscalls, c.client_yields, c.driver_syscalls
        ));
    }
    if z.interrupts < 2 * ops || z.wakes == 0 || z.sleeps == 0 {
        return Err(format!(
            "{} completion interrupts for {} I/Os, {} wakes, {} sleeps: the client did not sleep or was not woken",
            z.interrupts,
            2 * ops + 1,
            z.wakes,
            z.sleeps
        ));
    }
    if kinfo::word(ki::W_IDLE_HALT_CPUS) & 1 == 0 || z.halts == 0 {
        return Err("CPU 0 never halted while its client slept".into());
    }
    Ok(())
}
