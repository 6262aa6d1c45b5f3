//! The two kinds of medium the database runs on, behind one byte-addressed
//! [`Storage`] interface.
//!
//! * [`PmemRegion`]: byte-addressable persistent memory mapped into the
//!   address space. Writes are stores plus cache-line flushes; the barrier
//!   is a fence. Nothing is buffered by anyone but the CPU cache.
//! * [`BlockDevice`]: NVMe / virtio-blk / a file. The database writes back
//!   its own pages in whole blocks and asks for a device flush; there is no
//!   OS page cache deciding for it.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::{Error, IoError};

/// Counters of what was asked of the medium.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Durability barriers: device flushes (`fdatasync`) or fences.
    pub barriers: u64,
    /// Write requests issued (block writes / region stores).
    pub writes: u64,
    /// Bytes handed to the medium.
    pub bytes_written: u64,
    /// Read requests issued.
    pub reads: u64,
    pub bytes_read: u64,
    /// Cache lines flushed (persistent memory only).
    pub lines_flushed: u64,
}

/// A byte-addressed medium with a durability barrier.
///
/// Writes are not durable, and may become durable in any order, until a
/// `barrier` returns.
pub trait Storage {
    /// Size of the medium in bytes.
    fn capacity(&self) -> u64;
    /// Writes must start at and have a length that is a multiple of this.
    fn write_align(&self) -> usize;
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error>;
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Error>;
    /// Makes every earlier write durable.
    fn barrier(&mut self) -> Result<(), Error>;
    fn io_stats(&self) -> IoStats;
    /// Bytes `offset .. offset + len` in place, when the medium is memory
    /// this process maps (persistent memory): looking at them costs no
    /// copy. `None` (the default: block devices, files) means read them.
    /// Not counted in `io_stats` (nothing was asked of the medium).
    fn mapped(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let _ = (offset, len);
        None
    }
}

/// Persistent memory mapped into the address space.
pub trait PmemRegion {
    fn as_slice(&self) -> &[u8];
    /// Stores `data` at `offset` (not yet durable).
    fn write(&mut self, offset: usize, data: &[u8]);
    /// Starts writing back `len` bytes at `offset` (clwb & co.).
    fn persist(&mut self, offset: usize, len: usize);
    /// Waits until every persisted range is durable.
    fn fence(&mut self) -> Result<(), IoError>;
}

/// A block device: whole blocks, an explicit flush.
pub trait BlockDevice {
    fn block_size(&self) -> usize;
    fn blocks(&self) -> u64;
    /// Reads whole blocks starting at `lba` (`buf.len()` is a multiple of
    /// the block size).
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Writes whole blocks; volatile until `flush`.
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), IoError>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), IoError>;
}

impl PmemRegion for pmem::SimPmem {
    fn as_slice(&self) -> &[u8] {
        pmem::SimPmem::as_slice(self)
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        pmem::SimPmem::write(self, offset, data)
    }
    fn persist(&mut self, offset: usize, len: usize) {
        pmem::Persist::flush(self, offset, len)
    }
    fn fence(&mut self) -> Result<(), IoError> {
        pmem::Persist::fence(self);
        Ok(())
    }
}

/// [`Storage`] on persistent memory.
pub struct PmemStorage<R> {
    region: R,
    stats: IoStats,
}

impl<R: PmemRegion> PmemStorage<R> {
    pub fn new(region: R) -> Self {
        PmemStorage { region, stats: IoStats::default() }
    }
    pub fn region(&self) -> &R {
        &self.region
    }
    pub fn region_mut(&mut self) -> &mut R {
        &mut self.region
    }
    pub fn into_inner(self) -> R {
        self.region
    }
}

fn range(offset: u64, len: usize, capacity: u64) -> Result<usize, Error> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= capacity => Ok(offset as usize),
        _ => Err(Error::Io { offset, error: IoError::OutOfRange }),
    }
}

