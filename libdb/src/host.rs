//! Linux backends (feature `std`): a file as a block device, and an
//! mmapped file as persistent memory.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
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
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        Ok(FileBlockDevice { file, block_size, capacity_blocks: capacity_bytes / block_size as u64, syscalls: 0, fdatasyncs: 0 })
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
        let mut done = 0;
        let base = lba * self.block_size as u64;
        while done < buf.len() {
            self.syscalls += 1;
            match self.file.read_at(&mut buf[done..], base + done as u64) {
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
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), IoError> {
        self.syscalls += 1;
        self.file.write_all_at(data, lba * self.block_size as u64).map_err(errno)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.syscalls += 1;
        self.fdatasyncs += 1;
        self.file.sync_data().map_err(errno)
    }
}

impl PmemRegion for FileMapping {
    fn as_slice(&self) -> &[u8] {
        FileMapping::as_slice(self)
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        if self.is_dax() && data.len() >= 1024 {
            // Bulk (pages, large log batches): non-temporal stores bypass
            // the cache; the following persist + fence make them durable.
            self.write_nt(offset, data);
        } else {
            self.as_mut_slice()[offset..offset + data.len()].copy_from_slice(data);
        }
    }
    fn persist(&mut self, offset: usize, len: usize) {
        Persist::flush(self, offset, len)
    }
    fn fence(&mut self) -> Result<(), IoError> {
        self.try_fence().map_err(errno)
    }
}

/// A database in a regular file, written with pwrite + fdatasync.
pub type FileDb = Db<BlockStorage<FileBlockDevice>>;
/// A database in an mmapped file (DAX: MAP_SYNC + clwb; else msync).
pub type PmemFileDb = Db<PmemStorage<FileMapping>>;

/// `path` as block storage with 512-byte blocks, growing up to 1 TiB.
pub fn open_file_block(path: impl AsRef<Path>) -> io::Result<BlockStorage<FileBlockDevice>> {
    Ok(BlockStorage::new(FileBlockDevice::open(path, 512, 1 << 40)?))
}

/// `path` (made `size` bytes long if shorter) mapped as persistent memory.
pub fn open_file_pmem(path: impl AsRef<Path>, size: usize) -> io::Result<PmemStorage<FileMapping>> {
    Ok(PmemStorage::new(FileMapping::open(path, size)?))
}
