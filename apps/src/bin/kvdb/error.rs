//! What can go wrong, by name. Each kind has its own exit code so that
//! init (and a person reading the log) can tell them apart.

use alloc::string::String;
use core::fmt;

#[derive(Debug)]
pub enum KvdbError {
    /// The parent gave no region for the medium (args words 3/4), or the
    /// range cannot be claimed.
    MissingRegion(String),
    /// The block service could not be reached or broke its protocol.
    Service(String),
    /// This process's own NVMe controller (`nvme-vf`) did not come up.
    Controller(String),
    /// The medium holds no valid database, or a damaged page.
    Corrupt(libdb::Error),
    /// The medium is full (the database or a write does not fit).
    Full(libdb::Error, String),
    /// Any other database error (I/O, poisoned handle, ...).
    Db(libdb::Error, String),
    /// The file system holding the database file (`file-*` media) failed:
    /// what was being done, and libfs's error (which names the object).
    Fs(String, libfs::Error),
    /// The database answered, but not what was committed.
    Mismatch(String),
    /// Bad arguments.
    Usage(String),
}

impl KvdbError {
    /// Exit code: 2 missing region, 3 corrupt, 4 full, 5 mismatch, 6
    /// service or own controller, 7 usage, 1 other database errors.
    pub fn code(&self) -> u32 {
        match self {
            KvdbError::MissingRegion(_) => 2,
            KvdbError::Corrupt(_) => 3,
            KvdbError::Full(..) => 4,
            KvdbError::Mismatch(_) => 5,
            KvdbError::Service(_) | KvdbError::Controller(_) => 6,
            KvdbError::Usage(_) => 7,
            KvdbError::Db(..) => 1,
            KvdbError::Fs(_, libfs::Error::Corrupt { .. }) => 3,
            KvdbError::Fs(_, libfs::Error::NoSpace(_)) => 4,
            KvdbError::Fs(..) => 1,
        }
    }

    /// Classify a database error; `context` says what was being done and,
    /// for I/O errors, what the transport reported.
    pub fn db(e: libdb::Error, context: String) -> KvdbError {
        use libdb::{Error, IoError};
        match e {
            Error::Corrupt { .. } | Error::NoValidMeta { .. } | Error::Truncated { .. } => KvdbError::Corrupt(e),
            Error::NoSpace | Error::ReaderPinsSpace { .. } | Error::Io { error: IoError::OutOfRange, .. } => {
                KvdbError::Full(e, context)
            }
            _ => KvdbError::Db(e, context),
        }
    }
}

impl fmt::Display for KvdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvdbError::MissingRegion(why) => write!(f, "missing region: {why}"),
            KvdbError::Service(why) => write!(f, "block service: {why}"),
            KvdbError::Controller(why) => write!(f, "own NVMe controller: {why}"),
            KvdbError::Corrupt(e) => write!(f, "corrupt database: {e}"),
            KvdbError::Full(e, ctx) => write!(f, "medium full while {ctx}: {e}"),
            KvdbError::Db(e, ctx) => write!(f, "database error while {ctx}: {e}{}", DeviceSaid(e)),
            KvdbError::Fs(ctx, e) => write!(f, "file system error while {ctx}: {e}"),
            KvdbError::Mismatch(why) => write!(f, "verification failed: {why}"),
            KvdbError::Usage(why) => write!(f, "usage: {why}"),
        }
    }
}

/// For an I/O error carrying an NVMe status (the block service passes the
/// controller's 15-bit status field through), the status by name.
struct DeviceSaid<'a>(&'a libdb::Error);

impl fmt::Display for DeviceSaid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let libdb::Error::Io { error: libdb::IoError::Device(code), .. } = self.0 {
            if let Ok(field) = u16::try_from(*code) {
                if let Err(e) = nvme::status::Status::from_field(field).result() {
                    return write!(f, " (the device said: {e})");
                }
            }
        }
        Ok(())
    }
}
