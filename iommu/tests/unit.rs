//! The register sequences of `vtd::unit` against a model of a remapping
//! unit that behaves like QEMU's: GCMD/GSTS, CCMD, IOTLB registers, the
//! invalidation queue, fault recording, and an IOTLB that caches
//! translations until it is invalidated.

mod common;

use common::{EmulatedMemory, Frames};
use iommu::vtd::cap::{Cap, Ecap, Levels};
use iommu::vtd::fault::{FaultReason, FaultRecord};
use iommu::vtd::invalidation::{ContextInvalidation, Granularity, InvalidationQueue, IotlbInvalidation};
use iommu::vtd::regs::{gcmd, offset};
use iommu::vtd::tables::{ContextConfig, RootTable};
use iommu::vtd::unit::{FaultSummary, Unit, UnitError, UnitRegisters};
use iommu::vtd::walk::{translate, WalkLimits};
use iommu::vtd::{Access, Bdf, PhysMem, Rights};
use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::rc::Rc;

const QEMU_CAP: u64 = 0x00d2_008c_2226_0286;
const QEMU_ECAP: u64 = 0x0000_0000_00f0_0f5a;
const NVME: Bdf = Bdf { bus: 0, device: 3, function: 0 };

/// Memory shared by the test (as the kernel) and the model (as the unit).
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<EmulatedMemory>>);

impl PhysMem for Shared {
    fn read_u64(&self, pa: u64) -> u64 {
        self.0.borrow().read_u64(pa)
    }
    fn write_u64(&mut self, pa: u64, v: u64) {
        self.0.borrow_mut().write_u64(pa, v)
    }
}

#[derive(Default)]
struct State {
    cap: u64,
    ecap: u64,
    gsts: u32,
    rtaddr: u64,
    latched_root: Option<u64>,
    ccmd: u64,
    iva: u64,
    iotlb: u64,
    iqa: u64,
    iqh: u64,
    fsts_pfo: bool,
    fsts_iqe: bool,
    records: HashMap<u32, [u64; 2]>,
    fri: u32,
    fe: [u32; 4],
    /// Cached translations: (domain id, page) -> (pa page, rights).
    tlb: HashMap<(u16, u64), (u64, Rights)>,
    log: Vec<String>,
    /// Misbehaviours for error-path tests.
    ignore_te: bool,
    refuse_invalidations: bool,
}

#[derive(Clone)]
struct FakeUnit {
    s: Rc<RefCell<State>>,
    mem: Shared,
}

impl FakeUnit {
    fn new(cap: u64, ecap: u64, mem: Shared) -> FakeUnit {
        FakeUnit { s: Rc::new(RefCell::new(State { cap, ecap, ..State::default() })), mem }
    }

    fn nfr(&self) -> u32 {
        Cap(self.s.borrow().cap).fault_recording_count()
    }

    /// A DMA request from `bdf`: through the IOTLB, else a table walk; a
    /// fault is recorded the way the hardware does.
    fn dma(&self, bdf: Bdf, iova: u64, access: Access) -> Result<u64, FaultReason> {
        let mut s = self.s.borrow_mut();
        let root = s.latched_root.expect("root table latched");
        let did = {
            // Context entry's domain id (for the IOTLB tag).
            let root_lo = self.mem.read_u64(root + bdf.bus as u64 * 16);
            let ctx = (root_lo & !0xfff) + bdf.devfn() as u64 * 16;
            (self.mem.read_u64(ctx + 8) >> 8) as u16
        };
        if let Some(&(page, rights)) = s.tlb.get(&(did, iova >> 12)) {
            if rights.allows(access) {
                return Ok(page | (iova & 0xfff));
            }
        }
        let limits = WalkLimits::from_registers(Cap(s.cap), Ecap(s.ecap), 39);
        match translate(&self.mem, root, bdf, iova, access, &limits) {
            Ok(t) => {
                s.tlb.insert((t.domain_id, iova >> 12), (t.pa & !0xfff, t.rights));
                Ok(t.pa)
            }
            Err(f) => {
                let nfr = Cap(s.cap).fault_recording_count();
                let free =
                    (0..nfr).map(|k| (s.fri + k) % nfr).find(|i| s.records.get(i).is_none_or(|r| r[1] >> 63 == 0));
                match free {
                    Some(i) => {
                        let t = if access == Access::Read { 1u64 << 62 } else { 0 };
                        let high = 1 << 63 | t | (f.reason.code() as u64) << 32 | bdf.source_id() as u64;
                        s.records.insert(i, [iova & !0xfff, high]);
                    }
                    None => s.fsts_pfo = true,
                }
                Err(f.reason)
            }
        }
    }

