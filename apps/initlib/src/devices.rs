//! Devices, init's side: find a PCI function in the kernel's device info
//! page, switch on its memory decoding and bus mastering through its
//! configuration page (which init keeps), and make a process its driver by
//! *moving* the BAR pages into it and giving it a copy of the device handle
//! (so the driver can `map` its own frames into the device's I/O address
//! space). Interrupt routing (XOmB's hierarchical dispatch) and DMA-fault
//! reports to a device's driver live here too; the scheduler calls
//! [`note_interrupt`] through the hook `boot::init` installs.
//!
//! What a driver finds where (child addresses, args words 3..=7):
//! word 3 = its BAR's address, word 4 = the BAR's size, word 5 = the
//! device handle's address, words 6 and 7 = test-specific values. Its DMA
//! memory is its spare frames (`SPARE_VA`, count in word 1).

use crate::sched;
use crate::spawn::{self, Child, Options};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use exo_abi::{devinfo as di, Rights, DEVICE_HANDLES_VA, PAGE_SIZE};
use exo_rt::layout::SHARED_REGION_IOVA;
use exo_rt::mmio::Window;
use exo_rt::{kinfo, mem, println, sys};

type Outcome = Result<(), String>;

/// Where a driver gets its BAR (child address).
pub const DRIVER_BAR_VA: u64 = 0x40_0000_0000;
/// Where a driver gets its device handle (child address).
pub const DRIVER_HANDLE_VA: u64 = DEVICE_HANDLES_VA;

const PCI_COMMAND: u64 = 0x04;
const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_BUS_MASTER: u16 = 1 << 2;
const COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// One entry of the device info page.
#[derive(Clone, Copy, Debug)]
pub struct Device {
    pub index: usize,
    pub bdf: u16,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    pub config: Window,
    /// Init's address of the device handle (0: no DMA for this device).
    pub handle_va: u64,
    /// (init's address, size) of each memory BAR; (0, 0) if absent.
    pub bars: [(u64, u64); 6],
    /// For an SR-IOV virtual function: which VF of which PF (`E_VF`).
    pub vf: Option<di::VfInfo>,
    /// For a physical function: VFs the kernel enabled (`E_VFS_ENABLED`).
    pub vfs_enabled: u64,
    /// The serial number the controller must report to its driver (NVMe
    /// only): passed as `serial=NAME`, checked against Identify Controller
    /// before the driver does any I/O.
    pub serial: Option<&'static str>,
}

/// Every device the kernel described (a malformed page gives none).
pub fn all() -> Vec<Device> {
    let mut out = Vec::new();
    if exo_rt::devinfo(di::W_MAGIC) != di::MAGIC {
        println!("init: device info page has the wrong magic; no devices");
        return out;
    }
    let count = (exo_rt::devinfo(di::W_COUNT) as usize).min(di::MAX_DEVICES);
    for k in 0..count {
        let w = |i: usize| exo_rt::devinfo(di::W_ENTRY0 + k * di::ENTRY_WORDS + i);
        let ids = w(di::E_IDS);
        let Some(config) = Window::new(w(di::E_CONFIG_VA), PAGE_SIZE) else { continue };
        let mut bars = [(0, 0); 6];
        for (i, b) in bars.iter_mut().enumerate() {
            *b = (w(di::E_BAR_VA0 + i), w(di::E_BAR_SIZE0 + i));
        }
        out.push(Device {
            index: k,
            bdf: w(di::E_BDF) as u16,
            vendor: ids as u16,
            device: (ids >> 16) as u16,
            class: (ids >> 32) as u32 & 0xff_ffff,
            config,
            handle_va: w(di::E_HANDLE_VA),
            bars,
            vf: di::VfInfo::from_word(w(di::E_VF)),
            vfs_enabled: w(di::E_VFS_ENABLED),
            serial: None,
        });
    }
    out
}

pub fn find(vendor: u16, device: u16) -> Result<Device, String> {
    all()
        .into_iter()
        .find(|d| d.vendor == vendor && d.device == device)
        .ok_or_else(|| format!("no PCI device {vendor:04x}:{device:04x} in the device info page"))
}

