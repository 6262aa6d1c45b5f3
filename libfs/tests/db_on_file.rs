//! libdb on a libfs file (`FileStorage`), on both media:
//! * crash tests in the style of libdb's own (`libdb/tests/crash.rs`): a
//!   workload of 220 transactions on a database file whose extents are
//!   *not* contiguous, crashed at every flush/fence (pmem) or write/flush
//!   (block device) and at random surviving subsets; after each crash the
//!   file system is mounted (its check must be clean), the file opened and
//!   the database recovered to exactly the state after some commit it may
//!   show (every acknowledged durable commit, at most the one in flight);
//! * the database survives closing, unmounting and mounting again;
//! * the commit path asks the medium for exactly what libdb on the raw
//!   region asks, byte for byte, translated through the file's extents
//!   (and split where a request crosses from one extent to the next);
//! * errors name the file.

mod common;

use std::collections::BTreeMap;

use common::{mount_block, mount_pmem, SECTOR};
use libdb::sim::SimBlockDevice;
use libdb::{Db, Durability, IoStats, Options};
use libfs::{BlockStorage, DbFile, FileStorage, Fs, Geometry, OpenMode, PmemStorage, Run, Storage};
use pmem::sim::XorShift;
use pmem::SimPmem;

const PS: u64 = 4096;
const DB: &str = "/data/db";
/// The database file: 160 pages (640 KiB, as libdb's crash tests' medium).
const DB_PAGES: u64 = 160;
/// The file system's medium: room for the database, the filler that
/// fragments it, and the metadata areas.
const FS_PAGES: u64 = 3 * DB_PAGES;
const GEO: Geometry = Geometry { ckpt_pages: Some(4), log_pages: Some(8) };

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn opts() -> Options {
    Options { cache_pages: 32, log_pages: 6, checkpoint_log_bytes: 10 * 1024 }
}

fn pmem_medium() -> PmemStorage<SimPmem> {
    PmemStorage::new(SimPmem::new((FS_PAGES * PS) as usize))
}

fn block_medium() -> BlockStorage<SimBlockDevice> {
    BlockStorage::new(SimBlockDevice::new(SECTOR, FS_PAGES * PS / SECTOR as u64))
}

/// Makes the database file of `pages` pages, fragmented on purpose: it
/// grows by 1–3 pages at a time and a filler file takes the next page
/// each time (libfs allocates next-fit after a file's last page, which
/// the filler has just taken); the filler is then removed, leaving gaps.
/// Returns the number of extents.
fn make_fragmented<S: Storage>(fs: &mut Fs<S>, pages: u64) -> usize {
    fs.mkdir("/data", 0o755).unwrap();
    let db = fs.open(DB, OpenMode::CREATE).unwrap();
    let filler = fs.open("/data/filler", OpenMode::CREATE).unwrap();
    let (mut have, mut step) = (0, 0);
    while have < pages {
        have = (have + 1 + step % 3).min(pages);
        step += 1;
        fs.allocate(&db, have * PS).unwrap();
        fs.allocate(&filler, step * PS).unwrap();
    }
    fs.unlink("/data/filler").unwrap();
    fs.sync().unwrap();
    fs.extents(db.ino).unwrap().len()
}

/// A file system on `medium` holding a fragmented database file (not yet
/// formatted by libdb), opened as a `FileStorage`.
fn fragmented_file<S: Storage>(medium: S) -> FileStorage<S> {
    let mut fs = Fs::mkfs(medium, GEO).unwrap();
    let extents = make_fragmented(&mut fs, DB_PAGES);
    assert!(extents >= 40, "the test file must be fragmented: {extents} extents");
    let f = FileStorage::open(fs, DB, DbFile::Open).unwrap();
    assert_eq!(f.runs().len(), extents, "no two extents of the file are adjacent on the medium");
    assert_eq!(f.capacity(), DB_PAGES * PS);
    f
}

