//! libdb under damage and misuse (issue #12): damage inside a group batch,
//! stale pages, a full medium, failed commits, long-held readers, and a
//! medium opened twice. Each test names the defect it guards against.

use std::collections::BTreeMap;

use libdb::{BlockStorage, Db, Durability, Error, MemBlockDevice, Options};

type Mem = BlockStorage<MemBlockDevice>;
const LOG: usize = 2 * 4096;

fn log_opts() -> Options {
    Options { cache_pages: 16, log_pages: 4, checkpoint_log_bytes: 0 }
}

fn open_img(img: Vec<u8>, opts: Options) -> Result<Db<Mem>, Error> {
    Db::open(BlockStorage::new(MemBlockDevice::from_image(512, img)), opts)
}

fn commit_one<S: libdb::Storage>(db: &Db<S>, key: &str, dur: Durability) {
    let mut w = db.begin_write().unwrap();
    w.put(key.as_bytes(), format!("value of {key}").as_bytes()).unwrap();
    w.commit(dur).unwrap();
}

/// Four `Group(4)` commits (one log write) and three `Sync` commits (three
/// writes, three flushes), then a crash: the image and the keys in order.
fn group_then_sync() -> (Vec<u8>, Vec<String>) {
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 256)), log_opts()).unwrap();
    let mut keys = Vec::new();
    for i in 0..4 {
        keys.push(format!("group-{i}"));
        commit_one(&db, keys.last().unwrap(), Durability::Group(4));
    }
    for i in 0..3 {
        keys.push(format!("sync-{i}"));
        commit_one(&db, keys.last().unwrap(), Durability::Sync);
    }
    (db.into_storage().into_inner().image().to_vec(), keys)
}

/// Defect 1: one flipped bit in the second record of a group batch made
/// `open` succeed with only the first commit, losing three sync commits.
#[test]
fn damaged_group_record_before_sync_commits_is_an_error() {
    let (img, _) = group_then_sync();
    // The second record of the batch starts after the first (padded to 8).
    let len_field = u32::from_le_bytes(img[LOG + 4..LOG + 8].try_into().unwrap()) & 0x7fff_ffff; // bit 31: batch start
    let first_len = libdb::log::RECORD_HEADER + len_field as usize;
    let second = LOG + first_len.div_ceil(8) * 8;
    let mut bad = img.clone();
    bad[second + libdb::log::RECORD_HEADER + 1] ^= 0x10;
    match open_img(bad, log_opts()) {
        Err(Error::Corrupt { page, .. }) => assert_eq!(page, 2, "names the log page of the damaged record"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(db) => panic!("open silently dropped commits: {} replayed of 7", db.stats().replayed_records),
    }
}

/// Defect 1, every byte of the log: one flipped bit anywhere either leaves
/// every commit readable, is reported as `Corrupt`, or (only in the last
/// record, which nothing durable follows: a torn write looks the same)
/// loses that last commit. Never a durable commit lost silently.
#[test]
fn a_bit_flip_anywhere_in_the_log_never_loses_an_earlier_durable_commit() {
    let (img, keys) = group_then_sync();
    let used = (0..4 * 4096).rev().find(|&i| img[LOG + i] != 0).unwrap() + 1;
    let (mut errors, mut intact, mut last_lost) = (0, 0, 0);
    for byte in 0..used {
        let mut bad = img.clone();
        bad[LOG + byte] ^= 1 << (byte % 8);
        let db = match open_img(bad, log_opts()) {
            Ok(db) => db,
            Err(Error::Corrupt { .. }) => {
                errors += 1;
                continue;
            }
            Err(e) => panic!("byte {byte}: unexpected error {e}"),
        };
        let present: Vec<bool> = keys.iter().map(|k| db.get(k.as_bytes()).unwrap().is_some()).collect();
        if present.iter().all(|&p| p) {
            intact += 1;
        } else if present[..6].iter().all(|&p| p) {
            last_lost += 1;
        } else {
            panic!("byte {byte}: open succeeded without a durable commit: {present:?}");
        }
    }
    println!("{used} log bytes flipped: {errors} Corrupt, {intact} intact, {last_lost} lost only the last record");
    assert!(errors > 0);
}

/// Defect 3 and 4: a batch larger than the medium fails with NoSpace; it is
/// neither visible on the handle nor durable, and the handle stays usable.
#[test]
fn failed_commit_is_invisible_and_the_handle_stays_usable() {
    let opts = Options { cache_pages: 16, log_pages: 4, checkpoint_log_bytes: 0 };
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 8 * 40)), opts).unwrap();
    commit_one(&db, "before", Durability::Sync);
    let mut w = db.begin_write().unwrap();
    for i in 0..400 {
        w.put(format!("big-{i:04}").as_bytes(), &[7u8; 900]).unwrap();
    }
    assert_eq!(w.commit(Durability::Sync), Err(Error::NoSpace));
    assert_eq!(db.get(b"big-0000").unwrap(), None, "a failed commit is visible");
    assert_eq!(db.begin_read().iter().count(), 1);
    // Not poisoned: a small commit still works and survives a reopen.
    commit_one(&db, "after", Durability::Sync);
    let db = Db::open(db.into_storage(), opts).unwrap();
    assert!(db.get(b"after").unwrap().is_some());
    assert_eq!(db.get(b"big-0000").unwrap(), None);
}

