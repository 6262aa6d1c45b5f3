//! Devices as address spaces.
//!
//! At boot the kernel finds the PCI functions (ECAM, from MCFG) and the
//! VT-d unit (DMAR), gives every endpoint its own I/O page table with a
//! fixed DMA window, turns translation on, and hands init, for each device:
//! its configuration page and memory BARs as owned, uncached, never-retypable
//! pages, and a *device handle*. `map(page, 0, device_handle, iova, rights)`
//! then lets the device reach that page at `iova` — and nothing else: every
//! other DMA faults in the I/O-MMU, is logged here and reported to init.
//!
//! The table formats, the register sequences and the ACPI parsing live in
//! the host-tested `iommu` crate; this module only supplies register and
//! memory access. The kernel keeps, per device, what the hardware itself
//! needs (its context entry and I/O tables), fixed at boot.
//!
//! SR-IOV virtual functions are devices too: before the I/O-MMU is set
//! up, `sriov::enable` turns on the VFs of each physical function it can
//! (placing their BARs, since firmware does not) and appends them to the
//! device table, so they get their own context entries, I/O tables,
//! remapping entries, BAR mappings and handles like any other device.

use crate::mem::BootAlloc;
use crate::phys::{phys_read, phys_write, MemRange};
use crate::{kinfo, mmio};
use exo_abi::{devinfo as di, kinfo as ki, Error, Rights, DEVICES_VA, DEVICE_HANDLES_VA};
use firmware::{FirmwareError, Platform};
use iommu::vtd::invalidation::{ContextInvalidation, InvalidationQueue, IotlbInvalidation};
use iommu::vtd::irq::{irta_value, Irte, SourceCheck};
use iommu::vtd::tables::{ContextConfig, DeviceSpace, RootTable, TableError};
use iommu::vtd::unit::{Unit, UnitRegisters};
use iommu::vtd::{Bdf, FrameSource, Rights as DmaRights};
use pci::{self, Address, BarKind, ConfigSpace};
use spin::Mutex;

mod handover;
mod sriov;

pub use handover::{adopt as adopt_handover, export as export_handover};

/// Vector of the I/O-MMU's fault-event interrupt.
pub const DMA_FAULT_VECTOR: u8 = 0x2f;

/// PCI-to-PCI bridges remembered from enumeration.
const MAX_BRIDGES: usize = 16;

struct Ecam {
    base: u64,
    start: u8,
    end: u8,
}

impl Ecam {
    fn addr(&self, at: Address, offset: u16) -> Option<u64> {
        if at.segment != 0 || at.bus < self.start || at.bus > self.end || offset >= 4096 {
            return None;
        }
        Some(self.base + at.ecam_offset() + (offset & !3) as u64)
    }
}

impl ConfigSpace for Ecam {
    fn read32(&self, at: Address, offset: u16) -> u32 {
        self.addr(at, offset).map_or(u32::MAX, mmio::read32)
    }
    fn write32(&mut self, at: Address, offset: u16, value: u32) {
        if let Some(a) = self.addr(at, offset) {
            mmio::write32(a, value)
        }
    }
}

struct Regs {
    base: u64,
}

impl UnitRegisters for Regs {
    fn read32(&self, offset: u64) -> u32 {
        mmio::read32(self.base + offset)
    }
    fn write32(&mut self, offset: u64, value: u32) {
        mmio::write32(self.base + offset, value)
    }
    fn read64(&self, offset: u64) -> u64 {
        mmio::read64(self.base + offset)
    }
    fn write64(&mut self, offset: u64, value: u64) {
        mmio::write64(self.base + offset, value)
    }
}

struct Mem;

impl iommu::vtd::PhysMem for Mem {
    fn read_u64(&self, pa: u64) -> u64 {
        phys_read::<u64>(pa)
    }
    fn write_u64(&mut self, pa: u64, v: u64) {
        phys_write::<u64>(pa, v)
    }
}

struct BootFrames<'a>(&'a mut BootAlloc);

impl FrameSource for BootFrames<'_> {
    fn take_frame(&mut self) -> Option<u64> {
        self.0.alloc()
    }
}

/// After boot no table frame is ever needed: every device's window was
/// built in full at boot.
struct NoFrames;

