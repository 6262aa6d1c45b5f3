//! The ACPI table the `acpi` crate does not parse: DMAR. (MADT and MCFG
//! are read through the `acpi` crate by the kernel's `firmware` crate,
//! which also finds the DMAR and checks its checksum before its bytes come
//! here.)
//!
//! Every parser takes the table's bytes exactly as firmware left them and
//! validates before it returns anything: signature, declared length against
//! the bytes available, checksum, and every nested length field. Once
//! `parse` has returned `Ok`, the iterators over the table cannot meet a
//! malformed structure, so they have no error path. A corrupt table yields
//! an [`AcpiError`] that names the table, the byte offset and the field.

pub mod dmar;

use core::fmt;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

/// The 36-byte header every ACPI system description table starts with.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct SdtHeader {
    pub signature: [u8; 4],
    pub length: U32,
    pub revision: u8,
    pub checksum: u8,
    pub oem_id: [u8; 6],
    pub oem_table_id: [u8; 8],
    pub oem_revision: U32,
    pub creator_id: U32,
    pub creator_revision: U32,
}

pub const SDT_HEADER_LEN: usize = 36;

/// What was wrong with a table. Offsets are from the first byte of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiError {
    /// The table's signature, e.g. "DMAR".
    pub table: &'static str,
    /// Byte offset of the offending field from the start of the table.
    pub offset: usize,
    /// The field (or structure) that was wrong, e.g. "DRHD.length".
    pub field: &'static str,
    pub problem: Problem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Fewer bytes were available than the structure needs.
    Truncated { needed: usize, available: usize },
    /// The signature is not the one the parser was asked for.
    WrongSignature { found: [u8; 4] },
    /// The table's bytes do not sum to zero (mod 256).
    BadChecksum { sum: u8 },
    /// A length field is smaller than the fixed part of its structure
    /// (a zero length here would otherwise loop forever).
    LengthTooSmall { length: usize, minimum: usize },
    /// A length field claims more bytes than its enclosing structure has left.
    LengthOverrun { length: usize, remaining: usize },
    /// A length that must be a multiple of some unit is not.
    LengthNotMultiple { length: usize, unit: usize },
    /// A field holds a value the specification does not allow.
    InvalidValue { value: u64, rule: &'static str },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} table, offset {:#x}, field {}: ", self.table, self.offset, self.field)?;
        match self.problem {
            Problem::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, only {available} present")
            }
            Problem::WrongSignature { found } => write!(f, "wrong signature {:?}", found),
            Problem::BadChecksum { sum } => write!(f, "checksum fails (bytes sum to {sum:#04x}, not 0)"),
            Problem::LengthTooSmall { length, minimum } => {
                write!(f, "length {length} is below the structure's minimum {minimum}")
            }
            Problem::LengthOverrun { length, remaining } => {
                write!(f, "length {length} runs past the {remaining} bytes that remain")
            }
            Problem::LengthNotMultiple { length, unit } => {
                write!(f, "length {length} is not a multiple of {unit}")
            }
            Problem::InvalidValue { value, rule } => write!(f, "value {value:#x} breaks the rule: {rule}"),
        }
    }
}

/// Checks the common header and returns it with the bytes the declared
/// length covers (header included). Bytes past the declared length are
/// ignored: callers often hand in a whole mapped page.
pub(crate) fn check_header<'a>(
    bytes: &'a [u8],
    table: &'static str,
    signature: &[u8; 4],
    minimum_length: usize,
) -> Result<(SdtHeader, &'a [u8]), AcpiError> {
    let err = |offset, field, problem| AcpiError { table, offset, field, problem };
    let (header, _) = SdtHeader::read_from_prefix(bytes)
        .map_err(|_| err(0, "header", Problem::Truncated { needed: SDT_HEADER_LEN, available: bytes.len() }))?;
    if &header.signature != signature {
        return Err(err(0, "signature", Problem::WrongSignature { found: header.signature }));
    }
    let length = header.length.get() as usize;
    if length < minimum_length {
        return Err(err(4, "length", Problem::LengthTooSmall { length, minimum: minimum_length }));
    }
    if length > bytes.len() {
        return Err(err(4, "length", Problem::Truncated { needed: length, available: bytes.len() }));
    }
    let table_bytes = &bytes[..length];
    let sum = table_bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    if sum != 0 {
        return Err(err(9, "checksum", Problem::BadChecksum { sum }));
    }
    Ok((header, table_bytes))
}

/// Sets byte 9 so the first `length` bytes of `table` sum to zero. For
/// building tables in tests and tools.
pub fn fix_checksum(table: &mut [u8]) {
    if table.len() < SDT_HEADER_LEN {
        return;
    }
    let length = (u32::from_le_bytes([table[4], table[5], table[6], table[7]]) as usize).min(table.len());
    table[9] = 0;
    let sum = table[..length].iter().fold(0u8, |s, b| s.wrapping_add(*b));
    table[9] = 0u8.wrapping_sub(sum);
}
