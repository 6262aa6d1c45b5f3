//! Register decoding and encoding against values computed by hand from the
//! VT-d specification and from what QEMU 7.2's intel-iommu reports.

mod common;

use common::EmulatedMemory;
use iommu::vtd::cap::{Cap, Ecap, Levels};
use iommu::vtd::fault::{FaultReason, FaultRecord};
use iommu::vtd::invalidation::*;
use iommu::vtd::regs::{gcmd, gcmd_value, FaultStatus};
use iommu::vtd::{Access, Bdf, PhysMem};

/// QEMU 7.2, `-device intel-iommu,intremap=on,caching-mode=on` (aw-bits 39):
/// FRO = 0x220 >> 4 = 0x22 at bit 24, NFR = 0 (one record), ND = 6,
/// MGAW = 38 at bit 16, SAGAW = 0b00010 (39-bit) at bit 8, DRD|DWD,
/// PSI, MAMV = 18 at bit 48, SLLPS = 0b11 at bit 34, CM at bit 7.
const QEMU_CAP: u64 = 0x00d2_008c_2226_0286;
/// ECAP: IRO = 0xf0 >> 4 = 0xf at bit 8, QI, IR, EIM, PT, MHMV = 0xf; C = 0.
const QEMU_ECAP: u64 = 0x0000_0000_00f0_0f5a;

#[test]
fn decodes_qemu_cap() {
    let cap = Cap(QEMU_CAP);
    assert_eq!(cap.domain_count(), 65536);
    assert!(cap.caching_mode());
    assert!(!cap.required_write_buffer_flushing());
    assert_eq!(cap.sagaw(), 0b00010);
    assert!(cap.supports(Levels::Three));
    assert!(!cap.supports(Levels::Four));
    assert_eq!(cap.max_guest_address_width(), 39);
    assert_eq!(cap.fault_recording_offset(), 0x220);
    assert_eq!(cap.fault_recording_count(), 1);
    assert_eq!(cap.fault_record_offset(0), 0x220);
    assert_eq!(cap.second_level_large_pages(), 0b11);
    assert!(cap.page_selective_invalidation());
    assert_eq!(cap.max_address_mask(), 18);
    assert!(cap.read_draining() && cap.write_draining());
    assert!(!cap.domain_id_usable(0), "caching mode reserves domain 0");
    assert!(cap.domain_id_usable(1));
}

#[test]
fn decodes_qemu_ecap() {
    let ecap = Ecap(QEMU_ECAP);
    assert!(!ecap.coherent(), "QEMU reports non-coherent walks");
    assert!(ecap.queued_invalidation());
    assert!(!ecap.device_tlb());
    assert!(ecap.interrupt_remapping());
    assert!(ecap.extended_interrupt_mode());
    assert!(ecap.pass_through());
    assert!(!ecap.snoop_control());
    assert_eq!(ecap.iotlb_register_offset(), 0xf0);
    assert_eq!(ecap.max_handle_mask(), 0xf);
}

#[test]
fn decodes_a_multi_record_cap() {
    // ND = 2 (256 domains), SAGAW = 0b00110, FRO = 0x40 (offset 0x400),
    // NFR = 7 (8 records), no caching mode.
    let cap = Cap(2 | 0b00110 << 8 | 0x40 << 24 | 7 << 40);
    assert_eq!(cap.domain_count(), 256);
    assert_eq!(cap.fault_recording_offset(), 0x400);
    assert_eq!(cap.fault_recording_count(), 8);
    assert_eq!(cap.fault_record_offset(7), 0x470);
    assert!(cap.domain_id_usable(0));
    assert!(!cap.domain_id_usable(256));
    assert!(!cap.page_selective_invalidation());
}

