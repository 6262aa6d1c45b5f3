//! `eval-bench fio`: Debian's `fio` on the raw namespace, the standard
//! I/O tool as a second Linux baseline of `eval --drivers`
//! (eval/DRIVERS.md). This module is what is host-testable about it: the
//! engines and their fio options, and fio's JSON output read into a
//! [`Row`]. The binary runs fio as a child process and prints the row.

use crate::rawdev::RawWorkload;
use crate::results::Row;
use anyhow::{anyhow, bail, Context, Result};

/// The fio configurations measured: the `engine` column, fio's
/// `--ioengine`, and whether completions are polled (`--hipri`: io_uring
/// with `IORING_SETUP_IOPOLL`, which needs the NVMe driver's poll queues,
/// `nvme.poll_queues`, set in the guest).
pub const ENGINES: [(&str, &str, bool); 3] =
    [("fio-io_uring", "io_uring", false), ("fio-io_uring-hipri", "io_uring", true), ("fio-libaio", "libaio", false)];

/// Is `engine` one of [`ENGINES`]? Its fio options if so.
pub fn engine(name: &str) -> Result<(&'static str, bool)> {
    ENGINES
        .iter()
        .find(|e| e.0 == name)
        .map(|e| (e.1, e.2))
        .ok_or_else(|| anyhow!("fio engine {name:?}: expected one of {:?}", ENGINES.map(|e| e.0)))
}

/// fio's arguments for one run: `ops` 4 KiB (`block`) random I/Os at the
/// workload's depth, `O_DIRECT`, uniformly random block-aligned offsets in
/// the first `span` bytes (as `eval-bench raw` and the exokernel's driver
/// draw them), JSON on stdout.
pub fn args(engine_name: &str, w: RawWorkload, ops: u64, block: u64, span: u64, dev: &str) -> Result<Vec<String>> {
    let (ioengine, hipri) = engine(engine_name)?;
    if ops == 0 {
        bail!("fio: --ops must be at least 1");
    }
    let mut a = vec![
        "--name=eval".to_string(),
        format!("--filename={dev}"),
        format!("--ioengine={ioengine}"),
        format!("--rw={}", if w.write { "randwrite" } else { "randread" }),
        format!("--bs={block}"),
        format!("--iodepth={}", w.depth),
        "--direct=1".into(),
        format!("--size={span}"),
        "--offset=0".into(),
        format!("--number_ios={ops}"),
        // Uniform random offsets with repeats, as the other two benchmarks.
        "--norandommap".into(),
        "--randrepeat=0".into(),
        "--output-format=json".into(),
    ];
    if hipri {
        a.push("--hipri".into());
    }
    Ok(a)
}

/// The row of one fio run from its JSON output (the first job): ops and
/// IOPS of the workload's direction, completion-latency p50/p99 (fio's
/// `clat`: submission to completion, as the other benchmarks time it).
pub fn row(json: &str, system: &str, engine_name: &str, w: RawWorkload, block: u64) -> Result<Row> {
    engine(engine_name)?;
    // fio may print notes before the JSON object.
    let start = json.find('{').context("fio printed no JSON object")?;
    let v: serde_json::Value = serde_json::from_str(&json[start..]).context("fio's JSON output")?;
    let dir = if w.write { "write" } else { "read" };
    let job = v.get("jobs").and_then(|j| j.get(0)).context("fio JSON: no jobs[0]")?;
    if let Some(e) = job.get("error").and_then(|e| e.as_i64()).filter(|e| *e != 0) {
        bail!("fio reported error {e} for the job");
    }
    let d = job.get(dir).with_context(|| format!("fio JSON: no jobs[0].{dir}"))?;
    let num = |path: &[&str]| -> Result<f64> {
        let mut x = d;
        for p in path {
            x = x.get(p).with_context(|| format!("fio JSON: no jobs[0].{dir}.{}", path.join(".")))?;
        }
        x.as_f64().with_context(|| format!("fio JSON: jobs[0].{dir}.{} is not a number", path.join(".")))
    };
    let ops = num(&["total_ios"])? as u64;
    if ops == 0 {
        bail!("fio did no {dir} I/O");
    }
    Ok(Row {
        system: system.into(),
        engine: engine_name.into(),
        medium: "nvme".into(),
        workload: w.name(),
        value_bytes: block,
        durability: "none".into(),
        ops,
        ops_per_sec: num(&["iops"])?.round(),
        p50_us: num(&["clat_ns", "percentile", "50.000000"])? / 1000.0,
        p99_us: num(&["clat_ns", "percentile", "99.000000"])? / 1000.0,
        ..Row::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = r#"note: both iodepth >= 1 and synchronous I/O engine are selected
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "eval", "error" : 0,
      "read" : { "total_ios" : 2000, "iops" : 12345.678,
                 "clat_ns" : { "percentile" : { "50.000000" : 80384, "99.000000" : 301056 } } },
      "write" : { "total_ios" : 0, "iops" : 0.0 }
    }
  ]
}"#;

    #[test]
    fn args_name_the_engine_depth_and_polling() {
        let w = RawWorkload::parse("randread-qd32").unwrap();
        let a = args("fio-io_uring-hipri", w, 2000, 4096, 128 << 20, "/dev/nvme0n1").unwrap();
        for want in
            ["--ioengine=io_uring", "--iodepth=32", "--rw=randread", "--number_ios=2000", "--hipri", "--direct=1"]
        {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        let a = args("fio-libaio", RawWorkload::parse("randwrite-qd1").unwrap(), 5, 4096, 1 << 20, "/dev/x").unwrap();
        assert!(a.contains(&"--ioengine=libaio".into()) && a.contains(&"--rw=randwrite".into()));
        assert!(!a.contains(&"--hipri".into()));
        assert!(args("fio-spdk", w, 1, 4096, 1, "/dev/x").unwrap_err().to_string().contains("fio-spdk"));
        assert!(args("fio-libaio", w, 0, 4096, 1, "/dev/x").is_err());
    }

    #[test]
    fn reads_the_json_into_a_row() {
        let w = RawWorkload::parse("randread-qd32").unwrap();
        let r = row(OUT, "linux-guest", "fio-io_uring", w, 4096).unwrap();
        assert_eq!((r.engine.as_str(), r.workload.as_str(), r.ops), ("fio-io_uring", "randread-qd32", 2000));
        assert_eq!((r.ops_per_sec, r.p50_us, r.p99_us), (12346.0, 80.384, 301.056));
        // The write side of a read run did nothing: that is an error, named.
        let e = row(OUT, "linux-guest", "fio-io_uring", RawWorkload::parse("randwrite-qd1").unwrap(), 4096);
        assert!(e.unwrap_err().to_string().contains("no write I/O"));
        assert!(row("fio: engine not loadable", "s", "fio-libaio", w, 4096).is_err());
        let failed = OUT.replace("\"error\" : 0", "\"error\" : 5");
        assert!(row(&failed, "s", "fio-libaio", w, 4096).unwrap_err().to_string().contains("error 5"));
    }
}
