//! `nvmed rw`: random writes and read-back over the whole stack (the
//! `nvme_rw` test) and a queue-depth-32 random-read pass.

use crate::hw::{self, DmaPages, Nvme};
use crate::pattern::{self, Rng};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use exo_abi::PAGE_SIZE;
use exo_rt::println;
use exo_rt::time::rdtsc;
use nvme::driver::Direction;
use nvme::prp::DmaBuffer;

/// I/Os of the random pass (each at a random LBA).
const IOS: usize = 1024;
/// The random pass stays in the first 128 MiB of the namespace; the
/// persistence test uses blocks beyond it.
const RW_SPAN_BYTES: u64 = 128 << 20;
/// Pages of the largest transfer: 640 KiB, above QEMU's 512 KiB MDTS, so
/// the driver must split it.
const LARGE_PAGES: u64 = 160;

#[derive(Clone, Copy)]
struct Io {
    lba: u64,
    blocks: u64,
    /// Byte offset of the data in the first buffer page.
    offset: u64,
}

/// The data area as the device sees it: page I/O addresses.
pub struct Buffers {
    pub dma: DmaPages,
    pub pages: Vec<u64>,
}

impl Buffers {
    pub fn new(dma: DmaPages) -> Buffers {
        let pages = (0..dma.pages()).map(|i| dma.page_iova(i)).collect();
        Buffers { dma, pages }
    }

    /// `len` bytes starting `offset` bytes into data page `first`.
    pub fn buffer(&self, first: usize, offset: u64, len: u64) -> DmaBuffer<'_> {
        DmaBuffer { pages: &self.pages[first..], offset: offset as u32, len: len as u32 }
    }
}

fn plan(rng: &mut Rng, span_blocks: u64, bs: u64) -> Vec<Io> {
    let per_page = PAGE_SIZE / bs;
    (0..IOS)
        .map(|i| {
            let (blocks, offset) = if i % 128 == 5 {
                (LARGE_PAGES * per_page, 0)
            } else if i % 8 == 3 {
                (rng.range(2, 64) * per_page, rng.range(0, per_page - 1) * bs)
            } else {
                (rng.range(1, per_page), rng.range(0, per_page - 1) * bs)
            };
            Io { lba: rng.range(0, span_blocks - blocks), blocks, offset }
        })
        .collect()
}

fn per_io(ticks: u64, n: u64, tsc_per_us: u64) -> String {
    match (ticks / n.max(1)).checked_div(tsc_per_us) {
        Some(us) => format!("{us} us"),
        None => format!("{} TSC ticks", ticks / n.max(1)),
    }
}

pub fn run() -> Result<(), String> {
    let g = hw::grants()?;
    let tsc_per_us = g.extra[0];
    let dma = hw::spare_dma(g.handle)?;
    let (mut d, data) = hw::bring_up(&g, dma, 2)?;
    let bufs = Buffers::new(data);
    exercise(&mut d, &bufs, tsc_per_us)
}

/// The random write / verified read pass, the QD32 reads and the
/// past-the-end read on a controller that is up (also `nvmed pair`).
pub fn exercise(d: &mut Nvme, bufs: &Buffers, tsc_per_us: u64) -> Result<(), String> {
    let bs = d.block_size() as u64;
    let span = (RW_SPAN_BYTES / bs).min(d.namespace().size);
    let seed = rdtsc() | 1;
    let mut rng = Rng::new(seed);
    let ios = plan(&mut rng, span, bs);
    let queues = d.io_queue_count();
    let win = bufs.dma.win;

    // Write pass: the pattern for each I/O's LBAs, alternating queues.
    let (sq0, cq0) = (d.regs().sq_doorbells(), d.regs().cq_doorbells());
    let mut bytes = 0;
    let t0 = rdtsc();
    for (i, io) in ios.iter().enumerate() {
        pattern::fill(&win, io.offset, seed, io.lba, io.blocks, bs);
        let buf = bufs.buffer(0, io.offset, io.blocks * bs);
        d.write(i % queues, io.lba, &buf)
            .map_err(|e| format!("write {i} ({} blocks at LBA {}): {e}", io.blocks, io.lba))?;
        bytes += io.blocks * bs;
    }
    for q in 0..queues {
        d.flush(q).map_err(|e| format!("flush queue {q}: {e}"))?;
    }
    let t_write = rdtsc() - t0;
    let (sq1, cq1) = (d.regs().sq_doorbells(), d.regs().cq_doorbells());

    // Read pass into a poisoned buffer, then verify every block.
    let t0 = rdtsc();
    for (i, io) in ios.iter().enumerate() {
        let len = io.blocks * bs;
        win.fill(io.offset, len, 0xa5);
        d.read(i % queues, io.lba, &bufs.buffer(0, io.offset, len))
            .map_err(|e| format!("read {i} ({} blocks at LBA {}): {e}", io.blocks, io.lba))?;
        if let Some((b, j, got, want)) = pattern::check(&win, io.offset, seed, io.lba, io.blocks, bs) {
            return Err(format!("I/O {i}: LBA {} word {j}: read {got:#x}, wrote {want:#x}", io.lba + b));
        }
    }
    let t_read = rdtsc() - t0;
    let (sq2, cq2) = (d.regs().sq_doorbells(), d.regs().cq_doorbells());
    let large = ios.iter().filter(|io| io.blocks * bs > d.max_transfer_bytes()).count();
    let multi = ios.iter().filter(|io| io.offset + io.blocks * bs > 2 * PAGE_SIZE).count();
    println!(
        "nvmed: wrote and verified {} I/Os ({} KiB) at random LBAs on {queues} queues: {multi} need PRP lists, {large} exceed MDTS and were split",
        ios.len(),
        bytes / 1024
    );
    println!(
        "nvmed: write pass {} commands (incl. {queues} flushes), {} SQ + {} CQ doorbells, {} per I/O at QD1",
        sq1 - sq0,
        sq1 - sq0,
        cq1 - cq0,
        per_io(t_write, ios.len() as u64, tsc_per_us)
    );
    println!(
        "nvmed: read pass {} commands, {} SQ + {} CQ doorbells, {} per I/O at QD1 (incl. verifying)",
        sq2 - sq1,
        sq2 - sq1,
        cq2 - cq1,
        per_io(t_read, ios.len() as u64, tsc_per_us)
    );
    qd32_reads(d, bufs, &ios, seed, tsc_per_us)?;
    // A read past the end of the namespace must come back as a clear error.
    let end = d.namespace().size;
    match d.read(0, end - 1, &bufs.buffer(0, 0, 2 * bs)) {
        Err(nvme::driver::Error::Command { error, .. }) if error.kind == nvme::status::ErrorKind::LbaOutOfRange => {
            println!("nvmed: a read of LBAs {}..{} (past the end) failed as it should: {error}", end - 1, end + 1)
        }
        other => return Err(format!("a read past the end of the namespace gave {other:?}")),
    }
    Ok(())
}

