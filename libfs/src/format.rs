//! The on-media format: the one place that defines it.
//!
//! ```text
//! page 0                      superblock (geometry, magic, version, CRC)
//! pages [1, 1+C)              checkpoint slot 0
//! pages [1+C, 1+2C)           checkpoint slot 1
//! pages [1+2C, 1+2C+L)        redo log
//! pages [1+2C+L, total)       data pages (file contents, 4 KiB each)
//! ```
//!
//! All integers are little-endian. Every metadata structure carries a
//! CRC-32 (`crc32fast`). A checkpoint slot is a [`CkptHeader`] followed by
//! a payload of records that rebuild the whole metadata state from empty;
//! the log is a sequence of [`ChunkHeader`]-framed chunks of records, each
//! starting at a multiple of the superblock's `log_unit` (a cache line on
//! persistent memory, a sector on a block device), so a commit never
//! rewrites a unit holding an earlier commit.
//!
//! Records (the same encoding in checkpoints and in the log):
//! ```text
//! 1 SetInode  ino u64, kind u8, mode u16, nlink u32, size u64, mtime u64,
//!             parent u64, n u32, n × (file_page u64, medium_page u64, pages u64)
//! 2 FreeInode ino u64
//! 3 DirAdd    dir u64, ino u64, len u8, name[len]
//! 4 DirRemove dir u64, len u8, name[len]
//! ```

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{Error, Result};

pub const PAGE_SIZE: usize = 4096;
pub const MAGIC: [u8; 8] = *b"XOMBLFS\0";
pub const VERSION: u32 = 1;
pub const CKPT_MAGIC: [u8; 8] = *b"LFSCKPT\0";
pub const CHUNK_MAGIC: u32 = u32::from_le_bytes(*b"LFSL");
pub const MAX_NAME: usize = 255;
pub const SUPERBLOCK_LEN: usize = 64;
pub const CKPT_HEADER_LEN: usize = 64;
pub const CHUNK_HEADER_LEN: usize = 32;

/// The kind of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File = 1,
    Dir = 2,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::File),
            2 => Some(Kind::Dir),
            _ => None,
        }
    }
}

pub fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// Page 0. Written once by mkfs; never rewritten (so a crash cannot tear it).
///
/// ```text
/// 0 magic[8] 8 version u32 12 page_size u32 16 total_pages u64
/// 24 ckpt_pages u64 32 log_pages u64 40 log_unit u32 44 reserved[16] 60 crc u32
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub total_pages: u64,
    /// Pages per checkpoint slot (there are two).
    pub ckpt_pages: u64,
    pub log_pages: u64,
    /// Alignment of log chunks in bytes: the medium's atomic write unit.
    pub log_unit: u32,
}

impl Superblock {
    pub fn ckpt_slot(&self, slot: usize) -> u64 {
        (1 + slot as u64 * self.ckpt_pages) * PAGE_SIZE as u64
    }
    pub fn log_start(&self) -> u64 {
        (1 + 2 * self.ckpt_pages) * PAGE_SIZE as u64
    }
    pub fn log_len(&self) -> u64 {
        self.log_pages * PAGE_SIZE as u64
    }
    pub fn data_start_page(&self) -> u64 {
        1 + 2 * self.ckpt_pages + self.log_pages
    }

