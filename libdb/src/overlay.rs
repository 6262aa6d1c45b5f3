//! Committed changes not yet checkpointed into the tree (they are in the
//! log). Multi-versioned by commit sequence number so that a snapshot
//! reader sees exactly the commits made before it began, while the writer
//! keeps committing.

use alloc::collections::BTreeSet;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Bound;

use hashbrown::HashMap;

/// `None` is a deletion.
pub type Version = (u64, Option<Arc<[u8]>>);

/// Two indexes over the same (shared) keys: point reads, which usually
/// miss the overlay and go on to the tree, cost one hash probe instead of
/// a walk down an ordered map whose every comparison chases a pointer to
/// a separately allocated key (measured: with 32,000 overlay keys the
/// ordered walk was a quarter of a random read's instructions and over a
/// third of its cache misses).
#[derive(Default)]
pub struct Overlay {
    /// Every key's versions, oldest first.
    versions: HashMap<Arc<[u8]>, Vec<Version>>,
    /// The same keys in order, for ranges and checkpoints.
    order: BTreeSet<Arc<[u8]>>,
    /// Bytes of keys and values held (for the checkpoint policy/stats).
    pub bytes: usize,
}

/// What a commit replaced in the overlay, to take it back if the commit
/// fails after it was applied (see `Inner::rollback_overlay`).
#[derive(Default)]
pub struct OverlayUndo {
    bytes: usize,
    /// Each key's versions before the commit (`None`: the key was absent).
    keys: Vec<(Vec<u8>, Option<Vec<Version>>)>,
}

/// What a snapshot sees for a key in the overlay.
pub enum Seen<'a> {
    /// The overlay says nothing: look in the tree.
    Absent,
    Deleted,
    Value(&'a [u8]),
}

fn visible(versions: &[Version], seq: u64) -> Option<&Option<Arc<[u8]>>> {
    versions.iter().rev().find(|(s, _)| *s <= seq).map(|(_, v)| v)
}

/// Replaces a key's only version by `val` at `seq` in the old value's
/// own bytes, when they are the same size and nothing else holds them
/// (`Arc::get_mut`: no snapshot reader's version, no commit's undo):
/// overwriting a value with one of the same size — log replay's usual
/// record — then allocates and frees nothing.
fn overwrite_in_place(versions: &mut [Version], val: &[u8], seq: u64) -> bool {
    if let [(at, Some(old))] = versions {
        if old.len() == val.len() {
            if let Some(bytes) = Arc::get_mut(old) {
                bytes.copy_from_slice(val);
                *at = seq;
                return true;
            }
        }
    }
    false
}

impl Overlay {
    pub fn keys(&self) -> usize {
        self.versions.len()
    }

    /// Records `key -> val` committed at `seq`. Without readers of this
    /// overlay older versions are dropped at once.
    pub fn apply(&mut self, key: &[u8], val: Option<&[u8]>, seq: u64, keep_old: bool) {
        self.bytes += key.len() + val.map_or(0, |v| v.len());
        match self.versions.get_mut(key) {
            Some(versions) => {
                if !keep_old {
                    if let Some(v) = val {
                        if overwrite_in_place(versions, v, seq) {
                            return;
                        }
                    }
                    versions.clear();
                }
                versions.push((seq, val.map(Arc::from)));
            }
            None => {
                let key: Arc<[u8]> = Arc::from(key);
                self.order.insert(key.clone());
                self.versions.insert(key, alloc::vec![(seq, val.map(Arc::from))]);
            }
        }
    }

