//! Starting the database: init sets up a medium and starts `kvdb`, the
//! embedded database as an application libOS, on it (the demo's last two
//! steps, and the `libdb_*` tests of the test root).
//!
//! * `libdb_nvme_create` / `libdb_nvme_check` (the two boots of
//!   `libdb_nvme`): `nvmed serve` exposes only [`NVME_WINDOW_MIB`] of the
//!   NVMe namespace (no other test writes there) through `blockq` rings in
//!   a region init links into the driver and into `kvdb`; boot 1 creates a
//!   database there and commits, boot 2 reopens it (recovery) and checks
//!   every committed key/value, and nothing else.
//! * `libdb_pmem_create` / `libdb_pmem_check` (the two boots of
//!   `libdb_pmem`): the same plan on 16 MiB of the NVDIMM, which init
//!   moves into `kvdb` (`pmem::grant`) and takes back after it exits.
//! * `libdb_vf_create` / `libdb_vf_check` (the two boots of `libdb_vf`,
//!   on the SR-IOV machine): the PF's driver (`nvmed sriov`) brings VF 1
//!   online (init does the FLR it needs, see `sriov.rs`), and init moves
//!   VF 1's BAR and device handle into `kvdb`, which drives the VF itself
//!   with the NVMe driver linked in, on [`VF_WINDOW_MIB`] of the shared
//!   namespace; boot 1 creates, boot 2 recovers and checks (then kvdb
//!   without a window and without a device handle: refused by name).
//! * `libdb_on_libfs`: the same plan with the database as a libfs file
//!   (`file-pmem`, `file-nvme`), on the disk plan's ranges for it
//!   ([`FILE_PMEM_OFFSET`], [`FILE_NVME_WINDOW_MIB`]), through
//!   [`run_pmem_at`] and [`on_nvme_as`].

use crate::devices;
use crate::sched;
use crate::spawn::{self, Child, Options};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{kinfo as ki, Rights, PAGE_SIZE};
use exo_rt::layout::{SCRATCH_VA, SHARED_VA};
use exo_rt::{kinfo, mem, println, sys};

type Outcome = Result<(), String>;

/// The NVMe range the database lives in: 192 MiB..256 MiB of the
/// namespace (`nvme_rw`, `nvme_bench` and `block_service` write below
/// 128 MiB, `nvme_persist` at 146.5 MiB, just over 1 MiB). Windows are
/// MiB of the namespace; the driver turns them into its blocks.
pub const NVME_WINDOW_MIB: (u64, u64) = (192, 64);
/// The range the VF's database lives in: 160 MiB..192 MiB (free on the
/// SR-IOV machine too: `sriov_vf`'s VF I/O stays below 128 MiB, the PF's
/// checks write 32 KiB at 156.25 MiB). The image is 512 MiB (the upper half
/// belongs to libfs, see `xtask`'s `NVME_IMAGE`).
const VF_WINDOW_MIB: (u64, u64) = (160, 32);
/// kvdb's DMA pages when it drives a VF: its queues (~21 pages) and a
/// 256 KiB bounce area, with room to spare.
const VF_DMA_PAGES: u64 = 128;
/// The block-service region: header, request and response rings (3 pages)
/// and a 1 MiB data area the driver maps into the device.
pub const KVDB_REGION_PAGES: u64 = 3 + 256;
/// DMA pages for nvmed's queues (as `devices::NVME_DMA_PAGES`).
pub(crate) const NVME_DMA_PAGES: u64 = 640;
/// kvdb's heap: libdb's 4 MiB page cache, the test's model and slack.
pub(crate) const KVDB_HEAP_PAGES: u64 = 3072;
/// The database's part of the NVDIMM: offsets into init's persistent-memory
/// span (below `TEST_AREA` belongs to `pmem_persist`).
pub const PMEM_OFFSET: u64 = crate::pmem::TEST_AREA;
pub const PMEM_BYTES: u64 = 16 << 20;

