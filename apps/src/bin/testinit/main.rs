//! testinit: the test root. `cargo xtask test` boots it in init's place
//! (the boot image's first entry, named `init`, is this program), as
//! Hubris's test runner replaces its supervisor in test images. It starts
//! like init — the same services, from `initlib` — then runs the one
//! scenario the kernel command line names (`test=<name>`; the names are
//! `exo_testlist`'s) and ends the machine with its verdict:
//! `EXO-TEST-PASS <name>` + isa-debug-exit 0x10, or `EXO-TEST-FAIL <name>:
//! <why>` + 0x11.
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
mod basic;
#[cfg(target_os = "none")]
mod bootmedia;
#[cfg(target_os = "none")]
mod db;
#[cfg(target_os = "none")]
mod devices;
#[cfg(target_os = "none")]
mod dispatch;
#[cfg(target_os = "none")]
mod fs;
#[cfg(target_os = "none")]
mod fsbench;
#[cfg(target_os = "none")]
mod fsshare;
#[cfg(target_os = "none")]
mod pmem;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
mod smpsched;
#[cfg(target_os = "none")]
mod sriov;
#[cfg(target_os = "none")]
mod upgrade;

#[cfg(target_os = "none")]
exo_rt::entry!(main);

#[cfg(target_os = "none")]
fn main() {
    use exo_rt::{kinfo, println};

    initlib::boot::init();
    let cmdline = kinfo::cmdline();
    println!("init: command line {cmdline:?} (the test root)");
    let Some(name) = cmdline.split_whitespace().find_map(|w| w.strip_prefix("test=")) else {
        println!("EXO-TEST-FAIL testinit: no test=<name> on the command line");
        exo_rt::debug_exit(0x11);
    };
    match dispatch::run(name) {
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
