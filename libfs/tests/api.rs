//! The operations' contracts one by one: typed errors naming the object,
//! hard links, rename rules, and the mapping interface (extents, allocate,
//! persist ranges) a mapping layer builds on.

mod common;

use common::*;
use libfs::{Error, Geometry, Kind, OpenMode, Storage, PAGE_SIZE};

#[test]
fn errors_name_the_object() {
    let mut fs = pmem_fs(256, Geometry::default());
    fs.mkdir("/d", 0o755).unwrap();
    fs.create("/d/f", 0o644).unwrap();
    assert_eq!(fs.create("/d/f", 0o644), Err(Error::Exists("/d/f".into())));
    assert_eq!(fs.open("/d/nope", OpenMode::READ), Err(Error::NotFound("/d/nope".into())));
    assert_eq!(fs.create("/d/f/x", 0o644), Err(Error::NotDir("/d/f".into())));
    assert_eq!(fs.rmdir("/d"), Err(Error::NotEmpty("/d".into())));
    assert_eq!(fs.unlink("/d"), Err(Error::IsDir("/d".into())));
    assert_eq!(fs.rmdir("/d/f"), Err(Error::NotDir("/d/f".into())));
    assert!(matches!(fs.open("/d", OpenMode::WRITE), Err(Error::IsDir(_))));
    let long = format!("/{}", "n".repeat(256));
    assert_eq!(fs.create(&long, 0o644), Err(Error::NameTooLong(long.clone())));
    let ok = format!("/{}", "n".repeat(255));
    fs.create(&ok, 0o644).unwrap();
    assert!(matches!(fs.rmdir("/"), Err(Error::Permission(_))));
    assert!(matches!(fs.create("/d/..", 0o644), Err(Error::Invalid(_))));
    let h = fs.open("/d/f", OpenMode::READ).unwrap();
    assert!(matches!(fs.pwrite(&h, 0, b"x"), Err(Error::Permission(_))));
    fs.create("/ro", 0o444).unwrap();
    assert_eq!(fs.open("/ro", OpenMode::WRITE), Err(Error::Permission("/ro".into())));
    assert!(matches!(fs.rename("/d", "/d/sub"), Err(Error::Invalid(_))));
    // Names survive a remount, the longest one included.
    fs.sync().unwrap();
    let fs = mount_pmem(fs.into_storage().into_inner().crash_image_strict()).unwrap();
    assert_eq!(fs.stat(&ok).unwrap().kind, Kind::File);
    assert_eq!(fs.readdir("/").unwrap().len(), 3);
    assert_eq!(fs.stat("/d/.././d/f").unwrap().kind, Kind::File);
}

#[test]
fn hard_links_and_rename_over() {
    let mut fs = block_fs(256, Geometry::default());
    let mut h = fs.open("/a", OpenMode::CREATE).unwrap();
    fs.write(&mut h, b"first").unwrap();
    fs.link("/a", "/b").unwrap();
    assert_eq!(fs.stat("/a").unwrap().nlink, 2);
    assert!(matches!(fs.link("/a", "/b"), Err(Error::Exists(_))));
    fs.mkdir("/d", 0o755).unwrap();
    assert!(matches!(fs.link("/d", "/e"), Err(Error::IsDir(_))));
    let mut h2 = fs.open("/c", OpenMode::CREATE).unwrap();
    fs.write(&mut h2, b"second").unwrap();
    fs.rename("/c", "/a").unwrap(); // over a file with another name
    assert_eq!(fs.stat("/b").unwrap().nlink, 1);
    let mut buf = [0u8; 6];
    let h = fs.open("/a", OpenMode::READ).unwrap();
    fs.pread(&h, 0, &mut buf).unwrap();
    assert_eq!(&buf, b"second");
    fs.rename("/a", "/b").unwrap(); // frees "first"
    assert!(matches!(fs.stat("/a"), Err(Error::NotFound(_))));
    fs.mkdir("/e", 0o755).unwrap();
    fs.create("/e/x", 0o644).unwrap();
    assert!(matches!(fs.rename("/d", "/e"), Err(Error::NotEmpty(_))));
    assert!(matches!(fs.rename("/d", "/b"), Err(Error::NotDir(_))));
    assert!(matches!(fs.rename("/b", "/d"), Err(Error::IsDir(_))));
    fs.rename("/e", "/d").unwrap(); // over an empty directory
    assert_eq!(fs.stat("/d/x").unwrap().kind, Kind::File);
    assert_eq!(fs.stat("/").unwrap().nlink, 3);
    assert!(fs.check().is_empty());
}

