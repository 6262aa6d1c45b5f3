//! `libfs_pmem`: libfs on the exokernel, linked directly by an application
//! (`fsapp`) that owns a persistent-memory region init moves into it (as
//! `kvdb` links libdb). Boot 1 (`libfs_pmem_create`) makes a file system
//! and a small tree, then stores into one file through its mapped NVDIMM
//! pages and persists exactly what libfs names, and exits without
//! unmounting; boot 2 (`libfs_pmem_check`) mounts (recovery), checks
//! (fsck) and verifies every byte and name.

use alloc::format;
use alloc::string::String;
use exo_abi::CHILD_PMEM_VA;
use exo_rt::println;
use initlib::kvdb::{PMEM_BYTES, PMEM_OFFSET};
use initlib::sched;
use initlib::spawn::{self, Options};

type Outcome = Result<(), String>;

/// The file system's part of the NVDIMM: right after the database's.
const FS_OFFSET: u64 = PMEM_OFFSET + PMEM_BYTES;
const FS_BYTES: u64 = 8 << 20;
/// fsapp's heap: libfs's in-memory metadata, the files' expected
/// contents and read buffers (under 1 MiB), with slack.
const FSAPP_HEAP_PAGES: u64 = 1024;

/// What fsapp's exit code means (see its `main.rs`).
fn meaning(code: u64) -> &'static str {
    match code {
        0 => "passed",
        1 => "file-system error",
        2 => "missing region",
        5 => "verification failed",
        7 => "bad arguments",
        _ => "unknown",
    }
}

/// Run `fsapp pmem <phase>` with the region (`bytes` 0: none) and require
/// exit code `want`; granted pages come back to init after.
fn run_fsapp(phase: &str, bytes: u64, nonce: u64, want: u64) -> Outcome {
    let va = if bytes == 0 { 0 } else { CHILD_PMEM_VA };
    let args = format!("pmem {phase}");
    let words = [va, bytes, nonce];
    let c = spawn::spawn_named(
        "fsapp",
        &Options { args: &args, words: &words, heap_pages: FSAPP_HEAP_PAGES, spare_pages: 0, paused: true },
    )?;
    if bytes != 0 {
        initlib::pmem::grant(&c, va, FS_OFFSET, bytes)?;
    }
    let what = format!("fsapp pmem {phase} on {} KiB", bytes >> 10);
    sched::start(c.slot);
    let outcome = spawn::finish(&c, &what);
    let back = if bytes != 0 { initlib::pmem::reclaim(&c, va, FS_OFFSET, bytes) } else { Ok(()) };
    let code = outcome?;
    back?;
    if code != want {
        return Err(format!("{what} exited with {code} ({}), expected {want} ({})", meaning(code), meaning(want)));
    }
    println!("init: {what}: exit code {code} ({})", meaning(code));
    Ok(())
}

/// `libfs_pmem_create` (`check` false) and `libfs_pmem_check`.
pub fn libfs_pmem(check: bool) -> Outcome {
    let nonce = crate::basic::nonce()?;
    println!(
        "init: fsapp (libfs linked in) on NVDIMM bytes {FS_OFFSET:#x}..{:#x} of {} MiB (nonce {nonce:#x})",
        FS_OFFSET + FS_BYTES,
        initlib::pmem::total() >> 20
    );
    run_fsapp(if check { "check" } else { "create" }, FS_BYTES, nonce, 0)?;
    if check {
        // No region given: refused by name.
        run_fsapp("check", 0, nonce, 2)?;
    }
    Ok(())
}

/// libfs's NVMe range: MiB 256..384 of the namespace (the disk plan).
const NVME_WINDOW_MIB: (u64, u64) = (256, 128);
/// The block-service region: 3 ring pages and a 1 MiB data area.
const NVME_REGION_PAGES: u64 = 3 + 256;
/// fsapp's pager budget (`fsapp`'s `nvme::BUDGET`) and the spare frames
/// that become the page tables of its mapping window.
const PAGER_FRAMES: u64 = 256;
const PAGER_TABLE_FRAMES: u64 = 8;

