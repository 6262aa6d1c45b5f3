//! The libdb-on-the-exokernel tests (`initlib::kvdb` starts the
//! database on each medium; these add the two-boot checks and the named
//! errors): `libdb_nvme`, `libdb_pmem` and `libdb_vf`, each a create boot
//! and a check boot sharing the run's nonce.

use alloc::format;
use alloc::string::String;
use exo_abi::{PAGE_SIZE, PMEM_VA};
use exo_rt::region::Region;
use initlib::kvdb::{
    expect_code, on_nvme, on_nvme_as, on_pmem, on_vf, run_pmem, run_pmem_at, spawn_kvdb, FILE_NVME_WINDOW_MIB,
    FILE_PMEM_BYTES, FILE_PMEM_OFFSET, PMEM_BYTES, PMEM_OFFSET,
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
    // A medium with room for the log but not for the data.
    run_pmem("create", 320 * PAGE_SIZE, nonce, 4)
}

/// `libdb_vf_create` (`check` false) and `libdb_vf_check`: kvdb drives
/// VF 1 of the NVMe itself after the PF's driver brought it online.
pub fn libdb_vf(check: bool) -> Outcome {
    on_vf(check, crate::basic::nonce()?)
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