/// The database wrote nothing outside its file: every medium byte outside
/// `runs` is as it was `before`.
fn only_file_bytes_changed(before: &[u8], after: &[u8], runs: &[Run], what: &str) {
    let mut inside = vec![false; before.len()];
    for r in runs {
        inside[r.medium_offset as usize..(r.medium_offset + r.len) as usize].fill(true);
    }
    let changed = (0..before.len()).filter(|&i| !inside[i] && before[i] != after[i]).count();
    assert_eq!(changed, 0, "{what}: the database changed {changed} medium bytes outside its file");
    assert!((0..before.len()).any(|i| inside[i] && before[i] != after[i]), "{what}: it wrote its file");
}

// ---------------------------------------------------------------------
// Crash tests.

struct Workload {
    /// states[i]: contents after i commits.
    states: Vec<Model>,
    /// Per commit: crash points recorded when it returned, and how many
    /// commits were durable then.
    acks: Vec<(usize, usize)>,
}

impl Workload {
    fn allowed(&self, point: usize) -> (usize, usize) {
        let acked = self.acks.iter().take_while(|(p, _)| *p <= point).count();
        let floor = self.acks[..acked].iter().map(|(_, d)| *d).max().unwrap_or(0);
        (floor, (acked + 1).min(self.states.len() - 1))
    }
}

