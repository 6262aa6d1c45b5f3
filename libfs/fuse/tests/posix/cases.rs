//! The POSIX semantics cases. Each one works inside its own empty
//! directory and logs what it sees; it runs once on the mount and once on
//! the host's reference directory, and the two logs must agree line for
//! line except where `DIVERGENCES` (main.rs) says why they differ.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::observe::Log;

pub type CaseFn = fn(&Path, &mut Log);

/// Every case, by name.
pub const CASES: &[(&str, CaseFn)] = &[
    ("open_creat", open_creat),
    ("open_excl", open_excl),
    ("open_trunc", open_trunc),
    ("open_append", open_append),
    ("open_directory_and_kinds", open_directory_and_kinds),
    ("open_write_mode_0444_as_root", open_write_mode_0444_as_root),
    ("read_write_at_and_past_eof", read_write_at_and_past_eof),
    ("holes_read_as_zeros", holes_read_as_zeros),
    ("ftruncate_grow_shrink", ftruncate_grow_shrink),
    ("unlink_open_file", unlink_open_file),
    ("unlink_open_file_with_second_link", unlink_open_file_with_second_link),
    ("rename_file_over_file", rename_file_over_file),
    ("rename_over_open_file", rename_over_open_file),
    ("rename_dirs", rename_dirs),
    ("rename_kind_mismatch", rename_kind_mismatch),
    ("rename_into_own_subdir", rename_into_own_subdir),
    ("rename_same_name_and_links", rename_same_name_and_links),
    ("rename_missing", rename_missing),
    ("renameat2_flags", renameat2_flags),
    ("link_counts", link_counts),
    ("link_errors", link_errors),
    ("rmdir_unlink_errors", rmdir_unlink_errors),
    ("missing_and_non_dir_components", missing_and_non_dir_components),
    ("name_too_long", name_too_long),
    ("names_ascii_bytes", names_ascii_bytes),
    ("names_high_bytes", names_high_bytes),
    ("names_utf8", names_utf8),
    ("readdir_many", readdir_many),
    ("readdir_while_deleting", readdir_while_deleting),
    ("readdir_while_adding", readdir_while_adding),
    ("stat_after_write", stat_after_write),
    ("mtime_updates", mtime_updates),
    ("set_times", set_times),
    ("dir_times", dir_times),
    ("chmod", chmod),
    ("chown", chown),
    ("dot_and_dotdot", dot_and_dotdot),
    ("fsync_fdatasync", fsync_fdatasync),
    ("large_write_read", large_write_read),
    ("symlink", symlink),
    ("mkfifo", mkfifo),
    ("seek_data_end", seek_data_end),
    ("mmap_shared", mmap_shared),
    ("removed_open_directory", removed_open_directory),
    ("statvfs_and_access", statvfs_and_access),
];

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn read_all(p: &Path) -> io::Result<Vec<u8>> {
    fs::read(p)
}

fn create_with(p: &Path, data: &[u8]) -> io::Result<()> {
    fs::write(p, data)
}

fn names_in(d: &Path) -> io::Result<Vec<String>> {
    let mut v: Vec<String> =
        fs::read_dir(d)?.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect::<io::Result<_>>()?;
    v.sort();
    Ok(v)
}

fn open_creat(d: &Path, log: &mut Log) {
    let f = d.join("f");
    let r = OpenOptions::new().write(true).create(true).truncate(false).mode(0o640).open(&f);
    log.res("O_CREAT new", r.and_then(|mut h| h.write_all(b"hello")));
    log.stat("f", fs::metadata(&f));
    let r = OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(&f);
    log.res("O_CREAT existing", r.map(drop));
    log.val("content kept", read_all(&f).ok());
    log.stat("f (mode unchanged by the second O_CREAT)", fs::metadata(&f));
    let r = OpenOptions::new().write(true).create(true).truncate(false).mode(0o777).open(d.join("g"));
    log.res("O_CREAT mode 0777 (umask 022)", r.map(drop));
    log.stat("g", fs::metadata(d.join("g")));
}

fn open_excl(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("O_CREAT|O_EXCL new", OpenOptions::new().write(true).create_new(true).open(&f).map(drop));
    log.res("O_CREAT|O_EXCL existing", OpenOptions::new().write(true).create_new(true).open(&f).map(drop));
    log.res("mkdir", fs::create_dir(d.join("sub")));
    log.res("O_CREAT|O_EXCL on a dir", OpenOptions::new().write(true).create_new(true).open(d.join("sub")).map(drop));
    log.res(
        "O_CREAT on a dir",
        OpenOptions::new().write(true).create(true).truncate(false).open(d.join("sub")).map(drop),
    );
}

fn open_trunc(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("write 10000", create_with(&f, &pattern(10000, 1)));
    log.res("O_TRUNC|O_WRONLY", OpenOptions::new().write(true).truncate(true).open(&f).map(drop));
    log.stat("f", fs::metadata(&f));
    log.res("write 300", create_with(&f, &pattern(300, 2)));
    // Unspecified by POSIX; Linux truncates (it asks for write access).
    let r = OpenOptions::new().read(true).custom_flags(libc::O_TRUNC).open(&f);
    log.res("O_TRUNC|O_RDONLY", r.map(drop));
    log.stat("f", fs::metadata(&f));
    log.res("chmod 0444", fs::set_permissions(&f, fs::Permissions::from_mode(0o444)));
    log.res("write 10", fs::write(&f, b"0123456789"));
    log.stat("f", fs::metadata(&f));
}

fn open_append(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("write abc", create_with(&f, b"abc"));
    let mut h = OpenOptions::new().append(true).open(&f).unwrap();
    log.res("seek 0", h.seek(SeekFrom::Start(0)).map(drop));
    log.res("write def", h.write_all(b"def"));
    log.res("pwrite at 0 (appends on Linux)", h.write_at(b"ghi", 0).map(drop));
    log.res("write jkl", h.write_all(b"jkl"));
    log.val("position", h.stream_position().ok());
    log.val("content", String::from_utf8_lossy(&read_all(&f).unwrap_or_default()).into_owned());
    let mut r = OpenOptions::new().read(true).append(true).open(&f).unwrap();
    let mut s = String::new();
    log.res("read through an O_APPEND fd", r.read_to_string(&mut s).map(drop));
    log.val("read", s);
}

