//! `virtio_drivers::device::blk::VirtIOBlk` end to end on the host:
//! `ModernTransport` over a fake register window, `ExoHal` over a pool of
//! memory the fake device reaches only through its IOVAs.

mod fake;

use fake::{FakeBar, BAR_LEN, F_EVENT_IDX, F_FLUSH, F_INDIRECT, LAYOUT, SECTOR};
use std::sync::{Mutex, MutexGuard, OnceLock};
use testrng::Rng;
use virtio_exo::blk::Op;
use virtio_exo::transport::{common, F_ACCESS_PLATFORM, F_VERSION_1};
use virtio_exo::virtio_drivers::device::blk::VirtIOBlk;
use virtio_exo::virtio_drivers::transport::DeviceType;
use virtio_exo::virtio_drivers::Error as VirtioError;
use virtio_exo::{hal, Disk, DiskError, DmaBuffer, DmaRegion, ExoHal, ModernTransport, PciLayout, TransportError};

const POOL_PAGES: usize = 96;
const IOVA: u64 = 0x100_0000;

type Blk = VirtIOBlk<ExoHal, ModernTransport<FakeBar>>;

/// The Hal's pool is a process-wide static: tests take turns.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One leaked, page-aligned pool for the whole binary, reinstalled
/// (fresh bookkeeping) by each test.
fn pool() -> DmaRegion {
    static REGION: OnceLock<DmaRegion> = OnceLock::new();
    let r = *REGION.get_or_init(|| {
        let layout = std::alloc::Layout::from_size_align(POOL_PAGES * 4096, 4096).unwrap();
        // SAFETY: a non-zero-sized layout; the memory is leaked on purpose.
        let va = unsafe { std::alloc::alloc_zeroed(layout) } as usize;
        assert_ne!(va, 0);
        DmaRegion { va, iova: IOVA, pages: POOL_PAGES }
    });
    // SAFETY: the region is a leaked allocation used by nothing but the
    // Hal and the fake device (which reaches it only by IOVA translation).
    unsafe { hal::install(r) }.expect("previous test left pool pages in use");
    r
}

fn device(sectors: usize, offered: u64) -> (FakeBar, ModernTransport<FakeBar>) {
    let bar = FakeBar::new(sectors, offered, pool());
    let t = ModernTransport::new(bar.clone(), LAYOUT, DeviceType::Block).unwrap();
    (bar, t)
}

