//! The file system: namespace and data operations on the in-memory state,
//! and the commit protocol that makes them durable.
//!
//! Persistence points (see DESIGN.md): data is written in place (on
//! persistent memory: stores + `clwb` as it is written); a commit is
//! `barrier` (data durable) → one log chunk written → `barrier` (commit
//! point), or, when the log is full or after a mount, `barrier` → a whole
//! checkpoint written to the older slot → `barrier` (commit point).

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use libdb::Storage;

use crate::alloc_map::AllocMap;
use crate::error::{Error, Result};
use crate::format::{
    crc, ChunkHeader, CkptHeader, Kind, Record, Superblock, CHUNK_HEADER_LEN, CKPT_HEADER_LEN, MAX_NAME, PAGE_SIZE,
};
use crate::medium;
pub use crate::state::ROOT_INO;
use crate::state::{valid_name, Inode, Issue, State};

const PS: u64 = PAGE_SIZE as u64;
/// Largest file (keeps page arithmetic far from overflow).
pub const MAX_FILE_SIZE: u64 = 1 << 44;

/// Default caps of the metadata areas: a checkpoint slot of 64 MiB holds
/// the metadata of about a million small files; a 16 MiB log holds
/// thousands of commits between checkpoints and is scanned on mount.
pub const MAX_AUTO_CKPT_PAGES: u64 = 16 * 1024;
pub const MAX_AUTO_LOG_PAGES: u64 = 4 * 1024;

/// Sizes of the metadata areas chosen by [`Fs::mkfs`] (pages; `None`: 1/32
/// of the medium, at least 2, at most the caps above).
#[derive(Clone, Copy, Debug, Default)]
pub struct Geometry {
    pub ckpt_pages: Option<u64>,
    pub log_pages: Option<u64>,
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenMode {
    pub write: bool,
    pub create: bool,
    pub truncate: bool,
}

impl OpenMode {
    pub const READ: OpenMode = OpenMode { write: false, create: false, truncate: false };
    pub const WRITE: OpenMode = OpenMode { write: true, create: false, truncate: false };
    pub const CREATE: OpenMode = OpenMode { write: true, create: true, truncate: false };
}

/// An open file: its inode, the cursor of `read`/`write`, and its rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    pub ino: u64,
    pub pos: u64,
    pub writable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ino: u64,
    pub kind: Kind,
    pub mode: u16,
    pub nlink: u32,
    pub size: u64,
    pub mtime: u64,
    /// Data pages allocated.
    pub pages: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    pub name: String,
    pub ino: u64,
    pub kind: Kind,
}

/// A run of file pages stored contiguously on the medium: file page
/// `file_page + i` is at byte `medium_offset + i * 4096`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub file_page: u64,
    pub medium_offset: u64,
    pub pages: u64,
}

pub struct Fs<S: Storage> {
    st: S,
    sb: Superblock,
    state: State,
    next_ino: u64,
    alloc: AllocMap,
    /// Generation and slot of the newest durable checkpoint.
    gen: u64,
    slot: usize,
    /// Bytes of the log used by chunks of this generation, next chunk's seq.
    log_pos: u64,
    seq: u64,
    /// Encoded namespace records not yet committed, in operation order.
    pending: Vec<u8>,
    /// Inodes whose current attributes/extents are owed to the log.
    dirty: BTreeSet<u64>,
    /// The log tail may hold a torn chunk (after mount): the next commit
    /// writes a checkpoint, which starts a new generation.
    need_ckpt: bool,
    /// Payload bytes of the current checkpoint.
    ckpt_len: u64,
    /// Set by an I/O error while changing the medium (see Error::Poisoned).
    poisoned: bool,
    clock: u64,
    pub commits: u64,
    pub checkpoints: u64,
}

fn round_up(n: u64, a: u64) -> u64 {
    n.div_ceil(a) * a
}

impl<S: Storage> Fs<S> {
    /// Formats the medium and returns the mounted, empty file system.
    pub fn mkfs(mut st: S, geo: Geometry) -> Result<Fs<S>> {
        let total = st.capacity() / PS;
        let align = st.write_align() as u64;
        if align > PS || !PS.is_multiple_of(align.max(1)) {
            return Err(Error::Invalid(format!("medium writes in units of {align} bytes (must divide 4096)")));
        }
        let auto = |cap: u64| (total / 32).clamp(2, cap);
        let sb = Superblock {
            total_pages: total,
            ckpt_pages: geo.ckpt_pages.unwrap_or(auto(MAX_AUTO_CKPT_PAGES)),
            log_pages: geo.log_pages.unwrap_or(auto(MAX_AUTO_LOG_PAGES)),
            log_unit: align.max(64) as u32,
        };
        if sb.ckpt_pages == 0 || sb.log_pages == 0 || sb.data_start_page() + 1 > total {
            return Err(Error::NoSpace("medium (too small for the metadata areas)"));
        }
        // Old checkpoints and log chunks (of an earlier file system) must
        // not be mistaken for ours: zero both slot headers and the log.
        let zero = vec![0u8; PAGE_SIZE];
        for slot in 0..2 {
            st.write(sb.ckpt_slot(slot), &zero)?;
        }
        for p in 0..sb.log_pages {
            st.write(sb.log_start() + p * PS, &zero)?;
        }
        let mut page0 = vec![0u8; PAGE_SIZE];
        page0[..crate::format::SUPERBLOCK_LEN].copy_from_slice(&sb.encode());
        st.write(0, &page0)?;
        let data = sb.data_start_page()..sb.total_pages;
        let mut fs = Fs {
            st,
            sb,
            state: State::empty(),
            next_ino: ROOT_INO + 1,
            alloc: AllocMap::new(data),
            gen: 0,
            slot: 1,
            log_pos: 0,
            seq: 0,
            pending: Vec::new(),
            dirty: BTreeSet::new(),
            need_ckpt: true,
            ckpt_len: 0,
            poisoned: false,
            clock: 0,
            commits: 0,
            checkpoints: 0,
        };
        // Generation 1 in slot 0; its barrier also covers the zeroing.
        fs.checkpoint()?;
        Ok(fs)
    }

