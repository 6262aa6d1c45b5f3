//! Linux backends (feature `std`): a file as a block device, and an
//! mmapped file as persistent memory.
//!
//! Each holds an exclusive advisory lock (`flock`) on its file for as long
//! as it lives: two handles committing independently to one file would
//! lose each other's commits, so a second open of a file in use fails
//! with `WouldBlock` ("in use"). The exokernel needs no such lock: a page
//! of a medium is owned by one address space (see `DESIGN.md`, "Locking").

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use pmem::linux::FileMapping;
use pmem::Persist;

use crate::error::IoError;
use crate::storage::{BlockDevice, BlockStorage, PmemRegion, PmemStorage};
use crate::Db;

/// A regular file used as a block device: `pread`/`pwrite` at block
/// offsets, `fdatasync` as the device flush. Reads past the end of the file
/// return zeros (the file grows as the database writes).
pub struct FileBlockDevice {
    file: File,
    block_size: usize,
    capacity_blocks: u64,
    /// Opened with O_DIRECT: transfers bypass the OS page cache and go
    /// through `bounce`, a 4096-aligned buffer.
    direct: bool,
    bounce: Vec<u8>,
    /// System calls made (pread + pwrite + fdatasync).
    pub syscalls: u64,
    pub fdatasyncs: u64,
}

fn errno(e: io::Error) -> IoError {
    IoError::Device(e.raw_os_error().unwrap_or(-1))
}

impl FileBlockDevice {
    /// Opens or creates `path` with the given block size and a capacity
    /// (the most the file may grow to).
    pub fn open(path: impl AsRef<Path>, block_size: usize, capacity_bytes: u64) -> io::Result<Self> {
        Self::open_with(path, block_size, capacity_bytes, false)
    }

    /// Like `open`, with O_DIRECT: the database's own cache is the only
    /// cache, and a 512-byte log write reaches the device as 512 bytes
    /// instead of a whole file-system page. Fails where the file system
    /// has no direct I/O (tmpfs).
    pub fn open_direct(path: impl AsRef<Path>, block_size: usize, capacity_bytes: u64) -> io::Result<Self> {
        Self::open_with(path, block_size, capacity_bytes, true)
    }

    fn open_with(path: impl AsRef<Path>, block_size: usize, capacity_bytes: u64, direct: bool) -> io::Result<Self> {
        let mut o = OpenOptions::new();
        o.read(true).write(true).create(true).truncate(false);
        if direct {
            o.custom_flags(O_DIRECT);
        }
        let file = o.open(path.as_ref())?;
        lock_exclusive(&file, path.as_ref())?;
        Ok(FileBlockDevice {
            file,
            block_size,
            capacity_blocks: capacity_bytes / block_size as u64,
            direct,
            bounce: Vec::new(),
            syscalls: 0,
            fdatasyncs: 0,
        })
    }

    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// A 4096-aligned window of `len` bytes in the bounce buffer.
    fn aligned(bounce: &mut Vec<u8>, len: usize) -> &mut [u8] {
        if bounce.len() < len + 4096 {
            bounce.resize(len + 4096, 0);
        }
        let off = bounce.as_ptr().align_offset(4096);
        &mut bounce[off..off + len]
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

impl BlockDevice for FileBlockDevice {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn blocks(&self) -> u64 {
        self.capacity_blocks
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let base = lba * self.block_size as u64;
        let mut bounce = core::mem::take(&mut self.bounce);
        let r = if self.direct {
            let tmp = Self::aligned(&mut bounce, buf.len());
            let r = read_full(&self.file, tmp, base, &mut self.syscalls);
            buf.copy_from_slice(tmp);
            r
        } else {
            read_full(&self.file, buf, base, &mut self.syscalls)
        };
        self.bounce = bounce;
        r
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), IoError> {
        self.syscalls += 1;
        let off = lba * self.block_size as u64;
        if self.direct {
            let mut bounce = core::mem::take(&mut self.bounce);
            let tmp = Self::aligned(&mut bounce, data.len());
            tmp.copy_from_slice(data);
            let r = self.file.write_all_at(tmp, off).map_err(errno);
            self.bounce = bounce;
            r
        } else {
            self.file.write_all_at(data, off).map_err(errno)
        }
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.syscalls += 1;
        self.fdatasyncs += 1;
        self.file.sync_data().map_err(errno)
    }
}

/// Takes the exclusive advisory lock on `file` (released when it closes),
/// or fails at once if another open file holds it.
fn lock_exclusive(file: &File, path: &Path) -> io::Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{}: the database file is in use by another handle (it holds an exclusive flock)", path.display()),
        )),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// O_DIRECT on Linux x86_64 (and most architectures).
