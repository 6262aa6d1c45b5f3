//! libdb, the project's own database, through its Linux backends.
//!
//! Medium `pmem`: the file is mmapped as persistent memory
//! (`open_file_pmem`: MAP_SYNC + clwb on a DAX file system, else msync);
//! otherwise the file is a block device (`open_file_block`: pwrite +
//! fdatasync). Options are libdb's defaults (64 MiB page cache, 8 MiB log,
//! checkpoint every 4 MiB of log).
//!
//! Media `nvme-raw` / `nvme-raw-fua`: no file system, a region of the raw
//! NVMe block device ([`crate::rawmedia`]) through [`RawBlockDevice`]
//! (`O_DIRECT`, 512-byte blocks; `fdatasync`, or FUA writes).
//!
//! Medium `pmem-raw`: no file system, the NVDIMM as device-DAX
//! ([`crate::rawmedia::DAX_DEV`]) through libdb's own pmem backend
//! (`open_dax_device_pmem`: `MAP_SYNC`, clwb + sfence), mapped as long as
//! the `pmem` rows' file.
//!
//! Durability maps one to one onto libdb's own per-commit modes
//! (`Sync`, `Group(n)`, `Async`); `finish` calls `Db::sync`.

use super::{Engine, EngineResult};
use crate::workload::Durability;
use libdb::host::{open_dax_device_pmem, open_file_block, open_file_pmem, FileDb, PmemFileDb};
use libdb::{BlockDevice, BlockStorage, Options};
use std::path::Path;

enum Store {
    Block(FileDb),
    Pmem(PmemFileDb),
    Raw(libdb::Db<BlockStorage<RawBlockDevice>>),
}

/// A region of a block device as libdb's block device: `O_DIRECT`
/// transfers through a 4096-aligned bounce buffer (direct I/O needs
/// aligned memory), `fdatasync` as the flush; with `fua` the device is
/// opened `O_DSYNC` too, every write is durable when it returns (one FUA
/// command), and the flush is a no-op.
pub struct RawBlockDevice {
    file: std::fs::File,
    offset: u64,
    blocks: u64,
    fua: bool,
    bounce: Vec<u8>,
}

const BLOCK: usize = 512;

impl RawBlockDevice {
    pub fn open(r: &crate::rawmedia::Region) -> std::io::Result<RawBlockDevice> {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = libc::O_DIRECT | if r.fua { libc::O_DSYNC } else { 0 };
        let file = std::fs::OpenOptions::new().read(true).write(true).custom_flags(flags).open(r.dev)?;
        Ok(RawBlockDevice { file, offset: r.offset, blocks: r.len / BLOCK as u64, fua: r.fua, bounce: vec![] })
    }

    /// `len` bytes of the bounce buffer, 4096-aligned.
    fn aligned(bounce: &mut Vec<u8>, len: usize) -> &mut [u8] {
        if bounce.len() < len + 4096 {
            bounce.resize(len + 4096, 0);
        }
        let off = bounce.as_ptr().align_offset(4096);
        &mut bounce[off..off + len]
    }

    fn at(&self, lba: u64, len: usize) -> Result<u64, libdb::IoError> {
        if lba + (len / BLOCK) as u64 > self.blocks {
            return Err(libdb::IoError::OutOfRange);
        }
        Ok(self.offset + lba * BLOCK as u64)
    }
}

fn io_err(e: std::io::Error) -> libdb::IoError {
    libdb::IoError::Device(e.raw_os_error().unwrap_or(-1))
}

impl BlockDevice for RawBlockDevice {
    fn block_size(&self) -> usize {
        BLOCK
    }
    fn blocks(&self) -> u64 {
        self.blocks
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), libdb::IoError> {
        use std::os::unix::fs::FileExt;
        let at = self.at(lba, buf.len())?;
        let tmp = Self::aligned(&mut self.bounce, buf.len());
        self.file.read_exact_at(tmp, at).map_err(io_err)?;
        buf.copy_from_slice(tmp);
        Ok(())
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), libdb::IoError> {
        use std::os::unix::fs::FileExt;
        let at = self.at(lba, data.len())?;
        let tmp = Self::aligned(&mut self.bounce, data.len());
        tmp.copy_from_slice(data);
        self.file.write_all_at(tmp, at).map_err(io_err)
    }
    fn flush(&mut self) -> Result<(), libdb::IoError> {
        if self.fua {
            // Every write was FUA: already durable.
            return Ok(());
        }
        self.file.sync_data().map_err(io_err)
    }
}

