//! `nvmetest`: the NVMe test roles, beside the driver `nvmed` rather than
//! inside it. It drives the controller it is granted with nvmed's own
//! modules (`hw`, `pattern`, `rw`, `msix`, compiled in from
//! `../nvmed/`), so an attack runs the same driver code a user's driver
//! does. The first argument picks the role:
//!
//! | role | test |
//! |---|---|
//! | `attack` (+ `victim`) | `dma_attack_blocked`, and on VF 2 in `sriov_vf` |
//! | `hold` + `intruder` | `device_ownership` |
//! | `irq-forge` / `irq-compat` | `irq_forged_handle_blocked` / `irq_compat_forged` |
//! | `client` (with `nvmed serve`) | `block_service` |
//! | `qd1 own-core` / `qd1 shared-core` (with `nvmed serve [poll]`) | `qd1poll_own_core` / `qd1poll_shared_core` |
//! | `pair` | `two_nvme` |
//! | `persist-write` / `persist-check` | `nvme_persist` |
//!
//! Exit code 0 means every check passed.
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
extern crate alloc;

#[cfg(exo_user)]
#[path = "../nvmed/hw.rs"]
mod hw;
#[cfg(exo_user)]
#[path = "../nvmed/msix.rs"]
mod msix;
#[cfg(exo_user)]
#[path = "../nvmed/pattern.rs"]
mod pattern;
// The driver's `rw` job is not one of these roles; its buffers and its
// verified run (`pair`) are.
#[cfg(exo_user)]
#[allow(dead_code)]
#[path = "../nvmed/rw.rs"]
mod rw;

#[cfg(exo_user)]
mod attack;
#[cfg(exo_user)]
mod client;
#[cfg(exo_user)]
mod irq_attack;
#[cfg(exo_user)]
mod pair;
#[cfg(exo_user)]
mod persist;
#[cfg(exo_user)]
mod qd1;

#[cfg(exo_user)]
exo_rt::entry!(main);

#[cfg(exo_user)]
fn main() {
    use exo_rt::println;
    let args = exo_rt::args();
    let mode = args.split_whitespace().next().unwrap_or("");
    let result = match mode {
        "attack" => attack::attack(),
        "hold" => attack::hold(),
        "victim" => exo_rt::exit(attack::victim()),
        "intruder" => exo_rt::exit(attack::intruder()),
        "irq-forge" => irq_attack::attack(false),
        "irq-compat" => irq_attack::attack(true),
        "client" => client::client(),
        "pair" => pair::run(),
        "persist-write" => persist::persist_write(),
        "persist-check" => persist::persist_check(),
        "qd1" => qd1::qd1(),
        _ => Err(alloc::format!("unknown mode {mode:?}")),
    };
    match result {
        Ok(()) => exo_rt::exit(0),
        Err(why) => {
            println!("nvmetest {mode}: FAILED: {why}");
            exo_rt::exit(1)
        }
    }
}
