//! The boot image: one archive holding init and the programs it starts.
//!
//! QEMU's PVH boot passes exactly one module (the `-initrd` file), so every
//! program the system boots with travels in one file. The kernel maps it into
//! init unparsed; init parses it with [`BootImage::parse`]; the host builds
//! it with [`build`].
//!
//! # Format (all integers little-endian)
//!
//! ```text
//! offset 0   magic   b"EXOBOOT1"            8 bytes
//! offset 8   version u32 = 1
//! offset 12  count   u32 (<= 256)
//! offset 16  count entries of 64 bytes:
//!              name   [u8; 48]  UTF-8, NUL-padded (at most 47 bytes used)
//!              offset u64       where the file starts, a multiple of 4096
//!              len    u64       file length in bytes
//! then the file data, each file at its 4096-aligned offset, zero padding
//! between files and up to the next multiple of 4096 at the end.
//! ```
//!
//! # Why each check in [`BootImage::parse`] exists
//!
//! The image comes from disk or a build, and init runs with authority over
//! all of RAM, so a bad image must be a clear error, never a panic or a
//! wrong slice:
//! - magic and version: refuse a file that is not a boot image, or one of a
//!   layout this code does not know, instead of misreading it;
//! - `count <= 256` and the table inside the image: bounds the work and keeps
//!   every table read in bounds;
//! - each entry's `offset + len` computed without overflow and inside the
//!   image: otherwise a slice would panic or wrap;
//! - 4096-aligned offsets: init may map a file's pages straight from the
//!   image, which needs page-aligned files;
//! - data not overlapping the header table or another entry: a file that
//!   aliases another (or the table) is a corrupt or crafted image;
//! - names NUL-terminated, zero-padded, valid UTF-8, non-empty and unique:
//!   [`BootImage::find`] must have exactly one answer, and no hidden bytes
//!   may ride in the padding.

use alloc::vec::Vec;
use core::fmt;

use crate::le::{u32_at, u64_at};

/// First eight bytes of every boot image.
pub const MAGIC: [u8; 8] = *b"EXOBOOT1";
/// The only format version this code reads and writes.
pub const VERSION: u32 = 1;
/// Most entries an image may hold.
pub const MAX_ENTRIES: u32 = 256;
/// Bytes before the entry table: magic, version, count.
pub const HEADER_LEN: usize = 16;
/// Bytes per entry in the table.
pub const ENTRY_LEN: usize = 64;
/// Bytes of the name field (the name itself is at most `NAME_FIELD_LEN - 1`).
pub const NAME_FIELD_LEN: usize = 48;
/// Longest name in bytes: one byte of the field is always the NUL terminator.
pub const MAX_NAME_LEN: usize = NAME_FIELD_LEN - 1;
/// Alignment of every file's data within the image.
pub const DATA_ALIGN: u64 = 4096;

/// One file in a boot image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The file's name (non-empty, at most [`MAX_NAME_LEN`] bytes).
    pub name: &'a str,
    /// The file's contents, borrowed from the image.
    pub data: &'a [u8],
    /// Where `data` starts within the image (a multiple of [`DATA_ALIGN`]).
    pub offset: u64,
}

/// Why [`build`] refused its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// More than [`MAX_ENTRIES`] files.
    TooManyEntries { count: usize },
    /// Entry `index` has an empty name.
    EmptyName { index: usize },
    /// Entry `index`'s name is `len` bytes, more than [`MAX_NAME_LEN`].
    NameTooLong { index: usize, len: usize },
    /// Entry `index`'s name contains a NUL byte (NUL ends names in the table).
    NameContainsNul { index: usize },
    /// Entry `index` has the same name as entry `first`.
    DuplicateName { index: usize, first: usize },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::TooManyEntries { count } => {
                write!(f, "boot image: {count} entries, at most {MAX_ENTRIES} allowed")
            }
            BuildError::EmptyName { index } => {
                write!(f, "boot image: entry {index} has an empty name")
            }
            BuildError::NameTooLong { index, len } => {
                write!(f, "boot image: entry {index}: name is {len} bytes, at most {MAX_NAME_LEN} allowed")
            }
            BuildError::NameContainsNul { index } => {
                write!(f, "boot image: entry {index}: name contains a NUL byte")
            }
            BuildError::DuplicateName { index, first } => {
                write!(f, "boot image: entry {index} has the same name as entry {first}")
            }
        }
    }
}