fn word(seed: u64, sector: u64, j: u64) -> u64 {
    (sector ^ seed.rotate_left(17)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed ^ j.wrapping_mul(0xd1b5_4a32_d192_ed03)
}

fn fill(buf: &mut [u8], seed: u64, sector: u64) {
    for (i, w) in buf.chunks_exact_mut(8).enumerate() {
        let (s, j) = (sector + (i * 8 / SECTOR) as u64, (i % (SECTOR / 8)) as u64);
        w.copy_from_slice(&word(seed, s, j).to_le_bytes());
    }
}

#[test]
fn bring_up_follows_the_modern_pci_protocol() {
    let _s = serial();
    let (bar, t) = device(2048, FakeBar::qemu_features());
    let status = t.status();
    let blk = Blk::new(t).unwrap();
    status.check().unwrap();
    assert_eq!(blk.capacity(), 2048);
    {
        let d = bar.dev();
        // Reset, ACKNOWLEDGE|DRIVER, +FEATURES_OK, +DRIVER_OK (3.1.1).
        assert_eq!(d.status_writes, vec![0, 0x3, 0xb, 0xf]);
        assert_eq!(d.status, 0xf);
        // VirtIOBlk's own features, plus ACCESS_PLATFORM from the transport
        // (INDIRECT is negotiated but unused without virtio-drivers' alloc
        // feature).
        assert_eq!(d.accepted, F_VERSION_1 | F_ACCESS_PLATFORM | F_FLUSH | F_EVENT_IDX | F_INDIRECT);
        assert_eq!(status.features(), (FakeBar::qemu_features(), d.accepted));
        // The queue: polled, enabled, every area inside the pool's IOVAs.
        assert_eq!((d.queue.enable, d.queue.msix, d.config_msix), (1, common::NO_VECTOR, common::NO_VECTOR));
        assert_eq!(d.queue.size, 16);
        for a in [d.queue.desc, d.queue.driver, d.queue.device] {
            assert!((IOVA..IOVA + (POOL_PAGES * 4096) as u64).contains(&a), "queue area {a:#x} outside the pool");
        }
        // Capacity (a 64-bit field) read as two 32-bit accesses.
        assert!(d.config_accesses.iter().all(|(_, w)| *w == 4), "{:?}", d.config_accesses);
    }
    let in_use = hal::stats().pages_in_use;
    assert!(in_use >= 2, "queue pages allocated from the pool ({in_use})");
    drop(blk);
    // Dropping the driver resets the device before the queue memory goes.
    assert_eq!(bar.dev().status, 0);
    assert_eq!(*bar.dev().status_writes.last().unwrap(), 0);
    assert_eq!(hal::stats().pages_in_use, 0);
}

#[test]
fn random_io_zero_copy_data_bounced_headers() {
    let _s = serial();
    let sectors = 16384u64; // 8 MiB
    let (bar, t) = device(sectors as usize, FakeBar::qemu_features());
    let status = t.status();
    let mut blk = Blk::new(t).unwrap();
    status.check().unwrap();
    let mut buf = DmaBuffer::new(64 * 4096).unwrap();
    let base = hal::stats();
    let seed = 0x1234_5678_9abc_def1;
    let mut rng = Rng::new(seed);
    let ios: Vec<(u64, u64)> = (0..1000)
        .map(|i| {
            let n = if i % 8 == 3 { rng.range(2..=64) * 8 } else { rng.range(1..=8) };
            (rng.range(0..=sectors - n), n)
        })
        .collect();
    for (s, n) in &ios {
        let len = (*n as usize) * SECTOR;
        fill(&mut buf[..len], seed, *s);
        blk.write_blocks(*s as usize, &buf[..len]).unwrap();
    }
    blk.flush().unwrap();
    // The fake's disk holds exactly the pattern (later writes win, and the
    // pattern depends only on the sector, so any overlap agrees).
    {
        let d = bar.dev();
        for (s, n) in &ios {
            let mut want = vec![0u8; *n as usize * SECTOR];
            fill(&mut want, seed, *s);
            let at = *s as usize * SECTOR;
            assert!(d.disk[at..at + want.len()] == want[..], "sector {s}: disk differs");
        }
        assert_eq!(d.flushes, 1);
    }
    for (s, n) in &ios {
        let len = (*n as usize) * SECTOR;
        buf[..len].fill(0xa5);
        blk.read_blocks(*s as usize, &mut buf[..len]).unwrap();
        let mut want = vec![0u8; len];
        fill(&mut want, seed, *s);
        assert!(buf[..len] == want[..], "read back of sector {s} differs");
    }
    let st = hal::stats();
    let requests = 2 * ios.len() as u64 + 1;
    let data: u64 = ios.iter().map(|(_, n)| n * SECTOR as u64).sum::<u64>() * 2;
    assert_eq!(bar.dev().requests, requests);
    // Data went in place, never copied.
    assert_eq!(st.direct_shares - base.direct_shares, 2 * ios.len() as u64);
    assert_eq!(st.direct_bytes - base.direct_bytes, data);
    // Per request VirtIOBlk's 16-byte header and 1-byte status bounce;
    // only the status is copied back.
    assert_eq!(st.bounces - base.bounces, 2 * requests);
    assert_eq!(st.bounce_bytes_in - base.bounce_bytes_in, 17 * requests);
    assert_eq!(st.bounce_bytes_out - base.bounce_bytes_out, requests);
    // With EVENT_IDX the fake asks for every buffer: one notify each.
    assert_eq!((status.notifies(), bar.dev().notifies), (requests, requests));
    assert!(bar.dev().faults.is_empty());
    assert_eq!(st.pages_in_use, base.pages_in_use, "bounce pages all returned");
    drop(buf);
    drop(blk);
    assert_eq!(hal::stats().pages_in_use, 0);
}

#[test]
fn buffers_outside_the_pool_are_bounced_both_ways() {
    let _s = serial();
    let (bar, t) = device(64, FakeBar::qemu_features());
    let mut blk = Blk::new(t).unwrap();
    let mut heap = vec![0u8; 3 * SECTOR];
    fill(&mut heap, 7, 10);
    let before = hal::stats();
    blk.write_blocks(10, &heap).unwrap();
    let mut back = vec![0xeeu8; 3 * SECTOR];
    blk.read_blocks(10, &mut back).unwrap();
    assert_eq!(back, heap);
    let st = hal::stats();
    // Write: header + data + status in, status out. Read: header + data +
    // status in, data + status out.
    assert_eq!(st.bounce_bytes_in - before.bounce_bytes_in, 2 * (16 + 3 * SECTOR as u64 + 1));
    assert_eq!(st.bounce_bytes_out - before.bounce_bytes_out, 1 + 3 * SECTOR as u64 + 1);
    assert_eq!(st.direct_shares, before.direct_shares);
    assert_eq!(&bar.dev().disk[10 * SECTOR..13 * SECTOR], &heap[..]);
}

#[test]
fn device_errors_reach_the_caller() {
    let _s = serial();
    let (_bar, t) = device(64, FakeBar::qemu_features());
    let mut blk = Blk::new(t).unwrap();
    let mut buf = DmaBuffer::new(4096).unwrap();
    // Past the end: the device answers VIRTIO_BLK_S_IOERR.
    assert_eq!(blk.read_blocks(62, &mut buf[..4 * SECTOR]), Err(VirtioError::IoError));
    assert_eq!(blk.write_blocks(64, &buf[..SECTOR]), Err(VirtioError::IoError));
    blk.read_blocks(63, &mut buf[..SECTOR]).unwrap();
    drop(buf);
    drop(blk);
    assert_eq!(hal::stats().pages_in_use, 0);
}

#[test]
fn a_device_that_bypasses_the_iommu_is_refused() {
    let _s = serial();
    let offered = FakeBar::qemu_features() & !F_ACCESS_PLATFORM;
    let (bar, t) = device(64, offered);
    let status = t.status();
    let _blk = Blk::new(t).unwrap();
    assert_eq!(status.check(), Err(TransportError::NoPlatformDma { offered }));
    let d = bar.dev();
    // Told FAILED (0x80), never DRIVER_OK.
    assert_eq!(d.status, 0x80);
    assert!(d.status_writes.iter().all(|s| s & 4 == 0), "{:?}", d.status_writes);
}

#[test]
fn refused_features_are_named() {
    let _s = serial();
    let (bar, t) = device(64, FakeBar::qemu_features());
    bar.dev().refuse_features = true;
    let status = t.status();
    let _blk = Blk::new(t).unwrap();
    let wanted = F_VERSION_1 | F_ACCESS_PLATFORM | F_FLUSH | F_EVENT_IDX | F_INDIRECT;
    assert_eq!(status.check(), Err(TransportError::FeaturesRefused { wanted }));
    assert!(bar.dev().status_writes.iter().all(|s| s & 4 == 0));
}

#[test]
fn layouts_outside_the_bar_are_refused() {
    let _s = serial();
    let bar = FakeBar::new(8, FakeBar::qemu_features(), pool());
    let bad = [
        (PciLayout { common: BAR_LEN - 0x20, ..LAYOUT }, "common configuration"),
        (PciLayout { notify: BAR_LEN, ..LAYOUT }, "notify region"),
        (PciLayout { device: BAR_LEN - 2, ..LAYOUT }, "device configuration"),
        (PciLayout { common: 0x2, ..LAYOUT }, "common configuration"),
    ];
    for (layout, what) in bad {
        match ModernTransport::new(bar.clone(), layout, DeviceType::Block) {
            Err(TransportError::LayoutOutsideBar { what: w, .. }) => assert_eq!(w, what),
            other => panic!("{layout:x?}: {:?}", other.err()),
        }
    }
    let odd = PciLayout { notify_multiplier: 3, ..LAYOUT };
    assert_eq!(ModernTransport::new(bar, odd, DeviceType::Block).err(), Some(TransportError::OddNotifyMultiplier(3)));
    assert_eq!(PciLayout::from_word(0x2000_0004_3000_0000), LAYOUT);
}

#[test]
fn a_notify_address_outside_the_bar_is_caught() {
    let _s = serial();
    let (bar, t) = device(64, FakeBar::qemu_features());
    // 0x3000 + 0x800 * 4 = 0x5000: past the 0x4000-byte BAR.
    bar.dev().queue.notify_off = 0x800;
    let status = t.status();
    let _blk = Blk::new(t).unwrap();
    assert_eq!(status.check(), Err(TransportError::NotifyOutsideBar { queue: 0, offset: 0x5000, bar_len: BAR_LEN }));
    assert!(bar.dev().status_writes.iter().all(|s| s & 4 == 0));
}

#[test]
fn config_reads_retry_until_the_generation_is_stable() {
    let _s = serial();
    let (bar, t) = device(4096, FakeBar::qemu_features());
    bar.dev().generation_bumps = 3;
    let blk = Blk::new(t).unwrap();
    assert_eq!(blk.capacity(), 4096);
    // Two 32-bit halves per attempt; the reads that saw a bump were redone.
    assert!(bar.dev().config_accesses.len() >= 4);
}

#[test]
fn pool_exhaustion_is_a_named_dma_error() {
    let _s = serial();
    let (_bar, t) = device(64, FakeBar::qemu_features());
    let hog = DmaBuffer::new(POOL_PAGES * 4096).unwrap();
    assert!(matches!(Blk::new(t).err(), Some(VirtioError::DmaError)));
    assert!(matches!(hal::stats().last_failure, Some(virtio_exo::pool::PoolError::Exhausted { .. })));
    assert!(matches!(DmaBuffer::new(1), Err(virtio_exo::DmaError::Pool(_))));
    drop(hog);
    assert_eq!(hal::stats().pages_in_use, 0);
}

#[test]
fn disk_checks_requests_before_the_device_sees_them() {
    let _s = serial();
    let (bar, t) = device(64, FakeBar::qemu_features());
    let mut disk = Disk::new(t).unwrap();
    let mut buf = DmaBuffer::new(4096).unwrap();
    assert_eq!(disk.read(0, &mut buf[..0]), Err(DiskError::BadLength { len: 0 }));
    assert_eq!(disk.write(0, &buf[..513]), Err(DiskError::BadLength { len: 513 }));
    assert_eq!(
        disk.read(62, &mut buf[..3 * SECTOR]),
        Err(DiskError::OutOfRange { sector: 62, sectors: 3, capacity: 64 })
    );
    assert_eq!(
        disk.write(u64::MAX, &buf[..SECTOR]),
        Err(DiskError::OutOfRange { sector: u64::MAX, sectors: 1, capacity: 64 })
    );
    assert_eq!(bar.dev().requests, 0, "refused requests must not reach the device");
    fill(&mut buf[..2 * SECTOR], 3, 62);
    disk.write(62, &buf[..2 * SECTOR]).unwrap();
    buf.fill(0);
    disk.read(62, &mut buf[..2 * SECTOR]).unwrap();
    let mut want = vec![0u8; 2 * SECTOR];
    fill(&mut want, 3, 62);
    assert_eq!(&buf[..2 * SECTOR], &want[..]);
    disk.flush().unwrap();
    let requests = bar.dev().requests;
    let flushes = bar.dev().flushes;
    assert_eq!((disk.requests, requests, flushes), (3, 3, 1));
    drop(buf);
    drop(disk);
    assert_eq!(hal::stats().pages_in_use, 0);
}

#[test]
fn a_hung_device_times_out_and_is_reset() {
    let _s = serial();
    let (bar, t) = device(64, FakeBar::qemu_features());
    let mut disk = Disk::new(t).unwrap();
    disk.set_poll_limit(1000);
    bar.dev().stalled = true;
    let mut buf = DmaBuffer::new(4096).unwrap();
    assert_eq!(disk.read(5, &mut buf[..SECTOR]), Err(DiskError::Timeout { op: Op::Read, sector: 5, polls: 1000 }));
    // Reset before the buffer came back: the device can no longer DMA.
    assert_eq!(bar.dev().status, 0);
    assert_eq!(bar.dev().queue.enable, 0);
    assert_eq!(disk.write(5, &buf[..SECTOR]), Err(DiskError::Dead));
    assert_eq!(disk.flush(), Err(DiskError::Dead));
    drop(buf);
    drop(disk);
    // The timed-out request's bounce pages (header, status) were released
    // after the reset, without copying back.
    assert_eq!(hal::stats().pages_in_use, 0);
    assert_eq!(hal::stats().abandoned_bounces, 2);
}
