//! `nvmetest qd1 <placement>` (tests `qd1poll_own_core` and
//! `qd1poll_shared_core`, and `eval --drivers --smp 2`): the block
//! service at queue depth 1, measured at its client. `ops` random 4 KiB
//! writes of a pattern, a flush, then `ops` reads of the same blocks (in
//! the other order), each checked against the pattern. Latency is the
//! client's, submit to answer, in TSC ticks; the client counts its own
//! system calls over each loop (`exo_rt::sys::calls`).
//!
//! `placement` says where init put the driver: `own-core` (`nvmed serve
//! poll` pinned to CPU 1: the rings must say the server polls, and the
//! client spins for its answers) or `shared-core` (`nvmed serve` on the
//! client's CPU: it must not say so, and the client yields while it
//! waits), or `own-sleep` (the polling driver on CPU 1 as for `own-core`,
//! but the client polls [`SLEEP_SPIN_POLLS`] times and then sleeps until
//! the completion's MSI-X interrupt, which init routes to it as its
//! wake-up: `exo_rt::blockq::wait_sleeping`; CPU 0 halts meanwhile). Words: 3 = region bytes, 4 = TSC ticks per µs, 5 = ops per
//! workload. Mailbox words for init: [`MAILBOX_SYSCALLS`] (the client's
//! system calls over both loops), [`MAILBOX_YIELDS`] and
//! [`MAILBOX_VERIFIED`] (blocks read back and checked).

use crate::pattern::{self, Rng};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use blockq::{Client, Op, Request, Status};
use eval_lines::qd1poll::{Qd1PollLine, PLACEMENTS};
use exo_abi::PAGE_SIZE;
use exo_rt::blockq::SharedWindow;
use exo_rt::layout::{MAILBOX_VA, SHARED_VA};
use exo_rt::mmio::Window;
use exo_rt::time::rdtsc;
use exo_rt::{args_word, mem, println};

pub const MAILBOX_SYSCALLS: u64 = 8;
pub const MAILBOX_YIELDS: u64 = 16;
pub const MAILBOX_VERIFIED: u64 = 24;
/// `own-sleep`: polls before each sleep (a short spin catches an answer
/// that is already there without a system call).
const SLEEP_SPIN_POLLS: u64 = 1;
/// Most ops per workload (the latency table is kept in memory).
const MAX_OPS: u64 = 1 << 17;

fn percentile(sorted: &[u64], p: u64) -> u64 {
    match sorted.len() {
        0 => 0,
        n => sorted[(n as u64 - 1) as usize * p as usize / 100],
    }
}

/// One loop's numbers.
struct Loop {
    latencies: Vec<u64>,
    ticks: u64,
    syscalls: u64,
    yields: u64,
}

/// One request and its answer (QD1: it is the only one in flight).
fn round_trip(c: &mut Client<SharedWindow>, req: &Request, sleep: bool, yields: &mut u64) -> Result<(), String> {
    exo_rt::blockq::submit(c, req).map_err(|e| format!("submit {:?} {}: {e}", req.op, req.tag))?;
    let r = if sleep {
        exo_rt::blockq::wait_sleeping(c, SLEEP_SPIN_POLLS, 1_000_000, yields)
    } else {
        exo_rt::blockq::wait(c, 1_000_000, yields)
    };
    let r = r.map_err(|e| format!("{:?} {}: {e}", req.op, req.tag))?;
    if r.tag != req.tag || r.status != Status::Ok {
        return Err(format!("{:?} {} at LBA {} answered {r:?}", req.op, req.tag, req.lba));
    }
    Ok(())
}

