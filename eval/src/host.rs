//! The `--host` comparison's logic (`cargo xtask eval --host` runs
//! `eval-bench` on a loop-mounted ext4 and calls these): libdb against
//! SQLite (WAL, FULL and NORMAL), LMDB and redb on the host's own file
//! system. The run schedule (commit entries get extra rounds), the median
//! row, the headline, host.md and the SVG plots. How each number is
//! measured: eval/README.md.

use crate::matrix::{Entry, Plan};
use crate::plot::{panels_by_durability, panels_by_workload, write_bar_chart_svg};
use crate::results::{markdown_comparison, markdown_table, Row};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Durable-commit runs are short and their times swing with the shared
/// disk's load: they run this many times, interleaved, and the median run
/// (by ops/s) is reported.
pub const COMMIT_ROUNDS: usize = 3;

/// Entry indices in run order: every entry once, then the `commit` entries
/// again for the further rounds.
pub fn schedule(entries: &[Entry]) -> Vec<usize> {
    let commits: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].workload.name() == "commit").collect();
    let mut order: Vec<usize> = (0..entries.len()).collect();
    for _ in 1..COMMIT_ROUNDS {
        order.extend(&commits);
    }
    order
}

/// The run with the median ops/s (the lower middle for an even count);
/// its counts come with it, so a row stays one real run.
pub fn median_row(mut runs: Vec<Row>) -> Option<Row> {
    if runs.is_empty() {
        return None;
    }
    runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    let mid = (runs.len() - 1) / 2;
    Some(runs.swap_remove(mid))
}

pub fn write_plots(out: &Path, rows: &[Row]) -> Result<Vec<PathBuf>> {
    let bulk: Vec<Row> = rows.iter().filter(|r| r.workload != "commit").cloned().collect();
    let commit: Vec<Row> = rows.iter().filter(|r| r.workload == "commit").cloned().collect();
    type Metric = fn(&Row) -> Option<f64>;
    let charts: [(&str, &str, &str, &[Row], Metric); 5] = [
        ("host-ops.svg", "Host: operations per second (bulk and read workloads)", "ops/s", &bulk, |r| {
            Some(r.ops_per_sec)
        }),
        ("host-commit-ops.svg", "Host: durable small transactions (commit), ops/s", "commits/s", &commit, |r| {
            Some(r.ops_per_sec)
        }),
        (
            "host-commit-flushes.svg",
            "Host: commit, flushes per commit (fsync family + O_DSYNC writes)",
            "flushes/commit",
            &commit,
            |r| r.flushes_per_op,
        ),
        (
            "host-commit-device-flushes.svg",
            "Host: commit, device flush commands per commit (loop device)",
            "flushes/commit",
            &commit,
            |r| r.device_flushes_per_op,
        ),
        (
            "host-commit-bytes.svg",
            "Host: commit, bytes written to the device per commit (loop device)",
            "bytes/commit",
            &commit,
            |r| r.device_bytes_written_per_op,
        ),
    ];
    let mut written = Vec::new();
    for (name, title, y, subset, metric) in charts {
        let panels = if name.starts_with("host-commit") {
            panels_by_durability(subset, metric)
        } else {
            panels_by_workload(subset, metric)
        };
        if panels.is_empty() {
            continue;
        }
        let path = out.join(name);
        write_bar_chart_svg(&path, title, y, &panels, 3).map_err(anyhow::Error::msg)?;
        written.push(path);
    }
    Ok(written)
}

fn find<'a>(rows: &'a [Row], engine: &str, workload: &str, durability: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.engine == engine && r.workload == workload && r.value_bytes == 100 && r.durability == durability)
}

/// The numbers the project's claims rest on, one line each.
pub fn headline(rows: &[Row]) -> String {
    let mut out = String::from("Headline (100 B values):\n");
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
    for engine in ["libdb", "sqlite", "lmdb", "redb"] {
        if let Some(r) = find(rows, engine, "commit", "sync") {
            out.push_str(&format!(
                "  commit sync  {engine:<7} {:>9.0} ops/s  {} flushes (fsync family)/commit  {} device flushes/commit  {} device bytes written/commit  {} syscalls/commit\n",
                r.ops_per_sec,
                opt(r.flushes_per_op),
                opt(r.device_flushes_per_op),
                opt(r.device_bytes_written_per_op),
                opt(r.syscalls_per_op)
            ));
        }
    }
    for engine in ["libdb", "sqlite", "lmdb", "redb"] {
        if let Some(r) = find(rows, engine, "readrandom", "sync") {
            out.push_str(&format!("  readrandom   {engine:<7} {:>9.0} ops/s  p50 {:.2} µs\n", r.ops_per_sec, r.p50_us));
        }
    }
    let ratio = |a: &str, b: &str, w: &str| -> String {
        match (find(rows, a, w, "sync"), find(rows, b, w, "sync")) {
            (Some(x), Some(y)) if y.ops_per_sec > 0.0 => {
                format!("{:.2}×", x.ops_per_sec / y.ops_per_sec)
            }
            _ => "–".into(),
        }
    };
    out.push_str(&format!(
        "  libdb/sqlite commit {}, libdb/lmdb commit {}, libdb/lmdb readrandom {}",
        ratio("libdb", "sqlite", "commit"),
        ratio("libdb", "lmdb", "commit"),
        ratio("libdb", "lmdb", "readrandom")
    ));
    out
}

