//! The driver scenarios, checked from init: what the driver reports and
//! what init can see itself (DMA faults, interrupt counts, its own pages):
//! `nvme_rw`, `sriov_pf`, `nvme_irq`, the interrupt and DMA attacks,
//! `virtio_blk_rw`, `nvme_bench`, `device_ownership`, `nvme_persist_*`,
//! `block_service`, `two_nvme` and the malformed-ACPI boots. The device
//! grants themselves are `initlib::devices`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{devinfo as di, kinfo as ki, Rights, PAGE_SIZE, RAM_WINDOW_VA};
use exo_rt::layout::SCRATCH_VA;
use exo_rt::{kinfo, mem, println, sys};
use initlib::devices::*;
use initlib::regions::{link, make_region};
use initlib::sched;
use initlib::spawn::{self, expect_zero, finish, Child, Options};

type Outcome = Result<(), String>;

fn dma_faults() -> u64 {
    kinfo::word(ki::W_DMA_FAULTS)
}

fn spawn_paused(prog: &str, args: &str, spare: u64, words: &[u64]) -> Result<Child, String> {
    let opts = Options { args, words, heap_pages: 64, spare_pages: spare, paused: true };
    spawn::spawn_named(prog, &opts)
}

/// `nvme_rw`: the driver writes and verifies over 1,000 random LBAs.
pub fn nvme_rw() -> Outcome {
    nvme_rw_on(&nvme()?)
}

/// The `nvme_rw` run on controller `dev`.
fn nvme_rw_on(dev: &Device) -> Outcome {
    let dev = *dev;
    let before = dma_faults();
    let tsc = kinfo::word(ki::W_TSC_PER_US);
    let driver = start_driver("nvmed", "rw", &dev, 0, NVME_DMA_PAGES, [tsc, 0])?;
    sched::start(driver.slot);
    expect_zero(&driver, "nvmed rw")?;
    let faults = dma_faults() - before;
    if faults != 0 {
        return Err(format!("{faults} DMA faults during a correct run"));
    }
    Ok(())
}

/// `sriov_pf` (the machine variant whose NVMe is an SR-IOV physical
/// function with 4 VFs behind a PCIe root port): the kernel found the
/// controller behind the bridge, read its SR-IOV capability, turned its
/// four VFs on and lists each as a device of its own (VF n of this PF, at
/// the routing id the capability gives, with the PF's vendor and the VF
/// device id, its own BAR 0 and device handle), and the userspace
/// driver's whole read/write run on the PF works through the bridge.
pub fn sriov_pf() -> Outcome {
    let dev = nvme_sriov_pf()?;
    if dev.bdf >> 8 == 0 {
        return Err(format!("the NVMe controller is at {:04x}, on bus 0: not behind the root port", dev.bdf));
    }
    let word = exo_rt::devinfo(di::W_ENTRY0 + dev.index * di::ENTRY_WORDS + di::E_SRIOV);
    let sr = di::SrIovInfo::from_word(word).ok_or("the kernel reports no SR-IOV capability for the NVMe controller")?;
    println!(
        "init: NVMe physical function: {} VFs (device {:04x}), first VF at routing id +{}, stride {}",
        sr.total_vfs, sr.vf_device_id, sr.first_vf_offset, sr.vf_stride
    );
    if sr.total_vfs != 4 {
        return Err(format!("SR-IOV TotalVFs reads {}; the machine has sriov_max_vfs=4", sr.total_vfs));
    }
    if sr.first_vf_offset == 0 || sr.vf_stride == 0 || sr.vf_device_id == 0 {
        return Err(format!("SR-IOV capability implausible: {sr:?}"));
    }
    let enabled = exo_rt::devinfo(di::W_ENTRY0 + dev.index * di::ENTRY_WORDS + di::E_VFS_ENABLED);
    if enabled != di::MAX_VFS_PER_PF as u64 {
        return Err(format!("the kernel enabled {enabled} VFs; expected {}", di::MAX_VFS_PER_PF));
    }
    let listed = all();
    for n in 1..=sr.total_vfs {
        let rid = dev.bdf as u32 + sr.first_vf_offset as u32 + (n as u32 - 1) * sr.vf_stride as u32;
        let vf = listed.iter().find(|d| d.bdf as u32 == rid).ok_or(format!("VF {n} ({rid:04x}) is not listed"))?;
        let want = di::VfInfo { pf_index: dev.index as u16, vf_number: n };
        if vf.vf != Some(want) {
            return Err(format!("device {:04x} describes itself as {:?}, not {want:?}", vf.bdf, vf.vf));
        }
        if (vf.vendor, vf.device, vf.class) != (dev.vendor, sr.vf_device_id, dev.class) {
            return Err(format!("VF {n} ids {:04x}:{:04x} class {:06x}", vf.vendor, vf.device, vf.class));
        }
        if vf.handle_va == 0 || vf.bars[0].0 == 0 || vf.bars[0].1 == 0 {
            return Err(format!("VF {n} has no device handle or no BAR 0: {vf:?}"));
        }
        println!(
            "init: VF {n} is device {} at {rid:04x}: BAR0 {:#x} bytes, its own device handle",
            vf.index, vf.bars[0].1
        );
    }
    nvme_rw_on(&dev)
}