/// Memory decoding and bus mastering on, legacy INTx off (a driver that
/// wants interrupts uses MSI-X).
pub fn enable(dev: &Device) -> Outcome {
    let cmd = dev.config.read16(PCI_COMMAND);
    let want = cmd | COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE;
    dev.config.write16(PCI_COMMAND, want);
    let got = dev.config.read16(PCI_COMMAND);
    if got & (COMMAND_MEMORY | COMMAND_BUS_MASTER) != COMMAND_MEMORY | COMMAND_BUS_MASTER {
        return Err(format!("device {:04x}: command register reads {got:#x} after writing {want:#x}", dev.bdf));
    }
    Ok(())
}

/// Spawn `prog` as the driver of BAR `bar` of `dev`: the BAR's pages are
/// moved into it (init keeps nothing of them), the device handle is copied
/// with OWN only (the driver can map into the device, not pass it on).
/// Which child drives device k (slot + 1; 0 = none): DMA faults the kernel
/// records for a device are reported to its driver.
static OWNERS: [AtomicU64; di::MAX_DEVICES] = [const { AtomicU64::new(0) }; di::MAX_DEVICES];
/// Device k's DMA faults already reported (its counter at the last look).
static DMA_FAULTS_SEEN: [AtomicU64; di::MAX_DEVICES] = [const { AtomicU64::new(0) }; di::MAX_DEVICES];
/// The kernel's I/O-MMU fault-event vector (kernel/src/devices.rs).
const DMA_FAULT_VECTOR: u64 = 0x2f;
/// Mailbox word where init counts the DMA faults of a driver's device.
pub const MAILBOX_DMA_FAULTS: u64 = 32;

pub fn start_driver(
    prog: &str,
    args: &str,
    dev: &Device,
    bar: usize,
    spare: u64,
    extra: [u64; 2],
) -> Result<Child, String> {
    start_driver_on(prog, args, dev, bar, spare, extra, 1)
}

/// [`start_driver`] on the CPUs of the mask `cpus` (`spawn::spawn_on`):
/// `1 << n` pins the driver to CPU `n` (`qd1poll_own_core`: the block
/// service polling on a core of its own).
pub fn start_driver_on(
    prog: &str,
    args: &str,
    dev: &Device,
    bar: usize,
    spare: u64,
    extra: [u64; 2],
    cpus: u64,
) -> Result<Child, String> {
    let (bar_va, bar_size) = dev.bars[bar];
    if bar_va == 0 || bar_size == 0 {
        return Err(format!("device {:04x} has no usable memory BAR {bar}", dev.bdf));
    }
    if dev.handle_va == 0 {
        return Err(format!("device {:04x} has no device handle (no I/O-MMU?)", dev.bdf));
    }
    let words = [DRIVER_BAR_VA, bar_size, DRIVER_HANDLE_VA, extra[0], extra[1]];
    let args = match dev.serial {
        Some(s) => format!("{args} serial={s}"),
        None => String::from(args),
    };
    let opts = Options { args: &args, words: &words, heap_pages: 64, spare_pages: spare, paused: true };
    let child = spawn::spawn_on(prog, &opts, cpus)?;
    grant_device(&child, dev, bar)?;
    Ok(child)
}

/// Make `child` the driver of `dev`: BAR `bar`'s pages are moved to it at
/// [`DRIVER_BAR_VA`] (init keeps nothing of them), the device handle is
/// copied to [`DRIVER_HANDLE_VA`] with OWN only (the child can map into the
/// device, not pass it on), and the device's DMA faults are reported to it.
pub fn grant_device(child: &Child, dev: &Device, bar: usize) -> Outcome {
    let (bar_va, bar_size) = dev.bars[bar];
    if bar_va == 0 || bar_size == 0 || dev.handle_va == 0 {
        return Err(format!("device {:04x} has no usable memory BAR {bar} or no device handle", dev.bdf));
    }
    let mut off = 0;
    while off < bar_size.max(PAGE_SIZE) {
        let dst = child.at(DRIVER_BAR_VA + off);
        spawn::ensure_tables(dst).map_err(|e| format!("tables for the BAR: {e}"))?;
        sys::map(bar_va + off, 0, 0, dst, Rights::OWN | Rights::WRITE | Rights::GRANT)
            .map_err(|e| format!("moving BAR page {off:#x}: {}", e.name()))?;
        off += PAGE_SIZE;
    }
    spawn::ensure_tables(child.at(DRIVER_HANDLE_VA)).map_err(|e| format!("tables for the handle: {e}"))?;
    sys::map(dev.handle_va, 0, 0, child.at(DRIVER_HANDLE_VA), Rights::OWN)
        .map_err(|e| format!("copying the device handle: {}", e.name()))?;
    if let Some(o) = OWNERS.get(dev.index) {
        o.store(child.slot as u64 + 1, SeqCst);
    }
    Ok(())
}

