//! The tree of `libfs_pmem` and `libfs_nvme` (`build` and `verify` work on
//! any medium) and the two persistent-memory phases (see `main.rs`).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use exo_rt::println;
use exo_rt::region::Region;
use libdb::{IoError, PmemRegion, PmemStorage};
use libfs::{Error, Fs, Geometry, Handle, Kind, OpenMode, Storage};

/// An exit code and what went wrong.
pub(crate) type Failure = (u32, String);

pub(crate) const FS_ERROR: u32 = 1;
pub(crate) const MISSING_REGION: u32 = 2;
pub(crate) const MISMATCH: u32 = 5;
pub(crate) const USAGE: u32 = 7;

pub(crate) fn fs_err(what: &str) -> impl FnOnce(Error) -> Failure + '_ {
    move |e| (FS_ERROR, format!("{what}: {e}"))
}

pub(crate) fn mismatch(why: String) -> Failure {
    (MISMATCH, why)
}

/// libdb's `PmemRegion` over the mapped region: stores into the mapping,
/// `persist` = cache-line write-back, `fence` = `sfence`.
struct Mapped {
    region: Region,
    lines: u64,
    fences: u64,
}

impl PmemRegion for Mapped {
    fn as_slice(&self) -> &[u8] {
        self.region.as_slice()
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        self.region.as_mut_slice()[offset..offset + data.len()].copy_from_slice(data);
    }
    fn persist(&mut self, offset: usize, len: usize) {
        self.lines += lines(offset, len);
        self.region.persist(offset, len)
    }
    fn fence(&mut self) -> Result<(), IoError> {
        self.fences += 1;
        self.region.fence();
        Ok(())
    }
}

fn lines(offset: usize, len: usize) -> u64 {
    if len == 0 {
        return 0;
    }
    ((offset + len - 1) / pmem::CACHE_LINE - offset / pmem::CACHE_LINE + 1) as u64
}

/// The directories, in creation order.
const DIRS: &[&str] = &["/docs", "/docs/old", "/data", "/mapped"];

/// Files written through libfs: path, size, content seed.
const FILES: &[(&str, u64, u64)] = &[
    ("/empty", 0, 1),
    ("/docs/readme.txt", 1234, 2),
    ("/docs/old/notes", 4096, 3),
    ("/data/small", 100, 4),
    ("/data/mid", 65537, 5),
    ("/data/big", 300 * 1024 + 17, 6),
    ("/data/tmp", 5000, 7),
    ("/docs/draft", 7001, 8),
];

/// Renamed over `/docs/readme.txt` (which then holds draft's bytes).
const RENAME: (&str, &str) = ("/docs/draft", "/docs/readme.txt");
/// Unlinked.
const UNLINK: &str = "/data/tmp";
/// The file stored into through its mapping: allocated (zeros) by libfs,
/// then bytes `[MAPPED_AT, MAPPED_AT + MAPPED_LEN)` stored directly.
pub(crate) const MAPPED: &str = "/mapped/region.bin";
pub(crate) const MAPPED_SIZE: u64 = 128 * 1024;
pub(crate) const MAPPED_AT: u64 = 1000;
pub(crate) const MAPPED_LEN: u64 = 100_000;
pub(crate) const MAPPED_SEED: u64 = 9;

/// Byte `i` of the file with `seed` in the run with `nonce`.
pub(crate) fn byte(nonce: u64, seed: u64, i: u64) -> u8 {
    let mut x = nonce ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i / 8).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 29;
    (x >> ((i % 8) * 8)) as u8
}

pub(crate) fn contents(nonce: u64, seed: u64, len: u64) -> Vec<u8> {
    (0..len).map(|i| byte(nonce, seed, i)).collect()
}

