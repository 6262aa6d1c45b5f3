//! SR-IOV at boot: for a physical function whose VFs firmware left off,
//! give the VF BARs address space inside the window firmware already gave
//! the PF's bridge (`pci::vf_place`: SeaBIOS assigns no VF BARs), turn on
//! up to `MAX_VFS_PER_PF` VFs (NumVFs, VF BARs, VF Enable + VF Memory
//! Space Enable), wait the 100 ms the PCIe spec asks before talking to
//! them, and list each VF as a device of its own. From there a VF is like
//! any other device: `iommu_init` builds its I/O page table and context
//! entry for the VF's routing id, `remapping_init` its interrupt entries,
//! `grant_to_init` maps its configuration page and BARs into init and
//! describes it (`E_VF`: VF n of PF k).
//!
//! Everything here runs before translation is on and only once: the kernel
//! takes no frames after boot, so VFs cannot be added later. A failure is
//! logged and costs only the VFs.

use super::{Device, Ecam, State};
use exo_abi::devinfo as di;
use pci::{Address, Bar, BarKind, ConfigSpace, Function, Span};
use x86_64::instructions::port::Port;

/// Enough for the PF's own BARs, its siblings' and nested bridge windows.
const MAX_BUSY: usize = 48;

struct At(Address);

impl core::fmt::Display for At {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.0.bus, self.0.device, self.0.function)
    }
}

