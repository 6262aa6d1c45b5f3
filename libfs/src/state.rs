//! The metadata state: inodes and directories, as rebuilt from a
//! checkpoint plus the log, and the consistency rules it must satisfy
//! (checked on every mount and by fsck).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::format::{InodeRec, Kind, Record, MAX_NAME};

pub const ROOT_INO: u64 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub kind: Kind,
    pub mode: u16,
    /// Directory entries naming a file (directories: always 1).
    pub nlink: u32,
    pub size: u64,
    pub mtime: u64,
    /// Directories: the directory holding this one (the root: itself).
    pub parent: u64,
    /// (file page, medium page, pages), sorted by file page, never empty runs.
    pub extents: Vec<(u64, u64, u64)>,
}

impl Inode {
    pub fn new(kind: Kind, mode: u16, parent: u64) -> Inode {
        Inode { kind, mode, nlink: 1, size: 0, mtime: 0, parent, extents: Vec::new() }
    }

    pub fn to_rec(&self, ino: u64) -> InodeRec {
        InodeRec {
            ino,
            kind: self.kind,
            mode: self.mode,
            nlink: self.nlink,
            size: self.size,
            mtime: self.mtime,
            parent: self.parent,
            extents: self.extents.clone(),
        }
    }

    fn from_rec(r: &InodeRec) -> Inode {
        Inode {
            kind: r.kind,
            mode: r.mode,
            nlink: r.nlink,
            size: r.size,
            mtime: r.mtime,
            parent: r.parent,
            extents: r.extents.clone(),
        }
    }

    /// The medium page holding file page `fpage`, if allocated.
    pub fn lookup(&self, fpage: u64) -> Option<u64> {
        let i = self.extents.partition_point(|e| e.0 <= fpage);
        let (f, m, n) = *self.extents.get(i.checked_sub(1)?)?;
        (fpage < f.saturating_add(n)).then_some(m.saturating_add(fpage - f))
    }

    /// Records that file page `fpage` (currently a hole) lives at `mpage`,
    /// growing a neighbouring run where it is contiguous.
    pub fn map(&mut self, fpage: u64, mpage: u64) {
        let i = self.extents.partition_point(|e| e.0 <= fpage);
        if i > 0 {
            let e = &mut self.extents[i - 1];
            if e.0 + e.2 == fpage && e.1 + e.2 == mpage {
                e.2 += 1;
                // Maybe now touches the next run.
                if let Some(&(nf, nm, nn)) = self.extents.get(i) {
                    if nf == fpage + 1 && nm == mpage + 1 {
                        self.extents[i - 1].2 += nn;
                        self.extents.remove(i);
                    }
                }
                return;
            }
        }
        if let Some(e) = self.extents.get_mut(i) {
            if e.0 == fpage + 1 && e.1 == mpage + 1 {
                e.0 -= 1;
                e.1 -= 1;
                e.2 += 1;
                return;
            }
        }
        self.extents.insert(i, (fpage, mpage, 1));
    }

    /// Drops every page at or past file page `keep`, returning the medium
    /// pages released.
    pub fn cut(&mut self, keep: u64) -> Vec<u64> {
        let mut freed = Vec::new();
        // An extent of absurd length only exists in a damaged image (mount
        // refuses it; fsck reports it): drop it without listing its pages.
        let sane = |m: u64, n: u64| n <= 1 << 40 && m.checked_add(n).is_some();
        self.extents.retain_mut(|e| {
            if e.0 >= keep {
                if sane(e.1, e.2) {
                    freed.extend(e.1..e.1 + e.2);
                }
                false
            } else {
                if e.0.saturating_add(e.2) > keep {
                    let n = keep - e.0;
                    if sane(e.1, e.2) {
                        freed.extend(e.1 + n..e.1 + e.2);
                    }
                    e.2 = n;
                }
                true
            }
        });
        freed
    }
}

/// A complete metadata state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub inodes: BTreeMap<u64, Inode>,
    pub dirs: BTreeMap<u64, BTreeMap<Vec<u8>, u64>>,
}

