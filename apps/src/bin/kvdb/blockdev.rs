//! `libdb::BlockDevice` over the block service: requests go to the driver
//! process (`nvmed serve`) through the `blockq` rings in a region shared
//! with it, data through the region's data area, which the driver mapped
//! into the NVMe controller (the device DMAs to and from it directly). No
//! system call is on this path except the `yield`s that give the driver
//! the CPU while an answer is due.
//!
//! A transfer is cut into chunks of at most one data-area slot; up to one
//! chunk per slot is in flight, answers may come in any order.
//!
//! When init kills the driver, the next poll or submit fails with
//! `WaitError::DriverGone` (the region's driver epoch moved, see
//! `blockq`): the operation returns `Device(EIO)` to libdb, the device
//! remembers why ([`BlockqDevice::driver_gone`]), and the caller may
//! [`BlockqDevice::reconnect`] once init has started the next driver.

use blockq::{Client, Geometry, Op, Request, Status};
use exo_rt::blockq::{SharedWindow, WaitError};
use exo_rt::mmio::Window;
use libdb::{BlockDevice, IoError};

/// Bytes per data-area slot (one request's data at most).
const SLOT_BYTES: u64 = 64 * 1024;
const MAX_SLOTS: usize = 16;
/// Yields to wait for one answer before the driver is declared gone.
const MAX_WAIT_YIELDS: u64 = 1_000_000;

/// What this process asked of the block service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockqCounters {
    pub write_requests: u64,
    pub read_requests: u64,
    pub flushes: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Bytes copied between this process's memory and the shared data area.
    pub bytes_copied: u64,
    /// Yields while waiting for answers (each is one system call).
    pub yields: u64,
}

impl BlockqCounters {
    pub fn requests(&self) -> u64 {
        self.write_requests + self.read_requests + self.flushes
    }
}

pub struct BlockqDevice {
    client: Client<SharedWindow>,
    win: Window,
    geo: Geometry,
    slots: usize,
    slot_bytes: u64,
    seq: u32,
    /// Set when the driver was found gone: the epoch it moved to, and the
    /// requests this client had in flight then (lost).
    gone: Option<(u32, u32)>,
    pub counters: BlockqCounters,
}

/// Device codes for failures that are not the device's own status.
pub const EIO: i32 = -5;
pub const EINVAL: i32 = -22;

impl BlockqDevice {
    /// Attach to the service in `win` (waits until the driver formatted it).
    pub fn attach(win: Window) -> Result<BlockqDevice, WaitError> {
        let mut yields = 0;
        let client = exo_rt::blockq::attach(win, 100_000, &mut yields)?;
        let geo = client.geometry();
        let bs = geo.block_size as u64;
        let slot_bytes = SLOT_BYTES.min(geo.data_len) / bs * bs;
        let slots = ((geo.data_len / slot_bytes.max(1)) as usize).min(MAX_SLOTS).min(geo.entries as usize);
        if slot_bytes == 0 || slots == 0 {
            return Err(WaitError::Protocol(blockq::ProtocolError::RegionTooSmall));
        }
        Ok(BlockqDevice {
            client,
            win,
            geo,
            slots,
            slot_bytes,
            seq: 0,
            gone: None,
            counters: BlockqCounters { yields, ..Default::default() },
        })
    }

    // (`fsapp` and `fsbench` share this file and never reconnect.)
    /// (driver epoch, requests lost in flight) when an operation failed
    /// because the driver was gone, since the last (re)attach.
    #[allow(dead_code)]
    pub fn driver_gone(&self) -> Option<(u32, u32)> {
        self.gone
    }

    /// The driver epoch this device is attached under.
    #[allow(dead_code)]
    pub fn epoch(&self) -> u32 {
        self.client.epoch()
    }

    /// Attach again after the driver was gone: wait (yielding, at most
    /// `max_yields` times) until init's next driver has formatted the
    /// region, and require the same geometry (the same window). Nothing is
    /// in flight afterwards. Returns the yields it took.
    #[allow(dead_code)]
    pub fn reconnect(&mut self, max_yields: u64) -> Result<u64, WaitError> {
        let mut yields = 0;
        let client = exo_rt::blockq::attach(self.win, max_yields, &mut yields)?;
        self.counters.yields += yields;
        if client.geometry() != self.geo {
            return Err(WaitError::Protocol(blockq::ProtocolError::BadHeader));
        }
        self.client = client;
        self.gone = None;
        Ok(yields)
    }

    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// A transport failure: libdb's `IoError` has no room for it, so it
    /// is named here, where it happens, and reported as `Device(EIO)`.
    fn transport(&mut self, e: WaitError) -> IoError {
        if let WaitError::DriverGone { epoch } = e {
            self.gone = Some((epoch, self.client.in_flight()));
        }
        exo_rt::println!("kvdb: block service failure: {e}");
        IoError::Device(EIO)
    }

