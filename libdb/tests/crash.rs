//! Crash tests: a workload of >= 200 transactions runs on a simulated
//! medium that records every flush/fence (pmem) or write/flush (block
//! device) as a crash point. At every point the image is reopened — only
//! fenced/flushed data, everything, and random subsets of the rest — and
//! the contents must be exactly the state after some commit: at least
//! every acknowledged durable commit, at most the one in flight, never
//! torn, never mixed.

use std::collections::BTreeMap;

use libdb::sim::SimBlockDevice;
use libdb::{BlockStorage, Db, Durability, Options, PmemStorage, Storage};
use pmem::sim::XorShift;
use pmem::SimPmem;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// A 40 KiB log checkpointed at 20 KiB: each epoch's log passes its
/// initial reach (16 KiB) on block devices, so the crash points include
/// reach records being written (format 3; `block_crash_bs` checks that
/// some were).
fn opts() -> Options {
    Options { cache_pages: 32, log_pages: 10, checkpoint_log_bytes: 20 * 1024 }
}

struct Workload {
    /// states[i]: contents after i commits.
    states: Vec<Model>,
    /// Per commit: crash points recorded when it returned, and how many
    /// commits were durable at that moment.
    acks: Vec<(usize, usize)>,
}

impl Workload {
    /// The range of commit counts a crash at `point` may recover.
    fn allowed(&self, point: usize) -> (usize, usize) {
        let acked = self.acks.iter().take_while(|(p, _)| *p <= point).count();
        let floor = self.acks[..acked].iter().map(|(_, d)| *d).max().unwrap_or(0);
        (floor, (acked + 1).min(self.states.len() - 1))
    }
}

