//! Files unlinked while open. POSIX keeps such a file alive, readable and
//! writable through its open descriptors, until the last one is closed;
//! libfs keeps no open-file table and frees a file with its last name.
//! So when the last name of an open file would go (unlink, or a rename
//! over it), the adapter moves that name into a hidden directory at the
//! root instead, and removes it there at the last `release`.
//!
//! The hidden directory exists only while such a file does; it is not
//! listed, looked up or counted in the root's link count, its name is
//! refused for new entries at the root, and a mount empties it (what a
//! crash or a kill left there: ext4's orphan list does the same).

use std::collections::{BTreeSet, HashMap};

use libfs::{Error, Kind, ROOT_INO};

use crate::ImageFs;

/// The hidden directory's name, in the root.
pub const HIDDEN: &str = ".libfs-fuse-unlinked-open-files";

#[derive(Default)]
pub struct OpenFiles {
    /// Open handles per inode (`open` and `create` add, `release` takes).
    counts: HashMap<u64, u32>,
    /// Inodes whose only name is in the hidden directory.
    orphans: BTreeSet<u64>,
}

fn hidden_dir(fs: &ImageFs) -> Option<u64> {
    fs.lookup_at(ROOT_INO, HIDDEN).ok()
}

/// True where `name` in `dir` is the reserved hidden directory.
pub fn is_hidden(dir: u64, name: &str) -> bool {
    dir == ROOT_INO && name == HIDDEN
}

/// Whether the root's listing and link count must leave the hidden
/// directory out.
pub fn hidden_exists(fs: &ImageFs) -> bool {
    hidden_dir(fs).is_some()
}

/// At mount: removes whatever an earlier run left in the hidden directory.
pub fn clean(fs: &mut ImageFs) -> libfs::Result<usize> {
    let Some(dir) = hidden_dir(fs) else { return Ok(0) };
    let entries = fs.readdir_ino(dir, HIDDEN)?;
    for e in &entries {
        fs.unlink_at(dir, &e.name)?;
    }
    fs.rmdir_at(ROOT_INO, HIDDEN)?;
    Ok(entries.len())
}

impl OpenFiles {
    pub fn opened(&mut self, ino: u64) {
        *self.counts.entry(ino).or_insert(0) += 1;
    }

    /// The file has no name left (`fstat` shows `st_nlink` 0).
    pub fn is_orphan(&self, ino: u64) -> bool {
        self.orphans.contains(&ino)
    }

    /// Called before `name` in `dir` is unlinked or replaced: when it is
    /// the last name of a file still open, moves it into the hidden
    /// directory and returns true (the caller must not remove it again).
    pub fn keep_if_open(&mut self, fs: &mut ImageFs, dir: u64, name: &str) -> libfs::Result<bool> {
        let Ok(ino) = fs.lookup_at(dir, name) else { return Ok(false) };
        let st = fs.stat_ino(ino)?;
        if st.kind != Kind::File || st.nlink > 1 || !self.counts.contains_key(&ino) {
            return Ok(false);
        }
        let hidden = match hidden_dir(fs) {
            Some(h) => h,
            None => fs.mkdir_at(ROOT_INO, HIDDEN, 0o700)?,
        };
        fs.rename_at(dir, name, hidden, &ino.to_string())?;
        self.orphans.insert(ino);
        Ok(true)
    }

