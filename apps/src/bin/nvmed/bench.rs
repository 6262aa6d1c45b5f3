//! `nvmed bench` (test `nvme_bench`): the exokernel half of the drivers
//! benchmark (4 KiB random read and write at queue depth 1 and
//! 32 on the raw namespace). One line per workload, for the evaluation
//! harness to collect:
//!
//! `EXO-BENCH system=exo engine=nvme-raw workload=randread-qd32 ops=N
//! secs=S iops=I p50_us=P p99_us=Q doorbells_per_io=D sq_doorbells=A
//! cq_doorbells=B syscalls=C upcalls=U timer_ticks=T`
//!
//! `doorbells_per_io` counts both kinds; `sq_doorbells` and `cq_doorbells`
//! are the loop's totals of each (the harness checks the SQ count against
//! QEMU's trace in a boot with the NVMe ioeventfd off).
//!
//! `syscalls`, `upcalls` and `timer_ticks` are the deltas of the kernel's
//! counters (info page, shared read-only by init at `SCRATCH_VA`) over the
//! measured loop. They are machine-wide: a timer interrupt that preempts
//! the driver and any other process's calls count too, so they bound the
//! driver's own crossings from above.
//!
//! The polled path makes no system call: submission is a store to the SQ
//! and a doorbell write in the driver's BAR mapping, completion a read of
//! its own memory. Latency is submit to reap, in TSC ticks converted with
//! the kernel's calibration (under TCG, wall-clock-ish, not hardware).

use crate::hw::{self, Nvme};
use crate::pattern::Rng;
use crate::rw::Buffers;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use eval_lines::BenchLine;
use exo_abi::kinfo as ki;
use exo_abi::PAGE_SIZE;
use exo_rt::layout::SCRATCH_VA;
use exo_rt::time::rdtsc;
use exo_rt::{mem, println};
use nvme::driver::Direction;

/// The benchmark stays in the first 128 MiB (the region `nvme_rw` uses).
const SPAN_BYTES: u64 = 128 << 20;

struct Row {
    ops: u64,
    ticks: u64,
    latencies: Vec<u64>,
    doorbells: u64,
    /// Of which submission-queue tail writes.
    sq_doorbells: u64,
    /// Kernel counters over the loop: system calls, upcalls, timer ticks.
    crossings: [u64; 3],
}

/// The kernel's machine-wide counters, from init's read-only view of the
/// info page.
fn kernel_counters() -> [u64; 3] {
    [ki::W_SYSCALLS, ki::W_UPCALLS, ki::W_TICKS].map(|w| mem::read(SCRATCH_VA + 8 * w as u64))
}

fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as u64 - 1) * p / 100) as usize]
}

