use super::*;

/// A plausible line of `medium`/`workload` with distinct numbers.
fn line(medium: &str, workload: &str, ops_per_sec: f64) -> FsLine {
    let nvme = medium == "nvme";
    FsLine {
        medium: medium.into(),
        workload: workload.into(),
        method: "fsync".into(),
        ops: ops_of(workload),
        bytes_per_op: fsw::bytes_per_op(workload).unwrap(),
        ops_per_sec,
        p50_us: 10.0,
        p99_us: 20.0,
        tsc_per_op: 30000.0,
        syscalls_per_op: Some(0.5),
        upcalls_per_op: Some(0.25),
        app_syscalls_per_op: if nvme { 4.0 } else { 0.0 },
        app_upcalls_per_op: 0.0,
        bytes_copied_per_op: if nvme { 4608.0 } else { 0.0 },
        writes_per_op: 2.0,
        bytes_written_per_op: 4608.0,
        flushes_per_op: 2.0,
        device_write_cmds_per_op: nvme.then_some(2.0),
        device_read_cmds_per_op: nvme.then_some(0.0),
        device_flushes_per_op: nvme.then_some(2.0),
        device_bytes_written_per_op: nvme.then_some(4608.0),
        lines_flushed_per_op: (!nvme).then_some(72.0),
        fences_per_op: (!nvme).then_some(2.0),
        commits: 200,
        checkpoints: 0,
        timer_ticks: Some(3),
        tsc_per_us: 1000,
    }
}

fn boot() -> String {
    let mut s = String::from("init: fsbench pmem ...\n");
    for m in MEDIA {
        for w in fsw::WORKLOADS {
            s.push_str(&format!("\r{}\n", line(m, w, 1000.0)));
        }
    }
    s.push_str("EXO-TEST-PASS fsbench_eval\n");
    s
}

fn linux(medium: &str, workload: &str, ops_per_sec: f64, device_bytes: Option<f64>) -> Row {
    linux_row(Row {
        system: "linux-guest".into(),
        engine: "fs".into(),
        medium: medium.into(),
        workload: workload.into(),
        value_bytes: fsw::bytes_per_op(workload).unwrap(),
        ops_per_sec,
        device_bytes_written_per_op: device_bytes,
        guest_instructions_per_op: Some(60000.0),
        ..Row::default()
    })
}

#[test]
fn a_boot_gives_one_line_per_medium_and_workload() {
    let lines = parse_boot(&boot()).unwrap();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[0], line("pmem", "append-fsync", 1000.0));
    let i = instructions(&lines);
    assert_eq!(i[&("nvme".to_string(), "seq-read".to_string())], 30000.0);
}

#[test]
fn bad_boots_are_named() {
    let b = boot();
    let dup = format!("{b}{}\n", line("nvme", "meta-mix", 1.0));
    assert_eq!(
        parse_boot(&dup).unwrap_err(),
        FsBootError::Count { medium: "nvme".into(), workload: "meta-mix".into(), found: 2 }
    );
    let missing: String = b.lines().filter(|l| !l.contains("workload=seq-read")).map(|l| format!("{l}\n")).collect();
    assert!(parse_boot(&missing).unwrap_err().to_string().contains("seq-read on pmem 0 times"));
    let bad = b.replacen("ops_per_sec=1000.000", "ops_per_sec=lots", 1);
    assert!(matches!(parse_boot(&bad).unwrap_err(), FsBootError::BadLine { .. }));
    let unknown = b.replacen("workload=meta-mix", "workload=fsck", 1);
    assert!(matches!(parse_boot(&unknown).unwrap_err(), FsBootError::Unknown { .. }));
}

#[test]
fn linux_runs_pair_every_workload_on_both_media_with_a_baseline() {
    let (runs, pairs) = linux_runs();
    assert_eq!(pairs.len(), 10);
    for p in &pairs {
        let (m, b) = (&runs[p.measured], &runs[p.baseline]);
        assert_eq!((b.ops, m.ops > 1), (1, true));
        assert_eq!(Run { ops: m.ops, ..b.clone() }, *m);
        assert_eq!(m.durability, linux_method(&m.workload, &m.medium).unwrap());
    }
    let seq = runs.iter().find(|r| r.workload == "seq-read" && r.ops > 1).unwrap();
    // The whole file, in 64 KiB reads.
    assert_eq!(seq.ops * fsw::READ_CHUNK_BYTES, SEQ_MIB << 20);
    assert!(seq.plan_line().contains("--engine fs --workload seq-read --value-bytes 65536 --durability none"));
    assert_eq!(linux_method("mmap-overwrite", "pmem"), Some("persist"));
    assert_eq!(linux_method("mmap-overwrite", "nvme"), Some("msync"));
    assert_eq!(linux_method("tar", "nvme"), None);
}

