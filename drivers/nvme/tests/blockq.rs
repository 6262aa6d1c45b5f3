//! The block service's shared queues: a client and a server on two
//! threads, first over an in-memory disk, then with the server driving the
//! fake NVMe controller (zero-copy: the device DMAs into the shared data
//! area), and a hostile client that writes garbage into the region.

mod fake;

use blockq::{Client, Op, ProtocolError, Request, Response, Server, SharedRegion, Status};
use fake::{FakeConfig, FakeController, SharedMem};
use nvme::driver::{Config, DmaRegion, Driver, Error};
use nvme::prp::DmaBuffer;
use nvme::status::ErrorKind;
use nvme::DmaMemory;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use testrng::Rng;

/// A region of atomics, as two processes mapping the same frames see it.
#[derive(Clone)]
struct AtomicRegion(Arc<Vec<AtomicU32>>);

impl AtomicRegion {
    fn new(bytes: usize) -> AtomicRegion {
        AtomicRegion(Arc::new((0..bytes / 4).map(|_| AtomicU32::new(0)).collect()))
    }
}

impl SharedRegion for AtomicRegion {
    fn len(&self) -> u64 {
        self.0.len() as u64 * 4
    }
    fn load_acquire(&self, offset: u64) -> u32 {
        self.0[offset as usize / 4].load(Ordering::Acquire)
    }
    fn store_release(&self, offset: u64, value: u32) {
        self.0[offset as usize / 4].store(value, Ordering::Release)
    }
    fn read(&self, offset: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset as usize + i;
            *b = (self.0[at / 4].load(Ordering::Relaxed) >> ((at % 4) * 8)) as u8;
        }
    }
    fn write(&self, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let at = offset as usize + i;
            let shift = (at % 4) * 8;
            let _ = self.0[at / 4].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some((w & !(0xff << shift)) | (b as u32) << shift)
            });
        }
    }
}

/// A window of the fake controller's memory used as the shared region.
#[derive(Clone)]
struct MemRegion {
    mem: SharedMem,
    base: u64,
    len: u64,
}

