//! `nvmed irq` (the `nvme_irq` test): completion by MSI-X instead of
//! polling the completion queue. The driver writes its controller's MSI-X
//! entries (in BAR 0, which it owns) with the remappable-format addresses
//! of the interrupt-remapping entries the kernel set up for this device,
//! so the device can raise only its own vectors. The kernel sends each
//! interrupt to init, which switches straight to this driver and counts it
//! in the mailbox; the driver reads its completion queue only when that
//! count moved (or, as a guard against an interrupt lost while init was
//! busy, after a long wait).

use crate::hw;
use crate::msix::{irqs, remappable_msi};
use crate::pattern::{self, Rng};
use crate::rw::Buffers;
use alloc::format;
use alloc::string::String;
use exo_abi::PAGE_SIZE;
use exo_rt::time::rdtsc;
use exo_rt::{println, yield_now};
use nvme::driver::{Config, Direction};

const IOS: u64 = 512;
/// While waiting, the driver first watches the interrupt count for this
/// many spins (init then is not inside its handler, where the kernel would
/// drop an interrupt), then gives the CPU away; after `FALLBACK_YIELDS`
/// yields without an interrupt it looks at the queue anyway.
const SPINS: u64 = 500;
const FALLBACK_YIELDS: u64 = 50;

#[derive(Default)]
struct Waits {
    /// Completions whose interrupt had arrived when the queue was read.
    signalled: u64,
    /// Completions found only by the fallback look.
    fallback: u64,
    yields: u64,
}

pub fn run() -> Result<(), String> {
    let g = hw::grants()?;
    let tsc_per_us = g.extra[0].max(1);
    let table = g.extra[1] & 0xffff_ffff;
    let handle0 = (g.extra[1] >> 32) as u32;
    // MSI-X entries 0 (admin queue), 1 and 2 (I/O queues 1 and 2).
    for j in 0..3u32 {
        let (addr, data) = remappable_msi(handle0 + j);
        let e = table + 16 * j as u64;
        g.bar.write32(e, addr);
        g.bar.write32(e + 4, 0);
        g.bar.write32(e + 8, data);
        g.bar.write32(e + 12, 0); // unmasked
    }
    let config = Config { io_queues: 2, io_queue_entries: 64, interrupts: true, ..Config::default() };
    let (mut d, data) = hw::bring_up_with(&g, hw::spare_dma(g.handle)?, config)?;
    let bufs = Buffers::new(data);
    let bs = d.block_size() as u64;
    let blocks = PAGE_SIZE / bs;
    let win = bufs.dma.win;
    let seed = rdtsc() | 1;
    let mut rng = Rng::new(seed);
    let span = (64 << 20) / bs;
    let lbas: alloc::vec::Vec<u64> = (0..IOS).map(|_| rng.range(0, span / blocks - 1) * blocks).collect();
    let irq0 = irqs();
    let mut w = Waits::default();
    let t0 = rdtsc();
    for pass in [Direction::Write, Direction::Read] {
        for (i, &lba) in lbas.iter().enumerate() {
            let q = i % d.io_queue_count();
            let page = (i % 64) as u64;
            if pass == Direction::Write {
                pattern::fill(&win, page * PAGE_SIZE, seed, lba, blocks, bs);
            } else {
                win.fill(page * PAGE_SIZE, PAGE_SIZE, 0xa5);
            }
            let before = irqs();
            let cid = d
                .submit_io(q, pass, lba, &bufs.buffer(page as usize, 0, PAGE_SIZE))
                .map_err(|e| format!("submit: {e}"))?;
            let mut by_fallback = false;
            let (got, outcome) = loop {
                if irqs() != before || by_fallback {
                    // Look at the completion queue only after an interrupt.
                    if let Some(c) = d.poll(q).map_err(|e| format!("poll: {e}"))? {
                        if irqs() != before {
                            w.signalled += 1;
                        } else {
                            w.fallback += 1;
                        }
                        break c;
                    }
                }
                by_fallback = wait_for_interrupt(irqs(), &mut w);
            };
            if got != cid {
                return Err(format!("completion for command {got}, expected {cid}"));
            }
            outcome.map_err(|e| format!("{pass:?} at LBA {lba}: {e}"))?;
            if pass == Direction::Read {
                if let Some((b, j, x, want)) = pattern::check(&win, page * PAGE_SIZE, seed, lba, blocks, bs) {
                    return Err(format!("LBA {} word {j}: read {x:#x}, wrote {want:#x}", lba + b));
                }
            }
        }
    }
    let t = rdtsc() - t0;
    let n = 2 * IOS;
    println!(
        "nvmed irq: {n} 4 KiB I/Os (QD1, writes then verified reads): {} interrupts forwarded; {} completions signalled by MSI-X, {} found by the fallback look (interrupt lost), {} yields while waiting; {} us per I/O",
        irqs() - irq0,
        w.signalled,
        w.fallback,
        w.yields,
        t / n / tsc_per_us
    );
    if w.signalled == 0 {
        return Err("no completion was signalled by an interrupt".into());
    }
    Ok(())
}

/// Wait until the interrupt count moves from `seen`; true if the wait gave
/// up (the caller then looks at the queue without an interrupt).
fn wait_for_interrupt(seen: u64, w: &mut Waits) -> bool {
    for _ in 0..FALLBACK_YIELDS {
        for _ in 0..SPINS {
            if irqs() != seen {
                return false;
            }
            core::hint::spin_loop();
        }
        w.yields += 1;
        yield_now();
    }
    true
}
