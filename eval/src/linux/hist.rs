//! Parser for ftrace histogram files (`events/<sys>/<event>/hist`), as
//! the guest init dumps them for each benchmark row.
//!
//! Entry lines look like
//! `{ common_pid: eval-bench      [       133] } hitcount:         20`
//! `{ comm: jbd2/nvme0n1-8                  } hitcount:  118  runtime:   22883627`
//! and the file ends with `Totals:` / `Hits:` / `Entries:` / `Dropped:`.

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key's text: the execname for `common_pid.execname`, the comm for `comm`.
    pub name: String,
    /// The pid, when the key is `common_pid.execname`.
    pub pid: Option<u32>,
    /// `value_name -> value`, e.g. `hitcount`, `runtime`.
    pub values: Vec<(String, u64)>,
}

impl Entry {
    pub fn value(&self, name: &str) -> Option<u64> {
        self.values.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hist {
    pub entries: Vec<Entry>,
    /// `Dropped:` from the totals: events the table had no room for.
    pub dropped: u64,
}

impl Hist {
    /// Sum of `value` over entries whose name satisfies `keep`.
    pub fn sum(&self, value: &str, keep: impl Fn(&str) -> bool) -> u64 {
        self.entries.iter().filter(|e| keep(&e.name)).filter_map(|e| e.value(value)).sum()
    }
}

pub fn parse(text: &str) -> Result<Hist> {
    let mut h = Hist::default();
    let mut saw_totals = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix('{') {
            h.entries.push(parse_entry(rest).with_context(|| format!("hist line {}: `{line}`", n + 1))?);
        } else if let Some(v) = line.strip_prefix("Dropped:") {
            h.dropped = v.trim().parse().with_context(|| format!("hist line {}: bad Dropped count", n + 1))?;
        } else if line.starts_with("Totals:") {
            saw_totals = true;
        }
    }
    if !saw_totals {
        bail!("hist has no `Totals:` section (truncated or not a hist file)");
    }
    Ok(h)
}

fn parse_entry(rest: &str) -> Result<Entry> {
    let (key, vals) = rest.split_once('}').context("no closing `}`")?;
    let (_field, key) = key.split_once(':').context("key has no `field:`")?;
    let key = key.trim();
    let (name, pid) = match key.rsplit_once('[') {
        Some((name, pid)) => {
            let pid = pid.trim_end_matches(']').trim().parse().context("bad pid in `[...]`")?;
            (name.trim().to_string(), Some(pid))
        }
        None => (key.to_string(), None),
    };
    let mut values = vec![];
    let mut words = vals.split_whitespace();
    while let Some(w) = words.next() {
        let vname = w.strip_suffix(':').with_context(|| format!("expected `name:`, got `{w}`"))?;
        let v = words.next().with_context(|| format!("`{vname}:` has no value"))?;
        values.push((vname.to_string(), v.parse().with_context(|| format!("`{vname}` value `{v}` is not a number"))?));
    }
    if values.is_empty() {
        bail!("entry has no values");
    }
    Ok(Entry { name, pid, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS: &str = "# event histogram
#
# trigger info: hist:keys=common_pid.execname:vals=hitcount:sort=hitcount:size=2048 [active]
#

{ common_pid: init            [       153] } hitcount:          7
{ common_pid: eval-bench      [       133] } hitcount:         20
{ common_pid: eval-bench      [       138] } hitcount:         22
{ common_pid: init            [         1] } hitcount:         54

Totals:
    Hits: 103
    Entries: 4
    Dropped: 0
";

    const RUN: &str = "# event histogram
{ comm: kworker/u2:3                                       } hitcount:          3  runtime:    1182056
{ comm: jbd2/nvme0n1-8                                     } hitcount:        118  runtime:   22883627
{ comm: eval-bench                                         } hitcount:        103  runtime:   57887841

Totals:
    Hits: 224
    Entries: 3
    Dropped: 2
";

    #[test]
    fn sums_syscalls_of_one_program_over_its_threads() {
        let h = parse(SYS).unwrap();
        assert_eq!(h.entries.len(), 4);
        assert_eq!(h.entries[1].pid, Some(133));
        assert_eq!(h.sum("hitcount", |n| n == "eval-bench"), 42);
        assert_eq!(h.sum("hitcount", |_| true), 103);
    }

    #[test]
    fn reads_comm_keys_with_spaces_and_several_values() {
        let h = parse(RUN).unwrap();
        assert_eq!(h.entries[1].name, "jbd2/nvme0n1-8");
        assert_eq!(h.entries[1].pid, None);
        assert_eq!(h.entries[2].value("runtime"), Some(57887841));
        assert_eq!(h.sum("runtime", |n| n != "eval-bench"), 1182056 + 22883627);
        assert_eq!(h.dropped, 2);
    }

    #[test]
    fn rejects_truncated_and_malformed() {
        assert!(parse("{ comm: x } hitcount: 3\n").is_err(), "no totals");
        let bad = "{ comm: x } hitcount: three\nTotals:\n";
        assert!(format!("{:#}", parse(bad).unwrap_err()).contains("three"));
        assert!(parse("{ comm x } hitcount: 3\nTotals:\n").is_err());
    }
}
