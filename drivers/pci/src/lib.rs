//! PCI discovery without hardware access: enumeration across buses and
//! bridges, BAR sizing and capability walks, over a [`ConfigSpace`] the
//! caller implements (the kernel over the ECAM window MCFG gives).
//!
//! The register decoding is the [`pci_types`] crate's (pinned at 0.10.1):
//! its `PciHeader` (ids, class, header type, multi-function bit),
//! `PciPciBridgeHeader` (secondary/subordinate bus), `EndpointHeader` (BARs
//! and their sizing, the capability pointer) and its capability iterator
//! with the MSI and MSI-X parsers. This crate adds what pci_types does not
//! cover, each marked where it is done:
//! - guards that make its walks safe on device-controlled input (its
//!   capability iterator has no loop bound; its BAR sizing panics on a
//!   reserved memory type and overflows a shift on BARs without address
//!   bits): modules `capabilities` and `bar`;
//! - I/O BAR sizes (pci_types reports only the port);
//! - the PCI Express extended-capability list and the SR-IOV capability
//!   (TotalVFs/NumVFs, VF offset and stride, VF BARs, enabling VFs):
//!   module `sriov`; placing unassigned VF BARs in a bridge window:
//!   module `vf_place`;
//! - the PCI Express capability's port type and MSI-X helpers for init.
//!
//! Every walk is bounded: a capability list that loops or points into the
//! header, a bridge whose secondary bus points back up the tree, or a
//! function that reads all ones ends the walk with a result saying so
//! instead of hanging or panicking (configuration space is
//! device-controlled input).
#![cfg_attr(not(test), no_std)]
// pci_types' access trait has `unsafe fn`s: their implementation in
// `access` is the one place allowed to say `unsafe`.
#![deny(unsafe_code)]

mod access;
pub mod bar;
pub mod capabilities;
mod enumerate;
pub mod sriov;
pub mod vf_place;

pub use bar::{bars, size_bar, Bar, BarKind};
pub use capabilities::{
    capabilities, express_port_type, find_capability, find_capability_of_present, msix_entry,
    start_function_level_reset, walk_capabilities, walk_capabilities_of_present, Capability, CapabilityList, FlrError,
    ListEnd, Msi, MsiX,
};
pub use enumerate::{enumerate, Function};
/// The capability types [`Capability::parsed`] holds.
pub use pci_types::capability::PciCapability;
pub use sriov::{find_extended_capability, walk_extended_capabilities, EnableError, ExtendedCapability, SrIov};
pub use vf_place::{bridge_memory_window, place_vf_bars, PlaceError, Span};

/// A PCI function's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub segment: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Address {
    pub const fn new(segment: u16, bus: u8, device: u8, function: u8) -> Address {
        Address { segment, bus, device, function }
    }
    /// Offset of this function's 4 KiB configuration space in an ECAM
    /// window whose base corresponds to bus 0.
    pub const fn ecam_offset(&self) -> u64 {
        (self.bus as u64) << 20 | (self.device as u64) << 15 | (self.function as u64) << 12
    }
    /// The requester id (bus << 8 | device << 3 | function).
    pub const fn requester_id(&self) -> u16 {
        (self.bus as u16) << 8 | (self.device as u16) << 3 | self.function as u16
    }
}

/// Configuration space access (dword granular, offsets 0..4096). Safe on
/// purpose: an implementation must accept any address and offset, answering
/// all ones where nothing is (as hardware does for an absent function).
pub trait ConfigSpace {
    fn read32(&self, at: Address, offset: u16) -> u32;
    fn write32(&mut self, at: Address, offset: u16, value: u32);

    fn read16(&self, at: Address, offset: u16) -> u16 {
        (self.read32(at, offset & !3) >> ((offset & 2) * 8)) as u16
    }
    fn read8(&self, at: Address, offset: u16) -> u8 {
        (self.read32(at, offset & !3) >> ((offset & 3) * 8)) as u8
    }
}

pub mod reg {
    pub const VENDOR_DEVICE: u16 = 0x00;
    pub const COMMAND_STATUS: u16 = 0x04;
    pub const CLASS: u16 = 0x08;
    pub const HEADER_TYPE: u16 = 0x0e;
    pub const BAR0: u16 = 0x10;
    pub const BUS_NUMBERS: u16 = 0x18;
    pub const CAPABILITIES: u16 = 0x34;

    pub const COMMAND_IO: u16 = 1 << 0;
    pub const COMMAND_MEMORY: u16 = 1 << 1;
    pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
    pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
    pub const STATUS_CAPABILITIES: u16 = 1 << 4;
}

/// Capability ids.
pub mod cap_id {
    pub const MSI: u8 = 0x05;
    pub const PCI_EXPRESS: u8 = 0x10;
    pub const MSIX: u8 = 0x11;
    /// Extended capability ids (in the space from 0x100).
    pub const EXT_SRIOV: u16 = 0x0010;
}

#[cfg(test)]
mod tests;
