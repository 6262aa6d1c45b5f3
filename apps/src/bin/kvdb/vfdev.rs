//! `libdb::BlockDevice` on this process's own NVMe controller: an SR-IOV
//! virtual function whose BAR and device handle init moved into kvdb (the
//! grants init gives a driver), driven by the `nvme` crate linked in as a
//! library (`exo_rt::nvme` is the glue: BAR 0 as its registers, spare
//! frames mapped into the VF's own I/O page table as its DMA memory). No
//! driver process, no block-service hop, no system call per I/O: a
//! command is a store into the submission queue and a doorbell store to
//! the BAR, its completion is polled from this process's memory.
//!
//! One I/O queue, one command at a time (QD1). Data goes through a bounce
//! area of DMA pages (libdb's buffers are heap memory the device cannot
//! see); the driver cuts transfers at the controller's MDTS. The VF sees
//! the whole shared namespace, so the device exposes only a window of it
//! (`[first, first + blocks)`, LBA 0 at its start) and refuses anything
//! past its end before the controller sees it.

use alloc::string::String;
use alloc::vec::Vec;
use exo_abi::PAGE_SIZE;
use exo_rt::mmio::Window;
use exo_rt::nvme::{DmaPages, Nvme};
use libdb::{BlockDevice, IoError};
use nvme::driver::Config;
use nvme::prp::DmaBuffer;

/// The one I/O queue kvdb uses.
const QUEUE: usize = 0;
/// Submission queue depth: QD1 needs few, and each entry costs a PRP
/// list page.
const QUEUE_ENTRIES: u16 = 16;
/// Pages of the bounce area (256 KiB: a checkpoint's writes in few chunks).
pub const BOUNCE_PAGES: u64 = 64;
/// Device codes for failures that are not an NVMe status.
const EIO: i32 = -5;

/// What this process asked of its controller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfCounters {
    /// NVMe Write commands (a transfer longer than MDTS is several).
    pub write_cmds: u64,
    pub read_cmds: u64,
    pub flushes: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Bytes copied between libdb's buffers and the bounce area.
    pub bytes_copied: u64,
}

impl VfCounters {
    pub fn commands(&self) -> u64 {
        self.write_cmds + self.read_cmds + self.flushes
    }
}

pub struct VfDevice {
    d: Nvme,
    bounce: DmaPages,
    bounce_iovas: Vec<u64>,
    first_lba: u64,
    blocks: u64,
    pub counters: VfCounters,
}

impl VfDevice {
    /// Bring up the VF's controller in `bar` on the DMA pages `dma`, and
    /// expose MiB `window.0 .. window.0 + window.1` of its namespace.
    pub fn bring_up(bar: Window, dma: DmaPages, window: (u64, u64)) -> Result<VfDevice, String> {
        use alloc::format;
        let config = Config { io_queues: 1, io_queue_entries: QUEUE_ENTRIES, ..Config::default() };
        let (d, rest) = exo_rt::nvme::bring_up("kvdb", bar, dma, config)?;
        let (bounce, _) = rest
            .split(BOUNCE_PAGES)
            .ok_or(format!("{} DMA pages left after the queues, {BOUNCE_PAGES} needed for data", rest.pages()))?;
        let bs = d.block_size() as u64;
        if !PAGE_SIZE.is_multiple_of(bs) {
            return Err(format!("the namespace's {bs}-byte blocks do not divide a page (libdb writes 4 KiB pages)"));
        }
        let (first_mib, len_mib) = window;
        let w = nvme::window::LbaWindow::from_mib(first_mib, len_mib, d.block_size(), d.namespace().size)
            .map_err(|e| format!("window of {len_mib} MiB at {first_mib} MiB: {e}"))?;
        let (first_lba, blocks) = (w.first, w.blocks);
        let bounce_iovas = (0..bounce.pages()).map(|i| bounce.page_iova(i)).collect();
        Ok(VfDevice { d, bounce, bounce_iovas, first_lba, blocks, counters: VfCounters::default() })
    }

    /// Doorbell writes (submission + completion) since bring-up began.
    pub fn doorbells(&self) -> u64 {
        self.d.regs().doorbells()
    }

    pub fn first_lba(&self) -> u64 {
        self.first_lba
    }

    pub fn max_transfer_bytes(&self) -> u64 {
        self.d.max_transfer_bytes()
    }

    fn check(&self, lba: u64, len: usize) -> Result<(), IoError> {
        let bs = self.block_size();
        if !len.is_multiple_of(bs) {
            return Err(IoError::Unaligned);
        }
        let end = lba.checked_add((len / bs) as u64).ok_or(IoError::OutOfRange)?;
        if end > self.blocks {
            return Err(IoError::OutOfRange);
        }
        Ok(())
    }

    fn device_error(&self, what: &str, lba: u64, e: nvme::driver::Error) -> IoError {
        // libdb's IoError carries only a code: name the failure here.
        exo_rt::println!("kvdb: NVMe {what} at window LBA {lba}: {e}");
        match e {
            nvme::driver::Error::Command { error, .. } => IoError::Device(error.status.to_field() as i32),
            _ => IoError::Device(EIO),
        }
    }

    /// `Write`/`Read` commands the driver issues for `n` bytes (MDTS cuts).
    fn commands_for(&self, n: u64) -> u64 {
        n.div_ceil(self.d.max_transfer_bytes().max(1))
    }
}

impl BlockDevice for VfDevice {
    fn block_size(&self) -> usize {
        self.d.block_size() as usize
    }
    fn blocks(&self) -> u64 {
        self.blocks
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.check(lba, buf.len())?;
        let chunk = (self.bounce.win.len() as usize).min(buf.len().max(1));
        let bs = self.block_size() as u64;
        for (i, part) in buf.chunks_mut(chunk).enumerate() {
            let at = lba + (i * chunk) as u64 / bs;
            let dma = DmaBuffer { pages: &self.bounce_iovas, offset: 0, len: part.len() as u32 };
            self.d.read(QUEUE, self.first_lba + at, &dma).map_err(|e| self.device_error("read", at, e))?;
            self.bounce.win.read(0, part);
            self.counters.read_cmds += self.commands_for(part.len() as u64);
            self.counters.bytes_read += part.len() as u64;
            self.counters.bytes_copied += part.len() as u64;
        }
        Ok(())
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), IoError> {
        self.check(lba, data.len())?;
        let chunk = (self.bounce.win.len() as usize).min(data.len().max(1));
        let bs = self.block_size() as u64;
        for (i, part) in data.chunks(chunk).enumerate() {
            let at = lba + (i * chunk) as u64 / bs;
            self.bounce.win.write(0, part);
            self.counters.bytes_copied += part.len() as u64;
            let dma = DmaBuffer { pages: &self.bounce_iovas, offset: 0, len: part.len() as u32 };
            self.d.write(QUEUE, self.first_lba + at, &dma).map_err(|e| self.device_error("write", at, e))?;
            self.counters.write_cmds += self.commands_for(part.len() as u64);
            self.counters.bytes_written += part.len() as u64;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.d.flush(QUEUE).map_err(|e| self.device_error("flush", 0, e))?;
        self.counters.flushes += 1;
        Ok(())
    }
}
