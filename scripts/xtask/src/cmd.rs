//! Running external commands the Hermit way: every command is printed as
//! `$ prog args...` (shell-quoted, so it can be copied and re-run) before it
//! runs, and a failure names the command that failed.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// Quote one word for a POSIX shell, only when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command as a copy-pasteable shell line: the environment it sets
/// (`NAME=value`, after `env -u NAME` for each it removes), program and
/// arguments.
pub fn display(cmd: &Command) -> String {
    let mut words = vec![];
    let envs: Vec<_> = cmd.get_envs().collect();
    if envs.iter().any(|(_, v)| v.is_none()) {
        words.push("env".to_string());
        for (k, _) in envs.iter().filter(|(_, v)| v.is_none()) {
            words.push(format!("-u {}", shell_quote(&lossy(k))));
        }
    }
    for (k, v) in envs.iter().filter_map(|(k, v)| v.map(|v| (k, v))) {
        words.push(format!("{}={}", lossy(k), shell_quote(&lossy(v))));
    }
    words.push(shell_quote(&lossy(cmd.get_program())));
    words.extend(cmd.get_args().map(|a| shell_quote(&lossy(a))));
    words.join(" ")
}

fn lossy(s: &OsStr) -> String {
    s.to_string_lossy().into_owned()
}

/// Print `$ <command>` on stderr-free stdout so logs show what ran.
pub fn announce(cmd: &Command) {
    println!("$ {}", display(cmd));
}

/// Print and run a command with inherited stdio; error if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    announce(cmd);
    let status = cmd.status().with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Print and run a command, capturing its stdout (stderr is inherited so
/// progress and errors stay visible); error if it fails.
pub fn output(cmd: &mut Command) -> Result<String> {
    announce(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed ({})", display(cmd), out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", display(cmd)))
}

/// Whether `program` can be found on PATH (or is an existing path).
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote("-machine"), "-machine");
        assert_eq!(shell_quote("q35,nvdimm=on"), "q35,nvdimm=on");
        assert_eq!(shell_quote("demo batch"), "'demo batch'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn displays_program_and_args() {
        let mut c = Command::new("gdb");
        c.args(["kernel", "-ex", "target remote :1234"]);
        assert_eq!(display(&c), "gdb kernel -ex 'target remote :1234'");
        let mut c = Command::new("cargo");
        c.arg("build").env("RUSTFLAGS", "--cfg x").env_remove("CARGO_ENCODED_RUSTFLAGS");
        assert_eq!(display(&c), "env -u CARGO_ENCODED_RUSTFLAGS RUSTFLAGS='--cfg x' cargo build");
    }

    #[test]
    fn finds_sh_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("definitely-not-a-program-xtask"));
    }
}