/// Let `dev` reach init's region at `region` (`pages` pages) by DMA, page
/// `i` at [`SHARED_REGION_IOVA`] + `i` pages, writable. Init grants it
/// because it owns the region: a driver that borrows the region cannot
/// (only a frame's owner grants DMA), and init can take the access back
/// with [`revoke_region_dma`] as it can take back the driver's link.
pub fn grant_region_dma(dev: &Device, region: u64, pages: u64) -> Outcome {
    for i in 0..pages {
        sys::map(region + i * PAGE_SIZE, 0, dev.handle_va, SHARED_REGION_IOVA + i * PAGE_SIZE, Rights::WRITE)
            .map_err(|e| format!("granting device {:04x} DMA to region page {i}: {}", dev.bdf, e.name()))?;
    }
    Ok(())
}

/// Undo [`grant_region_dma`]: the device can no longer reach the region
/// once this returns (the kernel completes the IOTLB invalidation first).
pub fn revoke_region_dma(dev: &Device, pages: u64) -> Outcome {
    for i in 0..pages {
        sys::unmap(dev.handle_va, SHARED_REGION_IOVA + i * PAGE_SIZE, 0)
            .map_err(|e| format!("revoking device {:04x} DMA to region page {i}: {}", dev.bdf, e.name()))?;
    }
    Ok(())
}

/// The kernel's DMA-fault interrupt: the kernel counts each device's
/// faults in its device info entry; report the ones not yet seen to that
/// device's driver (added to its mailbox). Returns the slot of a driver
/// that was told, to switch to. Called from init's upcall handler: no
/// allocation, no lock.
fn note_dma_faults() -> Option<usize> {
    let n = exo_rt::devinfo(di::W_COUNT).min(di::MAX_DEVICES as u64) as usize;
    let mut told = None;
    for k in 0..n {
        let total = exo_rt::devinfo(di::W_ENTRY0 + k * di::ENTRY_WORDS + di::E_DMA_FAULTS);
        let new = total.saturating_sub(DMA_FAULTS_SEEN[k].swap(total, SeqCst));
        let Some(slot) = OWNERS[k].load(SeqCst).checked_sub(1) else { continue };
        let s = sched::slot(slot as usize);
        if new == 0 || s.state.load(SeqCst) != sched::RUNNABLE {
            continue;
        }
        let mb = s.mailbox.load(SeqCst);
        mem::write(mb + MAILBOX_DMA_FAULTS, mem::read(mb + MAILBOX_DMA_FAULTS) + new);
        told = Some(slot as usize);
    }
    told
}

/// DMA faults the kernel attributed to device `index`.
pub fn device_dma_faults(index: usize) -> u64 {
    exo_rt::devinfo(di::W_ENTRY0 + index * di::ENTRY_WORDS + di::E_DMA_FAULTS)
}

/// A device's MSI-X table, from its capability.
#[derive(Clone, Copy, Debug)]
pub struct MsiX {
    /// Offset of the capability in configuration space.
    pub cap: u64,
    pub bar: u8,
    /// Offset of the table in that BAR.
    pub table: u32,
    pub entries: u16,
}

const CAP_MSIX: u8 = 0x11;

/// A device's configuration page, as init maps it, seen as the `pci`
/// crate's `ConfigSpace`: one function, so the crate's address only names
/// which one (for its checks); offsets past the page read all ones.
pub struct FunctionConfig<'a>(pub &'a Window);