    fn run_queue(&self, tail: u64) {
        let mut s = self.s.borrow_mut();
        let base = s.iqa & !0xfff;
        let entries = 256u64 << (s.iqa & 7);
        let mut head = s.iqh >> 4;
        let tail = tail >> 4;
        let mut mem = self.mem.clone();
        while head != tail {
            let lo = mem.read_u64(base + head * 16);
            let hi = mem.read_u64(base + head * 16 + 8);
            match lo & 0xf {
                1 => {
                    s.log.push(format!("qi context {lo:#x}"));
                }
                2 => {
                    s.log.push(format!("qi iotlb {lo:#x} {hi:#x}"));
                    s.tlb.clear();
                }
                5 => {
                    s.log.push("qi wait".to_string());
                    let addr = hi & !3;
                    let word = mem.read_u64(addr & !7);
                    let shift = (addr & 4) * 8;
                    let data = lo >> 32;
                    mem.write_u64(addr & !7, (word & !(0xffff_ffffu64 << shift)) | data << shift);
                }
                _ => {
                    s.fsts_iqe = true;
                    s.log.push("qi bad descriptor".to_string());
                    break;
                }
            }
            head = (head + 1) % entries;
        }
        s.iqh = head << 4;
    }
}

impl UnitRegisters for FakeUnit {
    fn read32(&self, off: u64) -> u32 {
        let s = self.s.borrow();
        match off {
            offset::GSTS => s.gsts,
            offset::FSTS => {
                let nfr = Cap(s.cap).fault_recording_count();
                let pending =
                    (0..nfr).map(|k| (s.fri + k) % nfr).find(|i| s.records.get(i).is_some_and(|r| r[1] >> 63 == 1));
                let mut v = s.fsts_pfo as u32 | (s.fsts_iqe as u32) << 4;
                if let Some(i) = pending {
                    v |= 2 | i << 8;
                }
                v
            }
            _ => 0,
        }
    }

    fn write32(&mut self, off: u64, v: u32) {
        let mut s = self.s.borrow_mut();
        match off {
            offset::GCMD => {
                s.log.push(format!("gcmd {v:#010x}"));
                let mut keep = v & gcmd::PERSISTENT;
                if s.ignore_te {
                    keep = (keep & !gcmd::TE) | (s.gsts & gcmd::TE);
                }
                let rtps = if v & gcmd::SRTP != 0 {
                    s.latched_root = Some(s.rtaddr & !0xfff);
                    gcmd::SRTP
                } else {
                    s.gsts & gcmd::SRTP
                };
                let irtps = if v & gcmd::SIRTP != 0 { gcmd::SIRTP } else { s.gsts & gcmd::SIRTP };
                s.gsts = keep | rtps | irtps;
            }
            offset::FSTS => {
                if v & 1 != 0 {
                    s.fsts_pfo = false;
                }
                if v & 0x10 != 0 {
                    s.fsts_iqe = false;
                }
            }
            offset::FECTL => s.fe[0] = v,
            offset::FEDATA => s.fe[1] = v,
            offset::FEADDR => s.fe[2] = v,
            offset::FEUADDR => s.fe[3] = v,
            _ => {}
        }
    }

