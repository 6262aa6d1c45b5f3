//! libdb, the project's own database, through its Linux backends.
//!
//! Medium `pmem`: the file is mmapped as persistent memory
//! (`open_file_pmem`: MAP_SYNC + clwb on a DAX file system, else msync);
//! otherwise the file is a block device (`open_file_block`: pwrite +
//! fdatasync). Options are libdb's defaults (64 MiB page cache, 8 MiB log,
//! checkpoint every 4 MiB of log).
//!
//! Durability maps one to one onto libdb's own per-commit modes
//! (`Sync`, `Group(n)`, `Async`); `finish` calls `Db::sync`.

use super::{Engine, EngineResult};
use crate::workload::Durability;
use libdb::host::{open_file_block, open_file_pmem, FileDb, PmemFileDb};
use libdb::Options;
use std::path::Path;

enum Store {
    Block(FileDb),
    Pmem(PmemFileDb),
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
        }
    };
}

impl Libdb {
    pub fn open(dir: &Path, durability: Durability, pmem: bool, expected_bytes: u64) -> EngineResult<Libdb> {
        let path = dir.join("libdb.db");
        let opts = Options::default();
        let store = if pmem {
            let size = (expected_bytes.saturating_mul(4)).max(64 << 20).next_power_of_two();
            let size = usize::try_from(size).map_err(|_| "libdb: region too large".to_string())?;
            let storage = open_file_pmem(&path, size).map_err(err("open pmem file"))?;
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
        }
    }
}
