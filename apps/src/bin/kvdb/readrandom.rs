//! `readrandom` (issue #13): random point reads of a database on
//! persistent memory, by one reader per core.
//!
//! * `pmem rrload <keys>`: create a database on the region init moved
//!   here, put keys `0..keys` (`eval_lines::readscale::key`, 100-byte
//!   values that are a function of the nonce) in sync commits of
//!   `LOAD_BATCH`, checkpoint (the whole tree in pages, an empty log),
//!   look every key up once, close.
//! * `pmem readrandom <keys> <ops> <readers> <reader> <cpu>`: the region
//!   is a *read-only share* of those pages (init shares the same pages with
//!   every reader); `Db::open_read_only`; a warm-up of [`WARMUP_OPS`] gets;
//!   tell init it is ready and wait for its go (mailbox words
//!   `initlib::readscale::mailbox`); then `ops` gets of keys drawn
//!   from its own stream (`readscale::stream(nonce, reader)`), every value
//!   compared with what was written (a wrong or missing value fails the
//!   run, naming the reader, the get and the key). Its system calls,
//!   upcalls, faults and libdb's medium reads over the loop, and the TSC at
//!   its ends, go to the mailbox; init prints the `EXO-READER` lines.

use crate::error::KvdbError;
use alloc::format;
use alloc::string::String;
use eval_lines::readscale::{self as rs, LOAD_BATCH, VALUE_BYTES};
use exo_rt::layout::MAILBOX_VA;
use exo_rt::time::rdtsc;
use exo_rt::{mem, println};
use initlib::readscale::mailbox as word;
use libdb::{Db, Durability, Storage};

/// Gets before the measured loop (their own key stream): the page cache
/// fills and the code and heap are warm.
pub const WARMUP_OPS: u64 = 3000;
/// The marker key: which run made the database.
const MARKER_KEY: &[u8] = b"~readrandom-nonce";

fn number(words: &mut core::str::SplitWhitespace, what: &str) -> Result<u64, KvdbError> {
    let w = words.next().ok_or_else(|| KvdbError::Usage(format!("readrandom needs {what}")))?;
    w.parse().map_err(|_| KvdbError::Usage(format!("{what}: {w:?} is not a number")))
}

