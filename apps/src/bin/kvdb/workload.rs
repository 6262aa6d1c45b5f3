//! The work kvdb does on either medium, and how it checks it.
//!
//! Everything is a pure function of the nonce init passes (the same on
//! both boots of a two-boot test), so the checking run recomputes exactly
//! what the creating run committed:
//! * `commit` (measured, the eval matrix's `commit` workload): one put of
//!   a 16-digit key and a 100-byte value per commit, 200 commits each with
//!   `Durability::Sync`, `Group(8)` and `Async` (the 200 keys are preloaded
//!   first in one transaction, as Linux's eval-bench does; each round
//!   overwrites them; the async round ends with `Db::sync`);
//! * `batch` (measured): commits of 24 puts with values of 1..=300 bytes
//!   (every 40th key 3,000 bytes: overflow pages), every 4th commit also
//!   deleting 3 and overwriting 3 earlier keys;
//! * a transaction that is aborted (its keys must never appear).
//!
//! The check compares a full scan with the model, in order, and looks up
//! every key: every committed value exactly, nothing else.

use crate::error::KvdbError;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use eval_lines::DbLine;
use exo_rt::println;
use exo_rt::time::rdtsc;
use libdb::{Db, Durability, Options, Storage};

pub const COMMIT_OPS: u64 = 200;
pub const COMMIT_VALUE_BYTES: usize = 100;
pub const BATCH_COMMITS: u64 = 100;
pub const BATCH_PUTS: u64 = 24;
const MARKER_KEY: &[u8] = b"~kvdb-nonce";
/// The `commit` rounds, named as the eval's durability column names them.
pub const DURABILITIES: [(&str, Durability); 3] =
    [("sync", Durability::Sync), ("group8", Durability::Group(8)), ("async", Durability::Async)];

/// The database's knobs on the exokernel: a 4 MiB page cache, a 1 MiB log
/// and a checkpoint every 256 KiB of log, so the run checkpoints several
/// times and the checking boot replays a log tail.
pub fn options() -> Options {
    Options { cache_pages: 1024, log_pages: 256, checkpoint_log_bytes: 256 << 10 }
}

/// What the medium below libdb did (block service requests, this
/// process's own NVMe commands and doorbells, or pmem flushes), for the
/// per-op counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct MediumCounts {
    pub device_writes: u64,
    pub device_flushes: u64,
    pub device_bytes: u64,
    pub requests: u64,
    pub bytes_copied: u64,
    pub yields: u64,
    pub lines_flushed: u64,
    /// Doorbell writes by this process (only when it drives the
    /// controller itself: 0 through the block service, whose driver rings).
    pub doorbells: u64,
}

type Write = (Vec<u8>, Option<Vec<u8>>);

/// SplitMix64: a small deterministic generator.
struct Mix(u64);
impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn value(nonce: u64, id: u64, version: u64, len: usize) -> Vec<u8> {
    let mut m = Mix(nonce ^ id.wrapping_mul(0x1000_0000_01b3) ^ version << 48);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let w = m.next().to_le_bytes();
        v.extend_from_slice(&w[..(len - v.len()).min(8)]);
    }
    v
}

/// The `commit` workload's key `i`: 16 ASCII digits (as the eval's `key_of`).
fn commit_key(i: u64) -> Vec<u8> {
    format!("{i:016}").into_bytes()
}

fn batch_key(i: u64) -> Vec<u8> {
    format!("b{i:08}").into_bytes()
}

fn batch_len(nonce: u64, i: u64) -> usize {
    if i % 40 == 39 {
        3000
    } else {
        1 + (Mix(nonce ^ i).next() % 300) as usize
    }
}

