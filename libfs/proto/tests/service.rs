//! The file service's logic on the host: a mounted libfs on simulated
//! persistent memory, a model of the clients' windows (every entry the
//! service made, with its rights), and the channel page in memory.

use fsproto::client::{CallError, Client};
use fsproto::wire::{self, Reply, Request, Status, OPEN_CREATE, OPEN_TRUNCATE, OPEN_WRITE};
use fsproto::{MapError, Mapper, Service};
use libfs::{Fs, Geometry, PmemStorage, Storage};
use pmem::SimPmem;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Every client's window: (slot, page) → (medium offset, writable).
#[derive(Default)]
struct Windows {
    entries: BTreeMap<(usize, u64), (u64, bool)>,
    fail_after: Option<u64>,
}

impl Mapper for Windows {
    fn share(&mut self, client: usize, page: u64, medium: u64, writable: bool) -> Result<(), MapError> {
        if let Some(n) = self.fail_after.as_mut() {
            if *n == 0 {
                return Err(MapError("Occupied".into()));
            }
            *n -= 1;
        }
        if self.entries.insert((client, page), (medium, writable)).is_some() {
            panic!("page {page} of client {client} mapped twice");
        }
        Ok(())
    }
    fn revoke(&mut self, client: usize, page: u64) -> Result<(), MapError> {
        self.entries.remove(&(client, page)).map(|_| ()).ok_or_else(|| MapError("NotMapped".into()))
    }
}

type Svc = Service<PmemStorage<SimPmem>, Windows>;
const WINDOW_PAGES: u64 = 1024;

fn service() -> Svc {
    let mut fs = Fs::mkfs(PmemStorage::new(SimPmem::new(4 << 20)), Geometry::default()).unwrap();
    fs.mkdir("/shared", 0o777).unwrap();
    fs.sync().unwrap();
    let mut s = Service::new(fs, Windows::default(), WINDOW_PAGES).unwrap();
    s.client_new(0, 0);
    s.client_new(1, 1000);
    s.client_new(2, 1001);
    s
}

fn call(s: &mut Svc, slot: usize, req: Request) -> Reply {
    s.handle_raw(slot, &req.encode().unwrap())
}

fn ok(s: &mut Svc, slot: usize, req: Request) -> Reply {
    let r = call(s, slot, req.clone());
    assert_eq!(r.status(), Status::Ok, "{req:?}: {}", r.text());
    r
}

fn refused(s: &mut Svc, slot: usize, req: Request, want: Status) -> String {
    let r = call(s, slot, req.clone());
    assert_eq!(r.status(), want, "{req:?}: {}", r.text());
    r.text()
}

fn open(path: &str, flags: u8, mode: u16) -> Request {
    Request::Open { path: path.into(), flags, mode }
}

fn mapped(s: &Svc, slot: usize) -> Vec<(u64, u64, bool)> {
    s.mapper().entries.iter().filter(|((c, _), _)| *c == slot).map(|((_, p), (m, w))| (*p, *m, *w)).collect()
}

/// A store through client `slot`'s window: the medium byte it reaches.
fn store(s: &mut Svc, slot: usize, window_off: u64, byte: u8) -> Result<(), &'static str> {
    let (m, w) = *s.mapper().entries.get(&(slot, window_off / 4096)).ok_or("not mapped: fault")?;
    if !w {
        return Err("read-only: fault");
    }
    s.fs_mut().storage_mut().write(m + window_off % 4096, &[byte]).unwrap();
    Ok(())
}

fn load(s: &mut Svc, slot: usize, window_off: u64) -> Result<u8, &'static str> {
    let (m, _) = *s.mapper().entries.get(&(slot, window_off / 4096)).ok_or("not mapped: fault")?;
    let mut b = [0u8];
    s.fs_mut().storage_mut().read(m + window_off % 4096, &mut b).unwrap();
    Ok(b[0])
}

