//! What one sync commit on persistent memory costs in instructions, with
//! the heap allocator the exokernel's programs use (`sizeclass`: the
//! `exo-sizeclass` heap of `exo_rt::heap`, size classes in front of talc),
//! the ones they used before it (`talc` alone, `linked_list_allocator`)
//! or the host's (glibc malloc, as libdb on Linux).
//! Mirrors kvdb's `commit` workload on pmem: every write built before the
//! database is created (kvdb's plan), kvdb's options, one 100-byte put per
//! `Durability::Sync` commit on an in-memory region (persist and fence do
//! nothing: their instructions are not libdb's).
//!
//! Usage: commitprof <sizeclass|talc|list|system> <commits>. Count with callgrind:
//!   valgrind --tool=callgrind target/release/examples/commitprof list 0
//!   valgrind --tool=callgrind target/release/examples/commitprof list 200
//! and divide the difference of the totals by 200 (per symbol with
//! `callgrind_annotate`).

use libdb::{Db, Durability, IoError, Options, PmemRegion, PmemStorage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

const ARENA_BYTES: usize = 96 << 20;

/// Allocates from the arena heap chosen by `ARENA` once it is set, from
/// the system before (what std allocated before `main` is freed there
/// too: a pointer's home is told by its address).
struct Switchable {
    talc: talc::TalcLock<spinning_top::RawSpinlock, talc::source::Manual>,
    list: linked_list_allocator::LockedHeap,
    sizeclass: spinning_top::Spinlock<exo_sizeclass::SizeClassHeap>,
    arena: std::cell::UnsafeCell<[u8; ARENA_BYTES]>,
}

// SAFETY: the arena is touched only through the locked heap.
unsafe impl Sync for Switchable {}

/// Which heap serves allocations: the system's until `main` picks.
static ARENA: AtomicU8 = AtomicU8::new(SYSTEM);
const SYSTEM: u8 = 0;
const TALC: u8 = 1;
const LIST: u8 = 2;
const SIZECLASS: u8 = 3;
#[global_allocator]
static HEAP: Switchable = Switchable {
    talc: talc::TalcLock::new(talc::source::Manual),
    list: linked_list_allocator::LockedHeap::empty(),
    sizeclass: spinning_top::const_spinlock(exo_sizeclass::SizeClassHeap::new()),
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
        match ARENA.load(Ordering::Relaxed) {
            // SAFETY: forwarded with the caller's guarantees.
            TALC => unsafe { self.talc.alloc(l) },
            // SAFETY: as above.
            LIST => unsafe { self.list.alloc(l) },
            // SAFETY: as above.
            SIZECLASS => unsafe { self.sizeclass.lock().alloc(l) },
            // SAFETY: as above.
            _ => unsafe { System.alloc(l) },
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // Each heap's own realloc (talc's grows in place where it can).
        match (self.in_arena(p), ARENA.load(Ordering::Relaxed)) {
            // SAFETY: `p` came from talc (in the arena, talc chosen).
            (true, TALC) => unsafe { self.talc.realloc(p, l, new_size) },
            // SAFETY: as above, for the size-class heap.
            (true, SIZECLASS) => unsafe { self.sizeclass.lock().realloc(p, l, new_size) },
            // SAFETY: as above, for the list heap.
            (true, _) => unsafe { self.list.realloc(p, l, new_size) },
            // SAFETY: `p` came from the system allocator.
            (false, _) => unsafe { System.realloc(p, l, new_size) },
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if self.in_arena(p) {
            let heap = ARENA.load(Ordering::Relaxed);
            if heap == TALC {
                // SAFETY: `p` came from talc (it lies in the arena, which
                // only the chosen heap uses).
                unsafe { self.talc.dealloc(p, l) }
            } else if heap == SIZECLASS {
                // SAFETY: as above, for the size-class heap.
                unsafe { self.sizeclass.lock().dealloc(p, l) }
            } else {
                // SAFETY: as above, for the list heap.
                unsafe { self.list.dealloc(p, l) }
            }
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
    let heap = match a.get(1).map(String::as_str) {
        Some("sizeclass") => SIZECLASS,
        Some("talc") => TALC,
        Some("list") => LIST,
        Some("system") => SYSTEM,
        _ => {
            eprintln!("usage: commitprof <sizeclass|talc|list|system> <commits>");
            std::process::exit(2);
        }
    };
    let n: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    // The arena is a static used by nothing else, given once to the one
    // heap chosen.
    match heap {
        TALC => {
            // SAFETY: see above.
            unsafe { HEAP.talc.lock().claim(HEAP.arena.get() as *mut u8, ARENA_BYTES) }.expect("talc claims the arena");
        }
        SIZECLASS => {
            // SAFETY: see above.
            assert!(unsafe { HEAP.sizeclass.lock().claim(HEAP.arena.get() as *mut u8, ARENA_BYTES) });
        }
        // SAFETY: see above.
        LIST => unsafe { HEAP.list.lock().init(HEAP.arena.get() as *mut u8, ARENA_BYTES) },
        _ => {}
    }
    ARENA.store(heap, Ordering::Relaxed);
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
