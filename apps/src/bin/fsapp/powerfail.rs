//! The power-fail workload of libfs on NVMe (`cargo xtask powerfail`,
//! mode `fs`): the same protocol as kvdb's (`kvdb/powerfail.rs`), so the
//! host's replay and oracle are the same. The drive sits behind QEMU's
//! `blklogwrites`; the host rebuilds the medium as a power cut would have
//! left it and boots it into [`check`].
//!
//! * [`load`]: mkfs (with a small log, so checkpoints happen during the
//!   run), `/pf`, the mapped file [`MAP`] (allocated, mapped by the pager)
//!   and the marker `/pf/seq-0`, synced: `EXO-PF created written=B`. Then
//!   operations 1..=N, each chosen by [`Model::next`] from the nonce, the
//!   sequence number and the files that exist: create a file, append to
//!   one, rename one (over another or not), or store into the mapped file.
//!   With each operation the marker is renamed to `/pf/seq-S`; then an
//!   `fsync` (or, after a store, `msync` of the stored range) and, once it
//!   has returned, `EXO-PF durable seq=S written=B`: operations 1..=S are
//!   durable once the first B bytes this process wrote are on the medium.
//! * [`check`]: mount (recovery), libfs's consistency check; the marker
//!   names M; then the state must be exactly the model's after operation
//!   M — every name in `/pf`, every size and byte — except that the bytes
//!   operation M+1 stored into the mapped file may each be old or new
//!   (an msync writes data in place before its commit: ordered mode, not
//!   atomic data). Then fsck. `EXO-PF recovered seq=M`. A medium without
//!   the file system or without `/pf` is `EXO-PF recovered none`, which the
//!   host allows only before `created` was acknowledged.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use exo_rt::println;
use libdb::BlockStorage;
use libfs::{Error, Fs, Geometry, OpenMode};

use crate::blockdev::BlockqDevice;
use crate::nvme::{locked, msync, start_pager, window};
use crate::paging::MAP_VA;
use crate::tree::{fs_err, mismatch, Failure, FS_ERROR};

/// The workload's directory.
const DIR: &str = "/pf";
/// The file stored into through its mapping.
const MAP: &str = "/pf/map";
const MAP_BYTES: u64 = 64 * 1024;
/// Name slots of the other files: `/pf/f0` .. `/pf/f7`.
const SLOTS: u64 = 8;
/// Appends stop (the operation becomes a store) past this size.
const FILE_CAP: u64 = 32 * 1024;
/// The log: 8 pages (32 KiB, about 50 commits), so the run fills it and
/// checkpoints several times: cuts fall inside checkpoints too.
const LOG_PAGES: u64 = 8;

fn slot_path(slot: u64) -> String {
    format!("{DIR}/f{slot}")
}

fn marker(seq: u64) -> String {
    format!("{DIR}/seq-{seq}")
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 32)
}

/// The bytes operation `seq` writes: `len` of them, a function of both.
fn data(nonce: u64, seq: u64, len: u64) -> Vec<u8> {
    let base = mix(nonce ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (0..len).map(|i| (mix(base ^ (i / 8)) >> ((i % 8) * 8)) as u8).collect()
}

/// One operation of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Create { slot: u64, len: u64 },
    Append { slot: u64, len: u64 },
    Rename { from: u64, to: u64 },
    Store { at: u64, len: u64 },
}

/// What the file system holds after some operation: the slot files'
/// bytes and the mapped file's.
#[derive(Clone)]
struct Model {
    files: BTreeMap<u64, Vec<u8>>,
    map: Vec<u8>,
}

impl Model {
    fn new() -> Model {
        Model { files: BTreeMap::new(), map: vec![0; MAP_BYTES as usize] }
    }

    /// Operation `seq`, chosen from the nonce and what exists.
    fn next(&self, nonce: u64, seq: u64) -> Op {
        let h = mix(nonce ^ seq.wrapping_mul(0xd6e8_feb8_6659_fd93));
        let slot = (h >> 8) % SLOTS;
        let len = 1 + (h >> 20) % 6000;
        let store = || {
            let at = (h >> 40) % MAP_BYTES;
            Op::Store { at, len: len.min(MAP_BYTES - at) }
        };
        let exists = self.files.get(&slot).map(|f| f.len() as u64);
        match (h % 8, exists) {
            (0..=3, None) => Op::Create { slot, len },
            (0..=3, Some(size)) if size < FILE_CAP => Op::Append { slot, len: 1 + len / 2 },
            (4 | 5, Some(_)) => Op::Rename { from: slot, to: (slot + 1 + (h >> 32) % (SLOTS - 1)) % SLOTS },
            (4 | 5, None) => Op::Create { slot, len },
            _ => store(),
        }
    }

