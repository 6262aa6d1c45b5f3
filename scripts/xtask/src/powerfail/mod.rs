//! The power-fail pass (`cargo xtask powerfail`, and a bounded pass in
//! `cargo xtask test`): the database commits on the exokernel while QEMU's
//! `blklogwrites` records every write and flush reaching the NVMe medium;
//! then, for each chosen cut point, the medium is rebuilt as a power cut
//! there would have left it ([`replay`]), booted, recovered by kvdb, and
//! what it recovered is judged against what kvdb had acknowledged before
//! the cut ([`replay::judge`]).
//!
//! The load and every check run through the whole stack, by one of three
//! paths ([`Path`]): kvdb → blockq rings → `nvmed serve` → the emulated
//! NVMe controller (its volatile write cache is what the random survivors
//! model); kvdb driving its own SR-IOV VF; or libfs (fsapp, its pager and
//! msync) on the block service. All three print the same acknowledgements
//! (`EXO-PF durable seq=S written=B`), so one oracle judges them.

pub mod log;
pub mod replay;

use crate::build::Artifacts;
use crate::machine::{self, Accel, Hardware, Machine};
use crate::outcome::Expect;
use crate::runner::{self, RunOptions};
use crate::workspace::Workspace;
use anyhow::{bail, Context, Result};
use replay::{Acks, Recovered};
use std::ops::Range;
use std::time::{Duration, Instant};

/// The path from the workload to the emulated NVMe medium.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// kvdb → blockq rings → `nvmed serve` → the controller.
    Service,
    /// kvdb driving SR-IOV VF 1 itself (the NVMe driver linked in); the
    /// VF's namespace is the subsystem's shared namespace 1, whose drive
    /// is the one behind `blklogwrites` (`-device nvme-ns,drive=nvm,...`).
    OwnVf,
    /// fsapp: libfs (its pager and msync included) on the block service.
    Libfs,
}

/// One configuration of the pass: the path, the commit mode (`fs` for
/// libfs's fsync/msync) and the NVMe block size.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub path: Path,
    pub durability: &'static str,
    pub block: u32,
    /// Commits (libfs: operations, each ending in fsync or msync).
    pub commits: u64,
}

const MIB: u64 = 1 << 20;

impl Mode {
    pub fn name(&self) -> String {
        match self.path {
            Path::Service => format!("{} commits, {} B blocks", self.durability, self.block),
            Path::OwnVf => format!("own-VF {} commits, {} B blocks", self.durability, self.block),
            Path::Libfs => format!("libfs fsync/msync, {} B blocks", self.block),
        }
    }

    /// Names the mode's directories and logs.
    pub fn tag(&self) -> String {
        match self.path {
            Path::Service => format!("powerfail-{}-{}", self.durability, self.block),
            Path::OwnVf => format!("powerfail-vf-{}-{}", self.durability, self.block),
            Path::Libfs => format!("powerfail-fs-{}", self.block),
        }
    }

    /// The bytes of the namespace the workload owns (init's windows: kvdb's
    /// `NVME_WINDOW_MIB` and `VF_WINDOW_MIB` in `initlib::kvdb`, libfs's in
    /// testinit's `fs.rs`). Only writes there count as the workload's: on
    /// the SR-IOV machine the PF's driver writes its own check area too.
    pub fn window(&self) -> Range<u64> {
        let (first, len) = match self.path {
            Path::Service => (192, 64),
            Path::OwnVf => (160, 32),
            Path::Libfs => (256, 128),
        };
        first * MIB..(first + len) * MIB
    }

    /// The test root's command-line words for the load boot and for the
    /// check boots.
    pub fn load_args(&self) -> String {
        format!("test=powerfail_load pf={},{}{}", self.durability, self.commits, self.path_arg())
    }

    pub fn check_args(&self) -> String {
        format!("test=powerfail_check{}", self.path_arg())
    }

    fn path_arg(&self) -> &'static str {
        match self.path {
            Path::Service => "",
            Path::OwnVf => " pfpath=vf",
            Path::Libfs => " pfpath=fs",
        }
    }
}