/// `acpi_bad_dmar` (q35 without VT-d, plus a DMAR cut off inside its
/// fixed part): the kernel refused it and booted without the I/O-MMU —
/// the devices are listed with their registers, none has a DMA handle —
/// and a process runs.
pub fn acpi_bad_dmar() -> Outcome {
    let devices = all();
    if devices.is_empty() {
        return Err("no devices: a bad DMAR must cost only DMA, not PCI".into());
    }
    if exo_rt::devinfo(di::W_IOMMU) != 0 {
        return Err("the I/O-MMU is on although the only DMAR is truncated".into());
    }
    if let Some(d) = devices.iter().find(|d| d.handle_va != 0) {
        return Err(format!("device {:04x} has a DMA handle without an I/O-MMU", d.bdf));
    }
    nvme()?;
    println!("init: {} devices, no I/O-MMU, no DMA handles", devices.len());
    crate::basic::expect_exit("hello", "", 0, 0)
}

/// `acpi_bad_mcfg` (i440fx, which has no MCFG of its own, plus an MCFG cut
/// off before its first entry):
/// the kernel refused it and booted without PCI devices; a process runs.
pub fn acpi_bad_mcfg() -> Outcome {
    if exo_rt::devinfo(di::W_MAGIC) != di::MAGIC {
        return Err("the device info page is missing".into());
    }
    let n = exo_rt::devinfo(di::W_COUNT);
    if n != 0 {
        return Err(format!("{n} devices listed although the only MCFG is truncated"));
    }
    println!("init: no PCI devices (the MCFG was refused)");
    crate::basic::expect_exit("hello", "", 0, 0)
}

/// `nvme_irq`: completions signalled by MSI-X. The driver programs its
/// MSI-X entries (in its BAR) with the remappable-format addresses of the
/// device's interrupt-remapping handles; init routes the vectors to it.
pub fn nvme_irq() -> Outcome {
    let dev = nvme()?;
    let m = msix(&dev).ok_or("the NVMe controller has no MSI-X capability")?;
    let irq_handle = exo_rt::devinfo(di::W_ENTRY0 + dev.index * di::ENTRY_WORDS + di::E_IRQ_HANDLE);
    let vector0 = exo_rt::devinfo(di::W_ENTRY0 + dev.index * di::ENTRY_WORDS + di::E_IRQ_VECTOR);
    if vector0 == 0 {
        return Err("the kernel gives this device no remapped interrupt vectors (interrupt remapping off?)".into());
    }
    if m.bar != 0 || m.entries < 3 {
        return Err(format!(
            "MSI-X table in BAR {} with {} entries; the driver needs it in BAR 0 with 3",
            m.bar, m.entries
        ));
    }
    println!(
        "init: MSI-X table at BAR0 + {:#x}, {} entries; remapping handles {irq_handle}.., vectors {vector0:#x}..",
        m.table, m.entries
    );
    enable_msix(&dev, &m);
    let tsc = kinfo::word(ki::W_TSC_PER_US);
    let words = m.table as u64 | irq_handle << 32;
    let driver = start_driver("nvmed", "irq", &dev, 0, NVME_DMA_PAGES, [tsc, words])?;
    for j in 0..3 {
        route(vector0 + j, &driver);
    }
    let before = INTERRUPTS.load(SeqCst);
    sched::start(driver.slot);
    expect_zero(&driver, "nvmed irq")?;
    let forwarded = mem::read(spawn::mailbox(&driver) + MAILBOX_IRQS);
    println!(
        "init: {} device interrupts arrived, {forwarded} forwarded to the driver, {} unrouted",
        INTERRUPTS.load(SeqCst) - before,
        UNROUTED.load(SeqCst)
    );
    if forwarded == 0 {
        return Err("no interrupt reached the driver".into());
    }
    Ok(())
}

