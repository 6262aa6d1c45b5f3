//! The log-size trade-off (eval/RECOVERY.md): a smaller log bounds what a
//! crash leaves to replay, and checkpoints more often. For each log size
//! (with the checkpoint policy at half of it, as the default 8 MiB log
//! checkpoints at 4 MiB) this runs the same workloads on a host file and
//! prints counts per operation first (bytes written, tree pages written,
//! barriers, checkpoints) and the rate second.
//!
//! Usage: cargo run --release -p libdb --features std --example logsize --
//! [dir] [keys]

use std::time::Instant;

use libdb::host::open_file_block;
use libdb::{Db, Durability, Options, Storage};

fn key(i: u64) -> Vec<u8> {
    format!("{:016}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000_007).into_bytes()
}

fn report<S: Storage>(log_mib: u64, name: &str, db: &Db<S>, ops: u64, t: Instant, before: libdb::Stats) {
    let s = db.stats();
    let el = t.elapsed().as_secs_f64();
    let per = |a: u64, b: u64| (a - b) as f64 / ops as f64;
    println!(
        "| {log_mib} MiB | {name} | {ops} | {:.0} | {:.2} | {:.3} | {} | {:.0} |",
        per(s.io.bytes_written, before.io.bytes_written),
        per(s.pages_written, before.pages_written),
        per(s.io.barriers, before.io.barriers),
        s.checkpoints - before.checkpoints,
        ops as f64 / el,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).cloned().unwrap_or_else(|| "/dev/shm".into());
    let keys: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let val = vec![0xAB; 100];
    println!(
        "| log | workload | ops | bytes written / op | tree pages written / op | barriers / op | checkpoints | ops/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for log_mib in [8u64, 4, 2] {
        let path = format!("{dir}/libdb-logsize-{log_mib}.img");
        let _ = std::fs::remove_file(&path);
        let opts = Options { cache_pages: 16384, log_pages: log_mib * 256, checkpoint_log_bytes: (log_mib << 20) / 2 };
        let storage = open_file_block(&path).unwrap();
        let db = Db::create(storage, opts).unwrap();
        // fillrandom: one put per transaction, asynchronous (the log is
        // written in large batches; checkpoints dominate the writes).
        let (t, b) = (Instant::now(), db.stats());
        for i in 0..keys {
            let mut w = db.begin_write().unwrap();
            w.put(&key(i), &val).unwrap();
            w.commit(Durability::Async).unwrap();
        }
        db.sync().unwrap();
        report(log_mib, "fillrandom async, 1 put/txn", &db, keys, t, b);
        // Sync commits overwriting random existing keys (one block + one
        // barrier each, plus the checkpoints the log size forces).
        let n = keys / 4;
        let (t, b) = (Instant::now(), db.stats());
        for i in 0..n {
            let mut w = db.begin_write().unwrap();
            w.put(&key(i.wrapping_mul(7919) % keys), &val).unwrap();
            w.commit(Durability::Sync).unwrap();
        }
        report(log_mib, "overwrite sync, 1 put/txn", &db, n, t, b);
        drop(db);
        let _ = std::fs::remove_file(&path);
    }
}
