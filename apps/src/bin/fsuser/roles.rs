//! The roles of `libfs_share` (see `main.rs` and testinit's `fs.rs`).

use alloc::format;
use alloc::string::String;
use exo_abi::PAGE_SIZE;
use exo_rt::blockq::SharedWindow;
use exo_rt::layout::MAILBOX_VA;
use exo_rt::mmio::Window;
use exo_rt::{mem, println, probe, sys, yield_now};
use fsproto::client::{CallError, Client};
use fsproto::wire::{Reply, Request, Status, OPEN_CREATE, OPEN_WRITE};
use initlib::fsd::{CLIENT_CHANNEL_VA, CLIENT_FILES_VA, WINDOW_BYTES};

type Failure = (u32, String);
const CHECK: u32 = 5;
const SERVICE: u32 = 6;

pub const SHARED_FILE: &str = "/shared/f";
pub const PRIVATE_FILE: &str = "/shared/private";
/// The shared file: 4 pages. A stores into the first half of each page,
/// B into the second.
const PAGES: u64 = 4;
const HALF: u64 = PAGE_SIZE / 2;
/// Where the witness finds the window it is shown (read-only, no OWN).
pub const WITNESS_VA: u64 = 0x58_0000_0000;
const MAX_YIELDS: u64 = 1_000_000;

pub fn pattern_a(i: u64) -> u64 {
    0xa5a5_0000_0000_0000 | i
}
pub fn pattern_b(i: u64) -> u64 {
    0xb6b6_0000_0000_0000 | i
}

fn fail(why: String) -> Failure {
    (CHECK, why)
}

struct Conn {
    c: Client<SharedWindow>,
}

fn wait() -> bool {
    yield_now();
    true
}

impl Conn {
    fn attach() -> Result<Conn, Failure> {
        let win = Window::new(CLIENT_CHANNEL_VA, PAGE_SIZE).ok_or((SERVICE, String::from("channel window")))?;
        let mut n = 0;
        let c = Client::attach(SharedWindow(win), || {
            n += 1;
            yield_now();
            n < MAX_YIELDS
        })
        .map_err(|e| (SERVICE, format!("{e}")))?;
        Ok(Conn { c })
    }
    fn call(&mut self, r: Request) -> Result<Reply, CallError> {
        self.c.call(&r, wait)
    }
    fn ok(&mut self, r: Request) -> Result<Reply, Failure> {
        let what = format!("{r:?}");
        self.call(r).map_err(|e| (SERVICE, format!("{what}: {e}")))
    }
    fn refused(&mut self, r: Request, want: Status) -> Result<String, Failure> {
        let what = format!("{r:?}");
        match self.call(r) {
            Err(CallError::Refused(s, text)) if s == want => Ok(text),
            other => Err(fail(format!("{what}: expected {want:?}, got {other:?}"))),
        }
    }
}

fn files(off: u64) -> u64 {
    CLIENT_FILES_VA + off
}

/// Wait for init to ask for step `n`; then do it and say so.
fn step(n: u64, f: impl FnOnce() -> Result<(), Failure>) -> Result<(), Failure> {
    while mem::read(MAILBOX_VA) < n {
        yield_now();
    }
    f()?;
    mem::write(MAILBOX_VA + 8, n);
    Ok(())
}

fn report(i: u64, v: u64) {
    mem::write(MAILBOX_VA + 16 + 8 * i, v);
}

pub fn run(args: &str) -> Result<(), Failure> {
    match args.split_whitespace().next().unwrap_or("") {
        "writer-a" => writer_a(),
        "writer-b" => writer_b(),
        "reader" => reader(),
        "stranger" => stranger(),
        "witness" => witness(),
        "holder" => holder(),
        "scribbler" => scribbler(),
        other => Err((7, format!("unknown role {other:?}"))),
    }
}

fn check_words(base: u64, from: u64, pat: fn(u64) -> u64, who: &str) -> Result<(), Failure> {
    for p in 0..PAGES {
        for w in 0..4 {
            let i = p * 8 + w;
            let at = base + p * PAGE_SIZE + from + w * 8;
            let v = mem::read(at);
            if v != pat(i) {
                return Err(fail(format!("word {i} at {at:#x}: {v:#x}, expected {:#x} ({who}'s store)", pat(i))));
            }
        }
    }
    Ok(())
}

fn store_words(base: u64, from: u64, pat: fn(u64) -> u64) {
    for p in 0..PAGES {
        for w in 0..4 {
            mem::write(base + p * PAGE_SIZE + from + w * 8, pat(p * 8 + w));
        }
    }
}