/// libdb on a libfs file (`libdb_on_libfs`): the file system's NVMe
/// window (MiB 384..448 of the namespace, the disk plan's) and its part of
/// the NVDIMM (MiB 64..96 of init's span, see `pmem.rs`).
pub const FILE_NVME_WINDOW_MIB: (u64, u64) = (384, 64);
pub const FILE_PMEM_OFFSET: u64 = 64 << 20;
pub const FILE_PMEM_BYTES: u64 = 32 << 20;

/// What kvdb's exit code means (see kvdb's `error.rs`).
pub fn meaning(code: u64) -> &'static str {
    match code {
        0 => "passed",
        1 => "database error",
        2 => "missing region",
        3 => "corrupt database",
        4 => "medium full",
        5 => "verification failed",
        6 => "block service or own NVMe controller failure",
        7 => "bad arguments",
        _ => "unknown",
    }
}

/// Spawn kvdb (paused) with its words, and the kernel info page shared
/// read-only at its `SCRATCH_VA` (for system-wide crossing counts).
pub fn spawn_kvdb(args: &str, va: u64, bytes: u64, nonce: u64) -> Result<Child, String> {
    spawn_kvdb_with(args, &[va, bytes, kinfo::word(ki::W_TSC_PER_US), nonce], 0)
}

/// [`spawn_kvdb`] with all its words (from args word 3) and `spare` spare
/// frames.
pub fn spawn_kvdb_with(args: &str, words: &[u64], spare: u64) -> Result<Child, String> {
    let c = spawn::spawn_named(
        "kvdb",
        &Options { args, words, heap_pages: KVDB_HEAP_PAGES, spare_pages: spare, paused: true },
    )?;
    share_info_page(&c)?;
    Ok(c)
}

pub fn run_kvdb(c: &Child, what: &str) -> Outcome {
    sched::start(c.slot);
    match crate::spawn::finish(c, what)? {
        0 => Ok(()),
        code => Err(format!("{what} exited with {code} ({})", meaning(code))),
    }
}

/// kvdb `create` or `check` on the NVMe through `nvmed serve`, with the
/// workload derived from `nonce`.
pub fn on_nvme(check: bool, nonce: u64) -> Outcome {
    on_nvme_as("nvme", NVME_WINDOW_MIB, check, nonce)
}

/// kvdb `<medium> create|check` (`nvme`, or `file-nvme`: the database as a
/// libfs file) on the NVMe MiB `window_mib` (first, length) exposed by
/// `nvmed serve`.
pub fn on_nvme_as(medium: &str, window_mib: (u64, u64), check: bool, nonce: u64) -> Outcome {
    on_block_service(medium, window_mib, if check { "check" } else { "create" }, nonce).map(|_| ())
}

/// kvdb `nvme <phase>` (phase and its arguments, e.g. `pfload sync 300`)
/// on the database's NVMe window; returns word 1 of kvdb's mailbox (what
/// kvdb reports to its parent, e.g. its last acknowledged commit).
pub fn on_nvme_phase(phase: &str, nonce: u64) -> Result<u64, String> {
    on_block_service("nvme", NVME_WINDOW_MIB, phase, nonce)
}

fn on_block_service(medium: &str, window_mib: (u64, u64), phase: &str, nonce: u64) -> Result<u64, String> {
    let svc = BlockService::start(window_mib, KVDB_REGION_PAGES)?;
    println!(
        "init: kvdb {medium} {phase} (nonce {nonce:#x}) on NVMe MiB {}..{} through nvmed serve",
        window_mib.0,
        window_mib.0 + window_mib.1
    );
    let kvdb = spawn_kvdb(&format!("{medium} {phase}"), SHARED_VA, svc.bytes(), nonce)?;
    svc.link(&kvdb)?;
    let outcome = run_kvdb(&kvdb, &format!("kvdb {medium} {phase}"));
    let reported = mem::read(spawn::mailbox(&kvdb) + 8);
    let stopped = svc.stop();
    outcome?;
    stopped?;
    Ok(reported)
}

