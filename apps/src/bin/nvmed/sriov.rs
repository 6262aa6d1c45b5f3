//! `nvmed sriov`: the physical function's driver brings one SR-IOV
//! virtual function's NVMe controller (a *secondary controller*) online,
//! so that another process can drive that VF directly (the `sriov_vf`
//! test). The kernel turned the VFs on at boot; what only the PF's driver
//! can do is give a secondary controller queues and interrupt vectors
//! (Virtualization Management) and set it online.
//!
//! The flexible resources start out owned by the primary controller.
//! Handing them back takes a Virtualization Management "primary flexible
//! allocation" of 0 and then a *function-level reset* of the PF (a
//! controller reset is not enough: QEMU, like the spec, applies the new
//! allocation only on an FLR). The FLR is a configuration-space write,
//! which init does (it holds the PF's configuration page), so the job runs
//! in two phases with a mailbox handshake:
//!
//! 1. bring the PF up, list the secondary controllers, release the
//!    primary's flexible resources, set mailbox word 1 = 1 and wait;
//! 2. after init's FLR (mailbox word 0 = 1): bring the PF up again, give
//!    VFs 1..=`n` (n = args word 6) `VF_QUEUES` queues and
//!    `VF_INTERRUPTS` vectors each, set them online, check the list says
//!    so, do verified I/O on the PF, set mailbox word 1 = 2 and wait;
//! 3. once the VFs' own drivers are done (mailbox word 0 = 2): verified
//!    I/O on the PF again (the PF works beside its VFs), exit 0.
//!
//! A controller reset of the PF sets every secondary controller offline,
//! so the PF's driver must not reset it again while the VF is in use.

use crate::hw::{self, Nvme};
use crate::pattern;
use crate::rw::Buffers;
use alloc::format;
use alloc::string::String;
use exo_rt::layout::MAILBOX_VA;
use exo_rt::time::rdtsc;
use exo_rt::{mem, println, yield_now};
use nvme::command::{Command, VirtAction, VirtResource};
use nvme::identify::SecondaryController;

/// Queues wanted for a VF: its admin queue and two I/O queue pairs (the
/// `rw` job uses two), cut to what the primary controller lets one
/// secondary have (Identify Primary Controller Capabilities, VQFRSM);
/// at least 2 (admin + one I/O pair). Interrupt vectors: one (the VF
/// driver polls).
pub const VF_QUEUES: u16 = 3;
pub const VF_INTERRUPTS: u16 = 1;
/// Where the PF's own checks write, in bytes (156.25 MiB..): past the
/// VF's random span (the first 128 MiB) and the persistence test's area.
const PF_CHECK_OFFSET: u64 = (156 << 20) + (256 << 10);
const PF_CHECK_BYTES: u64 = 32 << 10;

const EMPTY: SecondaryController =
    SecondaryController { id: 0, primary_id: 0, online: false, virtual_function: 0, queues: 0, interrupts: 0 };

fn list(d: &mut Nvme, what: &str) -> Result<([SecondaryController; 8], usize), String> {
    let mut out = [EMPTY; 8];
    let n = d.secondary_controllers(&mut out).map_err(|e| format!("{what}: {e}"))?;
    for c in &out[..n] {
        println!(
            "nvmed sriov: {what}: secondary controller {} (primary {}) = VF {}: {}, {} queues, {} interrupt vectors",
            c.id,
            c.primary_id,
            c.virtual_function,
            if c.online { "online" } else { "offline" },
            c.queues,
            c.interrupts
        );
    }
    Ok((out, n))
}

fn wait_for(word: u64) {
    while mem::read(MAILBOX_VA) < word {
        yield_now();
    }
}

/// Write and read back the PF's check area under a fresh seed.
fn pf_check(d: &mut Nvme, bufs: &Buffers, when: &str) -> Result<(), String> {
    let bs = d.block_size() as u64;
    let area = hw::area(d, "the PF's check area", PF_CHECK_OFFSET, PF_CHECK_BYTES)?;
    let (lba, blocks) = (area.first, area.blocks);
    let seed = rdtsc() | 1;
    let win = bufs.dma.win;
    let len = blocks * bs;
    pattern::fill(&win, 0, seed, lba, blocks, bs);
    d.write(0, lba, &bufs.buffer(0, 0, len)).map_err(|e| format!("PF write {when}: {e}"))?;
    win.fill(0, len, 0xa5);
    d.read(0, lba, &bufs.buffer(0, 0, len)).map_err(|e| format!("PF read {when}: {e}"))?;
    if let Some((b, j, got, want)) = pattern::check(&win, 0, seed, lba, blocks, bs) {
        return Err(format!("PF {when}: LBA {} word {j}: read {got:#x}, wrote {want:#x}", lba + b));
    }
    println!("nvmed sriov: the PF wrote and verified {blocks} blocks of {bs} bytes at LBA {lba} {when}");
    Ok(())
}

