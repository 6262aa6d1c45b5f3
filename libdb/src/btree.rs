//! The copy-on-write B+tree: lookups and range collection on verified,
//! cached pages, and the batched rewrite a checkpoint performs.
//!
//! A checkpoint merges the sorted batch of committed changes into the tree
//! in one pass: every touched leaf and branch is decoded once, merged,
//! re-split if it overflows, and written to a fresh page; untouched
//! subtrees are shared with the previous tree. Old pages go to the pending
//! free list, so the previous tree stays intact until the new meta page is
//! durable (and while readers of it remain).

use alloc::vec::Vec;
use core::ops::Bound;

use crate::cache::Page;
use crate::engine::Inner;
use crate::error::{corrupt, Corruption, Error};
use crate::leafindex::LeafIndex;
use crate::log::Op;
use crate::page::{
    self, LeafEntry, PageRef, Val, ValRef, BODY, KIND_BRANCH, KIND_LEAF, KIND_OVERFLOW, OVERFLOW_DATA, PAGE_SIZE,
};
use crate::storage::Storage;

/// No valid tree of 4 KiB pages and <= 512-byte keys is this deep.
pub const MAX_DEPTH: usize = 40;

fn past_hi(k: &[u8], hi: Bound<&[u8]>) -> bool {
    match hi {
        Bound::Included(h) => k > h,
        Bound::Excluded(h) => k >= h,
        Bound::Unbounded => false,
    }
}

fn below_lo(k: &[u8], lo: Bound<&[u8]>) -> bool {
    match lo {
        Bound::Included(l) => k < l,
        Bound::Excluded(l) => k <= l,
        Bound::Unbounded => false,
    }
}

/// Bytes used by a leaf's entries and slots.
fn leaf_bytes(p: &[u8]) -> usize {
    page::decode_leaf(p).iter().map(|e| page::leaf_entry_size(e.key.len(), &e.val)).sum()
}

/// Splits items of the given sizes into groups of at most `cap` bytes,
/// balanced so that no group is left nearly empty.
fn split(sizes: &[usize], cap: usize) -> Vec<core::ops::Range<usize>> {
    let total: usize = sizes.iter().sum();
    let target = total.div_ceil(total.div_ceil(cap).max(1));
    let mut groups = Vec::new();
    let (mut start, mut cur) = (0, 0);
    for (i, &s) in sizes.iter().enumerate() {
        if cur > 0 && (cur + s > cap || cur >= target) {
            groups.push(start..i);
            start = i;
            cur = 0;
        }
        cur += s;
    }
    if start < sizes.len() {
        groups.push(start..sizes.len());
    }
    groups
}

impl<S: Storage> Inner<S> {
    /// Fetches the page `r` references through the cache, verifying it on
    /// a miss. `from` is the page holding the pointer (for error messages),
    /// `parent_gen` the generation the page may not be newer than.
    pub(crate) fn load(&mut self, r: PageRef, parent_gen: u64, from: u64) -> Result<Page, Error> {
        let slot = self.load_slot(r, parent_gen, from)?;
        Ok(self.cache.handle(slot).clone())
    }

    /// As `load`, but returns the cache slot holding the page, which the
    /// caller borrows (`self.cache.page(slot)`) until it next changes the
    /// cache: the point-read path takes no page handle per level.
    ///
    /// The page must be the version the reference pins (its checksum), so
    /// an older copy left by a lost or misdirected write is `Stale`.
    #[inline]
    fn load_slot(&mut self, r: PageRef, parent_gen: u64, from: u64) -> Result<usize, Error> {
        let pgno = r.pgno;
        if pgno < self.meta.first_tree_page() || pgno >= self.total_pages {
            return Err(corrupt(from, Corruption::BadPointer { pointer: pgno }));
        }
        let slot = match self.cache.lookup(pgno) {
            Some(slot) => slot,
            None => self.fetch(pgno)?,
        };
        let found = page::checksum(self.cache.page(slot));
        if found != r.crc {
            return Err(corrupt(pgno, Corruption::Stale { expected_checksum: r.crc, found_checksum: found }));
        }
        let gen = page::gen(self.cache.page(slot));
        if gen > parent_gen {
            return Err(corrupt(pgno, Corruption::TooNew { page_gen: gen, parent_gen }));
        }
        Ok(slot)
    }

