//! Register sequences of one remapping unit, generic over the register
//! access so the kernel supplies only `read`/`write` of its MMIO mapping
//! and the sequences are tested against a model on the host.
//!
//! Every wait is a bounded poll: a unit that never acknowledges gives
//! `UnitError::Timeout` naming what was awaited, never a hang.

use super::cap::{Cap, Ecap};
use super::fault::FaultRecord;
use super::invalidation::{
    ccmd_completion, iotlb_completion, wait_descriptor, ContextInvalidation, Granularity, InvalidationError,
    InvalidationQueue, IotlbInvalidation, QueueError,
};
use super::regs::{gcmd, gcmd_value, offset, rtaddr_legacy, FaultStatus};
use super::PhysMem;
use core::num::NonZeroU32;

/// MMIO access to a unit's register page (offsets from DRHD.register_base).
pub trait UnitRegisters {
    fn read32(&self, offset: u64) -> u32;
    fn write32(&mut self, offset: u64, value: u32);
    fn read64(&self, offset: u64) -> u64;
    fn write64(&mut self, offset: u64, value: u64);
    /// Called on every turn of a polling loop.
    fn relax(&self) {
        core::hint::spin_loop();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitError {
    Timeout {
        waiting_for: &'static str,
    },
    /// The unit reported it did not perform an invalidation (granularity 0).
    InvalidationRefused,
    Invalidation(InvalidationError),
    Queue(QueueError),
    /// FSTS.IQE: the unit found a bad descriptor in the invalidation queue.
    InvalidationQueueError,
    /// Queued invalidation is on: the register interface must not be used.
    QueuedInvalidationActive,
    /// ECAP says the unit has no queued invalidation.
    Unsupported {
        feature: &'static str,
    },
}

/// What a fault drain found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FaultSummary {
    pub records: u32,
    /// FSTS.PFO was set: faults were lost because every record was full.
    pub overflowed: bool,
}

pub struct Unit<R: UnitRegisters> {
    regs: R,
    cap: Cap,
    ecap: Ecap,
    budget: u64,
    queued: bool,
}

impl<R: UnitRegisters> Unit<R> {
    /// Reads CAP and ECAP. `poll_budget` bounds every wait.
    pub fn new(regs: R, poll_budget: u64) -> Unit<R> {
        let cap = Cap(regs.read64(offset::CAP));
        let ecap = Ecap(regs.read64(offset::ECAP));
        let queued = regs.read32(offset::GSTS) & gcmd::QIE != 0;
        Unit { regs, cap, ecap, budget: poll_budget.max(1), queued }
    }

    pub fn cap(&self) -> Cap {
        self.cap
    }
    pub fn ecap(&self) -> Ecap {
        self.ecap
    }
    pub fn regs(&self) -> &R {
        &self.regs
    }
    pub fn regs_mut(&mut self) -> &mut R {
        &mut self.regs
    }

    fn wait(&self, what: &'static str, mut done: impl FnMut(&R) -> bool) -> Result<(), UnitError> {
        for _ in 0..self.budget {
            if done(&self.regs) {
                return Ok(());
            }
            self.regs.relax();
        }
        Err(UnitError::Timeout { waiting_for: what })
    }

    /// Sets or clears one persistent GCMD bit and waits for GSTS to agree.
    fn command(&mut self, bit: u32, set: bool, what: &'static str) -> Result<(), UnitError> {
        let gsts = self.regs.read32(offset::GSTS);
        self.regs.write32(offset::GCMD, gcmd_value(gsts, bit, set));
        self.wait(what, |r| (r.read32(offset::GSTS) & bit != 0) == set)
    }

