//! The database's state and machinery: the page cache and overlay, the
//! log, snapshots, commits and checkpoints (`Inner`), with the options and
//! statistics that describe it. `db.rs` is the public handle over it and
//! `recovery.rs` builds it from a medium; both depend on this module, and
//! it depends on neither.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::ops::Bound;

use crate::cache::PageCache;
use crate::error::Error;
use crate::log;
use crate::overlay::{Overlay, OverlayUndo, Seen};
use crate::page::{self, Meta, PageRef, FREELIST_ENTRIES, PAGE_SIZE};
use crate::storage::{IoStats, Storage};

/// How durable a commit is when `commit` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Durable: the log record is written and a barrier (one `fdatasync` or
    /// fence) has completed.
    Sync,
    /// Every `n`-th commit issues the barrier for itself and the `n - 1`
    /// before it; after a crash a prefix of the commits survives.
    Group(u32),
    /// Durable at the next barrier (sync/group commit, [`Db::sync`]) or
    /// checkpoint; after a crash a prefix survives.
    Async,
}

/// Tuning knobs. `log_pages` only matters for `create` (it is stored).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Pages the cache may hold (the database never holds more tree pages
    /// in memory than this, whatever its size). Default 16384 (64 MiB).
    pub cache_pages: usize,
    /// Size of the log region in pages (`create` only).
    pub log_pages: u64,
    /// Checkpoint policy: write the committed changes into the tree once
    /// the log holds this many bytes (0: only when the log is full or on
    /// an explicit [`Db::checkpoint`]).
    pub checkpoint_log_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { cache_pages: 16384, log_pages: 2048, checkpoint_log_bytes: 4 << 20 }
    }
}

/// Counters for benchmarks: what the database did and asked of the medium.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Medium operations (barriers = device flushes / fdatasyncs / fences).
    pub io: IoStats,
    pub commits: u64,
    pub checkpoints: u64,
    /// Log writes that ended with a barrier.
    pub log_flushes: u64,
    /// Log record bytes produced (before padding to the write alignment).
    pub log_bytes: u64,
    /// Tree, overflow and freelist pages written by checkpoints.
    pub pages_written: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_pages: u64,
    /// Pages the database occupies on the medium (high-water mark).
    pub db_pages: u64,
    pub free_pages: u64,
    /// Freed pages waiting for readers of older snapshots to finish.
    pub pending_free_pages: u64,
    pub generation: u64,
    /// Keys changed since the last checkpoint.
    pub overlay_keys: u64,
    /// Keys in the tree as of the last checkpoint.
    pub tree_entries: u64,
    /// Log records replayed by the last `open`.
    pub replayed_records: u64,
    /// How far the current epoch's log may reach (bytes from the log's
    /// start): what its reach records declare. The last `open` looked for
    /// records only below it.
    pub log_reach: u64,
    /// Reach records this handle wrote (each its own write and barrier).
    pub reach_records: u64,
    /// Stale log records of the current epoch that the last `open` erased
    /// (valid records beyond the replayed prefix, left by a crash).
    pub erased_records: u64,
    /// Checkpoints that failed for lack of space and were rolled back
    /// (the commits stay in the log; see `DESIGN.md`, "Failed calls").
    pub failed_checkpoints: u64,
    /// Read transactions alive now (the reader table's total).
    pub readers: u64,
    /// Snapshot generation of the oldest live reader (0: none).
    pub oldest_reader_generation: u64,
}

#[derive(Default)]
pub(crate) struct LogState {
    /// Next write offset within the log region (aligned).
    pub pos: u64,
    /// No byte at or beyond this offset is written before a reach record
    /// moving it is durable (`log.rs`, reach records).
    pub reach: u64,
    /// Next record's sequence number in this epoch.
    pub seq: u64,
    /// Records not yet written to the medium.
    pub buf: Vec<u8>,
    /// Commits in `buf`.
    pub unsynced: u32,
    /// After a policy checkpoint failed for lack of space: the log size at
    /// which to try again (so a full medium does not cost a doomed
    /// checkpoint attempt per commit).
    pub retry_checkpoint_at: u64,
}

