//! The file service: how a client asks `fsd` for files by name and gets
//! them as pages mapped into its address space (see `libfs/DESIGN.md`,
//! "File service and sharing").
//!
//! * [`wire`]: the one definition of the channel page, the requests and
//!   replies, and the server-side validation of every field a client wrote;
//! * [`service`]: the server's logic over a mounted libfs, generic over
//!   the page-table side ([`service::Mapper`]), so it runs on the host;
//! * [`owners`]: who owns which inode (libfs keeps permission bits only);
//! * [`client`]: the client's end of a channel;
//! * [`shell`]: the file commands of init's shell (parsing, formatting).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod client;
pub mod owners;
pub mod service;
pub mod shell;
pub mod wire;

pub use service::{Counts, MapError, Mapper, Service};
pub use wire::{Reply, Request, Status};
