//! SR-IOV from init: the `sriov_vf` test. The kernel turned the NVMe
//! physical function's VFs on at boot and lists each VF as a device with
//! its own I/O page table and handle. Here:
//!
//! 1. the PF's driver (`nvmed sriov`) releases the primary controller's
//!    flexible resources;
//! 2. init, which holds the PF's configuration page, does the
//!    function-level reset that makes the release take effect, and puts
//!    back what the reset clears (BARs, command register, NumVFs, VF BARs,
//!    VF Enable + VF Memory Space Enable), so the kernel's view of the PF
//!    and its VFs stays true;
//! 3. the PF's driver gives VF 1's and VF 2's secondary controllers
//!    queues and a vector each and sets them online;
//! 4. a separate process (`nvmed rw`) drives VF 1 directly: random writes
//!    and verified reads on the shared namespace through the VF's own BAR,
//!    its DMA confined to the VF's own I/O page table — no DMA fault;
//! 5. another process (`nvmed attack`) points VF 2 at memory outside its
//!    grant (a page of init's by physical address, kernel memory,
//!    unmapped and revoked I/O addresses): every such DMA is blocked, and
//!    the faults are counted against VF 2 — its requester id — not
//!    against VF 1 or the PF;
//! 6. the PF's driver does verified I/O again (the PF works beside them).

use crate::devices::{self, Device};
use crate::sched;
use crate::spawn::{self, Child};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{devinfo as di, kinfo as ki};
use exo_rt::{kinfo, mem, println};

type Outcome = Result<(), String>;

const EXT_SRIOV: u16 = 0x0010;
/// SR-IOV capability registers.
const SRIOV_CONTROL: u64 = 0x08;
const SRIOV_NUM_VFS: u64 = 0x10;
const SRIOV_VF_BAR0: u64 = 0x24;
const VF_ENABLE: u16 = 1 << 0;
const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_BUS_MASTER: u16 = 1 << 2;
const COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// The SR-IOV extended capability's offset (the `pci` crate's bounded walk
/// from 0x100).
fn sriov_cap(dev: &Device) -> Option<u64> {
    pci::find_extended_capability(&devices::FunctionConfig(&dev.config), devices::pci_address(dev), EXT_SRIOV)
        .map(u64::from)
}

/// Busy-wait (the PCIe spec's 100 ms after an FLR or VF Enable).
fn wait_ms(ms: u64) {
    let per_us = kinfo::word(ki::W_TSC_PER_US).max(1);
    let end = exo_rt::time::rdtsc() + ms * 1000 * per_us;
    while exo_rt::time::rdtsc() < end {
        sched::sched_yield();
    }
}

/// Function-level reset of `pf`, then everything the reset cleared put
/// back as the kernel set it at boot.
fn flr_keeping_vfs(pf: &Device) -> Outcome {
    let sr = sriov_cap(pf).ok_or("the PF's SR-IOV capability is gone")?;
    let c = &pf.config;
    let command = c.read16(0x04);
    let bars: [u32; 6] = core::array::from_fn(|i| c.read32(0x10 + 4 * i as u64));
    let num_vfs = c.read16(sr + SRIOV_NUM_VFS);
    let vf_bars: [u32; 6] = core::array::from_fn(|i| c.read32(sr + SRIOV_VF_BAR0 + 4 * i as u64));
    let control = c.read16(sr + SRIOV_CONTROL);
    pci::start_function_level_reset(&mut devices::FunctionConfig(c), devices::pci_address(pf)).map_err(
        |e| match e {
            pci::FlrError::NotExpress => String::from("the PF has no PCI Express capability"),
            pci::FlrError::NotCapable => {
                String::from("the PF cannot do a function-level reset (Device Capabilities bit 28 clear)")
            }
        },
    )?;
    wait_ms(100);
    // The reset clears the command register (and the BARs). QEMU 7.2
    // removes the VFs but leaves VF Enable reading as it was; writing the
    // control register again below brings them back either way.
    let after = c.read16(0x04);
    if after & (COMMAND_MEMORY | COMMAND_BUS_MASTER) != 0 {
        return Err(format!("the command register reads {after:#x} after the FLR: the reset did not happen"));
    }
    println!(
        "init: PF function-level reset: command {after:#x}, BAR0 {:#x}, VF Enable {}",
        c.read32(0x10),
        c.read16(sr + SRIOV_CONTROL) & VF_ENABLE
    );
    if c.read16(sr + SRIOV_CONTROL) & VF_ENABLE != 0 {
        c.write16(sr + SRIOV_CONTROL, 0);
    }
    for (i, b) in bars.iter().enumerate() {
        c.write32(0x10 + 4 * i as u64, *b);
    }
    c.write16(0x04, command);
    c.write32(sr + SRIOV_NUM_VFS, num_vfs as u32);
    for (i, b) in vf_bars.iter().enumerate() {
        c.write32(sr + SRIOV_VF_BAR0 + 4 * i as u64, *b);
    }
    c.write16(sr + SRIOV_CONTROL, control);
    wait_ms(100);
    let back = (
        c.read16(0x04),
        c.read32(0x10),
        c.read16(sr + SRIOV_NUM_VFS),
        c.read32(sr + SRIOV_VF_BAR0),
        c.read16(sr + SRIOV_CONTROL),
    );
    if back != (command, bars[0], num_vfs, vf_bars[0], control) {
        return Err(format!(
            "after the FLR the PF reads command/BAR0/NumVFs/VF BAR0/control {back:x?}, expected {:x?}",
            (command, bars[0], num_vfs, vf_bars[0], control)
        ));
    }
    println!("init: PF function-level reset done; BARs, command, {num_vfs} VFs and their BARs restored");
    Ok(())
}

