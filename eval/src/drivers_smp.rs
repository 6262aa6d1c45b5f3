//! `cargo xtask eval --drivers --smp 2`: the block service at queue depth
//! 1 with the driver polling on a core of its own, against Linux's QD1
//! rows on the same 2-CPU machine (eval/DRIVERS.md, "QD1 with the driver
//! on its own core"). The exokernel's rows come from the QEMU tests'
//! scenarios `qd1poll_own_core` (client on CPU 0, `nvmed serve poll` on
//! CPU 1) and `qd1poll_shared_core` (both on CPU 0, yielding), booted on
//! the 2-CPU multi-threaded-TCG machine: client-side latencies
//! ([`Qd1PollLine`]) and the driver's counts ([`Qd1DriverLine`]). Linux's
//! are `--drivers`' own QD1 rows (`eval-bench raw` pread/pwrite and fio
//! io_uring, io_uring hipri, libaio) in a guest with 2 vCPUs.

use crate::drivers::{linux_runs, pick_median, Extra, Round};
use crate::linux::plan::Run;
use crate::results::{format_number, Row};
use anyhow::{bail, Result};
use eval_lines::qd1poll::{Qd1DriverLine, Qd1PollLine, WORKLOADS};
use std::fmt::Write as _;

/// The exokernel rows' engine names, by where the driver ran.
pub const OWN_CORE: &str = "blockq-own-core";
pub const SHARED_CORE: &str = "blockq-shared-core";
/// The driver polling on CPU 1 as for [`OWN_CORE`], the client sleeping
/// until the completion interrupt wakes it (CPU 0 halts meanwhile).
pub const OWN_SLEEP: &str = "blockq-own-sleep";
/// The engines with the driver polling on its own core: the ones the
/// acceptance point judges.
pub const OWN_CORE_ENGINES: [&str; 2] = [OWN_CORE, OWN_SLEEP];

/// The test-root scenarios the eval boots, and the placement each prints.
pub const SCENARIOS: [(&str, &str); 3] =
    [("qd1poll_own_core", "own-core"), ("qd1poll_shared_core", "shared-core"), ("qd1poll_own_sleep", "own-sleep")];

/// `--drivers`' Linux runs, QD1 workloads only (with their `--ops 1`
/// baselines): (runs, pairs as (baseline, measured) indices).
pub fn linux_runs_qd1(quick: bool) -> (Vec<Run>, Vec<(usize, usize)>) {
    let (all, pairs) = linux_runs(quick);
    let (mut runs, mut out) = (vec![], vec![]);
    for (b, m) in pairs.into_iter().filter(|&(_, m)| all[m].workload.ends_with("-qd1")) {
        runs.push(all[b].clone());
        runs.push(all[m].clone());
        out.push((runs.len() - 2, runs.len() - 1));
    }
    (runs, out)
}

/// One exokernel boot's lines: a client line per workload of
/// `placement`, and the driver's line.
pub fn parse_exo(serial: &str, placement: &str) -> Result<(Vec<Qd1PollLine>, Qd1DriverLine)> {
    let (mut lines, mut driver) = (vec![], None);
    for line in serial.lines().map(str::trim) {
        if line.starts_with(&format!("{} ", Qd1PollLine::PREFIX)) {
            lines.push(
                Qd1PollLine::parse(line).map_err(|e| anyhow::anyhow!("{} line {e}: {line:?}", Qd1PollLine::PREFIX))?,
            );
        } else if line.starts_with(&format!("{} ", Qd1DriverLine::PREFIX)) {
            if driver.is_some() {
                bail!("two {} lines", Qd1DriverLine::PREFIX);
            }
            driver = Some(
                Qd1DriverLine::parse(line)
                    .map_err(|e| anyhow::anyhow!("{} line {e}: {line:?}", Qd1DriverLine::PREFIX))?,
            );
        }
    }
    for w in WORKLOADS {
        if !lines.iter().any(|l| l.workload == w && l.placement == placement) {
            bail!("no {} line for {placement} {w}", Qd1PollLine::PREFIX);
        }
    }
    let driver = driver.ok_or_else(|| anyhow::anyhow!("no {} line", Qd1DriverLine::PREFIX))?;
    if driver.polls != (placement != "shared-core") {
        bail!("the {placement} boot's driver says polls={}", driver.polls);
    }
    Ok((lines, driver))
}