#[test]
fn context_command_encodings() {
    assert_eq!(ContextInvalidation::Global.ccmd_value(), Ok(0xa000_0000_0000_0000));
    assert_eq!(ContextInvalidation::Domain { domain_id: 7 }.ccmd_value(), Ok(0xc000_0000_0000_0007));
    // Device 00:03.0 -> source id 0x0018, domain 5, no function mask.
    let dev = ContextInvalidation::Device { domain_id: 5, source_id: 0x0018, function_mask: 0 };
    assert_eq!(dev.ccmd_value(), Ok(0xe000_0000_0018_0005));
    let masked = ContextInvalidation::Device { domain_id: 5, source_id: 0x0018, function_mask: 3 };
    assert_eq!(masked.ccmd_value(), Ok(0xe000_0003_0018_0005));
    let bad = ContextInvalidation::Device { domain_id: 5, source_id: 0x0018, function_mask: 4 };
    assert_eq!(bad.ccmd_value(), Err(InvalidationError::FunctionMaskTooLarge { function_mask: 4 }));
    // Queued form: type 1, G at bits 5:4, DID 31:16, SID 47:32, FM 49:48.
    assert_eq!(ContextInvalidation::Global.descriptor(), Ok([0x11, 0]));
    assert_eq!(dev.descriptor(), Ok([0x0000_0018_0005_0031, 0]));
    // Completion: ICC still set -> pending; CAIG (60:59) = 01 -> global.
    assert_eq!(ccmd_completion(0xa000_0000_0000_0000), None);
    assert_eq!(ccmd_completion(0x2800_0000_0000_0000), Some(Granularity::Global));
    assert_eq!(ccmd_completion(0x0000_0000_0000_0000), Some(Granularity::Failed));
    assert_eq!(ccmd_completion(0x1800_0000_0000_0000), Some(Granularity::Selective));
}

#[test]
fn iotlb_encodings() {
    let cap = Cap(QEMU_CAP);
    // Global with both drains: IVT | IIRG=01 | DR | DW.
    assert_eq!(IotlbInvalidation::Global.register_values(cap), Ok((0, 0x9003_0000_0000_0000)));
    assert_eq!(IotlbInvalidation::Domain { domain_id: 5 }.register_values(cap), Ok((0, 0xa003_0005_0000_0000)));
    let page = IotlbInvalidation::Pages { domain_id: 5, address: 0x1234_5000, address_mask: 0, leaf_only: true };
    assert_eq!(page.register_values(cap), Ok((0x1234_5040, 0xb003_0005_0000_0000)));
    // Queued: type 2 | G=11 | DW (6) | DR (7) | DID << 16; high = address | IH | AM.
    assert_eq!(page.descriptor(cap), Ok([0x0005_00f2, 0x1234_5040]));
    // 2^4 pages at a 64 KiB aligned address.
    let span = IotlbInvalidation::Pages { domain_id: 1, address: 0x10000, address_mask: 4, leaf_only: false };
    assert_eq!(span.descriptor(cap), Ok([0x0001_00f2, 0x10004]));
    let misaligned = IotlbInvalidation::Pages { domain_id: 1, address: 0x11000, address_mask: 4, leaf_only: false };
    assert_eq!(misaligned.descriptor(cap), Err(InvalidationError::Misaligned { address: 0x11000, address_mask: 4 }));
    let huge = IotlbInvalidation::Pages { domain_id: 1, address: 0, address_mask: 19, leaf_only: false };
    assert_eq!(huge.descriptor(cap), Err(InvalidationError::MaskTooLarge { address_mask: 19, max: 18 }));
    // Without PSI a page request falls back to the domain.
    let no_psi = Cap(0);
    assert_eq!(IotlbInvalidation::for_page(no_psi, 3, 0x5000), IotlbInvalidation::Domain { domain_id: 3 });
    assert_eq!(
        IotlbInvalidation::for_page(cap, 3, 0x5abc),
        IotlbInvalidation::Pages { domain_id: 3, address: 0x5000, address_mask: 0, leaf_only: true }
    );
    // No drain bits when the unit lacks them.
    assert_eq!(IotlbInvalidation::Global.register_values(no_psi), Ok((0, 0x9000_0000_0000_0000)));
    // Completion: IAIG at 58:57.
    assert_eq!(iotlb_completion(0x9000_0000_0000_0000), None);
    assert_eq!(iotlb_completion(0x0600_0000_0000_0000), Some(Granularity::Selective));
    assert_eq!(iotlb_completion(0x0200_0000_0000_0000), Some(Granularity::Global));
}

