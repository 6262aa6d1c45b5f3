//! Finding the ACPI RSDP by scanning, for a loader that passes none.
//!
//! ACPI 6.5 §5.2.5.1: on a legacy (BIOS) machine the RSDP lies on a
//! 16-byte boundary in the first KiB of the Extended BIOS Data Area (whose
//! segment is the 16-bit word at 0x40E) or in the BIOS read-only area
//! 0xE0000..0xFFFFF. A UEFI machine without a compatibility module has
//! nothing there and publishes the RSDP only through the EFI system table;
//! the scan then finds nothing and the caller says so. Everything read is
//! in the first MiB, which every PC decodes (as RAM, ROM or open bus), so
//! the scan never touches a hole of the memory map above it.

use crate::bootinfo::PhysRead;

const SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// ACPI 1.0's RSDP (the checksum covers these bytes).
const V1_LEN: usize = 20;
/// ACPI 2.0's (the extended checksum covers these).
const V2_LEN: usize = 36;
/// The BIOS data area word holding the EBDA's real-mode segment.
const EBDA_SEGMENT_WORD: u64 = 0x40e;
/// Where an EBDA may plausibly start (it sits just below 640 KiB).
const EBDA_LOWEST: u64 = 0x8_0000;
const EBDA_END: u64 = 0xa_0000;
const EBDA_SCANNED: u64 = 1024;
const BIOS_AREA: (u64, u64) = (0xe_0000, 0x10_0000);

/// The physical address of the first valid RSDP in the EBDA's first KiB,
/// then in the BIOS area; `None` if neither holds one.
pub fn scan(mem: &impl PhysRead) -> Option<u64> {
    let mut seg = [0u8; 2];
    mem.read(EBDA_SEGMENT_WORD, &mut seg);
    let ebda = (u16::from_le_bytes(seg) as u64) << 4;
    if (EBDA_LOWEST..EBDA_END).contains(&ebda) {
        let end = (ebda + EBDA_SCANNED).min(EBDA_END);
        if let Some(pa) = scan_range(mem, ebda, end) {
            return Some(pa);
        }
    }
    scan_range(mem, BIOS_AREA.0, BIOS_AREA.1)
}

fn scan_range(mem: &impl PhysRead, start: u64, end: u64) -> Option<u64> {
    let mut pa = start & !15;
    while pa + V1_LEN as u64 <= end {
        // One byte first: most candidates fail there (the scan reads
        // up to 128 KiB).
        let mut first = [0u8];
        mem.read(pa, &mut first);
        let mut sig = [0u8; 8];
        if first[0] == SIGNATURE[0]
            && {
                mem.read(pa, &mut sig);
                &sig == SIGNATURE
            }
            && valid(mem, pa)
        {
            return Some(pa);
        }
        pa += 16;
    }
    None
}

/// The ACPI 1.0 checksum holds and, for revision 2 and later, the
/// extended one over the 36-byte structure too.
fn valid(mem: &impl PhysRead, pa: u64) -> bool {
    let mut b = [0u8; V2_LEN];
    mem.read(pa, &mut b);
    let sum = |s: &[u8]| s.iter().fold(0u8, |a, x| a.wrapping_add(*x));
    if sum(&b[..V1_LEN]) != 0 {
        return false;
    }
    b[15] < 2 || sum(&b) == 0
}