/// The block service on `window_mib` (first MiB, length in MiB) of the
/// NVMe namespace for `client(region, bytes)`, which spawns and runs the
/// client, linking the region into it (`regions::link`); then the service
/// stops ([`BlockService::stop`]).
pub fn with_block_service(
    window_mib: (u64, u64),
    region_pages: u64,
    client: impl FnOnce(u64, u64) -> Outcome,
) -> Outcome {
    let svc = BlockService::start(window_mib, region_pages)?;
    let outcome = client(svc.region, svc.bytes());
    let stopped = svc.stop();
    outcome?;
    stopped
}

/// The block service on a window of the NVMe namespace: `nvmed serve` on
/// the rings of a fresh region of `region_pages` (3 ring pages + the data
/// area) that init owns and links into the driver and each client; init
/// gives the controller DMA to it.
pub struct BlockService {
    dev: devices::Device,
    region: u64,
    region_pages: u64,
    driver: Child,
    faults_before: u64,
    /// With a polling driver: the first of the controller's remapped
    /// vectors (MSI-X entry 0, the admin queue), whose entries 1 and 2
    /// (the I/O queues' completions) can wake a client
    /// ([`BlockService::wake_on_completions`]).
    vector0: Option<u64>,
}

impl BlockService {
    pub fn start(window_mib: (u64, u64), region_pages: u64) -> Result<BlockService, String> {
        BlockService::start_on(window_mib, region_pages, None)
    }

    /// [`BlockService::start`], with `polling_cpu: Some(n)`: the driver
    /// pinned to CPU `n` (init's scheduler must have it, `sched::give_core`)
    /// as `nvmed serve poll`, which never yields and tells its clients to
    /// spin for their answers (`qd1poll_own_core`). `None`: the yielding
    /// driver on CPU 0, beside its clients.
    pub fn start_on(
        window_mib: (u64, u64),
        region_pages: u64,
        polling_cpu: Option<u64>,
    ) -> Result<BlockService, String> {
        let dev = devices::nvme()?;
        devices::enable(&dev)?;
        let region = crate::regions::make_region(region_pages)?;
        let faults_before = kinfo::word(ki::W_DMA_FAULTS);
        let window = window_mib.0 | window_mib.1 << 32;
        let bytes = region_pages * PAGE_SIZE;
        let (args, cpus) = match polling_cpu {
            Some(n) => ("serve poll", 1 << n),
            None => ("serve", 1),
        };
        // The polling driver never needs an interrupt, but its completions
        // can wake a sleeping client: init programs the MSI-X entries
        // while it still holds the BAR (the driver creates its completion
        // queues with interrupts on).
        let vector0 = match polling_cpu {
            Some(_) => completion_msix(&dev)?,
            None => None,
        };
        let driver = devices::start_driver_on("nvmed", args, &dev, 0, NVME_DMA_PAGES, [bytes, window], cpus)?;
        // The driver borrows the region; init, its owner, gives the device DMA.
        crate::regions::link(&driver, region, Rights::WRITE)?;
        devices::grant_region_dma(&dev, region, region_pages)?;
        sched::start(driver.slot);
        while mem::read(spawn::mailbox(&driver) + 8) == 0 {
            sched::sched_yield();
            if sched::slot(driver.slot).state.load(SeqCst) != sched::RUNNABLE {
                return Err("nvmed serve ended before it served".into());
            }
        }
        Ok(BlockService { dev, region, region_pages, driver, faults_before, vector0 })
    }

    /// Completions of the polling driver's I/O queues wake `client` from
    /// its `msg::WAIT` (`exo_rt::blockq::wait_sleeping`): their interrupts
    /// (to CPU 0, where init dispatches them) wake it instead of going to
    /// the driver. Returns the vector of queue 1 (the asynchronous one).
    pub fn wake_on_completions(&self, client: &Child) -> Result<u64, String> {
        let v0 =
            self.vector0.ok_or("no MSI-X for the block service (not a polling driver, or no interrupt remapping)")?;
        devices::wake_on(v0 + 1, Some(client));
        devices::wake_on(v0 + 2, Some(client));
        Ok(v0 + 1)
    }

