//! Every system call's success path and every documented error, and the
//! isolation attempts of an untrusted process.

use crate::regions::{page_at, spare, tables_for};
use exo_abi::{Error, Rights, PAGE_SIZE};
use exo_rt::layout::{ARGS_VA, HANDLES_VA, MAILBOX_VA, PARENT_HANDLE_VA, SCRATCH_VA, SHARED_VA};
use exo_rt::{mem, println, sys};

struct Tally {
    ok: u32,
    failed: u32,
}

impl Tally {
    fn expect(&mut self, what: &str, got: Result<(), Error>, want: Result<(), Error>) {
        if got == want {
            self.ok += 1;
            println!("  ok   {what}: {}", show(got));
        } else {
            self.failed += 1;
            println!("  FAIL {what}: got {}, expected {}", show(got), show(want));
        }
    }
    fn code(&self) -> u32 {
        println!("{} checks passed, {} failed", self.ok, self.failed);
        if self.failed == 0 {
            0
        } else {
            1
        }
    }
}

fn show(r: Result<(), Error>) -> &'static str {
    match r {
        Ok(()) => "Ok",
        Err(e) => e.name(),
    }
}

const KERNEL_WINDOW: u64 = 0xffff_8000_0000_0000;
const KERNEL_IMAGE: u64 = 0xffff_ffff_8000_0000;