/// Every commit of a run, in order: the marker, the preload, the `commit`
/// workload, the `batch` workload.
pub struct Plan {
    pub marker: Vec<Write>,
    /// One transaction putting every key of the `commit` rounds before the
    /// first of them (values no round writes), as Linux's eval-bench
    /// preloads its store before a measured phase (one transaction of up
    /// to `PRELOAD_BATCH` = 1,000 puts): every round then updates keys the
    /// database holds, in both systems. Without it kvdb's sync round was
    /// the only one inserting new keys (~1,000 instructions more per
    /// commit in the overlay's ordered index: eval/DB.md).
    pub preload: Vec<Write>,
    /// The `commit` rounds, one per entry of [`DURABILITIES`].
    pub singles: Vec<Vec<Write>>,
    pub batches: Vec<Vec<Write>>,
}

pub fn plan(nonce: u64) -> Plan {
    let marker = alloc::vec![(MARKER_KEY.to_vec(), Some(nonce.to_le_bytes().to_vec()))];
    let preload_round = DURABILITIES.len() as u64;
    let preload =
        (0..COMMIT_OPS).map(|i| (commit_key(i), Some(value(nonce, i, preload_round, COMMIT_VALUE_BYTES)))).collect();
    let singles = (0..DURABILITIES.len() as u64)
        .map(|round| {
            (0..COMMIT_OPS).map(|i| (commit_key(i), Some(value(nonce, i, round, COMMIT_VALUE_BYTES)))).collect()
        })
        .collect();
    let mut batches = Vec::new();
    let mut next = 0u64;
    let mut m = Mix(nonce.rotate_left(17));
    for c in 0..BATCH_COMMITS {
        let mut w: Vec<Write> = Vec::new();
        for _ in 0..BATCH_PUTS {
            w.push((batch_key(next), Some(value(nonce, 1 << 32 | next, 0, batch_len(nonce, next)))));
            next += 1;
        }
        if c % 4 == 3 {
            let earlier = next - BATCH_PUTS;
            for k in 0..6 {
                let victim = m.next() % earlier;
                let key = batch_key(victim);
                if w.iter().any(|(x, _)| *x == key) {
                    continue;
                }
                let v = if k < 3 {
                    None
                } else {
                    Some(value(nonce, 1 << 32 | victim, c + 1, batch_len(nonce, victim + c)))
                };
                w.push((key, v));
            }
        }
        batches.push(w);
    }
    Plan { marker, preload, singles, batches }
}

impl Plan {
    /// The database's expected contents after every commit.
    pub fn model(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut m = BTreeMap::new();
        let all = self
            .marker
            .iter()
            .chain(&self.preload)
            .chain(self.singles.iter().flatten())
            .chain(self.batches.iter().flatten());
        for (k, v) in all {
            match v {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
        m
    }
    pub fn puts(&self) -> usize {
        self.marker.len()
            + self.preload.len()
            + self.singles.iter().map(Vec::len).sum::<usize>()
            + self.batches.iter().flatten().filter(|(_, v)| v.is_some()).count()
    }
    pub fn commits(&self) -> usize {
        2 + self.singles.iter().map(Vec::len).sum::<usize>() + self.batches.len()
    }
}

/// Keys of the aborted transaction: never committed, never visible.
fn ghost_keys() -> impl Iterator<Item = Vec<u8>> {
    (0..16u64).map(|i| format!("ghost{i:04}").into_bytes())
}

fn printable(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

/// `what` names the commit in an error; it is formatted only then (a
/// `format!` per commit would be measured as the commit's own work).
fn commit<S: Storage>(
    db: &Db<S>,
    writes: &[Write],
    durability: Durability,
    what: core::fmt::Arguments,
) -> Result<(), KvdbError> {
    let ctx = || format!("committing {what}");
    let mut w = db.begin_write().map_err(|e| KvdbError::db(e, ctx()))?;
    for (k, v) in writes {
        match v {
            Some(v) => w.put(k, v),
            None => w.delete(k),
        }
        .map_err(|e| KvdbError::db(e, ctx()))?;
    }
    w.commit(durability).map_err(|e| KvdbError::db(e, ctx()))
}

/// Where the counters come from: the process (system calls, upcalls, TSC),
/// libdb's stats and the medium's own counters.
struct Sample {
    tsc: u64,
    calls: u64,
    upcalls: u64,
    /// The kernel's own counts, all processes (the driver's and init's
    /// crossings too), if init shared its info page.
    kernel: Option<(u64, u64)>,
    db: libdb::Stats,
    medium: MediumCounts,
}

fn sample<S: Storage>(db: &Db<S>, medium: &impl Fn(&S) -> MediumCounts) -> Sample {
    Sample {
        tsc: rdtsc(),
        calls: exo_rt::sys::calls(),
        upcalls: exo_rt::upcalls(),
        kernel: kernel_counts(),
        db: db.stats(),
        medium: db.with_storage(|s| medium(s)),
    }
}

/// (system calls, upcalls) the kernel counted so far, from its info page,
/// which init shares read-only at `SCRATCH_VA`; `None` if it did not.
fn kernel_counts() -> Option<(u64, u64)> {
    use exo_abi::kinfo as ki;
    let page = exo_rt::mmio::Window::new(exo_rt::layout::SCRATCH_VA, exo_abi::PAGE_SIZE)?;
    if page.read64(8 * ki::W_MAGIC as u64) != ki::MAGIC {
        return None;
    }
    Some((page.read64(8 * ki::W_SYSCALLS as u64), page.read64(8 * ki::W_UPCALLS as u64)))
}

fn pct(sorted: &[u64], p: usize) -> u64 {
    sorted.get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1))).copied().unwrap_or(0)
}

