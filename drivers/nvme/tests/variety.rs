//! Machines that differ from the standard QEMU one, against the fake
//! controller: a 4 KiB-block namespace, a controller that grants one I/O
//! queue pair, MDTS = 1 (8 KiB transfers), controllers told apart by
//! serial number, and the SR-IOV limits a PF's driver must read instead
//! of assuming. Every number the driver uses comes from the controller.

mod fake;

use fake::{FakeConfig, FakeController, FakeRegs, SharedMem};
use nvme::driver::{queue_pairs_granted, shared_queue, Config, Direction, DmaRegion, Driver, Error};
use nvme::prp::DmaBuffer;
use nvme::status::ErrorKind;
use nvme::window::{LbaWindow, WindowError, MIB};
use nvme::DmaMemory;

const MEM: usize = 24 << 20;
const REGION_BASE: u64 = 0x10_0000;
const BUFFERS: u64 = 0x80_0000;

fn start(fake_config: FakeConfig, config: Config) -> (FakeController, Driver<FakeRegs, SharedMem>) {
    let fake = FakeController::start(fake_config, MEM);
    let region = DmaRegion { base: REGION_BASE, len: config.dma_bytes_needed() };
    let driver = Driver::init(fake.regs(), fake.mem.clone(), region, config).expect("driver init");
    (fake, driver)
}

fn pages(count: u64) -> Vec<u64> {
    (0..count).map(|i| BUFFERS + i * 4096).collect()
}

fn pattern(len: u32, seed: u32) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ seed) as u8).collect()
}

fn put(d: &mut Driver<FakeRegs, SharedMem>, buf: &DmaBuffer, data: &[u8]) {
    let base = buf.pages[0] + buf.offset as u64; // contiguous test pages
    d.mem_mut().write(base, data);
}

fn get(d: &Driver<FakeRegs, SharedMem>, buf: &DmaBuffer) -> Vec<u8> {
    let mut out = vec![0; buf.len as usize];
    d.mem().read(buf.pages[0] + buf.offset as u64, &mut out);
    out
}

#[test]
fn queue_count_is_what_the_controller_grants() {
    // dword 0 of Set Features (Number of Queues): NSQA | NCQA << 16, 0's based.
    assert_eq!(queue_pairs_granted(2, 0), 1);
    assert_eq!(queue_pairs_granted(2, 1 | 1 << 16), 2);
    assert_eq!(queue_pairs_granted(8, 63 | 63 << 16), 8);
    assert_eq!(queue_pairs_granted(4, 3 | 1 << 16), 2, "a pair needs a CQ too");
    assert_eq!(queue_pairs_granted(4, 0xffff | 0xffff << 16), 4, "no overflow at 65,536");
    assert_eq!(queue_pairs_granted(0, 5), 1);
    for granted in 1..5 {
        for wanted in 0..8 {
            let q = shared_queue(wanted, granted);
            assert!(q < granted);
            assert_eq!(q == wanted, wanted < granted);
        }
    }
    assert_eq!(shared_queue(3, 0), 0);
}

#[test]
fn one_granted_queue_pair_is_shared() {
    let (fake, mut d) = start(FakeConfig { max_io_queues: 1, ..FakeConfig::default() }, Config::default());
    assert_eq!(d.io_queue_count(), 1);
    assert_eq!(d.queue(1).err(), Some(Error::NoSuchQueue { queue: 1 }));
    assert_eq!((d.queue_for(0), d.queue_for(1), d.queue_for(2)), (0, 0, 0));
    assert!(d.queues_shared(0, 1));
    let p = pages(4);
    let buf = DmaBuffer { pages: &p, offset: 0, len: 8192 };
    for (wanted, lba) in [(0, 0u64), (1, 100)] {
        let data = pattern(buf.len, wanted as u32);
        put(&mut d, &buf, &data);
        let q = d.queue_for(wanted);
        d.write(q, lba, &buf).unwrap();
        put(&mut d, &buf, &vec![0; buf.len as usize]);
        d.read(q, lba, &buf).unwrap();
        assert_eq!(get(&d, &buf), data);
        d.flush(q).unwrap();
    }
    // Everything went to the one queue the controller granted.
    let stats = fake.stats.lock().unwrap();
    assert!(!stats.commands_per_sq.contains_key(&2));
    assert_eq!(stats.commands_per_sq[&1], 6);
}

