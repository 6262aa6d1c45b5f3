//! Reach records (format 3): `open` looks for records only below the reach
//! the replayed prefix declares. These tests damage, tear, drop and forge
//! reach records and the records around them: every case is refused with
//! `Corrupt` or bounded correctly, and never loses a durable commit
//! silently.

use libdb::log::{self, RECORD_HEADER};
use libdb::{BlockStorage, Db, Durability, Error, MemBlockDevice, Options};

type Mem = BlockStorage<MemBlockDevice>;
const LOG: usize = 2 * 4096;
/// 64 log pages: a 256 KiB log, reach steps of 32 KiB.
const LOG_PAGES: u64 = 64;
const CAP: u64 = LOG_PAGES * 4096;
const STEP: u64 = 32 * 1024;

fn opts() -> Options {
    Options { cache_pages: 64, log_pages: LOG_PAGES, checkpoint_log_bytes: 0 }
}

fn open(img: Vec<u8>) -> Result<Db<Mem>, Error> {
    Db::open(BlockStorage::new(MemBlockDevice::from_image(512, img)), opts())
}

fn key(i: u32) -> String {
    format!("key{i:05}")
}

fn commit(db: &Db<Mem>, i: u32, dur: Durability) {
    let mut w = db.begin_write().unwrap();
    w.put(key(i).as_bytes(), format!("value {i}").as_bytes()).unwrap();
    w.commit(dur).unwrap();
}

fn image(db: Db<Mem>) -> Vec<u8> {
    db.into_storage().into_inner().image().to_vec()
}

/// A database whose log holds `n` sync commits (one 512-byte block each)
/// after a checkpoint, and the image. 200 commits pass three reaches.
fn with_commits(n: u32) -> (Vec<u8>, u64) {
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 1024)), opts()).unwrap();
    for i in 0..n {
        commit(&db, i, Durability::Sync);
    }
    let gen = db.stats().generation;
    (image(db), gen)
}

/// Log offsets of the valid reach records of epoch `gen`, and what each
/// declares.
fn reach_records(img: &[u8], gen: u64) -> Vec<(usize, u64)> {
    (0..CAP as usize)
        .step_by(512)
        .filter_map(|at| {
            let rec = &img[LOG + at..LOG + at + 512];
            let h = log::parse_header(rec);
            let valid = h.reach && h.epoch == gen && log::record_checksum_ok(&rec[..RECORD_HEADER + h.len]);
            valid.then(|| (at, log::reach_of(&rec[RECORD_HEADER..RECORD_HEADER + 8]).unwrap()))
        })
        .collect()
}

/// Which of the first `n` keys an opened database holds.
fn present(db: &Db<Mem>, n: u32) -> Vec<bool> {
    (0..n).map(|i| db.get(key(i).as_bytes()).unwrap().is_some()).collect()
}

fn expect_corrupt(r: Result<Db<Mem>, Error>, what: &str) -> u64 {
    match r {
        Err(Error::Corrupt { page, .. }) => page,
        Err(e) => panic!("{what}: wrong error {e}"),
        Ok(db) => panic!(
            "{what}: open succeeded with {} of the durable commits ({:?} of them missing)",
            db.stats().replayed_records,
            present(&db, 200).iter().filter(|p| !**p).count()
        ),
    }
}