impl FrameSource for NoFrames {
    fn take_frame(&mut self) -> Option<u64> {
        None
    }
}

#[derive(Clone, Copy)]
struct Device {
    at: Address,
    ids: u64,
    config_pa: u64,
    bars: [Option<pci::Bar>; 6],
    /// The SR-IOV capability, if this is a physical function.
    sriov: Option<pci::SrIov>,
    /// For an SR-IOV virtual function: (its PF's device index, VF number).
    vf: Option<(u16, u16)>,
    /// For a physical function: VFs enabled at boot and listed.
    vfs_enabled: u16,
    space: Option<DeviceSpace>,
    domain: u16,
}

/// Queued invalidation (required for interrupt remapping): the queue and a
/// status word the unit writes when it has finished.
#[derive(Clone, Copy)]
struct Queue {
    queue: InvalidationQueue,
    status_pa: u64,
}

struct State {
    devices: [Option<Device>; di::MAX_DEVICES],
    count: usize,
    unit: Option<Unit<Regs>>,
    queue: Option<Queue>,
    /// RAM as the loader reported it: BARs overlapping it are refused
    /// (firmware could point one at RAM, which would hand kernel memory to
    /// init as "registers").
    ram: [MemRange; crate::boot::MAX_RANGES],
    /// Interrupt remapping is on: device `k` may raise only vectors
    /// `di::IRQ_VECTOR0 + k * di::IRQS_PER_DEVICE ..` through IRTEs
    /// `k * IRQS_PER_DEVICE ..`, source-id checked.
    remapping: bool,
    /// Physical address of the device info page (0 until written): the
    /// fault handler counts each device's DMA faults in its entry there.
    info_pa: u64,
    /// The host address width the DMAR reported (device spaces need it).
    haw: u8,
}

static STATE: Mutex<State> = Mutex::new(State {
    devices: [None; di::MAX_DEVICES],
    count: 0,
    unit: None,
    queue: None,
    ram: [MemRange::EMPTY; crate::boot::MAX_RANGES],
    remapping: false,
    info_pa: 0,
    haw: 0,
});

/// Interrupt Entry Cache invalidation descriptor (VT-d 6.5.2.7), global.
const IEC_GLOBAL: [u64; 2] = [0x4, 0];

/// Discover devices and program the I/O-MMU. Failures are logged and cost
/// only the affected part (no MCFG: no devices; no DMAR: devices without
/// DMA).
pub fn init(platform: Option<&Platform<'static>>, alloc: &mut BootAlloc, ram: &[MemRange; crate::boot::MAX_RANGES]) {
    let Some(platform) = platform else { return klog!("ACPI: no tables: no PCI devices") };
    // The MCFG as the `firmware` crate read it (through the `acpi` crate).
    let regions = match platform.ecam {
        Ok(r) => r,
        Err(e) => return klog!("ACPI: {e}: no PCI devices"),
    };
    let Some(&region) = regions.as_slice().iter().find(|r| r.segment == 0) else {
        return klog!("ACPI: MCFG has no segment 0: no PCI devices");
    };
    if let Err(e) = mmio::map(region.window_start(), region.window_len(), alloc, ram) {
        return klog!("PCI: cannot map ECAM at {:#x}: {e}", region.window_start());
    }
    let mut ecam = Ecam { base: region.base, start: region.start_bus, end: region.end_bus };
    let mut st = STATE.lock();
    st.ram = *ram;
    let mut found = [None; di::MAX_DEVICES];
    let mut n = 0;
    // Bridges, to find the window behind which an SR-IOV PF's VF BARs go.
    let mut bridges = [None; MAX_BRIDGES];
    let mut nb = 0;
    pci::enumerate(&ecam, 0, region.start_bus, (region.start_bus, region.end_bus), |f| {
        if f.header_type == 0 && n < found.len() {
            found[n] = Some(*f);
            n += 1;
        } else if f.header_type == 1 && nb < bridges.len() {
            bridges[nb] = Some(*f);
            nb += 1;
        }
    });
    for f in found.iter().flatten() {
        let bars = pci::bars(&mut ecam, f.address, 0);
        let class = (f.class as u64) << 16 | (f.subclass as u64) << 8 | f.prog_if as u64;
        let ids = f.vendor_id as u64 | (f.device_id as u64) << 16 | class << 32;
        let config_pa = ecam.addr(f.address, 0).unwrap_or(0);
        let k = st.count;
        let sriov = pci::SrIov::read(&ecam, f.address);
        st.devices[k] = Some(Device {
            at: f.address,
            ids,
            config_pa,
            bars,
            sriov,
            vf: None,
            vfs_enabled: 0,
            space: None,
            domain: k as u16 + 1,
        });
        st.count += 1;
        klog!(
            "PCI {:02x}:{:02x}.{} {:04x}:{:04x} class {:06x}",
            f.address.bus,
            f.address.device,
            f.address.function,
            f.vendor_id,
            f.device_id,
            class
        );
        if let Some(sr) = sriov {
            klog!(
                "PCI {:02x}:{:02x}.{} SR-IOV physical function: {} VFs (device {:04x}), first at routing id +{}, stride {}; VF Enable {}",
                f.address.bus,
                f.address.device,
                f.address.function,
                sr.total_vfs,
                sr.vf_device_id,
                sr.first_vf_offset,
                sr.vf_stride,
                if sr.vf_enabled { "set (by firmware)" } else { "clear" }
            );
        }
    }
    // Virtual functions go after every physical device, so that adding
    // them never moves a physical device's index.
    let physical = st.count;
    for k in 0..physical {
        if st.devices[k].is_some_and(|d| d.sriov.is_some()) {
            sriov::enable(&mut ecam, &mut st, k, &bridges[..nb]);
        }
    }
    iommu_init(platform.dmar, alloc, ram, &mut st);
}

