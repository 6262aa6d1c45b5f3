//! The `nvme` crate's two resources on this runtime, for any process that
//! init made an NVMe function's driver (`nvmed`, or an application such as
//! `kvdb` driving its own SR-IOV virtual function with the driver linked
//! in as a library): the controller's registers (BAR 0, moved into the
//! process, mapped uncached) and DMA memory (the process's spare frames,
//! which it maps into the device's I/O address space itself with
//! `map(frame, 0, device, iova)`; VT-d keeps every other DMA out).

use crate::layout::SPARE_VA;
use crate::mmio::Window;
use crate::{args_word, sys};
use alloc::format;
use alloc::string::String;
use core::cell::Cell;
use exo_abi::{Error, Rights, PAGE_SIZE};
use nvme::driver::{Config, DmaRegion, Driver};
use nvme::regs::{self, Cap};
use nvme::{DmaMemory, Registers};

/// Where a driver places its frames in the device's I/O address space
/// (any page-aligned range inside the 128 MiB window would do; 16 MiB
/// keeps it clear of the low physical addresses the attack test aims at).
pub const IOVA_BASE: u64 = 0x100_0000;

/// BAR 0 as [`Registers`], counting doorbell writes (the only register
/// accesses on the I/O path). Register writes take `&self` (the shared
/// `regs::Registers`), so the counters are cells.
pub struct Bar {
    win: Window,
    stride: u64,
    sq_doorbells: Cell<u64>,
    cq_doorbells: Cell<u64>,
}

impl Bar {
    pub fn new(win: Window) -> Bar {
        let mut b = Bar { win, stride: 4, sq_doorbells: Cell::new(0), cq_doorbells: Cell::new(0) };
        b.stride = u64::from(Cap(b.read64(regs::CAP)).doorbell_stride()).max(4);
        b
    }

    /// Submission-queue tail doorbell writes so far.
    pub fn sq_doorbells(&self) -> u64 {
        self.sq_doorbells.get()
    }
    /// Completion-queue head doorbell writes so far.
    pub fn cq_doorbells(&self) -> u64 {
        self.cq_doorbells.get()
    }
    /// Doorbell writes so far (submission + completion queues).
    pub fn doorbells(&self) -> u64 {
        self.sq_doorbells() + self.cq_doorbells()
    }
}

impl Registers for Bar {
    fn len(&self) -> u64 {
        self.win.len()
    }
    fn read8(&self, offset: u64) -> u8 {
        self.win.read8(offset)
    }
    fn read16(&self, offset: u64) -> u16 {
        self.win.read16(offset)
    }
    fn read32(&self, offset: u64) -> u32 {
        self.win.read32(offset)
    }
    fn write8(&self, offset: u64, value: u8) {
        self.win.write8(offset, value)
    }
    fn write16(&self, offset: u64, value: u16) {
        self.win.write16(offset, value)
    }
    fn write32(&self, offset: u64, value: u32) {
        if offset >= regs::DOORBELL_BASE {
            let counter = if ((offset - regs::DOORBELL_BASE) / self.stride).is_multiple_of(2) {
                &self.sq_doorbells
            } else {
                &self.cq_doorbells
            };
            counter.set(counter.get() + 1);
        }
        self.win.write32(offset, value)
    }
}

/// Pages of this process mapped into the device: page `i` of `win` is at
/// I/O address `iova + i * PAGE_SIZE`.
#[derive(Clone, Copy, Debug)]
pub struct DmaPages {
    pub win: Window,
    pub iova: u64,
}

impl DmaPages {
    pub fn pages(&self) -> u64 {
        self.win.len() / PAGE_SIZE
    }

    /// Page `i`'s I/O address.
    pub fn page_iova(&self, i: u64) -> u64 {
        self.iova + i * PAGE_SIZE
    }

    /// The first `pages` pages, and the rest.
    pub fn split(self, pages: u64) -> Option<(DmaPages, DmaPages)> {
        let at = pages * PAGE_SIZE;
        let head = self.win.slice(0, at)?;
        let tail = self.win.slice(at, self.win.len().checked_sub(at)?)?;
        Some((DmaPages { win: head, iova: self.iova }, DmaPages { win: tail, iova: self.iova + at }))
    }

    fn offset(&self, addr: u64, len: usize) -> u64 {
        let off = addr.wrapping_sub(self.iova);
        // The driver only names addresses it carved from this region: any
        // other is a bug in it, not bad input.
        assert!(
            addr >= self.iova && off + len as u64 <= self.win.len(),
            "DMA access at I/O address {addr:#x} outside the driver's memory"
        );
        off
    }
}

