//! Crash tests in the style of CrashMonkey/ACE.
//!
//! Every workload of one operation followed by fsync over a small tree
//! (create, mkdir, link, unlink, rmdir, rename, write, append, truncate,
//! fsync, fdatasync), and a seeded sample of two-operation workloads, is
//! run on a traced medium and crashed at every persistence point (only
//! what was flushed survives; everything issued survives) and at ≥ 1,000
//! random points per workload (pmem: any subset of unflushed cache lines,
//! torn at 8 bytes — pmem's SimPmem; block: any subset of unflushed
//! 512-byte sectors in any order, so a 4 KiB page write tears at sector
//! boundaries — libdb's SimBlockDevice). After each crash: mount succeeds
//! (which checks the whole metadata state, as fsck does), and the tree is
//! exactly one of the states the workload passed through that were not
//! yet superseded by a completed fsync — so operations are atomic and
//! fsynced state is never lost. Bytes overwritten in place by a
//! not-yet-fsynced write may show the new value.
//!
//! Half of the workloads run right after a remount, so their commit is a
//! full checkpoint; the others append a log chunk.

mod common;

use common::*;
use libfs::{Fs, Geometry, OpenMode, Storage};

#[derive(Clone, Copy, Debug)]
enum Op {
    Create(&'static str),
    Mkdir(&'static str),
    Link(&'static str, &'static str),
    Unlink(&'static str),
    Rmdir(&'static str),
    Rename(&'static str, &'static str),
    Write(&'static str, u64, usize),
    Append(&'static str, usize),
    Truncate(&'static str, u64),
    Fsync(&'static str),
    Fdatasync(&'static str),
}
use Op::*;

const SINGLE: &[Op] = &[
    Create("/N"),
    Create("/D/N"),
    Create("/E/N"),
    Mkdir("/M"),
    Mkdir("/D/M"),
    Link("/A", "/D/L"),
    Link("/D/C", "/N"),
    Unlink("/A"),
    Unlink("/D/C"),
    Unlink("/B"),
    Rmdir("/E"),
    Rename("/A", "/N"),
    Rename("/A", "/B"),
    Rename("/A", "/D/C"),
    Rename("/D/C", "/A"),
    Rename("/D", "/E"),
    Rename("/D", "/M"),
    Rename("/E", "/D/E"),
    Rename("/B", "/D/H"),
    Rename("/D/C", "/E/C"),
    Write("/A", 0, 100),
    Write("/A", 4000, 8000),
    Write("/B", 10_000, 300),
    Write("/D/C", 0, 3000),
    Append("/A", 3000),
    Append("/B", 5000),
    Append("/D/C", 1),
    Truncate("/A", 0),
    Truncate("/A", 100),
    Truncate("/A", 20_000),
    Truncate("/B", 4096),
    Fsync("/A"),
    Fdatasync("/B"),
];

fn setup<S: Storage>(fs: &mut Fs<S>) {
    let pattern = |n: usize, k: usize| -> Vec<u8> { (0..n).map(|i| ((i * 7 + k) % 100) as u8 + 1).collect() };
    for (p, n) in [("/A", 5000), ("/B", 100)] {
        let mut h = fs.open(p, OpenMode::CREATE).unwrap();
        fs.write(&mut h, &pattern(n, p.len())).unwrap();
    }
    fs.mkdir("/D", 0o755).unwrap();
    fs.mkdir("/E", 0o755).unwrap();
    let mut h = fs.open("/D/C", OpenMode::CREATE).unwrap();
    fs.write(&mut h, &pattern(3000, 3)).unwrap();
    fs.link("/B", "/D/H").unwrap();
    fs.sync().unwrap();
}

/// Applies `op` (errors are part of the workload: the tree just does not
/// change). Returns the fill byte of a data write, if any.
fn apply<S: Storage>(fs: &mut Fs<S>, op: Op, k: u8) -> Option<u8> {
    let fill = 0xF0 + k;
    let _ = match op {
        Create(p) => fs.create(p, 0o644).map(|_| ()),
        Mkdir(p) => fs.mkdir(p, 0o755).map(|_| ()),
        Link(a, b) => fs.link(a, b),
        Unlink(p) => fs.unlink(p),
        Rmdir(p) => fs.rmdir(p),
        Rename(a, b) => fs.rename(a, b),
        Write(p, off, n) => fs.open(p, OpenMode::WRITE).and_then(|h| fs.pwrite(&h, off, &vec![fill; n])).map(|_| ()),
        Append(p, n) => fs.open(p, OpenMode::WRITE).and_then(|mut h| fs.append(&mut h, &vec![fill; n])).map(|_| ()),
        Truncate(p, n) => fs.open(p, OpenMode::WRITE).and_then(|h| fs.truncate(&h, n)),
        Fsync(p) => fs.open(p, OpenMode::READ).and_then(|h| fs.fsync(&h)),
        Fdatasync(p) => fs.open(p, OpenMode::READ).and_then(|h| fs.fdatasync(&h)),
    };
    matches!(op, Write(..) | Append(..)).then_some(fill)
}

/// The path an op makes durable with its trailing fsync.
fn fsync_target<S: Storage>(fs: &mut Fs<S>, op: Op) -> libfs::Handle {
    let p = match op {
        Create(p)
        | Mkdir(p)
        | Unlink(p)
        | Rmdir(p)
        | Write(p, ..)
        | Append(p, _)
        | Truncate(p, _)
        | Fsync(p)
        | Fdatasync(p) => p,
        Link(_, b) | Rename(_, b) => b,
    };
    fs.open(p, OpenMode::READ).or_else(|_| fs.open("/", OpenMode::READ)).unwrap()
}

/// What a crash image may show.
struct Expect {
    /// Trees in order; `from[i]`: the first point index at which only
    /// states `i..` are allowed (the fsync completing state `i`).
    states: Vec<Snapshot>,
    from: Vec<usize>,
    fills: Vec<u8>,
}

impl Expect {
    fn accepts(&self, point: usize, got: &Snapshot) -> Result<(), String> {
        let lo = self.from.iter().rposition(|&f| point >= f).unwrap_or(0);
        let mut why = String::new();
        for s in &self.states[lo..] {
            if shape(got) != shape(s) {
                why += &format!("[{}] ", diff(got, s));
                continue;
            }
            let ok = got.iter().all(|(p, n)| {
                let w = &s[p];
                n.data.iter().enumerate().all(|(i, b)| w.data.get(i) == Some(b) || self.fills.contains(b))
            });
            if ok {
                return Ok(());
            }
            why += "[contents differ] ";
        }
        Err(why)
    }
}

/// Runs one workload on `fs` with tracing on; returns the expectation.
fn run_ops<S: Storage>(fs: &mut Fs<S>, ops: &[Op], sync_between: bool, trace_len: impl Fn(&Fs<S>) -> usize) -> Expect {
    let mut e = Expect { states: vec![snapshot(fs)], from: vec![0], fills: vec![] };
    for (k, &op) in ops.iter().enumerate() {
        e.fills.extend(apply(fs, op, k as u8));
        if sync_between || k + 1 == ops.len() {
            let h = fsync_target(fs, op);
            fs.fsync(&h).unwrap();
            e.states.push(snapshot(fs));
            // The last point recorded is the commit barrier.
            e.from.push(trace_len(fs).saturating_sub(1));
        }
    }
    e
}

const PAGES: u64 = 64;
const GEO: Geometry = Geometry { ckpt_pages: Some(2), log_pages: Some(2) };

struct Totals {
    workloads: usize,
    images: usize,
    random: usize,
}

fn check_image<S: Storage>(
    mount: impl Fn(Vec<u8>) -> libfs::Result<Fs<S>>,
    img: Vec<u8>,
    e: &Expect,
    point: usize,
    what: &str,
) {
    let mut fs = mount(img).unwrap_or_else(|err| panic!("{what} point {point}: mount failed: {err}"));
    assert!(fs.check().is_empty(), "{what} point {point}: {:?}", fs.check());
    let got = snapshot(&mut fs);
    if let Err(why) = e.accepts(point, &got) {
        panic!("{what} point {point}: tree matches no allowed state: {why}");
    }
}

fn crash_pmem(ops: &[Op], sync_between: bool, remount: bool, random: usize, t: &mut Totals) {
    let what = format!("pmem {ops:?} sync_between={sync_between} remount={remount}");
    let mut fs = pmem_fs(PAGES, GEO);
    setup(&mut fs);
    if remount {
        fs = Fs::mount(fs.into_storage()).unwrap();
    }
    fs.storage_mut().region_mut().enable_trace();
    let e = run_ops(&mut fs, ops, sync_between, |fs| fs.storage().region().trace_len());
    let trace = fs.storage_mut().region_mut().take_trace().unwrap();
    let mut open = 0;
    trace.for_each_point(|_, p| open += (p.pending_lines() > 0) as usize);
    let per_point = random.div_ceil(open.max(1));
    let mut seed = 0;
    trace.for_each_point(|i, p| {
        check_image(mount_pmem, p.strict(), &e, i, &what);
        check_image(mount_pmem, p.all_survive(), &e, i, &what);
        t.images += 2;
        if p.pending_lines() > 0 {
            for _ in 0..per_point {
                seed += 1;
                check_image(mount_pmem, p.random(common::seed(seed)), &e, i, &what);
                t.images += 1;
                t.random += 1;
            }
        }
    });
    t.workloads += 1;
}

fn crash_block(ops: &[Op], sync_between: bool, remount: bool, random: usize, t: &mut Totals) {
    let what = format!("block {ops:?} sync_between={sync_between} remount={remount}");
    let mut fs = block_fs(PAGES, GEO);
    setup(&mut fs);
    if remount {
        fs = Fs::mount(fs.into_storage()).unwrap();
    }
    fs.storage_mut().device_mut().enable_trace();
    let e = run_ops(&mut fs, ops, sync_between, |fs| fs.storage().device().trace_len());
    let trace = fs.storage_mut().device_mut().take_trace().unwrap();
    let mut open = 0;
    trace.for_each_point(|_, p| open += (p.unflushed_blocks() > 0) as usize);
    let per_point = random.div_ceil(open.max(1));
    let mut seed = 0;
    trace.for_each_point(|i, p| {
        check_image(mount_block, p.strict(), &e, i, &what);
        check_image(mount_block, p.all_survive(), &e, i, &what);
        t.images += 2;
        if p.unflushed_blocks() > 0 {
            for _ in 0..per_point {
                seed += 1;
                check_image(mount_block, p.random(common::seed(seed)), &e, i, &what);
                t.images += 1;
                t.random += 1;
            }
        }
    });
    t.workloads += 1;
}

fn random_points() -> usize {
    std::env::var("LIBFS_CRASH_RANDOM").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

#[test]
fn crash_single_ops_pmem() {
    let mut t = Totals { workloads: 0, images: 0, random: 0 };
    for (i, &op) in SINGLE.iter().enumerate() {
        crash_pmem(&[op], false, i % 2 == 1, random_points(), &mut t);
    }
    println!("pmem single-op: {} workloads, {} crash images ({} random)", t.workloads, t.images, t.random);
}

#[test]
fn crash_single_ops_block() {
    let mut t = Totals { workloads: 0, images: 0, random: 0 };
    for (i, &op) in SINGLE.iter().enumerate() {
        crash_block(&[op], false, i % 2 == 0, random_points(), &mut t);
    }
    println!("block single-op: {} workloads, {} crash images ({} random)", t.workloads, t.images, t.random);
}

fn pairs(seed: u64, n: usize) -> Vec<([Op; 2], bool)> {
    let mut rng = Rng::new(common::seed(seed));
    (0..n)
        .map(|_| {
            let a = SINGLE[rng.below(SINGLE.len() as u64) as usize];
            let b = SINGLE[rng.below(SINGLE.len() as u64) as usize];
            ([a, b], rng.below(2) == 1)
        })
        .collect()
}

/// Fixed pairs for two hazards. Pairs that free pages and then allocate:
/// the freed pages must not be reused before the commit that frees them
/// is durable.
const REUSE: &[([Op; 2], bool)] = &[
    ([Unlink("/A"), Append("/B", 5000)], false),
    ([Rename("/D/C", "/A"), Append("/B", 5000)], false),
    ([Truncate("/A", 0), Write("/D/C", 8000, 5000)], false),
    ([Rename("/A", "/B"), Create("/N")], false),
    // Shrink to an unaligned size, then grow: the old tail bytes must not
    // be zeroed in place while the durable file may still show them.
    ([Truncate("/A", 100), Truncate("/A", 20_000)], false),
    ([Truncate("/A", 100), Write("/A", 6000, 10)], false),
];

#[test]
fn crash_two_ops_sample() {
    let mut t = Totals { workloads: 0, images: 0, random: 0 };
    let mut all: Vec<([Op; 2], bool)> = REUSE.to_vec();
    all.extend(pairs(42, 16));
    for (i, (ops, between)) in all.into_iter().enumerate() {
        if i % 2 == 0 {
            crash_pmem(&ops, between, i % 4 == 0, random_points(), &mut t);
        } else {
            crash_block(&ops, between, i % 4 == 1, random_points(), &mut t);
        }
    }
    println!("two-op sample: {} workloads, {} crash images ({} random)", t.workloads, t.images, t.random);
}

#[test]
#[ignore = "long: every single op on both media, with and without remount, and 200 two-op workloads"]
fn crash_sweep_long() {
    let mut t = Totals { workloads: 0, images: 0, random: 0 };
    for &op in SINGLE {
        for remount in [false, true] {
            crash_pmem(&[op], false, remount, 2000, &mut t);
            crash_block(&[op], false, remount, 2000, &mut t);
        }
    }
    for (i, (ops, between)) in pairs(7, 200).into_iter().enumerate() {
        crash_pmem(&ops, between, i % 2 == 0, 1000, &mut t);
        crash_block(&ops, between, i % 2 == 1, 1000, &mut t);
    }
    println!("sweep: {} workloads, {} crash images ({} random)", t.workloads, t.images, t.random);
}

/// Crash, recover, work, crash again: the first commit after a recovery
/// (a checkpoint) must cope with whatever the first crash left in the log
/// tail (torn chunks, stale sectors), at every point of its own.
#[test]
fn crash_after_recovery() {
    let mut t = Totals { workloads: 0, images: 0, random: 0 };
    let second = [Create("/R"), Write("/R", 0, 5000), Rename("/D/C", "/R")];
    for (k, &first) in
        [Append("/A", 3000), Rename("/A", "/D/C"), Write("/A", 4000, 8000), Unlink("/D/C")].iter().enumerate()
    {
        // pmem
        let mut fs = pmem_fs(PAGES, GEO);
        setup(&mut fs);
        fs.storage_mut().region_mut().enable_trace();
        apply(&mut fs, first, 0);
        fs.sync().unwrap();
        let trace = fs.storage_mut().region_mut().take_trace().unwrap();
        let mut images = Vec::new();
        trace.for_each_point(|i, p| {
            if p.pending_lines() > 0 {
                images.extend((0..6).map(|s| p.random(common::seed(i as u64 * 31 + k as u64 * 7 + s))));
            }
        });
        for img in images {
            let mut fs = mount_pmem(img).unwrap();
            fs.storage_mut().region_mut().enable_trace();
            let e = run_ops(&mut fs, &second, false, |fs| fs.storage().region().trace_len());
            let trace = fs.storage_mut().region_mut().take_trace().unwrap();
            trace.for_each_point(|i, p| {
                for img in [p.strict(), p.all_survive()]
                    .into_iter()
                    .chain((0..8).map(|s| p.random(common::seed(i as u64 * 8 + s))))
                {
                    check_image(mount_pmem, img, &e, i, &format!("pmem after recovery from {first:?}"));
                    t.images += 1;
                }
            });
            t.workloads += 1;
        }
        // block
        let mut fs = block_fs(PAGES, GEO);
        setup(&mut fs);
        fs.storage_mut().device_mut().enable_trace();
        apply(&mut fs, first, 0);
        fs.sync().unwrap();
        let trace = fs.storage_mut().device_mut().take_trace().unwrap();
        let mut images = Vec::new();
        trace.for_each_point(|i, p| {
            if p.unflushed_blocks() > 0 {
                images.extend((0..6).map(|s| p.random(common::seed(i as u64 * 31 + k as u64 * 7 + s))));
            }
        });
        for img in images {
            let mut fs = mount_block(img).unwrap();
            fs.storage_mut().device_mut().enable_trace();
            let e = run_ops(&mut fs, &second, false, |fs| fs.storage().device().trace_len());
            let trace = fs.storage_mut().device_mut().take_trace().unwrap();
            trace.for_each_point(|i, p| {
                for img in [p.strict(), p.all_survive()]
                    .into_iter()
                    .chain((0..8).map(|s| p.random(common::seed(i as u64 * 8 + s))))
                {
                    check_image(mount_block, img, &e, i, &format!("block after recovery from {first:?}"));
                    t.images += 1;
                }
            });
            t.workloads += 1;
        }
    }
    println!("after recovery: {} second crashes' workloads, {} crash images", t.workloads, t.images);
}
