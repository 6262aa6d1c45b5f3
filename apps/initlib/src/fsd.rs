//! The file service: init starts `fsd` on its part of the NVDIMM and
//! connects clients to it. Per connection `k` init owns two things and
//! links them into both parties:
//!
//! * a **channel page** (RAM, `fsproto::wire`), shared writable into fsd at
//!   [`FSD_CHANNELS_VA`]` + k * 4096` and into the client at
//!   [`CLIENT_CHANNEL_VA`];
//! * a **window**: a level-2 page table (1 GiB) linked into fsd at
//!   [`FSD_WINDOWS_VA`]` + k GiB` **with OWN** (fsd fills it: it creates
//!   the level-1 tables from its spare frames and shares file pages into
//!   them) and into the client at [`CLIENT_FILES_VA`] **without OWN** (the
//!   client reads and writes through the entries' own rights and can change
//!   nothing in the table). Init keeps its own owning link to each window.
//!
//! The client's uid is written by init into fsd's mailbox with the
//! connection, never taken from the client. When a client exits or dies,
//! init clears the connection ([`disconnect`], [`reap`]): fsd revokes every
//! page it mapped there and acknowledges; then init removes the links.

use crate::sched::{self, RUNNABLE, STOPPED};
use crate::spawn::{self, Child, Options};
use crate::{frames, pmem};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{Error, Rights, CHILD_PMEM_VA, PAGE_SIZE};
use exo_rt::{mem, sys};

/// Connections fsd serves at once.
pub const MAX_CONNS: usize = 16;
/// A window spans one level-2 table.
pub const WINDOW_BYTES: u64 = 1 << 30;
/// fsd's part of the NVDIMM (offsets into init's span; see `pmem.rs`).
pub const PMEM_OFFSET: u64 = 32 << 20;
pub const PMEM_BYTES: u64 = 32 << 20;
/// In fsd: the channel pages, one per connection.
pub const FSD_CHANNELS_VA: u64 = 0x10_0000_0000;
/// In fsd: the windows, 1 GiB apart (level-2 aligned).
pub const FSD_WINDOWS_VA: u64 = 0x40_0000_0000;
/// In a client: its channel page and its window.
pub const CLIENT_CHANNEL_VA: u64 = 0x38_0000_0000;
pub const CLIENT_FILES_VA: u64 = 0x48_0000_0000;
/// Spare frames fsd turns into level-1 tables of windows (one per 2 MiB
/// of a window in use).
pub const FSD_TABLE_FRAMES: u64 = 96;
const FSD_HEAP_PAGES: u64 = 2048;

/// fsd's mailbox words (init ↔ fsd).
pub mod mbox {
    /// init → fsd: nonzero = sync, check, and exit.
    pub const STOP: u64 = 0;
    /// fsd → init: 1 once the file system is mounted and it serves.
    pub const READY: u64 = 1;
    /// init → fsd: connection `k` at word `CONN + k`: 0 = none, else
    /// `1 << 63 | generation << 32 | uid`.
    pub const CONN: u64 = 8;
    /// fsd → init: the `CONN` value fsd has applied (revocations done).
    pub const ACK: u64 = 32;
    /// fsd → init: pages mapped into each connection's window.
    pub const MAPPED: u64 = 64;
    /// fsd → init: counts (`fsproto::Counts` in field order), then the
    /// level-1 tables fsd created.
    pub const COUNTS: u64 = 96;
}

/// Init's own links: window `k` at `INIT_WINDOWS + k GiB` (owned), and
/// its own view as a client at `INIT_FILES`.
const INIT_WINDOWS: u64 = 42 << 39;
const INIT_FILES: u64 = 43 << 39;

#[derive(Clone, Copy)]
enum Peer {
    Free,
    Child { slot: usize, window: u64 },
    Init,
}

struct Conn {
    peer: Peer,
    channel: u64,
    gen: u64,
}

struct Service {
    fsd: Child,
    mailbox: u64,
    conns: Vec<Conn>,
}

static SERVICE: spin::Mutex<Option<Service>> = spin::Mutex::new(None);

fn ensure_level3(va: u64) -> Result<(), String> {
    let f = frames::alloc().ok_or("out of memory")?;
    match sys::create(va & !((1 << 39) - 1), 3, f) {
        Ok(()) => Ok(()),
        Err(Error::Occupied) => {
            frames::give_back(f);
            Ok(())
        }
        Err(e) => Err(format!("level-3 table at {va:#x}: {}", e.name())),
    }
}