/// What boot 2 must find: path → (kind, expected bytes for files).
pub(crate) fn expected(nonce: u64) -> BTreeMap<String, (Kind, Vec<u8>)> {
    let mut m = BTreeMap::new();
    for d in DIRS {
        m.insert(String::from(*d), (Kind::Dir, Vec::new()));
    }
    for &(p, size, seed) in FILES {
        m.insert(String::from(p), (Kind::File, contents(nonce, seed, size)));
    }
    let moved = m.remove(RENAME.0).map(|(_, b)| b).unwrap_or_default();
    m.insert(String::from(RENAME.1), (Kind::File, moved));
    m.remove(UNLINK);
    let mut mapped = vec![0u8; MAPPED_SIZE as usize];
    for i in 0..MAPPED_LEN {
        mapped[(MAPPED_AT + i) as usize] = byte(nonce, MAPPED_SEED, i);
    }
    m.insert(String::from(MAPPED), (Kind::File, mapped));
    m
}

pub fn run(args: &str) -> Result<(), Failure> {
    let mut words = args.split_whitespace();
    let (medium, phase) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if medium != "pmem" {
        return Err((USAGE, format!("medium {medium:?}: expected pmem")));
    }
    let (va, bytes, nonce) = (exo_rt::args_word(3), exo_rt::args_word(4), exo_rt::args_word(5));
    if va == 0 || bytes == 0 {
        return Err((MISSING_REGION, format!("no pmem region was given (args words 3/4 are {va:#x}/{bytes:#x})")));
    }
    if nonce == 0 {
        return Err((USAGE, "no nonce (args word 5)".into()));
    }
    let region = Region::claim(va, bytes).map_err(|e| (MISSING_REGION, format!("{e}")))?;
    println!(
        "fsapp: persistent-memory region at {va:#x}, {} KiB, cache-line write-back by {:?}",
        bytes >> 10,
        region.flush_method()
    );
    let storage = PmemStorage::new(Mapped { region, lines: 0, fences: 0 });
    match phase {
        "create" => create(storage, va, nonce),
        "check" => check(storage, nonce),
        _ => Err((USAGE, format!("phase {phase:?}: expected create or check"))),
    }
}

fn create(storage: PmemStorage<Mapped>, va: u64, nonce: u64) -> Result<(), Failure> {
    let mut fs = Fs::mkfs(storage, Geometry::default()).map_err(fs_err("mkfs"))?;
    let h = build(&mut fs, nonce)?;
    map_and_store(fs, h, va, nonce)
}

/// The tree of boot 1 on a fresh file system (any medium), committed;
/// returns the handle of `MAPPED`, allocated (zeros) and ready to map.
pub(crate) fn build<S: Storage>(fs: &mut Fs<S>, nonce: u64) -> Result<Handle, Failure> {
    let sb = fs.superblock();
    println!(
        "fsapp: mkfs: {} pages, {} checkpoint pages per slot, {} log pages, {} data pages free",
        sb.total_pages,
        sb.ckpt_pages,
        sb.log_pages,
        fs.free_pages()
    );
    for d in DIRS {
        fs.mkdir(d, 0o755).map_err(fs_err(d))?;
    }
    let mut written = 0;
    for &(p, size, seed) in FILES {
        let mut h = fs.open(p, OpenMode::CREATE).map_err(fs_err(p))?;
        let data = contents(nonce, seed, size);
        let n = fs.write(&mut h, &data).map_err(fs_err(p))?;
        if n != data.len() {
            return Err(mismatch(format!("{p}: wrote {n} of {} bytes", data.len())));
        }
        written += n;
    }
    // The tree as one commit, then the namespace changes as another: boot
    // 2's mount replays both from the log.
    fs.sync().map_err(fs_err("sync"))?;
    let commits_tree = fs.commits;
    fs.rename(RENAME.0, RENAME.1).map_err(fs_err("rename"))?;
    fs.unlink(UNLINK).map_err(fs_err("unlink"))?;
    let h = fs.open(MAPPED, OpenMode::CREATE).map_err(fs_err(MAPPED))?;
    fs.allocate(&h, MAPPED_SIZE).map_err(fs_err(MAPPED))?;
    fs.sync().map_err(fs_err("sync"))?;
    println!(
        "fsapp: created {} directories and {} files ({} bytes through write), renamed {} over {}, unlinked {}, allocated {} ({} KiB); synced: {} commits ({} after the tree), {} checkpoints",
        DIRS.len(),
        FILES.len() + 1,
        written,
        RENAME.0,
        RENAME.1,
        UNLINK,
        MAPPED,
        MAPPED_SIZE >> 10,
        fs.commits,
        commits_tree,
        fs.checkpoints
    );
    Ok(h)
}

