//! The heap against a model: every live block is checked for alignment,
//! bounds, overlap and contents (a per-block fill pattern) after random
//! sequences of allocations, frees and reallocations, over heaps from a
//! few KiB (exhaustion) to a few MiB.

use super::*;
use std::alloc::{alloc_zeroed, dealloc as sys_dealloc};
use std::collections::BTreeMap;
use testrng::Rng;

/// A heap over its own buffer from the host allocator.
struct Fixture {
    heap: Box<SizeClassHeap>,
    buf: *mut u8,
    len: usize,
}

impl Fixture {
    fn new(len: usize) -> Fixture {
        let l = Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: nonzero size.
        let buf = unsafe { alloc_zeroed(l) };
        assert!(!buf.is_null());
        let mut heap = Box::new(SizeClassHeap::new());
        // SAFETY: the buffer is ours and outlives the heap (dropped together).
        assert!(unsafe { heap.claim(buf, len) }, "claim of {len} bytes");
        Fixture { heap, buf, len }
    }
    fn contains(&self, p: *mut u8, size: usize) -> bool {
        let (a, b) = (p as usize, self.buf as usize);
        a >= b && a + size.max(1) <= b + self.len
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { sys_dealloc(self.buf, Layout::from_size_align(self.len, 4096).unwrap()) };
    }
}

/// Live blocks: address -> (layout, fill byte).
#[derive(Default)]
struct Model {
    live: BTreeMap<usize, (Layout, u8)>,
}

impl Model {
    fn insert(&mut self, f: &Fixture, p: *mut u8, layout: Layout, fill: u8) {
        assert!(!p.is_null());
        assert_eq!(p as usize % layout.align(), 0, "{layout:?} at {p:p} misaligned");
        assert!(f.contains(p, layout.size()), "{layout:?} at {p:p} outside the heap");
        let a = p as usize;
        let size = layout.size().max(1);
        if let Some((&b, &(bl, _))) = self.live.range(..=a).next_back() {
            assert!(b + bl.size().max(1) <= a, "{a:#x} overlaps the block at {b:#x}");
        }
        if let Some((&b, _)) = self.live.range(a..).next() {
            assert!(a + size <= b, "{a:#x}+{size} overlaps the block at {b:#x}");
        }
        // SAFETY: a live block of this size.
        unsafe { ptr::write_bytes(p, fill, layout.size()) };
        self.live.insert(a, (layout, fill));
    }
    fn check(&self, a: usize) {
        let (l, fill) = self.live[&a];
        // SAFETY: a live block of this size.
        let s = unsafe { std::slice::from_raw_parts(a as *const u8, l.size()) };
        assert!(s.iter().all(|&b| b == fill), "block {a:#x} ({l:?}) was overwritten");
    }
}

fn random_layout(r: &mut Rng) -> Layout {
    let size = match r.below(10) {
        0 => 0,
        1..=6 => r.range(1..=MAX_SMALL as u64) as usize,
        7 => r.range(MAX_SMALL as u64 - 20..=MAX_SMALL as u64 + 20) as usize,
        _ => r.range(1..=3000) as usize,
    };
    let align = match r.below(8) {
        0 => 1usize << r.below(13), // up to 4096
        1 => 32,
        _ => 1usize << r.below(5), // 1..16
    };
    Layout::from_size_align(size, align).unwrap()
}

/// Random alloc/free/realloc against the model; every block's contents
/// survive until it is freed or moved, and nothing overlaps.
fn random_run(seed: u64, heap_len: usize, steps: usize) -> (usize, usize) {
    let mut r = Rng::new(seed);
    let mut f = Fixture::new(heap_len);
    let mut m = Model::default();
    let (mut oom, mut ok) = (0, 0);
    for step in 0..steps {
        let op = r.below(10);
        if op < 5 || m.live.is_empty() {
            let l = random_layout(&mut r);
            // SAFETY: the heap's own use.
            let p = unsafe { f.heap.alloc(l) };
            if p.is_null() {
                oom += 1;
                continue;
            }
            ok += 1;
            m.insert(&f, p, l, (step % 251) as u8 + 1);
        } else {
            let i = r.below(m.live.len() as u64) as usize;
            let a = *m.live.keys().nth(i).unwrap();
            m.check(a);
            let (l, fill) = m.live[&a];
            if op < 8 {
                m.live.remove(&a);
                // SAFETY: a live block for this layout.
                unsafe { f.heap.dealloc(a as *mut u8, l) };
            } else {
                let new_size = random_layout(&mut r).size();
                // SAFETY: a live block for this layout.
                let q = unsafe { f.heap.realloc(a as *mut u8, l, new_size) };
                if q.is_null() {
                    oom += 1;
                    m.check(a);
                    continue;
                }
                m.live.remove(&a);
                let keep = l.size().min(new_size);
                // SAFETY: the new block is at least `keep` long.
                let s = unsafe { std::slice::from_raw_parts(q, keep) };
                assert!(s.iter().all(|&b| b == fill), "realloc lost the contents");
                let nl = Layout::from_size_align(new_size, l.align()).unwrap();
                m.insert(&f, q, nl, fill ^ 0x5a);
            }
        }
        assert!(f.heap.arena_bytes() <= heap_len / 2 + GRANULE, "arena beyond its reach");
    }
    for (&a, &(l, _)) in &m.live {
        m.check(a);
        // SAFETY: a live block for this layout.
        unsafe { f.heap.dealloc(a as *mut u8, l) };
    }
    (ok, oom)
}

