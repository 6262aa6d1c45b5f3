//! The one checksum of libdb's on-medium format (version 4): CRC-32C
//! (Castagnoli) over a page's bytes `4..PAGE_SIZE` and over a log record's
//! header (from byte 4) and payload. Every page and every log record is
//! sealed and checked through [`checksum`], nothing else.
//!
//! Version 3 and earlier used CRC-32 (IEEE, `crc32fast`). CRC-32C is as
//! strong for our sizes (every burst of up to 32 bits, all 1-, 2- and
//! 3-bit errors within a page) and x86's SSE4.2 has an instruction for it,
//! 8 bytes per instruction: `exo-crc32c` takes it when CPUID says the CPU
//! has it and falls back to slice-by-16 tables otherwise (why a crate of
//! our own with one `unsafe` call: `libdb/DESIGN.md`, "Checksum").

/// CRC-32C of `bytes`.
#[inline]
pub fn checksum(bytes: &[u8]) -> u32 {
    exo_crc32c::crc32c(bytes)
}
