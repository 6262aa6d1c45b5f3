//! Cache invalidation: the register interface (CCMD and IOTLB registers,
//! spec 11.4.5 and 11.4.8) and queued-invalidation descriptors (spec 6.5.2).
//!
//! Both interfaces take the same requests, so a request is built once and
//! encoded either way.

use super::cap::Cap;
use super::{PhysMem, PAGE_SIZE};

/// A context-cache invalidation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextInvalidation {
    Global,
    Domain {
        domain_id: u16,
    },
    /// One device; `function_mask` (0..=3) masks low bits of the function
    /// number, for multi-function devices sharing a context.
    Device {
        domain_id: u16,
        source_id: u16,
        function_mask: u8,
    },
}

/// An IOTLB invalidation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IotlbInvalidation {
    Global,
    Domain {
        domain_id: u16,
    },
    /// 2^`address_mask` pages starting at `address` (which must be aligned
    /// to that size) in one domain. `leaf_only` is the invalidation hint:
    /// only leaf entries changed, non-leaf caches may be kept.
    Pages {
        domain_id: u16,
        address: u64,
        address_mask: u8,
        leaf_only: bool,
    },
}

/// Granularity as the hardware reports it back (CAIG / IAIG fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// 0: the request was not performed (invalid request).
    Failed,
    Global,
    Domain,
    /// Device-selective (context cache) or page-selective (IOTLB).
    Selective,
}

impl Granularity {
    const fn from_bits(b: u64) -> Granularity {
        match b & 3 {
            0 => Granularity::Failed,
            1 => Granularity::Global,
            2 => Granularity::Domain,
            _ => Granularity::Selective,
        }
    }
}

/// Why a request could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidationError {
    /// Page-selective request whose address is not aligned to 2^mask pages.
    Misaligned {
        address: u64,
        address_mask: u8,
    },
    /// Page-selective request larger than CAP.MAMV allows, or PSI unsupported.
    MaskTooLarge {
        address_mask: u8,
        max: u8,
    },
    FunctionMaskTooLarge {
        function_mask: u8,
    },
}

impl ContextInvalidation {
    const fn granularity(self) -> u64 {
        match self {
            ContextInvalidation::Global => 1,
            ContextInvalidation::Domain { .. } => 2,
            ContextInvalidation::Device { .. } => 3,
        }
    }

    fn check(self) -> Result<(), InvalidationError> {
        if let ContextInvalidation::Device { function_mask, .. } = self {
            if function_mask > 3 {
                return Err(InvalidationError::FunctionMaskTooLarge { function_mask });
            }
        }
        Ok(())
    }

    /// (domain id, source id, function mask) fields, zero where unused.
    const fn fields(self) -> (u64, u64, u64) {
        match self {
            ContextInvalidation::Global => (0, 0, 0),
            ContextInvalidation::Domain { domain_id } => (domain_id as u64, 0, 0),
            ContextInvalidation::Device { domain_id, source_id, function_mask } => {
                (domain_id as u64, source_id as u64, function_mask as u64)
            }
        }
    }

    /// The value to write to CCMD (offset 0x28). ICC (bit 63) starts the
    /// invalidation; the hardware clears it when done.
    pub fn ccmd_value(self) -> Result<u64, InvalidationError> {
        self.check()?;
        let (did, sid, fm) = self.fields();
        Ok(1 << 63 | self.granularity() << 61 | fm << 32 | sid << 16 | did)
    }

    /// The 128-bit queued-invalidation descriptor (type 1), as (low, high).
    pub fn descriptor(self) -> Result<[u64; 2], InvalidationError> {
        self.check()?;
        let (did, sid, fm) = self.fields();
        Ok([0x1 | self.granularity() << 4 | did << 16 | sid << 32 | fm << 48, 0])
    }
}

/// Reads a CCMD value back: `None` while ICC is still set (in progress),
/// else the granularity the hardware actually performed.
pub const fn ccmd_completion(ccmd: u64) -> Option<Granularity> {
    if ccmd & (1 << 63) != 0 {
        None
    } else {
        Some(Granularity::from_bits(ccmd >> 59))
    }
}

impl IotlbInvalidation {
    const fn granularity(self) -> u64 {
        match self {
            IotlbInvalidation::Global => 1,
            IotlbInvalidation::Domain { .. } => 2,
            IotlbInvalidation::Pages { .. } => 3,
        }
    }

    const fn domain_id(self) -> u64 {
        match self {
            IotlbInvalidation::Global => 0,
            IotlbInvalidation::Domain { domain_id } | IotlbInvalidation::Pages { domain_id, .. } => domain_id as u64,
        }
    }