/// Why [`BootImage::parse`] refused an image. Each variant names the field
/// (and entry) at fault and the values found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootImageError {
    /// The image is shorter than the 16-byte header.
    TruncatedHeader { have: usize },
    /// The first eight bytes are not `EXOBOOT1`.
    BadMagic { found: [u8; 8] },
    /// The version field is not [`VERSION`].
    UnsupportedVersion { found: u32 },
    /// The count field exceeds [`MAX_ENTRIES`].
    TooManyEntries { count: u32 },
    /// The entry table (`count` entries) ends at `table_end`, past the image.
    TableOutsideImage { count: u32, table_end: usize, image_len: usize },
    /// Entry `index`'s name field has no NUL terminator.
    NameNotTerminated { index: usize },
    /// Entry `index`'s name is empty.
    EmptyName { index: usize },
    /// Entry `index`'s name field has a non-zero byte after the terminator.
    NamePaddingNotZero { index: usize },
    /// Entry `index`'s name is not UTF-8 (valid up to byte `valid_up_to`).
    NameNotUtf8 { index: usize, valid_up_to: usize },
    /// Entry `index` has the same name as entry `first`.
    DuplicateName { index: usize, first: usize },
    /// Entry `index`'s offset is not a multiple of [`DATA_ALIGN`].
    MisalignedOffset { index: usize, offset: u64 },
    /// Entry `index`'s `offset + len` overflows 64 bits.
    RangeOverflows { index: usize, offset: u64, len: u64 },
    /// Entry `index`'s data `[offset, offset + len)` ends past the image.
    EntryOutsideImage { index: usize, offset: u64, len: u64, image_len: usize },
    /// Entry `index`'s data starts inside the header or entry table.
    EntryOverlapsTable { index: usize, offset: u64, table_end: usize },
    /// The data of entries `first` and `second` overlap.
    EntriesOverlap {
        first: usize,
        first_offset: u64,
        first_len: u64,
        second: usize,
        second_offset: u64,
        second_len: u64,
    },
}

impl fmt::Display for BootImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BootImageError::*;
        match self {
            TruncatedHeader { have } => {
                write!(f, "boot image: {have} bytes, shorter than the {HEADER_LEN}-byte header")
            }
            BadMagic { found } => write!(f, "boot image: bad magic {found:02x?}, expected \"EXOBOOT1\""),
            UnsupportedVersion { found } => {
                write!(f, "boot image: version {found}, only version {VERSION} is supported")
            }
            TooManyEntries { count } => write!(f, "boot image: count is {count}, at most {MAX_ENTRIES} allowed"),
            TableOutsideImage { count, table_end, image_len } => write!(
                f,
                "boot image: table of {count} entries ends at byte {table_end}, \
                 past the image end {image_len}"
            ),
            NameNotTerminated { index } => write!(f, "boot image: entry {index}: name field has no NUL terminator"),
            EmptyName { index } => write!(f, "boot image: entry {index}: name is empty"),
            NamePaddingNotZero { index } => {
                write!(f, "boot image: entry {index}: name field has non-zero bytes after the NUL")
            }
            NameNotUtf8 { index, valid_up_to } => {
                write!(f, "boot image: entry {index}: name is not UTF-8 (valid up to byte {valid_up_to})")
            }
            DuplicateName { index, first } => write!(f, "boot image: entry {index} has the same name as entry {first}"),
            MisalignedOffset { index, offset } => {
                write!(f, "boot image: entry {index}: offset {offset:#x} is not a multiple of {DATA_ALIGN:#x}")
            }
            RangeOverflows { index, offset, len } => {
                write!(f, "boot image: entry {index}: offset {offset:#x} + len {len:#x} overflows")
            }
            EntryOutsideImage { index, offset, len, image_len } => write!(
                f,
                "boot image: entry {index}: data [{offset:#x}, +{len:#x}) ends past the \
                 image end {image_len:#x}"
            ),
            EntryOverlapsTable { index, offset, table_end } => write!(
                f,
                "boot image: entry {index}: offset {offset:#x} is inside the header table \
                 (which ends at {table_end:#x})"
            ),
            EntriesOverlap { first, first_offset, first_len, second, second_offset, second_len } => {
                write!(
                    f,
                    "boot image: entry {first} [{first_offset:#x}, +{first_len:#x}) overlaps \
                     entry {second} [{second_offset:#x}, +{second_len:#x})"
                )
            }
        }
    }
}