pub fn run() -> Result<(), String> {
    let g = hw::grants()?;
    let vfs = g.extra[0] as u16;
    if vfs == 0 {
        return Err("no VF to bring online (args word 6 is 0)".into());
    }
    let dma = hw::spare_dma(g.handle)?;
    // Each phase's driver gets its own pages: after the FLR the first
    // one's queues are dead, and reusing them would race nothing but
    // would make a stale completion look fresh.
    let half = dma.pages() / 2;
    let (first, second) = dma.split(half).ok_or("too few DMA pages")?;

    // Phase 1: release the primary's flexible resources. This driver
    // instance is abandoned afterwards: the FLR resets the controller.
    {
        let (mut d, _) = hw::bring_up(&g, first, 1)?;
        let (sec, n) = list(&mut d, "at boot")?;
        let Some(primary) = sec[..n].first().map(|c| c.primary_id) else {
            return Err("the controller lists no secondary controllers".into());
        };
        for (resource, name) in [(VirtResource::Queues, "queues"), (VirtResource::Interrupts, "interrupts")] {
            let cmd = Command::virtualization_management(VirtAction::PrimaryFlexible, resource, primary, 0);
            d.admin_command(cmd, "Virtualization Management (primary flexible allocation)")
                .map_err(|e| format!("releasing the primary's flexible {name}: {e}"))?;
        }
        println!(
            "nvmed sriov: primary controller {primary} keeps no flexible resources after its next function-level reset"
        );
    }
    mem::write(MAILBOX_VA + 8, 1);
    wait_for(1);

    // Phase 2: after init's FLR, bring the VF's controller online.
    let (mut d, data) = hw::bring_up(&g, second, 1)?;
    let bufs = Buffers::new(data);
    let (sec, n) = list(&mut d, "after the FLR")?;
    let caps =
        d.primary_controller_caps().map_err(|e| format!("reading the primary controller's capabilities: {e}"))?;
    let vf_queues = VF_QUEUES.min(caps.vq_max_per_secondary);
    if vf_queues < 2 {
        return Err(format!(
            "the primary controller lets a secondary have {} flexible queues (VQFRSM); a VF needs 2 (admin + one I/O pair)",
            caps.vq_max_per_secondary
        ));
    }
    println!(
        "nvmed sriov: {} flexible queues and {} vectors in all, at most {} queues and {} vectors per VF: giving each VF {vf_queues} queues (admin + {} I/O)",
        caps.vq_flexible_total,
        caps.vi_flexible_total,
        caps.vq_max_per_secondary,
        caps.vi_max_per_secondary,
        vf_queues - 1
    );
    for vf in 1..=vfs {
        let Some(target) = sec[..n].iter().find(|c| c.virtual_function == vf) else {
            return Err(format!("no secondary controller is VF {vf}"));
        };
        d.bring_up_secondary(target.id, vf_queues, VF_INTERRUPTS)
            .map_err(|e| format!("bringing secondary controller {} (VF {vf}) online: {e}", target.id))?;
    }
    let (sec, n) = list(&mut d, "after Virtualization Management")?;
    for vf in 1..=vfs {
        match sec[..n].iter().find(|c| c.virtual_function == vf) {
            Some(c) if c.online && c.queues == vf_queues && c.interrupts == VF_INTERRUPTS => {
                println!(
                    "nvmed sriov: VF {vf} (controller {}) is online with {} queues and {} vectors",
                    c.id, c.queues, c.interrupts
                )
            }
            other => return Err(format!("VF {vf} after bring-up: {other:?}")),
        }
    }
    pf_check(&mut d, &bufs, "with its VFs online")?;
    mem::write(MAILBOX_VA + 8, 2);
    wait_for(2);

    // Phase 3: the VF's driver is done; the PF still works.
    pf_check(&mut d, &bufs, "after the VFs' drivers finished")?;
    let (sec, n) = list(&mut d, "at the end")?;
    for vf in 1..=vfs {
        if !sec[..n].iter().any(|c| c.virtual_function == vf && c.online) {
            return Err(format!("VF {vf} went offline"));
        }
    }
    Ok(())
}
