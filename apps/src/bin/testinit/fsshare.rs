//! `libfs_share`: files shared through the page tables. init starts the
//! file service `fsd` on its part of the NVDIMM and connects test clients
//! (`fsuser` roles) with uids it chooses:
//! * A (uid 1000) creates `/shared/f` (0666) read-write, grows it to 4
//!   pages and stores a pattern; it also creates `/shared/private` (0600);
//! * B (uid 1001) opens the same file read-write and sees A's stores,
//!   stores its own, and A sees them: the same NVDIMM frames;
//! * C (uid 1002) opens it read-only: reads both patterns; a write test
//!   faults on every page; growing it is refused;
//! * D (uid 1003): opening the 0600 file is refused (Permission); at the
//!   address where A has the file it reaches nothing; A's handle is not
//!   its own (BadHandle);
//! * A closes: reading the old address faults;
//! * B dies (a stray store, no handler); init reaps it and fsd revokes its
//!   window: a witness shown B's window read-only reads the file before
//!   and faults after, and fsd's counts name the pages; a holder that
//!   init kills (`sched::kill`) loses its window the same way;
//! * a scribbler overwrites every page it may write and sends hostile
//!   requests; then fsd stops: it syncs, fsck is clean, it remounts.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_rt::{mem, println};
use initlib::fsd::{self, mbox};
use initlib::sched;
use initlib::spawn::{self, Child, Options};

type Outcome = Result<(), String>;

const WITNESS_VA: u64 = 0x58_0000_0000;
const PATTERN_A0: u64 = 0xa5a5_0000_0000_0000;

fn client(role: &str, uid: u32, words: &[u64]) -> Result<(Child, usize), String> {
    let c = spawn::spawn_named("fsuser", &Options { args: role, words, heap_pages: 64, spare_pages: 0, paused: true })?;
    let k = fsd::connect(&c, uid)?;
    sched::start(c.slot);
    Ok((c, k))
}

/// Ask `c` for step `n` and wait until it is done.
fn step(c: &Child, n: u64) -> Outcome {
    let mb = spawn::mailbox(c);
    mem::write(mb, n);
    while mem::read(mb + 8) < n {
        if sched::slot(c.slot).state.load(SeqCst) != sched::RUNNABLE {
            spawn::finish(c, "fsuser")?;
            return Err(format!("fsuser in slot {} ended before step {n}", c.slot));
        }
        sched::sched_yield();
    }
    Ok(())
}

fn result(c: &Child, i: u64) -> u64 {
    mem::read(spawn::mailbox(c) + 16 + 8 * i)
}

/// A process shown connection `k`'s window read-only probes `off`; it
/// must read `expect` (0: must fault).
fn witness(k: usize, off: u64, expect: u64) -> Outcome {
    let words = [off, expect];
    let w = spawn::spawn_named(
        "fsuser",
        &Options { args: "witness", words: &words, heap_pages: 16, spare_pages: 0, paused: true },
    )?;
    fsd::link_window_read_only(k, &w, WITNESS_VA)?;
    sched::start(w.slot);
    spawn::expect_zero(&w, "fsuser witness")
}

