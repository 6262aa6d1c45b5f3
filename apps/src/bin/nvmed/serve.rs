//! The block service (`block_service`): the driver serves an application
//! through `blockq` rings in a region init links into both. The
//! driver maps the region's data area into the device, so the controller
//! DMAs straight to and from the application's buffers; neither side makes
//! a system call per request (each polls, and yields the CPU when idle).

use crate::hw::{self, DmaPages};
use crate::pattern::{self, Rng};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use exo_abi::PAGE_SIZE;
use exo_rt::layout::{MAILBOX_VA, SHARED_REGION_IOVA, SHARED_VA};
use exo_rt::mmio::Window;
use exo_rt::{args_word, mem, println, yield_now};
use blockq::{Client, Op, Request, Response, Server, Status};
use exo_rt::blockq::SharedWindow;
use nvme::driver::{Direction, Error as NvmeError};
use nvme::prp::DmaBuffer;

const RING_ENTRIES: u32 = 32;
const ASYNC_QUEUE: usize = 0;
const SYNC_QUEUE: usize = 1;
/// Commands the server keeps in flight on the async queue (< its 63 ids).
const MAX_IN_FLIGHT: u32 = 32;

fn region() -> Result<Window, String> {
    Window::new(SHARED_VA, args_word(3)).ok_or_else(|| "no shared region".into())
}

fn device_status(e: NvmeError) -> Status {
    match e {
        NvmeError::Command { error, .. } => Status::DeviceError { detail: error.status.to_field() as u32 },
        _ => Status::DeviceError { detail: 0 },
    }
}

/// The part of the namespace this service exposes, from args word 7:
/// 0 = all of it; else the low 32 bits are the first MiB and the high 32
/// bits the length in MiB, turned into LBAs with the namespace's own block
/// size. Returns (first LBA, blocks). Clients see LBA 0 at the window's
/// start and cannot reach outside it (the server refuses requests past
/// `blocks` as out of range).
fn lba_window(word: u64, bs: u32, ns_blocks: u64) -> Result<(u64, u64), String> {
    let w = nvme::window::LbaWindow::from_mib_word(word, bs, ns_blocks)
        .map_err(|e| format!("the window (MiB {} + {}): {e}", word & 0xffff_ffff, word >> 32))?;
    Ok((w.first, w.blocks))
}

