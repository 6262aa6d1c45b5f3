//! The `--recovery` measurement's logic (`cargo xtask eval --recovery`
//! builds the media, boots the machine and calls these): how long `open`
//! takes after a power cut, as a function of the database's size and its
//! log tail, on NVMe (through the block service) and on persistent memory.
//! Method: eval/RECOVERY.md. The database and the `EXO-RECOVERY` line are
//! `eval_lines::recovery`'s.
//!
//! Each (medium, size, tail) point comes from two boots on the same
//! medium: one under `-icount shift=0`, whose TSC advances one tick per
//! guest instruction (instructions), one plain TCG boot whose ticks the
//! kernel's calibrated rate turns into time (TCG time).

use crate::results::{csv_text, format_number};
use anyhow::{bail, ensure, Result};
use eval_lines::recovery::{sample_keys, RecoveryLine, Tail};
use std::fmt::Write as _;
use std::path::Path;

/// Database sizes (MiB of tree) of a full run, and of `--quick`.
pub const SIZES_MIB: [u64; 5] = [1, 16, 128, 512, 1024];
pub const QUICK_SIZES_MIB: [u64; 2] = [16, 1024];
pub const MEDIA: [&str; 2] = ["nvme", "pmem"];
/// The target (issue #12): a 1 GiB database with a full log opens in
/// under this many ms of TCG time, whatever its size.
pub const TARGET_MS: f64 = 50.0;
pub const TARGET_SIZE_MIB: u64 = 1024;

pub fn sizes(quick: bool) -> &'static [u64] {
    if quick {
        &QUICK_SIZES_MIB
    } else {
        &SIZES_MIB
    }
}

/// One measured point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub medium: String,
    pub size_mib: u64,
    pub tail: Tail,
    /// The plain TCG boot's line (time).
    pub timed: RecoveryLine,
    /// The `-icount shift=0` boot's line (instructions = its TSC ticks).
    pub counted: RecoveryLine,
}

impl Point {
    pub fn tcg_ms(&self) -> f64 {
        self.timed.open_us() / 1000.0
    }
    pub fn instructions(&self) -> u64 {
        self.counted.open_tsc
    }
    /// The database's bytes on the medium (tree, log and metas).
    pub fn db_mib(&self) -> f64 {
        self.timed.db_pages as f64 * 4096.0 / (1 << 20) as f64
    }
}

/// The one `EXO-RECOVERY` line of a boot, checked against what the host
/// built: the medium, the key count, the tail replayed in full and every
/// sample key checked. Anything else (no line, two lines, another
/// database) is an error naming what differs.
pub fn parse_boot(serial: &str, medium: &str, keys: u64, tail_records: u64) -> Result<RecoveryLine> {
    let mut found = vec![];
    for l in serial.lines().map(str::trim).filter(|l| l.starts_with(RecoveryLine::PREFIX)) {
        found.push(RecoveryLine::parse(l).map_err(|e| anyhow::anyhow!("{l:?}: {e}"))?);
    }
    let l = match found.len() {
        1 => found.remove(0),
        0 => bail!("the boot printed no `{} ` line (did kvdb recover?)", RecoveryLine::PREFIX),
        n => bail!("the boot printed {n} `{} ` lines, expected one", RecoveryLine::PREFIX),
    };
    ensure!(l.medium == medium, "the line is for medium {}, expected {medium}", l.medium);
    ensure!(l.keys == keys, "kvdb recovered {} keys, the host built {keys}", l.keys);
    ensure!(
        l.tail_records == tail_records && l.replayed_records == tail_records,
        "kvdb expected {} and replayed {} log records, the host committed {tail_records}",
        l.tail_records,
        l.replayed_records
    );
    let want = sample_keys(keys).len() as u64;
    ensure!(l.checked_keys == want, "kvdb checked {} keys, expected {want}", l.checked_keys);
    ensure!(l.tsc_per_us > 0, "the line has no TSC rate");
    Ok(l)
}

pub const CSV_COLUMNS: [&str; 19] = [
    "medium",
    "size_mib",
    "tail",
    "keys",
    "tail_records",
    "db_mib",
    "tcg_ms",
    "instructions",
    "storage_reads",
    "storage_bytes_read",
    "storage_writes",
    "storage_barriers",
    "device_read_cmds",
    "device_bytes_read",
    "device_write_cmds",
    "device_flushes",
    "erased_records",
    "kvdb_syscalls",
    "tsc_per_us",
];