/// Start fsd on its NVDIMM part: `fresh` makes a new file system there
/// (with the service's initial tree), else it mounts what is there.
/// Returns once fsd serves.
pub fn start(fresh: bool) -> Result<(), String> {
    let mut svc = SERVICE.lock();
    if svc.is_some() {
        return Err("fsd is already running".into());
    }
    let words = [PMEM_BYTES, fresh as u64];
    let fsd = spawn::spawn_named(
        "fsd",
        &Options {
            args: if fresh { "mkfs" } else { "mount" },
            words: &words,
            heap_pages: FSD_HEAP_PAGES,
            spare_pages: FSD_TABLE_FRAMES,
            paused: true,
        },
    )?;
    pmem::grant(&fsd, CHILD_PMEM_VA, PMEM_OFFSET, PMEM_BYTES)?;
    ensure_level3(INIT_WINDOWS)?;
    let mut conns = Vec::new();
    for k in 0..MAX_CONNS as u64 {
        let window = INIT_WINDOWS + k * WINDOW_BYTES;
        let f = frames::alloc().ok_or("out of memory")?;
        // A window of an earlier fsd of this boot is reused as it is (that
        // fsd revoked everything before it exited).
        match sys::create(window, 2, f) {
            Ok(()) => {}
            Err(Error::Occupied) => frames::give_back(f),
            Err(e) => return Err(format!("window {k}: {}", e.name())),
        }
        sys::map(window, 2, 0, fsd.at(FSD_WINDOWS_VA + k * WINDOW_BYTES), Rights::OWN | Rights::WRITE | Rights::GRANT)
            .map_err(|e| format!("linking window {k} into fsd: {}", e.name()))?;
        let channel = frames::alloc().ok_or("out of memory")?;
        let at = fsd.at(FSD_CHANNELS_VA + k * PAGE_SIZE);
        spawn::ensure_tables(at).map_err(|e| format!("{e}"))?;
        sys::map(channel, 0, 0, at, Rights::WRITE).map_err(|e| format!("sharing channel {k}: {}", e.name()))?;
        conns.push(Conn { peer: Peer::Free, channel, gen: 0 });
    }
    let mailbox = spawn::mailbox(&fsd);
    sched::start(fsd.slot);
    while mem::read(mailbox + 8 * mbox::READY) == 0 {
        if sched::slot(fsd.slot).state.load(SeqCst) != RUNNABLE {
            let code = spawn::finish(&fsd, "fsd");
            let _ = pmem::reclaim(&fsd, CHILD_PMEM_VA, PMEM_OFFSET, PMEM_BYTES);
            return Err(format!("fsd ended before it served: {code:?}"));
        }
        sched::sched_yield();
    }
    *svc = Some(Service { fsd, mailbox, conns });
    Ok(())
}

/// Is fsd running?
pub fn running() -> bool {
    SERVICE.lock().is_some()
}

/// A word of fsd's mailbox (its counts, `mbox::COUNTS + i`).
pub fn word(i: u64) -> u64 {
    SERVICE.lock().as_ref().map_or(0, |s| mem::read(s.mailbox + 8 * i))
}

/// Pages fsd has mapped into connection `k`'s window.
pub fn mapped(k: usize) -> u64 {
    word(mbox::MAPPED + k as u64)
}

/// Write connection `k`'s word and wait until fsd acknowledges it.
fn tell(s: &Service, k: usize, value: u64) -> Result<(), String> {
    mem::write(s.mailbox + 8 * (mbox::CONN + k as u64), value);
    while mem::read(s.mailbox + 8 * (mbox::ACK + k as u64)) != value {
        if sched::slot(s.fsd.slot).state.load(SeqCst) != RUNNABLE {
            return Err("fsd is not running".into());
        }
        sched::sched_yield();
    }
    Ok(())
}

fn register(s: &mut Service, peer: Peer, uid: u32) -> Result<usize, String> {
    let k = s.conns.iter().position(|c| matches!(c.peer, Peer::Free)).ok_or("every fsd connection is in use")?;
    s.conns[k].gen = (s.conns[k].gen + 1) & 0x7fff_ffff;
    s.conns[k].peer = peer;
    let value = 1 << 63 | s.conns[k].gen << 32 | uid as u64;
    tell(s, k, value)?;
    Ok(k)
}

