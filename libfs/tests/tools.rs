//! mkfs and fsck, as binaries on image files, and fsck's repairs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use libfs::state::Inode;
use libfs::tools::{load, store};
use libfs::{Error, Fs, Kind, OpenMode};

/// An image path that is removed again when the guard is dropped.
struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl AsRef<Path> for Tmp {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for Tmp {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

fn tmp(name: &str) -> Tmp {
    let p = std::env::temp_dir().join(format!("libfs-tools-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    Tmp(p)
}

fn run(bin: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

const MKFS: &str = env!("CARGO_BIN_EXE_mkfs");
const FSCK: &str = env!("CARGO_BIN_EXE_fsck");

fn with_fs(img: &Path, f: impl FnOnce(&mut Fs<libfs::BlockStorage<libdb::MemBlockDevice>>)) {
    let mut fs = Fs::mount(load(img).unwrap()).unwrap();
    f(&mut fs);
    fs.sync().unwrap();
    store(img, fs.storage()).unwrap();
}

#[test]
fn mkfs_then_fsck_clean() {
    let img = tmp("clean.img");
    let (code, out) = run(MKFS, &["--size", "4M", img.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1024 pages"), "{out}");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 4 << 20);
    with_fs(&img, |fs| {
        fs.mkdir("/dir", 0o755).unwrap();
        let mut h = fs.open("/dir/file", OpenMode::CREATE).unwrap();
        fs.write(&mut h, b"hello").unwrap();
    });
    let (code, out) = run(FSCK, &[img.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("clean"), "{out}");
    // Contents survive the round trip through the file.
    let mut fs = Fs::mount(load(&img).unwrap()).unwrap();
    let h = fs.open("/dir/file", OpenMode::READ).unwrap();
    let mut buf = [0u8; 5];
    fs.pread(&h, 0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
}

#[test]
fn mkfs_refuses_a_tiny_image() {
    let img = tmp("tiny.img");
    let (code, out) = run(MKFS, &["--size", "8K", img.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no space"), "{out}");
}

#[test]
fn fsck_names_and_repairs() {
    let img = tmp("broken.img");
    assert_eq!(run(MKFS, &["--size", "2M", img.to_str().unwrap()]).0, 0);
    with_fs(&img, |fs| {
        let mut h = fs.open("/a", OpenMode::CREATE).unwrap();
        fs.write(&mut h, &[1u8; 10_000]).unwrap();
        let mut h = fs.open("/b", OpenMode::CREATE).unwrap();
        fs.write(&mut h, &[2u8; 100]).unwrap();
        fs.mkdir("/d", 0o755).unwrap();
    });
    // Damage the state with valid checksums: what a bug, not a crash,
    // would leave.
    let mut fs = Fs::mount(load(&img).unwrap()).unwrap();
    let mut s = fs.state().clone();
    let a = fs.lookup("/a").unwrap();
    let b = fs.lookup("/b").unwrap();
    s.inodes.get_mut(&a).unwrap().nlink = 3; // wrong link count
    s.inodes.get_mut(&b).unwrap().size = 10; // pages... fine, 1 page
    let orphan = 500;
    s.inodes.insert(orphan, Inode::new(Kind::File, 0o644, 0)); // no name
    s.dirs.get_mut(&1).unwrap().insert(b"ghost".to_vec(), 777); // dangling
    let ai = s.inodes.get_mut(&a).unwrap();
    ai.size = 100; // pages past the end
    let next = fs.next_ino().max(501);
    fs.install_state(s, next).unwrap();
    store(&img, fs.storage()).unwrap();

    // Mount refuses, naming the problem.
    match Fs::mount(load(&img).unwrap()) {
        Err(Error::Corrupt { what, .. }) => assert!(what.contains("run fsck"), "{what}"),
        other => panic!("mounted an inconsistent image: {:?}", other.map(|_| ())),
    }
    let (code, out) = run(FSCK, &["-n", img.to_str().unwrap()]);
    assert_eq!(code, 4, "{out}");
    for needle in ["link count 3 but 1 names", "orphan", "missing inode 777", "pages past its size"] {
        assert!(out.contains(needle), "fsck must name {needle:?}:\n{out}");
    }
    let (code, out) = run(FSCK, &["--repair", img.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = run(FSCK, &[img.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let mut fs = Fs::mount(load(&img).unwrap()).unwrap();
    assert_eq!(fs.stat("/a").unwrap().nlink, 1);
    assert_eq!(fs.stat("/a").unwrap().pages, 1);
    assert_eq!(fs.stat("/lost+found/#500").unwrap().ino, orphan);
    assert!(matches!(fs.stat("/ghost"), Err(Error::NotFound(_))));
    let h = fs.open("/b", OpenMode::READ).unwrap();
    let mut buf = [0u8; 10];
    assert_eq!(fs.pread(&h, 0, &mut buf).unwrap(), 10);
    assert_eq!(buf, [2u8; 10]);
}

#[test]
fn fsck_reports_what_it_cannot_repair() {
    let img = tmp("shared.img");
    assert_eq!(run(MKFS, &["--size", "2M", img.to_str().unwrap()]).0, 0);
    with_fs(&img, |fs| {
        for p in ["/x", "/y"] {
            let mut h = fs.open(p, OpenMode::CREATE).unwrap();
            fs.write(&mut h, &[3u8; 4096]).unwrap();
        }
    });
    let mut fs = Fs::mount(load(&img).unwrap()).unwrap();
    let mut s = fs.state().clone();
    let (x, y) = (fs.lookup("/x").unwrap(), fs.lookup("/y").unwrap());
    let ext = s.inodes[&x].extents.clone();
    s.inodes.get_mut(&y).unwrap().extents = ext; // two files, one page
    let next = fs.next_ino();
    fs.install_state(s, next).unwrap();
    store(&img, fs.storage()).unwrap();
    let (code, out) = run(FSCK, &["--repair", img.to_str().unwrap()]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("belongs to inode"), "{out}");
}

#[test]
fn fsck_names_a_damaged_superblock() {
    let img = tmp("sb.img");
    assert_eq!(run(MKFS, &["--size", "1M", img.to_str().unwrap()]).0, 0);
    let mut data = std::fs::read(&img).unwrap();
    data[20] ^= 0x40;
    std::fs::write(&img, &data).unwrap();
    let (code, out) = run(FSCK, &[img.to_str().unwrap()]);
    assert_eq!(code, 8, "{out}");
    assert!(out.contains("superblock: checksum"), "{out}");
    let (code, out) = run(FSCK, &["/nonexistent/libfs.img"]);
    assert_eq!(code, 8, "{out}");
}