/// Random 4 KiB-or-smaller reads of written blocks with 32 commands in
/// flight (16 per queue), each checked on completion. Submissions and
/// completions are batched: one doorbell write per queue per batch.
fn qd32_reads(d: &mut Nvme, bufs: &Buffers, ios: &[Io], seed: u64, tsc_per_us: u64) -> Result<(), String> {
    const DEPTH: usize = 32;
    const TOTAL: usize = 2048;
    let bs = d.block_size() as u64;
    let per_page = PAGE_SIZE / bs;
    let queues = d.io_queue_count();
    let win = bufs.dma.win;
    let mut rng = Rng::new(seed ^ 0x5151);
    // Slot s uses data page s; (queue, cid) -> slot; slot -> (lba, blocks).
    let mut by_cid = [[usize::MAX; 64]; 2];
    let mut slot_io = [(0u64, 0u64); DEPTH];
    let (sq0, cq0) = (d.regs().sq_doorbells(), d.regs().cq_doorbells());
    let (mut submitted, mut done) = (0usize, 0usize);
    let mut free: Vec<usize> = (0..DEPTH).collect();
    let t0 = rdtsc();
    let mut reaped: Vec<nvme::driver::Polled> = Vec::with_capacity(64);
    while done < TOTAL {
        // Fill every free slot, then one SQ doorbell per queue for the batch.
        let mut queued = [false; 2];
        while submitted < TOTAL {
            let Some(slot) = free.pop() else { break };
            let io = ios[rng.range(0, ios.len() as u64 - 1) as usize];
            let blocks = io.blocks.min(per_page);
            let lba = io.lba + rng.range(0, io.blocks - blocks);
            let q = slot % queues;
            let buf = bufs.buffer(slot, 0, blocks * bs);
            let cid = d.queue_io(q, Direction::Read, lba, &buf).map_err(|e| format!("QD32 submit: {e}"))?;
            by_cid[q][cid as usize] = slot;
            slot_io[slot] = (lba, blocks);
            submitted += 1;
            queued[q] = true;
        }
        for (q, _) in queued.iter().enumerate().take(queues).filter(|(_, queued)| **queued) {
            d.ring(q).map_err(|e| format!("QD32 ring: {e}"))?;
        }
        // Everything completed so far, one CQ doorbell per queue.
        for (q, cids) in by_cid.iter_mut().enumerate().take(queues) {
            reaped.clear();
            d.poll_batch(q, 64, |p| reaped.push(p)).map_err(|e| format!("QD32 poll: {e}"))?;
            for &(cid, outcome) in reaped.iter() {
                let slot = cids.get(cid as usize).copied().unwrap_or(usize::MAX);
                if slot >= DEPTH {
                    return Err(format!("QD32: completion for unknown command {cid} on queue {q}"));
                }
                outcome.map_err(|e| format!("QD32 read: {e}"))?;
                let (lba, blocks) = slot_io[slot];
                if let Some((b, j, got, want)) = pattern::check(&win, slot as u64 * PAGE_SIZE, seed, lba, blocks, bs) {
                    return Err(format!("QD32: LBA {} word {j}: read {got:#x}, wrote {want:#x}", lba + b));
                }
                cids[cid as usize] = usize::MAX;
                free.push(slot);
                done += 1;
            }
        }
    }
    let t = rdtsc() - t0;
    let (sq1, cq1) = (d.regs().sq_doorbells(), d.regs().cq_doorbells());
    println!(
        "nvmed: QD32 random reads (batched doorbells): {TOTAL} verified, {} SQ + {} CQ doorbells ({:.2} per I/O), {} per I/O, no system call on the path",
        sq1 - sq0,
        cq1 - cq0,
        (sq1 - sq0 + cq1 - cq0) as f64 / TOTAL as f64,
        per_io(t, TOTAL as u64, tsc_per_us)
    );
    Ok(())
}