#[test]
fn two_writers_share_the_same_pages_and_a_reader_gets_read_only_entries() {
    let mut s = service();
    let a = ok(&mut s, 1, open("/shared/f", OPEN_WRITE | OPEN_CREATE, 0o666));
    assert!(a.writable);
    assert_eq!(a.size, 0);
    let a = ok(&mut s, 1, Request::Grow { handle: a.handle, size: 3 * 4096 + 5 });
    assert_eq!((a.pages, a.size), (4, 3 * 4096 + 5));
    let b = ok(&mut s, 2, open("/shared/f", OPEN_WRITE, 0));
    let c = ok(&mut s, 0, open("/shared/f", 0, 0));
    assert!(b.writable && !c.writable);
    // Same medium pages in every window; rights follow the open mode.
    let media = |v: Vec<(u64, u64, bool)>| v.iter().map(|e| e.1).collect::<Vec<_>>();
    assert_eq!(media(mapped(&s, 1)), media(mapped(&s, 2)));
    assert_eq!(media(mapped(&s, 1)), media(mapped(&s, 0)));
    assert!(mapped(&s, 2).iter().all(|e| e.2));
    assert!(mapped(&s, 0).iter().all(|e| !e.2));
    store(&mut s, 1, a.window + 4096 + 7, 0xa5).unwrap();
    assert_eq!(load(&mut s, 2, b.window + 4096 + 7), Ok(0xa5));
    store(&mut s, 2, b.window + 9, 0x5a).unwrap();
    assert_eq!(load(&mut s, 1, a.window + 9), Ok(0x5a));
    assert_eq!(load(&mut s, 0, c.window + 9), Ok(0x5a));
    assert_eq!(store(&mut s, 0, c.window + 9, 1), Err("read-only: fault"));
    // Close revokes exactly that client's entries.
    ok(&mut s, 1, Request::Close { handle: a.handle });
    assert!(mapped(&s, 1).is_empty());
    assert_eq!(load(&mut s, 1, a.window), Err("not mapped: fault"));
    assert_eq!(mapped(&s, 2).len(), 4);
}

#[test]
fn permissions_follow_owner_and_mode_and_the_uid_init_gave() {
    let mut s = service();
    let p = ok(&mut s, 1, open("/shared/private", OPEN_WRITE | OPEN_CREATE, 0o600));
    ok(&mut s, 1, Request::Grow { handle: p.handle, size: 4096 });
    assert_eq!(ok(&mut s, 1, Request::Stat { path: "/shared/private".into() }).owner, 1000);
    let t = refused(&mut s, 2, open("/shared/private", 0, 0), Status::Permission);
    assert!(t.contains("uid 1001") && t.contains("owner 1000"), "{t}");
    assert!(mapped(&s, 2).is_empty());
    // Read-only for others: 0644.
    ok(&mut s, 1, open("/shared/r", OPEN_WRITE | OPEN_CREATE, 0o644));
    ok(&mut s, 2, open("/shared/r", 0, 0));
    refused(&mut s, 2, open("/shared/r", OPEN_WRITE, 0), Status::Permission);
    // A directory the client may not write: no create, no mkdir, no unlink.
    ok(&mut s, 0, Request::Mkdir { path: "/root-only".into(), mode: 0o755 });
    refused(&mut s, 1, open("/root-only/x", OPEN_WRITE | OPEN_CREATE, 0o644), Status::Permission);
    refused(&mut s, 1, Request::Mkdir { path: "/root-only/d".into(), mode: 0o755 }, Status::Permission);
    refused(&mut s, 2, Request::Unlink { path: "/shared/r".into() }, Status::Busy);
    // Root may do what the bits allow anybody, but not write a file with
    // no write bit at all (libfs's own rule).
    ok(&mut s, 0, open("/shared/private", OPEN_WRITE, 0));
}

#[test]
fn the_owner_table_survives_a_remount_and_is_out_of_every_client_s_reach() {
    let mut s = service();
    ok(&mut s, 1, open("/shared/mine", OPEN_WRITE | OPEN_CREATE, 0o600));
    ok(&mut s, 2, Request::Mkdir { path: "/shared/d2".into(), mode: 0o700 });
    for p in ["/.owners", "/shared/../.owners", "/./.owners", "/shared/.owners"] {
        refused(&mut s, 0, open(p, 0, 0), Status::Permission);
        refused(&mut s, 1, Request::Stat { path: p.into() }, Status::Permission);
    }
    refused(&mut s, 0, Request::Rename { from: "/shared/mine".into(), to: "/.owners".into() }, Status::Permission);
    let root = ok(&mut s, 0, Request::Readdir { path: "/".into(), cookie: 0 });
    let names: Vec<_> = wire::decode_entries(&root.payload).into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["shared"]);
    let img = s.into_fs().into_storage().into_inner().crash_image_strict();
    let fs = Fs::mount(PmemStorage::new(SimPmem::from_image(img))).unwrap();
    let mut s = Service::new(fs, Windows::default(), WINDOW_PAGES).unwrap();
    s.client_new(2, 1001);
    refused(&mut s, 2, open("/shared/mine", 0, 0), Status::Permission);
    assert_eq!(ok(&mut s, 2, Request::Stat { path: "/shared/d2".into() }).owner, 1001);
}

