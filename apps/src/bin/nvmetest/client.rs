//! `nvmetest client` (the `block_service` test): the application end of
//! `nvmed serve`'s block service, through `blockq` rings in a region init
//! links into both.

use crate::pattern::{self, Rng};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use blockq::{Client, Op, Request, Response, Status};
use exo_abi::PAGE_SIZE;
use exo_rt::blockq::SharedWindow;
use exo_rt::layout::SHARED_VA;
use exo_rt::mmio::Window;
use exo_rt::{args_word, println};

fn region() -> Result<Window, String> {
    Window::new(SHARED_VA, args_word(3)).ok_or_else(|| "no shared region".into())
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
            c.submit(&Request { op: Op::Flush, tag: MID_FLUSH, lba: 0, blocks: 0, data_offset: 0 })
                .map_err(|e| format!("flush: {e:?}"))?;
            mid_flush = true;
            inflight += 1;
            continue;
        }
        if tag < REQUESTS && !busy[slot] {
            let blocks = rng.range(1, slot_bytes / bs) as u32;
            let lba = rng.range(0, span - blocks as u64);
            let off = geo.data_offset + slot as u64 * slot_bytes;
            pattern::fill(&win, off, seed, lba, blocks as u64, bs);
            c.submit(&Request { op: Op::Write, tag, lba, blocks, data_offset: off })
                .map_err(|e| format!("submit: {e:?}"))?;
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
    c.submit(&Request { op: Op::Flush, tag: 9999, lba: 0, blocks: 0, data_offset: 0 })
        .map_err(|e| format!("flush: {e:?}"))?;
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
            c.submit(&Request { op: Op::Read, tag: next as u32, lba, blocks, data_offset: off })
                .map_err(|e| format!("submit: {e:?}"))?;
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
    c.submit(&Request { op: Op::Read, tag: 7777, lba: end - 1, blocks: 2, data_offset: geo.data_offset })
        .map_err(|e| format!("submit: {e:?}"))?;
    let r = wait(&mut c, &mut io_yields)?;
    if r.status != Status::OutOfRange {
        return Err(format!("a read past the end answered {:?}", r.status));
    }
    // A hostile request written straight into the ring (the client API
    // would refuse it): its data would land on the ring header. The
    // server must answer BadRequest and execute nothing.
    hostile_request(&win, geo.entries, 4242);
    let mut c = Client::resume(SharedWindow(win)).map_err(|e| format!("re-attaching: {e:?}"))?;
    let bad = wait(&mut c, &mut io_yields)?;
    if bad.tag != 4242 || bad.status != Status::BadRequest {
        return Err(format!("a request with data over the ring header answered {bad:?}"));
    }
    if win.load_acquire32(0) != blockq::MAGIC {
        return Err("the hostile request changed the ring header".into());
    }
    println!(
        "client: a hand-written request whose data would overwrite the ring header was refused ({:?})",
        bad.status
    );
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
/// caller resumes its `Client` afterwards to pick up the new index.
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
