//! The basic scenarios (boot, the five calls, isolation, sharing, faults,
//! preemption, allocation, malformed programs, the microbenchmark), run
//! inside the machine: `test=<name>` on the kernel command line. Each drives untrusted `probe` processes and checks
//! what they report *and* what init can verify itself (through the windows
//! it keeps on every child's memory and the kernel info page).

use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{kinfo as ki, Rights, PAGE_SIZE};
use exo_rt::layout::SCRATCH_VA;
use exo_rt::{kinfo, mem, println, sys};
use initlib::regions::{make_region, start_linked};
use initlib::sched::{self, state_name, RUNNABLE};
use initlib::spawn::{self, finish, mailbox, start, start_paused, Child, Options};

type Outcome = Result<(), String>;

/// The run's nonce: `nonce=<hex>` from the command line (xtask gives both
/// boots of a two-boot test the same one).
pub fn nonce() -> Result<u64, String> {
    kinfo::cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("nonce="))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .filter(|n| *n != 0)
        .ok_or_else(|| "no nonce=<hex> on the command line (the xtask test passes one to both boots)".into())
}

/// The command line's nonce, or one from the time stamp counter for a
/// one-boot test (random instants, say), printed so a run can be repeated.
pub fn nonce_or_clock() -> u64 {
    let n = nonce().unwrap_or_else(|_| exo_rt::time::rdtsc() | 1);
    exo_rt::println!("init: nonce {n:#x} (nonce={n:x} on the command line repeats this run)");
    n
}

pub use initlib::spawn::expect_exit;

pub fn boot_to_init() -> Outcome {
    if kinfo::word(ki::W_MAGIC) != ki::MAGIC {
        return Err("kernel info page has the wrong magic".into());
    }
    if kinfo::word(ki::W_CPUS) == 0 {
        return Err("the kernel found no enabled CPU in the ACPI MADT".into());
    }
    ram_matches_the_machine()?;
    let (used, left) = initlib::frames::stats();
    println!("init: {used} frames used, {left} free; {} syscalls so far", kinfo::word(ki::W_SYSCALLS));
    expect_exit("hello", "boot_to_init", 0, 0)
}

/// The RAM the kernel handed over: the ranges in the kernel info page add
/// up to the bytes it reports, are page aligned and disjoint, and the
/// first and last page of every range that init's allocator has not
/// handed out yet is really there (written and read back through init's
/// RAM window, then restored). With `ram_mib=<N>` on the command line (the xtask
/// passes the machine's RAM size), init must have received all of it but
/// the kernel, the boot image, page tables and firmware's share.
fn ram_matches_the_machine() -> Outcome {
    let n = kinfo::word(ki::W_RAM_RANGES) as usize;
    if n == 0 || n > ki::MAX_RAM_RANGES {
        return Err(format!("kernel info page lists {n} RAM ranges"));
    }
    let (mut sum, mut last_end, mut top, mut checked) = (0u64, 0u64, 0u64, 0);
    for i in 0..n {
        let start = kinfo::word(ki::W_RAM_RANGE0 + 2 * i);
        let len = kinfo::word(ki::W_RAM_RANGE0 + 2 * i + 1);
        if !start.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) || len == 0 || start < last_end {
            return Err(format!("RAM range {i} ({start:#x}, {len:#x} bytes) unaligned, empty or out of order"));
        }
        for pa in [start, start + len - PAGE_SIZE] {
            if !initlib::frames::never_handed_out(pa) {
                continue;
            }
            checked += 1;
            for off in [0, PAGE_SIZE - 8] {
                let va = exo_abi::RAM_WINDOW_VA + pa + off;
                let old = mem::read(va);
                let pattern = 0x7e57_0000_0000_0000 ^ pa ^ off;
                mem::write(va, pattern);
                let got = mem::read(va);
                mem::write(va, old);
                if got != pattern {
                    return Err(format!("RAM at {:#x} does not keep what init wrote", pa + off));
                }
            }
        }
        sum += len;
        last_end = start + len;
        top = top.max(last_end);
    }
    let bytes = kinfo::word(ki::W_RAM_BYTES);
    if sum != bytes {
        return Err(format!("RAM ranges add up to {sum} bytes, the kernel reports {bytes}"));
    }
    let machine = kinfo::cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ram_mib="))
        .and_then(|m| m.parse::<u64>().ok());
    if let Some(mib) = machine {
        let ram = mib << 20;
        // The kernel image and stacks, the boot image, init's RAM-window
        // tables (1/512 of RAM), the first MiB and firmware's reservations.
        let overhead = 16 << 20;
        let expected = ram.saturating_sub(kinfo::word(ki::W_BOOT_IMAGE_LEN) + ram / 256 + overhead);
        if bytes < expected || bytes > ram {
            return Err(format!(
                "init got {} MiB of RAM on a {mib} MiB machine (expected at least {} MiB)",
                bytes >> 20,
                expected >> 20
            ));
        }
    }
    // Under GRUB a small range (the few pages between the kernel and the
    // boot image) is the first init's allocator takes and can be handed out
    // whole before this runs; under QEMU's -kernel every range is checked.
    let under_grub = kinfo::word(ki::W_BOOT_LOADER) != ki::BOOT_PVH;
    if checked == 0 || (checked < n && !under_grub) {
        return Err(format!("only {checked} pages of {n} RAM ranges could be checked"));
    }
    println!("init: {} MiB of RAM in {n} range(s), highest address {top:#x}; {checked} first/last pages written and read back", bytes >> 20);
    Ok(())
}

