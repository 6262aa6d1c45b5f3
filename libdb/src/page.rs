//! On-medium page formats (format version 4; the log's records are in
//! `log.rs`). Every page is `PAGE_SIZE`
//! bytes and starts with a 40-byte header:
//!
//! ```text
//! 0..4   CRC-32C (`checksum.rs`) of bytes 4..PAGE_SIZE
//! 4      kind (meta, branch, leaf, overflow, freelist)
//! 5      reserved (0)
//! 6..8   count: entries (leaf/branch/freelist)
//! 8..16  the page's own number (catches misdirected writes)
//! 16..24 generation (checkpoint) that wrote it
//! 24..32 extra: next page of an overflow / freelist chain
//! 32..36 extra_crc: the checksum the next page of the chain must have
//! 36..40 reserved (0)
//! ```
//!
//! **A reference pins its page.** Every pointer to a page — the meta's
//! root and freelist head, a branch's children, a leaf's overflow chain,
//! a chain page's next — carries the checksum the page had when the pointer
//! was written (as ZFS and btrfs keep the child's checksum in the block
//! pointer). A page that passes its own checks (checksum, number,
//! generation) but is another version than the one referenced — a lost or
//! misdirected write left an older copy — is `Corruption::Stale`, never
//! data.
//!
//! Leaf and branch pages are slotted: `count` little-endian u16 offsets
//! after the header, each pointing at an entry, keys strictly ascending, so
//! lookups binary-search the cached page in place.
//!
//! * leaf entry:   `klen u16 | flag u8 | vlen u32 | key | value`, where flag
//!   0 stores the value inline, flag 1 stores the first page of an overflow
//!   chain (u64, then its checksum u32) holding all `vlen` bytes, and flag
//!   2 stores the first page (and checksum) of a chain of full pages
//!   followed inline by the short remainder
//!   (`vlen % OVERFLOW_DATA` bytes) — so a 4 KiB value takes one overflow
//!   page, not two;
//! * branch entry: `klen u16 | child u64 | child_crc u32 | key`; entry 0's key is empty and
//!   means "minus infinity": child i holds keys in `[key_i, key_{i+1})`.
//!
//! [`verify`] checks the checksum, the page number and the whole structure
//! once when a page enters the cache, so the accessors below can slice
//! without further checks; it never panics, whatever the bytes.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::Corruption;

pub const PAGE_SIZE: usize = 4096;
pub const HEADER: usize = 40;
/// Largest key in bytes.
pub const MAX_KEY: usize = 512;
/// Entries (with their slot) larger than this keep the value in overflow
/// pages, so that every leaf holds at least three entries.
pub const MAX_INLINE_ENTRY: usize = 1024;
/// Largest value in bytes (overflow chains longer than this are corrupt).
pub const MAX_VALUE: usize = 64 << 20;
/// Bytes available for entries and slots.
pub const BODY: usize = PAGE_SIZE - HEADER;
/// Value bytes per overflow page.
pub const OVERFLOW_DATA: usize = BODY;
/// Longest value remainder kept inline after an overflow chain.
pub const MAX_TAIL: usize = 512;
/// Page numbers per freelist page.
pub const FREELIST_ENTRIES: usize = BODY / 8;

pub const KIND_META: u8 = 1;
pub const KIND_BRANCH: u8 = 2;
pub const KIND_LEAF: u8 = 3;
pub const KIND_OVERFLOW: u8 = 4;
pub const KIND_FREELIST: u8 = 5;

const LEAF_ENTRY_HDR: usize = 7;
const BRANCH_ENTRY_HDR: usize = 14;
/// An overflow reference in a leaf: first page (u64) and its checksum (u32).
const OVERFLOW_REF: usize = 12;

pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_META => "meta",
        KIND_BRANCH => "branch",
        KIND_LEAF => "leaf",
        KIND_OVERFLOW => "overflow",
        KIND_FREELIST => "freelist",
        _ => "unknown",
    }
}