    pub fn encode(&self) -> [u8; SUPERBLOCK_LEN] {
        let mut b = [0u8; SUPERBLOCK_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.total_pages.to_le_bytes());
        b[24..32].copy_from_slice(&self.ckpt_pages.to_le_bytes());
        b[32..40].copy_from_slice(&self.log_pages.to_le_bytes());
        b[40..44].copy_from_slice(&self.log_unit.to_le_bytes());
        let c = crc(&[&b[..60]]);
        b[60..64].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Decodes and checks the superblock against the medium's size.
    pub fn decode(b: &[u8], medium_bytes: u64) -> Result<Superblock> {
        if b.len() < SUPERBLOCK_LEN || b[0..8] != MAGIC {
            return Err(Error::corrupt("superblock: bad magic (not a libfs image)", 0));
        }
        let (stored, computed) = (le32(b, 60), crc(&[&b[..60]]));
        if stored != computed {
            return Err(Error::corrupt(alloc::format!("superblock: checksum {stored:#x} != {computed:#x}"), 60));
        }
        let version = le32(b, 8);
        if version != VERSION {
            return Err(Error::corrupt(alloc::format!("superblock: unsupported version {version}"), 8));
        }
        if le32(b, 12) as usize != PAGE_SIZE {
            return Err(Error::corrupt("superblock: page size is not 4096", 12));
        }
        let sb = Superblock {
            total_pages: le64(b, 16),
            ckpt_pages: le64(b, 24),
            log_pages: le64(b, 32),
            log_unit: le32(b, 40),
        };
        // Size first: after it every page count is below 2^52, so the
        // layout arithmetic cannot overflow.
        let needed = sb.total_pages.saturating_mul(PAGE_SIZE as u64);
        if needed > medium_bytes {
            return Err(Error::corrupt(
                alloc::format!("image truncated: superblock says {needed} bytes, medium has {medium_bytes}"),
                16,
            ));
        }
        if sb.ckpt_pages == 0
            || sb.log_pages == 0
            || sb.ckpt_pages >= sb.total_pages
            || sb.log_pages >= sb.total_pages
            || sb.data_start_page() >= sb.total_pages
        {
            return Err(Error::corrupt("superblock: impossible geometry", 16));
        }
        if !(64..=PAGE_SIZE as u32).contains(&sb.log_unit) || !sb.log_unit.is_power_of_two() {
            return Err(Error::corrupt("superblock: bad log unit", 40));
        }
        Ok(sb)
    }
}

/// The first 64 bytes of a checkpoint slot.
///
/// ```text
/// 0 magic[8] 8 gen u64 16 payload_len u64 24 next_ino u64
/// 32 payload_crc u32 36 reserved[24] 60 header crc u32
/// ```
/// The payload follows at byte 64 of the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CkptHeader {
    /// Checkpoint generation: the newest valid slot wins; log chunks carry
    /// the generation of the checkpoint they follow.
    pub gen: u64,
    pub payload_len: u64,
    pub next_ino: u64,
    pub payload_crc: u32,
}

impl CkptHeader {
    pub fn encode(&self) -> [u8; CKPT_HEADER_LEN] {
        let mut b = [0u8; CKPT_HEADER_LEN];
        b[0..8].copy_from_slice(&CKPT_MAGIC);
        b[8..16].copy_from_slice(&self.gen.to_le_bytes());
        b[16..24].copy_from_slice(&self.payload_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.next_ino.to_le_bytes());
        b[32..36].copy_from_slice(&self.payload_crc.to_le_bytes());
        let c = crc(&[&b[..60]]);
        b[60..64].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// `Ok(None)` for a slot that was never written (all zero magic).
    pub fn decode(b: &[u8], at: u64) -> Result<Option<CkptHeader>> {
        if b[0..8] == [0; 8] {
            return Ok(None);
        }
        if b[0..8] != CKPT_MAGIC {
            return Err(Error::corrupt("checkpoint header: bad magic", at));
        }
        let (stored, computed) = (le32(b, 60), crc(&[&b[..60]]));
        if stored != computed {
            return Err(Error::corrupt(
                alloc::format!("checkpoint header: checksum {stored:#x} != {computed:#x}"),
                at + 60,
            ));
        }
        Ok(Some(CkptHeader {
            gen: le64(b, 8),
            payload_len: le64(b, 16),
            next_ino: le64(b, 24),
            payload_crc: le32(b, 32),
        }))
    }
}

/// The frame of one log chunk (one commit).
///
/// ```text
/// 0 magic u32 4 payload_len u32 8 gen u64 16 seq u64 24 reserved u32
/// 28 crc u32 (over bytes 0..28 and the payload)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub payload_len: u32,
    pub gen: u64,
    pub seq: u64,
}

