//! What libdb's `open` (recovery) costs on the host, to profile replay
//! per record: opens a pmem image that `eval-recovery-image` built (a
//! database and a log tail cut without a close; eval/RECOVERY.md) read
//! only, with the eval's options, and prints the stats. Count with
//! callgrind, only inside `open`:
//!   eval-recovery-image base pmem 16 64 /dev/shm/b.img
//!   eval-recovery-image tail pmem 4032 54750 64 /dev/shm/b.img
//!   valgrind --tool=callgrind --toggle-collect='*Db*open*' \
//!     target/release/examples/openprof /dev/shm/b.img 64
//! (the medium's MiB as given to the builder).
//!
//! Usage: openprof <pmem image> <medium MiB>

use libdb::{Db, Options};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, mib] = &args[..] else {
        eprintln!("usage: openprof <pmem image> <medium MiB>");
        std::process::exit(2);
    };
    let mib: usize = mib.parse().expect("medium MiB");
    let storage = libdb::host::open_file_pmem(path, mib << 20).expect("mapping the image");
    let opts = Options { cache_pages: 1024, log_pages: 2048, checkpoint_log_bytes: 0 };
    let t = std::time::Instant::now();
    let db = Db::open_read_only(storage, opts).expect("open");
    let el = t.elapsed();
    let s = db.stats();
    println!(
        "open: {:?}, {} records replayed, {} keys, {} bytes read",
        el, s.replayed_records, s.tree_entries, s.io.bytes_read
    );
}
