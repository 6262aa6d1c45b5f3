//! A FUSE adapter: a libfs image file mounted on Linux, so files can be
//! copied in and out and ordinary tools run on it.
//!
//! Every request takes the one lock around the file system (libfs is a
//! single-writer library). Data reaches the image file as it is written;
//! metadata is committed on `fsync`, `fsyncdir`, unmount (`destroy`), and every `COMMIT_EVERY` operations, so a crash of
//! the adapter loses at most the last few operations and never leaves the
//! image inconsistent. Names must be UTF-8 (libfs's API takes `&str`).
//! Not supported: symbolic links, special files, extended attributes,
//! owners (files show the mounting user), `RENAME_EXCHANGE`.
//!
//! Where POSIX asks more than libfs keeps, the adapter adds it: a file
//! unlinked while open lives on until closed (`open_files`), a directory
//! listing is a snapshot per open directory, so entries removed during a
//! `readdir` loop do not make it skip others, and access is checked by the
//! kernel (`default_permissions`: root may open a read-only file for
//! writing). `tests/posix` is the conformance pass that checks these.
#![forbid(unsafe_code)]

mod open_files;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use libdb::host::FileBlockDevice;
use libfs::{BlockStorage, Error, Fs, Kind, Stat, MAX_FILE_SIZE, ROOT_INO};
use open_files::OpenFiles;

pub type ImageFs = Fs<BlockStorage<FileBlockDevice>>;

const TTL: Duration = Duration::from_secs(1);
const COMMIT_EVERY: u32 = 64;
const SECTOR: usize = 512;

pub fn open_image(path: &Path) -> Result<ImageFs, String> {
    let len = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
    let dev = FileBlockDevice::open(path, SECTOR, len).map_err(|e| format!("{}: {e}", path.display()))?;
    Fs::mount(BlockStorage::new(dev)).map_err(|e| format!("{}: {e}", path.display()))
}

pub struct LibfsFuse {
    inner: Mutex<Inner>,
    uid: u32,
    gid: u32,
}

struct Inner {
    fs: ImageFs,
    since_commit: u32,
    open: OpenFiles,
    /// Open directories by handle.
    dirs: HashMap<u64, OpenDir>,
    next_dir_handle: u64,
    /// Directories removed while open, as `fstat` shows them (no links)
    /// until their last handle closes.
    removed_dirs: HashMap<u64, Stat>,
}

type Listing = Vec<(u64, FileType, String)>;

struct OpenDir {
    ino: u64,
    /// Taken at the first `readdir` (and again at each rewind), so the
    /// offsets handed out stay meaningful while entries are added or
    /// removed.
    listing: Option<Listing>,
}

impl Inner {
    /// Before a directory entry goes (rmdir, or a rename over it): if it
    /// is a directory someone has open, remember what `fstat` must show.
    fn note_dir_removal(&mut self, dir: u64, name: &str) {
        let Ok(ino) = self.fs.lookup_at(dir, name) else { return };
        if self.dirs.values().any(|d| d.ino == ino) {
            if let Ok(mut st) = self.fs.stat_ino(ino) {
                st.nlink = 0;
                self.removed_dirs.insert(ino, st);
            }
        }
    }
}

fn errno(e: &Error) -> Errno {
    match e {
        Error::NotFound(_) => Errno::ENOENT,
        Error::Exists(_) => Errno::EEXIST,
        Error::NotEmpty(_) => Errno::ENOTEMPTY,
        Error::IsDir(_) => Errno::EISDIR,
        Error::NotDir(_) => Errno::ENOTDIR,
        Error::NameTooLong(_) => Errno::ENAMETOOLONG,
        Error::Invalid(_) => Errno::EINVAL,
        Error::Permission(_) => Errno::EACCES,
        Error::NoSpace(_) => Errno::ENOSPC,
        Error::Corrupt { .. } | Error::Io { .. } | Error::Poisoned => Errno::EIO,
    }
}

fn name(n: &OsStr) -> Result<&str, Errno> {
    n.to_str().ok_or(Errno::EINVAL)
}

/// A name for a new entry in `parent`: the hidden directory's is reserved.
fn new_name(parent: INodeNo, n: &OsStr) -> Result<&str, Errno> {
    let n = name(n)?;
    if open_files::is_hidden(parent.0, n) {
        return Err(Errno::EPERM);
    }
    Ok(n)
}