    /// Reads a page that is not cached, verifies it (checksum, number,
    /// structure) and caches it; returns its slot.
    fn fetch(&mut self, pgno: u64) -> Result<usize, Error> {
        let mut buf = alloc::vec![0u8; PAGE_SIZE];
        self.storage.read(pgno * PAGE_SIZE as u64, &mut buf)?;
        page::verify(&buf, pgno).map_err(|w| corrupt(pgno, w))?;
        Ok(self.cache_page(pgno, buf))
    }

    /// Caches a verified (or just built) page, with a search index if it
    /// is a leaf; returns its slot.
    pub(crate) fn cache_page(&mut self, pgno: u64, page: Vec<u8>) -> usize {
        let index = (page::kind(&page) == KIND_LEAF).then(|| LeafIndex::new(&page));
        self.cache.insert(pgno, page.into(), index)
    }

    fn read_value(&mut self, val: Val, leaf: u64, leaf_gen: u64) -> Result<Vec<u8>, Error> {
        let (len, first, tail) = match val {
            Val::Inline(v) => return Ok(v),
            Val::Overflow { len, first, tail } => (len as usize, first, tail),
        };
        let mut out = Vec::with_capacity(len);
        let (mut pg, mut from) = (first, leaf);
        let chained = len - tail.len();
        while out.len() < chained {
            if pg.pgno == 0 {
                return Err(corrupt(from, Corruption::Malformed("overflow chain ends early")));
            }
            let p = self.load(pg, leaf_gen, from)?;
            let h = page::header(&p);
            if h.kind != KIND_OVERFLOW {
                return Err(corrupt(pg.pgno, Corruption::WrongKind { expected: "overflow", found: h.kind }));
            }
            let take = (chained - out.len()).min(OVERFLOW_DATA);
            out.extend_from_slice(&p[page::HEADER..page::HEADER + take]);
            from = pg.pgno;
            pg = PageRef { pgno: h.extra, crc: h.extra_crc };
        }
        out.extend_from_slice(&tail);
        Ok(out)
    }

    fn owned_val(p: &[u8], i: usize) -> Val {
        match page::leaf_val(p, i) {
            ValRef::Inline(v) => Val::Inline(v.to_vec()),
            ValRef::Overflow { len, first, tail } => Val::Overflow { len, first, tail: tail.to_vec() },
        }
    }

    pub(crate) fn tree_get(&mut self, root: PageRef, gen: u64, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if root.pgno == 0 {
            return Ok(None);
        }
        let (mut r, mut pgen, mut from) = (root, gen, 0);
        for _ in 0..MAX_DEPTH {
            let pgno = r.pgno;
            let slot = self.load_slot(r, pgen, from)?;
            let p = self.cache.page(slot);
            match page::kind(p) {
                KIND_BRANCH => {
                    let i = page::branch_find(p, key);
                    from = pgno;
                    pgen = page::gen(p);
                    r = page::branch_child(p, i);
                }
                KIND_LEAF => {
                    let found = match self.cache.leaf_index(slot) {
                        Some(ix) => ix.search(p, key),
                        None => page::leaf_search(p, key),
                    };
                    let Ok(i) = found else {
                        return Ok(None);
                    };
                    // An inline value is copied straight out of the cached
                    // page; only an overflow chain needs more page loads.
                    let val = match page::leaf_val(p, i) {
                        ValRef::Inline(v) => return Ok(Some(v.to_vec())),
                        ValRef::Overflow { len, first, tail } => Val::Overflow { len, first, tail: tail.to_vec() },
                    };
                    let leaf_gen = page::gen(p);
                    return self.read_value(val, pgno, leaf_gen).map(Some);
                }
                k => return Err(corrupt(pgno, Corruption::WrongKind { expected: "branch or leaf", found: k })),
            }
        }
        Err(corrupt(root.pgno, Corruption::TooDeep))
    }