pub fn serve() -> Result<(), String> {
    let g = hw::grants()?;
    let win = Window::new(SHARED_VA, g.extra[0]).ok_or("no shared region")?;
    let (mut d, _) = hw::bring_up(&g, hw::spare_dma(g.handle)?, 2)?;
    let bs = d.block_size();
    let (base_lba, capacity) = lba_window(g.extra[1], bs, d.namespace().size)?;
    let mut server = Server::format(SharedWindow(win), RING_ENTRIES, bs, capacity).map_err(|e| format!("formatting the region: {e:?}"))?;
    let geo = server.geometry();
    // Init, the region's owner, made it device-visible at SHARED_REGION_IOVA
    // (a borrower cannot grant DMA); the data area is at its offset there.
    let data_pages = geo.data_len / PAGE_SIZE;
    let data_iova = SHARED_REGION_IOVA + geo.data_offset;
    let data = DmaPages { win: win.slice(geo.data_offset, data_pages * PAGE_SIZE).ok_or("data area")?, iova: data_iova };
    let pages: Vec<u64> = (0..data_pages).map(|i| data.page_iova(i)).collect();
    println!(
        "nvmed serve: region of {} KiB: {RING_ENTRIES}-entry rings, {} KiB data area mapped into the device; serving LBAs {base_lba}..{}",
        win.len() / 1024,
        geo.data_len / 1024,
        base_lba + capacity
    );
    mem::write(MAILBOX_VA + 8, 1);

    // Requests that fit one NVMe command run concurrently on queue 0
    // (answered as they complete, in any order); flushes and transfers
    // above MDTS run one at a time on queue 1 — or, when the controller
    // granted one queue pair, on queue 0 too, once nothing else is in
    // flight there (a synchronous wait must see only its own completions).
    let sync_queue = d.queue_for(SYNC_QUEUE);
    let shared = sync_queue == ASYNC_QUEUE;
    println!(
        "nvmed serve: {} I/O queue pairs granted: {}",
        d.io_queue_count(),
        if shared { "flushes and MDTS-split transfers share queue 0, after draining it" } else { "queue 0 asynchronous, queue 1 for flushes and MDTS-split transfers" }
    );
    let (mut served, mut refused, mut idle) = (0u64, 0u64, 0u64);
    let (sq0, cq0) = (d.regs().sq_doorbells, d.regs().cq_doorbells);
    let mut tags: [Option<u32>; 64] = [None; 64];
    let mut in_flight = 0u32;
    // A synchronous request waiting for the shared queue to drain.
    let mut draining = false;
    let mut drains = 0u64;
    let mut pending: Option<Request> = None;
    let max = d.max_transfer_bytes();
    loop {
        while let Some((cid, outcome)) = d.poll(ASYNC_QUEUE).map_err(|e| format!("poll: {e}"))? {
            let tag = tags.get_mut(cid as usize).and_then(|t| t.take()).ok_or(format!("completion for unknown command {cid}"))?;
            let status = outcome.map_or_else(|e| Status::DeviceError { detail: e.status.to_field() as u32 }, |_| Status::Ok);
            server.respond(tag, status);
            in_flight -= 1;
            served += 1;
        }
        if draining {
            if in_flight > 0 {
                continue;
            }
            draining = false;
        }
        let next = if let Some(p) = pending.take() {
            Ok(Some(Ok(p)))
        } else if in_flight < MAX_IN_FLIGHT {
            server.next_request()
        } else {
            Ok(None)
        };
        let req = match next {
            Ok(Some(Ok(req))) => req,
            Ok(Some(Err((tag, status)))) => {
                server.respond(tag, status);
                refused += 1;
                continue;
            }
            Ok(None) => {
                if in_flight == 0 && mem::read(MAILBOX_VA) != 0 {
                    break;
                }
                idle += 1;
                yield_now();
                continue;
            }
            Err(e) => return Err(format!("the client broke the protocol: {e:?}; stopped serving it")),
        };
        // Validated by the server: inside the data area.
        let rel = req.data_offset.saturating_sub(geo.data_offset);
        let buf = DmaBuffer {
            pages: &pages[((rel / PAGE_SIZE) as usize).min(pages.len())..],
            offset: (rel % PAGE_SIZE) as u32,
            len: req.blocks * bs,
        };
        let dir = if req.op == Op::Read { Direction::Read } else { Direction::Write };
        // Validated against the window's capacity: stays inside it.
        let lba = base_lba + req.lba;
        if req.op != Op::Flush && buf.len as u64 <= max {
            match d.submit_io(ASYNC_QUEUE, dir, lba, &buf) {
                Ok(cid) => {
                    tags[cid as usize] = Some(req.tag);
                    in_flight += 1;
                }
                Err(e) => {
                    server.respond(req.tag, device_status(e));
                    served += 1;
                }
            }
            continue;
        }
        if shared && in_flight > 0 {
            // Finish what is in flight on the one queue first.
            pending = Some(req);
            draining = true;
            drains += 1;
            continue;
        }
        let r = match req.op {
            Op::Flush => d.flush(sync_queue),
            Op::Read => d.read(sync_queue, lba, &buf),
            Op::Write => d.write(sync_queue, lba, &buf),
        };
        server.respond(req.tag, r.map_or_else(device_status, |_| Status::Ok));
        served += 1;
    }
    let (sq1, cq1) = (d.regs().sq_doorbells, d.regs().cq_doorbells);
    println!(
        "nvmed serve: {served} requests served, {refused} refused, {} NVMe commands ({} doorbells), {idle} idle yields, {drains} waits for the shared queue to drain",
        sq1 - sq0,
        sq1 - sq0 + cq1 - cq0
    );
    Ok(())
}

