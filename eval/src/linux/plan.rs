//! Which benchmark runs a pass executes.
//!
//! Every measured row is paired with a *baseline* run of the same
//! configuration with `--ops 1`. Counters read from outside the benchmark
//! process (device commands, guest instructions, ftrace syscalls) cover
//! the whole process: start-up, preload, the measured phase and the final
//! `sync`. The difference `measured - baseline` leaves the last `ops - 1`
//! operations of the measured phase, so per-op device counts are
//! `(measured - baseline) / (ops - 1)`.

use crate::matrix::{Entry, Plan};
use crate::workload::{Durability, Workload};

/// One `eval-bench run` in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub engine: String,
    pub medium: String,
    pub workload: String,
    pub value_bytes: u64,
    pub durability: String,
    pub ops: u64,
    pub keys: u64,
}

/// A measured row and its baseline, as indices into the run list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub measured: usize,
    pub baseline: usize,
}

pub const MEDIA: &[&str] = &["nvme", "pmem"];

impl Run {
    fn from_entry(e: &Entry, medium: &str) -> Run {
        Run {
            engine: e.engine.clone(),
            medium: medium.into(),
            workload: e.workload.name().into(),
            value_bytes: e.value_bytes,
            durability: e.durability.name(),
            ops: e.ops,
            keys: e.keys,
        }
    }

    /// The line init reads from /etc/plan: the medium (which mount to use),
    /// then the `eval-bench run` arguments (init adds `--dir`).
    pub fn plan_line(&self) -> String {
        format!(
            "{m} --engine {e} --workload {w} --value-bytes {v} --durability {d} --ops {n} --keys {k} --medium {m} --system linux-guest",
            m = self.medium,
            e = self.engine,
            w = self.workload,
            v = self.value_bytes,
            d = self.durability,
            n = self.ops,
            k = self.keys
        )
    }

    pub fn label(&self) -> String {
        format!(
            "{} {} {} {}B {} x{}",
            self.engine, self.medium, self.workload, self.value_bytes, self.durability, self.ops
        )
    }
}

/// `--quick`: sync, group-of-8 and async commits (the flush sanity check), a fill
/// and a read, 100 B values, the four engines on both media.
pub fn quick_entries() -> Vec<Entry> {
    let mut out = vec![];
    for engine in ["sqlite", "lmdb", "redb", "libdb"] {
        let e = |workload, durability, ops, keys| Entry {
            engine: engine.into(),
            workload,
            value_bytes: 100,
            durability,
            ops,
            keys,
        };
        out.push(e(Workload::Commit, Durability::Sync, 1000, 5000));
        out.push(e(Workload::Commit, Durability::Group(8), 1000, 5000));
        out.push(e(Workload::Commit, Durability::Async, 1000, 5000));
        out.push(e(Workload::FillRandom, Durability::Async, 5000, 5000));
        out.push(e(Workload::ReadRandom, Durability::Async, 5000, 5000));
    }
    out
}

/// The run list (measured and baseline runs interleaved) and the pairs.
pub fn runs(entries: &[Entry]) -> (Vec<Run>, Vec<Pair>) {
    let mut runs = vec![];
    let mut pairs = vec![];
    for medium in MEDIA {
        for e in entries {
            push_pair(&mut runs, &mut pairs, e, medium);
        }
    }
    (runs, pairs)
}

/// Appends `e` on `medium` as a baseline run (one op: the fixed costs)
/// followed by the measured run, and their pair.
fn push_pair(runs: &mut Vec<Run>, pairs: &mut Vec<Pair>, e: &Entry, medium: &str) {
    let measured = Run::from_entry(e, medium);
    let mut baseline = measured.clone();
    baseline.ops = 1;
    runs.push(baseline);
    runs.push(measured);
    pairs.push(Pair { baseline: runs.len() - 2, measured: runs.len() - 1 });
}

/// [`runs`], plus `entries`' libdb entries on each raw medium (libdb on
/// the NVMe block device or the NVDIMM as device-DAX, no file system:
/// `crate::rawmedia`), after the file-system runs, `pmem-raw` last: the
/// guest turns the NVDIMM's one namespace from fsdax (ext4-DAX) into
/// devdax when it reaches the first `pmem-raw` run, after which no
/// `pmem` run could mount ext4-DAX again. The other engines need a file
/// system.
pub fn runs_with_raw(entries: &[Entry]) -> (Vec<Run>, Vec<Pair>) {
    let (mut runs, mut pairs) = runs(entries);
    for medium in crate::rawmedia::ALL_RAW {
        for e in entries.iter().filter(|e| e.engine == "libdb") {
            push_pair(&mut runs, &mut pairs, e, medium);
        }
    }
    (runs, pairs)
}