fn open_directory_and_kinds(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("create", create_with(&f, b"x"));
    log.res("O_DIRECTORY on a file", OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(&f).map(drop));
    log.res("O_DIRECTORY on a dir", OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(d).map(drop));
    log.res("O_WRONLY on a dir", OpenOptions::new().write(true).open(d).map(drop));
    log.res("O_RDWR on a dir", OpenOptions::new().read(true).write(true).open(d).map(drop));
    log.res("open missing", File::open(d.join("missing")).map(drop));
    log.res(
        "O_CREAT with a trailing slash",
        OpenOptions::new().write(true).create(true).truncate(false).open(d.join("new/")).map(drop),
    );
    log.res("read a dir", File::open(d).and_then(|mut h| h.read(&mut [0u8; 16])));
    log.res("write to an O_RDONLY fd", File::open(&f).and_then(|mut h| h.write(b"y")));
    log.res(
        "read from an O_WRONLY fd",
        OpenOptions::new().write(true).open(&f).and_then(|mut h| h.read(&mut [0u8; 4])),
    );
}

/// Root may open any file for writing, whatever its mode bits.
fn open_write_mode_0444_as_root(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("create", create_with(&f, b"data"));
    log.res("chmod 0444", fs::set_permissions(&f, fs::Permissions::from_mode(0o444)));
    log.res("open O_WRONLY", OpenOptions::new().write(true).open(&f).and_then(|mut h| h.write_all(b"DA")));
    log.val("content", read_all(&f).ok());
    log.res("chmod 0", fs::set_permissions(&f, fs::Permissions::from_mode(0o000)));
    log.res("open O_RDWR mode 0", OpenOptions::new().read(true).write(true).open(&f).map(drop));
    log.res("open O_RDONLY mode 0", File::open(&f).map(drop));
}

fn read_write_at_and_past_eof(d: &Path, log: &mut Log) {
    let f = d.join("f");
    let h = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&f).unwrap();
    log.res("pwrite 100 at 0", h.write_at(&pattern(100, 3), 0).map(drop));
    let mut buf = vec![0u8; 100];
    log.val("pread 100 at 50", h.read_at(&mut buf, 50).ok());
    log.val("bytes", buf[..50] == pattern(100, 3)[50..]);
    log.val("pread at 100 (EOF)", h.read_at(&mut buf, 100).ok());
    log.val("pread at 10000 (past EOF)", h.read_at(&mut buf, 10000).ok());
    log.val("pread 0 bytes", h.read_at(&mut [], 10).ok());
    log.res("pwrite 0 bytes past EOF", h.write_at(&[], 5000).map(drop));
    log.stat("f (a zero-length write does not extend)", fs::metadata(&f));
    log.res("pwrite 5 at 10000", h.write_at(b"tail!", 10000).map(drop));
    log.stat("f", fs::metadata(&f));
    let mut gap = vec![1u8; 9900];
    log.val("pread the gap", h.read_at(&mut gap, 100).ok());
    log.val("gap is zeros", gap.iter().all(|&b| b == 0));
    log.val("read all", read_all(&f).map(|v| (v.len(), v[10000..].to_vec())).ok());
    log.res("pwrite across a page boundary", h.write_at(&pattern(200, 4), 4000).map(drop));
    let mut b = vec![0u8; 200];
    log.val("pread it", h.read_at(&mut b, 4000).ok());
    log.val("same bytes", b == pattern(200, 4));
    log.res("pwrite at 2^40", h.write_at(b"far", 1 << 40).map(drop));
    log.val("size", fs::metadata(&f).map(|m| m.size()).ok());
    log.res("ftruncate back to 20000", h.set_len(20_000));
    log.val("tail", read_all(&f).map(|v| v[10000..10005].to_vec()).ok());
    log.res("ftruncate to 2^62 (past the max file size)", h.set_len(1 << 62));
    log.res("pwrite at 2^62 (past the max file size)", h.write_at(b"x", 1 << 62).map(drop));
}

fn holes_read_as_zeros(d: &Path, log: &mut Log) {
    let f = d.join("f");
    let h = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&f).unwrap();
    log.res("pwrite at 1 MiB + 3", h.write_at(b"end", (1 << 20) + 3).map(drop));
    log.stat("f (one page allocated)", fs::metadata(&f));
    let v = read_all(&f).unwrap_or_default();
    log.val("len", v.len());
    log.val("all zeros before", v[..(1 << 20) + 3].iter().all(|&b| b == 0));
    log.res("pwrite in the hole", h.write_at(b"mid", 300_000).map(drop));
    log.stat("f (two pages)", fs::metadata(&f));
    let v = read_all(&f).unwrap_or_default();
    log.val("zeros around", v[..300_000].iter().chain(&v[300_003..(1 << 20) + 3]).all(|&b| b == 0));
    log.val("written", (&v[300_000..300_003], &v[(1 << 20) + 3..]));
}

fn ftruncate_grow_shrink(d: &Path, log: &mut Log) {
    let f = d.join("f");
    let h = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&f).unwrap();
    log.res("write 5000", h.write_at(&pattern(5000, 5), 0).map(drop));
    log.res("ftruncate 100000", h.set_len(100_000));
    log.stat("f", fs::metadata(&f));
    let v = read_all(&f).unwrap_or_default();
    log.val("head kept, tail zero", (v.len(), v[..5000] == pattern(5000, 5), v[5000..].iter().all(|&b| b == 0)));
    log.res("ftruncate 3", h.set_len(3));
    log.stat("f", fs::metadata(&f));
    log.val("content", read_all(&f).ok());
    // The bytes cut off must not come back when the file grows again.
    log.res("ftruncate 8192", h.set_len(8192));
    let v = read_all(&f).unwrap_or_default();
    log.val("regrown: cut bytes read as zeros", (v.len(), v[..3] == pattern(3, 5)[..], v[3..].iter().all(|&b| b == 0)));
    log.res("pwrite at 6000 after regrow", h.write_at(b"Z", 6000).map(drop));
    let v = read_all(&f).unwrap_or_default();
    log.val("only that byte set", v.iter().enumerate().all(|(i, &b)| (i < 3) || (i == 6000) == (b != 0)));
    log.res("ftruncate 0", h.set_len(0));
    log.stat("f", fs::metadata(&f));
    log.res("truncate(2) by path to 4096", File::options().write(true).open(&f).and_then(|h| h.set_len(4096)));
    log.stat("f", fs::metadata(&f));
    let ro = File::open(&f).unwrap();
    log.res("ftruncate an O_RDONLY fd", ro.set_len(1));
}

