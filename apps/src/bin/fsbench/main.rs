//! `fsbench`: the exokernel side of `cargo xtask eval --fs` (eval/FS.md).
//! libfs linked directly into this application, on the medium init gives
//! it, runs the five file-system workloads of the comparison and prints
//! one `EXO-FS` line (`eval_lines::FsLine`) per workload:
//! * `pmem`: a persistent-memory region moved into this process (NVDIMM
//!   pages, stores + cache-line write-back + `sfence`, no kernel call);
//! * `nvme`: a `libdb::BlockDevice` over the block service (`nvmed
//!   serve`, `blockq` rings in a region init links into both; kvdb's
//!   client, `../kvdb/blockdev.rs`, shared as a source file); its
//!   `mmap-overwrite` maps the file through libfs's pager (`mapped.rs`,
//!   with fsapp's `paging.rs`), whose frames are spare frames (args words
//!   1–2).
//!
//! Arguments: `<pmem|nvme> <ops> <seq MiB>`; args words 3 = the region's
//! address, 4 = its size in bytes, 5 = TSC ticks per microsecond. Exit
//! code 0 = every workload ran and verified, 1 = file-system error, 2 =
//! missing region, 5 = verification failed, 6 = block service failure,
//! 7 = bad arguments.
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
extern crate alloc;

// kvdb's block-service client, one source for both programs (its
// request total is kvdb's only).
#[cfg(exo_user)]
#[path = "../kvdb/blockdev.rs"]
#[allow(dead_code)]
mod blockdev;
#[cfg(exo_user)]
mod mapped;
#[cfg(exo_user)]
#[path = "../kvdb/pmemdev.rs"]
mod pmemdev;
// fsapp's binding of libfs's pager to this machine (spare frames, the
// blocking fault handler), one source for both programs.
#[cfg(exo_user)]
#[path = "../fsapp/paging.rs"]
mod paging;
#[cfg(exo_user)]
mod workloads;

#[cfg(exo_user)]
exo_rt::entry!(main);

#[cfg(exo_user)]
fn main() {
    let args = exo_rt::args();
    match run(args) {
        Ok(()) => exo_rt::exit(0),
        Err((code, e)) => {
            exo_rt::println!("fsbench {args}: FAILED: {e}");
            exo_rt::exit(code)
        }
    }
}

#[cfg(exo_user)]
fn run(args: &str) -> Result<(), workloads::Failure> {
    use alloc::format;
    use exo_rt::{args_word, println};
    use workloads::{Counts, Plan, MISSING_REGION, SERVICE, USAGE};

    let mut words = args.split_whitespace();
    let medium = words.next().unwrap_or("");
    let num = |w: Option<&str>, what: &str| {
        w.and_then(|w| w.parse::<u64>().ok())
            .filter(|n| *n > 0)
            .ok_or((USAGE, format!("{what}: expected a number > 0")))
    };
    let plan = Plan { ops: num(words.next(), "ops")?, seq_mib: num(words.next(), "seq MiB")? };
    let (va, bytes, tsc_per_us) = (args_word(3), args_word(4), args_word(5));
    if va == 0 || bytes == 0 {
        return Err((MISSING_REGION, format!("no {medium} region was given (args words 3/4 are {va:#x}/{bytes:#x})")));
    }
    match medium {
        "nvme" => {
            let win = exo_rt::mmio::Window::new(va, bytes).ok_or_else(|| {
                (MISSING_REGION, format!("block-service region {va:#x}+{bytes:#x} is not a valid window"))
            })?;
            let dev = blockdev::BlockqDevice::attach(win).map_err(|e| (SERVICE, format!("{e}")))?;
            let geo = dev.geometry();
            println!(
                "fsbench: block service attached: {} MiB in {}-byte blocks",
                (geo.capacity_blocks * geo.block_size as u64) >> 20,
                geo.block_size
            );
            let counts = |s: &libdb::BlockStorage<blockdev::BlockqDevice>| {
                let c = s.device().counters;
                Counts {
                    device_writes: c.write_requests,
                    device_reads: c.read_requests,
                    device_flushes: c.flushes,
                    device_bytes: c.bytes_written,
                    bytes_copied: c.bytes_copied,
                    lines: 0,
                    fences: 0,
                }
            };
            workloads::run_all(libdb::BlockStorage::new(dev), "nvme", &plan, tsc_per_us, &counts, mapped::nvme_mapped)
        }
        "pmem" => {
            let region = exo_rt::region::Region::claim(va, bytes).map_err(|e| (MISSING_REGION, format!("{e}")))?;
            println!(
                "fsbench: persistent-memory region at {va:#x}, {} MiB, cache-line write-back by {:?}",
                bytes >> 20,
                region.flush_method()
            );
            let counts = |s: &libdb::PmemStorage<pmemdev::MappedPmem>| Counts {
                lines: s.region().lines,
                fences: s.region().fences,
                ..Counts::default()
            };
            let storage = libdb::PmemStorage::new(pmemdev::MappedPmem::new(region));
            workloads::run_all(storage, "pmem", &plan, tsc_per_us, &counts, workloads::pmem_mapped)
        }
        other => Err((USAGE, format!("medium {other:?}: expected pmem or nvme"))),
    }
}
