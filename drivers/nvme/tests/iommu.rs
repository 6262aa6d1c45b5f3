//! The NVMe driver with the IOMMU on: the fake controller's DMA goes
//! through VT-d tables built by the `iommu` crate. DMA inside the grant
//! works; DMA anywhere else faults, leaves the target unchanged, is
//! recorded with the requester and reason, and fails only that command.
//! (The host-side model of the `dma_attack_blocked` acceptance test.)

mod fake;

use fake::{FakeConfig, FakeController, IommuContext, SharedMem};
use iommu::vtd::cap::{Cap, Ecap, Levels};
use iommu::vtd::fault::FaultReason;
use iommu::vtd::tables::{ContextConfig, DeviceSpace, RootTable};
use iommu::vtd::walk::WalkLimits;
use iommu::vtd::{Access, Bdf, FrameSource, Rights};
use nvme::driver::{Config, DmaRegion, Driver, Error};
use nvme::prp::DmaBuffer;
use nvme::status::ErrorKind;
use nvme::DmaMemory;
use std::sync::{Arc, Mutex};
use testrng::Rng;

/// QEMU 7.2 intel-iommu, caching-mode=on, aw-bits=39.
const CAP: Cap = Cap(0x00d2_008c_2226_0286);
const ECAP: Ecap = Ecap(0x0000_0000_00f0_0f5a);
const NVME: Bdf = Bdf { bus: 0, device: 3, function: 0 };
const MEM: usize = 32 << 20;
/// The driver's IOVAs are its physical addresses shifted by this, so a
/// missing translation can never pass for an identity one.
const IOVA_OFFSET: u64 = 0x40_0000_0000;
const REGION_PA: u64 = 0x10_0000;
const BUFFER_PA: u64 = 0x80_0000;
const BUFFER_PAGES: u64 = 512;
const TABLE_FRAMES_PA: u64 = 0x100_0000;
/// A page of "another process": never granted to the device.
const VICTIM_PA: u64 = 0x180_0000;
/// A page granted read-only (the device may read it, not write it).
const READ_ONLY_PA: u64 = 0x1a0_0000;

/// The driver's view of its DMA memory: IOVA -> its own mapping.
struct DriverMem(SharedMem);

impl DmaMemory for DriverMem {
    fn read(&self, iova: u64, buf: &mut [u8]) {
        self.0.read(iova - IOVA_OFFSET, buf)
    }
    fn write(&mut self, iova: u64, data: &[u8]) {
        self.0.write(iova - IOVA_OFFSET, data)
    }
}

struct TableFrames(u64, u64);
impl FrameSource for TableFrames {
    fn take_frame(&mut self) -> Option<u64> {
        (self.0 < self.1).then(|| {
            self.0 += 4096;
            self.0 - 4096
        })
    }
}

struct Setup {
    fake: FakeController,
    driver: Driver<fake::FakeRegs, DriverMem>,
    phys: SharedMem,
    faults: Arc<Mutex<Vec<(u64, Access, FaultReason)>>>,
    space: DeviceSpace,
}

fn setup() -> Setup {
    let mut phys = SharedMem::new(MEM);
    let mut frames = TableFrames(TABLE_FRAMES_PA, TABLE_FRAMES_PA + (1 << 20));
    let root = RootTable::create(&mut phys, &mut frames).unwrap();
    let config = ContextConfig { domain_id: 1, levels: Levels::Three, host_address_width: 39 };
    let space = root.attach(&mut phys, &mut frames, NVME, config, CAP).unwrap();
    let driver_config = Config::default();
    let region_len = driver_config.dma_bytes_needed();
    // The grant: the driver's queue memory and its buffers, read/write.
    for pa in (REGION_PA..REGION_PA + region_len).step_by(4096).chain((0..BUFFER_PAGES).map(|i| BUFFER_PA + i * 4096)) {
        space.map(&mut phys, &mut frames, pa + IOVA_OFFSET, pa, Rights::READ_WRITE).unwrap();
    }
    space.map(&mut phys, &mut frames, READ_ONLY_PA + IOVA_OFFSET, READ_ONLY_PA, Rights::READ).unwrap();
    phys.write(VICTIM_PA, &[0xaa; 4096]);
    phys.write(READ_ONLY_PA, &[0x77; 4096]);
    let faults = Arc::new(Mutex::new(Vec::new()));
    let ctx = IommuContext {
        root_table: root.pa(),
        bdf: NVME,
        limits: WalkLimits::from_registers(CAP, ECAP, 39),
        faults: faults.clone(),
    };
    let fake = FakeController::start_with(FakeConfig::default(), phys.clone(), Some(ctx));
    let region = DmaRegion { base: REGION_PA + IOVA_OFFSET, len: region_len };
    let driver =
        Driver::init(fake.regs(), DriverMem(phys.clone()), region, driver_config).expect("init through the IOMMU");
    Setup { fake, driver, phys, faults, space }
}

fn buffer_iovas() -> Vec<u64> {
    (0..BUFFER_PAGES).map(|i| BUFFER_PA + IOVA_OFFSET + i * 4096).collect()
}

fn expect_transfer_error(r: Result<(), Error>) {
    match r {
        Err(Error::Command { error, .. }) => assert_eq!(error.kind, ErrorKind::DataTransferError),
        other => panic!("expected a Data Transfer Error, got {other:?}"),
    }
}

