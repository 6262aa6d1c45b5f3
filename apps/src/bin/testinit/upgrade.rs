//! Rebootless kernel upgrade (`docs/syscalls.md`, "Rebootless kernel
//! upgrade"; `initlib::upgrade`; the kernel's `upgrade.rs`). The boot
//! image carries upgrade images of the running build A (slot 0) and of a
//! build B (slot 1, its own name in the kernel info page), and damaged
//! copies of B (QEMU test details in xtask's `qemu_tests.rs`).
//!
//! * `kernel_upgrade`: kvdb commits in a loop on the NVMe (block service)
//!   and on persistent memory while init upgrades A→B→A→B; after each
//!   upgrade the info page names the expected build, both loops go on
//!   committing, and the commits in flight at the switch are counted; at
//!   the end both databases are verified whole (kvdb's `upgload`).
//! * `kernel_upgrade_grub`: booted through GRUB from the BIOS disk image,
//!   one upgrade A→B under the same kvdb load.
//! * `kernel_upgrade_bad`: truncated, wrong-ABI, corrupted images and one
//!   linked over the running kernel are refused by name, A keeps running
//!   and counting; then a good upgrade to B still works and a process
//!   runs under it.
//! * `kernel_upgrade_smp`: `kernel_upgrade` on a machine with several CPUs,
//!   while init's core handler counts in a loop on every other CPU: the
//!   upgrade parks them; after each upgrade every counter advances again
//!   (each CPU came back, in the new kernel, to the loop it ran).
//!   `kernel_upgrade_smp4`: the same with 4 CPUs (three counting, each
//!   making a system call per count), A→B→A
//!   without the database. `kernel_upgrade_smp_stuck`: booted with `upsmp_noprk` (the highest
//!   CPU ignores park requests) an upgrade is refused (`CpuDidNotPark`),
//!   the CPUs that parked go back to A, every counter advances, A keeps
//!   running and a process runs. `kernel_upgrade_nosmp`: the same machine
//!   booted with `nosmp` (APs never started) upgrades A→B.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use exo_abi::{kinfo as ki, Reason};
use exo_rt::layout::SHARED_VA;
use exo_rt::{kinfo, mem, println};
use exo_upgrade::Refusal;
use initlib::kvdb::upgrade_mailbox::{GAP_ACROSS, GAP_OTHER, LAST_ACK, SEEN_AFTER_JUMP, STARTED, UPGRADES_SEEN};
use initlib::kvdb::{self as kv, BlockService};
use initlib::spawn::{self, Child};
use initlib::upgrade::{self, Failure};
use initlib::{sched, sched::sched_yield};

type Outcome = Result<(), String>;

/// Ticks (10 ms) a kvdb may take to show progress before the test fails.
const BOUND_TICKS: u64 = 1500;

fn expect_build(want: &str) -> Outcome {
    let got = upgrade::running_build();
    if got != want {
        return Err(format!("the kernel info page names build {got:?}, expected {want:?}"));
    }
    Ok(())
}

fn word(c: &Child, w: u64) -> u64 {
    mem::read(spawn::mailbox(c) + w)
}

/// Wait (scheduling the children) until `done`, failing if a child ends.
fn wait_for(kids: &[&Child], what: &str, done: impl Fn() -> bool) -> Outcome {
    let until = kinfo::word(ki::W_TICKS) + BOUND_TICKS;
    while !done() {
        for c in kids {
            let st = sched::slot(c.slot).state.load(SeqCst);
            if st != sched::RUNNABLE {
                let code = sched::slot(c.slot).code.load(SeqCst);
                return Err(format!("a kvdb ended (code {code}: {}) while {what}", kv::meaning(code)));
            }
        }
        if kinfo::word(ki::W_TICKS) > until {
            return Err(format!("not done {what} after {BOUND_TICKS} ticks"));
        }
        sched_yield();
    }
    Ok(())
}

pub fn kernel_upgrade() -> Outcome {
    upgrade_under_load("kernel_upgrade", &["B", "A", "B"], &|_| Ok(()))
}

