//! `create` and `open`: choosing the meta page, loading the freelist and
//! replaying the log tail. The work is proportional to the log tail (and
//! the freelist), never to the size of the tree.

use alloc::vec;
use alloc::vec::Vec;

use crate::engine::{log_base, Inner, Options};
use crate::error::{corrupt, Corruption, Error};
use crate::log::{self, RECORD_HEADER};
use crate::page::{self, rd64, Meta, PageRef, KIND_FREELIST, PAGE_SIZE};
use crate::storage::Storage;

pub(crate) fn create<S: Storage>(mut storage: S, opts: Options) -> Result<Inner<S>, Error> {
    check_write_unit(&storage)?;
    if opts.log_pages == 0 {
        return Err(Error::InvalidOptions("log_pages must be at least 1"));
    }
    let first_tree = 2 + opts.log_pages;
    if storage.capacity() < (first_tree + 4) * PAGE_SIZE as u64 {
        return Err(Error::NoSpace);
    }
    // Over an earlier database, erase its metas first, each made durable
    // before the next step, so that a crash anywhere in `create` leaves
    // the old database whole, a blank medium (both metas zero: the next
    // `open_or_create` creates afresh) or the new one — never the old
    // metas over a half-zeroed log (found by `kill_db`: open then reports
    // damage, or with the log's head zeroed silently finds an older
    // state). The older meta goes first: while the newer one stands, the
    // old database opens as it was (`open` tolerates one invalid meta).
    let (m0, m1) = (read_meta(&mut storage, 0)?, read_meta(&mut storage, 1)?);
    let newer_is_1 = match (&m0, &m1) {
        (Ok(a), Ok(b)) => b.gen > a.gen,
        (Err(_), Ok(_)) => true,
        _ => false,
    };
    if m0.is_ok() || m1.is_ok() {
        let blank = vec![0u8; PAGE_SIZE];
        for slot in if newer_is_1 { [0u64, 1] } else { [1, 0] } {
            storage.write(slot * PAGE_SIZE as u64, &blank)?;
            storage.barrier()?;
        }
    }
    // Zero the log region: no record of an earlier database on this medium
    // can be mistaken for ours, and later log writes overwrite allocated
    // blocks (no file-size metadata to sync per commit).
    // Page-sized writes: with a buffered file backend the OS caches the log
    // in page-sized folios then, so a small commit dirties (and the kernel
    // accounts) one page, not a large folio.
    let chunk = vec![0u8; PAGE_SIZE];
    let mut off = 0u64;
    let log_bytes = opts.log_pages * PAGE_SIZE as u64;
    while off < log_bytes {
        let n = (log_bytes - off).min(chunk.len() as u64) as usize;
        storage.write(log_base() + off, &chunk[..n])?;
        off += n as u64;
    }
    // The zeroed log is durable before any meta names it.
    storage.barrier()?;
    let mut meta = Meta {
        gen: 0,
        root: 0,
        root_crc: 0,
        total_pages: first_tree,
        freelist_head: 0,
        freelist_crc: 0,
        freelist_len: 0,
        freelist_pages: 0,
        log_pages: opts.log_pages,
        commit_seq: 0,
        entries: 0,
    };
    storage.write(0, &page::build_meta(&meta, 0))?;
    meta.gen = 1;
    storage.write(PAGE_SIZE as u64, &page::build_meta(&meta, 1))?;
    storage.barrier()?;
    open(storage, opts, false)
}

/// Whether both meta pages are all zeros: a medium never formatted (as
/// opposed to a damaged database, which must not be formatted over).
pub(crate) fn is_blank<S: Storage>(storage: &mut S) -> Result<bool, Error> {
    if storage.capacity() < 2 * PAGE_SIZE as u64 {
        return Ok(false);
    }
    let mut buf = vec![0u8; 2 * PAGE_SIZE];
    storage.read(0, &mut buf)?;
    Ok(buf.iter().all(|&b| b == 0))
}

fn read_meta<S: Storage>(storage: &mut S, slot: u64) -> Result<Result<Meta, Corruption>, Error> {
    let mut buf = vec![0u8; PAGE_SIZE];
    storage.read(slot * PAGE_SIZE as u64, &mut buf)?;
    Ok(page::decode_meta(&buf, slot))
}

/// The medium's write unit (a block device's block size) must divide a
/// page: every log write and page write is then whole blocks.
fn check_write_unit<S: Storage>(storage: &S) -> Result<(), Error> {
    let align = storage.write_align();
    if align == 0 || align > PAGE_SIZE || !PAGE_SIZE.is_multiple_of(align) {
        return Err(Error::UnsupportedBlockSize { block_size: align });
    }
    Ok(())
}