pub fn qd1() -> Result<(), String> {
    let args = exo_rt::args();
    let placement = args.split_whitespace().nth(1).unwrap_or("");
    if !PLACEMENTS.contains(&placement) {
        return Err(format!("placement {placement:?}: expected one of {PLACEMENTS:?}"));
    }
    let win = Window::new(SHARED_VA, args_word(3)).ok_or("no shared region")?;
    let tsc_per_us = args_word(4).max(1);
    let ops = args_word(5);
    if !(2..=MAX_OPS).contains(&ops) {
        return Err(format!("{ops} ops per workload: expected 2..={MAX_OPS}"));
    }
    let mut yields = 0u64;
    let mut c = exo_rt::blockq::attach(win, 10_000, &mut yields).map_err(|e| format!("attaching: {e}"))?;
    let geo = c.geometry();
    let bs = geo.block_size as u64;
    if bs == 0 || !PAGE_SIZE.is_multiple_of(bs) || geo.data_len < 2 * PAGE_SIZE {
        return Err(format!("geometry {geo:?}: needs blocks dividing 4 KiB and two pages of data area"));
    }
    let blocks = PAGE_SIZE / bs;
    let span = geo.capacity_blocks / blocks;
    if span < 2 {
        return Err(format!("the service exposes {} blocks: too few", geo.capacity_blocks));
    }
    // The placement init chose must be the one the rings advertise.
    let own = placement != "shared-core";
    let sleep = placement == "own-sleep";
    if c.server_polls() != own {
        return Err(format!("placement {placement} but the driver says it polls: {}", c.server_polls()));
    }
    let (wslot, rslot) = (geo.data_offset, geo.data_offset + PAGE_SIZE);
    let seed = rdtsc() | 1;
    let mut rng = Rng::new(seed);
    let lbas: Vec<u64> = (0..ops).map(|_| rng.range(0, span - 1) * blocks).collect();

    let run = |c: &mut Client<SharedWindow>, op: Op, yields: &mut u64| -> Result<Loop, String> {
        let mut latencies = Vec::with_capacity(ops as usize);
        let (calls0, yields0) = (exo_rt::sys::calls(), *yields);
        let t0 = rdtsc();
        for (i, &lba) in lbas.iter().enumerate() {
            // Reads go the other way round: a block is not read right
            // after it was written.
            let (lba, slot) = match op {
                Op::Write => {
                    pattern::fill(&win, wslot, seed, lba, blocks, bs);
                    (lba, wslot)
                }
                _ => {
                    let lba = lbas[lbas.len() - 1 - i];
                    win.fill(rslot, PAGE_SIZE, 0xa5);
                    (lba, rslot)
                }
            };
            let req = Request { op, tag: i as u32, lba, blocks: blocks as u32, data_offset: slot };
            let t = rdtsc();
            round_trip(c, &req, sleep, yields)?;
            latencies.push(rdtsc() - t);
            if op == Op::Read {
                if let Some((b, j, got, want)) = pattern::check(&win, rslot, seed, lba, blocks, bs) {
                    return Err(format!("read {i}: LBA {} word {j}: {got:#x}, wrote {want:#x}", lba + b));
                }
            }
        }
        let ticks = rdtsc() - t0;
        latencies.sort_unstable();
        Ok(Loop { latencies, ticks, syscalls: exo_rt::sys::calls() - calls0, yields: *yields - yields0 })
    };

    let writes = run(&mut c, Op::Write, &mut yields)?;
    // Not measured: the writes reach the medium before they are read.
    let flush = Request { op: Op::Flush, tag: u32::MAX, lba: 0, blocks: 0, data_offset: 0 };
    round_trip(&mut c, &flush, sleep, &mut yields)?;
    let reads = run(&mut c, Op::Read, &mut yields)?;

    for (workload, l) in [("randwrite-qd1", &writes), ("randread-qd1", &reads)] {
        let micros = l.ticks / tsc_per_us;
        let line = Qd1PollLine {
            placement: placement.to_string(),
            workload: workload.into(),
            ops,
            micros,
            iops: ops * 1_000_000 / micros.max(1),
            p50_us: percentile(&l.latencies, 50) / tsc_per_us,
            p99_us: percentile(&l.latencies, 99) / tsc_per_us,
            client_syscalls: l.syscalls,
            client_yields: l.yields,
        };
        println!("{line}");
    }
    // The tail's shape (for reading a p99): how many round trips took over
    // a millisecond, their sum and the longest, beside the loop's length.
    for (workload, l) in [("randwrite-qd1", &writes), ("randread-qd1", &reads)] {
        let slow: Vec<u64> = l.latencies.iter().map(|t| t / tsc_per_us).filter(|&us| us > 1_000).collect();
        println!(
            "nvmetest qd1 {placement} {workload} tail: {} of {ops} round trips over 1 ms, {} us in all, longest {} us, loop {} us",
            slow.len(),
            slow.iter().sum::<u64>(),
            l.latencies.last().map_or(0, |t| t / tsc_per_us),
            l.ticks / tsc_per_us
        );
    }
    mem::write(MAILBOX_VA + MAILBOX_SYSCALLS, writes.syscalls + reads.syscalls);
    mem::write(MAILBOX_VA + MAILBOX_YIELDS, writes.yields + reads.yields);
    mem::write(MAILBOX_VA + MAILBOX_VERIFIED, ops);
    println!(
        "nvmetest qd1 {placement}: {ops} QD1 writes and {ops} verified reads of 4 KiB through the block service; client system calls in the loops: {} ({} yields)",
        writes.syscalls + reads.syscalls,
        writes.yields + reads.yields
    );
    Ok(())
}
