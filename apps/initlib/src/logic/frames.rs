//! Frame accounting: init's free RAM as ranges of physical addresses,
//! handed out a page at a time from the lowest range up, and the frames
//! given back (a dead process's pages), reused first. Frames are named by their address in a
//! window (`window + physical address`), as init's RAM window names them.

use alloc::vec::Vec;
use exo_abi::{kinfo::MAX_RAM_RANGES, PAGE_SIZE};

pub struct Frames {
    window: u64,
    ranges: [(u64, u64); MAX_RAM_RANGES],
    count: usize,
    range: usize,
    next: u64,
    /// Frames given back: the first 64 in a stash that needs no heap
    /// (init's own heap is built from frames, and building it gives some
    /// back), the rest in a list.
    stash: [u64; 64],
    stashed: usize,
    returned: Vec<u64>,
    /// Frames given back that a device could once reach (their owning
    /// entry is LENT forever, so they can never become page tables): kept
    /// apart, handed out only by [`Frames::alloc_lent`] for data pages
    /// (the next driver's DMA memory).
    lent: Vec<u64>,
    handed_out: u64,
}

impl Frames {
    /// No RAM yet; frames are named `window + physical address`.
    pub const fn empty(window: u64) -> Frames {
        Frames {
            window,
            ranges: [(0, 0); MAX_RAM_RANGES],
            count: 0,
            range: 0,
            next: 0,
            stash: [0; 64],
            stashed: 0,
            returned: Vec::new(),
            lent: Vec::new(),
            handed_out: 0,
        }
    }

    /// Start over with `ranges` of (start, length) in bytes (at most
    /// `MAX_RAM_RANGES`; more are ignored).
    pub fn set_ranges(&mut self, ranges: impl Iterator<Item = (u64, u64)>) {
        let mut n = 0;
        for (start, len) in ranges.take(MAX_RAM_RANGES) {
            self.ranges[n] = (start, start + len);
            n += 1;
        }
        *self = Frames { ranges: self.ranges, count: n, ..Frames::empty(self.window) };
        self.next = if n > 0 { self.ranges[0].0 } else { 0 };
    }

    /// Take a frame; its address in the window.
    pub fn alloc(&mut self) -> Option<u64> {
        if let Some(va) = self.returned.pop() {
            self.handed_out += 1;
            return Some(va);
        }
        if self.stashed > 0 {
            self.stashed -= 1;
            self.handed_out += 1;
            return Some(self.stash[self.stashed]);
        }
        while self.range < self.count {
            let (_, end) = self.ranges[self.range];
            if self.next + PAGE_SIZE <= end {
                let pa = self.next;
                self.next += PAGE_SIZE;
                self.handed_out += 1;
                return Some(self.window + pa);
            }
            self.range += 1;
            if self.range < self.count {
                self.next = self.ranges[self.range].0;
            }
        }
        None
    }

    /// Put back a frame that is in the window again (a `create` that found
    /// its slot occupied; a page moved back from a dead process). The
    /// caller guarantees it was handed out and is back: a frame given
    /// back twice would be handed out twice.
    pub fn give_back(&mut self, va: u64) {
        if self.stashed < self.stash.len() {
            self.stash[self.stashed] = va;
            self.stashed += 1;
        } else {
            self.returned.push(va);
        }
        self.handed_out = self.handed_out.saturating_sub(1);
    }

    /// Put back a frame a device could reach (LENT: never a table again);
    /// only [`Frames::alloc_lent`] hands it out again.
    pub fn give_back_lent(&mut self, va: u64) {
        self.lent.push(va);
        self.handed_out = self.handed_out.saturating_sub(1);
    }

    /// A frame given back with [`Frames::give_back_lent`], for a data
    /// page (never a table); `None` if there is none.
    pub fn alloc_lent(&mut self) -> Option<u64> {
        let va = self.lent.pop()?;
        self.handed_out += 1;
        Some(va)
    }

    /// Lent frames waiting in [`Frames::alloc_lent`]'s pool.
    pub fn lent_free(&self) -> u64 {
        self.lent.len() as u64
    }

    /// Whether the frame at physical `pa` was never handed out.
    pub fn never_handed_out(&self, pa: u64) -> bool {
        (self.range..self.count).any(|i| {
            let start = if i == self.range { self.next } else { self.ranges[i].0 };
            start <= pa && pa + PAGE_SIZE <= self.ranges[i].1
        })
    }

