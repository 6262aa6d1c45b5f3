//! Init's frame allocator: the kernel handed init all free RAM, mapped and
//! owned at `RAM_WINDOW_VA + physical address`. A frame is named by that
//! window address; giving it away is a `map` with the OWN right (a move).

use exo_abi::{kinfo as ki, PAGE_SIZE, RAM_WINDOW_VA};
use exo_rt::kinfo;
use spin::Mutex;

struct Frames {
    ranges: [(u64, u64); ki::MAX_RAM_RANGES],
    count: usize,
    range: usize,
    next: u64,
    returned: [u64; 64],
    n_returned: usize,
    handed_out: u64,
}

static FRAMES: Mutex<Frames> = Mutex::new(Frames {
    ranges: [(0, 0); ki::MAX_RAM_RANGES],
    count: 0,
    range: 0,
    next: 0,
    returned: [0; 64],
    n_returned: 0,
    handed_out: 0,
});

/// Read the free RAM ranges from the kernel info page.
pub fn init() {
    let mut f = FRAMES.lock();
    let n = (kinfo::word(ki::W_RAM_RANGES) as usize).min(ki::MAX_RAM_RANGES);
    for i in 0..n {
        let start = kinfo::word(ki::W_RAM_RANGE0 + 2 * i);
        let len = kinfo::word(ki::W_RAM_RANGE0 + 2 * i + 1);
        f.ranges[i] = (start, start + len);
    }
    f.count = n;
    f.next = if n > 0 { f.ranges[0].0 } else { 0 };
}

/// Take a frame; returns its address in init's RAM window.
pub fn alloc() -> Option<u64> {
    let mut f = FRAMES.lock();
    if f.n_returned > 0 {
        f.n_returned -= 1;
        f.handed_out += 1;
        return Some(f.returned[f.n_returned]);
    }
    while f.range < f.count {
        let (_, end) = f.ranges[f.range];
        if f.next + PAGE_SIZE <= end {
            let pa = f.next;
            f.next += PAGE_SIZE;
            f.handed_out += 1;
            return Some(RAM_WINDOW_VA + pa);
        }
        f.range += 1;
        if f.range < f.count {
            f.next = f.ranges[f.range].0;
        }
    }
    None
}

/// Put back a frame that is still in the window (e.g. a `create` that
/// found its slot occupied changed nothing).
pub fn give_back(va: u64) {
    let mut f = FRAMES.lock();
    if f.n_returned < f.returned.len() {
        let n = f.n_returned;
        f.returned[n] = va;
        f.n_returned += 1;
        f.handed_out -= 1;
    }
}

/// Whether the frame at physical `pa` is still in init's RAM window, never
/// handed out by [`alloc`] (a frame given away is moved or retyped, and
/// leaves the window).
pub fn never_handed_out(pa: u64) -> bool {
    let f = FRAMES.lock();
    (f.range..f.count).any(|i| {
        let start = if i == f.range { f.next } else { f.ranges[i].0 };
        start <= pa && pa + PAGE_SIZE <= f.ranges[i].1
    })
}

/// (frames handed out, frames left).
pub fn stats() -> (u64, u64) {
    let f = FRAMES.lock();
    let mut left = f.n_returned as u64;
    for i in f.range..f.count {
        let start = if i == f.range { f.next } else { f.ranges[i].0 };
        left += f.ranges[i].1.saturating_sub(start) / PAGE_SIZE;
    }
    (f.handed_out, left)
}
