//! A virtio-blk disk: `virtio_drivers::device::blk::VirtIOBlk` on this
//! crate's transport and Hal, with what a driver process needs around it:
//!
//! - requests are checked first (length a non-zero multiple of 512, range
//!   inside the capacity), so bad input is a named error, not the panic
//!   `VirtIOBlk` asserts;
//! - reads and writes wait a bounded number of polls, not forever
//!   (`VirtIOBlk::read_blocks` spins until the device answers). A device
//!   that does not answer is reset, which stops its DMA (virtio 1.2,
//!   2.4), before the caller's buffer is given back; the disk is then
//!   dead and says so;
//! - transport errors and device-status problems are checked after
//!   bring-up and after every failed request.
//!
//! Flush is `VirtIOBlk::flush`, which still waits without bound:
//! virtio-drivers 0.13 has no non-blocking flush.

use crate::hal::ExoHal;
use crate::regs::Registers;
use crate::transport::{ModernTransport, TransportError, TransportStatus};
use core::fmt;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::Error;

/// Default bound on the polls of one request's completion (TCG runs a
/// 256 KiB transfer in well under a million).
pub const DEFAULT_POLLS: u64 = 50_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Flush,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// Found by the transport (bring-up, features, notify address).
    Transport(TransportError),
    /// `virtio-drivers` or the device refused: `IoError` is the device's
    /// VIRTIO_BLK_S_IOERR, `DmaError` a full DMA pool, ...
    Device { op: Op, sector: u64, error: Error },
    /// A length that is zero or not a multiple of 512 bytes.
    BadLength { len: usize },
    /// Sectors past the end of the disk.
    OutOfRange { sector: u64, sectors: u64, capacity: u64 },
    /// No completion within the poll bound; the device was reset.
    Timeout { op: Op, sector: u64, polls: u64 },
    /// An earlier timeout reset the device.
    Dead,
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::Transport(e) => write!(f, "{e}"),
            DiskError::Device { op, sector, error } => write!(f, "{op:?} at sector {sector}: {error}"),
            DiskError::BadLength { len } => {
                write!(f, "transfer of {len} bytes is not a non-zero multiple of {SECTOR_SIZE}")
            }
            DiskError::OutOfRange { sector, sectors, capacity } => {
                write!(f, "sectors {sector}..{} are past the end of the {capacity}-sector disk", sector + sectors)
            }
            DiskError::Timeout { op, sector, polls } => {
                write!(f, "{op:?} at sector {sector}: no completion after {polls} polls; device reset")
            }
            DiskError::Dead => write!(f, "disk is dead (reset after an earlier timeout)"),
        }
    }
}

impl From<TransportError> for DiskError {
    fn from(e: TransportError) -> DiskError {
        DiskError::Transport(e)
    }
}

pub struct Disk<R: Registers + Clone> {
    blk: VirtIOBlk<ExoHal, ModernTransport<R>>,
    status: TransportStatus<R>,
    polls: u64,
    dead: bool,
    /// Requests completed (reads, writes, flushes).
    pub requests: u64,
}

impl<R: Registers + Clone> Disk<R> {
    /// Bring the device up (`VirtIOBlk::new`) and check it is live.
    pub fn new(transport: ModernTransport<R>) -> Result<Disk<R>, DiskError> {
        let status = transport.status();
        let blk = VirtIOBlk::new(transport).map_err(|error| DiskError::Device { op: Op::Read, sector: 0, error })?;
        status.check()?;
        Ok(Disk { blk, status, polls: DEFAULT_POLLS, dead: false, requests: 0 })
    }

    /// Bound the polls per request.
    pub fn set_poll_limit(&mut self, polls: u64) {
        self.polls = polls.max(1);
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.blk.capacity()
    }

    pub fn transport(&self) -> &TransportStatus<R> {
        &self.status
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), DiskError> {
        if self.dead {
            return Err(DiskError::Dead);
        }
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(DiskError::BadLength { len });
        }
        let sectors = (len / SECTOR_SIZE) as u64;
        let capacity = self.capacity();
        if sector.checked_add(sectors).is_none_or(|end| end > capacity) {
            return Err(DiskError::OutOfRange { sector, sectors, capacity });
        }
        Ok(())
    }

    /// A request that failed: a transport problem names it better.
    fn failed(&self, op: Op, sector: u64, error: Error) -> DiskError {
        match self.status.check() {
            Err(e) => DiskError::Transport(e),
            Ok(()) => DiskError::Device { op, sector, error },
        }
    }

    /// Poll for `token`'s completion; on timeout reset the device so it
    /// no longer touches the request's buffers.
    fn wait(&mut self, op: Op, sector: u64, token: u16) -> Result<(), DiskError> {
        for _ in 0..self.polls {
            if self.blk.peek_used() == Some(token) {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        if self.status.reset_device() {
            // The device can no longer DMA: the request's bounce pages
            // (header, status, data outside the pool) can be reused.
            crate::hal::abandon_bounces();
        }
        self.dead = true;
        Err(DiskError::Timeout { op, sector, polls: self.polls })
    }

    /// Read `buf.len()` bytes from `sector`. Zero copy if `buf` is in a
    /// [`DmaBuffer`](crate::DmaBuffer), bounced otherwise.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.check(sector, buf.len())?;
        let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
        // SAFETY: `req`, `buf` and `resp` are not touched again until the
        // request completes (`complete_read_blocks`) or the device is
        // reset by `wait` (after which it does no DMA); the same three are
        // passed to `complete_read_blocks`.
        let token = unsafe { self.blk.read_blocks_nb(sector as usize, &mut req, buf, &mut resp) }
            .map_err(|e| self.failed(Op::Read, sector, e))?;
        self.wait(Op::Read, sector, token)?;
        // SAFETY: the same buffers as `read_blocks_nb`, and `token` is used.
        unsafe { self.blk.complete_read_blocks(token, &req, buf, &mut resp) }
            .map_err(|e| self.failed(Op::Read, sector, e))?;
        self.requests += 1;
        Ok(())
    }

    /// Write `buf` at `sector` (zero copy from a `DmaBuffer`).
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.check(sector, buf.len())?;
        let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
        // SAFETY: as in `read`.
        let token = unsafe { self.blk.write_blocks_nb(sector as usize, &mut req, buf, &mut resp) }
            .map_err(|e| self.failed(Op::Write, sector, e))?;
        self.wait(Op::Write, sector, token)?;
        // SAFETY: as in `read`.
        unsafe { self.blk.complete_write_blocks(token, &req, buf, &mut resp) }
            .map_err(|e| self.failed(Op::Write, sector, e))?;
        self.requests += 1;
        Ok(())
    }

    /// Make written data durable (a no-op if the device has no
    /// VIRTIO_BLK_F_FLUSH). Waits without bound (see the module docs).
    pub fn flush(&mut self) -> Result<(), DiskError> {
        if self.dead {
            return Err(DiskError::Dead);
        }
        self.blk.flush().map_err(|e| self.failed(Op::Flush, 0, e))?;
        self.requests += 1;
        Ok(())
    }
}