fn iommu_init(dmar: Result<&'static [u8], FirmwareError>, alloc: &mut BootAlloc, ram: &[MemRange], st: &mut State) {
    // The DMAR's bytes, located and checksummed by the `firmware` crate;
    // the `acpi` crate does not parse DMAR, `iommu::acpi::dmar` does.
    let dmar = match dmar {
        Ok(t) => t,
        Err(e) => return klog!("ACPI: {e}: devices get no DMA"),
    };
    let dmar = match iommu::acpi::dmar::Dmar::parse(dmar) {
        Ok(d) => d,
        Err(e) => return klog!("ACPI: DMAR rejected: {e}; devices get no DMA"),
    };
    let Some(drhd) = dmar.drhds().find(|d| d.segment == 0) else {
        return klog!("DMAR: no remapping unit for segment 0: devices get no DMA");
    };
    if !drhd.include_pci_all() {
        klog!("DMAR: the unit lists device scopes; treating it as covering every device");
    }
    if let Err(e) = mmio::map(drhd.register_base, 4096, alloc, ram) {
        return klog!("VT-d: cannot map registers at {:#x}: {e}", drhd.register_base);
    }
    let mut unit = Unit::new(Regs { base: drhd.register_base }, 10_000_000);
    let cap = unit.cap();
    let Some(levels) = cap.levels_for(39) else { return klog!("VT-d: no usable table depth") };
    let root = match RootTable::create(&mut Mem, &mut BootFrames(alloc)) {
        Ok(r) => r,
        Err(e) => return klog!("VT-d: root table: {e:?}"),
    };
    let haw = dmar.host_address_width;
    st.haw = haw;
    for dev in st.devices[..st.count].iter_mut().flatten() {
        let bdf = Bdf::from_source_id(dev.at.requester_id());
        let config = ContextConfig { domain_id: dev.domain, levels, host_address_width: haw };
        let space = match root.attach(&mut Mem, &mut BootFrames(alloc), bdf, config, cap) {
            Ok(s) => s,
            Err(e) => {
                klog!("VT-d: {:?}: {e:?}; no DMA for it", bdf);
                continue;
            }
        };
        // Build the whole window's tables now, from boot frames: a map and
        // unmap at every 2 MiB leaves every level-1 table in place.
        let mut ok = true;
        let mut iova = 0;
        while iova < di::DMA_WINDOW && ok {
            ok = space.map(&mut Mem, &mut BootFrames(alloc), iova, 0, DmaRights::READ).is_ok()
                && space.unmap(&mut Mem, iova).is_ok();
            iova += 0x20_0000;
        }
        if ok {
            dev.space = Some(space);
        } else {
            klog!("VT-d: out of boot memory for device tables");
        }
    }
    let enabled = unit
        .set_root_table(root.pa())
        .and_then(|_| unit.invalidate_context(ContextInvalidation::Global))
        .and_then(|_| unit.invalidate_iotlb(IotlbInvalidation::Global))
        .and_then(|_| unit.set_translation(true));
    if let Err(e) = enabled {
        for d in st.devices.iter_mut().flatten() {
            d.space = None;
        }
        return klog!("VT-d: could not enable translation: {e:?}; devices get no DMA");
    }
    unit.set_fault_interrupt(0, DMA_FAULT_VECTOR);
    klog!(
        "VT-d: unit at {:#x}, {}-level tables (SAGAW {:#x}: the shallowest the unit offers), DMA window {} MiB per device, translation on",
        drhd.register_base,
        levels.count(),
        cap.sagaw(),
        di::DMA_WINDOW >> 20
    );
    st.unit = Some(unit);
    if let Err(e) = remapping_init(alloc, st) {
        klog!("VT-d: interrupt remapping unavailable ({e}): device MSIs are NOT confined; do not give devices to untrusted drivers");
    }
}