    /// Mounts: newest valid checkpoint, then the log chunks of its
    /// generation up to the first that is missing or torn. Writes nothing.
    pub fn mount(st: S) -> Result<Fs<S>> {
        let (fs, issues) = Fs::mount_unchecked(st)?;
        if let Some(i) = issues.first() {
            return Err(Error::corrupt(
                format!("metadata: {} ({} issue(s); run fsck)", i.what, issues.len()),
                fs.sb.ckpt_slot(fs.slot),
            ));
        }
        Ok(fs)
    }

    /// Mounts and returns the state's inconsistencies instead of refusing
    /// (fsck). Damaged superblock, checkpoints or log are still errors.
    pub fn mount_unchecked(mut st: S) -> Result<(Fs<S>, Vec<Issue>)> {
        let cap = st.capacity();
        if cap < PS {
            return Err(Error::corrupt(format!("image truncated: {cap} bytes, no superblock"), 0));
        }
        let mut page0 = vec![0u8; crate::format::SUPERBLOCK_LEN];
        st.read(0, &mut page0)?;
        let sb = Superblock::decode(&page0, cap)?;
        if !(sb.log_unit as usize).is_multiple_of(st.write_align().max(1)) {
            return Err(Error::Invalid(format!(
                "image log unit {} is not a multiple of the medium's write unit {}",
                sb.log_unit,
                st.write_align()
            )));
        }
        // The newest checkpoint whose header and payload verify.
        let mut best: Option<(usize, CkptHeader, Vec<u8>)> = None;
        let mut why: Vec<String> = Vec::new();
        for slot in 0..2 {
            match read_ckpt(&mut st, &sb, slot) {
                Ok(Some((h, payload))) => {
                    if best.as_ref().is_none_or(|b| h.gen > b.1.gen) {
                        best = Some((slot, h, payload));
                    }
                }
                Ok(None) => why.push(format!("slot {slot}: empty")),
                Err(e) => why.push(format!("slot {slot}: {e}")),
            }
        }
        let Some((slot, h, payload)) = best else {
            return Err(Error::corrupt(format!("no valid checkpoint ({})", why.join("; ")), sb.ckpt_slot(0)));
        };
        let base = sb.ckpt_slot(slot) + CKPT_HEADER_LEN as u64;
        let mut state = State::default();
        for r in Record::decode_all(&payload, base, "checkpoint record")? {
            state.apply(&r);
        }
        let mut fs = Fs {
            st,
            sb,
            state,
            next_ino: h.next_ino,
            alloc: AllocMap::new(sb.data_start_page()..sb.total_pages),
            gen: h.gen,
            slot,
            log_pos: 0,
            seq: 0,
            pending: Vec::new(),
            dirty: BTreeSet::new(),
            need_ckpt: true,
            ckpt_len: 0,
            poisoned: false,
            clock: 0,
            commits: 0,
            checkpoints: 0,
        };
        fs.ckpt_len = h.payload_len;
        fs.replay()?;
        let issues = fs.check();
        fs.next_ino = fs.next_ino.max(fs.state.inodes.keys().next_back().map_or(0, |m| m + 1));
        fs.rebuild_alloc();
        Ok((fs, issues))
    }

    /// The free map from the extents (pages outside the data area, which
    /// `check` reports, are skipped).
    fn rebuild_alloc(&mut self) {
        let data = self.sb.data_start_page()..self.sb.total_pages;
        self.alloc = AllocMap::new(data.clone());
        for i in self.state.inodes.values() {
            for &(_, m, n) in &i.extents {
                for p in m..m.saturating_add(n) {
                    if data.contains(&p) {
                        self.alloc.mark(p);
                    } else {
                        break;
                    }
                }
            }
        }
    }

    /// Replays the chunks of the current generation. A chunk that does
    /// not verify ends the log (a torn last commit) — unless a valid chunk
    /// of this or a later generation lies beyond it, which a crash cannot
    /// produce (commits are sequential, each behind a barrier), so the
    /// log or the newest checkpoint is damaged.
    fn replay(&mut self) -> Result<()> {
        let unit = self.sb.log_unit as u64;
        let (start, len) = (self.sb.log_start(), self.sb.log_len());
        let mut pos = 0;
        while let Some((hdr, payload)) = self.chunk_at(pos)? {
            if hdr.gen != self.gen || hdr.seq != self.seq {
                break;
            }
            let base = start + pos + CHUNK_HEADER_LEN as u64;
            for r in Record::decode_all(&payload, base, "log record")? {
                self.state.apply(&r);
                // Every inode number the log mentions was handed out, even
                // one created and freed within it: never hand it out again.
                let seen = match &r {
                    Record::SetInode(i) => i.ino,
                    Record::FreeInode(ino) | Record::DirAdd { ino, .. } => *ino,
                    Record::DirRemove { .. } => 0,
                };
                self.next_ino = self.next_ino.max(seen.saturating_add(1));
            }
            pos += round_up(CHUNK_HEADER_LEN as u64 + hdr.payload_len as u64, unit);
            self.seq += 1;
        }
        self.log_pos = pos;
        // Scan the rest in windows (one read each, not one per unit: on a
        // block device that would be a command per sector).
        const WINDOW: u64 = 64 * 1024;
        let mut p = pos;
        let mut buf = Vec::new();
        while p + (CHUNK_HEADER_LEN as u64) <= len {
            let n = WINDOW.min(len - p);
            buf.resize(n as usize, 0);
            medium::read(&mut self.st, start + p, &mut buf)?;
            let mut q = 0;
            while q + CHUNK_HEADER_LEN as u64 <= n {
                let later = ChunkHeader::peek(&buf[q as usize..])
                    .is_some_and(|h| h.gen > self.gen || (h.gen == self.gen && h.seq >= self.seq));
                if later {
                    if let Some((h, _)) = self.chunk_at(p + q)? {
                        let what = if h.gen > self.gen {
                            format!("checkpoint generation {} (missing or damaged: a log chunk of that generation follows it)", h.gen)
                        } else {
                            format!("log chunk {} of generation {} (chunk {} follows it)", self.seq, self.gen, h.seq)
                        };
                        return Err(Error::corrupt(what, start + pos));
                    }
                }
                q += unit;
            }
            p += q;
        }
        Ok(())
    }