#[test]
fn other_descriptors() {
    // Wait: type 5 | SW (5) | FN (6) | data << 32; high = status address.
    assert_eq!(wait_descriptor(0x1000, 0xabcd), [0x0000_abcd_0000_0065, 0x1000]);
    assert_eq!(wait_descriptor(0x1003, 1)[1], 0x1000, "status address is 4-byte aligned");
    assert_eq!(iec_descriptor_global(), [0x4, 0]);
    // Index-selective: G (bit 4), IM 31:27, IIDX 47:32.
    assert_eq!(iec_descriptor_index(0x20, 2), [0x0000_0020_1000_0014, 0]);
}

#[test]
fn invalidation_queue_ring() {
    let mut mem = EmulatedMemory::default();
    let mut q = InvalidationQueue::new(0x8000, 0).unwrap();
    assert_eq!(q.entries(), 256);
    assert_eq!(q.iqa_value(), 0x8000);
    q.push(&mut mem, 0, wait_descriptor(0x1000, 1)).unwrap();
    assert_eq!(q.iqt_value(), 0x10);
    assert_eq!(mem.read_u64(0x8000), wait_descriptor(0x1000, 1)[0]);
    assert_eq!(mem.read_u64(0x8008), 0x1000);
    // Fill: with the head at 0, 255 descriptors fit (one slot stays empty).
    for _ in 1..255 {
        q.push(&mut mem, 0, [0x11, 0]).unwrap();
    }
    assert_eq!(q.push(&mut mem, 0, [0x11, 0]), Err(QueueError::Full));
    // Hardware consumed up to index 10: the tail wraps to 0 and beyond.
    q.push(&mut mem, 10 << 4, [0x11, 0]).unwrap();
    assert_eq!(q.iqt_value(), 0);
    q.push(&mut mem, 10 << 4, [0x2, 0]).unwrap();
    assert_eq!(q.iqt_value(), 0x10);
    assert_eq!(mem.read_u64(0x8000), 0x2);
    assert_eq!(InvalidationQueue::new(0x8800, 0), Err(QueueError::BadGeometry));
    assert_eq!(InvalidationQueue::new(0x8000, 8), Err(QueueError::BadGeometry));
    assert_eq!(InvalidationQueue::new(0x8000, 3).unwrap().iqa_value(), 0x8003);
}

