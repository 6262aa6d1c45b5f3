//! The full `eval --linux` matrix in segments (`cargo xtask eval --linux
//! --resume`).
//!
//! The full matrix takes hours of TCG (eval/LINUX.md, "The full matrix"),
//! more than one sitting on a shared 2-core host. A resumed run measures
//! only the pairs no earlier segment has a row for and stores what it got
//! as a new segment (`eval/results/linux-matrix/segments/<stamp>/`, the
//! usual `linux.*` files); the combined report lists every segment (its
//! commit, host load and run time, so a reader can judge its times), the
//! rows of all of them, and what is still missing. A pair that failed in
//! one segment has no row, so the next segment tries it again.

use super::plan::{Pair, Run};
use crate::results::Row;

/// A row measured `run` when every field that names a configuration
/// agrees (`keys` is not in a row; in one plan it follows from the value
/// size, so the rest identifies the run).
pub fn row_is_of(row: &Row, run: &Run) -> bool {
    row.system == "linux-guest"
        && row.engine == run.engine
        && row.medium == run.medium
        && row.workload == run.workload
        && row.value_bytes == run.value_bytes
        && row.durability == run.durability
        && row.ops == run.ops
}

/// The pairs of the plan that no row in `have` measured, in plan order.
pub fn missing(runs: &[Run], pairs: &[Pair], have: &[Row]) -> Vec<Pair> {
    pairs.iter().copied().filter(|p| !have.iter().any(|r| row_is_of(r, &runs[p.measured]))).collect()
}

/// The runs of `keep` alone, renumbered, each baseline right before its
/// measured run as in the plan.
pub fn subset(runs: &[Run], keep: &[Pair]) -> (Vec<Run>, Vec<Pair>) {
    let mut out_runs = Vec::with_capacity(2 * keep.len());
    let mut out_pairs = Vec::with_capacity(keep.len());
    for p in keep {
        out_runs.push(runs[p.baseline].clone());
        out_runs.push(runs[p.measured].clone());
        out_pairs.push(Pair { baseline: out_runs.len() - 2, measured: out_runs.len() - 1 });
    }
    (out_runs, out_pairs)
}

/// One stored segment: its directory name, rows and environment lines.
#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub rows: Vec<Row>,
    pub env: Vec<(String, String)>,
}

impl Segment {
    fn env(&self, key: &str) -> &str {
        self.env.iter().find(|(k, _)| k == key).map_or("?", |(_, v)| v.as_str())
    }
}

/// Parse `linux-env.txt` (`key: value` lines).
pub fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines().filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect()
}

/// The combined rows: for each plan pair, the row of the latest segment
/// that has one (segments are in name order, and names are UTC stamps),
/// with the segment's name.
pub fn combined_rows<'a>(runs: &[Run], pairs: &[Pair], segments: &'a [Segment]) -> Vec<(&'a Row, &'a str)> {
    pairs
        .iter()
        .filter_map(|p| {
            segments
                .iter()
                .rev()
                .find_map(|s| s.rows.iter().find(|r| row_is_of(r, &runs[p.measured])).map(|r| (r, s.name.as_str())))
        })
        .collect()
}