#[test]
fn handles_belong_to_the_client_that_opened_them() {
    let mut s = service();
    let a = ok(&mut s, 1, open("/shared/f", OPEN_WRITE | OPEN_CREATE, 0o666));
    let t = refused(&mut s, 2, Request::Close { handle: a.handle }, Status::BadHandle);
    assert!(t.contains(&format!("handle {}", a.handle)), "{t}");
    refused(&mut s, 2, Request::Grow { handle: a.handle, size: 4096 }, Status::BadHandle);
    refused(&mut s, 1, Request::Close { handle: a.handle + 1 }, Status::BadHandle);
    refused(&mut s, 7, Request::Sync, Status::BadHandle);
    ok(&mut s, 1, Request::Close { handle: a.handle });
    refused(&mut s, 1, Request::Close { handle: a.handle }, Status::BadHandle);
}

#[test]
fn a_mapped_file_is_never_freed_or_truncated() {
    let mut s = service();
    let a = ok(&mut s, 1, open("/shared/f", OPEN_WRITE | OPEN_CREATE, 0o666));
    ok(&mut s, 1, Request::Grow { handle: a.handle, size: 8192 });
    ok(&mut s, 2, open("/shared/other", OPEN_WRITE | OPEN_CREATE, 0o666));
    refused(&mut s, 2, Request::Unlink { path: "/shared/f".into() }, Status::Busy);
    refused(&mut s, 2, open("/shared/f", OPEN_WRITE | OPEN_TRUNCATE, 0), Status::Busy);
    refused(&mut s, 2, Request::Rename { from: "/shared/other".into(), to: "/shared/f".into() }, Status::Busy);
    // Renaming the open file itself keeps its inode: allowed.
    ok(&mut s, 2, Request::Rename { from: "/shared/f".into(), to: "/shared/g".into() });
    ok(&mut s, 1, Request::Close { handle: a.handle });
    ok(&mut s, 2, Request::Unlink { path: "/shared/g".into() });
}

#[test]
fn a_gone_client_loses_every_page_and_its_handles() {
    let mut s = service();
    let a = ok(&mut s, 1, open("/shared/f", OPEN_WRITE | OPEN_CREATE, 0o666));
    ok(&mut s, 1, Request::Grow { handle: a.handle, size: 5 * 4096 });
    ok(&mut s, 1, open("/shared/g", OPEN_WRITE | OPEN_CREATE, 0o666));
    ok(&mut s, 2, open("/shared/f", 0, 0));
    assert_eq!(s.mapped_pages(1), 5);
    assert_eq!(s.client_gone(1), 5);
    assert!(mapped(&s, 1).is_empty());
    assert_eq!(s.mapped_pages(2), 5);
    assert_eq!(s.counts.revoked_on_death, 5);
    refused(&mut s, 1, Request::Close { handle: a.handle }, Status::BadHandle);
    // The file is no longer busy on its account.
    refused(&mut s, 0, Request::Unlink { path: "/shared/f".into() }, Status::Busy);
    assert_eq!(s.client_gone(2), 5);
    ok(&mut s, 0, Request::Unlink { path: "/shared/f".into() });
}

#[test]
fn growing_moves_the_file_when_its_room_is_taken_and_maps_only_data_pages() {
    let mut s = service();
    let a = ok(&mut s, 1, open("/shared/a", OPEN_WRITE | OPEN_CREATE, 0o666));
    let b = ok(&mut s, 1, open("/shared/b", OPEN_WRITE | OPEN_CREATE, 0o666));
    assert_ne!(a.window, b.window);
    let before = a.window;
    let a2 = ok(&mut s, 1, Request::Grow { handle: a.handle, size: 40 * 4096 });
    assert_ne!(a2.window, before, "16 reserved pages cannot hold 40");
    assert_eq!(a2.pages, 40);
    assert_eq!(s.mapped_pages(1), 40);
    // Nothing mapped is metadata: every page is in the data area.
    let meta: Vec<(&str, u64, u64)> = s.fs().metadata_ranges();
    for (_, m, _) in mapped(&s, 1) {
        for (what, start, len) in &meta {
            assert!(m + 4096 <= *start || m >= start + len, "page {m:#x} overlaps {what}");
        }
    }
    refused(&mut s, 1, Request::Grow { handle: b.handle, size: WINDOW_PAGES * 4096 + 1 }, Status::WindowFull);
    let r = ok(&mut s, 2, open("/shared/a", 0, 0));
    refused(&mut s, 2, Request::Grow { handle: r.handle, size: 4096 }, Status::Permission);
}

