//! The database handle and its transactions: the public API over the
//! engine (`engine.rs`), opened or created by `recovery.rs`.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::ops::{Bound, RangeBounds};

use crate::engine::{Inner, Snapshot};
use crate::error::Error;
use crate::lock::Lock;
use crate::page::MAX_KEY;
use crate::storage::Storage;

pub use crate::engine::{Durability, Options, Stats};
pub use crate::page::MAX_VALUE;

/// An embedded, transactional, ordered key-value store.
///
/// One writer at a time and any number of snapshot readers. With the `std`
/// feature `Db` is `Sync`: readers may run on other threads (e.g. with
/// `std::thread::scope`) while the writer builds and commits; each call
/// holds the internal lock only for its own step (a lookup, a chunk of a
/// scan, a commit's log write). Without `std` it is single-threaded.
pub struct Db<S: Storage> {
    inner: Lock<Inner<S>>,
}

impl<S: Storage> Db<S> {
    /// Formats `storage` as an empty database and opens it.
    pub fn create(storage: S, opts: Options) -> Result<Self, Error> {
        Ok(Db { inner: Lock::new(crate::recovery::create(storage, opts)?) })
    }

    /// Opens the database on `storage`, replaying the log tail. Writes at
    /// most a few blocks (erasing stale log records a crash left beyond
    /// the replayed prefix) and needs no free page, so a database on a
    /// full medium opens and can be emptied with deletes.
    pub fn open(storage: S, opts: Options) -> Result<Self, Error> {
        Ok(Db { inner: Lock::new(crate::recovery::open(storage, opts, false)?) })
    }

    /// Opens the database without ever writing to `storage`: reads see
    /// everything recovered (the log tail is replayed into memory);
    /// writes, checkpoints and `sync` fail with `ReadOnly`.
    pub fn open_read_only(storage: S, opts: Options) -> Result<Self, Error> {
        Ok(Db { inner: Lock::new(crate::recovery::open(storage, opts, true)?) })
    }

    /// Opens the database on `storage`, or creates one if the medium is
    /// blank (both meta pages all zeros). A damaged database is reported,
    /// never formatted over.
    pub fn open_or_create(mut storage: S, opts: Options) -> Result<Self, Error> {
        if crate::recovery::is_blank(&mut storage)? {
            Self::create(storage, opts)
        } else {
            Self::open(storage, opts)
        }
    }

    /// Starts the write transaction (fails with `WriterActive` while
    /// another one is open).
    pub fn begin_write(&self) -> Result<WriteTxn<'_, S>, Error> {
        let mut inner = self.inner.lock();
        inner.check_writable()?;
        if inner.writer_active {
            return Err(Error::WriterActive);
        }
        inner.writer_active = true;
        Ok(WriteTxn { db: self, writes: BTreeMap::new() })
    }

    /// Starts a read transaction on a snapshot of everything committed so
    /// far; later commits and checkpoints do not change what it sees.
    pub fn begin_read(&self) -> ReadTxn<'_, S> {
        let mut inner = self.inner.lock();
        let snap = inner.latest();
        *inner.readers.entry(snap.gen).or_insert(0) += 1;
        ReadTxn { db: self, snap }
    }

    /// Reads one key outside any transaction.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let mut inner = self.inner.lock();
        let snap = inner.latest();
        inner.get(snap, key)
    }

    /// Writes all committed changes into the tree and restarts the log.
    pub fn checkpoint(&self) -> Result<(), Error> {
        self.inner.lock().checkpoint()
    }

    /// Makes every commit so far durable (flushes group/async commits).
    pub fn sync(&self) -> Result<(), Error> {
        let mut inner = self.inner.lock();
        inner.check_writable()?;
        let r = inner.flush_log();
        if r.is_err() {
            inner.poisoned = true;
        }
        r
    }

    pub fn stats(&self) -> Stats {
        self.inner.lock().stats()
    }

    /// Runs `f` on the storage (e.g. to read device counters). `f` must not
    /// call back into this `Db`.
    pub fn with_storage<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.inner.lock().storage)
    }

    /// Closes the database without a checkpoint (group/async commits not
    /// yet flushed are lost, as in a crash) and returns the storage.
    pub fn into_storage(self) -> S {
        self.inner.into_inner().storage
    }

    /// Flushes pending commits, then returns the storage.
    pub fn close(self) -> Result<S, Error> {
        self.sync()?;
        Ok(self.into_storage())
    }
}

fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if key.len() > MAX_KEY {
        return Err(Error::KeyTooLarge { len: key.len(), max: MAX_KEY });
    }
    Ok(())
}

/// The write transaction. Its changes are invisible to everyone until
/// `commit`; dropping it aborts.
pub struct WriteTxn<'a, S: Storage> {
    db: &'a Db<S>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<S: Storage> WriteTxn<'_, S> {
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(Error::ValueTooLarge { len: value.len(), max: MAX_VALUE });
        }
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    pub fn delete(&mut self, key: &[u8]) -> Result<(), Error> {
        check_key(key)?;
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }

    /// Reads through this transaction's own changes.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        self.db.get(key)
    }

    pub fn commit(self, durability: Durability) -> Result<(), Error> {
        self.db.inner.lock().commit(&self.writes, durability)
    }

    pub fn abort(self) {}
}

impl<S: Storage> Drop for WriteTxn<'_, S> {
    fn drop(&mut self) {
        self.db.inner.lock().writer_active = false;
    }
}

/// A read-only snapshot.
pub struct ReadTxn<'a, S: Storage> {
    db: &'a Db<S>,
    snap: Snapshot,
}

fn owned(b: Bound<&&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl<'a, S: Storage> ReadTxn<'a, S> {
    /// The checkpoint generation of this snapshot (what
    /// `Error::ReaderPinsSpace` names when an old reader holds up space).
    pub fn generation(&self) -> u64 {
        self.snap.gen
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.db.inner.lock().get(self.snap, key)
    }

    /// Entries with keys in `range`, ascending; `.rev()` for descending.
    /// Example: `txn.range(&b"a"[..]..&b"m"[..])`.
    pub fn range<'k>(&self, range: impl RangeBounds<&'k [u8]>) -> Range<'_, 'a, S> {
        Range {
            txn: self,
            lo: owned(range.start_bound()),
            hi: owned(range.end_bound()),
            front: VecDeque::new(),
            back: VecDeque::new(),
            exhausted: false,
            failed: false,
        }
    }

    /// All entries, ascending (`.rev()` for descending).
    pub fn iter(&self) -> Range<'_, 'a, S> {
        let all: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Unbounded, Bound::Unbounded);
        self.range(all)
    }
}

impl<S: Storage> Drop for ReadTxn<'_, S> {
    fn drop(&mut self) {
        self.db.inner.lock().release_reader(self.snap.gen);
    }
}

const CHUNK: usize = 64;

/// One entry of a range scan.
pub type Entry = Result<(Vec<u8>, Vec<u8>), Error>;

/// A range scan over a snapshot, fetched in chunks so that it holds no
/// borrow of the database between calls. Yields `Err` once on failure.
pub struct Range<'t, 'a, S: Storage> {
    txn: &'t ReadTxn<'a, S>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    /// Ascending, taken by `next`.
    front: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Descending, taken by `next_back`.
    back: VecDeque<(Vec<u8>, Vec<u8>)>,
    exhausted: bool,
    failed: bool,
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl<S: Storage> Range<'_, '_, S> {
    fn fill(&mut self, rev: bool) -> Result<(), Error> {
        let want = |r: &Self| if rev { r.back.is_empty() } else { r.front.is_empty() };
        while want(self) && !self.exhausted {
            let snap = self.txn.snap;
            let (items, boundary, done) =
                self.txn.db.inner.lock().fetch_chunk(snap, as_ref(&self.lo), as_ref(&self.hi), rev, CHUNK)?;
            if rev {
                self.back.extend(items);
            } else {
                self.front.extend(items);
            }
            match boundary {
                Some(b) if !done => {
                    if rev {
                        self.hi = Bound::Excluded(b);
                    } else {
                        self.lo = Bound::Excluded(b);
                    }
                }
                _ => self.exhausted = true,
            }
        }
        Ok(())
    }

    fn step(&mut self, rev: bool) -> Option<Entry> {
        if self.failed {
            return None;
        }
        if let Err(e) = self.fill(rev) {
            self.failed = true;
            return Some(Err(e));
        }
        let item = if rev {
            self.back.pop_front().or_else(|| self.front.pop_back())
        } else {
            self.front.pop_front().or_else(|| self.back.pop_back())
        };
        item.map(Ok)
    }
}

impl<S: Storage> Iterator for Range<'_, '_, S> {
    type Item = Entry;
    fn next(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

impl<S: Storage> DoubleEndedIterator for Range<'_, '_, S> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}
