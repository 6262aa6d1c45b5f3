//! Turning the two passes into result rows (`crate::results::Row`, the
//! schema every system shares), the per-run raw counter table, the
//! markdown summary and the sanity checks.

use super::plan::{Pair, Run};
use super::RunOutcome;
use crate::results::{parse_row, Row};
use anyhow::{bail, Context, Result};

/// `(measured - baseline) / (ops - 1)`: the per-op cost of the measured
/// phase with start-up, preload and the final sync cancelled out.
pub fn differential(measured: u64, baseline: u64, ops: u64) -> Option<f64> {
    (ops > 1).then(|| (measured as f64 - baseline as f64) / (ops - 1) as f64)
}

/// The result row of one pair, or why there is none.
pub fn make_row(
    pair: Pair,
    runs: &[Run],
    bench_columns: &[String],
    counters: &[RunOutcome],
    icount: &[RunOutcome],
) -> Result<Row> {
    let (m, b) = (&counters[pair.measured], &counters[pair.baseline]);
    let run = &runs[pair.measured];
    let csv = match (&m.csv, &m.fail) {
        (Some(c), _) => c,
        (None, Some(f)) => bail!("{f}"),
        (None, None) => bail!("no result"),
    };
    let mut row =
        parse_row(bench_columns, csv).map_err(anyhow::Error::msg).with_context(|| format!("eval-bench row `{csv}`"))?;
    if row.ops != run.ops || row.engine != run.engine || row.workload != run.workload {
        bail!("eval-bench row `{csv}` does not match the planned run {}", run.label());
    }
    let ops = row.ops;
    if row.syscalls_per_op.is_none() {
        // The bench's own perf counter was unavailable: fall back to ftrace.
        if let (Some(ms), Some(bs)) = (m.syscalls, b.syscalls) {
            row.syscalls_per_op = differential(ms, bs, ops);
        }
    }
    // The raw media are regions of the same NVMe namespace.
    if run.medium == "nvme" || crate::rawmedia::is_raw(&run.medium) {
        if let (Some(mn), Some(bn)) = (m.nvme, b.nvme) {
            row.device_write_cmds_per_op = differential(mn.write_cmds, bn.write_cmds, ops);
            row.device_flushes_per_op = differential(mn.flush_cmds, bn.flush_cmds, ops);
            row.device_bytes_written_per_op = differential(mn.bytes_written, bn.bytes_written, ops);
        }
    }
    if let (Some(mi), Some(bi)) = (icount.get(pair.measured), icount.get(pair.baseline)) {
        if let (Some(mr), Some(br)) = (mi.runtime_ns, bi.runtime_ns) {
            row.guest_instructions_per_op = differential(mr, br, ops);
        }
    }
    Ok(row)
}

/// I/O-queue submission doorbells per operation of an NVMe row, from the
/// icount pass (the only pass with NVMe ioeventfd off). Not a `Row` column:
/// it goes into `linux.md` beside the row and its raw totals into
/// `linux-counters.csv`.
pub fn doorbells_per_op(pair: Pair, runs: &[Run], icount: &[RunOutcome]) -> Option<f64> {
    let run = &runs[pair.measured];
    if run.medium != "nvme" && !crate::rawmedia::is_raw(&run.medium) {
        return None;
    }
    let m = icount.get(pair.measured)?.nvme_sq_doorbells?;
    let b = icount.get(pair.baseline)?.nvme_sq_doorbells?;
    differential(m, b, run.ops)
}

/// `table` (a markdown table: header, separator, one line per row) with one
/// more right-aligned column; `cells[i]` belongs to the i-th row, `None` is
/// shown as "–" like the other empty cells.
pub fn append_column(table: &str, header: &str, cells: &[Option<f64>]) -> Result<String> {
    let lines: Vec<&str> = table.lines().collect();
    if lines.len() != cells.len() + 2 || lines.iter().any(|l| !l.ends_with('|')) {
        bail!("appending `{header}`: the table has {} lines, want {} rows + 2", lines.len(), cells.len());
    }
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let cell = match i {
            0 => format!(" {header} |"),
            1 => "---:|".to_string(),
            _ => format!(" {} |", cells[i - 2].map_or("–".to_string(), |v| format!("{v:.2}"))),
        };
        out.push_str(line);
        out.push_str(&cell);
        out.push('\n');
    }
    Ok(out)
}

