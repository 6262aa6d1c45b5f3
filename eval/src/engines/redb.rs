//! redb, one table of byte strings.
//!
//! Durability mapping (redb commits are per-transaction):
//! - `sync`: every commit `Durability::Immediate` (fsync).
//! - `groupN`: N-1 commits `Durability::None`, the Nth `Immediate`, which
//!   persists the whole group (redb's documented semantics for None).
//! - `async`: every commit `None`; `finish` commits an empty `Immediate`
//!   transaction.

use super::{closes_group, Engine, EngineResult};
use crate::workload::Durability;
use redb::{Database, ReadableDatabase, TableDefinition};
use std::path::Path;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

pub struct Redb {
    db: Database,
    durability: Durability,
    commits: u64,
    pending: u64,
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("redb {what}: {e}")
}

impl Redb {
    pub fn open(dir: &Path, durability: Durability) -> EngineResult<Redb> {
        let db = Database::create(dir.join("redb.db")).map_err(err("open"))?;
        let txn = db.begin_write().map_err(err("begin"))?;
        txn.open_table(TABLE).map_err(err("create table"))?;
        txn.commit().map_err(err("commit"))?;
        Ok(Redb { db, durability, commits: 0, pending: 0 })
    }

    fn write(&mut self, puts: &[(&[u8], &[u8])], durable: bool) -> EngineResult<()> {
        let mut txn = self.db.begin_write().map_err(err("begin"))?;
        let level = if durable { redb::Durability::Immediate } else { redb::Durability::None };
        txn.set_durability(level).map_err(err("durability"))?;
        {
            let mut table = txn.open_table(TABLE).map_err(err("open table"))?;
            for (k, v) in puts {
                table.insert(*k, *v).map_err(err("put"))?;
            }
        }
        txn.commit().map_err(err("commit"))?;
        self.pending = if durable { 0 } else { self.pending + 1 };
        Ok(())
    }
}

impl Engine for Redb {
    fn commit(&mut self, puts: &[(&[u8], &[u8])]) -> EngineResult<()> {
        self.commits += 1;
        let durable = closes_group(self.durability, self.commits);
        self.write(puts, durable)
    }

    fn get(&mut self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> EngineResult<bool> {
        let txn = self.db.begin_read().map_err(err("begin read"))?;
        let table = txn.open_table(TABLE).map_err(err("open table"))?;
        match table.get(key).map_err(err("get"))? {
            Some(v) => {
                visit(v.value());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn scan(&mut self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> EngineResult<usize> {
        let txn = self.db.begin_read().map_err(err("begin read"))?;
        let table = txn.open_table(TABLE).map_err(err("open table"))?;
        let mut count = 0;
        for item in table.range::<&[u8]>(start..).map_err(err("range"))?.take(n) {
            let (k, v) = item.map_err(err("range step"))?;
            visit(k.value(), v.value());
            count += 1;
        }
        Ok(count)
    }

    fn finish(&mut self) -> EngineResult<()> {
        if self.pending > 0 {
            self.write(&[], true)?;
        }
        Ok(())
    }
}
