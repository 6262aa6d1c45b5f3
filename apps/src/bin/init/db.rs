//! The libdb-on-the-exokernel tests: init sets up a medium and starts
//! `kvdb`, the embedded database as an application libOS, on it.
//!
//! * `libdb_nvme_create` / `libdb_nvme_check` (the two boots of
//!   `libdb_nvme`): `nvmed serve` exposes only [`NVME_WINDOW_MIB`] of the
//!   NVMe namespace (no other test writes there) through `blockq` rings in
//!   a region init links into the driver and into `kvdb`; boot 1 creates a
//!   database there and commits, boot 2 reopens it (recovery) and checks
//!   every committed key/value, and nothing else.
//! * `libdb_pmem`: the same plan on a persistent-memory region: for now
//!   RAM frames init owns and links into `kvdb` (not persistent across a
//!   reboot), so creation and recovery run as two processes in one boot.

use crate::devices;
use crate::sched;
use crate::spawn::{self, Child, Options};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{kinfo as ki, Rights, PAGE_SIZE};
use exo_rt::layout::{SCRATCH_VA, SHARED_VA};
use exo_rt::{kinfo, mem, println, sys};

type Outcome = Result<(), String>;

/// The NVMe range the database lives in: 192 MiB..256 MiB of the
/// namespace (`nvme_rw`, `nvme_bench` and `block_service` write below
/// 128 MiB, `nvme_persist` at LBA 300,000 = 146.5 MiB with 512-byte blocks).
const NVME_WINDOW_MIB: (u64, u64) = (192, 64);
/// The block-service region: header, request and response rings (3 pages)
/// and a 1 MiB data area the driver maps into the device.
const KVDB_REGION_PAGES: u64 = 3 + 256;
/// DMA pages for nvmed's queues (as `devices::NVME_DMA_PAGES`).
const NVME_DMA_PAGES: u64 = 640;
/// kvdb's heap: libdb's 4 MiB page cache, the test's model and slack.
const KVDB_HEAP_PAGES: u64 = 3072;
/// The RAM-backed persistent-memory region: 8 level-1 regions of 2 MiB.
const PMEM_RAM_REGIONS: u64 = 8;
/// Where kvdb finds its persistent-memory region (a 1 GiB-aligned slot of
/// its own, away from the runtime's fixed addresses).
const PMEM_CHILD_VA: u64 = 0x50_0000_0000;
const NVME_IDS: (u16, u16) = (0x1b36, 0x0010);

/// The run's nonce: `nonce=<hex>` from the command line (both boots of a
/// two-boot test get the same), else a fresh one from the TSC.
fn nonce(required: bool) -> Result<u64, String> {
    let given = kinfo::cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("nonce="))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .filter(|n| *n != 0);
    match given {
        Some(n) => Ok(n),
        None if required => Err("no nonce=<hex> on the command line (the xtask test passes one to both boots)".into()),
        None => Ok(exo_rt::time::rdtsc() | 1),
    }
}

/// What kvdb's exit code means (see kvdb's `error.rs`).
fn meaning(code: u64) -> &'static str {
    match code {
        0 => "passed",
        1 => "database error",
        2 => "missing region",
        3 => "corrupt database",
        4 => "medium full",
        5 => "verification failed",
        6 => "block service failure",
        7 => "bad arguments",
        _ => "unknown",
    }
}

/// Spawn kvdb (paused) with its words, and the kernel info page shared
/// read-only at its `SCRATCH_VA` (for system-wide crossing counts).
fn spawn_kvdb(args: &str, va: u64, bytes: u64, nonce: u64) -> Result<Child, String> {
    let words = [va, bytes, kinfo::word(ki::W_TSC_PER_US), nonce];
    let c = spawn::spawn_named("kvdb", &Options { args, words: &words, heap_pages: KVDB_HEAP_PAGES, spare_pages: 0, paused: true })?;
    spawn::ensure_tables(c.at(SCRATCH_VA)).map_err(|e| format!("tables for the info page: {e}"))?;
    sys::map(exo_abi::KINFO_VA, 0, 0, c.at(SCRATCH_VA), Rights::NONE)
        .map_err(|e| format!("sharing the kernel info page read-only: {}", e.name()))?;
    Ok(c)
}

fn run_kvdb(c: &Child, what: &str) -> Outcome {
    sched::start(c.slot);
    match crate::tests::finish(c, what)? {
        0 => Ok(()),
        code => Err(format!("{what} exited with {code} ({})", meaning(code))),
    }
}