#[test]
fn the_writer_declares_its_reach_and_open_reads_only_up_to_it() {
    let (img, gen) = with_commits(200);
    let reaches = reach_records(&img, gen);
    // 200 blocks of commits = 100 KiB: the initial 32 KiB and three steps.
    assert_eq!(reaches.len(), 3, "{reaches:?}");
    for w in reaches.windows(2) {
        assert!(w[1].1 > w[0].1, "reaches grow: {reaches:?}");
    }
    let mut before = STEP;
    for &(at, reach) in &reaches {
        // Each sits below the reach before it, with room for the next
        // write's header there too.
        assert!(at as u64 + 2 * 512 <= before, "reach record at {at} too close to the old reach {before}");
        assert!(reach <= CAP && reach >= at as u64 + STEP);
        before = reach;
    }
    let last_reach = reaches.last().unwrap().1;
    let db = open(img).unwrap();
    let s = db.stats();
    assert_eq!(s.replayed_records, 200);
    assert_eq!(s.log_reach, last_reach);
    assert!(present(&db, 200).iter().all(|&p| p));
    // Metas (8 KiB) and the log up to its reach; not the 256 KiB region.
    assert!(s.io.bytes_read <= 8192 + last_reach, "{} B read, reach {last_reach}", s.io.bytes_read);
}

#[test]
fn damage_before_or_after_a_reach_record_before_a_durable_commit_is_corrupt() {
    let (img, gen) = with_commits(200);
    let reaches = reach_records(&img, gen);
    let (first, last) = (reaches[0].0, reaches.last().unwrap().0);
    for (what, at) in [
        ("the record just before the first reach record", first - 512),
        ("the record just after the first reach record", first + 512),
        ("the record just after the last reach record", last + 512),
        ("a record between the second and third reach records", reaches[1].0 + 4096),
    ] {
        let mut bad = img.clone();
        bad[LOG + at + RECORD_HEADER + 1] ^= 0x08;
        let page = expect_corrupt(open(bad), what);
        assert_eq!(page, 2 + at as u64 / 4096, "{what}: names the log page of the damage");
    }
}

#[test]
fn a_damaged_or_lost_reach_record_is_corrupt() {
    let (img, gen) = with_commits(200);
    for &(at, _) in &reach_records(&img, gen) {
        // One bit of the declared reach, one of the header, or the whole
        // write lost (a drive acknowledged it and dropped it).
        for (what, change) in [("payload", RECORD_HEADER + 2), ("sequence number", 17), ("lost", usize::MAX)] {
            let mut bad = img.clone();
            if change == usize::MAX {
                bad[LOG + at..LOG + at + 512].fill(0);
            } else {
                bad[LOG + at + change] ^= 0x20;
            }
            let page = expect_corrupt(open(bad), &format!("reach record at {at}, {what}"));
            assert_eq!(page, 2 + at as u64 / 4096);
        }
    }
}

#[test]
fn a_torn_reach_record_with_nothing_after_it_is_a_torn_tail() {
    // The crash came while the reach record was written (before its
    // barrier): the write that needed it was never issued.
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 1024)), opts()).unwrap();
    let mut n = 0;
    while db.stats().reach_records == 0 {
        commit(&db, n, Durability::Sync);
        n += 1;
    }
    let gen = db.stats().generation;
    let img = image(db);
    let (at, _) = reach_records(&img, gen)[0];
    let mut torn = img.clone();
    torn[LOG + at + 512..LOG + CAP as usize].fill(0); // the commit after it never written
    torn[LOG + at + RECORD_HEADER..LOG + at + RECORD_HEADER + 8].fill(0); // half the record
    let db = open(torn.clone()).unwrap();
    assert_eq!(db.stats().replayed_records, u64::from(n - 1));
    assert_eq!(db.stats().log_reach, STEP, "the torn record declared nothing");
    assert_eq!(present(&db, n), [vec![true; n as usize - 1], vec![false]].concat());
    // The handle writes on (a new reach record) and everything reopens.
    for i in n..n + 100 {
        commit(&db, i, Durability::Sync);
    }
    let db = open(image(db)).unwrap();
    assert_eq!(db.stats().replayed_records, u64::from(n - 1 + 100));
    let p = present(&db, n + 100);
    assert!(p.iter().enumerate().all(|(i, &p)| p == (i as u32 != n - 1)), "{p:?}");
}

