//! libdb on a libfs file: a [`Storage`] over one file's pages.
//!
//! Opening does all the file-system work: it creates the file and
//! allocates every page of it (zero-filled), commits that layout once
//! (`fsync`) so the extents are durable before the database writes a
//! byte, and takes the file's extents as a sorted list of [`Run`]s (file
//! byte range → medium byte range, adjacent extents merged). After that
//! the database's reads, writes and barriers are translated and forwarded
//! to the medium: a binary search over the runs, a request split where it
//! crosses from one run to the next, nothing else. There is no libfs call
//! on the commit path — no metadata changes (the file never grows), so
//! libdb's own commit protocol (write, barrier) is the whole of it.
//!
//! **Ownership.** The storage takes the [`Fs`] by value and keeps it
//! inside: the file's pages must not move or be freed while the database
//! writes to them, and holding the only `Fs` is how the type system says
//! no one else can truncate, unlink or reallocate them. The medium is the
//! `Fs`'s; [`FileStorage::fs`] lends the file system out read-only (stat,
//! the consistency check), [`FileStorage::medium`] the medium (its
//! counters), and [`FileStorage::into_fs`] gives it back when the
//! database is closed. Opening fails with [`OpenError`], which also hands
//! the `Fs` back.
//!
//! Alignment: file pages are 4 KiB-aligned on the medium, so a request
//! that libdb aligned to the medium's write unit stays aligned after
//! translation, and a split (always at a page boundary) too.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::fmt;

use libdb::{IoError, IoStats, Storage};

use crate::error::{Error, Result};
use crate::format::PAGE_SIZE;
use crate::fs::{Fs, OpenMode};

const PS: u64 = PAGE_SIZE as u64;

/// File bytes `[file_offset, file_offset + len)` are medium bytes
/// `[medium_offset, medium_offset + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub file_offset: u64,
    pub medium_offset: u64,
    pub len: u64,
}

/// How to open the database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbFile {
    /// Make a new file of this many bytes (a multiple of 4096); it must
    /// not exist.
    Create(u64),
    /// Use an existing file at its size.
    Open,
    /// `Open` if the file exists, else `Create` with this size.
    OpenOrCreate(u64),
}

/// Opening failed: why, and the file system back (boxed: an `Fs` is
/// large, and errors travel by value).
pub struct OpenError<S: Storage> {
    pub fs: Box<Fs<S>>,
    pub error: Error,
}

impl<S: Storage> fmt::Debug for OpenError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpenError({:?})", self.error)
    }
}

impl<S: Storage> fmt::Display for OpenError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "opening the database file: {}", self.error)
    }
}

/// A libdb [`Storage`] whose bytes are one libfs file's.
pub struct FileStorage<S: Storage> {
    fs: Fs<S>,
    ino: u64,
    len: u64,
    runs: Vec<Run>,
    /// The medium's counters when the file was opened: `io_stats` reports
    /// what the database asked of the medium since.
    base: IoStats,
}

impl<S: Storage> FileStorage<S> {
    /// Opens (or creates, see [`DbFile`]) the file at `path` as a
    /// database medium.
    pub fn open(mut fs: Fs<S>, path: &str, how: DbFile) -> core::result::Result<Self, OpenError<S>> {
        match layout(&mut fs, path, how) {
            Ok((ino, len, runs)) => {
                let base = fs.storage().io_stats();
                Ok(FileStorage { fs, ino, len, runs, base })
            }
            Err(error) => Err(OpenError { fs: Box::new(fs), error }),
        }
    }

    /// The file system, read-only (the file's pages must not change under
    /// the database).
    pub fn fs(&self) -> &Fs<S> {
        &self.fs
    }

    /// The medium below the file system.
    pub fn medium(&self) -> &S {
        self.fs.storage()
    }

    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// Where the file's bytes are, in file order.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Closes the file (the database must be closed first: this is how
    /// `Db::into_storage` hands it back) and returns the file system.
    pub fn into_fs(self) -> Fs<S> {
        self.fs
    }

    /// The medium range holding file byte `offset` and at most `len`
    /// bytes after it: (medium offset, bytes in this run).
    fn locate(&self, offset: u64, len: usize) -> (u64, usize) {
        let i = self.runs.partition_point(|r| r.file_offset + r.len <= offset);
        let r = self.runs[i];
        let n = (r.file_offset + r.len - offset).min(len as u64) as usize;
        (r.medium_offset + (offset - r.file_offset), n)
    }

