//! What `cargo xtask run` shows: init starting processes from the boot
//! image, a region shared between two of them, a page fault resolved by a
//! userspace pager, a spinning process being preempted — and the main job:
//! the embedded database (libdb, in the `kvdb` program) committing on the
//! NVMe through the userspace driver's block service, and on the NVDIMM
//! mapped straight into it.

use crate::tests;
use alloc::string::String;
use exo_abi::kinfo as ki;
use exo_rt::{kinfo, println};

pub fn run() -> Result<(), String> {
    println!("\n== 1. init starts a process from the boot image ==");
    tests::run("boot_to_init")?;
    println!("\n== 2. two processes share a region (XOmB: a page-table subtree); a third has it read-only ==");
    tests::run("share_region")?;
    println!("\n== 3. a page fault becomes an upcall; the process's own pager maps zeroed frames ==");
    tests::run("fault_upcall")?;
    println!("\n== 4. a process spins forever; the root scheduler preempts it ==");
    tests::run("preemption")?;
    // Any nonzero nonce will do: it seeds the database workload.
    let nonce = exo_rt::time::rdtsc() | 1;
    println!("\n== 5. the database (libdb) on NVMe: its block device is the userspace NVMe driver's shared rings, DMA confined by VT-d ==");
    crate::db::on_nvme(false, nonce)?;
    println!("\n== 6. the database on the NVDIMM: persistent memory mapped into it, made durable with clwb + sfence, no kernel call ==");
    crate::db::on_pmem(false, nonce)?;
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