/// NMIs (the xtask injects them through QMP while this runs) arrive on
/// their own IST stack, are counted by the kernel and returned from: they
/// kill neither the kernel nor the process they interrupt. Init alternates
/// a syscall-heavy loop (NMIs landing in the kernel) with computing in
/// ring 3 (NMIs landing in a process), checks its own computation, and a
/// child must still run and exit cleanly afterwards.
pub fn nmi() -> Outcome {
    let want = 10;
    let tsc_per_us = kinfo::word(ki::W_TSC_PER_US).max(1);
    let deadline = exo_rt::time::rdtsc() + 40_000_000 * tsc_per_us;
    let count = || (kinfo::word(ki::W_NMI_KERNEL), kinfo::word(ki::W_NMI_USER));
    let (mut calls, mut acc, mut expect) = (0u64, 0u64, 0u64);
    // The xtask starts injecting when it sees this line.
    println!("init: NMIs welcome");
    // Until both rings have seen NMIs (where one lands is up to timing).
    while count().0 + count().1 < want || count().0 == 0 || count().1 == 0 {
        if exo_rt::time::rdtsc() > deadline {
            let (k, u) = count();
            return Err(format!(
                "{k} NMIs in the kernel and {u} in init after 40 s: want {want}, some in each (the xtask test injects them through QMP)"
            ));
        }
        // A call that fails its checks: a trip through the kernel.
        for _ in 0..5000 {
            if sys::unmap(0, exo_abi::USER_END, 0).is_ok() {
                return Err("unmap of a kernel address succeeded".into());
            }
        }
        calls += 5000;
        // Registers and memory in ring 3 must survive NMIs.
        for i in 0..50_000u64 {
            acc = core::hint::black_box(acc.wrapping_mul(31).wrapping_add(i));
        }
        for i in 0..50_000u64 {
            expect = expect.wrapping_mul(31).wrapping_add(i);
        }
        if acc != expect {
            return Err(format!("a computation in ring 3 came out wrong ({acc:#x} vs {expect:#x})"));
        }
    }
    let (k, u) = count();
    println!("init: {k} NMIs taken in the kernel, {u} in init, {calls} syscalls meanwhile");
    expect_exit("hello", "nmi", 0, 0)
}

const PATTERN: u64 = 0x5ec2_e7da_7a00_0000;