/// Write the file's lines back to the NVDIMM (`clwb` + `sfence`): the
/// whole of "fsync" for data stored through a mapping.
fn persist(base: u64) {
    if let Some(w) = Window::new(base, PAGES * PAGE_SIZE) {
        w.persist(0, PAGES * PAGE_SIZE);
    }
    pmem::cpu::sfence();
}

fn writer_a() -> Result<(), Failure> {
    let mut c = Conn::attach()?;
    let mut f = Reply::default();
    step(1, || {
        let calls = sys::calls();
        let r = c.ok(Request::Open { path: SHARED_FILE.into(), flags: OPEN_WRITE | OPEN_CREATE, mode: 0o666 })?;
        let open_calls = sys::calls() - calls;
        f = c.ok(Request::Grow { handle: r.handle, size: PAGES * PAGE_SIZE })?;
        let p = c.ok(Request::Open { path: PRIVATE_FILE.into(), flags: OPEN_WRITE | OPEN_CREATE, mode: 0o600 })?;
        c.ok(Request::Close { handle: p.handle })?;
        let before = sys::calls();
        store_words(files(f.window), 0, pattern_a);
        persist(files(f.window));
        let data_calls = sys::calls() - before;
        println!(
            "fsuser A: opened {SHARED_FILE} read-write ({} pages at {:#x}, writable {}); stored its pattern and wrote it back (clwb + sfence) with {data_calls} system calls; the open took {open_calls} (all yields while fsd worked)",
            f.pages,
            files(f.window),
            f.writable
        );
        report(0, f.window);
        report(1, f.handle as u64);
        Ok(())
    })?;
    step(2, || {
        let before = sys::calls();
        check_words(files(f.window), HALF, pattern_b, "B")?;
        println!("fsuser A: sees B's stores in the same pages ({} system calls)", sys::calls() - before);
        Ok(())
    })?;
    step(3, || {
        let before = sys::calls();
        c.ok(Request::Close { handle: f.handle })?;
        let close_calls = sys::calls() - before;
        match probe::read(files(f.window)) {
            Err(code) => println!(
                "fsuser A: closed {SHARED_FILE} ({close_calls} system calls); reading its old address faults (error {code:#x}): revoked"
            ),
            Ok(v) => return Err(fail(format!("read {v:#x} at the closed file's address"))),
        }
        Ok(())
    })
}

fn writer_b() -> Result<(), Failure> {
    let mut c = Conn::attach()?;
    step(1, || {
        let f = c.ok(Request::Open { path: SHARED_FILE.into(), flags: OPEN_WRITE, mode: 0 })?;
        check_words(files(f.window), 0, pattern_a, "A")?;
        store_words(files(f.window), HALF, pattern_b);
        persist(files(f.window));
        println!(
            "fsuser B: opened {SHARED_FILE} read-write at {:#x}: sees A's stores; stored its own",
            files(f.window)
        );
        report(0, f.window);
        Ok(())
    })?;
    step(2, || {
        println!("fsuser B: dying on a stray store (no fault handler)");
        mem::hostile_touch(CLIENT_FILES_VA + WINDOW_BYTES - PAGE_SIZE, true);
        Err(fail("the stray store did not fault".into()))
    })
}

/// Opens the shared file read-write and holds it until init kills it.
fn holder() -> Result<(), Failure> {
    let mut c = Conn::attach()?;
    step(1, || {
        let f = c.ok(Request::Open { path: SHARED_FILE.into(), flags: OPEN_WRITE, mode: 0 })?;
        check_words(files(f.window), 0, pattern_a, "A")?;
        println!("fsuser holder: holds {SHARED_FILE} read-write at {:#x}; waiting to be killed", files(f.window));
        report(0, f.window);
        Ok(())
    })?;
    step(2, || Err(fail("the holder was not killed".into())))
}

fn reader() -> Result<(), Failure> {
    let mut c = Conn::attach()?;
    let f = c.ok(Request::Open { path: SHARED_FILE.into(), flags: 0, mode: 0 })?;
    if f.writable {
        return Err(fail("a read-only open came back writable".into()));
    }
    check_words(files(f.window), 0, pattern_a, "A")?;
    check_words(files(f.window), HALF, pattern_b, "B")?;
    let faults = (0..f.pages).filter(|p| probe::write(files(f.window) + p * PAGE_SIZE).is_err()).count() as u64;
    if faults != f.pages {
        return Err(fail(format!("only {faults} of {} read-only pages refused a write", f.pages)));
    }
    let t = c.refused(Request::Grow { handle: f.handle, size: 8 * PAGE_SIZE }, Status::Permission)?;
    println!(
        "fsuser C: opened {SHARED_FILE} read-only: reads A's and B's stores; a write faults on all {faults} pages; growing it: Permission ({t})"
    );
    Ok(())
}

