//! Intel VT-d for a stateless exokernel, minus the register accesses.
//!
//! * [`acpi`]: DMAR parsing with full validation (the `acpi` crate has no
//!   DMAR support; the kernel's `firmware` crate locates the table).
//! * [`vtd`]: the translation structures (root, context, second-level page
//!   tables) built over caller-provided memory and frames, a table walker
//!   that faults like the hardware, capability decoding, invalidation
//!   commands, fault-record decoding, interrupt remapping entries, and the
//!   register sequences of a unit over an abstract register window.
//!
//! Nothing here touches hardware: the kernel supplies [`vtd::PhysMem`] and
//! performs the MMIO reads and writes whose values this crate computes.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod vtd;
