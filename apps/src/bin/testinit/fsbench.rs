//! `fsbench`: libfs linked into an application, the five workloads of
//! `cargo xtask eval --fs` on persistent memory and on NVMe through the
//! block service, one `EXO-FS` line per workload (apps/src/bin/fsbench).
//!
//! * `libfs_bench` (the QEMU test): a few operations per workload on the
//!   free parts of the test disks: NVDIMM MiB 96..128 and NVMe MiB
//!   448..512; fsbench verifies what every workload wrote.
//! * `fsbench_eval` (booted by `cargo xtask eval --fs` only, always on
//!   fresh images, so it may use what the tests' disk plan gives others):
//!   the comparison's sizes on NVDIMM MiB 32..128 and NVMe MiB 256..512,
//!   room for the 64 MiB file of `seq-read`.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{kinfo as ki, Rights, CHILD_PMEM_VA, PAGE_SIZE};
use exo_rt::layout::{SCRATCH_VA, SHARED_VA};
use exo_rt::{kinfo, mem, println, sys};
use initlib::spawn::{self, Child, Options};
use initlib::{devices, regions, sched};

type Outcome = Result<(), String>;

/// Where and how much one boot runs.
struct Sizes {
    /// NVDIMM bytes (offset into init's span, length).
    pmem: (u64, u64),
    /// NVMe MiB (first, length) the block service exposes.
    nvme_mib: (u64, u64),
    ops: u64,
    seq_mib: u64,
}

const TEST: Sizes = Sizes { pmem: (96 << 20, 32 << 20), nvme_mib: (448, 64), ops: 24, seq_mib: 4 };
/// The comparison's sizes (eval/FS.md; `eval::fs::OPS`, `eval::fs::SEQ_MIB`).
const EVAL: Sizes = Sizes { pmem: (32 << 20, 96 << 20), nvme_mib: (256, 256), ops: 200, seq_mib: 64 };

/// fsbench's heap: libfs's metadata, the workloads' payloads (the 1 MiB
/// mapped file's model and read-back), with slack.
const HEAP_PAGES: u64 = 2048;
/// The block-service region: header, rings (3 pages), 1 MiB data area.
const REGION_PAGES: u64 = 3 + 256;
/// Spare frames for fsbench's NVMe pager (`mmap-overwrite` maps its file
/// through libfs's pager): its budget (`fsbench`'s `mapped::BUDGET`, the
/// whole 1 MiB file) and the page tables of its mapping window.
const PAGER_SPARES: u64 = 256 + 8;
/// DMA pages for nvmed's queues (as `initlib::kvdb`'s).
const NVME_DMA_PAGES: u64 = 640;

pub fn libfs_bench() -> Outcome {
    run(&TEST)
}

pub fn fsbench_eval() -> Outcome {
    run(&EVAL)
}

fn run(s: &Sizes) -> Outcome {
    on_pmem(s)?;
    on_nvme(s)
}

/// Spawn fsbench (paused) with the kernel info page shared read-only at
/// its `SCRATCH_VA` (machine-wide crossing counts).
fn spawn_fsbench(args: &str, va: u64, bytes: u64, spare_pages: u64) -> Result<Child, String> {
    let words = [va, bytes, kinfo::word(ki::W_TSC_PER_US)];
    let c = spawn::spawn_named(
        "fsbench",
        &Options { args, words: &words, heap_pages: HEAP_PAGES, spare_pages, paused: true },
    )?;
    spawn::ensure_tables(c.at(SCRATCH_VA)).map_err(|e| format!("tables for the info page: {e}"))?;
    sys::map(exo_abi::KINFO_VA, 0, 0, c.at(SCRATCH_VA), Rights::NONE)
        .map_err(|e| format!("sharing the kernel info page read-only: {}", e.name()))?;
    Ok(c)
}

fn finish(c: &Child, what: &str) -> Outcome {
    match spawn::finish(c, what)? {
        0 => Ok(()),
        code => Err(format!("{what} exited with {code} (see apps/src/bin/fsbench/main.rs)")),
    }
}

fn on_pmem(s: &Sizes) -> Outcome {
    let (offset, bytes) = s.pmem;
    println!(
        "init: fsbench pmem on NVDIMM bytes {offset:#x}..{:#x} ({} ops, {} MiB read)",
        offset + bytes,
        s.ops,
        s.seq_mib
    );
    let c = spawn_fsbench(&format!("pmem {} {}", s.ops, s.seq_mib), CHILD_PMEM_VA, bytes, 0)?;
    initlib::pmem::grant(&c, CHILD_PMEM_VA, offset, bytes)?;
    sched::start(c.slot);
    let outcome = finish(&c, "fsbench pmem");
    // Exited (or dead): its pages go back to init either way.
    let back = initlib::pmem::reclaim(&c, CHILD_PMEM_VA, offset, bytes);
    outcome?;
    back
}

fn on_nvme(s: &Sizes) -> Outcome {
    let dev = devices::nvme()?;
    devices::enable(&dev)?;
    let region = regions::make_region(REGION_PAGES)?;
    let bytes = REGION_PAGES * PAGE_SIZE;
    let window = s.nvme_mib.0 | s.nvme_mib.1 << 32;
    let driver = devices::start_driver("nvmed", "serve", &dev, 0, NVME_DMA_PAGES, [bytes, window])?;
    regions::link(&driver, region, Rights::WRITE)?;
    devices::grant_region_dma(&dev, region, REGION_PAGES)?;
    sched::start(driver.slot);
    while mem::read(spawn::mailbox(&driver) + 8) == 0 {
        sched::sched_yield();
        if sched::slot(driver.slot).state.load(SeqCst) != sched::RUNNABLE {
            return Err("nvmed serve ended before it served".into());
        }
    }
    println!(
        "init: fsbench nvme on NVMe MiB {}..{} through nvmed serve ({} ops, {} MiB read)",
        s.nvme_mib.0,
        s.nvme_mib.0 + s.nvme_mib.1,
        s.ops,
        s.seq_mib
    );
    let c = spawn_fsbench(&format!("nvme {} {}", s.ops, s.seq_mib), SHARED_VA, bytes, PAGER_SPARES)?;
    regions::link(&c, region, Rights::WRITE)?;
    sched::start(c.slot);
    let outcome = finish(&c, "fsbench nvme");
    mem::write(spawn::mailbox(&driver), 1);
    let served = match spawn::finish(&driver, "nvmed serve") {
        Ok(0) => Ok(()),
        Ok(code) => Err(format!("nvmed serve exited with {code}")),
        Err(e) => Err(e),
    };
    let revoked = devices::revoke_region_dma(&dev, REGION_PAGES);
    outcome?;
    served?;
    revoked
}