impl pci::ConfigSpace for FunctionConfig<'_> {
    fn read32(&self, _at: pci::Address, offset: u16) -> u32 {
        let offset = u64::from(offset & !3);
        if offset + 4 > self.0.len() {
            return u32::MAX;
        }
        self.0.read32(offset)
    }
    fn write32(&mut self, _at: pci::Address, offset: u16, value: u32) {
        let offset = u64::from(offset & !3);
        if offset + 4 <= self.0.len() {
            self.0.write32(offset, value);
        }
    }
}

/// `dev`'s address as the `pci` crate names functions.
pub fn pci_address(dev: &Device) -> pci::Address {
    pci::Address::new(0, (dev.bdf >> 8) as u8, ((dev.bdf >> 3) & 0x1f) as u8, (dev.bdf & 7) as u8)
}

/// The offset of capability `id` in `dev`'s configuration space: the `pci`
/// crate's bounded walk (a malformed list ends it), in the form that
/// accepts an SR-IOV VF, whose vendor id reads 0xffff.
pub fn find_capability(dev: &Device, id: u8) -> Option<u64> {
    pci::find_capability_of_present(&FunctionConfig(&dev.config), pci_address(dev), id).map(u64::from)
}

/// The device's MSI-X capability.
pub fn msix(dev: &Device) -> Option<MsiX> {
    let ptr = find_capability(dev, CAP_MSIX)?;
    let control = dev.config.read16(ptr + 2);
    let table = dev.config.read32(ptr + 4);
    Some(MsiX { cap: ptr, bar: (table & 7) as u8, table: table & !7, entries: (control & 0x7ff) + 1 })
}

/// MSI-X on, function mask off: the driver programs and unmasks entries.
pub fn enable_msix(dev: &Device, m: &MsiX) {
    let control = dev.config.read16(m.cap + 2);
    dev.config.write16(m.cap + 2, (control | 1 << 15) & !(1 << 14));
}

/// Interrupt routing, XOmB's hierarchical dispatch: the kernel sends every
/// device interrupt to init; a vector routed to a driver is counted in the
/// driver's mailbox (word 3) and the driver is switched to at once.
/// Indexed by vector - `IRQ_VECTOR0`; 0 = not routed, else slot + 1.
static ROUTES: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
pub static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// Interrupts seen per vector (device vectors are >= 32).
static SEEN: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
pub static UNROUTED: AtomicU64 = AtomicU64::new(0);

/// Interrupts seen on `vector` so far.
pub fn interrupts_seen(vector: u64) -> u64 {
    SEEN.get(vector as usize).map_or(0, |n| n.load(SeqCst))
}

/// Words of a driver's mailbox init writes: interrupts forwarded to it.
pub const MAILBOX_IRQS: u64 = 24;

pub fn route(vector: u64, c: &Child) {
    if let Some(r) = vector.checked_sub(di::IRQ_VECTOR0 as u64).and_then(|i| ROUTES.get(i as usize)) {
        r.store(c.slot as u64 + 1, SeqCst);
    }
}

/// Wake-ups: a vector whose interrupt wakes a process sleeping in
/// `msg::WAIT` (`sched::wake`) rather than being forwarded to a driver —
/// the block service's completion interrupt waking its client while the
/// driver polls on another core. Indexed as `ROUTES`; 0 = none.
static WAKERS: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
/// Interrupts that woke a sleeping process.
pub static WAKES: AtomicU64 = AtomicU64::new(0);

/// `vector`'s interrupts wake `c` from its `msg::WAIT` (or `None`: no one).
pub fn wake_on(vector: u64, c: Option<&Child>) {
    if let Some(r) = vector.checked_sub(di::IRQ_VECTOR0 as u64).and_then(|i| WAKERS.get(i as usize)) {
        r.store(c.map_or(0, |c| c.slot as u64 + 1), SeqCst);
    }
}

/// The remappable-format MSI address and data that send a device's
/// interrupt through interrupt-remapping entry `handle` (VT-d: handle in
/// address bits 19:5 and 2, bit 4 set, no sub-handle, data 0).
pub fn remappable_msi(handle: u32) -> (u32, u32) {
    (0xfee0_0000 | (handle & 0x7fff) << 5 | 1 << 4 | (handle >> 15) << 2, 0)
}