/// libdb's crash workload: 1–4 puts/deletes per transaction, values of
/// 8–158 bytes and every 15th 1.5–4.5 KB (overflow pages: multi-page
/// writes that cross extents), a checkpoint every 50.
fn run_workload<S: Storage>(db: &Db<S>, txns: usize, seed: u64, points: impl Fn(&S) -> usize) -> Workload {
    let mut rng = XorShift::new(seed);
    let mut model = Model::new();
    let mut w = Workload { states: vec![model.clone()], acks: Vec::new() };
    let mut durable = 0;
    for i in 0..txns {
        let before = db.stats();
        let mut t = db.begin_write().unwrap();
        for _ in 0..1 + rng.below(4) {
            let k = format!("key{:03}", rng.below(60)).into_bytes();
            if rng.below(5) == 0 {
                t.delete(&k).unwrap();
                model.remove(&k);
            } else {
                let len = if rng.below(15) == 0 { 1500 + rng.below(3000) } else { 8 + rng.below(150) } as usize;
                let v: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
                t.put(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
        t.commit(Durability::Sync).unwrap();
        if i % 50 == 49 {
            db.checkpoint().unwrap();
        }
        let after = db.stats();
        if after.log_flushes > before.log_flushes || after.checkpoints > before.checkpoints {
            durable = i + 1;
        }
        w.states.push(model.clone());
        w.acks.push((db.with_storage(&points), durable));
    }
    w
}

fn contents<S: Storage>(db: &Db<S>) -> Model {
    db.begin_read().iter().collect::<Result<_, _>>().unwrap()
}

/// Mounts a crash image (the file system must be consistent: libdb's
/// writes never touch its metadata), opens the file and recovers the
/// database; it must hold the state after one of the commits allowed at
/// `point`. Every `probe`: commit once more and reopen.
fn check<S: Storage>(
    mount: impl Fn(Vec<u8>) -> libfs::Result<Fs<S>>,
    image_of: impl Fn(S) -> Vec<u8>,
    image: Vec<u8>,
    w: &Workload,
    point: usize,
    probe: bool,
    what: &str,
) {
    let open = |img: Vec<u8>| {
        let fs = mount(img).unwrap_or_else(|e| panic!("{what} at point {point}: mount failed: {e}"));
        assert!(fs.check().is_empty(), "{what} at point {point}: fsck: {:?}", fs.check());
        let file = FileStorage::open(fs, DB, DbFile::Open).unwrap_or_else(|e| panic!("{what} {point}: {e}"));
        Db::open(file, opts()).unwrap_or_else(|e| panic!("{what} at point {point}: reopen failed: {e}"))
    };
    let db = open(image);
    let got = contents(&db);
    let (lo, hi) = w.allowed(point);
    assert!(
        (lo..=hi).any(|j| w.states[j] == got),
        "{what} at point {point}: recovered state is not the state after any of commits {lo}..={hi}"
    );
    if probe {
        let mut t = db.begin_write().unwrap();
        t.put(b"zz-after-recovery", b"1").unwrap();
        t.commit(Durability::Sync).unwrap();
        let img = image_of(db.into_storage().into_fs().into_storage());
        let mut again = contents(&open(img));
        assert_eq!(again.remove(&b"zz-after-recovery"[..]).as_deref(), Some(&b"1"[..]), "{what} {point}");
        assert_eq!(again, got, "{what} at point {point}: state changed across a second crash");
    }
}

/// (crash points, images checked, of which random)
fn pmem_crash(seed: u64, randoms: u64) -> (usize, usize, usize) {
    let db = Db::create(fragmented_file(pmem_medium()), opts()).unwrap();
    let fs = db.into_storage().into_fs();
    let mut sim = fs.into_storage().into_inner();
    sim.enable_trace();
    let fs = Fs::mount(PmemStorage::new(sim)).unwrap();
    let before = fs.storage().region().as_slice().to_vec();
    let db = Db::open(FileStorage::open(fs, DB, DbFile::Open).unwrap(), opts()).unwrap();
    let w = run_workload(&db, 220, seed, |s| s.medium().region().trace_len());
    let file = db.into_storage();
    let runs = file.runs().to_vec();
    let mut sim = file.into_fs().into_storage().into_inner();
    only_file_bytes_changed(&before, sim.as_slice(), &runs, "pmem");
    let trace = sim.take_trace().unwrap();
    let image_of = |s: PmemStorage<SimPmem>| s.into_inner().crash_image_strict();
    let (mut images, mut random) = (0, 0);
    trace.for_each_point(|i, p| {
        check(mount_pmem, image_of, p.strict(), &w, i, i % 25 == 0, "pmem strict");
        images += 1;
        if p.pending_lines() > 0 {
            check(mount_pmem, image_of, p.all_survive(), &w, i, false, "pmem all-survive");
            images += 1;
            for s in 0..randoms {
                check(
                    mount_pmem,
                    image_of,
                    p.random(seed * 7919 + i as u64 * randoms + s),
                    &w,
                    i,
                    false,
                    "pmem random",
                );
                random += 1;
            }
        }
    });
    (trace.len(), images + random, random)
}

/// (crash points, images checked, of which random)
fn block_crash(seed: u64, randoms: u64) -> (usize, usize, usize) {
    let db = Db::create(fragmented_file(block_medium()), opts()).unwrap();
    let mut dev = db.into_storage().into_fs().into_storage().into_inner();
    dev.enable_trace();
    let fs = Fs::mount(BlockStorage::new(dev)).unwrap();
    let before = fs.storage().device().image().to_vec();
    let db = Db::open(FileStorage::open(fs, DB, DbFile::Open).unwrap(), opts()).unwrap();
    let w = run_workload(&db, 220, seed, |s| s.medium().device().trace_len());
    let file = db.into_storage();
    let runs = file.runs().to_vec();
    let mut dev = file.into_fs().into_storage().into_inner();
    only_file_bytes_changed(&before, dev.image(), &runs, "block");
    let trace = dev.take_trace().unwrap();
    let image_of = |s: BlockStorage<SimBlockDevice>| s.into_inner().crash_image_strict();
    let (mut images, mut random) = (0, 0);
    trace.for_each_point(|i, p| {
        check(mount_block, image_of, p.strict(), &w, i, i % 25 == 0, "block strict");
        images += 1;
        if p.unflushed_blocks() > 0 {
            check(mount_block, image_of, p.all_survive(), &w, i, false, "block all-survive");
            images += 1;
            for s in 0..randoms {
                let img = p.random(seed * 104_729 + i as u64 * randoms + s);
                check(mount_block, image_of, img, &w, i, false, "block random");
                random += 1;
            }
        }
    });
    (trace.len(), images + random, random)
}

#[test]
fn crash_pmem_fragmented_file_every_point() {
    let (points, images, random) = pmem_crash(1, 4);
    println!("db on a fragmented libfs file, pmem: {points} crash points, {images} images checked, {random} random");
    assert!(points >= 400 && random >= 1000, "{points} {random}");
}

#[test]
fn crash_block_fragmented_file_every_point() {
    let (points, images, random) = block_crash(4, 4);
    println!("db on a fragmented libfs file, block: {points} crash points, {images} images checked, {random} random");
    assert!(points >= 400 && random >= 1000, "{points} {random}");
}

// ---------------------------------------------------------------------
// Reopening after a remount.

fn fill<S: Storage>(db: &Db<S>, n: u64) -> Model {
    let mut model = Model::new();
    for i in 0..n {
        let mut t = db.begin_write().unwrap();
        let k = format!("k{i:05}").into_bytes();
        let v = vec![i as u8; 10 + (i as usize * 37) % 3000];
        t.put(&k, &v).unwrap();
        t.commit(Durability::Sync).unwrap();
        model.insert(k, v);
    }
    model
}

fn remount_roundtrip<S: Storage>(medium: S, remount: impl Fn(S) -> Fs<S>) {
    let mut fs = Fs::mkfs(medium, GEO).unwrap();
    fs.mkdir("/data", 0o755).unwrap();
    let file = FileStorage::open(fs, DB, DbFile::OpenOrCreate(DB_PAGES * PS)).unwrap();
    assert_eq!(file.runs().len(), 1, "a new file is one run");
    let db = Db::create(file, opts()).unwrap();
    let model = fill(&db, 150);
    // Closed cleanly: the file system comes back too.
    let fs = db.close().unwrap().into_fs();
    assert!(!fs.has_uncommitted());
    let fs = remount(fs.into_storage());
    assert!(fs.check().is_empty());
    assert_eq!(fs.stat(DB).unwrap().size, DB_PAGES * PS);
    let db = Db::open(FileStorage::open(fs, DB, DbFile::OpenOrCreate(PS)).unwrap(), opts()).unwrap();
    assert_eq!(contents(&db), model);
    // Not closed (a crash after the last durable commit): recovery.
    let mut t = db.begin_write().unwrap();
    t.put(b"last", b"one").unwrap();
    t.commit(Durability::Sync).unwrap();
    let fs = remount(db.into_storage().into_fs().into_storage());
    let db = Db::open(FileStorage::open(fs, DB, DbFile::Open).unwrap(), opts()).unwrap();
    let mut got = contents(&db);
    assert_eq!(got.remove(&b"last"[..]).as_deref(), Some(&b"one"[..]));
    assert_eq!(got, model);
}

#[test]
fn reopen_after_remount_pmem() {
    remount_roundtrip(pmem_medium(), |s| mount_pmem(s.into_inner().crash_image_strict()).unwrap());
}

#[test]
fn reopen_after_remount_block() {
    remount_roundtrip(block_medium(), |s| mount_block(s.into_inner().crash_image_strict()).unwrap());
}

// ---------------------------------------------------------------------
// The commit path costs nothing: the same medium requests as the raw
// region, byte for byte.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Req {
    Read(u64, usize),
    Write(u64, Vec<u8>),
    Barrier,
}

/// A medium that records every request while `on`.
struct Recorder<S> {
    inner: S,
    on: bool,
    log: Vec<Req>,
}

impl<S: Storage> Storage for Recorder<S> {
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
    fn write_align(&self) -> usize {
        self.inner.write_align()
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), libdb::Error> {
        if self.on {
            self.log.push(Req::Read(offset, buf.len()));
        }
        self.inner.read(offset, buf)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), libdb::Error> {
        if self.on {
            self.log.push(Req::Write(offset, data.to_vec()));
        }
        self.inner.write(offset, data)
    }
    fn barrier(&mut self) -> Result<(), libdb::Error> {
        if self.on {
            self.log.push(Req::Barrier);
        }
        self.inner.barrier()
    }
    fn io_stats(&self) -> IoStats {
        self.inner.io_stats()
    }
}

/// What a request at file offset `off` of `len` bytes becomes on the
/// medium: one (medium offset, length) per run it touches.
fn translate(runs: &[Run], off: u64, len: usize) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let pos = off + at as u64;
        let r = runs.iter().find(|r| r.file_offset <= pos && pos < r.file_offset + r.len).expect("inside the file");
        let n = ((r.file_offset + r.len - pos) as usize).min(len - at);
        out.push((r.medium_offset + pos - r.file_offset, n));
        at += n;
    }
    out
}