pub(crate) fn open<S: Storage>(mut storage: S, opts: Options, read_only: bool) -> Result<Inner<S>, Error> {
    check_write_unit(&storage)?;
    if storage.capacity() < 2 * PAGE_SIZE as u64 {
        return Err(Error::Truncated { needed_bytes: 2 * PAGE_SIZE as u64, medium_bytes: storage.capacity() });
    }
    let m0 = read_meta(&mut storage, 0)?;
    let m1 = read_meta(&mut storage, 1)?;
    let (meta, damaged) = match (m0, m1) {
        (Ok(a), Ok(b)) => (if a.gen >= b.gen { a } else { b }, None),
        (Ok(a), Err(e)) => (a, Some((1, e))),
        (Err(e), Ok(b)) => (b, Some((0, e))),
        (Err(page0), Err(page1)) => return Err(Error::NoValidMeta { page0, page1 }),
    };
    let needed = meta.total_pages * PAGE_SIZE as u64;
    if needed > storage.capacity() {
        return Err(Error::Truncated { needed_bytes: needed, medium_bytes: storage.capacity() });
    }
    let mut inner = Inner::new(storage, opts, meta);
    // One meta page is invalid. After a crash during its write that is
    // expected, and the log still belongs to the valid one. If the log
    // already holds records of the next epoch, the damaged meta was durable
    // and has been damaged since: falling back would lose commits.
    if let Some((slot, what)) = damaged {
        let cap = meta.log_pages * PAGE_SIZE as u64;
        let mut win = LogWindow::new();
        if read_record(&mut inner, &mut win, log::initial_reach(cap), 0, meta.gen + 1, 0)?.is_some() {
            return Err(corrupt(slot, what));
        }
    }
    load_freelist(&mut inner)?;
    // One window over the log for both passes: the check beyond the
    // prefix starts where replay stopped, usually inside the same window.
    let mut win = LogWindow::new();
    let (end, seq, reach) = replay(&mut inner, &mut win)?;
    let stale = check_beyond_prefix(&mut inner, &mut win, end, seq, reach)?;
    inner.read_only = read_only;
    if !read_only {
        // Continue this epoch's log after the replayed prefix (no
        // checkpoint: open needs no free page). Valid records of this
        // epoch beyond the prefix (a crash's leftovers) are erased first,
        // so none can ever be taken for a new record; then one barrier,
        // which also makes the replayed prefix durable before the next
        // batch start claims so.
        let align = inner.storage.write_align() as u64;
        let zeros = vec![0u8; (RECORD_HEADER as u64).div_ceil(align) as usize * align as usize];
        for &at in &stale {
            inner.storage.write(log_base() + at, &zeros)?;
        }
        inner.storage.barrier()?;
        inner.stats.erased_records = stale.len() as u64;
    }
    inner.log.pos = end.div_ceil(inner.storage.write_align() as u64) * inner.storage.write_align() as u64;
    inner.log.seq = seq;
    inner.log.reach = reach;
    Ok(inner)
}

fn load_freelist<S: Storage>(inner: &mut Inner<S>) -> Result<(), Error> {
    let meta = inner.meta;
    let (mut r, mut from) = (PageRef { pgno: meta.freelist_head, crc: meta.freelist_crc }, 0);
    let mut chain = Vec::new();
    for _ in 0..meta.freelist_pages {
        let pg = r.pgno;
        let p = inner.load(r, meta.gen, from)?;
        let h = page::header(&p);
        if h.kind != KIND_FREELIST {
            return Err(corrupt(pg, Corruption::WrongKind { expected: "freelist", found: h.kind }));
        }
        for e in page::freelist_entries(&p) {
            if e < meta.first_tree_page() || e >= meta.total_pages {
                return Err(corrupt(pg, Corruption::BadPointer { pointer: e }));
            }
            inner.free.insert(e);
        }
        chain.push(pg);
        from = pg;
        r = PageRef { pgno: h.extra, crc: h.extra_crc };
    }
    if r.pgno != 0 {
        return Err(corrupt(from, Corruption::Malformed("freelist chain longer than the meta says")));
    }
    if inner.free.len() as u64 != meta.freelist_len {
        return Err(corrupt(
            from,
            Corruption::Malformed("freelist holds a different number of pages than the meta says"),
        ));
    }
    inner.freelist_chain = chain;
    Ok(())
}