fn opt(v: Option<u64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

pub fn csv(points: &[Point]) -> String {
    csv_text(
        Some(&CSV_COLUMNS),
        points.iter().map(|p| {
            let t = &p.timed;
            vec![
                p.medium.clone(),
                p.size_mib.to_string(),
                p.tail.name().to_string(),
                t.keys.to_string(),
                t.tail_records.to_string(),
                format!("{:.1}", p.db_mib()),
                format!("{:.3}", p.tcg_ms()),
                p.instructions().to_string(),
                t.storage_reads.to_string(),
                t.storage_bytes_read.to_string(),
                t.storage_writes.to_string(),
                t.storage_barriers.to_string(),
                opt(t.device_read_cmds),
                opt(t.device_bytes_read),
                opt(t.device_write_cmds),
                opt(t.device_flushes),
                t.erased_records.to_string(),
                t.kvdb_syscalls.to_string(),
                t.tsc_per_us.to_string(),
            ]
        }),
    )
}

/// Largest over smallest of `f` across sizes for one medium and tail: 1.0
/// = independent of the database's size.
pub fn size_spread(points: &[Point], medium: &str, tail: Tail, f: fn(&Point) -> f64) -> Option<(f64, f64, f64)> {
    let v: Vec<f64> = points.iter().filter(|p| p.medium == medium && p.tail == tail).map(f).collect();
    let (lo, hi) = v.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    (!v.is_empty() && lo > 0.0).then_some((lo, hi, hi / lo))
}

/// The target's verdict per medium: the 1 GiB full-log point's TCG ms.
pub fn target(points: &[Point], medium: &str) -> Option<(f64, bool)> {
    points
        .iter()
        .find(|p| p.medium == medium && p.size_mib == TARGET_SIZE_MIB && p.tail == Tail::Full)
        .map(|p| (p.tcg_ms(), p.tcg_ms() < TARGET_MS))
}

fn kib(b: u64) -> String {
    format_number((b as f64 / 1024.0 * 10.0).round() / 10.0)
}

pub fn markdown(points: &[Point], env: &[(String, String)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Recovery time: `open` after a power cut, by database size and log tail\n");
    let _ = writeln!(
        s,
        "Produced by `cargo xtask eval --recovery` (method and caveats: eval/RECOVERY.md). Each row: a libdb database of about `size` MiB of tree (4,000-byte values, one overflow page each) plus libdb's default 8 MiB log, built on the host on an image of the medium, checkpointed, then `tail` sync commits of 100-byte values, then cut without a close. kvdb on the exokernel times `Db::open` (metas, freelist, log replay, the check of the log beyond the replayed prefix), then checks the key count, the records replayed and the values of its sample keys (64 spread over the key space, the last, 64 the tail overwrote). `instructions`: a boot under `-icount shift=0` (TSC = guest instructions, machine-wide: kvdb and the NVMe driver); `TCG ms`: a plain TCG boot, TSC ticks / the kernel's calibrated rate. Reads are libdb's (`storage`) and the block service's (`device`, NVMe only); KiB = 1,024 bytes.\n"
    );
    s += "## Target\n\n";
    for m in MEDIA {
        match target(points, m) {
            Some((ms, ok)) => {
                let _ = writeln!(
                    s,
                    "- {m}: 1 GiB database, full log: {} ms of TCG time — {} (target < {TARGET_MS} ms)",
                    format_number((ms * 1000.0).round() / 1000.0),
                    if ok { "**met**" } else { "**not met**" }
                );
            }
            None => {
                let _ = writeln!(s, "- {m}: no 1 GiB full-log point in this run");
            }
        }
    }
    s += "\n## Does the cost depend on the database's size?\n\n";
    s += "Largest / smallest over the sizes of the run, per medium and tail (1.00 = independent of size).\n\n";
    s += "| medium | tail | TCG ms (min – max) | ratio | instructions (min – max) | ratio |\n|---|---|---|---:|---|---:|\n";
    for m in MEDIA {
        for t in Tail::ALL {
            let (Some(ms), Some(ins)) =
                (size_spread(points, m, t, Point::tcg_ms), size_spread(points, m, t, |p| p.instructions() as f64))
            else {
                continue;
            };
            let _ = writeln!(
                s,
                "| {m} | {} | {:.2} – {:.2} | {:.2} | {} – {} | {:.2} |",
                t.name(),
                ms.0,
                ms.1,
                ms.2,
                format_number(ins.0),
                format_number(ins.1),
                ins.2
            );
        }
    }
    for m in MEDIA {
        let rows: Vec<&Point> = points.iter().filter(|p| p.medium == m).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n## {m}\n");
        s += "| size MiB | tail | tail records | db MiB | TCG ms | instructions | storage reads | storage KiB read | device reads | device KiB read | writes / barriers | erased records |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n";
        for p in rows {
            let t = &p.timed;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} / {} | {} |",
                p.size_mib,
                p.tail.name(),
                t.tail_records,
                p.db_mib(),
                p.tcg_ms(),
                format_number(p.instructions() as f64),
                t.storage_reads,
                kib(t.storage_bytes_read),
                t.device_read_cmds.map_or("–".into(), |v| v.to_string()),
                t.device_bytes_read.map_or("–".into(), kib),
                t.storage_writes,
                t.storage_barriers,
                t.erased_records
            );
        }
    }
    s += "\n## Environment\n\n";
    for (k, v) in env {
        let _ = writeln!(s, "- {k}: {v}");
    }
    s
}