const VIRTIO_BLK_IDS: (u16, u16) = (0x1af4, 0x1042);

/// `virtio_blk_rw`: the same random write/verify as `nvme_rw`, on
/// virtio-blk (`iommu_platform=on`, so its DMA goes through VT-d too).
pub fn virtio_blk_rw() -> Outcome {
    let dev = find(VIRTIO_BLK_IDS.0, VIRTIO_BLK_IDS.1)?;
    enable(&dev)?;
    let (bar, [common, notify, mult, device]) = virtio_layout(&dev)?;
    println!("init: virtio-blk {:04x}: structures in BAR {bar} ({:#x} bytes): common {common:#x}, notify {notify:#x} x {mult}, device {device:#x}", dev.bdf, dev.bars[bar].1);
    let before = dma_faults();
    if [common, notify, mult, device].iter().any(|v| *v > 0xffff) {
        return Err(format!(
            "virtio structure offsets {common:#x} {notify:#x} {mult:#x} {device:#x} do not fit 16 bits"
        ));
    }
    let layout = common | notify << 16 | mult << 32 | device << 48;
    let driver = start_driver("nvmed", "virtio", &dev, bar, 96, [layout, kinfo::word(ki::W_TSC_PER_US)])?;
    sched::start(driver.slot);
    expect_zero(&driver, "nvmed virtio")?;
    let faults = dma_faults() - before;
    if faults != 0 {
        return Err(format!("{faults} DMA faults during a correct run"));
    }
    Ok(())
}

/// `nvme_bench`: the exokernel rows of the drivers benchmark (printed by
/// the driver as `EXO-BENCH ...` lines). `quick` on the command line
/// shortens it; `bench_ops=N` (N >= 2) sets every workload's op count.
/// The driver gets a read-only view of the kernel info page at its
/// `SCRATCH_VA`, to count kernel crossings over its measured loops.
pub fn nvme_bench() -> Outcome {
    let dev = nvme()?;
    let words: Vec<&str> = kinfo::cmdline().split_whitespace().collect();
    let ops = words.iter().find_map(|w| w.strip_prefix("bench_ops=")).map(|n| n.parse::<u64>());
    // Word 7: 0 = full, 1 = quick, N >= 2 = N ops per workload.
    let size = match ops {
        Some(Ok(n)) if n >= 2 => n,
        Some(_) => return Err("bench_ops=N needs a number N >= 2".into()),
        None => words.contains(&"quick") as u64,
    };
    let driver = start_driver("nvmed", "bench", &dev, 0, NVME_DMA_PAGES, [kinfo::word(ki::W_TSC_PER_US), size])?;
    spawn::ensure_tables(driver.at(SCRATCH_VA)).map_err(|e| format!("tables for the info page: {e}"))?;
    sys::map(exo_abi::KINFO_VA, 0, 0, driver.at(SCRATCH_VA), Rights::NONE)
        .map_err(|e| format!("sharing the kernel info page read-only: {}", e.name()))?;
    sched::start(driver.slot);
    expect_zero(&driver, "nvmed bench")
}

