//! The guest-to-host protocol on the serial console: lines starting with
//! `@@` written by `eval/guest/init` (its header documents each one).
//! Everything else is ordinary console output (kernel messages, tools).

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Env(Vec<(String, String)>),
    Ready(usize),
    Done { row: usize, exit_code: i32 },
    HistSys(usize, String),
    HistRun(usize, String),
    Row(usize, String),
    Err(usize, String),
    Fail(usize, String),
    Dmesg(String),
    Fatal(String),
    End,
    Console(String),
}

fn row_and_rest(rest: &str) -> Result<(usize, String)> {
    let (n, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Ok((n.parse().with_context(|| format!("bad row number `{n}`"))?, text.to_string()))
}

/// Classify one console line (without its newline).
pub fn parse(line: &str) -> Result<Line> {
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(body) = line.strip_prefix("@@") else {
        return Ok(Line::Console(line.to_string()));
    };
    let (tag, rest) = body.split_once(' ').unwrap_or((body, ""));
    let with_row = |f: fn(usize, String) -> Line| -> Result<Line> {
        let (r, t) = row_and_rest(rest)?;
        Ok(f(r, t))
    };
    let parsed = match tag {
        "ENV" => Line::Env(
            rest.split_whitespace()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
        ),
        "READY" => Line::Ready(rest.trim().parse().with_context(|| format!("bad READY `{line}`"))?),
        "DONE" => {
            let mut w = rest.split_whitespace();
            let row = w.next().unwrap_or("").parse().with_context(|| format!("bad DONE `{line}`"))?;
            let exit_code = w.next().unwrap_or("").parse().with_context(|| format!("bad DONE exit code `{line}`"))?;
            Line::Done { row, exit_code }
        }
        "HIST-SYS" => with_row(Line::HistSys)?,
        "HIST-RUN" => with_row(Line::HistRun)?,
        "ROW" => with_row(Line::Row)?,
        "ERR" => with_row(Line::Err)?,
        "FAIL" => with_row(Line::Fail)?,
        "DMESG" => Line::Dmesg(rest.to_string()),
        "FATAL" => Line::Fatal(rest.to_string()),
        "END" => Line::End,
        _ => bail!("unknown guest message `{line}`"),
    };
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_message_kind() {
        assert_eq!(parse("@@READY 3\r").unwrap(), Line::Ready(3));
        assert_eq!(parse("@@DONE 3 0").unwrap(), Line::Done { row: 3, exit_code: 0 });
        assert_eq!(parse("@@DONE 4 127").unwrap(), Line::Done { row: 4, exit_code: 127 });
        assert_eq!(parse("@@ROW 2 sqlite,commit,100").unwrap(), Line::Row(2, "sqlite,commit,100".into()));
        assert_eq!(
            parse("@@HIST-SYS 2 { common_pid: x [ 1] } hitcount: 3").unwrap(),
            Line::HistSys(2, "{ common_pid: x [ 1] } hitcount: 3".into())
        );
        assert_eq!(parse("@@HIST-RUN 2 ").unwrap(), Line::HistRun(2, "".into()));
        assert_eq!(parse("@@FAIL 5 pmem-not-mounted").unwrap(), Line::Fail(5, "pmem-not-mounted".into()));
        assert_eq!(
            parse("@@ENV dax=none reason=mount-failed").unwrap(),
            Line::Env(vec![("dax".into(), "none".into()), ("reason".into(), "mount-failed".into())])
        );
        assert_eq!(parse("@@END").unwrap(), Line::End);
        assert_eq!(parse("[    4.1] nvme nvme0: 1/0/0").unwrap(), Line::Console("[    4.1] nvme nvme0: 1/0/0".into()));
    }

    #[test]
    fn the_devdax_report_has_keys_of_its_own() {
        let l = parse("@@ENV pmem_raw=devdax pmem_raw_seed=dax0.0 pmem_raw_dev=/dev/dax0.0 pmem_raw_align=2097152 pmem_raw_size=132120576\n").unwrap();
        let Line::Env(kv) = l else { panic!("{l:?}") };
        assert_eq!(kv[0], ("pmem_raw".to_string(), "devdax".to_string()));
        assert_eq!(kv[4], ("pmem_raw_size".to_string(), "132120576".to_string()));
        // Nothing that would shadow the fsdax setup's `dax=` / `reason=`.
        assert!(kv.iter().all(|(k, _)| k.starts_with("pmem_raw")));
    }

    #[test]
    fn rejects_garbled_messages() {
        assert!(parse("@@READY x").is_err());
        assert!(parse("@@DONE 3").is_err());
        assert!(parse("@@ROW abc def").is_err());
        assert!(parse("@@WHAT 1").is_err());
    }
}
