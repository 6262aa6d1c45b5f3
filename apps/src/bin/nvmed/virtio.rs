//! `nvmed virtio` (the `virtio_blk_rw` test): a small virtio-blk driver
//! (virtio 1.x, PCI transport, one split virtqueue, polled) on the same
//! grants as the NVMe driver: init moves the BAR holding the virtio
//! structures into this process and tells it where they are (it parsed
//! the vendor capabilities in the configuration space, which it keeps);
//! the queues and buffers are this process's frames, mapped into the
//! device's I/O address space by this process. With `iommu_platform=on`
//! the device's DMA goes through VT-d like NVMe's, and the driver accepts
//! VIRTIO_F_ACCESS_PLATFORM to say it knows.
//!
//! Not the `virtio-drivers` crate: its `Hal` and `ConfigurationAccess`
//! are `unsafe` traits, and this program forbids `unsafe` (the runtime's
//! `mmio::Window` is its only way to device memory).

use crate::hw::{self, DmaPages};
use crate::pattern::{self, Rng};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use exo_abi::PAGE_SIZE;
use exo_rt::mmio::Window;
use exo_rt::println;
use exo_rt::time::rdtsc;

// Common configuration structure (virtio 1.2, 4.1.4.3).
const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0c;
const MSIX_CONFIG: u64 = 0x10;
const DEVICE_STATUS: u64 = 0x14;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE: u64 = 0x18;
const QUEUE_MSIX_VECTOR: u64 = 0x1a;
const QUEUE_ENABLE: u64 = 0x1c;
const QUEUE_NOTIFY_OFF: u64 = 0x1e;
const QUEUE_DESC: u64 = 0x20;
const QUEUE_DRIVER: u64 = 0x28;
const QUEUE_DEVICE: u64 = 0x30;
const NO_VECTOR: u16 = 0xffff;

const ACKNOWLEDGE: u8 = 1;
const DRIVER: u8 = 2;
const DRIVER_OK: u8 = 4;
const FEATURES_OK: u8 = 8;
const FAILED: u8 = 128;

const F_BLK_FLUSH: u64 = 1 << 9;
const F_VERSION_1: u64 = 1 << 32;
const F_ACCESS_PLATFORM: u64 = 1 << 33;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const SECTOR: u64 = 512;

const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;
const QUEUE_ENTRIES: u16 = 64;

/// Where the virtio structures are in the moved BAR (args word 6: four
/// 16-bit fields; word 7 is the TSC rate).
struct Layout {
    common: u64,
    notify: u64,
    notify_multiplier: u64,
    device: u64,
}

/// One split virtqueue in three DMA pages, plus a page for request headers
/// and status bytes. Requests are synchronous: descriptors 0..3.
struct Queue {
    desc: DmaPages,
    avail: DmaPages,
    used: DmaPages,
    header: DmaPages,
    notify_at: u64,
    size: u16,
    avail_idx: u16,
    used_idx: u16,
}

pub struct VirtioBlk {
    bar: Window,
    q: Queue,
    capacity: u64,
    flush: bool,
    pub notifies: u64,
    pub requests: u64,
}

/// Page `i` of `dma`.
fn page(dma: &DmaPages, i: u64) -> Result<DmaPages, String> {
    let win = dma.win.slice(i * PAGE_SIZE, PAGE_SIZE).ok_or("too few DMA pages for the virtqueue")?;
    Ok(DmaPages { win, iova: dma.page_iova(i) })
}

