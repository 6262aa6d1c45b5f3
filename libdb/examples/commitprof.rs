//! What one sync commit on persistent memory costs in instructions, with
//! the heap allocator the exokernel's programs use (`linked_list_allocator`,
//! as in `exo_rt::heap`) or the host's (glibc malloc, as libdb on Linux).
//! Mirrors kvdb's `commit` workload on pmem: every write built before the
//! database is created (kvdb's plan), kvdb's options, one 100-byte put per
//! `Durability::Sync` commit on an in-memory region (persist and fence do
//! nothing: their instructions are not libdb's).
//!
//! Usage: commitprof <list|system> <commits>. Count with callgrind:
//!   valgrind --tool=callgrind target/release/examples/commitprof list 0
//!   valgrind --tool=callgrind target/release/examples/commitprof list 200
//! and divide the difference of the totals by 200 (per symbol with
//! `callgrind_annotate`).

use libdb::{Db, Durability, IoError, Options, PmemRegion, PmemStorage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

const ARENA_BYTES: usize = 96 << 20;

/// Allocates from the linked-list heap once `USE_LIST` is set, from the
/// system before (what std allocated before `main` is freed there too:
/// a pointer's home is told by its address).
struct Switchable {
    list: linked_list_allocator::LockedHeap,
    arena: std::cell::UnsafeCell<[u8; ARENA_BYTES]>,
}

// SAFETY: the arena is touched only through the locked heap.
unsafe impl Sync for Switchable {}

static USE_LIST: AtomicBool = AtomicBool::new(false);
#[global_allocator]
static HEAP: Switchable = Switchable {
    list: linked_list_allocator::LockedHeap::empty(),
    arena: std::cell::UnsafeCell::new([0; ARENA_BYTES]),
};

impl Switchable {
    fn in_arena(&self, p: *mut u8) -> bool {
        let start = self.arena.get() as usize;
        (start..start + ARENA_BYTES).contains(&(p as usize))
    }
}

// SAFETY: every block is freed by the allocator that gave it (told by
// its address), which both meet GlobalAlloc's contract.
unsafe impl GlobalAlloc for Switchable {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if USE_LIST.load(Ordering::Relaxed) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { self.list.alloc(l) }
        } else {
            // SAFETY: as above.
            unsafe { System.alloc(l) }
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if self.in_arena(p) {
            // SAFETY: `p` came from the list heap (it lies in its arena).
            unsafe { self.list.dealloc(p, l) }
        } else {
            // SAFETY: `p` came from the system allocator.
            unsafe { System.dealloc(p, l) }
        }
    }
}

struct Mem(Vec<u8>);

impl PmemRegion for Mem {
    fn as_slice(&self) -> &[u8] {
        &self.0
    }
    fn write(&mut self, o: usize, d: &[u8]) {
        self.0[o..o + d.len()].copy_from_slice(d)
    }
    fn persist(&mut self, _o: usize, _l: usize) {}
    fn fence(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let list = match a.get(1).map(String::as_str) {
        Some("list") => true,
        Some("system") => false,
        _ => {
            eprintln!("usage: commitprof <list|system> <commits>");
            std::process::exit(2);
        }
    };
    let n: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    if list {
        // SAFETY: the arena is a static used by nothing else, given once.
        unsafe { HEAP.list.lock().init(HEAP.arena.get() as *mut u8, ARENA_BYTES) };
        USE_LIST.store(true, Ordering::Relaxed);
    }
    // kvdb's plan: 3 rounds of 200 single puts and 100 batches of 24.
    let plan: Vec<(Vec<u8>, Vec<u8>)> = (0..3000u64)
        .map(|i| (format!("{:016}", i.wrapping_mul(2_654_435_761) % 1_000_003).into_bytes(), vec![0x5a; 100]))
        .collect();
    let opts = Options { cache_pages: 1024, log_pages: 256, checkpoint_log_bytes: 256 << 10 };
    let db = Db::create(PmemStorage::new(Mem(vec![0; 16 << 20])), opts).expect("create");
    for (k, v) in plan.iter().cycle().take(n) {
        let mut w = db.begin_write().expect("begin");
        w.put(k, v).expect("put");
        w.commit(Durability::Sync).expect("commit");
    }
    println!("{n} commits, {} barriers", db.stats().io.barriers);
}
