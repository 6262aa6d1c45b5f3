//! init: the root process. It receives all free RAM from the kernel, loads
//! programs from the boot image into address spaces it builds from that
//! RAM, schedules them (the kernel has no scheduler), owns the serial
//! console and copies its children's output there, and runs either the
//! demonstration or one named integration test (kernel command line
//! `demo`, `demo batch` or `test=<name>`).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod adversarial;
#[cfg(target_os = "none")]
mod attacks;
#[cfg(target_os = "none")]
mod db;
#[cfg(target_os = "none")]
mod demo;
#[cfg(target_os = "none")]
mod devices;
#[cfg(target_os = "none")]
mod frames;
#[cfg(target_os = "none")]
mod pmem;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod shell;
#[cfg(target_os = "none")]
mod spawn;
#[cfg(target_os = "none")]
mod sriov;
#[cfg(target_os = "none")]
mod tests;

#[cfg(target_os = "none")]
exo_rt::entry!(main);

#[cfg(target_os = "none")]
fn main() {
    use exo_abi::{kinfo as ki, Rights, PAGE_SIZE};
    use exo_rt::{kinfo, println, sys};

    println!(
        "init: running in ring 3; {} MiB of RAM are mine, boot image {} bytes, tick {} us",
        kinfo::word(ki::W_RAM_BYTES) >> 20,
        kinfo::word(ki::W_BOOT_IMAGE_LEN),
        kinfo::word(ki::W_TICK_US)
    );
    frames::init();
    // A 4 MiB heap at HEAP_VA, built from RAM-window frames.
    let heap = exo_rt::layout::HEAP_VA;
    let pages = 1024;
    let mut made = true;
    for i in 0..pages {
        let va = heap + i * PAGE_SIZE;
        made &= spawn::ensure_tables(va).is_ok()
            && frames::alloc().is_some_and(|f| sys::map(f, 0, 0, va, Rights::WRITE | Rights::OWN | Rights::GRANT).is_ok());
    }
    if !made {
        exo_rt::fatal(format_args!("could not build init's heap"));
    }
    exo_rt::heap::init(heap, pages * PAGE_SIZE);
    sched::install();

    let cmdline = kinfo::cmdline();
    println!("init: command line {cmdline:?}");
    if let Some(name) = cmdline.split_whitespace().find_map(|w| w.strip_prefix("test=")) {
        let name = alloc::string::String::from(name);
        match tests::run(&name) {
            Ok(()) => {
                println!("EXO-TEST-PASS {name}");
                exo_rt::debug_exit(0x10);
            }
            Err(why) => {
                println!("EXO-TEST-FAIL {name}: {why}");
                exo_rt::debug_exit(0x11);
            }
        }
    }
    let batch = cmdline.split_whitespace().any(|w| w == "batch");
    match demo::run() {
        Ok(()) if batch => {
            println!("EXO-TEST-PASS demo");
            exo_rt::debug_exit(0x10);
        }
        Ok(()) => demo::idle(),
        Err(why) => {
            println!("EXO-TEST-FAIL demo: {why}");
            exo_rt::debug_exit(0x11);
        }
    }
}
