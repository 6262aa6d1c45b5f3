//! Commands, completions, registers, rings, PRPs and identify data checked
//! against values worked out by hand from the NVMe specification.

mod fake;

use fake::SharedMem;
use nvme::command::Command;
use nvme::identify::{ControllerInfo, IdentifyError, NamespaceInfo};
use nvme::prp::{self, DmaBuffer, PrpError};
use nvme::queue::{CompletionQueue, SubmissionQueue};
use nvme::regs::{self, Cap, Csts};
use nvme::status::{Completion, ErrorKind, Status};
use nvme::DmaMemory;
use testrng::Rng;

#[test]
fn admin_command_layouts() {
    let id = Command::identify_controller(0x1000);
    assert_eq!(id.dw[0], 0x06);
    assert_eq!((id.dw[6], id.dw[7], id.dw[10]), (0x1000, 0, 1));
    let ns = Command::identify_namespace(1, 0x2000);
    assert_eq!((ns.dw[1], ns.dw[10], ns.prp1()), (1, 0, 0x2000));
    // Create I/O CQ 3, 64 entries (QSIZE 63), polled: PC only.
    let cq = Command::create_io_cq(3, 64, 0x1_0000_0000, None);
    assert_eq!(cq.dw[0], 0x05);
    assert_eq!(cq.dw[10], 0x003f_0003);
    assert_eq!(cq.dw[11], 0x0000_0001);
    assert_eq!((cq.dw[6], cq.dw[7]), (0, 1));
    // With MSI-X vector 2: PC | IEN | IV << 16.
    assert_eq!(Command::create_io_cq(3, 64, 0, Some(2)).dw[11], 0x0002_0003);
    // Create I/O SQ 3 on CQ 3.
    let sq = Command::create_io_sq(3, 64, 0x8000, 3);
    assert_eq!((sq.dw[0], sq.dw[10], sq.dw[11]), (0x01, 0x003f_0003, 0x0003_0001));
    // Number of queues: 0-based counts.
    let nq = Command::set_queue_count(2, 2);
    assert_eq!((nq.dw[0], nq.dw[10], nq.dw[11]), (0x09, 0x07, 0x0001_0001));
    let mut c = Command::flush(1);
    c.set_cid(0xbeef);
    assert_eq!((c.dw[0], c.dw[1], c.cid()), (0xbeef_0000, 1, 0xbeef));
}

#[test]
fn io_command_layouts() {
    let r = Command::read(1, 0x1_2345_6789, 8, 0x3004, 0x5000);
    assert_eq!(r.dw[0], 0x02);
    assert_eq!((r.dw[10], r.dw[11], r.dw[12]), (0x2345_6789, 0x1, 7));
    assert_eq!((r.prp1(), r.prp2(), r.lba(), r.block_count()), (0x3004, 0x5000, 0x1_2345_6789, 8));
    let w = Command::write(1, 5, 1, 0x3000, 0, true);
    assert_eq!((w.dw[0], w.dw[12]), (0x01, 1 << 30));
    // Bytes are little-endian dwords and round-trip.
    let b = r.to_bytes();
    assert_eq!(&b[40..44], &0x2345_6789u32.to_le_bytes());
    assert_eq!(Command::from_bytes(&b), r);
}

