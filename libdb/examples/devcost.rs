//! Device-level cost of a durable commit: preloads 5,000 keys, then runs
//! 500 sync commits of one 100-byte value and reads the block device's
//! sectors-written counter around them (run on a file system of its own,
//! e.g. an ext4 image on a loop device, so no other process pollutes it).
//!
//! Usage: devcost <db-file> <block-device-name, e.g. loop1> [direct]

use libdb::host::{open_file_block, open_file_block_direct};
use libdb::{Db, Durability, Options};

fn sectors_written(dev: &str) -> u64 {
    let _ = std::process::Command::new("sync").status();
    let s = std::fs::read_to_string(format!("/sys/block/{dev}/stat")).expect("block device stat");
    s.split_whitespace().nth(6).and_then(|v| v.parse().ok()).expect("sectors written field")
}

fn proc_write_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("write_bytes: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 3 {
        eprintln!("usage: devcost <db-file> <block-device-name> [direct]");
        std::process::exit(2);
    }
    let (path, dev) = (&a[1], &a[2]);
    let direct = a.get(3).is_some_and(|s| s == "direct");
    let _ = std::fs::remove_file(path);
    let storage = if direct { open_file_block_direct(path) } else { open_file_block(path) }.expect("open");
    let db = Db::create(storage, Options::default()).expect("create");
    let key = |i: u64| format!("{i:016}").into_bytes();
    for b in 0..5 {
        let mut w = db.begin_write().unwrap();
        for i in b * 1000..(b + 1) * 1000 {
            w.put(&key(i), &[1u8; 100]).unwrap();
        }
        w.commit(Durability::Sync).unwrap();
    }
    let s0 = sectors_written(dev);
    let p0 = proc_write_bytes();
    let t = std::time::Instant::now();
    for i in 0..500u64 {
        let mut w = db.begin_write().unwrap();
        w.put(&key(i * 7 % 5000), &[2u8; 100]).unwrap();
        w.commit(Durability::Sync).unwrap();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / 500.0;
    let p1 = proc_write_bytes();
    let s1 = sectors_written(dev);
    println!(
        "{}: {us:.0} us per sync commit, device bytes per commit: {}, /proc/self/io write_bytes per commit: {}",
        if direct { "O_DIRECT" } else { "buffered" },
        (s1 - s0) * 512 / 500,
        (p1 - p0) / 500
    );
}