    /// The verified chunk at log byte `pos`, if any.
    fn chunk_at(&mut self, pos: u64) -> Result<Option<(ChunkHeader, Vec<u8>)>> {
        let (start, len) = (self.sb.log_start(), self.sb.log_len());
        if pos + CHUNK_HEADER_LEN as u64 > len {
            return Ok(None);
        }
        let mut hb = [0u8; CHUNK_HEADER_LEN];
        medium::read(&mut self.st, start + pos, &mut hb)?;
        let Some(h) = ChunkHeader::peek(&hb) else { return Ok(None) };
        if pos + CHUNK_HEADER_LEN as u64 + h.payload_len as u64 > len {
            return Ok(None);
        }
        let mut payload = vec![0u8; h.payload_len as usize];
        medium::read(&mut self.st, start + pos + CHUNK_HEADER_LEN as u64, &mut payload)?;
        Ok(ChunkHeader::check(&hb, &payload).then_some((h, payload)))
    }

    /// Refuses changes after an I/O error.
    fn live(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Records an I/O error: the medium may now differ from the state.
    fn poison(&mut self, e: Error) -> Error {
        if matches!(e, Error::Io { .. }) {
            self.poisoned = true;
        }
        e
    }

    pub fn check(&self) -> Vec<Issue> {
        self.state.check(self.sb.data_start_page()..self.sb.total_pages)
    }

    /// The metadata in use: (what, medium offset, bytes) — the superblock,
    /// the current checkpoint, and the log chunks of its generation.
    pub fn metadata_ranges(&self) -> Vec<(&'static str, u64, u64)> {
        vec![
            ("superblock", 0, crate::format::SUPERBLOCK_LEN as u64),
            ("checkpoint", self.sb.ckpt_slot(self.slot), CKPT_HEADER_LEN as u64 + self.ckpt_len),
            ("log", self.sb.log_start(), self.log_pos),
        ]
    }

    pub fn superblock(&self) -> Superblock {
        self.sb
    }
    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn storage(&self) -> &S {
        &self.st
    }
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.st
    }
    /// Unmounts without committing (what a crash would leave, minus the cache).
    pub fn into_storage(self) -> S {
        self.st
    }
    /// Free data pages.
    pub fn free_pages(&self) -> u64 {
        self.alloc.free()
    }
    /// The time stamp given to later modifications (no clock in `no_std`).
    pub fn set_time(&mut self, t: u64) {
        self.clock = t;
    }

    /// Replaces the whole metadata state and checkpoints it, unchecked: fsck
    /// installs repaired states with it (and tests inconsistent ones).
    pub fn install_state(&mut self, state: State, next_ino: u64) -> Result<()> {
        self.live()?;
        self.state = state;
        self.next_ino = next_ino;
        self.pending.clear();
        self.dirty.clear();
        self.rebuild_alloc();
        self.checkpoint().map_err(|e| self.poison(e))
    }
    pub fn next_ino(&self) -> u64 {
        self.next_ino
    }

    // ---------------------------------------------------------------
    // Commit protocol.

    /// Makes every earlier operation durable (one global log, so fsync of
    /// one file also commits the namespace operations before it).
    pub fn sync(&mut self) -> Result<()> {
        self.live()?;
        self.commit().map_err(|e| self.poison(e))
    }

    fn commit(&mut self) -> Result<()> {
        for ino in core::mem::take(&mut self.dirty) {
            if let Some(i) = self.state.inodes.get(&ino) {
                Record::SetInode(i.to_rec(ino)).encode(&mut self.pending);
            }
        }
        if self.pending.is_empty() && !self.need_ckpt {
            // Data stores only: make them durable.
            return Ok(self.st.barrier()?);
        }
        let unit = self.sb.log_unit as u64;
        let chunk_len = round_up(CHUNK_HEADER_LEN as u64 + self.pending.len() as u64, unit);
        if self.need_ckpt || self.log_pos + chunk_len > self.sb.log_len() || self.pending.len() > u32::MAX as usize {
            return self.checkpoint();
        }
        // Persistence point 1: data written so far is durable before any
        // metadata that points at it can be.
        self.st.barrier()?;
        let hdr = ChunkHeader { payload_len: self.pending.len() as u32, gen: self.gen, seq: self.seq };
        let mut buf = Vec::with_capacity(chunk_len as usize);
        buf.extend_from_slice(&hdr.encode(&self.pending));
        buf.extend_from_slice(&self.pending);
        buf.resize(chunk_len as usize, 0);
        self.st.write(self.sb.log_start() + self.log_pos, &buf)?;
        // Persistence point 2: the commit point.
        self.st.barrier()?;
        self.log_pos += chunk_len;
        self.seq += 1;
        self.pending.clear();
        self.alloc.commit();
        self.commits += 1;
        Ok(())
    }

