//! The hostile modes: a driver that points its device at memory it was not
//! granted (`dma_attack_blocked`), the victim whose page it aims at, a
//! process without any grant trying to reach the device
//! (`device_ownership`), and the legitimate holder it competes with.

use crate::hw;
use crate::pattern;
use crate::rw::Buffers;
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU32, Ordering::SeqCst};
use exo_abi::{Error, Rights, PAGE_SIZE};
use exo_rt::layout::{MAILBOX_VA, SCRATCH_VA};
use exo_rt::nvme::IOVA_BASE;
use exo_rt::{args_word, mem, println, sys, yield_now};
use nvme::driver::{Direction, Error as NvmeError};
use nvme::prp::DmaBuffer;
use nvme::regs;

/// Inside the 128 MiB window, never mapped by this driver.
const UNMAPPED_IOVA: u64 = 0x600_0000;
/// The kernel image's physical address (kernel/linker.ld): what a device
/// without an I/O-MMU would overwrite.
const KERNEL_PHYS: u64 = 0x10_0000;

/// How a DMA the I/O-MMU should block came out.
pub fn blocked(what: &str, r: Result<(), NvmeError>) -> Result<(), String> {
    match r {
        Err(NvmeError::Command { error, .. }) => {
            println!("nvmetest attack: {what}: the controller reports {error}");
            Ok(())
        }
        // QEMU's block layer bounces a failed mapping and drops the data:
        // the command completes, the data never lands (checked by the caller).
        Ok(()) => {
            println!("nvmetest attack: {what}: completed, data dropped by the I/O-MMU");
            Ok(())
        }
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// One read (device writes memory) or write (device reads memory) whose
/// single page is at `iova`.
pub fn aimed(d: &mut hw::Nvme, dir: Direction, lba: u64, iova: u64, bs: u64) -> Result<(), NvmeError> {
    let pages = [iova];
    let buf = DmaBuffer { pages: &pages, offset: 0, len: (PAGE_SIZE / bs * bs) as u32 };
    match dir {
        Direction::Read => d.read(0, lba, &buf),
        Direction::Write => d.write(0, lba, &buf),
    }
}

pub fn attack() -> Result<(), String> {
    let g = hw::grants()?;
    let (victim_pa, victim_pattern) = (g.extra[0], g.extra[1]);
    let (mut d, data) = hw::bring_up(&g, hw::spare_dma(g.handle)?, 2)?;
    let bufs = Buffers::new(data);
    let bs = d.block_size() as u64;
    let blocks = PAGE_SIZE / bs;
    let win = bufs.dma.win;
    let seed = exo_rt::time::rdtsc() | 1;
    // Blocks at 1 MiB and 2 MiB of the namespace, whatever its block size.
    let lba = hw::area(&d, "the attack's block", 1 << 20, PAGE_SIZE)?.first;
    let exfil_lba = hw::area(&d, "the exfiltration block", 2 << 20, PAGE_SIZE)?.first;

    // A legitimate write and read-back first: the grant works.
    pattern::fill(&win, 0, seed, lba, blocks, bs);
    d.write(0, lba, &bufs.buffer(0, 0, PAGE_SIZE)).map_err(|e| format!("legitimate write: {e}"))?;
    win.fill(0, PAGE_SIZE, 0);
    d.read(0, lba, &bufs.buffer(0, 0, PAGE_SIZE)).map_err(|e| format!("legitimate read: {e}"))?;
    if pattern::check(&win, 0, seed, lba, blocks, bs).is_some() {
        return Err("the legitimate read-back does not match".into());
    }
    println!("nvmetest attack: a DMA into granted memory works");

    let mut attacks = 0u64;
    // 1. Overwrite another process's page by its physical address.
    blocked(
        &format!("read into the victim's physical page {victim_pa:#x}"),
        aimed(&mut d, Direction::Read, lba, victim_pa, bs),
    )?;
    attacks += 1;
    // 2. Steal it: have the device read the victim's page onto the disk.
    blocked(
        &format!("write from the victim's physical page {victim_pa:#x}"),
        aimed(&mut d, Direction::Write, exfil_lba, victim_pa, bs),
    )?;
    attacks += 1;
    win.fill(0, PAGE_SIZE, 0);
    d.read(0, exfil_lba, &bufs.buffer(0, 0, PAGE_SIZE)).map_err(|e| format!("reading the exfiltration target: {e}"))?;
    let leaked = (0..512).filter(|i| win.read64(8 * i) == victim_pattern + i).count();
    if victim_pattern == 0 || leaked > 4 {
        return Err(format!("{leaked} words of the victim's page reached the disk (pattern {victim_pattern:#x})"));
    }
    // 3. Kernel memory, as a device without an I/O-MMU would reach it.
    blocked(
        &format!("read into the kernel image at {KERNEL_PHYS:#x}"),
        aimed(&mut d, Direction::Read, lba, KERNEL_PHYS + PAGE_SIZE, bs),
    )?;
    attacks += 1;
    // 4. An address inside the device's window that nobody mapped.
    blocked(
        &format!("read into unmapped I/O address {UNMAPPED_IOVA:#x}"),
        aimed(&mut d, Direction::Read, lba, UNMAPPED_IOVA, bs),
    )?;
    attacks += 1;
    // 5. A grant, revoked: after `unmap` the page must be out of reach.
    let page = bufs.pages.len() - 1;
    let iova = bufs.pages[page];
    sys::unmap(g.handle, iova, 0).map_err(|e| format!("revoking {iova:#x}: {}", e.name()))?;
    let off = page as u64 * PAGE_SIZE;
    win.fill(off, PAGE_SIZE, 0x5a);
    blocked(&format!("read into revoked I/O address {iova:#x}"), aimed(&mut d, Direction::Read, lba, iova, bs))?;
    attacks += 1;
    if (0..PAGE_SIZE / 8).any(|i| win.read64(off + 8 * i) != 0x5a5a_5a5a_5a5a_5a5a) {
        return Err(format!("a DMA reached page {iova:#x} after its grant was revoked"));
    }
    // The controller still works for legitimate I/O.
    win.fill(0, PAGE_SIZE, 0);
    d.read(0, lba, &bufs.buffer(0, 0, PAGE_SIZE)).map_err(|e| format!("read after the attacks: {e}"))?;
    if pattern::check(&win, 0, seed, lba, blocks, bs).is_some() {
        return Err("legitimate read after the attacks does not match".into());
    }
    mem::write(MAILBOX_VA + 8, attacks);
    println!(
        "nvmetest attack: {attacks} DMAs outside the grant; none landed where checked; the controller still works"
    );
    Ok(())
}

/// The victim: owns a page init filled with a pattern; checks it before
/// and after the attack.
pub fn victim() -> u32 {
    let pattern = args_word(3);
    let intact = || (0..512).all(|i| mem::read(SCRATCH_VA + 8 * i) == pattern + i);
    if !intact() {
        println!("victim: page wrong before the attack");
        return 1;
    }
    mem::write(MAILBOX_VA + 8, 1);
    while mem::read(MAILBOX_VA) == 0 {
        yield_now();
    }
    if !intact() {
        println!("victim: my page changed");
        return 1;
    }
    println!("victim: my page is intact");
    0
}

/// The legitimate holder of BAR 0 while an intruder tries: reads the
/// controller's registers, waits for init, reads them again.
pub fn hold() -> Result<(), String> {
    let g = hw::grants()?;
    let vs = g.bar.read32(regs::VS);
    println!("nvmetest hold: BAR 0 is mine: NVMe version register {vs:#x}");
    if vs == 0 || vs == u32::MAX {
        return Err(format!("version register reads {vs:#x}"));
    }
    while mem::read(MAILBOX_VA) == 0 {
        yield_now();
    }
    if g.bar.read32(regs::VS) != vs {
        return Err("the version register changed".into());
    }
    Ok(())
}

static INTRUDER_FAILURES: AtomicU32 = AtomicU32::new(0);

/// A process with no grant: every way to the device must be refused.
/// Exits 42 from its fault handler when the last step (touching the
/// driver's BAR address) faults and every earlier check held.
pub fn intruder() -> u32 {
    let (driver_bar, init_bar, handle) = (args_word(3), args_word(4), args_word(5));
    // Each attempt must fail with one of the errors that mean "you hold
    // nothing there" or "not with the rights you hold".
    let expect = |what: &str, got: Result<(), Error>, want: &[Error]| match got {
        Err(e) if want.contains(&e) => println!("intruder: {what}: refused ({})", e.name()),
        _ => {
            INTRUDER_FAILURES.fetch_add(1, SeqCst);
            println!("intruder: FAIL {what}: got {:?}, expected one of {want:?}", got.map_err(|e| e.name()));
        }
    };
    let nothing = &[Error::NotMapped, Error::NoTable];
    let frame = exo_rt::layout::SPARE_VA;
    let probe = SCRATCH_VA;
    expect(
        "map init's BAR address from my own space",
        sys::map(init_bar, 0, 0, probe, Rights::OWN | Rights::WRITE),
        nothing,
    );
    expect("map the driver's BAR address from my own space", sys::map(driver_bar, 0, 0, probe, Rights::WRITE), nothing);
    expect(
        "grant my frame to the device through a handle without OWN",
        sys::map(frame, 0, handle, IOVA_BASE, Rights::WRITE),
        &[Error::NoRight],
    );
    expect("revoke from the device through it", sys::unmap(handle, IOVA_BASE, 0), &[Error::NoRight]);
    // A device handle is not an address space one can run: WrongKind
    // (and it carries no SWITCH either).
    expect("yield to the device", sys::yield_to(handle, 0), &[Error::WrongKind, Error::NoRight]);
    expect(
        "copy the handle with OWN",
        sys::map(handle, 0, 0, handle + PAGE_SIZE, Rights::OWN),
        &[Error::RightsExceeded],
    );
    expect("a handle that is not there", sys::map(frame, 0, handle + 2 * PAGE_SIZE, IOVA_BASE, Rights::WRITE), nothing);
    exo_rt::set_fault_handler(|addr, code| {
        let failed = INTRUDER_FAILURES.load(SeqCst);
        println!("intruder: touching the BAR at {addr:#x} faulted (error {code:#x}); {failed} checks failed");
        exo_rt::exit(if failed == 0 { 42 } else { 1 })
    });
    println!("intruder: reading {driver_bar:#x}, where the driver has the BAR");
    let _ = mem::read(driver_bar);
    println!("intruder: FAIL the read succeeded");
    1
}