/// `libdb_nvme_create` (`check` false) and `libdb_nvme_check`.
pub fn libdb_nvme(check: bool) -> Outcome {
    let nonce = nonce(true)?;
    let dev = devices::find(NVME_IDS.0, NVME_IDS.1)?;
    devices::enable(&dev)?;
    let region = crate::tests::make_region(KVDB_REGION_PAGES)?;
    let bytes = KVDB_REGION_PAGES * PAGE_SIZE;
    let faults_before = kinfo::word(ki::W_DMA_FAULTS);
    let window = NVME_WINDOW_MIB.0 | NVME_WINDOW_MIB.1 << 32;
    let driver = devices::start_driver("nvmed", "serve", &dev, 0, NVME_DMA_PAGES, [bytes, window])?;
    // GRANT: the driver maps the region's data area into the device.
    crate::tests::link(&driver, region, Rights::WRITE | Rights::GRANT)?;
    sched::start(driver.slot);
    while mem::read(spawn::mailbox(&driver) + 8) == 0 {
        sched::sched_yield();
        if sched::slot(driver.slot).state.load(SeqCst) != sched::RUNNABLE {
            return Err("nvmed serve ended before it served".into());
        }
    }
    let phase = if check { "check" } else { "create" };
    println!("init: kvdb nvme {phase} (nonce {nonce:#x}) on NVMe MiB {}..{} through nvmed serve", NVME_WINDOW_MIB.0, NVME_WINDOW_MIB.0 + NVME_WINDOW_MIB.1);
    let kvdb = spawn_kvdb(&format!("nvme {phase}"), SHARED_VA, bytes, nonce)?;
    crate::tests::link(&kvdb, region, Rights::WRITE)?;
    let outcome = run_kvdb(&kvdb, &format!("kvdb nvme {phase}"));
    mem::write(spawn::mailbox(&driver), 1);
    let served = match crate::tests::finish(&driver, "nvmed serve") {
        Ok(0) => Ok(()),
        Ok(code) => Err(format!("nvmed serve exited with {code}")),
        Err(e) => Err(e),
    };
    outcome?;
    served?;
    let faults = kinfo::word(ki::W_DMA_FAULTS) - faults_before;
    if faults != 0 {
        return Err(format!("{faults} DMA faults while kvdb ran"));
    }
    Ok(())
}

/// `libdb_pmem`: create, then reopen in a second process, on RAM frames
/// init links into both (the NVDIMM replaces them once the kernel maps it).
/// Then the named errors: a damaged database, no region, a full medium.
pub fn libdb_pmem() -> Outcome {
    let nonce = nonce(false)?;
    let span = 1u64 << 21;
    let first = crate::tests::make_region(512)?;
    for i in 1..PMEM_RAM_REGIONS {
        let r = crate::tests::make_region(512)?;
        if r != first + i * span {
            return Err(format!("init's regions are not contiguous ({r:#x} after {first:#x})"));
        }
    }
    let bytes = PMEM_RAM_REGIONS * span;
    println!("init: kvdb pmem on {} MiB of RAM frames (not persistent across boots; nonce {nonce:#x})", bytes >> 20);
    let pmem_kvdb = |phase: &str, bytes: u64| -> Result<Child, String> {
        let kvdb = spawn_kvdb(&format!("pmem {phase}"), PMEM_CHILD_VA, bytes, nonce)?;
        // The child's level-2 table for the range (made by creating the
        // tables for the page just past it), then one link per 2 MiB.
        spawn::ensure_tables(kvdb.at(PMEM_CHILD_VA + PMEM_RAM_REGIONS * span)).map_err(|e| format!("tables for the region: {e}"))?;
        for i in 0..bytes.div_ceil(span) {
            sys::map(first + i * span, 1, 0, kvdb.at(PMEM_CHILD_VA + i * span), Rights::WRITE)
                .map_err(|e| format!("linking pmem region {i}: {}", e.name()))?;
        }
        Ok(kvdb)
    };
    for phase in ["create", "check"] {
        run_kvdb(&pmem_kvdb(phase, bytes)?, &format!("kvdb pmem {phase}"))?;
    }
    // Errors are named, each with its own exit code. Both meta pages
    // damaged: a corrupt database.
    for off in (0..2 * PAGE_SIZE).step_by(512) {
        mem::write(first + off, 0x0bad_0bad_0bad_0bad);
    }
    expect_code(&pmem_kvdb("check", bytes)?, "kvdb pmem check on damaged meta pages", 3)?;
    // No region given.
    expect_code(&spawn_kvdb("pmem check", 0, 0, nonce)?, "kvdb pmem check without a region", 2)?;
    // A medium with room for the log but not for the data.
    expect_code(&pmem_kvdb("create", 320 * PAGE_SIZE)?, "kvdb pmem create on 1.25 MiB", 4)?;
    Ok(())
}

/// Run `c` and require exit code `want`.
fn expect_code(c: &Child, what: &str, want: u64) -> Outcome {
    sched::start(c.slot);
    let code = crate::tests::finish(c, what)?;
    if code != want {
        return Err(format!("{what} exited with {code} ({}), expected {want} ({})", meaning(code), meaning(want)));
    }
    println!("init: {what}: refused by name ({})", meaning(code));
    Ok(())
}
