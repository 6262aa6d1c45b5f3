//! The workload of a database that is killed (QEMU test `kill_db`): init
//! destroys this process's address space at a random instant while it
//! commits, then starts a fresh kvdb in it, which must recover every
//! commit the killed one had acknowledged.
//!
//! `killload <min|new> <limit>`: open the database (`new`: create it; a
//! medium with no database is accepted only while nothing was
//! acknowledged, `min` 0), require the state after commit `min` or the one
//! after it (a commit may have been durable without having returned), then
//! commit with `Sync`, each acknowledged commit's number going to the
//! mailbox (word 1) at once — what init reads after the kill. `limit` 0:
//! until killed; otherwise that many commits, then exit.

use crate::error::KvdbError;
use crate::ioerr::MAILBOX_LAST_ACK;
use crate::powerfail::{commit_numbered, verify};
use alloc::format;
use exo_rt::layout::MAILBOX_VA;
use exo_rt::{mem, println};
use libdb::{Db, Durability, Storage};

pub fn run<S: Storage>(storage: S, words: &mut core::str::SplitWhitespace, nonce: u64) -> Result<S, KvdbError> {
    let usage = || KvdbError::Usage("killload needs <min|new> <limit>".into());
    let min = words.next().ok_or_else(usage)?;
    let limit: u64 = words.next().and_then(|w| w.parse().ok()).ok_or_else(usage)?;
    let opts = crate::workload::options();
    let (db, min) = if min == "new" {
        (Db::create(storage, opts).map_err(|e| KvdbError::db(e, "creating".into()))?, 0)
    } else {
        let min: u64 = min.parse().map_err(|_| usage())?;
        // Db::open consumes the storage, so whether it holds a database is
        // decided first (a kill during `create` leaves none).
        match Db::open_or_create(storage, opts) {
            Ok(db) => (db, min),
            Err(e) => return Err(KvdbError::db(e, format!("recovering (commit {min} was acknowledged)"))),
        }
    };
    let m = verify(&db, nonce)?;
    if m < min || m > min + 1 {
        return Err(KvdbError::Mismatch(format!("recovered commit {m}; commit {min} was acknowledged last")));
    }
    println!("kvdb: recovered commit {m} (the killed kvdb acknowledged {min})");
    mem::write(MAILBOX_VA + MAILBOX_LAST_ACK, m);
    let mut seq = m;
    while limit == 0 || seq < m + limit {
        seq += 1;
        commit_numbered(&db, nonce, seq, Durability::Sync)?;
        mem::write(MAILBOX_VA + MAILBOX_LAST_ACK, seq);
    }
    let last = verify(&db, nonce)?;
    println!("kvdb: {limit} more commits, state after commit {last}");
    Ok(db.into_storage())
}