impl DmaMemory for DmaPages {
    fn read(&self, addr: u64, buf: &mut [u8]) {
        self.win.read(self.offset(addr, buf.len()), buf)
    }
    fn write(&mut self, addr: u64, data: &[u8]) {
        self.win.write(self.offset(addr, data.len()), data)
    }
}

/// Map `count` pages of this process starting at `va` into the device at
/// `iova` (device may write them: `Rights::WRITE`).
pub fn grant(handle: u64, va: u64, count: u64, iova: u64) -> Result<(), Error> {
    for i in 0..count {
        sys::map(va + i * PAGE_SIZE, 0, handle, iova + i * PAGE_SIZE, Rights::WRITE)?;
    }
    Ok(())
}

/// Every spare frame (args word 1 of them, at `SPARE_VA`), mapped into
/// the device at [`IOVA_BASE`].
pub fn spare_dma(handle: u64) -> Result<DmaPages, &'static str> {
    spare_dma_at(handle, IOVA_BASE)
}

/// Every spare frame, as the parent already mapped it into the device at
/// [`IOVA_BASE`] (page `i` at `IOVA_BASE + i` pages): a driver init may
/// destroy holds no GRANT and cannot map into a device itself, so init
/// grants its DMA and knows every I/O address to revoke when it dies.
/// `dma=parent` in the arguments asks for this.
pub fn spare_granted_by_parent() -> Result<DmaPages, &'static str> {
    let win = Window::new(SPARE_VA, args_word(1) * PAGE_SIZE).ok_or("no spare frames for DMA")?;
    Ok(DmaPages { win, iova: IOVA_BASE })
}

/// Whether the parent granted this driver's DMA (`dma=parent`).
pub fn dma_granted_by_parent() -> bool {
    crate::args().split_whitespace().any(|w| w == "dma=parent")
}

/// Every spare frame, mapped into the device from I/O address `iova`.
pub fn spare_dma_at(handle: u64, iova: u64) -> Result<DmaPages, &'static str> {
    let n = args_word(1);
    let win = Window::new(SPARE_VA, n * PAGE_SIZE).ok_or("no spare frames for DMA")?;
    grant(handle, SPARE_VA, n, iova).map_err(|e| e.name())?;
    Ok(DmaPages { win, iova })
}

pub type Nvme = Driver<Bar, DmaPages>;

/// Device choice by what the controller is: if `want` names a serial
/// number, the controller in this process's BAR must report it (Identify
/// Controller); a driver handed the wrong controller stops before any I/O.
pub fn check_serial(d: &Nvme, want: Option<&str>) -> Result<(), String> {
    match want {
        Some(w) if !d.controller().is_serial(w) => Err(format!(
            "the controller in my BAR has serial {:?}, not {w:?}: wrong device, no I/O done",
            d.controller().serial_str()
        )),
        _ => Ok(()),
    }
}

/// The `serial=NAME` word of this process's arguments, if any: the
/// controller init meant it to drive.
pub fn wanted_serial() -> Option<&'static str> {
    crate::args().split_whitespace().find_map(|w| w.strip_prefix("serial="))
}

/// Bring the controller in `bar` up (reset, admin queue, identify, the
/// configuration's I/O queues) on the first pages of `dma`; returns the
/// driver and the pages left for data buffers. `who` prefixes the line
/// that describes the controller.
pub fn bring_up(who: &str, bar: Window, dma: DmaPages, config: Config) -> Result<(Nvme, DmaPages), String> {
    let pages = config.dma_bytes_needed().div_ceil(PAGE_SIZE);
    let (queues, rest) =
        dma.split(pages).ok_or(format!("{} DMA pages are too few for the queues ({pages})", dma.pages()))?;
    let region = DmaRegion { base: queues.iova, len: queues.win.len() };
    let d = Driver::init(Bar::new(bar), queues, region, config).map_err(|e| format!("controller bring-up: {e}"))?;
    let c = d.controller();
    let model = core::str::from_utf8(&c.model).unwrap_or("?").trim();
    crate::println!(
        "{who}: controller {model:?} serial {:?} NVMe {}.{}, {} I/O queue pairs (asked {}), namespace {} blocks of {} bytes, max transfer {} KiB (MDTS), queues in {pages} DMA pages",
        c.serial_str(),
        c.version >> 16,
        (c.version >> 8) & 0xff,
        d.io_queue_count(),
        config.io_queues,
        d.namespace().size,
        d.block_size(),
        d.max_transfer_bytes() / 1024
    );
    Ok((d, rest))
}