    /// The region's size (a client's args word 4).
    pub fn bytes(&self) -> u64 {
        self.region_pages * PAGE_SIZE
    }

    /// Link the rings into a client at its `SHARED_VA`.
    pub fn link(&self, client: &Child) -> Outcome {
        crate::regions::link(client, self.region, Rights::WRITE)
    }

    /// The driver's process (its slot says where it ran).
    pub fn driver(&self) -> &Child {
        &self.driver
    }

    /// Stop the driver, revoke the device's DMA, and require no DMA fault.
    pub fn stop(self) -> Outcome {
        self.stop_reading([]).map(|_| ())
    }

    /// [`BlockService::stop`], returning the words at byte offsets `at` of
    /// the driver's mailbox as it left them when it stopped (its counts).
    pub fn stop_reading<const N: usize>(self, at: [u64; N]) -> Result<[u64; N], String> {
        if let Some(v0) = self.vector0 {
            devices::wake_on(v0 + 1, None);
            devices::wake_on(v0 + 2, None);
        }
        mem::write(spawn::mailbox(&self.driver), 1);
        let served = match crate::spawn::finish(&self.driver, "nvmed serve") {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!("nvmed serve exited with {code}")),
            Err(e) => Err(e),
        };
        let words = at.map(|off| mem::read(spawn::mailbox(&self.driver) + off));
        let revoked = devices::revoke_region_dma(&self.dev, self.region_pages);
        served?;
        revoked?;
        let faults = kinfo::word(ki::W_DMA_FAULTS) - self.faults_before;
        if faults != 0 {
            return Err(format!("{faults} DMA faults while the block service ran"));
        }
        Ok(words)
    }
}

/// Program the NVMe controller's MSI-X entries 0..3 (admin queue, I/O
/// queues 1 and 2) with its own remapped vectors and turn MSI-X on, as
/// `nvme_irq` has its driver do. `None` if the kernel gave the device no
/// remapped vectors or the table is not where this expects it.
fn completion_msix(dev: &devices::Device) -> Result<Option<u64>, String> {
    use exo_abi::devinfo as di;
    let entry = |w: usize| exo_rt::devinfo(di::W_ENTRY0 + dev.index * di::ENTRY_WORDS + w);
    let (handle0, vector0) = (entry(di::E_IRQ_HANDLE), entry(di::E_IRQ_VECTOR));
    let Some(m) = devices::msix(dev) else { return Ok(None) };
    if vector0 == 0 || m.bar != 0 || m.entries < 3 {
        return Ok(None);
    }
    let (va, size) = dev.bars[0];
    let bar = exo_rt::mmio::Window::new(va, size).ok_or("the NVMe BAR is not mapped in init")?;
    for j in 0..3u64 {
        let (addr, data) = devices::remappable_msi(handle0 as u32 + j as u32);
        let e = m.table as u64 + 16 * j;
        bar.write32(e, addr);
        bar.write32(e + 4, 0);
        bar.write32(e + 8, data);
        bar.write32(e + 12, 0); // unmasked
    }
    devices::enable_msix(dev, &m);
    Ok(Some(vector0))
}