/// One line of the plot: (size MiB, value) per size.
pub fn series(points: &[Point], f: fn(&Point) -> f64) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out = vec![];
    for m in MEDIA {
        for t in Tail::ALL {
            let pts: Vec<(f64, f64)> =
                points.iter().filter(|p| p.medium == m && p.tail == t).map(|p| (p.size_mib as f64, f(p))).collect();
            if !pts.is_empty() {
                out.push((format!("{m}, {} tail", t.name()), pts));
            }
        }
    }
    out
}

/// recovery.svg: TCG ms and guest instructions against the size, one line
/// per medium and tail, with the target drawn in.
pub fn plot(points: &[Point], path: &Path) -> Result<(), String> {
    crate::plot::write_line_charts_svg(
        path,
        "libdb recovery (open after a power cut) vs database size",
        "database size, MiB (log scale)",
        &[
            ("TCG time of open, ms", series(points, Point::tcg_ms), Some(TARGET_MS)),
            ("guest instructions of open, millions", series(points, |p| p.instructions() as f64 / 1e6), None),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(medium: &str, keys: u64, tail: u64, tsc: u64) -> RecoveryLine {
        RecoveryLine {
            medium: medium.into(),
            keys,
            tail_records: tail,
            db_pages: keys + 2100,
            open_tsc: tsc,
            tsc_per_us: 1000,
            replayed_records: tail,
            storage_reads: 10,
            storage_bytes_read: 8 << 20,
            storage_barriers: 1,
            device_read_cmds: (medium == "nvme").then_some(130),
            device_bytes_read: (medium == "nvme").then_some(8 << 20),
            device_write_cmds: (medium == "nvme").then_some(0),
            device_flushes: (medium == "nvme").then_some(1),
            checked_keys: sample_keys(keys).len() as u64,
            ..RecoveryLine::default()
        }
    }

    fn boot(l: &RecoveryLine) -> String {
        format!("init: kvdb nvme recover\n{l}\nkvdb: recovered ...\nTEST PASS recovery_nvme\n")
    }

    #[test]
    fn a_boot_must_show_the_database_the_host_built() {
        let l = line("nvme", 4032, 8128, 5_000_000);
        assert_eq!(parse_boot(&boot(&l), "nvme", 4032, 8128).unwrap(), l);
        let err = |s: &str, m: &str, k: u64, t: u64| format!("{:#}", parse_boot(s, m, k, t).unwrap_err());
        assert!(err("TEST PASS\n", "nvme", 4032, 8128).contains("no `EXO-RECOVERY "));
        assert!(err(&format!("{l}\n{l}\n"), "nvme", 4032, 8128).contains("2 `EXO-RECOVERY"));
        assert!(err(&boot(&l), "pmem", 4032, 8128).contains("medium nvme, expected pmem"));
        assert!(err(&boot(&l), "nvme", 4033, 8128).contains("recovered 4032 keys, the host built 4033"));
        assert!(err(&boot(&l), "nvme", 4032, 8000).contains("the host committed 8000"));
        let short = RecoveryLine { replayed_records: 8127, ..l.clone() };
        assert!(err(&boot(&short), "nvme", 4032, 8128).contains("replayed 8127"));
        let unchecked = RecoveryLine { checked_keys: 3, ..l.clone() };
        assert!(err(&boot(&unchecked), "nvme", 4032, 8128).contains("checked 3 keys"));
        assert!(err("EXO-RECOVERY medium=nvme\n", "nvme", 1, 1).contains("EXO-RECOVERY medium=nvme"));
    }

    fn points() -> Vec<Point> {
        let mut v = vec![];
        for (m, base) in [("nvme", 9_000_000u64), ("pmem", 2_000_000)] {
            for size in [16u64, 1024] {
                for (t, tail, extra) in [(Tail::Empty, 0, 0u64), (Tail::Full, 16256, 60_000_000)] {
                    let keys = size * 252;
                    // TCG: 2 ticks per instruction-equivalent, plus 1 % per size step.
                    let ins = base + extra + size;
                    let timed = RecoveryLine { open_tsc: 2 * ins, tsc_per_us: 2000, ..line(m, keys, tail, 0) };
                    v.push(Point {
                        medium: m.into(),
                        size_mib: size,
                        tail: t,
                        timed,
                        counted: line(m, keys, tail, ins),
                    });
                }
            }
        }
        v
    }

    #[test]
    fn report_tables_target_and_spread() {
        let p = points();
        assert!((p[0].tcg_ms() - 9.000016).abs() < 1e-9);
        let (ms, ok) = target(&p, "nvme").unwrap();
        assert!((ms - 69.001024).abs() < 1e-9 && !ok);
        assert!(!target(&p, "pmem").unwrap().1);
        let (lo, hi, r) = size_spread(&p, "pmem", Tail::Empty, Point::tcg_ms).unwrap();
        assert!((lo - 2.000016).abs() < 1e-9 && (hi - 2.001024).abs() < 1e-9 && r > 1.0 && r < 1.001);
        assert!(size_spread(&p, "pmem", Tail::Half, Point::tcg_ms).is_none());
        let md = markdown(&p, &[("qemu".into(), "7.2".into())]);
        assert!(md.contains("- nvme: 1 GiB database, full log: 69.001 ms of TCG time — **not met**"), "{md}");
        assert!(md.contains("| nvme | empty | 9.00 – 9.00 | 1.00 | 9000016 – 9001024 | 1.00 |"), "{md}");
        assert!(md.contains("| 1024 | full | 16256 |"), "{md}");
        assert!(md.contains("| 8192 | 130 | 8192 | 0 / 1 |"), "{md}");
        assert!(md.contains("| – | – |"), "pmem has no device reads: {md}");
        assert!(md.contains("- qemu: 7.2"));
        let c = csv(&p);
        let mut lines = c.lines();
        assert_eq!(lines.next().unwrap(), CSV_COLUMNS.join(","));
        assert_eq!(
            lines.next().unwrap(),
            "nvme,16,empty,4032,0,24.0,9.000,9000016,10,8388608,0,1,130,8388608,0,1,0,0,2000"
        );
        assert!(c.lines().any(|l| l.starts_with("pmem,1024,full,258048,16256,") && l.contains(",,,,")), "{c}");
        let s = series(&p, Point::tcg_ms);
        assert_eq!(s.len(), 4);
        assert_eq!(s[1].0, "nvme, full tail");
        assert_eq!(s[1].1.len(), 2);
    }

    #[test]
    fn writes_the_plot() {
        let path = std::env::temp_dir().join(format!("recovery-plot-{}.svg", std::process::id()));
        plot(&points(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.contains("libdb recovery"));
        assert!(svg.contains("nvme, full tail") && svg.contains("pmem, empty tail"));
        assert!(svg.contains("target 50 ms"));
    }
}
