//! Errors. Every corruption names the page and what was wrong with it.

use core::fmt;

/// An error reported by a storage medium.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// The access lies beyond the end of the medium.
    OutOfRange,
    /// The access is not aligned to the device's block size.
    Unaligned,
    /// The device or operating system failed (errno / device status code).
    Device(i32),
}

/// What was wrong with a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The stored CRC-32 does not match the contents.
    Checksum { stored: u32, computed: u32 },
    /// The page says it is another page (a misdirected or stale write).
    WrongPageNumber { found: u64 },
    /// The page is valid in itself but not the version its parent
    /// references (the parent pins the child's checksum): a lost or
    /// misdirected write left an older version of the page in place.
    Stale { expected_checksum: u32, found_checksum: u32 },
    /// The page is not of the kind the pointer to it expects.
    WrongKind { expected: &'static str, found: u8 },
    /// The page was written after the tree that points at it (a stale
    /// pointer to a page that was reused).
    TooNew { page_gen: u64, parent_gen: u64 },
    /// A pointer in the page leads outside the database.
    BadPointer { pointer: u64 },
    /// The page's contents are inconsistent (explained).
    Malformed(&'static str),
    /// The tree is deeper than any valid tree can be (a cycle).
    TooDeep,
}

/// Errors returned by the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Reading or writing the medium failed at byte `offset`.
    Io {
        offset: u64,
        error: IoError,
    },
    /// A page failed verification.
    Corrupt {
        page: u64,
        what: Corruption,
    },
    /// Neither meta page (0 and 1) is valid: not a database, or both
    /// copies of the root pointer are damaged.
    NoValidMeta {
        page0: Corruption,
        page1: Corruption,
    },
    /// The medium is shorter than the database it holds.
    Truncated {
        needed_bytes: u64,
        medium_bytes: u64,
    },
    /// The medium is too small for the database or for `create`. Nothing
    /// of the call that returned it was written or applied.
    NoSpace,
    /// No space because a read transaction on snapshot generation
    /// `snapshot_generation` (the oldest alive, see `ReadTxn::generation`)
    /// keeps `pinned_pages` freed pages from reuse. Nothing of the call was
    /// written or applied; end the reader and retry.
    ReaderPinsSpace {
        snapshot_generation: u64,
        pinned_pages: u64,
    },
    /// The database was opened read-only (`Db::open_read_only`).
    ReadOnly,
    KeyTooLarge {
        len: usize,
        max: usize,
    },
    ValueTooLarge {
        len: usize,
        max: usize,
    },
    EmptyKey,
    /// A write transaction is already open (one writer at a time).
    WriterActive,
    /// An earlier I/O error left durability unknown; reopen the database.
    Poisoned,
    InvalidOptions(&'static str),
    /// The medium writes in units (its block size) that do not divide
    /// libdb's 4096-byte page: libdb would have to write less than a
    /// block, which such a device cannot do. Refused before any write.
    UnsupportedBlockSize {
        block_size: usize,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Checksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            Corruption::WrongPageNumber { found } => write!(f, "header names page {found}"),
            Corruption::Stale { expected_checksum, found_checksum } => write!(
                f,
                "stale page: its parent references checksum {expected_checksum:#010x}, the page has {found_checksum:#010x} (lost or misdirected write)"
            ),
            Corruption::WrongKind { expected, found } => {
                write!(f, "expected a {expected} page, found kind {found}")
            }
            Corruption::TooNew { page_gen, parent_gen } => {
                write!(f, "written at generation {page_gen}, after its parent's generation {parent_gen}")
            }
            Corruption::BadPointer { pointer } => write!(f, "points to page {pointer}, outside the database"),
            Corruption::Malformed(what) => write!(f, "malformed: {what}"),
            Corruption::TooDeep => write!(f, "tree deeper than possible (cycle?)"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { offset, error } => write!(f, "I/O error at byte {offset}: {error:?}"),
            Error::Corrupt { page, what } => write!(f, "page {page}: {what}"),
            Error::NoValidMeta { page0, page1 } => {
                write!(f, "no valid meta page: page 0: {page0}; page 1: {page1}")
            }
            Error::Truncated { needed_bytes, medium_bytes } => write!(
                f,
                "medium truncated: the database needs {needed_bytes} bytes, the medium has {medium_bytes}"
            ),
            Error::NoSpace => write!(f, "no space left on the medium"),
            Error::ReaderPinsSpace { snapshot_generation, pinned_pages } => write!(
                f,
                "no space: a read transaction on snapshot generation {snapshot_generation} keeps {pinned_pages} freed pages from reuse; end it and retry"
            ),
            Error::ReadOnly => write!(f, "the database was opened read-only"),
            Error::KeyTooLarge { len, max } => write!(f, "key of {len} bytes exceeds {max}"),
            Error::ValueTooLarge { len, max } => write!(f, "value of {len} bytes exceeds {max}"),
            Error::EmptyKey => write!(f, "empty keys are not allowed"),
            Error::WriterActive => write!(f, "a write transaction is already open"),
            Error::Poisoned => write!(f, "an earlier I/O error left the database unusable; reopen it"),
            Error::InvalidOptions(what) => write!(f, "invalid options: {what}"),
            Error::UnsupportedBlockSize { block_size } => write!(
                f,
                "the medium's {block_size}-byte blocks do not divide libdb's 4096-byte pages (block sizes 1..=4096 that divide 4096 are supported)"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

pub(crate) fn corrupt(page: u64, what: Corruption) -> Error {
    Error::Corrupt { page, what }
}
