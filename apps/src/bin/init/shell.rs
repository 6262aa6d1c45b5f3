//! A small shell on the serial console (after the demo, in interactive
//! `cargo xtask run`): look at processes, memory and devices; start
//! programs from the boot image; and the system's files, through the file
//! service `fsd` (`ls`, `cat`, `write`, `mkdir`, `rm`, `mv`, `stat`:
//! `initlib::fsshell`, the same code the `shell_fs` test drives).

use alloc::string::String;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{devinfo as di, kinfo as ki};
use exo_rt::console::serial_read;
use exo_rt::{kinfo, print, println};
use initlib::fsshell::FsShell;
use initlib::sched::{self, state_name, MAX_PROCS};
use initlib::spawn::{self, Options};

pub fn run() -> ! {
    let mut files = connect_files();
    println!("init: shell ready; type `help` (quit QEMU with Ctrl-A X)");
    let mut line = String::new();
    print!("exo> ");
    loop {
        let Some(b) = serial_read() else {
            // A file-service client that died loses its window now.
            let _ = initlib::fsd::reap();
            sched::sched_yield();
            continue;
        };
        match b {
            b'\r' | b'\n' => {
                println!();
                match files.as_mut().and_then(|f| f.run(line.trim())) {
                    Some(out) => println!("{out}"),
                    None => command(line.trim()),
                }
                line.clear();
                print!("exo> ");
            }
            0x08 | 0x7f if line.pop().is_some() => {
                print!("\x08 \x08");
            }
            b if b.is_ascii_graphic() || b == b' ' => {
                line.push(b as char);
                print!("{}", b as char);
            }
            _ => {}
        }
    }
}

/// The shell's connection to the file service (started if it is not
/// running); `None`, with the reason printed, if there is none.
fn connect_files() -> Option<FsShell> {
    if !initlib::fsd::running() {
        if let Err(e) = initlib::fsd::start(false) {
            println!("init: no file service ({e}); file commands are off");
            return None;
        }
    }
    FsShell::connect().map_err(|e| println!("init: cannot connect to the file service: {e}")).ok()
}

fn command(line: &str) {
    let mut words = line.split_whitespace();
    match words.next() {
        None => {}
        Some("help") => println!(
            "commands: ps | run PROGRAM [ARGS] | mem | stats | devices | programs | halt | {}",
            fsproto::shell::HELP
        ),
        Some("ps") => ps(),
        Some("run") => match words.next() {
            Some(prog) => {
                let args: String = words.collect::<alloc::vec::Vec<_>>().join(" ");
                match spawn::spawn(prog, &Options { args: &args, ..Options::default() }) {
                    Ok(c) => println!("started {prog} in slot {} (address space {:#x})", c.slot, c.id),
                    Err(e) => println!("run {prog}: {e}"),
                }
            }
            None => println!("usage: run PROGRAM [ARGS]"),
        },
        Some("mem") => {
            let (used, left) = initlib::frames::stats();
            println!(
                "frames: {used} handed out, {left} free ({} MiB); kernel frames after boot: {}",
                left >> 8,
                kinfo::word(ki::W_FRAMES_AFTER_BOOT)
            );
        }
        Some("stats") => println!(
            "{} CPU(s) in the MADT (1 running); {} system calls, {} upcalls, {} timer ticks of {} us, {} DMA faults",
            kinfo::word(ki::W_CPUS),
            kinfo::word(ki::W_SYSCALLS),
            kinfo::word(ki::W_UPCALLS),
            kinfo::word(ki::W_TICKS),
            kinfo::word(ki::W_TICK_US),
            kinfo::word(ki::W_DMA_FAULTS)
        ),
        Some("devices") => devices(),
        Some("programs") => {
            if let Ok(img) = exo_loader::bootimage::BootImage::parse(exo_rt::boot_image()) {
                for e in img.entries() {
                    println!("  {:<24} {:>8} bytes", e.name, e.data.len());
                }
            }
        }
        Some("halt") => {
            println!("init: powering off");
            exo_rt::debug_exit(0x10);
        }
        Some(other) => println!("unknown command {other:?}; try `help`"),
    }
}

fn ps() {
    println!("slot  state     address space       preempted  scheduled");
    for i in 0..MAX_PROCS {
        let s = sched::slot(i);
        let st = s.state.load(SeqCst);
        if st == sched::FREE && s.id.load(SeqCst) == 0 {
            continue;
        }
        println!(
            "{i:>4}  {:<9} {:#018x}  {:>9}  {:>9}",
            state_name(st),
            s.id.load(SeqCst),
            s.preemptions.load(SeqCst),
            s.runs.load(SeqCst)
        );
    }
}

fn devices() {
    let n = exo_rt::devinfo(di::W_COUNT);
    println!("{n} PCI functions; I/O-MMU translation {}", if exo_rt::devinfo(di::W_IOMMU) == 1 { "on" } else { "off" });
    for k in 0..n as usize {
        let e = di::W_ENTRY0 + k * di::ENTRY_WORDS;
        let bdf = exo_rt::devinfo(e + di::E_BDF);
        let ids = exo_rt::devinfo(e + di::E_IDS);
        println!(
            "  {:02x}:{:02x}.{} {:04x}:{:04x} class {:06x} handle {:#x} bar0 {:#x} ({} bytes)",
            bdf >> 8,
            (bdf >> 3) & 31,
            bdf & 7,
            ids & 0xffff,
            (ids >> 16) & 0xffff,
            ids >> 32,
            exo_rt::devinfo(e + di::E_HANDLE_VA),
            exo_rt::devinfo(e + di::E_BAR_VA0),
            exo_rt::devinfo(e + di::E_BAR_SIZE0)
        );
    }
}
