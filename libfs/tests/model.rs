//! Model test: random operation sequences against an in-memory reference
//! file system, on both media, with clean remounts and crash-free
//! "unmount without sync" rollbacks along the way.
//!
//! Default: 8 seeds × 10,000 operations per medium. `LIBFS_MODEL_OPS`
//! overrides the count; the `#[ignore]`d `model_long` runs 32 seeds × 50,000.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use libfs::{Error, Fs, Geometry, Handle, Kind, OpenMode, Storage};

/// The reference: a tree of inodes, as plainly as possible.
#[derive(Clone, Default)]
struct Model {
    next: u64,
    /// (directory, name) → inode
    ents: BTreeMap<(u64, String), u64>,
    dirs: BTreeSet<u64>,
    files: BTreeMap<u64, Vec<u8>>,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum E {
    NotFound,
    Exists,
    NotEmpty,
    IsDir,
    NotDir,
    Invalid,
    NoSpace,
}

fn kind_of(e: &Error) -> E {
    match e {
        Error::NotFound(_) => E::NotFound,
        Error::Exists(_) => E::Exists,
        Error::NotEmpty(_) => E::NotEmpty,
        Error::IsDir(_) => E::IsDir,
        Error::NotDir(_) => E::NotDir,
        Error::Invalid(_) => E::Invalid,
        Error::NoSpace(_) => E::NoSpace,
        other => panic!("unexpected error {other:?}"),
    }
}

const ROOT: u64 = 1;

impl Model {
    fn new() -> Model {
        let mut m = Model { next: 2, ..Model::default() };
        m.dirs.insert(ROOT);
        m
    }
    fn lookup(&self, path: &str) -> Result<u64, E> {
        let mut cur = ROOT;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            if !self.dirs.contains(&cur) {
                return Err(E::NotDir);
            }
            cur = *self.ents.get(&(cur, c.to_string())).ok_or(E::NotFound)?;
        }
        Ok(cur)
    }
    fn parent(&self, path: &str) -> Result<(u64, String), E> {
        let (d, n) = path.rsplit_once('/').unwrap_or(("", path));
        let d = self.lookup(d)?;
        if !self.dirs.contains(&d) {
            return Err(E::NotDir);
        }
        Ok((d, n.to_string()))
    }
    fn nlink(&self, ino: u64) -> usize {
        self.ents.values().filter(|&&i| i == ino).count()
    }
    fn drop_name(&mut self, key: &(u64, String)) {
        let ino = self.ents.remove(key).unwrap();
        if self.nlink(ino) == 0 {
            self.files.remove(&ino);
            self.dirs.remove(&ino);
        }
    }
    fn is_empty_dir(&self, d: u64) -> bool {
        !self.ents.keys().any(|(p, _)| *p == d)
    }
    fn create(&mut self, path: &str, dir: bool) -> Result<(), E> {
        let k = self.parent(path)?;
        if self.ents.contains_key(&k) {
            return Err(E::Exists);
        }
        let ino = self.next;
        self.next += 1;
        if dir {
            self.dirs.insert(ino);
        } else {
            self.files.insert(ino, Vec::new());
        }
        self.ents.insert(k, ino);
        Ok(())
    }
    fn unlink(&mut self, path: &str, dir: bool) -> Result<(), E> {
        let k = self.parent(path)?;
        let ino = *self.ents.get(&k).ok_or(E::NotFound)?;
        match (dir, self.dirs.contains(&ino)) {
            (false, true) => return Err(E::IsDir),
            (true, false) => return Err(E::NotDir),
            (true, true) if !self.is_empty_dir(ino) => return Err(E::NotEmpty),
            _ => {}
        }
        self.drop_name(&k);
        Ok(())
    }
    fn link(&mut self, from: &str, to: &str) -> Result<(), E> {
        let ino = self.lookup(from)?;
        if self.dirs.contains(&ino) {
            return Err(E::IsDir);
        }
        let k = self.parent(to)?;
        if self.ents.contains_key(&k) {
            return Err(E::Exists);
        }
        self.ents.insert(k, ino);
        Ok(())
    }
    fn is_within(&self, mut d: u64, anc: u64) -> bool {
        loop {
            if d == anc {
                return true;
            }
            if d == ROOT {
                return false;
            }
            d = self.ents.iter().find(|(_, &i)| i == d).map(|(k, _)| k.0).unwrap();
        }
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), E> {
        let sk = self.parent(from)?;
        let ino = *self.ents.get(&sk).ok_or(E::NotFound)?;
        let dk = self.parent(to)?;
        let is_dir = self.dirs.contains(&ino);
        if is_dir && self.is_within(dk.0, ino) {
            return Err(E::Invalid);
        }
        if let Some(&old) = self.ents.get(&dk) {
            if old == ino {
                return Ok(());
            }
            match (is_dir, self.dirs.contains(&old)) {
                (true, false) => return Err(E::NotDir),
                (false, true) => return Err(E::IsDir),
                (true, true) if !self.is_empty_dir(old) => return Err(E::NotEmpty),
                _ => {}
            }
            self.drop_name(&dk);
        }
        self.ents.remove(&sk);
        self.ents.insert(dk, ino);
        Ok(())
    }
    fn file(&self, path: &str) -> Result<u64, E> {
        let ino = self.lookup(path)?;
        if self.dirs.contains(&ino) {
            return Err(E::IsDir);
        }
        Ok(ino)
    }
    fn snapshot(&self) -> Snapshot {
        let mut out = Snapshot::new();
        let mut first: BTreeMap<u64, String> = BTreeMap::new();
        let mut stack = vec![(ROOT, String::new())];
        while let Some((d, dp)) = stack.pop() {
            for ((_, name), &ino) in self.ents.range((d, String::new())..).take_while(|((p, _), _)| *p == d) {
                let path = format!("{dp}/{name}");
                let same_as = first.entry(ino).or_insert_with(|| path.clone()).clone();
                if self.dirs.contains(&ino) {
                    stack.push((ino, path.clone()));
                    out.insert(path, Node { kind: Kind::Dir, data: vec![], same_as });
                } else {
                    out.insert(path, Node { kind: Kind::File, data: self.files[&ino].clone(), same_as });
                }
            }
        }
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
}

const NAMES: &[&str] =
    &["a", "b", "c", "x", "x", "x/a", "x/b", "x/y", "x/y", "x/y/a", "x/y/b", "z", "z/a", "a/b", "x/z", "x/y/z"];

fn pick<'a>(rng: &mut Rng, v: &'a [&'a str]) -> &'a str {
    v[rng.below(v.len() as u64) as usize]
}

thread_local! {
    static COUNTS: std::cell::RefCell<BTreeMap<String, usize>> = Default::default();
}

fn count(what: &str) {
    COUNTS.with(|c| *c.borrow_mut().entry(what.to_string()).or_default() += 1);
}

fn same<T: std::fmt::Debug>(got: libfs::Result<T>, want: Result<(), E>, what: &str) -> Option<T> {
    count(&match &got {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{:?}", kind_of(e)),
    });
    match (got, want) {
        (Ok(v), Ok(())) => Some(v),
        (Err(e), Err(w)) => {
            assert_eq!(kind_of(&e), w, "{what}: {e}");
            None
        }
        (g, w) => panic!("{what}: got {g:?}, model says {w:?}"),
    }
}

fn run<S: Storage>(mut fs: Fs<S>, seed: u64, ops: usize, remount: impl Fn(S) -> Fs<S>) -> Fs<S> {
    let mut rng = Rng::new(common::seed(seed));
    let mut m = Model::new();
    let mut durable = m.clone();
    for step in 0..ops {
        let p = pick(&mut rng, NAMES).to_string();
        let q = pick(&mut rng, NAMES).to_string();
        let what = format!("seed {seed} step {step}");
        match rng.below(100) {
            0..=14 => {
                same(fs.create(&p, 0o644), m.create(&p, false), &format!("{what} create {p}"));
            }
            15..=21 => {
                same(fs.mkdir(&p, 0o755), m.create(&p, true), &format!("{what} mkdir {p}"));
            }
            22..=25 => {
                same(fs.unlink(&p), m.unlink(&p, false), &format!("{what} unlink {p}"));
            }
            26..=27 => {
                same(fs.rmdir(&p), m.unlink(&p, true), &format!("{what} rmdir {p}"));
            }
            28..=35 => {
                same(fs.rename(&p, &q), m.rename(&p, &q), &format!("{what} rename {p} {q}"));
            }
            36..=38 => {
                same(fs.link(&p, &q), m.link(&p, &q), &format!("{what} link {p} {q}"));
            }
            39..=69 => {
                // Data: pwrite / append / truncate, then read back — on an
                // existing file three times in four.
                let files: Vec<String> = m
                    .snapshot()
                    .into_iter()
                    .filter(|(_, n)| n.kind == Kind::File)
                    .map(|(p, _)| p[1..].to_string())
                    .collect();
                let p = if !files.is_empty() && rng.below(4) != 0 {
                    files[rng.below(files.len() as u64) as usize].clone()
                } else {
                    p
                };
                let Ok(ino) = m.file(&p) else {
                    let e = fs.open(&p, OpenMode::WRITE).map(|_| ());
                    same(e, m.file(&p).map(|_| ()), &format!("{what} open {p}"));
                    continue;
                };
                let mut h: Handle = fs.open(&p, OpenMode::WRITE).unwrap();
                let data = &mut m.files.get_mut(&ino).unwrap();
                let byte = rng.below(255) as u8 + 1;
                match rng.below(4) {
                    0 => {
                        let off = rng.below(60_000);
                        let len = rng.below(12_000) as usize;
                        let buf = vec![byte; len];
                        let r = fs.pwrite(&h, off, &buf).map(|_| ());
                        if r.is_ok() && len > 0 {
                            let end = off as usize + len;
                            if data.len() < end {
                                data.resize(end, 0);
                            }
                            data[off as usize..end].fill(byte);
                        } else if let Err(e) = r {
                            count("NoSpace");
                            assert_eq!(kind_of(&e), E::NoSpace, "{what}");
                        }
                    }
                    1 => {
                        let len = rng.below(5_000) as usize;
                        match fs.append(&mut h, &vec![byte; len]) {
                            Ok(_) => data.extend(std::iter::repeat_n(byte, len)),
                            Err(e) => {
                                count("NoSpace");
                                assert_eq!(kind_of(&e), E::NoSpace, "{what}");
                            }
                        }
                    }
                    _ => {
                        let size = rng.below(24_000);
                        if let Err(e) = fs.truncate(&h, size) {
                            // Growing an unaligned end copies its page.
                            assert_eq!(kind_of(&e), E::NoSpace, "{what}");
                            count("NoSpace");
                            continue;
                        }
                        data.resize(size as usize, 0);
                    }
                }
                let mut got = vec![0u8; data.len() + 10];
                let n = fs.pread(&h, 0, &mut got).unwrap();
                assert_eq!(n, data.len(), "{what} size of {p}");
                assert!(got[..n] == data[..], "{what} contents of {p}");
                assert_eq!(fs.stat(&p).unwrap().size, data.len() as u64);
                count("data op checked");
            }
            70..=79 => {
                fs.sync().unwrap();
                durable = m.clone();
            }
            80..=81 => {
                // Clean unmount and mount.
                fs.sync().unwrap();
                durable = m.clone();
                fs = remount(fs.into_storage());
                let d = diff(&snapshot(&mut fs), &m.snapshot());
                assert!(d.is_empty(), "{what} after remount: {d}");
            }
            82 => {
                // Unmount without sync: what was not committed is gone
                // (the simulators keep current contents; only metadata
                // was not committed, so the durable tree is the last sync).
                // Data overwritten in place stays overwritten: compare the
                // shape, then take the contents from the file system.
                fs = remount(fs.into_storage());
                m = durable.clone();
                let got = snapshot(&mut fs);
                assert_eq!(shape(&got), shape(&m.snapshot()), "{what} after rollback");
                for (path, node) in got {
                    if node.kind == Kind::File {
                        let ino = m.lookup(&path).unwrap();
                        m.files.insert(ino, node.data);
                    }
                }
            }
            83..=89 => {
                let s = same(fs.stat(&p), m.lookup(&p).map(|_| ()), &format!("{what} stat {p}"));
                if let Some(s) = s {
                    let ino = m.lookup(&p).unwrap();
                    assert_eq!(s.kind == Kind::Dir, m.dirs.contains(&ino));
                    if s.kind == Kind::File {
                        assert_eq!(s.nlink as usize, m.nlink(ino), "{what} nlink {p}");
                    }
                }
            }
            _ => {
                let d = same(
                    fs.readdir(&p),
                    m.lookup(&p).and_then(|i| if m.dirs.contains(&i) { Ok(()) } else { Err(E::NotDir) }),
                    &format!("{what} readdir {p}"),
                );
                if let Some(d) = d {
                    let ino = m.lookup(&p).unwrap();
                    let want: Vec<String> =
                        m.ents.keys().filter(|(dd, _)| *dd == ino).map(|(_, n)| n.clone()).collect();
                    let got: Vec<String> = d.into_iter().map(|e| e.name).collect();
                    assert_eq!(got, want, "{what} readdir {p}");
                }
            }
        }
        if step % 1000 == 999 {
            assert!(fs.check().is_empty(), "{what}: {:?}", fs.check());
        }
    }
    let d = diff(&snapshot(&mut fs), &m.snapshot());
    assert!(d.is_empty(), "seed {seed}: final tree: {d}");
    fs.sync().unwrap();
    COUNTS.with(|c| {
        *c.borrow_mut().entry("checkpoints (since last mount)".into()).or_default() += fs.checkpoints as usize
    });
    COUNTS.with(|c| println!("after seed {seed} ({ops} operations each), cumulative outcomes: {:?}", c.borrow()));
    fs
}

fn ops() -> usize {
    std::env::var("LIBFS_MODEL_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

// 256 KiB media: small enough that NoSpace happens, checkpoints are frequent.
const PAGES: u64 = 64;
const GEO: Geometry = Geometry { ckpt_pages: Some(4), log_pages: Some(4) };

fn model_pmem(seeds: std::ops::Range<u64>, ops: usize) {
    for seed in seeds {
        let fs = run(pmem_fs(PAGES, GEO), seed, ops, |st| Fs::mount(st).unwrap());
        let img = fs.into_storage().into_inner().crash_image_strict();
        let mut fs = mount_pmem(img).unwrap();
        assert!(fs.check().is_empty());
        let _ = snapshot(&mut fs);
    }
}

fn model_block(seeds: std::ops::Range<u64>, ops: usize) {
    for seed in seeds {
        let fs = run(block_fs(PAGES, GEO), seed, ops, |st| Fs::mount(st).unwrap());
        let img = fs.into_storage().into_inner().crash_image_strict();
        let fs = mount_block(img).unwrap();
        assert!(fs.check().is_empty());
    }
}

#[test]
fn model_pmem_8_seeds() {
    model_pmem(0..8, ops());
}

#[test]
fn model_block_8_seeds() {
    model_block(100..108, ops());
}

#[test]
#[ignore = "long: 32 seeds × 50,000 operations per medium"]
fn model_long() {
    model_pmem(1000..1032, 50_000);
    model_block(2000..2032, 50_000);
}