impl SharedRegion for MemRegion {
    fn len(&self) -> u64 {
        self.len
    }
    fn load_acquire(&self, offset: u64) -> u32 {
        self.mem.read_u32(self.base + offset)
    }
    fn store_release(&self, offset: u64, value: u32) {
        self.mem.clone().write_u32(self.base + offset, value)
    }
    fn read(&self, offset: u64, buf: &mut [u8]) {
        self.mem.read(self.base + offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) {
        self.mem.clone().write(self.base + offset, data)
    }
}

/// Drives `ops` random requests through `client`, keeping up to `depth`
/// in flight, and checks every read against a model of the disk. Each
/// in-flight request owns a distinct data slot. The servers here execute
/// requests in ring order, so a model updated at submission is exact
/// even when requests in flight overlap.
fn client_workload<R: SharedRegion>(client: &mut Client<R>, ops: u32, depth: u32, seed: u64) -> Vec<u8> {
    let g = client.geometry();
    let bs = g.block_size as u64;
    let slot_bytes = 16 * bs;
    let slots = (g.data_len / slot_bytes).min(depth as u64) as u32;
    assert!(slots >= 1);
    let mut model = vec![0u8; (g.capacity_blocks * bs) as usize];
    let mut rng = Rng::new(seed);
    let mut free: Vec<u32> = (0..slots).collect();
    let mut pending: HashMap<u32, (Request, u32, Vec<u8>)> = HashMap::new();
    let mut submitted = 0;
    let mut tag = 0u32;
    while submitted < ops || !pending.is_empty() {
        while submitted < ops && !free.is_empty() {
            let slot = free.pop().unwrap();
            let blocks = 1 + (rng.next_u64() % 16) as u32;
            let lba = rng.next_u64() % (g.capacity_blocks - blocks as u64);
            let data_offset = g.data_offset + slot as u64 * slot_bytes;
            let op = if rng.next_u64().is_multiple_of(2) { Op::Write } else { Op::Read };
            let mut expect = Vec::new();
            let len = blocks as usize * bs as usize;
            let at = (lba * bs) as usize;
            if op == Op::Write {
                let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                client.region().write(data_offset, &data);
                model[at..at + len].copy_from_slice(&data);
            } else {
                expect = model[at..at + len].to_vec();
            }
            tag += 1;
            let req = Request { op, tag, lba, blocks, data_offset };
            client.submit(&req).unwrap();
            pending.insert(tag, (req, slot, expect));
            submitted += 1;
        }
        let Some(Response { tag, status }) = client.poll().unwrap() else {
            std::thread::yield_now();
            continue;
        };
        let (req, slot, expect) = pending.remove(&tag).expect("response for a request in flight");
        assert_eq!(status, Status::Ok, "{req:?}");
        if req.op == Op::Read {
            let mut got = vec![0u8; expect.len()];
            client.region().read(req.data_offset, &mut got);
            assert_eq!(got, expect, "read of lba {} ({} blocks)", req.lba, req.blocks);
        }
        free.push(slot);
    }
    model
}

#[test]
fn client_and_server_over_an_in_memory_disk() {
    let region = AtomicRegion::new(256 * 1024);
    let mut server = Server::format(region.clone(), 32, 512, 2048).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let g = server.geometry();
        let mut disk = vec![0u8; (g.capacity_blocks * g.block_size as u64) as usize];
        let mut served = 0u32;
        while !stop2.load(Ordering::Acquire) {
            match server.next_request().unwrap() {
                None => std::thread::yield_now(),
                Some(Err((tag, status))) => server.respond(tag, status),
                Some(Ok(req)) => {
                    let at = (req.lba * g.block_size as u64) as usize;
                    let len = (req.blocks * g.block_size) as usize;
                    match req.op {
                        Op::Read => server.region().write(req.data_offset, &disk[at..at + len]),
                        Op::Write => server.region().read(req.data_offset, &mut disk[at..at + len]),
                        Op::Flush => {}
                    }
                    served += 1;
                    server.respond(req.tag, Status::Ok);
                }
            }
        }
        (disk, served)
    });
    let mut client = Client::attach(region).unwrap();
    let model = client_workload(&mut client, 2000, 8, 11);
    stop.store(true, Ordering::Release);
    let (disk, served) = handle.join().unwrap();
    assert_eq!(served, 2000);
    assert_eq!(disk, model);
}

#[test]
fn block_service_over_the_nvme_driver() {
    const MEM: usize = 24 << 20;
    const REGION_BASE: u64 = 0x10_0000;
    const SHARED_BASE: u64 = 0x80_0000;
    const SHARED_LEN: u64 = 1 << 20;
    let fake = FakeController::start(FakeConfig { blocks: 4096, ..FakeConfig::default() }, MEM);
    let config = Config::default();
    let region = DmaRegion { base: REGION_BASE, len: config.dma_bytes_needed() };
    let mut driver = Driver::init(fake.regs(), fake.mem.clone(), region, config).unwrap();
    let shared = MemRegion { mem: fake.mem.clone(), base: SHARED_BASE, len: SHARED_LEN };
    let mut server = Server::format(shared.clone(), 64, driver.block_size(), driver.namespace().size).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut served = 0u32;
        while !stop2.load(Ordering::Acquire) {
            let req = match server.next_request().unwrap() {
                None => {
                    std::thread::yield_now();
                    continue;
                }
                Some(Err((tag, status))) => {
                    server.respond(tag, status);
                    continue;
                }
                Some(Ok(req)) => req,
            };
            // Zero copy: the device DMAs to the client's data pages (here
            // IOVA = address; behind VT-d, the shared region's IOVAs).
            let start = SHARED_BASE + req.data_offset;
            let bytes = req.blocks * server.geometry().block_size;
            let first = start & !4095;
            let pages: Vec<u64> =
                (0..((start % 4096 + bytes as u64).div_ceil(4096))).map(|i| first + i * 4096).collect();
            let buf = DmaBuffer { pages: &pages, offset: (start % 4096) as u32, len: bytes };
            let result = match req.op {
                Op::Read => driver.read(0, req.lba, &buf),
                Op::Write => driver.write(0, req.lba, &buf),
                Op::Flush => driver.flush(0),
            };
            let status = match result {
                Ok(()) => Status::Ok,
                Err(Error::Command { error, .. }) if error.kind == ErrorKind::LbaOutOfRange => Status::OutOfRange,
                Err(Error::Command { error, .. }) => Status::DeviceError { detail: error.status.to_field() as u32 },
                Err(e) => panic!("driver error {e}"),
            };
            served += 1;
            server.respond(req.tag, status);
        }
        served
    });
    let mut client = Client::attach(shared).unwrap();
    let model = client_workload(&mut client, 500, 16, 12);
    // Flush through the service: the fake's durable copy catches up.
    client.submit(&Request { op: Op::Flush, tag: 9999, lba: 0, blocks: 0, data_offset: 0 }).unwrap();
    let flushed = loop {
        if let Some(r) = client.poll().unwrap() {
            break r;
        }
        std::thread::yield_now();
    };
    assert_eq!(flushed, Response { tag: 9999, status: Status::Ok });
    stop.store(true, Ordering::Release);
    assert_eq!(handle.join().unwrap(), 501);
    let disk = fake.disk.lock().unwrap();
    assert_eq!(disk.data, model);
    assert_eq!(disk.durable, model);
}

