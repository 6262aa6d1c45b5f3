//! Model test: random transactions (puts, deletes, aborts), snapshot
//! readers, range scans in both directions, checkpoints and reopens,
//! checked against a `BTreeMap` after every step.

use std::collections::BTreeMap;
use std::ops::Bound;

use libdb::{BlockStorage, Db, Durability, MemBlockDevice, Options, PmemStorage, Storage};
use pmem::sim::XorShift;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn opts() -> Options {
    // Tiny log and cache: many checkpoints, log-full paths and evictions.
    Options { cache_pages: 24, log_pages: 8, checkpoint_log_bytes: 12 * 1024 }
}

fn key(rng: &mut XorShift, space: u64) -> Vec<u8> {
    let k = rng.below(space);
    // Variable-length keys sharing prefixes.
    let mut s = format!("k{:0w$}", k, w = (k % 7) as usize + 1).into_bytes();
    if k.is_multiple_of(11) {
        s.extend(std::iter::repeat_n(b'x', (k % 200) as usize));
    }
    s
}

fn value(rng: &mut XorShift) -> Vec<u8> {
    let len = match rng.below(100) {
        0 => 1500 + rng.below(9000) as usize, // overflow pages
        1..=10 => 0,
        _ => 1 + rng.below(120) as usize,
    };
    let b = rng.below(256) as u8;
    (0..len).map(|i| b.wrapping_add(i as u8)).collect()
}

fn check_range<S: Storage>(r: &libdb::ReadTxn<'_, S>, model: &Model, rng: &mut XorShift, space: u64) {
    let a = key(rng, space);
    let b = key(rng, space);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let lo_b = if rng.below(2) == 0 { Bound::Included(&lo[..]) } else { Bound::Excluded(&lo[..]) };
    let hi_b = match rng.below(3) {
        0 => Bound::Included(&hi[..]),
        1 => Bound::Excluded(&hi[..]),
        _ => Bound::Unbounded,
    };
    if lo == hi && matches!((lo_b, hi_b), (Bound::Excluded(_), Bound::Excluded(_))) {
        return; // not a valid range for BTreeMap
    }
    let limit = 1 + rng.below(150) as usize;
    let want: Vec<(Vec<u8>, Vec<u8>)> =
        model.range::<[u8], _>((lo_b, hi_b)).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect();
    let got: Vec<_> = r.range((lo_b, hi_b)).take(limit).map(|e| e.unwrap()).collect();
    assert_eq!(got, want, "forward range {lo_b:?}..{hi_b:?}");
    let want_rev: Vec<_> =
        model.range::<[u8], _>((lo_b, hi_b)).rev().take(limit).map(|(k, v)| (k.clone(), v.clone())).collect();
    let got_rev: Vec<_> = r.range((lo_b, hi_b)).rev().take(limit).map(|e| e.unwrap()).collect();
    assert_eq!(got_rev, want_rev, "reverse range {lo_b:?}..{hi_b:?}");
    // Meeting in the middle: alternate ends.
    let mut it = r.range((lo_b, hi_b));
    let mut seen = Vec::new();
    loop {
        let e = if seen.len() % 2 == 0 { it.next() } else { it.next_back() };
        match e {
            Some(e) => seen.push(e.unwrap().0),
            None => break,
        }
        if seen.len() > 300 {
            return;
        }
    }
    seen.sort();
    let all: Vec<_> = model.range::<[u8], _>((lo_b, hi_b)).map(|(k, _)| k.clone()).collect();
    assert_eq!(seen, all, "double-ended range");
}

