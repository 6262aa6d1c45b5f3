//! Mounting an image for the FUSE tests: whether FUSE can be used here
//! (and why not), and a mount that waits until it is visible and unmounts
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use libfs_fuse::{config, open_image, LibfsFuse};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Why FUSE cannot be used on this machine, if it cannot.
pub fn fuse_unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse does not exist".into());
    }
    if !is_root() && Command::new("fusermount3").arg("-V").output().is_err() {
        return Some("not root and no fusermount3 (apt-get install fuse3)".into());
    }
    None
}

pub fn mounted(mnt: &Path) -> bool {
    let m = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let p = mnt.to_str().unwrap();
    m.lines().any(|l| l.split_whitespace().nth(1) == Some(p))
}

/// A mounted image. `unmount` (or dropping it) unmounts and waits for the
/// adapter's thread to end, so its final commit (`destroy`) is on the image
/// before anyone reads the image.
pub struct Mount {
    session: Option<fuser::BackgroundSession>,
    pub dir: PathBuf,
}

impl Mount {
    /// Mounts `img` on `dir`; `Err` says why the kernel refused.
    pub fn new(img: &Path, dir: &Path) -> Result<Mount, String> {
        let fs = open_image(img)?;
        let session =
            fuser::spawn_mount(LibfsFuse::new(fs), dir, &config()).map_err(|e| format!("mount refused: {e}"))?;
        let t = Instant::now();
        while !mounted(dir) {
            if t.elapsed() > Duration::from_secs(10) {
                return Err("the mount did not appear in /proc/mounts".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Mount { session: Some(session), dir: dir.to_path_buf() })
    }
}

impl Mount {
    pub fn unmount(mut self) -> Result<(), String> {
        self.end()
    }

    fn end(&mut self) -> Result<(), String> {
        let Some(session) = self.session.take() else { return Ok(()) };
        session.umount_and_join().map_err(|e| format!("unmounting {}: {e}", self.dir.display()))?;
        if mounted(&self.dir) {
            return Err(format!("{} is still mounted after unmounting", self.dir.display()));
        }
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            eprintln!("{e}");
        }
    }
}
