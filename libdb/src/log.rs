//! The commit log: how a small transaction becomes durable without
//! rewriting a tree path.
//!
//! The log region (pages `2 .. 2 + log_pages`) is restarted at every
//! checkpoint with a new epoch (the checkpoint's generation). A record is
//!
//! ```text
//! 0..4   CRC-32C (`checksum.rs`) of bytes 4 .. 24 + len
//! 4..8   len: payload bytes; bit 31 set = "batch start": every earlier
//!        record was durable before this one was written; bit 30 set =
//!        a reach record (below)
//! 8..16  epoch
//! 16..24 seq: 0, 1, 2, ... within the epoch
//! 24..   payload: ops, each `kind u8 (1 put, 2 delete) | klen u16 | vlen u32 | key | value`
//! ```
//!
//! padded to 8 bytes. Records written together (a group commit) are
//! contiguous; each write is padded to the medium's write alignment, and the
//! next write starts at the next aligned offset, so a block that holds a
//! committed record is never rewritten. Replay accepts record `seq` only
//! directly after record `seq - 1` (or at the next aligned offset) with the
//! current epoch and a valid checksum, so what it finds is always a prefix
//! of what was written, whatever subset of unflushed writes survived.
//!
//! **Reach records** (format version 3). A reach record's payload is one
//! `u64`: the log offset this epoch's log will not reach (no byte of a
//! record at or beyond it is written) until a later reach record says
//! otherwise. Before any reach record the bound is [`initial_reach`]. A
//! reach record is numbered in the chain like a commit, is always its own
//! write followed by a barrier, lies inside the reach in force, and leaves
//! room there for the next write's first header ([`needs_reach`]): so a
//! damaged or lost reach record is still followed by a batch start inside
//! the old reach, and recovery need only look for records below the
//! largest reach its replayed prefix declares (`recovery.rs`).

use alloc::vec::Vec;

use crate::page::{rd16, rd32, rd64};

pub const RECORD_HEADER: usize = 24;
const BATCH_START: u32 = 1 << 31;
const REACH: u32 = 1 << 30;
/// Payload of a reach record: the offset it declares.
const REACH_PAYLOAD: usize = 8;
/// Reach steps and the initial reach: an eighth of the log, at least 4
/// pages (room for a reach record and the next header at any write
/// alignment up to a page) and at most 256 KiB (what `open` reads at once).
const MIN_REACH_STEP: u64 = 4 * crate::page::PAGE_SIZE as u64;
const MAX_REACH_STEP: u64 = 256 << 10;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

pub type Op = (Vec<u8>, Option<Vec<u8>>);

pub fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Op header bytes: kind u8, klen u16, vlen u32.
const OP_HEADER: usize = 7;

/// Bytes [`encode`] appends for a record holding `ops` (padding included),
/// known before encoding so a commit can check the log's room and reserve
/// the buffer without building the record twice.
pub fn record_len<'a>(ops: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> usize {
    pad8(RECORD_HEADER + ops.map(|(k, v)| OP_HEADER + k.len() + v.map_or(0, |v| v.len())).sum::<usize>())
}

/// Appends one record holding `ops` to `out`.
pub fn encode<'a>(
    out: &mut Vec<u8>,
    epoch: u64,
    seq: u64,
    batch_start: bool,
    ops: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) {
    let start = out.len();
    out.resize(start + RECORD_HEADER, 0);
    for (key, val) in ops {
        out.push(if val.is_some() { OP_PUT } else { OP_DELETE });
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(&(val.map_or(0, |v| v.len()) as u32).to_le_bytes());
        out.extend_from_slice(key);
        if let Some(v) = val {
            out.extend_from_slice(v);
        }
    }
    let len = out.len() - start - RECORD_HEADER;
    let flag = if batch_start { BATCH_START } else { 0 };
    out[start + 4..start + 8].copy_from_slice(&(len as u32 | flag).to_le_bytes());
    out[start + 8..start + 16].copy_from_slice(&epoch.to_le_bytes());
    out[start + 16..start + 24].copy_from_slice(&seq.to_le_bytes());
    let crc = crate::checksum::checksum(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + pad8(RECORD_HEADER + len), 0);
}

