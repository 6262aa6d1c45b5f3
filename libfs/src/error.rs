//! Errors. Each names the object it is about: a path, an inode, or the
//! on-media structure and its byte offset.

use alloc::string::String;
use core::fmt;

pub type Result<T> = core::result::Result<T, Error>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No such file or directory.
    NotFound(String),
    /// The name is already taken.
    Exists(String),
    /// A directory that must be empty is not.
    NotEmpty(String),
    /// A file operation on a directory.
    IsDir(String),
    /// A path component (or a directory operation's target) is not a directory.
    NotDir(String),
    /// A name longer than 255 bytes.
    NameTooLong(String),
    /// Empty name, `.`/`..`, NUL, renaming a directory into itself, …
    Invalid(String),
    /// A write through a read-only handle, removing the root, …
    Permission(String),
    /// The medium (data pages, log or checkpoint area) is full.
    NoSpace(&'static str),
    /// On-media metadata failed verification: `what` is wrong at byte `at`.
    Corrupt { what: String, at: u64 },
    /// The medium failed.
    Io { offset: u64, error: libdb::IoError },
    /// An earlier I/O error left what is on the medium unknown: every
    /// change is refused until the file system is mounted again (which
    /// recovers the last commit).
    Poisoned,
}

impl Error {
    pub(crate) fn corrupt(what: impl Into<String>, at: u64) -> Error {
        Error::Corrupt { what: what.into(), at }
    }
}

impl From<libdb::Error> for Error {
    fn from(e: libdb::Error) -> Error {
        match e {
            libdb::Error::Io { offset, error } => Error::Io { offset, error },
            // Storage only returns I/O errors; keep anything else visible.
            other => Error::Corrupt { what: alloc::format!("medium: {other:?}"), at: 0 },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound(p) => write!(f, "{p}: no such file or directory"),
            Error::Exists(p) => write!(f, "{p}: already exists"),
            Error::NotEmpty(p) => write!(f, "{p}: directory not empty"),
            Error::IsDir(p) => write!(f, "{p}: is a directory"),
            Error::NotDir(p) => write!(f, "{p}: not a directory"),
            Error::NameTooLong(p) => write!(f, "{p}: name longer than 255 bytes"),
            Error::Invalid(p) => write!(f, "{p}: invalid argument"),
            Error::Permission(p) => write!(f, "{p}: permission denied"),
            Error::NoSpace(what) => write!(f, "no space left in the {what}"),
            Error::Corrupt { what, at } => write!(f, "corrupt {what} at byte {at:#x}"),
            Error::Io { offset, error } => write!(f, "I/O error at byte {offset:#x}: {error:?}"),
            Error::Poisoned => write!(f, "an earlier I/O error: remount to recover the last commit"),
        }
    }
}