/// Live data a run may create: the standard machine's NVDIMM is 128 MiB
/// (the NVMe disk 256 MiB), and engines need room for copies (WAL,
/// copy-on-write pages, free lists) besides the records themselves.
pub const DATA_BUDGET_BYTES: u64 = 24 << 20;

/// Shrink `keys` (and `ops` of the runs whose ops equal their keys) so that
/// `keys * (value + 64 B of key and overhead)` fits in `DATA_BUDGET_BYTES`.
pub fn fit_to_media(entries: &mut [Entry]) {
    for e in entries {
        let max_keys = (DATA_BUDGET_BYTES / (e.value_bytes + 64)).max(2);
        if e.keys > max_keys {
            if e.ops == e.keys {
                e.ops = max_keys;
            }
            e.keys = max_keys;
        }
        // Fills write `ops` new records.
        if matches!(e.workload, Workload::FillSeq | Workload::FillRandom) && e.ops > max_keys {
            e.ops = max_keys;
        }
    }
}

/// The full matrix: `eval-bench suite --full`'s entries on both media,
/// fitted to the emulated devices' sizes.
pub fn full_entries() -> Vec<Entry> {
    let mut e = Plan::suite(false).entries();
    fit_to_media(&mut e);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_covers_every_engine_and_medium_with_sync_and_async_commits() {
        let (runs, pairs) = runs(&quick_entries());
        assert_eq!(runs.len(), 2 * pairs.len());
        for e in ["sqlite", "lmdb", "redb", "libdb"] {
            for m in MEDIA {
                for d in ["sync", "async"] {
                    assert!(pairs.iter().any(|p| {
                        let r = &runs[p.measured];
                        r.engine == e && r.medium == *m && r.workload == "commit" && r.durability == d
                    }));
                }
            }
        }
    }

    #[test]
    fn baselines_match_their_rows_except_ops() {
        let (runs, pairs) = runs(&quick_entries());
        for p in pairs {
            let (m, b) = (&runs[p.measured], &runs[p.baseline]);
            assert_eq!(b.ops, 1);
            assert!(m.ops > 1, "{m:?} needs ops > 1 for a difference");
            assert_eq!(Run { ops: m.ops, ..b.clone() }, *m);
        }
    }

    #[test]
    fn full_plan_fits_the_devices() {
        let full = full_entries();
        assert!(full.iter().any(|e| e.value_bytes == 4096));
        for e in &full {
            let records =
                e.keys.max(if matches!(e.workload, Workload::FillSeq | Workload::FillRandom) { e.ops } else { 0 });
            assert!(records * (e.value_bytes + 64) <= DATA_BUDGET_BYTES, "{e:?}");
            assert!(e.ops >= 2, "{e:?}");
        }
        // Small values keep the suite's size.
        assert!(full.iter().any(|e| e.value_bytes == 100 && e.keys == Plan::suite(false).keys));
    }

    #[test]
    fn raw_runs_are_libdb_only_and_pmem_raw_comes_after_every_pmem_run() {
        let (runs, pairs) = runs_with_raw(&quick_entries());
        let libdb = quick_entries().iter().filter(|e| e.engine == "libdb").count();
        for m in crate::rawmedia::ALL_RAW {
            let n = pairs.iter().filter(|p| runs[p.measured].medium == m).count();
            assert_eq!(n, libdb, "{m}");
        }
        assert!(runs.iter().filter(|r| crate::rawmedia::without_fs(&r.medium)).all(|r| r.engine == "libdb"));
        let last_pmem = runs.iter().rposition(|r| r.medium == "pmem").unwrap();
        let first_devdax = runs.iter().position(|r| r.medium == "pmem-raw").unwrap();
        assert!(last_pmem < first_devdax);
    }

    #[test]
    fn plan_line_has_every_argument() {
        let r = Run {
            engine: "redb".into(),
            medium: "pmem".into(),
            workload: "commit".into(),
            value_bytes: 100,
            durability: "sync".into(),
            ops: 5,
            keys: 7,
        };
        assert_eq!(
            r.plan_line(),
            "pmem --engine redb --workload commit --value-bytes 100 --durability sync --ops 5 --keys 7 --medium pmem --system linux-guest"
        );
    }
}
