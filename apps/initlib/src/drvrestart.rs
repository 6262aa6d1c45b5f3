//! A block driver init can kill and restart (QEMU test `kill_driver`):
//! `nvmed serve` spawned destroyable, with init granting its DMA, so that
//! init can take everything back while clients wait on it.
//!
//! The restart protocol, in order (each step's reason in its comment):
//! 1. halt the driver: it never runs again, so nothing below races with it;
//! 2. `blockq::mark_driver_gone` on the region: its magic is cleared and
//!    its driver epoch bumped, so every client's next poll or submit fails
//!    with `DriverGone` (bounded: one poll) and no client attaches to the
//!    dead driver's format;
//! 3. `devices::take_back_driver`: BAR back to init, the driver's device
//!    handle removed, bus mastering off, the controller reset (CC.EN=0,
//!    CSTS.RDY=0), then every I/O address init granted for the driver's
//!    DMA pages revoked — the controller has stopped before the pages lose
//!    their I/O mappings, and the mappings are gone before the pages are
//!    reused;
//! 4. the region's DMA grant revoked; `spawn::destroy` takes the driver's
//!    pages back (its DMA pages, LENT forever, to the lent pool);
//! 5. a fresh `nvmed serve` in the same space, on the same (lent) DMA
//!    frames, granted the device and the region again; it resets the
//!    controller once more as it brings it up, and formats the region
//!    (magic last), which is when clients reattach.

use crate::devices::{self, Device};
use crate::kvdb::{self as kv, KVDB_HEAP_PAGES, KVDB_REGION_PAGES, NVME_DMA_PAGES, NVME_WINDOW_MIB};
use crate::spawn::{self, Child, Options};
use crate::{frames, regions, sched};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{kinfo as ki, Rights, PAGE_SIZE};
use exo_rt::blockq::SharedWindow;
use exo_rt::layout::{SCRATCH_VA, SHARED_VA};
use exo_rt::mmio::Window;
use exo_rt::{kinfo, mem, println};

use crate::kvdb::drvload_mailbox::{GONE_SEEN, LAST_ACK, LOST_IN_FLIGHT, RECOVERED_EPOCH};

type Outcome = Result<(), String>;

/// Ticks (10 ms) a driver may take to serve, or a client to recover and
/// commit once more, before the test calls it a hang.
const BOUND_TICKS: u64 = 3000;

/// Frames the service keeps while it exists: the region's pages.
pub const REGION_FRAMES: u64 = KVDB_REGION_PAGES;

/// What one driver death and restart cost and returned.
#[derive(Clone, Copy, Debug, Default)]
pub struct Restart {
    /// Requests clients had submitted that the dead driver never answered.
    pub unanswered: u32,
    pub reclaimed: spawn::Reclaimed,
    pub taken: devices::TakenBack,
    /// From the halt to the new driver serving: TSC ticks (guest
    /// instructions under `-icount`) and system calls (all processes).
    pub tsc: u64,
    pub syscalls: u64,
}

/// The block service with a driver init can kill and restart.
pub struct RestartableBlockService {
    dev: Device,
    region: u64,
    window_word: u64,
    driver: Child,
    faults_before: u64,
}

impl RestartableBlockService {
    pub fn start(window_mib: (u64, u64)) -> Result<RestartableBlockService, String> {
        let dev = devices::nvme()?;
        devices::enable(&dev)?;
        let region = regions::make_region(KVDB_REGION_PAGES)?;
        let faults_before = kinfo::word(ki::W_DMA_FAULTS);
        let window_word = window_mib.0 | window_mib.1 << 32;
        let driver = launch(&dev, region, window_word, None)?;
        Ok(RestartableBlockService { dev, region, window_word, driver, faults_before })
    }

    /// The region's size (a client's args word 4).
    pub fn bytes(&self) -> u64 {
        KVDB_REGION_PAGES * PAGE_SIZE
    }

    /// Link the rings into a client at its `SHARED_VA`.
    pub fn link(&self, client: &Child) -> Outcome {
        regions::link(client, self.region, Rights::WRITE)
    }

    /// The driver epoch clients attach under now.
    pub fn epoch(&self) -> u32 {
        blockq::driver_epoch(&self.rings())
    }

    fn rings(&self) -> SharedWindow {
        SharedWindow(Window::new(self.region, self.bytes()).expect("init's own region"))
    }

    /// Steps 1-4 of the protocol (module doc): the driver is gone and
    /// everything it held is back.
    fn take_down(&mut self) -> Result<Restart, String> {
        spawn::halt(&self.driver);
        let rings = self.rings();
        let unanswered = blockq::unanswered(&rings);
        blockq::mark_driver_gone(&rings);
        let taken = devices::take_back_driver(&self.driver, &self.dev, NVME_DMA_PAGES)?;
        devices::revoke_region_dma(&self.dev, KVDB_REGION_PAGES)?;
        let reclaimed = spawn::destroy(&self.driver, &[(SHARED_VA, 1)])?;
        Ok(Restart { unanswered, reclaimed, taken, ..Restart::default() })
    }

