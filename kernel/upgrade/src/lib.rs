//! The rebootless kernel upgrade's formats, in one place.
//!
//! - [`image`]: the *upgrade image* — a kernel build's loadable segments,
//!   a checksum, and (inside the segments, written by the kernel build
//!   itself) a [`image::Stamp`] naming the handover version it speaks and
//!   its 64-bit upgrade entry. The running kernel checks an image with
//!   [`image::check`] before it touches anything; a bad image is refused
//!   with a named [`Refusal`].
//! - [`handover`]: the short, versioned list of facts the old kernel hands
//!   the new one (everything else — page tables, device tables, I/O page
//!   tables, interrupt remapping — stays where it is, in memory and in the
//!   hardware, and the new kernel adopts it as it finds it).
//! - [`slots`]: where kernels are loaded. Two physical slots: the running
//!   kernel never overwrites itself, an upgrade loads into the other slot.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "pack"))]
extern crate alloc;

pub mod handover;
pub mod image;
pub mod slots;

/// Why an upgrade was refused (the old kernel keeps running). The number
/// is what the kernel info page reports (`W_UPGRADE_LAST_RESULT`); 0 is
/// success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Refusal {
    /// Shorter than its header or than the length the header states.
    Truncated = 1,
    /// The first eight bytes are not `EXOKUP01`.
    BadMagic = 2,
    /// A format version this kernel does not read, or an inconsistent
    /// header or segment table.
    BadFormat = 3,
    /// The CRC-32 over the image does not match the header's.
    BadChecksum = 4,
    /// No stamp inside the image's segments: not a kernel build.
    NoStamp = 5,
    /// The stamp's handover version differs from the running kernel's.
    WrongAbi = 6,
    /// A segment lies outside the kernel slot it is linked for, or in no
    /// slot at all.
    OutsideSlot = 7,
    /// The image is linked for the slot the running kernel occupies.
    RunningSlot = 8,
    /// The upgrade entry lies outside the image's loaded bytes.
    BadEntry = 9,
    /// A page of the image is not mapped in the upgrade space (or is not
    /// RAM the kernel may read).
    NotMapped = 10,
    /// The spare slot was not reserved at boot (the boot image or the
    /// boot information lay in it).
    NoSpareSlot = 11,
    /// Another CPU did not report parked within the bound (the switch
    /// parks every other CPU outside both kernel slots first); the ones
    /// that did park were released back into the old kernel.
    CpuDidNotPark = 12,
}

impl Refusal {
    pub const ALL: [Refusal; 12] = [
        Refusal::Truncated,
        Refusal::BadMagic,
        Refusal::BadFormat,
        Refusal::BadChecksum,
        Refusal::NoStamp,
        Refusal::WrongAbi,
        Refusal::OutsideSlot,
        Refusal::RunningSlot,
        Refusal::BadEntry,
        Refusal::NotMapped,
        Refusal::NoSpareSlot,
        Refusal::CpuDidNotPark,
    ];

    /// A short name for logs and test output.
    pub const fn name(self) -> &'static str {
        match self {
            Refusal::Truncated => "truncated",
            Refusal::BadMagic => "bad magic",
            Refusal::BadFormat => "bad format",
            Refusal::BadChecksum => "checksum mismatch",
            Refusal::NoStamp => "no kernel stamp",
            Refusal::WrongAbi => "wrong handover ABI",
            Refusal::OutsideSlot => "segment outside its kernel slot",
            Refusal::RunningSlot => "linked over the running kernel",
            Refusal::BadEntry => "upgrade entry outside the image",
            Refusal::NotMapped => "image page not mapped",
            Refusal::NoSpareSlot => "no spare kernel slot",
            Refusal::CpuDidNotPark => "a CPU did not park",
        }
    }

    pub fn from_code(code: u64) -> Option<Refusal> {
        Refusal::ALL.iter().copied().find(|r| *r as u64 == code)
    }
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_zero_is_no_refusal() {
        for r in Refusal::ALL {
            assert_eq!(Refusal::from_code(r as u64), Some(r));
            assert!(!r.name().is_empty());
        }
        assert_eq!(Refusal::from_code(0), None);
        assert_eq!(Refusal::from_code(99), None);
    }
}
