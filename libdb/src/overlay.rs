//! Committed changes not yet checkpointed into the tree (they are in the
//! log). Multi-versioned by commit sequence number so that a snapshot
//! reader sees exactly the commits made before it began, while the writer
//! keeps committing.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Bound;

/// `None` is a deletion.
pub type Version = (u64, Option<Arc<[u8]>>);

#[derive(Default)]
pub struct Overlay {
    map: BTreeMap<Vec<u8>, Vec<Version>>,
    /// Bytes of keys and values held (for the checkpoint policy/stats).
    pub bytes: usize,
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

impl Overlay {
    pub fn keys(&self) -> usize {
        self.map.len()
    }

    /// Records `key -> val` committed at `seq`. Without readers of this
    /// overlay older versions are dropped at once.
    pub fn apply(&mut self, key: &[u8], val: Option<&[u8]>, seq: u64, keep_old: bool) {
        let v: Option<Arc<[u8]>> = val.map(Arc::from);
        self.bytes += key.len() + val.map_or(0, |v| v.len());
        match self.map.get_mut(key) {
            Some(versions) => {
                if !keep_old {
                    versions.clear();
                }
                versions.push((seq, v));
            }
            None => {
                self.map.insert(key.to_vec(), alloc::vec![(seq, v)]);
            }
        }
    }

    pub fn get(&self, key: &[u8], seq: u64) -> Seen<'_> {
        match self.map.get(key).and_then(|vs| visible(vs, seq)) {
            None => Seen::Absent,
            Some(None) => Seen::Deleted,
            Some(Some(v)) => Seen::Value(v),
        }
    }

    /// Entries visible at `seq` within the bounds, in order (or reversed),
    /// deletions included as `None`.
    pub fn range(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        seq: u64,
        rev: bool,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) = (lo, hi) {
            if a > b || (a == b && !(matches!(lo, Bound::Included(_)) && matches!(hi, Bound::Included(_)))) {
                return Vec::new();
            }
        }
        let it = self
            .map
            .range::<[u8], _>((lo, hi))
            .filter_map(|(k, vs)| visible(vs, seq).map(|v| (k.clone(), v.as_ref().map(|v| v.to_vec()))));
        if rev {
            it.rev().collect()
        } else {
            it.collect()
        }
    }

    /// The newest version of every key, in key order (what a checkpoint
    /// writes into the tree).
    pub fn latest(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.map
            .iter()
            .filter_map(|(k, vs)| vs.last().map(|(_, v)| (k.clone(), v.as_ref().map(|v| v.to_vec()))))
            .collect()
    }
}