/// `irq_forged_handle_blocked` (`compat` false) and `irq_compat_forged`
/// (`compat` true): a driver makes its controller raise interrupts through
/// another device's interrupt-remapping entries, or as compatibility-format
/// MSIs (MSI-X entries and a DMA write into 0xfee0_0000) naming another
/// device's vectors. None may arrive: the remapping unit checks the source
/// id of remappable MSIs and blocks compatibility-format ones.
///
/// On QEMU 7.2 the compatibility-format check FAILS: its intel-iommu
/// forwards compatibility-format MSIs although GSTS.CFIS is clear, so a
/// driver can raise any vector (vector 14 panics the kernel: an external
/// interrupt on an error-code exception vector misaligns the trap frame).
pub fn irq_attack(compat: bool) -> Outcome {
    let dev = nvme()?;
    let m = msix(&dev).ok_or("the NVMe controller has no MSI-X capability")?;
    let entry = |d: &Device, i: usize| exo_rt::devinfo(di::W_ENTRY0 + d.index * di::ENTRY_WORDS + i);
    let (own_handle, own_vector) = (entry(&dev, di::E_IRQ_HANDLE), entry(&dev, di::E_IRQ_VECTOR));
    let other = find(VIRTIO_BLK_IDS.0, VIRTIO_BLK_IDS.1)?;
    let (other_handle, other_vector) = (entry(&other, di::E_IRQ_HANDLE), entry(&other, di::E_IRQ_VECTOR));
    if own_vector == 0 || other_vector == 0 {
        return Err("interrupt remapping is off: no per-device vectors".into());
    }
    if m.bar != 0 || m.entries < 3 {
        return Err(format!("MSI-X table in BAR {} with {} entries", m.bar, m.entries));
    }
    enable_msix(&dev, &m);
    let words = [m.table as u64 | own_handle << 32, other_vector | other_handle << 16];
    let mode = if compat { "irq-compat" } else { "irq-forge" };
    let driver = start_driver("nvmetest", mode, &dev, 0, NVME_DMA_PAGES, words)?;
    for j in 0..3 {
        route(own_vector + j, &driver);
    }
    let seen = interrupts_seen;
    let before = [seen(other_vector), seen(other_vector + 1)];
    let forged0 = exo_rt::kinfo::word(exo_abi::kinfo::W_FORGED_INTERRUPTS);
    sched::start(driver.slot);
    expect_zero(&driver, &format!("nvmed {mode}"))?;
    let stolen = seen(other_vector) + seen(other_vector + 1) - before[0] - before[1];
    let forged = exo_rt::kinfo::word(exo_abi::kinfo::W_FORGED_INTERRUPTS) - forged0;
    println!(
        "init: forged interrupts that arrived as the other device's vectors {other_vector:#x}/{:#x}: {stolen}; {} forwarded to the driver in all",
        other_vector + 1,
        mem::read(spawn::mailbox(&driver) + MAILBOX_IRQS)
    );
    if compat {
        println!("init: {forged} device-raised interrupts on exception vectors 14 and 8 were recognised and dropped by the kernel");
        if stolen != 0 {
            println!(
                "init: NOTE: {stolen} compatibility-format MSIs arrived as another device's vector: QEMU's VT-d model passes them \
                 (VT-d 5.1.4 blocks them while GSTS.CFIS is clear, which the kernel leaves clear)"
            );
        }
        if forged == 0 {
            return Err("no forged exception-vector interrupt reached the kernel: the test proved nothing".into());
        }
        return Ok(());
    }
    if stolen != 0 {
        return Err(format!("{stolen} forged interrupts were delivered as another device's vectors"));
    }
    Ok(())
}

const VICTIM_PATTERN: u64 = 0x7a46_e7ee_0000_0000;

fn victim_intact(frame_va: u64) -> Outcome {
    for i in 0..512 {
        let got = mem::read(frame_va + 8 * i);
        if got != VICTIM_PATTERN + i {
            return Err(format!("victim page changed at word {i}: {got:#x}"));
        }
    }
    Ok(())
}

/// `dma_attack_blocked`: the driver programs the device to DMA into a page
/// of another process (by its physical address, as if there were no
/// I/O-MMU), into unmapped addresses of its window, and into a page it
/// granted and then revoked. Every such DMA must be blocked and counted.
pub fn dma_attack_blocked() -> Outcome {
    let dev = nvme()?;
    // The victim: a process owning a page whose physical address init knows
    // (it came from init's RAM window) and can read through its window.
    let frame = initlib::frames::alloc().ok_or("no frame for the victim")?;
    let victim_pa = frame - RAM_WINDOW_VA;
    for i in 0..512 {
        mem::write(frame + 8 * i, VICTIM_PATTERN + i);
    }
    let victim = spawn_paused("nvmetest", "victim", 0, &[VICTIM_PATTERN])?;
    spawn::ensure_tables(victim.at(SCRATCH_VA)).map_err(|e| format!("victim tables: {e}"))?;
    sys::map(frame, 0, 0, victim.at(SCRATCH_VA), Rights::OWN | Rights::WRITE | Rights::GRANT)
        .map_err(|e| format!("giving the victim its page: {}", e.name()))?;
    let victim_view = victim.at(SCRATCH_VA);
    sched::start(victim.slot);
    while mem::read(spawn::mailbox(&victim) + 8) == 0 {
        sched::sched_yield();
        if sched::slot(victim.slot).state.load(SeqCst) != sched::RUNNABLE {
            return Err("victim died before it was ready".into());
        }
    }
    victim_intact(victim_view)?;
    println!("init: victim page at physical {victim_pa:#x}");

    let before = dma_faults();
    let device_before = device_dma_faults(dev.index);
    let driver = start_driver("nvmetest", "attack", &dev, 0, NVME_DMA_PAGES, [victim_pa, VICTIM_PATTERN])?;
    sched::start(driver.slot);
    let code = finish(&driver, "nvmetest attack")?;
    let attacks = mem::read(spawn::mailbox(&driver) + 8);
    let faults = dma_faults() - before;
    println!(
        "init: the driver made {attacks} DMA attempts outside its grant; the I/O-MMU recorded {faults} faults (last at I/O address {:#x})",
        kinfo::word(ki::W_DMA_FAULT_ADDR)
    );
    if code != 0 {
        return Err(format!("nvmetest attack exited with {code} (a blocked-DMA check failed)"));
    }
    if attacks == 0 || faults < attacks {
        return Err(format!("{attacks} attacks but only {faults} DMA faults recorded"));
    }
    // The faults also reached the device's owner: the kernel counted them
    // against the requester (this NVMe controller) and init reported that
    // device's new faults to its driver.
    let attributed = device_dma_faults(dev.index) - device_before;
    let reported = mem::read(spawn::mailbox(&driver) + MAILBOX_DMA_FAULTS);
    println!("init: {attributed} of those faults were attributed to the NVMe controller, {reported} reported to its driver (its mailbox)");
    if attributed != faults {
        return Err(format!("{faults} DMA faults recorded but {attributed} attributed to the attacking device"));
    }
    if reported != attributed {
        return Err(format!("{attributed} DMA faults of the device but {reported} reported to its driver"));
    }
    victim_intact(victim_view)?;
    mem::write(spawn::mailbox(&victim), 1);
    expect_zero(&victim, "victim")?;
    println!("init: victim page unchanged; the kernel is up");
    Ok(())
}