impl ChunkHeader {
    pub fn encode(&self, payload: &[u8]) -> [u8; CHUNK_HEADER_LEN] {
        let mut b = [0u8; CHUNK_HEADER_LEN];
        b[0..4].copy_from_slice(&CHUNK_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.gen.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        let c = crc(&[&b[..28], payload]);
        b[28..32].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Parses a header without checking the CRC (the payload is needed).
    pub fn peek(b: &[u8]) -> Option<ChunkHeader> {
        if b.len() < CHUNK_HEADER_LEN || le32(b, 0) != CHUNK_MAGIC {
            return None;
        }
        Some(ChunkHeader { payload_len: le32(b, 4), gen: le64(b, 8), seq: le64(b, 16) })
    }

    pub fn check(b: &[u8], payload: &[u8]) -> bool {
        le32(b, 28) == crc(&[&b[..28], payload])
    }
}

/// One change to the metadata state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    SetInode(InodeRec),
    FreeInode(u64),
    DirAdd { dir: u64, ino: u64, name: Vec<u8> },
    DirRemove { dir: u64, name: Vec<u8> },
}

/// An inode as stored: attributes and extents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InodeRec {
    pub ino: u64,
    pub kind: Kind,
    pub mode: u16,
    pub nlink: u32,
    pub size: u64,
    pub mtime: u64,
    /// For a directory, the directory holding it (the root: itself).
    pub parent: u64,
    /// (file page, medium page, pages), sorted by file page.
    pub extents: Vec<(u64, u64, u64)>,
}

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::SetInode(i) => {
                out.push(1);
                out.extend_from_slice(&i.ino.to_le_bytes());
                out.push(i.kind as u8);
                out.extend_from_slice(&i.mode.to_le_bytes());
                out.extend_from_slice(&i.nlink.to_le_bytes());
                out.extend_from_slice(&i.size.to_le_bytes());
                out.extend_from_slice(&i.mtime.to_le_bytes());
                out.extend_from_slice(&i.parent.to_le_bytes());
                out.extend_from_slice(&(i.extents.len() as u32).to_le_bytes());
                for (f, m, n) in &i.extents {
                    out.extend_from_slice(&f.to_le_bytes());
                    out.extend_from_slice(&m.to_le_bytes());
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
            Record::FreeInode(ino) => {
                out.push(2);
                out.extend_from_slice(&ino.to_le_bytes());
            }
            Record::DirAdd { dir, ino, name } => {
                out.push(3);
                out.extend_from_slice(&dir.to_le_bytes());
                out.extend_from_slice(&ino.to_le_bytes());
                out.push(name.len() as u8);
                out.extend_from_slice(name);
            }
            Record::DirRemove { dir, name } => {
                out.push(4);
                out.extend_from_slice(&dir.to_le_bytes());
                out.push(name.len() as u8);
                out.extend_from_slice(name);
            }
        }
    }

    /// Decodes every record of `buf`; `base` is its medium offset (for errors).
    pub fn decode_all(buf: &[u8], base: u64, what: &str) -> Result<Vec<Record>> {
        let mut r = Reader { buf, pos: 0, base, what };
        let mut out = Vec::new();
        while r.pos < buf.len() {
            let start = r.pos;
            let rec = match r.u8()? {
                1 => {
                    let ino = r.u64()?;
                    let kind = Kind::from_u8(r.u8()?).ok_or_else(|| r.err("inode kind"))?;
                    let mode = r.u16()?;
                    let nlink = r.u32()?;
                    let size = r.u64()?;
                    let mtime = r.u64()?;
                    let parent = r.u64()?;
                    let n = r.u32()? as usize;
                    if n > (buf.len() - r.pos) / 24 {
                        return Err(r.err("extent count"));
                    }
                    let mut extents = Vec::with_capacity(n);
                    for _ in 0..n {
                        extents.push((r.u64()?, r.u64()?, r.u64()?));
                    }
                    Record::SetInode(InodeRec { ino, kind, mode, nlink, size, mtime, parent, extents })
                }
                2 => Record::FreeInode(r.u64()?),
                3 => {
                    let (dir, ino) = (r.u64()?, r.u64()?);
                    Record::DirAdd { dir, ino, name: r.name()? }
                }
                4 => {
                    let dir = r.u64()?;
                    Record::DirRemove { dir, name: r.name()? }
                }
                t => {
                    r.pos = start;
                    return Err(r.err(&alloc::format!("record tag {t}")));
                }
            };
            out.push(rec);
        }
        Ok(out)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    what: &'a str,
}