/// The modes, in the order the pass runs them.
pub const MODES: [Mode; 7] = [
    Mode { path: Path::Service, durability: "sync", block: 512, commits: 300 },
    Mode { path: Path::Service, durability: "group", block: 512, commits: 300 },
    Mode { path: Path::Service, durability: "async", block: 512, commits: 300 },
    Mode { path: Path::Service, durability: "sync", block: 4096, commits: 300 },
    Mode { path: Path::OwnVf, durability: "sync", block: 512, commits: 300 },
    Mode { path: Path::OwnVf, durability: "group", block: 512, commits: 300 },
    Mode { path: Path::Libfs, durability: "fs", block: 512, commits: 200 },
];

/// What one mode's pass found.
pub struct ModeResult {
    pub images: usize,
    pub failures: Vec<String>,
    pub acked: u64,
    /// Acknowledged commits the media had to keep, summed over the media
    /// (each one checked by a recovery).
    pub checked: u64,
    pub log_ops: usize,
    pub elapsed: Duration,
}

/// Run `images` cuts of one mode; failures are collected, not returned as
/// errors (an error is a pass that could not run at all).
pub fn run_mode(
    ws: &Workspace,
    arts: &Artifacts,
    accel: Accel,
    mode: Mode,
    images: usize,
    seed: u64,
) -> Result<ModeResult> {
    let start = Instant::now();
    let tag = mode.tag();
    let dir = ws.images_dir().join(&tag);
    let _ = std::fs::remove_dir_all(&dir);
    machine::ensure_images(&dir)?;
    let medium = dir.join(machine::NVME_IMAGE.file);
    let log_path = dir.join("nvme.writes");
    std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let nonce = seed | 1;
    let drive = format!(
        "driver=blklogwrites,file.driver=file,file.filename={},log.driver=file,log.filename={},log-sector-size={}",
        machine::qemu_escape(&medium),
        machine::qemu_escape(&log_path),
        mode.block
    );
    let append = format!("{} nonce={nonce:x}", mode.load_args());
    let load = boot(ws, arts, accel, &mode, &dir, Some(drive), &append, "powerfail_load", &format!("{tag}-load"))?;
    let acks = Acks::parse(&load);
    if acks.created.is_none() || acks.durable.is_empty() {
        bail!("{tag}: the load printed no acknowledgements (see its serial log)");
    }
    let log_bytes = std::fs::read(&log_path).with_context(|| format!("reading {}", log_path.display()))?;
    let wlog = log::WriteLog::parse(&log_bytes, machine::NVME_IMAGE.bytes)?;
    if wlog.sector != mode.block as u64 {
        bail!("{tag}: the write log's sector is {} bytes, the medium's block {}", wlog.sector, mode.block);
    }
    let placed = replay::Placed::new(&acks, &wlog, mode.window())
        .with_context(|| format!("{tag}: placing the acknowledgements"))?;
    let window = mode.window();
    let others =
        wlog.ops.iter().filter(|o| matches!(o, log::Op::Write { offset, .. } if !window.contains(offset))).count();
    if others > 0 {
        println!("  {tag}: {others} logged writes outside the workload's window are another writer's (not counted)");
    }
    println!(
        "  {tag}: {} commits, {} acknowledgements ({} covered by a logged flush), the database durable at operation {:?}, {} operations logged ({} flushes, {} after the last superblock update)",
        acks.commits,
        acks.durable.len(),
        placed.durable.len(),
        placed.created,
        wlog.ops.len(),
        wlog.flushes_before(wlog.ops.len()),
        wlog.ops.len() as u64 - wlog.counted.min(wlog.ops.len() as u64)
    );
    let mut rng = testrng::Rng::new(seed);
    let cuts = replay::plan(&wlog, placed.created.unwrap_or(0), images, mode.block as u64, &mut rng);
    let check_dir = dir.join("check");
    machine::ensure_images(&check_dir)?;
    let image = check_dir.join(machine::NVME_IMAGE.file);
    let check = |cut: &replay::Cut, k: &str| -> Result<Recovered, String> {
        replay::build_image(&wlog, &log_bytes, cut, mode.block as u64, machine::NVME_IMAGE.bytes, &image)
            .map_err(|e| format!("building the medium: {e:#}"))?;
        let append = format!("{} nonce={nonce:x}", mode.check_args());
        match boot(ws, arts, accel, &mode, &check_dir, None, &append, "powerfail_check", &format!("{tag}-{k}")) {
            Err(e) => Err(format!("the check boot failed: {e:#}")),
            Ok(serial) => Recovered::parse(&serial).ok_or_else(|| "kvdb reported no recovery line".to_string()),
        }
    };
    let mut failures = Vec::new();
    // The control: a medium that lost the writes of the last acknowledged
    // commit although its flush completed (a drive breaking its contract)
    // must be judged a loss, or the pass could not fail.
    if let Some(&(seq, at)) = placed.durable.last() {
        let before = wlog.ops[..at].iter().rposition(|o| *o == log::Op::Flush).map_or(0, |i| i + 1);
        match check(&replay::Cut::clean(before), "control") {
            Ok(got) if replay::judge(&placed, wlog.ops.len(), &got).is_err() => {
                println!("  {tag}: control (commit {seq}'s flushed writes dropped) recovered {got:?}: judged lost, as it must be")
            }
            other => {
                failures.push(format!("control: dropping commit {seq}'s flushed writes was not caught: {other:?}"))
            }
        }
    }
    let mut seen = (u64::MAX, 0u64, 0usize);
    let mut checked = 0;
    for (k, cut) in cuts.iter().enumerate() {
        let what = cut.describe(&wlog);
        checked += placed.required(cut.n).1;
        let verdict = check(cut, &k.to_string()).and_then(|got| {
            match got {
                Recovered::Seq(m) => seen = (seen.0.min(m), seen.1.max(m), seen.2),
                Recovered::Nothing(_) => seen.2 += 1,
            }
            replay::judge(&placed, cut.n, &got)
        });
        if let Err(why) = verdict {
            let kept = dir.join(format!("failed-{k}.img"));
            let _ = std::fs::rename(&image, &kept);
            println!("  {tag} image {k}: LOST: {why} ({what}; medium kept as {})", kept.display());
            failures.push(format!("image {k}: {why} ({what})"));
        }
    }
    println!(
        "  {tag}: recovered commits {}..={} ({} media before the database existed)",
        if seen.0 == u64::MAX { 0 } else { seen.0 },
        seen.1,
        seen.2
    );
    Ok(ModeResult {
        images: cuts.len(),
        failures,
        acked: acks.durable.iter().map(|(s, _)| *s).max().unwrap_or(0),
        checked,
        log_ops: wlog.ops.len(),
        elapsed: start.elapsed(),
    })
}

