//! QEMU tests of the kernel's isolation rules under attack: probe processes
//! (`apps/src/bin/probe/hostile.rs`) try each hole the first review found,
//! and init checks what only it can see afterwards.
//!
//! * `tlb_alias`: a write through a stale alias after `create`,
//!   `create_as`, a move or an `unmap` must fault.
//! * `ctlpage_hostile`: a control page in persistent memory, in device
//!   registers or in a lent frame kills its process, never the kernel, and
//!   the kernel writes nothing into it.
//! * `dma_revoke`: a borrowed page cannot be given to a device (only the
//!   owner grants DMA), so revoking a share leaves no DMA behind.

use alloc::format;
use alloc::string::String;
use exo_abi::{Error, Rights, CHILD_PMEM_VA, CONTROL_VA, PAGE_SIZE};
use exo_rt::layout::SCRATCH_VA;
use exo_rt::{mem, println, sys};
use initlib::devices::{self, DRIVER_HANDLE_VA};
use initlib::sched::{self, KILLED};
use initlib::spawn::{self, finish, Child, Options};

type Outcome = Result<(), String>;

fn spawn_paused(args: &str, spare: u64) -> Result<Child, String> {
    spawn::spawn_named("probe", &Options { args, spare_pages: spare, paused: true, ..Options::default() })
}

/// Each case in its own process; each must take the fault (exit 42).
pub fn tlb_alias() -> Outcome {
    for case in ["create", "create_as", "move", "unmap"] {
        let c = spawn_paused(&format!("tlb-alias-{case}"), 16)?;
        sched::start(c.slot);
        match finish(&c, case)? {
            42 => println!("init: tlb_alias: {case}: the write through the stale alias faulted"),
            1 => return Err(format!("{case}: the write through the alias landed (stale TLB entry)")),
            code => return Err(format!("{case}: probe exited with {code} before the attack")),
        }
    }
    Ok(())
}

/// A pattern the kernel must not overwrite in a refused control page.
const PATTERN: u64 = 0xc7a1_9a6e_0000_0000;
/// Where in the persistent-memory span this test takes its pages (past
/// the `pmem_persist` test area).
const PMEM_OFFSET: u64 = initlib::pmem::TEST_AREA + (1 << 20);

/// The process must be killed (no usable control page: a tick found none,
/// or init's resume found none), not exit, not run on.
fn expect_killed(c: &Child, what: &str) -> Outcome {
    let st = sched::wait(c.slot);
    let code = sched::slot(c.slot).code.load(core::sync::atomic::Ordering::SeqCst);
    let usable = [0xffff, Error::BadTarget as u64];
    if st != KILLED || !usable.contains(&code) {
        return Err(format!(
            "{what}: process ended {} with code {code:#x}; expected killed for want of a control page",
            sched::state_name(st)
        ));
    }
    println!("init: ctlpage_hostile: {what}: the process was killed (code {code:#x}); the kernel lives");
    Ok(())
}

fn pattern_intact(va: u64, what: &str) -> Outcome {
    for i in 0..512 {
        let got = mem::read(va + i * 8);
        if got != PATTERN + i {
            return Err(format!("{what}: word {i} of the refused page is {got:#x}: the kernel wrote into it"));
        }
    }
    Ok(())
}

pub fn ctlpage_hostile() -> Outcome {
    let pmem = initlib::pmem::ranges().next().ok_or("no persistent memory on this machine")?;
    // 1 and 2: a persistent-memory page, moved in (owned) and shared in.
    for (how, offset) in [("owned", PMEM_OFFSET), ("shared", PMEM_OFFSET + PAGE_SIZE)] {
        for i in 0..512 {
            mem::write(pmem.va + offset + i * 8, PATTERN + i);
        }
        let c = spawn_paused(&format!("ctlpage-{how} {CHILD_PMEM_VA:x}"), 8)?;
        initlib::pmem::grant(&c, CHILD_PMEM_VA, offset, PAGE_SIZE)?;
        sched::start(c.slot);
        let what = format!("persistent memory ({how})");
        expect_killed(&c, &what)?;
        let now_at = if how == "owned" { CONTROL_VA } else { CHILD_PMEM_VA };
        pattern_intact(c.at(now_at), &what)?;
    }
    // 3: a device register page (the virtio-blk controller's first BAR).
    let vblk = devices::all().into_iter().find_map(|d| {
        let bar = d.bars.iter().position(|b| b.1 != 0)?;
        (d.vendor == 0x1af4 && d.handle_va != 0).then_some((d, bar))
    });
    match vblk {
        Some((dev, bar)) => {
            let c = spawn_paused(&format!("ctlpage-owned {:x}", devices::DRIVER_BAR_VA), 8)?;
            devices::grant_device(&c, &dev, bar)?;
            sched::start(c.slot);
            expect_killed(&c, "device registers")?;
        }
        None => return Err("no virtio device with a memory BAR to take a register page from".into()),
    }
    // 4: a lent frame of the process's own RAM.
    let c = spawn_paused("ctlpage-lent 0", 8)?;
    sched::start(c.slot);
    expect_killed(&c, "a lent frame")?;
    // The kernel still runs everything else.
    let ok = spawn_paused("count 10000", 0)?;
    sched::start(ok.slot);
    match finish(&ok, "a process after the attacks")? {
        0 => Ok(()),
        code => Err(format!("a plain process after the attacks exited with {code}")),
    }
}

/// A borrower with a device handle cannot give the device a borrowed page.
pub fn dma_revoke() -> Outcome {
    let dev =
        devices::all().into_iter().find(|d| d.handle_va != 0).ok_or("no device with a DMA handle (no I/O-MMU?)")?;
    let c = spawn_paused(&format!("dma-borrowed {DRIVER_HANDLE_VA:x}"), 8)?;
    // Init's page, shared (WRITE and GRANT, not OWN) at the child's SCRATCH_VA.
    let page = initlib::regions::make_region(1)?;
    spawn::ensure_tables(c.at(SCRATCH_VA)).map_err(|e| format!("tables: {e}"))?;
    sys::map(page, 0, 0, c.at(SCRATCH_VA), Rights::WRITE | Rights::GRANT)
        .map_err(|e| format!("sharing: {}", e.name()))?;
    spawn::ensure_tables(c.at(DRIVER_HANDLE_VA)).map_err(|e| format!("tables: {e}"))?;
    sys::map(dev.handle_va, 0, 0, c.at(DRIVER_HANDLE_VA), Rights::OWN).map_err(|e| format!("handle: {}", e.name()))?;
    sched::start(c.slot);
    match finish(&c, "dma-borrowed")? {
        0 => {}
        code => return Err(format!("dma-borrowed probe exited with {code}")),
    }
    // The refused grant left nothing in the device: init, the owner, can
    // map its page at that I/O address itself, and revoke it.
    sys::map(page, 0, dev.handle_va, 0x10_0000, Rights::WRITE).map_err(|e| {
        format!("the owner's grant at the probe's I/O address: {} (did the borrower's grant land?)", e.name())
    })?;
    sys::unmap(dev.handle_va, 0x10_0000, 0).map_err(|e| format!("the owner's revoke: {}", e.name()))?;
    // Revocation of the share itself: the borrower's entry goes.
    sys::unmap(c.handle, SCRATCH_VA, 0).map_err(|e| format!("revoking the share: {}", e.name()))?;
    if sys::unmap(c.handle, SCRATCH_VA, 0) != Err(Error::NotMapped) {
        return Err("the revoked share is still mapped in the borrower".into());
    }
    Ok(())
}