#[test]
fn random_sequences_roomy_heap() {
    for seed in 0..8 {
        let (ok, oom) = random_run(seed, 4 << 20, 20_000);
        assert_eq!(oom, 0, "seed {seed}: no exhaustion expected in 4 MiB");
        assert!(ok > 8_000, "seed {seed}: only {ok} allocations");
    }
}

#[test]
fn random_sequences_small_heaps_exhaust_cleanly() {
    let mut total_oom = 0;
    for (seed, len) in [(1, 16 << 10), (2, 64 << 10), (3, 24 << 10), (4, 128 << 10)] {
        let (ok, oom) = random_run(100 + seed, len, 20_000);
        assert!(ok > 1_000, "heap of {len} bytes served only {ok}");
        total_oom += oom;
    }
    assert!(total_oom > 0, "the small heaps never ran out: the test does not reach exhaustion");
}

#[test]
fn free_then_alloc_is_lifo_and_same_class_reuses() {
    let mut f = Fixture::new(64 << 10);
    let l = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: the heap's own use throughout.
    unsafe {
        let a = f.heap.alloc(l);
        let b = f.heap.alloc(l);
        assert_ne!(a, b);
        f.heap.dealloc(a, l);
        f.heap.dealloc(b, l);
        assert_eq!(f.heap.free_blocks(class_of(100, 8).unwrap()), 2);
        assert_eq!(f.heap.alloc(l), b);
        // Another size of the same class (97..=112) takes the freed block.
        let l2 = Layout::from_size_align(112, 16).unwrap();
        assert_eq!(f.heap.alloc(l2), a);
        let carved = f.heap.arena_bytes();
        f.heap.dealloc(a, l2);
        let _ = f.heap.alloc(Layout::from_size_align(97, 1).unwrap());
        assert_eq!(f.heap.arena_bytes(), carved, "a same-class allocation carved anew");
    }
}

#[test]
fn classes_and_alignment() {
    assert_eq!(class_of(0, 1), Some(0));
    assert_eq!(class_of(1, 1), Some(0));
    assert_eq!(class_of(16, 16), Some(0));
    assert_eq!(class_of(17, 8), Some(1));
    assert_eq!(class_of(512, 8), Some(31));
    assert_eq!(class_of(MAX_SMALL, 8), Some(CLASSES - 1));
    assert_eq!(class_of(MAX_SMALL + 1, 8), None);
    assert_eq!(class_of(8, 32), None);
    let mut f = Fixture::new(256 << 10);
    for align in [1, 2, 4, 8, 16, 32, 64, 256, 4096] {
        for size in [0, 1, 15, 16, 17, 100, 511, 512, 513, 1023, 1024, 1025, 5000] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: the heap's own use.
            let p = unsafe { f.heap.alloc(l) };
            assert!(!p.is_null() && (p as usize).is_multiple_of(align), "{l:?} -> {p:p}");
            assert!(f.contains(p, size));
            // SAFETY: just allocated for `l`.
            unsafe { f.heap.dealloc(p, l) };
        }
    }
}

#[test]
fn zero_size_blocks_are_distinct() {
    let mut f = Fixture::new(64 << 10);
    let l = Layout::from_size_align(0, 1).unwrap();
    // SAFETY: the heap's own use.
    let (a, b) = unsafe { (f.heap.alloc(l), f.heap.alloc(l)) };
    assert!(!a.is_null() && !b.is_null() && a != b);
    let big = Layout::from_size_align(0, 64).unwrap();
    // SAFETY: the heap's own use.
    let c = unsafe { f.heap.alloc(big) };
    assert!(!c.is_null() && (c as usize).is_multiple_of(64));
    // SAFETY: allocated above for these layouts.
    unsafe {
        f.heap.dealloc(a, l);
        f.heap.dealloc(b, l);
        f.heap.dealloc(c, big);
    }
}