    fn read64(&self, off: u64) -> u64 {
        let s = self.s.borrow();
        let iro = Ecap(s.ecap).iotlb_register_offset();
        let fro = Cap(s.cap).fault_recording_offset();
        match off {
            offset::CAP => s.cap,
            offset::ECAP => s.ecap,
            offset::CCMD => s.ccmd,
            offset::IQH => s.iqh,
            o if o == iro + 8 => s.iotlb,
            o if o >= fro && o < fro + 16 * Cap(s.cap).fault_recording_count() as u64 => {
                let i = ((o - fro) / 16) as u32;
                s.records.get(&i).map(|r| r[((o - fro) % 16 / 8) as usize]).unwrap_or(0)
            }
            _ => 0,
        }
    }

    fn write64(&mut self, off: u64, v: u64) {
        let (iro, fro, nfr) = {
            let s = self.s.borrow();
            (Ecap(s.ecap).iotlb_register_offset(), Cap(s.cap).fault_recording_offset(), self.nfr())
        };
        if off == offset::IQT {
            self.run_queue(v);
            return;
        }
        let mut s = self.s.borrow_mut();
        match off {
            offset::RTADDR => s.rtaddr = v,
            offset::IQA => s.iqa = v,
            offset::CCMD => {
                s.log.push(format!("ccmd {v:#x}"));
                // Done at once, with the requested granularity as actual.
                let g = if s.refuse_invalidations { 0 } else { (v >> 61) & 3 };
                s.ccmd = (v & !(1 << 63) & !(3 << 59)) | g << 59;
            }
            o if o == iro => s.iva = v,
            o if o == iro + 8 => {
                let line = format!("iotlb {:#x} {v:#x}", s.iva);
                s.log.push(line);
                let g = if s.refuse_invalidations { 0 } else { (v >> 60) & 3 };
                s.iotlb = (v & !(1 << 63) & !(3 << 57)) | g << 57;
                s.tlb.clear();
            }
            o if o >= fro && o < fro + 16 * nfr as u64 && (o - fro) % 16 == 8 => {
                let i = ((o - fro) / 16) as u32;
                if v >> 63 == 1 {
                    if let Some(r) = s.records.get_mut(&i) {
                        r[1] &= !(1 << 63);
                    }
                }
            }
            _ => {}
        }
    }
}

fn setup(cap: u64, ecap: u64) -> (Shared, FakeUnit, Unit<FakeUnit>) {
    let mem = Shared::default();
    let fake = FakeUnit::new(cap, ecap, mem.clone());
    let unit = Unit::new(fake.clone(), 10_000);
    (mem, fake, unit)
}

#[test]
fn bring_up_sequence() {
    let (mut mem, fake, mut unit) = setup(QEMU_CAP, QEMU_ECAP);
    assert_eq!(unit.cap(), Cap(QEMU_CAP));
    let mut frames = Frames::new(0x100_0000, 16);
    let root = RootTable::create(&mut mem, &mut frames).unwrap();
    unit.set_root_table(root.pa()).unwrap();
    assert_eq!(fake.s.borrow().latched_root, Some(root.pa()));
    assert_eq!(unit.invalidate_context(ContextInvalidation::Global), Ok(Granularity::Global));
    assert_eq!(unit.invalidate_iotlb(IotlbInvalidation::Global), Ok(Granularity::Global));
    unit.flush_write_buffer().unwrap();
    unit.set_translation(true).unwrap();
    assert!(fake.s.borrow().gsts & gcmd::TE != 0);
    let log = fake.s.borrow().log.clone();
    assert_eq!(
        log,
        vec![
            "gcmd 0x40000000".to_string(),
            "ccmd 0xa000000000000000".to_string(),
            "iotlb 0x0 0x9003000000000000".to_string(),
            "gcmd 0x80000000".to_string(),
        ]
    );
    // Interrupt remapping: table pointer latched, IRE on, TE kept.
    unit.set_interrupt_table(iommu::vtd::irq::irta_value(0x40_0000, 7, false)).unwrap();
    unit.set_interrupt_remapping(true).unwrap();
    assert_eq!(fake.s.borrow().gsts & (gcmd::TE | gcmd::IRE | gcmd::SIRTP), gcmd::TE | gcmd::IRE | gcmd::SIRTP);
    let (_m, _f, mut no_ir) = setup(QEMU_CAP, QEMU_ECAP & !8);
    assert_eq!(no_ir.set_interrupt_table(0x40_0000), Err(UnitError::Unsupported { feature: "interrupt remapping" }));
    unit.set_fault_interrupt(2, 0x40);
    assert_eq!(fake.s.borrow().fe, [0, 0x40, 0xfee0_2000, 0]);
}

