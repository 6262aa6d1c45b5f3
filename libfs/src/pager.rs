//! The demand pager that makes a file on a block device (NVMe) a mapped
//! region: the policy and bookkeeping, with every effect on the address
//! space behind the [`Mmu`] trait (the runtime implements it with the
//! kernel's `map`/`unmap` of frames it owns; tests with a fake), and every
//! effect on the medium through [`Fs`].
//!
//! A mapping covers a virtual range `[va, va + pages * 4096)`; virtual page
//! `i` shows file page `i`. Each page is in one of three states:
//!
//! | state | translation | meaning |
//! |---|---|---|
//! | absent | none | the next access faults |
//! | clean | read-only | the frame equals the medium (or zeros past EOF / in a hole) |
//! | dirty | writable | stored into since it was last written back |
//!
//! * A read fault on an absent page takes a frame (evicting one if the
//!   budget is used up), fills it from the file (one read; pages past the
//!   end of the file are zero-filled without I/O) and maps it read-only.
//! * A write fault on an absent page does the same and maps it writable; on
//!   a clean page it only swaps the read-only translation for a writable
//!   one. Either way the page becomes dirty. A write fault on a page that
//!   reaches past the end of the file **grows the file** through libfs to
//!   the end of that page (a hole until write-back), so every byte stored
//!   through a mapping lies inside the file; the new size becomes durable
//!   at the next `msync`.
//! * [`Pager::msync`] writes back exactly the dirty pages of the range (an
//!   allocated page is written in place at the medium offset libfs names;
//!   a hole through `Fs::pwrite`, which allocates it), then calls
//!   `Fs::sync` once: its first barrier makes the data durable and, only if
//!   the size or layout changed (or other metadata is pending), the commit
//!   that follows records it — libfs's ordered mode. With nothing pending
//!   it is a single device flush. The written pages are mapped read-only
//!   again (clean), so the next store faults and marks them dirty.
//! * Eviction (when every frame of the budget holds a page) takes the
//!   oldest clean page; only if every resident page is dirty does it write
//!   the oldest one back (not flushed: durability is `msync`'s job) and
//!   take that. There is no accessed bit to read, so "oldest" is load
//!   order (FIFO), not recency.
//! * A fault outside every mapping, or a write fault on a read-only
//!   mapping, is not resolved (`Ok(false)`): the runtime reports it.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use libdb::Storage;

use crate::error::Error;
use crate::format::PAGE_SIZE;
use crate::fs::{Fs, Handle};

const PS: u64 = PAGE_SIZE as u64;

/// What the pager asks of the address space: its own writable view of a
/// frame of its budget, and translations of frames at the mapped addresses.
pub trait Mmu {
    /// The pager's own writable view of frame `f` (4096 bytes; ids are
    /// `0..frames` of [`Pager::new`]).
    fn frame(&mut self, f: usize) -> &mut [u8];
    /// Translate `va` to frame `f`, writable or read-only. `va` has no
    /// translation when this is called.
    fn map(&mut self, f: usize, va: u64, writable: bool) -> Result<(), MmuError>;
    /// Remove the translation at `va`.
    fn unmap(&mut self, va: u64) -> Result<(), MmuError>;
}

/// An address-space operation that failed: which, where, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmuError {
    pub op: &'static str,
    pub va: u64,
    pub why: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PagerError {
    /// libfs failed (reading, writing back, growing or committing).
    Fs(Error),
    /// The address space refused a translation change.
    Mmu(MmuError),
    /// A new mapping overlaps mapping `existing` or is empty / unaligned.
    BadRange { va: u64, pages: u64 },
    /// No mapping has this id.
    NoMapping(usize),
}

impl From<Error> for PagerError {
    fn from(e: Error) -> Self {
        PagerError::Fs(e)
    }
}

impl From<MmuError> for PagerError {
    fn from(e: MmuError) -> Self {
        PagerError::Mmu(e)
    }
}

impl fmt::Display for PagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PagerError::Fs(e) => write!(f, "pager: {e}"),
            PagerError::Mmu(e) => write!(f, "pager: {} at {:#x}: {}", e.op, e.va, e.why),
            PagerError::BadRange { va, pages } => {
                write!(f, "pager: mapping of {pages} pages at {va:#x} is unaligned, empty or overlaps another")
            }
            PagerError::NoMapping(id) => write!(f, "pager: no mapping {id}"),
        }
    }
}