fn unlink_open_file(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("create", create_with(&f, &pattern(9000, 6)));
    let h = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    log.res("unlink while open", fs::remove_file(&f));
    log.stat("f after unlink", fs::metadata(&f));
    log.val("names", names_in(d).ok());
    let mut buf = vec![0u8; 9000];
    log.val("pread through the fd", h.read_at(&mut buf, 0).ok());
    log.val("data intact", buf == pattern(9000, 6));
    log.res("pwrite through the fd", h.write_at(b"more", 9000).map(drop));
    log.val("fstat nlink, size", h.metadata().map(|m| (m.nlink(), m.size())).ok());
    let mut b = [0u8; 4];
    log.val("read back", h.read_at(&mut b, 9000).ok().map(|_| b));
    log.res("ftruncate through the fd", h.set_len(10));
    log.res("fsync through the fd", h.sync_all());
    log.res("create the name again", create_with(&f, b"new file"));
    log.val("new content", read_all(&f).ok());
    let mut b = [0u8; 10];
    log.val("old fd still the old file", h.read_at(&mut b, 0).ok().map(|n| b[..n] == pattern(10, 6)[..]));
    drop(h);
    log.val("names after close", names_in(d).ok());
}

fn unlink_open_file_with_second_link(d: &Path, log: &mut Log) {
    let (a, b) = (d.join("a"), d.join("b"));
    log.res("create", create_with(&a, b"shared"));
    log.res("link", fs::hard_link(&a, &b));
    let h = File::open(&a).unwrap();
    log.res("unlink a", fs::remove_file(&a));
    log.val("fstat nlink", h.metadata().map(|m| m.nlink()).ok());
    log.res("unlink b (the last name, still open)", fs::remove_file(&b));
    log.val("fstat nlink", h.metadata().map(|m| m.nlink()).ok());
    let mut s = String::new();
    log.res("read through the fd", (&h).read_to_string(&mut s).map(drop));
    log.val("read", s);
    drop(h);
    log.val("names", names_in(d).ok());
}

fn rename_file_over_file(d: &Path, log: &mut Log) {
    let (a, b) = (d.join("a"), d.join("b"));
    log.res("create a", create_with(&a, b"AAAA"));
    log.res("create b", create_with(&b, b"BB"));
    log.res("rename a -> b", fs::rename(&a, &b));
    log.val("b", read_all(&b).ok());
    log.res("stat a", fs::metadata(&a).map(drop));
    log.val("names", names_in(d).ok());
    log.stat("b", fs::metadata(&b));
    log.res("mkdir sub", fs::create_dir(d.join("sub")));
    log.res("rename b -> sub/c", fs::rename(&b, d.join("sub/c")));
    log.val("sub/c", read_all(&d.join("sub/c")).ok());
    log.val("names", names_in(d).ok());
}

fn rename_over_open_file(d: &Path, log: &mut Log) {
    let (a, b) = (d.join("a"), d.join("b"));
    log.res("create a", create_with(&a, b"new version"));
    log.res("create b", create_with(&b, b"old version"));
    let h = File::open(&b).unwrap();
    log.res("rename a -> b while b is open", fs::rename(&a, &b));
    let mut s = String::new();
    log.res("read the open fd", (&h).read_to_string(&mut s).map(drop));
    log.val("old fd sees", s);
    log.val("fstat nlink", h.metadata().map(|m| m.nlink()).ok());
    log.val("b now", read_all(&b).ok());
    drop(h);
    log.val("names", names_in(d).ok());
}

fn rename_dirs(d: &Path, log: &mut Log) {
    for n in ["x", "empty", "full", "x/inner"] {
        log.res(&format!("mkdir {n}"), fs::create_dir(d.join(n)));
    }
    log.res("create full/f", create_with(&d.join("full/f"), b"f"));
    log.res("rename x -> empty (empty target)", fs::rename(d.join("x"), d.join("empty")));
    log.stat("empty", fs::metadata(d.join("empty")));
    log.res("stat empty/inner", fs::metadata(d.join("empty/inner")).map(drop));
    log.res("stat x", fs::metadata(d.join("x")).map(drop));
    log.res("rename empty -> full (non-empty target)", fs::rename(d.join("empty"), d.join("full")));
    log.res("rename full -> empty (non-empty source)", fs::rename(d.join("full"), d.join("empty2")));
    log.stat("top", fs::metadata(d));
    log.res("rename empty2/f -> f", fs::rename(d.join("empty2/f"), d.join("f")));
    log.res("rename empty/inner -> empty2/inner", fs::rename(d.join("empty/inner"), d.join("empty2/inner")));
    log.stat("empty", fs::metadata(d.join("empty")));
    log.stat("empty2", fs::metadata(d.join("empty2")));
    log.val("empty2/inner/.. is empty2", same_file(&d.join("empty2/inner/.."), &d.join("empty2")));
    log.val("names", names_in(d).ok());
}

fn same_file(a: &Path, b: &Path) -> Option<bool> {
    Some(fs::metadata(a).ok()?.ino() == fs::metadata(b).ok()?.ino())
}

fn rename_kind_mismatch(d: &Path, log: &mut Log) {
    log.res("mkdir dir", fs::create_dir(d.join("dir")));
    log.res("create file", create_with(&d.join("file"), b"f"));
    log.res("rename file -> dir", fs::rename(d.join("file"), d.join("dir")));
    log.res("rename dir -> file", fs::rename(d.join("dir"), d.join("file")));
    log.res("rename file -> file/x", fs::rename(d.join("file"), d.join("file/x")));
    log.res("rename dir -> file/x", fs::rename(d.join("dir"), d.join("file/x")));
    log.val("names", names_in(d).ok());
}