/// `kernel_upgrade_grub`: the machine booted from the BIOS disk image
/// through GRUB (multiboot2; the boot image, upgrade images included, is
/// GRUB's module, kept out of the spare kernel slot by the kernel's ELF),
/// then one upgrade A→B under kvdb load.
pub fn kernel_upgrade_grub() -> Outcome {
    let loader = kinfo::word(ki::W_BOOT_LOADER);
    if loader != ki::BOOT_MB2_BIOS {
        return Err(format!("booted by loader {loader}, not multiboot2 on BIOS (GRUB)"));
    }
    upgrade_under_load("kernel_upgrade_grub", &["B"], &|_| Ok(()))
}

/// kvdb commits on the NVMe and the NVDIMM while init upgrades to each of
/// `builds` in turn; `after_each(k)` checks more after upgrade `k` (from 0).
fn upgrade_under_load(test: &str, builds: &[&str], after_each: &dyn Fn(usize) -> Outcome) -> Outcome {
    let nonce = crate::basic::nonce_or_clock();
    expect_build("A")?;
    let svc = BlockService::start(kv::NVME_WINDOW_MIB, kv::KVDB_REGION_PAGES)?;
    let on_nvme = kv::spawn_kvdb("nvme upgload", SHARED_VA, svc.bytes(), nonce)?;
    svc.link(&on_nvme)?;
    let pmem_va = exo_abi::CHILD_PMEM_VA;
    let on_pmem = kv::spawn_kvdb("pmem upgload", pmem_va, kv::PMEM_BYTES, nonce ^ 0x5a5a)?;
    initlib::pmem::grant(&on_pmem, pmem_va, kv::PMEM_OFFSET, kv::PMEM_BYTES)?;
    sched::start(on_nvme.slot);
    sched::start(on_pmem.slot);
    let kids = [&on_nvme, &on_pmem];
    wait_for(&kids, "committing before the first upgrade", || {
        word(&on_nvme, LAST_ACK) >= 5 && word(&on_pmem, LAST_ACK) >= 5
    })?;
    let mut in_flight_total = 0;
    for (k, build) in builds.iter().enumerate() {
        let name = format!("kernel/{build}");
        let r = upgrade::upgrade(&name).map_err(|e| format!("upgrade {} to {build}: {e}", k + 1))?;
        // Init runs first after the switch: the children are as they were
        // at the old kernel's last instruction.
        let at_switch: [(u64, u64); 2] =
            [(word(&on_nvme, STARTED), word(&on_nvme, LAST_ACK)), (word(&on_pmem, STARTED), word(&on_pmem, LAST_ACK))];
        expect_build(build)?;
        if kinfo::word(ki::W_UPGRADE_DONE) != k as u64 + 1 {
            return Err(format!("{} upgrades counted after upgrade {}", kinfo::word(ki::W_UPGRADE_DONE), k + 1));
        }
        let in_flight: u64 = at_switch.iter().map(|(s, a)| s - a).sum();
        in_flight_total += in_flight;
        println!(
            "init: {test}: upgrade {} to build {build} (image {} bytes): yield {} TSC ticks in all; old kernel request to jump {}; jump to init's first instruction {} (new kernel {}); commits at the switch: nvme {} acked {} in flight, pmem {} acked {} in flight",
            k + 1,
            r.image_bytes,
            r.call,
            r.old_kernel,
            r.switch,
            r.new_kernel,
            at_switch[0].1,
            at_switch[0].0 - at_switch[0].1,
            at_switch[1].1,
            at_switch[1].0 - at_switch[1].1,
        );
        // The loops go on: both commit again, and see the new kernel.
        let after = (at_switch[0].0, at_switch[1].0);
        wait_for(&kids, &format!("committing after upgrade {}", k + 1), || {
            word(&on_nvme, LAST_ACK) > after.0
                && word(&on_pmem, LAST_ACK) > after.1
                && word(&on_nvme, UPGRADES_SEEN) == k as u64 + 1
                && word(&on_pmem, UPGRADES_SEEN) == k as u64 + 1
        })?;
        println!(
            "init: {test}: after upgrade {}: kvdb nvme saw it {} TSC ticks after the old kernel's jump, pmem {}",
            k + 1,
            word(&on_nvme, SEEN_AFTER_JUMP),
            word(&on_pmem, SEEN_AFTER_JUMP)
        );
        println!(
            "init: {test}: upgrade {}: {} other CPU(s) parked in {} TSC ticks (old kernel), all back online {} ticks after the new kernel's first instruction",
            k + 1,
            kinfo::word(ki::W_UPSMP_PARKED),
            kinfo::word(ki::W_UPSMP_PARK_TSC),
            kinfo::word(ki::W_UPSMP_RELEASE_TSC)
        );
        after_each(k)?;
    }
    for c in kids {
        mem::write(spawn::mailbox(c), 1);
    }
    let nvme_done = kv::run_kvdb(&on_nvme, "kvdb nvme upgload");
    let pmem_done = kv::run_kvdb(&on_pmem, "kvdb pmem upgload");
    let back = initlib::pmem::reclaim(&on_pmem, pmem_va, kv::PMEM_OFFSET, kv::PMEM_BYTES);
    let stopped = svc.stop();
    nvme_done?;
    pmem_done?;
    back?;
    stopped?;
    println!(
        "init: {test}: {} upgrade(s) (A->{}), {} + {} commits all verified, {} in flight at the switches, none lost; largest gap between two commits across an upgrade: nvme {} / pmem {} TSC ticks, otherwise {} / {} (TSC {} per us)",
        builds.len(),
        builds.join("->"),
        word(&on_nvme, LAST_ACK),
        word(&on_pmem, LAST_ACK),
        in_flight_total,
        word(&on_nvme, GAP_ACROSS),
        word(&on_pmem, GAP_ACROSS),
        word(&on_nvme, GAP_OTHER),
        word(&on_pmem, GAP_OTHER),
        kinfo::word(ki::W_TSC_PER_US)
    );
    expect_build(builds.last().copied().unwrap_or("A"))
}