#[inline]
pub(crate) fn rd16(p: &[u8], o: usize) -> usize {
    u16::from_le_bytes([p[o], p[o + 1]]) as usize
}
#[inline]
pub(crate) fn rd32(p: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]])
}
#[inline]
pub(crate) fn rd64(p: &[u8], o: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[o..o + 8]);
    u64::from_le_bytes(b)
}
fn wr16(p: &mut [u8], o: usize, v: usize) {
    p[o..o + 2].copy_from_slice(&(v as u16).to_le_bytes());
}
fn wr32(p: &mut [u8], o: usize, v: u32) {
    p[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn wr64(p: &mut [u8], o: usize, v: u64) {
    p[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// The decoded header of a verified page.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub kind: u8,
    pub count: usize,
    pub pgno: u64,
    pub gen: u64,
    pub extra: u64,
    /// The checksum the page `extra` must have.
    pub extra_crc: u32,
}

#[inline]
pub fn header(p: &[u8]) -> Header {
    Header {
        kind: p[4],
        count: rd16(p, 6),
        pgno: rd64(p, 8),
        gen: rd64(p, 16),
        extra: rd64(p, 24),
        extra_crc: rd32(p, 32),
    }
}

/// A reference to a page: its number and the checksum it must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageRef {
    pub pgno: u64,
    pub crc: u32,
}

/// The checksum of a sealed page (what a reference to it pins).
#[inline]
pub fn checksum(p: &[u8]) -> u32 {
    rd32(p, 0)
}

/// Fills in the header and the checksum; `next` is the next page of a
/// chain (or none).
fn seal(p: &mut [u8], kind: u8, count: usize, pgno: u64, gen: u64, next: PageRef) {
    p[4] = kind;
    p[5] = 0;
    wr16(p, 6, count);
    wr64(p, 8, pgno);
    wr64(p, 16, gen);
    wr64(p, 24, next.pgno);
    wr32(p, 32, next.crc);
    wr32(p, 36, 0);
    let crc = crate::checksum::checksum(&p[4..]);
    wr32(p, 0, crc);
}

/// The kind of a verified page (the hot path reads only what it needs).
#[inline]
pub fn kind(p: &[u8]) -> u8 {
    p[4]
}

/// Entries in a verified page.
#[inline]
pub fn count(p: &[u8]) -> usize {
    rd16(p, 6)
}

/// The generation that wrote a verified page.
#[inline]
pub fn gen(p: &[u8]) -> u64 {
    rd64(p, 16)
}

/// Byte-wise (lexicographic, shorter first on a common prefix) order of
/// two keys, as `<[u8]>::cmp`, eight bytes at a time: keys are short, so
/// this beats a call into the C library's `memcmp` per binary-search probe.
#[inline]
pub fn cmp_keys(a: &[u8], b: &[u8]) -> core::cmp::Ordering {
    let n = a.len().min(b.len());
    let (mut ca, mut cb) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    // Big-endian words compare like their bytes (chunks_exact yields
    // exactly 8 bytes, so the conversions cannot fail).
    let word = |c: &[u8]| u64::from_be_bytes(c.try_into().unwrap_or_default());
    for (x, y) in (&mut ca).zip(&mut cb) {
        let (x, y) = (word(x), word(y));
        if x != y {
            return x.cmp(&y);
        }
    }
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Checks a page read from slot `pgno`: size, checksum, page number, kind
/// and structure. Never panics.
pub fn verify(p: &[u8], pgno: u64) -> Result<Header, Corruption> {
    if p.len() != PAGE_SIZE {
        return Err(Corruption::Malformed("page has the wrong size"));
    }
    let stored = rd32(p, 0);
    let computed = crate::checksum::checksum(&p[4..]);
    if stored != computed {
        return Err(Corruption::Checksum { stored, computed });
    }
    let h = header(p);
    if h.pgno != pgno {
        return Err(Corruption::WrongPageNumber { found: h.pgno });
    }
    match h.kind {
        KIND_LEAF => verify_leaf(p, h.count)?,
        KIND_BRANCH => verify_branch(p, h.count)?,
        KIND_FREELIST => {
            if h.count > FREELIST_ENTRIES {
                return Err(Corruption::Malformed("freelist count exceeds page"));
            }
        }
        KIND_OVERFLOW | KIND_META => {}
        _ => return Err(Corruption::Malformed("unknown page kind")),
    }
    Ok(h)
}

fn slots_end(count: usize) -> Result<usize, Corruption> {
    let end = HEADER + 2 * count;
    if end > PAGE_SIZE {
        return Err(Corruption::Malformed("slot array exceeds page"));
    }
    Ok(end)
}

fn verify_leaf(p: &[u8], count: usize) -> Result<(), Corruption> {
    let body = slots_end(count)?;
    let mut prev: Option<&[u8]> = None;
    for i in 0..count {
        let off = rd16(p, HEADER + 2 * i);
        if off < body || off + LEAF_ENTRY_HDR > PAGE_SIZE {
            return Err(Corruption::Malformed("leaf slot points outside the entry area"));
        }
        let klen = rd16(p, off);
        let flag = p[off + 2];
        let vlen = rd32(p, off + 3) as usize;
        if klen == 0 || klen > MAX_KEY {
            return Err(Corruption::Malformed("leaf key length out of range"));
        }
        let vbytes = match flag {
            0 => vlen,
            1 if vlen > 0 && vlen <= MAX_VALUE => OVERFLOW_REF,
            2 if (OVERFLOW_DATA..=MAX_VALUE).contains(&vlen) && (1..=MAX_TAIL).contains(&(vlen % OVERFLOW_DATA)) => {
                OVERFLOW_REF + vlen % OVERFLOW_DATA
            }
            _ => return Err(Corruption::Malformed("leaf value flag invalid")),
        };
        let kstart = off + LEAF_ENTRY_HDR;
        if kstart + klen + vbytes > PAGE_SIZE {
            return Err(Corruption::Malformed("leaf entry exceeds page"));
        }
        let key = &p[kstart..kstart + klen];
        if prev.is_some_and(|k| k >= key) {
            return Err(Corruption::Malformed("leaf keys not strictly ascending"));
        }
        prev = Some(key);
    }
    Ok(())
}

fn verify_branch(p: &[u8], count: usize) -> Result<(), Corruption> {
    if count == 0 {
        return Err(Corruption::Malformed("branch without children"));
    }
    let body = slots_end(count)?;
    let mut prev: Option<&[u8]> = None;
    for i in 0..count {
        let off = rd16(p, HEADER + 2 * i);
        if off < body || off + BRANCH_ENTRY_HDR > PAGE_SIZE {
            return Err(Corruption::Malformed("branch slot points outside the entry area"));
        }
        let klen = rd16(p, off);
        if klen > MAX_KEY || off + BRANCH_ENTRY_HDR + klen > PAGE_SIZE {
            return Err(Corruption::Malformed("branch key exceeds page"));
        }
        if i == 0 {
            if klen != 0 {
                return Err(Corruption::Malformed("first branch key not empty"));
            }
            continue;
        }
        let key = &p[off + BRANCH_ENTRY_HDR..off + BRANCH_ENTRY_HDR + klen];
        if klen == 0 || prev.is_some_and(|k| k >= key) {
            return Err(Corruption::Malformed("branch keys not strictly ascending"));
        }
        prev = Some(key);
    }
    Ok(())
}

// ---- leaves ----------------------------------------------------------------

/// A value as stored in a leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    Inline(Vec<u8>),
    /// `len` bytes: a chain from `first` holding all but `tail`, then `tail`.
    Overflow {
        len: u32,
        first: PageRef,
        tail: Vec<u8>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValRef<'a> {
    Inline(&'a [u8]),
    Overflow { len: u32, first: PageRef, tail: &'a [u8] },
}

/// Pages in the overflow chain of a value of `len` bytes whose last
/// `tail_len` bytes are kept in the leaf.
pub fn chain_pages(len: usize, tail_len: usize) -> usize {
    (len - tail_len).div_ceil(OVERFLOW_DATA)
}

#[derive(Clone, Debug)]
pub struct LeafEntry {
    pub key: Vec<u8>,
    pub val: Val,
}

/// Bytes an entry takes in a leaf, slot included.
pub fn leaf_entry_size(key_len: usize, val: &Val) -> usize {
    2 + LEAF_ENTRY_HDR
        + key_len
        + match val {
            Val::Inline(v) => v.len(),
            Val::Overflow { tail, .. } => OVERFLOW_REF + tail.len(),
        }
}

/// Whether a value of `vlen` bytes under a key of `klen` bytes stays inline.
pub fn fits_inline(klen: usize, vlen: usize) -> bool {
    2 + LEAF_ENTRY_HDR + klen + vlen <= MAX_INLINE_ENTRY
}

#[inline]
pub fn leaf_key(p: &[u8], i: usize) -> &[u8] {
    let off = rd16(p, HEADER + 2 * i);
    let klen = rd16(p, off);
    &p[off + LEAF_ENTRY_HDR..off + LEAF_ENTRY_HDR + klen]
}

#[inline]
pub fn leaf_val(p: &[u8], i: usize) -> ValRef<'_> {
    let off = rd16(p, HEADER + 2 * i);
    let klen = rd16(p, off);
    let vlen = rd32(p, off + 3);
    let v = off + LEAF_ENTRY_HDR + klen;
    match p[off + 2] {
        0 => ValRef::Inline(&p[v..v + vlen as usize]),
        1 => ValRef::Overflow { len: vlen, first: PageRef { pgno: rd64(p, v), crc: rd32(p, v + 8) }, tail: &[] },
        _ => {
            let t = vlen as usize % OVERFLOW_DATA;
            let first = PageRef { pgno: rd64(p, v), crc: rd32(p, v + 8) };
            ValRef::Overflow { len: vlen, first, tail: &p[v + OVERFLOW_REF..v + OVERFLOW_REF + t] }
        }
    }
}

/// Binary search over a verified leaf's keys.
#[inline]
pub fn leaf_search(p: &[u8], key: &[u8]) -> Result<usize, usize> {
    let n = count(p);
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match cmp_keys(leaf_key(p, mid), key) {
            core::cmp::Ordering::Less => lo = mid + 1,
            core::cmp::Ordering::Greater => hi = mid,
            core::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

pub fn decode_leaf(p: &[u8]) -> Vec<LeafEntry> {
    (0..header(p).count)
        .map(|i| LeafEntry {
            key: leaf_key(p, i).to_vec(),
            val: match leaf_val(p, i) {
                ValRef::Inline(v) => Val::Inline(v.to_vec()),
                ValRef::Overflow { len, first, tail } => Val::Overflow { len, first, tail: tail.to_vec() },
            },
        })
        .collect()
}

/// Builds a sealed leaf; the entries must fit (`sum of leaf_entry_size <= BODY`).
pub fn build_leaf(entries: &[LeafEntry], pgno: u64, gen: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    let mut off = HEADER + 2 * entries.len();
    for (i, e) in entries.iter().enumerate() {
        wr16(&mut p, HEADER + 2 * i, off);
        wr16(&mut p, off, e.key.len());
        let k = off + LEAF_ENTRY_HDR;
        p[k..k + e.key.len()].copy_from_slice(&e.key);
        let v = k + e.key.len();
        match &e.val {
            Val::Inline(val) => {
                p[off + 2] = 0;
                wr32(&mut p, off + 3, val.len() as u32);
                p[v..v + val.len()].copy_from_slice(val);
                off = v + val.len();
            }
            Val::Overflow { len, first, tail } => {
                p[off + 2] = if tail.is_empty() { 1 } else { 2 };
                wr32(&mut p, off + 3, *len);
                wr64(&mut p, v, first.pgno);
                wr32(&mut p, v + 8, first.crc);
                p[v + OVERFLOW_REF..v + OVERFLOW_REF + tail.len()].copy_from_slice(tail);
                off = v + OVERFLOW_REF + tail.len();
            }
        }
    }
    seal(&mut p, KIND_LEAF, entries.len(), pgno, gen, PageRef::default());
    p
}

// ---- branches --------------------------------------------------------------

pub fn branch_entry_size(key_len: usize) -> usize {
    2 + BRANCH_ENTRY_HDR + key_len
}

#[inline]
pub fn branch_key(p: &[u8], i: usize) -> &[u8] {
    let off = rd16(p, HEADER + 2 * i);
    let klen = rd16(p, off);
    &p[off + BRANCH_ENTRY_HDR..off + BRANCH_ENTRY_HDR + klen]
}

#[inline]
pub fn branch_child(p: &[u8], i: usize) -> PageRef {
    let off = rd16(p, HEADER + 2 * i);
    PageRef { pgno: rd64(p, off + 2), crc: rd32(p, off + 10) }
}

/// Index of the child whose range holds `key`: the last `i` with
/// `key_i <= key`, entry 0 counting as minus infinity.
#[inline]
pub fn branch_find(p: &[u8], key: &[u8]) -> usize {
    let n = count(p);
    let (mut lo, mut hi) = (1, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if cmp_keys(branch_key(p, mid), key) != core::cmp::Ordering::Greater {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo - 1
}

pub fn decode_branch(p: &[u8]) -> Vec<(Vec<u8>, PageRef)> {
    (0..header(p).count).map(|i| (branch_key(p, i).to_vec(), branch_child(p, i))).collect()
}

/// Builds a sealed branch; the first key is stored empty.
pub fn build_branch(children: &[(Vec<u8>, PageRef)], pgno: u64, gen: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    let mut off = HEADER + 2 * children.len();
    for (i, (key, child)) in children.iter().enumerate() {
        let key: &[u8] = if i == 0 { &[] } else { key };
        wr16(&mut p, HEADER + 2 * i, off);
        wr16(&mut p, off, key.len());
        wr64(&mut p, off + 2, child.pgno);
        wr32(&mut p, off + 10, child.crc);
        p[off + BRANCH_ENTRY_HDR..off + BRANCH_ENTRY_HDR + key.len()].copy_from_slice(key);
        off += BRANCH_ENTRY_HDR + key.len();
    }
    seal(&mut p, KIND_BRANCH, children.len(), pgno, gen, PageRef::default());
    p
}

// ---- overflow and freelist chains -------------------------------------------

pub fn build_overflow(data: &[u8], next: PageRef, pgno: u64, gen: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    p[HEADER..HEADER + data.len()].copy_from_slice(data);
    seal(&mut p, KIND_OVERFLOW, 0, pgno, gen, next);
    p
}

pub fn build_freelist(entries: &[u64], next: PageRef, pgno: u64, gen: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    for (i, e) in entries.iter().enumerate() {
        wr64(&mut p, HEADER + 8 * i, *e);
    }
    seal(&mut p, KIND_FREELIST, entries.len(), pgno, gen, next);
    p
}

pub fn freelist_entries(p: &[u8]) -> impl Iterator<Item = u64> + '_ {
    (0..header(p).count).map(move |i| rd64(p, HEADER + 8 * i))
}

// ---- meta ------------------------------------------------------------------

pub const MAGIC: u64 = u64::from_le_bytes(*b"libdb\0\x01\x00");
/// 2: references pin their page's checksum (branch children, overflow
/// chains, chain pages, the meta's root and freelist head); 40-byte header.
/// 3: the log holds reach records (`log.rs`), and recovery reads the log
/// only up to the reach they declare.
/// 4: every checksum (pages, log records) is CRC-32C (`checksum.rs`), not
/// CRC-32. Older versions are refused by name ([`decode_meta`]): a
/// version-3 image's checksums are of another polynomial, and a version-2
/// log has no reach records, so its records could lie anywhere.
pub const VERSION: u32 = 4;

/// What `open` says about a meta page of an older format version.
const OLDER_VERSION: &str =
    "unsupported format version (this libdb reads version 4: CRC-32C checksums and logs with reach records)";

/// The root of everything, kept twice (pages 0 and 1); the valid copy with
/// the higher generation wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Checkpoint generation; also the epoch of the log written after it.
    pub gen: u64,
    /// Root page of the tree, 0 when empty.
    pub root: u64,
    /// The root page's checksum.
    pub root_crc: u32,
    /// Pages in use by the database (high-water mark).
    pub total_pages: u64,
    pub freelist_head: u64,
    /// The first freelist page's checksum.
    pub freelist_crc: u32,
    pub freelist_len: u64,
    pub freelist_pages: u64,
    /// Pages of the log region (pages 2 .. 2 + log_pages).
    pub log_pages: u64,
    /// Commits made up to this checkpoint (for statistics).
    pub commit_seq: u64,
    /// Live keys in the tree.
    pub entries: u64,
}

impl Meta {
    pub fn first_tree_page(&self) -> u64 {
        2 + self.log_pages
    }
}

pub fn build_meta(m: &Meta, slot: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    let b = HEADER;
    wr64(&mut p, b, MAGIC);
    wr32(&mut p, b + 8, VERSION);
    wr32(&mut p, b + 12, PAGE_SIZE as u32);
    for (i, v) in [
        m.gen,
        m.root,
        m.total_pages,
        m.freelist_head,
        m.freelist_len,
        m.freelist_pages,
        m.log_pages,
        m.commit_seq,
        m.entries,
    ]
    .iter()
    .enumerate()
    {
        wr64(&mut p, b + 16 + 8 * i, *v);
    }
    wr32(&mut p, b + 16 + 8 * 9, m.root_crc);
    wr32(&mut p, b + 20 + 8 * 9, m.freelist_crc);
    seal(&mut p, KIND_META, 0, slot, m.gen, PageRef::default());
    p
}

pub fn decode_meta(p: &[u8], slot: u64) -> Result<Meta, Corruption> {
    // An older version's meta fails the checksum (another polynomial since
    // version 4): name the version instead, before the checksum is checked.
    // (A damaged meta whose version field happens to read 2 or 3 is refused
    // all the same, only under this name.)
    if p.len() == PAGE_SIZE && rd64(p, HEADER) == MAGIC && matches!(rd32(p, HEADER + 8), 2 | 3) {
        return Err(Corruption::Malformed(OLDER_VERSION));
    }
    let h = verify(p, slot)?;
    if h.kind != KIND_META {
        return Err(Corruption::WrongKind { expected: "meta", found: h.kind });
    }
    let b = HEADER;
    if rd64(p, b) != MAGIC {
        return Err(Corruption::Malformed("bad magic: not a libdb database"));
    }
    if rd32(p, b + 8) != VERSION {
        return Err(Corruption::Malformed(OLDER_VERSION));
    }
    if rd32(p, b + 12) as usize != PAGE_SIZE {
        return Err(Corruption::Malformed("unsupported page size"));
    }
    let f = |i: usize| rd64(p, b + 16 + 8 * i);
    let m = Meta {
        gen: f(0),
        root: f(1),
        total_pages: f(2),
        freelist_head: f(3),
        freelist_len: f(4),
        freelist_pages: f(5),
        log_pages: f(6),
        commit_seq: f(7),
        entries: f(8),
        root_crc: rd32(p, b + 16 + 8 * 9),
        freelist_crc: rd32(p, b + 20 + 8 * 9),
    };
    if m.gen != h.gen {
        return Err(Corruption::Malformed("meta generation disagrees with header"));
    }
    if m.log_pages == 0
        || m.log_pages > u32::MAX as u64
        || m.total_pages < m.first_tree_page()
        || m.total_pages > u64::MAX / PAGE_SIZE as u64
        || m.freelist_pages > m.total_pages
        || m.freelist_len > m.total_pages
    {
        return Err(Corruption::Malformed("meta layout out of range"));
    }
    let in_tree = |pg: u64| pg == 0 || (pg >= m.first_tree_page() && pg < m.total_pages);
    if !in_tree(m.root) || !in_tree(m.freelist_head) {
        return Err(Corruption::Malformed("meta points outside the database"));
    }
    if (m.freelist_head == 0) != (m.freelist_pages == 0) {
        return Err(Corruption::Malformed("meta freelist head and length disagree"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmp_keys_orders_like_slices() {
        // Every pair from a set of keys with shared prefixes, lengths on
        // both sides of the 8-byte words, and bytes at both ends of the range.
        let mut keys: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0xff], b"0000000000001234".to_vec()];
        let mut rng = testrng::Rng::new(0x2545_f491_4f6c_dd1d);
        for len in 0..=20 {
            for _ in 0..6 {
                let x = rng.next_u64();
                let k: Vec<u8> =
                    (0..len).map(|i| [0u8, 1, 0x7f, 0x80, 0xfe, 0xff][((x >> (i % 60)) % 6) as usize]).collect();
                keys.push(k);
            }
        }
        for a in &keys {
            for b in &keys {
                assert_eq!(cmp_keys(a, b), a.as_slice().cmp(b.as_slice()), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn leaf_roundtrip_and_search() {
        let entries: Vec<LeafEntry> = (0..20u8)
            .map(|i| LeafEntry {
                key: vec![b'k', i * 2],
                val: if i % 5 == 0 {
                    Val::Overflow { len: 5000, first: PageRef { pgno: 99, crc: 0xfeed }, tail: vec![] }
                } else {
                    Val::Inline(vec![i; i as usize])
                },
            })
            .collect();
        let p = build_leaf(&entries, 7, 3);
        let h = verify(&p, 7).unwrap();
        assert_eq!((h.kind, h.count, h.gen), (KIND_LEAF, 20, 3));
        assert_eq!(leaf_search(&p, &[b'k', 8]), Ok(4));
        assert_eq!(leaf_search(&p, &[b'k', 9]), Err(5));
        assert_eq!(
            leaf_val(&p, 5),
            ValRef::Overflow { len: 5000, first: PageRef { pgno: 99, crc: 0xfeed }, tail: &[] }
        );
        assert_eq!(leaf_val(&p, 3), ValRef::Inline(&[3, 3, 3]));
        assert_eq!(decode_leaf(&p).len(), 20);
        assert!(matches!(verify(&p, 8), Err(Corruption::WrongPageNumber { found: 7 })));
        let mut bad = p.clone();
        bad[100] ^= 1;
        assert!(matches!(verify(&bad, 7), Err(Corruption::Checksum { .. })));
    }

    #[test]
    fn branch_find_ranges() {
        let r = |pgno| PageRef { pgno, crc: pgno as u32 * 3 };
        let ch = vec![(vec![], r(10)), (b"m".to_vec(), r(11)), (b"t".to_vec(), r(12))];
        let p = build_branch(&ch, 5, 1);
        verify(&p, 5).unwrap();
        assert_eq!(branch_find(&p, b"a"), 0);
        assert_eq!(branch_find(&p, b"m"), 1);
        assert_eq!(branch_find(&p, b"s"), 1);
        assert_eq!(branch_find(&p, b"zz"), 2);
        assert_eq!(branch_child(&p, 2), r(12));
    }

    #[test]
    fn meta_roundtrip() {
        let m = Meta {
            gen: 4,
            root: 40,
            root_crc: 0xdead_beef,
            total_pages: 50,
            freelist_head: 41,
            freelist_crc: 0x0bad_f00d,
            freelist_len: 3,
            freelist_pages: 1,
            log_pages: 16,
            commit_seq: 77,
            entries: 12,
        };
        assert_eq!(decode_meta(&build_meta(&m, 1), 1).unwrap(), m);
        assert!(decode_meta(&vec![0; PAGE_SIZE], 0).is_err());
    }
}