    fn apply(&mut self, nonce: u64, seq: u64, op: &Op) {
        match *op {
            Op::Create { slot, len } => {
                self.files.insert(slot, data(nonce, seq, len));
            }
            Op::Append { slot, len } => self.files.entry(slot).or_default().extend(data(nonce, seq, len)),
            Op::Rename { from, to } => {
                if let Some(f) = self.files.remove(&from) {
                    self.files.insert(to, f);
                }
            }
            Op::Store { at, len } => {
                self.map[at as usize..(at + len) as usize].copy_from_slice(&data(nonce, seq, len));
            }
        }
    }
}

type Dev = BlockStorage<BlockqDevice>;

fn written(fs: &Fs<Dev>) -> u64 {
    fs.storage().device().counters.bytes_written
}

/// `fsapp nvme pfload <operations>`.
pub fn load(storage: Dev, nonce: u64, ops: u64) -> Result<(), Failure> {
    let mut fs =
        Fs::mkfs(storage, Geometry { log_pages: Some(LOG_PAGES), ..Geometry::default() }).map_err(fs_err("mkfs"))?;
    fs.mkdir(DIR, 0o755).map_err(fs_err(DIR))?;
    let h = fs.open(MAP, OpenMode::CREATE).map_err(fs_err(MAP))?;
    fs.allocate(&h, MAP_BYTES).map_err(fs_err(MAP))?;
    fs.create(&marker(0), 0o644).map_err(fs_err("the marker"))?;
    fs.sync().map_err(fs_err("sync"))?;
    println!("EXO-PF created written={}", written(&fs));
    println!("EXO-PF start mode=fs commits={ops}");
    start_pager(fs, MAP_BYTES)?;
    locked(|p| p.pager.map_file(h, MAP_VA, MAP_BYTES).map_err(|e| (FS_ERROR, format!("{e}"))))?;
    let w = window(MAP_BYTES)?;
    let mut model = Model::new();
    let mut counts = [0u64; 4];
    for seq in 1..=ops {
        let op = model.next(nonce, seq);
        let ctx = |what: &str| format!("operation {seq} ({op:?}): {what}");
        let bytes = match op {
            Op::Create { len, .. } | Op::Append { len, .. } | Op::Store { len, .. } => data(nonce, seq, len),
            Op::Rename { .. } => Vec::new(),
        };
        if let Op::Store { at, .. } = op {
            // Straight into the mapped pages (the pager's faults), no libfs call.
            w.write(at, &bytes);
        }
        locked(|p| {
            let fs = &mut p.fs;
            match op {
                Op::Create { slot, .. } => {
                    let path = slot_path(slot);
                    let mut h = fs.open(&path, OpenMode::CREATE).map_err(fs_err(&ctx("open")))?;
                    fs.write(&mut h, &bytes).map_err(fs_err(&ctx("write")))?;
                }
                Op::Append { slot, .. } => {
                    let path = slot_path(slot);
                    let mut h = fs.open(&path, OpenMode::WRITE).map_err(fs_err(&ctx("open")))?;
                    fs.append(&mut h, &bytes).map_err(fs_err(&ctx("append")))?;
                }
                Op::Rename { from, to } => {
                    fs.rename(&slot_path(from), &slot_path(to)).map_err(fs_err(&ctx("rename")))?
                }
                Op::Store { .. } => {}
            }
            fs.rename(&marker(seq - 1), &marker(seq)).map_err(fs_err(&ctx("the marker")))
        })?;
        match op {
            Op::Store { at, len } => msync(MAP_VA + at, len)?,
            _ => locked(|p| p.fs.sync().map_err(fs_err(&ctx("fsync"))))?,
        }
        model.apply(nonce, seq, &op);
        counts[match op {
            Op::Create { .. } => 0,
            Op::Append { .. } => 1,
            Op::Rename { .. } => 2,
            Op::Store { .. } => 3,
        }] += 1;
        println!("EXO-PF durable seq={seq} written={}", locked(|p| Ok(written(&p.fs)))?);
    }
    let (commits, checkpoints, total) = locked(|p| Ok((p.fs.commits, p.fs.checkpoints, written(&p.fs))))?;
    println!(
        "fsapp: {ops} operations: {} creates, {} appends, {} renames, {} stores + msync; {commits} commits, {checkpoints} checkpoints",
        counts[0], counts[1], counts[2], counts[3]
    );
    println!("EXO-PF done commits={ops} written={total}");
    // No unmount: the machine is cut off after this, like a power failure.
    Ok(())
}