pub struct Libdb {
    store: Store,
    durability: libdb::Durability,
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("libdb {what}: {e}")
}

/// The same body for both backends (their `Db` types differ).
macro_rules! with_db {
    ($self:expr, $db:ident => $body:expr) => {
        match &$self.store {
            Store::Block($db) => $body,
            Store::Pmem($db) => $body,
            Store::Raw($db) => $body,
        }
    };
}

impl Libdb {
    pub fn open(dir: &Path, durability: Durability, medium: &str, expected_bytes: u64) -> EngineResult<Libdb> {
        let path = dir.join("libdb.db");
        let opts = Options::default();
        let pmem = medium == "pmem";
        let store = if let Some(region) = crate::rawmedia::region(medium) {
            let dev =
                RawBlockDevice::open(&region).map_err(|e| format!("libdb: opening {} ({medium}): {e}", region.dev))?;
            Store::Raw(libdb::Db::create(BlockStorage::new(dev), opts).map_err(err("create"))?)
        } else if pmem || crate::rawmedia::is_raw_pmem(medium) {
            let size = (expected_bytes.saturating_mul(4)).max(64 << 20).next_power_of_two();
            let storage = if pmem {
                let size = usize::try_from(size).map_err(|_| "libdb: region too large".to_string())?;
                open_file_pmem(&path, size).map_err(err("open pmem file"))?
            } else {
                let dev = crate::rawmedia::DAX_DEV;
                let sys = crate::rawmedia::dax_size_path(dev);
                let text = std::fs::read_to_string(&sys)
                    .map_err(|e| format!("libdb ({medium}): reading {sys}: {e} (is {dev} device-DAX?)"))?;
                let dev_bytes = crate::rawmedia::parse_sysfs_size(&text).map_err(|e| format!("libdb: {sys}: {e}"))?;
                let len = crate::rawmedia::dax_map_len(size, dev_bytes).map_err(|e| format!("libdb: {e}"))?;
                let len = usize::try_from(len).map_err(|_| "libdb: region too large".to_string())?;
                open_dax_device_pmem(dev, len).map_err(|e| format!("libdb: mapping {dev} ({medium}): {e}"))?
            };
            Store::Pmem(libdb::Db::create(storage, opts).map_err(err("create"))?)
        } else {
            let storage = open_file_block(&path).map_err(err("open file"))?;
            Store::Block(libdb::Db::create(storage, opts).map_err(err("create"))?)
        };
        let durability = match durability {
            Durability::Sync => libdb::Durability::Sync,
            Durability::Group(n) => libdb::Durability::Group(n),
            Durability::Async => libdb::Durability::Async,
        };
        Ok(Libdb { store, durability })
    }
}

impl Engine for Libdb {
    fn commit(&mut self, puts: &[(&[u8], &[u8])]) -> EngineResult<()> {
        let durability = self.durability;
        with_db!(self, db => {
            let mut txn = db.begin_write().map_err(err("begin"))?;
            for (k, v) in puts {
                txn.put(k, v).map_err(err("put"))?;
            }
            txn.commit(durability).map_err(err("commit"))
        })
    }

    fn get(&mut self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> EngineResult<bool> {
        let value = with_db!(self, db => db.get(key).map_err(err("get"))?);
        match value {
            Some(v) => {
                visit(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn scan(&mut self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> EngineResult<usize> {
        with_db!(self, db => {
            let snap = db.begin_read();
            let mut count = 0;
            for item in snap.range(start..).take(n) {
                let (k, v) = item.map_err(err("range"))?;
                visit(&k, &v);
                count += 1;
            }
            Ok(count)
        })
    }

    fn finish(&mut self) -> EngineResult<()> {
        with_db!(self, db => db.sync().map_err(err("sync")))
    }

    fn barriers(&self) -> Option<u64> {
        // On mapped pmem a barrier is a fence (or an msync), invisible to
        // the fsync wrappers: use libdb's own count there.
        match &self.store {
            Store::Pmem(db) => Some(db.stats().io.barriers),
            Store::Block(_) => None,
            // FUA writes make barriers that call nothing: count libdb's own.
            Store::Raw(db) => Some(db.stats().io.barriers),
        }
    }
}