impl VirtioBlk {
    fn init(bar: Window, l: Layout, dma: &DmaPages) -> Result<VirtioBlk, String> {
        let c = l.common;
        bar.write8(c + DEVICE_STATUS, 0);
        for _ in 0..1_000_000 {
            if bar.read8(c + DEVICE_STATUS) == 0 {
                break;
            }
            core::hint::spin_loop();
        }
        bar.write8(c + DEVICE_STATUS, ACKNOWLEDGE | DRIVER);
        let feature = |sel: u32| {
            bar.write32(c + DEVICE_FEATURE_SELECT, sel);
            bar.read32(c + DEVICE_FEATURE) as u64
        };
        let offered = feature(0) | feature(1) << 32;
        let fail = |why: String| {
            bar.write8(c + DEVICE_STATUS, FAILED);
            Err(why)
        };
        if offered & F_VERSION_1 == 0 {
            return fail(format!("device offers features {offered:#x} without VERSION_1"));
        }
        if offered & F_ACCESS_PLATFORM == 0 {
            return fail("device does not use the platform's DMA translation (iommu_platform=off?): refusing it".into());
        }
        let wanted = F_VERSION_1 | F_ACCESS_PLATFORM | (offered & F_BLK_FLUSH);
        for sel in 0..2u32 {
            bar.write32(c + DRIVER_FEATURE_SELECT, sel);
            bar.write32(c + DRIVER_FEATURE, (wanted >> (32 * sel)) as u32);
        }
        bar.write8(c + DEVICE_STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        if bar.read8(c + DEVICE_STATUS) & FEATURES_OK == 0 {
            return fail(format!("device refused features {wanted:#x}"));
        }
        // Queue 0, no interrupts (polled).
        bar.write16(c + MSIX_CONFIG, NO_VECTOR);
        bar.write16(c + QUEUE_SELECT, 0);
        let max = bar.read16(c + QUEUE_SIZE);
        if max < 4 {
            return fail(format!("queue 0 has {max} entries"));
        }
        let size = QUEUE_ENTRIES.min(max);
        if !size.is_power_of_two() {
            return fail(format!("queue size {size} is not a power of two"));
        }
        let q = Queue {
            desc: page(dma, 0)?,
            avail: page(dma, 1)?,
            used: page(dma, 2)?,
            header: page(dma, 3)?,
            notify_at: l.notify + bar.read16(c + QUEUE_NOTIFY_OFF) as u64 * l.notify_multiplier,
            size,
            avail_idx: 0,
            used_idx: 0,
        };
        for p in [&q.desc, &q.avail, &q.used, &q.header] {
            p.win.fill(0, PAGE_SIZE, 0);
        }
        bar.write16(c + QUEUE_SIZE, size);
        bar.write16(c + QUEUE_MSIX_VECTOR, NO_VECTOR);
        bar.write64(c + QUEUE_DESC, q.desc.iova);
        bar.write64(c + QUEUE_DRIVER, q.avail.iova);
        bar.write64(c + QUEUE_DEVICE, q.used.iova);
        bar.write16(c + QUEUE_ENABLE, 1);
        bar.write8(c + DEVICE_STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        let capacity = bar.read64(l.device);
        let d = VirtioBlk { bar, q, capacity, flush: offered & F_BLK_FLUSH != 0, notifies: 0, requests: 0 };
        d.q.avail.win.write16(0, 1); // VIRTQ_AVAIL_F_NO_INTERRUPT: we poll
        Ok(d)
    }

    pub fn capacity_sectors(&self) -> u64 {
        self.capacity
    }

    fn set_desc(&self, i: u64, addr: u64, len: u32, flags: u16, next: u16) {
        let w = &self.q.desc.win;
        w.write64(16 * i, addr);
        w.write32(16 * i + 8, len);
        w.write16(16 * i + 12, flags);
        w.write16(16 * i + 14, next);
    }

    /// One request, waited for: header, optional data (`iova`, `len`),
    /// status. The data must be contiguous in I/O address space.
    fn request(&mut self, kind: u32, sector: u64, data: Option<(u64, u32)>) -> Result<(), String> {
        let h = &self.q.header;
        h.win.write32(0, kind);
        h.win.write32(4, 0);
        h.win.write64(8, sector);
        h.win.write8(16, 0xff);
        let status = h.iova + 16;
        self.set_desc(0, h.iova, 16, DESC_NEXT, 1);
        match data {
            Some((iova, len)) => {
                let flags = if kind == T_IN { DESC_WRITE } else { 0 };
                self.set_desc(1, iova, len, flags | DESC_NEXT, 2);
                self.set_desc(2, status, 1, DESC_WRITE, 0);
            }
            None => self.set_desc(1, status, 1, DESC_WRITE, 0),
        }
        let size = self.q.size as u64;
        let a = &self.q.avail.win;
        a.write16(4 + 2 * (self.q.avail_idx as u64 % size), 0);
        self.q.avail_idx = self.q.avail_idx.wrapping_add(1);
        // The ring entry and descriptors before the index the device reads.
        a.write(2, &self.q.avail_idx.to_le_bytes());
        self.bar.write16(self.q.notify_at, 0);
        self.notifies += 1;
        self.requests += 1;
        let u = &self.q.used.win;
        for _ in 0..50_000_000u64 {
            let mut idx = [0u8; 2];
            u.read(2, &mut idx);
            if u16::from_le_bytes(idx) != self.q.used_idx {
                self.q.used_idx = self.q.used_idx.wrapping_add(1);
                let mut st = [0u8; 1];
                h.win.read(16, &mut st);
                return match st[0] {
                    0 => Ok(()),
                    1 => Err(format!("I/O error at sector {sector}")),
                    2 => Err(format!("request type {kind} unsupported")),
                    s => Err(format!("status {s:#x} at sector {sector}")),
                };
            }
            core::hint::spin_loop();
        }
        Err(format!("no answer to request type {kind} at sector {sector}"))
    }

    pub fn read(&mut self, sector: u64, iova: u64, len: u32) -> Result<(), String> {
        self.request(T_IN, sector, Some((iova, len)))
    }
    pub fn write(&mut self, sector: u64, iova: u64, len: u32) -> Result<(), String> {
        self.request(T_OUT, sector, Some((iova, len)))
    }
    pub fn flush(&mut self) -> Result<(), String> {
        if self.flush {
            self.request(T_FLUSH, 0, None)
        } else {
            Ok(())
        }
    }
}

pub fn run() -> Result<(), String> {
    let g = hw::grants()?;
    let field = |i: u32| (g.extra[0] >> (16 * i)) & 0xffff;
    let l = Layout { common: field(0), notify: field(1), notify_multiplier: field(2), device: field(3) };
    let tsc_per_us = g.extra[1].max(1);
    let dma = hw::spare_dma(g.handle)?;
    let (queue_pages, data) = dma.split(4).ok_or("too few DMA pages")?;
    let mut d = VirtioBlk::init(g.bar, l, &queue_pages)?;
    let cap = d.capacity_sectors();
    println!("nvmed virtio: virtio-blk with {cap} sectors ({} MiB), flush {}, VIRTIO_F_ACCESS_PLATFORM accepted", (cap * SECTOR) >> 20, d.flush);
    let seed = rdtsc() | 1;
    let mut rng = Rng::new(seed);
    let per_page = PAGE_SIZE / SECTOR;
    let max_pages = data.pages().min(64);
    let ios: Vec<(u64, u64)> = (0..1024)
        .map(|i| {
            let sectors = if i % 8 == 3 { rng.range(2, max_pages) * per_page } else { rng.range(1, per_page) };
            (rng.range(0, cap - sectors), sectors)
        })
        .collect();
    let t0 = rdtsc();
    for (lba, n) in &ios {
        pattern::fill(&data.win, 0, seed, *lba, *n, SECTOR);
        d.write(*lba, data.iova, (*n * SECTOR) as u32)?;
    }
    d.flush()?;
    let tw = rdtsc() - t0;
    let t0 = rdtsc();
    for (i, (lba, n)) in ios.iter().enumerate() {
        data.win.fill(0, n * SECTOR, 0xa5);
        d.read(*lba, data.iova, (*n * SECTOR) as u32)?;
        if let Some((b, j, got, want)) = pattern::check(&data.win, 0, seed, *lba, *n, SECTOR) {
            return Err(format!("I/O {i}: sector {} word {j}: read {got:#x}, wrote {want:#x}", lba + b));
        }
    }
    let tr = rdtsc() - t0;
    let bytes: u64 = ios.iter().map(|(_, n)| n * SECTOR).sum();
    println!(
        "nvmed virtio: wrote, flushed and verified {} I/Os ({} KiB, up to {max_pages} pages each) at random sectors: {} requests, {} notifications; {} / {} us per write / read (QD1)",
        ios.len(),
        bytes / 1024,
        d.requests,
        d.notifies,
        tw / ios.len() as u64 / tsc_per_us,
        tr / ios.len() as u64 / tsc_per_us
    );
    Ok(())
}
