//! `kvdb <nvme|pmem> recover <keys> <tail records>`: the measured side of
//! `cargo xtask eval --recovery` (eval/RECOVERY.md). The medium holds the
//! database `eval_lines::recovery` defines, built on the host and cut
//! without a close. This times `Db::open` (recovery: metas, freelist, log
//! replay, the check beyond the replayed prefix) with the time stamp
//! counter and counts what it asked of the medium, then checks that the
//! database is the expected one — its key count, the records replayed,
//! and the values of the sample keys — and prints one `EXO-RECOVERY`
//! line. It ends without closing, as the eval needs the medium unchanged
//! for its next boot (an open that found nothing to erase wrote nothing
//! but a barrier).

use crate::error::KvdbError;
use alloc::format;
use eval_lines::recovery::{self as plan, RecoveryLine};
use exo_rt::println;
use exo_rt::time::rdtsc;
use libdb::{Db, Options, Storage};

/// What the device below libdb was asked: read commands, bytes read,
/// write commands, flushes (`None` on pmem, which has no commands).
pub type DeviceCounts = Option<(u64, u64, u64, u64)>;

fn number(words: &mut core::str::SplitWhitespace, what: &str) -> Result<u64, KvdbError> {
    let w =
        words.next().ok_or_else(|| KvdbError::Usage(format!("recover needs <keys> <tail records>: no <{what}>")))?;
    w.parse().map_err(|_| KvdbError::Usage(format!("recover: <{what}> {w:?} is not a number")))
}

pub fn run<S: Storage>(
    storage: S,
    medium: &str,
    words: &mut core::str::SplitWhitespace,
    tsc_per_us: u64,
    device: impl Fn(&S) -> DeviceCounts,
) -> Result<S, KvdbError> {
    let keys = number(words, "keys")?;
    let tail = number(words, "tail records")?;
    if keys == 0 {
        return Err(KvdbError::Usage("recover: a database of 0 keys".into()));
    }
    let opts = Options { cache_pages: plan::CACHE_PAGES, log_pages: plan::LOG_PAGES, checkpoint_log_bytes: 0 };
    let dev0 = device(&storage);
    let calls0 = exo_rt::sys::calls();
    let t0 = rdtsc();
    let db = Db::open(storage, opts).map_err(|e| KvdbError::db(e, "opening the database (recovery)".into()))?;
    let t1 = rdtsc();
    let calls = exo_rt::sys::calls() - calls0;
    let s = db.stats();
    let dev1 = db.with_storage(|st| device(st));
    // Is it the database the host built? The key count, the tail...
    if s.tree_entries != keys {
        return Err(KvdbError::Mismatch(format!("{} keys in the tree, expected {keys}", s.tree_entries)));
    }
    if s.replayed_records != tail {
        return Err(KvdbError::Mismatch(format!("{} log records replayed, expected {tail}", s.replayed_records)));
    }
    // ... and the values (after the timed open: these read tree pages).
    let sample = plan::sample_keys(keys);
    for &i in &sample {
        let got = db.get(&plan::key(i)).map_err(|e| KvdbError::db(e, format!("reading key {i}")))?;
        match got {
            Some(v) if v == plan::expected_value(keys, tail, i) => {}
            Some(v) => {
                return Err(KvdbError::Mismatch(format!("key {i}: a {}-byte value, not the expected one", v.len())))
            }
            None => return Err(KvdbError::Mismatch(format!("key {i} is missing"))),
        }
    }
    let d = |f: fn(&(u64, u64, u64, u64)) -> u64| match (dev0, dev1) {
        (Some(a), Some(b)) => Some(f(&b) - f(&a)),
        _ => None,
    };
    let line = RecoveryLine {
        medium: medium.into(),
        keys,
        tail_records: tail,
        db_pages: s.db_pages,
        open_tsc: t1 - t0,
        tsc_per_us,
        replayed_records: s.replayed_records,
        erased_records: s.erased_records,
        storage_reads: s.io.reads,
        storage_bytes_read: s.io.bytes_read,
        storage_writes: s.io.writes,
        storage_barriers: s.io.barriers,
        device_read_cmds: d(|c| c.0),
        device_bytes_read: d(|c| c.1),
        device_write_cmds: d(|c| c.2),
        device_flushes: d(|c| c.3),
        kvdb_syscalls: calls,
        checked_keys: sample.len() as u64,
    };
    println!("{line}");
    println!(
        "kvdb: recovered {keys} keys and {tail} log records in {:.3} ms ({} TSC ticks); {} sample keys checked",
        line.open_us() / 1000.0,
        line.open_tsc,
        sample.len()
    );
    // No close: the medium stays as the host built it.
    Ok(db.into_storage())
}
