//! The libdb-on-the-exokernel tests (`initlib::kvdb` starts the
//! database on each medium; these add the two-boot checks and the named
//! errors): `libdb_nvme`, `libdb_pmem` and `libdb_vf`, each a create boot
//! and a check boot sharing the run's nonce.

use alloc::format;
use alloc::string::String;
use exo_abi::{PAGE_SIZE, PMEM_VA};
use exo_rt::region::Region;
use initlib::kvdb::{expect_code, on_nvme, on_pmem, on_vf, run_pmem, spawn_kvdb, PMEM_BYTES, PMEM_OFFSET};

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
