//! A bounded cache of verified pages, managed by the database itself (no OS
//! page cache decides what stays in memory).
//!
//! Tree pages are copy-on-write, so a cached page never becomes dirty: a
//! checkpoint writes new pages to the medium and replaces the cache entry of
//! any reused page number. Eviction is CLOCK (second chance).

use alloc::sync::Arc;
use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::leafindex::LeafIndex;

/// A verified page, shared with readers that are still looking at it.
pub type Page = Arc<[u8]>;

struct Slot {
    pgno: u64,
    page: Page,
    /// Search aid for a leaf (built by the caller from the verified page).
    index: Option<LeafIndex>,
    referenced: bool,
}

pub struct PageCache {
    capacity: usize,
    index: HashMap<u64, usize>,
    slots: Vec<Slot>,
    hand: usize,
    pub hits: u64,
    pub misses: u64,
}

impl PageCache {
    pub fn new(capacity: usize) -> PageCache {
        let capacity = capacity.max(8);
        PageCache { capacity, index: HashMap::new(), slots: Vec::new(), hand: 0, hits: 0, misses: 0 }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    #[cfg(test)]
    pub fn get(&mut self, pgno: u64) -> Option<Page> {
        self.lookup(pgno).map(|i| self.handle(i).clone())
    }

    /// The slot holding `pgno`, if cached (counts a hit or a miss). The
    /// slot stays valid until the next `insert` or `remove`; borrowing the
    /// page through it (`page`) costs no reference-count traffic.
    #[inline]
    pub fn lookup(&mut self, pgno: u64) -> Option<usize> {
        match self.index.get(&pgno) {
            Some(&i) => {
                self.hits += 1;
                self.slots[i].referenced = true;
                Some(i)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// The page in `slot` (from `lookup` or `insert`).
    #[inline]
    pub fn page(&self, slot: usize) -> &[u8] {
        &self.slots[slot].page
    }

    /// The leaf index of the page in `slot`, if it is a leaf.
    #[inline]
    pub fn leaf_index(&self, slot: usize) -> Option<&LeafIndex> {
        self.slots[slot].index.as_ref()
    }

    /// A shared handle to the page in `slot`, for callers that keep it
    /// while they change the cache.
    pub fn handle(&self, slot: usize) -> &Page {
        &self.slots[slot].page
    }

    /// Inserts or replaces the page cached for `pgno` (with its leaf
    /// index if it is a leaf); returns its slot.
    pub fn insert(&mut self, pgno: u64, page: Page, index: Option<LeafIndex>) -> usize {
        if let Some(&i) = self.index.get(&pgno) {
            self.slots[i].page = page;
            self.slots[i].index = index;
            self.slots[i].referenced = true;
            return i;
        }
        if self.slots.len() < self.capacity {
            let i = self.slots.len();
            self.index.insert(pgno, i);
            self.slots.push(Slot { pgno, page, index, referenced: false });
            return i;
        }
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            if self.slots[i].referenced {
                self.slots[i].referenced = false;
                continue;
            }
            self.index.remove(&self.slots[i].pgno);
            self.index.insert(pgno, i);
            self.slots[i] = Slot { pgno, page, index, referenced: false };
            return i;
        }
    }

    /// Drops the page cached for `pgno`, if any (it was freed: keeping it
    /// would only take a slot from a live page).
    pub fn remove(&mut self, pgno: u64) {
        if let Some(i) = self.index.remove(&pgno) {
            self.slots.swap_remove(i);
            if let Some(moved) = self.slots.get(i) {
                self.index.insert(moved.pgno, i);
            }
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_second_chance() {
        let mut c = PageCache::new(8);
        for i in 0..8u64 {
            c.insert(i, Arc::from(alloc::vec![i as u8; 4]), None);
        }
        assert!(c.get(0).is_some());
        c.insert(100, Arc::from(alloc::vec![1u8; 4]), None);
        assert_eq!(c.len(), 8);
        assert!(c.get(0).is_some(), "referenced page survives one sweep");
        assert!(c.get(100).is_some());
        c.remove(100);
        c.remove(3);
        assert!(c.get(100).is_none() && c.get(3).is_none());
        assert_eq!(c.len(), 6);
        // Page 1 was the CLOCK victim for 100; the rest are still found,
        // each under its own number after the removals moved slots.
        assert!(c.get(1).is_none());
        for i in [0u64, 2, 4, 5, 6, 7] {
            assert_eq!(c.get(i).map(|p| p[0]), Some(i as u8), "page {i}");
        }
    }
}