#[test]
fn completion_and_status_decoding() {
    // DW3 = status << 17 | P << 16 | CID. LBA Out of Range: SCT 0, SC 0x80,
    // DNR set -> status field 0x4080.
    let mut raw = [0u8; 16];
    raw[8..12].copy_from_slice(&0x0001_0005u32.to_le_bytes()); // SQID 1, SQHD 5
    raw[12..16].copy_from_slice(&(0x4080u32 << 17 | 1 << 16 | 0x2a).to_le_bytes());
    let c = Completion::from_bytes(&raw);
    assert_eq!((c.sq_id, c.sq_head, c.cid, c.phase), (1, 5, 0x2a, true));
    assert!(c.status.do_not_retry);
    let e = c.status.result().unwrap_err();
    assert_eq!(e.kind, ErrorKind::LbaOutOfRange);
    assert_eq!(e.to_string(), "LBA Out of Range (status type 0x0, code 0x80, do not retry)");
    assert_eq!(Completion::from_bytes(&c.to_bytes()), c);
    assert_eq!(Status::from_field(0x0002).result().unwrap_err().kind, ErrorKind::InvalidField);
    assert_eq!(Status::from_field(0x0082).result().unwrap_err().kind, ErrorKind::NamespaceNotReady);
    assert_eq!(Status::from_field(0x0101).result().unwrap_err().kind, ErrorKind::InvalidQueueIdentifier);
    assert_eq!(Status::from_field(0x0281).result().unwrap_err().kind, ErrorKind::UnrecoveredReadError);
    assert_eq!(Status::from_field(0x0013).result().unwrap_err().kind.name(), "PRP Offset Invalid");
    assert_eq!(Status::from_field(0x00ff).result().unwrap_err().kind, ErrorKind::Other);
    assert!(Status::from_field(0).result().is_ok());
    // Every field survives a round trip.
    for f in 0..0x8000u16 {
        assert_eq!(Status::from_field(f).to_field(), f);
    }
}

#[test]
fn register_decoding() {
    // QEMU nvme CAP: MQES 0x7ff, CQR, TO 0x0f, DSTRD 0, CSS NVM, MPSMAX 4.
    let cap = Cap(0x0040_0020_0f01_07ff);
    assert_eq!(cap.max_queue_entries(), 2048);
    assert!(cap.contiguous_queues_required());
    assert_eq!(cap.timeout_ms(), 7500);
    assert_eq!(cap.doorbell_stride(), 4);
    assert!(cap.nvm_command_set());
    assert_eq!((cap.min_page_size(), cap.max_page_size()), (4096, 65536));
    assert_eq!((regs::sq_tail_doorbell(0, cap), regs::cq_head_doorbell(0, cap)), (0x1000, 0x1004));
    assert_eq!((regs::sq_tail_doorbell(2, cap), regs::cq_head_doorbell(2, cap)), (0x1010, 0x1014));
    // DSTRD = 2: 16-byte stride.
    let wide = Cap(cap.0 | 2 << 32);
    assert_eq!((regs::sq_tail_doorbell(1, wide), regs::cq_head_doorbell(1, wide)), (0x1020, 0x1030));
    // CC: EN, MPS 0, IOSQES 6, IOCQES 4.
    assert_eq!(regs::cc::value(4096, true), 0x0046_0001);
    assert_eq!(regs::aqa_value(32, 32), 0x001f_001f);
    assert!(Csts(1).ready() && !Csts(1).fatal());
    assert!(Csts(3).fatal());
    assert_eq!(Csts(0b1001).shutdown_status(), 2);
}

#[test]
fn submission_ring_wraps_and_fills() {
    let mut mem = SharedMem::new(1 << 16);
    let mut sq = SubmissionQueue::new(0x1000, 4);
    // Three fit (one slot stays empty), tails 1, 2, 3.
    for expected in 1..=3 {
        assert_eq!(sq.push(&mut mem, &Command::flush(expected as u32)), Some(expected));
    }
    assert!(sq.is_full());
    assert_eq!(sq.push(&mut mem, &Command::flush(9)), None);
    assert_eq!(mem.read_u32(0x1000 + 2 * 64 + 4), 3, "third command's NSID in slot 2");
    sq.update_head(2);
    assert_eq!(sq.in_flight(), 1);
    assert_eq!(sq.push(&mut mem, &Command::flush(4)), Some(0), "tail wraps to 0");
    assert_eq!(sq.push(&mut mem, &Command::flush(5)), Some(1));
    assert!(sq.is_full());
}