#[test]
fn io_works_through_the_iommu() {
    let mut s = setup();
    let pages = buffer_iovas();
    let mut rng = Rng::new(99);
    let mut model = vec![0u8; 4096 * 512];
    for i in 0..300u32 {
        let x = rng.next_u64();
        let blocks = 1 + x % 64;
        let lba = (x >> 8) % (4096 - blocks);
        let buf = DmaBuffer { pages: &pages, offset: ((x >> 24) % 1024) as u32 * 4, len: (blocks * 512) as u32 };
        let at = (lba * 512) as usize;
        if i % 2 == 0 {
            let data: Vec<u8> = (0..buf.len).map(|k| (k as u64 ^ x) as u8).collect();
            write_buffer(&mut s.driver, &buf, &data);
            s.driver.write(0, lba, &buf).unwrap();
            model[at..at + data.len()].copy_from_slice(&data);
        } else {
            s.driver.read(1, lba, &buf).unwrap();
            assert_eq!(read_buffer(&s.driver, &buf), model[at..at + buf.len as usize]);
        }
    }
    assert!(s.faults.lock().unwrap().is_empty(), "faults: {:?}", s.faults.lock().unwrap());
}

fn write_buffer(d: &mut Driver<fake::FakeRegs, DriverMem>, buf: &DmaBuffer, data: &[u8]) {
    let mut pos = buf.offset as usize;
    let mut done = 0;
    while done < data.len() {
        let n = (4096 - pos % 4096).min(data.len() - done);
        d.mem_mut().write(buf.pages[pos / 4096] + (pos % 4096) as u64, &data[done..done + n]);
        done += n;
        pos += n;
    }
}

fn read_buffer(d: &Driver<fake::FakeRegs, DriverMem>, buf: &DmaBuffer) -> Vec<u8> {
    let mut out = vec![0; buf.len as usize];
    let mut pos = buf.offset as usize;
    let mut done = 0;
    while done < out.len() {
        let n = (4096 - pos % 4096).min(out.len() - done);
        d.mem().read(buf.pages[pos / 4096] + (pos % 4096) as u64, &mut out[done..done + n]);
        done += n;
        pos += n;
    }
    out
}

#[test]
fn dma_outside_the_grant_faults_and_changes_nothing() {
    let mut s = setup();
    let victim_before = {
        let mut b = vec![0; 4096];
        s.phys.read(VICTIM_PA, &mut b);
        b
    };
    // Put something recognisable on the disk for the attack to read out.
    let pages = buffer_iovas();
    let buf = DmaBuffer { pages: &pages, offset: 0, len: 4096 };
    write_buffer(&mut s.driver, &buf, &[0x55; 4096]);
    s.driver.write(0, 0, &buf).unwrap();

    // 1. The victim's page at the IOVA it would have if granted.
    let attack = [VICTIM_PA + IOVA_OFFSET];
    expect_transfer_error(s.driver.read(0, 0, &DmaBuffer { pages: &attack, offset: 0, len: 4096 }));
    // 2. The victim's physical address used as an IOVA (guessing identity).
    let attack = [VICTIM_PA];
    expect_transfer_error(s.driver.read(0, 0, &DmaBuffer { pages: &attack, offset: 0, len: 4096 }));
    // 3. The I/O page tables themselves (kernel-owned frames).
    let attack = [TABLE_FRAMES_PA];
    expect_transfer_error(s.driver.read(0, 0, &DmaBuffer { pages: &attack, offset: 0, len: 4096 }));
    // 4. Hidden in a PRP list: two granted pages, then the victim.
    let mixed = [pages[10], pages[11], VICTIM_PA + IOVA_OFFSET];
    expect_transfer_error(s.driver.read(0, 0, &DmaBuffer { pages: &mixed, offset: 0, len: 3 * 4096 }));

    let mut after = vec![0; 4096];
    s.phys.read(VICTIM_PA, &mut after);
    assert_eq!(after, victim_before, "the victim page changed");
    let faults = s.faults.lock().unwrap().clone();
    let expected = [VICTIM_PA + IOVA_OFFSET, VICTIM_PA, TABLE_FRAMES_PA, VICTIM_PA + IOVA_OFFSET];
    assert_eq!(faults.len(), expected.len(), "{faults:x?}");
    for ((iova, access, reason), want) in faults.iter().zip(expected) {
        // A Read command makes the device *write* memory.
        assert_eq!((*iova, *access, *reason), (want, Access::Write, FaultReason::WriteNotPermitted));
    }
    // The tables still translate the grant: the driver carries on.
    s.driver.read(1, 0, &buf).unwrap();
    assert_eq!(read_buffer(&s.driver, &buf), vec![0x55; 4096]);
}

#[test]
fn read_only_grants_allow_only_device_reads() {
    let mut s = setup();
    let ro = [READ_ONLY_PA + IOVA_OFFSET];
    let buf = DmaBuffer { pages: &ro, offset: 0, len: 4096 };
    // Write command: the device reads the page. Allowed.
    s.driver.write(0, 8, &buf).unwrap();
    assert!(s.fake.disk.lock().unwrap().data[8 * 512..8 * 512 + 4096].iter().all(|&b| b == 0x77));
    // Read command: the device would write the page. Refused.
    expect_transfer_error(s.driver.read(0, 0, &buf));
    let mut page = vec![0; 4096];
    s.phys.read(READ_ONLY_PA, &mut page);
    assert!(page.iter().all(|&b| b == 0x77));
    assert_eq!(s.faults.lock().unwrap()[0].2, FaultReason::WriteNotPermitted);
    // Revoking the grant (unmap; the model has no IOTLB to invalidate):
    // now even device reads of it fault.
    let mut phys = s.phys.clone();
    s.space.unmap(&mut phys, READ_ONLY_PA + IOVA_OFFSET).unwrap();
    expect_transfer_error(s.driver.write(0, 8, &buf));
    assert_eq!(s.faults.lock().unwrap()[1], (READ_ONLY_PA + IOVA_OFFSET, Access::Read, FaultReason::ReadNotPermitted));
}
