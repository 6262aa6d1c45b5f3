//! An in-memory search aid for a cached leaf, built when the (verified)
//! leaf enters the page cache; nothing of it is stored on the medium.
//!
//! A binary search over a slotted leaf touches a new cache line at every
//! probe (the entries are spread over 4 KiB). The index holds the bytes
//! all the leaf's keys share and, per key, the next four bytes after them
//! as a big-endian word (zero-padded): the search runs over those words,
//! a few hundred contiguous bytes, and reads an entry only to confirm a
//! word tie, normally just the entry it then returns.
//!
//! Why it is exact: every key of the leaf starts with the shared prefix,
//! so their order is their suffixes' order, and truncating a suffix to
//! four zero-padded bytes preserves order weakly (a < b implies
//! word(a) <= word(b)). A word strictly below (above) the searched key's
//! word therefore belongs to a smaller (larger) key; only equal words
//! need the full comparison.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cmp::Ordering;

use crate::page::{cmp_keys, count, leaf_key};

pub struct LeafIndex {
    /// Per entry the four bytes after the prefix (`n` words), then the
    /// bytes every key of the leaf starts with: one allocation, so a
    /// lookup touches one or two cache lines of it.
    data: Box<[u8]>,
    n: usize,
}

fn word_after(key: &[u8], prefix_len: usize) -> u32 {
    let rest = key.get(prefix_len..).unwrap_or_default();
    let mut w = [0u8; 4];
    let n = rest.len().min(4);
    w[..n].copy_from_slice(&rest[..n]);
    u32::from_be_bytes(w)
}

impl LeafIndex {
    /// Builds the index of a verified leaf (keys strictly ascending).
    pub fn new(p: &[u8]) -> LeafIndex {
        let n = count(p);
        if n == 0 {
            return LeafIndex { data: Box::default(), n };
        }
        // Sorted keys: what the first and last share, all share.
        let (first, last) = (leaf_key(p, 0), leaf_key(p, n - 1));
        let shared = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        let mut data = Vec::with_capacity(4 * n + shared);
        for i in 0..n {
            data.extend_from_slice(&word_after(leaf_key(p, i), shared).to_be_bytes());
        }
        data.extend_from_slice(&first[..shared]);
        LeafIndex { data: data.into(), n }
    }

    fn word(&self, i: usize) -> u32 {
        let w = &self.data[4 * i..4 * i + 4];
        u32::from_be_bytes([w[0], w[1], w[2], w[3]])
    }

    fn prefix(&self) -> &[u8] {
        &self.data[4 * self.n..]
    }

    /// First entry in `lo..hi` whose word is not below (`strict`: above) `w`.
    fn partition(&self, mut lo: usize, mut hi: usize, w: u32, strict: bool) -> usize {
        while lo < hi {
            let mid = (lo + hi) / 2;
            let x = self.word(mid);
            if x < w || (strict && x == w) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// As `page::leaf_search` on the leaf `p` this index was built from:
    /// `Ok(i)` if entry `i` has `key`, else `Err(i)` where it would go.
    pub fn search(&self, p: &[u8], key: &[u8]) -> Result<usize, usize> {
        let n = self.n;
        let prefix = self.prefix();
        let pl = prefix.len();
        if key.len() < pl {
            // A key shorter than the prefix sorts before every entry if it
            // is a prefix of it (or below it), after them if above it.
            return match cmp_keys(key, &prefix[..key.len()]) {
                Ordering::Greater => Err(n),
                _ => Err(0),
            };
        }
        match cmp_keys(&key[..pl], prefix) {
            Ordering::Less => return Err(0),
            Ordering::Greater => return Err(n),
            Ordering::Equal => {}
        }
        let w = word_after(key, pl);
        let mut lo = self.partition(0, n, w, false);
        let mut hi = self.partition(lo, n, w, true);
        // Entries lo..hi share the word: compare the keys themselves.
        while lo < hi {
            let mid = (lo + hi) / 2;
            match cmp_keys(leaf_key(p, mid), key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::{build_leaf, leaf_search, verify, LeafEntry, Val};
    use testrng::Rng;

    /// Keys over a tiny alphabet with long shared prefixes, ties in the
    /// words (suffixes longer than 4 bytes) and keys shorter than the
    /// prefix; every probe must give exactly what the plain search gives.
    #[test]
    fn agrees_with_plain_search() {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let alphabet = [0u8, 1, b'0', b'5', 0xfe, 0xff];
        let key = |rng: &mut Rng, base: &[u8]| {
            let mut k = base.to_vec();
            let extra = rng.below(9) as usize;
            for _ in 0..extra {
                k.push(*rng.pick(&alphabet));
            }
            if k.is_empty() {
                k.push(b'0');
            }
            k
        };
        let (mut with_prefix, mut with_ties) = (0, 0);
        for round in 0..300 {
            let base: Vec<u8> = (0..rng.below(12)).map(|i| b'a' + (i as u8 % 3)).collect();
            let n = rng.below(40) as usize;
            let mut keys: Vec<Vec<u8>> = (0..n).map(|_| key(&mut rng, &base)).collect();
            keys.sort();
            keys.dedup();
            let entries: Vec<LeafEntry> =
                keys.iter().map(|k| LeafEntry { key: k.clone(), val: Val::Inline(alloc::vec![7; 3]) }).collect();
            let p = build_leaf(&entries, 9, 1);
            verify(&p, 9).unwrap();
            let ix = LeafIndex::new(&p);
            with_prefix += usize::from(!ix.prefix().is_empty());
            with_ties += usize::from((1..ix.n).any(|i| ix.word(i - 1) == ix.word(i)));
            let mut probes: Vec<Vec<u8>> = keys.clone();
            for _ in 0..60 {
                let cut = rng.below(base.len() as u64 + 2) as usize;
                probes.push(key(&mut rng, &base[..cut.min(base.len())]));
            }
            probes.push(alloc::vec![0]);
            probes.push(alloc::vec![0xff; 20]);
            for k in &probes {
                assert_eq!(ix.search(&p, k), leaf_search(&p, k), "round {round}, key {k:?}, keys {keys:?}");
            }
        }
        // The cases the index must get right did occur.
        assert!(with_prefix > 50 && with_ties > 50, "prefix {with_prefix}, ties {with_ties}");
    }
}
