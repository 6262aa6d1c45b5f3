//! libdb on Linux without a file system (`eval --db`'s `nvme-raw` and
//! `nvme-raw-fua` rows, eval/DB.md): where on the Linux guest's NVMe
//! namespace the database lives, and how it is opened. Defined once here:
//! the guest's init keeps ext4 below [`NVME_FS_MIB`] (its `mke2fs` size
//! argument must match), and the libdb engine opens the region above it.
//!
//! * `nvme-raw`: the block device itself, `O_DIRECT` (no page cache),
//!   `pwrite` + `fdatasync` (a device flush) per durable commit: what
//!   libdb does on a file, minus the file system.
//! * `nvme-raw-fua`: the same with `O_DSYNC` too: Linux sends each write
//!   as a Force-Unit-Access write and libdb's barrier calls nothing. As
//!   measured (eval/DB.md), Linux 6.1 still follows every `O_DSYNC` write
//!   to a block device with a device flush (`blkdev_write_iter` ends in
//!   `generic_write_sync`, which flushes): one system call per commit
//!   instead of two, but not one device command instead of two.

/// The NVMe namespace of the Linux guest.
pub const NVME_DEV: &str = "/dev/nvme0n1";
/// ext4 (the file-system rows) occupies the first this many MiB.
pub const NVME_FS_MIB: u64 = 384;
/// The raw rows' region: from [`NVME_FS_MIB`] to the end of the 512 MiB
/// namespace (the standard machine's NVMe image).
pub const NVME_RAW_MIB: u64 = 128;

/// The raw media and whether each writes with FUA.
pub const RAW_MEDIA: [(&str, bool); 2] = [("nvme-raw", false), ("nvme-raw-fua", true)];

/// A region of a block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub dev: &'static str,
    pub offset: u64,
    pub len: u64,
    /// Every write `O_DSYNC` (FUA); barriers then need no device flush.
    pub fua: bool,
}

/// The region a raw medium runs on, or `None` for a medium with a file system.
pub fn region(medium: &str) -> Option<Region> {
    RAW_MEDIA.iter().find(|m| m.0 == medium).map(|&(_, fua)| Region {
        dev: NVME_DEV,
        offset: NVME_FS_MIB << 20,
        len: NVME_RAW_MIB << 20,
        fua,
    })
}

pub fn is_raw(medium: &str) -> bool {
    region(medium).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_media_sit_above_the_file_system() {
        let r = region("nvme-raw").unwrap();
        assert_eq!((r.dev, r.offset, r.len, r.fua), ("/dev/nvme0n1", 384 << 20, 128 << 20, false));
        assert!(region("nvme-raw-fua").unwrap().fua);
        assert!(region("nvme").is_none() && !is_raw("pmem"));
        // The region ends at the end of the standard machine's namespace.
        assert_eq!(r.offset + r.len, 512 << 20);
    }
}
