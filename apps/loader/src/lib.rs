//! Loading programs at boot: the boot image archive and ELF load plans.
//!
//! - [`bootimage`]: the one-file archive QEMU hands the kernel as the PVH
//!   initrd, holding init and the programs it starts. `xtask` builds it;
//!   init parses it.
//! - [`elf`]: validates a statically linked x86_64 ELF program against this
//!   OS's rules and turns it into a [`elf::LoadPlan`] that init follows page
//!   by page.
//!
//! Both parsers take untrusted bytes and return a named error for anything
//! malformed; neither panics on any input (a bounded fuzz test checks this).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bootimage;
pub mod elf;
mod le;
