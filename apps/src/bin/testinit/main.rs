//! testinit: the test root. `cargo xtask test` boots it in init's place
//! (the boot image's first entry, named `init`, is this program), as
//! Hubris's test runner replaces its supervisor in test images. It starts
//! like init — the same services, from `initlib` — then runs the one
//! scenario the kernel command line names (`test=<name>`; the names are
//! `exo_testlist`'s) and ends the machine with its verdict:
//! `EXO-TEST-PASS <name>` + isa-debug-exit 0x10, or `EXO-TEST-FAIL <name>:
//! <why>` + 0x11.
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
extern crate alloc;

#[cfg(exo_user)]
mod adversarial;
#[cfg(exo_user)]
mod attacks;
#[cfg(exo_user)]
mod basic;
#[cfg(exo_user)]
mod bootmedia;
#[cfg(exo_user)]
mod db;
#[cfg(exo_user)]
mod devices;
#[cfg(exo_user)]
mod dispatch;
#[cfg(exo_user)]
mod fs;
#[cfg(exo_user)]
mod fsbench;
#[cfg(exo_user)]
mod fsshare;
#[cfg(exo_user)]
mod idlehalt;
#[cfg(exo_user)]
mod pmem;
#[cfg(exo_user)]
mod qd1poll;
#[cfg(exo_user)]
mod readscale;
#[cfg(exo_user)]
mod smp;
#[cfg(exo_user)]
mod smpsched;
#[cfg(exo_user)]
mod sriov;
#[cfg(exo_user)]
mod upgrade;

#[cfg(exo_user)]
exo_rt::entry!(main);

#[cfg(exo_user)]
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
