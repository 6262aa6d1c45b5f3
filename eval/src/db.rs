//! The `--db` comparison's logic (`cargo xtask eval --db` boots the
//! machines and calls these): libdb running *on* the exokernel (`kvdb`)
//! beside Linux running SQLite, LMDB, redb and libdb on the same emulated
//! machine. Reads kvdb's `EXO-DB` lines ([`eval_lines::DbLine`]) into
//! result [`Row`]s, checks them against QEMU's NVMe trace, picks the median
//! round, and writes db.md. eval/DB.md explains the method.

use crate::linux::qtrace;
use crate::matrix::Entry;
use crate::results::{format_number, Row};
use crate::workload::{Durability, Workload};
use eval_lines::{DbLine, LineError};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

/// Operations in each of kvdb's `commit` phases (its `COMMIT_OPS`).
pub const COMMIT_OPS: u64 = 200;
/// kvdb's commit value size.
pub const VALUE_BYTES: u64 = 100;
/// `file-nvme` / `file-pmem`: the database as a libfs file on the same
/// media (kvdb with libfs linked in; `libdb_on_libfs`).
pub const MEDIA: [&str; 5] = ["nvme", "nvme-vf", "pmem", "file-nvme", "file-pmem"];

/// The QEMU test whose first boot is `medium`'s `create` run.
pub fn create_test(medium: &str) -> &'static str {
    match medium {
        "nvme-vf" => "libdb_vf_create",
        "pmem" => "libdb_pmem_create",
        // One boot creates the file on both media (pmem first).
        "file-nvme" | "file-pmem" => "libdb_on_libfs_create",
        _ => "libdb_nvme_create",
    }
}

/// The Linux medium an exo medium is compared with: Linux has no VF of
/// its own here, so `nvme-vf` stands beside Linux's NVMe rows; the file
/// media beside the medium the file is on.
pub fn linux_medium(medium: &str) -> &str {
    match medium {
        "nvme-vf" | "file-nvme" => "nvme",
        "file-pmem" => "pmem",
        m => m,
    }
}

/// What db.md says about an exo medium that is not plainly Linux's.
pub fn medium_note(medium: &str) -> Option<String> {
    let lm = linux_medium(medium);
    match medium {
        "nvme-vf" => Some(format!(
            "exo: kvdb drives its own NVMe virtual function (the driver linked in, no driver process, on the SR-IOV machine variant); \
             linux-guest has no VF row: its rows here are its {lm} rows (the PF, through its kernel driver)."
        )),
        "file-nvme" | "file-pmem" => Some(format!(
            "exo: the database is a libfs file (`/db/kvdb.db`, libfs linked into kvdb, extents taken once at open: no libfs \
             code on the commit path) on the {lm} medium; compare with the exo {lm} rows for what the file costs. \
             linux-guest rows: its {lm} rows (its engines use files on ext4{} too).",
            if lm == "pmem" { "-DAX" } else { "" }
        )),
        _ => None,
    }
}
/// The phases every `create` boot must report: (workload, durability).
pub const PHASES: [(&str, &str); 4] =
    [("commit", "sync"), ("commit", "group8"), ("commit", "async"), ("batch24", "sync")];
/// The Linux engines beside exo's libdb.
pub const LINUX_ENGINES: [&str; 4] = ["sqlite", "lmdb", "redb", "libdb"];

/// Rounds of exo boots (per medium).
pub fn rounds(quick: bool) -> usize {
    if quick {
        3
    } else {
        5
    }
}

/// What was wrong with an `EXO-DB` line or a boot's set of them.
#[derive(Debug, Clone, PartialEq)]
pub enum DbLineError {
    /// A field the row needs is absent.
    MissingField { field: &'static str, line: String },
    /// A numeric field is not a finite, non-negative number (or `-` where
    /// the field must be present).
    BadNumber { field: &'static str, value: String, line: String },
    /// A word without `=`, a field given twice, or one EXO-DB lines do
    /// not have.
    Malformed { word: String, line: String },
    /// The line is not libdb's, or is for another medium than the boot's.
    Unexpected { what: String, line: String },
    /// A boot printed no line for a phase.
    MissingPhase { medium: String, workload: String, durability: String },
    /// A boot printed two lines for one phase.
    DuplicatePhase { medium: String, workload: String, durability: String },
}

impl fmt::Display for DbLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingField { field, line } => {
                write!(f, "EXO-DB line has no `{field}=`: {line:?}")
            }
            Self::BadNumber { field, value, line } => {
                write!(f, "EXO-DB field `{field}={value}` is not a non-negative number: {line:?}")
            }
            Self::Malformed { word, line } => write!(f, "EXO-DB word `{word}` is not a single key=value: {line:?}"),
            Self::Unexpected { what, line } => write!(f, "EXO-DB line {what}: {line:?}"),
            Self::MissingPhase { medium, workload, durability } => {
                write!(f, "no EXO-DB line for {workload} {durability} on {medium}")
            }
            Self::DuplicatePhase { medium, workload, durability } => {
                write!(f, "two EXO-DB lines for {workload} {durability} on {medium}")
            }
        }
    }
}

impl std::error::Error for DbLineError {}

impl DbLineError {
    /// The error of the line format, with the line.
    fn from_line(e: LineError, line: &str) -> Self {
        let line = line.to_string();
        match e {
            LineError::MissingField { field } => Self::MissingField { field, line },
            LineError::BadNumber { field, value } => Self::BadNumber { field, value, line },
            LineError::Malformed { word }
            | LineError::Duplicate { field: word }
            | LineError::UnknownField { field: word } => Self::Malformed { word, line },
            e @ (LineError::WrongPrefix { .. } | LineError::Unexpected { .. }) => {
                Self::Unexpected { what: e.to_string(), line }
            }
        }
    }
}

/// Parse one `EXO-DB key=value ...` line ([`DbLine::parse`]) and check
/// what the comparison needs: at least one op, and the machine-wide
/// kernel counts (kvdb prints `-` for them only if init did not share the
/// kernel's info page).
pub fn parse_line(line: &str) -> Result<DbLine, DbLineError> {
    let line = line.trim();
    let l = DbLine::parse(line).map_err(|e| DbLineError::from_line(e, line))?;
    let bad =
        |field: &'static str, value: &str| DbLineError::BadNumber { field, value: value.into(), line: line.into() };
    if l.ops == 0 {
        return Err(bad("ops", "0"));
    }
    if l.syscalls_per_op.is_none() {
        return Err(bad("syscalls_per_op", "-"));
    }
    if l.upcalls_per_op.is_none() {
        return Err(bad("upcalls_per_op", "-"));
    }
    Ok(l)
}

