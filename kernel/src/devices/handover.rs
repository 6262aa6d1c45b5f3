//! The device list and the I/O-MMU across a rebootless kernel upgrade.
//!
//! What is handed over is the device list (requester ids and domains, in
//! handle order: a device handle in a page table is an index into it), the
//! unit's register page, where queued invalidation writes its status, and
//! the device info page. Everything else is adopted from where it already
//! is: the root and context tables from the unit's RTADDR register, each
//! device's I/O page table from its context entry, the invalidation queue's
//! position from IQA/IQT, interrupt remapping from the unit's state. No
//! register is written: translation, remapping and the queue keep running.

use super::{Device, Mem, Queue, Regs, State, STATE};
use exo_upgrade::handover::{Device as HDevice, Handover, Iommu, MAX_DEVICES};
use iommu::vtd::invalidation::InvalidationQueue;
use iommu::vtd::regs::offset;
use iommu::vtd::tables::RootTable;
use iommu::vtd::unit::{Unit, UnitRegisters};
use iommu::vtd::Bdf;

/// Fill the handover's device part from the running kernel's state.
pub fn export(h: &mut Handover) {
    let st = STATE.lock();
    h.devinfo_pa = st.info_pa;
    h.iommu = Iommu {
        regs: st.unit.as_ref().map_or(0, |u| u.regs().base),
        status_pa: st.queue.map_or(0, |q| q.status_pa),
        remapping: st.remapping,
        haw: st.haw,
    };
    let n = st.count.min(MAX_DEVICES);
    for (d, s) in h.devices[..n].iter_mut().zip(st.devices.iter()) {
        *d = match s {
            Some(dev) => HDevice {
                requester_id: dev.at.requester_id(),
                domain: if dev.space.is_some() { dev.domain } else { 0 },
            },
            None => HDevice::default(),
        };
    }
    h.device_count = n;
}

/// Rebuild the device state from the handover and the hardware. Errors
/// name what could not be adopted (the caller stops the machine: a kernel
/// without its devices' tables would break every driver).
pub fn adopt(h: &Handover) -> Result<(), &'static str> {
    let mut st = STATE.lock();
    let st: &mut State = &mut st;
    st.info_pa = h.devinfo_pa;
    st.remapping = h.iommu.remapping;
    st.haw = h.iommu.haw;
    let root = if h.iommu.regs != 0 {
        let unit = Unit::new(Regs { base: h.iommu.regs }, 10_000_000);
        let rtaddr = unit.regs().read64(offset::RTADDR);
        if h.iommu.status_pa != 0 {
            let iqa = unit.regs().read64(offset::IQA);
            let iqt = unit.regs().read64(offset::IQT);
            let queue = InvalidationQueue::resume(iqa, iqt).map_err(|_| "the invalidation queue's registers")?;
            st.queue = Some(Queue { queue, status_pa: h.iommu.status_pa });
        }
        st.unit = Some(unit);
        Some(RootTable::at(rtaddr & !0xfff))
    } else {
        None
    };
    for (k, d) in h.devices().iter().enumerate() {
        let at = pci::Address::new(
            0,
            (d.requester_id >> 8) as u8,
            (d.requester_id >> 3 & 0x1f) as u8,
            (d.requester_id & 7) as u8,
        );
        let space = match (&root, d.domain) {
            (Some(root), domain) if domain != 0 => {
                let bdf = Bdf::from_source_id(d.requester_id);
                let space = root.device_space(&Mem, bdf, h.iommu.haw).map_err(|_| "a device's context entry")?;
                if space.domain_id() != domain {
                    return Err("a device's context entry names another domain");
                }
                Some(space)
            }
            _ => None,
        };
        st.devices[k] = Some(Device {
            at,
            ids: 0,
            config_pa: 0,
            bars: [None; 6],
            sriov: None,
            vf: None,
            vfs_enabled: 0,
            space,
            domain: if d.domain != 0 { d.domain } else { k as u16 + 1 },
        });
    }
    st.count = h.device_count;
    Ok(())
}
