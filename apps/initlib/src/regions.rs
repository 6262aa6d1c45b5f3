//! Shared regions: a level-1 table of init's, filled with fresh pages, that
//! init links into children (XOmB's page-table subtree: every process that
//! links it sees the same pages; the link's rights bound what it may do).

use crate::spawn::{self, Child};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use exo_abi::{Rights, PAGE_SIZE};
use exo_rt::layout::SHARED_VA;
use exo_rt::sys;

/// Init's own shared regions: level-1 tables at INIT_REGIONS + k * 2 MiB.
const INIT_REGIONS: u64 = 40 << 39;
static NEXT_REGION: AtomicU64 = AtomicU64::new(0);

/// A fresh level-1 region in init with `pages` pages; returns its address.
pub fn make_region(pages: u64) -> Result<u64, String> {
    let k = NEXT_REGION.fetch_add(1, SeqCst);
    let va = INIT_REGIONS + k * (1 << 21);
    for i in 0..pages {
        spawn::place_page(va + i * PAGE_SIZE, Rights::WRITE, |_| {}).map_err(|e| format!("region: {e}"))?;
    }
    Ok(va)
}

/// Link init's level-1 region into a child at SHARED_VA.
pub fn link(c: &Child, region: u64, rights: Rights) -> Result<(), String> {
    // The child's level-2 table for SHARED_VA, then the region link itself.
    spawn::ensure_tables(c.at(SHARED_VA) + (1 << 21)).map_err(|e| format!("link: {e}"))?;
    sys::map(region, 1, 0, c.at(SHARED_VA), rights).map_err(|e| format!("link: {}", e.name()))
}

/// Start `prog` paused, link `region` into it with `rights`, then run it.
pub fn start_linked(prog: &str, args: &str, region: u64, rights: Rights) -> Result<Child, String> {
    let c = spawn::start_paused(prog, args, 0)?;
    link(&c, region, rights)?;
    crate::sched::start(c.slot);
    Ok(c)
}
