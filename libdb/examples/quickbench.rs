//! A quick single-engine benchmark of libdb on a host file, printing
//! counts per operation (the comparison with other engines lives in
//! eval/). Usage: cargo run --release -p libdb --features std --example
//! quickbench -- [dir] [keys]

use std::time::Instant;

use libdb::host::{open_file_block, open_file_pmem};
use libdb::{Db, Durability, Options, Storage};

fn report<S: Storage>(name: &str, db: &Db<S>, ops: u64, t: Instant, before: libdb::Stats) {
    let s = db.stats();
    let el = t.elapsed().as_secs_f64();
    println!(
        "{name:<28} {:>9.0} ops/s  {:>6.2} us/op  flushes/op {:>5.2}  bytes written/op {:>8.0}  reads/op {:>5.2}",
        ops as f64 / el,
        el * 1e6 / ops as f64,
        (s.io.barriers - before.io.barriers) as f64 / ops as f64,
        (s.io.bytes_written - before.io.bytes_written) as f64 / ops as f64,
        (s.io.reads - before.io.reads) as f64 / ops as f64,
    );
}

fn workload<S: Storage>(label: &str, db: &Db<S>, keys: u64) {
    let key = |i: u64| format!("{:016}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000_007).into_bytes();
    let val = vec![0xAB; 100];
    for (name, dur, n) in [("commit sync", Durability::Sync, 2000), ("commit group8", Durability::Group(8), 8000)] {
        let (t, b) = (Instant::now(), db.stats());
        for i in 0..n {
            let mut w = db.begin_write().unwrap();
            w.put(&key(i), &val).unwrap();
            w.commit(dur).unwrap();
        }
        report(&format!("{label} {name}"), db, n, t, b);
    }
    let (t, b) = (Instant::now(), db.stats());
    for chunk in 0..keys / 1000 {
        let mut w = db.begin_write().unwrap();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            w.put(&key(i), &val).unwrap();
        }
        w.commit(Durability::Async).unwrap();
    }
    db.sync().unwrap();
    report(&format!("{label} fillrandom (1k/txn)"), db, keys, t, b);
    db.checkpoint().unwrap();
    let (t, b) = (Instant::now(), db.stats());
    for i in 0..keys {
        let j = i.wrapping_mul(7919) % keys;
        assert!(db.get(&key(j)).unwrap().is_some());
    }
    report(&format!("{label} readrandom"), db, keys, t, b);
    let (t, b) = (Instant::now(), db.stats());
    let r = db.begin_read();
    let n = r.iter().count() as u64;
    drop(r);
    report(&format!("{label} readseq"), db, n, t, b);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "/tmp".into()));
    let keys: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let opts = Options::default();
    let path = dir.join("libdb-quickbench-block.db");
    let _ = std::fs::remove_file(&path);
    let db = Db::create(open_file_block(&path).unwrap(), opts).unwrap();
    workload("block", &db, keys);
    println!("  file: {} pages, stats {:?}", db.stats().db_pages, db.stats());
    drop(db);
    let _ = std::fs::remove_file(&path);
    let path = dir.join("libdb-quickbench-pmem.db");
    let _ = std::fs::remove_file(&path);
    let db = Db::create(open_file_pmem(&path, 256 << 20).unwrap(), opts).unwrap();
    println!("  pmem mapping is DAX: {}", db.with_storage(|s| s.region().is_dax()));
    workload("pmem(msync)", &db, keys);
    drop(db);
    let _ = std::fs::remove_file(&path);
}
