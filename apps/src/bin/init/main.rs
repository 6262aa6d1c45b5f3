//! init: the root process of the system a user boots. It receives all free
//! RAM from the kernel, loads programs from the boot image into address
//! spaces it builds from that RAM, schedules them (the kernel has no
//! scheduler), owns the serial console and copies its children's output
//! there — all of that is `initlib` — then runs the demonstration and the
//! shell (kernel command line `demo`, or `demo batch` to stop the machine
//! after the demonstration). The QEMU test scenarios are another root
//! program, `testinit`, booted in init's place by `cargo xtask test`.
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
extern crate alloc;

#[cfg(exo_user)]
mod demo;
#[cfg(exo_user)]
mod shell;

#[cfg(exo_user)]
exo_rt::entry!(main);

#[cfg(exo_user)]
fn main() {
    use exo_rt::{kinfo, println};

    initlib::boot::init();
    let cmdline = kinfo::cmdline();
    println!("init: command line {cmdline:?}");
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
