//! The file service's logic: one mounted libfs (the only writer of its
//! metadata), clients known by slot with a uid init gave, their open files
//! and the pages mapped into their windows. The page-table work is behind
//! [`Mapper`]: `fsd` implements it with `map`/`unmap`, the host tests with
//! a model that records every entry.
//!
//! Rules this module keeps (each checked by a test in `tests/service.rs`):
//! * a client only ever gets **data pages** of files it opened, read-only
//!   unless it opened for write and may write (never metadata pages);
//! * a handle is only honoured for the client that opened it;
//! * close and [`Service::client_gone`] revoke every page they mapped;
//! * a file that is mapped is never freed or truncated (`Busy`), so its
//!   pages cannot be reused by another file while a client holds them;
//! * every mutating request is committed (`sync`) before it is answered,
//!   and before new pages are handed out.

use crate::owners::Owners;
use crate::wire::{self, Reply, Request, Status, OPEN_CREATE, OPEN_TRUNCATE, OPEN_WRITE};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use libfs::{Fs, Kind, OpenMode, Storage, PAGE_SIZE};

const PS: u64 = PAGE_SIZE as u64;
/// Open files per client.
pub const MAX_OPEN: usize = 64;
/// The superuser: init's own shell and system tools.
pub const ROOT_UID: u32 = 0;

/// Why the kernel refused a mapping change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapError(pub String);

/// The page-table side: page `page` of client `client`'s window.
pub trait Mapper {
    /// Map the medium page at byte offset `medium` there (a share: the
    /// client cannot pass it on or change the entry).
    fn share(&mut self, client: usize, page: u64, medium: u64, writable: bool) -> Result<(), MapError>;
    /// Remove the entry (the kernel flushes every TLB before returning).
    fn revoke(&mut self, client: usize, page: u64) -> Result<(), MapError>;
}

/// One open file of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Open {
    ino: u64,
    writable: bool,
    /// Window pages `[start, start + reserved)` belong to it; the first
    /// `mapped` of them hold the file's pages (holes stay unmapped).
    start: u64,
    reserved: u64,
    mapped: Vec<u64>,
}

struct Client {
    uid: u32,
    next_handle: u32,
    open: BTreeMap<u32, Open>,
}

/// What the service did, for the evidence lines and the measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub refused: u64,
    pub opens: u64,
    pub closes: u64,
    /// `Mapper::share` / `Mapper::revoke` calls.
    pub shares: u64,
    pub revokes: u64,
    /// Pages revoked because their client went away.
    pub revoked_on_death: u64,
    pub commits: u64,
}

pub struct Service<S: Storage, M: Mapper> {
    fs: Fs<S>,
    mapper: M,
    clients: BTreeMap<usize, Client>,
    owners: Owners,
    window_pages: u64,
    pub counts: Counts,
}

type Answer = Result<Reply, (Status, String)>;

fn fs_err(e: libfs::Error) -> (Status, String) {
    ((&e).into(), format!("{e}"))
}

fn kind_code(k: Kind) -> u8 {
    match k {
        Kind::File => 1,
        Kind::Dir => 2,
    }
}

impl<S: Storage, M: Mapper> Service<S, M> {
    /// Serve `fs`; each client's window holds `window_pages` pages.
    pub fn new(mut fs: Fs<S>, mapper: M, window_pages: u64) -> Result<Self, libfs::Error> {
        let owners = Owners::load(&mut fs)?;
        Ok(Service { fs, mapper, clients: BTreeMap::new(), owners, window_pages, counts: Counts::default() })
    }

    pub fn fs(&self) -> &Fs<S> {
        &self.fs
    }
    pub fn fs_mut(&mut self) -> &mut Fs<S> {
        &mut self.fs
    }
    pub fn mapper(&self) -> &M {
        &self.mapper
    }
    pub fn mapper_mut(&mut self) -> &mut M {
        &mut self.mapper
    }
    pub fn into_fs(self) -> Fs<S> {
        self.fs
    }

    /// A client appeared in `slot` with `uid` (told by init, never by the
    /// client). A slot already in use is first cleared.
    pub fn client_new(&mut self, slot: usize, uid: u32) {
        self.client_gone(slot);
        self.clients.insert(slot, Client { uid, next_handle: 1, open: BTreeMap::new() });
    }

    /// The client in `slot` is gone (exited or died): revoke every page
    /// mapped into its window and forget its handles. Returns the pages
    /// revoked.
    pub fn client_gone(&mut self, slot: usize) -> u64 {
        let Some(c) = self.clients.remove(&slot) else { return 0 };
        let mut n = 0;
        for o in c.open.values() {
            n += self.unmap_all(slot, o);
        }
        self.counts.revoked_on_death += n;
        n
    }

