//! The result row every system produces (host Linux, the Linux guest, the
//! exokernel), its CSV form and a markdown rendering.
//!
//! A metric that a system cannot measure is `None` and an empty CSV cell:
//! never a guessed number.

use core::fmt;

/// The CSV columns, in order. Readers look columns up by name, so adding a
/// column later does not break old files.
pub const COLUMNS: [&str; 18] = [
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
    "bytes_written_per_op",
    "flushes_per_op",
    "device_write_cmds_per_op",
    "device_flushes_per_op",
    "device_bytes_written_per_op",
    "guest_instructions_per_op",
];

/// Systems that produce rows. `exo` is the exokernel (its rows come from
/// `kvdb`'s `EXO-DB` lines, `cargo xtask eval --db`).
pub const SYSTEMS: [&str; 3] = ["host-linux", "linux-guest", "exo"];

/// Storage media `eval-bench` runs on: a file system on the host, NVMe or
/// persistent memory in the emulated machine. Exo rows add `nvme-vf` (the
/// database driving its own SR-IOV virtual function), which has no Linux
/// counterpart, and `file-nvme` / `file-pmem` (the database as a libfs
/// file on those media) (`crate::db`). `nvme-raw` and `nvme-raw-fua`:
/// libdb on a region of the guest's raw NVMe namespace, no file system;
/// `pmem-raw`: libdb on the NVDIMM as device-DAX (`crate::rawmedia`).
pub const MEDIA: [&str; 6] = ["host-fs", "nvme", "pmem", "nvme-raw", "nvme-raw-fua", "pmem-raw"];

/// One measured run.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Row {
    pub system: String,
    pub engine: String,
    pub medium: String,
    pub workload: String,
    pub value_bytes: u64,
    pub durability: String,
    /// Operations in the measured phase.
    pub ops: u64,
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// All system calls (every number), per operation.
    pub syscalls_per_op: Option<f64>,
    /// Bytes moved between user and kernel by read/write-family calls.
    pub bytes_copied_per_op: Option<f64>,
    /// Bytes the process caused to be written to storage (`write_bytes`).
    pub bytes_written_per_op: Option<f64>,
    /// Flush requests the engine made (fsync family and O_SYNC/O_DSYNC writes).
    pub flushes_per_op: Option<f64>,
    pub device_write_cmds_per_op: Option<f64>,
    pub device_flushes_per_op: Option<f64>,
    pub device_bytes_written_per_op: Option<f64>,
    pub guest_instructions_per_op: Option<f64>,
}

