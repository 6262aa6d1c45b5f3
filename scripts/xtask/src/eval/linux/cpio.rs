//! The Linux guest's initramfs: a "newc" cpio archive (the one format the
//! Linux kernel unpacks as an initramfs; uncompressed here: the kernel
//! accepts it, and skipping gzip saves guest boot time under TCG), written
//! with the `cpio` crate. This wrapper numbers the inodes, gives
//! directories two links, and refuses names the kernel would misplace.

use anyhow::{bail, Context, Result};
use cpio::newc::{trailer, Builder};
use std::io::Write as _;

/// An in-memory newc archive under construction.
pub struct Archive {
    bytes: Vec<u8>,
    next_ino: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

impl Archive {
    pub fn new() -> Self {
        Self { bytes: vec![], next_ino: 1 }
    }

    pub fn dir(&mut self, path: &str) -> Result<()> {
        self.entry(path, S_IFDIR | 0o755, &[])
    }

    /// A regular file; `executable` picks mode 0755 over 0644.
    pub fn file(&mut self, path: &str, data: &[u8], executable: bool) -> Result<()> {
        let perm = if executable { 0o755 } else { 0o644 };
        self.entry(path, S_IFREG | perm, data)
    }

    /// A symbolic link whose contents are `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.entry(path, S_IFLNK | 0o777, target.as_bytes())
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        if path.is_empty() || path.starts_with('/') || path.contains('\0') {
            bail!("cpio: bad entry name `{path}` (must be relative, non-empty, without NUL)");
        }
        let Ok(size) = u32::try_from(data.len()) else {
            bail!("cpio: `{path}` is {} bytes, over newc's 4 GiB limit", data.len());
        };
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let mut w = Builder::new(path).ino(ino).mode(mode).nlink(nlink).write(&mut self.bytes, size);
        w.write_all(data).and_then(|()| w.finish().map(drop)).with_context(|| format!("cpio: writing `{path}`"))
    }

    /// Append the trailer and return the archive bytes.
    pub fn finish(mut self) -> Vec<u8> {
        // Writing to a Vec cannot fail.
        let _ = trailer(&mut self.bytes);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal newc reader, independent of the writer, to check what it wrote.
    fn entries(a: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = vec![];
        let mut at = 0;
        loop {
            let h = &a[at..at + 110];
            assert_eq!(&h[..6], b"070701");
            let field =
                |i: usize| u32::from_str_radix(std::str::from_utf8(&h[6 + i * 8..14 + i * 8]).unwrap(), 16).unwrap();
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name_start = at + 110;
            let name = std::str::from_utf8(&a[name_start..name_start + namesize - 1]).unwrap().to_string();
            assert_eq!(a[name_start + namesize - 1], 0, "name not NUL-terminated");
            let data_start = (name_start + namesize + 3) & !3;
            let data = a[data_start..data_start + size].to_vec();
            at = (data_start + size + 3) & !3;
            if name == "TRAILER!!!" {
                assert_eq!(at, a.len(), "bytes after the trailer");
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn round_trips_dirs_files_and_links() {
        let mut a = Archive::new();
        a.dir("bin").unwrap();
        a.file("bin/busybox", b"\x7fELF123", true).unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        a.file("etc/plan", b"nvme run\n", false).unwrap();
        let bytes = a.finish();
        assert_eq!(bytes.len() % 4, 0);
        let e = entries(&bytes);
        assert_eq!(e.len(), 4);
        assert_eq!(e[0], ("bin".into(), 0o040755, vec![]));
        assert_eq!(e[1], ("bin/busybox".into(), 0o100755, b"\x7fELF123".to_vec()));
        assert_eq!(e[2], ("bin/sh".into(), 0o120777, b"busybox".to_vec()));
        assert_eq!(e[3], ("etc/plan".into(), 0o100644, b"nvme run\n".to_vec()));
    }

    /// The archive is GNU cpio's for the same tree, byte for byte, apart
    /// from what GNU cpio takes from the files on disk (inode number,
    /// mtime, device), its upper-case hex digits (the kernel reads either)
    /// and its padding of the archive to 512-byte blocks.
    /// testdata/gnu-cpio-2.13-newc.cpio was made with Debian's GNU cpio
    /// 2.13 from a directory holding `bin/`, `bin/sh -> busybox`, `etc/`,
    /// `etc/plan` (0644, "nvme run\n") and `init` (0755, "#!/bin/sh\n"):
    /// `printf 'bin\nbin/sh\netc\netc/plan\ninit\n' | cpio -o -H newc`.
    #[test]
    fn matches_gnu_cpio_newc() {
        let gnu = include_bytes!("testdata/gnu-cpio-2.13-newc.cpio");
        let mut a = Archive::new();
        a.dir("bin").unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        a.dir("etc").unwrap();
        a.file("etc/plan", b"nvme run\n", false).unwrap();
        a.file("init", b"#!/bin/sh\n", true).unwrap();
        let ours = a.finish();
        assert!(gnu.len() > ours.len() && gnu.len().is_multiple_of(512));
        assert!(gnu[ours.len()..].iter().all(|&b| b == 0), "GNU's tail is padding");
        // Lower-case GNU's header digits, copy our inode numbers into them
        // and zero its mtime and device fields (header fields 0, 5 and 7: 8 hex digits each after
        // the 6-byte magic).
        let mut want = gnu[..ours.len()].to_vec();
        let mut at = 0;
        while at < ours.len() {
            let field = |a: &[u8], i: usize| {
                u32::from_str_radix(std::str::from_utf8(&a[at + 6 + i * 8..at + 14 + i * 8]).unwrap(), 16).unwrap()
            };
            let (size, namesize) = (field(&want, 6) as usize, field(&want, 11) as usize);
            want[at + 6..at + 110].make_ascii_lowercase();
            let ino = ours[at + 6..at + 14].to_vec();
            want[at + 6..at + 14].copy_from_slice(&ino);
            for i in [5, 7] {
                want[at + 6 + i * 8..at + 14 + i * 8].copy_from_slice(b"00000000");
            }
            let data = (at + 110 + namesize + 3) & !3;
            at = (data + size + 3) & !3;
        }
        assert_eq!(at, ours.len());
        assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&want));
        assert_eq!(entries(&ours), entries(&want));
    }

    #[test]
    fn rejects_absolute_and_empty_names() {
        let mut a = Archive::new();
        assert!(a.file("/init", b"", true).is_err());
        assert!(a.dir("").is_err());
        assert!(a.file("a\0b", b"", false).is_err());
    }
}
