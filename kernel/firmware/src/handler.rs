//! The `acpi` crate's `AcpiHandler` over a [`PhysView`].
//!
//! `map_physical_region` cannot fail, so a request outside the view needs
//! an answer that is still sound: it gets a small block of zeros. Zeros
//! never match a signature ("RSD PTR ", "XSDT", "APIC", ...), so the crate
//! treats such a table as absent and moves on — which is what we want for
//! an XSDT entry pointing at nothing. The only requests the crate makes
//! without first reading a signature are for the RSDP and the root table,
//! and `precheck` has put both inside the view before the crate is called;
//! the only large requests (a whole table) come after a matching signature
//! was read from inside the view, and `precheck::survey` has put every
//! table the crate will map in full, under the signatures we look up,
//! inside the view too. So the zero block never has to stand in for more
//! than a header.

use crate::view::PhysView;
use acpi::{AcpiHandler, PhysicalMapping};
use core::ptr::NonNull;

/// The largest structure the crate may map outside the view: an `Rsdp` or
/// `SdtHeader` (36 bytes), or the fixed part of a MADT/MCFG (44 bytes).
const ZEROS_LEN: usize = 64;

/// Read-only zeros standing in for memory outside the view.
static ZEROS: [u8; ZEROS_LEN] = [0; ZEROS_LEN];

impl AcpiHandler for PhysView<'_> {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        // The crate makes a `&T` from the mapping, so `size_of::<T>()` bytes
        // must be readable even when it asks for fewer.
        let needed = size.max(core::mem::size_of::<T>());
        // Every type the crate maps in the calls we make is `repr(C, packed)`
        // (alignment 1); a view address need not be aligned for anything
        // more, so refuse to hand one out as such.
        assert_eq!(core::mem::align_of::<T>(), 1, "firmware: the acpi crate mapped an aligned type");
        let start = match self.pointer(physical_address as u64, needed as u64) {
            Ok(p) => p,
            Err(_) => {
                // Unreachable for tables: see the module comment. Getting
                // here with a larger request means `precheck` missed a case,
                // a bug in this crate, and stopping is the only sound answer.
                assert!(
                    needed <= ZEROS_LEN,
                    "firmware: the acpi crate mapped {needed} bytes at {physical_address:#x}, outside the view, \
                     past what precheck allows"
                );
                NonNull::from(&ZEROS).cast()
            }
        };
        // Unmapping is a no-op, so the handler stored in the mapping has
        // nothing to release.
        // The crate's table types are `repr(C, packed)`: any address is
        // aligned for them (asserted above).
        // SAFETY: `start` points at `needed >= size_of::<T>()` readable bytes
        // (in the view, or the static zeros) nothing writes while mapped.
        unsafe { PhysicalMapping::new(physical_address, start.cast::<T>(), size, needed, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {
        // The view maps nothing: it is all mapped already.
    }
}