#[test]
fn completion_ring_follows_the_phase() {
    let mut mem = SharedMem::new(1 << 16);
    let mut cq = CompletionQueue::new(0x2000, 2);
    assert_eq!(cq.pop(&mem), None, "zeroed ring: phase 0 entries are old");
    let post = |mem: &mut SharedMem, slot: u64, cid: u16, phase: bool| {
        let c = Completion { dw0: 0, sq_head: 0, sq_id: 1, cid, phase, status: Status::SUCCESS };
        mem.write(0x2000 + slot * 16, &c.to_bytes());
    };
    post(&mut mem, 0, 10, true);
    post(&mut mem, 1, 11, true);
    assert_eq!(cq.pop(&mem).unwrap().cid, 10);
    assert_eq!(cq.pop(&mem).unwrap().cid, 11);
    assert_eq!((cq.head(), cq.phase()), (0, false), "wrapped: now looking for phase 0");
    assert_eq!(cq.pop(&mem), None, "slot 0 still holds the phase-1 entry");
    post(&mut mem, 0, 12, false);
    assert_eq!(cq.pop(&mem).unwrap().cid, 12);
}

fn roundtrip(mem: &mut SharedMem, pages: &[u64], offset: u32, len: u32, lists: &[u64]) -> Vec<(u64, u32)> {
    let p = prp::build(mem, &DmaBuffer { pages, offset, len }, 4096, lists).unwrap();
    let mut seen = Vec::new();
    prp::walk(mem, p.prp1, p.prp2, len as u64, 4096, |a, n| seen.push((a, n))).unwrap();
    assert_eq!(seen.iter().map(|s| s.1 as u64).sum::<u64>(), len as u64);
    seen
}

#[test]
fn prp_shapes() {
    let mut mem = SharedMem::new(1 << 22);
    let pages: Vec<u64> = (0..600).map(|i| 0x10_0000 + ((i * 7919) % 600) * 4096).collect();
    let lists = [0x3f_0000u64, 0x3f_1000, 0x3f_2000];
    // One page: PRP2 unused.
    let p = prp::build(&mut mem, &DmaBuffer { pages: &pages, offset: 0, len: 4096 }, 4096, &lists).unwrap();
    assert_eq!((p.prp1, p.prp2, p.list_pages_used), (pages[0], 0, 0));
    // 512 bytes at offset 3584: still one page.
    let p = prp::build(&mut mem, &DmaBuffer { pages: &pages, offset: 3584, len: 512 }, 4096, &lists).unwrap();
    assert_eq!((p.prp1, p.prp2), (pages[0] + 3584, 0));
    // Two pages: PRP2 is the second page.
    let p = prp::build(&mut mem, &DmaBuffer { pages: &pages, offset: 0, len: 8192 }, 4096, &lists).unwrap();
    assert_eq!((p.prp1, p.prp2), (pages[0], pages[1]));
    // 1 KiB crossing a page boundary: two pages.
    let p = prp::build(&mut mem, &DmaBuffer { pages: &pages, offset: 3584, len: 1024 }, 4096, &lists).unwrap();
    assert_eq!((p.prp1, p.prp2), (pages[0] + 3584, pages[1]));
    // Three pages: PRP2 points at a list holding pages 1 and 2.
    let p = prp::build(&mut mem, &DmaBuffer { pages: &pages, offset: 0, len: 3 * 4096 }, 4096, &lists).unwrap();
    assert_eq!((p.prp2, p.list_pages_used), (lists[0], 1));
    assert_eq!((mem.read_u64(lists[0]), mem.read_u64(lists[0] + 8)), (pages[1], pages[2]));
    // 513 pages fill one list exactly (512 entries); 514 need a chain.
    assert_eq!(prp::list_pages_needed(513, 4096), 1);
    assert_eq!(prp::list_pages_needed(514, 4096), 2);
    let p = prp::build(&mut mem, &DmaBuffer { pages: &pages, offset: 0, len: 514 * 4096 }, 4096, &lists).unwrap();
    assert_eq!(p.list_pages_used, 2);
    assert_eq!(mem.read_u64(lists[0] + 511 * 8), lists[1], "last slot chains to the next list page");
    assert_eq!(mem.read_u64(lists[1]), pages[512]);
    let seen = roundtrip(&mut mem, &pages, 0, 514 * 4096, &lists);
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), pages[..514].to_vec());
    // One list page: PRP1 plus 512 list entries.
    assert_eq!(prp::max_transfer_for_list_pages(1, 4096), 513 * 4096);
    assert_eq!(prp::max_transfer_for_list_pages(0, 4096), 2 * 4096);
}

