//! The standard run matrix: which (engine, workload, value size, durability)
//! combinations a suite runs. Pure data, so `cargo xtask` can enumerate and
//! show progress without building the engines.

use crate::workload::{Durability, Workload};

/// Engine names `eval-bench` knows.
pub const ENGINES: [&str; 5] = ["libdb", "sqlite", "sqlite-normal", "lmdb", "redb"];

/// Whether an engine can honour a durability mode. `sqlite-normal` is
/// SQLite WAL with `synchronous=NORMAL`: its commits are durable only at the
/// next checkpoint, so it can honestly run `async` and nothing stronger.
pub fn supports(engine: &str, durability: Durability) -> bool {
    match engine {
        "sqlite-normal" => durability == Durability::Async,
        _ => ENGINES.contains(&engine),
    }
}

/// The durability a run uses when the workload is not about durability:
/// the strongest the engine supports.
pub fn default_durability(engine: &str) -> Durability {
    if supports(engine, Durability::Sync) {
        Durability::Sync
    } else {
        Durability::Async
    }
}

/// One `eval-bench run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub engine: String,
    pub workload: Workload,
    pub value_bytes: u64,
    pub durability: Durability,
    pub ops: u64,
    /// Records preloaded (or, for fills, ignored).
    pub keys: u64,
}

impl Entry {
    /// The `eval-bench run` arguments for this entry, less `--dir`,
    /// `--medium` and `--system`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--engine".into(),
            self.engine.clone(),
            "--workload".into(),
            self.workload.name().into(),
            "--value-bytes".into(),
            self.value_bytes.to_string(),
            "--durability".into(),
            self.durability.name(),
            "--ops".into(),
            self.ops.to_string(),
            "--keys".into(),
            self.keys.to_string(),
        ]
    }

    /// A short label for progress displays.
    pub fn label(&self) -> String {
        format!("{} {} {}B {}", self.engine, self.workload, self.value_bytes, self.durability)
    }
}

/// What a suite covers.
#[derive(Clone, Debug)]
pub struct Plan {
    pub engines: Vec<String>,
    pub value_sizes: Vec<u64>,
    /// Records in the store (and operations of the bulk workloads).
    pub keys: u64,
    /// Transactions of the `commit` workload.
    pub commit_ops: u64,
    pub commit_durabilities: Vec<Durability>,
    /// Include YCSB A–F (operations = keys, default durability).
    pub ycsb: bool,
}

impl Plan {
    /// The host matrix of `cargo xtask eval --host`.
    pub fn host(quick: bool) -> Plan {
        Plan {
            engines: ENGINES.iter().map(|s| s.to_string()).collect(),
            value_sizes: vec![100, 1024, 4096],
            keys: if quick { 10_000 } else { 100_000 },
            commit_ops: if quick { 500 } else { 5_000 },
            commit_durabilities: if quick {
                vec![Durability::Sync, Durability::Group(8), Durability::Async]
            } else {
                vec![Durability::Sync, Durability::Group(8), Durability::Group(64), Durability::Async]
            },
            ycsb: false,
        }
    }

    /// The matrix of `eval-bench suite` (host or guest): like the host one,
    /// plus YCSB, smaller in quick mode because guests run under TCG.
    pub fn suite(quick: bool) -> Plan {
        let mut plan = Plan::host(quick);
        if quick {
            plan.keys = 2_000;
            plan.commit_ops = 200;
        }
        plan.ycsb = true;
        plan
    }

    /// The entries, ordered so that the engines of one (value size,
    /// workload, durability) run back to back: a burst of load from other
    /// jobs on a shared machine then hits all engines of a comparison
    /// alike, not one engine's whole series.
    pub fn entries(&self) -> Vec<Entry> {
        let bulk =
            [Workload::FillSeq, Workload::FillRandom, Workload::Overwrite, Workload::ReadRandom, Workload::ReadSeq];
        let ycsb: &[Workload] = if self.ycsb { &Workload::ALL[6..] } else { &[] };
        let mut out = Vec::new();
        let mut push = |engine: &String, workload, value_bytes, durability, ops| {
            out.push(Entry { engine: engine.clone(), workload, value_bytes, durability, ops, keys: self.keys });
        };
        for &value_bytes in &self.value_sizes {
            for workload in bulk.iter().chain(ycsb) {
                for engine in &self.engines {
                    push(engine, *workload, value_bytes, default_durability(engine), self.keys);
                }
            }
            for &durability in &self.commit_durabilities {
                for engine in self.engines.iter().filter(|e| supports(e, durability)) {
                    push(engine, Workload::Commit, value_bytes, durability, self.commit_ops);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_matrix_covers_every_engine_workload_and_size() {
        let entries = Plan::host(true).entries();
        for engine in ENGINES {
            for w in ["fillseq", "fillrandom", "overwrite", "readrandom", "readseq", "commit"] {
                for v in [100, 1024, 4096] {
                    assert!(
                        entries.iter().any(|e| e.engine == engine && e.workload.name() == w && e.value_bytes == v),
                        "{engine} {w} {v}"
                    );
                }
            }
        }
        // sqlite-normal never claims a durability it does not have.
        assert!(entries.iter().filter(|e| e.engine == "sqlite-normal").all(|e| e.durability == Durability::Async));
        assert!(entries.iter().all(|e| !e.workload.name().starts_with("ycsb")));
        assert!(Plan::suite(true).entries().iter().any(|e| e.workload == Workload::YcsbE));
    }

    #[test]
    fn entry_args_parse_back() {
        let e = &Plan::host(true).entries()[0];
        let args = e.args();
        assert_eq!(args[0], "--engine");
        assert_eq!(Workload::parse(&args[3]).unwrap(), e.workload);
        assert_eq!(Durability::parse(&args[7]).unwrap(), e.durability);
    }
}