#[test]
fn mapping_interface() {
    let mut fs = pmem_fs(256, Geometry::default());
    let h = fs.open("/m", OpenMode::CREATE).unwrap();
    // Extend before mapping: every page allocated, zeroed, 4 KiB aligned.
    fs.allocate(&h, 5 * PAGE_SIZE as u64 + 10).unwrap();
    fs.fsync(&h).unwrap();
    let ext = fs.extents(h.ino).unwrap();
    assert_eq!(ext.iter().map(|e| e.pages).sum::<u64>(), 6);
    assert_eq!(ext.len(), 1, "a fresh file is one run: {ext:?}");
    for e in &ext {
        assert_eq!(e.medium_offset % PAGE_SIZE as u64, 0);
    }
    // A store through the "mapping" (straight into the medium), then the
    // ranges to persist, then it is durable without any commit.
    let base = ext[0].medium_offset;
    let ranges = fs.persist_ranges(h.ino, 4090, 20).unwrap();
    assert_eq!(ranges, vec![(base + 4090, 20)]);
    let region = fs.storage_mut().region_mut();
    region.write(base as usize + 4090, &[9u8; 20]);
    for (off, len) in ranges {
        pmem::Persist::flush(region, off as usize, len as usize);
    }
    pmem::Persist::fence(region);
    let img = fs.storage().region().crash_image_strict();
    let mut fs2 = mount_pmem(img).unwrap();
    let h2 = fs2.open("/m", OpenMode::READ).unwrap();
    let mut buf = [0u8; 20];
    fs2.pread(&h2, 4090, &mut buf).unwrap();
    assert_eq!(buf, [9u8; 20]);
    assert_eq!(fs2.stat("/m").unwrap().size, 5 * 4096 + 10);
    // Holes are not in the extent list and read as zeros.
    let h = fs.open("/sparse", OpenMode::CREATE).unwrap();
    fs.pwrite(&h, 3 * 4096, b"z").unwrap();
    let ext = fs.extents(h.ino).unwrap();
    assert_eq!(ext.len(), 1);
    assert_eq!(ext[0].file_page, 3);
    let mut buf = [1u8; 4096];
    assert_eq!(fs.pread(&h, 0, &mut buf).unwrap(), 4096);
    assert_eq!(buf, [0u8; 4096]);
}

#[test]
fn no_space_is_reported_before_writing() {
    let mut fs = pmem_fs(32, Geometry { ckpt_pages: Some(2), log_pages: Some(2) });
    let free = fs.free_pages();
    let mut h = fs.open("/big", OpenMode::CREATE).unwrap();
    let too_big = vec![1u8; (free as usize + 1) * PAGE_SIZE];
    assert_eq!(fs.write(&mut h, &too_big), Err(Error::NoSpace("data pages")));
    assert_eq!(fs.stat("/big").unwrap().size, 0);
    assert_eq!(fs.free_pages(), free);
    fs.write(&mut h, &too_big[..free as usize * PAGE_SIZE]).unwrap();
    assert_eq!(fs.free_pages(), 0);
    // Freed pages come back once the unlink is committed.
    fs.unlink("/big").unwrap();
    assert_eq!(fs.free_pages(), 0);
    fs.sync().unwrap();
    assert_eq!(fs.free_pages(), free);
}

#[test]
fn commit_costs() {
    // What one 4 KiB append + fsync asks of each medium (DESIGN.md).
    let mut fs = block_fs(1024, Geometry::default());
    let mut h = fs.open("/log", OpenMode::CREATE).unwrap();
    fs.fsync(&h).unwrap();
    let before = fs.storage().io_stats();
    fs.append(&mut h, &[5u8; 4096]).unwrap();
    fs.fsync(&h).unwrap();
    let after = fs.storage().io_stats();
    let bytes = after.bytes_written - before.bytes_written;
    let barriers = after.barriers - before.barriers;
    println!("block: append 4 KiB + fsync = {bytes} bytes written, {barriers} flushes");
    assert!(bytes <= 4096 + 512, "{bytes}");
    assert_eq!(barriers, 2);
    let mut fs = pmem_fs(1024, Geometry::default());
    let mut h = fs.open("/log", OpenMode::CREATE).unwrap();
    fs.fsync(&h).unwrap();
    let before = fs.storage().io_stats();
    fs.append(&mut h, &[5u8; 4096]).unwrap();
    fs.fsync(&h).unwrap();
    let after = fs.storage().io_stats();
    println!(
        "pmem: append 4 KiB + fsync = {} lines flushed, {} fences",
        after.lines_flushed - before.lines_flushed,
        after.barriers - before.barriers
    );
    assert!(after.lines_flushed - before.lines_flushed <= 64 + 3);
}

#[test]
fn inode_numbers_are_never_reused() {
    let mut fs = pmem_fs(256, Geometry::default());
    let a = fs.create("/a", 0o644).unwrap();
    fs.unlink("/a").unwrap();
    fs.sync().unwrap();
    // Created and freed within one commit: only the log knows the number.
    let mut fs = mount_pmem(fs.into_storage().into_inner().crash_image_strict()).unwrap();
    let b = fs.create("/b", 0o644).unwrap();
    assert!(b > a, "{b} reuses {a}");
}

/// A block device whose writes or flushes start failing on command.
struct Flaky {
    dev: libdb::MemBlockDevice,
    ok_ops: u64,
}