/// Defect 3: fill the medium until a commit fails; the result of every
/// commit is true after a reopen (Ok = there, NoSpace = not there), the
/// full database opens (read-write and read-only), and deleting makes room.
#[test]
fn a_full_medium_reopens_and_return_values_are_true() {
    let opts = Options { cache_pages: 32, log_pages: 8, checkpoint_log_bytes: 8 * 1024 };
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 8 * 64)), opts).unwrap();
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..2000u32 {
        let mut w = db.begin_write().unwrap();
        let k = format!("key-{i:05}");
        w.put(k.as_bytes(), &[i as u8; 600]).unwrap();
        match w.commit(Durability::Sync) {
            Ok(()) => acked.push(k),
            Err(Error::NoSpace) => {
                refused = Some(k);
                break;
            }
            Err(e) => panic!("commit {i}: {e}"),
        }
    }
    let refused = refused.expect("the medium never filled");
    let storage = db.into_storage();
    let db = Db::open(storage, opts).expect("a full database must open");
    for k in &acked {
        assert!(db.get(k.as_bytes()).unwrap().is_some(), "acknowledged {k} lost");
    }
    assert_eq!(db.get(refused.as_bytes()).unwrap(), None, "the commit that returned NoSpace is durable");
    // Read-only: everything acknowledged, and no write is ever made.
    let storage = db.into_storage();
    let before = storage.device().image().to_vec();
    let ro = Db::open_read_only(storage, opts).unwrap();
    assert!(ro.get(acked.last().unwrap().as_bytes()).unwrap().is_some());
    assert_eq!(ro.begin_write().err(), Some(Error::ReadOnly));
    assert_eq!(ro.checkpoint(), Err(Error::ReadOnly));
    let storage = ro.into_storage();
    assert!(storage.device().image() == &before[..], "a read-only open wrote");
    // Make room: delete the newest half (small batches), compact, write again.
    let db = Db::open(storage, opts).unwrap();
    for chunk in acked[acked.len() / 2..].rchunks(8) {
        let mut w = db.begin_write().unwrap();
        for k in chunk {
            w.delete(k.as_bytes()).unwrap();
        }
        w.commit(Durability::Sync).unwrap_or_else(|e| panic!("deleting on a full medium: {e}; {:?}", db.stats()));
    }
    db.checkpoint().unwrap();
    db.checkpoint().unwrap();
    commit_one(&db, "room-again", Durability::Sync);
    db.checkpoint().unwrap();
    assert!(db.get(b"room-again").unwrap().is_some());
}

/// Defect 5: a snapshot held across many commits pins pages pending free;
/// the writer must recover once the reader is gone.
#[test]
fn a_long_held_reader_does_not_poison_the_writer() {
    let opts = Options { cache_pages: 32, log_pages: 8, checkpoint_log_bytes: 4 * 1024 };
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 8 * 64)), opts).unwrap();
    for i in 0..40u32 {
        let mut w = db.begin_write().unwrap();
        w.put(format!("key-{i:03}").as_bytes(), &[1u8; 300]).unwrap();
        w.commit(Durability::Sync).unwrap();
    }
    db.checkpoint().unwrap();
    let reader = db.begin_read();
    let mut failed = None;
    for round in 0..500u32 {
        let mut w = db.begin_write().unwrap();
        for i in 0..40u32 {
            w.put(format!("key-{i:03}").as_bytes(), &[round as u8; 300]).unwrap();
        }
        if let Err(e) = w.commit(Durability::Sync) {
            failed = Some(e);
            break;
        }
    }
    let failed = failed.expect("the reader never pinned enough pages to fill the medium");
    check_old_reader_error(failed, &reader);
    let s = db.stats();
    assert_eq!((s.readers, s.oldest_reader_generation), (1, reader.generation()), "the reader table");
    assert_eq!(reader.get(b"key-000").unwrap(), Some(vec![1u8; 300]), "the snapshot still reads");
    drop(reader);
    for round in 0..50u32 {
        let mut w = db.begin_write().unwrap();
        for i in 0..40u32 {
            w.put(format!("key-{i:03}").as_bytes(), &[round as u8; 300]).unwrap();
        }
        w.commit(Durability::Sync).unwrap_or_else(|e| panic!("round {round} after the reader left: {e}"));
    }
    assert_eq!(db.stats().readers, 0);
}