/// `kill_db`: kvdb commits on the block service and init destroys its
/// address space at `kills` random instants (2 to 81 timer ticks after it
/// starts: while it recovers, commits or waits for the driver); each time
/// its pages come back to init, its links to the rings and the info page
/// are removed, and a fresh kvdb in the same space must recover every
/// commit the killed one acknowledged (`kvdb`'s `killed.rs`). Returns what
/// came back and what was lost over all kills.
pub fn kill_loop(kills: u32, nonce: u64) -> Result<spawn::Reclaimed, String> {
    let svc = BlockService::start(NVME_WINDOW_MIB, KVDB_REGION_PAGES)?;
    let words = [SHARED_VA, svc.bytes(), kinfo::word(ki::W_TSC_PER_US), nonce];
    let opts =
        |args: &'static str| Options { args, words: &words, heap_pages: KVDB_HEAP_PAGES, spare_pages: 0, paused: true };
    let (frames_before, _) = crate::frames::stats();
    let mut rng = nonce | 1;
    let mut total = spawn::Reclaimed::default();
    let mut dead: Option<Child> = None;
    let mut acked = 0u64;
    for k in 0..=kills {
        let args = match k {
            0 => alloc::string::String::from("nvme killload new 0"),
            _ if k == kills => format!("nvme killload {acked} 20"),
            _ => format!("nvme killload {acked} 0"),
        };
        let o = Options { args: &args, ..opts("") };
        let c = match &dead {
            None => spawn::spawn_destroyable("kvdb", &o)?,
            Some(d) => spawn::respawn(d, "kvdb", &o)?,
        };
        share_info_page(&c)?;
        svc.link(&c)?;
        if k == kills {
            // The last one recovers, commits 20 more and exits; then its
            // pages come back too.
            run_kvdb(&c, &format!("kvdb after {kills} kills"))?;
            let r = spawn::destroy(&c, &[(SHARED_VA, 1), (SCRATCH_VA, 0)])?;
            total.pages += r.pages;
            total.lost += r.lost;
            total.unshared += r.unshared;
            break;
        }
        sched::start(c.slot);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let ticks = 2 + rng % 80;
        let until = kinfo::word(ki::W_TICKS) + ticks;
        while kinfo::word(ki::W_TICKS) < until {
            sched::sched_yield();
            let st = sched::slot(c.slot).state.load(SeqCst);
            if st != sched::RUNNABLE {
                let code = sched::slot(c.slot).code.load(SeqCst);
                return Err(format!(
                    "kvdb {k} ended ({}, code {code}: {}) before it was killed",
                    sched::state_name(st),
                    meaning(code)
                ));
            }
        }
        let r = spawn::destroy(&c, &[(SHARED_VA, 1), (SCRATCH_VA, 0)])?;
        // A kvdb killed before it recovered reported nothing: what was
        // acknowledged before it still stands.
        acked = acked.max(mem::read(spawn::mailbox(&c) + 8));
        total.pages += r.pages;
        total.lost += r.lost;
        total.unshared += r.unshared;
        dead = Some(c);
    }
    svc.stop()?;
    let (frames_after, _) = crate::frames::stats();
    println!(
        "init: kill_db: {kills} kills; {} pages came back to init, {} lost, {} shares removed; frames handed out {} -> {}",
        total.pages, total.lost, total.unshared, frames_before, frames_after
    );
    // What stays out per incarnation: the pages init shared (args, console,
    // mailbox: lent, so never reused as tables) and no more.
    let kept = frames_after.saturating_sub(frames_before);
    if kept > 4 * (kills as u64 + 1) + 64 {
        return Err(format!("{kept} frames did not come back after {kills} kills"));
    }
    Ok(total)
}

/// Share the kernel info page read-only at the child's `SCRATCH_VA` (for
/// system-wide crossing counts).
pub(crate) fn share_info_page(c: &Child) -> Outcome {
    spawn::ensure_tables(c.at(SCRATCH_VA)).map_err(|e| format!("tables for the info page: {e}"))?;
    sys::map(exo_abi::KINFO_VA, 0, 0, c.at(SCRATCH_VA), Rights::NONE)
        .map_err(|e| format!("sharing the kernel info page read-only: {}", e.name()))
}

/// kvdb `create` or `check` on the database's NVDIMM range, with the
/// workload derived from `nonce`.
pub fn on_pmem(check: bool, nonce: u64) -> Outcome {
    let total = crate::pmem::total();
    println!(
        "init: kvdb pmem on NVDIMM bytes {PMEM_OFFSET:#x}..{:#x} of {} MiB (nonce {nonce:#x})",
        PMEM_OFFSET + PMEM_BYTES,
        total >> 20
    );
    // kvdb create ends without closing the database: boot 2 must recover
    // it from the log after the reboot.
    run_pmem(if check { "check" } else { "create" }, PMEM_BYTES, nonce, 0)
}

