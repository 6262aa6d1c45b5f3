//! The engines under test, behind one trait.
//!
//! Every engine receives the run's [`Durability`] when it opens and maps it
//! onto its own mechanisms (see each module and `eval/README.md`): a logical
//! transaction is one [`Engine::commit`] call, and [`Engine::finish`] makes
//! everything committed so far durable.

use crate::workload::Durability;
use std::path::Path;

mod libdb;
mod lmdb;
mod redb;
mod sqlite;

pub type EngineResult<T> = Result<T, String>;

/// A transactional ordered key-value store.
pub trait Engine {
    /// One logical transaction writing `puts` (insert or replace).
    fn commit(&mut self, puts: &[(&[u8], &[u8])]) -> EngineResult<()>;
    /// Point read in its own read snapshot; `visit` sees the value.
    fn get(&mut self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> EngineResult<bool>;
    /// Up to `n` records from `start` (inclusive) in key order, in one read
    /// snapshot. Returns how many were visited.
    fn scan(&mut self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> EngineResult<usize>;
    /// Make every commit so far durable.
    fn finish(&mut self) -> EngineResult<()>;
    /// Durability barriers the engine issued that the fsync wrappers cannot
    /// see (fences on mapped persistent memory), counted by the engine
    /// itself. `None`: the wrappers see every flush this engine makes.
    fn barriers(&self) -> Option<u64> {
        None
    }
}

/// Opens engine `name` with a fresh store in `dir` (which must exist);
/// `medium` picks a backend where an engine has several (libdb on `pmem`).
pub fn open(
    name: &str,
    dir: &Path,
    medium: &str,
    durability: Durability,
    expected_bytes: u64,
) -> EngineResult<Box<dyn Engine>> {
    if !crate::matrix::supports(name, durability) {
        return Err(format!("engine {name} cannot honour durability {durability}"));
    }
    if crate::rawmedia::without_fs(medium) && name != "libdb" {
        return Err(format!(
            "engine {name} needs a file system; medium {medium} is a raw block or device-DAX device (libdb only)"
        ));
    }
    match name {
        "libdb" => Ok(Box::new(libdb::Libdb::open(dir, durability, medium, expected_bytes)?)),
        "sqlite" => Ok(Box::new(sqlite::Sqlite::open(dir, false, durability)?)),
        "sqlite-normal" => Ok(Box::new(sqlite::Sqlite::open(dir, true, durability)?)),
        "lmdb" => Ok(Box::new(lmdb::Lmdb::open(dir, durability, expected_bytes)?)),
        "redb" => Ok(Box::new(redb::Redb::open(dir, durability)?)),
        _ => Err(format!("unknown engine {name:?} (known: {})", crate::matrix::ENGINES.join(", "))),
    }
}

/// Whether commit number `n` (1-based) closes a group and must be durable.
pub(crate) fn closes_group(durability: Durability, n: u64) -> bool {
    match durability {
        Durability::Sync => true,
        Durability::Group(size) => n.is_multiple_of(size as u64),
        Durability::Async => false,
    }
}