#[test]
fn hostile_client_cannot_steer_the_server() {
    let region = AtomicRegion::new(64 * 1024);
    let mut server = Server::format(region.clone(), 16, 512, 100).unwrap();
    let g = server.geometry();
    let mut client = Client::attach(region.clone()).unwrap();
    // The client library refuses data outside the area itself...
    let outside = Request { op: Op::Read, tag: 1, lba: 0, blocks: 1, data_offset: 0 };
    assert_eq!(client.submit(&outside), Err(ProtocolError::DataOutsideArea));
    // ...so write raw requests the way a hostile client would.
    let raw = |slot: u64, op: u8, tag: u32, lba: u64, blocks: u32, off: u64| {
        let mut b = [0u8; 32];
        b[0] = op;
        b[4..8].copy_from_slice(&tag.to_le_bytes());
        b[8..16].copy_from_slice(&lba.to_le_bytes());
        b[16..20].copy_from_slice(&blocks.to_le_bytes());
        b[24..32].copy_from_slice(&off.to_le_bytes());
        region.write(0x1000 + slot * 32, &b);
    };
    raw(0, 1, 10, 0, 1, 0); // data over the header
    raw(1, 2, 11, 0, 1, g.data_offset + g.data_len - 100); // runs off the end
    raw(2, 1, 12, 0, u32::MAX, g.data_offset); // absurd length
    raw(3, 9, 13, 0, 1, g.data_offset); // unknown op
    raw(4, 1, 14, 99, 2, g.data_offset); // past the device's end
    raw(5, 1, 15, u64::MAX, 2, g.data_offset); // LBA overflow
    raw(6, 1, 16, 98, 2, g.data_offset); // fine
    region.store_release(0x40, 7);
    let mut answers = Vec::new();
    while let Some(r) = server.next_request().unwrap() {
        answers.push(r.map(|req| req.tag));
    }
    assert_eq!(
        answers,
        vec![
            Err((10, Status::BadRequest)),
            Err((11, Status::BadRequest)),
            Err((12, Status::BadRequest)),
            Err((13, Status::BadRequest)),
            Err((14, Status::OutOfRange)),
            Err((15, Status::OutOfRange)),
            Ok(16),
        ]
    );
    // Moving the producer index beyond the ring: the server stops.
    region.store_release(0x40, 7 + 17);
    assert_eq!(server.next_request(), Err(ProtocolError::IndexOutOfRange { producer: 24, consumer: 7 }));
    // Garbage everywhere: never a panic, every request validated.
    let mut rng = Rng::new(77);
    for _ in 0..2000 {
        let at = rng.next_u64() % (0x1000 + 16 * 32);
        region.write(at, &[rng.next_u64() as u8]);
        if let Ok(Some(Ok(req))) = server.next_request() {
            if req.op != Op::Flush {
                let end = req.data_offset + req.blocks as u64 * 512;
                assert!(req.data_offset >= g.data_offset && end <= g.data_offset + g.data_len);
                assert!(req.lba + req.blocks as u64 <= 100);
            }
        }
    }
    // A client refuses a region nobody formatted.
    assert!(matches!(Client::attach(AtomicRegion::new(64 * 1024)), Err(ProtocolError::BadHeader)));
}