/// Run `kvdb pmem <phase>` on the first `bytes` of the database's NVDIMM
/// range and require exit code `want`; the pages come back to init after.
pub fn run_pmem(phase: &str, bytes: u64, nonce: u64, want: u64) -> Outcome {
    run_pmem_at("pmem", PMEM_OFFSET, phase, bytes, nonce, want)
}

/// Run `kvdb <medium> <phase>` (`pmem`, or `file-pmem`: the database as a
/// libfs file) on `bytes` of the NVDIMM from `offset` of init's span and
/// require exit code `want`; the pages come back to init after.
pub fn run_pmem_at(medium: &str, offset: u64, phase: &str, bytes: u64, nonce: u64, want: u64) -> Outcome {
    let child_va = exo_abi::CHILD_PMEM_VA;
    let kvdb = spawn_kvdb(&format!("{medium} {phase}"), child_va, bytes, nonce)?;
    crate::pmem::grant(&kvdb, child_va, offset, bytes)?;
    let what = format!("kvdb {medium} {phase} on {} KiB", bytes >> 10);
    let outcome = if want == 0 { run_kvdb(&kvdb, &what) } else { expect_code(&kvdb, &what, want) };
    // Exited (or dead): its pages go back to init either way.
    let back = crate::pmem::reclaim(&kvdb, child_va, offset, bytes);
    outcome?;
    back
}

/// `eval --recovery` (eval/RECOVERY.md): `kvdb <medium> recover <keys>
/// <tail>` times the open of the database the host built on the first
/// `mib` MiB of the eval machine's own medium — the NVMe namespace from
/// MiB 0 through `nvmed serve` (`nvme`), or the NVDIMM from byte 0 of
/// init's span (`pmem`). Those media are the recovery machine's alone
/// (`xtask`'s `machine.rs`), never the standard machine's images.
pub fn recover(medium: &str, keys: u64, tail: u64, mib: u64, nonce: u64) -> Outcome {
    let phase = format!("recover {keys} {tail}");
    match medium {
        "nvme" => on_block_service("nvme", (0, mib), &phase, nonce).map(|_| ()),
        "pmem" => {
            let total = crate::pmem::total();
            println!("init: kvdb pmem {phase} on NVDIMM MiB 0..{mib} of {} MiB", total >> 20);
            run_pmem_at("pmem", 0, &phase, mib << 20, nonce, 0)
        }
        other => Err(format!("recover: medium {other:?}, expected nvme or pmem")),
    }
}

/// Run `c` and require exit code `want`.
pub fn expect_code(c: &Child, what: &str, want: u64) -> Outcome {
    sched::start(c.slot);
    let code = crate::spawn::finish(c, what)?;
    if code != want {
        return Err(format!("{what} exited with {code} ({}), expected {want} ({})", meaning(code), meaning(want)));
    }
    println!("init: {what}: refused by name ({})", meaning(code));
    Ok(())
}

/// kvdb `create` or `check` on its own NVMe virtual function, with the
/// workload derived from `nonce`.
pub fn on_vf(check: bool, nonce: u64) -> Outcome {
    let phase = if check { "check" } else { "create" };
    let bar_size = on_vf_phase(phase, "", nonce)?;
    if !check {
        return Ok(());
    }
    // Named errors before any device is touched (the VF's BAR went with
    // the first kvdb: one driver per device per boot).
    let (first, len) = VF_WINDOW_MIB;
    let tsc = kinfo::word(ki::W_TSC_PER_US);
    let no_handle = [devices::DRIVER_BAR_VA, bar_size, tsc, nonce];
    expect_code(&spawn_kvdb_with("nvme-vf check", &no_handle, 0)?, "kvdb nvme-vf check without a window", 7)?;
    expect_code(
        &spawn_kvdb_with(&format!("nvme-vf check {first} {len}"), &no_handle, 0)?,
        "kvdb nvme-vf check without a device handle",
        2,
    )
}