/// The exokernel's rows from one boot. The client's system calls are per
/// op of its own loop; the driver's doorbells and system calls are per
/// request over its whole serving loop (both workloads and one flush).
pub fn exo_rows(lines: &[Qd1PollLine], driver: &Qd1DriverLine) -> Round {
    let (mut rows, mut extras) = (vec![], vec![]);
    let per_req = |v: u64| v as f64 / driver.requests.max(1) as f64;
    for l in lines {
        let engine = match l.placement.as_str() {
            "own-core" => OWN_CORE,
            "own-sleep" => OWN_SLEEP,
            _ => SHARED_CORE,
        };
        let ops = l.ops.max(1) as f64;
        let client = l.client_syscalls as f64 / ops;
        rows.push(Row {
            system: "exo".into(),
            engine: engine.into(),
            medium: "nvme".into(),
            workload: l.workload.clone(),
            value_bytes: 4096,
            durability: "none".into(),
            ops: l.ops,
            ops_per_sec: l.iops as f64,
            p50_us: l.p50_us as f64,
            p99_us: l.p99_us as f64,
            syscalls_per_op: Some(client),
            ..Row::default()
        });
        extras.push(Extra {
            system: "exo".into(),
            workload: l.workload.clone(),
            engine: engine.into(),
            crossings_per_op: Some(client + per_req(driver.syscalls)),
            syscalls_per_op: Some(client),
            doorbells_per_op: Some(per_req(driver.doorbells)),
            sq_doorbells_per_op: Some(per_req(driver.commands)),
            ..Extra::default()
        });
    }
    (rows, extras)
}

/// Linux's lowest p99 at `workload` over every engine.
fn best_linux_p99<'a>(rows: &'a [Row], workload: &str) -> Option<&'a Row> {
    rows.iter()
        .filter(|r| r.system == "linux-guest" && r.workload == workload)
        .min_by(|a, b| a.p99_us.total_cmp(&b.p99_us))
}

/// The acceptance point, per QD1 workload and per configuration with the
/// driver polling on its own core (the client spinning, `own-core`, or
/// sleeping until the completion interrupt, `own-sleep`): its p99 (the
/// median round's) at most Linux's lowest p99.
pub fn verdicts(rows: &[Row]) -> Vec<String> {
    let mut out = vec![];
    for w in WORKLOADS {
        for engine in OWN_CORE_ENGINES {
            verdict(rows, w, engine, &mut out);
        }
    }
    out
}

fn verdict(rows: &[Row], w: &str, engine: &str, out: &mut Vec<String>) {
    let name = engine.trim_start_matches("blockq-");
    {
        let exo = rows.iter().find(|r| r.system == "exo" && r.engine == engine && r.workload == w);
        match (exo, best_linux_p99(rows, w)) {
            (Some(e), Some(l)) => out.push(format!(
                "{w}: exo {name} p99 {} us {} Linux's best p99 {} us ({}): {}",
                format_number(e.p99_us),
                if e.p99_us <= l.p99_us { "<=" } else { ">" },
                format_number(l.p99_us),
                l.engine,
                if e.p99_us <= l.p99_us { "MET" } else { "NOT MET" }
            )),
            _ => out.push(format!("{w}: no row for exo {name} or for Linux: not judged")),
        }
    }
}