#[test]
fn rows_carry_the_lines_counts_and_the_systems_names() {
    let l = line("nvme", "append-fsync", 900.0);
    let r = exo_row(&l, Some(12345.0));
    assert_eq!((r.system.as_str(), r.engine.as_str(), r.durability.as_str()), ("exo", "libfs", "fsync"));
    assert_eq!(
        (r.value_bytes, r.device_bytes_written_per_op, r.guest_instructions_per_op),
        (4096, Some(4608.0), Some(12345.0))
    );
    assert_eq!(linux("pmem", "seq-read", 1.0, None).engine, "ext4-dax");
    assert_eq!(linux("nvme", "seq-read", 1.0, None).engine, "ext4");
}

#[test]
fn verdicts_check_each_target_and_say_when_a_number_is_missing() {
    let lines: Vec<FsLine> = MEDIA
        .iter()
        .flat_map(|m| fsw::WORKLOADS.iter().map(move |w| line(m, w, if *m == "pmem" { 6000.0 } else { 900.0 })))
        .collect();
    let mut rows: Vec<Row> = lines.iter().map(|l| exo_row(l, None)).collect();
    rows.push(linux("pmem", "append-fsync", 1000.0, None)); // 6x: met
    rows.push(linux("pmem", "create-small", 2500.0, None)); // 2.4x: not met
    rows.push(linux("nvme", "append-fsync", 500.0, Some(20480.0))); // 1.8x: not met
    let v = verdicts(&lines, &rows);
    assert_eq!(v.len(), 5);
    assert_eq!(
        v.iter().map(|v| v.met).collect::<Vec<_>>(),
        [Some(true), Some(true), Some(false), Some(true), Some(false)]
    );
    assert!(v[1].measured.starts_with("6.00x"), "{}", v[1].measured);
    assert!(v[3].measured.contains("4608 B (ext4: 20480 B)"), "{}", v[3].measured);
    // Upcalls no more than the timer ticks are preemption; a system call,
    // or an upcall beyond the ticks (a fault), fails the first target.
    let mut crossing = lines.clone();
    crossing[0].app_upcalls_per_op = 3.0 / 200.0;
    assert_eq!(verdicts(&crossing, &rows)[0].met, Some(true));
    crossing[0].app_upcalls_per_op = 4.0 / 200.0;
    assert_eq!(verdicts(&crossing, &rows)[0].met, Some(false));
    crossing[0].app_upcalls_per_op = 0.0;
    crossing[0].app_syscalls_per_op = 1.0 / 200.0;
    assert_eq!(verdicts(&crossing, &rows)[0].met, Some(false));
    crossing[0].app_syscalls_per_op = 0.0;
    crossing[0].timer_ticks = None;
    assert_eq!(verdicts(&crossing, &rows)[0].met, None);
    // No Linux row: not measured, never guessed.
    let exo_only: Vec<Row> = rows.iter().filter(|r| r.system == "exo").cloned().collect();
    assert_eq!(verdicts(&lines, &exo_only)[1].met, None);
    let md = summary(&lines, &rows, &BTreeMap::new(), &[(true, "ok".into())], &[], &[], &[]);
    assert!(
        md.contains("| pmem: append + fsync >= 5x ext4-DAX ops/s | 6.00x (6000 vs 1000 ops/s) | **yes** |"),
        "{md}"
    );
    assert!(md.contains("| nvme | append-fsync | exo libfs | fsync | 4 / 0.5 |"), "{md}");
    assert!(md.contains("| pmem | append-fsync | exo libfs | fsync | 0 / 0.5 | – | – | – | 72 + 2 |"), "{md}");
}

#[test]
fn plots_have_a_panel_per_medium_and_workload() {
    let rows = vec![
        exo_row(&line("pmem", "append-fsync", 10.0), None),
        linux("pmem", "append-fsync", 5.0, None),
        exo_row(&line("nvme", "append-fsync", 10.0), None),
    ];
    let p = plot_panels(&rows, |r| Some(r.ops_per_sec));
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].bars.len(), 2);
    assert!(p[0].title.ends_with(", pmem") && p[1].title.ends_with(", nvme"));
}

#[test]
fn the_device_check_wants_the_trace_to_cover_the_counted_commands() {
    let lines = vec![line("nvme", "append-fsync", 1.0), line("pmem", "append-fsync", 1.0)];
    // 200 ops x (2 writes, 2 flushes, 4608 bytes); pmem adds nothing.
    let mut t = crate::linux::qtrace::NvmeCounts {
        write_cmds: 400,
        flush_cmds: 400,
        read_cmds: 0,
        bytes_written: 921_600,
        ..Default::default()
    };
    assert!(device_check(&lines, &t).0);
    t.flush_cmds = 399;
    let (ok, why) = device_check(&lines, &t);
    assert!(!ok && why.contains("400 flushes"), "{why}");
}
