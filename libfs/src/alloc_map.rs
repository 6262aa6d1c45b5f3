//! Free-space management: a bitmap of the data pages, rebuilt on mount
//! from the extents (the extents are the only durable record of what is
//! in use, so the two can never disagree on the medium).
//!
//! A page released by an operation is not reusable until the commit that
//! releases it is durable: until then the durable state still points at
//! it, and new data written there would show up in the old file after a
//! crash.

use alloc::vec;
use alloc::vec::Vec;

pub struct AllocMap {
    start: u64,
    used: Vec<bool>,
    free: u64,
    cursor: usize,
    /// Released by uncommitted operations.
    pending: Vec<u64>,
}

impl AllocMap {
    pub fn new(data: core::ops::Range<u64>) -> AllocMap {
        let n = (data.end - data.start) as usize;
        AllocMap { start: data.start, used: vec![false; n], free: n as u64, cursor: 0, pending: Vec::new() }
    }

    /// Marks `page` in use (mount). The caller has checked the range and
    /// that no page is used twice.
    pub fn mark(&mut self, page: u64) {
        let Some(i) = self.index(page) else { return };
        if !self.used[i] {
            self.used[i] = true;
            self.free -= 1;
        }
    }

    /// `page`'s slot, if it is a data page (pages outside come only from
    /// damaged images that fsck reported).
    fn index(&self, page: u64) -> Option<usize> {
        let i = usize::try_from(page.checked_sub(self.start)?).ok()?;
        (i < self.used.len()).then_some(i)
    }

    /// Pages allocatable now.
    pub fn free(&self) -> u64 {
        self.free
    }

    /// A free page, preferring `hint` (the page after the file's previous
    /// one, so files stay contiguous) and otherwise the next-fit cursor.
    pub fn alloc(&mut self, hint: Option<u64>) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        let n = self.used.len();
        let start = match hint {
            Some(h) if h >= self.start && ((h - self.start) as usize) < n && !self.used[(h - self.start) as usize] => {
                (h - self.start) as usize
            }
            _ => self.cursor,
        };
        for k in 0..n {
            let i = (start + k) % n;
            if !self.used[i] {
                self.used[i] = true;
                self.free -= 1;
                self.cursor = (i + 1) % n;
                return Some(self.start + i as u64);
            }
        }
        None
    }

    /// Releases `page` once the current commit is durable.
    pub fn release_later(&mut self, page: u64) {
        self.pending.push(page);
    }

    /// The commit that released the pending pages is durable.
    pub fn commit(&mut self) {
        for p in core::mem::take(&mut self.pending) {
            let Some(i) = self.index(p) else { continue };
            if self.used[i] {
                self.used[i] = false;
                self.free += 1;
            }
        }
    }
}
