//! The `pmem_persist` test (boots `pmem_persist_write` and
//! `pmem_persist_check`): the kernel info page describes the standard
//! machine's NVDIMM, its pages are never page tables, pages moved to a
//! child work there, and a nonce pattern written and flushed in boot 1 is
//! all there in boot 2. The grants themselves are `initlib::pmem`.

use alloc::format;
use alloc::string::String;
use exo_abi::{kinfo as ki, Error, Rights, PAGE_SIZE, PMEM_VA};
use exo_rt::region::Region;
use exo_rt::{kinfo, mem, println, sys};
use initlib::pmem::{grant, ranges, reclaim, total, TEST_AREA};
use initlib::spawn::{self, Options};

type Outcome = Result<(), String>;

/// The NVDIMM of the standard machine (scripts/xtask/src/machine.rs,
/// `NVDIMM_IMAGE`): QEMU's NFIT describes all of it as one range.
const STANDARD_NVDIMM_BYTES: u64 = 128 << 20;
/// The pattern covers the first 4 MiB of the span.
const PATTERN_BYTES: u64 = 4 << 20;
/// The grant test's pages, after the pattern.
const GRANT_OFFSET: u64 = PATTERN_BYTES;
const GRANT_BYTES: u64 = 16 * PAGE_SIZE;
const _: () = assert!(GRANT_OFFSET + GRANT_BYTES <= TEST_AREA);

/// PML4 slot 57, empty in init: where `create` of a level-3 table would
/// link it (the call must fail before that).
const FREE_PML4_SLOT: u64 = 57 << 39;

