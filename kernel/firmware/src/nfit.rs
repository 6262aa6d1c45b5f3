//! Discovering persistent memory from the ACPI NFIT (NVDIMM Firmware
//! Interface Table), as QEMU's `-device nvdimm` (with `nvdimm=on`) and real
//! firmware publish it. Pure parsing: the caller finds the table through
//! the RSDP/XSDT and hands over its bytes.
//!
//! Used here: the table header (signature, length, checksum), SPA Range
//! structures (type 0: physical address ranges with a type GUID, the
//! persistent-memory GUID marking byte-addressable pmem) and NVDIMM Region
//! Mapping structures (type 1: which DIMM backs which range). Other
//! structure types are skipped by their length.
//!
//! Nothing is allocated ([`structures`] checks the whole table, then
//! decodes on the fly): the kernel, which has no heap, parses it at boot.

use core::fmt;

const HEADER: usize = 36;
/// The NFIT has 4 reserved bytes after the ACPI header.
const FIRST_STRUCTURE: usize = HEADER + 4;
const SPA_RANGE: u16 = 0;
const REGION_MAPPING: u16 = 1;
const SPA_MIN_LEN: usize = 56;
const MAPPING_LEN: usize = 48;

/// {66F0D379-B4F3-4074-AC43-0D3318B78CDB} as stored (mixed endian).
pub const GUID_PERSISTENT_MEMORY: [u8; 16] =
    [0x79, 0xD3, 0xF0, 0x66, 0xF3, 0xB4, 0x74, 0x40, 0xAC, 0x43, 0x0D, 0x33, 0x18, 0xB7, 0x8C, 0xDB];
/// {7305944F-FDDA-44E3-B16C-3F22D252E5D0}: volatile memory.
pub const GUID_VOLATILE_MEMORY: [u8; 16] =
    [0x4F, 0x94, 0x05, 0x73, 0xDA, 0xFD, 0xE3, 0x44, 0xB1, 0x6C, 0x3F, 0x22, 0xD2, 0x52, 0xE5, 0xD0];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NfitError {
    TooShort {
        len: usize,
    },
    BadSignature([u8; 4]),
    /// The header's length field disagrees with the bytes given.
    LengthMismatch {
        header: u32,
        actual: usize,
    },
    BadChecksum {
        sum: u8,
    },
    /// A structure at `offset` claims a length that is too small for its
    /// type, or runs past the end of the table.
    BadStructure {
        offset: usize,
        kind: u16,
        len: u16,
    },
}

impl fmt::Display for NfitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NfitError::TooShort { len } => write!(f, "NFIT: {len} bytes, shorter than its header"),
            NfitError::BadSignature(s) => write!(f, "NFIT: signature {s:?} is not \"NFIT\""),
            NfitError::LengthMismatch { header, actual } => {
                write!(f, "NFIT: header says {header} bytes, {actual} given")
            }
            NfitError::BadChecksum { sum } => write!(f, "NFIT: bytes sum to {sum:#04x}, not 0"),
            NfitError::BadStructure { offset, kind, len } => {
                write!(f, "NFIT: structure of type {kind} at offset {offset} has bad length {len}")
            }
        }
    }
}

/// What a SPA range holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeKind {
    PersistentMemory,
    VolatileMemory,
    Other([u8; 16]),
}

/// A System Physical Address range (structure type 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaRange {
    pub index: u16,
    pub flags: u16,
    pub proximity_domain: u32,
    pub kind: RangeKind,
    pub base: u64,
    pub length: u64,
    /// EFI memory attributes (UC/WC/WT/WB/...).
    pub attributes: u64,
}

/// An NVDIMM Region Mapping (structure type 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionMapping {
    pub device_handle: u32,
    pub physical_id: u16,
    pub region_id: u16,
    pub spa_index: u16,
    pub size: u64,
    pub region_offset: u64,
    pub dimm_base: u64,
    pub interleave_ways: u16,
    pub state_flags: u16,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// One structure of an NFIT, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Structure {
    Spa(SpaRange),
    Mapping(RegionMapping),
    /// A structure of a type not decoded here.
    Other {
        kind: u16,
    },
}

