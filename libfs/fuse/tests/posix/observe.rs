//! What a case saw: one line per operation (its result or errno) or per
//! value looked at. The same case runs on the mount and on the reference
//! directory; their logs are compared line by line.

use std::fmt::Debug;
use std::io;
use std::os::unix::fs::MetadataExt;

#[derive(Default)]
pub struct Log {
    pub lines: Vec<String>,
}

impl Log {
    /// Records `what: ok` or `what: ERRNO`; gives back the value.
    pub fn res<T>(&mut self, what: &str, r: io::Result<T>) -> Option<T> {
        match r {
            Ok(v) => {
                self.lines.push(format!("{what}: ok"));
                Some(v)
            }
            Err(e) => {
                self.lines.push(format!("{what}: {}", errno_name(&e)));
                None
            }
        }
    }

    /// Records `what = value`.
    pub fn val(&mut self, what: &str, v: impl Debug) {
        self.lines.push(format!("{what} = {v:?}"));
    }

    /// Records what `stat` of a file shows that both file systems must
    /// agree on (not inode numbers, devices, or absolute times).
    pub fn stat(&mut self, what: &str, r: io::Result<std::fs::Metadata>) {
        match r {
            Ok(m) if m.is_dir() => self.lines.push(format!("stat {what}: dir mode={:o} nlink={}", m.mode(), m.nlink())),
            Ok(m) => self.lines.push(format!(
                "stat {what}: mode={:o} nlink={} size={} blocks={}",
                m.mode(),
                m.nlink(),
                m.size(),
                m.blocks()
            )),
            Err(e) => self.lines.push(format!("stat {what}: {}", errno_name(&e))),
        }
    }
}

/// `EEXIST` etc. for the errnos a file system returns; `errno N` else.
pub fn errno_name(e: &io::Error) -> String {
    let Some(n) = e.raw_os_error() else { return format!("error {e}") };
    let name = match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EILSEQ => "EILSEQ",
        _ => return format!("errno {n}"),
    };
    name.into()
}