    fn in_range(&self, offset: u64, len: usize) -> core::result::Result<(), libdb::Error> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(libdb::Error::Io { offset, error: IoError::OutOfRange }),
        }
    }
}

/// An error of the medium, named at the file offset libdb asked for.
fn at_file_offset(offset: u64) -> impl Fn(libdb::Error) -> libdb::Error {
    move |e| match e {
        libdb::Error::Io { error, .. } => libdb::Error::Io { offset, error },
        other => other,
    }
}

impl<S: Storage> Storage for FileStorage<S> {
    fn capacity(&self) -> u64 {
        self.len
    }
    fn write_align(&self) -> usize {
        self.fs.storage().write_align()
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> core::result::Result<(), libdb::Error> {
        self.in_range(offset, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let (m, n) = self.locate(at, buf.len() - done);
            self.fs.storage_mut().read(m, &mut buf[done..done + n]).map_err(at_file_offset(at))?;
            done += n;
        }
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> core::result::Result<(), libdb::Error> {
        self.in_range(offset, data.len())?;
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let (m, n) = self.locate(at, data.len() - done);
            self.fs.storage_mut().write(m, &data[done..done + n]).map_err(at_file_offset(at))?;
            done += n;
        }
        Ok(())
    }
    fn barrier(&mut self) -> core::result::Result<(), libdb::Error> {
        self.fs.storage_mut().barrier()
    }
    /// What the medium was asked since the file was opened (so split
    /// requests count as the medium saw them).
    fn io_stats(&self) -> IoStats {
        let (now, b) = (self.fs.storage().io_stats(), self.base);
        IoStats {
            barriers: now.barriers - b.barriers,
            writes: now.writes - b.writes,
            bytes_written: now.bytes_written - b.bytes_written,
            reads: now.reads - b.reads,
            bytes_read: now.bytes_read - b.bytes_read,
            lines_flushed: now.lines_flushed - b.lines_flushed,
        }
    }
}

fn check_size(path: &str, size: u64) -> Result<()> {
    if size == 0 || !size.is_multiple_of(PS) {
        return Err(Error::Invalid(format!("{path}: database file size {size} is not a positive multiple of 4096")));
    }
    Ok(())
}

/// Creates or opens the file, commits its layout if anything is not yet
/// durable, and returns (inode, size, runs covering every byte).
fn layout<S: Storage>(fs: &mut Fs<S>, path: &str, how: DbFile) -> Result<(u64, u64, Vec<Run>)> {
    let exists = match fs.lookup(path) {
        Ok(_) => true,
        Err(Error::NotFound(_)) => false,
        Err(e) => return Err(e),
    };
    let h = match (how, exists) {
        (DbFile::Create(_), true) => return Err(Error::Exists(path.into())),
        (DbFile::Open, false) => return Err(Error::NotFound(path.into())),
        (DbFile::Create(size) | DbFile::OpenOrCreate(size), false) => {
            check_size(path, size)?;
            let h = fs.open(path, OpenMode::CREATE)?;
            if let Err(e) = fs.allocate(&h, size) {
                // Leave no empty database file behind (best effort: the
                // allocation changed nothing when there was no room).
                let _ = fs.unlink(path);
                return Err(e);
            }
            h
        }
        (DbFile::Open | DbFile::OpenOrCreate(_), true) => fs.open(path, OpenMode::WRITE)?,
    };
    // The extents the database will write through must be durable before
    // it writes: one commit here, none after.
    if fs.has_uncommitted() {
        fs.fsync(&h)?;
    }
    let size = fs.stat_ino(h.ino)?.size;
    check_size(path, size)?;
    let mut runs: Vec<Run> = Vec::new();
    for e in fs.extents(h.ino)? {
        let file_offset = e.file_page * PS;
        if file_offset >= size {
            break;
        }
        let len = (e.pages * PS).min(size - file_offset);
        let covered = runs.last().map_or(0, |r| r.file_offset + r.len);
        if file_offset != covered {
            return Err(Error::Invalid(format!(
                "{path}: page {} of the database file is a hole (no medium page to write to)",
                covered / PS
            )));
        }
        match runs.last_mut() {
            Some(r) if r.medium_offset + r.len == e.medium_offset => r.len += len,
            _ => runs.push(Run { file_offset, medium_offset: e.medium_offset, len }),
        }
    }
    let covered = runs.last().map_or(0, |r| r.file_offset + r.len);
    if covered != size {
        return Err(Error::Invalid(format!(
            "{path}: page {} of the database file is a hole (no medium page to write to)",
            covered / PS
        )));
    }
    Ok((h.ino, size, runs))
}
