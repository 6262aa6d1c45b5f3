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
#![forbid(unsafe_code)]

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
use libfs::{BlockStorage, Error, Fs, Kind, OpenMode, Stat};

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

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl LibfsFuse {
    pub fn new(fs: ImageFs) -> LibfsFuse {
        let (uid, gid) = current_ids();
        LibfsFuse { inner: Mutex::new(Inner { fs, since_commit: 0 }), uid, gid }
    }

    /// Runs `f` on the file system; commits every `COMMIT_EVERY` changes.
    fn with<T>(&self, change: bool, f: impl FnOnce(&mut ImageFs) -> libfs::Result<T>) -> Result<T, Errno> {
        let mut g = self.inner.lock().map_err(|_| Errno::EIO)?;
        g.fs.set_time(now_ns());
        let r = f(&mut g.fs).map_err(|e| errno(&e));
        if change && r.is_ok() {
            g.since_commit += 1;
            if g.since_commit >= COMMIT_EVERY {
                g.since_commit = 0;
                g.fs.sync().map_err(|e| errno(&e))?;
            }
        }
        r
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
            kind: if s.kind == Kind::Dir { FileType::Directory } else { FileType::RegularFile },
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
        match r.and_then(|ino| self.with(false, |fs| fs.stat_ino(ino))) {
            Ok(s) => reply.entry(&TTL, &self.attr(&s), Generation(0)),
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
        let r = name(n).and_then(|n| self.with(false, |fs| fs.lookup_at(parent.0, n)));
        self.entry(r, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.with(false, |fs| fs.stat_ino(ino.0)) {
            Ok(s) => reply.attr(&TTL, &self.attr(&s)),
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
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.with(true, |fs| {
            if let Some(m) = mode {
                fs.set_mode(ino.0, m as u16)?;
            }
            if let Some(sz) = size {
                let h = libfs::Handle { ino: ino.0, pos: 0, writable: true };
                fs.truncate(&h, sz)?;
            }
            fs.stat_ino(ino.0)
        });
        match r {
            Ok(s) => reply.attr(&TTL, &self.attr(&s)),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(&self, _req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, _rdev: u32, reply: ReplyEntry) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let r = name(n).and_then(|n| self.with(true, |fs| fs.create_at(parent.0, n, (mode & !umask & 0o7777) as u16)));
        self.entry(r, reply);
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let r = name(n).and_then(|n| self.with(true, |fs| fs.mkdir_at(parent.0, n, (mode & !umask & 0o7777) as u16)));
        self.entry(r, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        match name(n).and_then(|n| self.with(true, |fs| fs.unlink_at(parent.0, n))) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        match name(n).and_then(|n| self.with(true, |fs| fs.rmdir_at(parent.0, n))) {
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
        let r = name(n).and_then(|n| {
            let nn = name(newname)?;
            self.with(true, |fs| {
                if flags.bits() & libc::RENAME_EXCHANGE != 0 {
                    return Err(Error::Invalid("RENAME_EXCHANGE is not supported".into()));
                }
                if flags.bits() & libc::RENAME_NOREPLACE != 0 && fs.lookup_at(newparent.0, nn).is_ok() {
                    return Err(Error::Exists(nn.into()));
                }
                fs.rename_at(parent.0, n, newparent.0, nn)
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let r = name(newname).and_then(|n| self.with(true, |fs| fs.link_at(ino.0, newparent.0, n).map(|_| ino.0)));
        self.entry(r, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        let mode = OpenMode { write, create: false, truncate };
        match self.with(truncate, |fs| fs.open_ino(ino.0, mode, &format!("inode {}", ino.0))) {
            Ok(_) => reply.opened(FileHandle(write as u64), FopenFlags::empty()),
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

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let r = self.with(false, |fs| {
            let entries = fs.readdir_ino(ino.0, &format!("inode {}", ino.0))?;
            let parent = fs.state().inodes.get(&ino.0).map_or(ino.0, |i| i.parent);
            Ok((parent, entries))
        });
        let (parent, entries) = match r {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let mut all: Vec<(u64, FileType, String)> =
            vec![(ino.0, FileType::Directory, ".".into()), (parent, FileType::Directory, "..".into())];
        all.extend(
            entries.into_iter().map(|e| {
                (e.ino, if e.kind == Kind::Dir { FileType::Directory } else { FileType::RegularFile }, e.name)
            }),
        );
        for (i, (ino, kind, n)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, n) {
                break;
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
        let r = name(n).and_then(|n| {
            self.with(true, |fs| {
                let ino = match fs.lookup_at(parent.0, n) {
                    Ok(_) if flags & libc::O_EXCL != 0 => return Err(Error::Exists(n.into())),
                    Ok(ino) => ino,
                    Err(_) => fs.create_at(parent.0, n, (mode & !umask & 0o7777) as u16)?,
                };
                fs.stat_ino(ino)
            })
        });
        match r {
            Ok(s) => reply.created(&TTL, &self.attr(&s), Generation(0), FileHandle(1), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }
}

/// Mount options used by the binary and the test.
pub fn config() -> fuser::Config {
    let mut c = fuser::Config::default();
    c.mount_options.push(fuser::MountOption::FSName("libfs".into()));
    c.mount_options.push(fuser::MountOption::DefaultPermissions);
    c
}
