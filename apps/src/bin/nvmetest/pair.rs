//! `nvmetest pair` (the `two_nvme` test): one of two drivers that run at the
//! same time on a machine with two NVMe controllers. Init chose each
//! controller by bus position and names the serial number it must report
//! (`serial=exo0` / `serial=exo1`); the bring-up checks it before any I/O.
//!
//! Driver `k` (args word 7) maps its DMA memory into *its own* device at
//! `IOVA_BASE + k * SPAN`, so the two drivers' pages sit at different I/O
//! addresses, and keeps a canary page at the end of it. Then:
//!
//! 1. mailbox word 1 = 1, wait for init (both controllers are up);
//! 2. the `nvme_rw` run on its own disk (the other driver does the same
//!    on the other disk meanwhile);
//! 3. two stray DMAs at the other driver's canary I/O address, which
//!    exists only in the other device's I/O page table: a read (the device
//!    would write the page) and a write (the device would read it onto the
//!    disk); both must be blocked, and the disk block must not hold the
//!    other's canary; mailbox word 2 = how many, word 1 = 2, wait for init;
//! 4. its own canary page must be unchanged (the other's stray DMAs did
//!    not land in it).

use crate::attack::{aimed, blocked};
use crate::hw;
use crate::rw::{self, Buffers};
use alloc::format;
use alloc::string::String;
use exo_abi::PAGE_SIZE;
use exo_rt::layout::MAILBOX_VA;
use exo_rt::nvme::IOVA_BASE;
use exo_rt::{mem, println, yield_now};
use nvme::driver::Direction;

/// Distance between the two drivers' I/O address ranges (each driver's
/// spare frames, 2.5 MiB for the standard grant, fit in it).
const SPAN: u64 = 32 << 20;
const CANARY: u64 = 0xca4a_2c00_0000_0000;

fn wait_for(word: u64) {
    while mem::read(MAILBOX_VA) < word {
        yield_now();
    }
}

pub fn run() -> Result<(), String> {
    let g = hw::grants()?;
    let (tsc_per_us, k) = (g.extra[0], g.extra[1]);
    if k > 1 {
        return Err(format!("driver number {k}: the pair is drivers 0 and 1"));
    }
    let dma = exo_rt::nvme::spare_dma_at(g.handle, IOVA_BASE + k * SPAN)?;
    let (mut d, data) = hw::bring_up(&g, dma, 2)?;
    let serial = String::from(d.controller().serial_str());
    if exo_rt::nvme::wanted_serial().is_none() {
        return Err("init named no serial number for my controller".into());
    }
    let (data, canary) =
        data.pages().checked_sub(1).and_then(|n| data.split(n)).ok_or("no DMA page left for the canary")?;
    for i in 0..PAGE_SIZE / 8 {
        canary.win.write64(8 * i, CANARY + (k << 32) + i);
    }
    // Where the other driver keeps its canary, in the other device.
    let other = IOVA_BASE + (1 - k) * SPAN + (canary.iova - (IOVA_BASE + k * SPAN));
    println!(
        "nvmetest pair {k}: controller {serial:?} up; my canary at I/O address {:#x}, the other's at {other:#x}",
        canary.iova
    );
    mem::write(MAILBOX_VA + 8, 1);
    wait_for(1);

    let bufs = Buffers::new(data);
    rw::exercise(&mut d, &bufs, tsc_per_us)?;

    let bs = d.block_size() as u64;
    let lba = hw::area(&d, "the stray DMA's block", 4 << 20, PAGE_SIZE)?.first;
    blocked(&format!("read into the other driver's page {other:#x}"), aimed(&mut d, Direction::Read, lba, other, bs))?;
    blocked(
        &format!("write from the other driver's page {other:#x}"),
        aimed(&mut d, Direction::Write, lba, other, bs),
    )?;
    let win = bufs.dma.win;
    win.fill(0, PAGE_SIZE, 0);
    d.read(0, lba, &bufs.buffer(0, 0, PAGE_SIZE)).map_err(|e| format!("reading the stray write's block: {e}"))?;
    let theirs = CANARY + ((1 - k) << 32);
    let leaked = (0..PAGE_SIZE / 8).filter(|i| win.read64(8 * i) == theirs + i).count();
    if leaked > 0 {
        return Err(format!("{leaked} words of the other driver's page reached my disk"));
    }
    mem::write(MAILBOX_VA + 16, 2);
    mem::write(MAILBOX_VA + 8, 2);
    wait_for(2);

    for i in 0..PAGE_SIZE / 8 {
        let got = canary.win.read64(8 * i);
        if got != CANARY + (k << 32) + i {
            return Err(format!("my canary page changed at word {i}: {got:#x}"));
        }
    }
    println!(
        "nvmetest pair {k}: {serial:?} verified; 2 stray DMAs at the other device's page blocked; my own page intact"
    );
    Ok(())
}