/// A client that dies with requests in flight: a new client cannot attach
/// until the server has answered them, and then never sees those answers.
#[test]
fn a_new_client_waits_for_the_dead_ones_answers_and_never_sees_them() {
    let region = AtomicRegion::new(3 * 4096 + 8 * 4096);
    let mut server = Server::format(region.clone(), 8, 512, 64).unwrap();
    let mut dead = Client::attach(region.clone()).unwrap();
    let data = dead.geometry().data_offset;
    for tag in 0..3 {
        dead.submit(&Request { op: Op::Write, tag, lba: tag as u64, blocks: 1, data_offset: data }).unwrap();
    }
    drop(dead); // killed before it took any answer
    let busy = Client::attach(region.clone()).err();
    assert_eq!(busy, Some(ProtocolError::PreviousClientBusy { requests: 3, answered: 0 }));
    // The server answers two: still busy; the third: the new client attaches.
    for _ in 0..2 {
        let r = server.next_request().unwrap().unwrap().unwrap();
        server.respond(r.tag, Status::Ok);
    }
    assert!(Client::attach(region.clone()).is_err());
    let r = server.next_request().unwrap().unwrap().unwrap();
    server.respond(r.tag, Status::Ok);
    let mut fresh = Client::attach(region.clone()).unwrap();
    assert_eq!(fresh.in_flight(), 0);
    assert_eq!(fresh.poll().unwrap(), None, "the dead client's answers are skipped");
    fresh.submit(&Request { op: Op::Flush, tag: 77, lba: 0, blocks: 0, data_offset: 0 }).unwrap();
    let r = server.next_request().unwrap().unwrap().unwrap();
    server.respond(r.tag, Status::Ok);
    assert_eq!(fresh.poll().unwrap().map(|r| r.tag), Some(77));
}

