//! A fake virtio-blk PCI function behind a register window: the common
//! configuration with its select registers, feature negotiation that (like
//! QEMU with `iommu_platform=on`) refuses FEATURES_OK without
//! VIRTIO_F_ACCESS_PLATFORM, one split virtqueue executed synchronously on
//! each notify, and a disk in a `Vec`. Its DMA goes through a model of the
//! I/O page table: only the installed pool's IOVAs translate; anything
//! else is a recorded fault.

#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;
use virtio_exo::transport::{common, F_ACCESS_PLATFORM, F_VERSION_1};
use virtio_exo::{DmaRegion, PciLayout, Registers};

pub const F_FLUSH: u64 = 1 << 9;
pub const F_INDIRECT: u64 = 1 << 28;
pub const F_EVENT_IDX: u64 = 1 << 29;
pub const SECTOR: usize = 512;

pub const LAYOUT: PciLayout = PciLayout { common: 0, notify: 0x3000, notify_multiplier: 4, device: 0x2000 };
pub const BAR_LEN: u64 = 0x4000;

#[derive(Default, Debug)]
pub struct Queue {
    pub size: u16,
    pub max: u16,
    pub enable: u16,
    pub msix: u16,
    pub notify_off: u16,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    last_avail: u16,
}

#[derive(Debug)]
pub struct Device {
    pub offered: u64,
    pub accepted: u64,
    dfselect: u32,
    gfselect: u32,
    pub status: u8,
    /// Every value written to device_status, in order.
    pub status_writes: Vec<u8>,
    pub config_msix: u16,
    select: u16,
    pub queue: Queue,
    pub disk: Vec<u8>,
    pub flushes: u64,
    pub notifies: u64,
    pub requests: u64,
    pub faults: Vec<u64>,
    /// (offset, width) of every device-config access.
    pub config_accesses: Vec<(u64, u8)>,
    pub dma: DmaRegion,
    /// Refuse FEATURES_OK whatever the driver writes.
    pub refuse_features: bool,
    /// Take notifies but never complete anything (a hung device).
    pub stalled: bool,
    /// Device-configuration reads bump the generation this many times.
    pub generation_bumps: u32,
    generation: u8,
}

#[derive(Clone)]
pub struct FakeBar(pub Rc<RefCell<Device>>);

impl FakeBar {
    pub fn new(sectors: usize, offered: u64, dma: DmaRegion) -> FakeBar {
        FakeBar(Rc::new(RefCell::new(Device {
            offered,
            accepted: 0,
            dfselect: 0,
            gfselect: 0,
            status: 0,
            status_writes: Vec::new(),
            config_msix: 0,
            select: 0,
            queue: Queue { max: 256, ..Queue::default() },
            disk: vec![0; sectors * SECTOR],
            flushes: 0,
            notifies: 0,
            requests: 0,
            faults: Vec::new(),
            config_accesses: Vec::new(),
            dma,
            refuse_features: false,
            stalled: false,
            generation_bumps: 0,
            generation: 0,
        })))
    }

    pub fn qemu_features() -> u64 {
        F_VERSION_1 | F_ACCESS_PLATFORM | F_FLUSH | F_EVENT_IDX | F_INDIRECT
    }

    pub fn dev(&self) -> std::cell::RefMut<'_, Device> {
        self.0.borrow_mut()
    }
}

impl Device {
    /// Host address of `len` bytes at `iova`, if the I/O page table maps
    /// them all.
    fn translate(&mut self, iova: u64, len: usize) -> Option<*mut u8> {
        let off = iova.checked_sub(self.dma.iova)?;
        let end = off.checked_add(len as u64)?;
        if end > (self.dma.pages * 4096) as u64 {
            self.faults.push(iova);
            return None;
        }
        Some((self.dma.va + off as usize) as *mut u8)
    }

