//! What `cargo xtask run` shows: init starting processes from the boot
//! image, a region shared between two of them, a page fault resolved by a
//! userspace pager, and a spinning process being preempted.

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