fn stranger() -> Result<(), Failure> {
    let mut c = Conn::attach()?;
    let a_window = exo_rt::args_word(3);
    let t = c.refused(Request::Open { path: PRIVATE_FILE.into(), flags: 0, mode: 0 }, Status::Permission)?;
    println!("fsuser D: open of {PRIVATE_FILE}: Permission ({t})");
    match probe::read(files(a_window)) {
        Err(code) => println!(
            "fsuser D: reading {:#x}, where A has {SHARED_FILE}, faults (error {code:#x}): nothing mapped here",
            files(a_window)
        ),
        Ok(v) => return Err(fail(format!("read {v:#x} where A has the file"))),
    }
    let t = c.refused(Request::Close { handle: exo_rt::args_word(4) as u32 }, Status::BadHandle)?;
    println!("fsuser D: closing A's handle: BadHandle ({t})");
    Ok(())
}

fn witness() -> Result<(), Failure> {
    let (off, expect) = (exo_rt::args_word(3), exo_rt::args_word(4));
    let at = WITNESS_VA + off;
    match (probe::read(at), expect) {
        (Ok(v), 0) => Err(fail(format!("read {v:#x} at {at:#x} in the dead client's window"))),
        (Ok(v), e) if v != e => Err(fail(format!("read {v:#x} at {at:#x}, expected {e:#x}"))),
        (Ok(v), _) => {
            println!("fsuser witness: the client's window holds the file at {at:#x} (first word {v:#x})");
            Ok(())
        }
        (Err(code), 0) => {
            println!("fsuser witness: the dead client's window is empty at {at:#x} (fault {code:#x}): revoked");
            Ok(())
        }
        (Err(code), _) => Err(fail(format!("fault {code:#x} at {at:#x}, expected a mapped page"))),
    }
}

fn scribbler() -> Result<(), Failure> {
    let mut c = Conn::attach()?;
    let mut pages = 0u64;
    let mut extents = alloc::vec::Vec::new();
    for (i, n) in [1u64, 5, 20].iter().enumerate() {
        let r =
            c.ok(Request::Open { path: format!("/shared/scribble{i}"), flags: OPEN_WRITE | OPEN_CREATE, mode: 0o644 })?;
        let r = c.ok(Request::Grow { handle: r.handle, size: n * PAGE_SIZE })?;
        extents.push((r.window, r.pages));
    }
    let before = sys::calls();
    for &(w, n) in &extents {
        for p in 0..n {
            for off in (0..PAGE_SIZE).step_by(8) {
                mem::write(files(w) + p * PAGE_SIZE + off, u64::MAX);
            }
            pages += 1;
        }
    }
    let data_calls = sys::calls() - before;
    // Everything else in the window refuses a store.
    let mut refused = 0;
    for &(w, n) in &extents {
        for at in [files(w) + n * PAGE_SIZE, files(w) + 64 * PAGE_SIZE * 16] {
            if probe::write(at).is_ok() {
                return Err(fail(format!("a store at {at:#x} outside every file was allowed")));
            }
            refused += 1;
        }
    }
    for at in [CLIENT_FILES_VA + WINDOW_BYTES - PAGE_SIZE, CLIENT_FILES_VA + (WINDOW_BYTES >> 1)] {
        if probe::write(at).is_ok() {
            return Err(fail(format!("a store at {at:#x} outside every file was allowed")));
        }
        refused += 1;
    }
    // Hostile requests: each named, none served.
    let mut bad = |raw: &[u8], want: &str| -> Result<(), Failure> {
        let r = c.c.call_raw(raw, wait).map_err(|e| (SERVICE, format!("{e}")))?;
        if r.status() != Status::BadRequest || !r.text().contains(want) {
            return Err(fail(format!(
                "hostile request: {:?} {:?}, expected BadRequest {want:?}",
                r.status(),
                r.text()
            )));
        }
        println!("fsuser scribbler: hostile request refused: {}", r.text());
        Ok(())
    };
    bad(&[99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0], "unknown operation 99")?;
    let mut v = alloc::vec![0u8; 0x40];
    v[0] = 1;
    v[16] = 0xff;
    v[17] = 0x7f;
    bad(&v, "exceed")?;
    let mut v = alloc::vec![0u8; 0x24];
    v[0] = 4;
    v[16] = 4;
    v[0x20..0x24].copy_from_slice(b"/\xff\xfe\xfd");
    bad(&v, "not UTF-8")?;
    c.refused(Request::Close { handle: 999 }, Status::BadHandle)?;
    println!(
        "fsuser scribbler: stored over every byte of the {pages} pages it may write ({data_calls} system calls); {refused} stores elsewhere in its window faulted"
    );
    Ok(())
}
