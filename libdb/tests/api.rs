//! Basic behaviour through the public API on every backend.

use libdb::{BlockStorage, Db, Durability, MemBlockDevice, Options, PmemStorage};

fn small() -> Options {
    Options { cache_pages: 64, log_pages: 16, checkpoint_log_bytes: 32 * 1024 }
}

fn exercise<S: libdb::Storage>(db: &Db<S>) {
    let mut w = db.begin_write().unwrap();
    for i in 0..500u32 {
        w.put(format!("key{i:05}").as_bytes(), format!("value{i}").as_bytes()).unwrap();
    }
    w.put(b"big", &vec![7u8; 10_000]).unwrap();
    w.commit(Durability::Sync).unwrap();
    assert_eq!(db.get(b"key00042").unwrap().as_deref(), Some(&b"value42"[..]));
    assert_eq!(db.get(b"big").unwrap().unwrap().len(), 10_000);
    db.checkpoint().unwrap();
    assert_eq!(db.get(b"key00042").unwrap().as_deref(), Some(&b"value42"[..]));
    assert_eq!(db.get(b"big").unwrap().unwrap(), vec![7u8; 10_000]);

    let mut w = db.begin_write().unwrap();
    w.delete(b"key00001").unwrap();
    w.put(b"key00002", b"changed").unwrap();
    assert_eq!(w.get(b"key00002").unwrap().as_deref(), Some(&b"changed"[..]));
    w.commit(Durability::Group(4)).unwrap();

    let r = db.begin_read();
    let fwd: Vec<_> = r.range(&b"key00000"[..]..&b"key00005"[..]).map(|e| e.unwrap().0).collect();
    assert_eq!(fwd, vec![b"key00000".to_vec(), b"key00002".to_vec(), b"key00003".to_vec(), b"key00004".to_vec()]);
    let rev: Vec<_> = r.range(&b"key00000"[..]..=&b"key00003"[..]).rev().map(|e| e.unwrap().0).collect();
    assert_eq!(rev, vec![b"key00003".to_vec(), b"key00002".to_vec(), b"key00000".to_vec()]);
    assert_eq!(r.iter().count(), 500);
    assert_eq!(r.iter().rev().count(), 500);

    // Snapshot isolation: a later commit is invisible to `r`.
    let mut w = db.begin_write().unwrap();
    w.put(b"key00003", b"newer").unwrap();
    w.commit(Durability::Sync).unwrap();
    db.checkpoint().unwrap();
    assert_eq!(r.get(b"key00003").unwrap().as_deref(), Some(&b"value3"[..]));
    assert_eq!(db.get(b"key00003").unwrap().as_deref(), Some(&b"newer"[..]));
    drop(r);

    // Aborted writes vanish; one writer at a time.
    let mut w = db.begin_write().unwrap();
    assert!(matches!(db.begin_write(), Err(libdb::Error::WriterActive)));
    w.put(b"aborted", b"x").unwrap();
    w.abort();
    assert_eq!(db.get(b"aborted").unwrap(), None);
}

#[test]
fn block_backend_roundtrip_and_reopen() {
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 4096)), small()).unwrap();
    exercise(&db);
    let s = db.stats();
    assert!(s.io.barriers > 0 && s.commits == 3, "{s:?}");
    let dev = db.close().unwrap().into_inner();
    let db = Db::open(BlockStorage::new(dev), small()).unwrap();
    assert_eq!(db.get(b"key00003").unwrap().as_deref(), Some(&b"newer"[..]));
    assert_eq!(db.get(b"key00001").unwrap(), None);
    assert_eq!(db.begin_read().iter().count(), 500);
}

#[test]
fn pmem_backend_roundtrip_and_reopen() {
    let db = Db::create(PmemStorage::new(pmem::SimPmem::new(2 << 20)), small()).unwrap();
    exercise(&db);
    let img = db.close().unwrap().into_inner().crash_image_strict();
    let db = Db::open(PmemStorage::new(pmem::SimPmem::from_image(img)), small()).unwrap();
    assert_eq!(db.get(b"key00002").unwrap().as_deref(), Some(&b"changed"[..]));
    assert_eq!(db.begin_read().iter().count(), 500);
}