/// Turn on queued invalidation and interrupt remapping. Every device gets
/// `IRQS_PER_DEVICE` remapping entries that only it can trigger (source-id
/// verified); compatibility-format MSIs, whose vector the device chooses,
/// are blocked. Without this, a driver could make its device raise, say,
/// vector 14 and fake an exception in the kernel.
fn remapping_init(alloc: &mut BootAlloc, st: &mut State) -> Result<(), &'static str> {
    let unit = st.unit.as_mut().ok_or("no unit")?;
    if !unit.ecap().interrupt_remapping() || !unit.ecap().queued_invalidation() {
        return Err("the unit lacks interrupt remapping or queued invalidation");
    }
    let qframe = alloc.alloc().ok_or("no memory for the invalidation queue")?;
    let status_pa = alloc.alloc().ok_or("no memory for the invalidation status")?;
    let table = alloc.alloc().ok_or("no memory for the interrupt remapping table")?;
    let queue = InvalidationQueue::new(qframe, 0).map_err(|_| "invalidation queue geometry")?;
    unit.enable_queued_invalidation(&queue).map_err(|_| "queued invalidation did not start")?;
    st.queue = Some(Queue { queue, status_pa });
    // 256 entries (2^(7+1)) of 16 bytes: one 4 KiB frame, zeroed = all absent.
    for (k, dev) in st.devices[..st.count].iter().enumerate() {
        let Some(dev) = dev else { continue };
        if dev.space.is_none() {
            continue;
        }
        for j in 0..di::IRQS_PER_DEVICE {
            let irte = Irte {
                vector: di::IRQ_VECTOR0 + (k as u64 * di::IRQS_PER_DEVICE + j) as u8,
                destination: 0,
                x2apic: false,
                source: SourceCheck::Requester(Bdf::from_source_id(dev.at.requester_id())),
            };
            irte.write(&mut Mem, table, (k as u64 * di::IRQS_PER_DEVICE + j) as u16);
        }
    }
    let unit = st.unit.as_mut().ok_or("no unit")?;
    unit.set_interrupt_table(irta_value(table, 7, false)).map_err(|_| "interrupt table pointer not latched")?;
    queue_invalidate(st, &[IEC_GLOBAL]).map_err(|_| "interrupt entry cache invalidation failed")?;
    let unit = st.unit.as_mut().ok_or("no unit")?;
    unit.set_interrupt_remapping(true).map_err(|_| "remapping did not turn on")?;
    st.remapping = true;
    klog!("VT-d: interrupt remapping on: {} vectors per device, source-id checked; compatibility-format MSIs left blocked (CFIS clear; QEMU 7.2 does not enforce it)", di::IRQS_PER_DEVICE);
    Ok(())
}

fn queue_invalidate(st: &mut State, descriptors: &[[u64; 2]]) -> Result<(), iommu::vtd::unit::UnitError> {
    let (Some(unit), Some(q)) = (st.unit.as_mut(), st.queue.as_mut()) else {
        return Ok(());
    };
    let token = core::num::NonZeroU32::new(1).unwrap_or(core::num::NonZeroU32::MIN);
    unit.queue_and_wait(&mut Mem, &mut q.queue, descriptors, q.status_pa, token)
}