fn rename_into_own_subdir(d: &Path, log: &mut Log) {
    log.res("mkdir a/b/c", fs::create_dir_all(d.join("a/b/c")));
    log.res("rename a -> a/b/a", fs::rename(d.join("a"), d.join("a/b/a")));
    log.res("rename a -> a/x", fs::rename(d.join("a"), d.join("a/x")));
    log.res("rename a/b -> a/b/c/b", fs::rename(d.join("a/b"), d.join("a/b/c/b")));
    log.res("rename a/b/c -> a (target is an ancestor)", fs::rename(d.join("a/b/c"), d.join("a")));
    log.res("rename a/b -> a/b/c/.. (an ancestor's name)", fs::rename(d.join("a/b"), d.join("a/b/c/..")));
    log.val("tree intact", fs::metadata(d.join("a/b/c")).map(|m| m.is_dir()).ok());
}

fn rename_same_name_and_links(d: &Path, log: &mut Log) {
    let (a, b) = (d.join("a"), d.join("b"));
    log.res("create a", create_with(&a, b"data"));
    log.res("rename a -> a", fs::rename(&a, &a));
    log.val("a", read_all(&a).ok());
    log.res("link a b", fs::hard_link(&a, &b));
    log.res("rename a -> b (two names of one file)", fs::rename(&a, &b));
    log.val("names (both stay)", names_in(d).ok());
    log.stat("a", fs::metadata(&a));
    log.res("mkdir dir", fs::create_dir(d.join("dir")));
    log.res("rename dir -> dir", fs::rename(d.join("dir"), d.join("dir")));
    log.res("rename dir -> dir/.", fs::rename(d.join("dir"), d.join("dir/.")));
    log.res("rename . -> x", fs::rename(d.join("dir/."), d.join("x")));
    log.stat("dir", fs::metadata(d.join("dir")));
}

fn rename_missing(d: &Path, log: &mut Log) {
    log.res("create a", create_with(&d.join("a"), b"a"));
    log.res("rename missing -> b", fs::rename(d.join("missing"), d.join("b")));
    log.res("rename a -> nodir/b", fs::rename(d.join("a"), d.join("nodir/b")));
    log.res("rename a -> a/b (a is a file)", fs::rename(d.join("a"), d.join("a/b")));
    log.val("names", names_in(d).ok());
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let (f, t) = (CString::new(from.as_os_str().as_bytes())?, CString::new(to.as_os_str().as_bytes())?);
    // SAFETY: both strings are NUL-terminated and outlive the call; renameat2
    // reads only them.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn renameat2_flags(d: &Path, log: &mut Log) {
    let (a, b, c) = (d.join("a"), d.join("b"), d.join("c"));
    log.res("create a", create_with(&a, b"A"));
    log.res("create b", create_with(&b, b"B"));
    log.res("RENAME_NOREPLACE over b", renameat2(&a, &b, libc::RENAME_NOREPLACE));
    log.res("RENAME_NOREPLACE to c", renameat2(&a, &c, libc::RENAME_NOREPLACE));
    log.res("RENAME_EXCHANGE b <-> c", renameat2(&b, &c, libc::RENAME_EXCHANGE));
    log.val("b, c", (read_all(&b).ok(), read_all(&c).ok()));
}

fn link_counts(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.stat("top (empty)", fs::metadata(d));
    log.res("create f", create_with(&f, b"x"));
    log.stat("f", fs::metadata(&f));
    log.res("link f g", fs::hard_link(&f, d.join("g")));
    log.res("link f h", fs::hard_link(&f, d.join("h")));
    log.stat("f", fs::metadata(&f));
    log.stat("g", fs::metadata(d.join("g")));
    log.val("same inode", same_file(&f, &d.join("h")));
    log.res("unlink g", fs::remove_file(d.join("g")));
    log.stat("f", fs::metadata(&f));
    log.res("mkdir s1", fs::create_dir(d.join("s1")));
    log.res("mkdir s2", fs::create_dir(d.join("s2")));
    log.stat("top (two subdirs)", fs::metadata(d));
    log.stat("s1", fs::metadata(d.join("s1")));
    log.res("mkdir s1/t", fs::create_dir(d.join("s1/t")));
    log.res("link f s1/f (files do not count)", fs::hard_link(&f, d.join("s1/f")));
    log.stat("s1", fs::metadata(d.join("s1")));
    log.res("rename s1/t -> s2/t", fs::rename(d.join("s1/t"), d.join("s2/t")));
    log.stat("s1", fs::metadata(d.join("s1")));
    log.stat("s2", fs::metadata(d.join("s2")));
    log.res("rename s2/t -> s1 (over a non-empty dir)", fs::rename(d.join("s2/t"), d.join("s1")));
    log.res("rmdir s2/t", fs::remove_dir(d.join("s2/t")));
    log.res("rename s2 -> s1/f (over a file)", fs::rename(d.join("s2"), d.join("s1/f")));
    log.res("unlink s1/f", fs::remove_file(d.join("s1/f")));
    log.res("rename s2 -> s1/s2", fs::rename(d.join("s2"), d.join("s1/s2")));
    log.stat("top", fs::metadata(d));
    log.stat("s1", fs::metadata(d.join("s1")));
    log.res("rmdir s1/s2", fs::remove_dir(d.join("s1/s2")));
    log.stat("s1", fs::metadata(d.join("s1")));
    log.stat("f", fs::metadata(&f));
}

fn link_errors(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("create f", create_with(&f, b"x"));
    log.res("mkdir dir", fs::create_dir(d.join("dir")));
    log.res("link dir -> d2", fs::hard_link(d.join("dir"), d.join("d2")));
    log.res("link f -> dir (exists)", fs::hard_link(&f, d.join("dir")));
    log.res("link f -> f", fs::hard_link(&f, &f));
    log.res("link missing -> x", fs::hard_link(d.join("missing"), d.join("x")));
    log.res("link f -> nodir/x", fs::hard_link(&f, d.join("nodir/x")));
    log.res("link f -> f/x", fs::hard_link(&f, d.join("f/x")));
    log.stat("f", fs::metadata(&f));
}