#[test]
fn a_client_scribbling_over_every_page_it_may_write_leaves_metadata_intact() {
    let mut s = service();
    let mut handles = Vec::new();
    for i in 0..6 {
        let r = ok(&mut s, 1, open(&format!("/shared/f{i}"), OPEN_WRITE | OPEN_CREATE, 0o644));
        handles.push(ok(&mut s, 1, Request::Grow { handle: r.handle, size: (i + 1) * 3000 }));
    }
    let pages: Vec<_> = mapped(&s, 1);
    for (page, _, _) in &pages {
        for off in (0..4096).step_by(64) {
            store(&mut s, 1, page * 4096 + off, 0xff).unwrap();
        }
    }
    // Every other page of the window faults.
    assert!(store(&mut s, 1, (WINDOW_PAGES - 1) * 4096, 1).is_err());
    assert!(s.fs().check().is_empty());
    ok(&mut s, 1, Request::Sync);
    let img = s.into_fs().into_storage().into_inner().crash_image_strict();
    let mut fs = Fs::mount(PmemStorage::new(SimPmem::from_image(img))).unwrap();
    assert!(fs.check().is_empty());
    assert_eq!(fs.readdir("/shared").unwrap().len(), 6);
    let h = fs.open("/shared/f5", libfs::OpenMode::READ).unwrap();
    let mut buf = vec![0u8; 18000];
    assert_eq!(fs.pread(&h, 0, &mut buf).unwrap(), 18000);
    assert!(buf.iter().step_by(64).all(|&b| b == 0xff));
}

#[test]
fn a_failed_mapping_undoes_itself() {
    let mut s = service();
    let a = ok(&mut s, 1, open("/shared/f", OPEN_WRITE | OPEN_CREATE, 0o666));
    ok(&mut s, 1, Request::Grow { handle: a.handle, size: 10 * 4096 });
    s.mapper_fail_after(3);
    let t = refused(&mut s, 2, open("/shared/f", 0, 0), Status::MapFailed);
    assert!(t.contains("Occupied"), "{t}");
    assert!(mapped(&s, 2).is_empty());
}

trait FailAfter {
    fn mapper_fail_after(&mut self, n: u64);
}
impl FailAfter for Svc {
    fn mapper_fail_after(&mut self, n: u64) {
        self.mapper_mut().fail_after = Some(n);
    }
}

#[test]
fn directories_list_in_pieces_and_stat_names_kinds() {
    let mut s = service();
    for i in 0..200 {
        ok(&mut s, 1, Request::Mkdir { path: format!("/shared/{i:0>40}"), mode: 0o755 });
    }
    let (mut cookie, mut names, mut calls) = (0, Vec::new(), 0);
    while cookie != u64::MAX {
        let r = ok(&mut s, 2, Request::Readdir { path: "/shared".into(), cookie });
        names.extend(wire::decode_entries(&r.payload).into_iter().map(|e| (e.kind, e.name)));
        cookie = r.cookie;
        calls += 1;
    }
    assert_eq!(names.len(), 200);
    assert!(calls > 1);
    assert!(names.iter().all(|(k, _)| *k == 2));
    let st = ok(&mut s, 2, Request::Stat { path: "/shared".into() });
    assert_eq!((st.kind, st.mode), (2, 0o777));
    refused(&mut s, 2, open("/shared", 0, 0), Status::IsDir);
    refused(&mut s, 2, open("/shared", OPEN_WRITE, 0), Status::IsDir);
    refused(&mut s, 2, Request::Readdir { path: "/nope".into(), cookie: 0 }, Status::NotFound);
}

// ---------------------------------------------------------------------
// Hostile bytes.

fn raw(op: u8, flags: u8, handle: u32, arg: u64, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 0x20];
    v[0] = op;
    v[1] = flags;
    v[4..8].copy_from_slice(&handle.to_le_bytes());
    v[8..16].copy_from_slice(&arg.to_le_bytes());
    v[16..18].copy_from_slice(&(a.len() as u16).to_le_bytes());
    v[18..20].copy_from_slice(&(b.len() as u16).to_le_bytes());
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    v.resize(0x700, 0);
    v
}