pub fn victim_intact(v: &Child) -> Outcome {
    for i in 0..512 {
        let got = mem::read(v.at(SCRATCH_VA) + i * 8);
        if got != PATTERN + i {
            return Err(format!("victim's private page changed at word {i}: {got:#x}"));
        }
    }
    Ok(())
}

pub fn isolation() -> Outcome {
    let victim = start("probe", "victim", 8, &[])?;
    let mb = mailbox(&victim);
    while mem::read(mb + 8) == 0 {
        sched::sched_yield();
        if sched::slot(victim.slot).state.load(SeqCst) != RUNNABLE {
            return Err("victim died before it was ready".into());
        }
    }
    victim_intact(&victim)?;
    // Faulting attempts: each attacker must take a fault upcall.
    for (args, what) in [
        (format!("attack-read {:x}", SCRATCH_VA), "read another process's private page"),
        (format!("attack-write {:x}", SCRATCH_VA), "write another process's private page"),
        (String::from("attack-read ffff800000100000"), "read kernel memory"),
        (String::from("attack-write ffffffff80100000"), "write the kernel image"),
    ] {
        let code = finish(&start("probe", &args, 0, &[])?, what)?;
        if code != 42 {
            return Err(format!("{what}: attacker exited with {code}, expected a fault (42)"));
        }
        println!("init: isolation: {what}: refused by a fault");
    }
    // A `syscall` in the last two bytes of the user half returns to a
    // non-canonical address: the attacker must take a #GP, the kernel live.
    let edge = start("probe", "attack-edge", 8, &[])?;
    let st = sched::wait(edge.slot);
    if st != sched::PANICKED {
        return Err(format!(
            "attack-edge ended {} (code {}), expected a #GP in the attacker",
            state_name(st),
            sched::slot(edge.slot).code.load(SeqCst)
        ));
    }
    println!("init: isolation: syscall at the top of the user half: the attacker took a #GP");
    // No I/O ports without a grant (no IOPL, an empty I/O bitmap).
    let port = start("probe", "attack-port", 0, &[])?;
    let st = sched::wait(port.slot);
    if st != sched::PANICKED {
        return Err(format!("attack-port ended {}: port I/O was not refused", state_name(st)));
    }
    println!("init: isolation: port I/O from a child: refused with #GP");
    // Read-only region for the system-call attempts.
    let region = make_region(4)?;
    let attacker = start_linked("probe", "attack-calls", region, Rights::NONE)?;
    let code = finish(&attacker, "attack-calls")?;
    if code != 0 {
        return Err(format!("attack-calls: {code} checks were not refused"));
    }
    victim_intact(&victim)?;
    mem::write(mb, 1);
    let code = finish(&victim, "victim")?;
    if code != 0 {
        return Err("victim found its page changed".into());
    }
    Ok(())
}

pub use initlib::showcase::share_a_region as share_region;

pub use initlib::showcase::preempt_a_spinner as preemption;

pub fn userspace_alloc() -> Outcome {
    expect_exit("probe", "alloc", 24, 0)?;
    let after = kinfo::word(ki::W_FRAMES_AFTER_BOOT);
    println!("init: kernel frames allocated after boot: {after}");
    if after != 0 {
        return Err(format!("the kernel allocated {after} frames after boot"));
    }
    Ok(())
}

pub fn bad_elf() -> Outcome {
    let image = exo_loader::bootimage::BootImage::parse(exo_rt::boot_image()).map_err(|e| format!("{e}"))?;
    let mut refused = 0;
    for entry in image.entries() {
        if !entry.name.starts_with("bad_elf/") {
            continue;
        }
        match spawn::spawn_image(entry.data, &Options::default()) {
            Ok(_) => return Err(format!("{} was accepted", entry.name)),
            Err(e) => {
                println!("init: refused {}: {e}", entry.name);
                refused += 1;
            }
        }
    }
    if refused == 0 {
        return Err("the boot image holds no malformed programs to try".into());
    }
    println!("init: refused {refused} malformed programs; still running");
    expect_exit("hello", "after bad ELFs", 0, 0)
}

