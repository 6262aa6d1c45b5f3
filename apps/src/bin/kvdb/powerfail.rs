//! The power-fail workload (`cargo xtask powerfail`, issue: nothing
//! acknowledged is ever lost). The machine's NVMe drive sits behind QEMU's
//! `blklogwrites`, which records every write and flush that reaches the
//! emulated medium; the host later rebuilds the medium as a power cut at
//! some point would have left it and boots it into [`check`].
//!
//! * [`load`]: create a database, then commit `commits` times in one
//!   durability mode, each commit one put of key `seq % KEYS` (a value
//!   derived from the nonce and `seq`, 1..=400 bytes) and of [`SEQ_KEY`] =
//!   `seq`. After each call it prints what the call made durable:
//!   `EXO-PF durable seq=S written=B` means "commits 1..=S are durable once
//!   the first B bytes this process wrote are on the medium" — the host
//!   finds, in the device's write log, the first flush after the write that
//!   completed those B bytes. (Counting flushes would not do: QEMU drops a
//!   flush with no write since the last one before it reaches the log.)
//!   Sync: S = the commit just returned. Group and async: a flush during
//!   commit `seq` made `1..seq` durable (the record of `seq` itself may
//!   have been buffered after a checkpoint), and every 16th async commit
//!   is followed by `Db::sync`, which makes `1..=seq` durable.
//! * [`check`]: open (recovery), then require the state to be exactly the
//!   state after some commit M — every key holds the value of its last
//!   commit ≤ M, nothing else is there — and print
//!   `EXO-PF recovered seq=M`. The host requires M ≥ every acknowledged S.

use crate::error::KvdbError;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use exo_rt::println;
use libdb::{Db, Durability, Storage};

/// Distinct keys the commits cycle through.
pub const KEYS: u64 = 48;
/// The key holding the number of the last commit.
pub const SEQ_KEY: &[u8] = b"~pf-seq";
/// How often the async mode calls `Db::sync`.
const ASYNC_SYNC_EVERY: u64 = 16;

pub fn key(seq: u64) -> Vec<u8> {
    format!("pf{:04}", seq % KEYS).into_bytes()
}

/// Commit number `seq` of a numbered loop: its key's value and the
/// sequence key, as one transaction (what `verify` checks afterwards).
pub fn commit_numbered<S: Storage>(db: &Db<S>, nonce: u64, seq: u64, durability: Durability) -> Result<(), KvdbError> {
    let ctx = || format!("commit {seq}");
    let mut w = db.begin_write().map_err(|e| KvdbError::db(e, ctx()))?;
    w.put(&key(seq), &value(nonce, seq)).map_err(|e| KvdbError::db(e, ctx()))?;
    w.put(SEQ_KEY, &seq.to_le_bytes()).map_err(|e| KvdbError::db(e, ctx()))?;
    w.commit(durability).map_err(|e| KvdbError::db(e, ctx()))
}

/// The value commit `seq` stores: 1..=400 bytes, a function of both.
pub fn value(nonce: u64, seq: u64) -> Vec<u8> {
    let len = 1 + (seq.wrapping_mul(0x9e37_79b9) >> 7) % 400;
    let mut x = nonce ^ seq.wrapping_mul(0xff51_afd7_ed55_8ccd);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The durability modes, as `cargo xtask powerfail` names them.
pub fn mode(name: &str) -> Result<Durability, KvdbError> {
    match name {
        "sync" => Ok(Durability::Sync),
        "group" => Ok(Durability::Group(4)),
        "async" => Ok(Durability::Async),
        other => Err(KvdbError::Usage(format!("power-fail mode {other:?}: expected sync, group or async"))),
    }
}

/// Create the database and commit `commits` times, printing what became
/// durable. `written` reads the bytes this process has written to the device.
/// The two power-fail phases on any block storage (the block service or
/// an own VF): `pfload [<sync|group|async> [<commits>]]` runs the
/// workload; `pfcheck` recovers and judges, `None` when no database could
/// be opened (already reported on the serial line the host reads).
pub fn run<'a, S: Storage>(
    phase: &str,
    storage: S,
    words: &mut impl Iterator<Item = &'a str>,
    nonce: u64,
    written: impl Fn(&S) -> u64,
    flushes: impl Fn(&S) -> u64,
) -> Result<Option<S>, KvdbError> {
    if phase == "pfcheck" {
        return check(storage, nonce);
    }
    let mode = words.next().unwrap_or("sync");
    let commits = words.next().and_then(|w| w.parse().ok()).unwrap_or(300);
    load(storage, nonce, mode, commits, written, flushes).map(Some)
}

