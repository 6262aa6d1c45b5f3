//! The integration tests, run inside the machine: `test=<name>` on the
//! kernel command line. Each drives untrusted `probe` processes and checks
//! what they report *and* what init can verify itself (through the windows
//! it keeps on every child's memory and the kernel info page).

use crate::sched::{self, state_name, EXITED, RUNNABLE};
use crate::spawn::{self, mailbox, Child, Options};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{kinfo as ki, Rights, PAGE_SIZE};
use exo_rt::layout::{SCRATCH_VA, SHARED_VA};
use exo_rt::{kinfo, mem, println, sys};

type Outcome = Result<(), String>;

pub fn run(name: &str) -> Outcome {
    match name {
        "boot_to_init" => boot_to_init(),
        "nmi" => nmi(),
        "five_syscalls" => expect_exit("probe", "syscalls", 64, 0),
        "isolation" => isolation(),
        "share_region" => share_region(),
        "fault_upcall" => expect_exit("probe", "pager 40", 160, 0),
        "preemption" => preemption(),
        "userspace_alloc" => userspace_alloc(),
        "syscall_fuzz" => syscall_fuzz(),
        "syscall_matrix" => crate::adversarial::syscall_matrix(),
        "bad_elf" => bad_elf(),
        "tlb_alias" => crate::attacks::tlb_alias(),
        "ctlpage_hostile" => crate::attacks::ctlpage_hostile(),
        "dma_revoke" => crate::attacks::dma_revoke(),
        "microbench" => microbench(),
        "nvme_rw" => crate::devices::nvme_rw(),
        "sriov_pf" => crate::devices::sriov_pf(),
        "sriov_vf" => crate::sriov::sriov_vf(),
        "nvme_irq" => crate::devices::nvme_irq(),
        "irq_forged_handle_blocked" => crate::devices::irq_attack(false),
        "irq_compat_forged" => crate::devices::irq_attack(true),
        "nvme_bench" => crate::devices::nvme_bench(),
        "virtio_blk_rw" => crate::devices::virtio_blk_rw(),
        "dma_attack_blocked" => crate::devices::dma_attack_blocked(),
        "device_ownership" => crate::devices::device_ownership(),
        "nvme_persist_write" => crate::devices::nvme_persist(false),
        "nvme_persist_check" => crate::devices::nvme_persist(true),
        "pmem_persist_write" => crate::pmem::persist_write(),
        "pmem_persist_check" => crate::pmem::persist_check(),
        "block_service" => crate::devices::block_service(),
        "two_nvme" => crate::devices::two_nvme(),
        "acpi_bad_dmar" => crate::devices::acpi_bad_dmar(),
        "acpi_bad_mcfg" => crate::devices::acpi_bad_mcfg(),
        "libdb_nvme_create" => crate::db::libdb_nvme(false),
        "libdb_nvme_check" => crate::db::libdb_nvme(true),
        "libdb_pmem_create" => crate::db::libdb_pmem(false),
        "libdb_pmem_check" => crate::db::libdb_pmem(true),
        "libdb_vf_create" => crate::db::libdb_vf(false),
        "libdb_vf_check" => crate::db::libdb_vf(true),
        other => Err(format!("no test named {other:?}")),
    }
}

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

pub fn start(prog: &str, args: &str, spare: u64, words: &[u64]) -> Result<Child, String> {
    spawn::spawn_named(prog, &Options { args, words, spare_pages: spare, ..Options::default() })
}

/// Spawn without running: the caller finishes setting the child up, then
/// `sched::start`s it (a timer tick could otherwise run it too early).
fn start_paused(prog: &str, args: &str, spare: u64) -> Result<Child, String> {
    spawn::spawn_named(prog, &Options { args, spare_pages: spare, paused: true, ..Options::default() })
}

/// Wait for a child; its exit code, or an error naming how it ended.
pub fn finish(c: &Child, what: &str) -> Result<u64, String> {
    let st = sched::wait(c.slot);
    let s = sched::slot(c.slot);
    let code = s.code.load(SeqCst);
    if st == EXITED {
        Ok(code)
    } else {
        Err(format!("{what}: process {} (vector/code {code:#x}, address {:#x})", state_name(st), s.addr.load(SeqCst)))
    }
}

pub fn expect_exit(prog: &str, args: &str, spare: u64, want: u64) -> Outcome {
    let c = start(prog, args, spare, &[])?;
    let code = finish(&c, args)?;
    if code == want {
        Ok(())
    } else {
        Err(format!("{prog} {args:?} exited with {code}, expected {want}"))
    }
}