/// The combined report's head: how complete the matrix is, and one line
/// per segment (what ran where and when).
pub fn status_markdown(runs: &[Run], pairs: &[Pair], segments: &[Segment]) -> String {
    let rows = combined_rows(runs, pairs, segments);
    let mut md = format!(
        "**{} of {} rows measured{}** in {} segment{}.\n\n",
        rows.len(),
        pairs.len(),
        if rows.len() == pairs.len() { ": the full matrix is complete" } else { "" },
        segments.len(),
        if segments.len() == 1 { "" } else { "s" }
    );
    md.push_str("| segment | commit | rows it added | run time | host load at start |\n|---|---|---:|---|---|\n");
    for s in segments {
        let added = rows.iter().filter(|(_, name)| *name == s.name).count();
        md.push_str(&format!(
            "| {} | {} | {added} | {} | {} |\n",
            s.name,
            s.env("commit"),
            s.env("run time"),
            s.env("host load at start")
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(engine: &str, workload: &str, ops: u64) -> Run {
        Run {
            engine: engine.into(),
            medium: "nvme".into(),
            workload: workload.into(),
            value_bytes: 100,
            durability: "sync".into(),
            ops,
            keys: 50,
        }
    }

    fn row_of(r: &Run, ops_per_sec: f64) -> Row {
        Row {
            system: "linux-guest".into(),
            engine: r.engine.clone(),
            medium: r.medium.clone(),
            workload: r.workload.clone(),
            value_bytes: r.value_bytes,
            durability: r.durability.clone(),
            ops: r.ops,
            ops_per_sec,
            ..Row::default()
        }
    }

    fn plan() -> (Vec<Run>, Vec<Pair>) {
        let mut runs = vec![];
        for (e, w) in [("libdb", "commit"), ("lmdb", "commit"), ("libdb", "fillseq")] {
            runs.push(run(e, w, 1));
            runs.push(run(e, w, 50));
        }
        let pairs = (0..3).map(|i| Pair { baseline: 2 * i, measured: 2 * i + 1 }).collect();
        (runs, pairs)
    }

    #[test]
    fn only_pairs_without_a_row_are_run_again() {
        let (runs, pairs) = plan();
        let have = vec![row_of(&runs[3], 10.0)];
        let miss = missing(&runs, &pairs, &have);
        assert_eq!(miss, vec![pairs[0], pairs[2]]);
        let (sub_runs, sub_pairs) = subset(&runs, &miss);
        assert_eq!(sub_runs, vec![runs[0].clone(), runs[1].clone(), runs[4].clone(), runs[5].clone()]);
        assert_eq!(sub_pairs, vec![Pair { baseline: 0, measured: 1 }, Pair { baseline: 2, measured: 3 }]);
        // Another configuration of the same engine is not a match.
        let mut other = row_of(&runs[1], 1.0);
        other.ops = 49;
        assert_eq!(missing(&runs, &pairs, &[other]).len(), 3);
        let mut exo = row_of(&runs[1], 1.0);
        exo.system = "exo".into();
        assert_eq!(missing(&runs, &pairs, &[exo]).len(), 3, "only Linux rows count");
    }

    #[test]
    fn the_latest_segment_wins_and_the_status_counts_what_each_added() {
        let (runs, pairs) = plan();
        let seg = |name: &str, rows: Vec<Row>| Segment {
            name: name.into(),
            rows,
            env: parse_env("commit: abc123\nrun time: 100 s (counters 50 s, icount 50 s)\nhost load at start: 0.5\n"),
        };
        let segments = vec![
            seg("2026-12-03T1500Z", vec![row_of(&runs[1], 1.0), row_of(&runs[3], 2.0)]),
            seg("2026-12-04T0900Z", vec![row_of(&runs[1], 3.0)]),
        ];
        let rows = combined_rows(&runs, &pairs, &segments);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].0.ops_per_sec, rows[0].1), (3.0, "2026-12-04T0900Z"));
        assert_eq!((rows[1].0.ops_per_sec, rows[1].1), (2.0, "2026-12-03T1500Z"));
        let md = status_markdown(&runs, &pairs, &segments);
        assert!(md.starts_with("**2 of 3 rows measured** in 2 segments"), "{md}");
        assert!(md.contains("| 2026-12-03T1500Z | abc123 | 1 | 100 s (counters 50 s, icount 50 s) | 0.5 |"), "{md}");
        let all = vec![seg("s", vec![row_of(&runs[1], 1.0), row_of(&runs[3], 1.0), row_of(&runs[5], 1.0)])];
        assert!(status_markdown(&runs, &pairs, &all).contains("the full matrix is complete"));
    }
}
