//! libfs: a file system whose files are mapped regions.
//!
//! File data lives in whole 4 KiB pages at 4 KiB-aligned offsets of the
//! medium, so a mapping layer can map a file's pages straight into a
//! process (persistent memory) or demand-page them (NVMe); metadata is an
//! in-memory state made durable by a checksummed redo log and
//! checkpoints. See `DESIGN.md` for the format and the crash argument.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod alloc_map;
pub mod error;
mod file_storage;
pub mod format;
mod fs;
pub mod fsck;
mod medium;
pub mod pager;
pub mod state;
#[cfg(feature = "std")]
pub mod tools;

pub use error::{Error, Result};
pub use file_storage::{DbFile, FileStorage, OpenError, Run};
pub use format::{Kind, PAGE_SIZE};
pub use fs::{DirEntry, Extent, Fs, Geometry, Handle, OpenMode, Stat, MAX_FILE_SIZE, ROOT_INO};
pub use libdb::{BlockStorage, PmemStorage, Storage};