/// Kernel-crossing costs in TSC ticks; run under `-icount shift=0` (the
/// `microbench` scheme of `cargo xtask`), where ticks are guest
/// instructions — the calibration line shows the ratio.
pub fn microbench() -> Outcome {
    use eval_lines::microbench::{Op, OpLine, TscLine};
    use exo_rt::time::{rdtsc, spin_instructions};
    const N: u64 = 2000;
    let best = |f: &mut dyn FnMut()| -> u64 {
        let mut best = u64::MAX;
        for _ in 0..5 {
            let t0 = rdtsc();
            for _ in 0..N {
                f();
            }
            best = best.min(rdtsc() - t0);
        }
        best
    };
    println!("{}", TscLine(kinfo::word(ki::W_TSC_PER_US)));
    let calib = best(&mut || spin_instructions(1000));
    println!(
        "microbench: calibration: {} ticks per 2000 instructions ({:.3} per instruction)",
        calib / N,
        calib as f64 / (N * 2000) as f64
    );
    let empty = best(&mut || {});
    let null = best(&mut || {
        let _ = sys::raw_number(99, 0, 0, 0, 0, 0);
    });
    println!("{}", OpLine { op: Op::NullSyscall, ticks: (null - empty) / N });
    // Map one 4 KiB page: move a frame from the RAM window to a scratch
    // slot and back (two maps per round).
    let f = initlib::frames::alloc().ok_or("no frame")?;
    let va = make_region(1)? + PAGE_SIZE;
    let mut failed = false;
    let map2 = best(&mut || {
        failed |= sys::map(f, 0, 0, va, Rights::WRITE | Rights::OWN | Rights::GRANT).is_err();
        failed |= sys::map(va, 0, 0, f, Rights::WRITE | Rights::OWN | Rights::GRANT).is_err();
    });
    if failed {
        return Err("map in microbench failed".into());
    }
    println!("{}", OpLine { op: Op::MapPage, ticks: (map2 - empty) / (2 * N) });
    // Null yield round trip: init main -> child -> init (the child yields
    // straight back; init's scheduler finds nothing else runnable and
    // resumes main).
    let child = start_paused("probe", "yieldloop", 0)?;
    let h = child.handle;
    sys::yield_to(h, 0).map_err(|e| format!("first yield: {}", e.name()))?;
    let rt = best(&mut || {
        let _ = sys::yield_to(h, 0);
    });
    println!("{}", OpLine { op: Op::YieldRoundtrip, ticks: (rt - empty) / N });
    // Map and unmap one page: share the frame at a scratch slot, unmap the
    // share (Linux's counterpart: mmap + munmap of one page).
    let share = make_region(1)? + PAGE_SIZE;
    let map_unmap = best(&mut || {
        failed |= sys::map(f, 0, 0, share, Rights::WRITE).is_err();
        failed |= sys::unmap(0, share, 0).is_err();
    });
    if failed {
        return Err("map+unmap in microbench failed".into());
    }
    println!("{}", OpLine { op: Op::MapUnmapPage, ticks: (map_unmap - empty) / N });
    // The two below take over init's upcalls for the measured loops (the
    // scheduler is put back right after): a yield back from the child, or
    // a fault on the page being measured, resumes init main at once.
    let direct = direct_upcalls(child.id, share, f, || {
        best(&mut || {
            let _ = sys::yield_to(h, 0);
        })
    });
    println!("{}", OpLine { op: Op::DirectYieldRoundtrip, ticks: (direct - empty) / N });
    // Page fault upcall: unmap the page, touch it; the pager shares the
    // frame back in and resumes the faulting load.
    if sys::map(f, 0, 0, share, Rights::WRITE).is_err() {
        return Err("sharing the fault microbench's page failed".into());
    }
    let faults_before = FAULTS_SEEN.load(SeqCst);
    let fault = direct_upcalls(child.id, share, f, || {
        best(&mut || {
            failed |= sys::unmap(0, share, 0).is_err();
            core::hint::black_box(mem::read(share));
        })
    });
    let faults = FAULTS_SEEN.load(SeqCst) - faults_before;
    if failed || faults < 5 * N {
        return Err(format!("fault upcall microbench: {faults} faults handled for {} touches", 5 * N));
    }
    println!("{}", OpLine { op: Op::FaultUpcall, ticks: (fault - empty) / N });
    println!("microbench: {} syscalls, {} upcalls in total", kinfo::word(ki::W_SYSCALLS), kinfo::word(ki::W_UPCALLS));
    Ok(())
}