/// The doorbell counter works at all: every NVMe run of the icount pass has
/// a doorbell count and they are not all zero (which is what `ioeventfd=on`
/// or a renamed trace event would silently give).
pub fn doorbell_check(runs: &[Run], icount: &[RunOutcome]) -> (bool, String) {
    let nvme: Vec<(&Run, &RunOutcome)> =
        runs.iter().zip(icount).filter(|(r, o)| r.medium == "nvme" && o.csv.is_some()).collect();
    let missing = nvme.iter().filter(|(_, o)| o.nvme_sq_doorbells.is_none()).count();
    let total: u64 = nvme.iter().filter_map(|(_, o)| o.nvme_sq_doorbells).sum();
    let ok = !nvme.is_empty() && missing == 0 && total > 0;
    (
        ok,
        format!(
            "icount pass (NVMe ioeventfd off): {total} I/O-queue submission doorbells traced over {} NVMe runs{}",
            nvme.len(),
            if missing > 0 { format!(", {missing} runs without a count") } else { String::new() }
        ),
    )
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Raw totals per run (measured and baseline alike), for `linux-counters.csv`.
pub fn counters_csv(runs: &[Run], counters: &[RunOutcome], icount: &[RunOutcome]) -> String {
    const HEADER: [&str; 20] = [
        "engine",
        "medium",
        "workload",
        "value_bytes",
        "durability",
        "ops",
        "keys",
        "ftrace_syscalls",
        "nvme_write_cmds",
        "nvme_flush_cmds",
        "nvme_bytes_written",
        "nvme_write_zeroes_cmds",
        "nvme_read_cmds",
        "nvme_sq_doorbells",
        "blk_wr_operations",
        "blk_wr_bytes",
        "pmem_pages_changed",
        "icount_all_tasks_ns",
        "icount_bench_ns",
        "result",
    ];
    let records = runs.iter().enumerate().map(|(i, r)| {
        let c = &counters[i];
        let n = c.nvme.unwrap_or_default();
        let has_nvme = c.nvme.is_some();
        let nv = |v: u64| {
            if has_nvme {
                v.to_string()
            } else {
                String::new()
            }
        };
        let ic = icount.get(i);
        let result = match (&c.csv, &c.fail) {
            (Some(_), _) => "ok".to_string(),
            (None, Some(f)) => format!("FAILED {}", f.replace([',', '"', '\n'], ";")),
            _ => "missing".into(),
        };
        [
            r.engine.clone(),
            r.medium.clone(),
            r.workload.clone(),
            r.value_bytes.to_string(),
            r.durability.clone(),
            r.ops.to_string(),
            r.keys.to_string(),
            opt(c.syscalls),
            nv(n.write_cmds),
            nv(n.flush_cmds),
            nv(n.bytes_written),
            nv(n.write_zeroes_cmds),
            nv(n.read_cmds),
            opt(ic.and_then(|x| x.nvme_sq_doorbells)),
            opt(c.blockstats.map(|b| b.wr_operations)),
            opt(c.blockstats.map(|b| b.wr_bytes)),
            opt(c.pmem_pages_changed),
            opt(ic.and_then(|x| x.runtime_ns)),
            opt(ic.and_then(|x| x.bench_runtime_ns)),
            result,
        ]
    });
    crate::results::csv_text(Some(&HEADER), records)
}

/// pmem rows: distinct NVDIMM pages whose contents changed during the
/// measured run and during its 1-op baseline. A footprint, not write
/// traffic (a page written a thousand times counts once), so it is shown
/// as totals rather than divided into a per-op figure.
pub fn pmem_pages_table(pairs: &[Pair], runs: &[Run], counters: &[RunOutcome]) -> String {
    let mut s = String::from(
        "| engine | workload | value | durability | ops | pages changed (run) | pages changed (1-op baseline) |\n|---|---|---:|---|---:|---:|---:|\n",
    );
    let mut any = false;
    for p in pairs {
        let r = &runs[p.measured];
        let (Some(m), Some(b)) = (counters[p.measured].pmem_pages_changed, counters[p.baseline].pmem_pages_changed)
        else {
            continue;
        };
        any = true;
        s.push_str(&format!(
            "| {} | {} | {} B | {} | {} | {m} | {b} |\n",
            r.engine, r.workload, r.value_bytes, r.durability, r.ops
        ));
    }
    if any {
        s
    } else {
        String::new()
    }
}

/// Sanity checks on the nvme commit rows; the bool says whether it passed.
/// A sync commit must flush the device at least once; every weaker mode
/// (groupN, async) of the same engine and value size must flush less.
pub fn sanity(rows: &[Row]) -> Vec<(bool, String)> {
    let mut out = vec![];
    let nvme_commit = |r: &&Row| r.medium == "nvme" && r.workload == "commit";
    for r in rows.iter().filter(nvme_commit).filter(|r| r.durability == "sync") {
        let Some(sync_f) = r.device_flushes_per_op else {
            out.push((false, format!("{}: sync commit has no device flush count", r.engine)));
            continue;
        };
        out.push((
            sync_f >= 1.0,
            format!("{}: sync commit, {sync_f:.2} NVMe flushes per commit (want >= 1)", r.engine),
        ));
        let weaker = rows
            .iter()
            .filter(nvme_commit)
            .filter(|a| a.durability != "sync" && a.engine == r.engine && a.value_bytes == r.value_bytes);
        for a in weaker {
            let d = &a.durability;
            match a.device_flushes_per_op {
                Some(v) => out.push((
                    v < sync_f,
                    format!("{}: {d} commit, {v:.3} NVMe flushes per commit (want < {sync_f:.2})", r.engine),
                )),
                None => out.push((false, format!("{}: {d} commit has no device flush count", r.engine))),
            }
        }
    }
    out
}

/// The trace-event counts must agree with QEMU's block layer
/// (`query-blockstats`) on write commands and bytes for every NVMe run.
/// (Flushes cannot be cross-checked: QEMU 7.2's NVMe flush does no block
/// accounting, so `flush_operations` stays 0.)
pub fn cross_check(runs: &[Run], counters: &[RunOutcome]) -> (bool, String) {
    let mut checked = 0;
    let mut bad = vec![];
    for (r, c) in runs.iter().zip(counters) {
        let (Some(n), Some(b)) = (c.nvme, c.blockstats) else {
            continue;
        };
        checked += 1;
        // Write-zeroes commands are block-layer writes too.
        if n.write_cmds + n.write_zeroes_cmds != b.wr_operations
            || (n.write_zeroes_cmds == 0 && n.bytes_written != b.wr_bytes)
        {
            bad.push(format!(
                "{}: trace {} writes + {} write-zeroes / {} B, blockstats {} writes / {} B",
                r.label(),
                n.write_cmds,
                n.write_zeroes_cmds,
                n.bytes_written,
                b.wr_operations,
                b.wr_bytes
            ));
        }
    }
    if bad.is_empty() {
        (checked > 0, format!("trace-event NVMe write counts equal QMP query-blockstats in all {checked} runs"))
    } else {
        (false, format!("trace vs blockstats disagree in {} of {checked} runs: {}", bad.len(), bad.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::qtrace::NvmeCounts;

    fn cols() -> Vec<String> {
        crate::results::COLUMNS.iter().map(|s| s.to_string()).collect()
    }

    fn run(engine: &str, durability: &str, ops: u64) -> Run {
        Run {
            engine: engine.into(),
            medium: "nvme".into(),
            workload: "commit".into(),
            value_bytes: 100,
            durability: durability.into(),
            ops,
            keys: 500,
        }
    }

    fn outcome(r: &Run, syscalls_cell: &str, flushes: u64, runtime: u64) -> RunOutcome {
        RunOutcome {
            csv: Some(format!(
                "linux-guest,{},nvme,commit,100,{},{},450.5,2100,3900,{syscalls_cell},120,,1,,,,",
                r.engine, r.durability, r.ops
            )),
            syscalls: Some(1000 + 5 * r.ops),
            runtime_ns: Some(runtime),
            nvme: Some(NvmeCounts {
                write_cmds: 10 + 3 * r.ops,
                flush_cmds: flushes,
                bytes_written: 4096 * (2 + 6 * r.ops),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn per_op_counts_are_differential() {
        let runs = vec![run("sqlite", "sync", 1), run("sqlite", "sync", 101)];
        let c = vec![outcome(&runs[0], "", 3, 0), outcome(&runs[1], "", 3 + 136, 0)];
        let ic = vec![outcome(&runs[0], "", 0, 5_000_000), outcome(&runs[1], "", 0, 25_000_000)];
        let row = make_row(Pair { baseline: 0, measured: 1 }, &runs, &cols(), &c, &ic).unwrap();
        assert_eq!(row.system, "linux-guest");
        assert_eq!(row.device_flushes_per_op, Some(1.36));
        assert_eq!(row.device_write_cmds_per_op, Some(3.0));
        assert_eq!(row.device_bytes_written_per_op, Some(6.0 * 4096.0));
        assert_eq!(row.guest_instructions_per_op, Some(200_000.0));
        // ftrace fallback when the bench had no syscall count: 5 per op.
        assert_eq!(row.syscalls_per_op, Some(5.0));
        assert_eq!(row.bytes_copied_per_op, Some(120.0));
        // The bench's own (measured-phase) syscall count wins when present.
        let c2 = vec![outcome(&runs[0], "7", 3, 0), outcome(&runs[1], "7.5", 139, 0)];
        assert_eq!(
            make_row(Pair { baseline: 0, measured: 1 }, &runs, &cols(), &c2, &ic).unwrap().syscalls_per_op,
            Some(7.5)
        );
    }

    #[test]
    fn failures_and_mismatches_are_errors() {
        let runs = vec![run("libdb", "sync", 1), run("libdb", "sync", 101)];
        let failed = RunOutcome { fail: Some("eval-bench-exited-1: libdb: boom".into()), ..Default::default() };
        let e =
            make_row(Pair { baseline: 0, measured: 1 }, &runs, &cols(), &[failed.clone(), failed], &[]).unwrap_err();
        assert!(e.to_string().contains("boom"));
        let other = run("lmdb", "sync", 101);
        let c = vec![outcome(&runs[0], "", 0, 0), outcome(&other, "", 0, 0)];
        assert!(make_row(Pair { baseline: 0, measured: 1 }, &runs, &cols(), &c, &[]).is_err());
        assert_eq!(differential(5, 1, 1), None);
        assert_eq!(differential(1, 5, 3), Some(-2.0));
    }

    #[test]
    fn sanity_flags_missing_flushes_and_async_not_fewer() {
        let row = |engine: &str, d: &str, f: Option<f64>| Row {
            engine: engine.into(),
            medium: "nvme".into(),
            workload: "commit".into(),
            durability: d.into(),
            value_bytes: 100,
            device_flushes_per_op: f,
            ..Row::default()
        };
        let rows = vec![
            row("sqlite", "sync", Some(1.36)),
            row("sqlite", "group8", Some(0.13)),
            row("sqlite", "async", Some(0.01)),
            row("redb", "sync", Some(0.5)),
            row("redb", "async", Some(0.5)),
            row("lmdb", "sync", None),
        ];
        let c = sanity(&rows);
        assert_eq!(c.iter().map(|x| x.0).collect::<Vec<_>>(), vec![true, true, true, false, false, false], "{c:?}");
    }

    #[test]
    fn cross_check_compares_trace_and_blockstats() {
        use crate::linux::blockstats::BlockStats;
        let runs = vec![run("sqlite", "sync", 1), run("sqlite", "sync", 101)];
        let mut c = vec![outcome(&runs[0], "", 3, 0), outcome(&runs[1], "", 3, 0)];
        for o in &mut c {
            let n = o.nvme.unwrap();
            o.blockstats =
                Some(BlockStats { wr_operations: n.write_cmds, wr_bytes: n.bytes_written, ..Default::default() });
        }
        assert!(cross_check(&runs, &c).0);
        c[1].blockstats.as_mut().unwrap().wr_bytes += 512;
        let (ok, why) = cross_check(&runs, &c);
        assert!(!ok && why.contains("1 of 2"), "{why}");
        assert!(
            !cross_check(&runs, &[RunOutcome::default(), RunOutcome::default()]).0,
            "nothing checked is not a pass"
        );
    }

    #[test]
    fn pmem_table_shows_totals_of_run_and_baseline() {
        let mut runs = vec![run("lmdb", "sync", 1), run("lmdb", "sync", 11)];
        runs.iter_mut().for_each(|r| r.medium = "pmem".into());
        let c = vec![
            RunOutcome { pmem_pages_changed: Some(40), ..Default::default() },
            RunOutcome { pmem_pages_changed: Some(60), ..Default::default() },
        ];
        let t = pmem_pages_table(&[Pair { baseline: 0, measured: 1 }], &runs, &c);
        assert!(t.contains("| lmdb | commit | 100 B | sync | 11 | 60 | 40 |"), "{t}");
        assert_eq!(
            pmem_pages_table(
                &[Pair { baseline: 0, measured: 1 }],
                &runs,
                &[RunOutcome::default(), RunOutcome::default()]
            ),
            ""
        );
    }

    #[test]
    fn doorbells_per_op_is_differential_from_the_icount_pass_on_nvme_only() {
        let mut runs = vec![run("sqlite", "sync", 1), run("sqlite", "sync", 101)];
        let ic = vec![
            RunOutcome { nvme_sq_doorbells: Some(40), ..Default::default() },
            RunOutcome { nvme_sq_doorbells: Some(40 + 250), ..Default::default() },
        ];
        let p = Pair { baseline: 0, measured: 1 };
        assert_eq!(doorbells_per_op(p, &runs, &ic), Some(2.5));
        assert_eq!(doorbells_per_op(p, &runs, &ic[..1]), None, "no measured run");
        assert_eq!(doorbells_per_op(p, &runs, &[ic[0].clone(), RunOutcome::default()]), None);
        runs.iter_mut().for_each(|r| r.medium = "pmem".into());
        assert_eq!(doorbells_per_op(p, &runs, &ic), None);
        // The raw totals go to linux-counters.csv under their own header.
        let t = counters_csv(&runs, &[RunOutcome::default(), RunOutcome::default()], &ic);
        let head: Vec<&str> = t.lines().next().unwrap().split(',').collect();
        let col = head.iter().position(|h| *h == "nvme_sq_doorbells").unwrap();
        let cells: Vec<&str> = t.lines().skip(1).map(|l| l.split(',').nth(col).unwrap()).collect();
        assert_eq!(cells, vec!["40", "290"]);
    }

    #[test]
    fn append_column_adds_a_cell_to_every_line() {
        let t = "| a | b |\n|---|---:|\n| x | 1 |\n| y | 2 |\n";
        let out = append_column(t, "doorbells/op", &[Some(1.234), None]).unwrap();
        assert_eq!(out, "| a | b | doorbells/op |\n|---|---:|---:|\n| x | 1 | 1.23 |\n| y | 2 | – |\n");
        assert!(append_column(t, "d", &[Some(1.0)]).is_err(), "row count mismatch must not misalign cells");
    }

    #[test]
    fn doorbell_check_needs_counts_on_every_nvme_run() {
        let runs = vec![run("lmdb", "sync", 1), run("lmdb", "sync", 11)];
        let ok = |n| RunOutcome { csv: Some(String::new()), nvme_sq_doorbells: n, ..Default::default() };
        assert!(doorbell_check(&runs, &[ok(Some(3)), ok(Some(30))]).0);
        assert!(!doorbell_check(&runs, &[ok(Some(0)), ok(Some(0))]).0, "all zero means doorbells bypassed the trace");
        let (pass, why) = doorbell_check(&runs, &[ok(Some(3)), ok(None)]);
        assert!(!pass && why.contains("1 runs without"), "{why}");
        assert!(!doorbell_check(&runs, &[]).0);
    }

    #[test]
    fn counters_table_has_a_line_per_run() {
        let runs = vec![run("sqlite", "sync", 1), run("sqlite", "sync", 101)];
        let c = vec![outcome(&runs[0], "", 3, 0), RunOutcome { fail: Some("x,y".into()), ..Default::default() }];
        let t = counters_csv(&runs, &c, &[]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].split(',').count(), lines[1].split(',').count());
        assert!(lines[2].ends_with("FAILED x;y"), "{}", lines[2]);
    }
}
