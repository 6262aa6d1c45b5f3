//! Init's services, a library: the frame allocator, spawning programs from
//! the boot image, the root scheduler, device grants and interrupt routing,
//! persistent-memory grants, shared regions, SR-IOV bring-up and starting
//! the database on a medium. Two root programs use it: `init` (the system
//! a user boots: these services, the demonstration, the shell) and
//! `testinit` (the QEMU test scenarios, booted in its place by
//! `cargo xtask test`). Nothing here imports a scenario.
//!
//! Import graph (an arrow is "uses"; no circle):
//!
//! ```text
//! boot ──▶ devices ──▶ spawn ──▶ sched
//!   │         │          └─────▶ frames
//!   │         └────────────────▶ sched
//!   └─▶ frames, spawn, sched
//! regions ──▶ spawn, sched
//! pmem ──▶ spawn
//! sriov ──▶ devices, spawn, sched
//! kvdb ──▶ devices, pmem, regions, sriov, spawn, sched
//! drvrestart ──▶ kvdb, devices, regions, spawn, frames, sched
//! fsd ──▶ frames, pmem, spawn, sched        fsshell ──▶ fsd, sched
//! readscale ──▶ kvdb, pmem, spawn, sched
//! frames, spawn, sched, devices ──▶ logic (pure, host-tested)
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod logic;

#[cfg(exo_user)]
pub mod boot;
#[cfg(exo_user)]
pub mod devices;
#[cfg(exo_user)]
pub mod drvrestart;
#[cfg(exo_user)]
pub mod frames;
#[cfg(exo_user)]
pub mod fsd;
#[cfg(exo_user)]
pub mod fsshell;
#[cfg(exo_user)]
pub mod kvdb;
#[cfg(exo_user)]
pub mod pmem;
#[cfg(exo_user)]
pub mod readscale;
#[cfg(exo_user)]
pub mod regions;
#[cfg(exo_user)]
pub mod sched;
#[cfg(exo_user)]
pub mod showcase;
#[cfg(exo_user)]
pub mod spawn;
#[cfg(exo_user)]
pub mod sriov;
#[cfg(exo_user)]
pub mod upgrade;