    /// Writes the whole state to the older checkpoint slot.
    fn checkpoint(&mut self) -> Result<()> {
        self.dirty.clear();
        let mut payload = Vec::new();
        for r in self.state.to_records() {
            r.encode(&mut payload);
        }
        let slot_len = self.sb.ckpt_pages * PS;
        if CKPT_HEADER_LEN as u64 + payload.len() as u64 > slot_len {
            return Err(Error::NoSpace("checkpoint area (metadata too large)"));
        }
        let slot = 1 - self.slot;
        let h = CkptHeader {
            gen: self.gen + 1,
            payload_len: payload.len() as u64,
            next_ino: self.next_ino,
            payload_crc: crc(&[&payload]),
        };
        let len = round_up(CKPT_HEADER_LEN as u64 + payload.len() as u64, self.sb.log_unit as u64).min(slot_len);
        let mut buf = Vec::with_capacity(len as usize);
        buf.extend_from_slice(&h.encode());
        buf.extend_from_slice(&payload);
        buf.resize(len as usize, 0);
        // Data before the checkpoint that points at it.
        self.st.barrier()?;
        self.st.write(self.sb.ckpt_slot(slot), &buf)?;
        // The commit point: the new generation is the newest valid slot.
        self.st.barrier()?;
        self.slot = slot;
        self.gen += 1;
        self.ckpt_len = payload.len() as u64;
        self.log_pos = 0;
        self.seq = 0;
        self.need_ckpt = false;
        self.pending.clear();
        self.alloc.commit();
        self.checkpoints += 1;
        Ok(())
    }

    /// Whether an operation since the last commit is not yet durable
    /// (what `sync` would write a chunk for). Data-only stores through a
    /// mapping are not tracked: they change no metadata.
    pub fn has_uncommitted(&self) -> bool {
        !self.pending.is_empty() || !self.dirty.is_empty()
    }

    pub fn fsync(&mut self, h: &Handle) -> Result<()> {
        self.inode(h.ino)?;
        self.sync()
    }

    /// Same as `fsync` here: size and extents are needed to find the data,
    /// and the time stamp rides in the same record.
    pub fn fdatasync(&mut self, h: &Handle) -> Result<()> {
        self.fsync(h)
    }

    // ---------------------------------------------------------------
    // Namespace.

    fn inode(&self, ino: u64) -> Result<&Inode> {
        self.state.inodes.get(&ino).ok_or_else(|| Error::NotFound(format!("inode {ino}")))
    }