/// `ops` random 4 KiB commands with `depth` in flight (spread over the
/// I/O queues), batched doorbells at depth > 1.
fn workload(
    d: &mut Nvme,
    bufs: &Buffers,
    dir: Direction,
    depth: usize,
    ops: u64,
    rng: &mut Rng,
) -> Result<Row, String> {
    let bs = d.block_size() as u64;
    let blocks = PAGE_SIZE / bs;
    let span = (SPAN_BYTES / bs).min(d.namespace().size) / blocks;
    let queues = d.io_queue_count();
    let mut started = [0u64; 64];
    let mut by_cid = [[usize::MAX; 64]; 2];
    let mut free: Vec<usize> = (0..depth).collect();
    let mut latencies = Vec::with_capacity(ops as usize);
    let mut reaped: Vec<nvme::driver::Polled> = Vec::with_capacity(64);
    let db0 = d.regs().sq_doorbells() + d.regs().cq_doorbells();
    let sq0 = d.regs().sq_doorbells();
    let (mut submitted, mut done) = (0u64, 0u64);
    let k0 = kernel_counters();
    let t0 = rdtsc();
    while done < ops {
        let mut queued = [false; 2];
        while submitted < ops {
            let Some(slot) = free.pop() else { break };
            let q = slot % queues;
            let lba = rng.range(0, span - 1) * blocks;
            let cid = d.queue_io(q, dir, lba, &bufs.buffer(slot, 0, PAGE_SIZE)).map_err(|e| format!("submit: {e}"))?;
            by_cid[q][cid as usize] = slot;
            started[slot] = rdtsc();
            queued[q] = true;
            submitted += 1;
        }
        for (q, _) in queued.iter().enumerate().take(queues).filter(|(_, queued)| **queued) {
            d.ring(q).map_err(|e| format!("ring: {e}"))?;
        }
        for (q, cids) in by_cid.iter_mut().enumerate().take(queues) {
            reaped.clear();
            d.poll_batch(q, 64, |p| reaped.push(p)).map_err(|e| format!("poll: {e}"))?;
            let now = rdtsc();
            for &(cid, outcome) in reaped.iter() {
                outcome.map_err(|e| format!("{dir:?}: {e}"))?;
                let slot =
                    cids.get(cid as usize).copied().filter(|s| *s < depth).ok_or(format!("unknown command {cid}"))?;
                cids[cid as usize] = usize::MAX;
                latencies.push(now - started[slot]);
                free.push(slot);
                done += 1;
            }
        }
    }
    let ticks = rdtsc() - t0;
    let k1 = kernel_counters();
    latencies.sort_unstable();
    let doorbells = d.regs().sq_doorbells() + d.regs().cq_doorbells() - db0;
    let sq_doorbells = d.regs().sq_doorbells() - sq0;
    let crossings = [k1[0] - k0[0], k1[1] - k0[1], k1[2] - k0[2]];
    Ok(Row { ops, ticks, latencies, doorbells, sq_doorbells, crossings })
}

pub fn run() -> Result<(), String> {
    let g = hw::grants()?;
    let tsc_per_us = g.extra[0].max(1);
    if mem::read(SCRATCH_VA + 8 * ki::W_MAGIC as u64) != ki::MAGIC {
        return Err("no kernel info page at SCRATCH_VA (init shares it for the crossing counts)".into());
    }
    // Word 7: 0 = full, 1 = quick, N >= 2 = N ops in every workload.
    let (mut d, data) = hw::bring_up(&g, hw::spare_dma(g.handle)?, 2)?;
    let bufs = Buffers::new(data);
    let mut rng = Rng::new(rdtsc() | 1);
    let (qd1_ops, qd32_ops) = match g.extra[1] {
        0 => (4000, 16000),
        1 => (500, 2000),
        n => (n, n),
    };
    for (name, dir, depth, ops) in [
        ("randread-qd1", Direction::Read, 1, qd1_ops),
        ("randread-qd32", Direction::Read, 32, qd32_ops),
        ("randwrite-qd1", Direction::Write, 1, qd1_ops),
        ("randwrite-qd32", Direction::Write, 32, qd32_ops),
    ] {
        let r = workload(&mut d, &bufs, dir, depth, ops, &mut rng)?;
        let us = r.ticks / tsc_per_us;
        let iops = r.ops * 1_000_000 / us.max(1);
        let (p50, p99) = (percentile(&r.latencies, 50) / tsc_per_us, percentile(&r.latencies, 99) / tsc_per_us);
        if iops == 0 || p50 > p99 {
            return Err(format!("{name}: implausible result: {iops} IOPS, p50 {p50} us, p99 {p99} us"));
        }
        let line = BenchLine {
            workload: name.into(),
            ops: r.ops,
            micros: us,
            iops,
            p50_us: p50,
            p99_us: p99,
            doorbells_per_io: r.doorbells as f64 / r.ops as f64,
            sq_doorbells: r.sq_doorbells,
            cq_doorbells: r.doorbells - r.sq_doorbells,
            syscalls: r.crossings[0],
            upcalls: r.crossings[1],
            timer_ticks: r.crossings[2],
        };
        println!("{line}");
    }
    d.flush(0).map_err(|e| format!("flush: {e}"))?;
    Ok(())
}
