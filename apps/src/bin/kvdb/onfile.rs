//! `file-pmem` / `file-nvme`: the database as a libfs file on the medium
//! (libfs linked in, no file service: this process owns the whole region,
//! as `fsapp` does).
//!
//! * `create`: mkfs on the medium, `mkdir /db`, and the database file
//!   `/db/kvdb.db` made by `libfs::FileStorage` (create, allocate every
//!   page zero-filled, one fsync: the layout is durable before libdb
//!   writes); then the same plan as on the raw medium (`workload.rs`),
//!   whose `EXO-DB` lines are named by this medium (`file-pmem` /
//!   `file-nvme`), and the process ends without closing the database.
//! * `check`: fsck (the image is checked before anything is trusted),
//!   mount, open the file, recover the database and check every
//!   committed key/value and nothing else; close it, and check the file
//!   system once more.
//!
//! After the file is open, no libfs code runs on the commit path: the
//! storage translates offsets through the extents it took at open.

use alloc::format;
use libdb::Storage;
use libfs::{fsck, DbFile, FileStorage, Fs, Geometry};

use crate::error::KvdbError;
use crate::workload::{self, MediumCounts};
use exo_rt::println;

/// The database file and its size (16 MiB: as the raw `pmem` medium).
const DB_DIR: &str = "/db";
const DB_PATH: &str = "/db/kvdb.db";
const DB_FILE_BYTES: u64 = 16 << 20;

fn fs_error(what: &str) -> impl FnOnce(libfs::Error) -> KvdbError + '_ {
    move |e| KvdbError::Fs(what.into(), e)
}

/// Runs `create` or `check` of the plan on a database file on `medium`;
/// returns the medium (the database not closed after `create`).
pub fn run<S: Storage>(
    medium: S,
    create: bool,
    nonce: u64,
    name: &str,
    tsc_per_us: u64,
    counts: impl Fn(&S) -> MediumCounts,
    block: bool,
) -> Result<S, KvdbError> {
    if create {
        let fs = Fs::mkfs(medium, Geometry::default()).map_err(fs_error("mkfs"))?;
        let mut fs = fs;
        fs.mkdir(DB_DIR, 0o755).map_err(fs_error("mkdir /db"))?;
        let before = fs.storage().io_stats();
        let file = FileStorage::open(fs, DB_PATH, DbFile::Create(DB_FILE_BYTES))
            .map_err(|e| fs_error("creating the database file")(e.error))?;
        let made = file.medium().io_stats();
        println!(
            "kvdb: libfs on {name}: {DB_PATH} created ({} KiB in {} extent(s) on the medium, first at byte {:#x}); \
             allocating and committing it took {} medium writes ({} KiB) and {} barriers",
            file.capacity() >> 10,
            file.runs().len(),
            file.runs().first().map_or(0, |r| r.medium_offset),
            made.writes - before.writes,
            (made.bytes_written - before.bytes_written) >> 10,
            made.barriers - before.barriers
        );
        let file = workload::create(file, nonce, name, tsc_per_us, |f: &FileStorage<S>| counts(f.medium()), block)?;
        let fs = file.into_fs();
        println!(
            "kvdb: libfs after the database's run: {} commits, {} checkpoints (all at creation)",
            fs.commits, fs.checkpoints
        );
        return Ok(fs.into_storage());
    }
    let (report, medium) = fsck::fsck(medium, false);
    let report = report.map_err(fs_error("fsck"))?;
    if !report.is_clean() {
        return Err(KvdbError::Mismatch(format!("fsck found {} issue(s): {:?}", report.issues.len(), report.issues)));
    }
    let medium = medium.ok_or_else(|| KvdbError::Usage("fsck kept the medium".into()))?;
    println!("kvdb: fsck of libfs on {name}: clean");
    let fs = Fs::mount(medium).map_err(fs_error("mounting"))?;
    let file =
        FileStorage::open(fs, DB_PATH, DbFile::Open).map_err(|e| fs_error("opening the database file")(e.error))?;
    println!(
        "kvdb: opened {DB_PATH} ({} KiB, {} extent(s)) without writing: {} medium writes so far",
        file.capacity() >> 10,
        file.runs().len(),
        file.medium().io_stats().writes
    );
    let file = workload::check(file, nonce, name)?;
    let fs = file.into_fs();
    let issues = fs.check();
    if !issues.is_empty() {
        return Err(KvdbError::Mismatch(format!("libfs after the check: {} issue(s)", issues.len())));
    }
    Ok(fs.into_storage())
}