fn file_type(kind: Kind) -> FileType {
    if kind == Kind::Dir {
        FileType::Directory
    } else {
        FileType::RegularFile
    }
}

/// Nanoseconds since the epoch; times before it are clamped to it.
fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl LibfsFuse {
    pub fn new(mut fs: ImageFs) -> LibfsFuse {
        let (uid, gid) = current_ids();
        match open_files::clean(&mut fs) {
            Ok(0) => {}
            Ok(n) => eprintln!("libfs-fuse: removed {n} files left unlinked but open by an earlier mount"),
            Err(e) => eprintln!("libfs-fuse: cannot empty /{}: {e}", open_files::HIDDEN),
        }
        let inner = Inner {
            fs,
            since_commit: 0,
            open: OpenFiles::default(),
            dirs: HashMap::new(),
            next_dir_handle: 1,
            removed_dirs: HashMap::new(),
        };
        LibfsFuse { inner: Mutex::new(inner), uid, gid }
    }

    /// Runs `f` on the file system; commits every `COMMIT_EVERY` changes.
    fn with<T>(&self, change: bool, f: impl FnOnce(&mut ImageFs) -> libfs::Result<T>) -> Result<T, Errno> {
        self.with_inner(change, |inner| f(&mut inner.fs))
    }

    /// `with`, for the operations that also need the adapter's own tables.
    fn with_inner<T>(&self, change: bool, f: impl FnOnce(&mut Inner) -> libfs::Result<T>) -> Result<T, Errno> {
        let mut g = self.inner.lock().map_err(|_| Errno::EIO)?;
        g.fs.set_time(now_ns());
        let r = f(&mut g).map_err(|e| errno(&e));
        if change && r.is_ok() {
            g.since_commit += 1;
            if g.since_commit >= COMMIT_EVERY {
                g.since_commit = 0;
                g.fs.sync().map_err(|e| errno(&e))?;
            }
        }
        r
    }

    /// The attributes of `ino` as the kernel is shown them: an unlinked
    /// open file has no links, and the root does not count the hidden
    /// directory.
    fn stat(&self, inner: &Inner, ino: u64) -> libfs::Result<FileAttr> {
        let mut s = match inner.fs.stat_ino(ino) {
            Err(Error::NotFound(_)) if inner.removed_dirs.contains_key(&ino) => inner.removed_dirs[&ino].clone(),
            r => r?,
        };
        if inner.open.is_orphan(ino) {
            s.nlink = 0;
        } else if ino == ROOT_INO && open_files::hidden_exists(&inner.fs) {
            s.nlink -= 1;
        }
        Ok(self.attr(&s))
    }

    fn attr(&self, s: &Stat) -> FileAttr {
        let t = UNIX_EPOCH + Duration::from_nanos(s.mtime);
        FileAttr {
            ino: INodeNo(s.ino),
            size: s.size,
            blocks: s.pages * 8,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: file_type(s.kind),
            perm: s.mode,
            nlink: s.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn entry(&self, r: Result<u64, Errno>, reply: ReplyEntry) {
        match r.and_then(|ino| self.with_inner(false, |inner| self.stat(inner, ino))) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }
}

/// The owner shown for every file: the user running the adapter, read
/// from /proc so no unsafe libc call is needed.
fn current_ids() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Uid:"), field("Gid:"))
}

impl Filesystem for LibfsFuse {
    fn init(&mut self, _req: &Request, _config: &mut KernelConfig) -> std::io::Result<()> {
        Ok(())
    }

    fn destroy(&mut self) {
        if let Ok(mut g) = self.inner.lock() {
            if let Err(e) = g.fs.sync() {
                eprintln!("libfs-fuse: final commit failed: {e}");
            }
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        let r = name(n).and_then(|n| {
            if open_files::is_hidden(parent.0, n) {
                return Err(Errno::ENOENT);
            }
            self.with(false, |fs| fs.lookup_at(parent.0, n))
        });
        self.entry(r, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.with_inner(false, |inner| self.stat(inner, ino.0)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if size.is_some_and(|sz| sz > MAX_FILE_SIZE) {
            return reply.error(Errno::EFBIG);
        }
        let r = self.with_inner(true, |inner| {
            let fs = &mut inner.fs;
            if let Some(m) = mode {
                fs.set_mode(ino.0, m as u16)?;
            }
            if let Some(sz) = size {
                let h = libfs::Handle { ino: ino.0, pos: 0, writable: true };
                fs.truncate(&h, sz)?;
            }
            // libfs keeps one time stamp (mtime); atime is shown as it.
            match mtime {
                Some(TimeOrNow::SpecificTime(t)) => fs.set_mtime(ino.0, ns(t))?,
                Some(TimeOrNow::Now) => fs.set_mtime(ino.0, now_ns())?,
                None => {}
            }
            self.stat(inner, ino.0)
        });
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(&self, _req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, _rdev: u32, reply: ReplyEntry) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let r = new_name(parent, n)
            .and_then(|n| self.with(true, |fs| fs.create_at(parent.0, n, (mode & !umask & 0o7777) as u16)));
        self.entry(r, reply);
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let r = new_name(parent, n)
            .and_then(|n| self.with(true, |fs| fs.mkdir_at(parent.0, n, (mode & !umask & 0o7777) as u16)));
        self.entry(r, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let r = new_name(parent, n).and_then(|n| {
            self.with_inner(true, |inner| {
                if inner.open.keep_if_open(&mut inner.fs, parent.0, n)? {
                    return Ok(());
                }
                inner.fs.unlink_at(parent.0, n)
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let r = new_name(parent, n).and_then(|n| {
            self.with_inner(true, |inner| {
                inner.note_dir_removal(parent.0, n);
                let r = inner.fs.rmdir_at(parent.0, n);
                if r.is_err() {
                    inner.removed_dirs.retain(|ino, _| inner.fs.stat_ino(*ino).is_err());
                }
                r
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        n: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = new_name(parent, n).and_then(|n| {
            let nn = new_name(newparent, newname)?;
            self.with_inner(true, |inner| {
                let fs = &mut inner.fs;
                if flags.bits() & libc::RENAME_EXCHANGE != 0 {
                    return Err(Error::Invalid("RENAME_EXCHANGE is not supported".into()));
                }
                let target = fs.lookup_at(newparent.0, nn).ok();
                if flags.bits() & libc::RENAME_NOREPLACE != 0 && target.is_some() {
                    return Err(Error::Exists(nn.into()));
                }
                // A file replacing another file that is open: the open
                // one lives on, nameless, until closed.
                let source = fs.lookup_at(parent.0, n)?;
                let is_file = |fs: &ImageFs, ino| fs.stat_ino(ino).is_ok_and(|s| s.kind == Kind::File);
                if target.is_some_and(|t| t != source && is_file(fs, t) && is_file(fs, source)) {
                    inner.open.keep_if_open(fs, newparent.0, nn)?;
                }
                if target.is_some_and(|t| t != source) {
                    inner.note_dir_removal(newparent.0, nn);
                }
                let r = inner.fs.rename_at(parent.0, n, newparent.0, nn);
                if r.is_err() {
                    inner.removed_dirs.retain(|ino, _| inner.fs.stat_ino(*ino).is_err());
                }
                r
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let r = new_name(newparent, newname)
            .and_then(|n| self.with(true, |fs| fs.link_at(ino.0, newparent.0, n).map(|_| ino.0)));
        self.entry(r, reply);
    }

    /// Access was checked by the kernel (`default_permissions`, against
    /// the mode shown by `getattr`), so libfs's own open-mode check, which
    /// knows no users, is not applied: root may write a 0444 file.
    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        let r = self.with_inner(truncate, |inner| {
            let shown = format!("inode {}", ino.0);
            if inner.fs.stat_ino(ino.0)?.kind == Kind::Dir && write {
                return Err(Error::IsDir(shown));
            }
            if truncate {
                inner.fs.truncate(&libfs::Handle { ino: ino.0, pos: 0, writable: true }, 0)?;
            }
            inner.open.opened(ino.0);
            Ok(())
        });
        match r {
            Ok(()) => reply.opened(FileHandle(write as u64), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.with_inner(true, |inner| inner.open.closed(&mut inner.fs, ino.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = self.with(false, |fs| {
            let h = libfs::Handle { ino: ino.0, pos: 0, writable: false };
            let mut buf = vec![0u8; size as usize];
            let n = fs.pread(&h, offset, &mut buf)?;
            buf.truncate(n);
            Ok(buf)
        });
        match r {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if offset.checked_add(data.len() as u64).is_none_or(|end| end > MAX_FILE_SIZE) {
            return reply.error(Errno::EFBIG);
        }
        // The handle records the open mode (1: writable).
        let h = libfs::Handle { ino: ino.0, pos: 0, writable: fh.0 == 1 };
        match self.with(true, |fs| fs.pwrite(&h, offset, data)) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.with(false, |fs| fs.sync()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.with(false, |fs| fs.sync()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with_inner(false, |inner| {
            inner.next_dir_handle += 1;
            inner.dirs.insert(inner.next_dir_handle, OpenDir { ino: ino.0, listing: None });
            Ok(inner.next_dir_handle)
        }) {
            Ok(h) => reply.opened(FileHandle(h), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    /// Serves the open directory's listing, taken at offset 0 (the first
    /// call and each rewind); an offset is an index into it.
    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let r = self.with_inner(false, |inner| {
            let fresh = if offset == 0 || inner.dirs.get(&fh.0).is_none_or(|d| d.listing.is_none()) {
                Some(listing(&inner.fs, ino.0)?)
            } else {
                None
            };
            let dir = inner.dirs.entry(fh.0).or_insert(OpenDir { ino: ino.0, listing: None });
            if fresh.is_some() {
                dir.listing = fresh;
            }
            let listing = dir.listing.as_deref().unwrap_or_default();
            for (i, (ino, kind, n)) in listing.iter().enumerate().skip(offset as usize) {
                if reply.add(INodeNo(*ino), i as u64 + 1, *kind, n) {
                    break; // the kernel's buffer is full
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        if let Ok(mut g) = self.inner.lock() {
            if let Some(d) = g.dirs.remove(&fh.0) {
                if !g.dirs.values().any(|o| o.ino == d.ino) {
                    g.removed_dirs.remove(&d.ino);
                }
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.with(false, |fs| Ok((fs.superblock(), fs.free_pages(), fs.state().inodes.len() as u64))) {
            Ok((sb, free, files)) => {
                reply.statfs(sb.total_pages - sb.data_start_page(), free, free, files, u64::MAX / 2, 4096, 255, 4096)
            }
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = new_name(parent, n).and_then(|n| {
            self.with_inner(true, |inner| {
                let fs = &mut inner.fs;
                let ino = match fs.lookup_at(parent.0, n) {
                    Ok(_) if flags & libc::O_EXCL != 0 => return Err(Error::Exists(n.into())),
                    Ok(ino) => {
                        if flags & libc::O_TRUNC != 0 {
                            fs.truncate(&libfs::Handle { ino, pos: 0, writable: true }, 0)?;
                        }
                        ino
                    }
                    Err(_) => fs.create_at(parent.0, n, (mode & !umask & 0o7777) as u16)?,
                };
                inner.open.opened(ino);
                self.stat(inner, ino)
            })
        });
        match r {
            // Marked writable: the kernel itself refuses writes through a
            // descriptor opened read-only.
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(1), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }
}

/// An open directory's listing: ".", "..", then the entries (the hidden
/// directory left out of the root's). A directory removed while open
/// lists nothing, as on Linux.
fn listing(fs: &ImageFs, ino: u64) -> libfs::Result<Listing> {
    let entries = match fs.readdir_ino(ino, &format!("inode {ino}")) {
        Err(Error::NotFound(_)) => return Ok(vec![]),
        r => r?,
    };
    let parent = fs.state().inodes.get(&ino).map_or(ino, |i| i.parent);
    let mut all = vec![(ino, FileType::Directory, ".".into()), (parent, FileType::Directory, "..".into())];
    all.extend(
        entries
            .into_iter()
            .filter(|e| !open_files::is_hidden(ino, &e.name))
            .map(|e| (e.ino, file_type(e.kind), e.name)),
    );
    Ok(all)
}

/// Mount options used by the binary and the test.
pub fn config() -> fuser::Config {
    let mut c = fuser::Config::default();
    c.mount_options.push(fuser::MountOption::FSName("libfs".into()));
    c.mount_options.push(fuser::MountOption::DefaultPermissions);
    c
}
