//! SMP scenarios: init on several CPUs at once. Init gives each other CPU
//! a control page of its own (`exo_abi::smp_control_va`), whose entry point
//! is the runtime's core entry; the kernel enters init there on that CPU's
//! next timer tick, and init's core handler runs on that CPU.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use exo_abi::{control, kinfo as ki, smp_control_va, Reason, Rights, PAGE_SIZE};
use exo_rt::{kinfo, mem, println, sys};

type Outcome = Result<(), String>;

/// Bit `n`: CPU `n` entered init through its own control page.
static REPORTED: AtomicU64 = AtomicU64::new(0);
/// Bit `n`: CPU `n`'s first entry was its timer tick (`Reason::Timer`).
static BY_TIMER: AtomicU64 = AtomicU64::new(0);

/// Map a fresh control page for `cpu` into init at `smp_control_va(cpu)`,
/// naming the runtime's core entry and a one-page stack of its own.
fn give_cpu(cpu: u64) -> Outcome {
    let ctl = initlib::frames::alloc().ok_or("out of frames for a control page")?;
    let stack = initlib::frames::alloc().ok_or("out of frames for a core stack")?;
    mem::write(ctl + control::ENTRY, exo_rt::smp::core_entry());
    mem::write(ctl + control::STACK, stack + PAGE_SIZE);
    sys::map(ctl, 0, 0, smp_control_va(cpu), Rights::WRITE)
        .map_err(|e| format!("mapping CPU {cpu}'s control page: {}", e.name()))
}

/// Runs on CPU `cpu` when the kernel enters init there: report in, then
/// keep the CPU (masked: the kernel lets the handler run on).
fn report_in(cpu: u64, reason: Reason, _a: u64, _b: u64, _c: u64) -> ! {
    if reason == Reason::Timer {
        BY_TIMER.fetch_or(1 << cpu, SeqCst);
    }
    REPORTED.fetch_or(1 << cpu, SeqCst);
    loop {
        core::hint::spin_loop();
    }
}

fn cpu_list(mask: u64) -> Vec<u64> {
    (0..64).filter(|i| mask & (1 << i) != 0).collect()
}

/// `smp_boot`: every CPU the MADT lists is online and reports in to init
/// on its own core, entered by its own timer.
pub fn smp_boot() -> Outcome {
    let listed = kinfo::word(ki::W_CPUS);
    let online = kinfo::word(ki::W_SMP_ONLINE);
    let mask = kinfo::word(ki::W_SMP_ONLINE_MASK);
    let boot_ticks = kinfo::word(ki::W_SMP_BOOT_TSC);
    let tsc_per_us = kinfo::word(ki::W_TSC_PER_US).max(1);
    println!(
        "init: smp: {online} of {listed} CPU(s) online (mask {mask:#x}), application processors started in {} us",
        boot_ticks / tsc_per_us
    );
    if listed < 2 {
        return Err(format!("this machine has {listed} CPU(s): the SMP test needs at least 2"));
    }
    if online != listed || mask.count_ones() as u64 != online {
        return Err(format!("{online} CPU(s) online (mask {mask:#x}) of {listed} the MADT lists"));
    }
    // CPU 0 is where this runs.
    REPORTED.fetch_or(1, SeqCst);
    exo_rt::smp::set_core_handler(report_in);
    for cpu in cpu_list(mask).into_iter().filter(|&c| c != 0) {
        give_cpu(cpu)?;
    }
    let t0 = exo_rt::time::rdtsc();
    let limit = 20_000_000 * tsc_per_us; // 20 s
    while REPORTED.load(SeqCst) != mask && exo_rt::time::rdtsc() - t0 < limit {
        core::hint::spin_loop();
    }
    let reported = REPORTED.load(SeqCst);
    let waited = (exo_rt::time::rdtsc() - t0) / tsc_per_us;
    println!("init: smp_boot: CPUs that reported in through init: {:?} (after {waited} us)", cpu_list(reported));
    if reported != mask {
        return Err(format!("CPUs {:?} online, only {:?} reported in", cpu_list(mask), cpu_list(reported)));
    }
    let by_timer = BY_TIMER.load(SeqCst);
    if by_timer != mask & !1 {
        return Err(format!("CPUs {:?} were not entered by their own timer tick", cpu_list(mask & !1 & !by_timer)));
    }
    Ok(())
}
