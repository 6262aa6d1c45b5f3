//! readrandom on one reader per core (issue #13): init gives the pages of
//! one database on the NVDIMM to a `kvdb` reader process per CPU.
//!
//! 1. [`load`]: `kvdb pmem rrload <keys>` on the database's NVDIMM range
//!    (moved into it, taken back after it exits: the kvdb range of
//!    `pmem.rs`).
//! 2. [`run`]: one `kvdb pmem readrandom` per CPU of `cpus`, each pinned to
//!    its CPU (`spawn::spawn_on`) and each given a **read-only share** of
//!    the same pages (init keeps them; `map` without OWN and without
//!    WRITE); each opens the database read-only with its own page cache,
//!    warms up and reports ready; init then says go to all of them at
//!    once (mailbox word [`mailbox::GO`]); each runs its gets and writes
//!    its counts to its mailbox; init checks every reader exited 0 and
//!    ran only on its CPU, and returns the `EXO-READER` lines and the
//!    run's `EXO-READSCALE` line.
//!
//! The read-only shares stay in the exited readers' spaces, which never
//! run again (as the block service's region stays linked in an exited
//! kvdb): removing them is one `unmap` per page, and on two CPUs each
//! `unmap` is a TLB shootdown waiting for CPU 1 — 4,096 of them per
//! reader took over 100 s on the loaded 2-core host. (`unmap` of the 2 MiB
//! tables instead is refused: init owns them, `Owned`.)
//!
//! Why processes and not one space with an activation per CPU: libdb
//! without `std` is single-threaded (its state sits in a `RefCell`, its
//! page cache is mutated by every get), so two activations sharing one
//! `Db` would need a lock around every get — the very serialisation a
//! scaling benchmark must not have. A reader per core shares nothing
//! writable: the medium is read-only to both and each has its own cache.

use crate::kvdb::{self, KVDB_HEAP_PAGES, PMEM_BYTES, PMEM_OFFSET};
use crate::sched::{self, RUNNABLE};
use crate::spawn::{self, Child, Options};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::SeqCst;
use eval_lines::readscale::{ReadScaleLine, ReaderLine};
use exo_abi::{kinfo as ki, Rights, CHILD_PMEM_VA, PAGE_SIZE, PMEM_VA};
use exo_rt::{kinfo, mem, println, sys};

/// The words of a reader's mailbox page (`kvdb pmem readrandom`,
/// `readrandom.rs`): the one definition, read by init and written by kvdb.
pub mod mailbox {
    /// Init → reader: start the measured loop (non-zero).
    pub const GO: u64 = 0;
    /// Reader → init: opened, warmed up, waiting for [`GO`].
    pub const READY: u64 = 8;
    /// Gets made and checked in the loop.
    pub const OPS: u64 = 16;
    /// TSC at the loop's start and end.
    pub const START_TSC: u64 = 24;
    pub const END_TSC: u64 = 32;
    /// The reader's system calls, upcalls and faults over the loop.
    pub const SYSCALLS: u64 = 40;
    pub const UPCALLS: u64 = 48;
    pub const FAULTS: u64 = 56;
    /// libdb's reads of the medium over the loop (page-cache misses).
    pub const STORAGE_READS: u64 = 64;
}

/// Seconds init waits for the readers to get ready, and then to finish.
const READY_SECS: u64 = 120;
const RUN_SECS: u64 = 600;

/// A run's results.
pub struct Run {
    pub readers: Vec<ReaderLine>,
    pub total: ReadScaleLine,
}

/// Build the database the readers read: `keys` keys on the kvdb range of
/// the NVDIMM.
pub fn load(keys: u64, nonce: u64) -> Result<(), String> {
    println!("init: readrandom: kvdb pmem rrload {keys} on NVDIMM bytes {PMEM_OFFSET:#x}+{PMEM_BYTES:#x}");
    kvdb::run_pmem(&format!("rrload {keys}"), PMEM_BYTES, nonce, 0)
}

/// Share the database's pages read-only at `CHILD_PMEM_VA` of `c`.
fn share_read_only(c: &Child) -> Result<(), String> {
    let mut off = 0;
    while off < PMEM_BYTES {
        let dst = c.at(CHILD_PMEM_VA + off);
        if off == 0 || dst.is_multiple_of(1 << 21) {
            spawn::ensure_tables(dst).map_err(|e| format!("tables at reader {:#x}: {e}", CHILD_PMEM_VA + off))?;
        }
        sys::map(PMEM_VA + PMEM_OFFSET + off, 0, 0, dst, Rights::NONE)
            .map_err(|e| format!("sharing pmem page {:#x} read-only: {}", PMEM_OFFSET + off, e.name()))?;
        off += PAGE_SIZE;
    }
    Ok(())
}

fn tsc_per_us() -> u64 {
    kinfo::word(ki::W_TSC_PER_US).max(1)
}