/// Enable and list the VFs of device `k` (a PF) if it can be done safely.
pub(super) fn enable(ecam: &mut Ecam, st: &mut State, k: usize, bridges: &[Option<Function>]) {
    let Some(pf) = st.devices[k] else { return };
    let Some(sr) = pf.sriov else { return };
    let at = pf.at;
    if sr.total_vfs == 0 {
        return;
    }
    if sr.vf_enabled {
        return klog!("SR-IOV {}: VF Enable already set by firmware: VFs left as they are and not listed", At(at));
    }
    let room = di::MAX_DEVICES.saturating_sub(st.count).min(u16::MAX as usize) as u16;
    let num = sr.total_vfs.min(di::MAX_VFS_PER_PF).min(room);
    if num == 0 {
        return klog!("SR-IOV {}: the device table is full: no VFs", At(at));
    }
    // The bridge whose secondary bus is the PF's: its window is where the
    // PF's BARs (and so the VFs') are reachable.
    let Some(bridge) = bridges.iter().flatten().find(|b| b.bridge_buses.is_some_and(|(sec, _)| sec == at.bus)) else {
        return klog!(
            "SR-IOV {}: on the root bus, where this kernel knows no free MMIO span for VF BARs: VFs left off",
            At(at)
        );
    };
    let (sec, sub) = bridge.bridge_buses.unwrap_or((0, 0));
    for n in 1..=num {
        match sr.vf_address(at, n) {
            Some(a) if a.bus >= sec && a.bus <= sub && ecam.addr(a, 0).is_some() => {}
            other => {
                return klog!(
                    "SR-IOV {}: VF {n} would be at routing id {:#x}, outside the bridge's buses {sec:#x}..={sub:#x} or ECAM: VFs left off",
                    At(at),
                    other.map_or(u32::MAX, |a| a.requester_id() as u32)
                );
            }
        }
    }
    let vf_bars = sr.vf_bars(ecam, at);
    if vf_bars.iter().all(|b| b.is_none()) {
        return klog!("SR-IOV {}: no VF memory BARs: VFs left off", At(at));
    }
    let Some(window) = pci::bridge_memory_window(ecam, bridge.address) else {
        return klog!("SR-IOV {}: bridge {} has no memory window: VFs left off", At(at), At(bridge.address));
    };
    let addresses = if vf_bars.iter().flatten().all(|b| b.address != 0) {
        klog!("SR-IOV {}: VF BARs already assigned by firmware: kept", At(at));
        vf_bars.map(|b| b.map(|b| b.address))
    } else {
        // Everything already decoding behind the bridge: the endpoints'
        // memory BARs and nested bridges' windows.
        let mut busy = [Span { start: 0, end: 0 }; MAX_BUSY];
        let mut n = 0;
        let mut push = |s: Span| {
            if n < MAX_BUSY {
                busy[n] = s;
                n += 1;
            }
        };
        for d in st.devices[..st.count].iter().flatten().filter(|d| d.at.bus >= sec && d.at.bus <= sub) {
            for b in d.bars.iter().flatten().filter(|b| b.kind != BarKind::Io && b.address != 0) {
                push(Span { start: b.address, end: b.address.saturating_add(b.size) });
            }
        }
        for b in bridges.iter().flatten().filter(|b| b.address.bus >= sec && b.address.bus <= sub) {
            if let Some(w) = pci::bridge_memory_window(ecam, b.address) {
                push(w);
            }
        }
        if n == MAX_BUSY {
            return klog!("SR-IOV {}: more than {MAX_BUSY} busy spans behind the bridge: VFs left off", At(at));
        }
        match pci::place_vf_bars(window, &busy[..n], &vf_bars, num) {
            Ok(a) => a,
            Err(e) => {
                return klog!(
                    "SR-IOV {}: {e} ({:#x}..{:#x} of bridge {}; this kernel does not grow bridge windows): VFs left off",
                    At(at),
                    window.start,
                    window.end,
                    At(bridge.address)
                );
            }
        }
    };
    for (bar, a) in vf_bars.iter().zip(addresses.iter()) {
        let (Some(bar), Some(a)) = (bar, a) else { continue };
        let span = crate::phys::MemRange { start: *a, end: a.saturating_add(bar.size.saturating_mul(num as u64)) };
        if st.ram.iter().any(|r| r.overlaps(&span)) {
            return klog!("SR-IOV {}: VF BAR {} at {:#x} would overlap RAM: VFs left off", At(at), bar.index, a);
        }
        klog!(
            "SR-IOV {}: VF BAR {} ({:#x} bytes per VF, {} VFs) at {:#x}..{:#x}, inside bridge {}'s window {:#x}..{:#x}",
            At(at),
            bar.index,
            bar.size,
            num,
            a,
            span.end,
            At(bridge.address),
            window.start,
            window.end
        );
    }
    if let Err(e) = sr.enable_vfs(ecam, at, num, &vf_bars, &addresses) {
        return klog!("SR-IOV {}: enabling {num} VFs failed: {e}: VFs left off", At(at));
    }
    // PCIe 5.0 §9.3.3.3.1: no configuration request to a VF for 100 ms
    // after VF Enable is set.
    wait_ms(100);
    let mut listed = 0;
    for n in 1..=num {
        let Some(vf) = sr.vf_address(at, n) else { continue };
        let class_reg = ecam.read32(vf, pci::reg::CLASS);
        if class_reg == u32::MAX {
            klog!("SR-IOV {}: VF {n} at {} does not answer: not listed", At(at), At(vf));
            continue;
        }
        let pf_class = (pf.ids >> 32) & 0xff_ffff;
        let class = (class_reg >> 8) as u64;
        let class = if class == 0 { pf_class } else { class };
        let vendor = pf.ids & 0xffff;
        let ids = vendor | (sr.vf_device_id as u64) << 16 | class << 32;
        let mut bars = [None; 6];
        for (out, (bar, a)) in bars.iter_mut().zip(vf_bars.iter().zip(addresses.iter())) {
            if let (Some(bar), Some(a)) = (bar, a) {
                // Placed (or firmware's, checked against RAM above) for all
                // `num` VFs, so this stays inside the span.
                let address = a.saturating_add((n as u64 - 1).saturating_mul(bar.size));
                *out = Some(Bar { address, ..*bar });
            }
        }
        let index = st.count;
        st.devices[index] = Some(Device {
            at: vf,
            ids,
            config_pa: ecam.addr(vf, 0).unwrap_or(0),
            bars,
            sriov: None,
            vf: Some((k as u16, n)),
            vfs_enabled: 0,
            space: None,
            domain: index as u16 + 1,
        });
        st.count += 1;
        listed += 1;
        klog!(
            "PCI {} {:04x}:{:04x} class {:06x}: VF {n} of {} (device {index}; own vendor/device registers read {:08x}), BAR0 {:#x}",
            At(vf),
            vendor,
            sr.vf_device_id,
            class,
            At(at),
            ecam.read32(vf, 0),
            bars[0].map_or(0, |b| b.address)
        );
    }
    if let Some(Some(p)) = st.devices.get_mut(k) {
        p.vfs_enabled = listed;
    }
}

/// Busy-waits `ms` milliseconds on PIT channel 2 (the local APIC timer is
/// not calibrated yet when devices are found).
fn wait_ms(ms: u32) {
    const PIT_PER_MS: u16 = 1193; // 1.193182 MHz
    for _ in 0..ms {
        // SAFETY: PIT channel 2 and its gate in port 0x61 are fixed legacy
        // ports; nothing else uses channel 2 during boot (the APIC timer
        // calibration, later, reprograms it from scratch).
        unsafe {
            let mut gate = Port::<u8>::new(0x61);
            let v = gate.read() & 0xfc; // gate low, speaker off
            gate.write(v);
            Port::<u8>::new(0x43).write(0xb0); // channel 2, lo/hi, mode 0
            Port::<u8>::new(0x42).write(PIT_PER_MS as u8);
            Port::<u8>::new(0x42).write((PIT_PER_MS >> 8) as u8);
            gate.write(v | 1); // gate high: count down
            let mut spins = 0u32;
            while gate.read() & 0x20 == 0 && spins < 10_000_000 {
                spins += 1;
            }
            gate.write(v);
        }
    }
}
