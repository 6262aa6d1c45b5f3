//! Which benchmark rows a run executes. A row is one `eval-bench run`
//! in the guest; the same plan runs in the timing pass and the icount pass.

/// One benchmark row (system is always `linux-guest` here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub engine: String,
    pub medium: String,
    pub workload: String,
    pub value_bytes: u32,
    pub durability: String,
    pub ops: u64,
}

pub const ENGINES: &[&str] = &["sqlite", "lmdb", "redb", "libdb"];
pub const MEDIA: &[&str] = &["nvme", "pmem"];
pub const WRITE_WORKLOADS: &[&str] = &["fillseq", "fillrandom", "overwrite", "commit", "ycsb-a", "ycsb-b", "ycsb-d", "ycsb-e", "ycsb-f"];
pub const READ_WORKLOADS: &[&str] = &["readrandom", "readseq", "ycsb-c"];
pub const VALUE_SIZES: &[u32] = &[100, 1024, 4096];
pub const DURABILITIES: &[&str] = &["sync", "group8", "group64", "async"];

impl PlanRow {
    /// The line init reads from /etc/plan: the medium (which mount to use),
    /// then the `eval-bench run` arguments (init adds `--dir`).
    pub fn plan_line(&self) -> String {
        format!(
            "{medium} --engine {e} --workload {w} --value-bytes {v} --durability {d} --ops {n} --medium {medium} --system linux-guest",
            medium = self.medium,
            e = self.engine,
            w = self.workload,
            v = self.value_bytes,
            d = self.durability,
            n = self.ops
        )
    }

    pub fn label(&self) -> String {
        format!("{} {} {} {}B {} x{}", self.engine, self.medium, self.workload, self.value_bytes, self.durability, self.ops)
    }
}

fn row(engine: &str, medium: &str, workload: &str, value_bytes: u32, durability: &str, ops: u64) -> PlanRow {
    PlanRow {
        engine: engine.into(),
        medium: medium.into(),
        workload: workload.into(),
        value_bytes,
        durability: durability.into(),
        ops,
    }
}

/// `--quick`: durable and async commits (the flush sanity check), a fill
/// and a read, 100 B values, every engine on both media; sized to stay
/// well under 15 minutes for both passes on 2 cores under TCG.
pub fn quick() -> Vec<PlanRow> {
    let mut rows = vec![];
    for medium in MEDIA {
        for e in ENGINES {
            rows.push(row(e, medium, "commit", 100, "sync", 200));
            rows.push(row(e, medium, "commit", 100, "async", 200));
            rows.push(row(e, medium, "fillrandom", 100, "async", 1000));
            rows.push(row(e, medium, "readrandom", 100, "async", 1000));
        }
    }
    rows
}

/// The whole matrix. Read-only workloads do not depend on durability and
/// run once (`sync`); their load phase is part of the process.
pub fn full() -> Vec<PlanRow> {
    let mut rows = vec![];
    for medium in MEDIA {
        for e in ENGINES {
            for &v in VALUE_SIZES {
                for w in WRITE_WORKLOADS {
                    for d in DURABILITIES {
                        let ops = if w.starts_with("fill") || *w == "overwrite" { 10_000 } else { 2_000 };
                        rows.push(row(e, medium, w, v, d, ops));
                    }
                }
                for w in READ_WORKLOADS {
                    rows.push(row(e, medium, w, v, "sync", 10_000));
                }
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_covers_every_engine_and_medium_with_sync_and_async_commits() {
        let q = quick();
        for e in ENGINES {
            for m in MEDIA {
                for d in ["sync", "async"] {
                    assert!(q.iter().any(|r| r.engine == *e && r.medium == *m && r.workload == "commit" && r.durability == d));
                }
            }
        }
    }

    #[test]
    fn full_matrix_size_and_plan_line() {
        let f = full();
        let per_value = WRITE_WORKLOADS.len() * DURABILITIES.len() + READ_WORKLOADS.len();
        assert_eq!(f.len(), MEDIA.len() * ENGINES.len() * VALUE_SIZES.len() * per_value);
        assert_eq!(
            row("redb", "pmem", "commit", 100, "sync", 5).plan_line(),
            "pmem --engine redb --workload commit --value-bytes 100 --durability sync --ops 5 --medium pmem --system linux-guest"
        );
    }
}