/// Three `probe`s hold distinct patterns in every vector register (YMM
/// where the CPU has AVX) while the root scheduler preempts them against
/// each other: each checks that no value was lost across its preemptions
/// and that no upcall entry found another's values (see the probe's
/// `vector` mode). Two more compute with compiled f64 and SSE2 code
/// alongside them and must get exact sums (the `vecmath` mode). Init
/// checks that each was preempted.
pub fn vector_state() -> Outcome {
    let modes = ["vector 1", "vector 2", "vector 3", "vecmath 4", "vecmath 5"];
    let probes: alloc::vec::Vec<Child> = modes.iter().map(|m| start("probe", m, 0, &[])).collect::<Result<_, _>>()?;
    for (m, c) in modes.iter().zip(&probes) {
        let code = finish(c, "vector probe")?;
        let pre = sched::slot(c.slot).preemptions.load(SeqCst);
        println!("init: probe {m} exited {code} after {pre} preemptions");
        if code != 0 {
            return Err(format!("probe {m} exited with {code}"));
        }
        if pre == 0 {
            return Err(format!("probe {m} was never preempted"));
        }
    }
    Ok(())
}

/// The runtime's `memcpy`/`memmove`/`memset`/`memcmp` (`exo_rt::libc_mem`,
/// short cases in SSE2 since branch `pmemsmp`) at every length 0..=300 and
/// misaligned offsets, against what C specifies (the probe's `memfns` mode).
pub fn pmemsmp_memfns() -> Outcome {
    let c = start("probe", "memfns", 0, &[])?;
    match finish(&c, "memfns probe")? {
        0 => Ok(()),
        code => Err(format!("probe memfns exited with {code}")),
    }
}

/// The child whose yields [`direct_upcall`] returns from at once, the page
/// whose faults it resolves and the frame it maps there.
static DIRECT_PEER: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static FAULT_PAGE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static FAULT_FRAME: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static FAULTS_SEEN: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Runs `f` with [`direct_upcall`] as init's upcall handler, then puts
/// init's scheduler back.
fn direct_upcalls(peer: u64, page: u64, frame: u64, f: impl FnOnce() -> u64) -> u64 {
    DIRECT_PEER.store(peer, SeqCst);
    FAULT_PAGE.store(page, SeqCst);
    FAULT_FRAME.store(frame, SeqCst);
    exo_rt::set_upcall_handler(direct_upcall);
    let r = f();
    exo_rt::set_upcall_handler(sched::on_upcall);
    r
}

/// An upcall handler with no scheduler: the peer's yield back and the
/// timer resume init main where it was; a fault on the measured page is
/// paged in (the frame shared back) and the load retried; anything else
/// goes to init's scheduler.
fn direct_upcall(reason: exo_abi::Reason, a: u64, b: u64, c: u64) -> ! {
    use exo_abi::Reason;
    match reason {
        Reason::Yield if c == DIRECT_PEER.load(SeqCst) => exo_rt::resume(),
        Reason::PageFault if a & !(PAGE_SIZE - 1) == FAULT_PAGE.load(SeqCst) => {
            if sys::map(FAULT_FRAME.load(SeqCst), 0, 0, FAULT_PAGE.load(SeqCst), Rights::WRITE).is_ok() {
                FAULTS_SEEN.fetch_add(1, SeqCst);
                exo_rt::resume()
            }
            sched::on_upcall(reason, a, b, c)
        }
        _ => sched::on_upcall(reason, a, b, c),
    }
}
