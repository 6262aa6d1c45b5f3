//! Turning the two passes into `linux.csv` rows, a markdown summary and
//! the sanity checks (flushes per durable commit).

use super::plan::PlanRow;
use super::session::RowOutcome;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

/// The columns of `linux.csv`; the first sixteen are the shared schema the
/// exokernel (`system=exo`) will fill too, the rest are Linux-side extras.
pub const COLUMNS: &[&str] = &[
    "system",
    "engine",
    "medium",
    "workload",
    "value_bytes",
    "durability",
    "ops",
    "ops_per_sec",
    "p50_us",
    "p99_us",
    "syscalls_per_op",
    "bytes_copied_per_op",
    "device_write_cmds_per_op",
    "device_flushes_per_op",
    "device_bytes_written_per_op",
    "guest_instructions_per_op",
    "bench_instructions_per_op",
    "blk_wr_ops_per_op",
    "blk_flushes_per_op",
    "note",
];

/// A bench CSV row as `column -> value`, given `eval-bench header`.
pub fn bench_fields(header: &str, row: &str) -> Result<BTreeMap<String, String>> {
    let h: Vec<&str> = header.trim().split(',').map(str::trim).collect();
    let r: Vec<&str> = row.trim().split(',').map(str::trim).collect();
    if h.len() != r.len() {
        bail!("eval-bench row has {} fields but its header has {}: `{row}`", r.len(), h.len());
    }
    Ok(h.into_iter().zip(r).map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn per_op(total: u64, ops: u64) -> String {
    if ops == 0 {
        return String::new();
    }
    let v = total as f64 / ops as f64;
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Bytes copied user<->kernel per op from whatever the bench reports.
fn bytes_copied_per_op(b: &BTreeMap<String, String>, ops: u64) -> String {
    if let Some(v) = b.get("bytes_copied_per_op").filter(|v| !v.is_empty()) {
        return v.clone();
    }
    let num = |k: &str| b.get(k).and_then(|v| v.parse::<u64>().ok());
    if let Some(t) = num("bytes_copied") {
        return per_op(t, ops);
    }
    match (num("rchar"), num("wchar")) {
        (Some(r), Some(w)) => per_op(r + w, ops),
        _ => String::new(),
    }
}

/// One output row: the plan, the counters pass and the icount pass.
pub fn make_row(p: &PlanRow, header: &str, counters: &RowOutcome, icount: Option<&RowOutcome>) -> Result<Vec<String>> {
    let mut out: BTreeMap<&str, String> = BTreeMap::new();
    out.insert("system", "linux-guest".into());
    out.insert("engine", p.engine.clone());
    out.insert("medium", p.medium.clone());
    out.insert("workload", p.workload.clone());
    out.insert("value_bytes", p.value_bytes.to_string());
    out.insert("durability", p.durability.clone());
    let mut notes = vec![];
    match &counters.csv {
        Some(csv) => {
            let b = bench_fields(header, csv)?;
            let ops: u64 = b.get("ops").context("bench row has no `ops`")?.parse().context("bench `ops`")?;
            out.insert("ops", ops.to_string());
            for k in ["ops_per_sec", "p50_us", "p99_us"] {
                out.insert(k, b.get(k).cloned().unwrap_or_default());
            }
            out.insert("syscalls_per_op", counters.syscalls.map(|s| per_op(s, ops)).unwrap_or_default());
            out.insert("bytes_copied_per_op", bytes_copied_per_op(&b, ops));
            if p.medium == "nvme" {
                if let Some(n) = counters.nvme {
                    out.insert("device_write_cmds_per_op", per_op(n.write_cmds, ops));
                    out.insert("device_flushes_per_op", per_op(n.flush_cmds, ops));
                    out.insert("device_bytes_written_per_op", per_op(n.bytes_written, ops));
                }
                if let Some(bs) = counters.blockstats {
                    out.insert("blk_wr_ops_per_op", per_op(bs.wr_operations, ops));
                    out.insert("blk_flushes_per_op", per_op(bs.flush_operations, ops));
                }
            } else {
                notes.push("pmem: stores reach the NVDIMM with no device command; no QEMU counter of pmem pages written");
            }
            match icount {
                Some(ic) if ic.csv.is_some() => {
                    out.insert("guest_instructions_per_op", ic.runtime_ns.map(|n| per_op(n, ops)).unwrap_or_default());
                    out.insert("bench_instructions_per_op", ic.bench_runtime_ns.map(|n| per_op(n, ops)).unwrap_or_default());
                }
                Some(ic) => notes.push(if ic.fail.is_some() { "icount pass failed for this row" } else { "icount pass has no row" }),
                None => notes.push("no icount pass"),
            }
        }
        None => {
            let why = counters.fail.clone().unwrap_or_else(|| "no result".into());
            out.insert("note", format!("FAILED: {}", why.replace(',', ";")));
        }
    }
    if !notes.is_empty() {
        out.insert("note", notes.join("; "));
    }
    Ok(COLUMNS.iter().map(|c| out.remove(c).unwrap_or_default()).collect())
}

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn to_csv(rows: &[Vec<String>]) -> String {
    let mut s = COLUMNS.join(",");
    s.push('\n');
    for r in rows {
        s.push_str(&r.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        s.push('\n');
    }
    s
}

fn col(name: &str) -> usize {
    COLUMNS.iter().position(|c| *c == name).expect("known column")
}

/// Sanity checks on the nvme commit rows, one line per finding; the bool
/// says whether it passed.
pub fn sanity(rows: &[Vec<String>]) -> Vec<(bool, String)> {
    let mut out = vec![];
    let f = |r: &Vec<String>, c: &str| r[col(c)].parse::<f64>().ok();
    fn commits<'a>(rows: &'a [Vec<String>], d: &'a str) -> impl Iterator<Item = &'a Vec<String>> + 'a {
        rows.iter().filter(move |r| r[col("medium")] == "nvme" && r[col("workload")] == "commit" && r[col("durability")] == d)
    }
    for r in commits(rows, "sync") {
        let e = &r[col("engine")];
        match f(r, "device_flushes_per_op") {
            Some(v) => out.push((v >= 1.0, format!("{e}: sync commit, {v:.2} NVMe flushes per commit (want >= 1)"))),
            None => out.push((false, format!("{e}: sync commit has no flush count ({})", r[col("note")]))),
        }
        let Some(sync_flushes) = f(r, "device_flushes_per_op") else { continue };
        for a in commits(rows, "async").filter(|a| &a[col("engine")] == e && a[col("value_bytes")] == r[col("value_bytes")]) {
            match f(a, "device_flushes_per_op") {
                Some(v) => out.push((v < sync_flushes, format!("{e}: async commit, {v:.3} flushes per commit (want fewer than sync's {sync_flushes:.2})"))),
                None => out.push((false, format!("{e}: async commit has no flush count"))),
            }
        }
    }
    out
}

/// A markdown table of the headline columns.
pub fn markdown(rows: &[Vec<String>], env: &[(String, String)], checks: &[(bool, String)]) -> String {
    let shown = [
        "engine", "medium", "workload", "value_bytes", "durability", "ops", "ops_per_sec", "p50_us", "p99_us",
        "syscalls_per_op", "bytes_copied_per_op", "device_write_cmds_per_op", "device_flushes_per_op",
        "device_bytes_written_per_op", "guest_instructions_per_op",
    ];
    let mut s = String::from("# Linux baseline guest (`cargo xtask eval --linux`)\n\n");
    s.push_str("Counts per operation on the standard QEMU machine (see eval/LINUX.md for what each counter is).\n\n");
    for (k, v) in env {
        s.push_str(&format!("- {k}: {v}\n"));
    }
    s.push_str("\n| ");
    s.push_str(&shown.join(" | "));
    s.push_str(" | note |\n|");
    s.push_str(&"---|".repeat(shown.len() + 1));
    s.push('\n');
    for r in rows {
        let cells: Vec<String> = shown.iter().map(|c| r[col(c)].clone()).collect();
        s.push_str(&format!("| {} | {} |\n", cells.join(" | "), r[col("note")]));
    }
    s.push_str("\n## Sanity checks\n\n");
    for (ok, line) in checks {
        s.push_str(&format!("- {} {line}\n", if *ok { "PASS" } else { "FAIL" }));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::linux::qtrace::NvmeCounts;

    const HEADER: &str = "system,engine,medium,workload,value_bytes,durability,ops,ops_per_sec,p50_us,p99_us,rchar,wchar";

    fn plan(engine: &str, durability: &str) -> PlanRow {
        PlanRow { engine: engine.into(), medium: "nvme".into(), workload: "commit".into(), value_bytes: 100, durability: durability.into(), ops: 200 }
    }

    fn outcome(flushes: u64) -> RowOutcome {
        RowOutcome {
            csv: Some("linux-guest,sqlite,nvme,commit,100,sync,200,450.5,2100,3900,40000,60000".into()),
            syscalls: Some(1000),
            runtime_ns: Some(20_000_000),
            bench_runtime_ns: Some(10_000_000),
            nvme: Some(NvmeCounts { write_cmds: 800, flush_cmds: flushes, read_cmds: 0, write_zeroes_cmds: 0, bytes_written: 200 * 26 * 1024 }),
            ..Default::default()
        }
    }

    #[test]
    fn computes_per_op_columns() {
        let r = make_row(&plan("sqlite", "sync"), HEADER, &outcome(272), Some(&outcome(272))).unwrap();
        let get = |c: &str| r[col(c)].as_str();
        assert_eq!(get("system"), "linux-guest");
        assert_eq!(get("ops"), "200");
        assert_eq!(get("ops_per_sec"), "450.5");
        assert_eq!(get("syscalls_per_op"), "5.000");
        assert_eq!(get("bytes_copied_per_op"), "500");
        assert_eq!(get("device_write_cmds_per_op"), "4.000");
        assert_eq!(get("device_flushes_per_op"), "1.360");
        assert_eq!(get("device_bytes_written_per_op"), "26624");
        assert_eq!(get("guest_instructions_per_op"), "100000");
        assert_eq!(get("bench_instructions_per_op"), "50000");
        assert_eq!(get("note"), "");
    }

    #[test]
    fn failed_rows_and_bad_bench_rows_are_reported() {
        let failed = RowOutcome { fail: Some("eval-bench exited 1: no such engine, libdb".into()), ..Default::default() };
        let r = make_row(&plan("libdb", "sync"), HEADER, &failed, None).unwrap();
        assert!(r[col("note")].starts_with("FAILED: eval-bench exited 1: no such engine; libdb"), "{:?}", r);
        let mut short = outcome(1);
        short.csv = Some("a,b".into());
        assert!(make_row(&plan("x", "sync"), HEADER, &short, None).is_err());
    }

    #[test]
    fn sanity_flags_missing_flushes_and_async_not_fewer() {
        let rows = vec![
            make_row(&plan("sqlite", "sync"), HEADER, &outcome(272), None).unwrap(),
            make_row(&plan("sqlite", "async"), HEADER, &outcome(3), None).unwrap(),
            make_row(&plan("redb", "sync"), HEADER, &outcome(100), None).unwrap(),
            make_row(&plan("redb", "async"), HEADER, &outcome(100), None).unwrap(),
        ];
        let checks = sanity(&rows);
        assert_eq!(checks.len(), 4);
        assert!(checks[0].0 && checks[1].0, "{checks:?}");
        assert!(!checks[2].0, "0.5 flushes per sync commit must fail: {checks:?}");
        assert!(!checks[3].0, "async as many flushes as sync must fail: {checks:?}");
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("a;b"), "a;b");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        let t = to_csv(&[vec!["1".into(); COLUMNS.len()]]);
        assert_eq!(t.lines().count(), 2);
        assert!(t.starts_with("system,engine,medium,workload,value_bytes,durability,ops,ops_per_sec,p50_us,p99_us,syscalls_per_op,bytes_copied_per_op,device_write_cmds_per_op,device_flushes_per_op,device_bytes_written_per_op,guest_instructions_per_op"));
    }
}
