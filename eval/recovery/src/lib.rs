//! The media of `cargo xtask eval --recovery`, built on the host with
//! libdb's own Linux backends (the on-medium format is the same bytes on
//! the exokernel): an NVMe image (512-byte blocks, `pwrite` + `fdatasync`)
//! or an NVDIMM backing file (mapped, 8-byte write alignment, so the log
//! is laid out as kvdb's `PmemStorage` writes it).
//!
//! [`build_base`] makes the database of `eval_lines::recovery`: its base
//! keys loaded and checkpointed. [`add_tail`] reopens it, commits the tail
//! (sync commits, no checkpoint) and drops it without a close, as a power
//! cut would. [`check`] is what kvdb checks after its timed open, on the
//! host (the tests use it; the eval boots do it in the guest).

use anyhow::{bail, ensure, Context, Result};
use eval_lines::recovery as plan;
use libdb::host::{open_file_block, open_file_pmem};
use libdb::{Db, Durability, Options, Stats, Storage};
use std::path::Path;

/// Base keys per load transaction.
const LOAD_BATCH: u64 = 64;

/// What the medium became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Built {
    pub keys: u64,
    pub tail_records: u64,
    pub db_pages: u64,
    pub generation: u64,
}

fn options(checkpoint_log_bytes: u64) -> Options {
    Options { cache_pages: plan::CACHE_PAGES, log_pages: plan::LOG_PAGES, checkpoint_log_bytes }
}

/// Runs `f` on the database at `path` for `medium` (`nvme` or `pmem`),
/// opened (`create`: created) on storage of `medium_bytes`.
fn with_db<R>(
    medium: &str,
    path: &Path,
    medium_bytes: u64,
    create: bool,
    opts: Options,
    f: impl FnOnce(&mut dyn DbOps) -> Result<R>,
) -> Result<R> {
    fn go<S: Storage, R>(s: S, create: bool, opts: Options, f: impl FnOnce(&mut dyn DbOps) -> Result<R>) -> Result<R> {
        let db = if create { Db::create(s, opts) } else { Db::open(s, opts) }.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut h = Handle(db);
        let r = f(&mut h)?;
        // The power cut: no close, no checkpoint (the storage is dropped).
        drop(h.0.into_storage());
        Ok(r)
    }
    match medium {
        "nvme" => {
            let s = open_file_block(path).with_context(|| format!("opening {}", path.display()))?;
            let r = go(s, create, opts, f)?;
            let file = std::fs::OpenOptions::new().write(true).open(path)?;
            ensure!(
                file.metadata()?.len() <= medium_bytes,
                "{} grew past the medium's {medium_bytes} bytes",
                path.display()
            );
            file.set_len(medium_bytes)?;
            Ok(r)
        }
        "pmem" => {
            let s =
                open_file_pmem(path, medium_bytes as usize).with_context(|| format!("mapping {}", path.display()))?;
            go(s, create, opts, f)
        }
        other => bail!("medium {other:?}: expected nvme or pmem"),
    }
}

/// The database operations the builder needs, over any storage.
trait DbOps {
    fn put_batch(&mut self, items: &[(u64, Vec<u8>)], durability: Durability) -> Result<()>;
    fn checkpoint(&mut self) -> Result<()>;
    fn get(&mut self, i: u64) -> Result<Option<Vec<u8>>>;
    fn stats(&self) -> Stats;
}

struct Handle<S: Storage>(Db<S>);

impl<S: Storage> DbOps for Handle<S> {
    fn put_batch(&mut self, items: &[(u64, Vec<u8>)], durability: Durability) -> Result<()> {
        let mut t = self.0.begin_write().map_err(|e| anyhow::anyhow!("{e}"))?;
        for (i, v) in items {
            t.put(&plan::key(*i), v).map_err(|e| anyhow::anyhow!("put key {i}: {e}"))?;
        }
        t.commit(durability).map_err(|e| anyhow::anyhow!("commit: {e}"))
    }
    fn checkpoint(&mut self) -> Result<()> {
        self.0.checkpoint().map_err(|e| anyhow::anyhow!("checkpoint: {e}"))
    }
    fn get(&mut self, i: u64) -> Result<Option<Vec<u8>>> {
        self.0.get(&plan::key(i)).map_err(|e| anyhow::anyhow!("get key {i}: {e}"))
    }
    fn stats(&self) -> Stats {
        self.0.stats()
    }
}