#[cfg(feature = "std")]
#[test]
fn host_file_backends() {
    let dir = std::env::temp_dir().join(format!("libdb-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    {
        let db = Db::create(libdb::host::open_file_block(dir.join("block.db")).unwrap(), small()).unwrap();
        exercise(&db);
        let before = db.stats().io.barriers;
        let mut w = db.begin_write().unwrap();
        w.put(b"one", b"fdatasync").unwrap();
        w.commit(Durability::Sync).unwrap();
        assert_eq!(db.stats().io.barriers - before, 1, "one fdatasync per sync commit");
    }
    let db = Db::open(libdb::host::open_file_block(dir.join("block.db")).unwrap(), small()).unwrap();
    assert_eq!(db.get(b"one").unwrap().as_deref(), Some(&b"fdatasync"[..]));
    {
        let db = Db::create(libdb::host::open_file_pmem(dir.join("pmem.db"), 4 << 20).unwrap(), small()).unwrap();
        exercise(&db);
    }
    let db = Db::open(libdb::host::open_file_pmem(dir.join("pmem.db"), 4 << 20).unwrap(), small()).unwrap();
    assert_eq!(db.get(b"key00003").unwrap().as_deref(), Some(&b"newer"[..]));
    drop(db);
    match libdb::host::open_file_block_direct(dir.join("direct.db")) {
        Ok(storage) => {
            assert!(storage.device().is_direct());
            let db = Db::create(storage, small()).unwrap();
            exercise(&db);
            drop(db);
            let db = Db::open(libdb::host::open_file_block_direct(dir.join("direct.db")).unwrap(), small()).unwrap();
            assert_eq!(db.get(b"key00003").unwrap().as_deref(), Some(&b"newer"[..]));
            assert_eq!(db.begin_read().iter().count(), 500);
        }
        Err(e) => println!("O_DIRECT not supported here ({e}): direct backend not tested"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn iterator_keeps_its_snapshot_across_commits_and_checkpoints() {
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 8192)), small()).unwrap();
    let mut w = db.begin_write().unwrap();
    for i in 0..2000u32 {
        w.put(format!("k{i:05}").as_bytes(), &i.to_le_bytes()).unwrap();
    }
    w.commit(Durability::Sync).unwrap();
    db.checkpoint().unwrap();
    let r = db.begin_read();
    let mut it = r.iter();
    let mut seen: Vec<_> = it.by_ref().take(100).map(|e| e.unwrap().0).collect();
    // Rewrite and delete everything under the iterator's feet, several
    // checkpoints over (pages it still needs must not be reused).
    for round in 0..5u32 {
        let mut w = db.begin_write().unwrap();
        for i in 0..2000u32 {
            if i % 3 == 0 {
                w.delete(format!("k{i:05}").as_bytes()).unwrap();
            } else {
                w.put(format!("k{i:05}").as_bytes(), &[round as u8; 300]).unwrap();
            }
        }
        w.commit(Durability::Async).unwrap();
        db.checkpoint().unwrap();
    }
    seen.extend(it.map(|e| e.unwrap().0));
    assert_eq!(seen.len(), 2000);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(r.get(b"k00003").unwrap(), Some(3u32.to_le_bytes().to_vec()));
    drop(r);
    assert_eq!(db.get(b"k00003").unwrap(), None);
    assert!(db.stats().pending_free_pages > 0 || db.stats().free_pages > 0);
}

/// A device whose writes start failing after a given count.
struct FailingDevice {
    inner: MemBlockDevice,
    writes_left: u32,
}

impl libdb::BlockDevice for FailingDevice {
    fn block_size(&self) -> usize {
        self.inner.block_size()
    }
    fn blocks(&self) -> u64 {
        self.inner.blocks()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), libdb::IoError> {
        self.inner.read(lba, buf)
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), libdb::IoError> {
        if self.writes_left == 0 {
            return Err(libdb::IoError::Device(5));
        }
        self.writes_left -= 1;
        self.inner.write(lba, data)
    }
    fn flush(&mut self) -> Result<(), libdb::IoError> {
        self.inner.flush()
    }
}

#[test]
fn io_error_poisons_the_handle_and_reopen_recovers() {
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 8192)), small()).unwrap();
    let dev = db.into_storage().into_inner();
    let db = Db::open(BlockStorage::new(FailingDevice { inner: dev, writes_left: 30 }), small()).unwrap();
    let mut committed = 0;
    let err = loop {
        let mut w = db.begin_write().unwrap();
        w.put(format!("k{committed:04}").as_bytes(), b"v").unwrap();
        match w.commit(Durability::Sync) {
            Ok(()) => committed += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, libdb::Error::Io { error: libdb::IoError::Device(5), .. }), "{err}");
    assert!(matches!(db.begin_write(), Err(libdb::Error::Poisoned)));
    assert!(matches!(db.checkpoint(), Err(libdb::Error::Poisoned)));
    let dev = db.into_storage().into_inner().inner;
    let db = Db::open(BlockStorage::new(dev), small()).unwrap();
    let n = db.begin_read().iter().count();
    assert_eq!(n, committed, "exactly the acknowledged commits");
}

#[test]
fn transaction_larger_than_the_log_goes_straight_to_the_tree() {
    let db = Db::create(BlockStorage::new(MemBlockDevice::new(512, 16 * 1024)), small()).unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = db.begin_write().unwrap();
    w.put(b"big", &big).unwrap();
    w.put(b"small", b"s").unwrap();
    w.commit(Durability::Sync).unwrap();
    assert!(db.stats().checkpoints >= 2, "the commit itself checkpointed");
    let dev = db.into_storage().into_inner(); // no close: must already be durable
    let db = Db::open(BlockStorage::new(dev), small()).unwrap();
    assert_eq!(db.get(b"big").unwrap().unwrap(), big);
    assert_eq!(db.get(b"small").unwrap().as_deref(), Some(&b"s"[..]));
    let mut w = db.begin_write().unwrap();
    assert!(matches!(w.put(b"k", &vec![0; libdb::MAX_VALUE + 1]), Err(libdb::Error::ValueTooLarge { .. })));
    assert!(matches!(w.put(&[1; 513], b"v"), Err(libdb::Error::KeyTooLarge { .. })));
    assert!(matches!(w.put(b"", b"v"), Err(libdb::Error::EmptyKey)));
}

#[test]
fn open_or_create_formats_only_a_blank_medium() {
    let db = Db::open_or_create(BlockStorage::new(MemBlockDevice::new(512, 4096)), small()).unwrap();
    let mut w = db.begin_write().unwrap();
    w.put(b"k", b"v").unwrap();
    w.commit(Durability::Sync).unwrap();
    let mut img = db.into_storage().into_inner().image().to_vec();
    let db = Db::open_or_create(BlockStorage::new(MemBlockDevice::from_image(512, img.clone())), small()).unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    // Both metas damaged: an error, not a fresh empty database.
    img[100] ^= 1;
    img[4096 + 100] ^= 1;
    let r = Db::open_or_create(BlockStorage::new(MemBlockDevice::from_image(512, img)), small());
    assert!(matches!(r, Err(libdb::Error::NoValidMeta { .. })));
}
