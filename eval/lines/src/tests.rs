use super::microbench::{Op, OpLine, TscLine};
use super::*;

/// Real lines from boots (kvdb on NVMe and on pmem, nvmed bench).
const DB_NVME: &str = "EXO-DB engine=libdb medium=nvme workload=commit value_bytes=100 durability=sync ops=200 ops_per_sec=1502.873 p50_us=636.267 p99_us=1428.177 tsc_per_op=1745989 syscalls_per_op=18.385 upcalls_per_op=18.450 kvdb_syscalls_per_op=3.680 kvdb_upcalls_per_op=3.690 yields_per_op=3.680 bytes_copied_per_op=512.000 bytes_written_per_op=512.000 flushes_per_op=1.000 writes_per_op=1.000 device_write_cmds_per_op=1.000 device_flushes_per_op=1.000 device_bytes_written_per_op=512.000 blockq_requests_per_op=2.000 lines_flushed_per_op=0.000 doorbells_per_op=2.000 checkpoints=0 tsc_per_us=2624";
const DB_PMEM: &str = "EXO-DB engine=libdb medium=pmem workload=commit value_bytes=100 durability=sync ops=200 ops_per_sec=24262.785 p50_us=7.995 p99_us=336.375 tsc_per_op=107490 syscalls_per_op=0.010 upcalls_per_op=0.015 kvdb_syscalls_per_op=0.000 kvdb_upcalls_per_op=0.005 yields_per_op=0.000 bytes_copied_per_op=0.000 bytes_written_per_op=152.000 flushes_per_op=1.000 writes_per_op=1.000 device_write_cmds_per_op=- device_flushes_per_op=- device_bytes_written_per_op=- blockq_requests_per_op=- lines_flushed_per_op=3.250 doorbells_per_op=- checkpoints=0 tsc_per_us=2608";
const BENCH: &str = "EXO-BENCH system=exo engine=nvme-raw workload=randread-qd1 ops=500 secs=0.074563 iops=6705 p50_us=95 p99_us=2153 doorbells_per_io=2.00 sq_doorbells=500 cq_doorbells=500 syscalls=14 upcalls=21 timer_ticks=7";

/// A line with a distinct value in every field, so a field read into
/// another's place shows.
fn db_line() -> DbLine {
    DbLine {
        medium: "nvme-vf".into(),
        workload: "batch24".into(),
        value_bytes: 4096,
        durability: "group8".into(),
        ops: 201,
        ops_per_sec: 1.5,
        p50_us: 2.25,
        p99_us: 3.125,
        tsc_per_op: 4000.0,
        syscalls_per_op: Some(5.5),
        upcalls_per_op: None,
        kvdb_syscalls_per_op: 6.75,
        kvdb_upcalls_per_op: 7.25,
        yields_per_op: 8.5,
        bytes_copied_per_op: 9.125,
        bytes_written_per_op: 10.5,
        flushes_per_op: 11.25,
        writes_per_op: 12.75,
        device_write_cmds_per_op: Some(13.5),
        device_flushes_per_op: None,
        device_bytes_written_per_op: Some(14.25),
        blockq_requests_per_op: Some(15.5),
        lines_flushed_per_op: 16.125,
        doorbells_per_op: Some(17.5),
        checkpoints: 18,
        tsc_per_us: 19,
    }
}

#[test]
fn db_lines_round_trip_every_field() {
    let l = db_line();
    let text = l.to_string();
    assert_eq!(DbLine::parse(&text), Ok(l.clone()));
    // Each field's own value appears once, under its own name.
    for (k, v) in [
        ("ops", "201"),
        ("tsc_per_op", "4000"),
        ("upcalls_per_op", "-"),
        ("lines_flushed_per_op", "16.125"),
        ("tsc_per_us", "19"),
    ] {
        assert!(text.contains(&format!(" {k}={v}")), "{k} in {text}");
    }
    // Every Option both ways.
    let mut all_none = l.clone();
    all_none.syscalls_per_op = None;
    all_none.device_write_cmds_per_op = None;
    all_none.device_bytes_written_per_op = None;
    all_none.blockq_requests_per_op = None;
    all_none.doorbells_per_op = None;
    assert_eq!(DbLine::parse(&all_none.to_string()), Ok(all_none));
}

#[test]
fn real_lines_print_back_byte_for_byte() {
    for real in [DB_NVME, DB_PMEM] {
        assert_eq!(DbLine::parse(real).unwrap().to_string(), real);
    }
    assert_eq!(BenchLine::parse(BENCH).unwrap().to_string(), BENCH);
    let p = DbLine::parse(DB_PMEM).unwrap();
    assert_eq!((p.device_flushes_per_op, p.lines_flushed_per_op, p.tsc_per_us), (None, 3.25, 2608));
}