/// The parseable result line of one measured phase (per-op counts; the
/// format is `eval_lines::DbLine`'s; see the README for how each maps
/// onto the eval's CSV columns).
#[allow(clippy::too_many_arguments)]
fn report(
    medium_name: &str,
    workload: &str,
    durability: &str,
    value_bytes: usize,
    a: &Sample,
    b: &Sample,
    lat_tsc: &mut [u64],
    tsc_per_us: u64,
    block: bool,
) {
    let ops = lat_tsc.len().max(1) as f64;
    let per = |x: u64| x as f64 / ops;
    lat_tsc.sort_unstable();
    let tpu = tsc_per_us.max(1) as f64;
    let total_us = (b.tsc - a.tsc) as f64 / tpu;
    let (dm, am) = (b.medium, a.medium);
    let dev = |x: u64, y: u64| block.then(|| per(x - y));
    let (sys_all, up_all) = match (a.kernel, b.kernel) {
        (Some(ka), Some(kb)) => (Some(per(kb.0 - ka.0)), Some(per(kb.1 - ka.1))),
        _ => (None, None),
    };
    let line = DbLine {
        medium: medium_name.into(),
        workload: workload.into(),
        value_bytes: value_bytes as u64,
        durability: durability.into(),
        ops: lat_tsc.len() as u64,
        ops_per_sec: ops / (total_us / 1e6).max(1e-9),
        p50_us: pct(lat_tsc, 50) as f64 / tpu,
        p99_us: pct(lat_tsc, 99) as f64 / tpu,
        tsc_per_op: per(b.tsc - a.tsc),
        syscalls_per_op: sys_all,
        upcalls_per_op: up_all,
        kvdb_syscalls_per_op: per(b.calls - a.calls),
        kvdb_upcalls_per_op: per(b.upcalls - a.upcalls),
        yields_per_op: per(dm.yields - am.yields),
        bytes_copied_per_op: per(dm.bytes_copied - am.bytes_copied),
        bytes_written_per_op: per(b.db.io.bytes_written - a.db.io.bytes_written),
        flushes_per_op: per(b.db.io.barriers - a.db.io.barriers),
        writes_per_op: per(b.db.io.writes - a.db.io.writes),
        device_write_cmds_per_op: dev(dm.device_writes, am.device_writes),
        device_flushes_per_op: dev(dm.device_flushes, am.device_flushes),
        device_bytes_written_per_op: dev(dm.device_bytes, am.device_bytes),
        blockq_requests_per_op: dev(dm.requests, am.requests),
        lines_flushed_per_op: per(dm.lines_flushed - am.lines_flushed),
        doorbells_per_op: dev(dm.doorbells, am.doorbells),
        checkpoints: b.db.checkpoints - a.db.checkpoints,
        tsc_per_us,
    };
    println!("{line}");
}