    /// Appends up to `limit` entries within the bounds, in order (or
    /// reversed), from the subtree at `pgno`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tree_collect(
        &mut self,
        r: PageRef,
        pgen: u64,
        from: u64,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        rev: bool,
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
        depth: usize,
    ) -> Result<(), Error> {
        let pgno = r.pgno;
        if depth >= MAX_DEPTH {
            return Err(corrupt(pgno, Corruption::TooDeep));
        }
        let p = self.load(r, pgen, from)?;
        let h = page::header(&p);
        let n = h.count;
        match h.kind {
            KIND_BRANCH => {
                if !rev {
                    let start = match lo {
                        Bound::Unbounded => 0,
                        Bound::Included(k) | Bound::Excluded(k) => page::branch_find(&p, k),
                    };
                    for i in start..n {
                        if i > start && past_hi(page::branch_key(&p, i), hi) {
                            break;
                        }
                        let child = page::branch_child(&p, i);
                        self.tree_collect(child, h.gen, pgno, lo, hi, rev, limit, out, depth + 1)?;
                        if out.len() >= limit {
                            break;
                        }
                    }
                } else {
                    let start = match hi {
                        Bound::Unbounded => n - 1,
                        Bound::Included(k) | Bound::Excluded(k) => page::branch_find(&p, k),
                    };
                    for i in (0..=start).rev() {
                        let child = page::branch_child(&p, i);
                        self.tree_collect(child, h.gen, pgno, lo, hi, rev, limit, out, depth + 1)?;
                        if out.len() >= limit {
                            break;
                        }
                        // Children left of i hold keys below key_i.
                        if i > 0 {
                            if let Bound::Included(l) | Bound::Excluded(l) = lo {
                                if page::branch_key(&p, i) <= l {
                                    break;
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
            KIND_LEAF => {
                if !rev {
                    let mut i = match lo {
                        Bound::Unbounded => 0,
                        Bound::Included(k) => page::leaf_search(&p, k).unwrap_or_else(|i| i),
                        Bound::Excluded(k) => page::leaf_search(&p, k).map_or_else(|i| i, |i| i + 1),
                    };
                    while i < n && out.len() < limit && !past_hi(page::leaf_key(&p, i), hi) {
                        let v = self.read_value(Self::owned_val(&p, i), pgno, h.gen)?;
                        out.push((page::leaf_key(&p, i).to_vec(), v));
                        i += 1;
                    }
                } else {
                    let mut j = match hi {
                        Bound::Unbounded => n,
                        Bound::Included(k) => page::leaf_search(&p, k).map_or_else(|i| i, |i| i + 1),
                        Bound::Excluded(k) => page::leaf_search(&p, k).unwrap_or_else(|i| i),
                    };
                    while j > 0 && out.len() < limit && !below_lo(page::leaf_key(&p, j - 1), lo) {
                        let v = self.read_value(Self::owned_val(&p, j - 1), pgno, h.gen)?;
                        out.push((page::leaf_key(&p, j - 1).to_vec(), v));
                        j -= 1;
                    }
                }
                Ok(())
            }
            k => Err(corrupt(pgno, Corruption::WrongKind { expected: "branch or leaf", found: k })),
        }
    }

    // ---- checkpoint: batched copy-on-write ---------------------------------

    /// Applies a sorted batch to the durable tree, returning the new root.
    pub(crate) fn apply_root(&mut self, batch: &[Op]) -> Result<PageRef, Error> {
        let root = PageRef { pgno: self.meta.root, crc: self.meta.root_crc };
        let mut level = if root.pgno == 0 {
            self.write_leaves(Vec::new(), batch)?
        } else {
            self.apply_node(root, self.meta.gen, 0, batch, 0)?
        };
        while level.len() > 1 {
            level = self.write_branches(level)?;
        }
        let mut root = level.first().map_or(PageRef::default(), |e| e.1);
        // A root branch with one child is just that child.
        while root.pgno != 0 {
            let p = self.load(root, u64::MAX, 0)?;
            let h = page::header(&p);
            if h.kind == KIND_BRANCH && h.count == 1 {
                self.freed.push(root.pgno);
                root = page::branch_child(&p, 0);
            } else {
                break;
            }
        }
        Ok(root)
    }

    fn apply_node(
        &mut self,
        r: PageRef,
        pgen: u64,
        from: u64,
        batch: &[Op],
        depth: usize,
    ) -> Result<Vec<(Vec<u8>, PageRef)>, Error> {
        let pgno = r.pgno;
        if depth >= MAX_DEPTH {
            return Err(corrupt(pgno, Corruption::TooDeep));
        }
        let p = self.load(r, pgen, from)?;
        let h = page::header(&p);
        match h.kind {
            KIND_LEAF => {
                self.freed.push(pgno);
                self.write_leaves(page::decode_leaf(&p), batch)
            }
            KIND_BRANCH => {
                let children = page::decode_branch(&p);
                let mut out = Vec::with_capacity(children.len() + 2);
                let mut b = 0;
                for (i, (key, child)) in children.iter().enumerate() {
                    let end = match children.get(i + 1) {
                        Some((next, _)) => b + batch[b..].partition_point(|(k, _)| k < next),
                        None => batch.len(),
                    };
                    let sub = &batch[b..end];
                    b = end;
                    if sub.is_empty() {
                        out.push((key.clone(), *child));
                        continue;
                    }
                    let repl = self.apply_node(*child, h.gen, pgno, sub, depth + 1)?;
                    for (j, (k, c)) in repl.into_iter().enumerate() {
                        // The first replacement keeps this child's range.
                        out.push((if j == 0 { key.clone() } else { k }, c));
                    }
                }
                self.freed.push(pgno);
                self.merge_small_leaves(&mut out, pgno)?;
                if out.is_empty() {
                    return Ok(out);
                }
                self.write_branches(out)
            }
            k => Err(corrupt(pgno, Corruption::WrongKind { expected: "branch or leaf", found: k })),
        }
    }

    /// Leaves this checkpoint rewrote that ended up less than a quarter
    /// full are merged with a sibling (and re-split evenly if needed), so
    /// deleting most keys does not leave a tree of nearly empty pages.
    fn merge_small_leaves(&mut self, children: &mut Vec<(Vec<u8>, PageRef)>, parent: u64) -> Result<(), Error> {
        let mut i = 0;
        while i < children.len() && children.len() > 1 {
            let p = self.load(children[i].1, u64::MAX, parent)?;
            let h = page::header(&p);
            if h.kind != KIND_LEAF || h.gen != self.new_gen || leaf_bytes(&p) >= BODY / 4 {
                i += 1;
                continue;
            }
            let (a, b) = if i + 1 < children.len() { (i, i + 1) } else { (i - 1, i) };
            let other = self.load(children[if a == i { b } else { a }].1, u64::MAX, parent)?;
            if page::header(&other).kind != KIND_LEAF {
                i += 1;
                continue;
            }
            let (pa, pb) = if a == i { (p, other) } else { (other, p) };
            let mut entries = page::decode_leaf(&pa);
            entries.extend(page::decode_leaf(&pb));
            self.freed.push(children[a].1.pgno);
            self.freed.push(children[b].1.pgno);
            let mut repl = self.write_leaves(entries, &[])?;
            if let Some(first) = repl.first_mut() {
                first.0 = children[a].0.clone();
            }
            children.splice(a..=b, repl);
            // Look at the result again: it may still be small (terminates:
            // each merge either removes a child or yields pages > BODY / 4).
            i = a;
        }
        Ok(())
    }

    /// Merges `batch` into `entries` and writes the result as leaves.
    fn write_leaves(&mut self, entries: Vec<LeafEntry>, batch: &[Op]) -> Result<Vec<(Vec<u8>, PageRef)>, Error> {
        let mut merged = Vec::with_capacity(entries.len() + batch.len());
        let mut old = entries.into_iter().peekable();
        for (k, v) in batch {
            while let Some(e) = old.next_if(|e| e.key < *k) {
                merged.push(e);
            }
            if let Some(e) = old.next_if(|e| e.key == *k) {
                self.free_value(&e.val)?;
                self.entries = self.entries.saturating_sub(1);
            }
            if let Some(v) = v {
                let val = self.store_value(k, v)?;
                merged.push(LeafEntry { key: k.clone(), val });
                self.entries += 1;
            }
        }
        merged.extend(old);
        let sizes: Vec<usize> = merged.iter().map(|e| page::leaf_entry_size(e.key.len(), &e.val)).collect();
        let mut out = Vec::new();
        for g in split(&sizes, BODY) {
            let pg = self.alloc_page()?;
            let group = &merged[g];
            let crc = self.write_page(pg, page::build_leaf(group, pg, self.new_gen))?;
            out.push((group[0].key.clone(), PageRef { pgno: pg, crc }));
        }
        Ok(out)
    }

    fn write_branches(&mut self, children: Vec<(Vec<u8>, PageRef)>) -> Result<Vec<(Vec<u8>, PageRef)>, Error> {
        let sizes: Vec<usize> = children.iter().map(|(k, _)| page::branch_entry_size(k.len())).collect();
        let mut out = Vec::new();
        for g in split(&sizes, BODY) {
            let pg = self.alloc_page()?;
            let group = &children[g];
            let crc = self.write_page(pg, page::build_branch(group, pg, self.new_gen))?;
            out.push((group[0].0.clone(), PageRef { pgno: pg, crc }));
        }
        Ok(out)
    }

    fn store_value(&mut self, key: &[u8], v: &[u8]) -> Result<Val, Error> {
        if page::fits_inline(key.len(), v.len()) {
            return Ok(Val::Inline(v.to_vec()));
        }
        // A short remainder stays in the leaf instead of taking a page.
        let rem = v.len() % OVERFLOW_DATA;
        let tail_len = if v.len() > OVERFLOW_DATA && rem <= page::MAX_TAIL { rem } else { 0 };
        let (chained, tail) = v.split_at(v.len() - tail_len);
        let chunks: Vec<&[u8]> = chained.chunks(OVERFLOW_DATA).collect();
        let mut pages = Vec::with_capacity(chunks.len());
        for _ in 0..chunks.len() {
            pages.push(self.alloc_page()?);
        }
        // Last page first: each page pins the checksum of the next.
        let mut next = PageRef::default();
        for (i, c) in chunks.iter().enumerate().rev() {
            let crc = self.write_page(pages[i], page::build_overflow(c, next, pages[i], self.new_gen))?;
            next = PageRef { pgno: pages[i], crc };
        }
        Ok(Val::Overflow { len: v.len() as u32, first: next, tail: tail.to_vec() })
    }

    fn free_value(&mut self, val: &Val) -> Result<(), Error> {
        let (pages, mut pg) = match val {
            Val::Inline(_) => return Ok(()),
            Val::Overflow { len, first, tail } => (page::chain_pages(*len as usize, tail.len()), *first),
        };
        for _ in 0..pages {
            let p = self.load(pg, u64::MAX, 0)?;
            let h = page::header(&p);
            if h.kind != KIND_OVERFLOW {
                return Err(corrupt(pg.pgno, Corruption::WrongKind { expected: "overflow", found: h.kind }));
            }
            self.freed.push(pg.pgno);
            pg = PageRef { pgno: h.extra, crc: h.extra_crc };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_balances_and_respects_capacity() {
        let sizes = [1000; 9];
        let g = split(&sizes, 4064);
        assert_eq!(g.len(), 3);
        for r in &g {
            assert!(sizes[r.clone()].iter().sum::<usize>() <= 4064);
        }
        assert_eq!(split(&[10], 4064).len(), 1);
        assert!(split(&[], 4064).is_empty());
    }
}
