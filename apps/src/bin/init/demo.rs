//! What `cargo xtask run` shows: init starting processes from the boot
//! image, a region shared between two of them, a page fault resolved by a
//! userspace pager, a spinning process being preempted — and the main job:
//! the embedded database (libdb, in the `kvdb` program) committing on the
//! NVMe through the userspace driver's block service, and on the NVDIMM
//! mapped straight into it. (The test root, `testinit`, checks each of
//! these in depth; here they are shown.)

use alloc::string::String;
use exo_abi::kinfo as ki;
use exo_rt::{kinfo, println};
use initlib::showcase::{preempt_a_spinner, share_a_region};
use initlib::spawn::expect_exit;

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
    println!("\n== 7. files: the file service fsd holds the NVDIMM's file system; init's shell is one of its clients and gets files as mapped pages ==");
    files()?;
    println!(
        "\n== done: {} system calls, {} upcalls, {} timer ticks, {} frames allocated by the kernel after boot ==",
        kinfo::word(ki::W_SYSCALLS),
        kinfo::word(ki::W_UPCALLS),
        kinfo::word(ki::W_TICKS),
        kinfo::word(ki::W_FRAMES_AFTER_BOOT)
    );
    Ok(())
}

/// Start fsd (mount the file system, or make one) and show a few files
/// through the shell's own commands.
fn files() -> Outcome {
    initlib::fsd::start(false)?;
    let mut sh = initlib::fsshell::FsShell::connect()?;
    for line in [
        "mkdir /demo",
        "write /demo/hello.txt hello from a file mapped by the file service",
        "ls /demo",
        "cat /demo/hello.txt",
        "stat /demo/hello.txt",
    ] {
        if let Some(out) = sh.run(line) {
            println!("exo> {line}\n{out}");
        }
    }
    // The shell connects again when it starts.
    sh.disconnect()
}

pub fn idle() -> ! {
    println!("init: demo finished; the machine stays up");
    crate::shell::run()
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