/// What a reader sees: a tree and a prefix of the commits after it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Snapshot {
    pub gen: u64,
    pub seq: u64,
    pub root: PageRef,
}

pub(crate) struct Inner<S> {
    pub storage: S,
    pub cache: PageCache,
    pub opts: Options,
    /// The durable meta (last checkpoint).
    pub meta: Meta,
    /// Working high-water mark (grows during a checkpoint).
    pub total_pages: u64,
    /// Pages no snapshot and no durable state uses.
    pub free: BTreeSet<u64>,
    /// Pages freed by the checkpoint of generation `g`, reusable once no
    /// reader of a generation below `g` remains.
    pub pending: Vec<(u64, Vec<u64>)>,
    pub freelist_chain: Vec<u64>,
    /// Committed, not yet checkpointed changes, by the generation whose
    /// tree they apply to (older ones kept only for live readers).
    pub overlays: BTreeMap<u64, Overlay>,
    pub readers: BTreeMap<u64, usize>,
    pub commit_seq: u64,
    pub log: LogState,
    pub writer_active: bool,
    pub poisoned: bool,
    /// Opened with `Db::open_read_only`: nothing is ever written.
    pub read_only: bool,
    /// The running checkpoint deletes at least as many keys as it puts and
    /// may use the page reserve.
    pub use_reserve: bool,
    pub stats: Stats,
    /// Checkpoint scratch: pages freed and the generation being written.
    pub freed: Vec<u64>,
    pub new_gen: u64,
    pub entries: u64,
}

pub(crate) fn log_base() -> u64 {
    2 * PAGE_SIZE as u64
}

impl LogState {
    /// The log of a fresh epoch in a log region of `cap` bytes.
    pub fn fresh(cap: u64) -> Self {
        LogState { reach: log::initial_reach(cap), ..LogState::default() }
    }
}

impl<S: Storage> Inner<S> {
    pub fn new(storage: S, opts: Options, meta: Meta) -> Self {
        let mut overlays = BTreeMap::new();
        overlays.insert(meta.gen, Overlay::default());
        Inner {
            storage,
            cache: PageCache::new(opts.cache_pages),
            opts,
            meta,
            total_pages: meta.total_pages,
            free: BTreeSet::new(),
            pending: Vec::new(),
            freelist_chain: Vec::new(),
            overlays,
            readers: BTreeMap::new(),
            commit_seq: meta.commit_seq,
            log: LogState::fresh(meta.log_pages * PAGE_SIZE as u64),
            writer_active: false,
            poisoned: false,
            read_only: false,
            use_reserve: false,
            stats: Stats::default(),
            freed: Vec::new(),
            new_gen: meta.gen,
            entries: meta.entries,
        }
    }

    pub(crate) fn latest(&self) -> Snapshot {
        Snapshot {
            gen: self.meta.gen,
            seq: self.commit_seq,
            root: PageRef { pgno: self.meta.root, crc: self.meta.root_crc },
        }
    }

    pub fn get(&mut self, snap: Snapshot, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if let Some(o) = self.overlays.get(&snap.gen) {
            match o.get(key, snap.seq) {
                Seen::Value(v) => return Ok(Some(v.to_vec())),
                Seen::Deleted => return Ok(None),
                Seen::Absent => {}
            }
        }
        self.tree_get(snap.root, snap.gen, key)
    }