/// `fsapp nvme pfcheck`: recover and require the model's state after the
/// operation the marker names.
pub fn check(storage: Dev, nonce: u64) -> Result<(), Failure> {
    let mut fs = match Fs::mount(storage) {
        Ok(fs) => fs,
        Err(e) => {
            println!("EXO-PF recovered none: mount: {e}");
            return Ok(());
        }
    };
    let issues = fs.check();
    if let Some(i) = issues.first() {
        return Err(mismatch(format!("after mount: {} ({} issues)", i.what, issues.len())));
    }
    let entries = match fs.readdir(DIR) {
        Ok(e) => e,
        Err(Error::NotFound(_)) => {
            println!("EXO-PF recovered none: no {DIR} (the workload's first commit is not on the medium)");
            return Ok(());
        }
        Err(e) => return Err(fs_err(DIR)(e)),
    };
    let mut markers = Vec::new();
    let mut names = Vec::new();
    for e in &entries {
        match e.name.strip_prefix("seq-") {
            Some(n) => markers.push(n.parse::<u64>().map_err(|_| mismatch(format!("marker {DIR}/{}", e.name)))?),
            None => names.push(e.name.clone()),
        }
    }
    let [m] = markers[..] else {
        return Err(mismatch(format!("{} markers in {DIR}: {markers:?}", markers.len())));
    };
    let mut model = Model::new();
    for seq in 1..=m {
        let op = model.next(nonce, seq);
        model.apply(nonce, seq, &op);
    }
    // The names: the map and exactly the model's files.
    let mut want: Vec<String> = model.files.keys().map(|s| format!("f{s}")).collect();
    want.push(String::from("map"));
    want.sort();
    names.sort();
    if names != want {
        return Err(mismatch(format!("after operation {m}, {DIR} holds {names:?}, expected {want:?}")));
    }
    for (slot, bytes) in &model.files {
        let got = read_all(&mut fs, &slot_path(*slot))?;
        if let Some(why) = differs(&got, bytes) {
            return Err(mismatch(format!("after operation {m}: {}: {why}", slot_path(*slot))));
        }
    }
    // The mapped file: operation m+1's stored bytes may be old or new.
    let got = read_all(&mut fs, MAP)?;
    let next = model.next(nonce, m + 1);
    let mut after = model.clone();
    after.apply(nonce, m + 1, &next);
    if got.len() != model.map.len() {
        return Err(mismatch(format!("{MAP} holds {} bytes, expected {}", got.len(), model.map.len())));
    }
    if let Some(at) = (0..got.len()).find(|&i| got[i] != model.map[i] && got[i] != after.map[i]) {
        return Err(mismatch(format!(
            "after operation {m}: {MAP} byte {at} is {:#04x}, expected {:#04x} (or {:#04x} of operation {})",
            got[at],
            model.map[at],
            after.map[at],
            m + 1
        )));
    }
    let (report, _) = libfs::fsck::fsck(fs.into_storage(), false);
    let report = report.map_err(fs_err("fsck"))?;
    if !report.is_clean() {
        return Err(mismatch(format!("fsck: {} issue(s): {:?}", report.issues.len(), report.issues)));
    }
    println!(
        "fsapp: recovered the state after operation {m}: {} files, every byte as the model's; fsck clean",
        model.files.len() + 1
    );
    println!("EXO-PF recovered seq={m}");
    Ok(())
}

fn read_all(fs: &mut Fs<Dev>, path: &str) -> Result<Vec<u8>, Failure> {
    let size = fs.stat(path).map_err(fs_err(path))?.size;
    let h = fs.open(path, OpenMode::READ).map_err(fs_err(path))?;
    let mut buf = vec![0u8; size as usize];
    let n = fs.pread(&h, 0, &mut buf).map_err(fs_err(path))?;
    if n as u64 != size {
        return Err(mismatch(format!("{path}: read {n} of {size} bytes")));
    }
    Ok(buf)
}

fn differs(got: &[u8], want: &[u8]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{} bytes, expected {}", got.len(), want.len()));
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b)?;
    Some(format!("byte {at} is {:#04x}, expected {:#04x}", got[at], want[at]))
}
