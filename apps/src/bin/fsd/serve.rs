//! fsd's loop: mount, then serve the channels init connected, apply
//! connection changes init writes into the mailbox (a new client's uid; a
//! client gone: revoke its window), and stop when told.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use exo_abi::{Error as SysError, Rights, CHILD_PMEM_VA, PAGE_SIZE};
use exo_rt::blockq::SharedWindow;
use exo_rt::layout::{MAILBOX_VA, SPARE_VA};
use exo_rt::mmio::Window;
use exo_rt::region::Region;
use exo_rt::{mem, println, sys, yield_now};
use fsproto::{wire, MapError, Mapper, Service};
use initlib::fsd::{mbox, FSD_CHANNELS_VA, FSD_WINDOWS_VA, MAX_CONNS, WINDOW_BYTES};
use libdb::{IoError, PmemRegion, PmemStorage};
use libfs::{Fs, Geometry};

type Failure = (u32, String);
const FS_ERROR: u32 = 1;
const MISSING_REGION: u32 = 2;
const CHECK_FAILED: u32 = 5;

/// The NVDIMM region as libfs's medium: stores, `clwb`, `sfence`. The
/// file data pages in it are also shared with clients, who store into
/// them at any time; fsd itself never reads or writes a page it has
/// handed out (it hands out only data pages, and serves no read/write
/// requests), so libfs's slices never meet a client's stores.
struct Mapped(Region);

impl PmemRegion for Mapped {
    fn as_slice(&self) -> &[u8] {
        self.0.as_slice()
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        self.0.as_mut_slice()[offset..offset + data.len()].copy_from_slice(data);
    }
    fn persist(&mut self, offset: usize, len: usize) {
        self.0.persist(offset, len)
    }
    fn fence(&mut self) -> Result<(), IoError> {
        self.0.fence();
        Ok(())
    }
}

/// The page-table side: windows at `FSD_WINDOWS_VA + k GiB`, level-1
/// tables made on first use from the spare frames init gave.
struct Tables {
    spare: Vec<u64>,
    made: BTreeSet<u64>,
    created: u64,
}

impl Tables {
    fn va(client: usize, page: u64) -> Result<u64, MapError> {
        if client >= MAX_CONNS || page >= WINDOW_BYTES / PAGE_SIZE {
            return Err(MapError(format!("window page {page} of connection {client} does not exist")));
        }
        Ok(FSD_WINDOWS_VA + client as u64 * WINDOW_BYTES + page * PAGE_SIZE)
    }
}

fn sys_err(what: &str, e: SysError) -> MapError {
    MapError(format!("{what}: {}", e.name()))
}

impl Mapper for Tables {
    fn share(&mut self, client: usize, page: u64, medium: u64, writable: bool) -> Result<(), MapError> {
        let va = Tables::va(client, page)?;
        let span = va & !((1 << 21) - 1);
        if !self.made.contains(&span) {
            let f = self.spare.pop().ok_or_else(|| MapError("no spare frame left for a window table".into()))?;
            match sys::create(span, 1, f) {
                Ok(()) => self.created += 1,
                // Made by an earlier fsd of this boot: use it.
                Err(SysError::Occupied) => self.spare.push(f),
                Err(e) => {
                    self.spare.push(f);
                    return Err(sys_err("create window table", e));
                }
            }
            self.made.insert(span);
        }
        let rights = if writable { Rights::WRITE } else { Rights::NONE };
        sys::map(CHILD_PMEM_VA + medium, 0, 0, va, rights).map_err(|e| sys_err("map", e))
    }

    fn revoke(&mut self, client: usize, page: u64) -> Result<(), MapError> {
        sys::unmap(0, Tables::va(client, page)?, 0).map_err(|e| sys_err("unmap", e))
    }
}

fn mailbox(word: u64) -> u64 {
    mem::read(MAILBOX_VA + 8 * word)
}
fn set_mailbox(word: u64, v: u64) {
    mem::write(MAILBOX_VA + 8 * word, v)
}

