//! The workload of a database whose block driver is killed (QEMU test
//! `kill_driver`): init destroys `nvmed serve` at random instants while
//! this process commits; the commit in progress fails with the transport's
//! named error `DriverGone` (the region's driver epoch moved, `blockq`),
//! never a hang. The device then reconnects to the driver init started
//! next, the database is reopened (libdb recovery), and the state must be
//! that after the last acknowledged commit or the one after it (the
//! failed commit may have been durable without having returned).
//!
//! `drvload`: create the database, then commit with `Sync` (one key of the
//! power-fail workload's and the sequence key per commit) until init sets
//! mailbox word 0. The words it writes for init are defined once, in
//! `initlib::kvdb::drvload_mailbox`.

use crate::blockdev::BlockqDevice;
use crate::error::KvdbError;
use crate::powerfail::{key, value, verify, SEQ_KEY};
use alloc::format;
use exo_rt::layout::MAILBOX_VA;
use exo_rt::{mem, println};
use initlib::kvdb::drvload_mailbox as word;
use libdb::{BlockStorage, Db, Durability};

/// Yields a reconnect may wait for init's next driver (the restart takes
/// a few hundred of this process's yields under TCG).
const RECONNECT_YIELDS: u64 = 2_000_000;

type Storage = BlockStorage<BlockqDevice>;

pub fn run(dev: BlockqDevice, nonce: u64) -> Result<Storage, KvdbError> {
    let opts = crate::workload::options();
    let epoch = dev.epoch();
    let mut db = Db::create(BlockStorage::new(dev), opts).map_err(|e| KvdbError::db(e, "creating".into()))?;
    mem::write(MAILBOX_VA + word::RECOVERED_EPOCH, u64::from(epoch) + 1);
    let (mut acked, mut gone) = (0u64, 0u64);
    while mem::read(MAILBOX_VA) == 0 {
        let seq = acked + 1;
        match commit(&db, seq, nonce) {
            Ok(()) => {
                acked = seq;
                mem::write(MAILBOX_VA + word::LAST_ACK, seq);
                continue;
            }
            Err(e) => {
                let storage = db.into_storage();
                let Some((epoch, lost)) = storage.device().driver_gone() else {
                    return Err(KvdbError::db(e, format!("commit {seq}")));
                };
                gone += 1;
                mem::write(MAILBOX_VA + word::GONE_SEEN, gone);
                mem::write(MAILBOX_VA + word::LOST_IN_FLIGHT, u64::from(lost));
                println!(
                    "kvdb: commit {seq} failed: DriverGone (driver epoch {epoch}, {lost} requests lost in flight); {acked} acknowledged; reconnecting"
                );
                let (again, recovered) = reopen(storage.into_inner(), acked, nonce)?;
                db = again;
                acked = recovered;
                mem::write(MAILBOX_VA + word::LAST_ACK, acked);
            }
        }
    }
    let last = verify(&db, nonce)?;
    if last != acked {
        return Err(KvdbError::Mismatch(format!("state after commit {last}; {acked} were acknowledged")));
    }
    println!(
        "kvdb: drvload stopped after commit {acked}: {gone} DriverGone errors, each followed by reconnect and recovery"
    );
    Ok(db.into_storage())
}

/// Reconnect to the next driver, reopen (recovery), and require every
/// acknowledged commit: the state after `acked` or after `acked + 1`.
/// Returns the database and the commit recovered.
fn reopen(mut dev: BlockqDevice, acked: u64, nonce: u64) -> Result<(Db<Storage>, u64), KvdbError> {
    let t0 = exo_rt::time::rdtsc();
    let yields = dev.reconnect(RECONNECT_YIELDS).map_err(|e| KvdbError::Service(format!("reconnecting: {e}")))?;
    let epoch = dev.epoch();
    let db = Db::open(BlockStorage::new(dev), crate::workload::options())
        .map_err(|e| KvdbError::db(e, format!("recovering after DriverGone ({acked} acknowledged)")))?;
    let m = verify(&db, nonce)?;
    if m < acked || m > acked + 1 {
        return Err(KvdbError::Mismatch(format!(
            "recovered commit {m} after the driver died; commit {acked} was acknowledged last"
        )));
    }
    println!(
        "kvdb: reconnected under driver epoch {epoch} after {yields} yields, recovered commit {m} (acknowledged {acked}); every acknowledged commit present ({} TSC ticks)",
        exo_rt::time::rdtsc() - t0
    );
    mem::write(MAILBOX_VA + word::RECOVERED_EPOCH, u64::from(epoch) + 1);
    Ok((db, m))
}

fn commit(db: &Db<Storage>, seq: u64, nonce: u64) -> Result<(), libdb::Error> {
    let mut w = db.begin_write()?;
    w.put(&key(seq), &value(nonce, seq))?;
    w.put(SEQ_KEY, &seq.to_le_bytes())?;
    w.commit(Durability::Sync)
}