/// Every `EXO-DB` line of one `create` boot on `medium`: exactly one per
/// entry of [`PHASES`], in the boot's order.
pub fn parse_boot(serial: &str, medium: &str) -> Result<Vec<DbLine>, DbLineError> {
    let mut out: Vec<DbLine> = vec![];
    for raw in serial.lines().map(str::trim).filter(|l| l.starts_with("EXO-DB ")) {
        let l = parse_line(raw)?;
        if l.medium != medium && MEDIA.contains(&l.medium.as_str()) && create_test(&l.medium) == create_test(medium) {
            // Another medium of the same boot (`libdb_on_libfs_create`
            // runs both file media): its own boot reads it.
            continue;
        }
        if l.medium != medium {
            return Err(DbLineError::Unexpected {
                what: format!("is for medium `{}` in a {medium} boot", l.medium),
                line: raw.into(),
            });
        }
        if out.iter().any(|o| o.workload == l.workload && o.durability == l.durability) {
            return Err(DbLineError::DuplicatePhase {
                medium: medium.into(),
                workload: l.workload,
                durability: l.durability,
            });
        }
        out.push(l);
    }
    for (w, d) in PHASES {
        if !out.iter().any(|l| l.workload == w && l.durability == d) {
            return Err(DbLineError::MissingPhase { medium: medium.into(), workload: w.into(), durability: d.into() });
        }
    }
    Ok(out)
}

/// The exo result row of a phase. `syscalls_per_op` is the machine-wide
/// count (kvdb's own stays in the [`DbLine`], shown in db.md).
pub fn exo_row(l: &DbLine, instructions_per_op: Option<f64>) -> Row {
    Row {
        system: "exo".into(),
        engine: "libdb".into(),
        medium: l.medium.clone(),
        workload: l.workload.clone(),
        value_bytes: l.value_bytes,
        durability: l.durability.clone(),
        ops: l.ops,
        ops_per_sec: l.ops_per_sec,
        p50_us: l.p50_us,
        p99_us: l.p99_us,
        syscalls_per_op: l.syscalls_per_op,
        bytes_copied_per_op: Some(l.bytes_copied_per_op),
        bytes_written_per_op: Some(l.bytes_written_per_op),
        flushes_per_op: Some(l.flushes_per_op),
        device_write_cmds_per_op: l.device_write_cmds_per_op,
        device_flushes_per_op: l.device_flushes_per_op,
        device_bytes_written_per_op: l.device_bytes_written_per_op,
        guest_instructions_per_op: instructions_per_op,
    }
}

/// Guest instructions per op from an `-icount shift=0` boot's lines, by
/// (workload, durability). Under icount QEMU's guest TSC reads the virtual
/// clock, which advances 1 ns per executed instruction at shift 0 (and
/// skips ahead only while every vCPU is halted; the exokernel never halts
/// while kvdb runs: the driver polls and init schedules). So TSC ticks per
/// op are instructions per op, machine-wide.
pub fn instructions(lines: &[DbLine]) -> BTreeMap<(String, String), f64> {
    lines.iter().map(|l| ((l.workload.clone(), l.durability.clone()), l.tsc_per_op)).collect()
}

/// Per (workload, durability): the median instructions per op over the
/// icount boots (the lower middle of an even count) and every boot's
/// value, sorted. A phase missing from some boot takes the median of the
/// boots that have it.
pub fn median_instructions(boots: &[BTreeMap<(String, String), f64>]) -> BTreeMap<(String, String), (f64, Vec<f64>)> {
    let mut all: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for b in boots {
        for (k, v) in b {
            all.entry(k.clone()).or_default().push(*v);
        }
    }
    all.into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            (k, (v[(v.len() - 1) / 2], v))
        })
        .collect()
}

/// Does QEMU's trace of a whole NVMe boot show at least the device
/// commands kvdb counted over its phases? (The trace also sees database
/// creation, the marker, checkpoints at the end, so it may show more.)
pub fn device_check(lines: &[DbLine], trace: &qtrace::NvmeCounts) -> (bool, String) {
    let total = |f: fn(&DbLine) -> Option<f64>| {
        lines.iter().map(|l| (f(l).unwrap_or(0.0) * l.ops as f64).round() as u64).sum::<u64>()
    };
    let (w, fl, b) = (
        total(|l| l.device_write_cmds_per_op),
        total(|l| l.device_flushes_per_op),
        total(|l| l.device_bytes_written_per_op),
    );
    let ok = trace.write_cmds >= w && trace.flush_cmds >= fl && trace.bytes_written >= b;
    (
        ok,
        format!(
            "kvdb counted {w} NVMe writes, {fl} flushes, {b} bytes over its measured phases; QEMU traced {} writes, {} flushes, {} bytes over the whole boot (must be >=; outside the phases: {} writes, {} flushes, {} bytes)",
            trace.write_cmds,
            trace.flush_cmds,
            trace.bytes_written,
            trace.write_cmds as i64 - w as i64,
            trace.flush_cmds as i64 - fl as i64,
            trace.bytes_written as i64 - b as i64
        ),
    )
}

/// The Linux guest's entries: `commit` in the three durabilities, 100 B
/// values, kvdb's 200 operations over 200 preloaded keys, every engine.
pub fn linux_entries() -> Vec<Entry> {
    let mut out = vec![];
    for engine in LINUX_ENGINES {
        for durability in [Durability::Sync, Durability::Group(8), Durability::Async] {
            out.push(Entry {
                engine: engine.into(),
                workload: Workload::Commit,
                value_bytes: VALUE_BYTES,
                durability,
                ops: COMMIT_OPS,
                keys: COMMIT_OPS,
            });
        }
    }
    out
}

/// What identifies a row across rounds.
type RowKey = (String, String, String, String, String);

fn key(r: &Row) -> RowKey {
    (r.system.clone(), r.engine.clone(), r.medium.clone(), r.workload.clone(), r.durability.clone())
}