/// `device_ownership`: a process given nothing cannot reach the BAR the
/// driver holds, cannot map init's (now empty) BAR address, and cannot use
/// a device handle copied without OWN. Init still holds the config page.
pub fn device_ownership() -> Outcome {
    let dev = nvme()?;
    let (init_bar, _) = dev.bars[0];
    let driver = start_driver("nvmetest", "hold", &dev, 0, 8, [0, 0])?;
    sched::start(driver.slot);
    // The intruder gets a copy of the device handle with GRANT only.
    let intruder = spawn_paused("nvmetest", "intruder", 8, &[DRIVER_BAR_VA, init_bar, DRIVER_HANDLE_VA])?;
    spawn::ensure_tables(intruder.at(DRIVER_HANDLE_VA)).map_err(|e| format!("tables: {e}"))?;
    sys::map(dev.handle_va, 0, 0, intruder.at(DRIVER_HANDLE_VA), Rights::GRANT)
        .map_err(|e| format!("copying a GRANT-only handle: {}", e.name()))?;
    // A copy with rights the holder lacks (SWITCH) is refused at the source.
    match sys::map(dev.handle_va, 0, 0, intruder.at(DRIVER_HANDLE_VA + PAGE_SIZE), Rights::SWITCH) {
        Err(e) => println!("init: a SWITCH copy of the device handle: refused ({})", e.name()),
        Ok(()) => return Err("init could make a SWITCH copy of a device handle".into()),
    }
    sched::start(intruder.slot);
    let code = finish(&intruder, "intruder")?;
    if code != 42 {
        return Err(format!("intruder exited with {code}; expected 42 (every check refused, then a fault on the BAR)"));
    }
    // The driver still has its BAR and finds the controller.
    mem::write(spawn::mailbox(&driver), 1);
    expect_zero(&driver, "nvmetest hold")?;
    // And init still holds the config page.
    let ids = dev.config.read32(0);
    if ids != dev.vendor as u32 | (dev.device as u32) << 16 {
        return Err(format!("config page reads ids {ids:#x}"));
    }
    // Init's own BAR address is empty after the move.
    match sys::map(init_bar, 0, 0, SCRATCH_VA, Rights::NONE) {
        Err(e) => println!("init: its old BAR address holds nothing after the move ({})", e.name()),
        Ok(()) => return Err("init still holds the BAR after moving it".into()),
    }
    println!("init: config page still readable by init (ids {ids:#010x})");
    Ok(())
}

/// `nvme_persist_write` / `nvme_persist_check`: the two boots of
/// `nvme_persist`.
pub fn nvme_persist(check: bool) -> Outcome {
    let nonce = crate::basic::nonce()?;
    let dev = nvme()?;
    let mode = if check { "persist-check" } else { "persist-write" };
    let driver = start_driver("nvmetest", mode, &dev, 0, NVME_DMA_PAGES, [nonce, 0])?;
    sched::start(driver.slot);
    expect_zero(&driver, mode)
}