/// A VF's command register: bus mastering on (a VF's Memory Space bit is
/// read-only zero per the SR-IOV spec; its BARs decode by the PF's VF
/// Memory Space Enable).
pub fn enable_vf(vf: &Device) -> Outcome {
    let cmd = vf.config.read16(0x04);
    vf.config.write16(0x04, cmd | COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE);
    let got = vf.config.read16(0x04);
    if got & COMMAND_BUS_MASTER == 0 {
        return Err(format!("VF {:04x}: bus mastering does not stay on (command {got:#x})", vf.bdf));
    }
    Ok(())
}

/// Wait until the child sets mailbox byte offset 8 to at least `want`.
pub fn wait_mailbox(c: &Child, want: u64, what: &str) -> Outcome {
    let mb = spawn::mailbox(c);
    while mem::read(mb + 8) < want {
        if sched::slot(c.slot).state.load(SeqCst) != sched::RUNNABLE {
            spawn::finish(c, what)?;
            return Err(format!("{what}: exited before it got there"));
        }
        sched::sched_yield();
    }
    Ok(())
}

/// VF `n` of the physical function `pf`, as the kernel lists it.
pub fn vf_of(pf: &Device, n: u16) -> Result<Device, String> {
    devices::all()
        .into_iter()
        .find(|d| d.vf == Some(di::VfInfo { pf_index: pf.index as u16, vf_number: n }))
        .ok_or(format!("the kernel lists no VF {n} of the NVMe physical function"))
}

/// Steps 1–3: start the PF's driver (`nvmed sriov`, onlining VFs
/// 1..=`vfs`), do the FLR it asks for, and return it once the VFs are
/// online (it then waits for [`vfs_done`]). Each boot starts from a fresh
/// controller, so this works on every boot.
pub fn online_vfs(pf: &Device, vfs: u64) -> Result<Child, String> {
    let pf_driver = devices::start_driver("nvmed", "sriov", pf, 0, devices::NVME_DMA_PAGES, [vfs, 0])?;
    sched::start(pf_driver.slot);
    wait_mailbox(&pf_driver, 1, "nvmed sriov (releasing the primary's resources)")?;
    flr_keeping_vfs(pf)?;
    mem::write(spawn::mailbox(&pf_driver), 1);
    wait_mailbox(&pf_driver, 2, "nvmed sriov (bringing the VFs online)")?;
    Ok(pf_driver)
}

/// Step 6: the VFs' drivers are done; the PF's driver checks the PF
/// still works and the VFs are still online, and must exit 0.
pub fn vfs_done(pf_driver: &Child) -> Outcome {
    mem::write(spawn::mailbox(pf_driver), 2);
    spawn::expect_zero(pf_driver, "nvmed sriov")?;
    println!("init: the PF worked beside its VFs");
    Ok(())
}