/// Count an interrupt for its driver (in the driver's mailbox). Returns
/// the driver's slot if the vector is routed to a runnable driver. Called
/// from init's upcall handler: it must not allocate or lock.
pub fn note_interrupt(vector: u64) -> Option<usize> {
    if vector == DMA_FAULT_VECTOR {
        return note_dma_faults();
    }
    INTERRUPTS.fetch_add(1, SeqCst);
    if let Some(n) = SEEN.get(vector as usize) {
        n.fetch_add(1, SeqCst);
    }
    let waker =
        vector.checked_sub(di::IRQ_VECTOR0 as u64).and_then(|i| WAKERS.get(i as usize)).map_or(0, |r| r.load(SeqCst));
    if waker != 0 {
        let woke = sched::wake(waker as usize - 1);
        WAKES.fetch_add(woke as u64, SeqCst);
        return woke.then_some(waker as usize - 1);
    }
    let slot =
        vector.checked_sub(di::IRQ_VECTOR0 as u64).and_then(|i| ROUTES.get(i as usize)).map_or(0, |r| r.load(SeqCst));
    if slot == 0 {
        UNROUTED.fetch_add(1, SeqCst);
        return None;
    }
    let s = sched::slot(slot as usize - 1);
    if s.state.load(SeqCst) != sched::RUNNABLE {
        return None;
    }
    let mb = s.mailbox.load(SeqCst);
    mem::write(mb + MAILBOX_IRQS, mem::read(mb + MAILBOX_IRQS) + 1);
    Some(slot as usize - 1)
}

/// The serial numbers of the machine's NVMe controllers, in bus order
/// (`scripts/xtask/src/machine.rs`: the test disk `exo0`, and on the
/// `two-nvme` variant a second controller `exo1`). Init cannot read a
/// serial itself (that takes driving the controller); the driver confirms
/// it before any I/O, so a controller in an unexpected place stops the
/// job by name instead of writing the wrong disk.
pub const NVME_SERIALS: [&str; 2] = ["exo0", "exo1"];

/// The serial number the `nth` NVMe controller (bus order) must report:
/// from the kernel command line's `nvme_serials=A,B,...` when given (on a
/// real machine, name the scratch disks the tests and the demo may
/// overwrite; `nvme_serials=any` checks nothing), else [`NVME_SERIALS`].
fn expected_serial(nth: usize) -> Option<&'static str> {
    crate::logic::devices::serial_for(kinfo::cmdline(), nth, &NVME_SERIALS)
}

/// What the `nvme` crate's chooser needs to know about each device.
fn functions(devs: &[Device]) -> Vec<nvme::select::Function> {
    devs.iter()
        .map(|d| nvme::select::Function {
            bdf: d.bdf,
            class: d.class,
            is_vf: d.vf.is_some(),
            vfs_enabled: d.vfs_enabled,
        })
        .collect()
}

/// The `nth` NVMe controller (by bus position) of the kind `want`, with
/// the serial number its driver must find; decoding and bus mastering on.
pub fn nvme_controller(want: nvme::select::Want, nth: usize) -> Result<Device, String> {
    let devs = all();
    let fns = functions(&devs);
    let Some(i) = nvme::select::pick(&fns, want, nth) else {
        return Err(format!(
            "no NVMe controller #{nth} of kind {want:?}: the device info page lists {} NVMe controllers ({} SR-IOV PFs with VFs enabled)",
            nvme::select::count(&fns, nvme::select::Want::Controller),
            nvme::select::count(&fns, nvme::select::Want::SrIovPf)
        ));
    };
    let mut dev = devs[i];
    // The SR-IOV PF is the machine's first controller (`exo0`) too.
    dev.serial = expected_serial(if want == nvme::select::Want::SrIovPf { 0 } else { nth });
    describe_nvme(&dev);
    enable(&dev)?;
    Ok(dev)
}

/// The test disk: the first NVMe controller by bus position (serial `exo0`).
pub fn nvme() -> Result<Device, String> {
    nvme_controller(nvme::select::Want::Controller, 0)
}