/// kvdb `nvme-vf <phase> <window> <rest>` on VF 1, which the PF's driver
/// brings online first (e.g. `pfload` with `rest` = `sync 300`: the
/// power-fail workload on the own-VF path); returns the size of the VF's
/// BAR.
pub fn on_vf_phase(phase: &str, rest: &str, nonce: u64) -> Result<u64, String> {
    let pf = devices::nvme_sriov_pf()?;
    let vf = crate::sriov::vf_of(&pf, 1)?;
    let faults0 = (kinfo::word(ki::W_DMA_FAULTS), devices::device_dma_faults(vf.index));
    let pf_driver = crate::sriov::online_vfs(&pf, 1)?;
    crate::sriov::enable_vf(&vf)?;
    let (first, len) = VF_WINDOW_MIB;
    println!("init: kvdb nvme-vf {phase} (nonce {nonce:#x}) drives VF 1 (device {} at {:04x}) itself, on NVMe MiB {first}..{}", vf.index, vf.bdf, first + len);
    let bar_size = vf.bars[0].1;
    let words = [devices::DRIVER_BAR_VA, bar_size, kinfo::word(ki::W_TSC_PER_US), nonce, devices::DRIVER_HANDLE_VA];
    let kvdb = spawn_kvdb_with(&format!("nvme-vf {phase} {first} {len} {rest}"), &words, VF_DMA_PAGES)?;
    devices::grant_device(&kvdb, &vf, 0)?;
    let outcome = run_kvdb(&kvdb, &format!("kvdb nvme-vf {phase}"));
    // The PF's driver checks the PF and that VF 1 is still online either way.
    let pf_outcome = crate::sriov::vfs_done(&pf_driver);
    outcome?;
    pf_outcome?;
    let faults = (kinfo::word(ki::W_DMA_FAULTS) - faults0.0, devices::device_dma_faults(vf.index) - faults0.1);
    if faults != (0, 0) {
        return Err(format!("{} DMA faults ({} of VF 1) while kvdb drove VF 1", faults.0, faults.1));
    }
    println!("init: kvdb drove VF 1 through its own I/O page table: no DMA faults");
    Ok(bar_size)
}

/// The words of kvdb's mailbox page (child → parent) in its upgrade
/// commit loop (`kvdb <medium> upgload`): the one definition, read by the
/// test root's `kernel_upgrade` and written by kvdb's `upgload.rs`.
pub mod upgrade_mailbox {
    /// The last acknowledged commit (the same word as kvdb's other loops).
    pub const LAST_ACK: u64 = 8;
    /// The commit being made (started − acknowledged = in flight).
    pub const STARTED: u64 = 16;
    /// Upgrades kvdb has seen in the kernel info page.
    pub const UPGRADES_SEEN: u64 = 24;
    /// Largest TSC gap between two acknowledged commits with an upgrade
    /// between them, and without one.
    pub const GAP_ACROSS: u64 = 32;
    pub const GAP_OTHER: u64 = 40;
    /// TSC ticks from the old kernel's jump to kvdb first seeing the new
    /// kernel's upgrade count.
    pub const SEEN_AFTER_JUMP: u64 = 48;
}

/// The words of kvdb's mailbox page in its driver-death commit loop
/// (`kvdb nvme drvload`, kvdb's `driverdied.rs`): the one definition, read
/// by init's `kill_driver` (`drvrestart`) and written by kvdb.
pub mod drvload_mailbox {
    /// The last acknowledged commit (the same word as kvdb's other loops).
    pub const LAST_ACK: u64 = 8;
    /// `DriverGone` errors kvdb has seen.
    pub const GONE_SEEN: u64 = 40;
    /// The driver epoch + 1 kvdb last recovered under (0 until it has
    /// created the database).
    pub const RECOVERED_EPOCH: u64 = 48;
    /// Requests kvdb had in flight when it learnt of the last death.
    pub const LOST_IN_FLIGHT: u64 = 56;
}