    /// The address-specific half: ADDR | IH << 6 | AM (IVA register layout,
    /// also the high quadword of the queued descriptor).
    fn address_field(self, cap: Cap) -> Result<u64, InvalidationError> {
        match self {
            IotlbInvalidation::Pages { address, address_mask, leaf_only, .. } => {
                let max = if cap.page_selective_invalidation() { cap.max_address_mask() } else { 0 };
                if !cap.page_selective_invalidation() || address_mask > max {
                    return Err(InvalidationError::MaskTooLarge { address_mask, max });
                }
                let span = PAGE_SIZE << address_mask;
                if address % span != 0 {
                    return Err(InvalidationError::Misaligned { address, address_mask });
                }
                Ok(address | (leaf_only as u64) << 6 | address_mask as u64)
            }
            _ => Ok(0),
        }
    }

    /// Values for the IVA register (ECAP.IRO*16 + 0) and the IOTLB register
    /// (+8). Write IVA first: writing IOTLB with IVT set starts the work.
    /// Drain bits are set when the unit supports them, so that DMA in
    /// flight under the old mapping completes first.
    pub fn register_values(self, cap: Cap) -> Result<(u64, u64), InvalidationError> {
        let iva = self.address_field(cap)?;
        let drain = (cap.read_draining() as u64) << 49 | (cap.write_draining() as u64) << 48;
        let iotlb = 1 << 63 | self.granularity() << 60 | drain | self.domain_id() << 32;
        Ok((iva, iotlb))
    }

    /// The 128-bit queued-invalidation descriptor (type 2), as (low, high).
    pub fn descriptor(self, cap: Cap) -> Result<[u64; 2], InvalidationError> {
        let hi = self.address_field(cap)?;
        let drain = (cap.read_draining() as u64) << 7 | (cap.write_draining() as u64) << 6;
        Ok([0x2 | self.granularity() << 4 | drain | self.domain_id() << 16, hi])
    }

    /// The cheapest request that covers one 4 KiB page: page-selective if
    /// the unit has it, else the whole domain.
    pub fn for_page(cap: Cap, domain_id: u16, iova: u64) -> IotlbInvalidation {
        if cap.page_selective_invalidation() {
            IotlbInvalidation::Pages { domain_id, address: iova & !(PAGE_SIZE - 1), address_mask: 0, leaf_only: true }
        } else {
            IotlbInvalidation::Domain { domain_id }
        }
    }
}

/// Reads an IOTLB register value back: `None` while IVT is set, else the
/// granularity performed (IAIG, bits 58:57).
pub const fn iotlb_completion(iotlb: u64) -> Option<Granularity> {
    if iotlb & (1 << 63) != 0 {
        None
    } else {
        Some(Granularity::from_bits(iotlb >> 57))
    }
}

/// What must be invalidated after a table change (VT-d spec 6.1 and 6.5),
/// so the kernel cannot forget a case.
pub mod after {
    use super::{Cap, ContextInvalidation, IotlbInvalidation};

    /// After `DeviceSpace::map` (not-present -> present): nothing, unless
    /// the unit caches not-present entries (CAP.CM, QEMU's caching-mode=on).
    /// Without CM, a write-buffer flush is still due if CAP.RWBF.
    pub fn map(cap: Cap, domain_id: u16, iova: u64) -> Option<IotlbInvalidation> {
        cap.caching_mode().then(|| IotlbInvalidation::for_page(cap, domain_id, iova))
    }

    /// After `DeviceSpace::unmap`: always the page's IOTLB entry, and the
    /// frame may be reused only once that invalidation has completed.
    pub fn unmap(cap: Cap, domain_id: u16, iova: u64) -> IotlbInvalidation {
        IotlbInvalidation::for_page(cap, domain_id, iova)
    }

    /// After `RootTable::attach` (context entry not-present -> present):
    /// only under caching mode, the device's context entry and the domain.
    pub fn attach(cap: Cap, domain_id: u16, source_id: u16) -> Option<(ContextInvalidation, IotlbInvalidation)> {
        cap.caching_mode().then_some((
            ContextInvalidation::Device { domain_id, source_id, function_mask: 0 },
            IotlbInvalidation::Domain { domain_id },
        ))
    }

    /// After `RootTable::detach`: the device's context entry, then every
    /// IOTLB entry of the domain it used.
    pub fn detach(domain_id: u16, source_id: u16) -> (ContextInvalidation, IotlbInvalidation) {
        (
            ContextInvalidation::Device { domain_id, source_id, function_mask: 0 },
            IotlbInvalidation::Domain { domain_id },
        )
    }
}

