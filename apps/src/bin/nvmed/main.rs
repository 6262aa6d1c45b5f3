//! `nvmed`: the userspace NVMe driver. Init makes it a device's driver by
//! moving the controller's BAR 0 into it and copying it the device handle;
//! it maps its own frames into the device's I/O address space (VT-d keeps
//! every other DMA out) and runs the controller with the host-tested
//! `nvme` crate. No kernel call is on its I/O path: doorbells are stores
//! to its BAR mapping, completions are polled from its own memory.
//!
//! The first argument picks the job: `rw` (`nvme_rw`), `irq` (`nvme_irq`,
//! MSI-X completion), `bench` (`nvme_bench`, 4 KiB random I/O at QD1/QD32), `attack`
//! (`dma_attack_blocked`), `persist-write` / `persist-check`
//! (`nvme_persist`), `serve` (`block_service`, the driver end), `virtio`
//! (`virtio_blk_rw`, a virtio-blk driver on the same grants), `sriov`
//! (`sriov_vf`: the PF's driver brings a VF's controller online), `pair`
//! (`two_nvme`: one of two drivers of two controllers at once) — and, for
//! the tests, the other processes involved: `client` (the block-service
//! application), `victim`, `intruder` and `hold` (`device_ownership`).
//! Exit code 0 means every check passed.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod attack;
#[cfg(target_os = "none")]
mod bench;
#[cfg(target_os = "none")]
mod hw;
#[cfg(target_os = "none")]
mod irq;
#[cfg(target_os = "none")]
mod pair;
#[cfg(target_os = "none")]
mod pattern;
#[cfg(target_os = "none")]
mod rw;
#[cfg(target_os = "none")]
mod serve;
#[cfg(target_os = "none")]
mod sriov;
#[cfg(target_os = "none")]
mod virtio;

#[cfg(target_os = "none")]
exo_rt::entry!(main);

#[cfg(target_os = "none")]
fn main() {
    use exo_rt::println;
    let args = exo_rt::args();
    let mode = args.split_whitespace().next().unwrap_or("");
    let result = match mode {
        "rw" => rw::run(),
        "irq" => irq::run(),
        "irq-forge" => irq::attack(false),
        "irq-compat" => irq::attack(true),
        "bench" => bench::run(),
        "virtio" => virtio::run(),
        "persist-write" => rw::persist_write(),
        "persist-check" => rw::persist_check(),
        "attack" => attack::attack(),
        "hold" => attack::hold(),
        "serve" => serve::serve(),
        "pair" => pair::run(),
        "sriov" => sriov::run(),
        "client" => serve::client(),
        "victim" => exo_rt::exit(attack::victim()),
        "intruder" => exo_rt::exit(attack::intruder()),
        _ => Err(alloc::format!("unknown mode {mode:?}")),
    };
    match result {
        Ok(()) => exo_rt::exit(0),
        Err(why) => {
            println!("nvmed {mode}: FAILED: {why}");
            exo_rt::exit(1)
        }
    }
}