/// Kernel crossings spent in each kind of request (for the report).
#[derive(Default)]
struct Cost {
    n: u64,
    syscalls: u64,
    /// Pages shared (`map` calls) and revoked (`unmap` calls) by them.
    pages: u64,
}

pub fn run() -> Result<(), Failure> {
    let bytes = exo_rt::args_word(3);
    let fresh = exo_rt::args_word(4) != 0;
    if bytes == 0 {
        return Err((MISSING_REGION, "no region (args word 3)".into()));
    }
    let region = Region::claim(CHILD_PMEM_VA, bytes).map_err(|e| (MISSING_REGION, format!("{e}")))?;
    let storage = PmemStorage::new(Mapped(region));
    let fs_err = |what: &'static str| move |e: libfs::Error| (FS_ERROR, format!("{what}: {e}"));
    let fs = if fresh {
        mkfs(storage)?
    } else {
        match Fs::mount(storage) {
            Ok(fs) => {
                println!("fsd: mounted the file system on {} MiB of NVDIMM", bytes >> 20);
                fs
            }
            Err(e) => {
                println!("fsd: no file system to mount ({e}); making one");
                let storage = PmemStorage::new(Mapped(
                    Region::claim(CHILD_PMEM_VA, bytes).map_err(|e| (MISSING_REGION, format!("{e}")))?,
                ));
                mkfs(storage)?
            }
        }
    };
    let spare_n = exo_rt::args_word(1);
    let spare = (0..spare_n).map(|i| SPARE_VA + i * PAGE_SIZE).collect();
    let tables = Tables { spare, made: BTreeSet::new(), created: 0 };
    let pages = WINDOW_BYTES / PAGE_SIZE;
    let mut svc = Service::new(fs, tables, pages).map_err(fs_err("reading the owner table"))?;
    let channels: Vec<SharedWindow> = (0..MAX_CONNS as u64)
        .map(|k| SharedWindow(Window::new(FSD_CHANNELS_VA + k * PAGE_SIZE, PAGE_SIZE).expect("channel window")))
        .collect();
    let mut seen = [0u64; MAX_CONNS];
    let mut answered = [0u32; MAX_CONNS];
    let (mut open_cost, mut close_cost, mut other_cost) = (Cost::default(), Cost::default(), Cost::default());
    let mut refused_cost = Cost::default();
    set_mailbox(mbox::READY, 1);
    println!("fsd: serving {MAX_CONNS} connections, windows of {} MiB", WINDOW_BYTES >> 20);
    while mailbox(mbox::STOP) == 0 {
        let mut worked = false;
        for k in 0..MAX_CONNS {
            let v = mailbox(mbox::CONN + k as u64);
            if v != seen[k] {
                if seen[k] != 0 {
                    let before = sys::calls();
                    let n = svc.client_gone(k);
                    println!(
                        "fsd: connection {k} (uid {}) ended: revoked {n} mapped pages with {} unmap calls",
                        seen[k] as u32,
                        sys::calls() - before
                    );
                }
                if v != 0 {
                    wire::format(&channels[k]);
                    answered[k] = 0;
                    svc.client_new(k, v as u32);
                    println!("fsd: connection {k}: a client with uid {} (told by init)", v as u32);
                }
                seen[k] = v;
                set_mailbox(mbox::MAPPED + k as u64, svc.mapped_pages(k));
                set_mailbox(mbox::ACK + k as u64, v);
                worked = true;
            }
            if seen[k] == 0 {
                continue;
            }
            let Some(seq) = wire::pending(&channels[k], answered[k]) else { continue };
            let raw = wire::read_request(&channels[k]);
            let (before, moved) = (sys::calls(), svc.counts.shares + svc.counts.revokes);
            let reply = svc.handle_raw(k, &raw);
            // Only requests that succeeded count: a refusal costs nothing.
            let cost = match raw[0] {
                _ if reply.status != 0 => &mut refused_cost,
                1 => &mut open_cost,
                2 => &mut close_cost,
                _ => &mut other_cost,
            };
            cost.n += 1;
            cost.syscalls += sys::calls() - before;
            cost.pages += svc.counts.shares + svc.counts.revokes - moved;
            wire::write_reply(&channels[k], seq, &reply);
            answered[k] = seq;
            set_mailbox(mbox::MAPPED + k as u64, svc.mapped_pages(k));
            worked = true;
        }
        publish(&svc);
        if !worked {
            yield_now();
        }
    }
    let c = svc.counts;
    println!(
        "fsd: served {} requests ({} refused): {} opens, {} closes, {} pages shared, {} revoked ({} when their client exited or died), {} commits, {} window tables made",
        c.requests, c.refused, c.opens, c.closes, c.shares, c.revokes, c.revoked_on_death, c.commits, svc.mapper().created
    );
    let per = |c: &Cost| if c.n == 0 { 0.0 } else { c.syscalls as f64 / c.n as f64 };
    let pages = |c: &Cost| if c.n == 0 { 0.0 } else { c.pages as f64 / c.n as f64 };
    println!(
        "fsd: system calls by fsd: {:.2} per open ({} opens, {:.2} pages mapped each), {:.2} per close ({} closes, {:.2} pages unmapped each), {:.2} per other request ({}, {:.2} pages each), {:.2} per refused request ({})",
        per(&open_cost),
        open_cost.n,
        pages(&open_cost),
        per(&close_cost),
        close_cost.n,
        pages(&close_cost),
        per(&other_cost),
        other_cost.n,
        pages(&other_cost),
        per(&refused_cost),
        refused_cost.n
    );
    stop(svc)
}