/// The commit workload of kvdb's `commit` measurement (a 16-digit key and
/// a 100-byte value per sync commit) plus larger values (overflow pages)
/// and a checkpoint: returns per-commit (writes, bytes, barriers) of the
/// `commit` part.
fn workload<S: Storage>(db: &Db<S>) -> IoStats {
    let before = db.stats().io;
    for i in 0..100u64 {
        let mut t = db.begin_write().unwrap();
        t.put(format!("{i:016}").as_bytes(), &[i as u8; 100]).unwrap();
        t.commit(Durability::Sync).unwrap();
    }
    let after = db.stats().io;
    for i in 0..40u64 {
        let mut t = db.begin_write().unwrap();
        t.put(format!("big{i}").as_bytes(), &vec![i as u8; 5000 + i as usize * 100]).unwrap();
        t.commit(Durability::Sync).unwrap();
    }
    db.checkpoint().unwrap();
    IoStats {
        barriers: after.barriers - before.barriers,
        writes: after.writes - before.writes,
        bytes_written: after.bytes_written - before.bytes_written,
        reads: after.reads - before.reads,
        bytes_read: after.bytes_read - before.bytes_read,
        lines_flushed: after.lines_flushed - before.lines_flushed,
    }
}

/// Runs the workload on the raw region and on the file (contiguous, then
/// fragmented) and compares the medium requests.
fn same_requests<S: Storage>(medium: impl Fn(u64) -> S, name: &str) {
    let raw = Db::create(Recorder { inner: medium(DB_PAGES * PS), on: true, log: Vec::new() }, opts()).unwrap();
    let raw_commit = workload(&raw);
    let raw_log = raw.into_storage().log;
    for fragmented in [false, true] {
        let mut fs = Fs::mkfs(Recorder { inner: medium(FS_PAGES * PS), on: false, log: Vec::new() }, GEO).unwrap();
        if fragmented {
            make_fragmented(&mut fs, DB_PAGES);
        } else {
            fs.mkdir("/data", 0o755).unwrap();
        }
        let mut file = FileStorage::open(fs, DB, DbFile::OpenOrCreate(DB_PAGES * PS)).unwrap();
        let runs = file.runs().to_vec();
        assert_eq!(runs.len() == 1, !fragmented, "{name}: {runs:?}");
        // From here on, only the database touches the medium.
        let mut fs = file.into_fs();
        fs.storage_mut().on = true;
        file = FileStorage::open(fs, DB, DbFile::Open).unwrap();
        assert!(file.medium().log.is_empty(), "{name}: opening an existing, committed file writes nothing");
        let db = Db::create(file, opts()).unwrap();
        let file_commit = workload(&db);
        let file_log = std::mem::take(&mut db.into_storage().into_fs().storage_mut().log);
        let expected: Vec<Req> = raw_log
            .iter()
            .flat_map(|r| match r {
                Req::Barrier => vec![Req::Barrier],
                Req::Read(off, len) => translate(&runs, *off, *len).into_iter().map(|(m, n)| Req::Read(m, n)).collect(),
                Req::Write(off, data) => {
                    let mut at = 0;
                    translate(&runs, *off, data.len())
                        .into_iter()
                        .map(|(m, n)| {
                            at += n;
                            Req::Write(m, data[at - n..at].to_vec())
                        })
                        .collect()
                }
            })
            .collect();
        assert_eq!(file_log.len(), expected.len(), "{name} fragmented={fragmented}: request counts differ");
        for (i, (got, want)) in file_log.iter().zip(&expected).enumerate() {
            assert!(got == want, "{name} fragmented={fragmented}: request {i} differs");
        }
        let splits = expected.len() - raw_log.len();
        println!(
            "{name}, {} file: {} medium requests for libdb's {} ({splits} split at extent boundaries); \
             per 100-byte sync commit: {:.2} writes, {:.1} bytes, {:.2} barriers, {:.2} cache lines \
             (raw region: {:.2}, {:.1}, {:.2}, {:.2})",
            if fragmented { format!("{}-extent", runs.len()) } else { "contiguous".into() },
            expected.len(),
            raw_log.len(),
            file_commit.writes as f64 / 100.0,
            file_commit.bytes_written as f64 / 100.0,
            file_commit.barriers as f64 / 100.0,
            file_commit.lines_flushed as f64 / 100.0,
            raw_commit.writes as f64 / 100.0,
            raw_commit.bytes_written as f64 / 100.0,
            raw_commit.barriers as f64 / 100.0,
            raw_commit.lines_flushed as f64 / 100.0,
        );
        if !fragmented {
            assert_eq!(splits, 0, "{name}: a contiguous file splits nothing");
            assert_eq!(file_commit, raw_commit, "{name}: per-commit counts differ from the raw region's");
        } else {
            assert!(splits > 0, "{name}: the fragmented file's test must cross extents");
            assert_eq!(file_commit.barriers, raw_commit.barriers);
            assert_eq!(file_commit.bytes_written, raw_commit.bytes_written);
        }
    }
}