pub fn kernel_upgrade_bad() -> Outcome {
    expect_build("A")?;
    let cases = [
        ("kernel/bad-truncated", Refusal::Truncated),
        ("kernel/bad-abi", Refusal::WrongAbi),
        ("kernel/bad-corrupt", Refusal::BadChecksum),
        ("kernel/A", Refusal::RunningSlot),
    ];
    for (i, (name, want)) in cases.iter().enumerate() {
        let ticks = kinfo::word(ki::W_TICKS);
        match upgrade::upgrade(name) {
            Err(Failure::Refused(r)) if r == *want => println!("init: kernel_upgrade_bad: {name} refused: {r}"),
            Err(e) => return Err(format!("{name}: {e}, expected refused: {want}")),
            Ok(_) => return Err(format!("{name} was accepted")),
        }
        expect_build("A")?;
        if kinfo::word(ki::W_UPGRADE_REFUSED) != i as u64 + 1 || kinfo::word(ki::W_UPGRADE_DONE) != 0 {
            return Err(format!("after {name}: refused/done counters wrong"));
        }
        // The old kernel keeps running: its clock ticks on.
        while kinfo::word(ki::W_TICKS) < ticks + 2 {
            sched_yield();
        }
    }
    // The system goes on: a good image still upgrades it, and a process
    // runs to completion under the new kernel.
    upgrade::upgrade("kernel/B").map_err(|e| format!("kernel/B after the bad images: {e}"))?;
    expect_build("B")?;
    crate::basic::expect_exit("probe", "syscalls", 64, 0)?;
    println!("init: kernel_upgrade_bad: 4 images refused by name, then A->B, and a process ran under B");
    Ok(())
}

/// Iterations of init's counting loop on CPU `n` (its core handler there).
static SPINS: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

/// The CPUs (a mask) whose loops make a system call per iteration. Such
/// a CPU is often inside the kernel, or waiting for its lock, when the
/// park request comes: the entry must be undone and replayed under the
/// new kernel, not lost and not left spinning. (Shown: with system calls
/// taking the lock without answering park requests, an upgrade here is
/// refused `CpuDidNotPark` within two upgrades.)
static CALLING_CPUS: AtomicU64 = AtomicU64::new(0);