#[test]
fn realloc_keeps_the_block_within_its_class_and_moves_across() {
    let mut f = Fixture::new(256 << 10);
    let l = Layout::from_size_align(40, 8).unwrap();
    // SAFETY: the heap's own use throughout.
    unsafe {
        let p = f.heap.alloc(l);
        ptr::write_bytes(p, 7, 40);
        assert_eq!(f.heap.realloc(p, l, 48), p, "40 -> 48 is the same class");
        let l48 = Layout::from_size_align(48, 8).unwrap();
        let q = f.heap.realloc(p, l48, 2000);
        assert_ne!(q, p);
        assert!(std::slice::from_raw_parts(q, 40).iter().all(|&b| b == 7));
        let l2000 = Layout::from_size_align(2000, 8).unwrap();
        let r = f.heap.realloc(q, l2000, 30);
        assert!(std::slice::from_raw_parts(r, 30).iter().all(|&b| b == 7));
        f.heap.dealloc(r, Layout::from_size_align(30, 8).unwrap());
    }
}

#[test]
fn talc_grows_into_the_uncarved_arena() {
    // A block larger than talc's half: talc is extended up to the arena.
    let len = 64 << 10;
    let mut f = Fixture::new(len);
    let big = Layout::from_size_align(48 << 10, 8).unwrap();
    // SAFETY: the heap's own use.
    let p = unsafe { f.heap.alloc(big) };
    assert!(!p.is_null(), "48 KiB from a 64 KiB heap with nothing carved");
    // Small blocks still come from what is left above talc.
    let l = Layout::from_size_align(64, 8).unwrap();
    let mut small = Vec::new();
    loop {
        // SAFETY: the heap's own use.
        let q = unsafe { f.heap.alloc(l) };
        if q.is_null() {
            break;
        }
        assert!(q as usize >= p as usize + (48 << 10) || (q as usize) + 64 <= p as usize);
        small.push(q);
    }
    assert!(small.len() > 100, "only {} small blocks beside the big one", small.len());
    // SAFETY: allocated above.
    unsafe {
        f.heap.dealloc(p, big);
        for q in small {
            f.heap.dealloc(q, l);
        }
    }
}

#[test]
fn exhaustion_by_small_blocks_then_everything_reusable() {
    let len = 32 << 10;
    let mut f = Fixture::new(len);
    let l = Layout::from_size_align(200, 8).unwrap();
    let mut blocks = Vec::new();
    loop {
        // SAFETY: the heap's own use.
        let p = unsafe { f.heap.alloc(l) };
        if p.is_null() {
            break;
        }
        blocks.push(p);
    }
    let carved = f.heap.arena_bytes();
    assert!(carved <= len / 2 + GRANULE, "arena {carved} beyond half of {len}");
    assert!(blocks.len() * 208 > len * 3 / 4, "only {} blocks of 200 in {len}", blocks.len());
    let n = blocks.len();
    // SAFETY: allocated above, freed once.
    unsafe {
        for p in blocks.drain(..) {
            f.heap.dealloc(p, l);
        }
    }
    // The same allocations succeed again, the arena's from its list.
    for _ in 0..n {
        // SAFETY: the heap's own use.
        let p = unsafe { f.heap.alloc(l) };
        assert!(!p.is_null());
        blocks.push(p);
    }
    assert_eq!(f.heap.arena_bytes(), carved);
    // SAFETY: allocated above.
    unsafe {
        for p in blocks {
            f.heap.dealloc(p, l);
        }
    }
    // talc's half is whole again: one block of most of it.
    let big = Layout::from_size_align(len / 2 - 2048, 8).unwrap();
    // SAFETY: the heap's own use.
    assert!(!unsafe { f.heap.alloc(big) }.is_null());
}

#[test]
fn empty_heap_fails_everything() {
    let mut h = SizeClassHeap::new();
    // SAFETY: the heap's own use; no memory was given.
    unsafe {
        assert!(h.alloc(Layout::from_size_align(8, 8).unwrap()).is_null());
        assert!(h.alloc(Layout::from_size_align(5000, 8).unwrap()).is_null());
    }
    let mut tiny = [0u128; 8];
    // SAFETY: too small for talc's bookkeeping: refused, nothing kept.
    assert!(!unsafe { h.claim(tiny.as_mut_ptr().cast(), 128) });
}