fn run_workload<S: Storage>(
    db: &Db<S>,
    txns: usize,
    dur: Durability,
    seed: u64,
    points: impl Fn(&S) -> usize,
) -> Workload {
    let mut rng = XorShift::new(seed);
    let mut model = Model::new();
    let mut w = Workload { states: vec![model.clone()], acks: Vec::new() };
    let mut durable = 0;
    for i in 0..txns {
        let before = db.stats();
        let mut t = db.begin_write().unwrap();
        for _ in 0..1 + rng.below(4) {
            let k = format!("key{:03}", rng.below(60)).into_bytes();
            if rng.below(5) == 0 {
                t.delete(&k).unwrap();
                model.remove(&k);
            } else {
                let len = if rng.below(15) == 0 { 1500 + rng.below(3000) } else { 8 + rng.below(150) } as usize;
                let v: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
                t.put(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
        t.commit(dur).unwrap();
        if i % 50 == 49 {
            db.checkpoint().unwrap();
        }
        let after = db.stats();
        if after.log_flushes > before.log_flushes || after.checkpoints > before.checkpoints {
            durable = i + 1;
        }
        w.states.push(model.clone());
        w.acks.push((db.with_storage(&points), durable));
    }
    w
}

fn contents<S: Storage>(db: &Db<S>) -> Result<Model, libdb::Error> {
    db.begin_read().iter().collect()
}

/// Reopens a crash image and checks it against the workload. On every
/// `probe_every`-th call it also commits once more and reopens, which
/// checks that recovery leaves a database that can be written and
/// crashed again.
fn check<S: Storage>(
    open: impl Fn(Vec<u8>) -> Result<Db<S>, libdb::Error>,
    image_of: impl Fn(S) -> Vec<u8>,
    image: Vec<u8>,
    w: &Workload,
    point: usize,
    probe: bool,
    what: &str,
) {
    let db = open(image).unwrap_or_else(|e| panic!("{what} at point {point}: reopen failed: {e}"));
    let got = contents(&db).unwrap_or_else(|e| panic!("{what} at point {point}: read failed: {e}"));
    let (lo, hi) = w.allowed(point);
    let ok = (lo..=hi).any(|j| w.states[j] == got);
    assert!(ok, "{what} at point {point}: recovered state is not the state after any of commits {lo}..={hi}");
    if probe {
        let mut t = db.begin_write().unwrap();
        t.put(b"zz-after-recovery", b"1").unwrap();
        t.commit(Durability::Sync).unwrap();
        let img = image_of(db.into_storage());
        let db = open(img).unwrap_or_else(|e| panic!("{what} at point {point}: second reopen failed: {e}"));
        let mut again = contents(&db).unwrap();
        assert_eq!(again.remove(&b"zz-after-recovery"[..]).as_deref(), Some(&b"1"[..]), "{what} {point}");
        assert_eq!(again, got, "{what} at point {point}: state changed across a second crash");
    }
}

/// (crash points, images checked in all, of which random)
fn pmem_crash(dur: Durability, seed: u64, randoms: u64) -> (usize, usize, usize) {
    let db = Db::create(PmemStorage::new(SimPmem::new(640 * 1024)), opts()).unwrap();
    let mut sim = db.into_storage().into_inner();
    sim.enable_trace();
    let db = Db::open(PmemStorage::new(sim), opts()).unwrap();
    let w = run_workload(&db, 220, dur, seed, |s| s.region().trace_len());
    let trace = db.into_storage().into_inner().take_trace().unwrap();
    let open = |img: Vec<u8>| Db::open(PmemStorage::new(SimPmem::from_image(img)), opts());
    let image_of = |s: PmemStorage<SimPmem>| s.into_inner().crash_image_strict();
    let (mut images, mut random) = (0, 0);
    trace.for_each_point(|i, p| {
        check(open, image_of, p.strict(), &w, i, i % 25 == 0, "pmem strict");
        images += 1;
        if p.pending_lines() > 0 {
            check(open, image_of, p.all_survive(), &w, i, false, "pmem all-survive");
            for s in 0..randoms {
                check(open, image_of, p.random(seed * 7919 + i as u64 * randoms + s), &w, i, false, "pmem random");
                random += 1;
            }
            images += 1;
        }
    });
    (trace.len(), images + random, random)
}

/// (crash points, images checked in all, of which random)
fn block_crash(dur: Durability, seed: u64, randoms: u64) -> (usize, usize, usize) {
    block_crash_bs(512, dur, seed, randoms)
}

/// [`block_crash`] on a device of `bs`-byte blocks (same 640 KiB medium).
fn block_crash_bs(bs: usize, dur: Durability, seed: u64, randoms: u64) -> (usize, usize, usize) {
    let db = Db::create(BlockStorage::new(SimBlockDevice::new(bs, 1280 * 512 / bs as u64)), opts()).unwrap();
    let mut dev = db.into_storage().into_inner();
    dev.enable_trace();
    let db = Db::open(BlockStorage::new(dev), opts()).unwrap();
    let w = run_workload(&db, 220, dur, seed, |s| s.device().trace_len());
    if dur == Durability::Sync {
        assert!(db.stats().reach_records > 0, "the workload's log never passed a reach");
    }
    let trace = db.into_storage().into_inner().take_trace().unwrap();
    let open = |img: Vec<u8>| Db::open(BlockStorage::new(SimBlockDevice::from_image(bs, img)), opts());
    let image_of = |s: BlockStorage<SimBlockDevice>| s.into_inner().crash_image_strict();
    let (mut images, mut random) = (0, 0);
    trace.for_each_point(|i, p| {
        check(open, image_of, p.strict(), &w, i, i % 25 == 0, "block strict");
        images += 1;
        if p.unflushed_blocks() > 0 {
            check(open, image_of, p.all_survive(), &w, i, false, "block all-survive");
            images += 1;
            for s in 0..randoms {
                check(open, image_of, p.random(seed * 104_729 + i as u64 * randoms + s), &w, i, false, "block random");
                random += 1;
            }
        }
    });
    (trace.len(), images + random, random)
}

#[test]
fn crash_pmem_sync_every_point() {
    let (points, images, random) = pmem_crash(Durability::Sync, 1, 4);
    println!("pmem sync: {points} crash points (every flush and fence), {images} images checked, {random} with random surviving lines");
    assert!(points >= 400 && random >= 1000, "{points} {random}");
}

#[test]
fn crash_pmem_group_and_async_prefix() {
    let (p1, i1, r1) = pmem_crash(Durability::Group(4), 2, 2);
    let (p2, i2, r2) = pmem_crash(Durability::Async, 3, 2);
    println!("pmem group(4): {p1} points, {i1} images ({r1} random); async: {p2} points, {i2} images ({r2} random)");
}

#[test]
fn crash_block_sync_every_point() {
    let (points, images, random) = block_crash(Durability::Sync, 4, 4);
    println!("block sync: {points} crash points (every write and flush), {images} images checked, {random} with random surviving blocks in random order");
    assert!(points >= 400 && random >= 1000, "{points} {random}");
}

#[test]
fn crash_block_group_and_async_prefix() {
    let (p1, i1, r1) = block_crash(Durability::Group(5), 5, 2);
    let (p2, i2, r2) = block_crash(Durability::Async, 6, 2);
    println!("block group(5): {p1} points, {i1} images ({r1} random); async: {p2} points, {i2} images ({r2} random)");
}

/// A 4 KiB-block device (a 4Kn NVMe namespace): every log write is whole
/// 4 KiB blocks, and recovery holds at every crash point.
#[test]
fn crash_block_4kn_sync_every_point() {
    let (points, images, random) = block_crash_bs(4096, Durability::Sync, 7, 4);
    println!("4Kn block sync: {points} crash points, {images} images checked, {random} random");
    assert!(points >= 400 && random >= 1000, "{points} {random}");
}

/// A device whose blocks are larger than libdb's page cannot take its
/// writes: refused by name (with the block size) before anything is
/// written, on create and on open.
#[test]
fn blocks_larger_than_a_page_are_refused_by_name() {
    let dev = SimBlockDevice::new(8192, 256);
    let e = Db::create(BlockStorage::new(dev), opts()).err().expect("create on 8 KiB blocks must fail");
    assert_eq!(e, libdb::Error::UnsupportedBlockSize { block_size: 8192 });
    assert!(e.to_string().contains("8192-byte blocks"), "{e}");
    let e = Db::open(BlockStorage::new(SimBlockDevice::new(8192, 256)), opts()).err().expect("open must fail");
    assert_eq!(e, libdb::Error::UnsupportedBlockSize { block_size: 8192 });
    let mut dev = SimBlockDevice::new(8192, 256);
    let mut first = vec![0u8; 8192];
    libdb::BlockDevice::read(&mut dev, 0, &mut first).unwrap();
    assert!(first.iter().all(|&b| b == 0), "nothing was written");
}

/// The heavy variant: `cargo test -p libdb --release --test crash -- --ignored`.
#[test]
#[ignore]
fn crash_many_seeds() {
    let (mut points, mut images) = (0, 0);
    for seed in 10..20 {
        for dur in [Durability::Sync, Durability::Group(3), Durability::Async] {
            let (p, i, _) = pmem_crash(dur, seed, 6);
            let (q, j, _) = block_crash(dur, seed, 6);
            points += p + q;
            images += i + j;
        }
    }
    println!("crash test, 10 seeds x 3 modes x 2 media: {points} crash points, {images} images");
}

/// `create` over a medium that holds another database (kvdb's `kill_db`
/// found this: killed while creating over the previous test's database):
/// a crash at any write or flush of `create` must leave the old database
/// whole, or a blank medium, or the new empty database — never metas of
/// one beside the half-zeroed log of the other, which `open` rightly
/// calls damaged.
#[test]
fn crash_during_create_over_an_old_database() {
    let bs = 512;
    let old = Db::create(BlockStorage::new(SimBlockDevice::new(bs, 1280 * 512 / bs as u64)), opts()).unwrap();
    let w = run_workload(&old, 30, Durability::Sync, 7, |_| 0);
    let old_state = w.states.last().unwrap().clone();
    let mut dev = old.into_storage().into_inner();
    dev.enable_trace();
    let new = Db::create(BlockStorage::new(dev), opts()).unwrap();
    let trace = new.into_storage().into_inner().take_trace().unwrap();
    let (mut images, mut old_seen, mut new_seen, mut blank) = (0, 0, 0, 0);
    trace.for_each_point(|i, p| {
        let mut imgs = vec![("strict", p.strict())];
        if p.unflushed_blocks() > 0 {
            imgs.push(("all-survive", p.all_survive()));
            for s in 0..3 {
                imgs.push(("random", p.random(i as u64 * 3 + s)));
            }
        }
        for (kind, img) in imgs {
            images += 1;
            // Both meta pages all zeros: `open_or_create` creates afresh.
            let blank_medium = img[..2 * libdb::PAGE_SIZE].iter().all(|&b| b == 0);
            let sim = BlockStorage::new(SimBlockDevice::from_image(bs, img));
            let db = Db::open_or_create(sim, opts()).unwrap_or_else(|e| {
                panic!("point {i} ({kind}): a crash during create left a medium that does not open: {e}")
            });
            let got = contents(&db).unwrap();
            if blank_medium {
                blank += 1;
            } else if got.is_empty() {
                new_seen += 1;
            } else {
                assert_eq!(got, old_state, "point {i} ({kind}): neither the old database nor an empty one");
                old_seen += 1;
            }
        }
    });
    println!(
        "create over an old database: {} points, {images} images: old {old_seen}, blank {blank}, new {new_seen}",
        trace.len()
    );
    assert!(old_seen > 0 && new_seen > 0, "the crash points must span from the old database to the new one");
}