fn rmdir_unlink_errors(d: &Path, log: &mut Log) {
    log.res("mkdir dir", fs::create_dir(d.join("dir")));
    log.res("create dir/f", create_with(&d.join("dir/f"), b"x"));
    log.res("rmdir non-empty", fs::remove_dir(d.join("dir")));
    log.res("rmdir a file", fs::remove_dir(d.join("dir/f")));
    log.res("unlink a dir", fs::remove_file(d.join("dir")));
    log.res("rmdir missing", fs::remove_dir(d.join("missing")));
    log.res("unlink missing", fs::remove_file(d.join("missing")));
    log.res("rmdir dir/.", fs::remove_dir(d.join("dir/.")));
    log.res("rmdir dir/f/x", fs::remove_dir(d.join("dir/f/x")));
    log.res("mkdir existing", fs::create_dir(d.join("dir")));
    log.res("mkdir over a file", fs::create_dir(d.join("dir/f")));
    log.res("unlink dir/f", fs::remove_file(d.join("dir/f")));
    log.res("rmdir now empty", fs::remove_dir(d.join("dir")));
    log.val("names", names_in(d).ok());
}

fn missing_and_non_dir_components(d: &Path, log: &mut Log) {
    log.res("create f", create_with(&d.join("f"), b"x"));
    log.res("stat a/missing/b", fs::metadata(d.join("missing/b")).map(drop));
    log.res("create missing/b", create_with(&d.join("missing/b"), b""));
    log.res("mkdir missing/b", fs::create_dir(d.join("missing/b")));
    log.res("stat f/x", fs::metadata(d.join("f/x")).map(drop));
    log.res("create f/x", create_with(&d.join("f/x"), b""));
    log.res("mkdir f/x", fs::create_dir(d.join("f/x")));
    log.res("stat f/", fs::metadata(d.join("f/")).map(drop));
    log.res("readdir f", fs::read_dir(d.join("f")).map(drop));
    log.res("readdir missing", fs::read_dir(d.join("missing")).map(drop));
}

fn name_too_long(d: &Path, log: &mut Log) {
    let n255 = "n".repeat(255);
    let n256 = "n".repeat(256);
    log.res("create 255 bytes", create_with(&d.join(&n255), b"ok"));
    log.val("read it", read_all(&d.join(&n255)).ok());
    log.res("create 256 bytes", create_with(&d.join(&n256), b""));
    log.res("mkdir 256 bytes", fs::create_dir(d.join(&n256)));
    log.res("stat 256 bytes", fs::metadata(d.join(&n256)).map(drop));
    log.res("rename to 256 bytes", fs::rename(d.join(&n255), d.join(&n256)));
    log.res("link to 256 bytes", fs::hard_link(d.join(&n255), d.join(&n256)));
    log.res("mkdir 255 bytes (exists)", fs::create_dir(d.join(&n255)));
    // 255 bytes of a 2-byte UTF-8 character: 254 bytes fit, 256 do not.
    log.res("create 127 x 'é' (254 bytes)", create_with(&d.join("é".repeat(127)), b""));
    log.res("create 128 x 'é' (256 bytes)", create_with(&d.join("é".repeat(128)), b""));
    log.val("names", names_in(d).map(|v| v.iter().map(|n| n.len()).collect::<Vec<_>>()).ok());
}

/// Creates, reads back, lists and removes a file for each name; logs one
/// summary line.
fn names_roundtrip(d: &Path, log: &mut Log, names: &[Vec<u8>]) {
    use std::ffi::OsStr;
    let mut created = 0;
    let mut errors = std::collections::BTreeMap::new();
    let mut wrong = vec![];
    for (i, n) in names.iter().enumerate() {
        let p = d.join(OsStr::from_bytes(n));
        match fs::write(&p, i.to_string()) {
            Ok(()) if fs::read(&p).ok() == Some(i.to_string().into_bytes()) => created += 1,
            Ok(()) => wrong.push(n.clone()),
            Err(e) => *errors.entry(crate::observe::errno_name(&e)).or_insert(0) += 1,
        }
    }
    let mut listed: Vec<Vec<u8>> = fs::read_dir(d)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name().as_bytes().to_vec()).collect())
        .unwrap_or_default();
    listed.sort();
    let mut want: Vec<Vec<u8>> = names.iter().filter(|n| d.join(OsStr::from_bytes(n)).exists()).cloned().collect();
    want.sort();
    let mut removed = 0;
    for n in &want {
        removed += usize::from(fs::remove_file(d.join(OsStr::from_bytes(n))).is_ok());
    }
    if !wrong.is_empty() {
        log.val("names that read back wrong", wrong);
    }
    log.lines.push(format!(
        "created, read back, listed, removed = ({created}, {}, {removed}), errors {errors:?}",
        listed == want
    ));
}

fn names_ascii_bytes(d: &Path, log: &mut Log) {
    // Every byte 1..=127 except '/', alone and inside a longer name; "." and
    // ".." alone are not file names.
    let names: Vec<Vec<u8>> = (1u8..=127)
        .filter(|&b| b != b'/')
        .flat_map(|b| {
            let alone = (b != b'.').then(|| vec![b]);
            alone.into_iter().chain([vec![b'a', b, b'z'], vec![b, b'.', b]])
        })
        .collect();
    names_roundtrip(d, log, &names);
}

fn names_high_bytes(d: &Path, log: &mut Log) {
    // Bytes 128..=255 alone are not UTF-8.
    let names: Vec<Vec<u8>> = (128u8..=255).map(|b| vec![b'h', b]).collect();
    names_roundtrip(d, log, &names);
}

fn names_utf8(d: &Path, log: &mut Log) {
    let names: Vec<Vec<u8>> =
        ["é", "日本語", "emoji-\u{1F600}", "mixed ünï cödé", "\u{FEFF}bom", "tab\there", "nl\nhere", " "]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
    names_roundtrip(d, log, &names);
}