    /// One read or write of whole blocks, in slot-sized chunks.
    fn transfer(
        &mut self,
        op: Op,
        lba: u64,
        mut read_into: Option<&mut [u8]>,
        write_from: Option<&[u8]>,
    ) -> Result<(), IoError> {
        let total = read_into.as_deref().map_or(0, |b| b.len()) + write_from.map_or(0, |d| d.len());
        let bs = self.geo.block_size as u64;
        if total == 0 {
            return Ok(());
        }
        if !(total as u64).is_multiple_of(bs) {
            return Err(IoError::Unaligned);
        }
        let chunks = (total as u64).div_ceil(self.slot_bytes);
        // Per slot: (tag, chunk) of the request using it.
        let mut busy: [Option<(u32, u64)>; MAX_SLOTS] = [None; MAX_SLOTS];
        let (mut next, mut in_flight) = (0u64, 0usize);
        let mut failed: Option<IoError> = None;
        while (next < chunks && failed.is_none()) || in_flight > 0 {
            if next < chunks && failed.is_none() {
                if let Some(slot) = (0..self.slots).find(|s| busy[*s].is_none()) {
                    let off = next * self.slot_bytes;
                    let n = self.slot_bytes.min(total as u64 - off);
                    let data_offset = self.geo.data_offset + slot as u64 * self.slot_bytes;
                    if let Some(d) = write_from {
                        self.win.write(data_offset, &d[off as usize..(off + n) as usize]);
                        self.counters.bytes_copied += n;
                    }
                    self.seq = self.seq.wrapping_add(1);
                    let tag = (self.seq << 8) | slot as u32;
                    let req = Request { op, tag, lba: lba + off / bs, blocks: (n / bs) as u32, data_offset };
                    if let Err(e) = exo_rt::blockq::submit(&mut self.client, &req) {
                        failed = Some(self.transport(e));
                        continue;
                    }
                    if op == Op::Write {
                        self.counters.write_requests += 1;
                        self.counters.bytes_written += n;
                    } else {
                        self.counters.read_requests += 1;
                        self.counters.bytes_read += n;
                    }
                    busy[slot] = Some((tag, next));
                    next += 1;
                    in_flight += 1;
                    continue;
                }
            }
            let r = match exo_rt::blockq::wait(&mut self.client, MAX_WAIT_YIELDS, &mut self.counters.yields) {
                Ok(r) => r,
                // Slots with requests in flight cannot be reused: give up.
                Err(e) => return Err(self.transport(e)),
            };
            let slot = (r.tag & 0xff) as usize;
            let Some((_, chunk)) = busy.get(slot).copied().flatten().filter(|(t, _)| *t == r.tag) else {
                return Err(self.transport(WaitError::UnexpectedAnswer { tag: r.tag }));
            };
            busy[slot] = None;
            in_flight -= 1;
            if r.status != Status::Ok {
                failed.get_or_insert(status_error(r.status));
                continue;
            }
            if let Some(buf) = read_into.as_deref_mut() {
                let off = chunk * self.slot_bytes;
                let n = self.slot_bytes.min(total as u64 - off);
                let data_offset = self.geo.data_offset + slot as u64 * self.slot_bytes;
                self.win.read(data_offset, &mut buf[off as usize..(off + n) as usize]);
                self.counters.bytes_copied += n;
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

fn status_error(s: Status) -> IoError {
    match s {
        Status::Ok => IoError::Device(0),
        Status::OutOfRange => IoError::OutOfRange,
        Status::BadRequest => IoError::Device(EINVAL),
        // The NVMe status field (positive, 15 bits).
        Status::DeviceError { detail } => IoError::Device(detail as i32),
    }
}

impl BlockDevice for BlockqDevice {
    fn block_size(&self) -> usize {
        self.geo.block_size as usize
    }
    fn blocks(&self) -> u64 {
        self.geo.capacity_blocks
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.transfer(Op::Read, lba, Some(buf), None)
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), IoError> {
        self.transfer(Op::Write, lba, None, Some(data))
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.seq = self.seq.wrapping_add(1);
        let tag = self.seq << 8 | 0xff;
        exo_rt::blockq::submit(&mut self.client, &Request { op: Op::Flush, tag, lba: 0, blocks: 0, data_offset: 0 })
            .map_err(|e| self.transport(e))?;
        self.counters.flushes += 1;
        let r = exo_rt::blockq::wait(&mut self.client, MAX_WAIT_YIELDS, &mut self.counters.yields)
            .map_err(|e| self.transport(e))?;
        if r.tag != tag {
            return Err(self.transport(WaitError::UnexpectedAnswer { tag: r.tag }));
        }
        match r.status {
            Status::Ok => Ok(()),
            s => Err(status_error(s)),
        }
    }
}
