//! QEMU's block-layer counters of a drive (`query-blockstats` over QMP):
//! a cross-check of the trace-event counts. The QMP client that asks for
//! them is xtask's (scripts/xtask/src/eval/linux/qmp.rs).

use anyhow::{bail, Context, Result};
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStats {
    pub wr_operations: u64,
    pub wr_bytes: u64,
    pub flush_operations: u64,
    pub rd_operations: u64,
}

impl BlockStats {
    /// Counter growth from `before` to `self` (counters only grow).
    pub fn since(&self, before: &BlockStats) -> Result<BlockStats> {
        let d = |a: u64, b: u64, what: &str| {
            a.checked_sub(b).with_context(|| format!("blockstats `{what}` went backwards ({b} -> {a})"))
        };
        Ok(BlockStats {
            wr_operations: d(self.wr_operations, before.wr_operations, "wr_operations")?,
            wr_bytes: d(self.wr_bytes, before.wr_bytes, "wr_bytes")?,
            flush_operations: d(self.flush_operations, before.flush_operations, "flush_operations")?,
            rd_operations: d(self.rd_operations, before.rd_operations, "rd_operations")?,
        })
    }
}

/// The stats of drive `device` in a `query-blockstats` reply.
pub fn parse_blockstats(reply: &Value, device: &str) -> Result<BlockStats> {
    if let Some(err) = reply.get("error") {
        bail!("QMP error: {err}");
    }
    let list = reply.get("return").and_then(Value::as_array).context("query-blockstats reply has no `return` list")?;
    let entry = list
        .iter()
        .find(|e| e.get("device").and_then(Value::as_str) == Some(device))
        .with_context(|| format!("no drive `{device}` in query-blockstats"))?;
    let stats = entry.get("stats").context("drive entry has no `stats`")?;
    let num = |k: &str| stats.get(k).and_then(Value::as_u64).with_context(|| format!("stats has no integer `{k}`"));
    Ok(BlockStats {
        wr_operations: num("wr_operations")?,
        wr_bytes: num("wr_bytes")?,
        flush_operations: num("flush_operations")?,
        rd_operations: num("rd_operations")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> Value {
        serde_json::from_str(
            r##"{"return": [
                {"device": "vblk", "stats": {"wr_operations": 9, "wr_bytes": 9, "flush_operations": 9, "rd_operations": 9}},
                {"device": "nvm", "node-name": "#block123", "stats": {"wr_operations": 12, "wr_bytes": 49152,
                 "flush_operations": 3, "rd_operations": 40, "rd_bytes": 1}}
            ]}"##,
        )
        .unwrap()
    }

    #[test]
    fn picks_the_named_drive() {
        let s = parse_blockstats(&reply(), "nvm").unwrap();
        assert_eq!(s, BlockStats { wr_operations: 12, wr_bytes: 49152, flush_operations: 3, rd_operations: 40 });
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert!(format!("{:#}", parse_blockstats(&reply(), "nope").unwrap_err()).contains("nope"));
        let err: Value = serde_json::from_str(r#"{"error": {"class": "GenericError", "desc": "x"}}"#).unwrap();
        assert!(parse_blockstats(&err, "nvm").is_err());
        let bad: Value =
            serde_json::from_str(r#"{"return": [{"device": "nvm", "stats": {"wr_operations": "1"}}]}"#).unwrap();
        assert!(format!("{:#}", parse_blockstats(&bad, "nvm").unwrap_err()).contains("wr_operations"));
    }

    #[test]
    fn deltas_refuse_to_go_backwards() {
        let a = BlockStats { wr_operations: 5, wr_bytes: 10, flush_operations: 1, rd_operations: 0 };
        let b = BlockStats { wr_operations: 7, wr_bytes: 30, flush_operations: 4, rd_operations: 2 };
        assert_eq!(
            b.since(&a).unwrap(),
            BlockStats { wr_operations: 2, wr_bytes: 20, flush_operations: 3, rd_operations: 2 }
        );
        assert!(a.since(&b).is_err());
    }
}
