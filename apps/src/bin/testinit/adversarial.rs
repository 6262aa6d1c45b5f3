//! The adversarial tests' init side: `syscall_fuzz` (the random fuzzer and
//! the structure-aware one, with canaries in other spaces) and
//! `syscall_matrix` (every call against every kind of entry).

use crate::basic::victim_intact;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{kinfo as ki, Rights, CHILD_PMEM_VA, DEVICE_HANDLES_VA, PAGE_SIZE};
use exo_rt::{kinfo, mem, println};
use initlib::sched::{self, state_name, EXITED};
use initlib::spawn::{self, finish, mailbox, start, Options};

type Outcome = Result<(), String>;

/// Canaries in init's own memory: a page of a region init links into
/// nobody, and a bare frame of its RAM window. Filled with a pattern
/// before the attackers run, checked after.
pub struct Canaries {
    pages: Vec<(u64, u64)>,
}

impl Canaries {
    pub fn place(salt: u64) -> Result<Canaries, String> {
        let region = initlib::regions::make_region(1)?;
        let frame = initlib::frames::alloc().ok_or("no frame for a canary")?;
        let pages = alloc::vec![(region, salt ^ 0xc0ca_0000_0000_0001), (frame, salt ^ 0xc0ca_0000_0000_0002)];
        for (va, seed) in &pages {
            for i in 0..512 {
                mem::write(va + i * 8, seed.wrapping_mul(i + 1));
            }
        }
        Ok(Canaries { pages })
    }

    pub fn check(&self, what: &str) -> Outcome {
        for (va, seed) in &self.pages {
            for i in 0..512 {
                let got = mem::read(va + i * 8);
                if got != seed.wrapping_mul(i + 1) {
                    return Err(format!("{what}: init's canary page at {va:#x} changed at word {i}: {got:#x}"));
                }
            }
        }
        Ok(())
    }
}

/// Structure-aware calls that must be made in one boot.
const SFUZZ_CALLS: u64 = 1_000_000;
/// Calls per structure-aware fuzzer process (each builds its structures
/// from the spare frames it is given; tables are never reclaimed).
const SFUZZ_PER_PROCESS: u64 = 125_000;
const SFUZZ_SPARES: u64 = 384;
/// The random fuzzer's share (arguments only, as before).
const RANDOM_CALLS: u64 = 100_000;

pub fn syscall_fuzz() -> Outcome {
    let canaries = Canaries::place(0x5eed)?;
    let checker = start("probe", "checker", 8, &[])?;
    let mb = mailbox(&checker);
    while mem::read(mb + 8) == 0 {
        sched::sched_yield();
    }
    let t0 = kinfo::word(ki::W_TICKS);
    // Random arguments until RANDOM_CALLS were made; a fuzzer that
    // destroys itself (allowed) is replaced by one with a new seed.
    let (mut total, mut rounds, mut killed) = (0u64, 0u64, 0u64);
    while total < RANDOM_CALLS && rounds < 8 {
        let fuzzer = start("probe", &format!("fuzz {:x} {rounds}", RANDOM_CALLS - total), 64, &[])?;
        let st = sched::wait(fuzzer.slot);
        let made = mem::read(mailbox(&fuzzer) + 16);
        total += made;
        rounds += 1;
        if st != EXITED {
            killed += 1;
            let s = sched::slot(fuzzer.slot);
            println!(
                "init: fuzzer {rounds} ended {} after {made} calls (code {:#x} at {:#x}); the kernel is fine",
                state_name(st),
                s.code.load(SeqCst),
                s.addr.load(SeqCst)
            );
        }
    }
    let t1 = kinfo::word(ki::W_TICKS);
    println!("init: syscall_fuzz: {total} random system calls by {rounds} fuzzer processes ({killed} destroyed themselves) in {} ticks", t1 - t0);
    if total < RANDOM_CALLS {
        return Err(format!("only {total} random fuzz calls were made"));
    }
    canaries.check("after the random fuzzer")?;
    victim_intact(&checker)?;

    // Structure-aware: each process first builds the directed alias
    // structures (the regression set), then fuzzes from its own seed.
    // `sfuzz=random` on the command line: skip the directed structures
    // (to see what the random structures find on their own).
    let random_only = kinfo::cmdline().split_whitespace().any(|w| w == "sfuzz=random");
    let (mut stotal, mut procs) = (0u64, 0u64);
    let mut failures: Vec<String> = Vec::new();
    while stotal < SFUZZ_CALLS && procs < 12 {
        let seed = procs + 1;
        let opts = Options {
            args: &format!("sfuzz {SFUZZ_PER_PROCESS:x} {seed}{}", if random_only { " noscen" } else { "" }),
            words: &[],
            heap_pages: 32,
            spare_pages: SFUZZ_SPARES,
            paused: false,
        };
        let f = spawn::spawn_named("probe", &opts)?;
        let st = sched::wait(f.slot);
        let made = mem::read(mailbox(&f) + 16);
        stotal += made;
        procs += 1;
        let code = sched::slot(f.slot).code.load(SeqCst);
        if st != EXITED || code != 0 {
            failures.push(format!("sfuzz seed {seed} ended {} with code {code:#x} after {made} calls", state_name(st)));
            println!("init: {}", failures.last().map(String::as_str).unwrap_or(""));
        }
        canaries.check(&format!("after sfuzz seed {seed}"))?;
        victim_intact(&checker)?;
    }
    let t2 = kinfo::word(ki::W_TICKS);
    println!(
        "init: syscall_fuzz: {stotal} structure-aware system calls by {procs} fuzzer processes in {} ticks; {} calls in total; {} syscalls handled by the kernel",
        t2 - t1,
        total + stotal,
        kinfo::word(ki::W_SYSCALLS)
    );
    if !failures.is_empty() {
        return Err(format!("{} structure-aware fuzzers found something: {}", failures.len(), failures.join("; ")));
    }
    if stotal < SFUZZ_CALLS {
        return Err(format!("only {stotal} structure-aware fuzz calls were made"));
    }
    canaries.check("after the fuzzers")?;
    victim_intact(&checker)?;
    mem::write(mb, 1);
    let code = finish(&checker, "checker")?;
    if code != 0 {
        return Err("checker found its memory changed".into());
    }
    Ok(())
}