/// The NVMe controller whose SR-IOV virtual functions the kernel enabled.
pub fn nvme_sriov_pf() -> Result<Device, String> {
    nvme_controller(nvme::select::Want::SrIovPf, 0)
}

fn describe_nvme(dev: &Device) {
    println!(
        "init: NVMe (device {}) {:02x}:{:02x}.{} (class {:06x}, serial expected {:?}): BAR0 {:#x} bytes, device handle at {:#x}",
        dev.index,
        dev.bdf >> 8,
        (dev.bdf >> 3) & 0x1f,
        dev.bdf & 7,
        dev.class,
        dev.serial.unwrap_or("-"),
        dev.bars[0].1,
        dev.handle_va
    );
}

/// DMA frames the NVMe driver needs: its queues (about 140 pages for two
/// 64-entry queue pairs with a PRP list page per command) and data buffers
/// for transfers larger than MDTS.
pub const NVME_DMA_PAGES: u64 = 640;

/// PCI capability id of a vendor-specific capability (virtio's).
const CAP_VENDOR: u8 = 0x09;

/// Where a modern virtio device keeps its structures: (BAR, common config
/// offset, notify offset, notify multiplier, device config offset), from
/// its vendor-specific capabilities (virtio 1.2, 4.1.4). All must be in
/// one BAR (QEMU puts them in BAR 4), which init then moves to the driver.
pub fn virtio_layout(dev: &Device) -> Result<(usize, [u64; 4]), String> {
    let (mut bar, mut found) = (None, [None; 4]);
    let mut ptr = (dev.config.read8(0x34) & 0xfc) as u64;
    for _ in 0..48 {
        if ptr < 0x40 {
            break;
        }
        let (id, next) = (dev.config.read8(ptr), dev.config.read8(ptr + 1));
        if id == CAP_VENDOR && dev.config.read8(ptr + 2) >= 16 {
            let (kind, b, off) =
                (dev.config.read8(ptr + 3), dev.config.read8(ptr + 4) as usize, dev.config.read32(ptr + 8) as u64);
            let slot = match kind {
                1 => Some(0), // common
                2 => Some(1), // notify (multiplier follows the capability)
                4 => Some(3), // device-specific
                _ => None,
            };
            if let Some(slot) = slot {
                if bar.is_some_and(|x| x != b) {
                    return Err(format!(
                        "virtio structures in BARs {} and {b}; this driver takes one BAR",
                        bar.unwrap_or(0)
                    ));
                }
                bar = Some(b);
                found[slot] = Some(off);
                if kind == 2 {
                    found[2] = Some(dev.config.read32(ptr + 16) as u64);
                }
            }
        }
        ptr = (next & 0xfc) as u64;
    }
    match (bar, found) {
        (Some(b), [Some(c), Some(n), Some(m), Some(d)]) if b < 6 => Ok((b, [c, n, m, d])),
        _ => Err(format!("device {:04x}: incomplete virtio capabilities {found:?}", dev.bdf)),
    }
}

/// [`start_driver`] for a driver init may destroy and start again (QEMU
/// test `kill_driver`): spawned without GRANT (`spawn::spawn_destroyable`),
/// or in the space of `dead` (`spawn::respawn_driver`, reusing the dead
/// driver's DMA frames), and made `dev`'s driver; init itself grants the
/// device DMA to its `spare` spare frames at `exo_rt::nvme::IOVA_BASE`
/// (the driver, holding no GRANT, could not; `dma=parent` tells it), so
/// init knows every I/O address to revoke ([`take_back_driver`]).
pub fn start_destroyable_driver(
    prog: &str,
    args: &str,
    dev: &Device,
    spare: u64,
    extra: [u64; 2],
    dead: Option<&Child>,
) -> Result<Child, String> {
    let (_, bar_size) = dev.bars[0];
    let words = [DRIVER_BAR_VA, bar_size, DRIVER_HANDLE_VA, extra[0], extra[1]];
    let args = match dev.serial {
        Some(s) => format!("{args} dma=parent serial={s}"),
        None => format!("{args} dma=parent"),
    };
    let opts = Options { args: &args, words: &words, heap_pages: 64, spare_pages: spare, paused: true };
    let child = match dead {
        None => spawn::spawn_destroyable(prog, &opts)?,
        Some(d) => spawn::respawn_driver(d, prog, &opts)?,
    };
    grant_device(&child, dev, 0)?;
    spawn::grant_spare_dma(&child, dev.handle_va, exo_rt::nvme::IOVA_BASE, spare)?;
    Ok(child)
}