/// drivers-smp2.md: the median rounds' table, every round's p99, the
/// verdicts and the environment.
pub fn summary(rounds: &[Round], failures: &[String], env: &[(String, String)]) -> String {
    let ((rows, extras), _) = pick_median(rounds);
    let mut s = String::from(
        "# QD1 with the driver on its own core (`eval --drivers --smp 2`)\n\n\
         Both systems on 2 vCPUs. exo: `nvmetest qd1` on CPU 0 through the block service (`blockq` rings); \
         `blockq-own-core` = `nvmed serve poll` pinned to CPU 1 (both sides poll, neither yields), \
         `blockq-shared-core` = `nvmed serve` on CPU 0 (both yield), \
         `blockq-own-sleep` = the polling driver on CPU 1, the client sleeping until the completion's MSI-X \
         interrupt wakes it (CPU 0 halts meanwhile). Latency at the client, submit to answer. \
         Linux: the guest's QD1 rows (`nvme-raw` = `eval-bench raw` pread/pwrite; fio). \
         Median-IOPS round per row.\n\n\
         | workload | system | engine | IOPS | p50 µs | p99 µs | syscalls/op (client) | driver syscalls/op | doorbells/op |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let opt = |v: Option<f64>| v.map(format_number).unwrap_or_else(|| "–".into());
    for w in WORKLOADS {
        for (r, x) in rows.iter().zip(&extras).filter(|(r, _)| r.workload == w) {
            let driver = match (x.crossings_per_op, x.syscalls_per_op) {
                (Some(c), Some(s)) if r.system == "exo" => Some(c - s),
                _ => None,
            };
            let _ = writeln!(
                s,
                "| {w} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.system,
                r.engine,
                format_number(r.ops_per_sec),
                format_number(r.p50_us),
                format_number(r.p99_us),
                opt(r.syscalls_per_op),
                opt(driver),
                opt(x.doorbells_per_op),
            );
        }
    }
    s.push_str("\nEvery round's p99 (µs), in round order:\n\n");
    let mut keys: Vec<(String, String, String)> = vec![];
    for (rs, _) in rounds {
        for r in rs {
            let k = (r.workload.clone(), r.system.clone(), r.engine.clone());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys.sort();
    for (w, sys, eng) in &keys {
        let p99s: Vec<String> = rounds
            .iter()
            .flat_map(|(rs, _)| rs.iter().filter(|r| &r.workload == w && &r.system == sys && &r.engine == eng))
            .map(|r| format_number(r.p99_us))
            .collect();
        let _ = writeln!(s, "- {w} {sys} {eng}: {}", p99s.join(", "));
    }
    s.push_str("\nAcceptance (issue #13: QD1 p99 with the driver polling on its own core <= Linux's p99):\n\n");
    for v in verdicts(&rows) {
        let _ = writeln!(s, "- {v}");
    }
    if !failures.is_empty() {
        s.push_str("\nFailed rows:\n\n");
        for f in failures {
            let _ = writeln!(s, "- {f}");
        }
    }
    s.push_str("\nEnvironment:\n\n");
    for (k, v) in env {
        let _ = writeln!(s, "- {k}: {v}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "init: ...\n\
        EXO-QD1POLL placement=own-core workload=randwrite-qd1 ops=100 micros=50000 iops=2000 p50_us=300 p99_us=900 client_syscalls=0 client_yields=0\n\
        EXO-QD1POLL placement=own-core workload=randread-qd1 ops=100 micros=40000 iops=2500 p50_us=200 p99_us=700 client_syscalls=0 client_yields=0\n\
        EXO-QD1POLL-DRIVER polls=1 requests=201 commands=201 doorbells=402 syscalls=0 idle_yields=0\n";

    fn linux(workload: &str, engine: &str, p99: f64) -> (Row, Extra) {
        (
            Row {
                system: "linux-guest".into(),
                engine: engine.into(),
                workload: workload.into(),
                ops_per_sec: 1000.0,
                p99_us: p99,
                ..Row::default()
            },
            Extra {
                system: "linux-guest".into(),
                workload: workload.into(),
                engine: engine.into(),
                ..Extra::default()
            },
        )
    }

    #[test]
    fn qd1poll_exo_rows_count_per_op_and_the_verdict_compares_p99_with_linuxs_best() {
        let (lines, driver) = parse_exo(OWN, "own-core").unwrap();
        let (mut rows, mut extras) = exo_rows(&lines, &driver);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].engine, OWN_CORE);
        assert_eq!(rows[0].syscalls_per_op, Some(0.0));
        assert_eq!(extras[0].doorbells_per_op, Some(2.0));
        assert_eq!(extras[0].crossings_per_op, Some(0.0));
        for (w, e, p) in [("randread-qd1", "nvme-raw", 800.0), ("randread-qd1", "fio-io_uring-hipri", 650.0)] {
            let (r, x) = linux(w, e, p);
            rows.push(r);
            extras.push(x);
        }
        let (r, x) = linux("randwrite-qd1", "nvme-raw", 1000.0);
        rows.push(r);
        extras.push(x);
        let v = verdicts(&rows);
        // Per workload: own-core, then own-sleep (no row here).
        assert!(
            v[0].starts_with("randwrite-qd1: exo own-core") && v[0].ends_with("MET") && !v[0].contains("NOT"),
            "{v:?}"
        );
        assert!(v[1].contains("no row for exo own-sleep"), "{v:?}");
        assert!(v[2].contains("fio-io_uring-hipri") && v[2].ends_with("NOT MET"), "{v:?}");
        // The sleeping client's boot gives rows of its own, judged alike.
        let (sl, sd) = parse_exo(&OWN.replace("own-core", "own-sleep"), "own-sleep").unwrap();
        let (srows, _) = exo_rows(&sl, &sd);
        assert_eq!(srows[0].engine, OWN_SLEEP);
        let mut both = rows.clone();
        both.extend(srows);
        let v = verdicts(&both);
        assert!(v[1].starts_with("randwrite-qd1: exo own-sleep p99 900 us <= Linux's best p99 1000 us"), "{v:?}");
        let md = summary(&[(rows, extras)], &[], &[("host".into(), "test".into())]);
        assert!(md.contains("| randread-qd1 | exo | blockq-own-core | 2500 | 200 | 700 | 0 | 0 | 2 |"), "{md}");
    }

    #[test]
    fn qd1poll_a_boot_without_its_lines_or_with_the_wrong_driver_is_refused() {
        assert!(parse_exo(OWN, "shared-core").is_err(), "the own-core lines are not the shared-core boot's");
        assert!(parse_exo(&OWN.replace("polls=1", "polls=0"), "own-core").is_err());
        assert!(parse_exo(&OWN.replace("EXO-QD1POLL-DRIVER", "X"), "own-core").is_err());
        assert!(parse_exo(&OWN.replace("randread", "seqread"), "own-core").is_err());
    }

    #[test]
    fn qd1poll_linux_runs_are_the_qd1_pairs_of_drivers() {
        let (runs, pairs) = linux_runs_qd1(true);
        assert_eq!(pairs.len(), 2 * (1 + crate::fio::ENGINES.len()));
        for (b, m) in pairs {
            assert!(runs[m].workload.ends_with("-qd1"));
            assert_eq!((runs[b].ops, runs[b].engine.as_str()), (1, runs[m].engine.as_str()));
        }
    }
}