/// The host the runs were made on, as host.md shows it.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    /// `uname -sr`.
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
    /// `date -u '+%Y-%m-%d %H:%M UTC'`.
    pub date: String,
}

/// host.md.
pub fn summary(
    host: &HostInfo,
    rows: &[Row],
    failures: &[String],
    plots: &[PathBuf],
    quick: bool,
    storage: &str,
    secs: f64,
) -> String {
    let keys = Plan::host(quick).keys;
    let mut md = String::from("# Host benchmark: libdb vs SQLite, LMDB, redb\n\n");
    md.push_str(&format!(
        "Generated by `cargo xtask eval --host{}` ({} rows in {secs:.0} s). Every run is its own `eval-bench` \
         process on a fresh store; {keys} records, 16 B keys. How each column is measured and how durability \
         maps onto each engine: [`eval/README.md`](../../README.md).\n\n",
        if quick { " --quick" } else { "" },
        rows.len()
    ));
    md.push_str(&format!(
        "- kernel: {}\n- CPU: {} ({} cores)\n- storage: {}\n- date: {}\n\n",
        host.kernel, host.cpu, host.cores, storage, host.date
    ));
    md.push_str(&format!(
        "This machine is shared with other jobs (2 cores, one virtual disk): times are noisy; the per-op counts are not. \
         Each `commit` row is the median (by ops/s) of {COMMIT_ROUNDS} interleaved runs; the other rows are single runs.\n\n"
    ));
    md.push_str("## Durable small transactions (`commit`, 100 B values)\n\n");
    md.push_str(&markdown_comparison(rows, "commit", 100, "sqlite"));
    md.push_str("\n## Random reads (`readrandom`, 100 B values)\n\n");
    md.push_str(&markdown_comparison(rows, "readrandom", 100, "lmdb"));
    md.push_str("\n```\n");
    md.push_str(&headline(rows));
    md.push_str("\n```\n\n");
    if !plots.is_empty() {
        md.push_str("## Plots\n\n");
        for p in plots {
            let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            md.push_str(&format!("![{name}]({name})\n\n"));
        }
    }
    if !failures.is_empty() {
        md.push_str("## Failed runs\n\n");
        for f in failures {
            md.push_str(&format!("- {f}\n"));
        }
        md.push('\n');
    }
    md.push_str("## All runs\n\n");
    md.push_str(&markdown_table(rows));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(engine: &str, workload: &str, ops: f64) -> Row {
        Row {
            system: "host-linux".into(),
            engine: engine.into(),
            medium: "host-fs".into(),
            workload: workload.into(),
            value_bytes: 100,
            durability: "sync".into(),
            ops: 10,
            ops_per_sec: ops,
            flushes_per_op: Some(1.0),
            ..Row::default()
        }
    }

    #[test]
    fn commit_entries_get_extra_rounds_and_the_median_wins() {
        let entries = Plan::host(true).entries();
        let order = schedule(&entries);
        let commits = entries.iter().filter(|e| e.workload.name() == "commit").count();
        assert_eq!(order.len(), entries.len() + (COMMIT_ROUNDS - 1) * commits);
        assert_eq!(&order[..entries.len()], &(0..entries.len()).collect::<Vec<_>>()[..]);
        let runs = vec![row("libdb", "commit", 5.0), row("libdb", "commit", 1.0), row("libdb", "commit", 3.0)];
        assert_eq!(median_row(runs).unwrap().ops_per_sec, 3.0);
        assert_eq!(median_row(vec![row("a", "commit", 2.0), row("a", "commit", 4.0)]).unwrap().ops_per_sec, 2.0);
        assert!(median_row(vec![]).is_none());
    }

    #[test]
    fn headline_reports_ratios_and_missing_engines() {
        let rows =
            vec![row("libdb", "commit", 3000.0), row("sqlite", "commit", 1000.0), row("lmdb", "readrandom", 5.0)];
        let h = headline(&rows);
        assert!(h.contains("libdb/sqlite commit 3.00×"), "{h}");
        assert!(h.contains("libdb/lmdb commit –"), "{h}");
        assert!(h.contains("1.00 flushes (fsync family)/commit"), "{h}");
    }

    #[test]
    fn summary_lists_failures_and_tables() {
        let rows = vec![row("libdb", "commit", 3000.0), row("sqlite", "commit", 1000.0)];
        let md =
            summary(&HostInfo::default(), &rows, &["lmdb commit: boom".into()], &[], true, "ext4 on /dev/loop0", 1.0);
        assert!(md.contains("## Failed runs") && md.contains("lmdb commit: boom"));
        assert!(md.contains("| libdb | sync |") && md.contains("## All runs"));
    }
}
