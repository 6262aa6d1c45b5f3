//! The device-failure workload (QEMU test `io_errors`). QEMU's `blkdebug`
//! sits between the NVMe controller and its image and fails what the test
//! names; the controller reports a Write Fault or an Unrecovered Read
//! Error, the driver (`nvmed serve`) passes the status through the block
//! service, and kvdb must:
//! * never acknowledge a commit whose write or flush failed — it commits
//!   with `Sync` until a commit fails, then tries three more, and reports
//!   the last acknowledged commit in its mailbox (word 1) for the next boot;
//! * never show a failed commit to readers — after the failures the live
//!   handle must hold exactly the state after the last acknowledged one;
//! * never return data from a failed read — an open whose reads fail is a
//!   named error, and a later open (after re-attaching) recovers;
//! * name every failure, the device's status included.
//!
//! The commits are `powerfail`'s (same keys and values), so `verify`
//! checks any state by the commit number it claims.

use crate::blockdev::BlockqDevice;
use crate::error::KvdbError;
use crate::powerfail::{key, value, verify, SEQ_KEY};
use alloc::format;
use exo_rt::layout::MAILBOX_VA;
use exo_rt::mmio::Window;
use exo_rt::{mem, println};
use libdb::{BlockStorage, Db, Durability, Storage};

/// Failed attempts after the first before giving up.
const AFTER_FAILURE: u64 = 3;
/// Word of the mailbox page (child → parent) holding the last acknowledged commit.
pub const MAILBOX_LAST_ACK: u64 = 8;

/// Commits tried in each phase before the device must have failed.
const LIMIT: u64 = 1500;
/// Opens tried while the device fails reads.
const OPENS: u32 = 4;

/// `ioerr-flush`: a new database, then commits until the device fails
/// them (its flushes fail from some point on). `ioerr-check <min>`: open
/// while the device fails the first reads of the meta pages (each failure
/// named, then success), require the state after commit `min` or the one
/// after it (the failed commit's record may have reached the medium
/// although its flush failed), then commit until a write fails.
pub fn run(
    phase: &str,
    words: &mut core::str::SplitWhitespace,
    va: u64,
    bytes: u64,
    nonce: u64,
) -> Result<(), KvdbError> {
    let win = Window::new(va, bytes).ok_or_else(|| {
        KvdbError::MissingRegion(format!("block-service region {va:#x}+{bytes:#x} is not a valid window"))
    })?;
    let attach = || -> Result<BlockStorage<BlockqDevice>, KvdbError> {
        let dev = BlockqDevice::attach(win).map_err(|e| KvdbError::Service(format!("{e}")))?;
        Ok(BlockStorage::new(dev))
    };
    let db = if phase == "ioerr-flush" {
        Db::create(attach()?, crate::workload::options()).map_err(|e| KvdbError::db(e, "creating".into()))?
    } else {
        let min: u64 = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| KvdbError::Usage("ioerr-check needs the last acknowledged commit".into()))?;
        let mut failed_opens = 0;
        let db = loop {
            match Db::open(attach()?, crate::workload::options()) {
                Ok(db) => break db,
                Err(e) => {
                    let e = KvdbError::db(e, "opening".into());
                    if !device_failure(&e) {
                        return Err(e);
                    }
                    println!("kvdb: open failed, no data returned: {e}");
                    failed_opens += 1;
                    if failed_opens >= OPENS {
                        return Err(KvdbError::Mismatch(format!("{OPENS} opens failed: {e}")));
                    }
                }
            }
        };
        if failed_opens == 0 {
            return Err(KvdbError::Mismatch("no open failed: the injected read errors never reached it".into()));
        }
        let m = verify(&db, nonce)?;
        if m < min || m > min + 1 {
            return Err(KvdbError::Mismatch(format!(
                "recovered commit {m} after {failed_opens} failed opens; commit {min} was the last acknowledged"
            )));
        }
        println!(
            "kvdb: recovered commit {m} after {failed_opens} failed opens (commit {min} was the last acknowledged)"
        );
        db
    };
    let (storage, last_ack) = commit_until_failure(db, nonce, LIMIT)?;
    reopen(storage, nonce, last_ack)
}

