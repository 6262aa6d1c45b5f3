//! Time budgets for the long evaluation runs (`EVAL_BUDGET_SECS=N`, a
//! development aid documented in eval/README.md): the full `eval --linux`
//! matrix takes far longer under TCG than a shared host can give it, and
//! `eval --db`'s five rounds may not fit either. With a budget a run stops
//! *starting* work when the time is up and reports what it did not run,
//! instead of being killed and writing nothing.
//!
//! * `eval --linux`: each pass stops at the next row boundary once its
//!   share of the budget is gone (the guest is told `stop` instead of `go`
//!   at a READY handshake); the icount pass runs no further than the
//!   counters pass got. Rows not run are listed ([`not_run_summary`]).
//! * `eval --db`: no round starts that would not finish, with the icount
//!   boots after it, inside the budget ([`room_for_round`]).

use crate::linux::plan::{Pair, Run};
use std::collections::BTreeMap;
use std::time::Duration;

/// The reason recorded for a run the budget stopped before it started.
pub const NOT_RUN: &str = "not run: the time budget (EVAL_BUDGET_SECS) ran out";

/// `EVAL_BUDGET_SECS`'s value: whole seconds, at least 60.
pub fn parse_budget(v: &str) -> Result<Duration, String> {
    match v.trim().parse::<u64>() {
        Ok(s) if s >= 60 => Ok(Duration::from_secs(s)),
        _ => Err(format!("EVAL_BUDGET_SECS={v:?}: expected whole seconds, at least 60")),
    }
}

/// Whether one more round fits: `elapsed` so far, the longest round so
/// far (the estimate of the next), and `after` (work that must still
/// follow the rounds, e.g. icount boots, if one more round is run).
pub fn room_for_round(elapsed: Duration, longest_round: Duration, after: Duration, budget: Duration) -> bool {
    elapsed + longest_round + after <= budget
}

/// How a pass's budget is split: the counters pass may use this share of
/// what is left when it starts; the icount pass (about as long per run,
/// eval/LINUX.md) gets the rest. `margin` is kept for writing the report.
pub fn counters_share(left: Duration, margin: Duration) -> Duration {
    left.saturating_sub(margin) / 2
}

/// The measured rows the budget left out, grouped by (medium, value size,
/// workload, durability) with their engines: one line per group, in plan
/// order, so a reader sees exactly what did not run without 400 lines.
pub fn not_run_summary(runs: &[Run], not_run: &[Pair]) -> Vec<String> {
    let mut order: Vec<(String, u64, String, String)> = vec![];
    let mut groups: BTreeMap<(String, u64, String, String), Vec<String>> = BTreeMap::new();
    for p in not_run {
        let r = &runs[p.measured];
        let key = (r.medium.clone(), r.value_bytes, r.workload.clone(), r.durability.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(format!("{} x{}", r.engine, r.ops));
    }
    order
        .into_iter()
        .map(|k| {
            let engines = &groups[&k];
            format!("{} {} B {} {}: {}", k.0, k.1, k.2, k.3, engines.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_values() {
        assert_eq!(parse_budget("3600").unwrap(), Duration::from_secs(3600));
        assert!(parse_budget("59").unwrap_err().contains("at least 60"));
        assert!(parse_budget("1h").is_err() && parse_budget("").is_err());
    }

    #[test]
    fn rounds_stop_before_they_would_overrun() {
        let s = Duration::from_secs;
        assert!(room_for_round(s(100), s(200), s(50), s(400)));
        assert!(!room_for_round(s(200), s(200), s(50), s(400)));
        assert_eq!(counters_share(s(1000), s(100)), s(450));
        assert_eq!(counters_share(s(50), s(100)), s(0));
    }

    #[test]
    fn not_run_rows_are_grouped_in_plan_order() {
        let run = |engine: &str, medium: &str, workload: &str, v: u64| Run {
            engine: engine.into(),
            medium: medium.into(),
            workload: workload.into(),
            value_bytes: v,
            durability: "sync".into(),
            ops: 10,
            keys: 10,
        };
        let runs = vec![
            run("libdb", "nvme", "fillseq", 100),
            run("lmdb", "nvme", "fillseq", 100),
            run("libdb", "pmem", "commit", 4096),
        ];
        let pairs: Vec<Pair> = (0..3).map(|i| Pair { baseline: i, measured: i }).collect();
        assert_eq!(
            not_run_summary(&runs, &pairs),
            vec!["nvme 100 B fillseq sync: libdb x10, lmdb x10", "pmem 4096 B commit sync: libdb x10"]
        );
    }
}