/// Leaf bits for device registers in init: owned, writable, never
/// executable, uncached, and LENT so that they can never become page tables.
fn mmio_leaf() -> u64 {
    exo_mm::present_bits(Rights::WRITE | Rights::OWN | Rights::GRANT) | exo_mm::CACHE_BITS | exo_mm::LENT
}

/// Map every device's registers and handle into init and describe them in
/// the device info page at `info_pa`.
pub fn grant_to_init<M: exo_mm::PhysMem, F: FnMut() -> Option<u64>>(
    m: &mut exo_mm::BootMapper<M, F>,
    info_pa: u64,
) -> Result<(), &'static str> {
    let mut st = STATE.lock();
    st.info_pa = info_pa;
    let w = |i: usize, v: u64| phys_write::<u64>(info_pa + 8 * i as u64, v);
    w(di::W_MAGIC, di::MAGIC);
    w(di::W_COUNT, st.count as u64);
    w(di::W_IOMMU, st.unit.is_some() as u64);
    w(di::W_DMA_WINDOW, di::DMA_WINDOW);
    let fail = |_| "device registers: out of memory for tables";
    for (k, dev) in st.devices[..st.count].iter().enumerate() {
        let Some(dev) = dev else { continue };
        let base = DEVICES_VA + k as u64 * di::DEVICE_STRIDE;
        let e = di::W_ENTRY0 + k * di::ENTRY_WORDS;
        w(e + di::E_BDF, dev.at.requester_id() as u64);
        w(e + di::E_IDS, dev.ids);
        m.map_leaf(base, dev.config_pa, mmio_leaf()).map_err(fail)?;
        w(e + di::E_CONFIG_VA, base);
        if let Some(sr) = dev.sriov {
            w(e + di::E_SRIOV, di::sriov_word(sr.total_vfs, sr.first_vf_offset, sr.vf_stride, sr.vf_device_id));
            w(e + di::E_VFS_ENABLED, dev.vfs_enabled as u64);
        }
        if let Some((pf, n)) = dev.vf {
            w(e + di::E_VF, di::vf_word(pf, n));
        }
        if st.remapping && dev.space.is_some() {
            w(e + di::E_IRQ_HANDLE, k as u64 * di::IRQS_PER_DEVICE);
            w(e + di::E_IRQ_VECTOR, di::IRQ_VECTOR0 as u64 + k as u64 * di::IRQS_PER_DEVICE);
        }
        if dev.space.is_some() {
            let h = DEVICE_HANDLES_VA + k as u64 * exo_abi::PAGE_SIZE;
            m.put_entry(h, exo_mm::device_handle_entry(k as u64, Rights::OWN | Rights::GRANT)).map_err(fail)?;
            w(e + di::E_HANDLE_VA, h);
        }
        for bar in dev.bars.iter().flatten() {
            let i = bar.index as usize;
            let fits = bar.size <= di::BAR_STRIDE && bar.address % 4096 == 0 && bar.address != 0;
            if bar.kind == BarKind::Io || !fits {
                continue;
            }
            let span = MemRange { start: bar.address, end: bar.address.saturating_add(bar.size) };
            if st.ram.iter().any(|r| r.overlaps(&span)) {
                klog!("PCI: BAR {i} of device {k} at {:#x} overlaps RAM: not mapped", bar.address);
                continue;
            }
            let va = base + (i as u64 + 1) * di::BAR_STRIDE;
            let mut off = 0;
            while off < bar.size.max(4096) {
                m.map_leaf(va + off, bar.address + off, mmio_leaf()).map_err(fail)?;
                off += 4096;
            }
            w(e + di::E_BAR_VA0 + i, va);
            w(e + di::E_BAR_SIZE0 + i, bar.size);
        }
    }
    Ok(())
}

/// Every device's configuration page and memory BARs, `f(start, end)`
/// (persistent memory must not overlap them; see `pmem.rs`).
pub fn register_spans(mut f: impl FnMut(u64, u64)) {
    let st = STATE.lock();
    for dev in st.devices[..st.count].iter().flatten() {
        f(dev.config_pa, dev.config_pa + 4096);
        for bar in dev.bars.iter().flatten().filter(|b| b.kind != BarKind::Io) {
            f(bar.address, bar.address.saturating_add(bar.size));
        }
    }
}