fn mkfs(storage: PmemStorage<Mapped>) -> Result<Fs<PmemStorage<Mapped>>, Failure> {
    let err = |e: libfs::Error| (FS_ERROR, format!("mkfs: {e}"));
    let mut fs = Fs::mkfs(storage, Geometry::default()).map_err(err)?;
    // The service's initial tree: /shared, writable by everyone (as /tmp).
    fs.mkdir("/shared", 0o777).map_err(err)?;
    fs.sync().map_err(err)?;
    println!("fsd: made a file system ({} data pages free) with /shared (mode 0777)", fs.free_pages());
    Ok(fs)
}

fn publish(svc: &Service<PmemStorage<Mapped>, Tables>) {
    let c = svc.counts;
    let words = [c.requests, c.refused, c.opens, c.closes, c.shares, c.revokes, c.revoked_on_death, c.commits];
    for (i, w) in words.iter().enumerate() {
        set_mailbox(mbox::COUNTS + i as u64, *w);
    }
    set_mailbox(mbox::COUNTS + words.len() as u64, svc.mapper().created);
}

/// Commit, check, remount and check again: what init's stop waits for.
fn stop(mut svc: Service<PmemStorage<Mapped>, Tables>) -> Result<(), Failure> {
    for k in 0..MAX_CONNS {
        svc.client_gone(k);
    }
    svc.fs_mut().sync().map_err(|e| (FS_ERROR, format!("sync: {e}")))?;
    let issues = svc.fs().check();
    if let Some(i) = issues.first() {
        return Err((CHECK_FAILED, format!("{} issue(s) before remount, first: {}", issues.len(), i.what)));
    }
    let storage = svc.into_fs().into_storage();
    let (report, storage) = libfs::fsck::fsck(storage, false);
    let report = report.map_err(|e| (CHECK_FAILED, format!("fsck: {e}")))?;
    if !report.is_clean() {
        return Err((CHECK_FAILED, format!("fsck: {} issue(s): {:?}", report.issues.len(), report.issues)));
    }
    let storage = storage.ok_or((CHECK_FAILED, String::from("fsck kept the medium")))?;
    let fs = Fs::mount(storage).map_err(|e| (CHECK_FAILED, format!("remount: {e}")))?;
    let shared = fs.readdir("/shared").map(|d| d.len()).unwrap_or(0);
    println!("fsd: stopped: synced; fsck clean (0 issues), remounted clean ({shared} entries in /shared)");
    Ok(())
}
