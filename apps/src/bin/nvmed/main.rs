//! `nvmed`: the userspace NVMe driver. Init makes it a device's driver by
//! moving the controller's BAR 0 into it and copying it the device handle;
//! it maps its own frames into the device's I/O address space (VT-d keeps
//! every other DMA out) and runs the controller with the host-tested
//! `nvme` crate. No kernel call is on its I/O path: doorbells are stores
//! to its BAR mapping, completions are polled from its own memory.
//!
//! The first argument picks the job: `rw` (random writes and verified
//! read-back; test `nvme_rw`), `irq` (MSI-X completion; `nvme_irq`),
//! `bench` (4 KiB random I/O at QD1/QD32; `nvme_bench`), `serve` (the
//! block service for applications such as `kvdb`), `virtio` (a virtio-blk
//! driver on the same grants; `virtio_blk_rw`), `sriov` (the PF's driver
//! brings VFs' controllers online). The test-only roles — DMA and
//! interrupt attacks, the victim, the intruder, the block-service test
//! client, the two-controller pair, the persistence boots — are the
//! separate program `nvmetest`, which drives the controller with this
//! program's modules. Exit code 0 means every check passed.
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
extern crate alloc;

#[cfg(exo_user)]
mod bench;
#[cfg(exo_user)]
mod hw;
#[cfg(exo_user)]
mod irq;
#[cfg(exo_user)]
mod msix;
#[cfg(exo_user)]
mod pattern;
#[cfg(exo_user)]
mod rw;
#[cfg(exo_user)]
mod serve;
#[cfg(exo_user)]
mod sriov;
#[cfg(exo_user)]
mod virtio;

#[cfg(exo_user)]
exo_rt::entry!(main);

#[cfg(exo_user)]
fn main() {
    use exo_rt::println;
    let args = exo_rt::args();
    let mode = args.split_whitespace().next().unwrap_or("");
    let result = match mode {
        "rw" => rw::run(),
        "irq" => irq::run(),
        "bench" => bench::run(),
        "virtio" => virtio::run(),
        "serve" => serve::serve(),
        "sriov" => sriov::run(),
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
