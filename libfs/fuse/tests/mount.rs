//! Mounts an image through FUSE, copies a tree in and out and runs
//! ordinary tools on it (cp, diff, ls, stat, mv, ln, rm, truncate, dd,
//! chmod, find, tar, sha256sum), then checks the image with libfs itself.
//! Skipped, with the reason printed, where FUSE cannot be used (no
//! /dev/fuse, not root and no fusermount3, or mounting refused).

mod common;

use std::path::PathBuf;
use std::process::Command;

use libfs::{Geometry, OpenMode};
use libfs_fuse::open_image;

use common::{fuse_unavailable, Mount};

/// Printed past libtest's capture (straight to stderr), so the reason
/// shows in `cargo test` and `cargo xtask test` output.
fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED libfs FUSE test: {why}");
}

const SCRIPT: &str = r#"
set -euo pipefail
M="$1"; W="$2"
mkdir -p "$W/src/tree/a/b" "$W/out"
head -c 300000 /dev/urandom > "$W/src/big"
echo hello > "$W/src/small"
seq 1 20000 > "$W/src/tree/a/b/seq"
: > "$W/src/tree/empty"
name=$(printf 'n%.0s' $(seq 1 255))
echo long > "$W/src/tree/$name"
cp -r "$W/src/." "$M/"
diff -r "$W/src" "$M"
ls -la "$M" "$M/tree" > /dev/null
test "$(stat -c %s "$M/big")" = 300000
mv "$M/small" "$M/tree/moved"
test ! -e "$M/small"
grep -q hello "$M/tree/moved"
echo appended >> "$M/tree/moved"
test "$(tail -n1 "$M/tree/moved")" = appended
ln "$M/big" "$M/big.link"
test "$(stat -c %h "$M/big")" = 2
cmp "$M/big" "$M/big.link"
rm "$M/big.link"
test "$(stat -c %h "$M/big")" = 1
cp "$M/big" "$W/big.before"
truncate -s 1000 "$M/big"
test "$(stat -c %s "$M/big")" = 1000
cmp -n 1000 "$M/big" "$W/big.before"
dd if=/dev/zero of="$M/zeros" bs=4096 count=300 status=none conv=fsync
test "$(stat -c %s "$M/zeros")" = 1228800
chmod 600 "$M/zeros"
test "$(stat -c %a "$M/zeros")" = 600
mkdir "$M/d"; rmdir "$M/d"
if rmdir "$M/tree" 2>/dev/null; then echo "rmdir of a non-empty directory succeeded"; exit 1; fi
if mkdir "$M/nope/x" 2>/dev/null; then echo "mkdir under a missing directory succeeded"; exit 1; fi
mv "$M/tree/a" "$M/tree/renamed"
test -f "$M/tree/renamed/b/seq"
test "$(find "$M" -type f | wc -l)" = 6
cp -r "$M/tree" "$W/out/"
(cd "$M/tree" && find . -type f -exec sha256sum {} + | sort) > "$W/in.sum"
(cd "$W/out/tree" && find . -type f -exec sha256sum {} + | sort) > "$W/out.sum"
diff "$W/in.sum" "$W/out.sum"
tar cf "$W/t.tar" -C "$M" tree
test "$(tar tf "$W/t.tar" | wc -l)" -ge 6
df "$M" > /dev/null
sync
"#;

#[test]
fn fuse_mount_ordinary_tools() {
    if let Some(why) = fuse_unavailable() {
        return skip(&why);
    }
    let work = std::env::temp_dir().join(format!("libfs-fuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let (img, mnt, scratch): (PathBuf, PathBuf, PathBuf) =
        (work.join("fs.img"), work.join("mnt"), work.join("scratch"));
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    libfs::tools::mkfs_image(&img, Some(64 << 20), Geometry::default()).unwrap();
    let mount = match Mount::new(&img, &mnt) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return skip(&e);
        }
    };
    let out = Command::new("bash").arg("-c").arg(SCRIPT).arg("script").arg(&mnt).arg(&scratch).output().unwrap();
    let ok = out.status.success();
    mount.unmount().unwrap(); // `destroy` commits
    assert!(
        ok,
        "tools on the mount failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The image after unmount: clean, and holds what was written.
    let report = libfs::tools::fsck_image(&img, false).unwrap();
    assert!(report.is_clean(), "{:?}", report.issues);
    let mut fs = open_image(&img).unwrap();
    assert_eq!(fs.stat("/big").unwrap().size, 1000);
    let h = fs.open("/tree/moved", OpenMode::READ).unwrap();
    let mut buf = [0u8; 15];
    assert_eq!(fs.pread(&h, 0, &mut buf).unwrap(), 15);
    assert_eq!(&buf, b"hello\nappended\n");
    assert_eq!(
        fs.stat("/tree/renamed/b/seq").unwrap().size,
        std::fs::metadata(scratch.join("src/tree/a/b/seq")).unwrap().len()
    );
    let _ = std::fs::remove_dir_all(&work);
}