/// Every round's rows (exo rows with their `EXO-DB` line, Linux rows with
/// `None`) -> the median round's row per key, whole: (exo rows, their
/// lines, Linux rows, every round's ops/s per key).
#[allow(clippy::type_complexity)]
pub fn median_rows(
    rounds: &[(Vec<Row>, Vec<Option<DbLine>>)],
) -> (Vec<Row>, Vec<DbLine>, Vec<Row>, BTreeMap<RowKey, Vec<f64>>) {
    let ((all, extras), rates) = crate::rounds::pick_median(rounds, key);
    let (mut exo, mut lines, mut linux) = (vec![], vec![], vec![]);
    for (r, x) in all.into_iter().zip(extras) {
        match x {
            Some(l) => {
                exo.push(r);
                lines.push(l);
            }
            None => linux.push(r),
        }
    }
    (exo, lines, linux, rates)
}

fn find<'a>(rows: &'a [Row], system: &str, engine: &str, medium: &str, durability: &str) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.system == system
            && r.engine == engine
            && r.medium == medium
            && r.workload == "commit"
            && r.durability == durability
    })
}

const DURABILITIES: [&str; 3] = ["sync", "group8", "async"];

fn n(v: Option<f64>) -> String {
    v.map(format_number).unwrap_or_else(|| "–".into())
}

/// `a / b` as "1.23×", or "–" when either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

/// One line per (medium, durability): exo libdb against each Linux engine.
pub fn headline(exo: &[Row], linux: &[Row], medium: &str) -> Vec<String> {
    let mut out = vec![];
    for d in DURABILITIES {
        let Some(e) = find(exo, "exo", "libdb", medium, d) else {
            continue;
        };
        let others: Vec<String> = LINUX_ENGINES
            .iter()
            .filter_map(|eng| {
                find(linux, "linux-guest", eng, linux_medium(medium), d).map(|l| {
                    format!("{eng} {:.0} ({})", l.ops_per_sec, ratio(Some(e.ops_per_sec), Some(l.ops_per_sec)))
                })
            })
            .collect();
        let on = if linux_medium(medium) == medium { String::new() } else { format!(" (on {})", linux_medium(medium)) };
        out.push(format!(
            "{medium} commit {d}: exo libdb {:.0} commits/s; linux-guest{on} {}",
            e.ops_per_sec,
            others.join(", ")
        ));
    }
    out
}

/// The Linux media a medium family's rows may come from: NVMe with ext4,
/// or libdb on the raw block device; pmem with ext4-DAX, or libdb on the
/// NVDIMM as device-DAX (`crate::rawmedia`).
fn linux_family(medium: &str) -> Vec<&'static str> {
    if linux_medium(medium) == "nvme" {
        let mut v = vec!["nvme"];
        v.extend(crate::rawmedia::RAW_MEDIA.iter().map(|m| m.0));
        v
    } else {
        vec!["pmem", crate::rawmedia::PMEM_RAW]
    }
}

/// The raw (no file system) Linux media of `medium`'s family.
fn raw_family(medium: &str) -> Vec<&'static str> {
    linux_family(medium).into_iter().filter(|m| crate::rawmedia::without_fs(m)).collect()
}

/// Linux's fastest row (commits/s) for `durability` on the media of
/// `medium`'s family, every engine, file system or raw.
pub fn best_linux<'a>(linux: &'a [Row], medium: &str, durability: &str) -> Option<&'a Row> {
    let fam = linux_family(medium);
    linux
        .iter()
        .filter(|r| {
            r.system == "linux-guest"
                && r.workload == "commit"
                && r.durability == durability
                && fam.contains(&r.medium.as_str())
        })
        .max_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec))
}

/// One line per (medium, durability): exo libdb against Linux's best row
/// of that medium family (file system or raw) and libdb on the raw device.
pub fn headline_best(exo: &[Row], linux: &[Row], medium: &str) -> Vec<String> {
    let mut out = vec![];
    for d in DURABILITIES {
        let (Some(e), Some(b)) = (find(exo, "exo", "libdb", medium, d), best_linux(linux, medium, d)) else {
            continue;
        };
        let raw: Vec<String> = raw_family(medium)
            .into_iter()
            .filter_map(|m| {
                find(linux, "linux-guest", "libdb", m, d)
                    .map(|l| format!("{m} {:.0} ({})", l.ops_per_sec, ratio(Some(e.ops_per_sec), Some(l.ops_per_sec))))
            })
            .collect();
        out.push(format!(
            "{medium} commit {d}: exo libdb {:.0} commits/s vs Linux's best, {} on {} {:.0} ({}; instructions {} vs {}, {}){}",
            e.ops_per_sec,
            b.engine,
            b.medium,
            b.ops_per_sec,
            ratio(Some(e.ops_per_sec), Some(b.ops_per_sec)),
            n(e.guest_instructions_per_op),
            n(b.guest_instructions_per_op),
            ratio(e.guest_instructions_per_op, b.guest_instructions_per_op),
            if raw.is_empty() { String::new() } else { format!("; linux libdb raw: {}", raw.join(", ")) }
        ));
    }
    out
}

/// db.md's section on libdb on Linux without a file system: per
/// durability, libdb on ext4, on the raw device (fdatasync, FUA) and exo,
/// with the counts that tell the layers apart.
pub fn raw_section(exo: &[Row], linux: &[Row]) -> String {
    let mut s = String::from(
        "## libdb on Linux without a file system\n\n### NVMe\n\n\
         What skipping the file system saves on Linux, beside what the exokernel saves. `nvme-raw`: libdb on a \
         128 MiB region of the raw namespace (`/dev/nvme0n1` above ext4's 384 MiB), `O_DIRECT`, `pwrite` + \
         `fdatasync`; `nvme-raw-fua`: the same opened `O_DSYNC` (FUA writes, no `fdatasync`; Linux still \
         flushes after each, see the device flushes) (eval/src/rawmedia.rs). Device counts from QEMU's trace, differential.\n\n\
         | durability | system | medium | commits/s | p50 µs | syscalls/op | device writes/op | device flushes/op | device bytes/op | guest instructions/op |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for d in DURABILITIES {
        let mut rows: Vec<&Row> = ["nvme", "nvme-vf"].iter().filter_map(|m| find(exo, "exo", "libdb", m, d)).collect();
        rows.extend(linux_family("nvme").iter().filter_map(|m| find(linux, "linux-guest", "libdb", m, d)));
        for r in rows {
            let _ = writeln!(
                s,
                "| {d} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                r.system,
                r.medium,
                r.ops_per_sec,
                format_number(r.p50_us),
                n(r.syscalls_per_op),
                n(r.device_write_cmds_per_op),
                n(r.device_flushes_per_op),
                n(r.device_bytes_written_per_op),
                n(r.guest_instructions_per_op)
            );
        }
    }
    s.push_str(&raw_pmem_table(exo, linux));
    s.push_str(
        "\nexo against Linux's best row of each medium (any engine, file system or raw; time and instructions):\n\n",
    );
    for m in MEDIA {
        for l in headline_best(exo, linux, m) {
            let _ = writeln!(s, "- {l}");
        }
    }
    s.push('\n');
    s
}