    /// The inode at `path` (absolute or relative to the root; `.`/`..` work).
    pub fn lookup(&self, path: &str) -> Result<u64> {
        let mut cur = ROOT_INO;
        let mut seen = String::new();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            let i = self.inode(cur)?;
            if i.kind != Kind::Dir {
                return Err(Error::NotDir(if seen.is_empty() { "/".into() } else { seen }));
            }
            seen.push('/');
            seen.push_str(c);
            cur = match c {
                "." => cur,
                ".." => i.parent,
                _ => *self
                    .state
                    .dirs
                    .get(&cur)
                    .and_then(|d| d.get(c.as_bytes()))
                    .ok_or_else(|| Error::NotFound(seen.clone()))?,
            };
        }
        Ok(cur)
    }

    /// The directory that holds (or would hold) `path`, and the last name.
    fn parent_of<'p>(&self, path: &'p str) -> Result<(u64, &'p str)> {
        let trimmed = path.trim_end_matches('/');
        let (dir, name) = match trimmed.rfind('/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => ("", trimmed),
        };
        if name.len() > MAX_NAME {
            return Err(Error::NameTooLong(path.into()));
        }
        if !valid_name(name.as_bytes()) {
            return Err(Error::Invalid(path.into()));
        }
        let d = self.lookup(dir)?;
        if self.inode(d)?.kind != Kind::Dir {
            return Err(Error::NotDir(dir.into()));
        }
        Ok((d, name))
    }

    fn entry(&self, dir: u64, name: &str) -> Option<u64> {
        self.state.dirs.get(&dir).and_then(|d| d.get(name.as_bytes())).copied()
    }

    fn log(&mut self, r: Record) {
        r.encode(&mut self.pending);
    }

    fn add_entry(&mut self, dir: u64, name: &str, ino: u64) {
        self.state.dirs.entry(dir).or_default().insert(name.as_bytes().to_vec(), ino);
        self.log(Record::DirAdd { dir, ino, name: name.as_bytes().to_vec() });
    }

    fn remove_entry(&mut self, dir: u64, name: &str) {
        if let Some(d) = self.state.dirs.get_mut(&dir) {
            d.remove(name.as_bytes());
        }
        self.log(Record::DirRemove { dir, name: name.as_bytes().to_vec() });
    }

    fn new_inode(&mut self, kind: Kind, mode: u16, parent: u64) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        let mut i = Inode::new(kind, mode, parent);
        i.mtime = self.clock;
        self.state.inodes.insert(ino, i);
        if kind == Kind::Dir {
            self.state.dirs.insert(ino, Default::default());
        }
        self.dirty.insert(ino);
        ino
    }

    /// Drops one name of `ino`; frees it (pages released after the commit)
    /// when it was the last.
    fn drop_link(&mut self, ino: u64) {
        let Some(i) = self.state.inodes.get_mut(&ino) else { return };
        if i.kind == Kind::File && i.nlink > 1 {
            i.nlink -= 1;
            self.dirty.insert(ino);
            return;
        }
        if let Some(i) = self.state.inodes.remove(&ino) {
            for &(_, m, n) in &i.extents {
                for p in m..m + n {
                    self.alloc.release_later(p);
                }
            }
        }
        self.state.dirs.remove(&ino);
        self.dirty.remove(&ino);
        self.log(Record::FreeInode(ino));
    }

    /// Creates an empty file; `Exists` if the name is taken.
    /// Creates an empty file; `Exists` if the name is taken.
    pub fn create(&mut self, path: &str, mode: u16) -> Result<u64> {
        let (dir, name) = self.parent_of(path)?;
        self.make(dir, name, Kind::File, mode, path)
    }

    pub fn mkdir(&mut self, path: &str, mode: u16) -> Result<u64> {
        let (dir, name) = self.parent_of(path)?;
        self.make(dir, name, Kind::Dir, mode, path)
    }

    pub fn open(&mut self, path: &str, mode: OpenMode) -> Result<Handle> {
        let ino = match self.lookup(path) {
            Ok(ino) => ino,
            Err(Error::NotFound(_)) if mode.create => self.create(path, 0o644)?,
            Err(e) => return Err(e),
        };
        self.open_ino(ino, mode, path)
    }

    /// Opens an inode found by other means (a file service's handle table,
    /// FUSE); `shown` names it in errors.
    pub fn open_ino(&mut self, ino: u64, mode: OpenMode, shown: &str) -> Result<Handle> {
        let i = self.inode(ino)?;
        if i.kind == Kind::Dir && mode.write {
            return Err(Error::IsDir(shown.into()));
        }
        if mode.write && i.mode & 0o222 == 0 {
            return Err(Error::Permission(shown.into()));
        }
        let h = Handle { ino, pos: 0, writable: mode.write };
        if mode.truncate && mode.write {
            self.truncate(&h, 0)?;
        }
        Ok(h)
    }

    pub fn unlink(&mut self, path: &str) -> Result<()> {
        let (dir, name) = self.parent_of(path)?;
        self.remove(dir, name, false, path)
    }

    pub fn rmdir(&mut self, path: &str) -> Result<()> {
        if path.split('/').all(|c| c.is_empty() || c == ".") {
            return Err(Error::Permission("/ (the root cannot be removed)".into()));
        }
        let (dir, name) = self.parent_of(path)?;
        self.remove(dir, name, true, path)
    }

    /// Gives the file at `existing` a second name.
    pub fn link(&mut self, existing: &str, new: &str) -> Result<()> {
        let ino = self.lookup(existing)?;
        if self.inode(ino)?.kind == Kind::Dir {
            return Err(Error::IsDir(existing.into()));
        }
        let (dir, name) = self.parent_of(new)?;
        self.link_in(ino, dir, name, existing, new)
    }

    /// Atomically moves `from` to `to`, replacing a file (or an empty
    /// directory, when `from` is a directory) already there.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let (sdir, sname) = self.parent_of(from)?;
        if self.entry(sdir, sname).is_none() {
            return Err(Error::NotFound(from.into()));
        }
        let (ddir, dname) = self.parent_of(to)?;
        self.rename_in(sdir, sname, ddir, dname, from, to)
    }

    // The same operations by directory inode and name (a file service's
    // or FUSE's view); errors name "inode DIR/NAME".

    /// The inode `name` in directory `dir`.
    pub fn lookup_at(&self, dir: u64, name: &str) -> Result<u64> {
        self.check_at(dir, name)?;
        self.entry(dir, name).ok_or_else(|| Error::NotFound(shown(dir, name)))
    }
    pub fn create_at(&mut self, dir: u64, name: &str, mode: u16) -> Result<u64> {
        self.check_at(dir, name)?;
        self.make(dir, name, Kind::File, mode, &shown(dir, name))
    }
    pub fn mkdir_at(&mut self, dir: u64, name: &str, mode: u16) -> Result<u64> {
        self.check_at(dir, name)?;
        self.make(dir, name, Kind::Dir, mode, &shown(dir, name))
    }
    pub fn unlink_at(&mut self, dir: u64, name: &str) -> Result<()> {
        self.check_at(dir, name)?;
        self.remove(dir, name, false, &shown(dir, name))
    }
    pub fn rmdir_at(&mut self, dir: u64, name: &str) -> Result<()> {
        self.check_at(dir, name)?;
        self.remove(dir, name, true, &shown(dir, name))
    }
    pub fn link_at(&mut self, ino: u64, dir: u64, name: &str) -> Result<()> {
        self.check_at(dir, name)?;
        self.link_in(ino, dir, name, &format!("inode {ino}"), &shown(dir, name))
    }
    pub fn rename_at(&mut self, sdir: u64, sname: &str, ddir: u64, dname: &str) -> Result<()> {
        self.check_at(sdir, sname)?;
        self.check_at(ddir, dname)?;
        self.rename_in(sdir, sname, ddir, dname, &shown(sdir, sname), &shown(ddir, dname))
    }
    /// Sets the permission bits.
    pub fn set_mode(&mut self, ino: u64, mode: u16) -> Result<()> {
        self.live()?;
        let i = self.state.inodes.get_mut(&ino).ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
        i.mode = mode & 0o7777;
        self.dirty.insert(ino);
        Ok(())
    }
    /// Sets the modification time (nanoseconds since the epoch), as
    /// `utimensat` does; the inode's one time stamp.
    pub fn set_mtime(&mut self, ino: u64, mtime: u64) -> Result<()> {
        self.live()?;
        let i = self.state.inodes.get_mut(&ino).ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
        i.mtime = mtime;
        self.dirty.insert(ino);
        Ok(())
    }

    fn check_at(&self, dir: u64, name: &str) -> Result<()> {
        if name.len() > MAX_NAME {
            return Err(Error::NameTooLong(shown(dir, name)));
        }
        if !valid_name(name.as_bytes()) {
            return Err(Error::Invalid(shown(dir, name)));
        }
        if self.inode(dir)?.kind != Kind::Dir {
            return Err(Error::NotDir(format!("inode {dir}")));
        }
        Ok(())
    }

    fn make(&mut self, dir: u64, name: &str, kind: Kind, mode: u16, shown: &str) -> Result<u64> {
        self.live()?;
        if self.entry(dir, name).is_some() {
            return Err(Error::Exists(shown.into()));
        }
        let ino = self.new_inode(kind, mode, dir);
        self.add_entry(dir, name, ino);
        Ok(ino)
    }

    fn remove(&mut self, dir: u64, name: &str, want_dir: bool, shown: &str) -> Result<()> {
        self.live()?;
        let ino = self.entry(dir, name).ok_or_else(|| Error::NotFound(shown.into()))?;
        let is_dir = self.inode(ino)?.kind == Kind::Dir;
        if is_dir && !want_dir {
            return Err(Error::IsDir(shown.into()));
        }
        if !is_dir && want_dir {
            return Err(Error::NotDir(shown.into()));
        }
        if self.state.dirs.get(&ino).is_some_and(|d| !d.is_empty()) {
            return Err(Error::NotEmpty(shown.into()));
        }
        self.remove_entry(dir, name);
        self.drop_link(ino);
        Ok(())
    }

    fn link_in(&mut self, ino: u64, dir: u64, name: &str, existing: &str, new: &str) -> Result<()> {
        self.live()?;
        if self.inode(ino)?.kind == Kind::Dir {
            return Err(Error::IsDir(existing.into()));
        }
        if self.entry(dir, name).is_some() {
            return Err(Error::Exists(new.into()));
        }
        if let Some(i) = self.state.inodes.get_mut(&ino) {
            i.nlink += 1;
        }
        self.dirty.insert(ino);
        self.add_entry(dir, name, ino);
        Ok(())
    }

    fn rename_in(&mut self, sdir: u64, sname: &str, ddir: u64, dname: &str, from: &str, to: &str) -> Result<()> {
        self.live()?;
        let ino = self.entry(sdir, sname).ok_or_else(|| Error::NotFound(from.into()))?;
        let is_dir = self.inode(ino)?.kind == Kind::Dir;
        if is_dir {
            // The target directory must not be `from` or inside it.
            let mut d = ddir;
            loop {
                if d == ino {
                    return Err(Error::Invalid(format!("{to} (inside {from})")));
                }
                if d == ROOT_INO {
                    break;
                }
                d = self.inode(d)?.parent;
            }
        }
        if let Some(old) = self.entry(ddir, dname) {
            if old == ino {
                return Ok(()); // two names of one file: nothing to do
            }
            let old_dir = self.inode(old)?.kind == Kind::Dir;
            match (is_dir, old_dir) {
                (true, false) => return Err(Error::NotDir(to.into())),
                (false, true) => return Err(Error::IsDir(to.into())),
                (true, true) if self.state.dirs.get(&old).is_some_and(|d| !d.is_empty()) => {
                    return Err(Error::NotEmpty(to.into()))
                }
                _ => {}
            }
            self.remove_entry(ddir, dname);
            self.drop_link(old);
        }
        self.remove_entry(sdir, sname);
        self.add_entry(ddir, dname, ino);
        if is_dir {
            if let Some(i) = self.state.inodes.get_mut(&ino) {
                i.parent = ddir;
            }
            self.dirty.insert(ino);
        }
        Ok(())
    }

    pub fn readdir(&self, path: &str) -> Result<Vec<DirEntry>> {
        self.readdir_ino(self.lookup(path)?, path)
    }

    pub fn readdir_ino(&self, ino: u64, shown: &str) -> Result<Vec<DirEntry>> {
        if self.inode(ino)?.kind != Kind::Dir {
            return Err(Error::NotDir(shown.into()));
        }
        let mut out = Vec::new();
        if let Some(d) = self.state.dirs.get(&ino) {
            for (name, &e) in d {
                let kind = self.inode(e)?.kind;
                out.push(DirEntry { name: String::from_utf8_lossy(name).into_owned(), ino: e, kind });
            }
        }
        Ok(out)
    }

    pub fn stat(&self, path: &str) -> Result<Stat> {
        self.stat_ino(self.lookup(path)?)
    }

    pub fn stat_ino(&self, ino: u64) -> Result<Stat> {
        let i = self.inode(ino)?;
        let nlink = match i.kind {
            // "." and the name in the parent, plus each subdirectory's "..".
            Kind::Dir => {
                2 + self.state.dirs.get(&ino).map_or(0, |d| {
                    d.values().filter(|c| self.state.inodes.get(c).is_some_and(|n| n.kind == Kind::Dir)).count() as u32
                })
            }
            Kind::File => i.nlink,
        };
        Ok(Stat {
            ino,
            kind: i.kind,
            mode: i.mode,
            nlink,
            size: i.size,
            mtime: i.mtime,
            pages: i.extents.iter().map(|e| e.2).sum(),
        })
    }

    // ---------------------------------------------------------------
    // Data.

    fn file(&self, ino: u64) -> Result<&Inode> {
        let i = self.inode(ino)?;
        if i.kind == Kind::Dir {
            return Err(Error::IsDir(format!("inode {ino}")));
        }
        Ok(i)
    }

    fn writable(&self, h: &Handle) -> Result<()> {
        if !h.writable {
            return Err(Error::Permission(format!("inode {} (opened read-only)", h.ino)));
        }
        self.file(h.ino).map(|_| ())
    }

    /// Reads at `off`; returns the bytes read (short at end of file).
    pub fn pread(&mut self, h: &Handle, off: u64, buf: &mut [u8]) -> Result<usize> {
        let i = self.file(h.ino)?;
        if off >= i.size {
            return Ok(0);
        }
        let n = buf.len().min((i.size - off) as usize);
        let runs: Vec<(usize, usize, Option<u64>)> =
            page_runs(off, n).map(|(fp, in_page, at, len)| (at, len, i.lookup(fp).map(|m| m * PS + in_page))).collect();
        for (at, len, src) in runs {
            match src {
                Some(m) => medium::read(&mut self.st, m, &mut buf[at..at + len])?,
                None => buf[at..at + len].fill(0),
            }
        }
        Ok(n)
    }

    pub fn read(&mut self, h: &mut Handle, buf: &mut [u8]) -> Result<usize> {
        let n = self.pread(h, h.pos, buf)?;
        h.pos += n as u64;
        Ok(n)
    }

    /// Writes `data` at `off`, growing the file if needed. All or nothing:
    /// `NoSpace` is reported before anything is written.
    pub fn pwrite(&mut self, h: &Handle, off: u64, data: &[u8]) -> Result<usize> {
        self.live()?;
        self.pwrite_inner(h, off, data).map_err(|e| self.poison(e))
    }

    fn pwrite_inner(&mut self, h: &Handle, off: u64, data: &[u8]) -> Result<usize> {
        self.writable(h)?;
        if data.is_empty() {
            return Ok(0);
        }
        let end = off
            .checked_add(data.len() as u64)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(Error::NoSpace("file (larger than the maximum file size)"))?;
        let ino = h.ino;
        let i = self.file(ino)?;
        let size = i.size;
        // Every page this needs, counted before anything changes: the
        // holes it fills, and the copy of the old last page if it grows
        // the file past an unaligned end (see `extend`).
        let cow = off > size && size % PS != 0 && i.lookup(size / PS).is_some();
        let new_pages = (off / PS..=(end - 1) / PS).filter(|&p| i.lookup(p).is_none()).count() as u64 + cow as u64;
        if new_pages > self.alloc.free() {
            return Err(Error::NoSpace("data pages"));
        }
        if off > size {
            self.extend(ino, off)?;
        }
        for (fp, in_page, at, len) in page_runs(off, data.len()) {
            let chunk = &data[at..at + len];
            let i = self.file(ino)?;
            match i.lookup(fp) {
                // In place: the page is this file's.
                Some(m) => medium::write(&mut self.st, m * PS + in_page, chunk)?,
                None => {
                    // A fresh page is written whole, so no stale byte of
                    // an earlier owner survives in it.
                    let hint = fp.checked_sub(1).and_then(|p| i.lookup(p)).map(|m| m + 1);
                    let m = self.alloc.alloc(hint).ok_or(Error::NoSpace("data pages"))?;
                    let mut page = vec![0u8; PAGE_SIZE];
                    page[in_page as usize..in_page as usize + len].copy_from_slice(chunk);
                    medium::write(&mut self.st, m * PS, &page)?;
                    self.state.inodes.get_mut(&ino).ok_or_else(|| Error::NotFound(format!("inode {ino}")))?.map(fp, m);
                }
            }
        }
        let clock = self.clock;
        if let Some(i) = self.state.inodes.get_mut(&ino) {
            i.size = i.size.max(end);
            i.mtime = clock;
        }
        self.dirty.insert(ino);
        Ok(data.len())
    }

    pub fn write(&mut self, h: &mut Handle, data: &[u8]) -> Result<usize> {
        let n = self.pwrite(h, h.pos, data)?;
        h.pos += n as u64;
        Ok(n)
    }

    /// Writes at the end of the file; returns the offset written at.
    pub fn append(&mut self, h: &mut Handle, data: &[u8]) -> Result<u64> {
        let off = self.file(h.ino)?.size;
        self.pwrite(h, off, data)?;
        h.pos = off + data.len() as u64;
        Ok(off)
    }

    pub fn truncate(&mut self, h: &Handle, size: u64) -> Result<()> {
        self.live()?;
        self.truncate_inner(h, size).map_err(|e| self.poison(e))
    }

    fn truncate_inner(&mut self, h: &Handle, size: u64) -> Result<()> {
        self.writable(h)?;
        if size > MAX_FILE_SIZE {
            return Err(Error::NoSpace("file (larger than the maximum file size)"));
        }
        let ino = h.ino;
        let old = self.file(ino)?.size;
        if size > old {
            self.extend(ino, size)?;
        } else if size < old {
            let clock = self.clock;
            let i = self.state.inodes.get_mut(&ino).ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
            // Pages wholly past the end go; the bytes past `size` in the
            // last page stay until the file grows again (see `extend`):
            // zeroing them now, in place, would damage the durable old
            // version of the file if we crashed before the commit.
            for p in i.cut(size.div_ceil(PS)) {
                self.alloc.release_later(p);
            }
            i.size = size;
            i.mtime = clock;
        }
        self.dirty.insert(ino);
        Ok(())
    }

    /// Grows the file to `size` (a hole). Bytes of the old last page past
    /// the old end may be stale (from a shrink), and the durable version
    /// of the file may still show them: the page is copied to a fresh one
    /// with them zeroed, instead of zeroing in place.
    fn extend(&mut self, ino: u64, size: u64) -> Result<()> {
        let i = self.file(ino)?;
        let old = i.size;
        let tail = old % PS;
        if tail != 0 {
            if let Some(m) = i.lookup(old / PS) {
                let mut page = vec![0u8; PAGE_SIZE];
                medium::read(&mut self.st, m * PS, &mut page[..tail as usize])?;
                let fresh = self.alloc.alloc(Some(m + 1)).ok_or(Error::NoSpace("data pages"))?;
                medium::write(&mut self.st, fresh * PS, &page)?;
                let i = self.state.inodes.get_mut(&ino).ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
                i.cut(old / PS);
                i.map(old / PS, fresh);
                self.alloc.release_later(m);
            }
        }
        let clock = self.clock;
        if let Some(i) = self.state.inodes.get_mut(&ino) {
            i.size = size;
            i.mtime = clock;
        }
        self.dirty.insert(ino);
        Ok(())
    }

    // ---------------------------------------------------------------
    // Files as mapped regions.

    /// Where the file's pages are: what a mapping layer maps (persistent
    /// memory) or pages in from (NVMe). Holes are absent (read as zero).
    pub fn extents(&self, ino: u64) -> Result<Vec<Extent>> {
        Ok(self
            .file(ino)?
            .extents
            .iter()
            .map(|&(f, m, n)| Extent { file_page: f, medium_offset: m * PS, pages: n })
            .collect())
    }

    /// Grows the file to at least `size` and allocates (zero-filled) every
    /// page below it, so all of it can be mapped; commit with `fsync`
    /// before handing the pages out.
    pub fn allocate(&mut self, h: &Handle, size: u64) -> Result<()> {
        self.live()?;
        self.allocate_inner(h, size).map_err(|e| self.poison(e))
    }

    fn allocate_inner(&mut self, h: &Handle, size: u64) -> Result<()> {
        self.writable(h)?;
        if size > self.file(h.ino)?.size {
            self.truncate(h, size)?;
        }
        let i = self.file(h.ino)?;
        let holes: Vec<u64> = (0..size.div_ceil(PS)).filter(|&p| i.lookup(p).is_none()).collect();
        if holes.len() as u64 > self.alloc.free() {
            return Err(Error::NoSpace("data pages"));
        }
        let zero = vec![0u8; PAGE_SIZE];
        for fp in holes {
            let hint =
                fp.checked_sub(1).and_then(|p| self.state.inodes.get(&h.ino).and_then(|i| i.lookup(p))).map(|m| m + 1);
            let m = self.alloc.alloc(hint).ok_or(Error::NoSpace("data pages"))?;
            medium::write(&mut self.st, m * PS, &zero)?;
            if let Some(i) = self.state.inodes.get_mut(&h.ino) {
                i.map(fp, m);
            }
        }
        self.dirty.insert(h.ino);
        Ok(())
    }

    /// The medium byte ranges holding file bytes `[off, off+len)` (clamped
    /// to the allocated pages): what to write back (`clwb` + `sfence` on
    /// persistent memory, write + flush on NVMe) to make stores made
    /// through a mapping durable. Data needs no commit; size and layout
    /// changes do (`fsync`).
    pub fn persist_ranges(&self, ino: u64, off: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        let i = self.file(ino)?;
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (fp, in_page, _, l) in page_runs(off, len as usize) {
            if let Some(m) = i.lookup(fp) {
                let start = m * PS + in_page;
                match out.last_mut() {
                    Some(last) if last.0 + last.1 == start => last.1 += l as u64,
                    _ => out.push((start, l as u64)),
                }
            }
        }
        Ok(out)
    }
}