fn readdir_many(d: &Path, log: &mut Log) {
    let n = 1500;
    let mut want: Vec<String> = (0..n).map(|i| format!("entry-{i:05}-{}", "x".repeat(i % 200))).collect();
    for (i, name) in want.iter().enumerate() {
        if i % 10 == 0 {
            fs::create_dir(d.join(name)).unwrap();
        } else {
            fs::write(d.join(name), b"").unwrap();
        }
    }
    want.sort();
    let got = names_in(d).unwrap_or_default();
    log.val("count", got.len());
    log.val("every name exactly once", got == want);
    let dirs =
        fs::read_dir(d).map(|r| r.filter_map(|e| e.ok()).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).count());
    log.val("d_type dirs", dirs.ok());
    log.stat("top", fs::metadata(d));
    let raw = raw_readdir_names(d);
    log.val(
        "raw readdir has . and ..",
        raw.as_ref().map(|v| (v.contains(&".".into()), v.contains(&"..".into()), v.len())).ok(),
    );
}

/// Names as readdir(3) returns them, "." and ".." included (std's
/// read_dir hides those two).
fn raw_readdir_names(d: &Path) -> io::Result<Vec<String>> {
    let c = CString::new(d.as_os_str().as_bytes())?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let dir = unsafe { libc::opendir(c.as_ptr()) };
    if dir.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut out = vec![];
    loop {
        // SAFETY: `dir` is an open directory stream, closed only below.
        let e = unsafe { libc::readdir(dir) };
        if e.is_null() {
            break;
        }
        // SAFETY: readdir returned a valid entry whose d_name is a
        // NUL-terminated string, valid until the next readdir on `dir`.
        let name = unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) };
        out.push(name.to_string_lossy().into_owned());
    }
    // SAFETY: `dir` is open and not used after this.
    unsafe { libc::closedir(dir) };
    Ok(out)
}

/// `rm -r`'s pattern: delete each entry as readdir returns it; every
/// entry must still be returned once (none skipped by the deletions).
fn readdir_while_deleting(d: &Path, log: &mut Log) {
    let n = 1000;
    for i in 0..n {
        fs::write(d.join(format!("file-{i:04}-{}", "y".repeat(i % 100))), b"").unwrap();
    }
    let mut seen = 0;
    let mut failed = 0;
    for e in fs::read_dir(d).unwrap() {
        let e = e.unwrap();
        seen += 1;
        failed += usize::from(fs::remove_file(e.path()).is_err());
    }
    log.val("returned while deleting", seen);
    log.val("unlink failures", failed);
    log.val("left", names_in(d).map(|v| v.len()).ok());
}

/// Entries added during a readdir may or may not be returned (POSIX
/// leaves it open), but every entry present throughout must be returned
/// exactly once.
fn readdir_while_adding(d: &Path, log: &mut Log) {
    let n = 600;
    for i in 0..n {
        fs::write(d.join(format!("old-{i:04}-{}", "z".repeat(i % 150))), b"").unwrap();
    }
    let mut old_seen = std::collections::BTreeMap::new();
    for (k, e) in fs::read_dir(d).unwrap().enumerate() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("old-") {
            *old_seen.entry(name).or_insert(0) += 1;
        }
        if k < 300 {
            fs::write(d.join(format!("new-{k:04}")), b"").unwrap();
        }
    }
    log.val("old entries returned", old_seen.len());
    log.val("each once", old_seen.values().all(|&c| c == 1));
    log.val("total now", names_in(d).map(|v| v.len()).ok());
}

fn stat_after_write(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("create", create_with(&f, b""));
    log.stat("empty", fs::metadata(&f));
    let h = OpenOptions::new().write(true).open(&f).unwrap();
    for (i, len) in [1usize, 4095, 4096, 4097, 12288, 100_000].into_iter().enumerate() {
        log.res(&format!("write {len}"), h.set_len(0).and_then(|_| h.write_at(&pattern(len, i as u8), 0).map(drop)));
        log.stat(&format!("after {len}"), fs::metadata(&f));
        log.val("fstat agrees", h.metadata().map(|m| m.size()).ok());
    }
    log.stat("top", fs::metadata(d));
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The file system's clock granularity is well below this.
fn tick() {
    std::thread::sleep(Duration::from_millis(15));
}

fn mtime_updates(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("create", create_with(&f, b"abc"));
    let h = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    let mut t = mtime(&f);
    let mut step = |what: &str, log: &mut Log, op: &dyn Fn() -> io::Result<()>| {
        tick();
        log.res(what, op());
        let now = mtime(&f);
        log.val(&format!("mtime after {what}: advanced"), now > t);
        t = now;
    };
    step("pwrite", log, &|| h.write_at(b"x", 1).map(drop));
    step("pread", log, &|| h.read_at(&mut [0u8; 3], 0).map(drop));
    step("ftruncate grow", log, &|| h.set_len(5000));
    step("ftruncate shrink", log, &|| h.set_len(10));
    step("fsync", log, &|| h.sync_all());
    step("stat", log, &|| fs::metadata(&f).map(drop));
    step("chmod", log, &|| fs::set_permissions(&f, fs::Permissions::from_mode(0o600)));
    step("pwrite past the end", log, &|| h.write_at(b"y", 100_000).map(drop));
    let now = SystemTime::now();
    log.val(
        "mtime within 10 s of now",
        mtime(&f).map(|m| now.duration_since(m).unwrap_or_default() < Duration::from_secs(10)),
    );
}

fn set_times(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("create", create_with(&f, b"abc"));
    let when = SystemTime::UNIX_EPOCH + Duration::new(1_500_000_000, 123_456_789);
    let h = OpenOptions::new().write(true).open(&f).unwrap();
    log.res("futimens mtime", h.set_modified(when));
    log.val("mtime", mtime(&f).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()));
    let older = SystemTime::UNIX_EPOCH + Duration::new(1_000_000_000, 0);
    log.res("futimens atime", h.set_times(fs::FileTimes::new().set_accessed(older)));
    log.val("atime", fs::metadata(&f).map(|m| (m.atime(), m.atime_nsec())).ok());
    log.val("mtime kept", mtime(&f).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()));
    log.res("utimensat on a dir", File::open(d).and_then(|h| h.set_modified(when)));
    log.val("dir mtime", mtime(d).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()));
    tick();
    log.res("write after setting", h.write_at(b"Z", 0).map(drop));
    log.val("mtime back to now", mtime(&f).map(|t| t > when));
}