pub fn libfs_share() -> Outcome {
    fsd::start(true)?;
    println!(
        "init: fsd serves NVDIMM bytes {:#x}..{:#x}; each client gets a channel page and a 1 GiB window (level-2 table: fsd links it with OWN, the client without)",
        fsd::PMEM_OFFSET,
        fsd::PMEM_OFFSET + fsd::PMEM_BYTES
    );
    let (a, _ka) = client("writer-a", 1000, &[])?;
    step(&a, 1)?;
    let (a_window, a_handle) = (result(&a, 0), result(&a, 1));
    let (b, kb) = client("writer-b", 1001, &[])?;
    step(&b, 1)?;
    let b_window = result(&b, 0);
    step(&a, 2)?;
    let (c, _) = client("reader", 1002, &[])?;
    spawn::expect_zero(&c, "fsuser reader")?;
    let (d, _) = client("stranger", 1003, &[a_window, a_handle])?;
    spawn::expect_zero(&d, "fsuser stranger")?;
    step(&a, 3)?;
    spawn::expect_zero(&a, "fsuser writer-a")?;

    // Process death revokes.
    witness(kb, b_window, PATTERN_A0)?;
    let before = (fsd::mapped(kb), fsd::word(mbox::COUNTS + 6));
    mem::write(spawn::mailbox(&b), 2);
    let st = sched::wait(b.slot);
    if st == sched::EXITED {
        return Err("fsuser writer-b exited instead of dying".into());
    }
    println!("init: client B is {} (no longer runs); reaping it", sched::state_name(st));
    let gone = fsd::reap()?;
    if !gone.contains(&kb) {
        return Err(format!("reap ended connections {gone:?}, not B's ({kb})"));
    }
    let after = (fsd::mapped(kb), fsd::word(mbox::COUNTS + 6));
    println!(
        "init: fsd revoked B's window: {} pages mapped before, {} after; pages revoked from clients that ended (exited or died) {} -> {}",
        before.0, after.0, before.1, after.1
    );
    if before.0 == 0 || after.0 != 0 || after.1 < before.1 + before.0 {
        return Err(format!("B's window was not revoked: mapped {before:?} -> {after:?}"));
    }
    witness(kb, b_window, 0)?;

    // A client init kills (as a parent ends any child) loses its window too.
    let (h, kh) = client("holder", 1004, &[])?;
    step(&h, 1)?;
    let h_window = result(&h, 0);
    let held = fsd::mapped(kh);
    sched::kill(h.slot);
    let gone = fsd::reap()?;
    println!(
        "init: killed the holder (connection {kh}, {held} pages mapped); reaped connections {gone:?}; {} pages mapped after",
        fsd::mapped(kh)
    );
    if held == 0 || !gone.contains(&kh) || fsd::mapped(kh) != 0 {
        return Err(format!("killing the holder did not revoke its window ({held} pages, reaped {gone:?})"));
    }
    witness(kh, h_window, 0)?;

    let (e, _) = client("scribbler", 1000, &[])?;
    spawn::expect_zero(&e, "fsuser scribbler")?;
    fsd::reap()?;
    let counts: alloc::vec::Vec<u64> = (0..9).map(|i| fsd::word(mbox::COUNTS + i)).collect();
    println!(
        "init: fsd counts: {} requests ({} refused), {} opens, {} closes, {} pages shared, {} revoked, {} as clients ended, {} commits, {} window tables",
        counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], counts[7], counts[8]
    );
    match fsd::stop()? {
        0 => {}
        code => return Err(format!("fsd exited with {code}: its final check failed")),
    }
    println!("init: libfs_share: sharing, rights, revocation on close and on death, metadata intact");
    Ok(())
}

/// `shell_fs`: init's shell file commands against a fresh fsd, driven by
/// a script of command lines whose output must say what each did.
pub fn shell_fs() -> Outcome {
    fsd::start(true)?;
    let mut sh = initlib::fsshell::FsShell::connect()?;
    let text = "hello from the exokernel";
    let script: &[(&str, &str)] = &[
        ("mkdir /docs", "made directory /docs"),
        ("write /docs/hello.txt hello from the exokernel", "wrote 24 bytes to /docs/hello.txt"),
        ("cat /docs/hello.txt", text),
        ("ls /", "docs/"),
        ("ls", "shared/"),
        ("ls /docs", "-rw-r--r--     0         24 hello.txt"),
        ("stat /docs/hello.txt", "file, inode"),
        ("stat /docs", "directory"),
        ("mv /docs/hello.txt /docs/hi.txt", "moved /docs/hello.txt to /docs/hi.txt"),
        ("cat /docs/hello.txt", "NotFound"),
        ("cat /docs/hi.txt", text),
        ("write /docs/hi.txt short", "wrote 5 bytes"),
        ("cat /docs/hi.txt", "short"),
        ("rm /docs", "NotEmpty"),
        ("rm /docs/hi.txt", "removed /docs/hi.txt"),
        ("rm /docs", "removed /docs"),
        ("ls /docs", "NotFound"),
        ("cat /.owners", "Permission"),
        ("mkdir /shared", "Exists"),
        ("mv a", "usage: mv FROM TO"),
    ];
    for (line, want) in script {
        let out = sh.run(line).ok_or_else(|| format!("{line:?} was not taken as a file command"))?;
        println!("exo> {line}\n{out}");
        let exact = *line == "cat /docs/hi.txt" && *want == "short";
        if !out.contains(want) || (exact && out != *want) {
            return Err(format!("{line:?} printed {out:?}, expected {want:?}"));
        }
    }
    if sh.run("ps").is_some() {
        return Err("`ps` was taken as a file command".into());
    }
    sh.disconnect()?;
    match fsd::stop()? {
        0 => Ok(()),
        code => Err(format!("fsd exited with {code}: its final check failed")),
    }
}