    /// Kill the driver wherever it is, take everything back, and start a
    /// fresh one in its space, which serves before this returns.
    pub fn kill_and_restart(&mut self) -> Result<Restart, String> {
        let (t0, calls0) = (exo_rt::time::rdtsc(), kinfo::word(ki::W_SYSCALLS));
        let mut r = self.take_down()?;
        self.driver = launch(&self.dev, self.region, self.window_word, Some(&self.driver))?;
        r.tsc = exo_rt::time::rdtsc() - t0;
        r.syscalls = kinfo::word(ki::W_SYSCALLS) - calls0;
        Ok(r)
    }

    /// Stop the driver (it exits once nothing is in flight), take
    /// everything back as after a kill, and require no DMA fault.
    pub fn stop(mut self) -> Result<Restart, String> {
        mem::write(spawn::mailbox(&self.driver), 1);
        match spawn::finish(&self.driver, "nvmed serve")? {
            0 => {}
            code => return Err(format!("nvmed serve exited with {code}")),
        }
        let r = self.take_down()?;
        let faults = kinfo::word(ki::W_DMA_FAULTS) - self.faults_before;
        if faults != 0 {
            return Err(format!("{faults} DMA faults while the restartable block service ran"));
        }
        Ok(r)
    }
}

/// Start `nvmed serve` (destroyable; in `dead`'s space if given), link the
/// region, grant the device DMA to it, and wait until it serves.
fn launch(dev: &Device, region: u64, window_word: u64, dead: Option<&Child>) -> Result<Child, String> {
    let bytes = KVDB_REGION_PAGES * PAGE_SIZE;
    let driver = devices::start_destroyable_driver("nvmed", "serve", dev, NVME_DMA_PAGES, [bytes, window_word], dead)?;
    regions::link(&driver, region, Rights::WRITE)?;
    devices::grant_region_dma(dev, region, KVDB_REGION_PAGES)?;
    sched::start(driver.slot);
    let until = kinfo::word(ki::W_TICKS) + BOUND_TICKS;
    while mem::read(spawn::mailbox(&driver) + 8) == 0 {
        sched::sched_yield();
        if sched::slot(driver.slot).state.load(SeqCst) != sched::RUNNABLE {
            return Err("nvmed serve ended before it served".into());
        }
        if kinfo::word(ki::W_TICKS) > until {
            return Err(format!("nvmed serve did not serve within {BOUND_TICKS} ticks"));
        }
    }
    Ok(driver)
}

/// Yield until `done` or `BOUND_TICKS` pass (then `Err(what)`); the
/// client must stay runnable.
fn wait_for(client: &Child, what: &str, done: impl Fn() -> bool) -> Outcome {
    let until = kinfo::word(ki::W_TICKS) + BOUND_TICKS;
    while !done() {
        let st = sched::slot(client.slot).state.load(SeqCst);
        if st != sched::RUNNABLE {
            let code = sched::slot(client.slot).code.load(SeqCst);
            return Err(format!(
                "kvdb ended ({}, code {code}: {}) while {what}",
                sched::state_name(st),
                kv::meaning(code)
            ));
        }
        if kinfo::word(ki::W_TICKS) > until {
            return Err(format!("kvdb hung: not done {what} after {BOUND_TICKS} ticks"));
        }
        sched::sched_yield();
    }
    Ok(())
}

/// What [`kill_driver_loop`] measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct KillDriverReport {
    pub kills: u32,
    pub unanswered_total: u64,
    pub kills_with_requests_outstanding: u32,
    pub pages_reclaimed: u64,
    pub device_pages_reclaimed: u64,
    pub lost: u64,
    pub frames_before: u64,
    /// Frames handed out right after the first restart and the last one:
    /// what a restart costs beyond the pages it gives back.
    pub frames_after_first_kill: u64,
    pub frames_after_last_kill: u64,
    pub frames_after: u64,
    pub acked: u64,
}