/// The optional metrics, in column order, with their accessors.
pub type MetricField = (&'static str, fn(&Row) -> Option<f64>, fn(&mut Row) -> &mut Option<f64>);

pub const OPTIONAL_METRICS: [MetricField; 8] = [
    ("syscalls_per_op", |r| r.syscalls_per_op, |r| &mut r.syscalls_per_op),
    ("bytes_copied_per_op", |r| r.bytes_copied_per_op, |r| &mut r.bytes_copied_per_op),
    ("bytes_written_per_op", |r| r.bytes_written_per_op, |r| &mut r.bytes_written_per_op),
    ("flushes_per_op", |r| r.flushes_per_op, |r| &mut r.flushes_per_op),
    ("device_write_cmds_per_op", |r| r.device_write_cmds_per_op, |r| &mut r.device_write_cmds_per_op),
    ("device_flushes_per_op", |r| r.device_flushes_per_op, |r| &mut r.device_flushes_per_op),
    ("device_bytes_written_per_op", |r| r.device_bytes_written_per_op, |r| &mut r.device_bytes_written_per_op),
    ("guest_instructions_per_op", |r| r.guest_instructions_per_op, |r| &mut r.guest_instructions_per_op),
];

/// What was wrong with a CSV input, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvError {
    /// 1-based line number (0 = the input as a whole).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CSV line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for CsvError {}

/// Formats a number compactly: integers without a fraction, others with
/// up to three decimals (trailing zeros dropped).
pub fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// The header line (no newline).
pub fn header() -> String {
    COLUMNS.join(",")
}

impl Row {
    /// The row's cells, columns as in [`COLUMNS`]: numbers as
    /// [`format_number`], unmeasured metrics empty.
    pub fn cells(&self) -> Vec<String> {
        let mut cells = vec![
            self.system.clone(),
            self.engine.clone(),
            self.medium.clone(),
            self.workload.clone(),
            self.value_bytes.to_string(),
            self.durability.clone(),
            self.ops.to_string(),
            format_number(self.ops_per_sec),
            format_number(self.p50_us),
            format_number(self.p99_us),
        ];
        for (_, get, _) in OPTIONAL_METRICS {
            cells.push(get(self).map(format_number).unwrap_or_default());
        }
        cells
    }

    /// The row as one CSV line (no newline).
    pub fn to_csv(&self) -> String {
        let mut text = csv_text(None, [self.cells()]);
        text.pop();
        text
    }
}

/// CSV text (RFC 4180 quoting where needed, `\n` after every record):
/// `header` if given, then the records. Every CSV file under eval/results
/// is written through this.
pub fn csv_text<R, I>(header: Option<&[&str]>, records: R) -> String
where
    R: IntoIterator<Item = I>,
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut w = csv::WriterBuilder::new().flexible(true).from_writer(vec![]);
    // Writing to a Vec fails only on a record of no fields, which no
    // caller makes; the text then ends early, never silently wrong.
    if let Some(h) = header {
        let _ = w.write_record(h);
    }
    for r in records {
        let _ = w.write_record(r);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Splits one CSV line into fields.
pub fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(line.as_bytes());
    match r.records().next() {
        Some(Ok(rec)) => Ok(rec.iter().map(String::from).collect()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("an empty line".into()),
    }
}

/// The whole table as CSV text: header plus one line per row.
pub fn write_csv(rows: &[Row]) -> String {
    csv_text(Some(&COLUMNS), rows.iter().map(Row::cells))
}

fn parse_cell<T: core::str::FromStr>(value: &str, column: &str) -> Result<T, String> {
    value.trim().parse::<T>().map_err(|_| format!("column {column}: {value:?} is not a valid number"))
}

fn parse_optional(value: &str, column: &str) -> Result<Option<f64>, String> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        parse_cell::<f64>(value, column).map(Some)
    }
}

/// Parses one data line given the header's column names.
pub fn parse_row(columns: &[String], line: &str) -> Result<Row, String> {
    row_of(columns, &split_csv_line(line)?)
}

fn row_of<S: AsRef<str>>(columns: &[String], fields: &[S]) -> Result<Row, String> {
    if fields.len() != columns.len() {
        return Err(format!("{} fields, header has {}", fields.len(), columns.len()));
    }
    let mut row = Row::default();
    for (column, value) in columns.iter().zip(fields) {
        let value = value.as_ref();
        match column.as_str() {
            "system" => row.system = value.into(),
            "engine" => row.engine = value.into(),
            "medium" => row.medium = value.into(),
            "workload" => row.workload = value.into(),
            "durability" => row.durability = value.into(),
            "value_bytes" => row.value_bytes = parse_cell(value, column)?,
            "ops" => row.ops = parse_cell(value, column)?,
            "ops_per_sec" => row.ops_per_sec = parse_cell(value, column)?,
            "p50_us" => row.p50_us = parse_cell(value, column)?,
            "p99_us" => row.p99_us = parse_cell(value, column)?,
            other => {
                let (_, _, field) = OPTIONAL_METRICS
                    .iter()
                    .find(|(name, _, _)| *name == other)
                    .ok_or_else(|| format!("unknown column {other:?}"))?;
                *field(&mut row) = parse_optional(value, column)?;
            }
        }
    }
    Ok(row)
}

/// Parses CSV text with a header line. Columns are matched by name; the
/// required ones (everything up to `p99_us`) must be present. Blank lines
/// are skipped.
pub fn read_csv(text: &str) -> Result<Vec<Row>, CsvError> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut records = r.records();
    let at = |e: &csv::Error| e.position().map_or(0, |p| p.line() as usize);
    let head = match records.next() {
        None => return Err(CsvError { line: 0, message: "empty input, no header".into() }),
        Some(Err(e)) => return Err(CsvError { line: at(&e), message: e.to_string() }),
        Some(Ok(h)) => h,
    };
    let columns: Vec<String> = head.iter().map(String::from).collect();
    for required in &COLUMNS[..10] {
        if !columns.iter().any(|c| c == required) {
            return Err(CsvError { line: 1, message: format!("header lacks column {required:?}") });
        }
    }
    let mut rows = vec![];
    for rec in records {
        let rec = rec.map_err(|e| CsvError { line: at(&e), message: e.to_string() })?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        let fields: Vec<&str> = rec.iter().collect();
        rows.push(row_of(&columns, &fields).map_err(|message| CsvError { line, message })?);
    }
    Ok(rows)
}