    /// Clients present.
    pub fn clients(&self) -> impl Iterator<Item = (usize, u32, usize)> + '_ {
        self.clients.iter().map(|(s, c)| (*s, c.uid, c.open.len()))
    }

    /// Pages currently mapped into `slot`'s window.
    pub fn mapped_pages(&self, slot: usize) -> u64 {
        self.clients.get(&slot).map_or(0, |c| c.open.values().map(|o| o.mapped.len() as u64).sum())
    }

    /// Answer one request of client `slot`, given as the raw bytes it
    /// wrote. Never panics, whatever the bytes.
    pub fn handle_raw(&mut self, slot: usize, raw: &[u8]) -> Reply {
        self.counts.requests += 1;
        let answer = match Request::decode(raw) {
            Ok(req) => self.handle(slot, &req),
            Err(bad) => Err((Status::BadRequest, format!("{bad}"))),
        };
        answer.unwrap_or_else(|(status, text)| {
            self.counts.refused += 1;
            Reply::error(status, &text)
        })
    }

    fn handle(&mut self, slot: usize, req: &Request) -> Answer {
        let uid = match self.clients.get(&slot) {
            Some(c) => c.uid,
            None => return Err((Status::BadHandle, format!("client slot {slot} is not registered"))),
        };
        for p in paths(req) {
            if Owners::is_reserved(p) {
                return Err((Status::Permission, format!("{p}: reserved for the file service")));
            }
        }
        match req {
            Request::Open { path, flags, mode } => self.open(slot, uid, path, *flags, *mode),
            Request::Close { handle } => self.close(slot, *handle),
            Request::Grow { handle, size } => self.grow(slot, *handle, *size),
            Request::Stat { path } => {
                let st = self.fs.stat(path).map_err(fs_err)?;
                Ok(Reply {
                    ino: st.ino,
                    kind: kind_code(st.kind),
                    mode: st.mode,
                    nlink: st.nlink,
                    size: st.size,
                    pages: st.pages,
                    owner: self.owners.of(st.ino),
                    ..Reply::default()
                })
            }
            Request::Readdir { path, cookie } => {
                let ino = self.fs.lookup(path).map_err(fs_err)?;
                self.check(uid, ino, 4, path)?;
                let all = self.fs.readdir(path).map_err(fs_err)?;
                let visible: Vec<_> =
                    all.iter().filter(|e| !(ino == libfs::ROOT_INO && Owners::is_reserved_name(&e.name))).collect();
                let from = (*cookie).min(visible.len() as u64) as usize;
                let (payload, n) =
                    wire::encode_entries(visible[from..].iter().map(|e| (kind_code(e.kind), e.name.as_str())));
                let next = from + n;
                let cookie = if next >= visible.len() { u64::MAX } else { next as u64 };
                Ok(Reply { cookie, payload, ..Reply::default() })
            }
            Request::Mkdir { path, mode } => {
                self.check_parent(uid, path)?;
                let ino = self.fs.mkdir(path, *mode).map_err(fs_err)?;
                self.owners.set(&mut self.fs, ino, uid).map_err(fs_err)?;
                self.commit()?;
                Ok(Reply { ino, kind: 2, ..Reply::default() })
            }
            Request::Unlink { path } | Request::Rmdir { path } => {
                self.check_parent(uid, path)?;
                let ino = self.fs.lookup(path).map_err(fs_err)?;
                self.not_busy(ino, path)?;
                match req {
                    Request::Unlink { .. } => self.fs.unlink(path),
                    _ => self.fs.rmdir(path),
                }
                .map_err(fs_err)?;
                self.commit()?;
                Ok(Reply::default())
            }
            Request::Rename { from, to } => {
                self.check_parent(uid, from)?;
                self.check_parent(uid, to)?;
                self.fs.lookup(from).map_err(fs_err)?;
                // A file replaced by the rename dies: not while mapped.
                if let Ok(old) = self.fs.lookup(to) {
                    self.not_busy(old, to)?;
                }
                self.fs.rename(from, to).map_err(fs_err)?;
                self.commit()?;
                Ok(Reply::default())
            }
            Request::Sync => {
                self.commit()?;
                Ok(Reply::default())
            }
        }
    }

    fn commit(&mut self) -> Result<(), (Status, String)> {
        self.counts.commits += 1;
        self.fs.sync().map_err(fs_err)
    }

    /// May `uid` access `ino` for `want` (4 read, 2 write)? The owner's
    /// bits for its owner, the others' bits for everyone else; uid 0 may
    /// do anything the bits allow anybody.
    fn check(&self, uid: u32, ino: u64, want: u16, shown: &str) -> Result<(), (Status, String)> {
        let st = self.fs.stat_ino(ino).map_err(fs_err)?;
        let owner = self.owners.of(ino);
        let bits = if uid == ROOT_UID {
            (st.mode >> 6 | st.mode >> 3 | st.mode) & 7
        } else if owner == uid {
            st.mode >> 6 & 7
        } else {
            st.mode & 7
        };
        if bits & want == want {
            Ok(())
        } else {
            let what = if want & 2 != 0 { "write" } else { "read" };
            Err((
                Status::Permission,
                format!("{shown}: uid {uid} may not {what} it (owner {owner}, mode {:#o})", st.mode),
            ))
        }
    }

    /// Write permission on the directory that holds `path`.
    fn check_parent(&self, uid: u32, path: &str) -> Result<(), (Status, String)> {
        let trimmed = path.trim_end_matches('/');
        let parent = match trimmed.rfind('/') {
            Some(0) | None => "/",
            Some(i) => &trimmed[..i],
        };
        let dir = self.fs.lookup(parent).map_err(fs_err)?;
        self.check(uid, dir, 2, parent)
    }

    /// `Busy` while any client has `ino` open.
    fn not_busy(&self, ino: u64, shown: &str) -> Result<(), (Status, String)> {
        let users = self.clients.values().filter(|c| c.open.values().any(|o| o.ino == ino)).count();
        if users == 0 {
            Ok(())
        } else {
            Err((Status::Busy, format!("{shown}: open (mapped) by {users} client(s)")))
        }
    }

    fn open(&mut self, slot: usize, uid: u32, path: &str, flags: u8, mode: u16) -> Answer {
        let write = flags & OPEN_WRITE != 0;
        let ino = match self.fs.lookup(path) {
            Ok(ino) => ino,
            Err(libfs::Error::NotFound(_)) if flags & OPEN_CREATE != 0 => {
                self.check_parent(uid, path)?;
                let ino = self.fs.create(path, mode).map_err(fs_err)?;
                self.owners.set(&mut self.fs, ino, uid).map_err(fs_err)?;
                ino
            }
            Err(e) => return Err(fs_err(e)),
        };
        self.check(uid, ino, if write { 4 | 2 } else { 4 }, path)?;
        if self.clients.get(&slot).is_some_and(|c| c.open.len() >= MAX_OPEN) {
            return Err((Status::TooManyOpen, format!("{path}: {MAX_OPEN} files already open")));
        }
        if flags & OPEN_TRUNCATE != 0 {
            self.not_busy(ino, path)?;
        }
        let om = OpenMode { write, create: false, truncate: flags & OPEN_TRUNCATE != 0 };
        let h = self.fs.open_ino(ino, om, path).map_err(fs_err)?;
        if self.fs.stat_ino(ino).map_err(fs_err)?.kind == Kind::Dir {
            return Err((Status::IsDir, format!("{path}: a directory cannot be opened (use readdir)")));
        }
        // Creation, truncation and the owner record are durable before
        // any page is handed out.
        self.commit()?;
        let mut o = Open { ino, writable: h.writable, start: 0, reserved: 0, mapped: Vec::new() };
        self.place_and_map(slot, &mut o, path)?;
        let handle = self.clients.get(&slot).map_or(1, |c| c.next_handle);
        let reply = self.reply_for(handle, &o)?;
        let c = self.clients.get_mut(&slot).ok_or((Status::BadHandle, String::from("client vanished")))?;
        c.next_handle = c.next_handle.wrapping_add(1).max(1);
        c.open.insert(handle, o);
        self.counts.opens += 1;
        Ok(reply)
    }

    fn reply_for(&self, handle: u32, o: &Open) -> Answer {
        let st = self.fs.stat_ino(o.ino).map_err(fs_err)?;
        Ok(Reply {
            handle,
            window: o.start * PS,
            // Pages actually mapped: fewer than the size needs means the
            // file has holes, which stay unmapped (a load there faults).
            pages: o.mapped.len() as u64,
            size: st.size,
            ino: o.ino,
            kind: 1,
            writable: o.writable,
            mode: st.mode,
            nlink: st.nlink,
            owner: self.owners.of(o.ino),
            ..Reply::default()
        })
    }

    /// Find room in the window for the file's pages (with room to grow)
    /// and map every allocated page there.
    fn place_and_map(&mut self, slot: usize, o: &mut Open, shown: &str) -> Result<(), (Status, String)> {
        let size = self.fs.stat_ino(o.ino).map_err(fs_err)?.size;
        let need = size.div_ceil(PS).max(1);
        let want = need.next_power_of_two().max(16);
        let start = self
            .free_range(slot, want)
            .or_else(|| self.free_range(slot, need))
            .ok_or((Status::WindowFull, format!("{shown}: {need} pages do not fit in the window")))?;
        o.start = start;
        o.reserved = if self.free_range_at(slot, start, want) { want } else { need };
        self.map_file(slot, o, shown)
    }

    fn map_file(&mut self, slot: usize, o: &mut Open, shown: &str) -> Result<(), (Status, String)> {
        let extents = self.fs.extents(o.ino).map_err(fs_err)?;
        for e in extents {
            for i in 0..e.pages {
                let fp = e.file_page + i;
                if fp >= o.reserved || o.mapped.contains(&fp) {
                    continue;
                }
                self.counts.shares += 1;
                if let Err(MapError(why)) = self.mapper.share(slot, o.start + fp, e.medium_offset + i * PS, o.writable)
                {
                    self.unmap_all(slot, o);
                    o.mapped.clear();
                    return Err((Status::MapFailed, format!("{shown}: mapping file page {fp}: {why}")));
                }
                o.mapped.push(fp);
            }
        }
        Ok(())
    }

    /// Revoke every mapped page of `o`; returns how many.
    fn unmap_all(&mut self, slot: usize, o: &Open) -> u64 {
        for fp in &o.mapped {
            self.counts.revokes += 1;
            // A failed revoke means the entry is already gone.
            let _ = self.mapper.revoke(slot, o.start + fp);
        }
        o.mapped.len() as u64
    }

    /// The first free run of `n` window pages of `slot`.
    fn free_range(&self, slot: usize, n: u64) -> Option<u64> {
        let c = self.clients.get(&slot)?;
        let mut used: Vec<(u64, u64)> = c.open.values().map(|o| (o.start, o.reserved)).collect();
        used.sort_unstable();
        let mut at = 0;
        for (s, len) in used {
            if s >= at + n {
                break;
            }
            at = at.max(s + len);
        }
        (at + n <= self.window_pages).then_some(at)
    }

    fn free_range_at(&self, slot: usize, start: u64, n: u64) -> bool {
        self.free_range(slot, n) == Some(start)
    }

    fn close(&mut self, slot: usize, handle: u32) -> Answer {
        let o = self
            .clients
            .get_mut(&slot)
            .and_then(|c| c.open.remove(&handle))
            .ok_or((Status::BadHandle, format!("handle {handle} is not open by this client")))?;
        self.unmap_all(slot, &o);
        self.counts.closes += 1;
        Ok(Reply { handle, ..Reply::default() })
    }

    fn grow(&mut self, slot: usize, handle: u32, size: u64) -> Answer {
        let mut o = self
            .clients
            .get_mut(&slot)
            .and_then(|c| c.open.remove(&handle))
            .ok_or((Status::BadHandle, format!("handle {handle} is not open by this client")))?;
        let result = self.grow_open(slot, &mut o, size);
        let reply = result.and_then(|_| self.reply_for(handle, &o));
        if let Some(c) = self.clients.get_mut(&slot) {
            c.open.insert(handle, o);
        }
        reply
    }

    fn grow_open(&mut self, slot: usize, o: &mut Open, size: u64) -> Result<(), (Status, String)> {
        let shown = format!("handle of inode {}", o.ino);
        if !o.writable {
            return Err((Status::Permission, format!("{shown}: opened read-only")));
        }
        let cap = self.window_pages * PS;
        if size > cap {
            return Err((Status::WindowFull, format!("{shown}: {size} bytes exceed the {cap}-byte window")));
        }
        let h = libfs::Handle { ino: o.ino, pos: 0, writable: true };
        self.fs.allocate(&h, size).map_err(fs_err)?;
        // The new layout is durable before its pages are handed out.
        self.commit()?;
        let need = size.div_ceil(PS);
        if need > o.reserved {
            // Move to a bigger place: revoke here, map there.
            self.unmap_all(slot, o);
            o.mapped.clear();
            o.reserved = 0;
            o.start = u64::MAX;
            let want = need.next_power_of_two();
            let start = self
                .free_range(slot, want)
                .or_else(|| self.free_range(slot, need))
                .ok_or((Status::WindowFull, format!("{shown}: {need} pages do not fit in the window")))?;
            o.start = start;
            o.reserved = if self.free_range_at(slot, start, want) { want } else { need };
        }
        self.map_file(slot, o, &shown)
    }
}

/// The paths a request names.
fn paths(req: &Request) -> Vec<&str> {
    match req {
        Request::Open { path, .. }
        | Request::Stat { path }
        | Request::Readdir { path, .. }
        | Request::Mkdir { path, .. }
        | Request::Unlink { path }
        | Request::Rmdir { path } => alloc::vec![path.as_str()],
        Request::Rename { from, to } => alloc::vec![from.as_str(), to.as_str()],
        Request::Close { .. } | Request::Grow { .. } | Request::Sync => Vec::new(),
    }
}
