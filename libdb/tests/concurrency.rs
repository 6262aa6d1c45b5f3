//! Snapshot readers on other threads while one writer commits and
//! checkpoints (needs the `std` feature, which makes `Db` `Sync`).
#![cfg(feature = "std")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libdb::{BlockStorage, Db, Durability, MemBlockDevice, Options};
use testrng::Rng;

const ACCOUNTS: u64 = 100;
const TOTAL: u64 = ACCOUNTS * 1000;

fn balance(v: &[u8]) -> u64 {
    u64::from_le_bytes(v.try_into().expect("8-byte balance"))
}

#[test]
fn readers_on_threads_see_consistent_snapshots() {
    let opts = Options { cache_pages: 32, log_pages: 8, checkpoint_log_bytes: 8 * 1024 };
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 16 * 1024)), opts).unwrap();
    let mut w = db.begin_write().unwrap();
    for a in 0..ACCOUNTS {
        w.put(format!("acct{a:03}").as_bytes(), &1000u64.to_le_bytes()).unwrap();
    }
    w.commit(Durability::Sync).unwrap();

    let done = AtomicBool::new(false);
    let snapshots = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (db, done, snapshots) = (&db, &done, &snapshots);
            s.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    // Every snapshot holds the invariant, however the scan
                    // interleaves with commits and checkpoints.
                    let r = db.begin_read();
                    let items: Vec<_> = if t == 0 {
                        r.iter().map(|e| e.unwrap()).collect()
                    } else {
                        r.iter().rev().map(|e| e.unwrap()).collect()
                    };
                    assert_eq!(items.len() as u64, ACCOUNTS);
                    assert_eq!(items.iter().map(|(_, v)| balance(v)).sum::<u64>(), TOTAL, "torn snapshot");
                    let first = r.get(b"acct000").unwrap().map(|v| balance(&v));
                    let again = r.get(b"acct000").unwrap().map(|v| balance(&v));
                    assert_eq!(first, again, "a snapshot does not change");
                    snapshots.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // The writer: transfers between accounts.
        let mut rng = Rng::new(12345);
        for i in 0..600u64 {
            let x = rng.next_u64();
            let (a, b) = (x % ACCOUNTS, (x / ACCOUNTS) % ACCOUNTS);
            if a == b {
                continue;
            }
            let mut w = db.begin_write().unwrap();
            let ka = format!("acct{a:03}").into_bytes();
            let kb = format!("acct{b:03}").into_bytes();
            let (va, vb) = (balance(&w.get(&ka).unwrap().unwrap()), balance(&w.get(&kb).unwrap().unwrap()));
            let amount = (x >> 20) % (va + 1);
            w.put(&ka, &(va - amount).to_le_bytes()).unwrap();
            w.put(&kb, &(vb + amount).to_le_bytes()).unwrap();
            w.commit(if i % 3 == 0 { Durability::Sync } else { Durability::Async }).unwrap();
            if i % 97 == 0 {
                db.checkpoint().unwrap();
            }
            // Every 100 transfers, let a reader finish a scan before going
            // on, so scans really overlap the writes on a loaded machine
            // (the writer could otherwise finish before any reader ran).
            if i % 100 == 50 {
                let seen = snapshots.load(Ordering::Relaxed);
                let since = std::time::Instant::now();
                while snapshots.load(Ordering::Relaxed) == seen && since.elapsed().as_secs() < 30 {
                    std::thread::yield_now();
                }
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    let n = snapshots.load(Ordering::Relaxed);
    println!("{n} consistent snapshots scanned on 2 threads during 600 transfers");
    assert!(n >= 6, "readers finished only {n} scans while the writer ran");
    let sum: u64 = db.begin_read().iter().map(|e| balance(&e.unwrap().1)).sum();
    assert_eq!(sum, TOTAL);
}
