//! Attacks on the kernel's own rules, each run by a probe process of its
//! own (QEMU tests `tlb_alias`, `ctlpage_hostile`, `dma_revoke`):
//!
//! * **Stale translations through an alias.** A level-1 table of this
//!   process is linked at two addresses, A and B. A page is touched
//!   through B (the TLB now caches a writable translation for B), then a
//!   call changes what the frame is or removes it through A. A write
//!   through B must fault; if it lands, the attacker owns a page table
//!   (or a revoked page) and the kernel has lost.
//! * **A hostile control page.** The process puts a frame the kernel must
//!   not write (persistent memory, device registers, a lent frame) at its
//!   control-page address and yields: the kernel must refuse to save its
//!   context there, which costs the process its life and nothing else.
//! * **DMA through a borrowed page.** Only a frame's owner may give a
//!   device access to it: a borrower could otherwise keep DMA access after
//!   the lender revoked the share.

use crate::regions::{page_at, spare, tables_for};
use exo_abi::{Error, Rights, CONTROL_VA, PAGE_SIZE};
use exo_rt::layout::{msg, PARENT_HANDLE_VA, SCRATCH_VA};
use exo_rt::{mem, println, sys};

/// A: the level-1 table's own link; B: the same table linked again.
const A: u64 = SCRATCH_VA;
const B: u64 = SCRATCH_VA + (1 << 21);
/// A further 2 MiB slot in the same level-2 table (a new table's link).
const C: u64 = SCRATCH_VA + (2 << 21);
const MARK: u64 = 0x7a11_a5ed_0000_0001;
/// A page-table entry the attacker would like to write: physical page 0,
/// present, writable, user.
const FORGED_PTE: u64 = 0x7;

fn expect_fault_from_here(what: &'static str) {
    exo_rt::set_fault_handler(|addr, code| {
        println!("tlb-alias: the write through B faulted at {addr:#x} (error {code:#x}), as it must");
        exo_rt::exit(crate::FAULTED)
    });
    println!("tlb-alias: {what}; now writing through the alias B");
}

fn step(what: &str, r: Result<(), Error>) -> Result<(), u32> {
    r.map_err(|e| {
        println!("tlb-alias: {what}: {}", e.name());
        3
    })
}

/// `tlb-alias-<case>`: exits [`crate::FAULTED`] if the write through the
/// alias faulted (the kernel flushed it), 1 if it landed.
pub fn tlb_alias(case: &str) -> u32 {
    match alias_attack(case) {
        Ok(()) => 1,
        Err(code) => code,
    }
}

fn alias_attack(case: &str) -> Result<(), u32> {
    step("tables", tables_for(A))?;
    step("page", page_at(A))?;
    mem::write(A, MARK);
    // A second, non-owning entry for the `unmap` case: a share of the page.
    step("share", sys::map(A, 0, 0, A + PAGE_SIZE, Rights::WRITE))?;
    // The level-1 table linked a second time in the same space.
    step("alias link", sys::map(A, 1, 0, B, Rights::WRITE | Rights::OWN | Rights::GRANT))?;
    // Touch both pages through B: the TLB caches writable translations.
    if mem::read(B) != MARK || mem::read(B + PAGE_SIZE) != MARK {
        println!("tlb-alias: the alias does not show the page");
        return Err(4);
    }
    mem::write(B, MARK + 1);
    mem::write(B + PAGE_SIZE, MARK + 1);
    let target = match case {
        "create" => {
            // The page at A becomes a level-1 table linked at C.
            let frame = spare().ok_or(5u32)?;
            step(
                "move a fresh page to A+2",
                sys::map(frame, 0, 0, A + 2 * PAGE_SIZE, Rights::WRITE | Rights::OWN | Rights::GRANT),
            )?;
            // (The share made the first page LENT, never a table: retype
            // this fresh one, touched through B like the first.)
            mem::write(B + 2 * PAGE_SIZE, MARK);
            step("create a table from the frame at A+2", sys::create(C, 1, A + 2 * PAGE_SIZE))?;
            expect_fault_from_here("the frame at A+2 is now a page table");
            B + 2 * PAGE_SIZE
        }
        "create_as" => {
            let frame = spare().ok_or(5u32)?;
            step(
                "move a fresh page to A+2",
                sys::map(frame, 0, 0, A + 2 * PAGE_SIZE, Rights::WRITE | Rights::OWN | Rights::GRANT),
            )?;
            mem::write(B + 2 * PAGE_SIZE, MARK);
            step("create_as from the frame at A+2", sys::create_as(A + 3 * PAGE_SIZE, A + 2 * PAGE_SIZE).map(|_| ()))?;
            expect_fault_from_here("the frame at A+2 is now an address space's root");
            B + 2 * PAGE_SIZE
        }
        "move" => {
            step(
                "move the page from A to A+4",
                sys::map(A, 0, 0, A + 4 * PAGE_SIZE, Rights::WRITE | Rights::OWN | Rights::GRANT),
            )?;
            expect_fault_from_here("the page left A");
            B
        }
        "unmap" => {
            step("unmap the share at A+1", sys::unmap(0, A + PAGE_SIZE, 0))?;
            expect_fault_from_here("the share at A+1 was revoked");
            B + PAGE_SIZE
        }
        _ => {
            println!("tlb-alias: unknown case {case:?}");
            return Err(2);
        }
    };
    mem::write(target, FORGED_PTE);
    exo_rt::set_fault_handler(|addr, code| {
        println!("tlb-alias: fault at {addr:#x} (error {code:#x}) after the write landed");
        exo_rt::exit(1)
    });
    println!("tlb-alias: {case}: the write through B LANDED: stale translation");
    Ok(())
}

