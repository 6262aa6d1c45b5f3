//! Smoke test of the real `eval-bench` binary on the host: a few hundred
//! durable commits with one engine in a temporary directory, checked for a
//! well-formed row whose counters are plausible (every sync commit flushes).

use eval::results::{header, read_csv, COLUMNS};
use std::path::PathBuf;
use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eval-bench"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eval-smoke-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_row(engine: &str, workload: &str, durability: &str, ops: &str) -> eval::results::Row {
    let dir = temp_dir(&format!("{engine}-{workload}-{durability}"));
    let out = bench()
        .args(["run", "--engine", engine, "--workload", workload, "--value-bytes", "100"])
        .args(["--durability", durability, "--ops", ops, "--keys", "500"])
        .args(["--medium", "host-fs", "--system", "host-linux", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let leftovers = std::fs::read_dir(&dir).unwrap().count();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "eval-bench failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(leftovers, 0, "the run must remove its store");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "exactly one row: {stdout:?}");
    let rows = read_csv(&format!("{}\n{stdout}", header())).unwrap();
    rows.into_iter().next().unwrap()
}

#[test]
fn header_command_prints_the_columns() {
    let out = bench().arg("header").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), COLUMNS.join(","));
}

#[test]
fn sync_commits_each_flush_and_async_ones_do_not() {
    let sync = run_row("redb", "commit", "sync", "300");
    assert_eq!((sync.engine.as_str(), sync.workload.as_str(), sync.ops), ("redb", "commit", 300));
    assert!(sync.ops_per_sec > 0.0 && sync.p99_us >= sync.p50_us && sync.p50_us > 0.0);
    let flushes = sync.flushes_per_op.expect("the flush wrappers are linked into eval-bench");
    assert!(flushes >= 1.0, "a sync commit flushes at least once, got {flushes}");
    assert!(sync.bytes_copied_per_op.unwrap() >= 100.0, "each commit writes its value");
    if let Some(calls) = sync.syscalls_per_op {
        assert!(calls >= 2.0, "a write and a flush per commit at least, got {calls}");
    }
    let lazy = run_row("redb", "commit", "async", "300");
    assert!(lazy.flushes_per_op.unwrap() < 0.1, "async: one flush at the end, got {:?}", lazy.flushes_per_op);
}

#[test]
fn reads_find_every_preloaded_key() {
    // readrandom fails the run if any key is missing.
    let row = run_row("sqlite", "readrandom", "sync", "400");
    assert_eq!(row.flushes_per_op, Some(0.0));
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let out = bench().args(["run", "--engine", "nosuch"]).output().unwrap();
    assert!(!out.status.success());
    let dir = temp_dir("bad");
    let out = bench()
        .args(["run", "--engine", "sqlite-normal", "--workload", "commit", "--value-bytes", "100"])
        .args(["--durability", "sync", "--ops", "10", "--medium", "host-fs", "--system", "host-linux", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot honour durability sync"));
}