pub fn five_syscalls() -> u32 {
    let mut t = Tally { ok: 0, failed: 0 };
    let f = spare().unwrap_or(0);
    let region = SCRATCH_VA;

    println!("create:");
    t.expect("level 0", sys::create(region, 0, f), Err(Error::BadLevel));
    t.expect("level 4", sys::create(region, 4, f), Err(Error::BadLevel));
    t.expect("kernel address", sys::create(KERNEL_WINDOW, 3, f), Err(Error::BadAddress));
    t.expect("misaligned table address", sys::create(region + PAGE_SIZE, 1, f), Err(Error::BadAddress));
    t.expect("no level-2 table above", sys::create(0x50_0000_0000, 1, f), Err(Error::NoTable));
    t.expect(
        "frame not mapped",
        sys::create(region, 2, exo_rt::layout::SPARE_VA + 500 * PAGE_SIZE),
        Err(Error::NotMapped),
    );
    t.expect("frame not owned (args page)", sys::create(region, 2, ARGS_VA), Err(Error::NoRight));
    t.expect("frame is a handle", sys::create(region, 2, PARENT_HANDLE_VA), Err(Error::WrongKind));
    t.expect("success, level 2", sys::create(region, 2, f), Ok(()));
    t.expect("slot occupied", sys::create(region, 2, spare().unwrap_or(0)), Err(Error::Occupied));
    let r = tables_for(region);
    t.expect("success, levels 2 and 1", r, Ok(()));

    println!("map:");
    let page = spare().unwrap_or(0);
    t.expect("move an owned page", sys::map(page, 0, 0, region, Rights::WRITE | Rights::OWN | Rights::GRANT), Ok(()));
    mem::write(region, 0xfeed);
    t.expect("source now empty", sys::map(page, 0, 0, region + PAGE_SIZE, Rights::OWN), Err(Error::NotMapped));
    t.expect("share (alias, read-only)", sys::map(region, 0, 0, region + PAGE_SIZE, Rights::NONE), Ok(()));
    t.expect(
        "alias reads the page",
        if mem::read(region + PAGE_SIZE) == 0xfeed { Ok(()) } else { Err(Error::NotMapped) },
        Ok(()),
    );
    t.expect("lent frame cannot become a table", sys::create(0x40_0000_0000, 2, region), Err(Error::Lent));
    t.expect("destination occupied", sys::map(region, 0, 0, region + PAGE_SIZE, Rights::NONE), Err(Error::Occupied));
    t.expect(
        "rights above the alias's",
        sys::map(region + PAGE_SIZE, 0, 0, region + 2 * PAGE_SIZE, Rights::WRITE),
        Err(Error::RightsExceeded),
    );
    t.expect(
        "alias has no GRANT",
        sys::map(region + PAGE_SIZE, 0, 0, region + 2 * PAGE_SIZE, Rights::NONE),
        Err(Error::NoRight),
    );
    t.expect(
        "undefined rights bit",
        sys::map(region, 0, 0, region + 2 * PAGE_SIZE, Rights(1 << 7)),
        Err(Error::BadArgument),
    );
    // Pages never hold SWITCH, so asking for it exceeds what is held.
    t.expect(
        "SWITCH on a page",
        sys::map(region, 0, 0, region + 2 * PAGE_SIZE, Rights::SWITCH),
        Err(Error::RightsExceeded),
    );
    t.expect(
        "WRITE on a handle copy",
        sys::map(PARENT_HANDLE_VA, 0, 0, HANDLES_VA + 9 * PAGE_SIZE, Rights::WRITE),
        Err(Error::RightsExceeded),
    );
    t.expect("level 4", sys::map(region, 4, 0, region, Rights::NONE), Err(Error::BadLevel));
    t.expect(
        "kernel source",
        sys::map(KERNEL_WINDOW, 0, 0, region + 2 * PAGE_SIZE, Rights::NONE),
        Err(Error::BadAddress),
    );
    t.expect("kernel destination", sys::map(region, 0, 0, KERNEL_IMAGE, Rights::NONE), Err(Error::BadAddress));
    t.expect("no table at destination", sys::map(region, 0, 0, 0x50_0000_0000, Rights::NONE), Err(Error::NoTable));
    t.expect(
        "destination space not a handle",
        sys::map(region, 0, region, region + 2 * PAGE_SIZE, Rights::NONE),
        Err(Error::WrongKind),
    );
    t.expect("share a region link (level 1)", sys::map(region, 1, 0, region + (1 << 21), Rights::NONE), Ok(()));
    t.expect(
        "the linked region sees the page",
        if mem::read(region + (1 << 21)) == 0xfeed { Ok(()) } else { Err(Error::NotMapped) },
        Ok(()),
    );

    println!("unmap:");
    t.expect("owned page", sys::unmap(0, region, 0), Err(Error::Owned));
    t.expect("alias", sys::unmap(0, region + PAGE_SIZE, 0), Ok(()));
    t.expect("alias again", sys::unmap(0, region + PAGE_SIZE, 0), Err(Error::NotMapped));
    t.expect("region link", sys::unmap(0, region + (1 << 21), 1), Ok(()));
    t.expect("level 7", sys::unmap(0, region, 7), Err(Error::BadLevel));
    t.expect("kernel address", sys::unmap(0, KERNEL_WINDOW, 0), Err(Error::BadAddress));
    t.expect("in parent (switch-only handle)", sys::unmap(PARENT_HANDLE_VA, 0x1000, 0), Err(Error::NoRight));

    println!("create_as:");
    let h = HANDLES_VA;
    let frame = spare().unwrap_or(0);
    let r = sys::create_as(h, frame).map(|_| ());
    t.expect("success", r, Ok(()));
    t.expect("handle slot occupied", sys::create_as(h, spare().unwrap_or(0)).map(|_| ()), Err(Error::Occupied));
    t.expect("lent frame", sys::create_as(h + PAGE_SIZE, region).map(|_| ()), Err(Error::Lent));
    t.expect("frame not owned", sys::create_as(h + PAGE_SIZE, ARGS_VA).map(|_| ()), Err(Error::NoRight));
    t.expect(
        "map a page into the new space (no tables)",
        sys::map(region, 0, h, 0x20_0000, Rights::NONE),
        Err(Error::NoTable),
    );
    t.expect("copy handle without SWITCH", sys::map(h, 0, 0, h + PAGE_SIZE, Rights::OWN | Rights::GRANT), Ok(()));
    t.expect(
        "handle rights cannot grow",
        sys::map(h + PAGE_SIZE, 0, 0, h + 2 * PAGE_SIZE, Rights::SWITCH),
        Err(Error::RightsExceeded),
    );
    t.expect("handle with WRITE", sys::map(h, 0, 0, h + 2 * PAGE_SIZE, Rights::WRITE), Err(Error::RightsExceeded));

    println!("yield:");
    t.expect("target has no control page", sys::yield_to(h, 0), Err(Error::BadTarget));
    t.expect("handle without SWITCH", sys::yield_to(h + PAGE_SIZE, 0), Err(Error::NoRight));
    t.expect("nothing at the handle address", sys::yield_to(h + 8 * PAGE_SIZE, 0), Err(Error::NotMapped));
    t.expect("a page, not a handle", sys::yield_to(region, 0), Err(Error::WrongKind));
    t.expect("handle address 0", sys::yield_to(0, 0), Err(Error::BadAddress));
    t.expect("to the parent and back", sys::yield_to(PARENT_HANDLE_VA, exo_rt::layout::msg::YIELD), Ok(()));

    println!("unknown calls:");
    for nr in [5u64, 6, 99, u64::MAX] {
        t.expect("number out of range", sys::raw_number(nr, 0, 0, 0, 0, 0).map(|_| ()), Err(Error::BadSyscall));
    }
    let _ = page_at;
    t.code()
}