/// Yield until `done` or `secs` have passed; a reader that stopped running
/// is an error naming it and its exit code.
fn wait_for(readers: &[(u64, Child)], what: &str, secs: u64, done: &dyn Fn(&Child) -> bool) -> Result<(), String> {
    let t0 = exo_rt::time::rdtsc();
    loop {
        let mut all = true;
        for (cpu, c) in readers {
            if done(c) {
                continue;
            }
            all = false;
            let s = sched::slot(c.slot);
            let st = s.state.load(SeqCst);
            if st != RUNNABLE {
                let code = s.code.load(SeqCst);
                return Err(format!(
                    "the reader on CPU {cpu} ended ({}, code {code}: {}) before {what}",
                    sched::state_name(st),
                    kvdb::meaning(code)
                ));
            }
        }
        if all {
            return Ok(());
        }
        if exo_rt::time::rdtsc() - t0 > secs * 1_000_000 * tsc_per_us() {
            return Err(format!("timed out after {secs} s waiting for {what}"));
        }
        sched::sched_yield();
    }
}

/// Readers spawned and given the database, paused: [`prepare`] them
/// before init's scheduler runs anything on the other CPUs, then [`run`].
pub struct Readers {
    keys: u64,
    readers: Vec<(u64, Child)>,
}

/// One reader per CPU of `cpus`, `ops` gets each over `keys` keys of the
/// database [`load`] made with `nonce`, spawned paused. Spawning moves
/// thousands of pages (kvdb's image and heap), and once another CPU has
/// run a space every move waits for a TLB shootdown there: so spawn every
/// reader first, then `sched::give_core`. Sharing the database's pages
/// only adds translations (no shootdown).
pub fn prepare(keys: u64, ops: u64, cpus: &[u64], nonce: u64) -> Result<Readers, String> {
    let n = cpus.len() as u64;
    let words = [CHILD_PMEM_VA, PMEM_BYTES, tsc_per_us(), nonce];
    let mut readers = Vec::new();
    for (r, &cpu) in cpus.iter().enumerate() {
        let args = format!("pmem readrandom {keys} {ops} {n} {r} {cpu}");
        let opts = Options { args: &args, words: &words, heap_pages: KVDB_HEAP_PAGES, spare_pages: 0, paused: true };
        let c = spawn::spawn_on("kvdb", &opts, 1 << cpu)?;
        kvdb::share_info_page(&c)?;
        share_read_only(&c)?;
        readers.push((cpu, c));
    }
    println!(
        "init: readrandom: {n} reader(s) pinned to CPUs {cpus:?}, each given a read-only share of the database's {} pages",
        PMEM_BYTES / PAGE_SIZE
    );
    Ok(Readers { keys, readers })
}

/// Start the readers, let them all go at once when each is ready, wait
/// for them, check how they ended, and collect their lines. `idle_spin`:
/// the CPUs without a reader run init's scheduler (`give_core` was done),
/// which spins when idle; recorded in the lines.
pub fn run(prepared: Readers, idle_spin: bool) -> Result<Run, String> {
    let Readers { keys, readers } = prepared;
    let n = readers.len() as u64;
    for (_, c) in &readers {
        sched::start(c.slot);
    }
    let box_of = |c: &Child, w: u64| mem::read(spawn::mailbox(c) + w);
    wait_for(&readers, "it was ready", READY_SECS, &|c| box_of(c, mailbox::READY) != 0)?;
    println!("init: readrandom: {n} reader(s) opened the database read-only and warmed up; go");
    for (_, c) in &readers {
        mem::write(spawn::mailbox(c) + mailbox::GO, 1);
    }
    wait_for(&readers, "the readers ended", RUN_SECS, &|c| sched::slot(c.slot).state.load(SeqCst) != RUNNABLE)?;
    let mut lines = Vec::new();
    for (r, (cpu, c)) in readers.iter().enumerate() {
        let code = spawn::finish(c, &format!("the readrandom reader on CPU {cpu}"))?;
        if code != 0 {
            return Err(format!("the reader on CPU {cpu} exited with {code} ({})", kvdb::meaning(code)));
        }
        let ran = sched::slot(c.slot).ran_on.load(SeqCst);
        if ran != 1 << cpu {
            return Err(format!("the reader pinned to CPU {cpu} ran on CPUs mask {ran:#x}"));
        }
        lines.push(ReaderLine {
            readers: n,
            reader: r as u64,
            cpu: *cpu,
            idle_spin: u64::from(idle_spin && n == 1),
            keys,
            ops: box_of(c, mailbox::OPS),
            start_tsc: box_of(c, mailbox::START_TSC),
            end_tsc: box_of(c, mailbox::END_TSC),
            tsc_per_us: tsc_per_us(),
            syscalls: box_of(c, mailbox::SYSCALLS),
            upcalls: box_of(c, mailbox::UPCALLS),
            faults: box_of(c, mailbox::FAULTS),
            storage_reads: box_of(c, mailbox::STORAGE_READS),
        });
    }
    for l in &lines {
        println!("{l}");
    }
    let total = ReadScaleLine::of(&lines).map_err(String::from)?;
    println!("{total}");
    Ok(Run { readers: lines, total })
}