impl libdb::BlockDevice for Flaky {
    fn block_size(&self) -> usize {
        self.dev.block_size()
    }
    fn blocks(&self) -> u64 {
        self.dev.blocks()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), libdb::IoError> {
        self.dev.read(lba, buf)
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), libdb::IoError> {
        if self.ok_ops == 0 {
            return Err(libdb::IoError::Device(5));
        }
        self.ok_ops -= 1;
        self.dev.write(lba, data)
    }
    fn flush(&mut self) -> Result<(), libdb::IoError> {
        if self.ok_ops == 0 {
            return Err(libdb::IoError::Device(5));
        }
        self.ok_ops -= 1;
        self.dev.flush()
    }
}

#[test]
fn io_errors_poison_until_remount() {
    for budget in 0..40 {
        let st = libfs::BlockStorage::new(Flaky { dev: libdb::MemBlockDevice::new(512, 256 * 8), ok_ops: u64::MAX });
        let mut fs = libfs::Fs::mkfs(st, Geometry { ckpt_pages: Some(2), log_pages: Some(2) }).unwrap();
        let mut h = fs.open("/a", OpenMode::CREATE).unwrap();
        fs.write(&mut h, &[1u8; 5000]).unwrap();
        fs.sync().unwrap();
        let before = snapshot(&mut fs);
        fs.storage_mut().device_mut().ok_ops = budget;
        let mut failed = None;
        for i in 0..20 {
            let p = format!("/f{i}");
            let (from, to) = if i % 2 == 0 { ("/a", "/b") } else { ("/b", "/a") };
            let r = fs
                .open(&p, OpenMode::CREATE)
                .and_then(|mut h| fs.write(&mut h, &[2u8; 6000]))
                .and_then(|_| fs.rename(from, to))
                .and_then(|_| fs.sync());
            if let Err(e) = r {
                failed = Some(e);
                break;
            }
        }
        let Some(e) = failed else { panic!("budget {budget}: no operation failed") };
        assert!(matches!(e, Error::Io { .. }), "budget {budget}: {e:?}");
        assert_eq!(fs.create("/x", 0o644), Err(Error::Poisoned));
        assert_eq!(fs.sync(), Err(Error::Poisoned));
        // Reads still work; a remount recovers a committed state.
        assert!(fs.stat("/").is_ok());
        let img = fs.into_storage().into_inner().dev.image().to_vec();
        let mut fs = mount_block(img).unwrap();
        assert!(fs.check().is_empty());
        let after = snapshot(&mut fs);
        assert!(after.contains_key("/a") || after.contains_key("/b"), "budget {budget}: {}", diff(&after, &before));
    }
}

#[test]
fn four_k_sector_devices() {
    // A 4Kn NVMe namespace: every commit is one whole sector.
    let st = libfs::BlockStorage::new(libdb::sim::SimBlockDevice::new(4096, 256));
    let mut fs = libfs::Fs::mkfs(st, Geometry::default()).unwrap();
    assert_eq!(fs.superblock().log_unit, 4096);
    let mut h = fs.open("/f", OpenMode::CREATE).unwrap();
    fs.write(&mut h, b"0123456789").unwrap(); // a partial page: read-modify-write
    fs.pwrite(&h, 3, b"xy").unwrap();
    fs.fsync(&h).unwrap();
    let img = fs.into_storage().into_inner().crash_image_strict();
    let mut fs =
        libfs::Fs::mount(libfs::BlockStorage::new(libdb::sim::SimBlockDevice::from_image(4096, img.clone()))).unwrap();
    let h = fs.open("/f", OpenMode::READ).unwrap();
    let mut buf = [0u8; 10];
    fs.pread(&h, 0, &mut buf).unwrap();
    assert_eq!(&buf, b"012xy56789");
    // The same image on a 512-byte-sector device mounts (512 divides the
    // log unit); an image made with 512-byte units refuses a 4Kn device.
    assert!(mount_block(img).is_ok());
    let small = block_fs(64, Geometry::default()).into_storage().into_inner().crash_image_strict();
    let e = libfs::Fs::mount(libfs::BlockStorage::new(libdb::sim::SimBlockDevice::from_image(4096, small)))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
}

#[test]
fn set_mode_and_mtime_survive_a_remount() {
    let mut fs = pmem_fs(256, Geometry::default());
    let f = fs.create("/f", 0o644).unwrap();
    let d = fs.mkdir("/d", 0o755).unwrap();
    fs.set_mode(f, 0o104_600).unwrap(); // the file type bits are dropped
    fs.set_mtime(f, 1_500_000_000_123_456_789).unwrap();
    fs.set_mtime(d, 7).unwrap();
    assert!(matches!(fs.set_mtime(999, 1), Err(Error::NotFound(_))));
    fs.sync().unwrap();
    let fs = mount_pmem(fs.into_storage().into_inner().crash_image_strict()).unwrap();
    let (sf, sd) = (fs.stat("/f").unwrap(), fs.stat("/d").unwrap());
    assert_eq!((sf.mode, sf.mtime), (0o4600, 1_500_000_000_123_456_789));
    assert_eq!(sd.mtime, 7);
}