    /// (frames handed out, frames left).
    pub fn stats(&self) -> (u64, u64) {
        let mut left = (self.stashed + self.returned.len() + self.lent.len()) as u64;
        for i in self.range..self.count {
            let start = if i == self.range { self.next } else { self.ranges[i].0 };
            left += self.ranges[i].1.saturating_sub(start) / PAGE_SIZE;
        }
        (self.handed_out, left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 0x1000_0000_0000;
    const P: u64 = PAGE_SIZE;

    #[test]
    fn frames_come_from_each_range_in_turn_and_are_counted() {
        let mut f = Frames::empty(W);
        f.set_ranges([(0x10_0000, 2 * P), (0x40_0000, 3 * P)].into_iter());
        assert_eq!(f.stats(), (0, 5));
        assert!(f.never_handed_out(0x10_0000));
        assert_eq!(f.alloc(), Some(W + 0x10_0000));
        assert!(!f.never_handed_out(0x10_0000));
        assert_eq!(f.alloc(), Some(W + 0x10_0000 + P));
        assert_eq!(f.alloc(), Some(W + 0x40_0000));
        assert_eq!(f.stats(), (3, 2));
        assert!(f.never_handed_out(0x40_0000 + 2 * P));
        assert!(!f.never_handed_out(0x20_0000), "a hole is not RAM");
        assert_eq!(f.alloc(), Some(W + 0x40_0000 + P));
        assert_eq!(f.alloc(), Some(W + 0x40_0000 + 2 * P));
        assert_eq!(f.alloc(), None);
        assert_eq!(f.stats(), (5, 0));
    }

    #[test]
    fn given_back_frames_are_reused_first_and_accounting_balances() {
        let mut f = Frames::empty(W);
        f.set_ranges([(0, 4 * P)].into_iter());
        let a = f.alloc().unwrap();
        let b = f.alloc().unwrap();
        f.give_back(a);
        assert_eq!(f.stats(), (1, 3));
        assert_eq!(f.alloc(), Some(a));
        assert_ne!(f.alloc(), Some(b));
        assert_eq!(f.stats(), (3, 1));
        // Any number of frames comes back (a dead process's thousands).
        let mut g = Frames::empty(W);
        g.set_ranges([(0, 1000 * P)].into_iter());
        let all: Vec<u64> = (0..1000).map(|_| g.alloc().unwrap()).collect();
        all.iter().for_each(|va| g.give_back(*va));
        assert_eq!(g.stats(), (0, 1000));
        let again: std::collections::BTreeSet<u64> = (0..1000).map(|_| g.alloc().unwrap()).collect();
        assert_eq!(again.len(), 1000);
        assert_eq!(g.alloc(), None);
    }

    #[test]
    fn lent_frames_come_back_apart_and_only_alloc_lent_reuses_them() {
        let mut f = Frames::empty(W);
        f.set_ranges([(0, 4 * P)].into_iter());
        let (a, b) = (f.alloc().unwrap(), f.alloc().unwrap());
        assert_eq!(f.stats(), (2, 2));
        f.give_back_lent(a);
        f.give_back_lent(b);
        // Counted as free (accounting balances) but never a table frame.
        assert_eq!(f.stats(), (0, 4));
        assert_eq!(f.lent_free(), 2);
        let plain: Vec<u64> = (0..2).map(|_| f.alloc().unwrap()).collect();
        assert!(!plain.contains(&a) && !plain.contains(&b));
        assert_eq!(f.alloc(), None, "the lent pool is not the general pool");
        let again = [f.alloc_lent().unwrap(), f.alloc_lent().unwrap()];
        assert!(again.contains(&a) && again.contains(&b));
        assert_eq!(f.alloc_lent(), None);
        assert_eq!(f.stats(), (4, 0));
    }

    #[test]
    fn a_range_shorter_than_a_page_gives_nothing() {
        let mut f = Frames::empty(W);
        f.set_ranges([(0, P / 2), (8 * P, P)].into_iter());
        assert_eq!(f.stats(), (0, 1));
        assert_eq!(f.alloc(), Some(W + 8 * P));
        assert_eq!(f.alloc(), None);
        let mut none = Frames::empty(W);
        none.set_ranges(core::iter::empty());
        assert_eq!(none.alloc(), None);
        assert_eq!(none.stats(), (0, 0));
    }
}
