//! The file commands of init's serial shell (`ls`, `cat`, `write`,
//! `mkdir`, `rm`, `mv`, `stat`): parsing a command line and formatting
//! what the service answers. The part that talks to `fsd` and reads the
//! mapped pages is `initlib::fsshell`; this part is host-tested.

use crate::wire::Reply;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// A file command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ls(String),
    Cat(String),
    /// Replace the file's contents with the text (created if missing).
    Write(String, String),
    Mkdir(String),
    Rm(String),
    Mv(String, String),
    Stat(String),
}

/// The commands, for `help`.
pub const HELP: &str = "ls [PATH] | cat PATH | write PATH TEXT | mkdir PATH | rm PATH | mv FROM TO | stat PATH";

/// A path as typed: relative paths are taken from the root.
fn absolute(p: &str) -> String {
    if p.starts_with('/') {
        String::from(p)
    } else {
        format!("/{p}")
    }
}

/// `None` if the line is not a file command; otherwise the command, or
/// its usage if the arguments are wrong.
pub fn parse(line: &str) -> Option<Result<Command, String>> {
    let line = line.trim();
    let (cmd, rest) = match line.split_once(char::is_whitespace) {
        Some((c, r)) => (c, r.trim_start()),
        None => (line, ""),
    };
    let args: Vec<&str> = rest.split_whitespace().collect();
    let one = |make: fn(String) -> Command, usage: &str| match args.as_slice() {
        [p] => Ok(make(absolute(p))),
        _ => Err(format!("usage: {usage}")),
    };
    Some(match cmd {
        "ls" => match args.as_slice() {
            [] => Ok(Command::Ls("/".into())),
            [p] => Ok(Command::Ls(absolute(p))),
            _ => Err("usage: ls [PATH]".into()),
        },
        "cat" => one(Command::Cat, "cat PATH"),
        "mkdir" => one(Command::Mkdir, "mkdir PATH"),
        "rm" => one(Command::Rm, "rm PATH"),
        "stat" => one(Command::Stat, "stat PATH"),
        "mv" => match args.as_slice() {
            [a, b] => Ok(Command::Mv(absolute(a), absolute(b))),
            _ => Err("usage: mv FROM TO".into()),
        },
        "write" => match rest.split_once(char::is_whitespace) {
            Some((p, text)) if !p.is_empty() => Ok(Command::Write(absolute(p), String::from(text.trim_start()))),
            _ => Err("usage: write PATH TEXT".into()),
        },
        _ => return None,
    })
}

/// `d`/`-`, permission bits as `ls -l` shows them.
pub fn mode_string(kind: u8, mode: u16) -> String {
    let mut s = String::from(if kind == 2 { "d" } else { "-" });
    for shift in [6u16, 3, 0] {
        let b = mode >> shift & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// One `ls` line from a `Stat` reply.
pub fn ls_line(name: &str, st: &Reply) -> String {
    format!(
        "{} {:>5} {:>10} {name}{}",
        mode_string(st.kind, st.mode),
        st.owner,
        st.size,
        if st.kind == 2 { "/" } else { "" }
    )
}

/// `stat`'s answer.
pub fn stat_text(path: &str, st: &Reply) -> String {
    format!(
        "{path}: {}, inode {}, mode {:04o} ({}), owner uid {}, {} link(s), {} bytes in {} page(s)",
        if st.kind == 2 { "directory" } else { "file" },
        st.ino,
        st.mode,
        mode_string(st.kind, st.mode),
        st.owner,
        st.nlink,
        st.size,
        st.pages
    )
}

/// What `cat` prints of a file's bytes: the text (lossy UTF-8), cut at
/// `max` bytes with a note.
pub fn cat_text(bytes: &[u8], size: u64, max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut s = String::from_utf8_lossy(shown).into_owned();
    if (shown.len() as u64) < size {
        s.push_str(&format!("\n... ({} more bytes)", size - shown.len() as u64));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_commands_or_usage() {
        assert_eq!(parse("ls"), Some(Ok(Command::Ls("/".into()))));
        assert_eq!(parse("  ls   shared "), Some(Ok(Command::Ls("/shared".into()))));
        assert_eq!(parse("cat /a/b"), Some(Ok(Command::Cat("/a/b".into()))));
        assert_eq!(
            parse("write /notes hello  world"),
            Some(Ok(Command::Write("/notes".into(), "hello  world".into())))
        );
        assert_eq!(parse("write x"), Some(Err("usage: write PATH TEXT".into())));
        assert_eq!(parse("write"), Some(Err("usage: write PATH TEXT".into())));
        assert_eq!(parse("mv a /b"), Some(Ok(Command::Mv("/a".into(), "/b".into()))));
        assert_eq!(parse("mv a"), Some(Err("usage: mv FROM TO".into())));
        assert_eq!(parse("rm a b"), Some(Err("usage: rm PATH".into())));
        assert_eq!(parse("mkdir /d"), Some(Ok(Command::Mkdir("/d".into()))));
        assert_eq!(parse("stat /d"), Some(Ok(Command::Stat("/d".into()))));
        assert_eq!(parse("ps"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn answers_are_formatted_like_ls_and_stat() {
        let st = Reply { kind: 1, mode: 0o640, owner: 1000, size: 12, ino: 7, nlink: 1, pages: 1, ..Reply::default() };
        assert_eq!(mode_string(2, 0o755), "drwxr-xr-x");
        assert_eq!(ls_line("f", &st), "-rw-r-----  1000         12 f");
        assert_eq!(
            stat_text("/f", &st),
            "/f: file, inode 7, mode 0640 (-rw-r-----), owner uid 1000, 1 link(s), 12 bytes in 1 page(s)"
        );
        assert_eq!(cat_text(b"hello", 5, 100), "hello");
        assert_eq!(cat_text(b"hello", 5, 2), "he\n... (3 more bytes)");
        assert_eq!(cat_text(b"\xffok", 3, 10), "\u{fffd}ok");
    }
}