/// Interrupt-entry-cache invalidation descriptor (type 4).
pub const fn iec_descriptor_global() -> [u64; 2] {
    [0x4, 0]
}

/// Interrupt-entry-cache invalidation of 2^`index_mask` entries at `index`.
pub const fn iec_descriptor_index(index: u16, index_mask: u8) -> [u64; 2] {
    [0x4 | 1 << 4 | ((index_mask as u64) & 0x1f) << 27 | (index as u64) << 32, 0]
}

/// Invalidation-wait descriptor (type 5) asking the unit to write
/// `status_data` to `status_address` (4-byte aligned) once every earlier
/// descriptor has completed: the way software learns the queue drained.
pub const fn wait_descriptor(status_address: u64, status_data: u32) -> [u64; 2] {
    // SW (bit 5): write status; FN (bit 6): fence, later descriptors wait.
    [0x5 | 1 << 5 | 1 << 6 | (status_data as u64) << 32, status_address & !3]
}

/// The invalidation queue: a ring of 128-bit descriptors in memory the
/// kernel set aside, 2^`size_log2` 4 KiB pages (256 descriptors a page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidationQueue {
    base: u64,
    size_log2: u8,
    tail: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// No free slot: the hardware has not consumed enough descriptors yet.
    Full,
    /// The base is not 4 KiB aligned or the size exceeds the 7 the IQA.QS field allows.
    BadGeometry,
}

impl InvalidationQueue {
    pub const DESCRIPTOR_BYTES: u64 = 16;

    pub fn new(base: u64, size_log2: u8) -> Result<Self, QueueError> {
        if !base.is_multiple_of(PAGE_SIZE) || size_log2 > 7 {
            return Err(QueueError::BadGeometry);
        }
        Ok(InvalidationQueue { base, size_log2, tail: 0 })
    }

    /// The queue as the unit's IQA and IQT registers describe it: how a
    /// kernel that did not set it up (a rebootless upgrade) continues it
    /// where the previous one left off, without resetting the unit.
    pub fn resume(iqa: u64, iqt: u64) -> Result<Self, QueueError> {
        if iqa & 0x800 != 0 {
            return Err(QueueError::BadGeometry); // 256-bit descriptors: not ours
        }
        let mut q = InvalidationQueue::new(iqa & !0xfff, (iqa & 0x7) as u8)?;
        let tail = ((iqt >> 4) & 0x7fff) as u32;
        if tail >= q.entries() {
            return Err(QueueError::BadGeometry);
        }
        q.tail = tail;
        Ok(q)
    }

    pub const fn entries(&self) -> u32 {
        256 << self.size_log2
    }

    /// Value for IQA (offset 0x90): base | QS; DW = 0 (128-bit descriptors).
    pub const fn iqa_value(&self) -> u64 {
        self.base | self.size_log2 as u64
    }

    /// Value for IQT (offset 0x88): the tail index in bits 18:4.
    pub const fn iqt_value(&self) -> u64 {
        (self.tail as u64) << 4
    }

    /// Writes `descriptor` at the tail and advances it. `iqh` is the
    /// current IQH register value (the hardware's head). The caller then
    /// writes [`Self::iqt_value`] to IQT to hand the descriptors over.
    pub fn push(&mut self, mem: &mut impl PhysMem, iqh: u64, descriptor: [u64; 2]) -> Result<(), QueueError> {
        let head = ((iqh >> 4) & 0x7fff) as u32 % self.entries();
        let next = (self.tail + 1) % self.entries();
        if next == head {
            return Err(QueueError::Full);
        }
        let slot = self.base + self.tail as u64 * Self::DESCRIPTOR_BYTES;
        mem.write_u64(slot, descriptor[0]);
        mem.write_u64(slot + 8, descriptor[1]);
        self.tail = next;
        Ok(())
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;

    #[test]
    fn a_queue_resumes_from_its_registers() {
        let mut q = InvalidationQueue::new(0x5000, 0).unwrap();
        q.tail = 17;
        let r = InvalidationQueue::resume(q.iqa_value(), q.iqt_value()).unwrap();
        assert_eq!(r, q);
        assert_eq!(InvalidationQueue::resume(0x5000 | 0x800, 0), Err(QueueError::BadGeometry));
        assert_eq!(InvalidationQueue::resume(0x5000, 256 << 4), Err(QueueError::BadGeometry));
    }
}
