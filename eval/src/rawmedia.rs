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
//! * `pmem-raw`: libdb on the NVDIMM with no file system: the namespace
//!   as device-DAX ([`DAX_DEV`]), mapped `MAP_SYNC`; libdb's pmem backend
//!   makes a commit durable with `clwb` + `sfence`, no system call, as on
//!   ext4-DAX but with no file system (and its 4 KiB page faults) under
//!   the mapping. The guest has one NVDIMM namespace, fsdax for the
//!   ext4-DAX rows; its init turns it into devdax when it reaches the
//!   first `pmem-raw` row, so those rows run after every `pmem` row
//!   ([`crate::linux::plan::runs_with_raw`] orders them so).

/// The NVMe namespace of the Linux guest.
pub const NVME_DEV: &str = "/dev/nvme0n1";
/// ext4 (the file-system rows) occupies the first this many MiB.
pub const NVME_FS_MIB: u64 = 384;
/// The raw rows' region: from [`NVME_FS_MIB`] to the end of the 512 MiB
/// namespace (the standard machine's NVMe image).
pub const NVME_RAW_MIB: u64 = 128;

/// The raw media and whether each writes with FUA.
pub const RAW_MEDIA: [(&str, bool); 2] = [("nvme-raw", false), ("nvme-raw-fua", true)];

/// libdb on the NVDIMM as device-DAX (no file system).
pub const PMEM_RAW: &str = "pmem-raw";
/// The device-DAX node the guest's init makes of the NVDIMM's namespace.
pub const DAX_DEV: &str = "/dev/dax0.0";
/// Device-DAX mappings must be multiples of the device's alignment; the
/// guest's init keeps the kernel's default, one 2 MiB huge page.
pub const DAX_ALIGN: u64 = 2 << 20;

/// Every medium without a file system, in the order `eval --db` runs them.
pub const ALL_RAW: [&str; 3] = ["nvme-raw", "nvme-raw-fua", PMEM_RAW];

pub fn is_raw_pmem(medium: &str) -> bool {
    medium == PMEM_RAW
}

/// A medium with no file system (block device or device-DAX): libdb only.
pub fn without_fs(medium: &str) -> bool {
    is_raw(medium) || is_raw_pmem(medium)
}

/// Where the kernel reports a device-DAX device's size in bytes.
pub fn dax_size_path(dev: &str) -> String {
    let name = dev.rsplit('/').next().unwrap_or(dev);
    format!("/sys/bus/dax/devices/{name}/size")
}

/// A sysfs size file's contents (decimal bytes, then a newline).
pub fn parse_sysfs_size(text: &str) -> Result<u64, String> {
    text.trim().parse::<u64>().map_err(|_| format!("sysfs size {:?} is not a decimal byte count", text.trim()))
}

/// The length to map of a device-DAX device of `device_bytes` for a
/// database that wants `want` bytes: rounded up to [`DAX_ALIGN`], and no
/// more than the device has.
pub fn dax_map_len(want: u64, device_bytes: u64) -> Result<u64, String> {
    let len = want.div_ceil(DAX_ALIGN).max(1) * DAX_ALIGN;
    if len > device_bytes {
        return Err(format!(
            "device-DAX {DAX_DEV}: {device_bytes} bytes, the database wants {len} ({want} rounded up to {DAX_ALIGN})"
        ));
    }
    Ok(len)
}

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

    #[test]
    fn pmem_raw_is_raw_but_not_a_block_region() {
        assert!(is_raw_pmem("pmem-raw") && without_fs("pmem-raw") && without_fs("nvme-raw"));
        assert!(!is_raw("pmem-raw"), "the NVMe device columns must not apply to it");
        assert!(!without_fs("pmem") && !without_fs("nvme"));
        assert_eq!(*ALL_RAW.last().unwrap(), PMEM_RAW, "pmem-raw runs last (the guest switches fsdax to devdax)");
    }

    #[test]
    fn dax_sizes() {
        assert_eq!(dax_size_path("/dev/dax0.0"), "/sys/bus/dax/devices/dax0.0/size");
        assert_eq!(parse_sysfs_size("130023424\n").unwrap(), 130023424);
        assert!(parse_sysfs_size("").unwrap_err().contains("not a decimal"));
        assert!(parse_sysfs_size("12k").is_err());
        assert_eq!(dax_map_len(64 << 20, 124 << 20).unwrap(), 64 << 20);
        assert_eq!(dax_map_len(1, 124 << 20).unwrap(), 2 << 20);
        assert_eq!(dax_map_len((64 << 20) + 1, 124 << 20).unwrap(), 66 << 20);
        assert!(dax_map_len(128 << 20, 124 << 20).unwrap_err().contains("wants"));
    }
}