#[test]
fn queued_invalidation_replaces_the_registers() {
    let (mut mem, fake, mut unit) = setup(QEMU_CAP, QEMU_ECAP);
    unit.set_translation(true).unwrap();
    let mut queue = InvalidationQueue::new(0x20_0000, 0).unwrap();
    unit.enable_queued_invalidation(&queue).unwrap();
    assert_eq!(fake.s.borrow().gsts & (gcmd::TE | gcmd::QIE), gcmd::TE | gcmd::QIE, "QIE added, TE kept");
    let cap = unit.cap();
    let descriptors = [
        ContextInvalidation::Device { domain_id: 1, source_id: NVME.source_id(), function_mask: 0 }
            .descriptor()
            .unwrap(),
        IotlbInvalidation::Domain { domain_id: 1 }.descriptor(cap).unwrap(),
    ];
    unit.queue_and_wait(&mut mem, &mut queue, &descriptors, 0x30_0004, NonZeroU32::new(7).unwrap()).unwrap();
    assert_eq!(mem.read_u64(0x30_0000) >> 32, 7);
    assert_eq!(fake.s.borrow().log[2..].len(), 3, "{:?}", fake.s.borrow().log);
    // The register interface is now off limits.
    assert_eq!(unit.invalidate_iotlb(IotlbInvalidation::Global), Err(UnitError::QueuedInvalidationActive));
    // More descriptors than the 256-entry ring holds: the tail is handed
    // over as the ring fills.
    let many = vec![IotlbInvalidation::Global.descriptor(cap).unwrap(); 600];
    unit.queue_and_wait(&mut mem, &mut queue, &many, 0x30_0000, NonZeroU32::new(9).unwrap()).unwrap();
    assert_eq!(mem.read_u64(0x30_0000) & 0xffff_ffff, 9);
    assert_eq!(fake.s.borrow().log.iter().filter(|l| l.starts_with("qi iotlb")).count(), 601);
    // A descriptor the unit rejects surfaces as IQE.
    let r = unit.queue_and_wait(&mut mem, &mut queue, &[[0xf, 0]], 0x30_0000, NonZeroU32::new(10).unwrap());
    assert_eq!(r, Err(UnitError::InvalidationQueueError));
}

#[test]
fn misbehaving_units_give_errors_not_hangs() {
    let (_mem, fake, mut unit) = setup(QEMU_CAP, QEMU_ECAP);
    fake.s.borrow_mut().ignore_te = true;
    assert_eq!(unit.set_translation(true), Err(UnitError::Timeout { waiting_for: "GSTS.TES" }));
    fake.s.borrow_mut().refuse_invalidations = true;
    assert_eq!(unit.invalidate_context(ContextInvalidation::Global), Err(UnitError::InvalidationRefused));
    assert_eq!(unit.invalidate_iotlb(IotlbInvalidation::Domain { domain_id: 1 }), Err(UnitError::InvalidationRefused));
    let (_m, _f, mut no_qi) = setup(QEMU_CAP, QEMU_ECAP & !2);
    let q = InvalidationQueue::new(0x1000, 0).unwrap();
    assert_eq!(no_qi.enable_queued_invalidation(&q), Err(UnitError::Unsupported { feature: "queued invalidation" }));
}

