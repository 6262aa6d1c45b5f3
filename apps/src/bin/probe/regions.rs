//! Regions built from frames this process owns, shared regions, and a
//! demand-zero pager.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use exo_abi::{Error, Rights, PAGE_SIZE};
use exo_rt::layout::{MAILBOX_VA, SCRATCH_VA, SHARED_VA, SPARE_VA};
use exo_rt::{mem, println, sys, yield_now};

static NEXT_SPARE: AtomicU64 = AtomicU64::new(0);

/// The next spare frame the parent gave us (their addresses in our space).
pub fn spare() -> Option<u64> {
    let n = NEXT_SPARE.fetch_add(1, SeqCst);
    if n < exo_rt::args_word(1) {
        Some(exo_rt::args_word(2) + n * PAGE_SIZE)
    } else {
        None
    }
}

pub fn spare_base() -> u64 {
    SPARE_VA
}

/// Build page tables for `va` (levels 3, 2, 1) from spare frames.
pub fn tables_for(va: u64) -> Result<(), Error> {
    for (level, span) in [(3u64, 1u64 << 39), (2, 1 << 30), (1, 1 << 21)] {
        let f = spare().ok_or(Error::NotMapped)?;
        match sys::create(va & !(span - 1), level, f) {
            Ok(()) => {}
            // The slot was built already; the frame is still ours, unused:
            // hand it out again next time.
            Err(Error::Occupied) => {
                NEXT_SPARE.fetch_sub(1, SeqCst);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Move a spare frame to `va`.
pub fn page_at(va: u64) -> Result<(), Error> {
    let f = spare().ok_or(Error::NotMapped)?;
    sys::map(f, 0, 0, va, Rights::WRITE | Rights::OWN | Rights::GRANT)
}

const PATTERN: u64 = 0x5ec2_e7da_7a00_0000;

/// A process with a private page: write a pattern, tell the parent, wait
/// until the parent says the attack is over, verify the page.
pub fn victim() -> u32 {
    if tables_for(SCRATCH_VA).is_err() || page_at(SCRATCH_VA).is_err() {
        println!("victim: could not build its private page");
        return 3;
    }
    for i in 0..512 {
        mem::write(SCRATCH_VA + i * 8, PATTERN + i);
    }
    mem::write(MAILBOX_VA + 8, 1); // ready
    while mem::read(MAILBOX_VA) == 0 {
        yield_now();
    }
    for i in 0..512 {
        if mem::read(SCRATCH_VA + i * 8) != PATTERN + i {
            println!("victim: private page changed at word {i}");
            return 1;
        }
    }
    println!("victim: private page intact");
    0
}

const SHARED_PAGES: u64 = 4;
const FLAG: u64 = SHARED_VA + 3 * PAGE_SIZE + 4088;

pub fn share_writer() -> u32 {
    for i in 0..SHARED_PAGES * 256 {
        mem::write(SHARED_VA + i * 8, 0xa000_0000 + i);
    }
    mem::write(FLAG, 1);
    println!("share-writer: wrote {} pages, waiting for the reader", SHARED_PAGES);
    while mem::read(FLAG) != 2 {
        yield_now();
    }
    for i in 0..256 {
        if mem::read(SHARED_VA + PAGE_SIZE + i * 8) != 0xb000_0000 + i {
            println!("share-writer: reader's reply wrong at word {i}");
            return 1;
        }
    }
    println!("share-writer: saw the reader's reply");
    0
}

pub fn share_reader() -> u32 {
    while mem::read(FLAG) != 1 {
        yield_now();
    }
    for i in 0..SHARED_PAGES * 256 {
        if i * 8 + SHARED_VA == FLAG {
            continue;
        }
        let want = 0xa000_0000 + i;
        if mem::read(SHARED_VA + i * 8) != want {
            println!("share-reader: wrong value at word {i}");
            return 1;
        }
    }
    for i in 0..256 {
        mem::write(SHARED_VA + PAGE_SIZE + i * 8, 0xb000_0000 + i);
    }
    mem::write(FLAG, 2);
    println!("share-reader: verified the writer's data and replied");
    0
}

fn fault_exits(_addr: u64, _code: u64) -> bool {
    println!("probe: faulted as intended");
    exo_rt::exit(crate::FAULTED)
}

pub fn share_read_only() -> u32 {
    while mem::read(FLAG) != 2 {
        yield_now();
    }
    let v = mem::read(SHARED_VA);
    if v != 0xa000_0000 {
        println!("share-ro: read {v:#x}, expected 0xa0000000");
        return 1;
    }
    println!("share-ro: can read the region; now writing to it");
    exo_rt::set_fault_handler(fault_exits);
    mem::write(SHARED_VA, 666);
    println!("share-ro: write to a read-only share succeeded!");
    1
}

static PAGER_BASE: AtomicU64 = AtomicU64::new(0);
static PAGER_PAGES: AtomicU64 = AtomicU64::new(0);

/// A demand-zero pager: faults in [base, base + pages) get a fresh frame.
fn demand_zero(addr: u64, code: u64) -> bool {
    let base = PAGER_BASE.load(SeqCst);
    let end = base + PAGER_PAGES.load(SeqCst) * PAGE_SIZE;
    if code & 1 != 0 || addr < base || addr >= end {
        return false; // a protection fault, or not our region
    }
    let page = addr & !(PAGE_SIZE - 1);
    tables_for(page).is_ok() && page_at(page).is_ok()
}

pub fn pager(pages: u64) -> u32 {
    PAGER_BASE.store(SCRATCH_VA, SeqCst);
    PAGER_PAGES.store(pages, SeqCst);
    exo_rt::set_fault_handler(demand_zero);
    for i in 0..pages {
        let va = SCRATCH_VA + i * PAGE_SIZE;
        if mem::read(va + 8 * (i % 512)) != 0 {
            println!("pager: page {i} not zero-filled");
            return 1;
        }
        mem::write(va, i * 3 + 1);
    }
    for i in 0..pages {
        if mem::read(SCRATCH_VA + i * PAGE_SIZE) != i * 3 + 1 {
            println!("pager: page {i} lost its value");
            return 1;
        }
    }
    // Every page of the region started unmapped and only the fault handler
    // maps pages there, so 64 verified pages mean 64 resolved faults. The
    // handler's own count can be a little lower: a timer tick that lands
    // after the handler mapped the page but before it counted discards the
    // handler's progress, and the retried access then simply succeeds.
    let faults = exo_rt::faults_handled();
    println!(
        "pager: touched {pages} pages, all zero-filled and verified; the handler counted {faults} resolved faults"
    );
    if faults >= 1 && faults <= pages {
        0
    } else {
        4
    }
}

/// Build a region (three levels of tables and 16 pages) purely from frames
/// the parent handed over, and use it.
pub fn build_region() -> u32 {
    if let Err(e) = tables_for(SCRATCH_VA) {
        println!("alloc: create failed: {}", e.name());
        return 1;
    }
    for i in 0..16 {
        if let Err(e) = page_at(SCRATCH_VA + i * PAGE_SIZE) {
            println!("alloc: map failed: {}", e.name());
            return 1;
        }
        mem::write(SCRATCH_VA + i * PAGE_SIZE, 0x1234 + i);
    }
    for i in 0..16 {
        if mem::read(SCRATCH_VA + i * PAGE_SIZE) != 0x1234 + i {
            return 1;
        }
    }
    println!("alloc: built a 3-level region with 16 pages from {} frames of my own", NEXT_SPARE.load(SeqCst));
    0
}