/// Human-readable byte size for table labels: 100 B, 1 KiB, 4 KiB.
pub fn size_label(bytes: u64) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn md_number(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{:.0}", v)
    } else if v.abs() >= 10.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

/// A markdown table of the rows, in their order. Columns that are empty in
/// every row are left out; an empty cell elsewhere is shown as "–".
pub fn markdown_table(rows: &[Row]) -> String {
    let present: Vec<&MetricField> =
        OPTIONAL_METRICS.iter().filter(|(_, get, _)| rows.iter().any(|r| get(r).is_some())).collect();
    let mut head =
        vec!["system", "engine", "medium", "workload", "value", "durability", "ops", "ops/s", "p50 µs", "p99 µs"];
    head.extend(present.iter().map(|(name, _, _)| *name));
    let mut out = format!("| {} |\n", head.join(" | "));
    out.push_str(&format!(
        "|{}\n",
        head.iter()
            .map(|h| if *h == "system" || *h == "engine" || *h == "medium" || *h == "workload" || *h == "durability" {
                "---|"
            } else {
                "---:|"
            })
            .collect::<String>()
    ));
    for r in rows {
        let mut cells = vec![
            r.system.clone(),
            r.engine.clone(),
            r.medium.clone(),
            r.workload.clone(),
            size_label(r.value_bytes),
            r.durability.clone(),
            r.ops.to_string(),
            md_number(r.ops_per_sec),
            md_number(r.p50_us),
            md_number(r.p99_us),
        ];
        for (_, get, _) in &present {
            cells.push(get(r).map(md_number).unwrap_or_else(|| "–".into()));
        }
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// A short comparison for one (workload, value size): one line per engine
/// and durability with ops/s relative to `baseline_engine` (same durability).
pub fn markdown_comparison(rows: &[Row], workload: &str, value_bytes: u64, baseline_engine: &str) -> String {
    let selected: Vec<&Row> = rows.iter().filter(|r| r.workload == workload && r.value_bytes == value_bytes).collect();
    if selected.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "| engine | durability | ops/s | × {baseline_engine} | p99 µs | syscalls/op | flushes/op | device flushes/op | device bytes written/op | write_bytes/op |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in &selected {
        let base = selected
            .iter()
            .find(|b| b.engine == baseline_engine && b.durability == r.durability)
            .map(|b| b.ops_per_sec);
        let rel = match base {
            Some(b) if b > 0.0 => format!("{:.2}", r.ops_per_sec / b),
            _ => "–".into(),
        };
        let opt = |v: Option<f64>| v.map(md_number).unwrap_or_else(|| "–".into());
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.engine,
            r.durability,
            md_number(r.ops_per_sec),
            rel,
            md_number(r.p99_us),
            opt(r.syscalls_per_op),
            opt(r.flushes_per_op),
            opt(r.device_flushes_per_op),
            opt(r.device_bytes_written_per_op),
            opt(r.bytes_written_per_op)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Row {
        Row {
            system: "host-linux".into(),
            engine: "sqlite".into(),
            medium: "host-fs".into(),
            workload: "commit".into(),
            value_bytes: 100,
            durability: "sync".into(),
            ops: 1000,
            ops_per_sec: 1234.5678,
            p50_us: 800.25,
            p99_us: 2000.0,
            syscalls_per_op: Some(7.0),
            bytes_copied_per_op: Some(4242.125),
            bytes_written_per_op: Some(8192.0),
            flushes_per_op: Some(1.0),
            ..Row::default()
        }
    }

    #[test]
    fn header_has_every_column_once() {
        let h = header();
        assert!(h.starts_with("system,engine,medium,workload,value_bytes,durability,ops,ops_per_sec,p50_us,p99_us,"));
        assert_eq!(h.split(',').count(), 18);
        assert_eq!(OPTIONAL_METRICS.len() + 10, COLUMNS.len());
        for (i, (name, _, _)) in OPTIONAL_METRICS.iter().enumerate() {
            assert_eq!(*name, COLUMNS[10 + i]);
        }
    }

    #[test]
    fn row_renders_empty_cells_for_unmeasured_metrics() {
        let line = sample().to_csv();
        assert_eq!(line, "host-linux,sqlite,host-fs,commit,100,sync,1000,1234.568,800.25,2000,7,4242.125,8192,1,,,,");
    }

    #[test]
    fn committed_results_read_and_write_back_byte_for_byte() {
        for text in [
            include_str!("../results/latest/host.csv"),
            include_str!("../results/latest/linux.csv"),
            include_str!("../results/latest/db.csv"),
            include_str!("../results/latest/drivers.csv"),
        ] {
            assert_eq!(write_csv(&read_csv(text).unwrap()), text);
        }
    }

    #[test]
    fn csv_round_trips() {
        let mut b = sample();
        b.engine = "odd,\"name\"".into();
        b.guest_instructions_per_op = Some(123456.0);
        b.syscalls_per_op = None;
        let rows = vec![sample(), b];
        let text = write_csv(&rows);
        let back = read_csv(&text).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].engine, "odd,\"name\"");
        assert_eq!(back[1].syscalls_per_op, None);
        assert_eq!(back[1].guest_instructions_per_op, Some(123456.0));
        assert!((back[0].ops_per_sec - 1234.568).abs() < 1e-9);
        assert_eq!(back[0].flushes_per_op, Some(1.0));
    }

    #[test]
    fn reader_matches_columns_by_name() {
        let text =
            "engine,system,medium,workload,value_bytes,durability,ops,ops_per_sec,p50_us,p99_us,flushes_per_op\n\
                    lmdb,linux-guest,nvme,readrandom,1024,async,10,5.5,1,2,0.5\n";
        let rows = read_csv(text).unwrap();
        assert_eq!(rows[0].engine, "lmdb");
        assert_eq!(rows[0].system, "linux-guest");
        assert_eq!(rows[0].flushes_per_op, Some(0.5));
        assert_eq!(rows[0].syscalls_per_op, None);
    }

    #[test]
    fn reader_names_what_is_wrong() {
        assert_eq!(read_csv("").unwrap_err().line, 0);
        let missing = read_csv("system,engine\nx,y\n").unwrap_err();
        assert!(missing.message.contains("lacks column"), "{missing}");
        let bad = format!("{}\n{}\n", header(), sample().to_csv().replace("1000,", "many,"));
        let err = read_csv(&bad).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("ops"), "{err}");
        let short = format!("{}\nhost-linux,sqlite\n", header());
        assert!(read_csv(&short).unwrap_err().message.contains("fields"));
        let unknown = format!("{},bogus\n{},1\n", header(), sample().to_csv());
        assert!(read_csv(&unknown).unwrap_err().message.contains("bogus"));
        assert!(split_csv_line("").is_err());
        // Quoted fields are the csv crate's (lenient about stray quotes).
        assert_eq!(split_csv_line("a,\"b,\"\"c\"\"\",").unwrap(), ["a", "b,\"c\"", ""]);
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(0.5), "0.5");
        assert_eq!(format_number(1.23456), "1.235");
        assert_eq!(format_number(f64::NAN), "");
    }

    #[test]
    fn markdown_table_drops_empty_columns() {
        let md = markdown_table(&[sample()]);
        let mut lines = md.lines();
        let head = lines.next().unwrap();
        assert!(head.contains("flushes_per_op"));
        assert!(!head.contains("guest_instructions_per_op"));
        assert!(lines.next().unwrap().starts_with("|---|"));
        let data = lines.next().unwrap();
        assert!(data.contains("| sqlite |") && data.contains("100 B") && data.contains("1235"));
        let mut other = sample();
        other.flushes_per_op = None;
        other.engine = "redb".into();
        let md2 = markdown_table(&[sample(), other]);
        assert!(md2.lines().nth(3).unwrap().contains('–'));
    }

    #[test]
    fn comparison_is_relative_to_the_baseline() {
        let mut fast = sample();
        fast.engine = "libdb".into();
        fast.ops_per_sec = sample().ops_per_sec * 3.0;
        let md = markdown_comparison(&[sample(), fast], "commit", 100, "sqlite");
        assert!(md.contains("| libdb | sync |") && md.contains("| 3.00 |"), "{md}");
        assert!(markdown_comparison(&[sample()], "readseq", 100, "sqlite").is_empty());
    }
}