/// Round `n` up to a multiple of [`DATA_ALIGN`] (for sizes that fit in memory).
fn align_up(n: usize) -> usize {
    let align = DATA_ALIGN as usize;
    n.div_ceil(align) * align
}

/// Check the names [`build`] is given, with the rules `parse` enforces.
fn check_build_input(entries: &[(&str, &[u8])]) -> Result<(), BuildError> {
    if entries.len() > MAX_ENTRIES as usize {
        return Err(BuildError::TooManyEntries { count: entries.len() });
    }
    for (index, (name, _)) in entries.iter().enumerate() {
        if name.is_empty() {
            return Err(BuildError::EmptyName { index });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(BuildError::NameTooLong { index, len: name.len() });
        }
        if name.as_bytes().contains(&0) {
            return Err(BuildError::NameContainsNul { index });
        }
        if let Some(first) = entries[..index].iter().position(|(n, _)| n == name) {
            return Err(BuildError::DuplicateName { index, first });
        }
    }
    Ok(())
}

/// Build a boot image holding `entries` (name, contents) in the given order.
/// Each file starts on a 4096-byte boundary; the image is padded with zeros
/// to a multiple of 4096 bytes.
pub fn build(entries: &[(&str, &[u8])]) -> Result<Vec<u8>, BuildError> {
    check_build_input(entries)?;
    let table_end = HEADER_LEN + ENTRY_LEN * entries.len();

    // Lay out the files first, so the table can be written in one pass.
    let mut offsets = Vec::with_capacity(entries.len());
    let mut cursor = align_up(table_end);
    for (_, data) in entries {
        offsets.push(cursor);
        cursor = align_up(cursor + data.len());
    }

    let mut image = Vec::with_capacity(cursor);
    image.extend_from_slice(&MAGIC);
    image.extend_from_slice(&VERSION.to_le_bytes());
    image.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for ((name, data), offset) in entries.iter().zip(&offsets) {
        let mut field = [0u8; NAME_FIELD_LEN];
        field[..name.len()].copy_from_slice(name.as_bytes());
        image.extend_from_slice(&field);
        image.extend_from_slice(&(*offset as u64).to_le_bytes());
        image.extend_from_slice(&(data.len() as u64).to_le_bytes());
    }
    for ((_, data), offset) in entries.iter().zip(&offsets) {
        image.resize(*offset, 0);
        image.extend_from_slice(data);
    }
    image.resize(cursor, 0);
    Ok(image)
}

/// A validated boot image borrowed from its bytes.
#[derive(Clone, Debug)]
pub struct BootImage<'a> {
    bytes: &'a [u8],
    entries: Vec<Entry<'a>>,
}

/// The raw fields of one table entry, before validation.
struct RawEntry<'a> {
    name_field: &'a [u8],
    offset: u64,
    len: u64,
}

fn raw_entry(bytes: &[u8], index: usize) -> Option<RawEntry<'_>> {
    let base = HEADER_LEN.checked_add(index.checked_mul(ENTRY_LEN)?)?;
    Some(RawEntry {
        name_field: bytes.get(base..base.checked_add(NAME_FIELD_LEN)?)?,
        offset: u64_at(bytes, base + NAME_FIELD_LEN)?,
        len: u64_at(bytes, base + NAME_FIELD_LEN + 8)?,
    })
}

/// Decode a NUL-padded name field: the bytes before the first NUL, which
/// must be non-empty UTF-8, followed only by zeros.
fn decode_name(field: &[u8], index: usize) -> Result<&str, BootImageError> {
    let end = field.iter().position(|&b| b == 0).ok_or(BootImageError::NameNotTerminated { index })?;
    if end == 0 {
        return Err(BootImageError::EmptyName { index });
    }
    if field[end..].iter().any(|&b| b != 0) {
        return Err(BootImageError::NamePaddingNotZero { index });
    }
    core::str::from_utf8(&field[..end]).map_err(|e| BootImageError::NameNotUtf8 { index, valid_up_to: e.valid_up_to() })
}