impl<R: PmemRegion> Storage for PmemStorage<R> {
    fn capacity(&self) -> u64 {
        self.region.as_slice().len() as u64
    }
    fn write_align(&self) -> usize {
        8
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let off = range(offset, buf.len(), self.capacity())?;
        buf.copy_from_slice(&self.region.as_slice()[off..off + buf.len()]);
        self.stats.reads += 1;
        self.stats.bytes_read += buf.len() as u64;
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let off = range(offset, data.len(), self.capacity())?;
        self.region.write(off, data);
        self.region.persist(off, data.len());
        self.stats.writes += 1;
        self.stats.bytes_written += data.len() as u64;
        if !data.is_empty() {
            self.stats.lines_flushed += ((off + data.len() - 1) / 64 - off / 64 + 1) as u64;
        }
        Ok(())
    }
    fn barrier(&mut self) -> Result<(), Error> {
        self.stats.barriers += 1;
        self.region.fence().map_err(|error| Error::Io { offset: 0, error })
    }
    fn io_stats(&self) -> IoStats {
        self.stats
    }
    fn mapped(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let off = range(offset, len, self.capacity()).ok()?;
        self.region.as_slice().get(off..off + len)
    }
}

/// [`Storage`] on a block device.
pub struct BlockStorage<D> {
    dev: D,
    stats: IoStats,
}

impl<D: BlockDevice> BlockStorage<D> {
    pub fn new(dev: D) -> Self {
        BlockStorage { dev, stats: IoStats::default() }
    }
    pub fn device(&self) -> &D {
        &self.dev
    }
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }
    pub fn into_inner(self) -> D {
        self.dev
    }
}

impl<D: BlockDevice> Storage for BlockStorage<D> {
    fn capacity(&self) -> u64 {
        self.dev.blocks().saturating_mul(self.dev.block_size() as u64)
    }
    fn write_align(&self) -> usize {
        self.dev.block_size()
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        range(offset, buf.len(), self.capacity())?;
        let bs = self.dev.block_size() as u64;
        let io = |error| Error::Io { offset, error };
        self.stats.reads += 1;
        if offset.is_multiple_of(bs) && (buf.len() as u64).is_multiple_of(bs) {
            self.stats.bytes_read += buf.len() as u64;
            return self.dev.read(offset / bs, buf).map_err(io);
        }
        // Unaligned (log headers): read the covering blocks.
        let first = offset / bs;
        let end = (offset + buf.len() as u64).div_ceil(bs);
        let mut tmp = vec![0u8; ((end - first) * bs) as usize];
        self.stats.bytes_read += tmp.len() as u64;
        self.dev.read(first, &mut tmp).map_err(io)?;
        let skip = (offset - first * bs) as usize;
        buf.copy_from_slice(&tmp[skip..skip + buf.len()]);
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        range(offset, data.len(), self.capacity())?;
        let bs = self.dev.block_size() as u64;
        if !offset.is_multiple_of(bs) || !(data.len() as u64).is_multiple_of(bs) {
            return Err(Error::Io { offset, error: IoError::Unaligned });
        }
        self.stats.writes += 1;
        self.stats.bytes_written += data.len() as u64;
        self.dev.write(offset / bs, data).map_err(|error| Error::Io { offset, error })
    }
    fn barrier(&mut self) -> Result<(), Error> {
        self.stats.barriers += 1;
        self.dev.flush().map_err(|error| Error::Io { offset: 0, error })
    }
    fn io_stats(&self) -> IoStats {
        self.stats
    }
}

/// A RAM block device with no crash behaviour (tests, examples).
pub struct MemBlockDevice {
    block_size: usize,
    data: Vec<u8>,
}

impl MemBlockDevice {
    pub fn new(block_size: usize, blocks: u64) -> Self {
        MemBlockDevice { block_size, data: vec![0; block_size * blocks as usize] }
    }
    pub fn from_image(block_size: usize, data: Vec<u8>) -> Self {
        MemBlockDevice { block_size, data }
    }
    pub fn image(&self) -> &[u8] {
        &self.data
    }
}

impl BlockDevice for MemBlockDevice {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn blocks(&self) -> u64 {
        (self.data.len() / self.block_size) as u64
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let off = lba as usize * self.block_size;
        let src = self.data.get(off..off + buf.len()).ok_or(IoError::OutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), IoError> {
        let off = lba as usize * self.block_size;
        let dst = self.data.get_mut(off..off + data.len()).ok_or(IoError::OutOfRange)?;
        dst.copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}