/// Where the matrix probe expects what init gives it (probe's matrix.rs).
const SHARED_RW_VA: u64 = 0x60_0000_0000;
const SHARED_RO_VA: u64 = 0x60_0020_0000;
const DEVREG_VA: u64 = 0x40_0000_0000;
const SHARED_PAGES: u64 = 16;
const PMEM_PAGES: u64 = 16;

fn pattern(i: u64, w: u64) -> u64 {
    0x5a5a_0000_0000_0000 ^ (i << 20) ^ w.wrapping_mul(0x9e37_79b9)
}

/// `probe matrix`: every call against every kind of entry (see the
/// probe's matrix.rs). Init gives it pages shared writable with GRANT and
/// read-only without, a region linked WRITE-only, persistent-memory pages,
/// a device handle (OWN|GRANT and GRANT only) and a device-register page
/// of a device nobody drives in this test; canaries in init and in another
/// process are checked afterwards, and so are the pages init shared.
pub fn syscall_matrix() -> Outcome {
    let canaries = Canaries::place(0x3a7)?;
    let checker = start("probe", "checker", 8, &[])?;
    let mb = mailbox(&checker);
    while mem::read(mb + 8) == 0 {
        sched::sched_yield();
    }
    let pmem_pages = if initlib::pmem::total() >= PMEM_PAGES * PAGE_SIZE { PMEM_PAGES } else { 0 };
    // A device nobody uses in this test: the last with a handle and a BAR
    // (on the standard machine the virtio-blk or the NVMe).
    let dev = initlib::devices::all().into_iter().rev().find(|d| d.handle_va != 0 && d.bars[0].0 != 0);
    let words = [pmem_pages, dev.is_some() as u64, dev.is_some() as u64];
    let opts = Options { args: "matrix", words: &words, heap_pages: 32, spare_pages: 1024, paused: true };
    let c = spawn::spawn_named("probe", &opts)?;
    let sys_err = |what: &str, e: exo_abi::Error| format!("{what}: {}", e.name());
    let mut shared = Vec::new();
    for (base, rights) in [(SHARED_RW_VA, Rights::WRITE | Rights::GRANT), (SHARED_RO_VA, Rights::NONE)] {
        for i in 0..SHARED_PAGES {
            let f = initlib::frames::alloc().ok_or("no frame to share")?;
            for w in 0..512 {
                mem::write(f + w * 8, pattern(i + base, w));
            }
            spawn::ensure_tables(c.at(base + i * PAGE_SIZE)).map_err(|e| format!("tables: {e}"))?;
            exo_rt::sys::map(f, 0, 0, c.at(base + i * PAGE_SIZE), rights).map_err(|e| sys_err("share", e))?;
            shared.push((f, i + base));
        }
    }
    let region = initlib::regions::make_region(4)?;
    initlib::regions::link(&c, region, Rights::WRITE)?;
    if pmem_pages > 0 {
        initlib::pmem::grant(&c, CHILD_PMEM_VA, 0, pmem_pages * PAGE_SIZE)?;
    }
    if let Some(d) = &dev {
        println!(
            "init: syscall_matrix: device {:04x} ({:04x}:{:04x}) lends its handle and a register page",
            d.bdf, d.vendor, d.device
        );
        spawn::ensure_tables(c.at(DEVICE_HANDLES_VA)).map_err(|e| format!("tables: {e}"))?;
        exo_rt::sys::map(d.handle_va, 0, 0, c.at(DEVICE_HANDLES_VA), Rights::OWN | Rights::GRANT)
            .map_err(|e| sys_err("device handle", e))?;
        exo_rt::sys::map(d.handle_va, 0, 0, c.at(DEVICE_HANDLES_VA + PAGE_SIZE), Rights::GRANT)
            .map_err(|e| sys_err("device handle copy", e))?;
        spawn::ensure_tables(c.at(DEVREG_VA)).map_err(|e| format!("tables: {e}"))?;
        exo_rt::sys::map(d.bars[0].0, 0, 0, c.at(DEVREG_VA), Rights::OWN | Rights::WRITE | Rights::GRANT)
            .map_err(|e| sys_err("device register page", e))?;
    } else {
        println!("init: syscall_matrix: no device with a handle: the device rows are skipped");
    }
    sched::start(c.slot);
    let code = finish(&c, "matrix")?;
    canaries.check("after the matrix")?;
    victim_intact(&checker)?;
    for (f, i) in &shared {
        for w in 0..512 {
            if mem::read(f + w * 8) != pattern(*i, w) {
                return Err(format!("a page init shared with the matrix probe changed (page {i:#x}, word {w})"));
            }
        }
    }
    mem::write(mb, 1);
    if finish(&checker, "checker")? != 0 {
        return Err("checker found its memory changed".into());
    }
    if code != 0 {
        return Err(format!("matrix probe exited with {code}: some cells differ from docs/syscalls.md (see above)"));
    }
    Ok(())
}