/// How far a new log reach extends past what the write that needs it
/// ends at, for a log region of `cap` bytes (writer policy, not format).
pub fn reach_step(cap: u64) -> u64 {
    (cap / 8 / crate::page::PAGE_SIZE as u64 * crate::page::PAGE_SIZE as u64).clamp(MIN_REACH_STEP, MAX_REACH_STEP)
}

/// The reach of a fresh epoch before any reach record (format).
pub fn initial_reach(cap: u64) -> u64 {
    reach_step(cap).min(cap)
}

/// Bytes a reach record occupies in the log: its own write, padded to the
/// medium's write alignment.
pub fn reach_record_len(align: u64) -> u64 {
    (pad8(RECORD_HEADER + REACH_PAYLOAD) as u64).div_ceil(align) * align
}

/// Whether a write ending at `end` (aligned) must be preceded by a new
/// reach record when the reach is `reach` in a log of `cap` bytes: after
/// every write, a reach record and the next write's header must still
/// fit below the reach (or the reach is already the whole log).
pub fn needs_reach(end: u64, reach: u64, cap: u64, align: u64) -> bool {
    reach < cap && end + 2 * reach_record_len(align) > reach
}

/// Appends a reach record (always a batch start: its own write) declaring
/// `reach`.
pub fn encode_reach(out: &mut Vec<u8>, epoch: u64, seq: u64, reach: u64) {
    let start = out.len();
    out.resize(start + RECORD_HEADER, 0);
    out.extend_from_slice(&reach.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&(REACH_PAYLOAD as u32 | BATCH_START | REACH).to_le_bytes());
    out[start + 8..start + 16].copy_from_slice(&epoch.to_le_bytes());
    out[start + 16..start + 24].copy_from_slice(&seq.to_le_bytes());
    let crc = crate::checksum::checksum(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The offset a checksummed reach record's payload declares; `None` if it
/// is malformed.
pub fn reach_of(payload: &[u8]) -> Option<u64> {
    (payload.len() == REACH_PAYLOAD).then(|| rd64(payload, 0))
}

/// A record header as read back.
pub struct RecordHeader {
    pub len: usize,
    pub batch_start: bool,
    /// A reach record (its payload is [`reach_of`]), not a commit.
    pub reach: bool,
    pub epoch: u64,
    pub seq: u64,
}

pub fn parse_header(h: &[u8]) -> RecordHeader {
    RecordHeader {
        len: (rd32(h, 4) & !(BATCH_START | REACH)) as usize,
        batch_start: rd32(h, 4) & BATCH_START != 0,
        reach: rd32(h, 4) & REACH != 0,
        epoch: rd64(h, 8),
        seq: rd64(h, 16),
    }
}

/// Whether header + payload carry a valid checksum.
pub fn checksum_ok(header: &[u8], payload: &[u8]) -> bool {
    let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
    record.extend_from_slice(&header[..RECORD_HEADER]);
    record.extend_from_slice(payload);
    record_checksum_ok(&record)
}

/// Whether a whole record (header and payload, contiguous) carries a
/// valid checksum: one pass over the bytes.
pub fn record_checksum_ok(record: &[u8]) -> bool {
    crate::checksum::checksum(&record[4..]) == rd32(record, 0)
}

/// The ops of a checksummed payload, borrowed from it: `None` if it is
/// malformed (which a valid checksum makes a bug or a deliberate forgery,
/// never a torn write). The whole payload is checked before the first op
/// is handed out, so a caller never applies part of a malformed record.
/// Replay walks records in place with this: no copy, no allocation.
pub fn ops(p: &[u8]) -> Option<Ops<'_>> {
    let mut all = Ops { rest: p };
    for op in all.by_ref() {
        op?;
    }
    Some(Ops { rest: p })
}

/// Iterator over a payload's ops; see [`ops`].
pub struct Ops<'a> {
    rest: &'a [u8],
}

/// One op: key and value (`None`: a deletion).
pub type OpRef<'a> = (&'a [u8], Option<&'a [u8]>);

