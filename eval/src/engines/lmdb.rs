//! LMDB through `heed`, one unnamed database.
//!
//! Durability mapping:
//! - `sync`: LMDB's default commit (fdatasync of the data pages, then the
//!   meta page written through an O_DSYNC descriptor: two flushes).
//! - `groupN`: LMDB has no group commit and its only non-syncing commit
//!   (MDB_NOSYNC) may corrupt the store on a system crash, so N logical
//!   transactions are batched into one LMDB write transaction that commits
//!   synchronously. Reads in between go through that open transaction.
//! - `async`: MDB_NOSYNC, with `mdb_env_sync` at `finish` (LMDB's own
//!   asynchronous mode; LMDB documents it as unsafe against OS crashes).

use super::{closes_group, Engine, EngineResult};
use crate::workload::Durability;
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, RoTxn, RwTxn};
use std::path::Path;

pub struct Lmdb {
    env: &'static Env,
    db: Database<'static, Bytes, Bytes>,
    durability: Durability,
    commits: u64,
    /// The write transaction holding the current group (groupN only).
    open_group: Option<RwTxn<'static>>,
}

fn err(what: &str) -> impl Fn(heed::Error) -> String + '_ {
    move |e| format!("lmdb {what}: {e}")
}

impl Lmdb {
    pub fn open(dir: &Path, durability: Durability, expected_bytes: u64) -> EngineResult<Lmdb> {
        let path = dir.join("lmdb");
        std::fs::create_dir_all(&path).map_err(|e| format!("lmdb dir {}: {e}", path.display()))?;
        // Room for the data several times over (copy-on-write keeps old
        // pages until readers are gone); the file grows only as needed.
        let map_size = (expected_bytes.saturating_mul(4)).max(1 << 30).next_power_of_two() as usize;
        let mut options = EnvOpenOptions::new();
        options.map_size(map_size);
        if durability == Durability::Async {
            // SAFETY: NO_SYNC only relaxes durability, which is the point of
            // async mode; finish() calls force_sync.
            unsafe { options.flags(EnvFlags::NO_SYNC) };
        }
        // SAFETY: heed requires that the same environment is not opened twice
        // in one process; each run opens a fresh directory exactly once.
        let env = unsafe { options.open(&path) }.map_err(err("open"))?;
        // The environment lives for the rest of the process (one run per
        // process), which lets a group's write transaction be stored.
        let env: &'static Env = Box::leak(Box::new(env));
        let wtxn = env.write_txn().map_err(err("begin"))?;
        let db: Database<'static, Bytes, Bytes> = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                opener.create_database::<Bytes, Bytes>(wtxn, None).map(CommitOrAbort::<_, ()>::Commit)
            })
            .map_err(err("create db"))?
            .unwrap_commit();
        Ok(Lmdb { env, db, durability, commits: 0, open_group: None })
    }
}

fn read<R>(
    env: &'static Env,
    group: &Option<RwTxn<'static>>,
    f: impl FnOnce(&RoTxn) -> EngineResult<R>,
) -> EngineResult<R> {
    match group {
        Some(w) => f(w),
        None => {
            let r = env.read_txn().map_err(err("read txn"))?;
            f(&r)
        }
    }
}

impl Engine for Lmdb {
    fn commit(&mut self, puts: &[(&[u8], &[u8])]) -> EngineResult<()> {
        self.commits += 1;
        let mut txn = match self.open_group.take() {
            Some(t) => t,
            None => self.env.write_txn().map_err(err("begin"))?,
        };
        for (k, v) in puts {
            self.db.put(&mut txn, k, v).map_err(err("put"))?;
        }
        let close = match self.durability {
            Durability::Group(_) => closes_group(self.durability, self.commits),
            _ => true,
        };
        if close {
            txn.commit().map_err(err("commit"))?;
        } else {
            self.open_group = Some(txn);
        }
        Ok(())
    }

    fn get(&mut self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> EngineResult<bool> {
        let db = self.db;
        read(self.env, &self.open_group, |t| match db.get(t, key).map_err(err("get"))? {
            Some(v) => {
                visit(v);
                Ok(true)
            }
            None => Ok(false),
        })
    }

    fn scan(&mut self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> EngineResult<usize> {
        let db = self.db;
        read(self.env, &self.open_group, |t| {
            let mut count = 0;
            for item in db
                .range(t, &(std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
                .map_err(err("range"))?
                .take(n)
            {
                let (k, v) = item.map_err(err("range step"))?;
                visit(k, v);
                count += 1;
            }
            Ok(count)
        })
    }

    fn finish(&mut self) -> EngineResult<()> {
        if let Some(txn) = self.open_group.take() {
            txn.commit().map_err(err("commit"))?;
        }
        if self.durability == Durability::Async {
            self.env.force_sync().map_err(err("sync"))?;
        }
        Ok(())
    }
}