/// Create the database on `storage` and run the plan; verify; return the
/// storage without closing the database (like a crash: the checking run
/// must recover from the log).
pub fn create<S: Storage>(
    storage: S,
    nonce: u64,
    medium_name: &str,
    tsc_per_us: u64,
    medium: impl Fn(&S) -> MediumCounts,
    block: bool,
) -> Result<S, KvdbError> {
    let plan = plan(nonce);
    let db = Db::create(storage, options()).map_err(|e| KvdbError::db(e, "creating the database".into()))?;
    let s0 = db.stats();
    println!(
        "kvdb: created a database on {medium_name} ({} KiB medium, {} log pages): {} writes, {} barriers, {} KiB written",
        db.with_storage(|s| s.capacity()) / 1024,
        options().log_pages,
        s0.io.writes,
        s0.io.barriers,
        s0.io.bytes_written / 1024
    );
    commit(&db, &plan.marker, Durability::Sync, format_args!("the marker"))?;
    commit(&db, &plan.preload, Durability::Sync, format_args!("the preload"))?;

    // `commit`: one 100-byte put per commit, a round per durability.
    for ((name, durability), round) in DURABILITIES.iter().zip(&plan.singles) {
        let mut lat = Vec::with_capacity(round.len());
        let a = sample(&db, &medium);
        for (i, w) in round.iter().enumerate() {
            let t = rdtsc();
            commit(&db, core::slice::from_ref(w), *durability, format_args!("{name} commit {i}"))?;
            lat.push(rdtsc() - t);
        }
        // Whatever the round left pending becomes durable here (counted).
        db.sync().map_err(|e| KvdbError::db(e, format!("syncing after the {name} round")))?;
        let b = sample(&db, &medium);
        report(medium_name, "commit", name, COMMIT_VALUE_BYTES, &a, &b, &mut lat, tsc_per_us, block);
    }

    // `batch`: 24 puts (and some deletes/overwrites) per sync commit.
    let mut lat = Vec::with_capacity(plan.batches.len());
    let a = sample(&db, &medium);
    for (i, w) in plan.batches.iter().enumerate() {
        let t = rdtsc();
        commit(&db, w, Durability::Sync, format_args!("batch {i}"))?;
        lat.push(rdtsc() - t);
    }
    let b = sample(&db, &medium);
    report(medium_name, "batch24", "sync", 0, &a, &b, &mut lat, tsc_per_us, block);

    // An aborted transaction leaves nothing behind.
    let mut w = db.begin_write().map_err(|e| KvdbError::db(e, "starting the aborted transaction".into()))?;
    for k in ghost_keys() {
        w.put(&k, b"never committed").map_err(|e| KvdbError::db(e, "writing the aborted transaction".into()))?;
    }
    w.abort();

    let model = plan.model();
    let (keys, bytes) = verify(&db, &model)?;
    let st = db.stats();
    println!(
        "kvdb: {} commits ({} puts) done; read back and verified {keys} keys ({} KiB of values); \
         {} checkpoints, {} pages written, {} log flushes, {} device barriers, {} writes, {} KiB written in all",
        plan.commits(),
        plan.puts(),
        bytes / 1024,
        st.checkpoints,
        st.pages_written,
        st.log_flushes,
        st.io.barriers,
        st.io.writes,
        st.io.bytes_written / 1024
    );
    println!("kvdb: {} system calls and {} upcalls by this process so far", exo_rt::sys::calls(), exo_rt::upcalls());
    // No close: the next run recovers from what is durable.
    Ok(db.into_storage())
}