/// `ctlpage-<how> <va>`: replace this process's control page with the page
/// at `va` (moved there if `how` is `owned`, shared there without OWN if
/// `shared`; `lent` uses a page of its own that it has shared, so its
/// owning entry is LENT) and yield. The kernel must refuse to save a
/// context into it; init then sees this process killed, and nothing else.
pub fn ctlpage(how: &str, va: u64) -> u32 {
    if let Err(e) = tables_for(SCRATCH_VA) {
        println!("ctlpage: tables: {}", e.name());
        return 3;
    }
    let src = match how {
        "owned" | "shared" => va,
        "lent" => {
            if page_at(SCRATCH_VA + PAGE_SIZE)
                .and_then(|_| sys::map(SCRATCH_VA + PAGE_SIZE, 0, 0, SCRATCH_VA + 2 * PAGE_SIZE, Rights::WRITE))
                .is_err()
            {
                println!("ctlpage: could not make a lent page");
                return 3;
            }
            SCRATCH_VA + PAGE_SIZE
        }
        _ => {
            println!("ctlpage: unknown mode {how:?}");
            return 2;
        }
    };
    let rights = if how == "shared" { Rights::WRITE } else { Rights::WRITE | Rights::OWN };
    println!("ctlpage: replacing my control page with the {how} page at {src:#x}, then yielding");
    // From the first call on, this process has no usable control page: a
    // timer tick here kills it as surely as the yield below.
    if let Err(e) = sys::map(CONTROL_VA, 0, 0, SCRATCH_VA, Rights::WRITE | Rights::OWN | Rights::GRANT) {
        println!("ctlpage: moving the control page away: {}", e.name());
        return 3;
    }
    if sys::map(src, 0, 0, CONTROL_VA, rights).is_err() {
        return 4;
    }
    let _ = sys::yield_to(PARENT_HANDLE_VA, msg::YIELD);
    // Only reached if the kernel saved this context into the hostile page
    // and resumed it from there.
    5
}

/// `dma-borrowed <handle_va>`: the parent shared a page at `SCRATCH_VA`
/// with this process (WRITE and GRANT, not OWN) and gave it a device
/// handle with OWN at `handle_va`. Giving the device the borrowed page must
/// fail with `NoRight`, at any rights; a page of its own may be given and
/// taken back. Exits 0 when all of that held.
pub fn dma_borrowed(handle: u64) -> u32 {
    const IOVA: u64 = 0x10_0000;
    for rights in [Rights::WRITE, Rights::NONE] {
        match sys::map(SCRATCH_VA, 0, handle, IOVA, rights) {
            Err(Error::NoRight) => {}
            other => {
                println!("dma-borrowed: granting the device a borrowed page ({rights:?}) gave {other:?}, not NoRight");
                return 1;
            }
        }
    }
    let own = SCRATCH_VA + (1 << 21);
    if tables_for(own).is_err() || page_at(own).is_err() {
        println!("dma-borrowed: could not build a page of its own");
        return 3;
    }
    if let Err(e) = sys::map(own, 0, handle, IOVA + PAGE_SIZE, Rights::WRITE) {
        println!("dma-borrowed: granting its own page: {}", e.name());
        return 1;
    }
    if let Err(e) = sys::unmap(handle, IOVA + PAGE_SIZE, 0) {
        println!("dma-borrowed: revoking its own page: {}", e.name());
        return 1;
    }
    println!("dma-borrowed: a borrowed page was refused to the device (NoRight); its own page was granted and revoked");
    0
}
