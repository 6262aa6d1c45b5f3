//! The bridge from this crate's safe [`ConfigSpace`] to `pci_types`'
//! [`ConfigRegionAccess`].
//!
//! `pci_types` 0.10.1 declares its access methods `unsafe fn` with the
//! precondition "`address` and `offset` must be valid for PCI reads/writes".
//! The only `unsafe` in this crate is the implementation of those two
//! methods below; no unsafe operation happens inside them. Every view here
//! accepts *any* address and offset (offsets are masked to a dword, offsets
//! past 4 KiB read as all ones and are not written), and it forwards to a
//! [`ConfigSpace`], a safe trait whose implementations must accept any
//! input too (the kernel's is a bounds-checked ECAM window that answers all
//! ones outside the MCFG bus range). So pci_types' precondition holds for
//! every call it can make, and the rest of the crate stays safe code.

use crate::{Address, ConfigSpace};
use core::cell::RefCell;
use pci_types::{ConfigRegionAccess, PciAddress};

/// Size of one function's configuration space (PCI Express).
pub(crate) const CONFIG_SPACE_LEN: u16 = 4096;

/// `at` as pci_types' address, or `None` if it is not a real PCI address:
/// `PciAddress::new` panics on a device >= 32 or a function >= 8, and our
/// `Address` has public fields anyone can fill in.
pub(crate) fn to_pci(at: Address) -> Option<PciAddress> {
    (at.device < 32 && at.function < 8).then(|| PciAddress::new(at.segment, at.bus, at.device, at.function))
}

pub(crate) fn from_pci(a: PciAddress) -> Address {
    Address::new(a.segment(), a.bus(), a.device(), a.function())
}

/// The dword containing `offset` (capability pointers' low two bits are
/// reserved and must be ignored, PCI 3.0 §6.7), or all ones past 4 KiB.
pub(crate) fn read_dword(cfg: &impl ConfigSpace, at: Address, offset: u16) -> u32 {
    if offset >= CONFIG_SPACE_LEN {
        return u32::MAX;
    }
    cfg.read32(at, offset & !3)
}

/// What a view does with pci_types' reads and writes, as safe methods.
pub(crate) trait View {
    fn read(&self, at: Address, offset: u16) -> u32;
    fn write(&self, at: Address, offset: u16, value: u32);
}

/// A view of configuration space handed to pci_types.
pub(crate) struct Access<V>(pub V);

#[allow(unsafe_code)]
impl<V: View> ConfigRegionAccess for Access<V> {
    // SAFETY (why implementing this `unsafe fn` is sound): the precondition
    // pci_types places on callers (a valid address and offset) is one this
    // implementation does not need: `View::read` is safe and accepts every
    // address and offset (see the module comment). Nothing unsafe runs here.
    unsafe fn read(&self, address: PciAddress, offset: u16) -> u32 {
        self.0.read(from_pci(address), offset)
    }

    // SAFETY: as for `read`; `View::write` is safe for every input.
    unsafe fn write(&self, address: PciAddress, offset: u16, value: u32) {
        self.0.write(from_pci(address), offset, value)
    }
}

/// A read-only view, for enumeration and header reads. The pci_types
/// accessors it is passed to never write; if one did, the write is dropped
/// rather than performed, so a discovery walk can never change a device.
pub(crate) struct ReadOnly<'a, C>(pub &'a C);

impl<C: ConfigSpace> View for ReadOnly<'_, C> {
    fn read(&self, at: Address, offset: u16) -> u32 {
        read_dword(self.0, at, offset)
    }
    fn write(&self, _at: Address, _offset: u16, _value: u32) {}
}

/// A writable view, for BAR sizing. pci_types writes through `&self`, our
/// trait through `&mut self`: the `RefCell` bridges the two. Borrows last
/// for one call and pci_types never re-enters, so a borrow cannot fail; if
/// it somehow did, the read answers all ones and the write is dropped
/// instead of panicking.
///
/// `pinned` holds a BAR register whose read-only flag bits (0..3) we read
/// before handing the BAR to pci_types: its reads report those bits as
/// first read. A conforming device cannot change them; a device that did
/// could otherwise steer pci_types into its `panic!` on a reserved memory
/// type after we had checked the type.
pub(crate) struct ReadWrite<'a, C> {
    cfg: RefCell<&'a mut C>,
    pinned: Option<(Address, u16, u32)>,
}

impl<'a, C: ConfigSpace> ReadWrite<'a, C> {
    pub(crate) fn new(cfg: &'a mut C) -> Self {
        ReadWrite { cfg: RefCell::new(cfg), pinned: None }
    }
    pub(crate) fn pin_flags(&mut self, at: Address, offset: u16, flags: u32) {
        self.pinned = Some((at, offset, flags & 0xf));
    }
}

impl<C: ConfigSpace> View for ReadWrite<'_, C> {
    fn read(&self, at: Address, offset: u16) -> u32 {
        let Ok(cfg) = self.cfg.try_borrow() else { return u32::MAX };
        let value = read_dword(&**cfg, at, offset);
        match self.pinned {
            Some((p, o, flags)) if p == at && o == offset & !3 => (value & !0xf) | flags,
            _ => value,
        }
    }
    fn write(&self, at: Address, offset: u16, value: u32) {
        if offset >= CONFIG_SPACE_LEN {
            return;
        }
        if let Ok(mut cfg) = self.cfg.try_borrow_mut() {
            cfg.write32(at, offset & !3, value)
        }
    }
}