/// What the pager did, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagerStats {
    /// Faults resolved (read + write + spurious).
    pub faults: u64,
    pub read_faults: u64,
    pub write_faults: u64,
    /// Faults on a page whose translation already allowed the access (a
    /// retried access after a stale translation): nothing to do.
    pub spurious: u64,
    /// Pages filled from the medium (one `pread` each).
    pub reads: u64,
    /// Pages zero-filled without I/O (past the end of the file).
    pub zero_fills: u64,
    /// Pages written back (by `msync` or by evicting a dirty page).
    pub writebacks: u64,
    /// ... of which by eviction.
    pub evict_writebacks: u64,
    pub evictions: u64,
    /// Address-space operations.
    pub maps: u64,
    pub unmaps: u64,
    /// `msync` calls (each ends in exactly one `Fs::sync`).
    pub msyncs: u64,
    /// Of those, the ones whose `Fs::sync` committed metadata (a log chunk
    /// or checkpoint) after the data, because a size or layout changed.
    pub metadata_commits: u64,
    /// Files grown by a write fault past their end.
    pub grows: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    Absent,
    Clean(usize),
    Dirty(usize),
}

struct Mapping {
    va: u64,
    h: Handle,
    pages: Vec<Page>,
}

/// The pager: the mappings, the frame budget and their states.
pub struct Pager {
    maps: Vec<Option<Mapping>>,
    /// Per frame: the (mapping, page) it holds.
    frames: Vec<Option<(usize, u64)>>,
    free: Vec<usize>,
    /// Frames in use, oldest load first.
    loaded: VecDeque<usize>,
    pub stats: PagerStats,
}

/// The state of one page, for tests and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    Absent,
    Clean,
    Dirty,
}

impl Pager {
    /// A pager with a budget of `frames` frames (ids `0..frames`).
    pub fn new(frames: usize) -> Pager {
        Pager {
            maps: Vec::new(),
            frames: vec![None; frames],
            free: (0..frames).rev().collect(),
            loaded: VecDeque::new(),
            stats: PagerStats::default(),
        }
    }

    /// Frames holding a page.
    pub fn resident(&self) -> usize {
        self.loaded.len()
    }

    /// Maps the file open as `h` at `va` (4 KiB aligned) for `len` bytes
    /// (rounded up to pages). Nothing is read until a page is touched.
    /// A writable handle makes a writable mapping (stores fault once per
    /// page, then go straight to the frame). Returns the mapping's id.
    pub fn map_file(&mut self, h: Handle, va: u64, len: u64) -> Result<usize, PagerError> {
        let pages = len.div_ceil(PS);
        let end = pages.checked_mul(PS).and_then(|b| va.checked_add(b));
        let overlaps = |m: &Mapping| end.is_some_and(|e| va < m.va + m.pages.len() as u64 * PS && m.va < e);
        if pages == 0 || !va.is_multiple_of(PS) || end.is_none() || self.maps.iter().flatten().any(overlaps) {
            return Err(PagerError::BadRange { va, pages });
        }
        let m = Mapping { va, h, pages: vec![Page::Absent; pages as usize] };
        match self.maps.iter().position(Option::is_none) {
            Some(id) => {
                self.maps[id] = Some(m);
                Ok(id)
            }
            None => {
                self.maps.push(Some(m));
                Ok(self.maps.len() - 1)
            }
        }
    }

    /// The state of the page at `va`, if a mapping covers it.
    pub fn state(&self, va: u64) -> Option<PageState> {
        let (id, p) = self.find(va)?;
        Some(match self.maps[id].as_ref()?.pages[p as usize] {
            Page::Absent => PageState::Absent,
            Page::Clean(_) => PageState::Clean,
            Page::Dirty(_) => PageState::Dirty,
        })
    }

    fn find(&self, va: u64) -> Option<(usize, u64)> {
        self.maps.iter().enumerate().find_map(|(id, m)| {
            let m = m.as_ref()?;
            let p = va.checked_sub(m.va)? / PS;
            (p < m.pages.len() as u64).then_some((id, p))
        })
    }

    fn map_ref(&self, id: usize) -> Result<&Mapping, PagerError> {
        self.maps.get(id).and_then(Option::as_ref).ok_or(PagerError::NoMapping(id))
    }

    fn set(&mut self, id: usize, p: u64, st: Page) {
        if let Some(m) = self.maps.get_mut(id).and_then(Option::as_mut) {
            m.pages[p as usize] = st;
        }
    }