#[test]
fn hostile_requests_get_named_errors() {
    let mut s = service();
    let long = vec![b'a'; 300];
    let mut long_path = b"/".to_vec();
    long_path.extend_from_slice(&long);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (raw(0, 0, 0, 0, b"", b""), "unknown operation 0"),
        (raw(99, 0, 0, 0, b"", b""), "unknown operation 99"),
        (raw(1, 0x80, 0, 0, b"/x", b""), "flags 0x80"),
        (raw(1, OPEN_CREATE, 0, 0, b"/x", b""), "inconsistent"),
        (raw(1, 0, 0, 0, b"/x\xff\xfe", b""), "not UTF-8 at byte 2"),
        (raw(1, 0, 0, 0, b"relative", b""), "not absolute"),
        (raw(1, 0, 0, 0, b"/a\0b", b""), "NUL byte at 2"),
        (raw(1, 0, 0, 0, &long_path, b""), "a name of 300 bytes"),
        (raw(1, 0, 0, 0, &[b'/'; 1500], b""), "longer than 1024"),
        (raw(1, 0, 0, 0, b"", b""), "path: missing"),
        (raw(1, 0, 5, 0, b"/x", b""), "takes no handle"),
        (raw(1, 0, 0, 0o644, b"/x", b""), "takes no mode"),
        (raw(1, OPEN_WRITE | OPEN_CREATE, 0, 0o7777, b"/x", b""), "beyond 0o777"),
        (raw(2, 0, 1, 0, b"/x", b""), "takes no path"),
        (raw(4, 0, 0, 0, b"/x", b"/y"), "takes no second path"),
        (raw(9, 0, 0, 0, b"/x", b""), "second path: missing"),
        (raw(10, 0, 0, 7, b"", b""), "takes no arg"),
        (raw(2, 0, 1, 3, b"", b""), "takes no arg"),
    ];
    for (bytes, want) in cases {
        let r = s.handle_raw(1, &bytes);
        assert_eq!(r.status(), Status::BadRequest, "{want}: {}", r.text());
        assert!(r.text().contains(want), "want {want:?}, got {:?}", r.text());
    }
    // Lengths past the request area.
    let mut v = raw(1, 0, 0, 0, b"/x", b"");
    v[16..18].copy_from_slice(&0xffffu16.to_le_bytes());
    assert!(s.handle_raw(1, &v).text().contains("exceed"));
    v[16..18].copy_from_slice(&0x600u16.to_le_bytes());
    v[18..20].copy_from_slice(&0x600u16.to_le_bytes());
    assert!(s.handle_raw(1, &v).text().contains("exceed"));
    assert_eq!(s.handle_raw(1, &[1, 2, 3]).status(), Status::BadRequest);
    assert_eq!(s.counts.opens, 0);
    assert!(mapped(&s, 1).is_empty());
}

#[test]
fn random_bytes_never_panic_the_server() {
    let mut s = service();
    let mut rng = testrng::Rng::new(0xf5d);
    for i in 0..20_000 {
        let mut v = vec![0u8; 0x700];
        if i % 2 == 0 {
            rng.fill(&mut v);
        } else {
            // Mostly well-formed headers with random fields.
            v[0] = rng.below(12) as u8;
            v[1] = rng.below(8) as u8;
            v[4] = rng.below(4) as u8;
            v[8] = rng.below(3) as u8;
            let la = rng.below(40) as u16;
            v[16..18].copy_from_slice(&la.to_le_bytes());
            v[18..20].copy_from_slice(&(rng.below(10) as u16).to_le_bytes());
            v[0x20] = b'/';
            for b in &mut v[0x21..0x20 + la as usize + 12] {
                *b = *rng.pick(b"ab/.\xff\0");
            }
        }
        let slot = rng.below(4) as usize;
        let _ = s.handle_raw(slot, &v);
    }
    assert!(s.fs().check().is_empty());
    assert!(s.counts.refused > 0);
}

// ---------------------------------------------------------------------
// The channel page.

struct Page(RefCell<Vec<u8>>);
impl blockq::SharedRegion for &Page {
    fn len(&self) -> u64 {
        4096
    }
    fn load_acquire(&self, o: u64) -> u32 {
        let b = self.0.borrow();
        u32::from_le_bytes(b[o as usize..o as usize + 4].try_into().unwrap())
    }
    fn store_release(&self, o: u64, v: u32) {
        self.0.borrow_mut()[o as usize..o as usize + 4].copy_from_slice(&v.to_le_bytes())
    }
    fn read(&self, o: u64, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0.borrow()[o as usize..o as usize + buf.len()])
    }
    fn write(&self, o: u64, d: &[u8]) {
        self.0.borrow_mut()[o as usize..o as usize + d.len()].copy_from_slice(d)
    }
}

