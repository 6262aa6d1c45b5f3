//! What `cargo xtask run` shows: init starting processes from the boot
//! image, a region shared between two of them, a page fault resolved by a
//! userspace pager, a spinning process being preempted — and the main job:
//! the embedded database (libdb, in the `kvdb` program) committing on the
//! NVMe through the userspace driver's block service, and on the NVDIMM
//! mapped straight into it. (The test root, `testinit`, checks each of
//! these in depth; here they are shown.)

use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{kinfo as ki, Rights, PAGE_SIZE};
use exo_rt::{kinfo, mem, println};
use initlib::regions::{make_region, start_linked};
use initlib::sched::{self, state_name, RUNNABLE};
use initlib::spawn::{finish, start};

type Outcome = Result<(), String>;

pub fn run() -> Outcome {
    println!("\n== 1. init starts a process from the boot image ==");
    start_a_process()?;
    println!("\n== 2. two processes share a region (XOmB: a page-table subtree); a third has it read-only ==");
    share_a_region()?;
    println!("\n== 3. a page fault becomes an upcall; the process's own pager maps zeroed frames ==");
    expect_exit("probe", "pager 40", 160, 0)?;
    println!("\n== 4. a process spins forever; the root scheduler preempts it ==");
    preempt_a_spinner()?;
    // Any nonzero nonce will do: it seeds the database workload.
    let nonce = exo_rt::time::rdtsc() | 1;
    println!("\n== 5. the database (libdb) on NVMe: its block device is the userspace NVMe driver's shared rings, DMA confined by VT-d ==");
    initlib::kvdb::on_nvme(false, nonce)?;
    println!("\n== 6. the database on the NVDIMM: persistent memory mapped into it, made durable with clwb + sfence, no kernel call ==");
    initlib::kvdb::on_pmem(false, nonce)?;
    println!(
        "\n== done: {} system calls, {} upcalls, {} timer ticks, {} frames allocated by the kernel after boot ==",
        kinfo::word(ki::W_SYSCALLS),
        kinfo::word(ki::W_UPCALLS),
        kinfo::word(ki::W_TICKS),
        kinfo::word(ki::W_FRAMES_AFTER_BOOT)
    );
    Ok(())
}

pub fn idle() -> ! {
    println!("init: demo finished; the machine stays up");
    crate::shell::run()
}

fn expect_exit(prog: &str, args: &str, spare: u64, want: u64) -> Outcome {
    let code = finish(&start(prog, args, spare, &[])?, args)?;
    if code == want {
        Ok(())
    } else {
        Err(format!("{prog} {args:?} exited with {code}, expected {want}"))
    }
}

fn start_a_process() -> Outcome {
    let n = kinfo::word(ki::W_RAM_RANGES);
    let (used, left) = initlib::frames::stats();
    println!(
        "init: {} MiB of RAM in {n} range(s); {used} frames used, {left} free; {} syscalls so far",
        kinfo::word(ki::W_RAM_BYTES) >> 20,
        kinfo::word(ki::W_SYSCALLS)
    );
    expect_exit("hello", "demo", 0, 0)
}

fn share_a_region() -> Outcome {
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
    if mem::read(region) != 0xa000_0000 || mem::read(region + PAGE_SIZE) != 0xb000_0000 {
        return Err("init does not see the processes' writes".into());
    }
    println!("init: both writes seen through init's own link; the read-only sharer's write faulted");
    Ok(())
}

fn preempt_a_spinner() -> Outcome {
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
