//! virtio-drivers on the exokernel.
//!
//! A userspace driver process holds a virtio device's BAR (moved to it by
//! init, which keeps the PCI configuration space) and its own frames,
//! mapped into the device's I/O address space by itself. This crate turns
//! those two grants into what `virtio-drivers` (pinned at 0.13.0) wants:
//!
//! - [`transport::ModernTransport`]: the virtio-pci modern transport over
//!   the BAR and the structure layout init found (no configuration space
//!   needed, unlike `virtio_drivers`' `PciTransport`), negotiating
//!   VIRTIO_F_ACCESS_PLATFORM;
//! - [`hal::ExoHal`]: the `Hal`, allocating from a pool of the driver's
//!   device-mapped frames, sharing pool buffers in place and bouncing the
//!   rest;
//! - [`blk::Disk`]: `VirtIOBlk` with checked requests, bounded waits and
//!   named errors.
//!
//! The register protocol and the pool logic are generic and tested on the
//! host (`tests/` runs `VirtIOBlk` end to end against a fake device);
//! The exokernel runtime (`exo_rt::virtio`) binds them to its MMIO windows. The
//! `unsafe` of the driver stack is here (in `hal`), so driver programs
//! stay `#![forbid(unsafe_code)]`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod blk;
pub mod hal;
pub mod pool;
pub mod regs;
pub mod transport;

pub use blk::{Disk, DiskError};
pub use hal::{DmaBuffer, DmaError, DmaRegion, DmaStats, ExoHal};
pub use regs::Registers;
pub use transport::{ModernTransport, PciLayout, TransportError, TransportStatus};
/// The pinned `virtio-drivers`, so drivers use exactly the version the Hal
/// implements.
pub use virtio_drivers;
