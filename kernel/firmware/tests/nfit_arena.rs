//! The kernel parses the NFIT with `pmem::nfit::parse`, which returns
//! `Vec`s, out of a fixed boot arena (kernel/src/pmem.rs: `ARENA_BYTES` =
//! 80 KiB, tables longer than `MAX_NFIT` = 8 KiB refused before parsing).
//! Running out would be a kernel panic caused by firmware input, so this
//! test replays the arena's exact policy (bump from the top, aligned; the
//! default `realloc` = alloc + copy + free; everything reclaimed only when
//! nothing is live) over the parser's allocations for the worst tables of
//! up to 8 KiB and checks the high-water mark stays inside the arena.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// As in kernel/src/pmem.rs.
const ARENA_BYTES: usize = 80 * 1024;
const MAX_NFIT: usize = 8 * 1024;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static TOP: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static HIGH: Cell<usize> = const { Cell::new(0) };
}

/// Forwards to the system allocator; on a tracking thread it also plays
/// the kernel arena's bookkeeping. (The arena's base is page aligned, so
/// aligning offsets is aligning addresses.)
struct ArenaModel;

// SAFETY: every request is served by `System`; the model only counts.
unsafe impl GlobalAlloc for ArenaModel {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if TRACKING.with(Cell::get) {
            let start = TOP.with(Cell::get).next_multiple_of(layout.align());
            let end = start + layout.size();
            TOP.with(|t| t.set(end));
            LIVE.with(|l| l.set(l.get() + 1));
            HIGH.with(|h| h.set(h.get().max(end)));
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if TRACKING.with(Cell::get) {
            LIVE.with(|l| l.set(l.get() - 1));
            if LIVE.with(Cell::get) == 0 {
                TOP.with(|t| t.set(0));
            }
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static MODEL: ArenaModel = ArenaModel;

/// The arena's high-water mark while parsing `table` (and dropping the
/// result), and whether the parse succeeded.
fn high_water(table: &[u8]) -> (usize, bool) {
    TOP.with(|t| t.set(0));
    LIVE.with(|l| l.set(0));
    HIGH.with(|h| h.set(0));
    TRACKING.with(|t| t.set(true));
    let ok = pmem::nfit::parse(table).is_ok();
    TRACKING.with(|t| t.set(false));
    assert_eq!(LIVE.with(Cell::get), 0, "everything is freed after the parse");
    (HIGH.with(Cell::get), ok)
}

/// An NFIT of `structures` (type, length) filling the body, checksummed.
fn nfit(structures: &[(u16, u16)]) -> Vec<u8> {
    let mut t = vec![0u8; 40];
    t[..4].copy_from_slice(b"NFIT");
    for &(kind, len) in structures {
        let mut s = vec![0u8; len as usize];
        s[..2].copy_from_slice(&kind.to_le_bytes());
        s[2..4].copy_from_slice(&len.to_le_bytes());
        t.extend(s);
    }
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    let sum = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    t[9] = 0u8.wrapping_sub(sum);
    t
}

/// As many structures of `len` bytes as fit in `MAX_NFIT`.
fn filled(pick: impl Fn(usize) -> (u16, u16)) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut used = 40;
    for i in 0.. {
        let s = pick(i);
        if used + s.1 as usize > MAX_NFIT {
            break;
        }
        used += s.1 as usize;
        out.push(s);
    }
    out
}

#[test]
fn the_worst_8_kib_tables_fit_the_kernel_arena() {
    let shapes: Vec<(&str, Vec<(u16, u16)>)> = vec![
        ("all SPA ranges", filled(|_| (0, 56))),
        ("all region mappings", filled(|_| (1, 48))),
        ("alternating", filled(|i| if i % 2 == 0 { (0, 56) } else { (1, 48) })),
        ("SPA then mappings", {
            let mut v = filled(|_| (0, 56));
            v.truncate(v.len() / 2);
            let room = (MAX_NFIT - 40 - v.len() * 56) / 48;
            v.extend(std::iter::repeat_n((1, 48), room));
            v
        }),
        ("skipped structures", filled(|_| (4, 4))),
    ];
    let mut worst = 0;
    for (name, structures) in shapes {
        let t = nfit(&structures);
        assert!(t.len() <= MAX_NFIT, "{name}: {} bytes", t.len());
        let (high, ok) = high_water(&t);
        assert!(ok, "{name}: the table parses");
        assert!(high <= ARENA_BYTES, "{name}: {high} bytes needed, arena {ARENA_BYTES}");
        println!("{name}: {} structures, {} table bytes, arena high-water {high} bytes", structures.len(), t.len());
        worst = worst.max(high);
    }
    assert!(worst > 16 * 1024, "the model counted the parser's allocations ({worst})");
}

#[test]
fn random_structure_mixes_fit_the_kernel_arena() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..500 {
        let mut v = Vec::new();
        let mut used = 40;
        loop {
            let s = match next() % 4 {
                0 => (0u16, 56 + (next() % 3) as u16 * 8),
                1 => (1, 48 + (next() % 3) as u16 * 8),
                2 => (0, 56),
                _ => ((2 + next() % 6) as u16, 4 + (next() % 40) as u16),
            };
            if used + s.1 as usize > MAX_NFIT {
                break;
            }
            used += s.1 as usize;
            v.push(s);
        }
        let (high, ok) = high_water(&nfit(&v));
        assert!(ok);
        assert!(high <= ARENA_BYTES, "{high} bytes needed");
    }
}
