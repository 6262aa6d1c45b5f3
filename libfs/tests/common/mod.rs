//! Shared test helpers: the two simulated media (libdb's and pmem's crash
//! simulators), and a snapshot of a whole tree for comparisons.
#![allow(dead_code)]

use std::collections::BTreeMap;

use libdb::sim::SimBlockDevice;
use libfs::{BlockStorage, Fs, Geometry, Kind, OpenMode, PmemStorage, Storage};
use pmem::SimPmem;

pub type PmemFs = Fs<PmemStorage<SimPmem>>;
pub type BlockFs = Fs<BlockStorage<SimBlockDevice>>;

/// 512-byte sectors: a 4 KiB page write can tear at every sector.
pub const SECTOR: usize = 512;

pub fn pmem_fs(pages: u64, geo: Geometry) -> PmemFs {
    Fs::mkfs(PmemStorage::new(SimPmem::new(pages as usize * 4096)), geo).unwrap()
}

pub fn block_fs(pages: u64, geo: Geometry) -> BlockFs {
    Fs::mkfs(BlockStorage::new(SimBlockDevice::new(SECTOR, pages * 8)), geo).unwrap()
}

pub fn mount_pmem(img: Vec<u8>) -> libfs::Result<PmemFs> {
    Fs::mount(PmemStorage::new(SimPmem::from_image(img)))
}

pub fn mount_block(img: Vec<u8>) -> libfs::Result<BlockFs> {
    Fs::mount(BlockStorage::new(SimBlockDevice::from_image(SECTOR, img)))
}

/// One path of a tree: kind, contents, and the first path naming the same
/// inode (so hard links are compared too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    pub data: Vec<u8>,
    pub same_as: String,
}

pub type Snapshot = BTreeMap<String, Node>;

/// Every path below the root with its contents.
pub fn snapshot<S: Storage>(fs: &mut Fs<S>) -> Snapshot {
    let mut out = Snapshot::new();
    let mut first: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        for e in fs.readdir(if dir.is_empty() { "/" } else { &dir }).unwrap() {
            let path = format!("{dir}/{}", e.name);
            let same_as = first.entry(e.ino).or_insert_with(|| path.clone()).clone();
            let data = if e.kind == Kind::File {
                let h = fs.open(&path, OpenMode::READ).unwrap();
                let size = fs.stat_ino(e.ino).unwrap().size as usize;
                let mut buf = vec![0u8; size];
                assert_eq!(fs.pread(&h, 0, &mut buf).unwrap(), size);
                buf
            } else {
                stack.push(path.clone());
                Vec::new()
            };
            out.insert(path, Node { kind: e.kind, data, same_as });
        }
    }
    // `same_as` depends on traversal order: normalise to the smallest path.
    let mut canon: BTreeMap<String, String> = BTreeMap::new();
    for (p, n) in &out {
        let c = canon.entry(n.same_as.clone()).or_insert_with(|| p.clone());
        if p < c {
            *c = p.clone();
        }
    }
    for n in out.values_mut() {
        n.same_as = canon[&n.same_as].clone();
    }
    out
}

/// A seed for `Rng::new` / `CrashPoint::random`. Written when
/// `XorShift::new` set the low bit of its state (seeds `2k` and `2k + 1`
/// were the same sequence); seeds now go through SplitMix64's finaliser
/// (`testrng::Rng::new`), so every seed is its own sequence and the
/// doubling is no longer needed. It is kept so the tests draw the same
/// sequences as before.
pub fn seed(n: u64) -> u64 {
    n << 1
}

/// Deterministic generator (the one the crash simulators use).
#[allow(unused_imports)]
pub use pmem::sim::XorShift as Rng;

/// A short description of how two trees differ ("" if equal).
pub fn diff(got: &Snapshot, want: &Snapshot) -> String {
    let mut out = String::new();
    for (p, n) in got {
        match want.get(p) {
            None => out += &format!("extra {p} ({:?}, {} bytes); ", n.kind, n.data.len()),
            Some(w) if w != n => {
                let first = n.data.iter().zip(&w.data).position(|(a, b)| a != b);
                out += &format!(
                    "{p}: got {:?} {} bytes link {} / want {:?} {} bytes link {}, first differing byte {first:?}; ",
                    n.kind,
                    n.data.len(),
                    n.same_as,
                    w.kind,
                    w.data.len(),
                    w.same_as
                );
            }
            _ => {}
        }
    }
    for (p, w) in want {
        if !got.contains_key(p) {
            out += &format!("missing {p} ({:?}, {} bytes); ", w.kind, w.data.len());
        }
    }
    out
}

/// Names, kinds, sizes and links only (contents of files whose data was
/// overwritten in place are not rolled back by a crash).
pub fn shape(s: &Snapshot) -> Vec<(String, Kind, usize, String)> {
    s.iter().map(|(p, n)| (p.clone(), n.kind, n.data.len(), n.same_as.clone())).collect()
}
