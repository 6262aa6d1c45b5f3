//! Checks made before the `acpi` crate is handed a structure.
//!
//! The crate (5.2.0) trusts the lengths it reads, and with a malformed
//! table it misbehaves rather than returning an error:
//!
//! * `AcpiTables` computes the root table's entry bytes as `length - 36`
//!   (an RSDT/XSDT shorter than its header underflows: a panic in debug
//!   builds, a slice of ~4 GiB in release);
//! * `Rsdp::validate` checksums `length` bytes of an ACPI 2.0 RSDP through
//!   a 36-byte mapping (any larger length reads past the mapping);
//! * `Madt::entries` computes `length - 44` and `Mcfg::entries`
//!   `length - 44` (a short MADT or MCFG underflows the same way);
//! * `MadtEntryIter` steps by each entry's length byte: a zero length loops
//!   forever, a length past the table's end underflows `remaining_length`
//!   (panic, or in release a walk over arbitrary memory), an entry shorter
//!   than its type's structure, or a single trailing byte, is read past
//!   its end.
//!
//! So every structure the crate will dereference is checked here first:
//! inside the view, lengths between the structure's fixed size and a sane
//! maximum, MADT entries framed exactly. Checksums and the UTF-8 of the
//! OEM identifiers (which the crate also checks) are checked too, so an
//! error can name the table and the reason instead of the crate's
//! "table missing".

use crate::error::{FirmwareError, Table};
use crate::view::PhysView;
use core::mem::size_of;

/// Size of the header every system description table starts with.
pub(crate) const HEADER_LEN: u64 = 36;

/// The longest table believed. Real MADTs, MCFGs, DMARs and NFITs are a
/// few KiB (an NFIT is a few hundred bytes per NVDIMM); a length beyond
/// this is corruption, and checksumming it would only waste boot time.
pub(crate) const MAX_TABLE: u64 = 256 * 1024;

/// The longest ACPI 2.0+ RSDP believed (the spec's is 36 bytes).
const MAX_RSDP: u64 = 1024;

/// Where the root table is and how its entries are sized.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Root {
    pub revision: u8,
    pub table: Table,
    pub pa: u64,
    pub len: u64,
    pub entry_size: u64,
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

fn signature_error(table: Table, pa: u64, found: &[u8]) -> FirmwareError {
    let mut buf = [0u8; 8];
    let n = found.len().min(8);
    buf[..n].copy_from_slice(&found[..n]);
    FirmwareError::WrongSignature { table, pa, found: buf, found_len: n as u8 }
}

/// Checks the RSDP at `pa` and the root table it names, as far as the
/// crate's `AcpiTables::from_rsdp` will go.
pub(crate) fn root(view: &PhysView<'_>, pa: u64) -> Result<Root, FirmwareError> {
    if pa == 0 {
        return Err(FirmwareError::NoRsdp);
    }
    // The crate maps a whole ACPI 2.0 RSDP (36 bytes) even for revision 0.
    let mut r = [0u8; 36];
    view.read(pa, &mut r).map_err(|_| FirmwareError::OutsideView { table: Table::Rsdp, pa, len: 36 })?;
    if &r[..8] != b"RSD PTR " {
        return Err(signature_error(Table::Rsdp, pa, &r[..8]));
    }
    let s = sum(&r[..20]);
    if s != 0 {
        return Err(FirmwareError::BadChecksum { table: Table::Rsdp, pa, sum: s });
    }
    if core::str::from_utf8(&r[9..15]).is_err() {
        return Err(FirmwareError::NotUtf8 { table: Table::Rsdp, pa, field: "OEM id" });
    }
    let revision = r[15];
    // The crate reads the XSDT for any revision above 0 (there is no
    // revision 1; ACPI 2.0 and later say 2).
    let (table, root_pa, entry_size) = if revision == 0 {
        (Table::Rsdt, u32::from_le_bytes([r[16], r[17], r[18], r[19]]) as u64, 4)
    } else {
        let length = u32::from_le_bytes([r[20], r[21], r[22], r[23]]) as u64;
        if !(36..=MAX_RSDP).contains(&length) {
            return Err(FirmwareError::BadLength {
                table: Table::Rsdp,
                pa,
                length,
                why: "is not between 36 and 1024 (ACPI 2.0+ RSDP)",
            });
        }
        let all =
            view.bytes(pa, length).map_err(|_| FirmwareError::OutsideView { table: Table::Rsdp, pa, len: length })?;
        let s = sum(all);
        if s != 0 {
            return Err(FirmwareError::BadChecksum { table: Table::Rsdp, pa, sum: s });
        }
        let mut x = [0u8; 8];
        x.copy_from_slice(&r[24..32]);
        (Table::Xsdt, u64::from_le_bytes(x), 8)
    };
    let bytes = frame(view, root_pa, table, HEADER_LEN)?;
    contents(bytes, root_pa, table)?;
    let len = bytes.len() as u64;
    if !(len - HEADER_LEN).is_multiple_of(entry_size) {
        return Err(FirmwareError::BadLength {
            table,
            pa: root_pa,
            length: len,
            why: if entry_size == 8 { "leaves a partial 8-byte entry" } else { "leaves a partial 4-byte entry" },
        });
    }
    Ok(Root { revision, table, pa: root_pa, len, entry_size })
}