/// Checks the header (signature, length, checksum) and the framing of
/// every structure, then returns an iterator over the decoded structures.
/// Nothing is allocated: the kernel uses this at boot, before it has (and
/// it never has) a heap.
pub fn structures(table: &[u8]) -> Result<Structures<'_>, NfitError> {
    if table.len() < FIRST_STRUCTURE {
        return Err(NfitError::TooShort { len: table.len() });
    }
    let sig = [table[0], table[1], table[2], table[3]];
    if &sig != b"NFIT" {
        return Err(NfitError::BadSignature(sig));
    }
    let len = u32_at(table, 4);
    if len as usize != table.len() {
        return Err(NfitError::LengthMismatch { header: len, actual: table.len() });
    }
    let sum = table.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    if sum != 0 {
        return Err(NfitError::BadChecksum { sum });
    }
    let mut off = FIRST_STRUCTURE;
    while off < table.len() {
        off = decode_at(table, off)?.1;
    }
    Ok(Structures { table, off: FIRST_STRUCTURE })
}

/// The structures of a checked NFIT, in table order.
#[derive(Clone, Debug)]
pub struct Structures<'a> {
    table: &'a [u8],
    off: usize,
}

impl Iterator for Structures<'_> {
    type Item = Structure;
    fn next(&mut self) -> Option<Structure> {
        if self.off >= self.table.len() {
            return None;
        }
        // `structures` decoded every one of these already: this cannot
        // fail, and would end the iteration if it did.
        let (s, next) = decode_at(self.table, self.off).ok()?;
        self.off = next;
        Some(s)
    }
}