impl Reader<'_> {
    fn err(&self, field: &str) -> Error {
        let what: String = alloc::format!("{}: bad {field}", self.what);
        Error::corrupt(what, self.base + self.pos as u64)
    }
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.buf.len() - self.pos < n {
            return Err(self.err("length (record runs past its end)"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap_or([0; 2])))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or([0; 4])))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or([0; 8])))
    }
    fn name(&mut self) -> Result<Vec<u8>> {
        let n = self.u8()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the superblock layout: change the format, bump VERSION.
    #[test]
    fn superblock_layout_is_pinned() {
        let sb = Superblock { total_pages: 0x1122, ckpt_pages: 3, log_pages: 4, log_unit: 512 };
        let b = sb.encode();
        assert_eq!(&b[0..8], b"XOMBLFS\0");
        assert_eq!(&b[8..12], &1u32.to_le_bytes());
        assert_eq!(&b[12..16], &4096u32.to_le_bytes());
        assert_eq!(&b[16..24], &0x1122u64.to_le_bytes());
        assert_eq!(&b[24..32], &3u64.to_le_bytes());
        assert_eq!(&b[32..40], &4u64.to_le_bytes());
        assert_eq!(&b[40..44], &512u32.to_le_bytes());
        assert_eq!(&b[60..64], &crc(&[&b[..60]]).to_le_bytes());
        assert_eq!(Superblock::decode(&b, 0x1122 * 4096), Ok(sb));
        assert_eq!(sb.ckpt_slot(0), 4096);
        assert_eq!(sb.ckpt_slot(1), 4 * 4096);
        assert_eq!(sb.log_start(), 7 * 4096);
        assert_eq!(sb.data_start_page(), 11);
    }

    #[test]
    fn superblock_rejects_damage() {
        let sb = Superblock { total_pages: 64, ckpt_pages: 2, log_pages: 4, log_unit: 64 };
        let good = sb.encode();
        for bit in 0..(SUPERBLOCK_LEN * 8) {
            let mut b = good;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(Superblock::decode(&b, 64 * 4096), Err(Error::Corrupt { .. })), "bit {bit}");
        }
        let e = Superblock::decode(&good, 63 * 4096).unwrap_err();
        assert!(alloc::format!("{e}").contains("truncated"), "{e}");
    }

    /// Superblocks with valid checksums and arbitrary fields: refused or
    /// accepted, never a panic (overflowing geometry included).
    #[test]
    fn crafted_superblocks_never_panic() {
        let mut rng = testrng::Rng::new(0x1234_5678_9abc_def0);
        let mut next = || rng.next_u64();
        for i in 0..20_000 {
            let pick = |v: u64, k: u64| match k % 4 {
                0 => v,
                1 => v % 64,
                2 => u64::MAX - v % 3,
                _ => v >> 40,
            };
            let sb = Superblock {
                total_pages: pick(next(), i),
                ckpt_pages: pick(next(), i / 4),
                log_pages: pick(next(), i / 16),
                log_unit: next() as u32 % 8192,
            };
            if let Ok(ok) = Superblock::decode(&sb.encode(), 1 << 40) {
                assert!(ok.data_start_page() < ok.total_pages);
            }
        }
    }

    #[test]
    fn ckpt_and_chunk_layout_is_pinned() {
        let h = CkptHeader { gen: 7, payload_len: 100, next_ino: 9, payload_crc: 0xdead_beef };
        let b = h.encode();
        assert_eq!(&b[0..8], b"LFSCKPT\0");
        assert_eq!(&b[8..16], &7u64.to_le_bytes());
        assert_eq!(&b[16..24], &100u64.to_le_bytes());
        assert_eq!(&b[24..32], &9u64.to_le_bytes());
        assert_eq!(&b[32..36], &0xdead_beefu32.to_le_bytes());
        assert_eq!(CkptHeader::decode(&b, 0), Ok(Some(h)));
        assert_eq!(CkptHeader::decode(&[0u8; 64], 0), Ok(None));

        let c = ChunkHeader { payload_len: 3, gen: 2, seq: 5 };
        let b = c.encode(b"abc");
        assert_eq!(&b[0..4], b"LFSL");
        assert_eq!(&b[4..8], &3u32.to_le_bytes());
        assert_eq!(&b[8..16], &2u64.to_le_bytes());
        assert_eq!(&b[16..24], &5u64.to_le_bytes());
        assert_eq!(ChunkHeader::peek(&b), Some(c));
        assert!(ChunkHeader::check(&b, b"abc"));
        assert!(!ChunkHeader::check(&b, b"abd"));
    }

    #[test]
    fn record_encoding_is_pinned_and_round_trips() {
        let recs = alloc::vec![
            Record::SetInode(InodeRec {
                ino: 2,
                kind: Kind::File,
                mode: 0o644,
                nlink: 1,
                size: 5000,
                mtime: 3,
                parent: 1,
                extents: alloc::vec![(0, 20, 2)]
            }),
            Record::FreeInode(9),
            Record::DirAdd { dir: 1, ino: 2, name: b"a".to_vec() },
            Record::DirRemove { dir: 1, name: b"bc".to_vec() },
        ];
        let mut out = Vec::new();
        for r in &recs {
            r.encode(&mut out);
        }
        assert_eq!(out.len(), (1 + 8 + 1 + 2 + 4 + 8 + 8 + 8 + 4 + 24) + 9 + (1 + 16 + 1 + 1) + (1 + 8 + 1 + 2));
        assert_eq!(&out[0..2], &[1, 2]);
        assert_eq!(Record::decode_all(&out, 0, "t").unwrap(), recs);
        // Every truncation is an error, never a panic.
        for n in 0..out.len() {
            let _ = Record::decode_all(&out[..n], 0, "t");
        }
    }
}