/// POSIX: creating or removing an entry updates the directory's mtime.
fn dir_times(d: &Path, log: &mut Log) {
    let mut t = mtime(d);
    let ops: [(&str, &dyn Fn() -> io::Result<()>); 5] = [
        ("create", &|| create_with(&d.join("f"), b"")),
        ("rename within", &|| fs::rename(d.join("f"), d.join("g"))),
        ("unlink", &|| fs::remove_file(d.join("g"))),
        ("mkdir", &|| fs::create_dir(d.join("s"))),
        ("rmdir", &|| fs::remove_dir(d.join("s"))),
    ];
    for (what, op) in ops {
        tick();
        log.res(what, op());
        let now = mtime(d);
        log.val(&format!("dir mtime after {what}: advanced"), now > t);
        t = now;
    }
}

fn chmod(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("create", create_with(&f, b"x"));
    for mode in [0o600, 0o4755, 0o2711, 0o1777, 0o000, 0o7777, 0o644] {
        log.res(&format!("chmod {mode:o}"), fs::set_permissions(&f, fs::Permissions::from_mode(mode)));
        log.stat("f", fs::metadata(&f));
    }
    log.res("mkdir", fs::create_dir(d.join("s")));
    log.res("chmod dir 700", fs::set_permissions(d.join("s"), fs::Permissions::from_mode(0o700)));
    log.stat("s", fs::metadata(d.join("s")));
    log.res("fchmod", File::open(&f).and_then(|h| h.set_permissions(fs::Permissions::from_mode(0o640))));
    log.stat("f", fs::metadata(&f));
    log.res("chmod missing", fs::set_permissions(d.join("missing"), fs::Permissions::from_mode(0o600)));
    log.res("mkdir mode 0750", fs::DirBuilder::new().mode(0o750).create(d.join("m")).map(drop));
    log.stat("m", fs::metadata(d.join("m")));
}

fn chown(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("create", create_with(&f, b"x"));
    log.val("owner", fs::metadata(&f).map(|m| (m.uid(), m.gid())).ok());
    log.res("chown 1234:5678", std::os::unix::fs::chown(&f, Some(1234), Some(5678)));
    log.val("owner", fs::metadata(&f).map(|m| (m.uid(), m.gid())).ok());
}

fn dot_and_dotdot(d: &Path, log: &mut Log) {
    log.res("mkdir a/b", fs::create_dir_all(d.join("a/b")));
    log.val("a/. is a", same_file(&d.join("a/."), &d.join("a")));
    log.val("a/b/.. is a", same_file(&d.join("a/b/.."), &d.join("a")));
    log.val("a/.. is the top", same_file(&d.join("a/.."), d));
    log.val("a/./b/../b is a/b", same_file(&d.join("a/./b/../b"), &d.join("a/b")));
    log.res("create a/./f", create_with(&d.join("a/./f"), b"dot"));
    log.val("a/b/../f", read_all(&d.join("a/b/../f")).ok());
    log.res("mkdir a/.", fs::create_dir(d.join("a/.")));
    log.res("mkdir a/..", fs::create_dir(d.join("a/..")));
    log.res("rmdir a/b/..", fs::remove_dir(d.join("a/b/..")));
    log.res("unlink a/.", fs::remove_file(d.join("a/.")));
    log.res("create a file named .", OpenOptions::new().write(true).create_new(true).open(d.join("a/.")).map(drop));
    log.val(
        "raw readdir a",
        raw_readdir_names(&d.join("a"))
            .map(|mut v| {
                v.sort();
                v
            })
            .ok(),
    );
    log.val("a/.. of the mount root's child reaches above", fs::metadata(d.join("a/../..")).is_ok());
}

fn fsync_fdatasync(d: &Path, log: &mut Log) {
    let f = d.join("f");
    let h = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&f).unwrap();
    log.res("write", h.write_at(b"durable", 0).map(drop));
    log.res("fsync", h.sync_all());
    log.res("fdatasync", h.sync_data());
    log.res("fsync a read-only fd", File::open(&f).and_then(|r| r.sync_all()));
    log.res("fsync a directory", File::open(d).and_then(|r| r.sync_all()));
    log.res("fdatasync a directory", File::open(d).and_then(|r| r.sync_data()));
    log.val("content", read_all(&f).ok());
}

fn large_write_read(d: &Path, log: &mut Log) {
    let f = d.join("f");
    let data = pattern(3 << 20, 9);
    log.res("write 3 MiB", create_with(&f, &data));
    log.stat("f", fs::metadata(&f));
    log.val("read back equal", read_all(&f).map(|v| v == data).ok());
    let h = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    log.res("overwrite 1 MiB at 1 MiB - 7", h.write_at(&pattern(1 << 20, 10), (1 << 20) - 7).map(drop));
    let v = read_all(&f).unwrap_or_default();
    let mut want = data.clone();
    want[(1 << 20) - 7..(2 << 20) - 7].copy_from_slice(&pattern(1 << 20, 10));
    log.val("read back equal", v == want);
}

fn symlink(d: &Path, log: &mut Log) {
    log.res("create f", create_with(&d.join("f"), b"x"));
    log.res("symlink l -> f", std::os::unix::fs::symlink("f", d.join("l")));
    log.val("readlink l", fs::read_link(d.join("l")).ok());
}

fn mkfifo(d: &Path, log: &mut Log) {
    let c = CString::new(d.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    log.res("mkfifo", if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) });
    let c = CString::new(d.join("sock").as_os_str().as_bytes()).unwrap();
    // SAFETY: as above.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFSOCK | 0o644, 0) };
    log.res("mknod a socket", if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) });
    let c = CString::new(d.join("reg").as_os_str().as_bytes()).unwrap();
    // SAFETY: as above.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFREG | 0o600, 0) };
    log.res("mknod a regular file", if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) });
    log.stat("reg", fs::metadata(d.join("reg")));
}

fn seek_data_end(d: &Path, log: &mut Log) {
    let f = d.join("f");
    log.res("create", create_with(&f, &pattern(5000, 11)));
    let mut h = File::open(&f).unwrap();
    log.val("SEEK_END", h.seek(SeekFrom::End(0)).ok());
    log.val("SEEK_END -10", h.seek(SeekFrom::End(-10)).ok());
    let mut b = Vec::new();
    log.val("read from there", h.read_to_end(&mut b).ok());
    log.val("SEEK_CUR past the end", h.seek(SeekFrom::Current(100)).ok());
    log.val("read past the end", h.read(&mut [0u8; 4]).ok());
    log.res("seek before 0", h.seek(SeekFrom::Start(0)).and_then(|_| h.seek(SeekFrom::Current(-1))).map(drop));
}