    fn dma_read(&mut self, iova: u64, len: usize) -> Option<Vec<u8>> {
        let p = self.translate(iova, len)?;
        let mut v = vec![0u8; len];
        // SAFETY: `p..p+len` lies inside the installed pool (checked by
        // `translate`), a leaked allocation that lives for the whole test
        // binary; the driver is blocked in the notify that called us.
        unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), len) };
        Some(v)
    }

    fn dma_write(&mut self, iova: u64, data: &[u8]) -> bool {
        let Some(p) = self.translate(iova, data.len()) else { return false };
        // SAFETY: as in `dma_read`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        true
    }

    fn u16_at(&mut self, iova: u64) -> u16 {
        self.dma_read(iova, 2).map(|b| u16::from_le_bytes([b[0], b[1]])).unwrap_or(0)
    }

    fn reset(&mut self) {
        self.status = 0;
        self.accepted = 0;
        self.config_msix = 0;
        self.queue = Queue { max: self.queue.max, notify_off: self.queue.notify_off, ..Queue::default() };
    }

    fn write_status(&mut self, v: u8) {
        self.status_writes.push(v);
        if v == 0 {
            return self.reset();
        }
        let mut v = v;
        if v & 8 != 0 && self.status & 8 == 0 {
            let unknown = self.accepted & !self.offered != 0;
            let platform_missing = self.offered & F_ACCESS_PLATFORM != 0 && self.accepted & F_ACCESS_PLATFORM == 0;
            if unknown || platform_missing || self.refuse_features {
                v &= !8;
            }
        }
        self.status = v;
    }

    /// Descriptor `i` of the table at `table`: (addr, len, flags, next).
    fn desc(&mut self, table: u64, i: u16) -> Option<(u64, u32, u16, u16)> {
        let b = self.dma_read(table + 16 * i as u64, 16)?;
        Some((
            u64::from_le_bytes(b[0..8].try_into().unwrap()),
            u32::from_le_bytes(b[8..12].try_into().unwrap()),
            u16::from_le_bytes([b[12], b[13]]),
            u16::from_le_bytes([b[14], b[15]]),
        ))
    }

    /// The chain from `head` as (addr, len, device-writable) segments.
    fn chain(&mut self, head: u16) -> Option<Vec<(u64, u32, bool)>> {
        let (mut table, mut i, mut limit) = (self.queue.desc, head, self.queue.size);
        let mut out = Vec::new();
        for _ in 0..64 {
            if i >= limit {
                return None;
            }
            let (addr, len, flags, next) = self.desc(table, i)?;
            if flags & 4 != 0 {
                // Indirect: the table holds len/16 descriptors.
                table = addr;
                limit = (len / 16) as u16;
                i = 0;
                continue;
            }
            out.push((addr, len, flags & 2 != 0));
            if flags & 1 == 0 {
                return Some(out);
            }
            i = next;
        }
        None
    }

    fn execute(&mut self, head: u16) -> u32 {
        let Some(segs) = self.chain(head) else { return 0 };
        let mut readable = Vec::new();
        let mut writable: Vec<(u64, u32)> = Vec::new();
        for (addr, len, w) in segs {
            if w {
                writable.push((addr, len));
            } else if let Some(b) = self.dma_read(addr, len as usize) {
                readable.extend(b);
            } else {
                return 0;
            }
        }
        let Some((status_at, status_len)) = writable.pop() else { return 0 };
        let status_iova = status_at + status_len as u64 - 1;
        if readable.len() < 16 {
            self.dma_write(status_iova, &[1]);
            return 1;
        }
        let kind = u32::from_le_bytes(readable[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(readable[8..16].try_into().unwrap()) as usize;
        let data = &readable[16..];
        let in_len: usize = writable.iter().map(|(_, l)| *l as usize).sum();
        self.requests += 1;
        let (status, written) = match kind {
            0 => {
                let start = sector * SECTOR;
                if start + in_len > self.disk.len() {
                    (1, 0)
                } else {
                    let mut at = start;
                    let mut ok = true;
                    for (addr, len) in writable.clone() {
                        let chunk = self.disk[at..at + len as usize].to_vec();
                        ok &= self.dma_write(addr, &chunk);
                        at += len as usize;
                    }
                    (if ok { 0 } else { 1 }, in_len as u32)
                }
            }
            1 => {
                let start = sector * SECTOR;
                if start + data.len() > self.disk.len() {
                    (1, 0)
                } else {
                    let data = data.to_vec();
                    self.disk[start..start + data.len()].copy_from_slice(&data);
                    (0, 0)
                }
            }
            4 => {
                self.flushes += 1;
                (0, 0)
            }
            _ => (2, 0),
        };
        self.dma_write(status_iova, &[status]);
        written + 1
    }

    fn notify(&mut self, queue: u16) {
        self.notifies += 1;
        if queue != 0 || self.status & 4 == 0 || self.queue.enable != 1 || self.stalled {
            return;
        }
        let size = self.queue.size;
        let avail_idx = self.u16_at(self.queue.driver + 2);
        while self.queue.last_avail != avail_idx {
            let slot = self.queue.last_avail % size;
            let head = self.u16_at(self.queue.driver + 4 + 2 * slot as u64);
            let len = self.execute(head);
            let used_idx = self.u16_at(self.queue.device + 2);
            let elem = self.queue.device + 4 + 8 * (used_idx % size) as u64;
            let mut e = (head as u32).to_le_bytes().to_vec();
            e.extend(len.to_le_bytes());
            self.dma_write(elem, &e);
            self.dma_write(self.queue.device + 2, &used_idx.wrapping_add(1).to_le_bytes());
            self.queue.last_avail = self.queue.last_avail.wrapping_add(1);
        }
        if self.accepted & F_EVENT_IDX != 0 {
            // avail_event: notify me when the next buffer is added.
            let at = self.queue.device + 4 + 8 * size as u64;
            let v = self.queue.last_avail.to_le_bytes();
            self.dma_write(at, &v);
        }
    }

    fn config_read(&mut self, off: u64, width: u8) -> u64 {
        self.config_accesses.push((off, width));
        if self.generation_bumps > 0 {
            self.generation_bumps -= 1;
            self.generation = self.generation.wrapping_add(1);
        }
        let capacity = (self.disk.len() / SECTOR) as u64;
        let mut cfg = [0u8; 64];
        cfg[0..8].copy_from_slice(&capacity.to_le_bytes());
        let mut v = 0u64;
        for i in 0..width as usize {
            v |= (cfg.get(off as usize + i).copied().unwrap_or(0) as u64) << (8 * i);
        }
        v
    }

    fn read(&mut self, off: u64, width: u8) -> u64 {
        if (LAYOUT.device..LAYOUT.notify).contains(&off) {
            return self.config_read(off - LAYOUT.device, width);
        }
        let q = &self.queue;
        match (off, width) {
            (common::DEVICE_FEATURE, 4) => (self.offered >> (32 * self.dfselect.min(2))) & 0xffff_ffff,
            (common::DRIVER_FEATURE, 4) => (self.accepted >> (32 * self.gfselect.min(2))) & 0xffff_ffff,
            (common::DEVICE_FEATURE_SELECT, 4) => self.dfselect as u64,
            (common::NUM_QUEUES, 2) => 1,
            (common::DEVICE_STATUS, 1) => self.status as u64,
            (common::CONFIG_GENERATION, 1) => self.generation as u64,
            (common::QUEUE_SELECT, 2) => self.select as u64,
            (common::QUEUE_SIZE, 2) if self.select == 0 => (if q.size == 0 { q.max } else { q.size }) as u64,
            (common::QUEUE_ENABLE, 2) if self.select == 0 => q.enable as u64,
            (common::QUEUE_NOTIFY_OFF, 2) if self.select == 0 => q.notify_off as u64,
            (common::QUEUE_SIZE | common::QUEUE_ENABLE | common::QUEUE_NOTIFY_OFF, 2) => 0,
            _ => panic!("fake virtio: unexpected {width}-byte read at {off:#x}"),
        }
    }

    fn set_half(reg: &mut u64, high: bool, v: u32) {
        if high {
            *reg = (*reg & 0xffff_ffff) | (v as u64) << 32;
        } else {
            *reg = (*reg & !0xffff_ffff) | v as u64;
        }
    }

    fn write(&mut self, off: u64, width: u8, v: u64) {
        if off >= LAYOUT.notify {
            assert_eq!(width, 2, "notify must be a 16-bit write");
            return self.notify(v as u16);
        }
        let sel0 = self.select == 0;
        let q = &mut self.queue;
        match (off, width) {
            (common::DEVICE_FEATURE_SELECT, 4) => self.dfselect = v as u32,
            (common::DRIVER_FEATURE_SELECT, 4) => self.gfselect = v as u32,
            (common::DRIVER_FEATURE, 4) => match self.gfselect {
                0 => Self::set_half(&mut self.accepted, false, v as u32),
                1 => Self::set_half(&mut self.accepted, true, v as u32),
                _ => {}
            },
            (common::CONFIG_MSIX_VECTOR, 2) => self.config_msix = v as u16,
            (common::DEVICE_STATUS, 1) => self.write_status(v as u8),
            (common::QUEUE_SELECT, 2) => self.select = v as u16,
            (common::QUEUE_SIZE, 2) if sel0 => q.size = v as u16,
            (common::QUEUE_MSIX_VECTOR, 2) if sel0 => q.msix = v as u16,
            (common::QUEUE_ENABLE, 2) if sel0 => q.enable = v as u16,
            (o, 4) if sel0 && (common::QUEUE_DESC..common::LEN).contains(&o) => {
                let high = o % 8 == 4;
                let reg = match (o - common::QUEUE_DESC) / 8 {
                    0 => &mut q.desc,
                    1 => &mut q.driver,
                    _ => &mut q.device,
                };
                Self::set_half(reg, high, v as u32);
            }
            _ => panic!("fake virtio: unexpected {width}-byte write of {v:#x} at {off:#x}"),
        }
    }
}

impl Registers for FakeBar {
    fn len(&self) -> u64 {
        BAR_LEN
    }
    fn read8(&self, offset: u64) -> u8 {
        self.dev().read(offset, 1) as u8
    }
    fn read16(&self, offset: u64) -> u16 {
        assert!(offset.is_multiple_of(2));
        self.dev().read(offset, 2) as u16
    }
    fn read32(&self, offset: u64) -> u32 {
        assert!(offset.is_multiple_of(4));
        self.dev().read(offset, 4) as u32
    }
    fn write8(&self, offset: u64, value: u8) {
        self.dev().write(offset, 1, value as u64)
    }
    fn write16(&self, offset: u64, value: u16) {
        assert!(offset.is_multiple_of(2));
        self.dev().write(offset, 2, value as u64)
    }
    fn write32(&self, offset: u64, value: u32) {
        assert!(offset.is_multiple_of(4));
        self.dev().write(offset, 4, value as u64)
    }
}