#[test]
fn fault_records_are_drained_in_order_and_cleared() {
    // Four recording registers (NFR = 3).
    let cap = (QEMU_CAP & !(0xff << 40)) | 3 << 40;
    let (_mem, fake, mut unit) = setup(cap, QEMU_ECAP);
    {
        let mut s = fake.s.borrow_mut();
        s.fri = 2;
        s.records.insert(2, [0x1000, 1 << 63 | 5 << 32 | 0x18]);
        s.records.insert(3, [0x2000, 1 << 63 | 1 << 62 | 6 << 32 | 0x18]);
        s.records.insert(0, [0x3000, 1 << 63 | 2 << 32 | 0x20]);
        s.fsts_pfo = true;
    }
    let mut seen = Vec::new();
    let summary = unit.drain_faults(|r| seen.push((r.address, r.reason, r.access)));
    assert_eq!(summary, FaultSummary { records: 3, overflowed: true });
    assert_eq!(
        seen,
        vec![
            (0x1000, FaultReason::WriteNotPermitted, Access::Write),
            (0x2000, FaultReason::ReadNotPermitted, Access::Read),
            (0x3000, FaultReason::ContextEntryNotPresent, Access::Write),
        ]
    );
    assert_eq!(unit.drain_faults(|_| panic!("nothing pending")), FaultSummary::default());
}

/// The whole protocol: a device's DMA works while mapped, keeps working
/// through the stale IOTLB entry after `unmap` until the kernel
/// invalidates, and then faults, and the fault is recorded and drained.
#[test]
fn unmap_takes_effect_only_after_invalidation() {
    let (mut mem, fake, mut unit) = setup(QEMU_CAP, QEMU_ECAP);
    let mut frames = Frames::new(0x100_0000, 64);
    let root = RootTable::create(&mut mem, &mut frames).unwrap();
    let config = ContextConfig { domain_id: 1, levels: Levels::Three, host_address_width: 39 };
    let space = root.attach(&mut mem, &mut frames, NVME, config, unit.cap()).unwrap();
    unit.set_root_table(root.pa()).unwrap();
    unit.invalidate_context(ContextInvalidation::Global).unwrap();
    unit.invalidate_iotlb(IotlbInvalidation::Global).unwrap();
    unit.set_translation(true).unwrap();

    space.map(&mut mem, &mut frames, 0x5000, 0x7_7000, Rights::READ_WRITE).unwrap();
    // Caching mode: a new mapping needs an invalidation too; the model's
    // IOTLB is empty anyway, so the walk finds it.
    assert_eq!(fake.dma(NVME, 0x5010, Access::Write), Ok(0x7_7010));
    // Another page the driver was never granted: fault, recorded.
    assert_eq!(fake.dma(NVME, 0x9000, Access::Write), Err(FaultReason::WriteNotPermitted));

    space.unmap(&mut mem, 0x5000).unwrap();
    assert_eq!(fake.dma(NVME, 0x5010, Access::Write), Ok(0x7_7010), "stale IOTLB entry still translates");
    unit.invalidate_iotlb(IotlbInvalidation::for_page(unit.cap(), space.domain_id(), 0x5000)).unwrap();
    assert_eq!(fake.dma(NVME, 0x5010, Access::Read), Err(FaultReason::ReadNotPermitted));

    let mut faults: Vec<FaultRecord> = Vec::new();
    let summary = unit.drain_faults(|r| faults.push(r));
    // QEMU's unit has one recording register: the second fault overflowed.
    assert_eq!(summary, FaultSummary { records: 1, overflowed: true });
    assert_eq!(faults[0].source, NVME);
    assert_eq!(faults[0].address, 0x9000);
    assert_eq!(
        faults[0].to_string(),
        "DMA write by 00:03.0 at 0x9000: write to a page without write permission (reason 0x5)"
    );
}