/// Wait for the next response (answers may come in any order).
fn wait(c: &mut Client<SharedWindow>, yields: &mut u64) -> Result<Response, String> {
    exo_rt::blockq::wait(c, 1_000_000, yields).map_err(|e| format!("{e}"))
}

/// The application: writes random blocks through the service, flushes,
/// reads them back into other buffers and checks them; then asks for
/// blocks past the end of the device (must be refused).
pub fn client() -> Result<(), String> {
    let win = region()?;
    let mut yields = 0u64;
    let mut c = exo_rt::blockq::attach(win, 10_000, &mut yields).map_err(|e| format!("attaching: {e}"))?;
    let geo = c.geometry();
    let bs = geo.block_size as u64;
    let seed = exo_rt::time::rdtsc() | 1;
    let mut rng = Rng::new(seed);
    const REQUESTS: u32 = 200;
    // Slots of 8 KiB in the data area; writes use the first half, reads
    // the second, so a read never finds the data the write left there.
    let slot_bytes = 2 * PAGE_SIZE;
    // Random blocks within the first 48 MiB of what the service exposes
    // (or all of it, if less), in its blocks.
    let span = geo.capacity_blocks.min((48 << 20) / bs);
    if span < slot_bytes / bs {
        return Err(format!("the service exposes {} blocks of {bs} bytes: too few to test", geo.capacity_blocks));
    }
    let slots = geo.data_len / slot_bytes;
    let half = slots / 2;
    let mut done: Vec<(u64, u32)> = Vec::new();
    let t0 = exo_rt::time::rdtsc();
    // Up to `depth` requests in flight; a slot is reused only once its
    // request's answer came back (answers may come in any order).
    let depth = 8.min(half);
    let mut busy = [false; 8];
    let (mut tag, mut inflight, mut io_yields) = (0u32, 0u32, 0u64);
    // Halfway, a flush while writes are still in flight (it covers the
    // ones answered before it): on a controller that granted one queue
    // pair the server must drain its queue before the flush waits there.
    const MID_FLUSH: u32 = 8888;
    let mut mid_flush = false;
    while tag < REQUESTS || inflight > 0 {
        let slot = (tag as u64 % depth) as usize;
        if tag == REQUESTS / 2 && !mid_flush && inflight > 0 {
            c.submit(&Request { op: Op::Flush, tag: MID_FLUSH, lba: 0, blocks: 0, data_offset: 0 }).map_err(|e| format!("flush: {e:?}"))?;
            mid_flush = true;
            inflight += 1;
            continue;
        }
        if tag < REQUESTS && !busy[slot] {
            let blocks = rng.range(1, slot_bytes / bs) as u32;
            let lba = rng.range(0, span - blocks as u64);
            let off = geo.data_offset + slot as u64 * slot_bytes;
            pattern::fill(&win, off, seed, lba, blocks as u64, bs);
            c.submit(&Request { op: Op::Write, tag, lba, blocks, data_offset: off }).map_err(|e| format!("submit: {e:?}"))?;
            done.push((lba, blocks));
            busy[slot] = true;
            tag += 1;
            inflight += 1;
            continue;
        }
        let r = wait(&mut c, &mut io_yields)?;
        if r.tag == MID_FLUSH && mid_flush {
            if r.status != Status::Ok {
                return Err(format!("the flush sent with writes in flight answered {:?}", r.status));
            }
            inflight -= 1;
            continue;
        }
        if r.status != Status::Ok || r.tag >= tag {
            return Err(format!("write {} answered {:?}", r.tag, r.status));
        }
        busy[(r.tag as u64 % depth) as usize] = false;
        inflight -= 1;
    }
    if !mid_flush {
        return Err("no write was in flight halfway: the mid-stream flush was never sent".into());
    }
    c.submit(&Request { op: Op::Flush, tag: 9999, lba: 0, blocks: 0, data_offset: 0 }).map_err(|e| format!("flush: {e:?}"))?;
    let r = wait(&mut c, &mut io_yields)?;
    if r.status != Status::Ok || r.tag != 9999 {
        return Err(format!("flush: {r:?}"));
    }
    // Read back into the other half of the data area, `depth` at a time,
    // checking each block as its answer arrives.
    let (mut next, mut inflight) = (0usize, 0u32);
    let mut busy = [false; 8];
    while next < done.len() || inflight > 0 {
        let slot = (next as u64 % depth) as usize;
        if next < done.len() && !busy[slot] {
            let (lba, blocks) = done[next];
            let off = geo.data_offset + (half + slot as u64) * slot_bytes;
            win.fill(off, blocks as u64 * bs, 0xa5);
            c.submit(&Request { op: Op::Read, tag: next as u32, lba, blocks, data_offset: off }).map_err(|e| format!("submit: {e:?}"))?;
            busy[slot] = true;
            next += 1;
            inflight += 1;
            continue;
        }
        let r = wait(&mut c, &mut io_yields)?;
        let i = r.tag as usize;
        if r.status != Status::Ok || i >= next {
            return Err(format!("read {i} answered {:?}", r.status));
        }
        let slot = i as u64 % depth;
        let (lba, blocks) = done[i];
        let off = geo.data_offset + (half + slot) * slot_bytes;
        if let Some((b, j, got, want)) = pattern::check(&win, off, seed, lba, blocks as u64, bs) {
            return Err(format!("read {i}: LBA {} word {j}: {got:#x}, wrote {want:#x}", lba + b));
        }
        busy[slot as usize] = false;
        inflight -= 1;
    }
    let t = exo_rt::time::rdtsc() - t0;
    // Past the end of the device: refused by the server, never executed.
    let end = geo.capacity_blocks;
    c.submit(&Request { op: Op::Read, tag: 7777, lba: end - 1, blocks: 2, data_offset: geo.data_offset }).map_err(|e| format!("submit: {e:?}"))?;
    let r = wait(&mut c, &mut io_yields)?;
    if r.status != Status::OutOfRange {
        return Err(format!("a read past the end answered {:?}", r.status));
    }
    // A hostile request written straight into the ring (the client API
    // would refuse it): its data would land on the ring header. The
    // server must answer BadRequest and execute nothing.
    hostile_request(&win, geo.entries, 4242);
    let mut c = Client::attach(SharedWindow(win)).map_err(|e| format!("re-attaching: {e:?}"))?;
    let bad = wait(&mut c, &mut io_yields)?;
    if bad.tag != 4242 || bad.status != Status::BadRequest {
        return Err(format!("a request with data over the ring header answered {bad:?}"));
    }
    if win.load_acquire32(0) != blockq::MAGIC {
        return Err("the hostile request changed the ring header".into());
    }
    println!("client: a hand-written request whose data would overwrite the ring header was refused ({:?})", bad.status);
    println!(
        "client: {REQUESTS} writes and {REQUESTS} reads (up to {depth} in flight) and two flushes (one sent with writes in flight) through the shared rings, all verified; {} us per request; a read past the end was refused ({:?}); {io_yields} yields while waiting, no other system call",
        t / (2 * REQUESTS as u64 + 1) / args_word(4).max(1),
        r.status
    );
    Ok(())
}

/// Write a read request whose data offset is 0 (the region's header) into
/// the next ring slot by hand, as a hostile client would, and publish it.
/// Layout from `blockq`: requests at 0x1000, 32 bytes each; the
/// request producer index at 0x40. Called with nothing in flight; the
/// caller re-attaches a `Client` afterwards to pick up the new index.
fn hostile_request(win: &Window, entries: u32, tag: u32) {
    let prod = win.load_acquire32(0x40);
    let at = 0x1000 + (prod % entries) as u64 * 32;
    let mut req = [0u8; 32];
    req[0] = 1; // read
    req[4..8].copy_from_slice(&tag.to_le_bytes());
    req[16..20].copy_from_slice(&8u32.to_le_bytes()); // 8 blocks
    // data_offset (bytes 24..32) stays 0: the header page.
    win.write(at, &req);
    win.store_release32(0x40, prod.wrapping_add(1));
}