#[test]
fn bench_lines_round_trip_every_field() {
    let l = BenchLine {
        workload: "randwrite-qd32".into(),
        ops: 2000,
        micros: 3_000_042,
        iops: 4,
        p50_us: 5,
        p99_us: 6,
        doorbells_per_io: 0.25,
        sq_doorbells: 8,
        cq_doorbells: 9,
        syscalls: 10,
        upcalls: 11,
        timer_ticks: 12,
    };
    let text = l.to_string();
    assert!(text.contains(" secs=3.000042 "), "{text}");
    assert_eq!(BenchLine::parse(&text), Ok(l.clone()));
    assert_eq!(l.secs(), 3.000042);
}

#[test]
fn malformed_lines_give_named_errors() {
    let e = |from: &str, to: &str| DbLine::parse(&DB_NVME.replacen(from, to, 1)).unwrap_err();
    assert_eq!(e(" tsc_per_us=2624", ""), LineError::MissingField { field: "tsc_per_us" });
    assert_eq!(e("ops=200", "ops=x"), LineError::BadNumber { field: "ops", value: "x".into() });
    assert_eq!(e("p50_us=636.267", "p50_us=-1"), LineError::BadNumber { field: "p50_us", value: "-1".into() });
    assert_eq!(e("p50_us=636.267", "p50_us=-"), LineError::BadNumber { field: "p50_us", value: "-".into() });
    assert_eq!(e("p50_us=636.267", "p50_us=inf"), LineError::BadNumber { field: "p50_us", value: "inf".into() });
    assert_eq!(e("engine=libdb", "engine=sqlite"), LineError::Unexpected { field: "engine", value: "sqlite".into() });
    assert_eq!(e(" checkpoints=0", " checkpoints"), LineError::Malformed { word: "checkpoints".into() });
    assert_eq!(e(" checkpoints=0", " checkpoints=0=1"), LineError::Malformed { word: "checkpoints=0=1".into() });
    assert_eq!(e(" checkpoints=0", " checkpoints=0 ops=3"), LineError::Duplicate { field: "ops".into() });
    assert_eq!(e(" checkpoints=0", " checkpoints=0 color=red"), LineError::UnknownField { field: "color".into() });
    assert_eq!(DbLine::parse("EXO-DBX engine=libdb"), Err(LineError::WrongPrefix { expected: "EXO-DB" }));
    assert_eq!(DbLine::parse(BENCH), Err(LineError::WrongPrefix { expected: "EXO-DB" }));
    let b = |from: &str, to: &str| BenchLine::parse(&BENCH.replacen(from, to, 1)).unwrap_err();
    assert_eq!(b("secs=0.074563", "secs=0.07456"), LineError::BadNumber { field: "secs", value: "0.07456".into() });
    assert_eq!(b("iops=6705", "iops=lots"), LineError::BadNumber { field: "iops", value: "lots".into() });
    assert_eq!(b("system=exo", "system=linux"), LineError::Unexpected { field: "system", value: "linux".into() });
    assert_eq!(b(" timer_ticks=7", ""), LineError::MissingField { field: "timer_ticks" });
    // The messages name the field.
    assert!(e(" tsc_per_us=2624", "").to_string().contains("`tsc_per_us=`"));
}

#[test]
fn microbench_lines_round_trip() {
    for (i, op) in Op::ALL.into_iter().enumerate() {
        let l = OpLine { op, ticks: 100 + i as u64 };
        let text = l.to_string();
        assert_eq!(OpLine::parse(&text, op), Ok(Some(l)));
        for other in Op::ALL.into_iter().filter(|o| *o != op) {
            assert_eq!(OpLine::parse(&text, other), Ok(None), "{text}");
        }
    }
    assert_eq!(
        OpLine { op: Op::NullSyscall, ticks: 1234 }.to_string(),
        "microbench: null system call (BadSyscall): 1234 ticks"
    );
    assert_eq!(TscLine::parse(&TscLine(2600).to_string()), Ok(Some(TscLine(2600))));
    assert_eq!(TscLine::parse("microbench: calibration: 1 ticks"), Ok(None));
    assert_eq!(
        OpLine::parse("microbench: map (move) one 4 KiB page: many ticks", Op::MapPage),
        Err(LineError::BadNumber { field: "ticks", value: "many ticks".into() })
    );
    assert_eq!(
        TscLine::parse("microbench: tsc ticks per microsecond ?"),
        Err(LineError::BadNumber { field: "tsc ticks per microsecond", value: "?".into() })
    );
}