#[test]
fn fault_records_decode_like_qemu_writes_them() {
    // QEMU (vtd_record_frcd): high = F | FR << 32 | SID, T set for reads;
    // low = the faulting address.
    let write_fault = FaultRecord::decode(0x7fff_f000, 0x8000_0005_0000_0018).unwrap();
    assert_eq!(write_fault.source, Bdf { bus: 0, device: 3, function: 0 });
    assert_eq!(write_fault.reason, FaultReason::WriteNotPermitted);
    assert_eq!(write_fault.address, 0x7fff_f000);
    assert_eq!(write_fault.access, Access::Write);
    assert_eq!(write_fault.pasid, None);
    assert_eq!(
        write_fault.to_string(),
        "DMA write by 00:03.0 at 0x7ffff000: write to a page without write permission (reason 0x5)"
    );
    let read_fault = FaultRecord::decode(0x1234_5678, 0xc000_0006_0000_0121).unwrap();
    assert_eq!(read_fault.source, Bdf { bus: 1, device: 4, function: 1 });
    assert_eq!(read_fault.reason, FaultReason::ReadNotPermitted);
    assert_eq!(read_fault.address, 0x1234_5000, "low 12 bits are not part of the record");
    assert_eq!(read_fault.access, Access::Read);
    let ctx = FaultRecord::decode(0, 0x8000_0002_0000_0020).unwrap();
    assert_eq!(ctx.reason, FaultReason::ContextEntryNotPresent);
    assert_eq!(ctx.reason.to_string(), "context entry not present (reason 0x2)");
    // PASID present (bit 95) with PASID 0x12345 at 123:104, PRIV, EXE.
    let pasid = FaultRecord::decode(0, 0x8123_4504_e000_0000).unwrap();
    assert_eq!(pasid.pasid, Some(0x12345));
    assert!(pasid.privileged && pasid.execute);
    assert_eq!(pasid.reason, FaultReason::AddressBeyondWidth);
    // F clear: an empty slot.
    assert_eq!(FaultRecord::decode(0x1000, 0x0000_0005_0000_0018), None);
    assert_eq!(FaultRecord::CLEAR_HIGH, 1 << 63);
}

#[test]
fn every_reason_code_round_trips() {
    for code in 0..=255u8 {
        let r = FaultReason::from_code(code);
        assert_eq!(r.code(), code);
        assert!(!r.description().is_empty());
    }
    assert_eq!(FaultReason::from_code(0xd), FaultReason::BlockedByTranslationType);
    assert_eq!(FaultReason::from_code(0x22).description(), "interrupt remapping entry not present");
    assert_eq!(FaultReason::from_code(0x30), FaultReason::Other(0x30));
}

#[test]
fn status_and_command_registers() {
    // PPF with the first pending record at index 3, plus overflow.
    let fsts = FaultStatus(0x0303);
    assert!(fsts.pending() && fsts.overflow());
    assert_eq!(fsts.fault_record_index(), 3);
    assert_eq!(fsts.clear_value(), FaultStatus::PFO);
    // GCMD carries persistent enables from GSTS, drops one-shot ones.
    let gsts = gcmd::TE | gcmd::SRTP | gcmd::QIE;
    assert_eq!(gcmd_value(gsts, gcmd::IRE, true), gcmd::TE | gcmd::QIE | gcmd::IRE);
    assert_eq!(gcmd_value(gsts, gcmd::TE, false), gcmd::QIE);
    assert_eq!(gcmd_value(0, gcmd::SRTP, true), 0x4000_0000);
    assert_eq!(Bdf::from_source_id(0x0121), Bdf { bus: 1, device: 4, function: 1 });
    assert_eq!(Bdf::new(0, 3, 0).unwrap().source_id(), 0x18);
    assert_eq!(Bdf::new(0, 32, 0), None);
}

#[test]
fn invalidation_rules_after_table_changes() {
    use iommu::vtd::invalidation::after;
    let cm = Cap(QEMU_CAP);
    let plain = Cap(QEMU_CAP & !(1 << 7));
    let page = IotlbInvalidation::Pages { domain_id: 3, address: 0x5000, address_mask: 0, leaf_only: true };
    assert_eq!(after::map(cm, 3, 0x5000), Some(page));
    assert_eq!(after::map(plain, 3, 0x5000), None);
    assert_eq!(after::unmap(plain, 3, 0x5fff), page);
    assert_eq!(after::unmap(Cap(0), 3, 0x5000), IotlbInvalidation::Domain { domain_id: 3 });
    let dev = ContextInvalidation::Device { domain_id: 3, source_id: 0x18, function_mask: 0 };
    assert_eq!(after::attach(cm, 3, 0x18), Some((dev, IotlbInvalidation::Domain { domain_id: 3 })));
    assert_eq!(after::attach(plain, 3, 0x18), None);
    assert_eq!(after::detach(3, 0x18), (dev, IotlbInvalidation::Domain { domain_id: 3 }));
}