#[test]
fn mdts_one_splits_every_path_at_8_kib() {
    let fake_config = FakeConfig { mdts: 1, blocks: 4096, ..FakeConfig::default() };
    let (fake, mut d) = start(fake_config, Config::default());
    assert_eq!(d.max_transfer_bytes(), 8192);
    // 64 KiB starting 512 bytes into a page: every command spans 3 pages
    // (a PRP list), none carries more than 8 KiB.
    let p = pages(20);
    let buf = DmaBuffer { pages: &p, offset: 512, len: 64 * 1024 };
    let data = pattern(buf.len, 9);
    put(&mut d, &buf, &data);
    let before = fake.stats.lock().unwrap().commands_per_sq.get(&1).copied().unwrap_or(0);
    d.write(0, 7, &buf).unwrap();
    assert_eq!(fake.stats.lock().unwrap().commands_per_sq[&1] - before, 8);
    put(&mut d, &buf, &vec![0; buf.len as usize]);
    d.read(0, 7, &buf).unwrap();
    assert_eq!(get(&d, &buf), data);
    assert_eq!(
        d.submit_io(0, Direction::Write, 0, &DmaBuffer { len: 12288, ..buf }),
        Err(Error::TransferTooLarge { len: 12288, max: 8192 })
    );
}

#[test]
fn windows_come_from_the_namespace_size_and_block_size() {
    // The same bytes are different LBAs on 512 B and 4 KiB namespaces.
    let small = LbaWindow::from_mib(192, 64, 512, (256 * MIB) / 512).unwrap();
    assert_eq!(small, LbaWindow { first: 192 * 2048, blocks: 64 * 2048 });
    let big = LbaWindow::from_mib(192, 64, 4096, (256 * MIB) / 4096).unwrap();
    assert_eq!(big, LbaWindow { first: 192 * 256, blocks: 64 * 256 });
    assert_eq!(big.end(), 65536);
    // What used to be fixed LBAs (300,000 = 146.5 MiB in 512 B blocks)
    // does not exist on a 256 MiB 4Kn namespace; the byte window does.
    assert!(LbaWindow::from_bytes(146 * MIB + MIB / 2, MIB, 4096, 65536).is_ok());
    // Refusals name the block size.
    let e = LbaWindow::from_bytes(512, 4096, 4096, 65536).unwrap_err();
    assert_eq!(e, WindowError::NotBlockMultiple { what: "start", bytes: 512, block_size: 4096 });
    assert!(e.to_string().contains("4096-byte blocks"), "{e}");
    assert_eq!(
        LbaWindow::from_bytes(0, 6144, 4096, 65536),
        Err(WindowError::NotBlockMultiple { what: "length", bytes: 6144, block_size: 4096 })
    );
    assert_eq!(LbaWindow::from_bytes(0, 0, 512, 10), Err(WindowError::Empty));
    assert!(matches!(LbaWindow::from_mib(200, 64, 4096, 65536), Err(WindowError::OutsideNamespace { .. })));
    assert!(matches!(LbaWindow::from_mib(u64::MAX, 1, 4096, 65536), Err(WindowError::OutsideNamespace { .. })));
    assert_eq!(LbaWindow::from_bytes(0, 4096, 1000, 10), Err(WindowError::BadBlockSize { block_size: 1000 }));
    // The packed word init passes: 0 = all; low = first MiB, high = MiB.
    assert_eq!(LbaWindow::from_mib_word(0, 4096, 65536).unwrap(), LbaWindow::whole(65536));
    assert_eq!(LbaWindow::from_mib_word(192 | 64 << 32, 4096, 65536).unwrap(), big);
    // Translation stays inside; sub-windows are relative.
    assert_eq!(big.translate(0, 1), Some(192 * 256));
    assert_eq!(big.translate(big.blocks - 1, 1), Some(big.end() - 1));
    assert_eq!(big.translate(big.blocks - 1, 2), None);
    assert_eq!(big.translate(u64::MAX, 2), None);
    assert_eq!(big.sub_bytes(MIB, 8192, 4096).unwrap(), LbaWindow { first: 192 * 256 + 256, blocks: 2 });
    assert!(big.sub_bytes(64 * MIB, 4096, 4096).is_err());
}