/// Boot the test image on `images_dir` into `scenario`; its serial output
/// if it passed.
#[allow(clippy::too_many_arguments)]
fn boot(
    ws: &Workspace,
    arts: &Artifacts,
    accel: Accel,
    mode: &Mode,
    images_dir: &std::path::Path,
    nvme_drive: Option<String>,
    append: &str,
    scenario: &str,
    name: &str,
) -> Result<String> {
    let hardware = Hardware { nvme_block_bytes: (mode.block != 512).then_some(mode.block), ..Hardware::STANDARD };
    let mut m = Machine::new(images_dir)
        .nvme_sriov(mode.path == Path::OwnVf)
        .accel(accel)
        .hardware(hardware)
        .kernel(&arts.kernel)
        .initrd(&arts.boot_image)
        .append(format!("{append} ram_mib={}", hardware.ram_mib));
    if let Some(d) = nvme_drive {
        m = m.nvme_drive(d);
    }
    let opts = RunOptions {
        name: name.to_string(),
        log_dir: ws.qemu_log_dir().join("powerfail"),
        timeout: Some(Duration::from_secs(240)),
        echo: false,
        interactive: false,
    };
    let r = runner::run(m.command()?, &opts, Expect::PassLine(scenario))?;
    if !r.outcome.passed() {
        bail!("{name}: {:?}; last lines: {}", r.outcome, r.tail(6).join(" | "));
    }
    Ok(r.serial)
}

/// Mode `i`'s seed: every mode its own cut points.
pub fn mode_seed(seed: u64, i: usize) -> u64 {
    seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A seed from the clock (odd, never 0).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
}

/// The indices of the modes whose tag contains one of `filters` (all if
/// none), or an error naming a filter no mode matches.
pub fn select(filters: &[String]) -> Result<Vec<usize>> {
    if let Some(f) = filters.iter().find(|f| !MODES.iter().any(|m| m.tag().contains(f.as_str()))) {
        let tags: Vec<String> = MODES.iter().map(|m| m.tag()).collect();
        bail!("--modes {f:?} matches no mode (modes: {})", tags.join(", "));
    }
    Ok((0..MODES.len())
        .filter(|&i| filters.is_empty() || filters.iter().any(|f| MODES[i].tag().contains(f.as_str())))
        .collect())
}

