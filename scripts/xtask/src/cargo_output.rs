//! Reading `cargo test` (libtest) output: totals from the `test result:`
//! lines of every test binary, and the names of failing tests.

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    /// Test binaries that reported a result line.
    pub binaries: usize,
    /// Of those, how many reported `test result: FAILED`.
    pub failed_binaries: usize,
    pub failing: Vec<String>,
}

/// `N <word>` inside a result line such as
/// `test result: FAILED. 3 passed; 1 failed; 0 ignored; ...`.
fn count(result_line: &str, word: &str) -> usize {
    result_line
        .split([';', '.'])
        .filter_map(|part| {
            let mut it = part.split_whitespace();
            let n = it.next()?.parse().ok()?;
            (it.next()? == word).then_some(n)
        })
        .next()
        .unwrap_or(0)
}

pub fn parse(stdout: &str) -> Summary {
    let mut s = Summary::default();
    for line in stdout.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("test result: ") {
            s.binaries += 1;
            s.failed_binaries += usize::from(rest.starts_with("FAILED"));
            s.passed += count(rest, "passed");
            s.failed += count(rest, "failed");
            s.ignored += count(rest, "ignored");
        } else if let Some(name) = line.strip_prefix("test ").and_then(|r| r.strip_suffix(" ... FAILED")) {
            s.failing.push(name.to_string());
        }
    }
    s
}

/// The `failures:` detail blocks (`---- name stdout ----` ... ) to show the
/// developer, without the rest of the noise.
pub fn failure_details(stdout: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in stdout.lines() {
        if line.starts_with("---- ") && line.ends_with(" ----") {
            inside = true;
        } else if line == "failures:" || line.starts_with("test result: ") {
            inside = false;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Targets cargo reports as failed outside libtest's own lines: crates that
/// did not compile (`error: could not compile ...`) and the closing
/// `error: N target(s) failed:` list of `--no-fail-fast` (e.g. a doctest
/// build failure or a crashed test binary).
pub fn failed_targets(cargo_stderr: &str) -> Vec<String> {
    let mut out = vec![];
    let mut inside = false;
    for line in cargo_stderr.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("error: could not compile ") {
            // "`nvme` (lib test) due to 5 previous errors; ..."
            let what = rest.split(" due to").next().unwrap_or(rest);
            out.push(format!("{} (compile error)", what.replace('`', "")));
            inside = false;
        } else if t.starts_with("error: ") && (t.ends_with(" target failed:") || t.ends_with(" targets failed:")) {
            inside = true;
        } else if inside {
            match t.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
                Some(target) => out.push(target.to_string()),
                None => inside = false,
            }
        }
    }
    out
}

/// The reasons tests give for skipping themselves (`SKIPPED ...` lines on
/// either stream, e.g. the FUSE tests where FUSE is unavailable), to be
/// repeated in the summary rather than lost in the scroll.
pub fn skipped(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| l.starts_with("SKIPPED ")).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_are_found() {
        let out = "running 1 test\nSKIPPED a pass (3 tests): no device\ntest x ... ok\n";
        assert_eq!(skipped(out), ["SKIPPED a pass (3 tests): no device"]);
        assert!(skipped("test skipped_thing ... ok\n").is_empty());
    }

    const OUT: &str = "\
running 3 tests
test walk::maps ... ok
test walk::rejects_overlap ... FAILED
test doc_only ... ignored

failures:

---- walk::rejects_overlap stdout ----
thread 'walk::rejects_overlap' panicked at fake/src/walk.rs:10:5:
assertion failed: r.is_err()

failures:
    walk::rejects_overlap

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s

running 2 tests
test a ... ok
test b ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests fake

running 1 test
test fake/src/lib.rs - Table (line 12) ... FAILED
test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s
";

    #[test]
    fn sums_every_binary() {
        let s = parse(OUT);
        assert_eq!((s.passed, s.failed, s.ignored, s.binaries, s.failed_binaries), (3, 2, 1, 4, 2));
        assert_eq!(s.failing, vec!["walk::rejects_overlap", "fake/src/lib.rs - Table (line 12)"]);
    }

    #[test]
    fn details_keep_only_failure_blocks() {
        let d = failure_details(OUT);
        assert!(d.starts_with("---- walk::rejects_overlap stdout ----\n"));
        assert!(d.contains("assertion failed: r.is_err()"));
        assert!(!d.contains("test a ... ok"));
    }

    #[test]
    fn failed_targets_from_cargo_stderr() {
        let err = "error: doctest failed, to rerun pass `-p nvme --doc`\n\
                   note: test exited abnormally\n\
                   error: 2 targets failed:\n    `-p nvme --doc`\n    `-p libdb --lib`\n";
        assert_eq!(failed_targets(err), vec!["-p nvme --doc", "-p libdb --lib"]);
        assert_eq!(failed_targets("error: 1 target failed:\n    `-p x --lib`\nwarning: y\n"), vec!["-p x --lib"]);
        assert_eq!(
            failed_targets("error: could not compile `nvme` (lib test) due to 5 previous errors; 1 warning emitted\n"),
            vec!["nvme (lib test) (compile error)"]
        );
        assert!(failed_targets("error: test failed, to rerun pass `-p x --lib`").is_empty());
    }

    #[test]
    fn empty_output_is_zero() {
        assert_eq!(parse(""), Summary::default());
    }
}