fn printable(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

/// `rrload <keys>`: build the database the readers read.
pub fn load<S: Storage>(
    storage: S,
    words: &mut core::str::SplitWhitespace,
    nonce: u64,
    tsc_per_us: u64,
) -> Result<S, KvdbError> {
    let keys = number(words, "<keys>")?;
    if keys == 0 {
        return Err(KvdbError::Usage("rrload: 0 keys".into()));
    }
    let t0 = rdtsc();
    let db = Db::create(storage, crate::workload::options())
        .map_err(|e| KvdbError::db(e, "creating the readrandom database".into()))?;
    let put = |from: u64, to: u64| -> Result<(), KvdbError> {
        let ctx = || format!("loading keys {from}..{to}");
        let mut w = db.begin_write().map_err(|e| KvdbError::db(e, ctx()))?;
        if from == 0 {
            w.put(MARKER_KEY, &nonce.to_le_bytes()).map_err(|e| KvdbError::db(e, ctx()))?;
        }
        for i in from..to {
            w.put(&rs::key(i), &rs::value(nonce, i)).map_err(|e| KvdbError::db(e, ctx()))?;
        }
        w.commit(Durability::Sync).map_err(|e| KvdbError::db(e, ctx()))
    };
    let mut from = 0;
    while from < keys {
        let to = (from + LOAD_BATCH).min(keys);
        put(from, to)?;
        from = to;
    }
    db.checkpoint().map_err(|e| KvdbError::db(e, "checkpointing the loaded database".into()))?;
    let load_tsc = rdtsc() - t0;
    for i in 0..keys {
        check_get(&db, nonce, i, "the loader's check", 0)?;
    }
    let st = db.stats();
    println!(
        "kvdb: readrandom: loaded {keys} keys of {VALUE_BYTES} bytes in {} sync commits and checkpointed ({} checkpoints, \
         {} pages written, {} KiB written) in {} ms; every key read back",
        keys.div_ceil(LOAD_BATCH),
        st.checkpoints,
        st.pages_written,
        st.io.bytes_written / 1024,
        load_tsc / tsc_per_us.max(1) / 1000
    );
    db.close().map_err(|e| KvdbError::db(e, "closing the loaded database".into()))
}

/// Get key `i` and require the value written for it.
fn check_get<S: Storage>(db: &Db<S>, nonce: u64, i: u64, who: &str, op: u64) -> Result<(), KvdbError> {
    let k = rs::key(i);
    match db.get(&k) {
        Ok(Some(v)) if rs::value_matches(nonce, i, &v) => Ok(()),
        Ok(Some(v)) => Err(KvdbError::Mismatch(format!(
            "{who}, get {op}: key {:?} answered a wrong value ({} bytes, {VALUE_BYTES} written)",
            printable(&k),
            v.len()
        ))),
        Ok(None) => Err(KvdbError::Mismatch(format!("{who}, get {op}: key {:?} is missing", printable(&k)))),
        Err(e) => Err(KvdbError::db(e, format!("{who}, get {op} of key {:?}", printable(&k)))),
    }
}

/// `readrandom <keys> <ops> <readers> <reader> <cpu>` on a read-only share.
pub fn read<S: Storage>(storage: S, words: &mut core::str::SplitWhitespace, nonce: u64) -> Result<S, KvdbError> {
    let keys = number(words, "<keys>")?;
    let ops = number(words, "<ops>")?;
    let readers = number(words, "<readers>")?;
    let reader = number(words, "<reader>")?;
    let cpu = number(words, "<cpu>")?;
    if keys == 0 || reader >= readers {
        return Err(KvdbError::Usage(format!("readrandom: {keys} keys, reader {reader} of {readers}")));
    }
    let who = format!("reader {reader} (CPU {cpu})");
    let db = Db::open_read_only(storage, crate::workload::options())
        .map_err(|e| KvdbError::db(e, format!("{who}: opening the database read-only")))?;
    match db.get(MARKER_KEY).map_err(|e| KvdbError::db(e, format!("{who}: reading the marker")))? {
        Some(v) if v == nonce.to_le_bytes() => {}
        other => {
            return Err(KvdbError::Mismatch(format!(
                "{who}: the database was not made by this run's rrload (marker {other:02x?}, nonce {nonce:#x})"
            )))
        }
    }
    let mut warm = rs::stream(nonce, reader + 1000);
    for op in 0..WARMUP_OPS.min(ops) {
        check_get(&db, nonce, rs::next_key(&mut warm, keys), &who, op)?;
    }
    mem::write(MAILBOX_VA + word::READY, 1);
    while mem::read(MAILBOX_VA + word::GO) == 0 {
        exo_rt::yield_now();
    }

    // The measured loop: nothing in it but libdb's get and the check.
    let reads0 = db.stats().io.reads;
    let (calls0, upcalls0, faults0) = (exo_rt::sys::calls(), exo_rt::upcalls(), exo_rt::faults_handled());
    let mut stream = rs::stream(nonce, reader);
    let start = rdtsc();
    for op in 0..ops {
        check_get(&db, nonce, rs::next_key(&mut stream, keys), &who, op)?;
    }
    let end = rdtsc();
    let (calls, upcalls, faults) = (exo_rt::sys::calls(), exo_rt::upcalls(), exo_rt::faults_handled());
    let reads = db.stats().io.reads - reads0;

    mem::write(MAILBOX_VA + word::OPS, ops);
    mem::write(MAILBOX_VA + word::START_TSC, start);
    mem::write(MAILBOX_VA + word::END_TSC, end);
    mem::write(MAILBOX_VA + word::SYSCALLS, calls - calls0);
    mem::write(MAILBOX_VA + word::UPCALLS, upcalls - upcalls0);
    mem::write(MAILBOX_VA + word::FAULTS, faults - faults0);
    mem::write(MAILBOX_VA + word::STORAGE_READS, reads);
    println!(
        "kvdb: readrandom {who}: {ops} gets of {keys} keys, every value checked; {} system calls, {} faults, \
         {} medium reads in the loop",
        calls - calls0,
        faults - faults0,
        reads
    );
    Ok(db.into_storage())
}