fn boot_to_init() -> Outcome {
    if kinfo::word(ki::W_MAGIC) != ki::MAGIC {
        return Err("kernel info page has the wrong magic".into());
    }
    if kinfo::word(ki::W_CPUS) == 0 {
        return Err("the kernel found no enabled CPU in the ACPI MADT".into());
    }
    ram_matches_the_machine()?;
    let (used, left) = crate::frames::stats();
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
            if !crate::frames::never_handed_out(pa) {
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
    let machine = kinfo::cmdline().split_whitespace().find_map(|w| w.strip_prefix("ram_mib=")).and_then(|m| m.parse::<u64>().ok());
    if let Some(mib) = machine {
        let ram = mib << 20;
        // The kernel image and stacks, the boot image, init's RAM-window
        // tables (1/512 of RAM), the first MiB and firmware's reservations.
        let overhead = 16 << 20;
        let expected = ram.saturating_sub(kinfo::word(ki::W_BOOT_IMAGE_LEN) + ram / 256 + overhead);
        if bytes < expected || bytes > ram {
            return Err(format!("init got {} MiB of RAM on a {mib} MiB machine (expected at least {} MiB)", bytes >> 20, expected >> 20));
        }
    }
    if checked < n {
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
fn nmi() -> Outcome {
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

fn isolation() -> Outcome {
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
        return Err(format!("attack-edge ended {} (code {}), expected a #GP in the attacker", state_name(st), sched::slot(edge.slot).code.load(SeqCst)));
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

/// Init's own shared regions: level-1 tables at INIT_REGIONS + k * 2 MiB.
const INIT_REGIONS: u64 = 40 << 39;
static NEXT_REGION: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// A fresh level-1 region in init with `pages` pages; returns its address.
pub fn make_region(pages: u64) -> Result<u64, String> {
    let k = NEXT_REGION.fetch_add(1, SeqCst);
    let va = INIT_REGIONS + k * (1 << 21);
    for i in 0..pages {
        spawn::place_page(va + i * PAGE_SIZE, Rights::WRITE, |_| {}).map_err(|e| format!("region: {e}"))?;
    }
    Ok(va)
}

fn start_linked(prog: &str, args: &str, region: u64, rights: Rights) -> Result<Child, String> {
    let c = start_paused(prog, args, 0)?;
    link(&c, region, rights)?;
    sched::start(c.slot);
    Ok(c)
}

/// Link init's level-1 region into a child at SHARED_VA.
pub fn link(c: &Child, region: u64, rights: Rights) -> Outcome {
    // The child's level-2 table for SHARED_VA, then the region link itself.
    spawn::ensure_tables(c.at(SHARED_VA) + (1 << 21)).map_err(|e| format!("link: {e}"))?;
    sys::map(region, 1, 0, c.at(SHARED_VA), rights).map_err(|e| format!("link: {}", e.name()))
}

fn share_region() -> Outcome {
    let region = make_region(4)?;
    let writer = start_linked("probe", "share-writer", region, Rights::WRITE)?;
    let reader = start_linked("probe", "share-reader", region, Rights::WRITE)?;
    let ro = start_linked("probe", "share-ro", region, Rights::NONE)?;
    for (c, what) in [(&writer, "writer"), (&reader, "reader")] {
        let code = finish(c, what)?;
        if code != 0 {
            return Err(format!("share {what} exited with {code}"));
        }
    }
    let code = finish(&ro, "read-only sharer")?;
    if code != 42 {
        return Err(format!("read-only sharer exited with {code}, expected a write fault (42)"));
    }
    // And init sees both processes' writes through its own link.
    if mem::read(region) != 0xa000_0000 || mem::read(region + PAGE_SIZE) != 0xb000_0000 {
        return Err("init does not see the processes' writes".into());
    }
    Ok(())
}

fn preemption() -> Outcome {
    let spinner = start("spin", "", 0, &[])?;
    let counter = start("probe", "count 2000000", 0, &[])?;
    let code = finish(&counter, "counter")?;
    let s = sched::slot(spinner.slot);
    let pre = s.preemptions.load(SeqCst);
    println!("init: counter finished while spin kept spinning; spin was preempted {pre} times");
    if s.state.load(SeqCst) != RUNNABLE || pre == 0 || code != 0 {
        return Err(format!("spin state {}, preemptions {pre}, counter exit {code}", state_name(s.state.load(SeqCst))));
    }
    sched::stop(spinner.slot);
    Ok(())
}

fn userspace_alloc() -> Outcome {
    expect_exit("probe", "alloc", 24, 0)?;
    let after = kinfo::word(ki::W_FRAMES_AFTER_BOOT);
    println!("init: kernel frames allocated after boot: {after}");
    if after != 0 {
        return Err(format!("the kernel allocated {after} frames after boot"));
    }
    Ok(())
}

fn syscall_fuzz() -> Outcome {
    crate::adversarial::syscall_fuzz()
}

fn bad_elf() -> Outcome {
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
fn microbench() -> Outcome {
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
    println!("microbench: calibration: {} ticks per 2000 instructions ({:.3} per instruction)", calib / N, calib as f64 / (N * 2000) as f64);
    let empty = best(&mut || {});
    let null = best(&mut || {
        let _ = sys::raw_number(99, 0, 0, 0, 0, 0);
    });
    println!("{}", OpLine { op: Op::NullSyscall, ticks: (null - empty) / N });
    // Map one 4 KiB page: move a frame from the RAM window to a scratch
    // slot and back (two maps per round).
    let f = crate::frames::alloc().ok_or("no frame")?;
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
    println!("microbench: {} syscalls, {} upcalls in total", kinfo::word(ki::W_SYSCALLS), kinfo::word(ki::W_UPCALLS));
    Ok(())
}