#[test]
fn prp_errors() {
    let mut mem = SharedMem::new(1 << 20);
    let pages = [0x1000u64, 0x2000, 0x3000];
    let b = |offset, len| DmaBuffer { pages: &pages, offset, len };
    assert_eq!(prp::build(&mut mem, &b(0, 0), 4096, &[]), Err(PrpError::Empty));
    assert_eq!(prp::build(&mut mem, &b(2, 4), 4096, &[]), Err(PrpError::OffsetNotDwordAligned { offset: 2 }));
    assert_eq!(prp::build(&mut mem, &b(4096, 4), 4096, &[]), Err(PrpError::OffsetBeyondPage { offset: 4096 }));
    assert_eq!(
        prp::build(&mut mem, &b(0, 4 * 4096), 4096, &[0x9000]),
        Err(PrpError::NotEnoughPages { needed: 4, given: 3 })
    );
    assert_eq!(
        prp::build(&mut mem, &b(0, 3 * 4096), 4096, &[]),
        Err(PrpError::NotEnoughListPages { needed: 1, given: 0 })
    );
    let odd = [0x1000u64, 0x2800];
    assert_eq!(
        prp::build(&mut mem, &DmaBuffer { pages: &odd, offset: 0, len: 8192 }, 4096, &[]),
        Err(PrpError::PageNotAligned { addr: 0x2800 })
    );
    // The controller side refuses a list entry with an offset.
    mem.write_u64(0x9000, 0x4000);
    mem.write_u64(0x9008, 0x5004);
    assert_eq!(
        prp::walk(&mem, 0x1000, 0x9000, 3 * 4096, 4096, |_, _| {}),
        Err(PrpError::PageNotAligned { addr: 0x5004 })
    );
}

#[test]
fn prp_random_roundtrips() {
    let mut mem = SharedMem::new(1 << 22);
    let pages: Vec<u64> = (0..1100).rev().map(|i| 0x20_0000 + i * 4096).collect();
    let lists = [0x10_0000u64, 0x10_1000, 0x10_2000];
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    for _ in 0..500 {
        let x = rng.next_u64();
        let offset = ((x % 1024) * 4) as u32;
        let len = 1 + (x >> 20) as u32 % (1030 * 4096 - offset);
        let seen = roundtrip(&mut mem, &pages, offset, len, &lists);
        // The walk visits exactly the buffer's pages, in order.
        assert_eq!(seen[0].0, pages[0] + offset as u64);
        for (i, s) in seen.iter().enumerate().skip(1) {
            assert_eq!(s.0, pages[i]);
        }
    }
}

