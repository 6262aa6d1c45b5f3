//! The libdb-on-the-exokernel tests (`initlib::kvdb` starts the
//! database on each medium; these add the two-boot checks and the named
//! errors): `libdb_nvme`, `libdb_pmem` and `libdb_vf`, each a create boot
//! and a check boot sharing the run's nonce.

use alloc::format;
use alloc::string::String;
use exo_abi::{PAGE_SIZE, PMEM_VA};
use exo_rt::println;
use exo_rt::region::Region;
use initlib::kvdb::{
    expect_code, on_nvme, on_nvme_as, on_nvme_phase, on_pmem, on_vf, run_pmem, run_pmem_at, spawn_kvdb,
    FILE_NVME_WINDOW_MIB, FILE_PMEM_BYTES, FILE_PMEM_OFFSET, PMEM_BYTES, PMEM_OFFSET,
};

type Outcome = Result<(), String>;

/// `libdb_nvme_create` (`check` false) and `libdb_nvme_check`.
pub fn libdb_nvme(check: bool) -> Outcome {
    on_nvme(check, crate::basic::nonce()?)
}

/// `libdb_pmem_create` (`check` false) and `libdb_pmem_check`, the two
/// boots of `libdb_pmem`, on the NVDIMM: init moves [`PMEM_BYTES`] of it
/// (from [`PMEM_OFFSET`] of its span) into each kvdb process at
/// `CHILD_PMEM_VA` and takes the pages back when it has exited. Boot 1
/// creates the database and commits; boot 2 reopens it after the reboot
/// (recovery replays the log tail) and checks it. Then, in boot 2, the
/// named errors: a damaged database, no region, a full medium.
pub fn libdb_pmem(check: bool) -> Outcome {
    let nonce = crate::basic::nonce()?;
    on_pmem(check, nonce)?;
    if !check {
        return Ok(());
    }
    // Errors are named, each with its own exit code. Both meta pages
    // damaged (through init's own mapping, made durable): a corrupt database.
    let mut meta =
        Region::claim(PMEM_VA + PMEM_OFFSET, 2 * PAGE_SIZE).map_err(|e| format!("claiming the meta pages: {e}"))?;
    meta.as_mut_slice().iter_mut().step_by(512).for_each(|b| *b ^= 0x5a);
    meta.persist(0, 2 * PAGE_SIZE as usize);
    meta.fence();
    drop(meta);
    run_pmem("check", PMEM_BYTES, nonce, 3)?;
    // No region given.
    expect_code(&spawn_kvdb("pmem check", 0, 0, nonce)?, "kvdb pmem check without a region", 2)?;
    // A medium too small for the database (kvdb's 256 log pages + 2 meta
    // pages + 4 tree pages): `create` refuses it with NoSpace. (A medium
    // with room for the log but not the tree no longer fails kvdb's
    // workload: checkpoints that find no room are rolled back and the
    // ~850 KiB of commits stay durable in the 1 MiB log; libdb's host
    // tests fill the log too, `tests/misuse.rs`.)
    run_pmem("create", 256 * PAGE_SIZE, nonce, 4)
}

/// `libdb_vf_create` (`check` false) and `libdb_vf_check`: kvdb drives
/// VF 1 of the NVMe itself after the PF's driver brought it online.
pub fn libdb_vf(check: bool) -> Outcome {
    on_vf(check, crate::basic::nonce()?)
}

/// `powerfail_load` (booted by `cargo xtask powerfail` with the NVMe drive
/// behind QEMU's `blklogwrites`): kvdb creates a database and commits in
/// the mode and number the command line's `pf=<mode>,<commits>` names,
/// printing what became durable (`kvdb`'s `powerfail.rs`).
pub fn powerfail_load() -> Outcome {
    let (mode, commits) = exo_rt::kinfo::cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pf="))
        .and_then(|v| v.split_once(','))
        .ok_or("no pf=<mode>,<commits> on the command line")?;
    on_nvme_phase(&format!("pfload {mode} {commits}"), crate::basic::nonce()?).map(|_| ())
}

/// `powerfail_check`: kvdb recovers the rebuilt medium and reports the
/// commit it holds; the host compares it with what was acknowledged.
pub fn powerfail_check() -> Outcome {
    on_nvme_phase("pfcheck", crate::basic::nonce()?).map(|_| ())
}

/// Where `io_errors` keeps, between its boots, the last commit kvdb
/// acknowledged before the device failed (a free part of the NVDIMM):
/// the nonce, then the commit number.
const IO_ERRORS_RECORD: u64 = 96 << 20;