#[test]
fn a_stale_reach_record_of_the_previous_epoch_is_not_taken() {
    // Epoch g-1 wrote far (its reach records stay in the log region);
    // epoch g wrote three commits. A reach record of g-1 right where
    // g's next record would go (its write torn) is not in g's chain: not
    // replayed, not a leftover to erase, and g's reach stays the initial one.
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 1024)), opts()).unwrap();
    for i in 0..200 {
        commit(&db, i, Durability::Sync);
    }
    db.checkpoint().unwrap();
    let old_gen = db.stats().generation - 1;
    for i in 200..203 {
        commit(&db, i, Durability::Sync);
    }
    let mut img = image(db);
    let old = reach_records(&img, old_gen);
    assert_eq!(old.len(), 3, "the previous epoch's reach records are still there");
    let (old_at, _) = old[2];
    let stale: Vec<u8> = img[LOG + old_at..LOG + old_at + 512].to_vec();
    img[LOG + 4 * 512..LOG + 5 * 512].copy_from_slice(&stale);
    // A stale record of g-1 numbered as g's next record (seq 3), where it
    // would go.
    let mut forged = Vec::new();
    log::encode_reach(&mut forged, old_gen, 3, CAP);
    img[LOG + 3 * 512..LOG + 3 * 512 + forged.len()].copy_from_slice(&forged);
    let db = open(img).unwrap();
    let s = db.stats();
    assert_eq!((s.replayed_records, s.erased_records, s.log_reach), (3, 0, STEP));
    assert!(present(&db, 203).iter().all(|&p| p), "the checkpoint and the three commits");
    assert!(s.io.bytes_read <= 8192 + 4096 + STEP, "{} B read", s.io.bytes_read);
}

#[test]
fn a_reach_record_claiming_beyond_the_log_or_before_itself_is_corrupt() {
    let (img, gen) = with_commits(3);
    for claim in [CAP + 4096, u64::MAX, 3 * 512 + 8] {
        let mut bad = img.clone();
        let mut rec = Vec::new();
        log::encode_reach(&mut rec, gen, 3, claim);
        bad[LOG + 3 * 512..LOG + 3 * 512 + rec.len()].copy_from_slice(&rec);
        let page = expect_corrupt(open(bad), &format!("a reach of {claim}"));
        assert_eq!(page, 2);
    }
}

#[test]
fn a_reach_record_claiming_more_than_was_written_is_bounded_by_it() {
    // A reach covering the whole region, with nothing written beyond its
    // record: open reads (and checks) up to it, and accepts the log.
    let (mut img, gen) = with_commits(3);
    let mut rec = Vec::new();
    log::encode_reach(&mut rec, gen, 3, CAP);
    img[LOG + 3 * 512..LOG + 3 * 512 + rec.len()].copy_from_slice(&rec);
    // A damaged commit after it, followed by a batch start far beyond
    // the initial reach but below the claimed one: found.
    let mut bad = img.clone();
    let mut c = Vec::new();
    log::encode(&mut c, gen, 4, true, [(&b"k4"[..], Some(&b"v"[..]))].into_iter());
    bad[LOG + 4 * 512..LOG + 4 * 512 + c.len()].copy_from_slice(&c);
    bad[LOG + 4 * 512 + RECORD_HEADER + 1] ^= 1;
    let mut d = Vec::new();
    log::encode(&mut d, gen, 5, true, [(&b"k5"[..], Some(&b"v"[..]))].into_iter());
    let far = 200 * 1024;
    bad[LOG + far..LOG + far + d.len()].copy_from_slice(&d);
    expect_corrupt(open(bad), "damage before a batch start inside a claimed reach");
    let db = open(img).unwrap();
    let s = db.stats();
    assert_eq!((s.replayed_records, s.log_reach), (3, CAP));
    assert!(s.io.bytes_read >= CAP, "read up to the claimed reach: {} B", s.io.bytes_read);
}