/// Stores through a shared mapping reach the file (msync, then a fresh
/// open reads them), and writes through the descriptor show in the map.
fn mmap_shared(d: &Path, log: &mut Log) {
    const LEN: usize = 8192;
    let f = d.join("f");
    log.res("create 8192", create_with(&f, &pattern(LEN, 12)));
    let h = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    // SAFETY: maps LEN bytes of an open file of that size; nothing else
    // maps it, and it is unmapped before `h` closes.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), LEN, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, h.as_raw_fd(), 0)
    };
    if p == libc::MAP_FAILED {
        log.res("mmap", Err::<(), _>(io::Error::last_os_error()));
        return;
    }
    // SAFETY: `p` is a readable and writable mapping of LEN bytes, used only
    // through this slice until the munmap below.
    let m = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), LEN) };
    log.val("mapped bytes are the file's", m[..] == pattern(LEN, 12)[..]);
    m[100..105].copy_from_slice(b"MAPPD");
    m[5000] = b'!';
    log.res("pwrite 2 bytes at 7000", h.write_at(b"PW", 7000).map(drop));
    log.val("seen through the map", m[7000..7002].to_vec());
    // SAFETY: `p` is the mapping made above, LEN bytes.
    let r = unsafe { libc::msync(p, LEN, libc::MS_SYNC) };
    log.res("msync", if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) });
    // SAFETY: as above; `m` is not used after this.
    let r = unsafe { libc::munmap(p, LEN) };
    log.res("munmap", if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) });
    drop(h);
    let v = read_all(&f).unwrap_or_default();
    log.val("read back after close", (v.len(), v[100..105].to_vec(), v[5000], v[7000..7002].to_vec()));
}

/// A directory removed while open (a shell's working directory, a
/// half-read listing): reading it gives nothing more, creating in it fails.
fn removed_open_directory(d: &Path, log: &mut Log) {
    let sub = d.join("sub");
    log.res("mkdir sub", fs::create_dir(&sub));
    let h = File::open(&sub).unwrap();
    log.res("rmdir sub while open", fs::remove_dir(&sub));
    log.val("readdir(3) of the open handle", raw_readdir_fd(&h).ok());
    log.val("fstat nlink", h.metadata().map(|m| m.nlink()).ok());
    log.res("create through the removed path", create_with(&sub.join("f"), b""));
    drop(h);
    log.res("mkdir t", fs::create_dir(d.join("t")));
    log.res("mkdir u", fs::create_dir(d.join("u")));
    let t = File::open(d.join("t")).unwrap();
    log.res("rename u over t while t is open", fs::rename(d.join("u"), d.join("t")));
    log.val("old t: readdir", raw_readdir_fd(&t).ok());
    log.val("old t: fstat nlink", t.metadata().map(|m| m.nlink()).ok());
    log.res("mkdir v (not empty)", fs::create_dir_all(d.join("v/w")));
    let v = File::open(d.join("v")).unwrap();
    log.res("rename t over v fails", fs::rename(d.join("t"), d.join("v")));
    log.val("v: fstat nlink", v.metadata().map(|m| m.nlink()).ok());
    log.val("v: readdir", raw_readdir_fd(&v).ok());
    log.val("names", names_in(d).ok());
}

/// Names readdir returns for an open directory descriptor (a duplicate
/// of it, so `h` stays open).
fn raw_readdir_fd(h: &File) -> io::Result<Vec<String>> {
    let fd = h.try_clone()?;
    use std::os::fd::IntoRawFd;
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` is an open directory descriptor we own; fdopendir takes
    // it over and closedir below closes it.
    let dir = unsafe { libc::fdopendir(raw) };
    if dir.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut out = vec![];
    loop {
        // SAFETY: `dir` is an open stream, closed only below.
        let e = unsafe { libc::readdir(dir) };
        if e.is_null() {
            break;
        }
        // SAFETY: a valid entry whose d_name is NUL-terminated, valid until
        // the next readdir on `dir`.
        out.push(unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) }.to_string_lossy().into_owned());
    }
    // SAFETY: `dir` is open and not used after this.
    unsafe { libc::closedir(dir) };
    out.sort();
    Ok(out)
}

fn statvfs(p: &Path) -> io::Result<libc::statvfs> {
    let c = CString::new(p.as_os_str().as_bytes())?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `v` is writable; both outlive the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut v) } == 0 {
        Ok(v)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn access(p: &Path, mode: libc::c_int) -> io::Result<()> {
    let c = CString::new(p.as_os_str().as_bytes())?;
    // SAFETY: `c` is NUL-terminated and outlives the call.
    if unsafe { libc::access(c.as_ptr(), mode) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What `df` and `test -w` rely on (absolute numbers differ between file
/// systems; their relations do not).
fn statvfs_and_access(d: &Path, log: &mut Log) {
    log.val(
        "statvfs: namemax, bsize, free <= total, avail <= free",
        statvfs(d).as_ref().map(|v| (v.f_namemax, v.f_bsize, v.f_bfree <= v.f_blocks, v.f_bavail <= v.f_bfree)).ok(),
    );
    // (Free space is not compared: the reference's host file system is
    // shared with everything else running.)
    let f = d.join("f");
    log.res("create", create_with(&f, b"x"));
    log.res("chmod 0444", fs::set_permissions(&f, fs::Permissions::from_mode(0o444)));
    log.res("access R_OK", access(&f, libc::R_OK));
    log.res("access W_OK (root)", access(&f, libc::W_OK));
    log.res("access X_OK (no x bit)", access(&f, libc::X_OK));
    log.res("chmod 0544", fs::set_permissions(&f, fs::Permissions::from_mode(0o544)));
    log.res("access X_OK", access(&f, libc::X_OK));
    log.res("access F_OK missing", access(&d.join("missing"), libc::F_OK));
}