    /// Up to `limit` entries in the bounds (descending if `rev`), the key
    /// where the chunk stopped and whether the bounds are exhausted.
    #[allow(clippy::type_complexity)]
    pub(crate) fn fetch_chunk(
        &mut self,
        snap: Snapshot,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        rev: bool,
        limit: usize,
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>, bool), Error> {
        let mut tree = Vec::new();
        if snap.root.pgno != 0 {
            self.tree_collect(snap.root, snap.gen, 0, lo, hi, rev, limit, &mut tree, 0)?;
        }
        let full = tree.len() >= limit;
        let boundary = if full { tree.last().map(|(k, _)| k.clone()) } else { None };
        let (olo, ohi) = match (&boundary, rev) {
            (Some(b), false) => (lo, Bound::Included(b.as_slice())),
            (Some(b), true) => (Bound::Included(b.as_slice()), hi),
            (None, _) => (lo, hi),
        };
        let ov = match self.overlays.get(&snap.gen) {
            Some(o) => o.range(olo, ohi, snap.seq, rev),
            None => Vec::new(),
        };
        let mut out = Vec::with_capacity(tree.len() + ov.len());
        let mut t = tree.into_iter().peekable();
        let mut o = ov.into_iter().peekable();
        loop {
            let take_tree = match (t.peek(), o.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((tk, _)), Some((ok, _))) => {
                    if tk == ok {
                        t.next();
                        false
                    } else {
                        (tk < ok) != rev
                    }
                }
            };
            if take_tree {
                if let Some(e) = t.next() {
                    out.push(e);
                }
            } else if let Some((k, Some(v))) = o.next() {
                // A deletion in the overlay hides the tree's entry.
                out.push((k, v));
            }
        }
        Ok((out, boundary.clone(), boundary.is_none()))
    }

    pub(crate) fn check_writable(&self) -> Result<(), Error> {
        if self.read_only {
            Err(Error::ReadOnly)
        } else if self.poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Whether an error leaves the durable state unknown (an I/O error:
    /// the handle is poisoned) or was refused cleanly and rolled back
    /// (no space: the handle stays usable).
    fn poisons(e: &Error) -> bool {
        !matches!(e, Error::NoSpace | Error::ReaderPinsSpace { .. })
    }

    fn apply_to_overlay(&mut self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        self.commit_seq += 1;
        let keep_old = self.readers.contains_key(&self.meta.gen);
        let seq = self.commit_seq;
        let o = self.overlays.entry(self.meta.gen).or_default();
        for (k, v) in writes {
            o.apply(k, v.as_deref(), seq, keep_old);
        }
        self.stats.commits += 1;
    }

    /// A transaction found in the log at open, its ops borrowed from the
    /// record (in the record's order, which is key order; a key given
    /// twice keeps its last value, as the `BTreeMap` a commit is built
    /// from would). Like `apply_to_overlay`, without building a map.
    pub(crate) fn apply_replayed<'a>(&mut self, ops: impl Iterator<Item = log::OpRef<'a>>) {
        self.commit_seq += 1;
        let keep_old = self.readers.contains_key(&self.meta.gen);
        let seq = self.commit_seq;
        let o = self.overlays.entry(self.meta.gen).or_default();
        for (k, v) in ops {
            o.apply(k, v, seq, keep_old);
        }
    }

    /// Commits `writes`. The result is true: `Ok` means the commit is
    /// applied (and durable for `Sync`, or for the `Group` commit that
    /// issued the barrier); `Err(NoSpace | ReaderPinsSpace)` means nothing
    /// of it was written or applied and the handle stays usable; any other
    /// error (I/O) leaves its durability unknown and poisons the handle —
    /// in no case do readers on this handle see a commit that failed.
    pub fn commit(&mut self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>, dur: Durability) -> Result<(), Error> {
        self.check_writable()?;
        let r = self.commit_inner(writes, dur);
        if let Err(e) = &r {
            if Self::poisons(e) {
                self.poisoned = true;
            }
        }
        r
    }

    /// Appends the commit's record to the log buffer (reused across
    /// flushes, so a commit allocates nothing for its record).
    fn append_record(&mut self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>, rec_len: usize) {
        let batch_start = self.log.buf.is_empty();
        self.log.buf.reserve(rec_len);
        log::encode(
            &mut self.log.buf,
            self.meta.gen,
            self.log.seq,
            batch_start,
            writes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
        );
    }

    fn commit_inner(&mut self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>, dur: Durability) -> Result<(), Error> {
        if writes.is_empty() {
            if dur == Durability::Sync {
                self.flush_log()?;
            }
            return Ok(());
        }
        let cap = self.meta.log_pages * PAGE_SIZE as u64;
        let align = self.storage.write_align() as u64;
        // The last eighth of the log (at most 64 KiB) is kept for commits
        // that only delete, so that a database whose tree cannot grow can
        // still be emptied and compacted.
        let only_deletes = writes.values().all(|v| v.is_none());
        let reserve = (cap / 8).min(64 << 10) / align * align;
        let limit = if only_deletes { cap } else { cap - reserve };
        let rec_len = log::record_len(writes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())));
        if self.log_end_with(rec_len).0 > limit {
            // The log is full: fold it into the tree, which restarts it.
            // If that fails, nothing of this commit was written.
            self.checkpoint_inner()?;
            if self.log_end_with(rec_len).0 > limit {
                // Larger than the whole log: goes straight into the tree.
                let undo = self.overlay_undo(writes);
                self.apply_to_overlay(writes);
                return self.checkpoint_inner().inspect_err(|_| self.rollback_overlay(undo));
            }
        }
        // A commit that moves the reach is written with its own barrier
        // whatever its durability: the buffered commits before it were
        // flushed by the move, so this makes "a flush during the commit"
        // mean "this commit is durable" for every durability, and keeps a
        // `Group(n)` batch from waiting longer than n commits.
        let mut moved_reach = self.log_end_with(rec_len).1;
        if moved_reach && !self.reach_record_fits() {
            // The writer never leaves the log like this, but a forged
            // (checksummed) reach record can: no room below the reach for
            // a reach record and the next header. A reach record written
            // beyond the reach would never be looked at, losing the
            // commits after it; a checkpoint restarts the log instead.
            self.checkpoint_inner()?;
            moved_reach = self.log_end_with(rec_len).1;
        }
        if moved_reach {
            self.extend_reach(rec_len)?;
        }
        self.stats.log_bytes += rec_len as u64;
        self.append_record(writes, rec_len);
        self.log.seq += 1;
        self.log.unsynced += 1;
        // The barrier comes before the commit becomes visible: if it
        // fails, readers on this handle never see what may not be durable.
        let flush = moved_reach
            || match dur {
                Durability::Sync => true,
                Durability::Group(n) => self.log.unsynced >= n.max(1),
                Durability::Async => false,
            };
        if flush {
            self.flush_log()?;
        }
        self.apply_to_overlay(writes);
        // The commit is done (and durable if it flushed); the checkpoint
        // policy's outcome does not change that. A checkpoint refused for
        // lack of space was rolled back and the commits stay in the log,
        // which still has room: it is retried after a later commit. An I/O
        // error in it poisons the handle; the next call reports that.
        let threshold = self.opts.checkpoint_log_bytes;
        let logged = self.log.pos + self.log.buf.len() as u64;
        if threshold > 0 && logged >= threshold.max(self.log.retry_checkpoint_at) {
            if let Err(e) = self.checkpoint_inner() {
                if Self::poisons(&e) {
                    self.poisoned = true;
                } else {
                    self.log.retry_checkpoint_at = logged + (threshold / 4).max(1);
                }
            }
        }
        Ok(())
    }

    /// Where the log ends once a record of `rec_len` bytes is buffered and
    /// everything buffered is written, and whether the reach must move
    /// first (then the buffered records are written on their own, then a
    /// reach record, then this one: see [`Self::extend_reach`]).
    fn log_end_with(&self, rec_len: usize) -> (u64, bool) {
        let align = self.storage.write_align() as u64;
        let cap = self.meta.log_pages * PAGE_SIZE as u64;
        let up = |n: u64| n.div_ceil(align) * align;
        let end = up(self.log.pos + (self.log.buf.len() + rec_len) as u64);
        if !log::needs_reach(end, self.log.reach, cap, align) {
            return (end, false);
        }
        let buffered_end = up(self.log.pos + self.log.buf.len() as u64);
        (buffered_end + log::reach_record_len(align) + up(rec_len as u64), true)
    }

    /// Whether a reach record written after the buffered records still
    /// leaves room below the reach for the next write's first header.
    fn reach_record_fits(&self) -> bool {
        let align = self.storage.write_align() as u64;
        let buffered_end = (self.log.pos + self.log.buf.len() as u64).div_ceil(align) * align;
        buffered_end + 2 * log::reach_record_len(align) <= self.log.reach
    }

    /// Moves the log's reach past a record of `rec_len` bytes about to be
    /// buffered: the buffered records are written (with their barrier:
    /// durable sooner than asked, never later), then a reach record as its
    /// own write, then a barrier, all below the current reach. Only then
    /// may anything be written beyond it: recovery reads no further than
    /// the reach its replayed prefix declares, so a record there must
    /// never exist unless a durable reach record covers it; and the next
    /// write's first header still starts below the old reach, so if the
    /// reach record is later damaged, that batch start shows it.
    fn extend_reach(&mut self, rec_len: usize) -> Result<(), Error> {
        self.flush_log()?;
        let align = self.storage.write_align() as u64;
        let cap = self.meta.log_pages * PAGE_SIZE as u64;
        let rr = log::reach_record_len(align);
        let at = self.log.pos;
        debug_assert!(at + 2 * rr <= self.log.reach, "checked by reach_record_fits");
        let after = at + rr + (rec_len as u64).div_ceil(align) * align + 2 * rr;
        let reach = after.max(at + log::reach_step(cap)).div_ceil(align).saturating_mul(align).min(cap);
        let mut rec = Vec::with_capacity(rr as usize);
        log::encode_reach(&mut rec, self.meta.gen, self.log.seq, reach);
        rec.resize(rr as usize, 0);
        self.storage.write(log_base() + at, &rec)?;
        self.storage.barrier()?;
        self.log.pos += rr;
        self.log.seq += 1;
        self.log.reach = reach;
        self.stats.reach_records += 1;
        Ok(())
    }

    /// What `writes` will replace in the current overlay.
    fn overlay_undo(&self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> (u64, u64, OverlayUndo) {
        let o = self.overlays.get(&self.meta.gen);
        let undo = o.map(|o| o.undo_for(writes.keys().map(|k| k.as_slice()))).unwrap_or_default();
        (self.commit_seq, self.stats.commits, undo)
    }

    /// Takes back a commit applied to the overlay whose checkpoint failed.
    fn rollback_overlay(&mut self, (seq, commits, undo): (u64, u64, OverlayUndo)) {
        self.commit_seq = seq;
        self.stats.commits = commits;
        if let Some(o) = self.overlays.get_mut(&self.meta.gen) {
            o.rollback(undo);
        }
    }

    /// Writes the buffered log records and waits for them to be durable.
    pub fn flush_log(&mut self) -> Result<(), Error> {
        if self.log.buf.is_empty() {
            return Ok(());
        }
        let align = self.storage.write_align();
        let len = self.log.buf.len().div_ceil(align) * align;
        self.log.buf.resize(len, 0);
        self.storage.write(log_base() + self.log.pos, &self.log.buf)?;
        self.storage.barrier()?;
        self.log.pos += len as u64;
        self.log.buf.clear();
        self.log.unsynced = 0;
        self.stats.log_flushes += 1;
        Ok(())
    }

    pub fn checkpoint(&mut self) -> Result<(), Error> {
        self.check_writable()?;
        let r = self.checkpoint_inner();
        if let Err(e) = &r {
            if Self::poisons(e) {
                self.poisoned = true;
            }
        }
        r
    }

    /// Moves pages freed by older checkpoints to the free set once no
    /// reader can still reach them.
    fn release_pending(&mut self) {
        let min_reader = self.readers.keys().next().copied();
        let (ready, waiting): (Vec<_>, Vec<_>) =
            core::mem::take(&mut self.pending).into_iter().partition(|(g, _)| min_reader.is_none_or(|r| r >= *g));
        self.pending = waiting;
        for (_, pages) in ready {
            for &p in &pages {
                self.cache.remove(p);
            }
            self.free.extend(pages);
        }
    }

    /// Pages kept back for checkpoints that shrink the tree (at most 8,
    /// an eighth of the tree's room on a tiny medium): a database that
    /// filled its medium can still checkpoint the deletes that empty it.
    fn page_reserve(&self) -> u64 {
        let room = (self.storage.capacity() / PAGE_SIZE as u64).saturating_sub(self.meta.first_tree_page());
        (room / 8).min(8)
    }

    pub(crate) fn alloc_page(&mut self) -> Result<u64, Error> {
        let unused = (self.storage.capacity() / PAGE_SIZE as u64).saturating_sub(self.total_pages);
        if !self.use_reserve && self.free.len() as u64 + unused <= self.page_reserve() {
            return Err(Error::NoSpace);
        }
        if let Some(p) = self.free.pop_first() {
            return Ok(p);
        }
        let p = self.total_pages;
        if (p + 1) * PAGE_SIZE as u64 > self.storage.capacity() {
            return Err(Error::NoSpace);
        }
        self.total_pages += 1;
        Ok(p)
    }

    /// Writes a sealed page; returns its checksum (what a reference to it pins).
    pub(crate) fn write_page(&mut self, pgno: u64, data: Vec<u8>) -> Result<u32, Error> {
        self.storage.write(pgno * PAGE_SIZE as u64, &data)?;
        let crc = page::checksum(&data);
        self.cache_page(pgno, data);
        self.stats.pages_written += 1;
        Ok(crc)
    }

    /// Writes every committed change into a new copy-on-write tree, then
    /// flips the meta page, which also restarts the log with a new epoch.
    ///
    /// Order: new pages, barrier, meta, barrier. Until the meta barrier the
    /// previous meta, tree and log are untouched, so a crash anywhere
    /// recovers the previous checkpoint plus its log.
    pub(crate) fn checkpoint_inner(&mut self) -> Result<(), Error> {
        // Until the meta barrier nothing durable changed; on failure the
        // in-memory allocation state goes back to what it was, so a
        // checkpoint refused for lack of space leaves the handle usable.
        self.release_pending();
        let undo = (self.total_pages, self.free.clone(), self.entries, self.freelist_chain.clone());
        let r = self.checkpoint_attempt();
        if let Err(e) = r {
            let (total, free, entries, chain) = undo;
            self.total_pages = total;
            self.free = free;
            self.entries = entries;
            self.freelist_chain = chain;
            self.freed.clear();
            return Err(match e {
                Error::NoSpace => {
                    self.stats.failed_checkpoints += 1;
                    self.no_space_error()
                }
                e => e,
            });
        }
        r
    }

    /// `NoSpace`, or, if a reader keeps freed pages from reuse, the error
    /// that names its snapshot (LMDB's reader table: the writer knows which
    /// snapshots are alive and what they pin).
    fn no_space_error(&self) -> Error {
        let Some(&oldest) = self.readers.keys().next() else {
            return Error::NoSpace;
        };
        let pinned: u64 = self.pending.iter().filter(|(g, _)| *g > oldest).map(|(_, p)| p.len() as u64).sum();
        if pinned == 0 {
            return Error::NoSpace;
        }
        Error::ReaderPinsSpace { snapshot_generation: oldest, pinned_pages: pinned }
    }

    fn checkpoint_attempt(&mut self) -> Result<(), Error> {
        let new_gen = self.meta.gen + 1;
        self.new_gen = new_gen;
        self.freed.clear();
        let batch = self.overlays.get(&self.meta.gen).map(|o| o.latest()).unwrap_or_default();
        let deletes = batch.iter().filter(|(_, v)| v.is_none()).count();
        self.use_reserve = 2 * deletes >= batch.len();
        let root = if batch.is_empty() {
            PageRef { pgno: self.meta.root, crc: self.meta.root_crc }
        } else {
            self.apply_root(&batch)?
        };

        // The freelist: everything free once this checkpoint is durable and
        // no reader is left (as after a reopen).
        let old_chain = core::mem::take(&mut self.freelist_chain);
        self.freed.extend(old_chain);
        let mut list: Vec<u64> = self
            .free
            .iter()
            .copied()
            .chain(self.pending.iter().flat_map(|(_, p)| p.iter().copied()))
            .chain(self.freed.iter().copied())
            .collect();
        let mut chain = Vec::new();
        for _ in 0..list.len().div_ceil(FREELIST_ENTRIES) {
            chain.push(self.alloc_page()?);
        }
        chain.sort_unstable();
        list.retain(|p| chain.binary_search(p).is_err());
        list.sort_unstable();
        // Last page first: each page pins the checksum of the next.
        let mut next = PageRef::default();
        for (i, &pg) in chain.iter().enumerate().rev() {
            let lo = (i * FREELIST_ENTRIES).min(list.len());
            let hi = ((i + 1) * FREELIST_ENTRIES).min(list.len());
            let crc = self.write_page(pg, page::build_freelist(&list[lo..hi], next, pg, new_gen))?;
            next = PageRef { pgno: pg, crc };
        }
        self.storage.barrier()?;

        let meta = Meta {
            gen: new_gen,
            root: root.pgno,
            root_crc: root.crc,
            total_pages: self.total_pages,
            freelist_head: next.pgno,
            freelist_crc: next.crc,
            freelist_len: list.len() as u64,
            freelist_pages: chain.len() as u64,
            log_pages: self.meta.log_pages,
            commit_seq: self.commit_seq,
            entries: self.entries,
        };
        let slot = new_gen % 2;
        self.storage.write(slot * PAGE_SIZE as u64, &page::build_meta(&meta, slot))?;
        self.storage.barrier()?;

        // Durable: switch the in-memory state over.
        let old_gen = self.meta.gen;
        self.meta = meta;
        self.pending.push((new_gen, core::mem::take(&mut self.freed)));
        self.freelist_chain = chain;
        if !self.readers.contains_key(&old_gen) {
            self.overlays.remove(&old_gen);
        }
        self.overlays.insert(new_gen, Overlay::default());
        self.log = LogState::fresh(self.meta.log_pages * PAGE_SIZE as u64);
        self.stats.checkpoints += 1;
        Ok(())
    }

    pub(crate) fn release_reader(&mut self, gen: u64) {
        if let Some(n) = self.readers.get_mut(&gen) {
            *n -= 1;
            if *n == 0 {
                self.readers.remove(&gen);
                if gen != self.meta.gen {
                    self.overlays.remove(&gen);
                }
            }
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.io = self.storage.io_stats();
        s.cache_hits = self.cache.hits;
        s.cache_misses = self.cache.misses;
        s.cache_pages = self.cache.len() as u64;
        s.db_pages = self.total_pages;
        s.free_pages = self.free.len() as u64;
        s.pending_free_pages = self.pending.iter().map(|(_, p)| p.len() as u64).sum();
        s.generation = self.meta.gen;
        s.log_reach = self.log.reach;
        s.overlay_keys = self.overlays.get(&self.meta.gen).map_or(0, |o| o.keys() as u64);
        s.tree_entries = self.meta.entries;
        s.readers = self.readers.values().map(|&n| n as u64).sum();
        s.oldest_reader_generation = self.readers.keys().next().copied().unwrap_or(0);
        s
    }
}