/// `libfs_nvme_create`, `libfs_nvme_check` and `libfs_big`: `fsapp nvme
/// <phase>` on libfs's NVMe window through the block service.
pub fn libfs_nvme(phase: &str) -> Outcome {
    // One-boot `libfs_big` gets no nonce from the harness (its pattern is
    // fixed); the two boots of `libfs_nvme` share one.
    let nonce = if phase == "big" { crate::basic::nonce().unwrap_or(0xb16) } else { crate::basic::nonce()? };
    initlib::kvdb::with_block_service(NVME_WINDOW_MIB, NVME_REGION_PAGES, |region, bytes| {
        println!(
            "init: fsapp nvme {phase} (nonce {nonce:#x}) on NVMe MiB {}..{} through nvmed serve, pager budget {PAGER_FRAMES} frames",
            NVME_WINDOW_MIB.0,
            NVME_WINDOW_MIB.0 + NVME_WINDOW_MIB.1
        );
        let c = start_fsapp_nvme(phase, region, bytes, nonce)?;
        let what = format!("fsapp nvme {phase}");
        if phase == "big" {
            return refused_store(&c, &what, nonce);
        }
        finish_fsapp(&c, &what)
    })
}

/// Spawn `fsapp nvme <args>` on the block service's `region` and start it.
fn start_fsapp_nvme(args: &str, region: u64, bytes: u64, nonce: u64) -> Result<spawn::Child, String> {
    let args = format!("nvme {args}");
    let words = [exo_rt::layout::SHARED_VA, bytes, nonce];
    let c = spawn::spawn_named(
        "fsapp",
        &Options {
            args: &args,
            words: &words,
            heap_pages: FSAPP_HEAP_PAGES,
            spare_pages: PAGER_FRAMES + PAGER_TABLE_FRAMES,
            paused: true,
        },
    )?;
    initlib::regions::link(&c, region, exo_abi::Rights::WRITE)?;
    sched::start(c.slot);
    Ok(c)
}

fn finish_fsapp(c: &spawn::Child, what: &str) -> Outcome {
    match spawn::finish(c, what)? {
        0 => {
            println!("init: {what}: exit code 0 (passed)");
            Ok(())
        }
        code => Err(format!("{what} exited with {code} ({})", meaning(code))),
    }
}

/// The power-fail pass's libfs workload (`cargo xtask powerfail`,
/// `pfpath=fs`): `fsapp nvme pfload <operations>` (on the drive behind
/// `blklogwrites`) or `fsapp nvme pfcheck` (on a rebuilt medium), on
/// libfs's NVMe window through the block service (fsapp's `powerfail.rs`).
pub fn powerfail(phase: &str, ops: &str, nonce: u64) -> Outcome {
    initlib::kvdb::with_block_service(NVME_WINDOW_MIB, NVME_REGION_PAGES, |region, bytes| {
        println!(
            "init: fsapp nvme {phase} {ops} (nonce {nonce:#x}) on NVMe MiB {}..{} through nvmed serve",
            NVME_WINDOW_MIB.0,
            NVME_WINDOW_MIB.0 + NVME_WINDOW_MIB.1
        );
        let c = start_fsapp_nvme(&format!("{phase} {ops}"), region, bytes, nonce)?;
        finish_fsapp(&c, &format!("fsapp nvme {phase}"))
    })
}

/// `fsapp nvme big` ends by storing through a read-only mapping of its
/// file, after putting the nonce in mailbox word 1 (everything before
/// passed): the pager must refuse the fault and the runtime end it.
fn refused_store(c: &spawn::Child, what: &str, nonce: u64) -> Outcome {
    let outcome = spawn::finish(c, what);
    let passed = exo_rt::mem::read(spawn::mailbox(c) + 8) == nonce;
    match outcome {
        Err(e) if passed && e.contains("panicked") => {
            println!("init: {what}: passed, then its store through a read-only mapping was refused ({e})");
            Ok(())
        }
        Err(e) => Err(format!("{what} failed before its read-only store: {e}")),
        Ok(code) if !passed => Err(format!("{what} exited with {code} ({})", meaning(code))),
        Ok(code) => Err(format!("{what} exited with {code}: its store through a read-only mapping was not refused")),
    }
}