/// Check one entry's data range and return it as a slice of the image.
fn entry_data<'a>(
    bytes: &'a [u8],
    index: usize,
    raw: &RawEntry<'_>,
    table_end: usize,
) -> Result<&'a [u8], BootImageError> {
    let (offset, len) = (raw.offset, raw.len);
    if !offset.is_multiple_of(DATA_ALIGN) {
        return Err(BootImageError::MisalignedOffset { index, offset });
    }
    let end = offset.checked_add(len).ok_or(BootImageError::RangeOverflows { index, offset, len })?;
    let outside = BootImageError::EntryOutsideImage { index, offset, len, image_len: bytes.len() };
    let (start, end) = match (usize::try_from(offset), usize::try_from(end)) {
        (Ok(s), Ok(e)) if e <= bytes.len() => (s, e),
        _ => return Err(outside),
    };
    // An empty file occupies no bytes, so it cannot overlap the table.
    if len != 0 && start < table_end {
        return Err(BootImageError::EntryOverlapsTable { index, offset, table_end });
    }
    bytes.get(start..end).ok_or(outside)
}

/// Whether two byte ranges share at least one byte (empty ranges share none).
fn ranges_overlap(a_start: u64, a_len: u64, b_start: u64, b_len: u64) -> bool {
    // Both ranges were checked to end inside the image, so no overflow.
    a_len != 0 && b_len != 0 && a_start < b_start + b_len && b_start < a_start + a_len
}

impl<'a> BootImage<'a> {
    /// Validate `bytes` as a boot image (see the module docs for the rules).
    pub fn parse(bytes: &'a [u8]) -> Result<BootImage<'a>, BootImageError> {
        let have = bytes.len();
        let truncated = BootImageError::TruncatedHeader { have };
        let magic: [u8; 8] = crate::le::bytes_at(bytes, 0).ok_or(truncated.clone())?;
        if magic != MAGIC {
            return Err(BootImageError::BadMagic { found: magic });
        }
        let version = u32_at(bytes, 8).ok_or(truncated.clone())?;
        if version != VERSION {
            return Err(BootImageError::UnsupportedVersion { found: version });
        }
        let count = u32_at(bytes, 12).ok_or(truncated)?;
        if count > MAX_ENTRIES {
            return Err(BootImageError::TooManyEntries { count });
        }
        // count <= 256, so this cannot overflow.
        let table_end = HEADER_LEN + ENTRY_LEN * count as usize;
        if table_end > bytes.len() {
            return Err(BootImageError::TableOutsideImage { count, table_end, image_len: have });
        }

        let mut entries: Vec<Entry<'a>> = Vec::with_capacity(count as usize);
        for index in 0..count as usize {
            let raw = raw_entry(bytes, index).ok_or(BootImageError::TableOutsideImage {
                count,
                table_end,
                image_len: have,
            })?;
            let name = decode_name(raw.name_field, index)?;
            if let Some(first) = entries.iter().position(|e| e.name == name) {
                return Err(BootImageError::DuplicateName { index, first });
            }
            let data = entry_data(bytes, index, &raw, table_end)?;
            let len = data.len() as u64;
            for (first, e) in entries.iter().enumerate() {
                let first_len = e.data.len() as u64;
                if ranges_overlap(e.offset, first_len, raw.offset, len) {
                    return Err(BootImageError::EntriesOverlap {
                        first,
                        first_offset: e.offset,
                        first_len,
                        second: index,
                        second_offset: raw.offset,
                        second_len: len,
                    });
                }
            }
            entries.push(Entry { name, data, offset: raw.offset });
        }
        Ok(BootImage { bytes, entries })
    }

    /// The files, in table order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = Entry<'a>> + '_ {
        self.entries.iter().copied()
    }

    /// The file called `name`, if any (names are unique).
    pub fn find(&self, name: &str) -> Option<Entry<'a>> {
        self.entries.iter().copied().find(|e| e.name == name)
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the image holds no files.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The whole image, as given to [`BootImage::parse`].
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}