fn controller_page() -> Vec<u8> {
    let mut p = vec![0u8; 4096];
    p[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
    p[24..40].copy_from_slice(b"QEMU NVMe Ctrl  ");
    for b in &mut p[40..64] {
        *b = b' ';
    }
    p[77] = 7;
    p[512] = 0x66;
    p[513] = 0x44;
    p[516..520].copy_from_slice(&256u32.to_le_bytes());
    p[525] = 1;
    p
}

#[test]
fn identify_controller_parsing() {
    let c = ControllerInfo::parse(&controller_page()).unwrap();
    assert_eq!((c.vendor_id, c.mdts, c.namespace_count), (0x1b36, 7, 256));
    assert_eq!(c.model_str(), "QEMU NVMe Ctrl");
    assert!(c.volatile_write_cache);
    assert_eq!(c.max_transfer_bytes(4096), Some(512 * 1024));
    let mut p = controller_page();
    p[77] = 0;
    assert_eq!(ControllerInfo::parse(&p).unwrap().max_transfer_bytes(4096), None);
    p[512] = 0x77;
    assert_eq!(ControllerInfo::parse(&p), Err(IdentifyError::UnsupportedEntrySize { sqes: 0x77, cqes: 0x44 }));
    assert_eq!(ControllerInfo::parse(&p[..100]), Err(IdentifyError::Short { len: 100 }));
}

#[test]
fn identify_namespace_parsing() {
    let mut p = vec![0u8; 4096];
    p[0..8].copy_from_slice(&0x20_0000u64.to_le_bytes());
    p[8..16].copy_from_slice(&0x20_0000u64.to_le_bytes());
    p[25] = 1;
    p[26] = 1;
    p[128..132].copy_from_slice(&(9u32 << 16).to_le_bytes());
    p[132..136].copy_from_slice(&(12u32 << 16 | 8).to_le_bytes());
    let ns = NamespaceInfo::parse(&p).unwrap();
    assert_eq!((ns.size, ns.block_size(), ns.format.metadata_size, ns.format_count), (0x20_0000, 4096, 8, 2));
    p[26] = 2;
    assert_eq!(NamespaceInfo::parse(&p), Err(IdentifyError::FormatIndexOutOfRange { index: 2, count: 2 }));
    p[26] = 0;
    p[130] = 3;
    assert_eq!(NamespaceInfo::parse(&p), Err(IdentifyError::BadBlockSize { lbads: 3 }));
    p[0..8].copy_from_slice(&0u64.to_le_bytes());
    assert_eq!(NamespaceInfo::parse(&p), Err(IdentifyError::EmptyNamespace));
}

#[test]
fn random_identify_and_completion_bytes_never_panic() {
    let mut rng = Rng::new(0x1234_5678_9abc_def0);
    let mut accepted = 0;
    for _ in 0..2000 {
        let mut page = vec![0u8; 4096];
        rng.fill(&mut page[..600]);
        if let Ok(ns) = NamespaceInfo::parse(&page) {
            assert!((512..=65536).contains(&ns.block_size()));
            accepted += 1;
        }
        let _ = ControllerInfo::parse(&page).map(|c| c.max_transfer_bytes(4096));
        let mut raw = [0u8; 16];
        raw.copy_from_slice(&page[..16]);
        let c = Completion::from_bytes(&raw);
        assert_eq!(Completion::from_bytes(&c.to_bytes()).status, c.status);
        let _ = c.status.result().map_err(|e| e.to_string());
    }
    assert!(accepted > 0);
}

#[test]
fn sriov_command_layouts() {
    use nvme::command::{VirtAction, VirtResource};
    // Assign 4 queue resources to controller 2: ACT 8, RT 0, CNTLID 2; NR 4.
    let c = Command::virtualization_management(VirtAction::SecondaryAssign, VirtResource::Queues, 2, 4);
    assert_eq!((c.dw[0], c.dw[10], c.dw[11]), (0x1c, 0x0002_0008, 4));
    let c = Command::virtualization_management(VirtAction::SecondaryAssign, VirtResource::Interrupts, 2, 1);
    assert_eq!(c.dw[10], 0x0002_0108);
    assert_eq!(
        Command::virtualization_management(VirtAction::SecondaryOnline, VirtResource::Queues, 7, 0).dw[10],
        0x0007_0009
    );
    let id = Command::identify_secondary_controllers(5, 0x1000);
    assert_eq!((id.dw[10], id.prp1()), (0x0005_0015, 0x1000));
    // List parsing: two entries, the second online with 3 queues, 1 vector.
    let mut p = vec![0u8; 4096];
    p[0] = 2;
    p[32..34].copy_from_slice(&1u16.to_le_bytes());
    p[64..66].copy_from_slice(&2u16.to_le_bytes());
    p[68] = 1;
    p[72..74].copy_from_slice(&2u16.to_le_bytes());
    p[74..76].copy_from_slice(&3u16.to_le_bytes());
    p[76..78].copy_from_slice(&1u16.to_le_bytes());
    let list = nvme::identify::SecondaryControllerList::parse(&p).unwrap();
    let v: Vec<_> = list.iter().collect();
    assert_eq!(v.len(), 2);
    assert_eq!((v[1].id, v[1].online, v[1].virtual_function, v[1].queues, v[1].interrupts), (2, true, 2, 3, 1));
    p[0] = 200;
    assert!(nvme::identify::SecondaryControllerList::parse(&p).is_err());
}