    /// Loads the root table address (legacy mode) and latches it with SRTP.
    /// The caller then invalidates the context cache and IOTLB globally.
    pub fn set_root_table(&mut self, root_table_pa: u64) -> Result<(), UnitError> {
        self.regs.write64(offset::RTADDR, rtaddr_legacy(root_table_pa));
        let gsts = self.regs.read32(offset::GSTS);
        self.regs.write32(offset::GCMD, gcmd_value(gsts, gcmd::SRTP, true));
        // RTPS is set once the pointer is latched.
        self.wait("GSTS.RTPS", |r| r.read32(offset::GSTS) & gcmd::SRTP != 0)
    }

    /// Flushes the write buffer, on units that need it (CAP.RWBF).
    pub fn flush_write_buffer(&mut self) -> Result<(), UnitError> {
        if !self.cap.required_write_buffer_flushing() {
            return Ok(());
        }
        let gsts = self.regs.read32(offset::GSTS);
        self.regs.write32(offset::GCMD, gcmd_value(gsts, gcmd::WBF, true));
        self.wait("GSTS.WBFS clear", |r| r.read32(offset::GSTS) & gcmd::WBF == 0)
    }

    /// Context-cache invalidation through CCMD.
    pub fn invalidate_context(&mut self, request: ContextInvalidation) -> Result<Granularity, UnitError> {
        if self.queued {
            return Err(UnitError::QueuedInvalidationActive);
        }
        let value = request.ccmd_value().map_err(UnitError::Invalidation)?;
        self.regs.write64(offset::CCMD, value);
        let mut done = None;
        self.wait("CCMD.ICC clear", |r| {
            done = ccmd_completion(r.read64(offset::CCMD));
            done.is_some()
        })?;
        match done {
            Some(Granularity::Failed) | None => Err(UnitError::InvalidationRefused),
            Some(g) => Ok(g),
        }
    }

    /// IOTLB invalidation through the IVA/IOTLB registers at ECAP.IRO.
    pub fn invalidate_iotlb(&mut self, request: IotlbInvalidation) -> Result<Granularity, UnitError> {
        if self.queued {
            return Err(UnitError::QueuedInvalidationActive);
        }
        let (iva, iotlb) = request.register_values(self.cap).map_err(UnitError::Invalidation)?;
        let base = self.ecap.iotlb_register_offset();
        self.regs.write64(base, iva);
        self.regs.write64(base + 8, iotlb);
        let mut done = None;
        self.wait("IOTLB.IVT clear", |r| {
            done = iotlb_completion(r.read64(base + 8));
            done.is_some()
        })?;
        match done {
            Some(Granularity::Failed) | None => Err(UnitError::InvalidationRefused),
            Some(g) => Ok(g),
        }
    }

    /// Turns DMA remapping on or off (GCMD.TE / GSTS.TES).
    pub fn set_translation(&mut self, enable: bool) -> Result<(), UnitError> {
        self.command(gcmd::TE, enable, "GSTS.TES")
    }

    /// Switches invalidation to the queue at `queue` (empty, tail 0).
    pub fn enable_queued_invalidation(&mut self, queue: &InvalidationQueue) -> Result<(), UnitError> {
        if !self.ecap.queued_invalidation() {
            return Err(UnitError::Unsupported { feature: "queued invalidation" });
        }
        self.regs.write64(offset::IQT, 0);
        self.regs.write64(offset::IQA, queue.iqa_value());
        self.command(gcmd::QIE, true, "GSTS.QIES")?;
        self.queued = true;
        Ok(())
    }

