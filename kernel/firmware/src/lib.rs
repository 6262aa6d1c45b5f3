//! ACPI discovery for the kernel through the [`acpi`] crate, over a
//! bounds-checked view of physical memory.
//!
//! [`Platform::discover`] takes the RSDP's physical address (from the boot
//! information) and a [`PhysView`], and returns what the kernel needs:
//!
//! * the enabled CPUs and the local APIC address, from the MADT (parsed by
//!   `acpi::madt`);
//! * the PCI ECAM regions, from the MCFG (parsed by `acpi::mcfg`);
//! * the DMAR's bytes, located and checksummed through the crate's table
//!   lookup. The crate does not parse DMAR; `iommu::acpi::dmar` (zerocopy,
//!   host-fuzzed) does;
//! * the NFIT's bytes (persistent memory, e.g. QEMU's `-device nvdimm`),
//!   located and checksummed the same way; [`nfit`] parses them without
//!   allocating.
//!
//! The crate trusts the lengths in the tables: some corruptions make it
//! panic, loop forever or read past a table. The `precheck` module validates every
//! structure before the crate sees it (the module's doc lists each case),
//! and the [`AcpiHandler`](acpi::AcpiHandler) over [`PhysView`] never maps
//! outside the view. A bad RSDP or root table fails discovery; a bad MADT,
//! MCFG, DMAR or NFIT is an error in its own field of [`Platform`], so the kernel
//! boots without what that table describes. Errors name the table, its
//! address and what was wrong ([`FirmwareError`]).
//!
//! [`pmem_ranges`] then decides which NFIT persistent-memory ranges the
//! kernel may map into init (no overlap with RAM, the kernel, the boot
//! image or device registers; page aligned; within a size budget).
//!
//! [`window`] plans and builds the kernel's physical-memory window from the
//! boot memory map (RAM, ACPI memory and the ACPI tables' pages, never
//! holes), with 1 GiB, 2 MiB or 4 KiB pages.
//!
//! [`bootinfo`] reads what the loader handed over (PVH or multiboot2,
//! BIOS or UEFI); [`rsdp_scan`] finds the RSDP when the loader passed none.
//!
//! No heap: the crate is used with its default features off.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bootinfo;
mod error;
mod handler;
pub mod nfit;
mod platform;
pub mod pmem_ranges;
mod precheck;
pub mod rsdp_scan;
mod view;
pub mod window;

pub use error::{FirmwareError, Table};
pub use platform::{
    ApStartList, ApicIds, Cpus, EcamRegion, EcamRegions, Platform, Unreadable, MAX_APIC_IDS, MAX_ECAM_REGIONS,
    MAX_NOTED,
};
pub use view::{OutOfView, PhysView};