/// What went wrong in a commit, if the device said so by name.
/// (An I/O error carrying the device's status, which kvdb's error text
/// names: see `error.rs`'s `DeviceSaid`.)
fn device_failure(e: &KvdbError) -> bool {
    matches!(e, KvdbError::Db(libdb::Error::Io { error: libdb::IoError::Device(code), .. }, _) if *code > 0)
}

/// Commit from the database's last commit on until one fails (at most
/// `limit` commits); the state must then be exactly the last acknowledged
/// one. Returns the storage and the last acknowledged commit.
pub fn commit_until_failure<S: Storage>(db: Db<S>, nonce: u64, limit: u64) -> Result<(S, u64), KvdbError> {
    let mut last_ack = verify(&db, nonce)?;
    mem::write(MAILBOX_VA + MAILBOX_LAST_ACK, last_ack);
    let (mut failures, mut first_failure) = (0u64, None);
    for _ in 0..limit {
        // A failed commit is tried again with the same number, so that
        // every state the database may show is "after commit M".
        let seq = last_ack + 1;
        let r = (|| {
            let mut w = db.begin_write()?;
            w.put(&key(seq), &value(nonce, seq))?;
            w.put(SEQ_KEY, &seq.to_le_bytes())?;
            w.commit(Durability::Sync)
        })();
        match r {
            Ok(()) => {
                if failures > 0 {
                    println!("kvdb: commit {seq} succeeded after {failures} failed attempts");
                }
                last_ack = seq;
                mem::write(MAILBOX_VA + MAILBOX_LAST_ACK, last_ack);
            }
            Err(e) => {
                // After a device failure libdb may refuse everything until
                // reopened (it fails closed): also a refusal by name.
                let closed = failures > 0 && e == libdb::Error::Poisoned;
                let e = KvdbError::db(e, format!("commit {seq}"));
                if !device_failure(&e) && !closed {
                    return Err(KvdbError::Mismatch(format!("commit {seq} failed without naming the device: {e}")));
                }
                println!("kvdb: commit {seq} not acknowledged: {e}");
                failures += 1;
                first_failure.get_or_insert(seq);
                if failures > AFTER_FAILURE {
                    break;
                }
            }
        }
    }
    let Some(failed) = first_failure else {
        return Err(KvdbError::Mismatch(format!("the device never failed in {limit} commits")));
    };
    // What readers see on this handle: exactly the last acknowledged
    // commit, or a refusal (the handle failed closed).
    let seen = match verify(&db, nonce) {
        Ok(seen) if seen == last_ack => format!("exactly commit {seen}"),
        Ok(seen) => {
            return Err(KvdbError::Mismatch(format!(
                "readers see commit {seen} after commit {failed} failed; the last acknowledged is {last_ack}"
            )))
        }
        Err(KvdbError::Db(libdb::Error::Poisoned, _)) => "a refusal (the handle failed closed)".into(),
        Err(e) => return Err(KvdbError::Mismatch(format!("reading after the failures: {e}"))),
    };
    println!(
        "kvdb: {failures} failed commits from commit {failed} on, none acknowledged; {last_ack} acknowledged; readers see {seen}"
    );
    Ok((db.into_storage(), last_ack))
}

/// Reopen after the failures (what a user does with a handle that failed
/// closed): the state after `last_ack` or the failed commit after it, or
/// a refusal naming the device if it still fails.
fn reopen<S: Storage>(storage: S, nonce: u64, last_ack: u64) -> Result<(), KvdbError> {
    match Db::open(storage, crate::workload::options()) {
        Ok(db) => {
            let m = verify(&db, nonce)?;
            if m < last_ack || m > last_ack + 1 {
                return Err(KvdbError::Mismatch(format!("reopened at commit {m}; {last_ack} was acknowledged last")));
            }
            println!("kvdb: reopened after the failures: commit {m} ({last_ack} acknowledged last)");
        }
        Err(e) => {
            let e = KvdbError::db(e, "reopening after the failures".into());
            if !device_failure(&e) {
                return Err(e);
            }
            println!("kvdb: reopening refused while the device still fails: {e}");
        }
    }
    Ok(())
}