/// A page of init's that is never mapped: unmapping it fails, changing
/// nothing, after a full trip through the kernel and its lock.
const NEVER_MAPPED_VA: u64 = 0x7f00_0000_0000;

/// Init's core handler for these tests: count, forever (masked: the
/// kernel lets it run through its timer ticks).
fn count_forever(cpu: u64, _reason: Reason, _a: u64, _b: u64, _c: u64) -> ! {
    if CALLING_CPUS.load(SeqCst) & (1 << (cpu & 63)) != 0 {
        loop {
            if exo_rt::sys::unmap(0, NEVER_MAPPED_VA, 0).is_ok() {
                exo_rt::fatal(format_args!("unmap of never-mapped {NEVER_MAPPED_VA:#x} succeeded on CPU {cpu}"));
            }
            SPINS[cpu as usize & 63].fetch_add(1, SeqCst);
        }
    }
    loop {
        SPINS[cpu as usize & 63].fetch_add(1, SeqCst);
    }
}

fn other_cpus() -> Vec<u64> {
    let mask = kinfo::word(ki::W_SMP_ONLINE_MASK);
    (1..64).filter(|c| mask & (1 << c) != 0).collect()
}

/// Wait (bounded) until every other CPU's counter passes what it was.
fn counters_advance(what: &str) -> Outcome {
    let cpus = other_cpus();
    let before: Vec<u64> = cpus.iter().map(|&c| SPINS[c as usize].load(SeqCst)).collect();
    let until = kinfo::word(ki::W_TICKS) + BOUND_TICKS;
    loop {
        let stuck: Vec<u64> =
            cpus.iter().zip(&before).filter(|(&c, &b)| SPINS[c as usize].load(SeqCst) <= b).map(|(&c, _)| c).collect();
        if stuck.is_empty() {
            return Ok(());
        }
        if kinfo::word(ki::W_TICKS) > until {
            return Err(format!("CPU(s) {stuck:?} stopped counting {what}"));
        }
        sched_yield();
    }
}

/// Start the counting loop on every other CPU (init's core handler there).
fn start_counters(test: &str) -> Result<usize, String> {
    let online = kinfo::word(ki::W_SMP_ONLINE);
    if online < 2 {
        return Err(format!("{online} CPU(s) online: this test needs an SMP machine"));
    }
    exo_rt::smp::set_core_handler(count_forever);
    for cpu in other_cpus() {
        crate::smp::give_cpu(cpu)?;
    }
    // Wait without system calls (bounded, 20 s of TSC): under `-icount`
    // the CPUs run in turns, and a CPU 0 that keeps taking the kernel
    // lock can keep an idle CPU's timer tick from entering init.
    let tsc_per_us = kinfo::word(ki::W_TSC_PER_US).max(1);
    let t0 = exo_rt::time::rdtsc();
    while other_cpus().iter().any(|&c| SPINS[c as usize].load(SeqCst) == 0) {
        if exo_rt::time::rdtsc() - t0 > 20_000_000 * tsc_per_us {
            return Err("CPU(s) never started counting (init's core handler did not run)".into());
        }
        core::hint::spin_loop();
    }
    println!("init: {test}: counting on CPU(s) {:?}", other_cpus());
    Ok(other_cpus().len())
}

pub fn kernel_upgrade_smp() -> Outcome {
    expect_build("A")?;
    let others = start_counters("kernel_upgrade_smp")?;
    upgrade_under_load("kernel_upgrade_smp", &["B", "A", "B"], &|k| {
        let parked = kinfo::word(ki::W_UPSMP_PARKED);
        if parked != others as u64 {
            return Err(format!("upgrade {} parked {parked} CPU(s), {others} run", k + 1));
        }
        counters_advance(&format!("after upgrade {}", k + 1))?;
        let spins: Vec<u64> = other_cpus().iter().map(|&c| SPINS[c as usize].load(SeqCst)).collect();
        println!("init: kernel_upgrade_smp: upgrade {}: every CPU counts on: {spins:?}", k + 1);
        Ok(())
    })?;
    println!(
        "init: kernel_upgrade_smp: A->B->A->B with {} CPU(s) online, every CPU back each time; {} TLB shootdowns to the counting CPU(s) meanwhile, {} TSC ticks spent in them",
        others + 1,
        kinfo::word(ki::W_SMP_SHOOTDOWNS),
        kinfo::word(ki::W_SMP_SHOOTDOWN_TSC)
    );
    Ok(())
}

