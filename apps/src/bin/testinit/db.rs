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
/// printing what became durable (`kvdb`'s `powerfail.rs`). The path is
/// the command line's `pfpath=`: `service` (the default: the block
/// service), `vf` (kvdb drives VF 1 itself) or `fs` (fsapp's libfs
/// workload on the block service, `pf=fs,<operations>`).
pub fn powerfail_load() -> Outcome {
    let (mode, commits) = exo_rt::kinfo::cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pf="))
        .and_then(|v| v.split_once(','))
        .ok_or("no pf=<mode>,<commits> on the command line")?;
    let nonce = crate::basic::nonce()?;
    match powerfail_path()? {
        "vf" => initlib::kvdb::on_vf_phase("pfload", &format!("{mode} {commits}"), nonce).map(|_| ()),
        "fs" => crate::fs::powerfail("pfload", commits, nonce),
        _ => on_nvme_phase(&format!("pfload {mode} {commits}"), nonce).map(|_| ()),
    }
}

/// `powerfail_check`: kvdb (or fsapp, `pfpath=fs`) recovers the rebuilt
/// medium and reports the commit it holds; the host compares it with what
/// was acknowledged.
pub fn powerfail_check() -> Outcome {
    let nonce = crate::basic::nonce()?;
    match powerfail_path()? {
        "vf" => initlib::kvdb::on_vf_phase("pfcheck", "", nonce).map(|_| ()),
        "fs" => crate::fs::powerfail("pfcheck", "", nonce),
        _ => on_nvme_phase("pfcheck", nonce).map(|_| ()),
    }
}

/// The command line's `pfpath=` (`service` if absent).
fn powerfail_path() -> Result<&'static str, String> {
    let path = exo_rt::kinfo::cmdline().split_whitespace().find_map(|w| w.strip_prefix("pfpath=")).unwrap_or("service");
    match path {
        "service" => Ok("service"),
        "vf" => Ok("vf"),
        "fs" => Ok("fs"),
        other => Err(format!("pfpath={other}: expected service, vf or fs")),
    }
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

/// `kill_driver`: kvdb commits on the block service while init kills
/// `nvmed serve` 16 times at random instants (testrng, seeded with the
/// run's nonce) and restarts it; kvdb reports each death as `DriverGone`,
/// reconnects, recovers and finds every acknowledged commit; every page
/// of the killed drivers comes back (DMA pages to the lent pool) and the
/// frames handed out return to where they were, but for what init keeps
/// on purpose (`initlib::drvrestart`).
pub fn kill_driver() -> Outcome {
    const KILLS: u32 = 16;
    let nonce = crate::basic::nonce_or_clock();
    let r = initlib::drvrestart::kill_driver_loop(KILLS, nonce, nonce)?;
    println!(
        "init: kill_driver: {} kills, {} with requests outstanding ({} unanswered in all); {} pages came back ({} of them DMA pages), {} lost; {} commits acknowledged; frames handed out {} before, {} after the first restart, {} after the last, {} at the end",
        r.kills,
        r.kills_with_requests_outstanding,
        r.unanswered_total,
        r.pages_reclaimed,
        r.device_pages_reclaimed,
        r.lost,
        r.acked,
        r.frames_before,
        r.frames_after_first_kill,
        r.frames_after_last_kill,
        r.frames_after
    );
    if r.lost != 0 || r.device_pages_reclaimed == 0 {
        return Err(format!("{} pages lost, {} DMA pages came back", r.lost, r.device_pages_reclaimed));
    }
    // What init keeps: the block-service region and its tables, and per
    // incarnation the pages it lent (args, console, mailbox: shared, so
    // never reused as tables) — nothing that grows with the work done.
    // A restart gives back every page of the dead driver and keeps only
    // its 3 lent pages: no growth beyond that from kill to kill (slack
    // for init's own heap).
    let per_kill = r.frames_after_last_kill.saturating_sub(r.frames_after_first_kill);
    if per_kill > 3 * u64::from(KILLS - 1) + 16 {
        return Err(format!("frames handed out grew by {per_kill} over {} restarts (3 each expected)", KILLS - 1));
    }
    let kept = r.frames_after.saturating_sub(r.frames_before);
    let allowed = initlib::drvrestart::REGION_FRAMES + 4 * (u64::from(KILLS) + 2) + 64;
    if kept > allowed {
        return Err(format!("{kept} frames did not come back after {KILLS} driver kills (at most {allowed} may stay)"));
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