/// `io_errors_flush` (boot 1; the harness makes every NVMe flush from the
/// 40th on fail): kvdb commits until its commits fail, acknowledges none
/// of those, and its readers see the last acknowledged state. The last
/// acknowledged commit goes to the NVDIMM for boot 2.
pub fn io_errors_flush() -> Outcome {
    let nonce = crate::basic::nonce()?;
    let last = on_nvme_phase("ioerr-flush", nonce)?;
    let mut rec = Region::claim(PMEM_VA + IO_ERRORS_RECORD, PAGE_SIZE).map_err(|e| format!("the record: {e}"))?;
    rec.as_mut_slice()[..16].copy_from_slice(&[nonce.to_le_bytes(), last.to_le_bytes()].concat());
    rec.persist(0, 16);
    rec.fence();
    println!("init: io_errors: kvdb's last acknowledged commit before the flushes failed: {last}");
    Ok(())
}

/// `io_errors_check` (boot 2; the harness fails the first reads of the
/// database's meta pages and every write of one log block): kvdb's opens
/// fail by name until the reads work, it recovers at least the last
/// acknowledged commit of boot 1, then commits until a write fails.
pub fn io_errors_check() -> Outcome {
    let nonce = crate::basic::nonce()?;
    let rec = Region::claim(PMEM_VA + IO_ERRORS_RECORD, PAGE_SIZE).map_err(|e| format!("the record: {e}"))?;
    let word = |i: usize| u64::from_le_bytes(rec.as_slice()[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    if word(0) != nonce {
        return Err(format!("no record of boot 1 on the NVDIMM (nonce {:#x}, expected {nonce:#x})", word(0)));
    }
    let last = word(1);
    drop(rec);
    on_nvme_phase(&format!("ioerr-check {last}"), nonce).map(|_| ())
}

/// `kill_db`: 50 kills of a committing kvdb at random instants; each fresh
/// kvdb recovers every acknowledged commit, and the killed ones' pages
/// come back to init (`initlib::kvdb::kill_loop`).
pub fn kill_db() -> Outcome {
    const KILLS: u32 = 50;
    let r = initlib::kvdb::kill_loop(KILLS, crate::basic::nonce_or_clock())?;
    // Every page init placed comes back: kvdb makes no tables and moves
    // none of its pages.
    if r.lost != 0 || r.pages == 0 {
        return Err(format!("{} pages came back, {} were lost", r.pages, r.lost));
    }
    Ok(())
}

/// `libdb_on_libfs_create` (`check` false) and `libdb_on_libfs_check`:
/// kvdb with libfs linked in keeps its database as the file
/// `/db/kvdb.db` of a libfs file system, on the NVDIMM ([`FILE_PMEM_BYTES`]
/// from [`FILE_PMEM_OFFSET`], moved into kvdb) and on the NVMe (MiB
/// [`FILE_NVME_WINDOW_MIB`] through `nvmed serve`). Boot 1 makes the file
/// system and the file and commits the plan (sync, group, async rounds and
/// batches) without closing; boot 2 runs fsck, mounts, opens the file,
/// recovers the database and checks every committed key/value and nothing
/// else. Then kvdb `file-pmem` without a region: refused by name.
pub fn libdb_on_libfs(check: bool) -> Outcome {
    let nonce = crate::basic::nonce()?;
    let phase = if check { "check" } else { "create" };
    run_pmem_at("file-pmem", FILE_PMEM_OFFSET, phase, FILE_PMEM_BYTES, nonce, 0)?;
    on_nvme_as("file-nvme", FILE_NVME_WINDOW_MIB, check, nonce)?;
    if check {
        expect_code(&spawn_kvdb("file-pmem check", 0, 0, nonce)?, "kvdb file-pmem check without a region", 2)?;
    }
    Ok(())
}

/// `recovery_nvme` / `recovery_pmem` (booted by `cargo xtask eval
/// --recovery` on its own machine): kvdb times the open of the database
/// the host built, as the command line's `recovery=<keys>,<tail
/// records>,<medium MiB>` describes it, and checks it is that database.
pub fn recovery(medium: &str) -> Outcome {
    let words: alloc::vec::Vec<u64> = exo_rt::kinfo::cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("recovery="))
        .ok_or("no recovery=<keys>,<tail records>,<medium MiB> on the command line")?
        .split(',')
        .map(|n| n.parse::<u64>().map_err(|_| format!("recovery=: {n:?} is not a number")))
        .collect::<Result<_, _>>()?;
    let [keys, tail, mib] = words[..] else {
        return Err(format!("recovery= has {} numbers, expected <keys>,<tail records>,<medium MiB>", words.len()));
    };
    initlib::kvdb::recover(medium, keys, tail, mib, crate::basic::nonce_or_clock())
}
