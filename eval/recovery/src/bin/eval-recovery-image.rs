//! `eval-recovery-image base <nvme|pmem> <size MiB> <medium MiB> <path>`
//! and `eval-recovery-image tail <nvme|pmem> <keys> <tail records> <medium
//! MiB> <path>`: build the media `cargo xtask eval --recovery` boots
//! (`eval_recovery`). Prints one line, `keys=N tail_records=T
//! db_pages=P generation=G`, which xtask reads.

use anyhow::{bail, Context, Result};

fn num(s: Option<&String>, what: &str) -> Result<u64> {
    let s = s.with_context(|| format!("missing <{what}>"))?;
    s.parse().with_context(|| format!("<{what}> {s:?} is not a number"))
}

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: eval-recovery-image base <nvme|pmem> <size MiB> <medium MiB> <path> | tail <nvme|pmem> <keys> <tail records> <medium MiB> <path>";
    let b = match a.first().map(String::as_str) {
        Some("base") if a.len() == 5 => {
            let bytes = num(a.get(3), "medium MiB")? << 20;
            eval_recovery::build_base(&a[1], a[4].as_ref(), num(a.get(2), "size MiB")?, bytes)?
        }
        Some("tail") if a.len() == 6 => {
            let bytes = num(a.get(4), "medium MiB")? << 20;
            eval_recovery::add_tail(
                &a[1],
                a[5].as_ref(),
                bytes,
                num(a.get(2), "keys")?,
                num(a.get(3), "tail records")?,
            )?
        }
        _ => bail!("{usage}"),
    };
    println!("keys={} tail_records={} db_pages={} generation={}", b.keys, b.tail_records, b.db_pages, b.generation);
    Ok(())
}