    /// Saves what applying changes to `keys` would replace.
    pub fn undo_for<'a>(&self, keys: impl Iterator<Item = &'a [u8]>) -> OverlayUndo {
        OverlayUndo { bytes: self.bytes, keys: keys.map(|k| (k.to_vec(), self.versions.get(k).cloned())).collect() }
    }

    /// Puts back what `undo` saved.
    pub fn rollback(&mut self, undo: OverlayUndo) {
        self.bytes = undo.bytes;
        for (key, before) in undo.keys {
            match before {
                Some(versions) => {
                    if let Some(v) = self.versions.get_mut(key.as_slice()) {
                        *v = versions;
                    }
                }
                None => {
                    self.versions.remove(key.as_slice());
                    self.order.remove(key.as_slice());
                }
            }
        }
    }

    pub fn get(&self, key: &[u8], seq: u64) -> Seen<'_> {
        if self.versions.is_empty() {
            return Seen::Absent;
        }
        match self.versions.get(key).and_then(|vs| visible(vs, seq)) {
            None => Seen::Absent,
            Some(None) => Seen::Deleted,
            Some(Some(v)) => Seen::Value(v),
        }
    }

    /// Entries visible at `seq` within the bounds, in order (or reversed),
    /// deletions included as `None`.
    pub fn range(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>, seq: u64, rev: bool) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) = (lo, hi) {
            if a > b || (a == b && !(matches!(lo, Bound::Included(_)) && matches!(hi, Bound::Included(_)))) {
                return Vec::new();
            }
        }
        let it = self.order.range::<[u8], _>((lo, hi)).filter_map(|k| {
            let v = visible(self.versions.get(k)?, seq)?;
            Some((k.to_vec(), v.as_ref().map(|v| v.to_vec())))
        });
        if rev {
            it.rev().collect()
        } else {
            it.collect()
        }
    }

    /// The newest version of every key, in key order (what a checkpoint
    /// writes into the tree).
    pub fn latest(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.order
            .iter()
            .filter_map(|k| {
                let (_, v) = self.versions.get(k)?.last()?;
                Some((k.to_vec(), v.as_ref().map(|v| v.to_vec())))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(o: &Overlay, k: &[u8], seq: u64) -> Option<Option<Vec<u8>>> {
        match o.get(k, seq) {
            Seen::Absent => None,
            Seen::Deleted => Some(None),
            Seen::Value(v) => Some(Some(v.to_vec())),
        }
    }

    #[test]
    fn point_lookups_ranges_and_latest_agree() {
        let mut o = Overlay::default();
        assert!(seen(&o, b"a", 9).is_none());
        o.apply(b"b", Some(b"1"), 1, true);
        o.apply(b"a", Some(b"2"), 2, true);
        o.apply(b"b", None, 3, true);
        o.apply(b"c", Some(b"4"), 4, false);
        assert_eq!(o.keys(), 3);
        // Each snapshot sees the versions committed at or before it.
        assert_eq!(seen(&o, b"b", 0), None);
        assert_eq!(seen(&o, b"b", 2), Some(Some(b"1".to_vec())));
        assert_eq!(seen(&o, b"b", 3), Some(None));
        assert_eq!(seen(&o, b"zz", 4), None);
        let all = o.range(Bound::Unbounded, Bound::Unbounded, 2, false);
        assert_eq!(all, vec![(b"a".to_vec(), Some(b"2".to_vec())), (b"b".to_vec(), Some(b"1".to_vec()))]);
        let rev = o.range(Bound::Excluded(&b"a"[..]), Bound::Included(&b"c"[..]), 4, true);
        assert_eq!(rev, vec![(b"c".to_vec(), Some(b"4".to_vec())), (b"b".to_vec(), None)]);
        // Without readers an overwrite drops the older versions.
        o.apply(b"b", Some(b"5"), 5, false);
        assert_eq!(seen(&o, b"b", 2), None);
        let latest = o.latest();
        assert_eq!(
            latest,
            vec![
                (b"a".to_vec(), Some(b"2".to_vec())),
                (b"b".to_vec(), Some(b"5".to_vec())),
                (b"c".to_vec(), Some(b"4".to_vec()))
            ]
        );
    }

    #[test]
    fn a_same_size_overwrite_reuses_only_bytes_nobody_else_holds() {
        let mut o = Overlay::default();
        o.apply(b"k", Some(b"one"), 1, false);
        let before = match o.get(b"k", 1) {
            Seen::Value(v) => v.as_ptr(),
            _ => panic!("k is in the overlay"),
        };
        // Alone: the same bytes, rewritten, at the new commit number.
        o.apply(b"k", Some(b"two"), 2, false);
        match o.get(b"k", 2) {
            Seen::Value(v) => assert_eq!((v, v.as_ptr()), (&b"two"[..], before)),
            _ => panic!("k is in the overlay"),
        }
        assert_eq!(seen(&o, b"k", 1), None, "the older version is gone, as without readers");
        // A commit's undo holds them: a fresh value, and the undo still
        // puts back exactly what it saved.
        let undo = o.undo_for([&b"k"[..]].into_iter());
        o.apply(b"k", Some(b"six"), 3, false);
        assert_eq!(seen(&o, b"k", 3), Some(Some(b"six".to_vec())));
        o.rollback(undo);
        assert_eq!(seen(&o, b"k", 3), Some(Some(b"two".to_vec())));
        // Another size, or readers (keep_old): new versions, never in place.
        o.apply(b"k", Some(b"three"), 4, false);
        o.apply(b"k", Some(b"four!"), 5, true);
        assert_eq!(seen(&o, b"k", 4), Some(Some(b"three".to_vec())));
        assert_eq!(seen(&o, b"k", 5), Some(Some(b"four!".to_vec())));
    }
}