/// The pmem half of boot 1: `MAPPED`'s NVDIMM pages stored into directly.
fn map_and_store(fs: Fs<PmemStorage<Mapped>>, h: Handle, va: u64, nonce: u64) -> Result<(), Failure> {
    // The file as a mapped region: its pages are NVDIMM pages mapped here
    // at `va + medium_offset`.
    let extents = fs.extents(h.ino).map_err(fs_err("extents"))?;
    let ranges = fs.persist_ranges(h.ino, MAPPED_AT, MAPPED_LEN).map_err(fs_err("persist_ranges"))?;
    let m = fs.storage().region();
    let (lines_before, fences_before) = (m.lines, m.fences);
    // Done with libfs: no unmount, no further commit. Its view of the
    // whole medium goes; the file's own pages are claimed at their address.
    let whole = fs.into_storage().into_inner().region;
    drop(whole);
    let mut maps: Vec<(u64, Region)> = Vec::new();
    for e in &extents {
        let addr = va + e.medium_offset;
        let r = Region::claim(addr, e.pages * libfs::PAGE_SIZE as u64)
            .map_err(|err| (MISSING_REGION, format!("mapping extent {e:?} at {addr:#x}: {err}")))?;
        maps.push((e.file_page, r));
    }
    println!(
        "fsapp: {MAPPED} mapped: {} extent(s): {}; storing {MAPPED_LEN} bytes at file offset {MAPPED_AT} directly",
        extents.len(),
        extents
            .iter()
            .map(|e| format!("file page {} at {:#x} ({} pages)", e.file_page, va + e.medium_offset, e.pages))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ps = libfs::PAGE_SIZE as u64;
    for i in 0..MAPPED_LEN {
        let off = MAPPED_AT + i;
        let (fp, in_page) = (off / ps, off % ps);
        let (first, r) = maps
            .iter_mut()
            .find(|(f, r)| fp >= *f && fp < *f + r.len() as u64 / ps)
            .ok_or_else(|| mismatch(format!("file page {fp} is in no extent")))?;
        let at = ((fp - *first) * ps + in_page) as usize;
        r.as_mut_slice()[at] = byte(nonce, MAPPED_SEED, i);
    }
    // Exactly the medium ranges libfs names, written back, then one fence.
    let (mut flushed, mut nlines) = (0u64, 0u64);
    for &(start, len) in &ranges {
        let addr = va + start;
        let mut covered = 0;
        for (_, r) in &maps {
            let (b, e) = (r.base(), r.base() + r.len() as u64);
            let (s, t) = (addr.max(b), (addr + len).min(e));
            if s < t {
                r.persist((s - b) as usize, (t - s) as usize);
                nlines += lines((s - b) as usize, (t - s) as usize);
                covered += t - s;
            }
        }
        if covered != len {
            return Err(mismatch(format!("persist range {start:#x}+{len:#x}: only {covered} bytes are mapped")));
        }
        flushed += len;
    }
    pmem::cpu::sfence();
    println!(
        "fsapp: persisted {} range(s), {flushed} bytes, {nlines} cache lines written back + 1 fence (libfs itself: {lines_before} lines, {fences_before} fences)",
        ranges.len()
    );
    println!("fsapp: create passed: exiting without unmount (a crash after the persist)");
    Ok(())
}

/// Every name under `dir` (recursively), with its inode.
fn walk<S: Storage>(fs: &Fs<S>, dir: &str, out: &mut BTreeMap<String, (Kind, u64)>) -> Result<(), Failure> {
    for e in fs.readdir(dir).map_err(fs_err(dir))? {
        let path = if dir == "/" { format!("/{}", e.name) } else { format!("{dir}/{}", e.name) };
        if e.kind == Kind::Dir {
            walk(fs, &path, out)?;
        }
        out.insert(path, (e.kind, e.ino));
    }
    Ok(())
}

fn check(storage: PmemStorage<Mapped>, nonce: u64) -> Result<(), Failure> {
    verify(Fs::mount(storage).map_err(fs_err("mount"))?, nonce)
}

/// Boot 2 on any medium, after the mount: consistency, every name, every
/// byte (the ones stored through the mapping included), then fsck.
pub(crate) fn verify<S: Storage>(mut fs: Fs<S>, nonce: u64) -> Result<(), Failure> {
    let issues = fs.check();
    if let Some(i) = issues.first() {
        return Err(mismatch(format!("after mount: {} ({} issues)", i.what, issues.len())));
    }
    println!(
        "fsapp: mounted (recovery from checkpoint + log): {} data pages free, metadata consistent",
        fs.free_pages()
    );
    let want = expected(nonce);
    let mut found = BTreeMap::new();
    walk(&fs, "/", &mut found)?;
    for (p, (kind, _)) in &found {
        if !want.contains_key(p) {
            return Err(mismatch(format!("{p} ({kind:?}) exists but should not")));
        }
    }
    let (mut files, mut dirs, mut bytes) = (0, 0, 0u64);
    for (p, (kind, data)) in &want {
        let Some(&(k, ino)) = found.get(p) else {
            return Err(mismatch(format!("{p} is missing")));
        };
        if k != *kind {
            return Err(mismatch(format!("{p} is a {k:?}, expected {kind:?}")));
        }
        if k == Kind::Dir {
            dirs += 1;
            continue;
        }
        let st = fs.stat_ino(ino).map_err(fs_err(p))?;
        if st.size != data.len() as u64 {
            return Err(mismatch(format!("{p}: {} bytes, expected {}", st.size, data.len())));
        }
        let h = fs.open(p, OpenMode::READ).map_err(fs_err(p))?;
        let mut buf = vec![0u8; data.len()];
        let n = fs.pread(&h, 0, &mut buf).map_err(fs_err(p))?;
        if n != data.len() {
            return Err(mismatch(format!("{p}: read {n} of {} bytes", data.len())));
        }
        if let Some(at) = buf.iter().zip(data).position(|(a, b)| a != b) {
            return Err(mismatch(format!("{p}: byte {at} is {:#04x}, expected {:#04x}", buf[at], data[at])));
        }
        files += 1;
        bytes += n as u64;
    }
    for gone in [RENAME.0, UNLINK] {
        match fs.lookup(gone) {
            Err(Error::NotFound(_)) => {}
            other => return Err(mismatch(format!("{gone}: lookup answered {other:?}, expected NotFound"))),
        }
    }
    println!(
        "fsapp: verified {files} files ({bytes} bytes, {MAPPED_LEN} of them stored through the mapping) and {dirs} directories; {} and {} are gone",
        RENAME.0, UNLINK
    );
    let (report, _) = libfs::fsck::fsck(fs.into_storage(), false);
    let report = report.map_err(fs_err("fsck"))?;
    if !report.is_clean() {
        return Err(mismatch(format!("fsck: {} issue(s): {:?}", report.issues.len(), report.issues)));
    }
    println!("fsapp: fsck: clean (0 issues)");
    println!("fsapp: check passed");
    Ok(())
}
