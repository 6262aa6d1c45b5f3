//! The workload under a rebootless kernel upgrade (QEMU test
//! `kernel_upgrade`): create a database, then commit (`Sync`) in a loop
//! until init writes 1 to mailbox word 0, then verify the whole state
//! after the last commit (`powerfail::verify`: every key holds the value of
//! its last commit) and exit.
//!
//! Mailbox words, for init to read at any instant (init runs first after
//! each upgrade, so what it reads then is the state at the switch):
//! word 1 the last acknowledged commit, word 2 the commit being made
//! (started, perhaps not acknowledged: in flight), word 3 the number of
//! kernel upgrades this process has seen (`kinfo::W_UPGRADE_DONE`), word 4
//! the largest TSC gap between two acknowledged commits with an upgrade
//! between them, word 5 the largest gap without one, word 6 the TSC gap
//! from the last upgrade's jump (`W_UPGRADE_TSC_JUMP`) to this process's
//! first look at the kernel info page after it (an upper bound on its own
//! pause: it includes the rest of the commit it was in).

use crate::error::KvdbError;
use crate::powerfail::{commit_numbered, verify};
use alloc::format;
use exo_abi::kinfo as ki;
use exo_rt::layout::MAILBOX_VA;
use exo_rt::{mem, println};
use initlib::kvdb::upgrade_mailbox::{GAP_ACROSS, GAP_OTHER, LAST_ACK, SEEN_AFTER_JUMP, STARTED, UPGRADES_SEEN};
use libdb::{Db, Durability, Storage};

fn kinfo(word: usize) -> u64 {
    exo_rt::mmio::Window::new(exo_rt::layout::SCRATCH_VA, exo_abi::PAGE_SIZE).map_or(0, |p| p.read64(8 * word as u64))
}

pub fn run<S: Storage>(storage: S, nonce: u64) -> Result<S, KvdbError> {
    let db = Db::create(storage, crate::workload::options()).map_err(|e| KvdbError::db(e, "creating".into()))?;
    let mut seq = 0u64;
    let mut seen = kinfo(ki::W_UPGRADE_DONE);
    let mut last_ack_tsc = exo_rt::time::rdtsc();
    let (mut gap_across, mut gap_other) = (0u64, 0u64);
    while mem::read(MAILBOX_VA) == 0 {
        seq += 1;
        mem::write(MAILBOX_VA + STARTED, seq);
        commit_numbered(&db, nonce, seq, Durability::Sync)?;
        mem::write(MAILBOX_VA + LAST_ACK, seq);
        let now = exo_rt::time::rdtsc();
        let done = kinfo(ki::W_UPGRADE_DONE);
        let gap = now - last_ack_tsc;
        if done != seen {
            gap_across = gap_across.max(gap);
            mem::write(MAILBOX_VA + SEEN_AFTER_JUMP, now.saturating_sub(kinfo(ki::W_UPGRADE_TSC_JUMP)));
            seen = done;
            mem::write(MAILBOX_VA + UPGRADES_SEEN, seen);
            mem::write(MAILBOX_VA + GAP_ACROSS, gap_across);
        } else {
            gap_other = gap_other.max(gap);
            mem::write(MAILBOX_VA + GAP_OTHER, gap_other);
        }
        last_ack_tsc = now;
    }
    let last = verify(&db, nonce)?;
    if last != seq {
        return Err(KvdbError::Mismatch(format!("the database holds commit {last}, commit {seq} was acknowledged")));
    }
    println!("kvdb: upgload: {seq} commits, every key verified; {seen} kernel upgrades seen");
    Ok(db.into_storage())
}
