//! What can be wrong with the firmware's tables, named precisely enough to
//! act on from a boot log line.

use core::fmt;

/// The ACPI structures this crate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Rsdp,
    Rsdt,
    Xsdt,
    Madt,
    Mcfg,
    Dmar,
    Nfit,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Rsdp => "RSDP",
            Table::Rsdt => "RSDT",
            Table::Xsdt => "XSDT",
            Table::Madt => "MADT",
            Table::Mcfg => "MCFG",
            Table::Dmar => "DMAR",
            Table::Nfit => "NFIT",
        }
    }

    /// The four-byte signature in the table's header (the RSDP has an
    /// eight-byte one of its own, "RSD PTR ").
    pub fn signature(self) -> [u8; 4] {
        match self {
            Table::Rsdp => *b"RSD ",
            Table::Rsdt => *b"RSDT",
            Table::Xsdt => *b"XSDT",
            Table::Madt => *b"APIC",
            Table::Mcfg => *b"MCFG",
            Table::Dmar => *b"DMAR",
            Table::Nfit => *b"NFIT",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a table (or the whole walk, for the RSDP and the root table) was
/// refused. Addresses are physical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareError {
    /// The boot loader passed no RSDP address.
    NoRsdp,
    /// The bytes `[pa, pa + len)` the table needs are not all inside the
    /// physical-memory view.
    OutsideView { table: Table, pa: u64, len: u64 },
    /// The signature at `pa` is not the table's (`found` holds the first
    /// `found_len` bytes that were there).
    WrongSignature { table: Table, pa: u64, found: [u8; 8], found_len: u8 },
    /// The table's bytes do not sum to zero (mod 256); `sum` is what they
    /// sum to.
    BadChecksum { table: Table, pa: u64, sum: u8 },
    /// A length field is impossible: too short for the structure, too long
    /// to be believed, or not a whole number of entries.
    BadLength { table: Table, pa: u64, length: u64, why: &'static str },
    /// An identifier field the `acpi` crate requires to be UTF-8 is not.
    NotUtf8 { table: Table, pa: u64, field: &'static str },
    /// The root table lists no table with this signature.
    Missing(Table),
    /// A MADT interrupt-controller entry is malformed (its framing, checked
    /// before the `acpi` crate walks the entries).
    MadtEntry { offset: u64, kind: u8, length: u8, why: &'static str },
    /// An MCFG allocation is impossible.
    McfgAllocation { index: usize, why: &'static str },
    /// The `acpi` crate refused the table for a reason the checks before it
    /// did not catch.
    Crate { table: Table, error: &'static str },
}

impl fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FirmwareError::NoRsdp => write!(f, "the boot loader gave no RSDP address"),
            FirmwareError::OutsideView { table, pa, len } => {
                write!(f, "{table} at {pa:#x}: its {len} bytes are not all inside the readable physical memory")
            }
            FirmwareError::WrongSignature { table, pa, found, found_len } => {
                write!(f, "{table} at {pa:#x}: wrong signature ")?;
                for &b in &found[..found_len as usize] {
                    if b.is_ascii_graphic() || b == b' ' {
                        write!(f, "{}", b as char)?;
                    } else {
                        write!(f, "\\x{b:02x}")?;
                    }
                }
                Ok(())
            }
            FirmwareError::BadChecksum { table, pa, sum } => {
                write!(f, "{table} at {pa:#x}: checksum fails (bytes sum to {sum:#04x}, not 0)")
            }
            FirmwareError::BadLength { table, pa, length, why } => {
                write!(f, "{table} at {pa:#x}: length {length} {why}")
            }
            FirmwareError::NotUtf8 { table, pa, field } => {
                write!(f, "{table} at {pa:#x}: {field} is not UTF-8 (the acpi crate requires it)")
            }
            FirmwareError::Missing(table) => write!(f, "no {table} table"),
            FirmwareError::MadtEntry { offset, kind, length, why } => {
                write!(f, "MADT entry at offset {offset:#x} (type {kind:#x}, length {length}): {why}")
            }
            FirmwareError::McfgAllocation { index, why } => write!(f, "MCFG allocation {index}: {why}"),
            FirmwareError::Crate { table, error } => write!(f, "{table}: the acpi crate refused it: {error}"),
        }
    }
}

/// Names an `acpi::AcpiError` (which is neither `Copy` nor comparable) so a
/// `FirmwareError` can carry it.
pub(crate) fn crate_error_name(e: &acpi::AcpiError) -> &'static str {
    use acpi::AcpiError as E;
    match e {
        E::NoValidRsdp => "no valid RSDP",
        E::RsdpIncorrectSignature => "RSDP signature wrong",
        E::RsdpInvalidOemId => "RSDP OEM id not UTF-8",
        E::RsdpInvalidChecksum => "RSDP checksum wrong",
        E::SdtInvalidSignature(_) => "SDT signature wrong",
        E::SdtInvalidOemId(_) => "SDT OEM id not UTF-8",
        E::SdtInvalidTableId(_) => "SDT OEM table id not UTF-8",
        E::SdtInvalidChecksum(_) => "SDT checksum wrong",
        E::TableMissing(_) => "table missing",
        E::InvalidFacsAddress => "invalid FACS address",
        E::InvalidDsdtAddress => "invalid DSDT address",
        E::InvalidMadt(_) => "invalid MADT",
        E::InvalidGenericAddress => "invalid generic address",
        E::AllocError => "allocation failed",
    }
}