/// Word `i` of the pattern for `nonce` (splitmix64: every word differs, and
/// so does every run).
fn pattern(nonce: u64, i: u64) -> u64 {
    let mut z = nonce.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The kernel info page describes the standard machine's NVDIMM: one
/// range of 128 MiB above RAM, at `PMEM_VA`, nothing refused.
fn check_description() -> Outcome {
    let all: alloc::vec::Vec<_> = ranges().collect();
    let refused = kinfo::word(ki::W_PMEM_REFUSED);
    let [r] = all[..] else {
        return Err(format!(
            "kernel info page lists {} pmem ranges ({refused} refused), expected the one NVDIMM",
            all.len()
        ));
    };
    println!("init: pmem range {:#x}..{:#x} ({} MiB) at {:#x}", r.phys, r.phys + r.bytes, r.bytes >> 20, r.va);
    if r.bytes != STANDARD_NVDIMM_BYTES || r.va != PMEM_VA || refused != 0 {
        return Err(format!(
            "pmem range {r:?}, {refused} refused: expected {STANDARD_NVDIMM_BYTES:#x} bytes at {PMEM_VA:#x}"
        ));
    }
    let ram_top = (0..(kinfo::word(ki::W_RAM_RANGES) as usize).min(ki::MAX_RAM_RANGES))
        .map(|i| kinfo::word(ki::W_RAM_RANGE0 + 2 * i) + kinfo::word(ki::W_RAM_RANGE0 + 2 * i + 1))
        .max()
        .unwrap_or(0);
    if r.phys < ram_top || !r.phys.is_multiple_of(PAGE_SIZE) {
        return Err(format!("pmem at {:#x} is not a page-aligned range above RAM (RAM ends at {ram_top:#x})", r.phys));
    }
    Ok(())
}

/// A persistent-memory page can never become a page table or an address
/// space's root: the kernel marked it LENT (and it lies outside the
/// kernel's physical window, which could not even zero it).
fn check_never_a_table() -> Outcome {
    let page = PMEM_VA + PATTERN_BYTES - PAGE_SIZE;
    match sys::create(FREE_PML4_SLOT, 3, page) {
        Err(Error::Lent) => {}
        other => return Err(format!("create(table) from a pmem page: {other:?}, expected Lent")),
    }
    // A handle slot right after the span (its tables made here).
    let handle_va = PMEM_VA + total().next_multiple_of(1 << 21);
    spawn::ensure_tables(handle_va).map_err(|e| format!("tables for the create_as probe: {e}"))?;
    match sys::create_as(handle_va, page) {
        Err(Error::Lent) => {}
        other => return Err(format!("create_as from a pmem page: {other:?}, expected Lent")),
    }
    println!("init: create and create_as on a pmem page: Lent, as they must be");
    Ok(())
}

/// Pages moved into a child keep working there: an untrusted `probe`
/// writes one word through its own mapping (its `attack-write` mode, which
/// exits 1 when the write lands), init moves the pages back and finds the
/// word in persistent memory. Bad grants are refused and change nothing.
fn check_grant() -> Outcome {
    let word = GRANT_OFFSET + 3 * PAGE_SIZE + 0x48;
    mem::write(PMEM_VA + word, 0);
    let child_va = exo_abi::CHILD_PMEM_VA;
    let args = format!("attack-write {:x}", child_va + (word - GRANT_OFFSET));
    let child = spawn::spawn_named("probe", &Options { args: &args, paused: true, ..Options::default() })?;
    if grant(&child, child_va, total(), PAGE_SIZE).is_ok()
        || grant(&child, child_va, GRANT_OFFSET + 1, PAGE_SIZE).is_ok()
    {
        return Err("a grant outside the span or misaligned was accepted".into());
    }
    grant(&child, child_va, GRANT_OFFSET, GRANT_BYTES)?;
    // Moved, not shared: init's own mapping is gone.
    if sys::map(PMEM_VA + GRANT_OFFSET, 0, 0, PMEM_VA + GRANT_OFFSET, Rights::NONE) != Err(Error::NotMapped) {
        return Err("the granted page is still mapped in init".into());
    }
    initlib::sched::start(child.slot);
    let code = spawn::finish(&child, "probe writing pmem")?;
    if code != 1 {
        return Err(format!("probe's write to its pmem page ended with {code}, expected 1 (the write landed)"));
    }
    reclaim(&child, child_va, GRANT_OFFSET, GRANT_BYTES)?;
    let got = mem::read(PMEM_VA + word);
    if got != 0xbad {
        return Err(format!("the child's write is not in persistent memory: {got:#x}"));
    }
    // Two moves later the pages are still LENT.
    match sys::create(FREE_PML4_SLOT, 3, PMEM_VA + GRANT_OFFSET) {
        Err(Error::Lent) => {}
        other => return Err(format!("create(table) from a pmem page back from a child: {other:?}, expected Lent")),
    }
    println!(
        "init: {} pmem pages moved to probe, written there, moved back: the write is in the NVDIMM",
        GRANT_BYTES / PAGE_SIZE
    );
    Ok(())
}

/// Boot 1: check the description, the LENT mark and grants, then write
/// the nonce's pattern over `PATTERN_BYTES` and make it durable.
pub fn persist_write() -> Outcome {
    let nonce = crate::basic::nonce()?;
    check_description()?;
    check_never_a_table()?;
    check_grant()?;
    let mut region = Region::claim(PMEM_VA, PATTERN_BYTES).map_err(|e| format!("claiming pmem: {e}"))?;
    let t0 = exo_rt::time::rdtsc();
    for (i, chunk) in region.as_mut_slice().chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&pattern(nonce, i as u64).to_le_bytes());
    }
    let t1 = exo_rt::time::rdtsc();
    region.persist(0, PATTERN_BYTES as usize);
    region.fence();
    let t2 = exo_rt::time::rdtsc();
    let per_us = kinfo::word(ki::W_TSC_PER_US).max(1);
    println!(
        "init: wrote {} MiB of pattern {nonce:#x} to pmem in {} us, made durable with {:?} + sfence in {} us",
        PATTERN_BYTES >> 20,
        (t1 - t0) / per_us,
        region.flush_method(),
        (t2 - t1) / per_us
    );
    Ok(())
}

/// Boot 2: every byte of the pattern is there.
pub fn persist_check() -> Outcome {
    let nonce = crate::basic::nonce()?;
    check_description()?;
    let region = Region::claim(PMEM_VA, PATTERN_BYTES).map_err(|e| format!("claiming pmem: {e}"))?;
    let mut wrong = 0u64;
    let mut first = None;
    for (i, chunk) in region.as_slice().chunks_exact(8).enumerate() {
        let want = pattern(nonce, i as u64).to_le_bytes();
        for (b, (got, want)) in chunk.iter().zip(want).enumerate() {
            if *got != want {
                wrong += 1;
                first.get_or_insert((i * 8 + b, *got, want));
            }
        }
    }
    if let Some((at, got, want)) = first {
        return Err(format!(
            "{wrong} bytes differ after the reboot; first at offset {at:#x}: {got:#04x}, expected {want:#04x}"
        ));
    }
    println!("init: all {} bytes of pattern {nonce:#x} survived the reboot in pmem", PATTERN_BYTES);
    Ok(())
}