/// The system calls' view of the device tables.
pub struct KernelDevices;

fn table_error(e: TableError) -> Error {
    match e {
        TableError::AlreadyMapped { .. } => Error::Occupied,
        TableError::NotMapped { .. } => Error::NotMapped,
        _ => Error::BadAddress,
    }
}

impl exo_mm::DeviceTables for KernelDevices {
    fn map(&mut self, index: u64, iova: u64, pa: u64, write: bool) -> Result<(), Error> {
        let mut st = STATE.lock();
        let dev = st.devices.get(index as usize).copied().flatten().ok_or(Error::NotMapped)?;
        let space = dev.space.ok_or(Error::NotMapped)?;
        if iova >= di::DMA_WINDOW {
            return Err(Error::BadAddress);
        }
        let rights = DmaRights { read: true, write };
        space.map(&mut Mem, &mut NoFrames, iova, pa, rights).map_err(table_error)?;
        // Caching mode (QEMU) may cache not-present entries: invalidate.
        invalidate(&mut st, dev.domain);
        Ok(())
    }

    fn unmap(&mut self, index: u64, iova: u64) -> Result<(), Error> {
        let mut st = STATE.lock();
        let dev = st.devices.get(index as usize).copied().flatten().ok_or(Error::NotMapped)?;
        let space = dev.space.ok_or(Error::NotMapped)?;
        if iova >= di::DMA_WINDOW {
            return Err(Error::BadAddress);
        }
        space.unmap(&mut Mem, iova).map_err(table_error)?;
        // The device must not reach the frame once unmap returns.
        invalidate(&mut st, dev.domain);
        Ok(())
    }
}

fn invalidate(st: &mut State, domain: u16) {
    if st.queue.is_some() {
        let cap = match st.unit.as_ref() {
            Some(u) => u.cap(),
            None => return,
        };
        let d = IotlbInvalidation::Domain { domain_id: domain }.descriptor(cap);
        let ok = match d {
            Ok(d) => queue_invalidate(st, &[d]).is_ok(),
            Err(_) => false,
        };
        if !ok {
            crate::fatal(format_args!(
                "VT-d: queued IOTLB invalidation failed; stopping rather than leave stale DMA access"
            ));
        }
        return;
    }
    if let Some(unit) = st.unit.as_mut() {
        if unit.invalidate_iotlb(IotlbInvalidation::Domain { domain_id: domain }).is_err()
            && unit.invalidate_iotlb(IotlbInvalidation::Global).is_err()
        {
            crate::fatal(format_args!("VT-d: IOTLB invalidation failed; stopping rather than leave stale DMA access"));
        }
    }
}

/// The fault-event interrupt: read, log, clear and count every fault
/// record — in total and the last one in the kernel info page, and per
/// requester in its device info entry, so that a burst from several
/// devices is attributed to each of them.
pub fn drain_faults() {
    let mut guard = STATE.lock();
    let st = &mut *guard;
    let Some(unit) = st.unit.as_mut() else { return };
    let (devices, info_pa) = (&st.devices[..st.count], st.info_pa);
    unit.drain_faults(|r| {
        kinfo::add(ki::W_DMA_FAULTS, 1);
        kinfo::set(ki::W_DMA_FAULT_SOURCE, r.source.source_id() as u64);
        kinfo::set(ki::W_DMA_FAULT_ADDR, r.address);
        let requester = devices.iter().position(|d| d.is_some_and(|d| d.at.requester_id() == r.source.source_id()));
        if let (Some(k), true) = (requester, info_pa != 0) {
            let entry = info_pa + 8 * (di::W_ENTRY0 + k * di::ENTRY_WORDS) as u64;
            let count = entry + 8 * di::E_DMA_FAULTS as u64;
            phys_write::<u64>(count, phys_read::<u64>(count) + 1);
            phys_write::<u64>(entry + 8 * di::E_DMA_FAULT_ADDR as u64, r.address);
        }
        klog!(
            "DMA fault: device {:02x}:{:02x}.{} {:?} at I/O address {:#x} blocked: {}",
            r.source.bus,
            r.source.device,
            r.source.function,
            r.access,
            r.address,
            r.reason
        );
    });
}