fn shown(dir: u64, name: &str) -> String {
    format!("inode {dir}/{name}")
}

/// Splits `[off, off+len)` at page boundaries: (file page, offset in
/// page, offset in the buffer, length).
fn page_runs(off: u64, len: usize) -> impl Iterator<Item = (u64, u64, usize, usize)> {
    let mut at = 0usize;
    core::iter::from_fn(move || {
        if at >= len {
            return None;
        }
        let pos = off + at as u64;
        let in_page = pos % PS;
        let n = ((PS - in_page) as usize).min(len - at);
        let r = (pos / PS, in_page, at, n);
        at += n;
        Some(r)
    })
}

/// A checkpoint slot: `Ok(None)` if never written, `Err` if damaged.
fn read_ckpt<S: Storage>(st: &mut S, sb: &Superblock, slot: usize) -> Result<Option<(CkptHeader, Vec<u8>)>> {
    let at = sb.ckpt_slot(slot);
    let mut hb = [0u8; CKPT_HEADER_LEN];
    st.read(at, &mut hb)?;
    let Some(h) = CkptHeader::decode(&hb, at)? else { return Ok(None) };
    if h.payload_len > sb.ckpt_pages * PS - CKPT_HEADER_LEN as u64 {
        return Err(Error::corrupt("checkpoint: payload longer than its slot", at + 16));
    }
    let mut payload = vec![0u8; h.payload_len as usize];
    st.read(at + CKPT_HEADER_LEN as u64, &mut payload)?;
    let c = crc(&[&payload]);
    if c != h.payload_crc {
        return Err(Error::corrupt(
            format!("checkpoint generation {}: payload checksum {:#x} != {c:#x}", h.gen, h.payload_crc),
            at + CKPT_HEADER_LEN as u64,
        ));
    }
    Ok(Some((h, payload)))
}