/// The physical addresses the root table lists, in order.
pub(crate) fn entries<'v>(view: &PhysView<'v>, root: &Root) -> impl Iterator<Item = u64> + 'v {
    // `root()` put these bytes inside the view; an empty slice otherwise.
    let bytes = view.bytes(root.pa + HEADER_LEN, root.len - HEADER_LEN).unwrap_or(&[]);
    let size = root.entry_size as usize;
    bytes.chunks_exact(size).map(move |c| {
        let mut b = [0u8; 8];
        b[..size].copy_from_slice(c);
        u64::from_le_bytes(b)
    })
}

/// Whether the header at `pa` is readable (the crate then sees the real
/// signature; otherwise it sees zeros and skips the entry).
pub(crate) fn header_readable(view: &PhysView<'_>, pa: u64) -> bool {
    view.offset(pa, HEADER_LEN).is_ok()
}

/// The bytes of the table at `pa` as its header's length declares them,
/// checked to be `table`, at least `min_len` and at most [`MAX_TABLE`]
/// long, and inside the view (used for the root table, which the crate
/// maps and dereferences unconditionally).
pub(crate) fn frame<'v>(view: &PhysView<'v>, pa: u64, table: Table, min_len: u64) -> Result<&'v [u8], FirmwareError> {
    let mut h = [0u8; HEADER_LEN as usize];
    view.read(pa, &mut h).map_err(|_| FirmwareError::OutsideView { table, pa, len: HEADER_LEN })?;
    if h[..4] != table.signature() {
        return Err(signature_error(table, pa, &h[..4]));
    }
    let length = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
    if length < min_len {
        return Err(short(table, pa, length));
    }
    if length > MAX_TABLE {
        return Err(FirmwareError::BadLength { table, pa, length, why: "is implausibly large (over 256 KiB)" });
    }
    view.bytes(pa, length).map_err(|_| FirmwareError::OutsideView { table, pa, len: length })
}

/// The checks the crate makes itself (OEM identifiers are UTF-8, the bytes
/// sum to zero), made here so the error can say which failed.
pub(crate) fn contents(bytes: &[u8], pa: u64, table: Table) -> Result<(), FirmwareError> {
    if core::str::from_utf8(&bytes[10..16]).is_err() {
        return Err(FirmwareError::NotUtf8 { table, pa, field: "OEM id" });
    }
    if core::str::from_utf8(&bytes[16..24]).is_err() {
        return Err(FirmwareError::NotUtf8 { table, pa, field: "OEM table id" });
    }
    let s = sum(bytes);
    if s != 0 {
        return Err(FirmwareError::BadChecksum { table, pa, sum: s });
    }
    Ok(())
}

/// What the root table holds under one signature.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Survey {
    /// Tables with the signature.
    pub found: usize,
    /// The first of them the crate will skip (bad checksum or OEM id), to
    /// report if it finds no good one.
    pub first_problem: Option<FirmwareError>,
}