/// The log region as `open` reads it: a window of at least [`WINDOW`]
/// bytes, reloaded when a record lies outside it. Replay parses records
/// from memory, one medium read per window, instead of two small reads per
/// record (through a block device each was a device command, up to three
/// per record: an 8 MiB log of 512-byte sync commits took 48,773 reads
/// and 17 s of TCG time to replay; `eval/RECOVERY.md`).
struct LogWindow {
    start: u64,
    buf: Vec<u8>,
}

/// Bytes read at once: a few times the block service's data area is no
/// gain, and pmem reads are copies.
const WINDOW: u64 = 256 << 10;

impl LogWindow {
    fn new() -> Self {
        LogWindow { start: 0, buf: Vec::new() }
    }

    /// Bytes `pos .. pos + len` of the log region (the caller checked
    /// they lie below `limit`, the log's reach), read from the medium if
    /// the window does not hold them. Nothing at or beyond `limit` is read
    /// (rounded up to the write alignment).
    fn get<S: Storage>(&mut self, inner: &mut Inner<S>, limit: u64, pos: u64, len: usize) -> Result<&[u8], Error> {
        let end = pos + len as u64;
        if pos < self.start || end > self.start + self.buf.len() as u64 {
            let cap = (inner.meta.log_pages * PAGE_SIZE as u64).min(limit.max(end));
            // Aligned reads: whole blocks, no bounce through a covering read.
            let align = inner.storage.write_align() as u64;
            let from = pos / align * align;
            // The end aligned too (the log region is whole pages): a read
            // of whole blocks, never a bounce through a covering read.
            let to = end.max(from + WINDOW).div_ceil(align).saturating_mul(align).min(cap);
            self.buf.resize((to - from) as usize, 0);
            inner.storage.read(log_base() + from, &mut self.buf)?;
            self.start = from;
        }
        let at = (pos - self.start) as usize;
        Ok(&self.buf[at..at + len])
    }
}

/// The record at `pos` of the log if it is valid with the given epoch and
/// sequence number and lies below `limit` (the log's reach): its header
/// and its payload, borrowed from the window.
fn read_record<'w, S: Storage>(
    inner: &mut Inner<S>,
    win: &'w mut LogWindow,
    limit: u64,
    pos: u64,
    epoch: u64,
    seq: u64,
) -> Result<Option<(log::RecordHeader, &'w [u8])>, Error> {
    if pos + RECORD_HEADER as u64 > limit {
        return Ok(None);
    }
    let h = log::parse_header(win.get(inner, limit, pos, RECORD_HEADER)?);
    if h.epoch != epoch || h.seq != seq || h.len as u64 > limit - pos - RECORD_HEADER as u64 {
        return Ok(None);
    }
    // Header and payload in one piece of the window: no copy of either,
    // and one checksum pass over both.
    let rec = win.get(inner, limit, pos, RECORD_HEADER + h.len)?;
    Ok(log::record_checksum_ok(rec).then_some((h, &rec[RECORD_HEADER..])))
}

/// The offset a valid reach record at `pos` declares, rounded up to the
/// write alignment; `Corrupt` if it claims beyond the log region or not
/// past its own end (a checksummed record no writer makes).
fn declared_reach(payload: &[u8], pos: u64, cap: u64, align: u64) -> Result<u64, Error> {
    let own_end = pos + (RECORD_HEADER + payload.len()) as u64;
    match log::reach_of(payload) {
        Some(r) if r <= cap && r > own_end => Ok(r.div_ceil(align).saturating_mul(align).min(cap)),
        _ => Err(corrupt(
            log_page(pos),
            Corruption::Malformed("log reach record claims beyond the log region or before its own end"),
        )),
    }
}

/// Applies the valid prefix of the current epoch's log to the overlay;
/// returns where it ends, the next sequence number and the largest reach
/// its reach records declare. Records are parsed and applied in place,
/// from the window: no per-record copy or map. A record is looked for only
/// below the reach in force where it starts: the writer never writes
/// beyond it.
fn replay<S: Storage>(inner: &mut Inner<S>, win: &mut LogWindow) -> Result<(u64, u64, u64), Error> {
    let cap = inner.meta.log_pages * PAGE_SIZE as u64;
    let align = inner.storage.write_align() as u64;
    let epoch = inner.meta.gen;
    let mut reach = log::initial_reach(cap);
    let (mut pos, mut seq, mut end, mut commits) = (0u64, 0u64, 0u64, 0u64);
    while pos + RECORD_HEADER as u64 <= reach {
        if let Some((h, payload)) = read_record(inner, win, reach, pos, epoch, seq)? {
            if h.reach {
                reach = reach.max(declared_reach(payload, pos, cap, align)?);
            } else {
                let ops = log::ops(payload).ok_or(corrupt(
                    log_page(pos),
                    Corruption::Malformed("log record with a valid checksum does not decode"),
                ))?;
                // `ops` checked the whole payload: every op is well formed.
                inner.apply_replayed(ops.flatten());
                commits += 1;
            }
            pos += log::pad8(RECORD_HEADER + h.len) as u64;
            end = pos;
            seq += 1;
            continue;
        }
        if pos % align == 0 {
            break;
        }
        // The end of one write: the next starts at the next aligned offset.
        pos = pos.div_ceil(align) * align;
    }
    inner.stats.replayed_records = commits;
    Ok((end, seq, reach))
}

