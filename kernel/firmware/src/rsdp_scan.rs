//! Finding the ACPI RSDP when the loader passes none: in the UEFI system
//! table's configuration table ([`from_efi_system_table`]), else by
//! scanning the legacy BIOS areas ([`scan`]).
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

/// "IBI SYST": the EFI system table's signature.
const EFI_SYSTEM_TABLE_SIGNATURE: u64 = 0x5453_5953_2049_4249;
/// The most configuration-table entries looked at (firmware has a few dozen).
const MAX_EFI_CONFIG_ENTRIES: u64 = 256;
/// EFI_ACPI_20_TABLE_GUID and ACPI_TABLE_GUID (1.0) in memory order.
const EFI_ACPI_20_GUID: [u8; 16] =
    [0x71, 0xe8, 0x68, 0x88, 0xf1, 0xe4, 0xd3, 0x11, 0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81];
const EFI_ACPI_10_GUID: [u8; 16] =
    [0x30, 0x2d, 0x9d, 0xeb, 0x88, 0x2d, 0xd3, 0x11, 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d];

/// The RSDP the UEFI configuration table lists (ACPI 2.0's entry before
/// 1.0's), from the 64-bit system table at `st` (multiboot2 tag 12). The
/// system and configuration tables live in runtime-services memory, which
/// survives ExitBootServices. `in_memory` says whether a range lies in
/// memory the memory map lists; everything read is checked with it, and
/// the RSDP found must have its signature and valid checksums.
pub fn from_efi_system_table(mem: &impl PhysRead, st: u64, in_memory: impl Fn(u64, u64) -> bool) -> Option<u64> {
    let r64 = |pa: u64| {
        let mut b = [0u8; 8];
        mem.read(pa, &mut b);
        u64::from_le_bytes(b)
    };
    if st == 0 || !in_memory(st, 120) || r64(st) != EFI_SYSTEM_TABLE_SIGNATURE {
        return None;
    }
    let entries = r64(st + 104);
    let table = r64(st + 112);
    if entries == 0 || entries > MAX_EFI_CONFIG_ENTRIES || !in_memory(table, entries * 24) {
        return None;
    }
    let find = |guid: &[u8; 16]| {
        (0..entries).find_map(|i| {
            let e = table + i * 24;
            let mut g = [0u8; 16];
            mem.read(e, &mut g);
            let pa = r64(e + 16);
            let mut sig = [0u8; 8];
            mem.read(pa, &mut sig);
            (&g == guid && in_memory(pa, V2_LEN as u64) && &sig == SIGNATURE && valid(mem, pa)).then_some(pa)
        })
    };
    find(&EFI_ACPI_20_GUID).or_else(|| find(&EFI_ACPI_10_GUID))
}

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