    /// Resolves a page fault at `addr` (`write`: the access was a store).
    /// `Ok(true)`: retry the access; `Ok(false)`: not ours to resolve (no
    /// mapping there, or a store into a read-only mapping).
    pub fn fault<S: Storage, M: Mmu>(
        &mut self,
        fs: &mut Fs<S>,
        mmu: &mut M,
        addr: u64,
        write: bool,
    ) -> Result<bool, PagerError> {
        let Some((id, p)) = self.find(addr) else { return Ok(false) };
        let m = self.map_ref(id)?;
        if write && !m.h.writable {
            return Ok(false);
        }
        let (h, va, st) = (m.h, m.va + p * PS, m.pages[p as usize]);
        match (st, write) {
            (Page::Absent, _) => {
                let f = self.take_frame(fs, mmu)?;
                if let Err(e) = self.fill(fs, mmu, &h, f, p).and_then(|()| self.grow_for_store(fs, &h, p, write)) {
                    self.free.push(f);
                    return Err(e);
                }
                if let Err(e) = mmu.map(f, va, write) {
                    self.free.push(f);
                    return Err(e.into());
                }
                self.stats.maps += 1;
                self.frames[f] = Some((id, p));
                self.loaded.push_back(f);
                self.set(id, p, if write { Page::Dirty(f) } else { Page::Clean(f) });
            }
            (Page::Clean(f), true) => {
                self.grow_for_store(fs, &h, p, true)?;
                mmu.unmap(va)?;
                self.stats.unmaps += 1;
                // Unmapped but still resident: if the map fails the page
                // is absent and its frame free again.
                if let Err(e) = mmu.map(f, va, true) {
                    self.release(f);
                    self.set(id, p, Page::Absent);
                    return Err(e.into());
                }
                self.stats.maps += 1;
                self.set(id, p, Page::Dirty(f));
            }
            (Page::Clean(_), false) | (Page::Dirty(_), _) => {
                self.stats.spurious += 1;
                self.stats.faults += 1;
                return Ok(true);
            }
        }
        self.stats.faults += 1;
        if write {
            self.stats.write_faults += 1;
        } else {
            self.stats.read_faults += 1;
        }
        Ok(true)
    }

    /// Fills frame `f` with file page `p` (zeros past the end of the file).
    fn fill<S: Storage, M: Mmu>(
        &mut self,
        fs: &mut Fs<S>,
        mmu: &mut M,
        h: &Handle,
        f: usize,
        p: u64,
    ) -> Result<(), PagerError> {
        let size = fs.stat_ino(h.ino)?.size;
        let buf = mmu.frame(f);
        buf.fill(0);
        if p * PS >= size {
            self.stats.zero_fills += 1;
            return Ok(());
        }
        fs.pread(h, p * PS, buf)?;
        self.stats.reads += 1;
        Ok(())
    }

    /// A store into page `p` past the end of the file grows it to the end
    /// of the page (see the module comment).
    fn grow_for_store<S: Storage>(
        &mut self,
        fs: &mut Fs<S>,
        h: &Handle,
        p: u64,
        write: bool,
    ) -> Result<(), PagerError> {
        if !write {
            return Ok(());
        }
        let end = (p + 1) * PS;
        if fs.stat_ino(h.ino)?.size < end {
            fs.truncate(h, end)?;
            self.stats.grows += 1;
        }
        Ok(())
    }

    /// A free frame, evicting a page if the budget is used up.
    fn take_frame<S: Storage, M: Mmu>(&mut self, fs: &mut Fs<S>, mmu: &mut M) -> Result<usize, PagerError> {
        if let Some(f) = self.free.pop() {
            return Ok(f);
        }
        let clean = self.loaded.iter().position(|&f| {
            self.frames[f].is_some_and(|(id, p)| {
                self.maps[id].as_ref().is_some_and(|m| matches!(m.pages[p as usize], Page::Clean(_)))
            })
        });
        let at = clean.unwrap_or(0);
        let f = *self.loaded.get(at).ok_or(PagerError::Mmu(MmuError { op: "evict", va: 0, why: "no frames" }))?;
        let (id, p) = self.frames[f].ok_or(PagerError::NoMapping(usize::MAX))?;
        let m = self.map_ref(id)?;
        let (h, va, st) = (m.h, m.va + p * PS, m.pages[p as usize]);
        if let Page::Dirty(_) = st {
            self.write_back(fs, mmu, &h, f, p)?;
            self.stats.evict_writebacks += 1;
        }
        mmu.unmap(va)?;
        self.stats.unmaps += 1;
        self.stats.evictions += 1;
        self.set(id, p, Page::Absent);
        self.loaded.remove(at);
        self.frames[f] = None;
        Ok(f)
    }