impl<'a> Ops<'a> {
    /// The next op, `Some(None)` if the rest is malformed.
    fn step(&mut self) -> Option<Option<OpRef<'a>>> {
        let p = self.rest;
        if p.is_empty() {
            return None;
        }
        if p.len() < 7 {
            self.rest = &[];
            return Some(None);
        }
        let (kind, klen, vlen) = (p[0], rd16(p, 1), rd32(p, 3) as usize);
        let rest = &p[7..];
        let (op, used) = match kind {
            OP_PUT if rest.len() >= klen && rest.len() - klen >= vlen => {
                ((&rest[..klen], Some(&rest[klen..klen + vlen])), klen + vlen)
            }
            OP_DELETE if rest.len() >= klen && vlen == 0 => ((&rest[..klen], None), klen),
            _ => {
                self.rest = &[];
                return Some(None);
            }
        };
        self.rest = &rest[used..];
        Some(Some(op))
    }
}

impl<'a> Iterator for Ops<'a> {
    /// `None` inside: the rest of the payload is malformed.
    type Item = Option<OpRef<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.step()
    }
}

/// Decodes a checksummed payload into owned ops; `None` if it is
/// malformed (see [`ops`]).
pub fn decode_ops(p: &[u8]) -> Option<Vec<Op>> {
    ops(p)?.map(|op| op.map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip() {
        let mut out = Vec::new();
        let ops: Vec<(&[u8], Option<&[u8]>)> = vec![(b"a", Some(b"1")), (b"bb", None), (b"c", Some(b""))];
        encode(&mut out, 7, 3, true, ops.iter().copied());
        assert_eq!(out.len() % 8, 0);
        let h = parse_header(&out);
        assert_eq!((h.epoch, h.seq, h.batch_start), (7, 3, true));
        let payload = &out[RECORD_HEADER..RECORD_HEADER + h.len];
        assert!(checksum_ok(&out, payload));
        let d = decode_ops(payload).unwrap();
        assert_eq!(d[1], (b"bb".to_vec(), None));
        assert_eq!(d[2], (b"c".to_vec(), Some(vec![])));
        let mut bad = out.clone();
        bad[RECORD_HEADER] ^= 4;
        assert!(!checksum_ok(&bad, &bad[RECORD_HEADER..RECORD_HEADER + h.len]));
    }

    #[test]
    fn reach_record_roundtrip() {
        let mut out = Vec::new();
        encode_reach(&mut out, 9, 4, 123 << 12);
        assert_eq!(out.len() as u64, reach_record_len(8));
        let h = parse_header(&out);
        assert_eq!((h.epoch, h.seq, h.batch_start, h.reach, h.len), (9, 4, true, true, 8));
        assert!(record_checksum_ok(&out));
        assert_eq!(reach_of(&out[RECORD_HEADER..]), Some(123 << 12));
        let mut commit = Vec::new();
        encode(&mut commit, 9, 4, true, [(&b"k"[..], Some(&b"v"[..]))].into_iter());
        assert!(!parse_header(&commit).reach);
        assert_eq!(reach_record_len(512), 512);
        assert_eq!(initial_reach(8 << 20), 256 << 10);
        assert_eq!(initial_reach(16 << 10), 16 << 10);
        assert!(!needs_reach(100 << 10, 256 << 10, 8 << 20, 512));
        assert!(needs_reach((255 << 10) + 512, 256 << 10, 8 << 20, 512));
        assert!(!needs_reach(255 << 10, 256 << 10, 8 << 20, 512), "room for exactly a reach record and a header");
        assert!(!needs_reach(255 << 10, 256 << 10, 256 << 10, 512));
    }

    #[test]
    fn record_len_is_what_encode_appends() {
        let ops: Vec<(&[u8], Option<&[u8]>)> = vec![(b"key", Some(&[9; 100])), (b"gone", None), (b"e", Some(b""))];
        for n in 0..=ops.len() {
            let mut out = vec![0xee; 5];
            encode(&mut out, 1, 2, false, ops[..n].iter().copied());
            assert_eq!(out.len() - 5, record_len(ops[..n].iter().copied()), "{n} ops");
        }
    }
}