/// Connect `child` (paused, not yet running) to fsd as `uid`: its channel
/// at [`CLIENT_CHANNEL_VA`], its window at [`CLIENT_FILES_VA`]. Returns
/// the connection number.
pub fn connect(child: &Child, uid: u32) -> Result<usize, String> {
    let mut guard = SERVICE.lock();
    let s = guard.as_mut().ok_or("fsd is not running")?;
    let k = s.conns.iter().position(|c| matches!(c.peer, Peer::Free)).ok_or("every fsd connection is in use")?;
    let at = child.at(CLIENT_CHANNEL_VA);
    spawn::ensure_tables(at).map_err(|e| format!("{e}"))?;
    sys::map(s.conns[k].channel, 0, 0, at, Rights::WRITE).map_err(|e| format!("sharing the channel: {}", e.name()))?;
    sys::map(INIT_WINDOWS + k as u64 * WINDOW_BYTES, 2, 0, child.at(CLIENT_FILES_VA), Rights::WRITE)
        .map_err(|e| format!("linking the window: {}", e.name()))?;
    register(s, Peer::Child { slot: child.slot, window: child.window }, uid)
}

/// Connect init itself (its shell) as `uid`; returns the connection, and
/// init's addresses of its channel page and its window.
pub fn connect_init(uid: u32) -> Result<(usize, u64, u64), String> {
    let mut guard = SERVICE.lock();
    let s = guard.as_mut().ok_or("fsd is not running")?;
    let k = s.conns.iter().position(|c| matches!(c.peer, Peer::Free)).ok_or("every fsd connection is in use")?;
    ensure_level3(INIT_FILES)?;
    sys::map(INIT_WINDOWS + k as u64 * WINDOW_BYTES, 2, 0, INIT_FILES, Rights::WRITE)
        .map_err(|e| format!("linking the window into init: {}", e.name()))?;
    let channel = s.conns[k].channel;
    register(s, Peer::Init, uid)?;
    Ok((k, channel, INIT_FILES))
}

/// Link connection `k`'s window into `child` at `va`, read-only and
/// without OWN (a witness that looks at what the client has).
pub fn link_window_read_only(k: usize, child: &Child, va: u64) -> Result<(), String> {
    sys::map(INIT_WINDOWS + k as u64 * WINDOW_BYTES, 2, 0, child.at(va), Rights::NONE)
        .map_err(|e| format!("linking window {k} read-only: {}", e.name()))
}

/// End connection `k`: fsd revokes every page mapped there (and forgets
/// the client's handles) before this returns; then init removes its links
/// from the client.
pub fn disconnect(k: usize) -> Result<(), String> {
    let mut guard = SERVICE.lock();
    let s = guard.as_mut().ok_or("fsd is not running")?;
    let peer = s.conns.get(k).ok_or("no such connection")?.peer;
    if matches!(peer, Peer::Free) {
        return Err(format!("connection {k} is not in use"));
    }
    tell(s, k, 0)?;
    match peer {
        Peer::Child { window, .. } => {
            let _ = sys::unmap(0, window + CLIENT_FILES_VA, 2);
            let _ = sys::unmap(0, window + CLIENT_CHANNEL_VA, 0);
        }
        Peer::Init => {
            let _ = sys::unmap(0, INIT_FILES, 2);
        }
        Peer::Free => {}
    }
    s.conns[k].peer = Peer::Free;
    Ok(())
}

/// Disconnect every client that is no longer running (exited, panicked,
/// killed); returns the connections ended.
pub fn reap() -> Result<Vec<usize>, String> {
    let gone: Vec<usize> = {
        let guard = SERVICE.lock();
        let Some(s) = guard.as_ref() else { return Ok(Vec::new()) };
        s.conns
            .iter()
            .enumerate()
            .filter_map(|(k, c)| match c.peer {
                Peer::Child { slot, .. } => {
                    let st = sched::slot(slot).state.load(SeqCst);
                    (st != RUNNABLE && st != STOPPED).then_some(k)
                }
                _ => None,
            })
            .collect()
    };
    for &k in &gone {
        disconnect(k)?;
    }
    Ok(gone)
}

/// Stop fsd: it commits, checks the file system (and remounts it), and
/// exits; its NVDIMM pages come back to init. Returns its exit code.
pub fn stop() -> Result<u64, String> {
    let open: Vec<usize> = SERVICE
        .lock()
        .as_ref()
        .ok_or("fsd is not running")?
        .conns
        .iter()
        .enumerate()
        .filter(|(_, c)| !matches!(c.peer, Peer::Free))
        .map(|(k, _)| k)
        .collect();
    for k in open {
        disconnect(k)?;
    }
    let s = SERVICE.lock().take().ok_or("fsd is not running")?;
    mem::write(s.mailbox + 8 * mbox::STOP, 1);
    let code = spawn::finish(&s.fsd, "fsd");
    let back = pmem::reclaim(&s.fsd, CHILD_PMEM_VA, PMEM_OFFSET, PMEM_BYTES);
    let code = code?;
    back?;
    Ok(code)
}