/// `kernel_upgrade_smp4`: 4 CPUs, init counting on the three others with
/// a system call per count (each is parked from user mode, or from inside
/// the kernel while it waits for the lock) — A→B→A (no
/// database: the three loops keep the host busy enough), each time every
/// CPU parks and comes back counting; then a process runs.
pub fn kernel_upgrade_smp4() -> Outcome {
    expect_build("A")?;
    CALLING_CPUS.store(other_cpus().iter().fold(0, |m, c| m | 1 << c), SeqCst);
    let others = start_counters("kernel_upgrade_smp4")?;
    for (k, build) in ["B", "A"].iter().enumerate() {
        let r =
            upgrade::upgrade(&format!("kernel/{build}")).map_err(|e| format!("upgrade {} to {build}: {e}", k + 1))?;
        expect_build(build)?;
        let parked = kinfo::word(ki::W_UPSMP_PARKED);
        if parked != others as u64 {
            return Err(format!("upgrade {} parked {parked} CPU(s), {others} run", k + 1));
        }
        counters_advance(&format!("after upgrade {}", k + 1))?;
        println!(
            "init: kernel_upgrade_smp4: upgrade {} to build {build}: {parked} CPU(s) parked in {} TSC ticks, back online {} ticks after the new kernel's first instruction; jump to init's first instruction {}; every counter advances",
            k + 1,
            kinfo::word(ki::W_UPSMP_PARK_TSC),
            kinfo::word(ki::W_UPSMP_RELEASE_TSC),
            r.switch
        );
    }
    crate::basic::expect_exit("probe", "syscalls", 64, 0)?;
    counters_advance("after a process ran")?;
    println!("init: kernel_upgrade_smp4: A->B->A with {} CPU(s) online, every CPU back each time", others + 1);
    Ok(())
}

pub fn kernel_upgrade_smp_stuck() -> Outcome {
    expect_build("A")?;
    let others = start_counters("kernel_upgrade_smp_stuck")?;
    match upgrade::upgrade("kernel/B") {
        Err(Failure::Refused(Refusal::CpuDidNotPark)) => {}
        Err(e) => {
            return Err(format!(
                "kernel/B with a CPU ignoring the park request: {e}, expected refused: {}",
                Refusal::CpuDidNotPark
            ))
        }
        Ok(_) => return Err("kernel/B was accepted with a CPU that does not park".into()),
    }
    expect_build("A")?;
    if kinfo::word(ki::W_UPGRADE_DONE) != 0 || kinfo::word(ki::W_UPGRADE_REFUSED) != 1 {
        return Err("refused/done counters wrong".into());
    }
    counters_advance("after the refused upgrade")?;
    crate::basic::expect_exit("probe", "syscalls", 64, 0)?;
    counters_advance("after a process ran")?;
    println!(
        "init: kernel_upgrade_smp_stuck: kernel/B refused ({}) with {others} other CPU(s), one ignoring the request; the rest went back, every counter advances, A runs on",
        Refusal::CpuDidNotPark
    );
    Ok(())
}

pub fn kernel_upgrade_nosmp() -> Outcome {
    expect_build("A")?;
    let (online, parked) = (kinfo::word(ki::W_SMP_ONLINE), kinfo::word(ki::W_SMP_PARKED));
    if online != 1 || parked == 0 {
        return Err(format!("`nosmp`: {online} CPU(s) online, {parked} parked; expected 1 and at least 1"));
    }
    upgrade::upgrade("kernel/B").map_err(|e| format!("kernel/B with the APs parked: {e}"))?;
    expect_build("B")?;
    crate::basic::expect_exit("probe", "syscalls", 64, 0)?;
    println!("init: kernel_upgrade_nosmp: {parked} CPU(s) parked by `nosmp`, A->B, and a process ran under B");
    Ok(())
}
