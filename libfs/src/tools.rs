//! Host tools on image files (feature `std`): an image is a regular file
//! used as a block device of 512-byte sectors (the same bytes work on a
//! persistent-memory mapping).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::string::String;
use std::vec::Vec;

use libdb::{BlockStorage, MemBlockDevice};

use crate::error::{Error, Result};
use crate::format::Superblock;
use crate::fs::{Fs, Geometry};
use crate::fsck::{fsck, Report};

pub const SECTOR: usize = 512;

fn io(e: std::io::Error) -> Error {
    Error::Io { offset: 0, error: libdb::IoError::Device(e.raw_os_error().unwrap_or(-1)) }
}

pub fn load(path: &Path) -> Result<BlockStorage<MemBlockDevice>> {
    let mut data = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut data)).map_err(io)?;
    data.truncate(data.len() / SECTOR * SECTOR);
    Ok(BlockStorage::new(MemBlockDevice::from_image(SECTOR, data)))
}

pub fn store(path: &Path, st: &BlockStorage<MemBlockDevice>) -> Result<()> {
    let mut f = OpenOptions::new().write(true).create(true).truncate(false).open(path).map_err(io)?;
    f.write_all(st.device().image()).and_then(|_| f.sync_all()).map_err(io)
}

/// Formats `path` (created with `size` bytes, or its current size).
pub fn mkfs_image(path: &Path, size: Option<u64>, geo: Geometry) -> Result<Superblock> {
    let size = match size {
        Some(s) => s,
        None => std::fs::metadata(path).map_err(io)?.len(),
    };
    let st = BlockStorage::new(MemBlockDevice::new(SECTOR, size / SECTOR as u64));
    let fs = Fs::mkfs(st, geo)?;
    let sb = fs.superblock();
    store(path, fs.storage())?;
    Ok(sb)
}

/// Checks (and with `repair`, repairs) the image at `path`.
pub fn fsck_image(path: &Path, repair: bool) -> Result<Report> {
    let st = load(path)?;
    let (report, st) = fsck(st, repair);
    let report = report?;
    if repair && report.repaired > 0 {
        if let Some(st) = st {
            store(path, &st)?;
        }
    }
    Ok(report)
}

/// Parses `123`, `64K`, `16M`, `1G`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

pub fn describe(sb: &Superblock) -> String {
    format!(
        "{} pages of 4 KiB: superblock, 2 checkpoint slots of {} pages, a log of {} pages, {} data pages (from page {})",
        sb.total_pages,
        sb.ckpt_pages,
        sb.log_pages,
        sb.total_pages - sb.data_start_page(),
        sb.data_start_page()
    )
}