#[test]
fn a_4kn_namespace_takes_whole_4_kib_blocks_only() {
    let fake_config = FakeConfig { lbads: 12, blocks: 8192, ..FakeConfig::default() };
    let (_fake, mut d) = start(fake_config, Config::default());
    assert_eq!(d.block_size(), 4096);
    let ns = d.namespace().size;
    let w = LbaWindow::from_mib(16, 8, d.block_size(), ns).unwrap();
    assert_eq!(w, LbaWindow { first: 4096, blocks: 2048 });
    let p = pages(4);
    // A 512-byte transfer is refused by name before the controller sees it.
    assert_eq!(
        d.write(0, w.first, &DmaBuffer { pages: &p, offset: 0, len: 512 }),
        Err(Error::NotBlockMultiple { len: 512, block_size: 4096 })
    );
    let buf = DmaBuffer { pages: &p, offset: 0, len: 8192 };
    let data = pattern(buf.len, 4);
    put(&mut d, &buf, &data);
    let last = w.translate(w.blocks - 2, 2).unwrap();
    d.write(0, last, &buf).unwrap();
    put(&mut d, &buf, &vec![0; 8192]);
    d.read(0, last, &buf).unwrap();
    assert_eq!(get(&d, &buf), data);
    // The namespace's end is the controller's, in its blocks.
    match d.read(0, ns - 1, &buf) {
        Err(Error::Command { error, .. }) => assert_eq!(error.kind, ErrorKind::LbaOutOfRange),
        other => panic!("expected LBA Out of Range, got {other:?}"),
    }
}

#[test]
fn controllers_are_chosen_by_serial_number() {
    let (_a, d) = start(FakeConfig { serial: "exo1", ..FakeConfig::default() }, Config::default());
    assert_eq!(d.controller().serial_str(), "exo1");
    assert!(d.controller().is_serial("exo1"));
    assert!(!d.controller().is_serial("exo0"));
    assert!(!d.controller().is_serial("exo"), "no prefix matches");
    assert!(!d.controller().is_serial(""));
    let mut blank = [b' '; 20];
    assert!(!nvme::identify::serial_matches(&blank, ""));
    blank[..4].copy_from_slice(b"exo0");
    assert!(nvme::identify::serial_matches(&blank, "exo0"));
    let mut nul = [0u8; 20];
    nul[..4].copy_from_slice(b"exo0");
    assert_eq!(nvme::identify::serial_text(&nul), "exo0");
    nul[5] = 0xff;
    assert_eq!(nvme::identify::serial_text(&nul), "", "not text: matches nothing");
}

#[test]
fn secondary_queue_limits_are_read_from_the_primary() {
    let fake_config = FakeConfig { secondaries: 2, max_vq_per_secondary: 2, ..FakeConfig::default() };
    let (_fake, mut d) = start(fake_config, Config::default());
    let caps = d.primary_controller_caps().unwrap();
    assert_eq!((caps.vq_flexible_total, caps.vq_max_per_secondary), (16, 2));
    assert_eq!((caps.vi_flexible_total, caps.vi_max_per_secondary), (8, 8));
    // More than VQFRSM is refused by the controller; the limit works.
    assert!(d.bring_up_secondary(1, 3, 1).is_err());
    d.bring_up_secondary(1, caps.vq_max_per_secondary, 1).unwrap();
}
