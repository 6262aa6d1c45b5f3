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
//! 5. another process (`nvmetest attack`) points VF 2 at memory outside its
//!    grant (a page of init's by physical address, kernel memory,
//!    unmapped and revoked I/O addresses): every such DMA is blocked, and
//!    the faults are counted against VF 2 — its requester id — not
//!    against VF 1 or the PF;
//! 6. the PF's driver does verified I/O again (the PF works beside them).

use alloc::format;
use alloc::string::String;
use exo_abi::kinfo as ki;
use exo_rt::{kinfo, mem, println};
use initlib::devices::{self, Device};
use initlib::sched;
use initlib::spawn::{self, finish};
use initlib::sriov::{enable_vf, online_vfs, vf_of, vfs_done};

type Outcome = Result<(), String>;

pub fn sriov_vf() -> Outcome {
    let pf = devices::nvme_sriov_pf()?;
    let (vf, vf2) = (vf_of(&pf, 1)?, vf_of(&pf, 2)?);
    println!(
        "init: VF 1 of the NVMe PF is device {} at {:04x}, VF 2 device {} at {:04x}",
        vf.index, vf.bdf, vf2.index, vf2.bdf
    );
    let tsc = kinfo::word(ki::W_TSC_PER_US);
    let faults0 = kinfo::word(ki::W_DMA_FAULTS);
    let pf_driver = online_vfs(&pf, 2)?;
    enable_vf(&vf)?;
    let vf_faults0 = devices::device_dma_faults(vf.index);
    let vf_driver = devices::start_driver("nvmed", "rw", &vf, 0, devices::NVME_DMA_PAGES, [tsc, 0])?;
    sched::start(vf_driver.slot);
    spawn::expect_zero(&vf_driver, "nvmed rw on VF 1")?;
    let faults = kinfo::word(ki::W_DMA_FAULTS) - faults0;
    let vf_faults = devices::device_dma_faults(vf.index) - vf_faults0;
    if faults != 0 || vf_faults != 0 {
        return Err(format!("{faults} DMA faults ({vf_faults} of VF 1) during correct runs"));
    }
    println!("init: VF 1 driven by its own process through its own I/O page table: no DMA faults");
    vf_attack(&pf, &vf, &vf2)?;
    vfs_done(&pf_driver)
}

const VICTIM_PATTERN: u64 = 0x5f1f_a77a_0000_0000;

/// VF 2, driven by `nvmetest attack`, DMAs outside its grant: blocked, and
/// attributed to VF 2 (its routing id) alone.
fn vf_attack(pf: &Device, vf1: &Device, vf2: &Device) -> Outcome {
    enable_vf(vf2)?;
    // A page of init's, by physical address: what VF 2 aims at.
    let frame = initlib::frames::alloc().ok_or("no frame for the target page")?;
    for i in 0..512 {
        mem::write(frame + 8 * i, VICTIM_PATTERN + i);
    }
    let target_pa = frame - exo_abi::RAM_WINDOW_VA;
    let counts = |d: &Device| devices::device_dma_faults(d.index);
    let before = (counts(pf), counts(vf1), counts(vf2), kinfo::word(ki::W_DMA_FAULTS));
    let driver =
        devices::start_driver("nvmetest", "attack", vf2, 0, devices::NVME_DMA_PAGES, [target_pa, VICTIM_PATTERN])?;
    sched::start(driver.slot);
    let code = finish(&driver, "nvmetest attack on VF 2")?;
    let attacks = mem::read(spawn::mailbox(&driver) + 8);
    let after = (counts(pf), counts(vf1), counts(vf2), kinfo::word(ki::W_DMA_FAULTS));
    let source = kinfo::word(ki::W_DMA_FAULT_SOURCE);
    println!(
        "init: VF 2 made {attacks} DMA attempts outside its grant: {} faults in all, {} counted against VF 2, {} against VF 1, {} against the PF; last from requester {source:04x}",
        after.3 - before.3,
        after.2 - before.2,
        after.1 - before.1,
        after.0 - before.0
    );
    if code != 0 {
        return Err(format!("nvmetest attack on VF 2 exited with {code} (a blocked-DMA check failed)"));
    }
    if attacks == 0 || after.2 - before.2 < attacks {
        return Err(format!("{attacks} attacks by VF 2 but {} faults counted against it", after.2 - before.2));
    }
    if after.0 != before.0 || after.1 != before.1 {
        return Err("faults of VF 2 were counted against the PF or VF 1".into());
    }
    if source != vf2.bdf as u64 {
        return Err(format!("the last fault names requester {source:04x}, not VF 2 ({:04x})", vf2.bdf));
    }
    for i in 0..512 {
        let got = mem::read(frame + 8 * i);
        if got != VICTIM_PATTERN + i {
            return Err(format!("the target page changed at word {i}: {got:#x}"));
        }
    }
    Ok(())
}