/// The pmem half of [`raw_section`]: libdb on ext4-DAX, on device-DAX
/// (`pmem-raw`) and exo's pmem rows. No device commands exist on pmem;
/// what differs is system calls, barriers and instructions.
fn raw_pmem_table(exo: &[Row], linux: &[Row]) -> String {
    let mut s = String::from(
        "\n### pmem\n\n`pmem-raw`: libdb on the NVDIMM as device-DAX (`/dev/dax0.0`, no file system; the guest turns the \
         namespace from fsdax into devdax after the ext4-DAX rows), mapped `MAP_SYNC`, durable by `clwb` + `sfence` like \
         on ext4-DAX (eval/src/rawmedia.rs). `pmem`: libdb on a `MAP_SYNC` mapping of a file on ext4-DAX.\n\n\
         | durability | system | medium | commits/s | p50 µs | syscalls/op | engine flushes/op | guest instructions/op |\n\
         |---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for d in DURABILITIES {
        let mut rows: Vec<&Row> =
            ["pmem", "file-pmem"].iter().filter_map(|m| find(exo, "exo", "libdb", m, d)).collect();
        rows.extend(linux_family("pmem").iter().filter_map(|m| find(linux, "linux-guest", "libdb", m, d)));
        for r in rows {
            let _ = writeln!(
                s,
                "| {d} | {} | {} | {:.0} | {} | {} | {} | {} |",
                r.system,
                r.medium,
                r.ops_per_sec,
                format_number(r.p50_us),
                n(r.syscalls_per_op),
                n(r.flushes_per_op),
                n(r.guest_instructions_per_op)
            );
        }
    }
    s
}