/// Pages of the block-service region (header, rings, data area).
const BLOCKQ_PAGES: u64 = 72;

/// `block_service`: an application reads and writes blocks through the
/// driver's shared-memory queues; init only sets up the region.
pub fn block_service() -> Outcome {
    let dev = nvme()?;
    let region = make_region(BLOCKQ_PAGES)?;
    let before = dma_faults();
    let driver = start_driver("nvmed", "serve", &dev, 0, NVME_DMA_PAGES, [BLOCKQ_PAGES * PAGE_SIZE, 0])?;
    // The driver borrows the region; init, its owner, gives the device DMA.
    link(&driver, region, Rights::WRITE)?;
    grant_region_dma(&dev, region, BLOCKQ_PAGES)?;
    sched::start(driver.slot);
    // The client starts once the driver has formatted the region.
    while mem::read(spawn::mailbox(&driver) + 8) == 0 {
        sched::sched_yield();
        if sched::slot(driver.slot).state.load(SeqCst) != sched::RUNNABLE {
            return Err("the driver ended before it served".into());
        }
    }
    let client = spawn_paused("nvmetest", "client", 0, &[BLOCKQ_PAGES * PAGE_SIZE, kinfo::word(ki::W_TSC_PER_US)])?;
    link(&client, region, Rights::WRITE)?;
    sched::start(client.slot);
    let client_code = finish(&client, "block-service client");
    mem::write(spawn::mailbox(&driver), 1);
    let driver_done = expect_zero(&driver, "nvmed serve");
    match client_code? {
        0 => {}
        code => return Err(format!("client exited with {code}")),
    }
    driver_done?;
    revoke_region_dma(&dev, BLOCKQ_PAGES)?;
    let faults = dma_faults() - before;
    if faults != 0 {
        return Err(format!("{faults} DMA faults while serving"));
    }
    Ok(())
}

/// `two_nvme` (machine with a second NVMe controller): two `nvmetest pair`
/// processes drive the two controllers at once, each chosen by bus
/// position and confirmed by the serial number its controller reports
/// (`exo0`, `exo1`); each does the `nvme_rw` run on its own disk while the
/// other does, and points its device at the other driver's DMA page (an
/// I/O address mapped only in the other device): blocked, counted against
/// its own device, the other's page unchanged.
pub fn two_nvme() -> Outcome {
    use nvme::select::Want;
    let devs = [nvme_controller(Want::Controller, 0)?, nvme_controller(Want::Controller, 1)?];
    let tsc = kinfo::word(ki::W_TSC_PER_US);
    let faults0 = (dma_faults(), devs.map(|d| device_dma_faults(d.index)));
    let mut drivers = Vec::new();
    for (k, dev) in devs.iter().enumerate() {
        drivers.push(start_driver("nvmetest", "pair", dev, 0, NVME_DMA_PAGES, [tsc, k as u64])?);
    }
    for d in &drivers {
        sched::start(d.slot);
    }
    // Both brought up (and confirmed their serials) before either starts
    // its I/O; both done with their stray DMAs before either checks its page.
    for phase in 1..=2u64 {
        for (k, d) in drivers.iter().enumerate() {
            initlib::sriov::wait_mailbox(d, phase, &format!("nvmetest pair on controller {k}"))?;
        }
        for d in &drivers {
            mem::write(spawn::mailbox(d), phase);
        }
        println!("init: both drivers reached phase {phase}");
    }
    let mut attempts = [0u64; 2];
    for (k, d) in drivers.iter().enumerate() {
        attempts[k] = mem::read(spawn::mailbox(d) + 16);
        expect_zero(d, &format!("nvmetest pair on controller {k} ({})", NVME_SERIALS[k]))?;
    }
    let per_device = [0, 1].map(|k| device_dma_faults(devs[k].index) - faults0.1[k]);
    let total = dma_faults() - faults0.0;
    println!(
        "init: two controllers driven at once; stray DMAs {attempts:?}, faults counted against each device {per_device:?}, {total} in all"
    );
    for k in 0..2 {
        if attempts[k] == 0 || per_device[k] < attempts[k] {
            return Err(format!(
                "controller {k}: {} stray DMAs but {} faults counted against it",
                attempts[k], per_device[k]
            ));
        }
    }
    if total != per_device[0] + per_device[1] {
        return Err(format!(
            "{total} DMA faults in all, but {per_device:?} against the two controllers: another device faulted"
        ));
    }
    Ok(())
}