#[test]
fn a_call_through_the_page_round_trips() {
    let page = Page(RefCell::new(vec![0; 4096]));
    let mut s = service();
    let mut gave_up = 0;
    assert_eq!(
        Client::attach(&page, || {
            gave_up += 1;
            gave_up < 3
        })
        .err(),
        Some(CallError::NotFormatted)
    );
    wire::format(&&page);
    let mut c = Client::attach(&page, || true).unwrap();
    let mut answered = 0u32;
    // The "server" runs inside the client's wait.
    let mut serve = |s: &mut Svc| {
        if let Some(seq) = wire::pending(&&page, answered) {
            let req = wire::read_request(&&page);
            let r = s.handle_raw(1, &req);
            wire::write_reply(&&page, seq, &r);
            answered = seq;
        }
        true
    };
    let r = c.call(&open("/shared/f", OPEN_WRITE | OPEN_CREATE, 0o640), || serve(&mut s)).unwrap();
    assert!(r.writable);
    assert_eq!(r.mode, 0o640);
    let e = c.call(&Request::Close { handle: r.handle + 9 }, || serve(&mut s)).unwrap_err();
    assert!(matches!(e, CallError::Refused(Status::BadHandle, ref t) if t.contains("not open")), "{e:?}");
    c.call(&Request::Close { handle: r.handle }, || serve(&mut s)).unwrap();
    assert_eq!(c.calls, 3);
    let long = format!("/{}", "a/".repeat(600));
    assert_eq!(c.call(&Request::Stat { path: long }, || true).unwrap_err(), CallError::TooLong);
    // A server that never answers.
    let mut n = 0;
    let e = c.call(&Request::Sync, || {
        n += 1;
        n < 5
    });
    assert!(matches!(e, Err(CallError::NoAnswer { polls: 5 })), "{e:?}");
}

#[test]
fn requests_and_replies_round_trip() {
    let reqs = [
        open("/a/b", OPEN_WRITE | OPEN_CREATE | OPEN_TRUNCATE, 0o640),
        open("/a", 0, 0),
        Request::Close { handle: 7 },
        Request::Grow { handle: 3, size: 1 << 40 },
        Request::Stat { path: "/".into() },
        Request::Readdir { path: "/d".into(), cookie: 99 },
        Request::Mkdir { path: "/d/e".into(), mode: 0o700 },
        Request::Unlink { path: "/f".into() },
        Request::Rmdir { path: "/d".into() },
        Request::Rename { from: "/x".into(), to: "/y/z".into() },
        Request::Sync,
    ];
    for r in reqs {
        let mut b = r.encode().unwrap();
        b.resize(0x700, 0xee);
        assert_eq!(Request::decode(&b), Ok(r));
    }
    let rep = Reply {
        status: 8,
        handle: 4,
        window: 0x5000,
        pages: 3,
        size: 9999,
        ino: 42,
        kind: 1,
        writable: true,
        mode: 0o644,
        nlink: 2,
        owner: 1000,
        cookie: u64::MAX,
        payload: b"why".to_vec(),
    };
    assert_eq!(Reply::decode(&rep.encode()), rep);
    // A hostile payload length is clipped to what is there.
    let mut b = rep.encode();
    b[52..54].copy_from_slice(&0xffffu16.to_le_bytes());
    assert_eq!(Reply::decode(&b).payload, b"why");
    assert_eq!(Reply::decode(&[1]).status, 1);
    assert_eq!(Status::from_code(1234), Status::Unknown(1234));
    let long_err = "é".repeat(2000);
    assert!(Reply::error(Status::Invalid, &long_err).text().len() <= wire::REPLY_PAYLOAD);
}

#[test]
fn holes_stay_unmapped_and_the_reply_says_so() {
    let mut s = service();
    let fs = s.fs_mut();
    let h = fs.open("/shared/sparse", libfs::OpenMode::CREATE).unwrap();
    fs.pwrite(&h, 3 * 4096 + 10, b"tail").unwrap();
    fs.sync().unwrap();
    let r = ok(&mut s, 1, open("/shared/sparse", 0, 0));
    assert_eq!((r.size, r.pages), (3 * 4096 + 14, 1));
    assert_eq!(load(&mut s, 1, r.window), Err("not mapped: fault"));
    assert_eq!(load(&mut s, 1, r.window + 3 * 4096 + 10), Ok(b't'));
}