/// A fresh database of `plan::base_keys(size_mib)` keys at `path` (any
/// old file is replaced), checkpointed: an empty log tail.
pub fn build_base(medium: &str, path: &Path, size_mib: u64, medium_bytes: u64) -> Result<Built> {
    ensure!(size_mib > 0, "a database of 0 MiB");
    let _ = std::fs::remove_file(path);
    let keys = plan::base_keys(size_mib);
    with_db(medium, path, medium_bytes, true, options(plan::LOAD_CHECKPOINT_LOG_BYTES), |db| {
        let mut i = 0;
        while i < keys {
            let batch: Vec<(u64, Vec<u8>)> =
                (i..(i + LOAD_BATCH).min(keys)).map(|k| (k, plan::base_value(k))).collect();
            db.put_batch(&batch, Durability::Async)?;
            i += LOAD_BATCH;
        }
        db.checkpoint()?;
        let s = db.stats();
        ensure!(s.tree_entries == keys, "the tree holds {} keys after the load, expected {keys}", s.tree_entries);
        Ok(Built { keys, tail_records: 0, db_pages: s.db_pages, generation: s.generation })
    })
}

/// Reopens the database at `path` and commits `tail_records` sync
/// commits of the plan's tail, then cuts the power (no close). Fails if
/// libdb checkpointed on the way (the tail would not be in the log).
pub fn add_tail(medium: &str, path: &Path, medium_bytes: u64, keys: u64, tail_records: u64) -> Result<Built> {
    with_db(medium, path, medium_bytes, false, options(0), |db| {
        let before = db.stats();
        ensure!(
            before.replayed_records == 0,
            "{} already holds a log tail ({} records)",
            path.display(),
            before.replayed_records
        );
        for j in 0..tail_records {
            db.put_batch(&[(plan::tail_key_index(keys, j), plan::tail_value(j))], Durability::Sync)?;
        }
        let s = db.stats();
        ensure!(
            s.checkpoints == before.checkpoints,
            "libdb checkpointed during the tail ({} records): the log did not hold it",
            tail_records
        );
        Ok(Built { keys, tail_records, db_pages: s.db_pages, generation: s.generation })
    })
}

/// Opens the database (recovery) and checks what kvdb checks: the key
/// count, the records replayed and the sample keys' values. Returns the
/// keys checked.
pub fn check(medium: &str, path: &Path, medium_bytes: u64, keys: u64, tail_records: u64) -> Result<u64> {
    with_db(medium, path, medium_bytes, false, options(0), |db| {
        let s = db.stats();
        ensure!(s.tree_entries == keys, "{} keys in the tree, expected {keys}", s.tree_entries);
        ensure!(
            s.replayed_records == tail_records,
            "{} log records replayed, expected {tail_records}",
            s.replayed_records
        );
        let sample = plan::sample_keys(keys);
        for &i in &sample {
            let got = db.get(i)?.with_context(|| format!("key {i} is missing"))?;
            ensure!(got == plan::expected_value(keys, tail_records, i), "key {i} holds the wrong value");
        }
        Ok(sample.len() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use eval_lines::recovery::Tail;

    fn dir(name: &str) -> std::path::PathBuf {
        // tmpfs when there is one: the builder flushes once per tail commit.
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let d = base.join(format!("eval-recovery-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Both media: a base, a full tail on a copy, and the check finds
    /// every sampled value; damage after the cut is not silently accepted.
    #[test]
    fn base_then_tail_then_check_on_both_media() {
        let d = dir("media");
        for medium in ["nvme", "pmem"] {
            let bytes = 24 << 20;
            let base = d.join(format!("{medium}-base.img"));
            let b = build_base(medium, &base, 2, bytes).unwrap();
            assert_eq!(b.keys, 504);
            // ~2 MiB of tree + the 8 MiB log + metas.
            assert!(b.db_pages > 2048 + 504 && b.db_pages < 2048 + 600, "{b:?}");
            assert_eq!(std::fs::metadata(&base).unwrap().len(), bytes);
            assert_eq!(check(medium, &base, bytes, b.keys, 0).unwrap(), plan::sample_keys(504).len() as u64);

            let run = d.join(format!("{medium}-run.img"));
            std::fs::copy(&base, &run).unwrap();
            let align = plan::write_align(medium).unwrap();
            let tail = Tail::Full.records(align);
            let t = add_tail(medium, &run, bytes, b.keys, tail).unwrap();
            assert_eq!(t.generation, b.generation, "no checkpoint during the tail");
            check(medium, &run, bytes, b.keys, tail).unwrap();
            // A second tail on a medium that has one is refused.
            assert!(add_tail(medium, &run, bytes, b.keys, 1).is_err());
            // The wrong expectations fail.
            assert!(check(medium, &run, bytes, b.keys + 1, tail).is_err());
            assert!(check(medium, &run, bytes, b.keys, tail - 1).is_err());
            assert!(check(medium, &base, bytes, b.keys, tail).is_err());
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_arguments_are_named() {
        let d = dir("args");
        let e = build_base("tape", &d.join("x.img"), 1, 16 << 20).unwrap_err();
        assert!(format!("{e:#}").contains("expected nvme or pmem"), "{e:#}");
        assert!(build_base("nvme", &d.join("y.img"), 0, 16 << 20).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
