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
//! | `pair` | `two_nvme` |
//! | `persist-write` / `persist-check` | `nvme_persist` |
//!
//! Exit code 0 means every check passed.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[path = "../nvmed/hw.rs"]
mod hw;
#[cfg(target_os = "none")]
#[path = "../nvmed/msix.rs"]
mod msix;
#[cfg(target_os = "none")]
#[path = "../nvmed/pattern.rs"]
mod pattern;
// The driver's `rw` job is not one of these roles; its buffers and its
// verified run (`pair`) are.
#[cfg(target_os = "none")]
#[allow(dead_code)]
#[path = "../nvmed/rw.rs"]
mod rw;

#[cfg(target_os = "none")]
mod attack;
#[cfg(target_os = "none")]
mod client;
#[cfg(target_os = "none")]
mod irq_attack;
#[cfg(target_os = "none")]
mod pair;
#[cfg(target_os = "none")]
mod persist;

#[cfg(target_os = "none")]
exo_rt::entry!(main);

#[cfg(target_os = "none")]
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
