//! `fsapp`: libfs, the file system library, linked directly by an
//! application that owns a whole medium: a persistent-memory region init
//! moved into it (as `kvdb` links libdb). No file service: this process
//! holds the only `Fs`.
//!
//! Arguments: `pmem <create|check>`; args words 3 = the region's address,
//! 4 = its size in bytes, 5 = the run's nonce.
//! * `create` (boot 1 of `libfs_pmem`): mkfs, a small tree of directories
//!   and files (0 bytes to 300 KiB, contents derived from the nonce), a
//!   rename over an existing name, an unlink, `sync`; then **a file as a
//!   mapped region**: the extents of `/mapped/region.bin` name its NVDIMM
//!   pages, which are mapped in this process at `region + medium_offset`;
//!   the program stores straight into them (no libfs call), writes back
//!   exactly what `persist_ranges` names (cache-line write-back + `sfence`)
//!   and exits without unmounting, like a crash after the persist.
//! * `check` (boot 2): mount (recovery from checkpoint + log), libfs's
//!   consistency check and `fsck`, then every byte of every file (the
//!   directly stored ones included) and the exact set of names.
//!
//! * `nvme <create|check|big>`: the same tree on NVMe through the block
//!   service (args words 3/4 = the `blockq` region, 5 = the nonce), with
//!   files mapped by this process's own pager (`paging.rs` over
//!   `libfs::pager`; its budget: spare frames, args word 1). `create`
//!   (boot 1 of `libfs_nvme`) stores into `/mapped/region.bin` through the
//!   mapping and `msync`s exactly the range; `check` (boot 2) reads it
//!   through a read-only mapping, then verifies everything as for pmem.
//!   `big` (`libfs_big`): an 8 MiB file with a 1 MiB budget, written and
//!   read through the mapping, the pager's counts checked (`nvme.rs`).
//! * `nvme pfload <operations>` / `nvme pfcheck`: the power-fail workload
//!   and its checker (`powerfail.rs`, `cargo xtask powerfail`).
//!
//! Exit code 0 = passed, 1 = file-system error, 2 = missing region,
//! 5 = verification failed, 7 = bad arguments.
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
extern crate alloc;

#[cfg(exo_user)]
#[path = "../kvdb/blockdev.rs"]
mod blockdev;
#[cfg(exo_user)]
mod nvme;
#[cfg(exo_user)]
mod paging;
#[cfg(exo_user)]
mod powerfail;
#[cfg(exo_user)]
mod tree;

#[cfg(exo_user)]
exo_rt::entry!(main);

#[cfg(exo_user)]
fn main() {
    let args = exo_rt::args();
    let outcome = if args.starts_with("nvme") { nvme::run(args) } else { tree::run(args) };
    match outcome {
        Ok(()) => exo_rt::exit(0),
        Err((code, e)) => {
            exo_rt::println!("fsapp {args}: FAILED: {e}");
            exo_rt::exit(code)
        }
    }
}
