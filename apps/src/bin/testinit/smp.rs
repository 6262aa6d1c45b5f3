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

/// CPU `n`'s control page in init's RAM window (where init writes it).
static CONTROL_FRAME: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

/// Map a fresh control page for `cpu` into init at `smp_control_va(cpu)`,
/// naming the runtime's core entry and a one-page stack of its own.
pub(crate) fn give_cpu(cpu: u64) -> Outcome {
    let ctl = initlib::frames::alloc().ok_or("out of frames for a control page")?;
    CONTROL_FRAME[cpu as usize].store(ctl, SeqCst);
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

/// `tlb_shootdown`: init's own space runs on CPU 1 (through its CPU-1
/// control page) reading a page in a loop while CPU 0 unmaps it; after
/// `unmap` returns, CPU 0 announces it, and the first read CPU 1 starts
/// after the announcement must fault. Each trial maps the page afresh and
/// first waits until CPU 1 has read it (so CPU 1's TLB holds it).
const SHOOT_VA: u64 = exo_rt::layout::SCRATCH_VA + 0x7000_0000;
/// The trial CPU 0 is in (the page is mapped for it from when it is set).
static TRIAL: AtomicU64 = AtomicU64::new(0);
/// The last trial whose `unmap` has been called ...
static UNMAPPING: AtomicU64 = AtomicU64::new(0);
/// ... and has returned.
static UNMAPPED: AtomicU64 = AtomicU64::new(0);
/// The trial whose unmap CPU 1 had seen announced when it began its
/// current read (0: it had not).
static SAW_UNMAPPED: AtomicU64 = AtomicU64::new(0);
/// Faults of reads that began before the announcement (allowed: the unmap
/// was under way; the reader then reads again).
static EARLY_FAULTS: AtomicU64 = AtomicU64::new(0);
/// The last trial CPU 1 read the mapped page in.
static READ_IN: AtomicU64 = AtomicU64::new(0);
/// The last trial whose unmapped page faulted on CPU 1.
static FAULTED: AtomicU64 = AtomicU64::new(0);
/// The first trial in which a read started after the unmap had returned
/// still succeeded (a stale translation), or 0.
static STALE: AtomicU64 = AtomicU64::new(0);
/// A fault CPU 1 did not expect (address), or 0.
static UNEXPECTED: AtomicU64 = AtomicU64::new(0);
static READS: AtomicU64 = AtomicU64::new(0);
/// What each trial's page holds (checked by every read).
const PATTERN: u64 = 0x5eed_7106_0000_0000;

fn shoot_reader(cpu: u64, reason: Reason, a: u64, _b: u64, _c: u64) -> ! {
    REPORTED.fetch_or(1 << cpu, SeqCst);
    if cpu == 1 {
        if reason == Reason::PageFault {
            let t = TRIAL.load(SeqCst);
            if a & !(PAGE_SIZE - 1) == SHOOT_VA && UNMAPPING.load(SeqCst) == t {
                if SAW_UNMAPPED.load(SeqCst) == t {
                    FAULTED.store(t, SeqCst);
                } else {
                    EARLY_FAULTS.fetch_add(1, SeqCst);
                }
            } else {
                UNEXPECTED.store(a | 1, SeqCst);
            }
        }
        // Unmasked from here: a fault or tick enters this handler afresh
        // (on the stack's top again), the reader loop restarts.
        mem::write(CONTROL_FRAME[cpu as usize].load(SeqCst) + control::MASKED, 0);
        loop {
            let t = TRIAL.load(SeqCst);
            if t == 0 || FAULTED.load(SeqCst) == t {
                core::hint::spin_loop();
                continue;
            }
            let unmapped = UNMAPPED.load(SeqCst) == t;
            SAW_UNMAPPED.store(if unmapped { t } else { 0 }, SeqCst);
            let v = mem::read(SHOOT_VA);
            if unmapped && STALE.load(SeqCst) == 0 {
                STALE.store(t, SeqCst);
            }
            if v != PATTERN + t && !unmapped {
                UNEXPECTED.store(SHOOT_VA | 2, SeqCst);
            }
            READ_IN.store(t, SeqCst);
            READS.fetch_add(1, SeqCst);
        }
    }
    loop {
        core::hint::spin_loop();
    }
}

pub fn tlb_shootdown(trials: u64) -> Outcome {
    let mask = kinfo::word(ki::W_SMP_ONLINE_MASK);
    let tsc_per_us = kinfo::word(ki::W_TSC_PER_US).max(1);
    if mask & 0b11 != 0b11 {
        return Err(format!("CPUs 0 and 1 must be online (mask {mask:#x})"));
    }
    // Only CPU 1 enters init; the others stay idle in the kernel (and
    // still take every shootdown: the kernel keeps no state on who runs
    // what, so it interrupts every other CPU).
    exo_rt::smp::set_core_handler(shoot_reader);
    give_cpu(1)?;
    let frame = initlib::frames::alloc().ok_or("out of frames")?;
    initlib::spawn::ensure_tables(SHOOT_VA).map_err(|e| format!("tables for the shared page: {e}"))?;
    let before = (kinfo::word(ki::W_SMP_SHOOTDOWNS), kinfo::word(ki::W_SMP_SHOOTDOWN_TSC));
    let limit = 10_000_000 * tsc_per_us; // 10 s per wait
    let wait = |what: &str, t: u64, done: &dyn Fn() -> bool| -> Outcome {
        let t0 = exo_rt::time::rdtsc();
        while !done() {
            if STALE.load(SeqCst) != 0 {
                return Err(format!("trial {}: CPU 1 read the page after unmap had returned", STALE.load(SeqCst)));
            }
            if UNEXPECTED.load(SeqCst) != 0 {
                return Err(format!("trial {t}: unexpected fault or value on CPU 1 ({:#x})", UNEXPECTED.load(SeqCst)));
            }
            if exo_rt::time::rdtsc() - t0 > limit {
                return Err(format!("trial {t}: timed out waiting for CPU 1 to {what}"));
            }
            core::hint::spin_loop();
        }
        Ok(())
    };
    for t in 1..=trials {
        mem::write(frame, PATTERN + t);
        sys::map(frame, 0, 0, SHOOT_VA, Rights::WRITE).map_err(|e| format!("trial {t}: map: {}", e.name()))?;
        TRIAL.store(t, SeqCst);
        wait("read the mapped page", t, &|| READ_IN.load(SeqCst) == t)?;
        UNMAPPING.store(t, SeqCst);
        sys::unmap(0, SHOOT_VA, 0).map_err(|e| format!("trial {t}: unmap: {}", e.name()))?;
        UNMAPPED.store(t, SeqCst);
        wait("fault on the unmapped page", t, &|| FAULTED.load(SeqCst) == t)?;
    }
    if STALE.load(SeqCst) != 0 {
        return Err(format!("trial {}: CPU 1 read the page after unmap had returned", STALE.load(SeqCst)));
    }
    let shootdowns = kinfo::word(ki::W_SMP_SHOOTDOWNS) - before.0;
    let ticks = kinfo::word(ki::W_SMP_SHOOTDOWN_TSC) - before.1;
    let per = ticks / shootdowns.max(1);
    println!(
        "init: tlb_shootdown: {trials} trials on {} CPUs, every first read after unmap faulted; {} reads on CPU 1, \
         {} faults of reads begun during an unmap; {shootdowns} shootdowns, {per} TSC ticks ({} ns) each",
        mask.count_ones(),
        READS.load(SeqCst),
        EARLY_FAULTS.load(SeqCst),
        per * 1000 / tsc_per_us
    );
    if shootdowns < trials {
        return Err(format!("{shootdowns} shootdowns for {trials} unmaps"));
    }
    Ok(())
}

/// `smp_calls_race`: every CPU runs init at once, each making page-table
/// calls on the same slots of init's own space: shares mapped and unmapped
/// at a few contended pages, and a race to `create` the same page tables.
/// With the kernel lock each call is atomic, so per slot the successful
/// maps and unmaps alternate (their difference is 0 or 1, and says whether
/// the slot is mapped at the end), exactly one CPU wins each `create`, a
/// loser's frame is still its own (a failed call changes nothing), and no
/// call returns anything but success or the contention's own error.
const RACE_VA: u64 = exo_rt::layout::SCRATCH_VA + 0x8000_0000;
const RACE_SLOTS: usize = 8;
const RACE_TABLES: usize = 16;
const MAX_RACERS: usize = 8;
static RACE_GO: AtomicU64 = AtomicU64::new(0);
static RACE_DONE: AtomicU64 = AtomicU64::new(0);
static RACE_OPS: AtomicU64 = AtomicU64::new(0);
static RACE_MAPS: [AtomicU64; RACE_SLOTS] = [const { AtomicU64::new(0) }; RACE_SLOTS];
static RACE_UNMAPS: [AtomicU64; RACE_SLOTS] = [const { AtomicU64::new(0) }; RACE_SLOTS];
/// The CPU + 1 that won `create` of table `j` (0: none yet).
static RACE_WINNER: [AtomicU64; RACE_TABLES] = [const { AtomicU64::new(0) }; RACE_TABLES];
static RACE_WINS: AtomicU64 = AtomicU64::new(0);
/// Each racer's shared frame and its table frames (RAM-window addresses).
static RACE_FRAME: [AtomicU64; MAX_RACERS] = [const { AtomicU64::new(0) }; MAX_RACERS];
static RACE_TABLE_FRAME: [[AtomicU64; RACE_TABLES]; MAX_RACERS] =
    [const { [const { AtomicU64::new(0) }; RACE_TABLES] }; MAX_RACERS];
/// The first unexpected result: (CPU << 56) | (call << 48) | error code.
static RACE_BAD: AtomicU64 = AtomicU64::new(0);

fn race_table_va(j: usize) -> u64 {
    RACE_VA + (j as u64 + 1) * (2 << 20)
}

fn race(cpu: u64, ops: u64) {
    while RACE_GO.load(SeqCst) == 0 {
        core::hint::spin_loop();
    }
    let frame = RACE_FRAME[cpu as usize].load(SeqCst);
    let bad = |call: u64, e: exo_abi::Error| {
        let _ = RACE_BAD.compare_exchange(0, (cpu << 56) | (call << 48) | e as u64, SeqCst, SeqCst);
    };
    // The tables first, all CPUs at once, in the same order.
    for j in 0..RACE_TABLES {
        let f = RACE_TABLE_FRAME[cpu as usize][j].load(SeqCst);
        match sys::create(race_table_va(j), 1, f) {
            Ok(()) => {
                if RACE_WINNER[j].compare_exchange(0, cpu + 1, SeqCst, SeqCst).is_err() {
                    bad(9, exo_abi::Error::Occupied); // two winners
                }
                RACE_WINS.fetch_add(1, SeqCst);
            }
            Err(exo_abi::Error::Occupied) => {}
            Err(e) => bad(1, e),
        }
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (cpu + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    for _ in 0..ops {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = (x >> 8) as usize % RACE_SLOTS;
        let va = RACE_VA + slot as u64 * PAGE_SIZE;
        if x & 1 == 0 {
            match sys::map(frame, 0, 0, va, Rights::WRITE) {
                Ok(()) => {
                    RACE_MAPS[slot].fetch_add(1, SeqCst);
                }
                Err(exo_abi::Error::Occupied) => {}
                Err(e) => bad(2, e),
            }
        } else {
            match sys::unmap(0, va, 0) {
                Ok(()) => {
                    RACE_UNMAPS[slot].fetch_add(1, SeqCst);
                }
                Err(exo_abi::Error::NotMapped) => {}
                Err(e) => bad(3, e),
            }
        }
        RACE_OPS.fetch_add(1, SeqCst);
    }
    RACE_DONE.fetch_or(1 << cpu, SeqCst);
}

/// How many calls each CPU makes (set before the CPUs are let go).
static RACE_PER_CPU: AtomicU64 = AtomicU64::new(0);

fn race_worker(cpu: u64, _reason: Reason, _a: u64, _b: u64, _c: u64) -> ! {
    REPORTED.fetch_or(1 << cpu, SeqCst);
    if RACE_DONE.load(SeqCst) & (1 << cpu) == 0 && (cpu as usize) < MAX_RACERS {
        race(cpu, RACE_PER_CPU.load(SeqCst));
    }
    loop {
        core::hint::spin_loop();
    }
}

/// A recognisable word per CPU for its shared frame (a canary: the calls
/// only map and unmap it, so it must survive).
fn race_canary(cpu: u64) -> u64 {
    0xca7a_0000_0000_0000 | cpu
}

pub fn smp_calls_race(per_cpu: u64) -> Outcome {
    let mask = kinfo::word(ki::W_SMP_ONLINE_MASK);
    let cpus: Vec<u64> = cpu_list(mask).into_iter().filter(|&c| (c as usize) < MAX_RACERS).collect();
    if cpus.len() < 2 {
        return Err(format!("needs at least 2 CPUs online (mask {mask:#x})"));
    }
    initlib::spawn::ensure_tables(RACE_VA).map_err(|e| format!("tables for the race: {e}"))?;
    for &c in &cpus {
        let f = initlib::frames::alloc().ok_or("out of frames")?;
        mem::write(f, race_canary(c));
        RACE_FRAME[c as usize].store(f, SeqCst);
        for (j, slot) in RACE_TABLE_FRAME[c as usize].iter().enumerate() {
            let t = initlib::frames::alloc().ok_or("out of frames")?;
            mem::write(t + 8, race_canary(c) ^ j as u64);
            slot.store(t, SeqCst);
        }
    }
    RACE_PER_CPU.store(per_cpu, SeqCst);
    let before = kinfo::word(ki::W_SMP_SHOOTDOWNS);
    exo_rt::smp::set_core_handler(race_worker);
    for &c in cpus.iter().filter(|&&c| c != 0) {
        give_cpu(c)?;
    }
    // Let every CPU go once all have entered init.
    let all: u64 = cpus.iter().map(|c| 1u64 << c).sum();
    let tsc_per_us = kinfo::word(ki::W_TSC_PER_US).max(1);
    let t0 = exo_rt::time::rdtsc();
    while REPORTED.load(SeqCst) | 1 != all {
        if exo_rt::time::rdtsc() - t0 > 10_000_000 * tsc_per_us {
            return Err(format!("only CPUs {:?} entered init", cpu_list(REPORTED.load(SeqCst) | 1)));
        }
        core::hint::spin_loop();
    }
    RACE_GO.store(1, SeqCst);
    race(0, per_cpu);
    while RACE_DONE.load(SeqCst) != all {
        if exo_rt::time::rdtsc() - t0 > 40_000_000 * tsc_per_us {
            return Err(format!(
                "CPUs {:?} did not finish ({} calls made)",
                cpu_list(all & !RACE_DONE.load(SeqCst)),
                RACE_OPS.load(SeqCst)
            ));
        }
        core::hint::spin_loop();
    }
    let bad = RACE_BAD.load(SeqCst);
    if bad != 0 {
        return Err(format!("CPU {} got {:#x} from call {}", bad >> 56, bad & 0xffff, (bad >> 48) & 0xff));
    }
    // Per slot: maps and unmaps alternated, and the difference is what is
    // there now.
    for slot in 0..RACE_SLOTS {
        let (m, u) = (RACE_MAPS[slot].load(SeqCst), RACE_UNMAPS[slot].load(SeqCst));
        let mapped = match sys::unmap(0, RACE_VA + slot as u64 * PAGE_SIZE, 0) {
            Ok(()) => 1,
            Err(exo_abi::Error::NotMapped) => 0,
            Err(e) => return Err(format!("slot {slot}: final unmap: {}", e.name())),
        };
        if m.wrapping_sub(u) != mapped {
            return Err(format!("slot {slot}: {m} successful maps, {u} unmaps, mapped at the end: {mapped}"));
        }
    }
    // Every table was created exactly once; every loser's frame is intact
    // in its window (a failed create changed nothing).
    if RACE_WINS.load(SeqCst) != RACE_TABLES as u64 {
        return Err(format!("{} creates won for {RACE_TABLES} tables", RACE_WINS.load(SeqCst)));
    }
    for &c in &cpus {
        if mem::read(RACE_FRAME[c as usize].load(SeqCst)) != race_canary(c) {
            return Err(format!("CPU {c}'s shared frame lost its canary"));
        }
        for j in 0..RACE_TABLES {
            if RACE_WINNER[j].load(SeqCst) != c + 1 {
                let t = RACE_TABLE_FRAME[c as usize][j].load(SeqCst);
                if mem::read(t + 8) != race_canary(c) ^ j as u64 {
                    return Err(format!("CPU {c}'s frame for table {j} changed though its create failed"));
                }
            }
        }
    }
    let ops = RACE_OPS.load(SeqCst);
    let winners: Vec<u64> = RACE_WINNER.iter().map(|w| w.load(SeqCst) - 1).collect();
    println!(
        "init: smp_calls_race: {} CPUs made {ops} map/unmap calls on {RACE_SLOTS} shared slots and raced {} creates \
         (winners by table: {winners:?}); {} shootdowns; every slot's count consistent",
        cpus.len(),
        RACE_TABLES * cpus.len(),
        kinfo::word(ki::W_SMP_SHOOTDOWNS) - before
    );
    Ok(())
}