fn check_old_reader_error(e: Error, reader: &libdb::ReadTxn<'_, Mem>) {
    println!("writer with an old reader: {e}");
    match e {
        Error::ReaderPinsSpace { snapshot_generation, pinned_pages } => {
            assert_eq!(snapshot_generation, reader.generation(), "names the old reader's snapshot");
            assert!(pinned_pages > 0);
        }
        e => panic!("expected ReaderPinsSpace naming the reader, got {e}"),
    }
}

/// A model of what each key holds, for the stale-page test.
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Defect 2: a page put back to an older version of itself (a lost or
/// misdirected write) passes its own checks; the reference to it must pin
/// its contents, so reading through it is an error, never old data.
#[test]
fn a_stale_page_is_an_error_never_data() {
    let opts = Options { cache_pages: 16, log_pages: 8, checkpoint_log_bytes: 0 };
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 8 * 400)), opts).unwrap();
    let mut model = Model::new();
    let mut images = Vec::new();
    for round in 0..12u32 {
        let mut w = db.begin_write().unwrap();
        for i in 0..300u32 {
            if (i + round) % 4 == 0 || round == 0 {
                let k = format!("key-{i:04}").into_bytes();
                let len = if i % 50 == 7 { 5000 } else { 80 };
                let v = vec![(round * 7 + i) as u8; len];
                w.put(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
        w.commit(Durability::Sync).unwrap();
        db.checkpoint().unwrap();
        images.push(db.with_storage(|s| s.device().image().to_vec()));
    }
    let fin = images.pop().unwrap();
    let pages = fin.len() / 4096;
    let (mut tried, mut errors, mut same) = (0, 0, 0);
    for old in &images {
        for pg in 2 + 8..pages {
            let (a, b) = (&old[pg * 4096..(pg + 1) * 4096], &fin[pg * 4096..(pg + 1) * 4096]);
            // Only an older, self-consistent version of the same page.
            if a == b || libdb::page::verify(a, pg as u64).is_err() || libdb::page::verify(b, pg as u64).is_err() {
                continue;
            }
            tried += 1;
            let mut img = fin.clone();
            img[pg * 4096..(pg + 1) * 4096].copy_from_slice(a);
            let db = match open_img(img, opts) {
                Ok(db) => db,
                Err(Error::Corrupt { .. }) => {
                    errors += 1;
                    continue;
                }
                Err(e) => panic!("page {pg}: unexpected {e}"),
            };
            let got: Result<Model, Error> = db.begin_read().iter().collect();
            match got {
                Err(Error::Corrupt { page, .. }) => {
                    assert_eq!(page, pg as u64, "the error names the stale page");
                    errors += 1;
                }
                Err(e) => panic!("page {pg}: unexpected {e}"),
                Ok(got) => {
                    assert!(got == model, "page {pg}: a stale page returned wrong data without an error");
                    same += 1;
                }
            }
        }
    }
    println!("{tried} stale pages put back: {errors} named errors, {same} unreachable (data exact)");
    assert!(tried > 50 && errors > 10);
}

/// Defect 6: the same file opened twice gave two handles that committed
/// independently; the second open must be refused while the first lives.
#[cfg(feature = "std")]
#[test]
fn the_same_file_cannot_be_opened_twice() {
    let dir = std::env::temp_dir().join(format!("libdb-lock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = Options { cache_pages: 16, log_pages: 8, checkpoint_log_bytes: 0 };
    let block = dir.join("block.db");
    let db = Db::create(libdb::host::open_file_block(&block).unwrap(), opts).unwrap();
    let second = libdb::host::open_file_block(&block);
    assert!(second.is_err(), "a second handle on a file in use was accepted");
    let e = second.err().unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
    assert!(e.to_string().contains("in use"), "{e}");
    drop(db);
    // Released with the handle.
    Db::open(libdb::host::open_file_block(&block).unwrap(), opts).unwrap();
    let pm = dir.join("pmem.db");
    let db = Db::create(libdb::host::open_file_pmem(&pm, 1 << 20).unwrap(), opts).unwrap();
    assert!(libdb::host::open_file_pmem(&pm, 1 << 20).is_err(), "a second mapping of a file in use was accepted");
    drop(db);
    Db::open(libdb::host::open_file_pmem(&pm, 1 << 20).unwrap(), opts).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A device that fails reads, writes or flushes on command.
struct Faulty {
    inner: MemBlockDevice,
    fail: std::rc::Rc<std::cell::Cell<Option<&'static str>>>,
}

impl libdb::BlockDevice for Faulty {
    fn block_size(&self) -> usize {
        self.inner.block_size()
    }
    fn blocks(&self) -> u64 {
        self.inner.blocks()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), libdb::IoError> {
        if self.fail.get() == Some("read") {
            buf.fill(0xEE); // garbage that must never be returned as data
            return Err(libdb::IoError::Device(5));
        }
        self.inner.read(lba, buf)
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), libdb::IoError> {
        if self.fail.get() == Some("write") {
            return Err(libdb::IoError::Device(5));
        }
        self.inner.write(lba, data)
    }
    fn flush(&mut self) -> Result<(), libdb::IoError> {
        if self.fail.get() == Some("flush") {
            return Err(libdb::IoError::Device(28));
        }
        self.inner.flush()
    }
}

/// libdb never acknowledges a commit whose write or flush failed, never
/// shows it to readers, and never returns data from a failed read; a
/// reopen finds exactly the acknowledged commits.
#[test]
fn failed_writes_flushes_and_reads_are_never_acknowledged() {
    for what in ["write", "flush"] {
        for dur in [Durability::Sync, Durability::Group(1)] {
            let fail = std::rc::Rc::new(std::cell::Cell::new(None));
            let dev = Faulty { inner: MemBlockDevice::new(512, 8 * 64), fail: fail.clone() };
            let opts = Options { cache_pages: 16, log_pages: 8, checkpoint_log_bytes: 0 };
            let db = Db::create(BlockStorage::new(dev), opts).unwrap();
            commit_one(&db, "good", Durability::Sync);
            fail.set(Some(what));
            let mut w = db.begin_write().unwrap();
            w.put(b"bad", b"never acknowledged").unwrap();
            let e = w.commit(dur).expect_err("a commit whose {what} failed was acknowledged");
            assert!(matches!(e, Error::Io { .. }), "{what}: {e}");
            assert_eq!(db.get(b"bad").unwrap(), None, "{what}: the failed commit is visible");
            assert_eq!(db.begin_write().err(), Some(Error::Poisoned));
            assert_eq!(db.sync(), Err(Error::Poisoned));
            assert_eq!(db.checkpoint(), Err(Error::Poisoned));
            fail.set(None);
            let dev = db.into_storage().into_inner().inner;
            let db = Db::open(BlockStorage::new(dev), opts).unwrap();
            assert!(db.get(b"good").unwrap().is_some());
            // The failed write never reached the medium; a failed flush may
            // have left the record there (durability unknown, as reported).
            if what == "write" {
                assert_eq!(db.get(b"bad").unwrap(), None);
            }
        }
    }
    // Reads: an error, never the garbage the failed read left in the buffer.
    let fail = std::rc::Rc::new(std::cell::Cell::new(None));
    let opts = Options { cache_pages: 8, log_pages: 8, checkpoint_log_bytes: 0 };
    let dev = Faulty { inner: MemBlockDevice::new(512, 8 * 256), fail: fail.clone() };
    let db = Db::create(BlockStorage::new(dev), opts).unwrap();
    let mut w = db.begin_write().unwrap();
    for i in 0..2000u32 {
        w.put(format!("key-{i:04}").as_bytes(), &[3u8; 100]).unwrap();
    }
    w.commit(Durability::Sync).unwrap();
    db.checkpoint().unwrap();
    fail.set(Some("read"));
    // A cache of 8 pages cannot hold the ~60 leaves: most reads go to the medium.
    let errors = (0..2000u32).step_by(97).filter(|i| db.get(format!("key-{i:04}").as_bytes()).is_err()).count();
    assert!(errors > 10, "{errors}");
    for i in (0..2000u32).step_by(97) {
        match db.get(format!("key-{i:04}").as_bytes()) {
            Err(Error::Io { .. }) => {}
            Ok(v) => assert_eq!(v, Some(vec![3u8; 100]), "data from a failed read"),
            Err(e) => panic!("{e}"),
        }
    }
    let all: Result<Vec<_>, Error> = db.begin_read().iter().collect();
    assert!(matches!(all, Err(Error::Io { .. })));
    fail.set(None);
    assert_eq!(db.get(b"key-0001").unwrap(), Some(vec![3u8; 100]), "reads work again once the medium does");
    let dev = db.into_storage();
    fail.set(Some("read"));
    assert!(matches!(Db::open(dev, opts), Err(Error::Io { .. })), "open over failing reads");
}
