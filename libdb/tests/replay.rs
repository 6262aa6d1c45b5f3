//! Log replay rules on hand-made logs: records are accepted only in
//! sequence, contiguously or at the next aligned offset (where the next
//! write began); a damaged record followed by a durable batch start is an
//! error, not a silently shorter log.

use libdb::log;
use libdb::{BlockStorage, Db, Error, MemBlockDevice, Options};

const LOG: usize = 2 * 4096;

fn opts() -> Options {
    Options { cache_pages: 16, log_pages: 4, checkpoint_log_bytes: 0 }
}

/// A fresh database image and the epoch its log is in.
fn fresh() -> (Vec<u8>, u64) {
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 256)), opts()).unwrap();
    let gen = db.stats().generation;
    (db.into_storage().into_inner().image().to_vec(), gen)
}

fn record(epoch: u64, seq: u64, batch_start: bool, key: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    log::encode(&mut r, epoch, seq, batch_start, [(key, Some(&b"v"[..]))].into_iter());
    r
}

fn put(img: &mut [u8], at: usize, rec: &[u8]) {
    img[LOG + at..LOG + at + rec.len()].copy_from_slice(rec);
}

fn open(img: Vec<u8>) -> Result<Db<BlockStorage<MemBlockDevice>>, Error> {
    Db::open(BlockStorage::new(MemBlockDevice::from_image(512, img)), opts())
}

#[test]
fn next_write_starts_at_the_next_aligned_offset() {
    let (mut img, gen) = fresh();
    let r0 = record(gen, 0, true, b"a");
    put(&mut img, 0, &r0);
    put(&mut img, 512, &record(gen, 1, true, b"b"));
    let db = open(img).unwrap();
    assert_eq!(db.stats().replayed_records, 2);
    assert!(db.get(b"b").unwrap().is_some());
}

#[test]
fn a_gap_in_the_sequence_ends_the_log() {
    let (mut img, gen) = fresh();
    put(&mut img, 0, &record(gen, 0, true, b"a"));
    // Record 1 never made it; a record numbered 2 sits where a later write
    // would start. Accepting it would not be a prefix.
    put(&mut img, 512, &record(gen, 2, false, b"c"));
    let db = open(img).unwrap();
    assert_eq!(db.stats().replayed_records, 1);
    assert!(db.get(b"a").unwrap().is_some());
    assert_eq!(db.get(b"c").unwrap(), None);
}

#[test]
fn records_of_another_epoch_are_ignored() {
    let (mut img, gen) = fresh();
    put(&mut img, 0, &record(gen - 1, 0, true, b"old"));
    let db = open(img).unwrap();
    assert_eq!(db.stats().replayed_records, 0);
    assert_eq!(db.get(b"old").unwrap(), None);
}

#[test]
fn damaged_record_before_a_durable_one_is_an_error() {
    let (mut img, gen) = fresh();
    let r0 = record(gen, 0, true, b"a");
    put(&mut img, 0, &r0);
    put(&mut img, 512, &record(gen, 1, true, b"b"));
    img[LOG + log::RECORD_HEADER + 2] ^= 0x40; // payload of record 0
    match open(img) {
        Err(Error::Corrupt { page, .. }) => assert_eq!(page, 2, "names the log page"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("silently dropped a durable commit"),
    }
}

#[test]
fn damaged_record_within_one_unflushed_batch_is_a_torn_tail() {
    // The same damage, but the next record belongs to the same write (not
    // a batch start): a crash may legitimately leave exactly this.
    let (mut img, gen) = fresh();
    let r0 = record(gen, 0, true, b"a");
    put(&mut img, 0, &r0);
    put(&mut img, r0.len(), &record(gen, 1, false, b"b"));
    img[LOG + log::RECORD_HEADER + 2] ^= 0x40;
    let db = open(img).unwrap();
    assert_eq!(db.stats().replayed_records, 0);
}

#[test]
fn stale_records_beyond_the_prefix_are_erased_before_new_ones_are_written() {
    // A crash left record 2 of this epoch at an aligned offset, but record
    // 1 never made it. `open` (which continues the epoch, no checkpoint)
    // must erase it: otherwise, once a new record 1 is written at 512,
    // a later replay would find the stale record 2 at the next aligned
    // offset and accept a commit that was never acknowledged.
    let (mut img, gen) = fresh();
    put(&mut img, 0, &record(gen, 0, true, b"a"));
    put(&mut img, 1024, &record(gen, 2, false, b"stale"));
    let db = open(img).unwrap();
    assert_eq!((db.stats().replayed_records, db.stats().erased_records), (1, 1));
    let mut w = db.begin_write().unwrap();
    w.put(b"new", b"1").unwrap();
    w.commit(libdb::Durability::Sync).unwrap();
    let img = db.into_storage().into_inner().image().to_vec();
    let db = open(img).unwrap();
    assert_eq!(db.stats().replayed_records, 2);
    assert!(db.get(b"new").unwrap().is_some());
    assert_eq!(db.get(b"stale").unwrap(), None, "a stale record was replayed");
}

#[test]
fn read_only_open_reports_damage_too() {
    let (mut img, gen) = fresh();
    put(&mut img, 0, &record(gen, 0, true, b"a"));
    put(&mut img, 512, &record(gen, 1, true, b"b"));
    img[LOG + 3] ^= 0x01; // the checksum of record 0
    let ro = Db::open_read_only(BlockStorage::new(MemBlockDevice::from_image(512, img)), opts());
    assert!(matches!(ro, Err(Error::Corrupt { page: 2, .. })));
}