/// The structure at `off` and the offset of the next one; every length is
/// checked before it is used.
fn decode_at(table: &[u8], off: usize) -> Result<(Structure, usize), NfitError> {
    if off + 4 > table.len() {
        return Err(NfitError::BadStructure { offset: off, kind: 0, len: 0 });
    }
    let kind = u16_at(table, off);
    let slen = u16_at(table, off + 2);
    let bad = NfitError::BadStructure { offset: off, kind, len: slen };
    let s = table.get(off..off + slen as usize).ok_or(bad)?;
    if (slen as usize) < 4 {
        return Err(bad);
    }
    let structure = match kind {
        SPA_RANGE => {
            if s.len() < SPA_MIN_LEN {
                return Err(bad);
            }
            let mut guid = [0u8; 16];
            guid.copy_from_slice(&s[16..32]);
            let kind = match guid {
                GUID_PERSISTENT_MEMORY => RangeKind::PersistentMemory,
                GUID_VOLATILE_MEMORY => RangeKind::VolatileMemory,
                g => RangeKind::Other(g),
            };
            Structure::Spa(SpaRange {
                index: u16_at(s, 4),
                flags: u16_at(s, 6),
                proximity_domain: u32_at(s, 12),
                kind,
                base: u64_at(s, 32),
                length: u64_at(s, 40),
                attributes: u64_at(s, 48),
            })
        }
        REGION_MAPPING => {
            if s.len() < MAPPING_LEN {
                return Err(bad);
            }
            Structure::Mapping(RegionMapping {
                device_handle: u32_at(s, 4),
                physical_id: u16_at(s, 8),
                region_id: u16_at(s, 10),
                spa_index: u16_at(s, 12),
                size: u64_at(s, 16),
                region_offset: u64_at(s, 24),
                dimm_base: u64_at(s, 32),
                interleave_ways: u16_at(s, 42),
                state_flags: u16_at(s, 44),
            })
        }
        kind => Structure::Other { kind },
    };
    Ok((structure, off + slen as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decoded ranges, mappings and the count of other structures.
    fn parse(t: &[u8]) -> Result<(Vec<SpaRange>, Vec<RegionMapping>, usize), NfitError> {
        let (mut ranges, mut mappings, mut skipped) = (vec![], vec![], 0);
        for s in structures(t)? {
            match s {
                Structure::Spa(r) => ranges.push(r),
                Structure::Mapping(m) => mappings.push(m),
                Structure::Other { .. } => skipped += 1,
            }
        }
        Ok((ranges, mappings, skipped))
    }

    /// An NFIT shaped like the one QEMU 7.2 builds for one 64 MiB nvdimm at
    /// 4 GiB: SPA range, region mapping, control region (type 4, skipped).
    fn qemu_like() -> Vec<u8> {
        let mut t = vec![0u8; FIRST_STRUCTURE];
        t[..4].copy_from_slice(b"NFIT");
        t[8] = 1;
        let mut spa = vec![0u8; 56];
        spa[2] = 56;
        spa[4] = 2; // index
        spa[6] = 2; // flags: proximity domain valid
        spa[16..32].copy_from_slice(&GUID_PERSISTENT_MEMORY);
        spa[32..40].copy_from_slice(&(4u64 << 30).to_le_bytes());
        spa[40..48].copy_from_slice(&(64u64 << 20).to_le_bytes());
        spa[48..56].copy_from_slice(&0x8008u64.to_le_bytes());
        let mut map = vec![0u8; 48];
        map[0] = 1;
        map[2] = 48;
        map[4..8].copy_from_slice(&0x1u32.to_le_bytes());
        map[12] = 2; // SPA index
        map[16..24].copy_from_slice(&(64u64 << 20).to_le_bytes());
        map[42] = 1;
        let mut ctl = vec![0u8; 80];
        ctl[0] = 4;
        ctl[2] = 80;
        t.extend(spa);
        t.extend(map);
        t.extend(ctl);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        let sum = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        t[9] = 0u8.wrapping_sub(sum);
        t
    }

    #[test]
    fn parses_ranges_and_mappings() {
        let (ranges, mappings, skipped) = parse(&qemu_like()).unwrap();
        let pm: Vec<_> = ranges.iter().filter(|r| r.kind == RangeKind::PersistentMemory).collect();
        assert_eq!(pm.len(), 1);
        assert_eq!((pm[0].base, pm[0].length, pm[0].index), (4 << 30, 64 << 20, 2));
        assert_eq!(mappings[0].spa_index, 2);
        assert_eq!(mappings[0].size, 64 << 20);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn rejects_bad_tables_without_panicking() {
        let good = qemu_like();
        let mut t = good.clone();
        t[20] ^= 1;
        assert!(matches!(parse(&t), Err(NfitError::BadChecksum { .. })));
        assert!(matches!(parse(&good[..30]), Err(NfitError::TooShort { .. })));
        assert!(matches!(parse(&good[..good.len() - 1]), Err(NfitError::LengthMismatch { .. })));
        let mut t = good.clone();
        t[0] = b'X';
        assert!(matches!(parse(&t), Err(NfitError::BadSignature(_))));
        // Structure lengths too small for the type, re-checksummed.
        for v in [0u8, 1, 3, 55] {
            let mut t = good.clone();
            t[FIRST_STRUCTURE + 2] = v;
            reseal(&mut t);
            assert!(matches!(parse(&t), Err(NfitError::BadStructure { .. })), "{v}");
        }
    }

    fn reseal(t: &mut [u8]) {
        t[9] = 0;
        let sum = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        t[9] = 0u8.wrapping_sub(sum);
    }

    #[test]
    fn fuzz_parse_never_panics() {
        let good = qemu_like();
        let mut rng = testrng::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut ok = 0;
        for _ in 0..20_000 {
            let mut t = good.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(t.len() as u64) as usize;
                t[at] = rng.below(256) as u8;
            }
            if rng.below(4) == 0 {
                let cut = rng.below(t.len() as u64) as usize;
                t.truncate(cut.max(8));
                let len = t.len() as u32;
                t[4..8].copy_from_slice(&len.to_le_bytes());
            }
            if t.len() > 9 {
                reseal(&mut t);
            }
            // Whatever `structures` accepts decodes to the end.
            if let Ok(it) = structures(&t) {
                let _ = it.count();
                ok += 1;
            }
        }
        assert!(ok > 0);
    }

    #[test]
    fn structures_walks_in_table_order() {
        let t = qemu_like();
        let all: Vec<Structure> = structures(&t).unwrap().collect();
        assert_eq!(all.len(), 3);
        assert!(matches!(all[0], Structure::Spa(r) if r.base == 4 << 30 && r.kind == RangeKind::PersistentMemory));
        assert!(matches!(all[1], Structure::Mapping(m) if m.spa_index == 2));
        assert_eq!(all[2], Structure::Other { kind: 4 });
        let mut t = t.clone();
        t[FIRST_STRUCTURE + 56 + 2] = 3; // the mapping's length
        reseal(&mut t);
        assert!(
            matches!(structures(&t), Err(NfitError::BadStructure { offset, kind: 1, len: 3 }) if offset == FIRST_STRUCTURE + 56)
        );
    }
}
