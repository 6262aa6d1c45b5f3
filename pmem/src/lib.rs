//! Persistence primitives for byte-addressable persistent memory.
//!
//! * [`Persist`]: the interface every persistent region offers: make a byte
//!   range durable (`flush`, i.e. write it back towards the persistence
//!   domain) and order it (`fence`: every flush issued before it is durable
//!   when it returns).
//! * [`cpu`]: the x86_64 implementation, choosing `clwb`, else `clflushopt`,
//!   else `clflush` at run time by CPUID, with `sfence`; and a non-temporal
//!   copy for bulk writes. The only `unsafe` code of the crate lives there
//!   and in [`linux`].
//! * [`sim`]: a simulated persistent memory for crash tests. It tracks every
//!   cache line that was stored, flushed and fenced, and produces crash
//!   images in which unflushed lines are lost or survive at random (with
//!   8-byte atomicity, nothing larger).
//! * [`pmr`]: the NVMe Persistent Memory Region registers (QEMU
//!   `-device nvme,pmrdev=`). (The ACPI NFIT, which describes NVDIMMs, is
//!   parsed by the kernel's `firmware` crate, allocation-free.)
//! * `linux` (feature `std`): a file mapped with `mmap`, persisted with
//!   `MAP_SYNC` + CPU flushes where the file system is DAX, else `msync`.
#![cfg_attr(not(any(test, feature = "std")), no_std)]

extern crate alloc;

pub mod cpu;
#[cfg(feature = "std")]
pub mod linux;
pub mod pmr;
pub mod sim;

pub use sim::{CrashTrace, SimPmem};

/// Size of a CPU cache line: the unit in which stores reach persistent memory.
pub const CACHE_LINE: usize = 64;

/// A region of persistent memory that can be made durable piecewise.
///
/// Offsets are relative to the start of the region. `flush` may return
/// before the data is durable; only a following `fence` guarantees it.
pub trait Persist {
    /// Start writing back `len` bytes at `offset` to the persistence domain.
    fn flush(&mut self, offset: usize, len: usize);
    /// Wait until every range flushed before this call is durable, and
    /// order it before every later store.
    fn fence(&mut self);
}