/// An image of an older format version, its meta pages sealed as that
/// version sealed them (version 3 and earlier: CRC-32, IEEE), is refused by
/// name, not as two damaged metas.
fn refused_by_name(version: u32) {
    let (mut img, _) = with_commits(1);
    for slot in 0..2 {
        let p = &mut img[slot * 4096..(slot + 1) * 4096];
        p[40 + 8..40 + 12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32fast::hash(&p[4..]);
        p[..4].copy_from_slice(&crc.to_le_bytes());
    }
    match open(img) {
        Err(e @ Error::NoValidMeta { .. }) => {
            assert!(e.to_string().contains("unsupported format version (this libdb reads version 4"), "{e}");
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a version-{version} image was opened"),
    }
}

#[test]
fn a_version_2_image_is_refused_by_name() {
    refused_by_name(2);
}

#[test]
fn a_version_3_image_crc32_checksums_is_refused_by_name() {
    refused_by_name(3);
}

/// Defect 1 of #12 over a log with a reach record: one flipped bit
/// anywhere either leaves every commit readable, is `Corrupt`, or loses
/// only the last commit (nothing durable follows it).
#[test]
fn a_bit_flip_anywhere_in_a_log_with_reach_records_never_loses_a_durable_commit() {
    let opts = Options { cache_pages: 16, log_pages: 8, checkpoint_log_bytes: 0 };
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 256)), opts).unwrap();
    let n = 60u32;
    for i in 0..n {
        let dur = if i % 5 < 3 { Durability::Group(3) } else { Durability::Sync };
        commit(&db, i, dur);
    }
    assert!(db.stats().reach_records >= 1);
    let img = image(db);
    let used = (0..8 * 4096).rev().find(|&i| img[LOG + i] != 0).unwrap() + 1;
    let (mut errors, mut intact, mut last_lost) = (0, 0, 0);
    for byte in 0..used {
        let mut bad = img.clone();
        bad[LOG + byte] ^= 1 << (byte % 8);
        let db = match Db::open(BlockStorage::new(MemBlockDevice::from_image(512, bad)), opts) {
            Ok(db) => db,
            Err(Error::Corrupt { .. }) => {
                errors += 1;
                continue;
            }
            Err(e) => panic!("byte {byte}: unexpected error {e}"),
        };
        let p = present(&db, n);
        if p.iter().all(|&p| p) {
            intact += 1;
        } else if p[..n as usize - 1].iter().all(|&p| p) {
            last_lost += 1;
        } else {
            panic!("byte {byte}: open succeeded without a durable commit: {p:?}");
        }
    }
    println!("{used} log bytes flipped: {errors} Corrupt, {intact} intact, {last_lost} lost only the last record");
    assert!(errors > 0 && last_lost > 0);
}

/// (Checksummed, so deliberately forged) reach records declaring a reach
/// just past their own ends, up to the initial reach, leave no room below
/// it for the writer's next reach record. The writer checkpoints instead
/// of writing one beyond the reach (where `open` would never look: the
/// commits after it would be lost).
#[test]
fn a_reach_too_short_for_the_next_reach_record_makes_the_writer_checkpoint() {
    let (mut img, gen) = with_commits(61); // up to 31,232 of a 32 KiB reach
    for (i, at) in [31_232u64, 31_744, 32_256].into_iter().enumerate() {
        let mut rec = Vec::new();
        log::encode_reach(&mut rec, gen, 61 + i as u64, at + 40);
        img[LOG + at as usize..LOG + at as usize + rec.len()].copy_from_slice(&rec);
    }
    let db = open(img).unwrap();
    assert_eq!((db.stats().replayed_records, db.stats().log_reach), (61, STEP));
    for i in 61..71 {
        commit(&db, i, Durability::Sync);
    }
    assert_eq!(db.stats().checkpoints, 1);
    let db = open(image(db)).unwrap();
    assert!(present(&db, 71).iter().all(|&p| p), "{:?}", present(&db, 71));
}