/// `cargo xtask powerfail`: every selected mode, `images` media in all;
/// returns the number of media whose recovery lost an acknowledged commit
/// or failed. Mode `i` keeps its seed ([`mode_seed`]) whatever the filter.
pub fn main(images: usize, seed: u64, filters: &[String]) -> Result<usize> {
    let chosen = select(filters)?;
    crate::setup::ensure_all()?;
    let ws = Workspace::load()?;
    let arts = crate::build::build_all(&ws)?;
    println!("power-fail pass: {images} media over {} modes, seed {seed:#x}", chosen.len());
    let (mut failed, mut acked, mut media) = (0, 0, 0);
    for (&i, n) in chosen.iter().zip(split(images, chosen.len())) {
        let mode = &MODES[i];
        let r = run_mode(&ws, &arts, Accel::Tcg, *mode, n, mode_seed(seed, i))?;
        acked += r.checked;
        media += r.images;
        println!(
            "powerfail {}: {} media, {} lost or failed, up to commit {} acknowledged, {} acknowledged commits checked, {} logged operations, {:.0} s",
            mode.name(),
            r.images,
            r.failures.len(),
            r.acked,
            r.checked,
            r.log_ops,
            r.elapsed.as_secs_f64()
        );
        failed += r.failures.len();
    }
    println!("power-fail pass: {media} media, {acked} acknowledged commits checked; {failed} media lost an acknowledged commit or failed to recover");
    Ok(failed)
}

/// Split `images` over the modes (at least one each).
pub fn split(images: usize, modes: usize) -> Vec<usize> {
    (0..modes).map(|i| (images / modes + usize::from(i < images % modes)).max(1)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn images_are_split_over_the_modes() {
        assert_eq!(super::split(100, 4), vec![25, 25, 25, 25]);
        assert_eq!(super::split(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(super::split(2, 4), vec![1, 1, 1, 1]);
    }

    #[test]
    fn modes_are_chosen_by_tag() {
        let all: Vec<usize> = (0..super::MODES.len()).collect();
        assert_eq!(super::select(&[]).unwrap(), all);
        let vf = super::select(&["vf".into()]).unwrap();
        assert_eq!(vf.len(), 2);
        assert!(vf.iter().all(|&i| super::MODES[i].path == super::Path::OwnVf));
        assert_eq!(super::select(&["vf".into(), "fs".into()]).unwrap().len(), 3);
        assert!(super::select(&["nope".into()]).unwrap_err().to_string().contains("matches no mode"));
    }

    #[test]
    fn modes_have_their_own_directories_windows_and_paths() {
        use super::{Path, MODES};
        let tags: std::collections::BTreeSet<String> = MODES.iter().map(|m| m.tag()).collect();
        assert_eq!(tags.len(), MODES.len(), "two modes would share a directory");
        for p in [Path::Service, Path::OwnVf, Path::Libfs] {
            assert!(MODES.iter().any(|m| m.path == p), "{p:?} is not in the pass");
        }
        let image = crate::machine::NVME_IMAGE.bytes;
        for m in &MODES {
            let w = m.window();
            assert!(w.start < w.end && w.end <= image, "{}: {w:?}", m.tag());
            let pass = |args: &str| args.split_whitespace().find_map(|a| a.strip_prefix("pfpath=")).map(str::to_string);
            assert_eq!(pass(&m.load_args()), pass(&m.check_args()), "{}: load and check on different paths", m.tag());
            assert!(m.load_args().contains(&format!("pf={},{}", m.durability, m.commits)));
        }
        // The disk plan: kvdb's windows below 256 MiB, libfs's 256..384 MiB.
        let fs = MODES.iter().find(|m| m.path == Path::Libfs).unwrap();
        assert_eq!(fs.window(), (256 << 20)..(384 << 20));
        assert_eq!(fs.check_args(), "test=powerfail_check pfpath=fs");
        let vf = MODES.iter().find(|m| m.path == Path::OwnVf).unwrap();
        assert_eq!(vf.load_args(), "test=powerfail_load pf=sync,300 pfpath=vf");
        assert!(vf.window().end <= (192 << 20));
        assert_eq!(MODES[0].load_args(), "test=powerfail_load pf=sync,300");
    }
}