/// Walks the tables the root lists under `table`'s signature the way the
/// crate's `find_table` will, and checks each one it will map before it
/// maps it. `find_table` reads each header; skips a table whose OEM ids are
/// not UTF-8 without mapping more; otherwise maps the length the header
/// declares, checksums it, skips it if the sum is wrong, and returns the
/// first that passes. So: every table it maps in full must lie inside the
/// view, and the one it returns must be at least `min_len` long (the
/// crate's structure for the table, which it dereferences and subtracts
/// from the length). Tables after that one are never touched.
pub(crate) fn survey(view: &PhysView<'_>, root: &Root, table: Table, min_len: u64) -> Result<Survey, FirmwareError> {
    let mut s = Survey::default();
    for pa in entries(view, root) {
        let mut h = [0u8; HEADER_LEN as usize];
        if view.read(pa, &mut h).is_err() || h[..4] != table.signature() {
            continue; // unreadable headers reach the crate as zeros: no match
        }
        s.found += 1;
        let oem = if core::str::from_utf8(&h[10..16]).is_err() {
            Some("OEM id")
        } else if core::str::from_utf8(&h[16..24]).is_err() {
            Some("OEM table id")
        } else {
            None
        };
        if let Some(field) = oem {
            s.first_problem.get_or_insert(FirmwareError::NotUtf8 { table, pa, field });
            continue;
        }
        let length = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
        if length > MAX_TABLE {
            return Err(FirmwareError::BadLength { table, pa, length, why: "is implausibly large (over 256 KiB)" });
        }
        // The handler maps at least the crate's structure, so that much
        // must be readable even when the declared length is shorter.
        let mapped = length.max(min_len);
        view.offset(pa, mapped).map_err(|_| FirmwareError::OutsideView { table, pa, len: mapped })?;
        let bytes = view.bytes(pa, length).map_err(|_| FirmwareError::OutsideView { table, pa, len: length })?;
        let sum = sum(bytes);
        if sum != 0 {
            s.first_problem.get_or_insert(FirmwareError::BadChecksum { table, pa, sum });
            continue;
        }
        if length < min_len {
            return Err(short(table, pa, length));
        }
        break; // the crate returns this one
    }
    Ok(s)
}

fn short(table: Table, pa: u64, length: u64) -> FirmwareError {
    FirmwareError::BadLength {
        table,
        pa,
        length,
        why: match table {
            Table::Rsdt | Table::Xsdt => "is shorter than the 36-byte header",
            Table::Dmar => "is shorter than the DMAR's 48-byte fixed part",
            Table::Nfit => "is shorter than the NFIT's 40-byte fixed part",
            _ => "is shorter than the table's 44-byte fixed part",
        },
    }
}

/// The size of the crate's structure for a MADT entry type, which the
/// crate dereferences in full; `None` for types it skips (reserved, OEM).
fn madt_entry_size(kind: u8) -> Option<usize> {
    use acpi::madt::*;
    Some(match kind {
        0x0 => size_of::<LocalApicEntry>(),
        0x1 => size_of::<IoApicEntry>(),
        0x2 => size_of::<InterruptSourceOverrideEntry>(),
        0x3 => size_of::<NmiSourceEntry>(),
        0x4 => size_of::<LocalApicNmiEntry>(),
        0x5 => size_of::<LocalApicAddressOverrideEntry>(),
        0x6 => size_of::<IoSapicEntry>(),
        0x7 => size_of::<LocalSapicEntry>(),
        0x8 => size_of::<PlatformInterruptSourceEntry>(),
        0x9 => size_of::<LocalX2ApicEntry>(),
        0xa => size_of::<X2ApicNmiEntry>(),
        0xb => size_of::<GiccEntry>(),
        0xc => size_of::<GicdEntry>(),
        0xd => size_of::<GicMsiFrameEntry>(),
        0xe => size_of::<GicRedistributorEntry>(),
        0xf => size_of::<GicInterruptTranslationServiceEntry>(),
        0x10 => size_of::<MultiprocessorWakeupEntry>(),
        _ => return None,
    })
}

/// Checks the framing of the MADT's interrupt-controller entries so the
/// crate's `MadtEntryIter` can neither loop, underflow, nor read past an
/// entry or the table: every entry has a whole two-byte header, a length
/// of at least 2 that stays inside the table, at least the size of the
/// crate's structure for its type, and the entries end exactly at the
/// table's end.
pub(crate) fn madt_entries(table: &[u8]) -> Result<(), FirmwareError> {
    let fixed = size_of::<acpi::madt::Madt>();
    let mut offset = fixed;
    while offset < table.len() {
        let remaining = table.len() - offset;
        let kind = table[offset];
        let err = |length: u8, why| FirmwareError::MadtEntry { offset: offset as u64, kind, length, why };
        if remaining < 2 {
            return Err(err(0, "one byte left before the table's end: the entry header is cut off"));
        }
        let length = table[offset + 1];
        if length < 2 {
            return Err(err(length, "length below 2 (a zero length would make the walk loop forever)"));
        }
        if length as usize > remaining {
            return Err(err(length, "runs past the end of the table"));
        }
        if let Some(size) = madt_entry_size(kind) {
            if (length as usize) < size {
                return Err(err(length, "shorter than the structure for its type"));
            }
        }
        offset += length as usize;
    }
    Ok(())
}