    /// Queues `descriptors` and a wait descriptor that writes `token` to
    /// the 4-byte status word at `status_pa`, hands them to the unit, and
    /// polls the status word (cleared first; hence a non-zero token).
    pub fn queue_and_wait(
        &mut self,
        mem: &mut impl PhysMem,
        queue: &mut InvalidationQueue,
        descriptors: &[[u64; 2]],
        status_pa: u64,
        token: NonZeroU32,
    ) -> Result<(), UnitError> {
        let token = token.get();
        let shift = (status_pa & 4) * 8;
        let word = mem.read_u64(status_pa & !7);
        mem.write_u64(status_pa & !7, word & !(0xffff_ffffu64 << shift));
        for d in descriptors.iter().copied().chain(core::iter::once(wait_descriptor(status_pa, token))) {
            let mut pushed = false;
            for _ in 0..self.budget {
                match queue.push(mem, self.regs.read64(offset::IQH), d) {
                    Ok(()) => {
                        pushed = true;
                        break;
                    }
                    Err(QueueError::Full) => {
                        // Let the unit consume what is queued so far.
                        self.regs.write64(offset::IQT, queue.iqt_value());
                        self.regs.relax();
                    }
                    Err(e) => return Err(UnitError::Queue(e)),
                }
            }
            if !pushed {
                return Err(UnitError::Timeout { waiting_for: "invalidation queue space" });
            }
        }
        self.regs.write64(offset::IQT, queue.iqt_value());
        for _ in 0..self.budget {
            if (mem.read_u64(status_pa & !7) >> shift) as u32 == token {
                return Ok(());
            }
            if FaultStatus(self.regs.read32(offset::FSTS)).invalidation_queue_error() {
                return Err(UnitError::InvalidationQueueError);
            }
            self.regs.relax();
        }
        Err(UnitError::Timeout { waiting_for: "invalidation wait descriptor" })
    }

    /// Loads the interrupt remapping table (IRTA value from
    /// `irq::irta_value`) and latches it with SIRTP. Then invalidate the
    /// interrupt entry cache (queued invalidation is required for that).
    pub fn set_interrupt_table(&mut self, irta: u64) -> Result<(), UnitError> {
        if !self.ecap.interrupt_remapping() {
            return Err(UnitError::Unsupported { feature: "interrupt remapping" });
        }
        self.regs.write64(offset::IRTA, irta);
        let gsts = self.regs.read32(offset::GSTS);
        self.regs.write32(offset::GCMD, gcmd_value(gsts, gcmd::SIRTP, true));
        self.wait("GSTS.IRTPS", |r| r.read32(offset::GSTS) & gcmd::SIRTP != 0)
    }

    /// Turns interrupt remapping on or off (GCMD.IRE / GSTS.IRES).
    pub fn set_interrupt_remapping(&mut self, enable: bool) -> Result<(), UnitError> {
        self.command(gcmd::IRE, enable, "GSTS.IRES")
    }

    /// Programs the fault-event interrupt (FEDATA/FEADDR) to `vector` on
    /// the local APIC `apic_id` and unmasks it.
    pub fn set_fault_interrupt(&mut self, apic_id: u8, vector: u8) {
        self.regs.write32(offset::FEDATA, vector as u32);
        self.regs.write32(offset::FEADDR, 0xfee0_0000 | (apic_id as u32) << 12);
        self.regs.write32(offset::FEUADDR, 0);
        self.regs.write32(offset::FECTL, 0);
    }

    /// Reads every pending fault record, starting at FSTS.FRI and wrapping
    /// over the CAP.NFR records, hands each to `report`, clears it, and
    /// clears the overflow flag. Call from the fault-event interrupt.
    pub fn drain_faults(&mut self, mut report: impl FnMut(FaultRecord)) -> FaultSummary {
        let fsts = FaultStatus(self.regs.read32(offset::FSTS));
        let mut summary = FaultSummary { records: 0, overflowed: fsts.overflow() };
        let count = self.cap.fault_recording_count();
        if fsts.pending() {
            let first = fsts.fault_record_index() as u32 % count;
            for k in 0..count {
                let at = self.cap.fault_record_offset((first + k) % count);
                let high = self.regs.read64(at + 8);
                let Some(record) = FaultRecord::decode(self.regs.read64(at), high) else {
                    break;
                };
                report(record);
                summary.records += 1;
                // F is write-1-to-clear; the other bits are read-only.
                self.regs.write64(at + 8, FaultRecord::CLEAR_HIGH);
            }
        }
        let clear = fsts.clear_value();
        if clear != 0 {
            self.regs.write32(offset::FSTS, clear);
        }
        summary
    }
}