fn log_page(pos: u64) -> u64 {
    2 + pos / PAGE_SIZE as u64
}

/// Looks at every aligned offset of the log beyond the replayed prefix
/// (which ends at `end`, next sequence number `seq`) and below the reach
/// the prefix declares for valid records of this epoch. Every write starts
/// at an aligned offset with a record whose batch-start bit says "every
/// earlier record was durable before I was written"; finding one numbered
/// past the prefix means a record in between had been durable and was
/// damaged since: `Corrupt`, naming the log page where the prefix broke
/// off, whatever the damage hit (payload, length, sequence number) and
/// however the records were batched. Other valid records there are a
/// crash's leftovers (an unflushed write that partly survived): returned,
/// to be erased; a leftover reach record widens the search to what it
/// declares.
///
/// Why the reach suffices: a durable write beyond it needs a durable reach
/// record past it that is not in the prefix. The first such record lies
/// below the prefix's reach and is a batch start (found: `Corrupt`); if
/// it is the damaged record itself, the write after it starts below the
/// old reach and is a batch start (found: `Corrupt`). So damage before a
/// durable record is found wherever that record is, and a log whose reach
/// never moved costs a read of one step, not of the whole region.
///
/// This reads the log region beyond the prefix once, through the window
/// replay used (so the part replay read is not read again).
fn check_beyond_prefix<S: Storage>(
    inner: &mut Inner<S>,
    win: &mut LogWindow,
    end: u64,
    seq: u64,
    reach: u64,
) -> Result<Vec<u64>, Error> {
    // One window's worth at a time (less the header a record starting
    // near the end needs): each byte of the region is read once.
    const CHUNK: u64 = WINDOW - PAGE_SIZE as u64;
    let cap = inner.meta.log_pages * PAGE_SIZE as u64;
    let align = inner.storage.write_align() as u64;
    let epoch = inner.meta.gen;
    let mut bound = reach;
    let mut stale = Vec::new();
    let mut chunk_at = end.div_ceil(align) * align;
    let mut candidates = Vec::new();
    while chunk_at + RECORD_HEADER as u64 <= bound {
        // Each chunk also covers the header of a record starting at its end.
        let len = (CHUNK + RECORD_HEADER as u64).min(bound - chunk_at);
        // Persistent memory is looked at in place; a block device is read.
        let buf = match inner.storage.mapped(log_base() + chunk_at, len as usize) {
            Some(b) => b,
            None => win.get(inner, bound, chunk_at, len as usize)?,
        };
        candidates.clear();
        let last = (CHUNK.min(len - RECORD_HEADER as u64 + 1)) as usize;
        // The epoch field first (8 bytes, almost never equal beyond the
        // prefix); the rest of the header only where it matches. (This
        // loop measured 8.5 M guest instructions over an 8 MiB pmem log;
        // a `chunks`/`first_chunk` array-compare form of it, 13.7 M.)
        let mut off = 0usize;
        while off < last {
            if rd64(buf, off + 8) == epoch {
                let h = log::parse_header(&buf[off..off + RECORD_HEADER]);
                if h.seq >= seq {
                    candidates.push((chunk_at + off as u64, h.seq));
                }
            }
            off += align as usize;
        }
        for &(at, at_seq) in &candidates {
            if let Some((h, payload)) = read_record(inner, win, bound, at, epoch, at_seq)? {
                if h.batch_start && h.seq > seq {
                    return Err(corrupt(
                        log_page(end),
                        Corruption::Malformed(
                            "log record damaged although a later commit is durable (a later write's batch start follows)",
                        ),
                    ));
                }
                if h.reach {
                    bound = bound.max(declared_reach(payload, at, cap, align)?);
                }
                stale.push(at);
            }
        }
        chunk_at += CHUNK;
    }
    Ok(stale)
}