const O_DIRECT: i32 = 0o40000;

/// Reads `buf.len()` bytes at `off`; past the end of the file reads zeros.
fn read_full(file: &File, buf: &mut [u8], off: u64, syscalls: &mut u64) -> Result<(), IoError> {
    let mut done = 0;
    while done < buf.len() {
        *syscalls += 1;
        match file.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                break;
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(errno(e)),
        }
    }
    Ok(())
}

/// A file mapped as persistent memory, holding the file's exclusive lock.
/// Dereferences to the [`FileMapping`] (`is_dax`, `msyncs`, ...).
pub struct LockedMapping {
    map: FileMapping,
    /// A second descriptor of the file, which holds the `flock`.
    _lock: File,
}

impl Deref for LockedMapping {
    type Target = FileMapping;
    fn deref(&self) -> &FileMapping {
        &self.map
    }
}

impl PmemRegion for LockedMapping {
    fn as_slice(&self) -> &[u8] {
        self.map.as_slice()
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        if self.map.is_dax() && data.len() >= 1024 {
            // Bulk (pages, large log batches): non-temporal stores bypass
            // the cache; the following persist + fence make them durable.
            self.map.write_nt(offset, data);
        } else {
            self.map.as_mut_slice()[offset..offset + data.len()].copy_from_slice(data);
        }
    }
    fn persist(&mut self, offset: usize, len: usize) {
        Persist::flush(&mut self.map, offset, len)
    }
    fn fence(&mut self) -> Result<(), IoError> {
        self.map.try_fence().map_err(errno)
    }
}

/// A database in a regular file, written with pwrite + fdatasync.
pub type FileDb = Db<BlockStorage<FileBlockDevice>>;
/// A database in an mmapped file (DAX: MAP_SYNC + clwb; else msync).
pub type PmemFileDb = Db<PmemStorage<LockedMapping>>;

/// `path` as block storage with 512-byte blocks, growing up to 1 TiB.
pub fn open_file_block(path: impl AsRef<Path>) -> io::Result<BlockStorage<FileBlockDevice>> {
    Ok(BlockStorage::new(FileBlockDevice::open(path, 512, 1 << 40)?))
}

/// `path` as block storage with O_DIRECT (512-byte blocks): no OS page
/// cache at all; fails on file systems without direct I/O.
pub fn open_file_block_direct(path: impl AsRef<Path>) -> io::Result<BlockStorage<FileBlockDevice>> {
    Ok(BlockStorage::new(FileBlockDevice::open_direct(path, 512, 1 << 40)?))
}

/// `path` (made `size` bytes long if shorter) mapped as persistent memory,
/// locked against a second open while the storage lives.
pub fn open_file_pmem(path: impl AsRef<Path>, size: usize) -> io::Result<PmemStorage<LockedMapping>> {
    let path = path.as_ref();
    let lock = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    lock_exclusive(&lock, path)?;
    Ok(PmemStorage::new(LockedMapping { map: FileMapping::open(path, size)?, _lock: lock }))
}

/// The first `len` bytes of a device-DAX character device (`/dev/daxX.Y`:
/// persistent memory with no file system) as persistent memory, mapped
/// `MAP_SYNC` (clwb + sfence, no msync), locked against a second open
/// while the storage lives. `len` must be a multiple of the device's
/// alignment (2 MiB by default).
pub fn open_dax_device_pmem(path: impl AsRef<Path>, len: usize) -> io::Result<PmemStorage<LockedMapping>> {
    let path = path.as_ref();
    let lock = OpenOptions::new().read(true).write(true).open(path)?;
    lock_exclusive(&lock, path)?;
    Ok(PmemStorage::new(LockedMapping { map: FileMapping::open_dax_device(path, len)?, _lock: lock }))
}
