//! `nvmed virtio` (the `virtio_blk_rw` test): virtio-blk through
//! `virtio_drivers::device::blk::VirtIOBlk` (virtio-drivers 0.13.0, pinned
//! by `virtio-exo`, wrapped in `virtio_exo::Disk` for checked requests,
//! bounded waits and named errors), on the same grants as the NVMe driver.
//!
//! - Transport: `virtio_exo::ModernTransport` over the BAR init moved to
//!   this process and the structure offsets it passes in args word 6 (init
//!   parsed the vendor capabilities in the configuration space, which it
//!   keeps; that is why `virtio-drivers`' own `PciTransport` is not used).
//! - DMA: `virtio_exo::ExoHal` over this process's spare frames, mapped
//!   into the device's I/O address space by this process (`hw::spare_dma`,
//!   the NVMe jobs' mechanism). With `iommu_platform=on` the device's DMA
//!   goes through VT-d; the transport accepts VIRTIO_F_ACCESS_PLATFORM
//!   and refuses a device that does not offer it.
//!
//! Data buffers are `DmaBuffer`s in the pool (the device reads and writes
//! them in place); `VirtIOBlk`'s request headers and status bytes live on
//! this program's stack and are bounced through the pool (counted).

use crate::hw;
use crate::pattern::{self, Rng};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use exo_abi::PAGE_SIZE;
use exo_rt::println;
use exo_rt::time::rdtsc;
use virtio_exo::virtio_drivers::device::blk::SECTOR_SIZE;
use virtio_exo::virtio_drivers::transport::DeviceType;
use virtio_exo::{hal, Disk, DiskError, DmaBuffer, ModernTransport, PciLayout};

const SECTOR: u64 = SECTOR_SIZE as u64;
/// Random I/Os per pass.
const IOS: usize = 1024;
/// Largest transfer, in pages (one descriptor, contiguous in IOVA space).
const MAX_PAGES: u64 = 64;
/// Pool pages kept out of the data buffer.
const POOL_HEADROOM: u64 = 8;

/// Fill `buf` with the pattern for sectors `lba..` (as `pattern::fill`).
fn fill(buf: &mut [u8], seed: u64, lba: u64) {
    for (i, w) in buf.chunks_exact_mut(8).enumerate() {
        let (b, j) = (i as u64 * 8 / SECTOR, i as u64 % (SECTOR / 8));
        w.copy_from_slice(&pattern::word(seed, lba + b, j).to_le_bytes());
    }
}

/// The first mismatch as (sector index, word index, found, expected).
fn check(buf: &[u8], seed: u64, lba: u64) -> Option<(u64, u64, u64, u64)> {
    buf.chunks_exact(8).enumerate().find_map(|(i, w)| {
        let (b, j) = (i as u64 * 8 / SECTOR, i as u64 % (SECTOR / 8));
        let got = u64::from_le_bytes(w.try_into().unwrap_or_default());
        let want = pattern::word(seed, lba + b, j);
        (got != want).then_some((b, j, got, want))
    })
}

/// A disk error, with the Hal's reason when DMA memory ran out.
fn named(e: DiskError) -> String {
    match (e, hal::stats().last_failure) {
        (DiskError::Device { error: virtio_exo::virtio_drivers::Error::DmaError, .. }, Some(why)) => {
            format!("{e}: {why}")
        }
        _ => format!("{e}"),
    }
}