pub fn load<S: Storage>(
    storage: S,
    nonce: u64,
    mode_name: &str,
    commits: u64,
    written: impl Fn(&S) -> u64,
    flushes: impl Fn(&S) -> u64,
) -> Result<S, KvdbError> {
    let durability = mode(mode_name)?;
    let db = Db::create(storage, crate::workload::options()).map_err(|e| KvdbError::db(e, "creating".into()))?;
    println!("EXO-PF created written={}", db.with_storage(&written));
    println!("EXO-PF start mode={mode_name} commits={commits}");
    for seq in 1..=commits {
        let before = db.with_storage(&flushes);
        commit_numbered(&db, nonce, seq, durability)?;
        let mut durable = match durability {
            Durability::Sync => Some(seq),
            _ if db.with_storage(&flushes) > before => Some(seq - 1),
            _ => None,
        };
        if durability == Durability::Async && seq % ASYNC_SYNC_EVERY == 0 {
            db.sync().map_err(|e| KvdbError::db(e, format!("sync after commit {seq}")))?;
            durable = Some(seq);
        }
        if let Some(s) = durable.filter(|s| *s > 0) {
            println!("EXO-PF durable seq={s} written={}", db.with_storage(&written));
        }
    }
    println!("EXO-PF done commits={commits} written={}", db.with_storage(&written));
    // No close: the machine is cut off after this, like a power failure.
    Ok(db.into_storage())
}

/// Recover and require the state after exactly one commit M; print M.
/// A medium that holds no database is reported (`EXO-PF recovered none`,
/// `Ok(None)`): the host decides whether that is allowed (only before
/// `create` was acknowledged).
pub fn check<S: Storage>(storage: S, nonce: u64) -> Result<Option<S>, KvdbError> {
    let db = match Db::open(storage, crate::workload::options()) {
        Ok(db) => db,
        Err(e) => {
            println!("EXO-PF recovered none: {e}");
            return Ok(None);
        }
    };
    let m = verify(&db, nonce)?;
    println!("EXO-PF recovered seq={m}");
    Ok(Some(db.into_storage()))
}

/// Require the database to hold exactly the state after commit M (every
/// key the value of its last commit ≤ M, nothing else); returns M.
pub fn verify<S: Storage>(db: &Db<S>, nonce: u64) -> Result<u64, KvdbError> {
    let m = match db.get(SEQ_KEY).map_err(|e| KvdbError::db(e, "reading the sequence key".into()))? {
        None => 0,
        Some(v) => u64::from_le_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| KvdbError::Mismatch(format!("the sequence key holds {} bytes, not 8", v.len())))?,
        ),
    };
    let r = db.begin_read();
    let mut seen = 0u64;
    for item in r.iter() {
        let (k, v) = item.map_err(|e| KvdbError::db(e, "scanning".into()))?;
        seen += 1;
        if k == SEQ_KEY {
            continue;
        }
        let slot = parse_key(&k).ok_or_else(|| KvdbError::Mismatch(format!("unexpected key {}", printable(&k))))?;
        // The last commit ≤ m that wrote this key.
        let last = last_writer(slot, m).ok_or_else(|| {
            KvdbError::Mismatch(format!("key {} present, but no commit ≤ {m} wrote it", printable(&k)))
        })?;
        if v != value(nonce, last) {
            return Err(KvdbError::Mismatch(format!(
                "key {} holds {} bytes that are not commit {last}'s value (state after commit {m})",
                printable(&k),
                v.len()
            )));
        }
    }
    let expected = m.min(KEYS) + u64::from(m > 0);
    if seen != expected {
        return Err(KvdbError::Mismatch(format!("{seen} keys after commit {m}, expected {expected}")));
    }
    Ok(m)
}

fn parse_key(k: &[u8]) -> Option<u64> {
    let digits = core::str::from_utf8(k.strip_prefix(b"pf")?).ok()?;
    let slot = digits.parse::<u64>().ok()?;
    (digits.len() == 4 && slot < KEYS).then_some(slot)
}

fn last_writer(slot: u64, m: u64) -> Option<u64> {
    if m == 0 {
        return None;
    }
    // Commits writing `slot` are slot, slot + KEYS, ... (seq 0 does not exist).
    let last = m.checked_sub((m + KEYS - slot) % KEYS)?;
    (last >= 1).then_some(last)
}

fn printable(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}
