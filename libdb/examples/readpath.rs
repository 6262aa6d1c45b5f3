//! Point-read cost at a given database size, the way `eval-bench
//! readrandom` drives it (16-digit keys, 100 B values, preloaded 1000 per
//! sync commit, then uniformly random `Db::get`s), with and without the
//! overlay folded into the tree first. Usage:
//! cargo run --release -p libdb --features std --example readpath -- [dir] [keys] [reads]

use std::time::Instant;

use libdb::host::open_file_block;
use libdb::{Db, Durability, Options};

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("{i:016}").as_bytes());
    k
}

/// SplitMix64, as the benchmark uses for its key order.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("/tmp", |s| s.as_str()));
    let keys: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let reads: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(keys);
    let path = dir.join(format!("readpath-{}.db", std::process::id()));
    let db = Db::create(open_file_block(&path).expect("open file"), Options::default()).expect("create");
    let val = [0x5Au8; 100];
    for chunk in (0..keys).step_by(1000) {
        let mut w = db.begin_write().unwrap();
        for i in chunk..(chunk + 1000).min(keys) {
            w.put(&key(i), &val).unwrap();
        }
        w.commit(Durability::Sync).unwrap();
    }
    let mut rng = 42u64;
    let order: Vec<[u8; 16]> = (0..reads).map(|_| key(next(&mut rng) % keys)).collect();
    for label in ["as loaded", "after checkpoint"] {
        if label == "after checkpoint" {
            db.checkpoint().unwrap();
        }
        let s = db.stats();
        for round in 0..3 {
            let t = Instant::now();
            let mut sum = 0u64;
            for k in &order {
                sum += db.get(k).unwrap().expect("key present").len() as u64;
            }
            let el = t.elapsed().as_secs_f64();
            assert_eq!(sum, 100 * reads);
            println!(
                "{keys} keys, {label:<16} (overlay {:>6} keys, tree {:>6}) round {round}: {:>9.0} reads/s {:>6.3} us/read",
                s.overlay_keys,
                s.tree_entries,
                reads as f64 / el,
                el * 1e6 / reads as f64
            );
        }
    }
    drop(db);
    let _ = std::fs::remove_file(&path);
}