impl State {
    /// A fresh file system: an empty root directory.
    pub fn empty() -> State {
        let mut s = State::default();
        s.inodes.insert(ROOT_INO, Inode::new(Kind::Dir, 0o755, ROOT_INO));
        s.dirs.insert(ROOT_INO, BTreeMap::new());
        s
    }

    /// Applies one record. Records are applied leniently (a `DirAdd` may
    /// precede the `SetInode` of its directory within one commit); the
    /// result is checked as a whole by [`State::check`].
    pub fn apply(&mut self, r: &Record) {
        match r {
            Record::SetInode(rec) => {
                if rec.kind == Kind::Dir {
                    self.dirs.entry(rec.ino).or_default();
                }
                self.inodes.insert(rec.ino, Inode::from_rec(rec));
            }
            Record::FreeInode(ino) => {
                self.inodes.remove(ino);
                self.dirs.remove(ino);
            }
            Record::DirAdd { dir, ino, name } => {
                self.dirs.entry(*dir).or_default().insert(name.clone(), *ino);
            }
            Record::DirRemove { dir, name } => {
                if let Some(d) = self.dirs.get_mut(dir) {
                    d.remove(name);
                }
            }
        }
    }

    /// Records that rebuild this state from nothing (a checkpoint payload).
    pub fn to_records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self.inodes.iter().map(|(&ino, i)| Record::SetInode(i.to_rec(ino))).collect();
        for (&dir, entries) in &self.dirs {
            for (name, &ino) in entries {
                out.push(Record::DirAdd { dir, ino, name: name.clone() });
            }
        }
        out
    }

    /// Every inconsistency, each with the repair fsck may apply.
    /// `data` is the range of medium pages that may hold file data.
    pub fn check(&self, data: core::ops::Range<u64>) -> Vec<Issue> {
        let mut out = Vec::new();
        match self.inodes.get(&ROOT_INO) {
            Some(r) if r.kind == Kind::Dir => {}
            _ => out.push(Issue { what: "root directory (inode 1) missing or not a directory".into(), repair: None }),
        }
        // Directory entries: valid names, existing targets, reference counts.
        let mut refs: BTreeMap<u64, Vec<(u64, &[u8])>> = BTreeMap::new();
        for (&dir, entries) in &self.dirs {
            match self.inodes.get(&dir) {
                Some(i) if i.kind == Kind::Dir => {}
                _ => {
                    out.push(Issue {
                        what: format!("entries of inode {dir}, which is not a directory"),
                        repair: Some(Repair::DropDir(dir)),
                    });
                    continue;
                }
            }
            for (name, &ino) in entries {
                let shown = String::from_utf8_lossy(name);
                if !valid_name(name) {
                    out.push(Issue {
                        what: format!("directory {dir}: invalid name {shown:?}"),
                        repair: Some(Repair::DropEntry(dir, name.clone())),
                    });
                } else if !self.inodes.contains_key(&ino) {
                    out.push(Issue {
                        what: format!("directory {dir}: entry {shown:?} names missing inode {ino}"),
                        repair: Some(Repair::DropEntry(dir, name.clone())),
                    });
                } else {
                    refs.entry(ino).or_default().push((dir, name));
                }
            }
        }
        let mut owner: BTreeMap<u64, u64> = BTreeMap::new();
        for (&ino, i) in &self.inodes {
            let r = refs.get(&ino).map_or(&[][..], |v| &v[..]);
            match i.kind {
                Kind::Dir => {
                    if ino == ROOT_INO {
                        if !r.is_empty() {
                            out.push(Issue {
                                what: "root directory is linked from a directory".into(),
                                repair: Some(Repair::DropEntry(r[0].0, r[0].1.to_vec())),
                            });
                        }
                    } else if r.is_empty() {
                        out.push(Issue {
                            what: format!("directory inode {ino} is not in any directory"),
                            repair: Some(Repair::LinkOrphan(ino)),
                        });
                    } else {
                        for extra in &r[1..] {
                            out.push(Issue {
                                what: format!("directory inode {ino} has a second name in directory {}", extra.0),
                                repair: Some(Repair::DropEntry(extra.0, extra.1.to_vec())),
                            });
                        }
                        if i.parent != r[0].0 {
                            out.push(Issue {
                                what: format!("directory inode {ino}: parent {} but lives in {}", i.parent, r[0].0),
                                repair: Some(Repair::SetParent(ino, r[0].0)),
                            });
                        }
                    }
                    if i.size != 0 || !i.extents.is_empty() || i.nlink != 1 {
                        out.push(Issue {
                            what: format!("directory inode {ino}: has data pages, a size or a link count"),
                            repair: Some(Repair::ClearDir(ino)),
                        });
                    }
                    if !self.dirs.contains_key(&ino) {
                        out.push(Issue {
                            what: format!("directory inode {ino}: no entry table"),
                            repair: Some(Repair::ClearDir(ino)),
                        });
                    }
                }
                Kind::File => {
                    if r.is_empty() {
                        out.push(Issue {
                            what: format!("file inode {ino} is not in any directory (orphan)"),
                            repair: Some(Repair::LinkOrphan(ino)),
                        });
                    } else if i.nlink as usize != r.len() {
                        out.push(Issue {
                            what: format!("file inode {ino}: link count {} but {} names", i.nlink, r.len()),
                            repair: Some(Repair::SetNlink(ino, r.len() as u32)),
                        });
                    }
                }
            }
            // Extents: sorted, inside the data area, past-EOF pages, sharing.
            let mut next_fpage = 0;
            let size_pages = i.size.div_ceil(crate::format::PAGE_SIZE as u64);
            for &(f, m, n) in &i.extents {
                let bad_range = n == 0
                    || f < next_fpage
                    || m < data.start
                    || m.checked_add(n).is_none_or(|e| e > data.end)
                    || f.checked_add(n).is_none();
                if bad_range {
                    out.push(Issue {
                        what: format!(
                            "inode {ino}: extent (file page {f}, medium page {m}, {n} pages) out of order or outside the data area"
                        ),
                        repair: None,
                    });
                    continue;
                }
                next_fpage = f + n;
                if f + n > size_pages {
                    out.push(Issue {
                        what: format!("inode {ino}: pages past its size {}", i.size),
                        repair: Some(Repair::Trim(ino)),
                    });
                }
                for p in m..m + n {
                    if let Some(other) = owner.insert(p, ino) {
                        out.push(Issue {
                            what: format!("medium page {p} belongs to inode {other} and inode {ino}"),
                            repair: None,
                        });
                        break;
                    }
                }
            }
        }
        // Reachability: every directory must lead up to the root (no cycles).
        let mut reach: BTreeSet<u64> = BTreeSet::new();
        let mut stack = alloc::vec![ROOT_INO];
        while let Some(d) = stack.pop() {
            if !reach.insert(d) {
                continue;
            }
            if let Some(es) = self.dirs.get(&d) {
                stack.extend(es.values().copied().filter(|i| self.inodes.get(i).is_some_and(|n| n.kind == Kind::Dir)));
            }
        }
        for (&ino, i) in &self.inodes {
            if i.kind == Kind::Dir && !reach.contains(&ino) && refs.contains_key(&ino) {
                out.push(Issue {
                    what: format!("directory inode {ino} is cut off from the root (a cycle)"),
                    repair: None,
                });
            }
        }
        out
    }

    /// Applies the repairs of `issues` that have one; returns how many.
    pub fn repair(&mut self, issues: &[Issue], next_ino: &mut u64) -> usize {
        let mut done = 0;
        for is in issues {
            let Some(r) = &is.repair else { continue };
            done += 1;
            match r {
                Repair::DropEntry(dir, name) => {
                    if let Some(d) = self.dirs.get_mut(dir) {
                        d.remove(name);
                    }
                }
                Repair::DropDir(dir) => {
                    self.dirs.remove(dir);
                }
                Repair::SetNlink(ino, n) => {
                    if let Some(i) = self.inodes.get_mut(ino) {
                        i.nlink = *n;
                    }
                }
                Repair::SetParent(ino, p) => {
                    if let Some(i) = self.inodes.get_mut(ino) {
                        i.parent = *p;
                    }
                }
                Repair::ClearDir(ino) => {
                    if let Some(i) = self.inodes.get_mut(ino) {
                        i.size = 0;
                        i.extents.clear();
                        i.nlink = 1;
                    }
                    self.dirs.entry(*ino).or_default();
                }
                Repair::Trim(ino) => {
                    if let Some(i) = self.inodes.get_mut(ino) {
                        let keep = i.size.div_ceil(crate::format::PAGE_SIZE as u64);
                        i.cut(keep);
                    }
                }
                Repair::LinkOrphan(ino) => {
                    let lf = self.lost_found(next_ino);
                    let name = format!("#{ino}").into_bytes();
                    self.dirs.entry(lf).or_default().insert(name, *ino);
                    if let Some(i) = self.inodes.get_mut(ino) {
                        if i.kind == Kind::Dir {
                            i.parent = lf;
                        } else {
                            i.nlink = 1;
                        }
                    }
                }
            }
        }
        done
    }

    fn lost_found(&mut self, next_ino: &mut u64) -> u64 {
        if let Some(&ino) = self.dirs.get(&ROOT_INO).and_then(|d| d.get(&b"lost+found"[..])) {
            return ino;
        }
        let ino = *next_ino;
        *next_ino += 1;
        self.inodes.insert(ino, Inode::new(Kind::Dir, 0o700, ROOT_INO));
        self.dirs.insert(ino, BTreeMap::new());
        self.dirs.entry(ROOT_INO).or_default().insert(b"lost+found".to_vec(), ino);
        ino
    }
}

pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// One inconsistency found by [`State::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub what: String,
    /// What fsck may do about it (`None`: only report).
    pub repair: Option<Repair>,
}

/// A repair that loses nothing that is still reachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Remove a directory entry (invalid name, missing target, extra name
    /// of a directory).
    DropEntry(u64, Vec<u8>),
    /// Forget the entry table of an inode that is not a directory.
    DropDir(u64),
    /// Set a file's link count to the number of names it has.
    SetNlink(u64, u32),
    SetParent(u64, u64),
    /// Clear data and size a directory must not have.
    ClearDir(u64),
    /// Release pages past the end of a file.
    Trim(u64),
    /// Give an inode no directory names a name in `/lost+found`.
    LinkOrphan(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_map_merges_and_cuts() {
        let mut i = Inode::new(Kind::File, 0, 0);
        i.map(0, 10);
        i.map(1, 11);
        i.map(3, 13);
        assert_eq!(i.extents, alloc::vec![(0, 10, 2), (3, 13, 1)]);
        i.map(2, 12);
        assert_eq!(i.extents, alloc::vec![(0, 10, 4)]);
        i.map(5, 50);
        i.map(4, 49);
        assert_eq!(i.extents, alloc::vec![(0, 10, 4), (4, 49, 2)]);
        assert_eq!(i.lookup(2), Some(12));
        assert_eq!(i.lookup(5), Some(50));
        assert_eq!(i.lookup(6), None);
        assert_eq!(i.cut(3), alloc::vec![13, 49, 50]);
        assert_eq!(i.extents, alloc::vec![(0, 10, 3)]);
    }

    #[test]
    fn check_finds_and_repairs() {
        let mut s = State::empty();
        let mut f = Inode::new(Kind::File, 0o644, 0);
        f.nlink = 2;
        f.size = 10;
        f.extents = alloc::vec![(0, 100, 2)];
        s.inodes.insert(5, f);
        s.dirs.get_mut(&ROOT_INO).unwrap().insert(b"f".to_vec(), 5);
        s.dirs.get_mut(&ROOT_INO).unwrap().insert(b"g".to_vec(), 77);
        s.inodes.insert(6, Inode::new(Kind::File, 0o644, 0));
        let issues = s.check(50..200);
        let text: Vec<_> = issues.iter().map(|i| i.what.clone()).collect();
        assert_eq!(issues.len(), 4, "{text:#?}");
        let mut next = 10;
        assert_eq!(s.repair(&issues, &mut next), 4);
        assert!(s.check(50..200).is_empty(), "{:#?}", s.check(50..200));
        let lf = s.dirs[&ROOT_INO][&b"lost+found"[..]];
        assert_eq!(s.dirs[&lf][&b"#6"[..]], 6);
    }
}