/// Touch an address this process was never given: must fault.
pub fn attack_access(va: u64, write: bool) -> u32 {
    exo_rt::set_fault_handler(|addr, code| {
        println!("attack: fault at {addr:#x} (error {code:#x}) as intended");
        exo_rt::exit(crate::FAULTED)
    });
    println!("attack: {} {va:#x}", if write { "writing" } else { "reading" });
    if (SCRATCH_VA..exo_abi::USER_END).contains(&va) {
        if write {
            mem::write(va, 0xbad);
        } else {
            let _ = mem::read(va);
        }
    } else {
        // Kernel addresses: rt::mem refuses them, so go around it the way
        // hostile code would — through the page tables' rights alone.
        kernel_touch(va, write);
    }
    println!("attack: access to {va:#x} succeeded!");
    1
}

fn kernel_touch(va: u64, write: bool) {
    // Map-based probe of the kernel half first (must be refused)...
    let r = sys::map(va & !(PAGE_SIZE - 1), 0, 0, SCRATCH_VA, Rights::NONE);
    println!("attack: map of kernel page -> {}", show(r));
    // ...then a raw access through a fixed instruction sequence in rt.
    exo_rt::mem::hostile_touch(va, write);
}

/// System-call-level isolation: each must be refused.
pub fn attack_calls() -> u32 {
    let mut t = Tally { ok: 0, failed: 0 };
    println!("cannot map kernel memory:");
    t.expect("window as source", sys::map(KERNEL_WINDOW, 0, 0, SCRATCH_VA, Rights::NONE), Err(Error::BadAddress));
    t.expect("kernel image as a level-3 region", sys::map(KERNEL_IMAGE, 3, 0, 0, Rights::NONE), Err(Error::BadAddress));
    t.expect(
        "create a table over the kernel",
        sys::create(KERNEL_WINDOW, 3, crate::regions::spare_base()),
        Err(Error::BadAddress),
    );
    t.expect("unmap the kernel", sys::unmap(0, KERNEL_IMAGE, 3), Err(Error::BadAddress));
    println!("cannot raise rights:");
    t.expect(
        "read-only region to writable",
        sys::map(SHARED_VA, 1, 0, SHARED_VA + (1 << 21), Rights::WRITE),
        Err(Error::RightsExceeded),
    );
    t.expect(
        "take ownership of a shared page",
        sys::map(SHARED_VA, 0, 0, SHARED_VA + 8 * PAGE_SIZE, Rights::OWN),
        Err(Error::RightsExceeded),
    );
    t.expect("args page to writable", sys::map(ARGS_VA, 0, 0, SCRATCH_VA, Rights::WRITE), Err(Error::RightsExceeded));
    t.expect(
        "mailbox to owned",
        sys::map(MAILBOX_VA, 0, 0, MAILBOX_VA + PAGE_SIZE, Rights::OWN),
        Err(Error::RightsExceeded),
    );
    t.expect(
        "parent handle to OWN",
        sys::map(PARENT_HANDLE_VA, 0, 0, HANDLES_VA, Rights::OWN | Rights::SWITCH),
        Err(Error::RightsExceeded),
    );
    println!("cannot reach other address spaces:");
    t.expect(
        "map into the parent",
        sys::map(ARGS_VA, 0, PARENT_HANDLE_VA, SCRATCH_VA, Rights::NONE),
        Err(Error::NoRight),
    );
    t.expect("yield through nothing", sys::yield_to(HANDLES_VA + 0x10_000, 0), Err(Error::NotMapped));
    // (The argument page: a child pinned to another CPU has no page at
    // CONTROL_VA, its control page is elsewhere.)
    t.expect("yield through a data page", sys::yield_to(exo_rt::layout::ARGS_VA, 0), Err(Error::WrongKind));
    t.expect("yield to an id as an address", sys::yield_to(0x10_0000_0000, 0), Err(Error::NoTable));
    t.code()
}

/// `syscall` as the last instruction of the user half: its return address
/// is non-canonical. The kernel must turn that into a fault for this
/// process (exit code 42 from the handler), not fault itself.
pub fn attack_edge() -> u32 {
    let page = exo_abi::USER_END - PAGE_SIZE;
    if let Err(e) = tables_for(page) {
        println!("attack-edge: tables: {}", e.name());
        return 3;
    }
    let f = spare().unwrap_or(0);
    let mut code = [0x90u8; 4096];
    code[4094] = 0x0f;
    code[4095] = 0x05;
    if let Err(e) = sys::map(f, 0, 0, page, Rights::EXEC | Rights::WRITE | Rights::OWN) {
        println!("attack-edge: map: {}", e.name());
        return 3;
    }
    exo_rt::mem::write_bytes(page, &code);
    exo_rt::set_fault_handler(|a, c| {
        println!("attack-edge: unexpected page fault at {a:#x} ({c:#x})");
        exo_rt::exit(5)
    });
    println!("attack-edge: jumping to a syscall at {:#x}", exo_abi::USER_END - 2);
    exo_rt::mem::hostile_jump(page)
}