#[allow(clippy::too_many_arguments)]
pub fn summary(
    exo: &[Row],
    exo_lines: &[DbLine],
    linux: &[Row],
    rates: &BTreeMap<RowKey, Vec<f64>>,
    icount_all: &BTreeMap<(String, String, String), Vec<f64>>,
    checks: &[(bool, String)],
    linux_checks: &[(bool, String)],
    linux_failures: &[String],
    env: &[(String, String)],
) -> String {
    let mut s = String::from("# libdb on the exokernel vs Linux (SQLite, LMDB, redb, libdb), one machine, one run\n\n");
    s.push_str(
        "Produced by `cargo xtask eval --db` (method and caveats: eval/DB.md). `commit` workload: one 100-byte value under a \
         16-digit key per transaction, 200 transactions per row on both systems. exo = libdb as an application libOS \
         (`kvdb`) on the exokernel; linux-guest = the same standard QEMU machine booting Debian's kernel. TCG: counts \
         are exact, times are emulated-machine times.\n\n\
         Read with care: exo `syscalls/op` is machine-wide (kvdb's own is the next column); exo's device counts are \
         kvdb's own (checked against QEMU's trace below); exo's NVMe guest instructions/op include the driver's \
         polling while the emulated device completes a write or flush, which takes host time (the host's fdatasync \
         of the image file), so they vary from run to run and overstate the work of a sync commit, whereas Linux \
         halts while it waits and counts none of it (eval/DB.md).\n\n",
    );
    let line_of = |r: &Row| {
        exo_lines.iter().find(|l| l.medium == r.medium && l.workload == r.workload && l.durability == r.durability)
    };
    s.push_str(&raw_section(exo, linux));
    for medium in MEDIA {
        let lm = linux_medium(medium);
        let _ = writeln!(s, "## {medium}: counts per commit\n");
        if let Some(note) = medium_note(medium) {
            let _ = writeln!(s, "{note}\n");
        }
        s.push_str(
            "| durability | system | engine | syscalls/op | kvdb's own syscalls/op | device writes/op | device flushes/op | device bytes/op | bytes copied/op | engine flushes/op | guest instructions/op |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for d in DURABILITIES {
            let mut cands: Vec<(&Row, Option<f64>)> = vec![];
            if let Some(e) = find(exo, "exo", "libdb", medium, d) {
                cands.push((e, line_of(e).map(|l| l.kvdb_syscalls_per_op)));
            }
            for eng in LINUX_ENGINES {
                if let Some(l) = find(linux, "linux-guest", eng, lm, d) {
                    cands.push((l, None));
                }
            }
            for (r, own) in cands {
                let _ = writeln!(
                    s,
                    "| {d} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.system,
                    r.engine,
                    n(r.syscalls_per_op),
                    n(own),
                    n(r.device_write_cmds_per_op),
                    n(r.device_flushes_per_op),
                    n(r.device_bytes_written_per_op),
                    n(r.bytes_copied_per_op),
                    n(r.flushes_per_op),
                    n(r.guest_instructions_per_op)
                );
            }
        }
        let _ = writeln!(s, "\n## {medium}: times\n");
        s.push_str("| durability | system | engine | ops/s | p50 µs | p99 µs |\n|---|---|---|---:|---:|---:|\n");
        for d in DURABILITIES {
            let rows = find(exo, "exo", "libdb", medium, d)
                .into_iter()
                .chain(LINUX_ENGINES.iter().filter_map(|eng| find(linux, "linux-guest", eng, lm, d)));
            for r in rows {
                let _ = writeln!(
                    s,
                    "| {d} | {} | {} | {} | {} | {} |",
                    r.system,
                    r.engine,
                    format_number(r.ops_per_sec),
                    format_number(r.p50_us),
                    format_number(r.p99_us)
                );
            }
        }
        let _ = writeln!(s, "\n## {medium}: exo libdb / linux-guest engine\n");
        s.push_str(
            "Above 1× means exo has more of it: more is better for ops/s, worse for the rest.\n\n\
             | durability | vs linux-guest | ops/s | p50 | p99 | syscalls/op (exo machine-wide) | syscalls/op (exo: kvdb's own) | device bytes/op | guest instructions/op |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for d in DURABILITIES {
            let Some(e) = find(exo, "exo", "libdb", medium, d) else {
                continue;
            };
            for eng in LINUX_ENGINES {
                let Some(l) = find(linux, "linux-guest", eng, lm, d) else {
                    continue;
                };
                let _ = writeln!(
                    s,
                    "| {d} | {eng} | {} | {} | {} | {} | {} | {} | {} |",
                    ratio(Some(e.ops_per_sec), Some(l.ops_per_sec)),
                    ratio(Some(e.p50_us), Some(l.p50_us)),
                    ratio(Some(e.p99_us), Some(l.p99_us)),
                    ratio(e.syscalls_per_op, l.syscalls_per_op),
                    ratio(line_of(e).map(|x| x.kvdb_syscalls_per_op), l.syscalls_per_op),
                    ratio(e.device_bytes_written_per_op, l.device_bytes_written_per_op),
                    ratio(e.guest_instructions_per_op, l.guest_instructions_per_op)
                );
            }
        }
        s.push('\n');
    }
    s.push_str("## exo only: pmem cache lines and `batch24`\n\n");
    s.push_str("| medium | workload | durability | ops | ops/s | p50 µs | p99 µs | syscalls/op | kvdb syscalls/op | upcalls/op | device writes/op | device flushes/op | device bytes/op | cache lines flushed/op | guest instructions/op |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in exo {
        let Some(l) = line_of(r) else { continue };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.medium,
            r.workload,
            r.durability,
            r.ops,
            format_number(r.ops_per_sec),
            format_number(r.p50_us),
            format_number(r.p99_us),
            n(l.syscalls_per_op),
            format_number(l.kvdb_syscalls_per_op),
            n(l.upcalls_per_op),
            n(l.device_write_cmds_per_op),
            n(l.device_flushes_per_op),
            n(l.device_bytes_written_per_op),
            format_number(l.lines_flushed_per_op),
            n(r.guest_instructions_per_op)
        );
    }
    s.push_str("\n## ops/s of every round\n\nSorted; every row above is its median round's, whole (counts and times from that round).\n\n");
    for ((sys, e, m, w, d), v) in rates {
        let _ = writeln!(
            s,
            "- {sys} {e} {m} {w} {d}: {}",
            v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ")
        );
    }
    s.push_str("\nexo guest instructions/op of every icount boot (sorted; the tables show the median):\n\n");
    for ((m, w, d), v) in icount_all {
        let _ = writeln!(
            s,
            "- exo libdb {m} {w} {d}: {}",
            v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ")
        );
    }
    s.push_str(
        "\n## How each count is taken\n\n\
         | count | exo | linux-guest |\n|---|---|---|\n\
         | syscalls/op | the kernel's own counter over the phase, **machine-wide**: kvdb's yields to the driver, the driver's idle yields, init's scheduler | the bench process's `perf_event_open` count of `raw_syscalls:sys_enter` over the measured phase |\n\
         | kvdb's own syscalls/op | kvdb's runtime counts its own system calls (`exo_rt::sys::calls()`) | – |\n\
         | device writes, flushes, bytes/op | what kvdb asked the block service (nvme-vf: the NVMe commands kvdb's own driver submitted) (kvdb/libdb's own count); cross-checked against QEMU's NVMe trace of the whole boot (below) | QEMU trace events `pci_nvme_io_cmd`/`pci_nvme_write`, differential against a `--ops 1` run: `(run - baseline) / (ops - 1)`; includes ext4's journal |\n\
         | bytes copied/op | bytes copied into and out of the block service's shared data area (nvme-vf: kvdb's own DMA bounce area) (the device DMAs from there); 0 on pmem | `/proc/self/io` `rchar + wchar` |\n\
         | engine flushes/op | libdb's barriers (`Stats.io`) | eval-bench's fsync-family wrappers (libdb on pmem: its own barrier count) |\n\
         | guest instructions/op | separate boots under `-icount shift=0` (as many as rounds; median): TSC ticks over the phase / ops; the TSC reads QEMU's virtual clock, one ns per instruction, and this kernel never halts while kvdb runs, so this is every instruction the CPU executed during the phase (kernel, driver, init, kvdb), including the driver's polling while the device works | icount pass: ftrace `sched_stat_runtime` summed over every task but the harness shell, differential; runtime is TSC-measured at 1000 MHz = one tick per instruction; idle (halted) time is not counted |\n\
         | ops/s, p50, p99 | kvdb's TSC timing, per commit | eval-bench, `CLOCK_MONOTONIC` |\n",
    );
    s.push_str("\n## Checks\n\n");
    for (ok, c) in checks {
        let _ = writeln!(s, "- {} exo NVMe device counts vs QEMU trace, {c}", if *ok { "PASS" } else { "FAIL" });
    }
    for (ok, c) in linux_checks {
        let _ = writeln!(s, "- {} linux-guest: {c}", if *ok { "PASS" } else { "FAIL" });
    }
    if !linux_failures.is_empty() {
        s.push_str("\n## Failed Linux runs\n\n");
        for f in linux_failures {
            let _ = writeln!(s, "- {f}");
        }
    }
    s.push_str("\n## All rows\n\n");
    let mut all = exo.to_vec();
    all.extend(linux.iter().cloned());
    s.push_str(&crate::results::markdown_table(&all));
    s.push_str("\n## Environment\n\n");
    for (k, v) in env {
        let _ = writeln!(s, "- {k}: {v}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines of real boots (doorbells_per_op, which kvdb prints since, added
    // with the value of blockq_requests_per_op).
    const NVME: &str = "init: kvdb nvme create\n\
EXO-DB engine=libdb medium=nvme workload=commit value_bytes=100 durability=sync ops=200 ops_per_sec=1502.873 p50_us=636.267 p99_us=1428.177 tsc_per_op=1745989 syscalls_per_op=18.385 upcalls_per_op=18.450 kvdb_syscalls_per_op=3.680 kvdb_upcalls_per_op=3.690 yields_per_op=3.680 bytes_copied_per_op=512.000 bytes_written_per_op=512.000 flushes_per_op=1.000 writes_per_op=1.000 device_write_cmds_per_op=1.000 device_flushes_per_op=1.000 device_bytes_written_per_op=512.000 blockq_requests_per_op=2.000 lines_flushed_per_op=0.000 doorbells_per_op=2.000 checkpoints=0 tsc_per_us=2624\n\
EXO-DB engine=libdb medium=nvme workload=commit value_bytes=100 durability=group8 ops=200 ops_per_sec=9885.774 p50_us=12.614 p99_us=1383.479 tsc_per_op=265432 syscalls_per_op=2.445 upcalls_per_op=2.450 kvdb_syscalls_per_op=0.490 kvdb_upcalls_per_op=0.490 yields_per_op=0.490 bytes_copied_per_op=192.000 bytes_written_per_op=192.000 flushes_per_op=0.125 writes_per_op=0.125 device_write_cmds_per_op=0.125 device_flushes_per_op=0.125 device_bytes_written_per_op=192.000 blockq_requests_per_op=0.250 lines_flushed_per_op=0.000 doorbells_per_op=0.250 checkpoints=0 tsc_per_us=2624\n\
EXO-DB engine=libdb medium=nvme workload=commit value_bytes=100 durability=async ops=200 ops_per_sec=45227.780 p50_us=10.335 p99_us=20.937 tsc_per_op=58017 syscalls_per_op=0.125 upcalls_per_op=0.125 kvdb_syscalls_per_op=0.025 kvdb_upcalls_per_op=0.025 yields_per_op=0.025 bytes_copied_per_op=153.600 bytes_written_per_op=153.600 flushes_per_op=0.005 writes_per_op=0.005 device_write_cmds_per_op=0.005 device_flushes_per_op=0.005 device_bytes_written_per_op=153.600 blockq_requests_per_op=0.010 lines_flushed_per_op=0.000 doorbells_per_op=0.010 checkpoints=0 tsc_per_us=2624\n\
EXO-DB engine=libdb medium=nvme workload=batch24 value_bytes=0 durability=sync ops=100 ops_per_sec=657.463 p50_us=867.443 p99_us=40990.734 tsc_per_op=3991098 syscalls_per_op=34.090 upcalls_per_op=34.250 kvdb_syscalls_per_op=6.740 kvdb_upcalls_per_op=6.820 yields_per_op=6.740 bytes_copied_per_op=11064.320 bytes_written_per_op=11064.320 flushes_per_op=1.040 writes_per_op=2.200 device_write_cmds_per_op=2.200 device_flushes_per_op=1.040 device_bytes_written_per_op=11064.320 blockq_requests_per_op=3.240 lines_flushed_per_op=0.000 doorbells_per_op=3.240 checkpoints=2 tsc_per_us=2624\n\
kvdb: 701 commits (3076 puts) done\nEXO-TEST-PASS libdb_nvme_create\n";

    const PMEM_SYNC: &str = "EXO-DB engine=libdb medium=pmem workload=commit value_bytes=100 durability=sync ops=200 ops_per_sec=24262.785 p50_us=7.995 p99_us=336.375 tsc_per_op=107490 syscalls_per_op=0.010 upcalls_per_op=0.015 kvdb_syscalls_per_op=0.000 kvdb_upcalls_per_op=0.005 yields_per_op=0.000 bytes_copied_per_op=0.000 bytes_written_per_op=152.000 flushes_per_op=1.000 writes_per_op=1.000 device_write_cmds_per_op=- device_flushes_per_op=- device_bytes_written_per_op=- blockq_requests_per_op=- lines_flushed_per_op=3.250 doorbells_per_op=- checkpoints=0 tsc_per_us=2608";

    #[test]
    fn parses_a_real_nvme_boot() {
        let l = parse_boot(NVME, "nvme").unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!((l[0].workload.as_str(), l[0].durability.as_str(), l[0].ops), ("commit", "sync", 200));
        assert_eq!(
            (l[0].ops_per_sec, l[0].p50_us, l[0].tsc_per_op, l[0].tsc_per_us),
            (1502.873, 636.267, 1745989.0, 2624)
        );
        assert_eq!((l[0].syscalls_per_op, l[0].kvdb_syscalls_per_op), (Some(18.385), 3.68));
        assert_eq!((l[1].device_flushes_per_op, l[1].device_bytes_written_per_op), (Some(0.125), Some(192.0)));
        assert_eq!((l[3].workload.as_str(), l[3].value_bytes, l[3].ops), ("batch24", 0, 100));
    }

    #[test]
    fn pmem_dashes_are_absent_values() {
        let l = parse_line(PMEM_SYNC).unwrap();
        assert_eq!(
            (l.device_write_cmds_per_op, l.device_flushes_per_op, l.device_bytes_written_per_op),
            (None, None, None)
        );
        assert_eq!((l.lines_flushed_per_op, l.bytes_copied_per_op), (3.25, 0.0));
        let r = exo_row(&l, Some(4321.0));
        assert_eq!((r.system.as_str(), r.engine.as_str(), r.medium.as_str()), ("exo", "libdb", "pmem"));
        assert_eq!(
            (r.device_flushes_per_op, r.flushes_per_op, r.guest_instructions_per_op),
            (None, Some(1.0), Some(4321.0))
        );
    }

    #[test]
    fn malformed_lines_give_named_errors() {
        let e = |from: &str, to: &str| parse_line(&PMEM_SYNC.replace(from, to)).unwrap_err();
        assert_eq!(
            e(" p99_us=336.375", ""),
            DbLineError::MissingField { field: "p99_us", line: PMEM_SYNC.replace(" p99_us=336.375", "") }
        );
        assert!(matches!(
            e("ops_per_sec=24262.785", "ops_per_sec=fast"),
            DbLineError::BadNumber { field: "ops_per_sec", .. }
        ));
        assert!(matches!(
            e("ops_per_sec=24262.785", "ops_per_sec=-1"),
            DbLineError::BadNumber { field: "ops_per_sec", .. }
        ));
        assert!(
            matches!(e("ops_per_sec=24262.785", "ops_per_sec=-"), DbLineError::BadNumber { field: "ops_per_sec", .. }),
            "a dash only where a field may be absent"
        );
        assert!(matches!(
            e("ops_per_sec=24262.785", "ops_per_sec=NaN"),
            DbLineError::BadNumber { field: "ops_per_sec", .. }
        ));
        assert!(matches!(e("ops=200", "ops=0"), DbLineError::BadNumber { field: "ops", .. }));
        assert!(matches!(e("ops=200", "ops=2.5"), DbLineError::BadNumber { field: "ops", .. }));
        assert!(matches!(e("checkpoints=0", "checkpoints"), DbLineError::Malformed { .. }));
        assert!(matches!(e("checkpoints=0", "ops=200"), DbLineError::Malformed { .. }), "a field given twice");
        assert!(matches!(e("engine=libdb", "engine=sqlite"), DbLineError::Unexpected { .. }));
        let msg = e(" tsc_per_us=2608", "").to_string();
        assert!(msg.contains("`tsc_per_us=`"), "{msg}");
    }

    #[test]
    fn a_boot_needs_each_phase_once_on_its_medium() {
        let without_async: String =
            NVME.lines().filter(|l| !l.contains("durability=async")).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            parse_boot(&without_async, "nvme").unwrap_err(),
            DbLineError::MissingPhase { medium: "nvme".into(), workload: "commit".into(), durability: "async".into() }
        );
        let first = NVME.lines().nth(1).unwrap();
        assert!(matches!(
            parse_boot(&format!("{NVME}{first}\n"), "nvme").unwrap_err(),
            DbLineError::DuplicatePhase { .. }
        ));
        assert!(matches!(parse_boot(NVME, "pmem").unwrap_err(), DbLineError::Unexpected { .. }));
        assert!(matches!(parse_boot("no lines at all\n", "nvme").unwrap_err(), DbLineError::MissingPhase { .. }));
    }

    #[test]
    fn the_trace_must_cover_what_kvdb_counted() {
        let l = parse_boot(NVME, "nvme").unwrap();
        // 200 + 25 + 1 + 220 writes, 200 + 25 + 1 + 104 flushes.
        let counted = qtrace::NvmeCounts {
            write_cmds: 446,
            flush_cmds: 330,
            bytes_written: 200 * 512 + 200 * 192 + 200 * 154 + 1_106_432,
            ..Default::default()
        };
        let (ok, msg) = device_check(&l, &counted);
        assert!(ok, "{msg}");
        assert!(msg.contains("kvdb counted 446 NVMe writes, 330 flushes"), "{msg}");
        assert!(msg.contains("outside the phases: 0 writes, 0 flushes"), "{msg}");
        assert!(
            device_check(
                &l,
                &qtrace::NvmeCounts {
                    write_cmds: 1000,
                    flush_cmds: 1000,
                    bytes_written: 1 << 30,
                    ..Default::default()
                }
            )
            .0
        );
        assert!(!device_check(&l, &qtrace::NvmeCounts { write_cmds: 445, ..counted }).0, "one write short");
        assert!(!device_check(&l, &qtrace::NvmeCounts { flush_cmds: 329, ..counted }).0, "one flush short");
    }

    #[test]
    fn linux_entries_match_the_exo_phases() {
        let e = linux_entries();
        assert_eq!(e.len(), LINUX_ENGINES.len() * 3);
        for x in &e {
            assert_eq!((x.workload, x.value_bytes, x.ops), (Workload::Commit, VALUE_BYTES, COMMIT_OPS));
        }
        let (runs, pairs) = crate::linux::plan::runs(&e);
        assert_eq!(pairs.len(), 2 * e.len(), "both media");
        let exo: Vec<(String, String)> =
            PHASES.iter().filter(|p| p.0 == "commit").map(|(w, d)| (w.to_string(), d.to_string())).collect();
        for p in pairs {
            let r = &runs[p.measured];
            assert!(exo.contains(&(r.workload.clone(), r.durability.clone())), "{r:?} has an exo counterpart");
        }
    }

    #[test]
    fn median_rows_keep_each_exo_row_with_its_line_and_split_the_systems() {
        let base = parse_boot(NVME, "nvme").unwrap();
        let boot = |scale: f64| -> (Vec<Row>, Vec<Option<DbLine>>) {
            let lines: Vec<DbLine> = base
                .iter()
                .map(|l| DbLine { ops_per_sec: l.ops_per_sec * scale, p50_us: scale, ..l.clone() })
                .collect();
            (lines.iter().map(|l| exo_row(l, None)).collect(), lines.into_iter().map(Some).collect())
        };
        let linux = |v: f64| {
            (
                vec![Row {
                    system: "linux-guest".into(),
                    engine: "libdb".into(),
                    medium: "nvme".into(),
                    workload: "commit".into(),
                    durability: "sync".into(),
                    ops_per_sec: v,
                    ..Row::default()
                }],
                vec![None],
            )
        };
        let rounds = vec![boot(1.0), linux(10.0), boot(3.0), linux(30.0), boot(2.0), linux(20.0)];
        let (exo, lines, lin, rates) = median_rows(&rounds);
        assert_eq!((exo.len(), lines.len(), lin.len()), (4, 4, 1));
        for (r, l) in exo.iter().zip(&lines) {
            assert_eq!((r.p50_us, l.p50_us), (2.0, 2.0), "row and line from the median round");
            assert_eq!((r.workload.as_str(), r.durability.as_str()), (l.workload.as_str(), l.durability.as_str()));
        }
        assert_eq!(lin[0].ops_per_sec, 20.0);
        let k = (
            "linux-guest".to_string(),
            "libdb".to_string(),
            "nvme".to_string(),
            "commit".to_string(),
            "sync".to_string(),
        );
        assert_eq!(rates[&k], vec![10.0, 20.0, 30.0]);
    }

    #[test]
    fn instruction_medians_come_from_every_icount_boot() {
        let k = |d: &str| ("commit".to_string(), d.to_string());
        let boots = vec![
            BTreeMap::from([(k("sync"), 394_000.0), (k("async"), 8_400.0)]),
            BTreeMap::from([(k("sync"), 76_000.0), (k("async"), 8_600.0)]),
            BTreeMap::from([(k("sync"), 80_000.0)]),
        ];
        let m = median_instructions(&boots);
        assert_eq!(m[&k("sync")], (80_000.0, vec![76_000.0, 80_000.0, 394_000.0]));
        assert_eq!(m[&k("async")], (8_400.0, vec![8_400.0, 8_600.0]), "lower middle of an even count");
        assert!(median_instructions(&[]).is_empty());
    }

    #[test]
    fn the_vf_medium_boots_its_own_test_and_stands_beside_linux_nvme() {
        assert_eq!(
            MEDIA.map(create_test),
            [
                "libdb_nvme_create",
                "libdb_vf_create",
                "libdb_pmem_create",
                "libdb_on_libfs_create",
                "libdb_on_libfs_create"
            ]
        );
        assert_eq!(MEDIA.map(linux_medium), ["nvme", "nvme", "pmem", "nvme", "pmem"]);
        let vf = NVME.replace("medium=nvme ", "medium=nvme-vf ");
        let lines = parse_boot(&vf, "nvme-vf").unwrap();
        assert!(parse_boot(&vf, "nvme").is_err(), "a VF boot's lines are not the block service's");
        let exo: Vec<Row> = lines.iter().map(|l| exo_row(l, None)).collect();
        let lin = Row {
            system: "linux-guest".into(),
            engine: "sqlite".into(),
            medium: "nvme".into(),
            workload: "commit".into(),
            durability: "sync".into(),
            ops_per_sec: 751.4365,
            ..Row::default()
        };
        let h = headline(&exo, &[lin], "nvme-vf");
        assert_eq!(h[0], "nvme-vf commit sync: exo libdb 1503 commits/s; linux-guest (on nvme) sqlite 751 (2.00×)");
    }

    #[test]
    fn instructions_and_headline_pair_rows() {
        let lines = parse_boot(NVME, "nvme").unwrap();
        let ins = instructions(&lines);
        assert_eq!(ins[&("commit".to_string(), "group8".to_string())], 265432.0);
        let exo: Vec<Row> =
            lines.iter().map(|l| exo_row(l, ins.get(&(l.workload.clone(), l.durability.clone())).copied())).collect();
        let lin = Row {
            system: "linux-guest".into(),
            engine: "sqlite".into(),
            medium: "nvme".into(),
            workload: "commit".into(),
            durability: "sync".into(),
            ops_per_sec: 751.4365,
            ..Row::default()
        };
        let h = headline(&exo, &[lin], "nvme");
        assert_eq!(h.len(), 3);
        assert_eq!(h[0], "nvme commit sync: exo libdb 1503 commits/s; linux-guest sqlite 751 (2.00×)");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "–");
        assert_eq!(ratio(None, Some(1.0)), "–");
    }

    /// `libdb_on_libfs_create` prints both file media's lines: each file
    /// medium's boot takes its own and skips the other's; no other medium
    /// may appear.
    #[test]
    fn a_file_boot_holds_both_file_media() {
        let both = format!(
            "{}{}",
            NVME.replace("medium=nvme ", "medium=file-pmem "),
            NVME.replace("medium=nvme ", "medium=file-nvme ")
        );
        for m in ["file-pmem", "file-nvme"] {
            let lines = parse_boot(&both, m).unwrap();
            assert_eq!(lines.len(), PHASES.len(), "{m}");
            assert!(lines.iter().all(|l| l.medium == m));
            assert!(medium_note(m).unwrap().contains("libfs file"));
        }
        assert!(parse_boot(&both, "nvme").is_err(), "a file boot's lines are not the raw medium's");
        let mixed = format!("{both}{}", NVME.replace("medium=nvme ", "medium=pmem "));
        assert!(parse_boot(&mixed, "file-pmem").is_err(), "a raw medium's line in a file boot");
        assert!(medium_note("nvme").is_none());
    }

    #[test]
    fn the_best_linux_row_may_be_raw_and_is_named() {
        let row = |system: &str, engine: &str, medium: &str, d: &str, ops: f64| Row {
            system: system.into(),
            engine: engine.into(),
            medium: medium.into(),
            workload: "commit".into(),
            durability: d.into(),
            ops_per_sec: ops,
            guest_instructions_per_op: Some(ops * 10.0),
            ..Row::default()
        };
        let linux = vec![
            row("linux-guest", "libdb", "nvme", "sync", 100.0),
            row("linux-guest", "libdb", "nvme-raw", "sync", 150.0),
            row("linux-guest", "libdb", "nvme-raw-fua", "sync", 200.0),
            row("linux-guest", "sqlite", "nvme", "sync", 50.0),
            row("linux-guest", "libdb", "pmem", "sync", 900.0),
        ];
        let exo = vec![row("exo", "libdb", "nvme", "sync", 300.0), row("exo", "libdb", "pmem", "sync", 450.0)];
        assert_eq!(best_linux(&linux, "nvme", "sync").unwrap().medium, "nvme-raw-fua");
        assert_eq!(best_linux(&linux, "nvme-vf", "sync").unwrap().medium, "nvme-raw-fua");
        assert_eq!(best_linux(&linux, "file-pmem", "sync").unwrap().medium, "pmem", "raw NVMe is not a pmem row");
        let h = headline_best(&exo, &linux, "nvme");
        assert!(
            h[0].contains("Linux's best, libdb on nvme-raw-fua 200 (1.50×") && h[0].contains("nvme-raw 150 (2.00×)"),
            "{h:?}"
        );
        let h = headline_best(&exo, &linux, "pmem");
        assert!(h[0].contains("libdb on pmem 900 (0.50×") && !h[0].contains("raw"), "{h:?}");
        let s = raw_section(&exo, &linux);
        assert!(
            s.contains("| sync | linux-guest | nvme-raw-fua | 200 |") && s.contains("| sync | exo | nvme | 300 |"),
            "{s}"
        );
        // With a device-DAX row, pmem's best may be raw too, and is named.
        let mut linux = linux;
        linux.push(row("linux-guest", "libdb", "pmem-raw", "sync", 1200.0));
        assert_eq!(best_linux(&linux, "pmem", "sync").unwrap().medium, "pmem-raw");
        assert_eq!(best_linux(&linux, "nvme", "sync").unwrap().medium, "nvme-raw-fua", "device-DAX is not an NVMe row");
        let h = headline_best(&exo, &linux, "pmem");
        assert!(
            h[0].contains("Linux's best, libdb on pmem-raw 1200 (0.38×; instructions 4500 vs 12000, 0.38×)")
                && h[0].contains("linux libdb raw: pmem-raw 1200"),
            "{h:?}"
        );
        let s = raw_section(&exo, &linux);
        assert!(
            s.contains("### pmem")
                && s.contains("| sync | linux-guest | pmem-raw | 1200 |")
                && s.contains("| sync | exo | pmem | 450 |"),
            "{s}"
        );
    }
}
