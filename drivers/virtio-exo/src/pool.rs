//! Page allocation inside the DMA pool: which of the pool's pages are
//! handed out. Pure bookkeeping over page indices (no memory access), so
//! it is tested on the host directly.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// A request for zero pages.
    Empty,
    /// No run of `wanted` free pages (`free` pages free in all, the
    /// longest run `largest`).
    Exhausted { wanted: usize, free: usize, largest: usize },
    /// Pages outside the pool.
    OutOfRange { first: usize, count: usize, pages: usize },
    /// Freeing a page that is not allocated.
    NotAllocated { page: usize },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PoolError::Empty => write!(f, "DMA request for zero pages"),
            PoolError::Exhausted { wanted, free, largest } => {
                write!(
                    f,
                    "DMA pool exhausted: {wanted} contiguous pages wanted, {free} free, longest free run {largest}"
                )
            }
            PoolError::OutOfRange { first, count, pages } => {
                write!(f, "DMA pages {first}..{} are outside the {pages}-page pool", first + count)
            }
            PoolError::NotAllocated { page } => write!(f, "DMA page {page} freed but not allocated"),
        }
    }
}

/// First-fit allocator of contiguous page runs (the device needs each
/// buffer contiguous in its I/O address space).
#[derive(Debug)]
pub struct PagePool {
    used: Vec<bool>,
    in_use: usize,
    peak: usize,
}

impl PagePool {
    pub fn new(pages: usize) -> PagePool {
        PagePool { used: vec![false; pages], in_use: 0, peak: 0 }
    }

    pub fn pages(&self) -> usize {
        self.used.len()
    }

    pub fn in_use(&self) -> usize {
        self.in_use
    }

    pub fn peak(&self) -> usize {
        self.peak
    }

    /// The first page of a free run of `count` pages, now allocated.
    pub fn alloc(&mut self, count: usize) -> Result<usize, PoolError> {
        if count == 0 {
            return Err(PoolError::Empty);
        }
        let (mut run, mut largest) = (0, 0);
        for i in 0..self.used.len() {
            run = if self.used[i] { 0 } else { run + 1 };
            largest = largest.max(run);
            if run == count {
                let first = i + 1 - count;
                self.used[first..=i].fill(true);
                self.in_use += count;
                self.peak = self.peak.max(self.in_use);
                return Ok(first);
            }
        }
        Err(PoolError::Exhausted { wanted: count, free: self.pages() - self.in_use, largest })
    }

    fn check_range(&self, first: usize, count: usize) -> Result<(), PoolError> {
        match first.checked_add(count) {
            Some(end) if count > 0 && end <= self.pages() => Ok(()),
            _ => Err(PoolError::OutOfRange { first, count, pages: self.pages() }),
        }
    }

    /// Free a run; nothing changes unless every page of it is allocated.
    pub fn free(&mut self, first: usize, count: usize) -> Result<(), PoolError> {
        self.check_range(first, count)?;
        if let Some(page) = (first..first + count).find(|&p| !self.used[p]) {
            return Err(PoolError::NotAllocated { page });
        }
        self.used[first..first + count].fill(false);
        self.in_use -= count;
        Ok(())
    }

    /// Whether every page of the run is allocated.
    pub fn all_allocated(&self, first: usize, count: usize) -> bool {
        self.check_range(first, count).is_ok() && self.used[first..first + count].iter().all(|u| *u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_runs_and_exhaustion() {
        let mut p = PagePool::new(8);
        assert_eq!(p.alloc(3), Ok(0));
        assert_eq!(p.alloc(2), Ok(3));
        assert_eq!(p.alloc(4), Err(PoolError::Exhausted { wanted: 4, free: 3, largest: 3 }));
        p.free(0, 3).unwrap();
        // A 2-page hole at 0..3 is found before the tail.
        assert_eq!(p.alloc(2), Ok(0));
        assert_eq!(p.alloc(4), Err(PoolError::Exhausted { wanted: 4, free: 4, largest: 3 }));
        assert_eq!(p.alloc(3), Ok(5));
        assert_eq!((p.in_use(), p.peak()), (7, 7));
        assert_eq!(p.alloc(0), Err(PoolError::Empty));
    }

    #[test]
    fn bad_frees_change_nothing() {
        let mut p = PagePool::new(4);
        assert_eq!(p.alloc(2), Ok(0));
        assert_eq!(p.free(1, 2), Err(PoolError::NotAllocated { page: 2 }));
        assert!(p.all_allocated(0, 2), "a refused free must not release page 1");
        assert_eq!(p.free(3, 2), Err(PoolError::OutOfRange { first: 3, count: 2, pages: 4 }));
        assert_eq!(p.free(usize::MAX, 2), Err(PoolError::OutOfRange { first: usize::MAX, count: 2, pages: 4 }));
        p.free(0, 2).unwrap();
        assert_eq!(p.free(0, 1), Err(PoolError::NotAllocated { page: 0 }));
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn random_alloc_free_keeps_counts_and_never_overlaps() {
        let mut p = PagePool::new(64);
        let mut owner = [usize::MAX; 64];
        let mut live: Vec<(usize, usize)> = Vec::new();
        let mut rng = testrng::Rng::new(0x2545_f491_4f6c_dd1d);
        for step in 0..5_000 {
            let x = rng.next_u64();
            if !x.is_multiple_of(3) || live.is_empty() {
                let n = (x >> 8) as usize % 9 + 1;
                if let Ok(first) = p.alloc(n) {
                    for o in &mut owner[first..first + n] {
                        assert_eq!(*o, usize::MAX, "step {step}: page handed out twice");
                        *o = step;
                    }
                    live.push((first, n));
                }
            } else {
                let (first, n) = live.swap_remove((x >> 16) as usize % live.len());
                p.free(first, n).unwrap();
                owner[first..first + n].fill(usize::MAX);
            }
            assert_eq!(p.in_use(), live.iter().map(|(_, n)| n).sum::<usize>());
        }
    }
}
