//! The block service (`block_service`): the driver serves an application
//! through `blockq` rings in a region init links into both. The
//! driver maps the region's data area into the device, so the controller
//! DMAs straight to and from the application's buffers; neither side makes
//! a system call per request (each polls, and yields the CPU when idle).
//!
//! `serve poll` is the driver on a core of its own (init pins it there,
//! QEMU test `qd1poll_own_core`): it polls its request ring and the NVMe
//! completion queue without ever yielding, and sets the rings' "server
//! polls" flag so its clients spin for their answers instead of yielding
//! (`blockq`'s `FLAG_SERVER_POLLS`). Plain `serve` shares a core with its
//! clients and yields whenever it has nothing to do.
//!
//! When it stops, the driver leaves its loop's counts in its mailbox for
//! init: [`MAILBOX_SYSCALLS`] (system calls it made while serving) and
//! [`MAILBOX_IDLE_YIELDS`].

use crate::hw::{self, DmaPages};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use blockq::{Op, Request, Server, Status};
use exo_abi::PAGE_SIZE;
use exo_rt::blockq::SharedWindow;
use exo_rt::layout::{MAILBOX_VA, SHARED_REGION_IOVA, SHARED_VA};
use exo_rt::mmio::Window;
use exo_rt::{mem, println, yield_now};
use nvme::driver::{Direction, Error as NvmeError};
use nvme::prp::DmaBuffer;

const RING_ENTRIES: u32 = 32;
const ASYNC_QUEUE: usize = 0;
const SYNC_QUEUE: usize = 1;
/// Commands the server keeps in flight on the async queue (< its 63 ids).
const MAX_IN_FLIGHT: u32 = 32;
/// Mailbox words (byte offsets) with the serving loop's counts, written
/// when the driver stops: its system calls, and its yields when idle.
pub const MAILBOX_SYSCALLS: u64 = 16;
pub const MAILBOX_IDLE_YIELDS: u64 = 24;

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
    let polls = exo_rt::args().split_whitespace().nth(1) == Some("poll");
    let g = hw::grants()?;
    let win = Window::new(SHARED_VA, g.extra[0]).ok_or("no shared region")?;
    // A restartable driver (`dma=parent`, QEMU test `kill_driver`): init
    // granted the DMA of its spare frames, which it revokes when it kills
    // it; this driver cannot grant any itself.
    let dma = if exo_rt::nvme::dma_granted_by_parent() {
        exo_rt::nvme::spare_granted_by_parent()?
    } else {
        hw::spare_dma(g.handle)?
    };
    // Polling, its completion queues raise interrupts all the same: init
    // may route them to a sleeping client (its wake-up); this driver never
    // waits for one.
    let config = nvme::driver::Config { io_queues: 2, io_queue_entries: 64, interrupts: polls, ..Default::default() };
    let (mut d, _) = hw::bring_up_with(&g, dma, config)?;
    let bs = d.block_size();
    let (base_lba, capacity) = lba_window(g.extra[1], bs, d.namespace().size)?;
    let mut server = Server::format(SharedWindow(win), RING_ENTRIES, bs, capacity)
        .map_err(|e| format!("formatting the region: {e:?}"))?;
    server.set_polling(polls);
    let geo = server.geometry();
    // Init, the region's owner, made it device-visible at SHARED_REGION_IOVA
    // (a borrower cannot grant DMA); the data area is at its offset there.
    let data_pages = geo.data_len / PAGE_SIZE;
    let data_iova = SHARED_REGION_IOVA + geo.data_offset;
    let data =
        DmaPages { win: win.slice(geo.data_offset, data_pages * PAGE_SIZE).ok_or("data area")?, iova: data_iova };
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
        if shared {
            "flushes and MDTS-split transfers share queue 0, after draining it"
        } else {
            "queue 0 asynchronous, queue 1 for flushes and MDTS-split transfers"
        }
    );
    let (mut served, mut refused, mut idle, mut spins) = (0u64, 0u64, 0u64, 0u64);
    let (sq0, cq0) = (d.regs().sq_doorbells(), d.regs().cq_doorbells());
    let mut tags: [Option<u32>; 64] = [None; 64];
    let mut in_flight = 0u32;
    // A synchronous request waiting for the shared queue to drain.
    let mut draining = false;
    let mut drains = 0u64;
    let mut pending: Option<Request> = None;
    let max = d.max_transfer_bytes();
    let calls0 = exo_rt::sys::calls();
    loop {
        while let Some((cid, outcome)) = d.poll(ASYNC_QUEUE).map_err(|e| format!("poll: {e}"))? {
            let tag = tags
                .get_mut(cid as usize)
                .and_then(|t| t.take())
                .ok_or(format!("completion for unknown command {cid}"))?;
            let status =
                outcome.map_or_else(|e| Status::DeviceError { detail: e.status.to_field() as u32 }, |_| Status::Ok);
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
                if polls {
                    // Our own core: nobody else wants it, and the next
                    // request is a load away. No `pause` (see
                    // `exo_rt::blockq::wait`).
                    spins += 1;
                } else {
                    idle += 1;
                    yield_now();
                }
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
    let calls = exo_rt::sys::calls() - calls0;
    let (sq1, cq1) = (d.regs().sq_doorbells(), d.regs().cq_doorbells());
    mem::write(MAILBOX_VA + MAILBOX_SYSCALLS, calls);
    mem::write(MAILBOX_VA + MAILBOX_IDLE_YIELDS, idle);
    println!(
        "nvmed serve{}: {served} requests served, {refused} refused, {} NVMe commands ({} doorbells), {calls} system calls, {idle} idle yields, {spins} idle polls, {drains} waits for the shared queue to drain",
        if polls { " poll" } else { "" },
        sq1 - sq0,
        sq1 - sq0 + cq1 - cq0
    );
    // For `eval --drivers --smp 2`: the loop's counts in one line.
    let line = eval_lines::qd1poll::Qd1DriverLine {
        polls,
        requests: served + refused,
        commands: sq1 - sq0,
        doorbells: sq1 - sq0 + cq1 - cq0,
        syscalls: calls,
        idle_yields: idle,
    };
    println!("{line}");
    Ok(())
}
