//! libdb: an embedded, transactional, ordered key-value store that runs
//! directly on a mapped region — persistent memory (flush + fence) or a
//! block device (its own write-back and device flushes) — and manages its
//! own layout, caching and checkpointing. See `README.md` for the API and
//! `DESIGN.md` for the layout and the crash-safety argument.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

extern crate alloc;

mod btree;
mod cache;
pub mod checksum;
mod db;
mod engine;
pub mod error;
#[cfg(feature = "std")]
pub mod host;
mod leafindex;
mod lock;
pub mod log;
mod overlay;
pub mod page;
mod recovery;
pub mod sim;
pub mod storage;

pub use db::{Db, Durability, Entry, Options, Range, ReadTxn, Stats, WriteTxn, MAX_VALUE};
pub use error::{Corruption, Error, IoError};
pub use page::{MAX_KEY, PAGE_SIZE};
pub use storage::{BlockDevice, BlockStorage, IoStats, MemBlockDevice, PmemRegion, PmemStorage, Storage};