/// What taking a driver's device back did.
#[derive(Clone, Copy, Debug, Default)]
pub struct TakenBack {
    /// Polls of CSTS until the controller reported not ready.
    pub reset_polls: u64,
    /// I/O addresses of the driver's pages revoked from the device.
    pub dma_revoked: u64,
}

/// Take NVMe controller `dev` back from `driver` (already halted: it never
/// runs again), in the order that keeps stale DMA out of reused pages:
/// the BAR pages come back to init and the driver's device handle is
/// removed; bus mastering goes off and the controller is reset (CC.EN=0,
/// then CSTS.RDY=0: it has stopped processing commands); then every I/O
/// address init granted for the driver's `spare` DMA pages is revoked
/// (the kernel completes the IOTLB invalidation before each call returns).
/// Only after this may `spawn::destroy` zero and reuse those pages. Bus
/// mastering is switched on again for the next driver.
pub fn take_back_driver(driver: &Child, dev: &Device, spare: u64) -> Result<TakenBack, String> {
    let (bar_va, bar_size) = dev.bars[0];
    let mut off = 0;
    while off < bar_size.max(PAGE_SIZE) {
        sys::map(driver.at(DRIVER_BAR_VA + off), 0, 0, bar_va + off, Rights::OWN | Rights::WRITE | Rights::GRANT)
            .map_err(|e| format!("taking BAR page {off:#x} back from the dead driver: {}", e.name()))?;
        off += PAGE_SIZE;
    }
    sys::unmap(0, driver.at(DRIVER_HANDLE_VA), 0)
        .map_err(|e| format!("removing the dead driver's device handle: {}", e.name()))?;
    if let Some(o) = OWNERS.get(dev.index) {
        o.store(0, SeqCst);
    }
    let cmd = dev.config.read16(PCI_COMMAND);
    dev.config.write16(PCI_COMMAND, cmd & !COMMAND_BUS_MASTER);
    let bar = Window::new(bar_va, bar_size).ok_or("the BAR is not a valid window")?;
    let reset_polls = reset_nvme(&bar)?;
    for i in 0..spare {
        sys::unmap(dev.handle_va, exo_rt::nvme::IOVA_BASE + i * PAGE_SIZE, 0)
            .map_err(|e| format!("revoking the device's DMA to the dead driver's page {i}: {}", e.name()))?;
    }
    dev.config.write16(PCI_COMMAND, cmd | COMMAND_BUS_MASTER);
    Ok(TakenBack { reset_polls, dma_revoked: spare })
}

/// Disable the NVMe controller in `bar` (CC.EN=0) and wait until it
/// reports not ready (CSTS.RDY=0): it then fetches and completes no more
/// commands. Bounded by the controller's own CAP.TO (in 500 ms units),
/// counted in TSC ticks. Returns the polls it took.
pub fn reset_nvme(bar: &Window) -> Result<u64, String> {
    use nvme::regs;
    let cap = regs::Cap(bar.read64(regs::CAP));
    let cc = bar.read32(regs::CC);
    bar.write32(regs::CC, cc & !1);
    let per_ms = kinfo::word(exo_abi::kinfo::W_TSC_PER_US).max(1) * 1000;
    let limit = u64::from(cap.timeout_ms().max(500)) * per_ms;
    let t0 = exo_rt::time::rdtsc();
    let mut polls = 0;
    while bar.read32(regs::CSTS) & 1 != 0 {
        polls += 1;
        if exo_rt::time::rdtsc() - t0 > limit {
            return Err(format!("the NVMe controller stayed ready {} ms after CC.EN=0", cap.timeout_ms()));
        }
        sched::sched_yield();
    }
    Ok(polls)
}