/// `kill_driver`: kvdb commits (`nvme drvload`) on the restartable block
/// service; `kills` times, at a random instant (1..=30 ticks, testrng
/// seeded with `seed`) after kvdb has recovered from the last death and
/// committed again, init kills `nvmed serve` and restarts it
/// ([`RestartableBlockService::kill_and_restart`]). kvdb must see each
/// death as `DriverGone`, reconnect, recover and find every acknowledged
/// commit (it checks; init checks its acknowledged count never goes
/// back), each within [`BOUND_TICKS`]; at the end every page of both
/// processes comes back and the frames handed out are reported.
pub fn kill_driver_loop(kills: u32, seed: u64, nonce: u64) -> Result<KillDriverReport, String> {
    let (frames_before, _) = frames::stats();
    let mut svc = RestartableBlockService::start(NVME_WINDOW_MIB)?;
    let words = [SHARED_VA, svc.bytes(), kinfo::word(ki::W_TSC_PER_US), nonce];
    let opts =
        Options { args: "nvme drvload", words: &words, heap_pages: KVDB_HEAP_PAGES, spare_pages: 0, paused: true };
    let kvdb = spawn::spawn_destroyable("kvdb", &opts)?;
    kv::share_info_page(&kvdb)?;
    svc.link(&kvdb)?;
    sched::start(kvdb.slot);
    let mb = spawn::mailbox(&kvdb);
    let word = move |w: u64| mem::read(mb + w);
    let mut rng = testrng::Rng::new(seed);
    println!("init: kill_driver: {kills} kills, instants from testrng seed {seed:#x}");
    let mut rep = KillDriverReport { kills, frames_before, ..Default::default() };
    let mut acked_at_kill = 0u64;
    for k in 1..=kills {
        let epoch = u64::from(svc.epoch());
        wait_for(&kvdb, &format!("recovering under driver epoch {epoch} and committing past {acked_at_kill}"), || {
            word(RECOVERED_EPOCH) == epoch + 1 && word(LAST_ACK) > acked_at_kill
        })?;
        let ticks = rng.range(1..=30);
        let until = kinfo::word(ki::W_TICKS) + ticks;
        wait_for(&kvdb, "committing before the kill", || kinfo::word(ki::W_TICKS) >= until)?;
        let acked = word(LAST_ACK);
        let killed_at = kinfo::word(ki::W_TICKS);
        let r = svc.kill_and_restart()?;
        let served_at = kinfo::word(ki::W_TICKS);
        let us = r.tsc / kinfo::word(ki::W_TSC_PER_US).max(1);
        let handed_out = frames::stats().0;
        if k == 1 {
            rep.frames_after_first_kill = handed_out;
        }
        rep.frames_after_last_kill = handed_out;
        println!(
            "init: kill_driver: kill {k} after {ticks} ticks, {acked} commits acknowledged, {} requests unanswered; controller reset in {} polls, {} DMA pages revoked, {} pages back ({} of them DMA pages), {} lost; new driver serving after {} us ({} TSC ticks, {} system calls); frames handed out {handed_out}",
            r.unanswered,
            r.taken.reset_polls,
            r.taken.dma_revoked,
            r.reclaimed.pages,
            r.reclaimed.device_pages,
            r.reclaimed.lost,
            us,
            r.tsc,
            r.syscalls
        );
        rep.unanswered_total += u64::from(r.unanswered);
        rep.kills_with_requests_outstanding += u32::from(r.unanswered > 0);
        rep.pages_reclaimed += r.reclaimed.pages;
        rep.device_pages_reclaimed += r.reclaimed.device_pages;
        rep.lost += r.reclaimed.lost;
        wait_for(&kvdb, &format!("reporting DriverGone for kill {k}"), || word(GONE_SEEN) >= u64::from(k))?;
        println!(
            "init: kill_driver: kvdb reported DriverGone for kill {k} ({} of its requests lost in flight); seen {} ticks after the kill, {} after the new driver served (init yields to it while the new driver starts)",
            word(LOST_IN_FLIGHT),
            kinfo::word(ki::W_TICKS) - killed_at,
            kinfo::word(ki::W_TICKS) - served_at
        );
        acked_at_kill = acked;
    }
    // The last recovery, one more commit, then stop kvdb: its last check.
    let epoch = u64::from(svc.epoch());
    wait_for(&kvdb, "recovering from the last kill", || {
        word(RECOVERED_EPOCH) == epoch + 1 && word(LAST_ACK) > acked_at_kill
    })?;
    mem::write(mb, 1);
    match spawn::finish(&kvdb, "kvdb drvload")? {
        0 => {}
        code => return Err(format!("kvdb drvload exited with {code} ({})", kv::meaning(code))),
    }
    rep.acked = word(LAST_ACK);
    if word(GONE_SEEN) != u64::from(kills) {
        return Err(format!("kvdb saw {} DriverGone errors for {kills} kills", word(GONE_SEEN)));
    }
    let r = spawn::destroy(&kvdb, &[(SHARED_VA, 1), (SCRATCH_VA, 0)])?;
    rep.pages_reclaimed += r.pages;
    rep.lost += r.lost;
    let r = svc.stop()?;
    rep.pages_reclaimed += r.reclaimed.pages;
    rep.device_pages_reclaimed += r.reclaimed.device_pages;
    rep.lost += r.reclaimed.lost;
    rep.frames_after = frames::stats().0;
    Ok(rep)
}