/// Reopen the database on `storage` (recovery) and check it holds exactly
/// what `create` committed with this nonce; then close it cleanly.
pub fn check<S: Storage>(storage: S, nonce: u64, medium_name: &str) -> Result<S, KvdbError> {
    let t0 = rdtsc();
    let db = Db::open(storage, options()).map_err(|e| KvdbError::db(e, "opening the database".into()))?;
    let open_tsc = rdtsc() - t0;
    let st = db.stats();
    println!(
        "kvdb: reopened the database on {medium_name}: {} log records replayed, generation {}, {} keys in the tree, {} in the log overlay ({} TSC ticks)",
        st.replayed_records, st.generation, st.tree_entries, st.overlay_keys, open_tsc
    );
    match db.get(MARKER_KEY).map_err(|e| KvdbError::db(e, "reading the marker".into()))? {
        Some(v) if v == nonce.to_le_bytes() => {}
        Some(v) => {
            return Err(KvdbError::Mismatch(format!(
                "the database was made by another run (marker {v:02x?}, expected nonce {nonce:#x})"
            )))
        }
        None => return Err(KvdbError::Mismatch("the database has no marker: not made by kvdb".into())),
    }
    let model = plan(nonce).model();
    let (keys, bytes) = verify(&db, &model)?;
    println!("kvdb: every committed key/value is there exactly ({keys} keys, {} KiB), and nothing else", bytes / 1024);
    db.close().map_err(|e| KvdbError::db(e, "closing the database".into()))
}

/// A full scan equals the model, in order; every key's point lookup too;
/// the aborted keys are absent. Returns (keys, value bytes).
fn verify<S: Storage>(db: &Db<S>, model: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(usize, usize), KvdbError> {
    let r = db.begin_read();
    let mut expected = model.iter();
    let mut bytes = 0;
    for item in r.iter() {
        let (k, v) = item.map_err(|e| KvdbError::db(e, "scanning the database".into()))?;
        match expected.next() {
            Some((ek, _)) if *ek < k => {
                return Err(KvdbError::Mismatch(format!("committed key {:?} is missing", printable(ek))))
            }
            Some((ek, ev)) if *ek == k => {
                if *ev != v {
                    let at = ev.iter().zip(&v).position(|(a, b)| a != b).unwrap_or(ev.len().min(v.len()));
                    return Err(KvdbError::Mismatch(format!(
                        "key {:?}: value of {} bytes, committed {} bytes; first difference at byte {at}",
                        printable(&k),
                        v.len(),
                        ev.len()
                    )));
                }
                bytes += v.len();
            }
            _ => {
                return Err(KvdbError::Mismatch(format!(
                    "key {:?} is present but was never committed (or was deleted)",
                    printable(&k)
                )))
            }
        }
    }
    if let Some((ek, _)) = expected.next() {
        return Err(KvdbError::Mismatch(format!(
            "committed key {:?} is missing (the scan ended before it)",
            printable(ek)
        )));
    }
    drop(r);
    for (k, v) in model {
        let got = db.get(k).map_err(|e| KvdbError::db(e, "looking up a key".into()))?;
        if got.as_ref() != Some(v) {
            return Err(KvdbError::Mismatch(format!(
                "lookup of {:?} answered {:?} bytes",
                printable(k),
                got.map(|g| g.len())
            )));
        }
    }
    for k in ghost_keys() {
        if db.get(&k).map_err(|e| KvdbError::db(e, "looking up an aborted key".into()))?.is_some() {
            return Err(KvdbError::Mismatch(format!("key {:?} of an aborted transaction is visible", printable(&k))));
        }
    }
    Ok((model.len(), bytes))
}