/// Runs `ops` random operations; `reopen` turns the storage back into a
/// database.
fn run<S: Storage>(seed: u64, ops: usize, db: Db<S>, reopen: impl Fn(S) -> Db<S>) -> usize {
    let mut rng = XorShift::new(seed);
    let space = [40, 400, 3000][(seed % 3) as usize];
    let mut model = Model::new();
    let mut db = Some(db);
    let mut done = 0;
    let mut reopens = 0;
    while done < ops {
        let d = db.as_ref().unwrap();
        match rng.below(100) {
            0..=69 => {
                let mut w = d.begin_write().unwrap();
                let mut pending = model.clone();
                for _ in 0..1 + rng.below(12) {
                    let k = key(&mut rng, space);
                    if rng.below(4) == 0 {
                        w.delete(&k).unwrap();
                        pending.remove(&k);
                    } else {
                        let v = value(&mut rng);
                        w.put(&k, &v).unwrap();
                        pending.insert(k, v);
                    }
                    done += 1;
                    let probe = key(&mut rng, space);
                    assert_eq!(w.get(&probe).unwrap(), pending.get(&probe).cloned(), "read own writes");
                }
                if rng.below(6) == 0 {
                    w.abort();
                } else {
                    let dur = match rng.below(3) {
                        0 => Durability::Sync,
                        1 => Durability::Group(1 + rng.below(8) as u32),
                        _ => Durability::Async,
                    };
                    w.commit(dur).unwrap();
                    model = pending;
                }
            }
            70..=84 => {
                for _ in 0..5 {
                    let k = key(&mut rng, space);
                    assert_eq!(d.get(&k).unwrap(), model.get(&k).cloned(), "get {:?}", String::from_utf8_lossy(&k));
                    done += 1;
                }
            }
            85..=92 => {
                let r = d.begin_read();
                check_range(&r, &model, &mut rng, space);
                done += 1;
            }
            93..=95 => {
                // A snapshot survives later commits and checkpoints.
                let r = d.begin_read();
                let frozen = model.clone();
                for i in 0..1 + rng.below(4) {
                    let mut w = d.begin_write().unwrap();
                    for _ in 0..5 {
                        let k = key(&mut rng, space);
                        let v = value(&mut rng);
                        w.put(&k, &v).unwrap();
                        model.insert(k, v);
                        done += 1;
                    }
                    w.commit(Durability::Async).unwrap();
                    if i % 2 == 0 {
                        d.checkpoint().unwrap();
                    }
                }
                for _ in 0..10 {
                    let k = key(&mut rng, space);
                    assert_eq!(r.get(&k).unwrap(), frozen.get(&k).cloned(), "snapshot get");
                }
                check_range(&r, &frozen, &mut rng, space);
            }
            96..=97 => {
                d.checkpoint().unwrap();
                done += 1;
            }
            _ => {
                let s = db.take().unwrap().close().unwrap();
                db = Some(reopen(s));
                reopens += 1;
                done += 1;
            }
        }
    }
    // Final full comparison, both directions, after one more reopen.
    let d = reopen(db.take().unwrap().close().unwrap());
    let r = d.begin_read();
    let all: Vec<_> = r.iter().map(|e| e.unwrap()).collect();
    assert_eq!(all, model.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>());
    assert_eq!(r.iter().rev().count(), model.len());
    reopens
}

fn block_seeds(seeds: std::ops::Range<u64>) -> usize {
    let mut reopens = 0;
    for seed in seeds {
        let dev = MemBlockDevice::new(512, 24 * 1024);
        let db = Db::create(BlockStorage::new(dev), opts()).unwrap();
        reopens += run(seed, 10_000, db, |s| Db::open(BlockStorage::new(s.into_inner()), opts()).unwrap());
    }
    reopens
}

fn pmem_seeds(seeds: std::ops::Range<u64>) -> usize {
    let mut reopens = 0;
    for seed in seeds {
        let db = Db::create(PmemStorage::new(pmem::SimPmem::new(12 << 20)), opts()).unwrap();
        reopens += run(seed, 10_000, db, |s| {
            let img = s.into_inner().crash_image_strict();
            Db::open(PmemStorage::new(pmem::SimPmem::from_image(img)), opts()).unwrap()
        });
    }
    reopens
}

#[test]
fn model_block_device_many_seeds() {
    let reopens = block_seeds(0..4);
    println!("model test (block): 4 seeds x 10,000 ops, {reopens} reopens");
}

#[test]
fn model_pmem_many_seeds() {
    let reopens = pmem_seeds(100..104);
    println!("model test (pmem): 4 seeds x 10,000 ops, {reopens} reopens");
}

/// The heavy variant: `cargo test -p libdb --release --test model -- --ignored`.
#[test]
#[ignore]
fn model_many_more_seeds() {
    let reopens = block_seeds(1000..1030) + pmem_seeds(2000..2030);
    println!("model test: 60 seeds x 10,000 ops, {reopens} reopens");
}