#[test]
fn commit_path_issues_the_raw_regions_requests_pmem() {
    same_requests(|bytes| PmemStorage::new(SimPmem::new(bytes as usize)), "pmem");
}

#[test]
fn commit_path_issues_the_raw_regions_requests_block() {
    same_requests(|bytes| BlockStorage::new(SimBlockDevice::new(SECTOR, bytes / SECTOR as u64)), "block");
}

// ---------------------------------------------------------------------
// Errors.

#[test]
fn opening_errors_name_the_file() {
    let mut fs = Fs::mkfs(pmem_medium(), GEO).unwrap();
    fs.mkdir("/data", 0o755).unwrap();
    let err = |fs: Fs<_>, path: &str, how| {
        let e = FileStorage::open(fs, path, how).err().expect("must fail");
        (*e.fs, e.error.to_string())
    };
    let (fs, e) = err(fs, DB, DbFile::Open);
    assert!(e.contains(DB) && e.contains("no such file"), "{e}");
    let (fs, e) = err(fs, DB, DbFile::Create(5000));
    assert!(e.contains(DB) && e.contains("not a positive multiple of 4096"), "{e}");
    let (fs, e) = err(fs, "/data", DbFile::Open);
    assert!(e.contains("/data") && e.contains("is a directory"), "{e}");
    let (fs, e) = err(fs, DB, DbFile::Create(FS_PAGES * PS));
    assert!(e.contains("no space"), "{e}");
    assert!(fs.lookup(DB).is_err(), "a database file that did not fit is not left behind");
    // A sparse file: pages 0 and 1 are holes.
    let mut fs = fs;
    let h = fs.open("/data/sparse", OpenMode::CREATE).unwrap();
    fs.pwrite(&h, 2 * PS, &[1u8; 4096]).unwrap();
    let (fs, e) = err(fs, "/data/sparse", DbFile::Open);
    assert!(e.contains("/data/sparse") && e.contains("page 0") && e.contains("hole"), "{e}");
    let file = FileStorage::open(fs, DB, DbFile::Create(8 * PS)).unwrap();
    let fs = file.into_fs();
    assert!(!fs.has_uncommitted(), "creating commits the layout");
    let (fs, e) = err(fs, DB, DbFile::Create(8 * PS));
    assert!(e.contains(DB) && e.contains("already exists"), "{e}");
    // Past the end of the file: out of range, at the file's offset.
    let mut file = FileStorage::open(fs, DB, DbFile::Open).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(
        file.read(8 * PS - 4, &mut buf),
        Err(libdb::Error::Io { offset: 8 * PS - 4, error: libdb::IoError::OutOfRange })
    );
    assert!(file.write(u64::MAX - 2, &buf).is_err());
}