    /// Frame `f` leaves `loaded` and returns to the free list.
    fn release(&mut self, f: usize) {
        self.loaded.retain(|&x| x != f);
        self.frames[f] = None;
        self.free.push(f);
    }

    /// Writes frame `f` (file page `p`) to the medium, not flushed: in
    /// place if the page is allocated, through `pwrite` (which allocates
    /// it, a layout change for the next commit) if it is a hole. Bytes
    /// past the end of the file (it was truncated) are not written.
    fn write_back<S: Storage, M: Mmu>(
        &mut self,
        fs: &mut Fs<S>,
        mmu: &mut M,
        h: &Handle,
        f: usize,
        p: u64,
    ) -> Result<(), PagerError> {
        let size = fs.stat_ino(h.ino)?.size;
        let off = p * PS;
        if off < size {
            let len = (size - off).min(PS);
            let ranges = fs.persist_ranges(h.ino, off, len)?;
            let data = mmu.frame(f);
            match ranges.as_slice() {
                [(at, n)] if *n == PS => fs.storage_mut().write(*at, data).map_err(Error::from)?,
                _ => {
                    fs.pwrite(h, off, &data[..len as usize])?;
                }
            }
        }
        self.stats.writebacks += 1;
        Ok(())
    }

    /// Makes the stores made through the mapping in `[va, va + len)`
    /// durable: writes back exactly the dirty pages in the range, then one
    /// `Fs::sync` (data barrier, then the metadata commit if the size or
    /// layout changed), then maps the written pages read-only again.
    pub fn msync<S: Storage, M: Mmu>(
        &mut self,
        fs: &mut Fs<S>,
        mmu: &mut M,
        va: u64,
        len: u64,
    ) -> Result<(), PagerError> {
        let end = va.saturating_add(len);
        let mut written: Vec<(usize, u64, usize)> = Vec::new();
        for id in 0..self.maps.len() {
            let Some(m) = self.maps[id].as_ref() else { continue };
            let mend = m.va + m.pages.len() as u64 * PS;
            if end <= m.va || va >= mend {
                continue;
            }
            let first = (va.max(m.va) - m.va) / PS;
            let last = (end.min(mend) - m.va).div_ceil(PS);
            let h = m.h;
            for p in first..last {
                if let Some(Page::Dirty(f)) = self.maps[id].as_ref().map(|m| m.pages[p as usize]) {
                    self.write_back(fs, mmu, &h, f, p)?;
                    written.push((id, p, f));
                }
            }
        }
        let before = fs.commits + fs.checkpoints;
        fs.sync()?;
        self.stats.msyncs += 1;
        if fs.commits + fs.checkpoints != before {
            self.stats.metadata_commits += 1;
        }
        for (id, p, f) in written {
            let va = self.map_ref(id)?.va + p * PS;
            mmu.unmap(va)?;
            self.stats.unmaps += 1;
            if let Err(e) = mmu.map(f, va, false) {
                self.release(f);
                self.set(id, p, Page::Absent);
                return Err(e.into());
            }
            self.stats.maps += 1;
            self.set(id, p, Page::Clean(f));
        }
        Ok(())
    }

    /// Makes the whole mapping durable (`msync`), then removes it: every
    /// resident page is unmapped and its frame returns to the budget.
    pub fn unmap_file<S: Storage, M: Mmu>(&mut self, fs: &mut Fs<S>, mmu: &mut M, id: usize) -> Result<(), PagerError> {
        let (va, pages) = {
            let m = self.map_ref(id)?;
            (m.va, m.pages.len() as u64)
        };
        self.msync(fs, mmu, va, pages * PS)?;
        for p in 0..pages {
            if let Some(Page::Clean(f) | Page::Dirty(f)) = self.maps[id].as_ref().map(|m| m.pages[p as usize]) {
                mmu.unmap(va + p * PS)?;
                self.stats.unmaps += 1;
                self.set(id, p, Page::Absent);
                self.release(f);
            }
        }
        self.maps[id] = None;
        Ok(())
    }
}