    /// One handle closed; the last one of an orphan removes it.
    pub fn closed(&mut self, fs: &mut ImageFs, ino: u64) -> libfs::Result<()> {
        let Some(n) = self.counts.get_mut(&ino) else { return Ok(()) };
        *n -= 1;
        if *n > 0 {
            return Ok(());
        }
        self.counts.remove(&ino);
        if !self.orphans.remove(&ino) {
            return Ok(());
        }
        let hidden = hidden_dir(fs).ok_or_else(|| Error::NotFound(HIDDEN.into()))?;
        fs.unlink_at(hidden, &ino.to_string())?;
        if fs.readdir_ino(hidden, HIDDEN)?.is_empty() {
            fs.rmdir_at(ROOT_INO, HIDDEN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libfs::{Geometry, OpenMode};

    /// A fresh image file of its own (removed on drop) and its file system.
    struct Image(std::path::PathBuf);
    impl Drop for Image {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    fn image(tag: &str) -> (Image, ImageFs) {
        let p = std::env::temp_dir().join(format!("libfs-fuse-open-files-{tag}-{}", std::process::id()));
        libfs::tools::mkfs_image(&p, Some(4 << 20), Geometry::default()).unwrap();
        let fs = crate::open_image(&p).unwrap();
        (Image(p), fs)
    }

    fn write(fs: &mut ImageFs, path: &str, data: &[u8]) -> u64 {
        let h = fs.open(path, OpenMode { write: true, create: true, truncate: false }).unwrap();
        fs.pwrite(&h, 0, data).unwrap();
        h.ino
    }

    #[test]
    fn an_open_file_outlives_its_last_name_until_closed() {
        let (_img, mut fs) = image("last-name");
        let d = fs.mkdir("/d", 0o755).unwrap();
        let ino = write(&mut fs, "/d/f", b"still here");
        let mut open = OpenFiles::default();
        open.opened(ino);
        open.opened(ino);
        assert!(open.keep_if_open(&mut fs, d, "f").unwrap());
        assert!(open.is_orphan(ino));
        assert!(fs.lookup("/d/f").is_err());
        assert!(hidden_exists(&fs));
        let h = libfs::Handle { ino, pos: 0, writable: false };
        let mut buf = [0u8; 10];
        assert_eq!(fs.pread(&h, 0, &mut buf).unwrap(), 10);
        assert_eq!(&buf, b"still here");
        open.closed(&mut fs, ino).unwrap();
        assert!(fs.stat_ino(ino).is_ok(), "one handle is still open");
        open.closed(&mut fs, ino).unwrap();
        assert!(fs.stat_ino(ino).is_err(), "the last close frees it");
        assert!(!hidden_exists(&fs), "the hidden directory goes when empty");
        assert!(fs.check().is_empty());
    }

    #[test]
    fn names_of_closed_or_linked_files_are_not_kept() {
        let (_img, mut fs) = image("not-kept");
        let a = write(&mut fs, "/a", b"a");
        let b = write(&mut fs, "/b", b"b");
        fs.link("/b", "/b2").unwrap();
        let mut open = OpenFiles::default();
        open.opened(b);
        assert!(!open.keep_if_open(&mut fs, ROOT_INO, "a").unwrap(), "a is not open");
        assert!(!open.keep_if_open(&mut fs, ROOT_INO, "b").unwrap(), "b has another name");
        assert!(!open.keep_if_open(&mut fs, ROOT_INO, "missing").unwrap());
        fs.mkdir("/dir", 0o755).unwrap();
        assert!(!open.keep_if_open(&mut fs, ROOT_INO, "dir").unwrap());
        assert!(!hidden_exists(&fs));
        assert!(!open.is_orphan(a) && !open.is_orphan(b));
        open.closed(&mut fs, a).unwrap(); // never opened: nothing happens
        assert!(fs.stat_ino(a).is_ok());
    }

    #[test]
    fn a_mount_empties_what_an_earlier_one_left_hidden() {
        let (img, mut fs) = image("clean");
        let hidden = fs.mkdir_at(ROOT_INO, HIDDEN, 0o700).unwrap();
        fs.create_at(hidden, "12", 0o644).unwrap();
        fs.create_at(hidden, "13", 0o644).unwrap();
        write(&mut fs, "/kept", b"k");
        fs.sync().unwrap();
        drop(fs);
        let fs = crate::open_image(&img.0).unwrap();
        let adapter = crate::LibfsFuse::new(fs);
        let g = adapter.inner.lock().unwrap();
        assert!(!hidden_exists(&g.fs));
        let names: Vec<String> = g.fs.readdir("/").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["kept"]);
        assert!(g.fs.check().is_empty());
        assert!(is_hidden(ROOT_INO, HIDDEN) && !is_hidden(ROOT_INO + 1, HIDDEN));
    }
}