pub fn run() -> Result<(), String> {
    let g = hw::grants()?;
    let layout = PciLayout::from_word(g.extra[0]);
    let tsc_per_us = g.extra[1].max(1);
    let dma = hw::spare_dma(g.handle)?;
    exo_rt::virtio::install_window(dma.win, dma.iova).map_err(|e| format!("DMA pool: {e}"))?;
    // Init starts this job only for a virtio-blk function (device ID
    // 0x1042); the transport cannot read the ID itself.
    let transport =
        ModernTransport::new(g.bar, layout, DeviceType::Block).map_err(|e| format!("virtio transport: {e}"))?;
    let status = transport.status();
    let mut d = Disk::new(transport).map_err(|e| format!("virtio-blk bring-up: {}", named(e)))?;
    let cap = d.capacity();
    let (offered, accepted) = status.features();
    println!(
        "nvmed virtio: VirtIOBlk (virtio-drivers 0.13.0) with {cap} sectors ({} MiB), features offered {offered:#x} accepted {accepted:#x} (VIRTIO_F_ACCESS_PLATFORM {}), DMA pool {} pages",
        (cap * SECTOR) >> 20,
        if accepted & virtio_exo::transport::F_ACCESS_PLATFORM != 0 { "accepted" } else { "absent" },
        hal::stats().pool_pages
    );
    let per_page = PAGE_SIZE / SECTOR;
    // Leave the queues (2 pages) and the bounce pages (2 per request)
    // room in the pool.
    let max_pages = MAX_PAGES.min(dma.pages().saturating_sub(POOL_HEADROOM));
    if max_pages < 2 || cap < max_pages * per_page {
        return Err(format!("too small: {} DMA pages, {cap} sectors", dma.pages()));
    }
    let mut buf = DmaBuffer::new((max_pages * PAGE_SIZE) as usize).map_err(|e| format!("data buffer: {e}"))?;
    let seed = rdtsc() | 1;
    let mut rng = Rng::new(seed);
    let ios: Vec<(u64, u64)> = (0..IOS)
        .map(|i| {
            let sectors = if i % 8 == 3 { rng.range(2, max_pages) * per_page } else { rng.range(1, per_page) };
            (rng.range(0, cap - sectors), sectors)
        })
        .collect();
    let before = hal::stats();
    let t0 = rdtsc();
    for (lba, n) in &ios {
        let data = &mut buf[..(n * SECTOR) as usize];
        fill(data, seed, *lba);
        d.write(*lba, data).map_err(|e| format!("write of {n} sectors: {}", named(e)))?;
    }
    d.flush().map_err(|e| format!("flush: {}", named(e)))?;
    let tw = rdtsc() - t0;
    let t0 = rdtsc();
    for (i, (lba, n)) in ios.iter().enumerate() {
        let data = &mut buf[..(n * SECTOR) as usize];
        data.fill(0xa5);
        d.read(*lba, data).map_err(|e| format!("read of {n} sectors: {}", named(e)))?;
        if let Some((b, j, got, want)) = check(data, seed, *lba) {
            return Err(format!("I/O {i}: sector {} word {j}: read {got:#x}, wrote {want:#x}", lba + b));
        }
    }
    let tr = rdtsc() - t0;
    status.check().map_err(|e| format!("after the run: {e}"))?;
    // A request past the end is refused by name before the device sees it.
    match d.read(cap - 1, &mut buf[..2 * SECTOR_SIZE]) {
        Err(DiskError::OutOfRange { .. }) => {}
        other => {
            return Err(format!("a read of sectors {}..{} on a {cap}-sector disk gave {other:?}", cap - 1, cap + 1))
        }
    }
    let st = hal::stats();
    let requests = d.requests;
    let bytes: u64 = ios.iter().map(|(_, n)| n * SECTOR).sum();
    println!(
        "nvmed virtio: wrote, flushed and verified {} I/Os ({} KiB, up to {max_pages} pages each) at random sectors: {requests} requests, {} notifications; {} / {} us per write / read (QD1)",
        ios.len(),
        bytes / 1024,
        status.notifies(),
        tw / ios.len() as u64 / tsc_per_us,
        tr / ios.len() as u64 / tsc_per_us
    );
    println!(
        "nvmed virtio: DMA: {} KiB shared in place ({} buffers); {} bounces, {} bytes copied in / {} out ({} bytes per request); peak {} of {} pool pages",
        (st.direct_bytes - before.direct_bytes) / 1024,
        st.direct_shares - before.direct_shares,
        st.bounces - before.bounces,
        st.bounce_bytes_in - before.bounce_bytes_in,
        st.bounce_bytes_out - before.bounce_bytes_out,
        (st.bounce_bytes_in - before.bounce_bytes_in + st.bounce_bytes_out - before.bounce_bytes_out) / requests,
        st.peak_pages,
        st.pool_pages
    );
    if st.direct_bytes - before.direct_bytes != 2 * bytes {
        return Err(format!(
            "data was not shared in place: {} of {} bytes",
            st.direct_bytes - before.direct_bytes,
            2 * bytes
        ));
    }
    drop(buf);
    drop(d);
    // Dropping the driver reset the device (queue_unset) before the queue
    // pages went back to the pool.
    if status.device_status() != 0 {
        return Err(format!("device status {:#x} after drop, not reset", status.device_status()));
    }
    Ok(())
}
