//! `libfs-fuse IMAGE MOUNTPOINT`: mounts a libfs image (made by `mkfs`)
//! until unmounted (`umount MOUNTPOINT` / `fusermount3 -u MOUNTPOINT`).

use std::path::PathBuf;
use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [image, mountpoint] = &args[..] else {
        eprintln!("usage: libfs-fuse IMAGE MOUNTPOINT");
        exit(2);
    };
    let fs = match libfs_fuse::open_image(&PathBuf::from(image)) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("libfs-fuse: {e}");
            exit(1);
        }
    };
    if let Err(e) = fuser::mount(libfs_fuse::LibfsFuse::new(fs), mountpoint, &libfs_fuse::config()) {
        eprintln!("libfs-fuse: mount {mountpoint}: {e}");
        exit(1);
    }
}