/// A driver that dies with requests in flight: the region's owner marks
/// it gone, the client's next poll and submit fail by name (never a
/// wait), nobody attaches to the dead driver's format, and after a new
/// driver formats the region the client attaches under the new epoch and
/// is served; the old epoch's answers never reach it.
#[test]
fn a_client_of_a_dead_driver_gets_driver_gone_and_reattaches_to_the_next() {
    let region = AtomicRegion::new(3 * 4096 + 8 * 4096);
    let mut old = Server::format(region.clone(), 8, 512, 64).unwrap();
    let mut client = Client::attach(region.clone()).unwrap();
    assert_eq!(client.epoch(), 0);
    let data = client.geometry().data_offset;
    for tag in 0..3 {
        client.submit(&Request { op: Op::Write, tag, lba: tag as u64, blocks: 1, data_offset: data }).unwrap();
    }
    // The old driver took two and answered one before it died.
    for _ in 0..2 {
        old.next_request().unwrap().unwrap().unwrap();
    }
    old.respond(0, Status::Ok);
    assert_eq!(blockq::unanswered(&region), 2, "two of three unanswered (one consumed and lost, one still queued)");
    assert_eq!(blockq::mark_driver_gone(&region), 1);
    assert_eq!(blockq::driver_epoch(&region), 1);
    let gone = ProtocolError::DriverGone { attached: 0, now: 1 };
    // The answer already posted is not taken either: the whole epoch is over.
    assert_eq!(client.poll(), Err(gone));
    assert_eq!(client.submit(&Request { op: Op::Flush, tag: 9, lba: 0, blocks: 0, data_offset: 0 }), Err(gone));
    // Until a new driver formats the region, nobody attaches (no magic).
    assert_eq!(Client::attach(region.clone()).err(), Some(ProtocolError::BadHeader));
    // A dead driver that still wrote an answer changes nothing for the
    // client (init stops it from running before it marks it gone; this
    // is the bound if it did not).
    old.respond(1, Status::Ok);
    let mut new = Server::format(region.clone(), 8, 512, 64).unwrap();
    assert_eq!(blockq::driver_epoch(&region), 1, "formatting keeps the epoch");
    let mut client = Client::attach(region.clone()).unwrap();
    assert_eq!((client.epoch(), client.in_flight()), (1, 0));
    assert_eq!(client.poll(), Ok(None));
    client.submit(&Request { op: Op::Write, tag: 42, lba: 5, blocks: 1, data_offset: data }).unwrap();
    let r = new.next_request().unwrap().unwrap().unwrap();
    assert_eq!((r.tag, r.lba), (42, 5));
    new.respond(r.tag, Status::Ok);
    assert_eq!(client.poll().unwrap(), Some(Response { tag: 42, status: Status::Ok }));
    // A second death: the epoch moves on again.
    assert_eq!(blockq::mark_driver_gone(&region), 2);
    assert_eq!(client.poll(), Err(ProtocolError::DriverGone { attached: 1, now: 2 }));
}

/// A client that reads the header while the owner marks the driver gone
/// never attaches under the new epoch to the old format: the magic is
/// cleared before the epoch moves, and resume reads the epoch first.
#[test]
fn marking_gone_clears_the_magic_before_the_epoch_moves() {
    let region = AtomicRegion::new(3 * 4096 + 8 * 4096);
    Server::format(region.clone(), 8, 512, 64).unwrap();
    blockq::mark_driver_gone(&region);
    // Old format, new epoch: refused until a server writes the magic again.
    for _ in 0..3 {
        assert_eq!(Client::resume(region.clone()).err(), Some(ProtocolError::BadHeader));
    }
    Server::format(region.clone(), 8, 512, 64).unwrap();
    assert_eq!(Client::resume(region.clone()).map(|c| c.epoch()).ok(), Some(1));
}

/// The interleaving one CPU allows: the client passed its epoch check in
/// `submit` and was preempted before it wrote the request and stored its
/// producer index; meanwhile the owner marked the driver gone and a new
/// driver formatted the region. The late request lands in the new format:
/// it stays inside the ring's bounds (the new indices continue from the
/// producer), it is refused — never executed — because it carries the old
/// epoch, and the old epoch's leftover requests in the ring are not
/// replayed. The client, resumed, learns `DriverGone` and attaches again.
#[test]
fn a_late_request_from_a_dead_drivers_client_is_refused_not_executed() {
    let region = AtomicRegion::new(3 * 4096 + 8 * 4096);
    let mut old = Server::format(region.clone(), 8, 512, 64).unwrap();
    let mut client = Client::attach(region.clone()).unwrap();
    let data = client.geometry().data_offset;
    // Eleven old writes, all executed and answered: the ring holds old
    // requests a careless new driver could replay.
    for tag in 0..11 {
        client.submit(&Request { op: Op::Write, tag, lba: 3, blocks: 1, data_offset: data }).unwrap();
        let r = old.next_request().unwrap().unwrap().unwrap();
        old.respond(r.tag, Status::Ok);
        assert_eq!(client.poll().unwrap().map(|r| r.tag), Some(tag));
    }
    // The late request, as the preempted client would write it: epoch 0
    // at byte 20, into slot 11 % 8, then the producer 12.
    let late = |region: &AtomicRegion| {
        let mut b = [0u8; 32];
        b[0] = 2; // write
        b[4..8].copy_from_slice(&99u32.to_le_bytes());
        b[8..16].copy_from_slice(&7u64.to_le_bytes());
        b[16..20].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&data.to_le_bytes());
        region.write(0x1000 + (11 % 8) * 32, &b);
        region.store_release(0x40, 12);
    };
    blockq::mark_driver_gone(&region);
    let mut new = Server::format(region.clone(), 8, 512, 64).unwrap();
    assert_eq!(new.next_request(), Ok(None), "nothing of the old epoch is replayed");
    late(&region);
    assert_eq!(new.next_request(), Ok(Some(Err((99, Status::BadRequest)))), "refused, not executed");
    new.respond(99, Status::BadRequest);
    // The resumed client polls: the driver it knew is gone.
    assert_eq!(client.poll(), Err(ProtocolError::DriverGone { attached: 0, now: 1 }));
    let mut client = Client::attach(region.clone()).unwrap();
    assert_eq!(client.in_flight(), 0);
    client.submit(&Request { op: Op::Write, tag: 5, lba: 9, blocks: 1, data_offset: data }).unwrap();
    let r = new.next_request().unwrap().unwrap().unwrap();
    assert_eq!((r.tag, r.lba), (5, 9));
    new.respond(r.tag, Status::Ok);
    assert_eq!(client.poll().unwrap(), Some(Response { tag: 5, status: Status::Ok }));
    // Without the epoch stamp check the late write would have run: the
    // same bytes stamped with the new epoch are executed.
    let mut b = [0u8; 32];
    b[0] = 2;
    b[4..8].copy_from_slice(&100u32.to_le_bytes());
    b[16..20].copy_from_slice(&1u32.to_le_bytes());
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[24..32].copy_from_slice(&data.to_le_bytes());
    region.write(0x1000 + (13 % 8) * 32, &b);
    region.store_release(0x40, 14);
    assert!(matches!(new.next_request(), Ok(Some(Ok(Request { tag: 100, .. })))));
}

/// Who yields (`qd1poll`): a freshly formatted server is a yielding one
/// (its clients poll once per yield); a server on a core of its own says
/// it polls, and its clients then spin between yields; turning polling
/// off, or a new driver formatting the region (restarted, perhaps on a
/// shared core), puts the clients back on one poll per yield. The flag
/// never disturbs the protocol: a QD1 exchange works either way, and the
/// geometry a client reads is the same.
#[test]
fn qd1poll_a_polling_server_makes_its_clients_spin_and_a_reformat_clears_it() {
    let region = AtomicRegion::new(3 * 4096 + 8 * 4096);
    let mut server = Server::format(region.clone(), 8, 512, 64).unwrap();
    let mut client = Client::attach(region.clone()).unwrap();
    assert!(!client.server_polls());
    assert_eq!(client.polls_per_yield(), 1);
    server.set_polling(true);
    assert!(client.server_polls());
    assert_eq!(client.polls_per_yield(), blockq::SPIN_POLLS_PER_YIELD);
    // A QD1 round trip with the flag set, and the header unchanged by it.
    let data = client.geometry().data_offset;
    client.submit(&Request { op: Op::Read, tag: 5, lba: 3, blocks: 1, data_offset: data }).unwrap();
    let req = server.next_request().unwrap().unwrap().unwrap();
    assert_eq!((req.tag, req.lba), (5, 3));
    server.respond(req.tag, Status::Ok);
    assert_eq!(client.poll().unwrap(), Some(Response { tag: 5, status: Status::Ok }));
    assert_eq!(Client::resume(region.clone()).unwrap().geometry(), client.geometry());
    server.set_polling(false);
    assert_eq!(client.polls_per_yield(), 1);
    server.set_polling(true);
    // The owner restarts the driver: the new one starts yielding.
    blockq::mark_driver_gone(&region);
    let _new = Server::format(region.clone(), 8, 512, 64).unwrap();
    let again = Client::attach(region.clone()).unwrap();
    assert!(!again.server_polls());
    assert_eq!(again.polls_per_yield(), 1);
}
